/* config: see config.h. */
#include "config.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "buf.h"
#include "script.h"

/* The keys each table of the config may hold, one row per table ("*" in a
 * path stands for every entry of a map: servers.*). An unknown key at any
 * level is an error (config_check_keys). To add a key the core reads, add
 * it to its table's list (and a row for a new nested table); a script that
 * reads keys of its own declares them with core.config_key. Tables no row
 * names (links, scripts) belong to whoever reads them. */
static const char *const top_keys[] = {
    "servers",       "links",     "scripts",
    "places",        "log_dir",   "log_format",
    "log_io",        "secret",    "secret_is_development",
    "insecure",      "limits",    "links_redial",
    "admin_socket",  "tls",       "client_tls",
    "peers_from",    "state_dir", "state_sync",
    "state_sync_ms", NULL};
static const char *const server_keys[] = {
    "port",         "peer_port",    "tls_port", "host",
    "metrics_port", "metrics_host", NULL};
/* What the built-in places scripts (scripts/places/) and the core's local
 * provider (data) read. */
static const char *const places_keys[] = {
    "provider",       "url",      "key",      "timeout_ms",
    "max_bytes",      "cache_ms", "language", "field_mask",
    "overpass_fetch", "data",     NULL};
static const char *const limit_keys[] = {
    "max_line",        "out_pause",
    "max_connections", "max_connections_per_address",
    "first_line_ms",   "idle_ms",
    "stall_ms",        "lua_memory_mb",
    "lua_budget",      "peer_max_frame",
    "peer_timeout_ms", "max_records",
    "peer_out_max",    "peer_handshake_ms",
    "peer_sync_ms",    NULL};
static const char *const redial_keys[] = {"min_ms", "max_ms", NULL};
static const char *const tls_keys[] = {"cert", "key", "ca", NULL};
/* client_tls: ca is optional (given, client certificates are required). */
static const char *const client_tls_keys[] = {"cert", "key", "ca", NULL};

static const struct {
  const char *path;
  const char *const *keys;
} config_tables[] = {
    {"", top_keys},
    {"servers.*", server_keys},
    {"places", places_keys},
    {"limits", limit_keys},
    {"links_redial", redial_keys},
    {"tls", tls_keys},
    {"client_tls", client_tls_keys},
};

/* The server ports that must not clash, by name and place in the struct:
 * add a row for a new listening port (0 in the struct = not listening). */
static const struct {
  const char *key;
  size_t off;
} server_ports[] = {
    {"port", offsetof(config_server_t, port)},
    {"peer_port", offsetof(config_server_t, peer_port)},
    {"tls_port", offsetof(config_server_t, tls_port)},
    {"metrics_port", offsetof(config_server_t, metrics_port)},
};

/* The places providers of scripts/places/init.lua (keep both in step) and
 * whether each needs an API key; checked here so that a mistake is one line
 * naming the config, before any script runs. */
static const struct {
  const char *name;
  int needs_key;
} providers[] = {
    {"local", 0}, {"google", 1}, {"google-new", 1}, {"overpass", 0}};

#define REGISTRY_DECLARED "herd.config_keys"

static int in_list(const char *key, const char *const *list) {
  for (int i = 0; list[i]; i++)
    if (strcmp(key, list[i]) == 0) return 1;
  return 0;
}

/* A DNS name: dot-separated labels of letters, digits and '-', none
 * empty, longer than 63 or starting or ending with '-'. */
static int is_hostname(const char *h) {
  size_t n = strlen(h), label = 0;
  if (n == 0 || n > 253) return 0;
  for (size_t i = 0; i <= n; i++) {
    char c = h[i];
    if (c == '.' || c == '\0') {
      if (label == 0 || h[i - 1] == '-') return 0;
      label = 0;
    } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
               (c >= '0' && c <= '9') || c == '-') {
      if (label == 0 && c == '-') return 0;
      if (++label > 63) return 0;
    } else {
      return 0;
    }
  }
  return 1;
}

static int msghandler(lua_State *L) {
  luaL_traceback(L, L, lua_tostring(L, 1), 1);
  return 1;
}

/* Reads an optional integer field of the table on top of the stack. */
static int get_int(lua_State *L, const char *file, const char *where,
                   const char *key, long lo, long hi, long *out, char *err,
                   size_t errlen) {
  lua_getfield(L, -1, key);
  int rc = 0;
  if (!lua_isnil(L, -1)) {
    int ok;
    lua_Integer v = lua_tointegerx(L, -1, &ok);
    if (!ok || v < lo || v > hi) {
      snprintf(err, errlen, "%s: %s%s must be an integer from %ld to %ld", file,
               where, key, lo, hi);
      rc = -1;
    } else {
      *out = (long)v;
    }
  }
  lua_pop(L, 1);
  return rc;
}

static int get_str(lua_State *L, const char *file, const char *where,
                   const char *key, char **out, char *err, size_t errlen) {
  lua_getfield(L, -1, key);
  int rc = 0;
  if (lua_type(L, -1) == LUA_TSTRING) {
    free(*out);
    *out = xstrdup(lua_tostring(L, -1));
  } else if (!lua_isnil(L, -1)) {
    snprintf(err, errlen, "%s: %s%s must be a string", file, where, key);
    rc = -1;
  }
  lua_pop(L, 1);
  return rc;
}

