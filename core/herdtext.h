/* herdtext: see herdtext.c. */
#ifndef HERD_HERDTEXT_H
#define HERD_HERDTEXT_H

#include <lua.h>

int luaopen_herdtext(lua_State *L);

#endif
