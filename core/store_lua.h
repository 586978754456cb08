/* store_lua: core.store, the Lua face of the store (store.c): put, get,
 * stamp, count, lines. Its own file so that a test build of the record
 * rule (tests/c/records_lua.c) gives scripts the same functions as the
 * server does. */
#ifndef HERD_STORE_LUA_H
#define HERD_STORE_LUA_H

#include <lauxlib.h>

/* core.store.put(client, sec, nsec, line) -> true (stored), false (not
 * newer) or nil, err; get(client) -> line, sec, nsec; stamp(client) ->
 * sec, nsec; count() -> n; lines() -> { line, ... }. */
extern const luaL_Reg store_lua_fns[];

#endif