static int get_bool(lua_State *L, const char *file, const char *key, int *out,
                    char *err, size_t errlen) {
  lua_getfield(L, -1, key);
  int rc = 0;
  if (lua_isboolean(L, -1))
    *out = lua_toboolean(L, -1);
  else if (!lua_isnil(L, -1)) {
    snprintf(err, errlen, "%s: %s must be true or false", file, key);
    rc = -1;
  }
  lua_pop(L, 1);
  return rc;
}

/* HERD_* variables win over the file, so one config serves every
 * deployment. */
static void apply_env(lua_State *L) {
  static const struct {
    const char *var, *sub, *key;
  } map[] = {
      {"HERD_PLACES_PROVIDER", "places", "provider"},
      {"HERD_PLACES_URL", "places", "url"},
      {"HERD_PLACES_KEY", "places", "key"},
      {"HERD_SECRET", NULL, "secret"},
      {"HERD_LOG_DIR", NULL, "log_dir"},
      {"HERD_STATE_DIR", NULL, "state_dir"},
  };
  for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
    const char *v = getenv(map[i].var);
    if (!v || !*v) continue;
    if (map[i].sub) {
      lua_getfield(L, -1, map[i].sub);
      if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, map[i].sub);
      }
      lua_pushstring(L, v);
      lua_setfield(L, -2, map[i].key);
      lua_pop(L, 1);
    } else {
      lua_pushstring(L, v);
      lua_setfield(L, -2, map[i].key);
    }
  }
}

int config_valid_name(const char *name) {
  size_t n = strlen(name);
  if (n == 0 || n > CONFIG_NAME_MAX) return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)name[i];
    if (c <= ' ' || c >= 0x7f || c == '/') return 0;
  }
  return 1;
}

/* A wildcard address listens on every address of the machine. */
static int same_address(const char *a, const char *b) {
  static const char *const any[] = {"0.0.0.0", "::", NULL};
  return strcmp(a, b) == 0 || in_list(a, any) || in_list(b, any);
}

/* Two listeners on one address and port: the second server (or the second
 * listener of one server) would fail at start-up, naming neither. */
static int check_port_clashes(const config_t *cfg, char *err, size_t errlen) {
  const size_t nports = sizeof server_ports / sizeof server_ports[0];
  for (int i = 0; i < cfg->nservers; i++) {
    const config_server_t *a = &cfg->servers[i];
    for (size_t pa = 0; pa < nports; pa++) {
      int port = *(const int *)((const char *)a + server_ports[pa].off);
      if (port == 0) continue;
      for (int j = i; j < cfg->nservers; j++) {
        const config_server_t *b = &cfg->servers[j];
        if (!same_address(a->host, b->host)) continue;
        for (size_t pb = j == i ? pa + 1 : 0; pb < nports; pb++) {
          if (*(const int *)((const char *)b + server_ports[pb].off) != port)
            continue;
          snprintf(err, errlen,
                   "%s: servers.%s.%s and servers.%s.%s are both port %d "
                   "on %s",
                   cfg->path, a->name, server_ports[pa].key, b->name,
                   server_ports[pb].key, port, a->host);
          return -1;
        }
      }
    }
  }
  return 0;
}

static int cmp_server(const void *a, const void *b) {
  return strcmp(((const config_server_t *)a)->name,
                ((const config_server_t *)b)->name);
}

