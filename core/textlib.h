/* textlib: the `herdtext` Lua module, fast text primitives for the scripts'
 * hot path (every IAMAT uses them): splitting a line into fields, strict
 * timestamps with exact integer arithmetic, and ISO 6709 coordinates; and
 * json_cut, which checks a provider's JSON answer and cuts its results
 * without building Lua tables (WHATSAT). Pure functions with no state; the
 * server preloads the module and the unit tests load the same code as
 * build/herdtext.so, so there is one implementation. The rules built on
 * them (ranges, replies) stay in Lua. */
#ifndef HERD_TEXTLIB_H
#define HERD_TEXTLIB_H

#include <lua.h>

int luaopen_herdtext(lua_State *L);

#endif
