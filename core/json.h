/* json: json_cut, the strict one-pass JSON scanner for a places provider's
 * answer (WHATSAT): checks the text (RFC 8259, UTF-8), compacts it and cuts
 * the top-level "results" array to a bound without building Lua tables.
 * A pure function with no state and no dependency on the rest of the core;
 * the herdtext Lua module (core/herdtext.c) exposes it as
 * herdtext.json_cut. */
#ifndef HERD_JSON_H
#define HERD_JSON_H

#include <lua.h>

/* herdtext.json_cut(text [, bound [, order]]): see json.c. */
int json_l_cut(lua_State *L);

#endif