static int parse_servers(lua_State *L, config_t *cfg, char *err,
                         size_t errlen) {
  const char *file = cfg->path;
  lua_getfield(L, -1, "servers");
  if (!lua_istable(L, -1)) {
    snprintf(err, errlen,
             "%s: 'servers' must be a table of name = { port = "
             "... }",
             file);
    lua_pop(L, 1);
    return -1;
  }
  int n = 0;
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    n++;
    lua_pop(L, 1);
  }
  if (n == 0) {
    snprintf(err, errlen, "%s: 'servers' declares no server", file);
    lua_pop(L, 1);
    return -1;
  }
  cfg->servers = xcalloc((size_t)n, sizeof *cfg->servers);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    if (lua_type(L, -2) != LUA_TSTRING || !lua_istable(L, -1)) {
      snprintf(err, errlen,
               "%s: servers must map names to tables, as "
               "Riley = { port = 12001 }",
               file);
      lua_pop(L, 3);
      return -1;
    }
    config_server_t *s = &cfg->servers[cfg->nservers++];
    s->name = xstrdup(lua_tostring(L, -2));
    if (!config_valid_name(s->name)) {
      snprintf(err, errlen,
               "%s: servers: '%.80s' is not a server name (1 to %d "
               "printable ASCII characters, no white space or '/')",
               file, s->name, CONFIG_NAME_MAX);
      lua_pop(L, 3);
      return -1;
    }
    char where[300];
    snprintf(where, sizeof where, "servers.%s.", s->name);
    long port = 0, peer = 0, tls = 0, metrics = 0;
    if (get_int(L, file, where, "port", 1, 65535, &port, err, errlen) < 0 ||
        get_int(L, file, where, "peer_port", 1, 65535, &peer, err, errlen) <
            0 ||
        get_int(L, file, where, "tls_port", 1, 65535, &tls, err, errlen) < 0 ||
        get_int(L, file, where, "metrics_port", 1, 65535, &metrics, err,
                errlen) < 0 ||
        get_str(L, file, where, "host", &s->host, err, errlen) < 0 ||
        get_str(L, file, where, "metrics_host", &s->metrics_host, err, errlen) <
            0) {
      lua_pop(L, 3);
      return -1;
    }
    if (port == 0) {
      snprintf(err, errlen, "%s: servers.%s needs a port", file, s->name);
      lua_pop(L, 3);
      return -1;
    }
    if (peer == 0 && port + 1000 > 65535) {
      snprintf(err, errlen,
               "%s: servers.%s: port + 1000 is not a valid "
               "peer port; set peer_port",
               file, s->name);
      lua_pop(L, 3);
      return -1;
    }
    s->port = (int)port;
    s->peer_port = peer ? (int)peer : (int)port + 1000;
    s->tls_port = (int)tls;
    if (!s->host) s->host = xstrdup("127.0.0.1");
    s->metrics_port = (int)metrics;
    if (!s->metrics_host) s->metrics_host = xstrdup("127.0.0.1");
    struct sockaddr_in6 probe;
    if (uv_ip4_addr(s->host, 1, (struct sockaddr_in *)&probe) != 0 &&
        uv_ip6_addr(s->host, 1, &probe) != 0 && !is_hostname(s->host)) {
      snprintf(err, errlen,
               "%s: servers.%s.host must be an IPv4 or IPv6 "
               "address or a DNS name, got '%s'",
               file, s->name, s->host);
      lua_pop(L, 3);
      return -1;
    }
    /* A listening address: no name to resolve. */
    if (uv_ip4_addr(s->metrics_host, 1, (struct sockaddr_in *)&probe) != 0 &&
        uv_ip6_addr(s->metrics_host, 1, &probe) != 0) {
      snprintf(err, errlen,
               "%s: servers.%s.metrics_host must be an IPv4 or IPv6 "
               "address, got '%s'",
               file, s->name, s->metrics_host);
      lua_pop(L, 3);
      return -1;
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  /* In name order, so messages (and server indexes) do not depend on the
   * order Lua's hash gives. */
  qsort(cfg->servers, (size_t)cfg->nservers, sizeof *cfg->servers, cmp_server);
  return check_port_clashes(cfg, err, errlen);
}

static int parse_limits(lua_State *L, config_t *cfg, char *err, size_t errlen) {
  conn_limits_t *l = &cfg->limits;
  l->max_line = 8192;
  l->out_pause = 256 * 1024;
  l->max_conns = 20000;
  l->max_per_addr = 0;
  l->first_line_ms = 30000;
  l->idle_ms = 600000;
  l->stall_ms = 30000;
  cfg->lua_memory = 512u << 20;
  cfg->lua_budget = 10000000;
  cfg->peer_max_frame = 1 << 20;
  cfg->peer_timeout_ms = 15000;
  cfg->max_records = 5000000;
  cfg->peer_out_max = 4u << 20;
  cfg->peer_handshake_ms = 2000;
  cfg->peer_sync_ms = 5000;
  cfg->redial_min_ms = 100;
  cfg->redial_max_ms = 5000;
  const char *file = cfg->path;
  lua_getfield(L, -1, "limits");
  if (!lua_isnil(L, -1)) {
    if (!lua_istable(L, -1)) {
      snprintf(err, errlen, "%s: limits must be a table", file);
      lua_pop(L, 1);
      return -1;
    }
    long out_max = (long)cfg->peer_out_max;
    long handshake = cfg->peer_handshake_ms;
    long sync_ms = cfg->peer_sync_ms;
    long v[12] = {(long)l->max_line,    (long)l->out_pause,
                  l->max_conns,         l->max_per_addr,
                  l->first_line_ms,     l->idle_ms,
                  l->stall_ms,          (long)(cfg->lua_memory >> 20),
                  cfg->lua_budget,      (long)cfg->peer_max_frame,
                  cfg->peer_timeout_ms, cfg->max_records};
    if (get_int(L, file, "limits.", "max_line", 16, 1 << 24, &v[0], err,
                errlen) < 0 ||
        get_int(L, file, "limits.", "out_pause", 1024, 1 << 30, &v[1], err,
                errlen) < 0 ||
        get_int(L, file, "limits.", "max_connections", 0, 1 << 24, &v[2], err,
                errlen) < 0 ||
        get_int(L, file, "limits.", "max_connections_per_address", 0, 1 << 24,
                &v[3], err, errlen) < 0 ||
        get_int(L, file, "limits.", "first_line_ms", 0, 1 << 30, &v[4], err,
                errlen) < 0 ||
        get_int(L, file, "limits.", "idle_ms", 0, 1 << 30, &v[5], err, errlen) <
            0 ||
        get_int(L, file, "limits.", "stall_ms", 0, 1 << 30, &v[6], err,
                errlen) < 0 ||
        get_int(L, file, "limits.", "lua_memory_mb", 0, 1 << 20, &v[7], err,
                errlen) < 0 ||
        get_int(L, file, "limits.", "lua_budget", 0, 1L << 40, &v[8], err,
                errlen) < 0 ||
        get_int(L, file, "limits.", "peer_max_frame", 1024, 1 << 28, &v[9], err,
                errlen) < 0 ||
        get_int(L, file, "limits.", "peer_timeout_ms", 100, 1 << 30, &v[10],
                err, errlen) < 0 ||
        get_int(L, file, "limits.", "max_records", 1, 1L << 32, &v[11], err,
                errlen) < 0 ||
        get_int(L, file, "limits.", "peer_out_max", 64 * 1024, 1L << 32,
                &out_max, err, errlen) < 0 ||
        get_int(L, file, "limits.", "peer_handshake_ms", 100, 600000,
                &handshake, err, errlen) < 0 ||
        get_int(L, file, "limits.", "peer_sync_ms", 250, 86400000, &sync_ms,
                err, errlen) < 0) {
      lua_pop(L, 1);
      return -1;
    }
    l->max_line = (size_t)v[0];
    l->out_pause = (size_t)v[1];
    l->max_conns = (unsigned)v[2];
    l->max_per_addr = (unsigned)v[3];
    l->first_line_ms = (unsigned)v[4];
    l->idle_ms = (unsigned)v[5];
    l->stall_ms = (unsigned)v[6];
    cfg->lua_memory = (size_t)v[7] << 20;
    cfg->lua_budget = v[8];
    cfg->peer_max_frame = (size_t)v[9];
    cfg->peer_timeout_ms = (unsigned)v[10];
    cfg->max_records = v[11];
    cfg->peer_out_max = (size_t)out_max;
    cfg->peer_handshake_ms = (unsigned)handshake;
    cfg->peer_sync_ms = (unsigned)sync_ms;
  }
  lua_pop(L, 1);
  lua_getfield(L, -1, "links_redial");
  if (lua_istable(L, -1)) {
    long lo = cfg->redial_min_ms, hi = cfg->redial_max_ms;
    if (get_int(L, file, "links_redial.", "min_ms", 1, 600000, &lo, err,
                errlen) < 0 ||
        get_int(L, file, "links_redial.", "max_ms", 1, 600000, &hi, err,
                errlen) < 0) {
      lua_pop(L, 1);
      return -1;
    }
    cfg->redial_min_ms = (unsigned)lo;
    cfg->redial_max_ms = (unsigned)(hi < lo ? lo : hi);
  } else if (!lua_isnil(L, -1)) {
    snprintf(err, errlen, "%s: links_redial must be { min_ms =, max_ms = }",
             file);
    lua_pop(L, 1);
    return -1;
  }
  lua_pop(L, 1);
  return 0;
}

