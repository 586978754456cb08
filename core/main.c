/* main: the herd server process.
 * Owns the command line, the start-up sequence (config, scripts, topology,
 * log, listeners), the loop phases that flush output, the signals and the
 * orderly shutdown. Exit codes: 0 clean stop or --check passed, 1 a config,
 * script or start-up error, 2 a command-line error. */
#include <errno.h>
#include <lauxlib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <uv.h>

#include "admin.h"
#include "buf.h"
#include "config.h"
#include "conn.h"
#include "forward.h"
#include "http.h"
#include "log.h"
#include "lua_core.h"
#include "metrics.h"
#include "peer.h"
#include "places.h"
#include "records.h"
#include "script.h"
#include "state.h"
#include "store.h"
#include "tls.h"

#define MAX_EXTRA_SCRIPTS 64

static const char usage[] =
    "usage: herd --config FILE [--script FILE]... [--check] NAME\n"
    "       herd ctl --config FILE NAME COMMAND   (stats, links, records,\n"
    "                 record CLIENT, cut NAME MS, reload)\n"
    "\n"
    "Runs the server NAME of the herd that FILE (a Lua config) declares.\n"
    "\n"
    "  --config FILE   the herd's config file (required)\n"
    "  --script FILE   load an extra script after the config's own "
    "(repeatable)\n"
    "  --check         load and validate config and scripts, print what is\n"
    "                  wrong, exit 0 or 1 without serving (NAME optional:\n"
    "                  without it every server is checked)\n"
    "  --help          this text\n"
    "  --version       the version\n"
    "\n"
    "Environment: HERD_PLACES_PROVIDER, HERD_PLACES_URL, HERD_PLACES_KEY,\n"
    "HERD_SECRET, HERD_LOG_DIR override the config; HERD_SCRIPT_DIR moves\n"
    "the built-in scripts. SIGTERM or SIGINT stops the server cleanly;\n"
    "SIGHUP reloads the scripts.\n";

typedef struct options {
  const char *config;
  const char *name;
  const char *scripts[MAX_EXTRA_SCRIPTS];
  int nscripts;
  int check;
} options_t;

static uv_loop_t *loop;
static uv_prepare_t prepare;
static uv_check_t check;
static uv_timer_t log_timer;
static uv_signal_t sig_term, sig_int, sig_hup;
static uv_timer_t reaper;
static int stopping;
static options_t opts;
static config_t server_cfg;
static int self_idx = -1;
static int *running_nb, running_nnb; /* neighbours at start-up */
static tls_ctx_t *client_tls_ctx;    /* the tls_port's, NULL without one */
/* States replaced by a reload, each closed once nothing of its own is
 * pending (no HTTP request, no timer), so no request in flight is dropped. */
static lua_State **retired;
static int nretired;

static int parse_args(int argc, char **argv, options_t *o) {
  memset(o, 0, sizeof *o);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      fputs(usage, stdout);
      exit(0);
    } else if (strcmp(a, "--version") == 0) {
      printf("herd %s (Lua %s.%s, libuv %s)\n", HERD_VERSION, LUA_VERSION_MAJOR,
             LUA_VERSION_MINOR, uv_version_string());
      exit(0);
    } else if (strcmp(a, "--check") == 0) {
      o->check = 1;
    } else if (strcmp(a, "--config") == 0 || strcmp(a, "--script") == 0) {
      if (i + 1 >= argc) {
        fprintf(stderr, "herd: %s needs a file\n%s", a, usage);
        return -1;
      }
      if (a[2] == 'c') {
        o->config = argv[++i];
      } else {
        if (o->nscripts == MAX_EXTRA_SCRIPTS) {
          fprintf(stderr, "herd: at most %d --script options\n",
                  MAX_EXTRA_SCRIPTS);
          return -1;
        }
        o->scripts[o->nscripts++] = argv[++i];
      }
    } else if (a[0] == '-') {
      fprintf(stderr, "herd: unknown option %s\n%s", a, usage);
      return -1;
    } else if (o->name) {
      fprintf(stderr, "herd: one server NAME only (got %s and %s)\n", o->name,
              a);
      return -1;
    } else {
      o->name = a;
    }
  }
  if (!o->config) {
    fprintf(stderr, "herd: --config FILE is required\n%s", usage);
    return -1;
  }
  if (!o->name && !o->check) {
    fprintf(stderr, "herd: which server? give its NAME\n%s", usage);
    return -1;
  }
  return 0;
}

