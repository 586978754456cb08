/* config: the config file (a Lua file returning a table) and the environment
 * overrides. Owns the parsed config_t; the Lua table itself stays in the
 * script state's registry (CONFIG_REGISTRY_KEY) for scripts (core.config).
 * Every validation error names the file and the offending key. */
#ifndef HERD_CONFIG_H
#define HERD_CONFIG_H

#include <lua.h>
#include <stddef.h>

#include "conn.h"

#define CONFIG_REGISTRY_KEY "herd.config"

typedef struct config_server {
  char *name;
  char *host;
  int port;
  int peer_port;
  int metrics_port;   /* 0: no metrics listener */
  char *metrics_host; /* default 127.0.0.1 */
} config_server_t;

typedef struct config {
  char *path; /* the config file */
  char *dir;  /* its directory, for relative paths */
  config_server_t *servers;
  int nservers;
  char **scripts; /* resolved paths, in load order */
  int nscripts;
  char *log_dir;
  int log_json;
  char *secret;       /* NULL when none */
  int dev_secret;     /* the config marks its secret as for development */
  int insecure;       /* peers without authentication allowed */
  char *admin_socket; /* NULL: <log_dir>/<NAME>.sock; {name} = NAME */
  char *places_provider;
  conn_limits_t limits;
  size_t lua_memory; /* bytes */
  long lua_budget;   /* instructions per hook call */
  size_t peer_max_frame;
  unsigned redial_min_ms, redial_max_ms;
  unsigned peer_timeout_ms; /* a link silent this long is dropped */
  long max_records;         /* clients the store keeps */
} config_t;

/* Runs the config file in L, applies HERD_* overrides to its table, keeps the
 * table in the registry and fills cfg. Returns 0 or -1 with a message. */
int config_load(lua_State *L, const char *path, config_t *cfg, char *err,
                size_t errlen);
void config_free(config_t *cfg);
/* Index of the server called name, or -1. */
int config_find(const config_t *cfg, const char *name);
/* "Bernard, Campbell, ..." for error messages. */
void config_names(const config_t *cfg, char *out, size_t n);
/* Adds a script path (from --script) to the load list. */
void config_add_script(config_t *cfg, const char *path);

#endif