static void add_secret(config_t *cfg, const char *s, size_t n) {
  cfg->secrets =
      xrealloc(cfg->secrets, sizeof(char *) * (size_t)(cfg->nsecrets + 1));
  cfg->secrets[cfg->nsecrets++] = strndup(s, n);
  if (!cfg->secrets[cfg->nsecrets - 1]) abort();
}

/* secret: a string ("a,b" is a list, as HERD_SECRET) or a list of
 * strings; empty entries are skipped. secret is the first. */
static int parse_secret(lua_State *L, config_t *cfg, char *err, size_t errlen) {
  lua_getfield(L, -1, "secret");
  int rc = 0;
  if (lua_type(L, -1) == LUA_TSTRING) {
    const char *p = lua_tostring(L, -1);
    while (*p) {
      size_t n = strcspn(p, ",");
      if (n) add_secret(cfg, p, n);
      p += n + (p[n] == ',');
    }
  } else if (lua_istable(L, -1)) {
    for (lua_Integer i = 1;; i++) {
      int t = lua_rawgeti(L, -1, i);
      if (t == LUA_TNIL) {
        lua_pop(L, 1);
        break;
      }
      size_t n;
      const char *v = t == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;
      if (!v || !n || strchr(v, ',')) {
        snprintf(err, errlen,
                 "%s: secret[%d] must be a non-empty string without a comma",
                 cfg->path, (int)i);
        lua_pop(L, 1);
        rc = -1;
        break;
      }
      add_secret(cfg, v, n);
      lua_pop(L, 1);
    }
  } else if (!lua_isnil(L, -1)) {
    snprintf(err, errlen, "%s: secret must be a string or a list of strings",
             cfg->path);
    rc = -1;
  }
  lua_pop(L, 1);
  if (rc == 0 && cfg->nsecrets) cfg->secret = xstrdup(cfg->secrets[0]);
  return rc;
}

/* Makes a relative *path relative to the config file's directory. */
static void beside_config(const config_t *cfg, char **path) {
  if ((*path)[0] == '/' || strcmp(cfg->dir, ".") == 0) return;
  size_t n = strlen(cfg->dir) + strlen(*path) + 2;
  char *full = xmalloc(n);
  snprintf(full, n, "%s/%s", cfg->dir, *path);
  free(*path);
  *path = full;
}

void config_with_name(const char *path, const char *name, char *out, size_t n) {
  const char *at = strstr(path, "{name}");
  if (at)
    snprintf(out, n, "%.*s%s%s", (int)(at - path), path, name, at + 6);
  else
    snprintf(out, n, "%s", path);
}

/* table = { cert = FILE, key = FILE, ca = FILE } into slots (cert, key,
 * ca): cert and key required, ca too when need_ca; each file beside the
 * config and readable. A path with "{name}" stands for each server's own
 * file: read when that server starts (or is checked). */