/* Asks the topology script for self's neighbours and checks them. Returns
 * their count (indexes in out, which has room for cfg->nservers) or -1. */
static int neighbours(lua_State *L, const config_t *cfg, int self, int *out,
                      char *err, size_t errlen) {
  if (script_push_hook(L, HOOK_NEIGHBOURS) < 0) return 0;
  lua_pushstring(L, cfg->servers[self].name);
  lua_getfield(L, LUA_REGISTRYINDEX, CONFIG_REGISTRY_KEY);
  if (script_call(L, 2, 1, "neighbours") < 0) {
    snprintf(err, errlen, "the topology script failed (see the error above)");
    return -1;
  }
  if (!lua_istable(L, -1)) {
    snprintf(err, errlen, "neighbours() must return a list of names, got %s",
             luaL_typename(L, -1));
    lua_pop(L, 1);
    return -1;
  }
  int n = 0;
  for (lua_Integer i = 1; n < cfg->nservers; i++) {
    lua_rawgeti(L, -1, i);
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      break;
    }
    const char *name = lua_tostring(L, -1);
    int idx = name ? config_find(cfg, name) : -1;
    if (idx < 0 || idx == self) {
      snprintf(err, errlen, "neighbours(%s) names %s, which is %s",
               cfg->servers[self].name, name ? name : "a non-string",
               idx == self ? "the server itself" : "not a declared server");
      lua_pop(L, 2);
      return -1;
    }
    int dup = 0;
    for (int j = 0; j < n; j++)
      dup |= out[j] == idx;
    if (!dup) out[n++] = idx;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return n;
}

/* Loads config and scripts into a fresh state. */
static lua_State *load_all(const options_t *o, config_t *cfg, char *err,
                           size_t errlen) {
  script_limits_t lim = {0, 0};
  lua_State *L = script_open(&lim, script_dir(), NULL, err, errlen);
  if (!L) return NULL;
  if (config_load(L, o->config, cfg, err, errlen) < 0 ||
      config_check(L, cfg, err, errlen) < 0)
    goto fail;
  for (int i = 0; i < o->nscripts; i++)
    config_add_script(cfg, o->scripts[i]);
  script_set_limits(L, cfg->lua_memory, cfg->lua_budget);
  script_set_path(L, cfg->dir);
  for (int i = 0; i < cfg->nscripts; i++)
    if (script_load(L, cfg->scripts[i], err, errlen) < 0) goto fail;
  if (script_check(L, err, errlen) < 0) goto fail;
  if (config_check_keys(L, cfg, err, errlen) < 0) goto fail;
  return L;
fail:
  /* A refused script may have started timers or requests already. */
  lua_core_cancel_timers(L);
  http_cancel_state(L);
  script_close(L);
  config_free(cfg);
  return NULL;
}

/* With the local provider, maps its data: places.data (relative to the
 * config file), else the default file (places_default_path). A server
 * whose provider has no data would answer every WHATSAT with an error, so
 * it does not start (and --check says so). */
static int open_places(lua_State *L, const config_t *cfg, char *err,
                       size_t errlen) {
  if (strcmp(cfg->places_provider, "local") != 0) return 0;
  lua_getfield(L, LUA_REGISTRYINDEX, CONFIG_REGISTRY_KEY);
  lua_getfield(L, -1, "places");
  char path[4096] = "";
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, "data");
    const char *data = lua_tostring(L, -1);
    if (data && data[0] == '/')
      snprintf(path, sizeof path, "%s", data);
    else if (data)
      snprintf(path, sizeof path, "%s/%s", cfg->dir, data);
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
  char why[1024];
  if (places_open(*path ? path : NULL, why, sizeof why) == 0) return 0;
  snprintf(err, errlen,
           "%.1024s: the local places provider has no data: %s (%s)", cfg->path,
           why,
           *path ? "places.data"
                 : "set places.data, or HERD_DATA_DIR to a directory with "
                   "places.bin or places-sample.bin");
  return -1;
}

/* Which places data this server answers from (item of the start-up log). */
static void log_places(const config_t *cfg) {
  if (strcmp(cfg->places_provider, "local") != 0) {
    log_info("places: provider %s", cfg->places_provider);
    return;
  }
  const char *path = places_path(), *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  log_info("places: provider local, %s: %u places (%s), %s", path,
           places_count(),
           strstr(base, "sample") ? "the sample: make places-data for all"
                                  : "full data",
           places_source());
}

