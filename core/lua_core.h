/* lua_core: the `core` module scripts require; see lua_core.c. */
#ifndef HERD_LUA_CORE_H
#define HERD_LUA_CORE_H

#include <lua.h>
#include <stdint.h>
#include <uv.h>

void lua_core_init(uv_loop_t *loop, const char *self_name);
int luaopen_core(lua_State *L);
/* Stops the timers of L (NULL: of every state) without calling them. */
void lua_core_cancel_timers(lua_State *L);
/* L has been replaced by a reload: from now on it may start no timer and
 * no HTTP request, and each of its pending timers runs once, now, with
 * premature = true, so L is left with only its requests in flight. */
void lua_core_retire(lua_State *L);
/* core.stats (a lua_CFunction): pushes the table of counters. */
int lua_core_stats(lua_State *L);
/* Timers still pending in L. */
int lua_core_timer_count(lua_State *L);

#endif
