/* config: see config.h. */
#include "config.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "buf.h"
#include "script.h"

static const char *known_keys[] = {
    "servers",  "links",      "scripts",      "places",
    "log_dir",  "log_format", "secret",       "secret_is_development",
    "insecure", "limits",     "links_redial", "admin_socket",
    NULL};

static const char *limit_keys[] = {"max_line",
                                   "out_pause",
                                   "max_connections",
                                   "max_connections_per_address",
                                   "first_line_ms",
                                   "idle_ms",
                                   "stall_ms",
                                   "lua_memory_mb",
                                   "lua_budget",
                                   "peer_max_frame",
                                   "peer_timeout_ms",
                                   "max_records",
                                   NULL};

static int in_list(const char *key, const char **list) {
  for (int i = 0; list[i]; i++)
    if (strcmp(key, list[i]) == 0) return 1;
  return 0;
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

static int get_str(lua_State *L, const char *file, const char *key, char **out,
                   char *err, size_t errlen) {
  lua_getfield(L, -1, key);
  int rc = 0;
  if (lua_type(L, -1) == LUA_TSTRING) {
    free(*out);
    *out = xstrdup(lua_tostring(L, -1));
  } else if (!lua_isnil(L, -1)) {
    snprintf(err, errlen, "%s: %s must be a string", file, key);
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
    char where[300];
    snprintf(where, sizeof where, "servers.%s.", s->name);
    long port = 0, peer = 0, metrics = 0;
    if (get_int(L, file, where, "port", 1, 65535, &port, err, errlen) < 0 ||
        get_int(L, file, where, "peer_port", 1, 65535, &peer, err, errlen) <
            0 ||
        get_int(L, file, where, "metrics_port", 1, 65535, &metrics, err,
                errlen) < 0 ||
        get_str(L, file, "host", &s->host, err, errlen) < 0 ||
        get_str(L, file, "metrics_host", &s->metrics_host, err, errlen) < 0) {
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
    if (!s->host) s->host = xstrdup("127.0.0.1");
    s->metrics_port = (int)metrics;
    if (!s->metrics_host) s->metrics_host = xstrdup("127.0.0.1");
    struct sockaddr_in6 probe;
    const char *bad = NULL;
    if (uv_ip4_addr(s->host, 1, (struct sockaddr_in *)&probe) != 0 &&
        uv_ip6_addr(s->host, 1, &probe) != 0)
      bad = "host";
    else if (uv_ip4_addr(s->metrics_host, 1, (struct sockaddr_in *)&probe) !=
                 0 &&
             uv_ip6_addr(s->metrics_host, 1, &probe) != 0)
      bad = "metrics_host";
    if (bad) {
      snprintf(err, errlen,
               "%s: servers.%s.%s must be an IPv4 or IPv6 "
               "address, got '%s'",
               file, s->name, bad, *bad == 'h' ? s->host : s->metrics_host);
      lua_pop(L, 3);
      return -1;
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return 0;
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
  cfg->lua_budget = 50000000;
  cfg->peer_max_frame = 1 << 20;
  cfg->peer_timeout_ms = 15000;
  cfg->max_records = 5000000;
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
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      lua_pop(L, 1);
      const char *k =
          lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?";
      if (!in_list(k, limit_keys)) {
        snprintf(err, errlen, "%s: unknown limit '%s'", file, k);
        lua_pop(L, 2);
        return -1;
      }
    }
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
                errlen) < 0) {
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

int config_load(lua_State *L, const char *path, config_t *cfg, char *err,
                size_t errlen) {
  memset(cfg, 0, sizeof *cfg);
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
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    lua_pop(L, 1);
    const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?";
    if (!in_list(k, known_keys)) {
      snprintf(err, errlen,
               "%s: unknown key '%s' (known: servers, links, scripts, places, "
               "log_dir, log_format, secret, secret_is_development, "
               "insecure, limits, links_redial, admin_socket)",
               path, k);
      lua_pop(L, 2);
      return -1;
    }
  }
  apply_env(L);
  char *log_format = NULL;
  int rc = 0;
  if (parse_servers(L, cfg, err, errlen) < 0 ||
      parse_limits(L, cfg, err, errlen) < 0 ||
      parse_scripts(L, cfg, err, errlen) < 0 ||
      get_str(L, path, "log_dir", &cfg->log_dir, err, errlen) < 0 ||
      get_str(L, path, "log_format", &log_format, err, errlen) < 0 ||
      get_str(L, path, "secret", &cfg->secret, err, errlen) < 0 ||
      get_str(L, path, "admin_socket", &cfg->admin_socket, err, errlen) < 0 ||
      get_bool(L, path, "secret_is_development", &cfg->dev_secret, err,
               errlen) < 0 ||
      get_bool(L, path, "insecure", &cfg->insecure, err, errlen) < 0)
    rc = -1;
  if (rc == 0 && log_format && strcmp(log_format, "plain") != 0 &&
      strcmp(log_format, "json") != 0) {
    snprintf(err, errlen, "%s: log_format must be \"plain\" or \"json\"", path);
    rc = -1;
  }
  cfg->log_json = log_format && strcmp(log_format, "json") == 0;
  free(log_format);
  if (rc == 0) {
    lua_getfield(L, -1, "places");
    if (lua_istable(L, -1)) {
      lua_getfield(L, -1, "provider");
      if (lua_type(L, -1) == LUA_TSTRING)
        cfg->places_provider = xstrdup(lua_tostring(L, -1));
      lua_pop(L, 1);
    } else if (!lua_isnil(L, -1)) {
      snprintf(err, errlen, "%s: places must be a table", path);
      rc = -1;
    }
    lua_pop(L, 1);
  }
  if (cfg->secret && !*cfg->secret) {
    free(cfg->secret);
    cfg->secret = NULL;
  }
  if (!cfg->log_dir) cfg->log_dir = xstrdup("logs");
  if (!cfg->places_provider) cfg->places_provider = xstrdup("local");
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
  free(cfg->admin_socket);
  free(cfg->places_provider);
  memset(cfg, 0, sizeof *cfg);
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