static int parse_cert_table(lua_State *L, config_t *cfg, const char *table,
                            char **slots[3], int need_ca, char *err,
                            size_t errlen) {
  const char *file = cfg->path;
  const char *shape = need_ca ? "{ cert = FILE, key = FILE, ca = FILE }"
                              : "{ cert = FILE, key = FILE [, ca = FILE] }";
  lua_getfield(L, -1, table);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return 0;
  }
  if (!lua_istable(L, -1)) {
    snprintf(err, errlen, "%s: %s must be %s", file, table, shape);
    lua_pop(L, 1);
    return -1;
  }
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    lua_pop(L, 1);
    const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?";
    if (!in_list(k, tls_keys)) {
      snprintf(err, errlen, "%s: unknown key '%s.%s' (known: cert, key, ca)",
               file, table, k);
      lua_pop(L, 3);
      return -1;
    }
  }
  for (int i = 0; i < 3; i++) {
    lua_getfield(L, -1, tls_keys[i]);
    if (lua_isnil(L, -1) && i == 2 && !need_ca) {
      lua_pop(L, 1);
      continue;
    }
    if (lua_type(L, -1) != LUA_TSTRING) {
      snprintf(err, errlen, "%s: %s.%s must be a file name (%s must be %s)",
               file, table, tls_keys[i], table, shape);
      lua_pop(L, 2);
      return -1;
    }
    *slots[i] = xstrdup(lua_tostring(L, -1));
    beside_config(cfg, slots[i]);
    lua_pop(L, 1);
    FILE *f = strstr(*slots[i], "{name}") ? NULL : fopen(*slots[i], "r");
    if (!f && !strstr(*slots[i], "{name}")) {
      snprintf(err, errlen, "%s: %s.%s: cannot read %s", file, table,
               tls_keys[i], *slots[i]);
      lua_pop(L, 1);
      return -1;
    }
    if (f) fclose(f);
  }
  lua_pop(L, 1);
  return 0;
}

/* tls (peer certificates): all three. client_tls (the tls_port): cert and
 * key, and every server with a tls_port needs it. */
static int parse_tls(lua_State *L, config_t *cfg, char *err, size_t errlen) {
  char **peer[3] = {&cfg->tls_cert, &cfg->tls_key, &cfg->tls_ca};
  char **client[3] = {&cfg->client_cert, &cfg->client_key, &cfg->client_ca};
  if (parse_cert_table(L, cfg, "tls", peer, 1, err, errlen) < 0 ||
      parse_cert_table(L, cfg, "client_tls", client, 0, err, errlen) < 0)
    return -1;
  for (int i = 0; i < cfg->nservers && !cfg->client_cert; i++)
    if (cfg->servers[i].tls_port) {
      snprintf(err, errlen,
               "%s: servers.%s.tls_port needs client_tls = { cert = FILE, "
               "key = FILE } (and ca = FILE to require client certificates)",
               cfg->path, cfg->servers[i].name);
      return -1;
    }
  return 0;
}

static int parse_cidr(const char *s, config_cidr_t *c) {
  char host[64];
  const char *slash = strchr(s, '/');
  size_t n = slash ? (size_t)(slash - s) : strlen(s);
  if (n == 0 || n >= sizeof host) return -1;
  memcpy(host, s, n);
  host[n] = '\0';
  int max;
  if (uv_inet_pton(AF_INET, host, c->addr) == 0) {
    c->family = AF_INET;
    max = 32;
  } else if (uv_inet_pton(AF_INET6, host, c->addr) == 0) {
    c->family = AF_INET6;
    max = 128;
  } else {
    return -1;
  }
  c->bits = max;
  if (slash) {
    char *end;
    long b = strtol(slash + 1, &end, 10);
    if (!slash[1] || *end || b < 0 || b > max) return -1;
    c->bits = (int)b;
  }
  return 0;
}

/* peers_from = { "10.0.0.0/8", "::1/128", ... } */
static int parse_peers_from(lua_State *L, config_t *cfg, char *err,
                            size_t errlen) {
  lua_getfield(L, -1, "peers_from");
  int rc = 0;
  if (lua_istable(L, -1)) {
    size_t n = lua_rawlen(L, -1);
    cfg->peers_from = xcalloc(n ? n : 1, sizeof *cfg->peers_from);
    for (size_t i = 1; i <= n && rc == 0; i++) {
      lua_rawgeti(L, -1, (lua_Integer)i);
      const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
      if (parse_cidr(v, &cfg->peers_from[cfg->npeers_from]) < 0) {
        snprintf(err, errlen,
                 "%s: peers_from[%d] must be an address block such as "
                 "\"10.0.0.0/8\" or \"::1/128\", got '%s'",
                 cfg->path, (int)i, v);
        rc = -1;
      } else {
        cfg->npeers_from++;
      }
      lua_pop(L, 1);
    }
    if (rc == 0 && n == 0) {
      snprintf(err, errlen, "%s: peers_from is empty: no peer could connect",
               cfg->path);
      rc = -1;
    }
  } else if (!lua_isnil(L, -1)) {
    snprintf(err, errlen, "%s: peers_from must be a list of address blocks",
             cfg->path);
    rc = -1;
  }
  lua_pop(L, 1);
  return rc;
}

