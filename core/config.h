/* config: the config file (a Lua file returning a table) and the environment
 * overrides. Owns the parsed config_t; the Lua table itself stays in the
 * script state's registry (CONFIG_REGISTRY_KEY) for scripts (core.config).
 * Every validation error names the file and the offending key. */
#ifndef HERD_CONFIG_H
#define HERD_CONFIG_H

#include <lua.h>
#include <stddef.h>

#include "conn.h"
#include "state.h"

#define CONFIG_REGISTRY_KEY "herd.config"
/* A server name is a field of the protocol and part of file names: 1 to
 * CONFIG_NAME_MAX printable ASCII characters, no white space, no '/'. */
#define CONFIG_NAME_MAX 64

typedef struct config_server {
  char *name;
  char *host;
  int port;
  int peer_port;
  int tls_port;       /* 0: no TLS client listener */
  int metrics_port;   /* 0: no metrics listener */
  char *metrics_host; /* default 127.0.0.1 */
} config_server_t;

/* An address block of peers_from: family AF_INET or AF_INET6. */
typedef struct config_cidr {
  int family;
  unsigned char addr[16];
  int bits;
} config_cidr_t;

typedef struct config {
  char *path; /* the config file */
  char *dir;  /* its directory, for relative paths */
  config_server_t *servers;
  int nservers;
  char **scripts; /* resolved paths, in load order */
  int nscripts;
  char *log_dir;
  int log_json;
  int log_io;     /* client IN/OUT lines are logged (default 1) */
  char *secret;   /* NULL when none; else secrets[0] */
  char **secrets; /* secret = "a,b" or { "a", "b" }: offer the first */
  int nsecrets;
  char *tls_cert, *tls_key, *tls_ca; /* tls = { ... }: certificate mode */
  /* client_tls = { ... }: the tls_port's certificate, key and (NULL: no
   * client certificates asked) the CAs client certificates must chain to */
  char *client_cert, *client_key, *client_ca;
  config_cidr_t *peers_from; /* NULL: any address may connect */
  int npeers_from;
  int dev_secret;     /* the config marks its secret as for development */
  int insecure;       /* peers without authentication allowed */
  char *admin_socket; /* NULL: <log_dir>/<NAME>.sock; {name} = NAME */
  char *places_provider;
  conn_limits_t limits;
  size_t lua_memory; /* bytes */
  long lua_budget;   /* instructions per hook call */
  size_t peer_max_frame;
  unsigned redial_min_ms, redial_max_ms;
  unsigned peer_timeout_ms;   /* a link silent this long is dropped */
  long max_records;           /* clients the store keeps */
  size_t peer_out_max;        /* a link's unsent bytes before it is dropped */
  unsigned peer_handshake_ms; /* a peer connection's time to authenticate */
  unsigned peer_sync_ms;      /* the periodic reconciliation's interval */
  char *state_dir;            /* NULL: records in memory only */
  state_sync_t state_sync;
  unsigned state_sync_ms;
} config_t;

/* Runs the config file in L, applies HERD_* overrides to its table, keeps the
 * table in the registry and fills cfg. Returns 0 or -1 with a message. */
int config_load(lua_State *L, const char *path, config_t *cfg, char *err,
                size_t errlen);
void config_free(config_t *cfg);
/* Whether the address (AF_INET/AF_INET6 bytes) is in peers_from (1 when
 * peers_from is not set). */
int config_peer_allowed(const config_t *cfg, int family,
                        const unsigned char *addr);
/* What start-up refuses beyond the parse, checked before any script runs
 * so each mistake is one line naming the file and the key: the places
 * provider and its key, links (as a list of pairs) naming only declared
 * servers. Not needed by herd ctl. Returns 0 or -1 with a message. */
int config_check(lua_State *L, const config_t *cfg, char *err, size_t errlen);
/* Once the scripts are loaded (they may declare keys of their own with
 * core.config_key): an unknown key at any level of the config is an error.
 * Returns 0 or -1 with a message naming the file and the key. */
int config_check_keys(lua_State *L, const config_t *cfg, char *err,
                      size_t errlen);
/* Adds core.config_key to the table on top of L's stack. */
void config_lua_register(lua_State *L);
/* Whether name can be a server's name (see CONFIG_NAME_MAX). */
int config_valid_name(const char *name);
/* A certificate path with "{name}" replaced by name, so one config
 * serves every server. */
void config_with_name(const char *path, const char *name, char *out, size_t n);
/* Index of the server called name, or -1. */
int config_find(const config_t *cfg, const char *name);
/* "Bernard, Campbell, ..." for error messages. */
void config_names(const config_t *cfg, char *out, size_t n);
/* Adds a script path (from --script) to the load list. */
void config_add_script(config_t *cfg, const char *path);

#endif
