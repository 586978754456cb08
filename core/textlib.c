/* textlib: see textlib.h. */
#include "textlib.h"

#include <lauxlib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FIELDS 64
#define MAX_SECONDS_DIGITS 18 /* keeps every difference inside int64 */
#define NS 1000000000LL

/* White space as the protocol defines it: space, \t, \n, \v, \f, \r. */
static int is_space(unsigned char c) {
  return c == ' ' || (c >= '\t' && c <= '\r');
}

static int is_digit(unsigned char c) {
  return c >= '0' && c <= '9';
}

/* fields(s) -> every white-space separated field (at most MAX_FIELDS). */
static int l_fields(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  int count = 0;
  size_t i = 0;
  while (count < MAX_FIELDS) {
    while (i < n && is_space((unsigned char)s[i]))
      i++;
    if (i == n) break;
    size_t start = i;
    while (i < n && !is_space((unsigned char)s[i]))
      i++;
    luaL_checkstack(L, 1, "fields");
    lua_pushlstring(L, s + start, i - start);
    count++;
  }
  return count;
}

/* timestamp(s) -> sec, nsec for "digits" or "digits.d{1,9}", else nil,
 * err. Exact: the fraction becomes integer nanoseconds. */
static int l_timestamp(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  size_t i = 0;
  while (i < n && s[i] == '0' && i + 1 < n && is_digit((unsigned char)s[i + 1]))
    i++; /* leading zeros do not count towards the limit */
  size_t int_start = i;
  int64_t sec = 0;
  while (i < n && is_digit((unsigned char)s[i])) {
    if (i - int_start < MAX_SECONDS_DIGITS) sec = sec * 10 + (s[i] - '0');
    i++;
  }
  size_t int_digits = i - int_start;
  if (int_digits == 0 || int_digits > MAX_SECONDS_DIGITS) goto bad;
  int64_t nsec = 0;
  if (i < n) {
    if (s[i++] != '.') goto bad;
    size_t frac_start = i;
    while (i < n && is_digit((unsigned char)s[i]) && i - frac_start < 9)
      nsec = nsec * 10 + (s[i++] - '0');
    size_t frac_digits = i - frac_start;
    if (frac_digits == 0 || i != n) goto bad;
    for (size_t k = frac_digits; k < 9; k++)
      nsec *= 10;
  }
  lua_pushinteger(L, sec);
  lua_pushinteger(L, nsec);
  return 2;
bad:
  lua_pushnil(L);
  lua_pushstring(L, "time must be seconds with up to nine decimals");
  return 2;
}

/* timediff(now_ns, sec, nsec) -> "+S.NNNNNNNNN" / "-S.NNNNNNNNN". */
static int l_timediff(lua_State *L) {
  int64_t now = luaL_checkinteger(L, 1);
  int64_t sec = luaL_checkinteger(L, 2);
  int64_t nsec = luaL_checkinteger(L, 3);
  int64_t dsec = now / NS - sec, dnsec = now % NS - nsec;
  if (dsec > 0 && dnsec < 0) {
    dsec--;
    dnsec += NS;
  } else if (dsec < 0 && dnsec > 0) {
    dsec++;
    dnsec -= NS;
  }
  /* Written backwards by hand: this runs for every IAMAT and printf's
   * machinery cost more than the rest of the arithmetic. */
  char out[48];
  char *p = out + sizeof out;
  int neg = dsec < 0 || dnsec < 0;
  uint64_t whole = (uint64_t)(neg ? -dsec : dsec);
  uint64_t frac = (uint64_t)(neg ? -dnsec : dnsec);
  for (int k = 0; k < 9; k++, frac /= 10)
    *--p = (char)('0' + frac % 10);
  *--p = '.';
  do {
    *--p = (char)('0' + whole % 10);
    whole /= 10;
  } while (whole);
  *--p = neg ? '-' : '+';
  size_t len = (size_t)(out + sizeof out - p);
  memmove(out, p, len);
  lua_pushlstring(L, out, (size_t)len);
  return 1;
}

/* One signed decimal "[+-]digits[.digits]" starting at s[*i]; its value
 * goes to *v. Returns 0 or -1. */
static int signed_decimal(const char *s, size_t n, size_t *i, double *v) {
  size_t start = *i, j = *i;
  if (j >= n || (s[j] != '+' && s[j] != '-')) return -1;
  j++;
  size_t digits = j;
  while (j < n && is_digit((unsigned char)s[j]))
    j++;
  if (j == digits) return -1;
  if (j < n && s[j] == '.') {
    size_t frac = ++j;
    while (j < n && is_digit((unsigned char)s[j]))
      j++;
    if (j == frac) return -1;
  }
  /* Up to 15 significant digits the value is digits / 10^k with both
   * exactly representable, so one division rounds correctly, like strtod,
   * at a fraction of its cost. Longer inputs go to strtod. */
  static const double pow10[] = {1e0, 1e1, 1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
  int64_t m = 0;
  int nd = 0, scale = 0, seen_dot = 0;
  for (size_t k = start + 1; k < j; k++) {
    if (s[k] == '.') {
      seen_dot = 1;
      continue;
    }
    if (nd == 0 && s[k] == '0' && !seen_dot) continue;
    m = m * 10 + (s[k] - '0');
    nd += m != 0 || nd > 0;
    scale += seen_dot;
    if (nd > 15 || scale > 15) break;
  }
  if (nd <= 15 && scale <= 15) {
    *v = (double)m / pow10[scale];
    if (s[start] == '-') *v = -*v;
  } else {
    char tmp[64];
    if (j - start >= sizeof tmp) return -1;
    memcpy(tmp, s + start, j - start);
    tmp[j - start] = '\0';
    *v = strtod(tmp, NULL);
  }
  *i = j;
  return 0;
}

/* latlon(s) -> lat, lon for ISO 6709 "[+-]lat[+-]lon" decimal degrees
 * (no range check: that is the caller's rule), else nil, err. */
static int l_latlon(lua_State *L) {
  size_t n, i = 0;
  const char *s = luaL_checklstring(L, 1, &n);
  double lat, lon;
  if (signed_decimal(s, n, &i, &lat) < 0 ||
      signed_decimal(s, n, &i, &lon) < 0 || i != n) {
    lua_pushnil(L);
    lua_pushstring(L, "location must be [+-]lat[+-]lon in decimal degrees");
    return 2;
  }
  lua_pushnumber(L, lat);
  lua_pushnumber(L, lon);
  return 2;
}

int luaopen_herdtext(lua_State *L) {
  static const luaL_Reg fns[] = {{"fields", l_fields},
                                 {"timestamp", l_timestamp},
                                 {"timediff", l_timediff},
                                 {"latlon", l_latlon},
                                 {NULL, NULL}};
  luaL_newlib(L, fns);
  return 1;
}