static int check_server(lua_State *L, const config_t *cfg, int self, int *nb,
                        int *nnb, char *err, size_t errlen) {
  *nnb = neighbours(L, cfg, self, nb, err, errlen);
  if (*nnb < 0) return -1;
  if (*nnb > 0 && !cfg->secret && !cfg->tls_cert && !cfg->insecure) {
    snprintf(err, errlen,
             "server %s has links but no secret: set HERD_SECRET or the "
             "config's secret, or tls = { cert, key, ca } (or insecure = true "
             "for a herd without authentication)",
             cfg->servers[self].name);
    return -1;
  }
  return 0;
}

/* The tls_port's TLS context for server self (its client_tls files with
 * {name} filled in) into *out: 0 (NULL when self has no tls_port), or -1
 * with a message naming the config and the file. */
static int client_tls(const config_t *cfg, int self, tls_ctx_t **out, char *err,
                      size_t errlen) {
  const config_server_t *s = &cfg->servers[self];
  *out = NULL;
  if (!s->tls_port) return 0;
  char cert[4096], key[4096], ca[4096], why[1024];
  config_with_name(cfg->client_cert, s->name, cert, sizeof cert);
  config_with_name(cfg->client_key, s->name, key, sizeof key);
  if (cfg->client_ca) config_with_name(cfg->client_ca, s->name, ca, sizeof ca);
  *out = tls_ctx_server(cert, key, cfg->client_ca ? ca : NULL, why, sizeof why);
  if (*out) return 0;
  snprintf(err, errlen, "%.1024s: client_tls of servers.%s (tls_port %d): %s",
           cfg->path, s->name, s->tls_port, why);
  return -1;
}

static int run_check(const options_t *o) {
  char err[4096];
  script_watchdog_start(); /* a script stuck while loading is stopped */
  config_t cfg;
  lua_core_init(NULL, o->name ? o->name : "");
  lua_State *L = load_all(o, &cfg, err, sizeof err);
  if (!L) {
    fprintf(stderr, "herd: %s\n", err);
    return 1;
  }
  int rc = 0;
  int *nb = xcalloc((size_t)cfg.nservers, sizeof *nb);
  for (int i = 0; i < cfg.nservers; i++) {
    if (o->name && strcmp(o->name, cfg.servers[i].name) != 0) continue;
    int nnb;
    tls_ctx_t *tls;
    if (check_server(L, &cfg, i, nb, &nnb, err, sizeof err) < 0 ||
        client_tls(&cfg, i, &tls, err, sizeof err) < 0) {
      fprintf(stderr, "herd: %s\n", err);
      rc = 1;
    }
    tls_ctx_free(tls);
  }
  free(nb);
  if (o->name && config_find(&cfg, o->name) < 0) {
    char names[1024];
    config_names(&cfg, names, sizeof names);
    fprintf(stderr, "herd: unknown server '%s'; %s declares: %s\n", o->name,
            o->config, names);
    rc = 1;
  }
  if (open_places(L, &cfg, err, sizeof err) < 0) {
    fprintf(stderr, "herd: %s\n", err);
    rc = 1;
  }
  places_close();
  for (int i = 0; cfg.state_dir && i < cfg.nservers; i++) {
    if (o->name && strcmp(o->name, cfg.servers[i].name) != 0) continue;
    if (state_check(cfg.state_dir, cfg.servers[i].name, err, sizeof err) < 0) {
      fprintf(stderr, "herd: %s\n", err);
      rc = 1;
    }
  }
  if (rc == 0)
    printf("%s: ok (%d servers, %d scripts)\n", o->config, cfg.nservers,
           cfg.nscripts);
  script_close(L);
  config_free(&cfg);
  return rc;
}

static uint64_t log_written_ms; /* loop time of the last log write */

static void log_write_now(void) {
  log_flush();
  log_written_ms = uv_now(loop);
}

static void on_log_timer(uv_timer_t *t) {
  log_write_now();
}

