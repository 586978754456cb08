/* lua_core: the `core` module, the scripts' only way into the C core.
 * Owns the Lua-visible API (connections, replies, timers, the record store,
 * flooding, logging, clock, config) and the timers scripts create. Runtime
 * failures return nil, err; wrong argument types raise. Timers hold one Lua
 * reference each, released in their close callback and nowhere else. */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "buf.h"
#include "config.h"
#include "conn.h"
#include "http.h"
#include "idmap.h"
#include "log.h"
#include "lua_core.h"
#include "metrics.h"
#include "peer.h"
#include "places.h"
#include "records.h"
#include "script.h"
#include "store_lua.h"

typedef struct ltimer {
  uv_timer_t handle;
  uint64_t id;
  int ref;
  int repeat;
  int premature; /* its state was replaced: this is the last call */
  lua_State *L;
} ltimer_t;

static uv_loop_t *loop;
static const char *self_name = "";
static idmap_t timers;
static uint64_t next_timer = 1;

void lua_core_init(uv_loop_t *l, const char *name) {
  loop = l;
  self_name = name;
}

static int fail(lua_State *L, const char *msg) {
  lua_pushnil(L);
  lua_pushstring(L, msg);
  return 2;
}

static uint64_t check_id(lua_State *L, int i) {
  return (uint64_t)luaL_checkinteger(L, i);
}

static int l_send(lua_State *L) {
  size_t n;
  uint64_t id = check_id(L, 1);
  const char *s = luaL_checklstring(L, 2, &n);
  if (conn_send(id, s, n) < 0) return fail(L, "connection closed");
  lua_pushboolean(L, 1);
  return 1;
}

static int l_close(lua_State *L) {
  if (conn_close_id(check_id(L, 1)) < 0) return fail(L, "connection closed");
  lua_pushboolean(L, 1);
  return 1;
}

static int l_defer(lua_State *L) {
  uint64_t t = conn_defer();
  if (!t) return luaL_error(L, "core.defer() is only valid inside on_line");
  lua_pushinteger(L, (lua_Integer)t);
  return 1;
}

static int l_answer(lua_State *L) {
  size_t n;
  uint64_t t = check_id(L, 1);
  const char *s = luaL_checklstring(L, 2, &n);
  if (conn_answer(t, s, n) < 0) return fail(L, "connection closed");
  lua_pushboolean(L, 1);
  return 1;
}

static int l_addr(lua_State *L) {
  const char *a = conn_addr(check_id(L, 1));
  if (!a) return fail(L, "connection closed");
  lua_pushstring(L, a);
  return 1;
}

static int l_now(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  lua_pushinteger(L, (lua_Integer)ts.tv_sec * 1000000000 + ts.tv_nsec);
  return 1;
}

static int l_log(lua_State *L) {
  log_info("script: %s", luaL_checkstring(L, 1));
  return 0;
}

static int l_warn(lua_State *L) {
  log_warn("script: %s", luaL_checkstring(L, 1));
  return 0;
}

static void timer_closed(uv_handle_t *h) {
  free(h);
}

/* The one place a timer's reference is released: here, while its state is
 * surely alive (the close callback may run after a reload or a refused
 * load has closed that state). */
static void timer_stop(ltimer_t *t) {
  idmap_del(&timers, t->id);
  script_unref(t->L, &t->ref);
  uv_close((uv_handle_t *)&t->handle, timer_closed);
}

static void timer_fired(uv_timer_t *h) {
  ltimer_t *t = (ltimer_t *)h;
  lua_State *L = t->L;
  int premature = t->premature;
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->ref); /* the stack keeps it alive */
  if (!t->repeat || premature) timer_stop(t);
  lua_pushboolean(L, premature);
  script_call(L, 1, 0, "timer");
}

