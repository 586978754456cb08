/* places_lua: core/places.c as a plain Lua module, so that busted specs (and
 * tests/bench/places_bench.lua) drive the real index and its Lua binding
 * without a running server. Built by tests/c/Makefile into
 * build/test/places_core.so:
 *   local pc = require "places_core"
 *   pc.open(path) -> true | nil, err     (path nil: the default file)
 *   pc.close()
 *   pc.default_path() -> string
 *   pc.places_near(...), pc.places_json(...), pc.places_info()
 *                                        exactly as core.* */
#include <lauxlib.h>
#include <lua.h>

#include "../../core/places.h"

static int l_open(lua_State *L) {
  char err[512];
  if (places_open(luaL_optstring(L, 1, NULL), err, sizeof err) < 0) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int l_close(lua_State *L) {
  places_close();
  return 0;
}

static int l_default_path(lua_State *L) {
  lua_pushstring(L, places_default_path());
  return 1;
}

int luaopen_places_core(lua_State *L) {
  static const luaL_Reg fns[] = {{"open", l_open},
                                 {"close", l_close},
                                 {"default_path", l_default_path},
                                 {NULL, NULL}};
  luaL_newlib(L, fns);
  places_lua_register(L);
  return 1;
}