static int parse_places(lua_State *L, config_t *cfg, char *err, size_t errlen) {
  lua_getfield(L, -1, "places");
  int rc = 0;
  if (!lua_istable(L, -1) && !lua_isnil(L, -1)) {
    snprintf(err, errlen, "%s: places must be a table", cfg->path);
    rc = -1;
  } else if (lua_istable(L, -1)) {
    rc = get_str(L, cfg->path, "places.", "provider", &cfg->places_provider,
                 err, errlen);
  }
  lua_pop(L, 1);
  if (!cfg->places_provider) cfg->places_provider = xstrdup("local");
  return rc;
}

/* places.provider must be one the scripts know, with the key it needs.
 * The config table is on top of the stack. */
static int check_places(lua_State *L, const config_t *cfg, char *err,
                        size_t errlen) {
  const char *file = cfg->path;
  char *key = NULL;
  lua_getfield(L, -1, "places");
  if (lua_istable(L, -1) &&
      get_str(L, file, "places.", "key", &key, err, errlen) < 0) {
    lua_pop(L, 1);
    return -1;
  }
  lua_pop(L, 1);
  const char *env = getenv("HERD_PLACES_PROVIDER");
  const char *from = env && *env ? " (from HERD_PLACES_PROVIDER)" : "";
  const size_t n = sizeof providers / sizeof providers[0];
  size_t i = 0;
  while (i < n && strcmp(providers[i].name, cfg->places_provider) != 0)
    i++;
  int rc = 0;
  if (i == n) {
    snprintf(err, errlen,
             "%s: places.provider: unknown provider \"%.100s\"%s; the "
             "providers are: google, google-new, local, overpass",
             file, cfg->places_provider, from);
    rc = -1;
  } else if (providers[i].needs_key && (!key || !*key)) {
    snprintf(err, errlen,
             "%s: places.provider \"%s\"%s needs an API key: set "
             "HERD_PLACES_KEY (or places.key)",
             file, cfg->places_provider, from);
    rc = -1;
  }
  free(key);
  return rc;
}

/* A list of pairs (the built-in topology's format) names only declared
 * servers. Other shapes belong to the topology script that reads them. */
