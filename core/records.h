/* records: the one owner of a client's record, the AT line
 *   AT <server> <[+-]S.NNNNNNNNN> <client> <location> <time>
 * Owns its format (built from an IAMAT, parsed, checked, compared as the
 * same report) and the accept rule: a record from a neighbour is checked,
 * stored if newer (core/store.c, which the state on disk follows), then
 * forwarded by the dissemination rule (core/forward.c: every neighbour but
 * the sender under the built-in flood); a record that came by
 * reconciliation is counted for its pull, not forwarded.
 * peer.c hands received records up through the handler records_init
 * registers (peer.c does not include this header); they go to the
 * scripts' on_record hook, which is records_l_accept itself (then no Lua
 * runs) unless a script replaced or wrapped it. The Lua face is
 * scripts/records.lua, over the herdtext functions records_lua_fns. */
#ifndef HERD_RECORDS_H
#define HERD_RECORDS_H

#include <lauxlib.h>
#include <lua.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct records_stats {
  uint64_t refused; /* by the store: too long, or a new client when full */
  uint64_t stale;   /* from peers, no newer than the stored record */
} records_stats_t;

/* NULL when line is an AT line (the location in range) that reports
 * client at sec.nsec, else what is wrong: how a record from a peer must
 * look. */
const char *records_check(const char *line, size_t n, const char *client,
                          size_t client_len, int64_t sec, int64_t nsec);
/* herdtext.iamat, .at, .at_fields, .same_report (see records.c). */
extern const luaL_Reg records_lua_fns[];

/* The accept rule: a record from the neighbour `from` must pass
 * records_check; a record of this server's own (from NULL: an IAMAT's
 * reply) is not checked. It is stored if newer, then forwarded
 * (core/forward.c: under the built-in flood, to every neighbour but
 * `from`). Returns 1 stored, 0 not newer, or -1 with *err,
 * dropped or refused by the store (logged). */
int records_accept(const char *from, const char *client, size_t cn, int64_t sec,
                   int32_t nsec, const char *line, size_t ln, const char **err);
/* core.accept_record(from, client, sec, nsec, line [, checked]) -> true
 * (stored), false (not newer) or nil, err: records_accept for Lua (from nil
 * for this server's own records; checked true when a script's format has
 * checked the line: scripts/records.lua's use). The built-in scripts use
 * it for IAMATs and install it as the on_record hook. */
int records_l_accept(lua_State *L);
/* Takes the records peer.c receives (call before peer_start). */
void records_init(uv_loop_t *loop);
const records_stats_t *records_stats(void);

#endif
