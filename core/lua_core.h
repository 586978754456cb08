/* lua_core: the `core` module scripts require; see lua_core.c. */
#ifndef HERD_LUA_CORE_H
#define HERD_LUA_CORE_H

#include <lua.h>
#include <stdint.h>
#include <uv.h>

void lua_core_init(uv_loop_t *loop, const char *self_name);
int luaopen_core(lua_State *L);
/* Stops the timers of L (NULL: of every state), only the repeating ones if
 * repeating_only (a reload lets one-shot timers of the old scripts run). */
void lua_core_cancel_timers(lua_State *L, int repeating_only);
/* Counts a reload for the stats. */
void lua_core_count_reload(int ok);
/* Reloads counted so far, that succeeded and that were refused. */
void lua_core_reloads(uint64_t *ok, uint64_t *failed);
/* Timers still pending in L. */
int lua_core_timer_count(lua_State *L);

#endif
