/* textlib: the `herdtext` Lua module, fast text primitives for the scripts'
 * hot path (every IAMAT uses them): splitting a line into fields, strict
 * timestamps with exact integer arithmetic, ISO 6709 coordinates within
 * their ranges, whole IAMAT and AT lines; and json_cut, which checks a
 * provider's JSON answer and cuts its results without building Lua tables
 * (WHATSAT). Pure functions with no state; the server preloads the module
 * and the unit tests load the same code as build/herdtext.so, so there is
 * one implementation. What is stored, repeated and flooded is decided
 * elsewhere (iamat.lua, peer_accept_record). */
#ifndef HERD_TEXTLIB_H
#define HERD_TEXTLIB_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

int luaopen_herdtext(lua_State *L);

/* NULL when line is an AT line ("AT <server> <[+-]S.NNNNNNNNN> <client>
 * <location> <time>", the location in range) that reports client at
 * sec.nsec, else what is wrong: how a record from a peer must look. */
const char *textlib_check_at(const char *line, size_t n, const char *client,
                             size_t client_len, int64_t sec, int64_t nsec);

#endif