static int start_timer(lua_State *L, int repeat) {
  lua_Integer ms = luaL_checkinteger(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  luaL_argcheck(L, ms >= 0, 1, "delay must be >= 0 ms");
  if (!loop) return fail(L, "timers do not run under --check");
  if (script_retired(L))
    return fail(L, "these scripts were replaced by a reload");
  ltimer_t *t = xcalloc(1, sizeof *t);
  t->id = next_timer++;
  t->repeat = repeat;
  /* The main thread: a coroutine that called core.after may be gone when
   * the timer fires. */
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  t->L = lua_tothread(L, -1);
  lua_pop(L, 1);
  lua_pushvalue(L, 2);
  t->ref = script_ref(L);
  uv_timer_init(loop, &t->handle);
  uint64_t every = repeat ? (uint64_t)(ms ? ms : 1) : 0;
  uv_timer_start(&t->handle, timer_fired, (uint64_t)ms, every);
  idmap_put(&timers, t->id, t);
  lua_pushinteger(L, (lua_Integer)t->id);
  return 1;
}

static int l_after(lua_State *L) {
  return start_timer(L, 0);
}

static int l_every(lua_State *L) {
  return start_timer(L, 1);
}

static int l_cancel(lua_State *L) {
  ltimer_t *t = idmap_get(&timers, check_id(L, 1));
  if (t) timer_stop(t);
  lua_pushboolean(L, t != NULL);
  return 1;
}

/* The timers of L (NULL: every state), collected first: stopping or
 * running one changes the map. Freed by the caller. */
static ltimer_t **timers_of(lua_State *L, size_t *n) {
  ltimer_t **list = xcalloc(timers.len + 1, sizeof *list);
  *n = 0;
  for (size_t i = 0; i < timers.cap; i++) {
    ltimer_t *t = timers.keys[i] ? timers.vals[i] : NULL;
    if (t && (!L || t->L == L)) list[(*n)++] = t;
  }
  return list;
}

void lua_core_cancel_timers(lua_State *L) {
  size_t n;
  ltimer_t **victims = timers_of(L, &n);
  for (size_t i = 0; i < n; i++)
    timer_stop(victims[i]);
  free(victims);
}

void lua_core_retire(lua_State *L) {
  script_retire(L);
  size_t n;
  ltimer_t **pending = timers_of(L, &n);
  uint64_t *ids = xcalloc(n + 1, sizeof *ids);
  for (size_t i = 0; i < n; i++)
    ids[i] = pending[i]->id;
  free(pending);
  for (size_t i = 0; i < n; i++) {
    /* By id: a callback may have cancelled a later one of these. */
    ltimer_t *t = idmap_get(&timers, ids[i]);
    if (!t) continue;
    t->premature = 1;
    timer_fired(&t->handle);
  }
  free(ids);
}

int lua_core_timer_count(lua_State *L) {
  int n = 0;
  for (size_t i = 0; i < timers.cap; i++)
    if (timers.keys[i] && ((ltimer_t *)timers.vals[i])->L == L) n++;
  return n;
}

static int l_flood(lua_State *L) {
  size_t cn;
  const char *client = luaL_checklstring(L, 1, &cn);
  const char *except = luaL_optstring(L, 2, NULL);
  lua_pushinteger(L, peer_flood(client, cn, except));
  return 1;
}

static int l_links(lua_State *L) {
  peer_push_links(L);
  return 1;
}

/* The list lives in metrics.c, which /metrics prints too. */
int lua_core_stats(lua_State *L) {
  metrics_push_stats(L);
  return 1;
}

int luaopen_core(lua_State *L) {
  static const luaL_Reg fns[] = {{"send", l_send},
                                 {"close", l_close},
                                 {"defer", l_defer},
                                 {"answer", l_answer},
                                 {"addr", l_addr},
                                 {"now", l_now},
                                 {"log", l_log},
                                 {"warn", l_warn},
                                 {"after", l_after},
                                 {"every", l_every},
                                 {"cancel", l_cancel},
                                 {"flood", l_flood},
                                 {"accept_record", records_l_accept},
                                 {"links", l_links},
                                 {"stats", lua_core_stats},
                                 {NULL, NULL}};
  luaL_newlib(L, fns);
  lua_newtable(L);
  luaL_setfuncs(L, store_lua_fns, 0);
  lua_setfield(L, -2, "store");
  http_lua_register(L);
  places_lua_register(L);
  config_lua_register(L);
  lua_pushstring(L, self_name);
  lua_setfield(L, -2, "name");
  lua_getfield(L, LUA_REGISTRYINDEX, CONFIG_REGISTRY_KEY);
  lua_setfield(L, -2, "config");
  return 1;
}