/* Peer frames and replies leave every loop phase, the peer frames first:
 * an IAMAT's AT reply is its acknowledgement, and by the time a client
 * reads it the record has been written to every live link (unless a
 * link's socket buffer is full; the rest follows as it drains), so killing
 * this server does not take the only copy of an acknowledged location.
 * (Replies first would win 10-20 % in the bench's
 * five-server herd, where the woken neighbours run on the same core
 * before this server has answered; the crash spec caught the lost
 * acknowledgement it costs.) The log is written after them, in batches:
 * at most one write per LOG_DELAY_MS (or at LOG_BATCH bytes), so a busy
 * server makes one write per batch, not one per loop turn (8 % of its
 * IAMAT throughput). A quiet server writes in the turn that logged, with
 * no timer: a flush timer 2 ms after each line woke every server of the
 * five-server herd once more per record, in the middle of the next
 * record's propagation at low rate. */
static void on_loop_phase(void) {
  state_commit(); /* before the replies that acknowledge its records */
  peer_flush_all();
  conn_flush_all();
  log_tick();
  size_t pending = log_pending();
  if (!pending) return;
  uint64_t since = uv_now(loop) - log_written_ms;
  if (pending >= LOG_BATCH || since >= LOG_DELAY_MS) {
    log_write_now();
    uv_timer_stop(&log_timer);
  } else if (!uv_is_active((uv_handle_t *)&log_timer)) {
    uv_timer_start(&log_timer, on_log_timer, LOG_DELAY_MS - since, 0);
  }
}

static void on_prepare(uv_prepare_t *h) {
  conn_next_turn();
  on_loop_phase();
}

/* A turn runs from one check to the next: everything the loop did in
 * between but wait in the poll (libuv's idle time). Keeping that time
 * costs libuv a poll with no timeout before each one that would wait (one
 * epoll_wait more per wake-up, strace), which no other way of telling the
 * wait from the callbacks in the poll phase avoids on libuv 1.44. */
static void on_check(uv_check_t *h) {
  static uint64_t last_at, last_idle;
  uint64_t now = uv_hrtime(), idle = uv_metrics_idle_time(loop);
  if (last_at) metrics_count_turn((now - last_at) - (idle - last_idle));
  last_at = now;
  last_idle = idle;
  on_loop_phase();
}

