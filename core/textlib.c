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

/* White space as the protocol defines it: space, \t, \n, \v, \f, \r. A
 * table, since every byte of every line goes through it. */
static const unsigned char space_byte[256] = {
    ['\t'] = 1, ['\n'] = 1, ['\v'] = 1, ['\f'] = 1, ['\r'] = 1, [' '] = 1};

static int is_space(unsigned char c) {
  return space_byte[c];
}

static int is_digit(unsigned char c) {
  return c >= '0' && c <= '9';
}

/* fields(s [, max]) -> the white-space separated fields of s, at most max
 * (default and limit MAX_FIELDS): fields(line, 1) is the verb alone. */
static int l_fields(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  lua_Integer max = luaL_optinteger(L, 2, MAX_FIELDS);
  if (max > MAX_FIELDS) max = MAX_FIELDS;
  int count = 0;
  size_t i = 0;
  while (count < max) {
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

#define TIME_ERROR "time must be seconds with up to nine decimals"
#define LOCATION_ERROR "location must be [+-]lat[+-]lon in decimal degrees"

/* "digits" or "digits.d{1,9}" -> *sec, *nsec; 0 or -1. Exact: the
 * fraction becomes integer nanoseconds. */
static int parse_timestamp(const char *s, size_t n, int64_t *sec_out,
                           int64_t *nsec_out) {
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
  *sec_out = sec;
  *nsec_out = nsec;
  return 0;
bad:
  return -1;
}

/* timestamp(s) -> sec, nsec (see parse_timestamp), else nil, err. */
static int l_timestamp(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  int64_t sec, nsec;
  if (parse_timestamp(s, n, &sec, &nsec) < 0) {
    lua_pushnil(L);
    lua_pushstring(L, TIME_ERROR);
    return 2;
  }
  lua_pushinteger(L, sec);
  lua_pushinteger(L, nsec);
  return 2;
}

#define DIFF_MAX 48

/* now_ns - sec.nsec as "+S.NNNNNNNNN" / "-S.NNNNNNNNN" into out (DIFF_MAX
 * bytes, not terminated); returns the length. */
static size_t format_diff(int64_t now, int64_t sec, int64_t nsec, char *out) {
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
  char *p = out + DIFF_MAX;
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
  size_t len = (size_t)(out + DIFF_MAX - p);
  memmove(out, p, len);
  return len;
}

/* timediff(now_ns, sec, nsec) -> "+S.NNNNNNNNN" / "-S.NNNNNNNNN". */
static int l_timediff(lua_State *L) {
  int64_t now = luaL_checkinteger(L, 1);
  int64_t sec = luaL_checkinteger(L, 2);
  int64_t nsec = luaL_checkinteger(L, 3);
  char out[DIFF_MAX];
  lua_pushlstring(L, out, format_diff(now, sec, nsec, out));
  return 1;
}

/* One signed decimal "[+-]digits[.digits]" starting at s[*i]; its value
 * goes to *v. Returns 0 or -1. One pass: up to 15 significant digits the
 * value is digits / 10^k with both exactly representable, so one division
 * rounds correctly, like strtod, at a fraction of its cost. Longer inputs
 * go to strtod. */
static int signed_decimal(const char *s, size_t n, size_t *i, double *v) {
  static const double pow10[] = {1e0, 1e1, 1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
  size_t start = *i, j = *i;
  if (j >= n || (s[j] != '+' && s[j] != '-')) return -1;
  j++;
  int64_t m = 0;
  int nd = 0, scale = 0;
  size_t digits = j;
  for (; j < n && is_digit((unsigned char)s[j]); j++) {
    if (nd <= 15) m = m * 10 + (s[j] - '0'); /* past 15: strtod's job */
    nd += m != 0;
  }
  if (j == digits) return -1;
  if (j < n && s[j] == '.') {
    size_t frac = ++j;
    for (; j < n && is_digit((unsigned char)s[j]); j++) {
      if (nd <= 15) m = m * 10 + (s[j] - '0');
      nd += m != 0;
      scale++;
    }
    if (j == frac) return -1;
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

static int parse_latlon(const char *s, size_t n, double *lat, double *lon) {
  size_t i = 0;
  if (signed_decimal(s, n, &i, lat) < 0 || signed_decimal(s, n, &i, lon) < 0 ||
      i != n)
    return -1;
  return 0;
}

/* latlon(s) -> lat, lon for ISO 6709 "[+-]lat[+-]lon" decimal degrees
 * (no range check: that is the caller's rule), else nil, err. */
static int l_latlon(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  double lat, lon;
  if (parse_latlon(s, n, &lat, &lon) < 0) {
    lua_pushnil(L);
    lua_pushstring(L, LOCATION_ERROR);
    return 2;
  }
  lua_pushnumber(L, lat);
  lua_pushnumber(L, lon);
  return 2;
}

typedef struct {
  const char *p;
  size_t len;
} span_t;

/* Up to max fields of s into f; returns how many there are, up to max + 1
 * (so "more than max" shows). */
static int split(const char *s, size_t n, span_t *f, int max) {
  int count = 0;
  size_t i = 0;
  while (count <= max) {
    while (i < n && is_space((unsigned char)s[i]))
      i++;
    if (i == n) break;
    size_t start = i;
    while (i < n && !is_space((unsigned char)s[i]))
      i++;
    if (count < max) f[count] = (span_t){s + start, i - start};
    count++;
  }
  return count;
}

/* iamat(line, server, now_ns) -> client, sec, nsec, at_line, lat, lon for
 * "<verb> <client> <location> <time>" (the verb is the caller's business),
 * where at_line is "AT <server> <now - time> <client> <location> <time>"
 * with the operands byte for byte; else nil, err. One call does what
 * fields + latlon + timestamp + timediff + a nine-piece concatenation did
 * on every IAMAT. Ranges (|lat| <= 90...) stay the caller's rule. */
static int l_iamat(lua_State *L) {
  size_t n, name_len;
  const char *s = luaL_checklstring(L, 1, &n);
  const char *name = luaL_checklstring(L, 2, &name_len);
  int64_t now = luaL_checkinteger(L, 3);
  span_t f[4];
  int64_t sec, nsec;
  double lat, lon;
  const char *err = NULL;
  if (split(s, n, f, 4) != 4)
    err = "IAMAT takes a client, a location and a time";
  else if (parse_latlon(f[2].p, f[2].len, &lat, &lon) < 0)
    err = LOCATION_ERROR;
  else if (parse_timestamp(f[3].p, f[3].len, &sec, &nsec) < 0)
    err = TIME_ERROR;
  if (err) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  char diff[DIFF_MAX];
  size_t diff_len = format_diff(now, sec, nsec, diff);
  lua_pushlstring(L, f[1].p, f[1].len);
  lua_pushinteger(L, sec);
  lua_pushinteger(L, nsec);
  /* The AT line is assembled on the C stack when it fits (it nearly always
   * does), else in a luaL_Buffer. */
  size_t at_len =
      3 + name_len + 1 + diff_len + 3 + f[1].len + f[2].len + f[3].len;
  char stack[512];
  luaL_Buffer b;
  char *p = at_len <= sizeof stack ? stack : luaL_buffinitsize(L, &b, at_len);
  char *start = p;
  memcpy(p, "AT ", 3);
  p += 3;
  memcpy(p, name, name_len);
  p += name_len;
  *p++ = ' ';
  memcpy(p, diff, diff_len);
  p += diff_len;
  for (int k = 1; k < 4; k++) {
    *p++ = ' ';
    memcpy(p, f[k].p, f[k].len);
    p += f[k].len;
  }
  if (start == stack)
    lua_pushlstring(L, stack, at_len);
  else
    luaL_pushresultsize(&b, at_len);
  lua_pushnumber(L, lat);
  lua_pushnumber(L, lon);
  return 6;
}

/* "[+-]digits.ddddddddd": a time difference as format_diff writes it. */
static int is_diff(const char *s, size_t n) {
  if (n < 12 || (s[0] != '+' && s[0] != '-') || s[n - 10] != '.') return 0;
  for (size_t i = 1; i < n; i++)
    if (i != n - 10 && !is_digit((unsigned char)s[i])) return 0;
  return 1;
}

/* at(line) -> server, client, sec, nsec, lat, lon for an AT line
 * "AT <server> <[+-]S.NNNNNNNNN> <client> <location> <time>", else nil,
 * err. What a record from a peer must look like; whether it agrees with
 * the client and timestamp it came with, and the ranges, are the
 * caller's rules. */
static int l_at(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  span_t f[6];
  int64_t sec, nsec;
  double lat, lon;
  const char *err = NULL;
  if (split(s, n, f, 6) != 6 || f[0].len != 2 || memcmp(f[0].p, "AT", 2))
    err = "not an AT line";
  else if (!is_diff(f[2].p, f[2].len))
    err = "not an AT line: bad time difference";
  else if (parse_latlon(f[4].p, f[4].len, &lat, &lon) < 0)
    err = LOCATION_ERROR;
  else if (parse_timestamp(f[5].p, f[5].len, &sec, &nsec) < 0)
    err = TIME_ERROR;
  if (err) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  lua_pushlstring(L, f[1].p, f[1].len);
  lua_pushlstring(L, f[3].p, f[3].len);
  lua_pushinteger(L, sec);
  lua_pushinteger(L, nsec);
  lua_pushnumber(L, lat);
  lua_pushnumber(L, lon);
  return 6;
}

int luaopen_herdtext(lua_State *L) {
  static const luaL_Reg fns[] = {{"fields", l_fields},
                                 {"timestamp", l_timestamp},
                                 {"timediff", l_timediff},
                                 {"latlon", l_latlon},
                                 {"iamat", l_iamat},
                                 {"at", l_at},
                                 {NULL, NULL}};
  luaL_newlib(L, fns);
  return 1;
}