static int check_links(lua_State *L, const config_t *cfg, char *err,
                       size_t errlen) {
  lua_getfield(L, -1, "links");
  int rc = 0;
  for (lua_Integer i = 1; rc == 0 && lua_istable(L, -1); i++) {
    if (lua_rawgeti(L, -1, i) != LUA_TTABLE) {
      lua_pop(L, 1);
      break;
    }
    for (int end = 1; end <= 2 && rc == 0; end++) {
      lua_rawgeti(L, -1, end);
      const char *name =
          lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
      if (name && config_find(cfg, name) < 0) {
        char names[1024];
        config_names(cfg, names, sizeof names);
        snprintf(err, errlen,
                 "%s: links[%d] names %.100s, which is not a server "
                 "(servers: %s)",
                 cfg->path, (int)i, name, names);
        rc = -1;
      }
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return rc;
}

int config_peer_allowed(const config_t *cfg, int family,
                        const unsigned char *addr) {
  if (!cfg->peers_from) return 1;
  for (int i = 0; i < cfg->npeers_from; i++) {
    const config_cidr_t *c = &cfg->peers_from[i];
    if (c->family != family) continue;
    int full = c->bits / 8, rest = c->bits % 8;
    if (memcmp(c->addr, addr, (size_t)full) != 0) continue;
    if (rest && ((c->addr[full] ^ addr[full]) & (0xff << (8 - rest)) & 0xff))
      continue;
    return 1;
  }
  return 0;
}

static char *resolve(const config_t *cfg, const char *entry) {
  char path[4096];
  size_t n = strlen(entry);
  /* A bare name ("protocol") is a built-in script; anything else is a path
   * relative to the config file. */
  if (!strchr(entry, '/') && (n < 4 || strcmp(entry + n - 4, ".lua") != 0))
    snprintf(path, sizeof path, "%s/%s.lua", script_dir(), entry);
  else if (entry[0] == '/')
    snprintf(path, sizeof path, "%s", entry);
  else
    snprintf(path, sizeof path, "%s/%s", cfg->dir, entry);
  return xstrdup(path);
}

void config_add_script(config_t *cfg, const char *path) {
  cfg->scripts =
      xrealloc(cfg->scripts, sizeof(char *) * (size_t)(cfg->nscripts + 1));
  cfg->scripts[cfg->nscripts++] = xstrdup(path);
}

static int parse_scripts(lua_State *L, config_t *cfg, char *err,
                         size_t errlen) {
  lua_getfield(L, -1, "scripts");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    char *a = resolve(cfg, "protocol"), *b = resolve(cfg, "topology");
    config_add_script(cfg, a);
    config_add_script(cfg, b);
    free(a);
    free(b);
    return 0;
  }
  if (!lua_istable(L, -1)) {
    snprintf(err, errlen,
             "%s: scripts must be a list of script names or "
             "paths",
             cfg->path);
    lua_pop(L, 1);
    return -1;
  }
  for (lua_Integer i = 1;; i++) {
    lua_rawgeti(L, -1, i);
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      break;
    }
    if (lua_type(L, -1) != LUA_TSTRING) {
      snprintf(err, errlen, "%s: scripts[%d] must be a string", cfg->path,
               (int)i);
      lua_pop(L, 2);
      return -1;
    }
    char *p = resolve(cfg, lua_tostring(L, -1));
    config_add_script(cfg, p);
    free(p);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return 0;
}

static int parse_state(lua_State *L, config_t *cfg, char *err, size_t errlen) {
  char *sync = NULL;
  long ms = 100;
  int rc = 0;
  if (get_str(L, cfg->path, "", "state_dir", &cfg->state_dir, err, errlen) <
          0 ||
      get_str(L, cfg->path, "", "state_sync", &sync, err, errlen) < 0 ||
      get_int(L, cfg->path, "", "state_sync_ms", 1, 3600000, &ms, err, errlen) <
          0)
    rc = -1;
  int mode = sync ? state_sync_parse(sync) : STATE_SYNC_BATCH;
  if (rc == 0 && mode < 0) {
    snprintf(err, errlen,
             "%s: state_sync must be \"always\", \"batch\" or \"off\"",
             cfg->path);
    rc = -1;
  }
  free(sync);
  if (cfg->state_dir && !*cfg->state_dir) {
    free(cfg->state_dir);
    cfg->state_dir = NULL;
  }
  /* Relative to the config file, as log_dir; HERD_STATE_DIR is the
   * shell's, relative to the working directory. */
  const char *env_dir = getenv("HERD_STATE_DIR");
  if (cfg->state_dir && (!env_dir || !*env_dir))
    beside_config(cfg, &cfg->state_dir);
  cfg->state_sync = mode < 0 ? STATE_SYNC_BATCH : (state_sync_t)mode;
  cfg->state_sync_ms = (unsigned)ms;
  return rc;
}

int config_load(lua_State *L, const char *path, config_t *cfg, char *err,
                size_t errlen) {
  memset(cfg, 0, sizeof *cfg);
  cfg->log_io = 1;
  cfg->path = xstrdup(path);
  const char *slash = strrchr(path, '/');
  cfg->dir = slash ? strndup(path, (size_t)(slash - path)) : xstrdup(".");
  if (!cfg->dir) cfg->dir = xstrdup(".");

  lua_pushcfunction(L, msghandler);
  if (luaL_loadfilex(L, path, "t") != LUA_OK) {
    snprintf(err, errlen, "%s", lua_tostring(L, -1));
    lua_pop(L, 2);
    return -1;
  }
  if (lua_pcall(L, 0, 1, -2) != LUA_OK) {
    snprintf(err, errlen, "%s", lua_tostring(L, -1));
    lua_pop(L, 2);
    return -1;
  }
  lua_remove(L, -2);
  if (!lua_istable(L, -1)) {
    snprintf(err, errlen, "%s: the config must return a table, got %s", path,
             luaL_typename(L, -1));
    lua_pop(L, 1);
    return -1;
  }
  apply_env(L);
  char *log_format = NULL;
  int rc = 0;
  if (parse_servers(L, cfg, err, errlen) < 0 ||
      parse_limits(L, cfg, err, errlen) < 0 ||
      parse_scripts(L, cfg, err, errlen) < 0 ||
      get_str(L, path, "", "log_dir", &cfg->log_dir, err, errlen) < 0 ||
      get_str(L, path, "", "log_format", &log_format, err, errlen) < 0 ||
      parse_secret(L, cfg, err, errlen) < 0 ||
      parse_tls(L, cfg, err, errlen) < 0 ||
      parse_peers_from(L, cfg, err, errlen) < 0 ||
      get_str(L, path, "", "admin_socket", &cfg->admin_socket, err, errlen) <
          0 ||
      get_bool(L, path, "secret_is_development", &cfg->dev_secret, err,
               errlen) < 0 ||
      get_bool(L, path, "insecure", &cfg->insecure, err, errlen) < 0 ||
      get_bool(L, path, "log_io", &cfg->log_io, err, errlen) < 0)
    rc = -1;
  if (rc == 0 && log_format && strcmp(log_format, "plain") != 0 &&
      strcmp(log_format, "json") != 0) {
    snprintf(err, errlen, "%s: log_format must be \"plain\" or \"json\"", path);
    rc = -1;
  }
  cfg->log_json = log_format && strcmp(log_format, "json") == 0;
  free(log_format);
  if (rc == 0) rc = parse_places(L, cfg, err, errlen);
  if (rc == 0 && parse_state(L, cfg, err, errlen) < 0) rc = -1;
  if (!cfg->log_dir) cfg->log_dir = xstrdup("logs");
  /* Paths in the file are relative to the file (as scripts and places.data
   * are), so herd ctl finds the socket from any directory; HERD_LOG_DIR is
   * the shell's, relative to the working directory. */
  const char *env_log_dir = getenv("HERD_LOG_DIR");
  if (!env_log_dir || !*env_log_dir) beside_config(cfg, &cfg->log_dir);
  if (cfg->admin_socket) beside_config(cfg, &cfg->admin_socket);
  lua_setfield(L, LUA_REGISTRYINDEX, CONFIG_REGISTRY_KEY);
  return rc;
}

void config_free(config_t *cfg) {
  for (int i = 0; i < cfg->nservers; i++) {
    free(cfg->servers[i].name);
    free(cfg->servers[i].host);
    free(cfg->servers[i].metrics_host);
  }
  free(cfg->servers);
  for (int i = 0; i < cfg->nscripts; i++)
    free(cfg->scripts[i]);
  free(cfg->scripts);
  free(cfg->path);
  free(cfg->dir);
  free(cfg->log_dir);
  free(cfg->secret);
  for (int i = 0; i < cfg->nsecrets; i++)
    free(cfg->secrets[i]);
  free(cfg->secrets);
  free(cfg->tls_cert);
  free(cfg->tls_key);
  free(cfg->tls_ca);
  free(cfg->client_cert);
  free(cfg->client_key);
  free(cfg->client_ca);
  free(cfg->peers_from);
  free(cfg->admin_socket);
  free(cfg->places_provider);
  free(cfg->state_dir);
  memset(cfg, 0, sizeof *cfg);
}

/* core.config_key(path): a script says it reads the config key at path
 * ("places.filter", "whereis") and checks what is under it itself. */
static int l_config_key(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  if (lua_getfield(L, LUA_REGISTRYINDEX, REGISTRY_DECLARED) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, REGISTRY_DECLARED);
  }
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, path);
  lua_pop(L, 1);
  return 0;
}