static void close_walk(uv_handle_t *h, void *arg) {
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

static void on_signal(uv_signal_t *h, int signum) {
  if (stopping) return;
  stopping = 1;
  log_info("stopping on %s", signum == SIGTERM ? "SIGTERM" : "SIGINT");
  uv_stop(loop);
}

static void close_retired(int force) {
  for (int i = 0; i < nretired;) {
    lua_State *L = retired[i];
    if (force || (http_in_flight_for(L) == 0 && lua_core_timer_count(L) == 0)) {
      if (force) http_cancel_state(L);
      lua_core_cancel_timers(L);
      script_close(L);
      retired[i] = retired[--nretired];
    } else {
      i++;
    }
  }
}

static void on_reaper(uv_timer_t *t) {
  close_retired(0);
}

static int str_differs(const char *a, const char *b) {
  return (a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0);
}

/* Names what a reloaded config changes that only a restart applies. */
static void restart_needed(lua_State *L, const config_t *c, char *out,
                           size_t n) {
  const config_t *o = &server_cfg;
  int same_servers = c->nservers == o->nservers;
  for (int i = 0; same_servers && i < o->nservers; i++) {
    int j = config_find(c, o->servers[i].name);
    same_servers =
        j >= 0 && c->servers[j].port == o->servers[i].port &&
        c->servers[j].peer_port == o->servers[i].peer_port &&
        c->servers[j].tls_port == o->servers[i].tls_port &&
        strcmp(c->servers[j].host, o->servers[i].host) == 0 &&
        c->servers[j].metrics_port == o->servers[i].metrics_port &&
        strcmp(c->servers[j].metrics_host, o->servers[i].metrics_host) == 0;
  }
  int *nb = xcalloc((size_t)c->nservers, sizeof *nb);
  int nnb = -1, same_links = 0;
  char err[256];
  int self = config_find(c, o->servers[self_idx].name);
  if (self >= 0) nnb = neighbours(L, c, self, nb, err, sizeof err);
  if (nnb == running_nnb) {
    same_links = 1;
    for (int i = 0; i < nnb; i++)
      same_links &=
          strcmp(c->servers[nb[i]].name, o->servers[running_nb[i]].name) == 0;
  }
  free(nb);
  out[0] = '\0';
#define CHANGED(cond, what)                            \
  if (cond) {                                          \
    if (*out) strncat(out, ", ", n - strlen(out) - 1); \
    strncat(out, what, n - strlen(out) - 1);           \
  }
  CHANGED(!same_servers, "servers");
  CHANGED(!same_links, "links");
  CHANGED(c->insecure != o->insecure, "insecure");
  CHANGED(c->npeers_from != o->npeers_from ||
              (c->npeers_from &&
               memcmp(c->peers_from, o->peers_from,
                      sizeof *c->peers_from * (size_t)c->npeers_from) != 0),
          "peers_from");
  CHANGED(str_differs(c->tls_cert, o->tls_cert) ||
              str_differs(c->tls_key, o->tls_key) ||
              str_differs(c->tls_ca, o->tls_ca),
          "tls");
  CHANGED(str_differs(c->client_cert, o->client_cert) ||
              str_differs(c->client_key, o->client_key) ||
              str_differs(c->client_ca, o->client_ca),
          "client_tls");
  CHANGED(str_differs(c->state_dir, o->state_dir) ||
              c->state_sync != o->state_sync ||
              c->state_sync_ms != o->state_sync_ms,
          "state_dir/state_sync");
  CHANGED(str_differs(c->log_dir, o->log_dir) || c->log_json != o->log_json,
          "log_dir/log_format");
  CHANGED(str_differs(c->admin_socket, o->admin_socket), "admin_socket");
  CHANGED(memcmp(&c->limits, &o->limits, sizeof c->limits) != 0 ||
              c->peer_max_frame != o->peer_max_frame ||
              c->peer_timeout_ms != o->peer_timeout_ms ||
              c->max_records != o->max_records ||
              c->peer_out_max != o->peer_out_max ||
              c->peer_handshake_ms != o->peer_handshake_ms,
          "limits");
  CHANGED(c->redial_min_ms != o->redial_min_ms ||
              c->redial_max_ms != o->redial_max_ms,
          "links_redial");
#undef CHANGED
}

/* Loads config and scripts into a fresh state and swaps it in only if all
 * of it loads. Requests in flight finish in the old state, which is closed
 * once they are done; its repeating timers stop now. Listeners, links and
 * limits keep their start-up values (they need a restart). */
static int reload(char *msg, size_t n) {
  char err[4096];
  config_t fresh;
  lua_State *L = load_all(&opts, &fresh, err, sizeof err);
  if (!L) {
    metrics_count_reload(0);
    log_error("reload failed, the running scripts stay: %s", err);
    snprintf(msg, n, "%s", err);
    return -1;
  }
  char later[512];
  restart_needed(L, &fresh, later, sizeof later);
  if (*later)
    log_warn(
        "reload: the config changes %s, which take effect only on a "
        "restart; the new scripts run with the old values",
        later);
  /* New secrets apply at once: links up stay up, new handshakes offer
   * the new first secret and accept any of the list (rotation). */
  if (fresh.nsecrets && !server_cfg.insecure && !server_cfg.tls_cert)
    peer_set_secrets(&fresh);
  log_set_io(fresh.log_io); /* applies at once: no history kept from now */
  config_free(&fresh);
  log_reopen();
  lua_State *old = script_current();
  retired = xrealloc(retired, sizeof *retired * (size_t)(nretired + 1));
  retired[nretired++] = old;
  script_set_current(L);
  forward_reset(); /* the new scripts' forward hook decides from now */
  metrics_count_reload(1);
  log_info("scripts reloaded: %s", script_versions(L));
  log_info("dissemination: %s", forward_rule());
  if (script_push_hook(L, HOOK_ON_START) == 0) script_call(L, 0, 0, "on_start");
  lua_core_retire(old);
  if (*later)
    snprintf(msg, n,
             "%s; warning: the config changes %s, which take effect only on "
             "a restart (the running values stay)",
             script_versions(L), later);
  else
    snprintf(msg, n, "%s", script_versions(L));
  close_retired(0);
  return 0;
}

static void on_hup(uv_signal_t *h, int signum) {
  char msg[4096];
  reload(msg, sizeof msg);
}

/* admin_socket may name the server with {name}, so one config serves
 * several servers on one machine; by default <log_dir>/<NAME>.sock. */
static void admin_path(const config_t *c, const char *name, char *out,
                       size_t n) {
  if (!c->admin_socket) {
    snprintf(out, n, "%s/%s.sock", c->log_dir, name);
    return;
  }
  const char *at = strstr(c->admin_socket, "{name}");
  if (at)
    snprintf(out, n, "%.*s%s%s", (int)(at - c->admin_socket), c->admin_socket,
             name, at + 6);
  else
    snprintf(out, n, "%s", c->admin_socket);
}

/* herd ctl --config FILE NAME COMMAND... */
static int run_ctl(int argc, char **argv) {
  const char *config = NULL, *name = NULL;
  buf_t command = {0};
  for (int i = 2; i < argc; i++) {
    if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
      config = argv[++i];
    } else if (!name) {
      name = argv[i];
    } else {
      if (command.len) buf_append(&command, " ", 1);
      buf_append_str(&command, argv[i]);
    }
  }
  if (!config || !name || !command.len) {
    fprintf(stderr, "usage: herd ctl --config FILE NAME COMMAND\n");
    buf_free(&command);
    return 2;
  }
  if (command.len > ADMIN_MAX_LINE) {
    fprintf(stderr, "herd ctl: the command is %zu bytes; at most %d\n",
            command.len, ADMIN_MAX_LINE);
    buf_free(&command);
    return 2;
  }
  buf_append(&command, "", 1); /* NUL-terminated */
  char err[4096], path[4096];
  config_t c;
  script_limits_t lim = {0, 0};
  lua_State *L = script_open(&lim, script_dir(), NULL, err, sizeof err);
  if (!L || config_load(L, config, &c, err, sizeof err) < 0) {
    fprintf(stderr, "herd ctl: %s\n", err);
    buf_free(&command);
    return 1;
  }
  int rc = 1;
  if (config_find(&c, name) < 0) {
    char names[1024];
    config_names(&c, names, sizeof names);
    fprintf(stderr, "herd ctl: unknown server %s (servers: %s)\n", name, names);
  } else {
    admin_path(&c, name, path, sizeof path);
    rc = admin_ctl(path, command.data);
  }
  script_close(L);
  config_free(&c);
  buf_free(&command);
  return rc;
}

