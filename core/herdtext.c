/* herdtext: the Lua module of the core's pure text functions, the same
 * code in the server (preloaded by script.c) and in the unit tests
 * (build/herdtext.so): textlib's building blocks, the AT line's format
 * (records.c) and json_cut (json.c). */
#include "herdtext.h"

#include <lauxlib.h>

#include "json.h"
#include "records.h"
#include "textlib.h"

int luaopen_herdtext(lua_State *L) {
  lua_newtable(L);
  luaL_setfuncs(L, textlib_lua_fns, 0);
  luaL_setfuncs(L, records_lua_fns, 0);
  lua_pushcfunction(L, json_l_cut);
  lua_setfield(L, -2, "json_cut");
  return 1;
}
