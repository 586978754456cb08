/* records_lua: the real record rule (core/records.c: check, store if newer,
 * flood on; a record by reconciliation not flooded) over the real store
 * (core/store.c, and core/store_lua.c for core.store), as a plain Lua
 * module, so unit specs test the core's rule rather than a model of it.
 * Only what lies around the rule is stubbed: the transport (forward_record
 * notes each flood: the client and the neighbour left out), the log (lines
 * are kept) and the scripts' on_record hook (records_l_accept itself, the
 * server's default, unless the spec sets one). Built by tests/c/Makefile
 * into build/test/records_core.so:
 *   local rc = require "records_core"
 *   rc.reset()          an empty store, no limit, no floods or log lines
 *   rc.accept_record    core.accept_record, the server's own function
 *   rc.store            core.store (put, get, stamp, count, lines)
 *   rc.receive(from, client, sec, nsec, line [, sync])
 *                       a neighbour's record as peer.c hands it up: by
 *                       flood, or by a reconciliation pull when sync is
 *                       true (then returns the pull's stored, refused)
 *   rc.on_record(fn)    the on_record hook receive calls (nil: the default)
 *   rc.limit(n)         limits.max_records
 *   rc.floods()         { { client =, except = }, ... } since the last call
 *   rc.log()            { "line", ... } since the last call */
#include <lauxlib.h>
#include <lua.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/forward.h"
#include "../../core/log.h"
#include "../../core/peer.h"
#include "../../core/records.h"
#include "../../core/script.h"
#include "../../core/store.h"
#include "../../core/store_lua.h"

/* What the stubs noted, until the spec takes it. */
typedef struct note {
  char *a, *b; /* a flood's client and except (b may be NULL); a log line */
} note_t;
typedef struct notes {
  note_t *v;
  size_t n, cap;
} notes_t;

static notes_t floods, lines;
static peer_record_fn handler;
static lua_State *calling; /* the state inside receive, for the hook */
static int hook_ref = LUA_NOREF;

static char *dup_or_null(const char *s, size_t n) {
  if (!s) return NULL;
  char *d = malloc(n + 1);
  if (!d) abort();
  memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

static void note(notes_t *ns, char *a, char *b) {
  if (ns->n == ns->cap) {
    ns->cap = ns->cap ? ns->cap * 2 : 16;
    ns->v = realloc(ns->v, ns->cap * sizeof *ns->v);
    if (!ns->v) abort();
  }
  ns->v[ns->n++] = (note_t){a, b};
}

static void clear(notes_t *ns) {
  for (size_t i = 0; i < ns->n; i++) {
    free(ns->v[i].a);
    free(ns->v[i].b);
  }
  ns->n = 0;
}

/* ---- the stubs records.c links against ---- */

/* The built-in rule (flood): every live link but the sender's. */
int forward_record(const char *from, const char *client, size_t cn,
                   const char *line, size_t ln, int flood) {
  note(&floods, dup_or_null(client, cn),
       dup_or_null(from, from ? strlen(from) : 0));
  return 1;
}

/* Only a FLOODREC (tree dissemination) comes with flood set; receive
 * never sets it. */
void forward_flood_again(const char *from, const store_rec_t *r) {}

void peer_set_record_handler(peer_record_fn fn) {
  handler = fn;
}

void log_msg(log_level_t level, const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  note(&lines, dup_or_null(buf, strlen(buf)), NULL);
}

int log_limit_due(log_limit_t *l, uint64_t now_ms, unsigned long *held) {
  *held = 0;
  return 1;
}

lua_State *script_current(void) {
  return calling;
}

int script_push_hook(lua_State *L, hook_t hook) {
  if (hook_ref == LUA_NOREF)
    lua_pushcfunction(L, records_l_accept);
  else
    lua_rawgeti(L, LUA_REGISTRYINDEX, hook_ref);
  return 0;
}

int script_run(lua_State *L, script_push_fn push, void *ud, int nres,
               const char *what) {
  int nargs = push(L, ud);
  if (lua_pcall(L, nargs, nres, 0) != LUA_OK) {
    log_msg(LOG_ERROR, "%s: %s", what, lua_tostring(L, -1));
    lua_pop(L, 1);
    return -1;
  }
  return 0;
}

/* ---- the module ---- */

static int l_reset(lua_State *L) {
  store_free();
  if (store_init(NULL) < 0) return luaL_error(L, "store_init failed");
  store_set_limit(SIZE_MAX);
  records_init(NULL);
  clear(&floods);
  clear(&lines);
  luaL_unref(L, LUA_REGISTRYINDEX, hook_ref);
  hook_ref = LUA_NOREF;
  return 0;
}

static int l_receive(lua_State *L) {
  size_t cn, ln;
  const char *from = luaL_checkstring(L, 1);
  const char *client = luaL_checklstring(L, 2, &cn);
  lua_Integer sec = luaL_checkinteger(L, 3);
  lua_Integer nsec = luaL_checkinteger(L, 4);
  const char *line = luaL_checklstring(L, 5, &ln);
  int by_sync = lua_toboolean(L, 6);
  if (!handler) return luaL_error(L, "call reset first");
  /* peer.c hands up only what its frame decoding accepts. */
  if (nsec < 0 || nsec > 999999999) luaL_argerror(L, 4, "nsec out of range");
  peer_tally_t tally = {0, 0};
  calling = L;
  handler(from, client, cn, sec, (int32_t)nsec, line, ln,
          by_sync ? &tally : NULL, 0);
  calling = NULL;
  if (!by_sync) return 0;
  lua_pushinteger(L, (lua_Integer)tally.stored);
  lua_pushinteger(L, (lua_Integer)tally.refused);
  return 2;
}

static int l_on_record(lua_State *L) {
  luaL_unref(L, LUA_REGISTRYINDEX, hook_ref);
  hook_ref = LUA_NOREF;
  if (!lua_isnoneornil(L, 1)) {
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_settop(L, 1);
    hook_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  return 0;
}

static int l_limit(lua_State *L) {
  store_set_limit((size_t)luaL_checkinteger(L, 1));
  return 0;
}

static int l_floods(lua_State *L) {
  lua_createtable(L, (int)floods.n, 0);
  for (size_t i = 0; i < floods.n; i++) {
    lua_createtable(L, 0, 2);
    lua_pushstring(L, floods.v[i].a);
    lua_setfield(L, -2, "client");
    if (floods.v[i].b) {
      lua_pushstring(L, floods.v[i].b);
      lua_setfield(L, -2, "except");
    }
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  clear(&floods);
  return 1;
}

static int l_log(lua_State *L) {
  lua_createtable(L, (int)lines.n, 0);
  for (size_t i = 0; i < lines.n; i++) {
    lua_pushstring(L, lines.v[i].a);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  clear(&lines);
  return 1;
}

int luaopen_records_core(lua_State *L) {
  static const luaL_Reg fns[] = {{"reset", l_reset},
                                 {"receive", l_receive},
                                 {"on_record", l_on_record},
                                 {"limit", l_limit},
                                 {"floods", l_floods},
                                 {"log", l_log},
                                 {"accept_record", records_l_accept},
                                 {NULL, NULL}};
  luaL_newlib(L, fns);
  lua_newtable(L);
  luaL_setfuncs(L, store_lua_fns, 0);
  lua_setfield(L, -2, "store");
  return 1;
}
