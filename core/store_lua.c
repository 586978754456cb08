/* store_lua: see store_lua.h. */
#include "store_lua.h"

#include "store.h"

static int l_put(lua_State *L) {
  size_t cn, ln;
  const char *client = luaL_checklstring(L, 1, &cn);
  lua_Integer sec = luaL_checkinteger(L, 2);
  lua_Integer nsec = luaL_checkinteger(L, 3);
  const char *line = luaL_checklstring(L, 4, &ln);
  if (nsec < 0 || nsec > 999999999) luaL_argerror(L, 3, "nsec out of range");
  int rc = store_put(client, cn, sec, (int32_t)nsec, line, ln);
  if (rc < 0) {
    lua_pushnil(L);
    lua_pushstring(L, store_refusal(rc));
    return 2;
  }
  lua_pushboolean(L, rc);
  return 1;
}

static int l_get(lua_State *L) {
  size_t cn;
  const char *client = luaL_checklstring(L, 1, &cn);
  const store_rec_t *r = store_get(client, cn);
  if (!r) return 0;
  lua_pushlstring(L, STORE_LINE(r), r->line_len);
  lua_pushinteger(L, r->sec);
  lua_pushinteger(L, r->nsec);
  return 3;
}

/* The stored timestamp alone: the cheap check on every IAMAT's path. */
static int l_stamp(lua_State *L) {
  size_t cn;
  const char *client = luaL_checklstring(L, 1, &cn);
  const store_rec_t *r = store_get(client, cn);
  if (!r) return 0;
  lua_pushinteger(L, r->sec);
  lua_pushinteger(L, r->nsec);
  return 2;
}

static int l_count(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)store_count());
  return 1;
}

static void push_rec(const store_rec_t *r, void *ud) {
  lua_State *L = ud;
  lua_pushlstring(L, STORE_LINE(r), r->line_len);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
}

static int l_lines(lua_State *L) {
  lua_createtable(L, (int)store_count(), 0);
  store_each(push_rec, L);
  return 1;
}

const luaL_Reg store_lua_fns[] = {{"put", l_put},     {"get", l_get},
                                  {"stamp", l_stamp}, {"count", l_count},
                                  {"lines", l_lines}, {NULL, NULL}};