/* Many idle clients need many descriptors: take the hard limit. */
static void raise_fd_limit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "ctl") == 0) return run_ctl(argc, argv);
  if (parse_args(argc, argv, &opts) < 0) return 2;
  if (opts.check) return run_check(&opts);

  char err[4096];
  signal(SIGPIPE, SIG_IGN);
  script_watchdog_start();
  raise_fd_limit();
  loop = uv_default_loop();
  uv_loop_configure(loop, UV_METRICS_IDLE_TIME); /* for loop_turn_us_max */
  lua_core_init(loop, opts.name);
  if (store_init(loop) < 0) {
    fprintf(stderr, "herd: no random key for the record store (RAND_bytes)\n");
    return 1;
  }
  lua_State *L = load_all(&opts, &server_cfg, err, sizeof err);
  if (!L) {
    fprintf(stderr, "herd: %s\n", err);
    return 1;
  }
  store_set_limit((size_t)server_cfg.max_records);
  self_idx = config_find(&server_cfg, opts.name);
  if (self_idx < 0) {
    char names[1024];
    config_names(&server_cfg, names, sizeof names);
    fprintf(stderr, "herd: unknown server '%s'; %s declares: %s\n", opts.name,
            opts.config, names);
    return 1;
  }
  int *nb = running_nb = xcalloc((size_t)server_cfg.nservers, sizeof *nb);
  int nnb;
  if (check_server(L, &server_cfg, self_idx, nb, &nnb, err, sizeof err) < 0) {
    fprintf(stderr, "herd: %s\n", err);
    return 1;
  }
  running_nnb = nnb;
  script_set_current(L);
  log_set_json(server_cfg.log_json);
  log_set_io(server_cfg.log_io);
  if (log_open(server_cfg.log_dir, opts.name, err, sizeof err) < 0) {
    fprintf(stderr, "herd: %s\n", err);
    return 1;
  }
  /* The local places data is mapped now, not at the first query, so the
   * first client does not pay for it. */
  if (open_places(L, &server_cfg, err, sizeof err) < 0) {
    fprintf(stderr, "herd: %s\n", err);
    log_close();
    return 1;
  }
  /* The records are keyed for reconciliation as they load, once. */
  if (peer_tree_key_init(&server_cfg) < 0) {
    log_error("cannot derive the reconciliation key");
    log_close();
    return 1;
  }
  if (server_cfg.state_dir &&
      state_open(loop, server_cfg.state_dir, opts.name, server_cfg.state_sync,
                 server_cfg.state_sync_ms, err, sizeof err) < 0) {
    log_error("%s", err);
    log_close();
    return 1;
  }
  char admin_sock[4096];
  admin_path(&server_cfg, opts.name, admin_sock, sizeof admin_sock);
  const config_server_t *me = &server_cfg.servers[self_idx];
  /* The client port opens last: whoever sees it accept can use the admin
   * socket and find the HTTP engine ready. */
  records_init(loop); /* before any link can hand it a record */
  forward_init(&server_cfg, self_idx);
  if (client_tls(&server_cfg, self_idx, &client_tls_ctx, err, sizeof err) < 0 ||
      admin_start(loop, admin_sock, reload, err, sizeof err) < 0 ||
      http_init(loop, err, sizeof err) < 0 ||
      metrics_start(loop, &server_cfg, self_idx, err, sizeof err) < 0 ||
      peer_start(loop, &server_cfg, self_idx, nb, nnb, err, sizeof err) < 0 ||
      conn_listen(loop, me->host, me->port, me->tls_port, client_tls_ctx,
                  &server_cfg.limits, err, sizeof err) < 0) {
    log_error("%s", err);
    log_close();
    return 1;
  }
  uv_prepare_init(loop, &prepare);
  uv_prepare_start(&prepare, on_prepare);
  uv_check_init(loop, &check);
  uv_check_start(&check, on_check);
  uv_timer_init(loop, &log_timer);
  uv_signal_init(loop, &sig_term);
  uv_signal_start(&sig_term, on_signal, SIGTERM);
  uv_signal_init(loop, &sig_int);
  uv_signal_start(&sig_int, on_signal, SIGINT);
  uv_signal_init(loop, &sig_hup);
  uv_signal_start(&sig_hup, on_hup, SIGHUP);
  uv_timer_init(loop, &reaper);
  uv_timer_start(&reaper, on_reaper, 1000, 1000);

  char names[1024] = "";
  for (int i = 0; i < nnb; i++) {
    if (i) strncat(names, ", ", sizeof names - strlen(names) - 1);
    strncat(names, server_cfg.servers[nb[i]].name,
            sizeof names - strlen(names) - 1);
  }
  char tls_note[96] = "";
  if (me->tls_port)
    snprintf(tls_note, sizeof tls_note, ", TLS clients on %d%s", me->tls_port,
             server_cfg.client_ca ? " with client certificates" : "");
  log_info("%s listening on %s:%d (peers on %d%s, admin %s), neighbours: %s",
           me->name, me->host, me->port, me->peer_port, tls_note, admin_sock,
           nnb ? names : "none");
  log_info("scripts: %s", script_versions(L));
  log_info("dissemination: %s", forward_rule());
  log_places(&server_cfg);
  if (server_cfg.dev_secret)
    log_warn(
        "this herd runs on a development secret: set HERD_SECRET "
        "before exposing it");
  if (server_cfg.insecure && nnb)
    log_warn(
        "INSECURE HERD (insecure = true): peer links are plaintext and not "
        "authenticated; anyone who reaches the peer port can inject records. "
        "For single-host tests only.");
  if (script_push_hook(L, HOOK_ON_START) == 0) script_call(L, 0, 0, "on_start");
  log_flush();

  uv_run(loop, UV_RUN_DEFAULT);

  /* Orderly stop: flush what clients are owed, close everything, let the
   * close callbacks run, then free. */
  conn_shutdown();
  peer_shutdown();
  admin_shutdown();
  metrics_shutdown();
  http_shutdown();
  lua_core_cancel_timers(NULL);
  uv_walk(loop, close_walk, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  long refs_before = script_live_refs();
  close_retired(1);
  free(retired);
  script_close(script_current());
  script_pool_free();
  log_info("stopped (%ld Lua references were live, %ld left)", refs_before,
           script_live_refs());
  places_close();
  state_close();
  store_free();
  free(running_nb);
  tls_ctx_free(client_tls_ctx);
  config_free(&server_cfg);
  log_close();
  uv_loop_close(loop);
  return 0;
}
