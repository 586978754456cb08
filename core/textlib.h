/* textlib: the protocol's generic text building blocks, fast because every
 * line goes through them: splitting a line into white-space separated
 * fields, strict timestamps with exact integer arithmetic, ISO 6709
 * coordinates within their ranges, and time differences. Pure functions
 * with no state. What a record line looks like is core/records.c's
 * business; the JSON scanner is core/json.c. The Lua faces of these
 * functions are part of the herdtext module (core/herdtext.c). */
#ifndef HERD_TEXTLIB_H
#define HERD_TEXTLIB_H

#include <lauxlib.h>
#include <lua.h>
#include <stddef.h>
#include <stdint.h>

#define TEXTLIB_TIME_ERROR "time must be seconds with up to nine decimals"
#define TEXTLIB_DIFF_MAX 48 /* bytes a time difference may take */

/* One field of a line: where it starts and its length. */
typedef struct {
  const char *p;
  size_t len;
} textlib_span_t;

/* The first fields of s, at most max, into f; returns how many (a caller
 * that must see "more than N" asks for N + 1). */
int textlib_split(const char *s, size_t n, textlib_span_t *f, int max);
/* "digits" or "digits.d{1,9}" -> *sec, *nsec exactly; 0 or -1. */
int textlib_timestamp(const char *s, size_t n, int64_t *sec, int64_t *nsec);
/* "[+-]lat[+-]lon" in range -> *lat, *lon; NULL or what is wrong. */
const char *textlib_latlon(const char *s, size_t n, double *lat, double *lon);
/* now_ns - sec.nsec as "+S.NNNNNNNNN" / "-S.NNNNNNNNN" into out
 * (TEXTLIB_DIFF_MAX bytes, not terminated); returns the length. */
size_t textlib_timediff(int64_t now_ns, int64_t sec, int64_t nsec, char *out);
/* Pushes nil, err; returns 2 (a Lua C function's failure). */
int textlib_push_error(lua_State *L, const char *err);

/* herdtext.fields, .timestamp, .timediff, .latlon. */
extern const luaL_Reg textlib_lua_fns[];

#endif
