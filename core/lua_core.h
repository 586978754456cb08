/* lua_core: the `core` module scripts require; see lua_core.c. */
#ifndef HERD_LUA_CORE_H
#define HERD_LUA_CORE_H

#include <lua.h>
#include <uv.h>

void lua_core_init(uv_loop_t *loop, const char *self_name);
int luaopen_core(lua_State *L);
/* Stops every script timer (shutdown, reload). */
void lua_core_cancel_timers(void);

#endif