void config_lua_register(lua_State *L) {
  lua_pushcfunction(L, l_config_key);
  lua_setfield(L, -2, "config_key");
}

static int declared(lua_State *L, const char *path) {
  int yes = 0;
  if (lua_getfield(L, LUA_REGISTRYINDEX, REGISTRY_DECLARED) == LUA_TTABLE) {
    yes = lua_getfield(L, -1, path) != LUA_TNIL;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return yes;
}

/* Checks the keys of the table on top of the stack, called path. */
static int check_table(lua_State *L, const config_t *cfg, const char *path,
                       const char *const *keys, char *err, size_t errlen) {
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    lua_pop(L, 1);
    char full[512];
    if (lua_type(L, -1) == LUA_TSTRING)
      snprintf(full, sizeof full, "%s%s%s", path, *path ? "." : "",
               lua_tostring(L, -1));
    else
      snprintf(full, sizeof full, "%s[%s]", path, luaL_typename(L, -1));
    if (lua_type(L, -1) == LUA_TSTRING &&
        (in_list(lua_tostring(L, -1), keys) || declared(L, full)))
      continue;
    char known[1024] = "";
    for (int i = 0; keys[i]; i++) {
      if (i) strncat(known, ", ", sizeof known - strlen(known) - 1);
      strncat(known, keys[i], sizeof known - strlen(known) - 1);
    }
    snprintf(err, errlen, "%s: unknown key '%.200s' (known in %s: %s)",
             cfg->path, full, *path ? path : "the config", known);
    lua_pop(L, 1);
    return -1;
  }
  return 0;
}

int config_check(lua_State *L, const config_t *cfg, char *err, size_t errlen) {
  lua_getfield(L, LUA_REGISTRYINDEX, CONFIG_REGISTRY_KEY);
  int rc = check_places(L, cfg, err, errlen);
  if (rc == 0) rc = check_links(L, cfg, err, errlen);
  lua_pop(L, 1);
  return rc;
}

int config_check_keys(lua_State *L, const config_t *cfg, char *err,
                      size_t errlen) {
  lua_getfield(L, LUA_REGISTRYINDEX, CONFIG_REGISTRY_KEY);
  int rc = 0;
  const size_t n = sizeof config_tables / sizeof config_tables[0];
  for (size_t t = 0; t < n && rc == 0; t++) {
    const char *path = config_tables[t].path;
    const char *star = strstr(path, ".*");
    char name[256];
    snprintf(name, sizeof name, "%.*s",
             (int)(star ? (size_t)(star - path) : strlen(path)), path);
    if (*name)
      lua_getfield(L, -1, name);
    else
      lua_pushvalue(L, -1);
    if (!lua_istable(L, -1)) {
      lua_pop(L, 1);
      continue;
    }
    if (!star) {
      rc = check_table(L, cfg, name, config_tables[t].keys, err, errlen);
    } else {
      lua_pushnil(L);
      while (rc == 0 && lua_next(L, -2)) {
        if (lua_type(L, -2) == LUA_TSTRING && lua_istable(L, -1)) {
          char sub[512];
          snprintf(sub, sizeof sub, "%s.%s", name, lua_tostring(L, -2));
          rc = check_table(L, cfg, sub, config_tables[t].keys, err, errlen);
        }
        lua_pop(L, 1);
      }
      if (rc < 0) lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return rc;
}

int config_find(const config_t *cfg, const char *name) {
  for (int i = 0; i < cfg->nservers; i++)
    if (strcmp(cfg->servers[i].name, name) == 0) return i;
  return -1;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

void config_names(const config_t *cfg, char *out, size_t n) {
  const char **names = xcalloc((size_t)cfg->nservers, sizeof *names);
  for (int i = 0; i < cfg->nservers; i++)
    names[i] = cfg->servers[i].name;
  qsort(names, (size_t)cfg->nservers, sizeof *names, cmp_str);
  out[0] = '\0';
  for (int i = 0; i < cfg->nservers; i++) {
    if (i) strncat(out, ", ", n - strlen(out) - 1);
    strncat(out, names[i], n - strlen(out) - 1);
  }
  free(names);
}
