/* textlib: see textlib.h. */
#include "textlib.h"

#include <lauxlib.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

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

#define LOCATION_ERROR "location must be [+-]lat[+-]lon in decimal degrees"

/* The decimal digits at p (before e), accumulated into *v (which wraps
 * past 19 digits: callers use it only for fewer); returns their end. */
static const char *take_digits(const char *p, const char *e, uint64_t *v) {
  uint64_t x = *v;
  for (; p < e && (unsigned char)(*p - '0') < 10; p++)
    x = x * 10 + (unsigned)(*p - '0');
  *v = x;
  return p;
}

static const int64_t nsec_scale[10] = {
    1000000000, 100000000, 10000000, 1000000, 100000, 10000, 1000, 100, 10, 1};

/* "digits" or "digits.d{1,9}" -> *sec, *nsec; 0 or -1. Exact: the
 * fraction becomes integer nanoseconds. Leading zeros do not count towards
 * the 18 digits of seconds. */
int textlib_timestamp(const char *s, size_t n, int64_t *sec_out,
                      int64_t *nsec_out) {
  const char *p = s, *e = s + n;
  while (p < e && *p == '0')
    p++;
  const char *sig = p;
  uint64_t sec = 0, frac = 0;
  p = take_digits(p, e, &sec);
  if (p == s || p - sig > MAX_SECONDS_DIGITS) return -1;
  if (p < e) {
    if (*p++ != '.') return -1;
    const char *f = p;
    p = take_digits(p, e, &frac);
    if (p == f || p - f > 9 || p != e) return -1;
    frac *= (uint64_t)nsec_scale[p - f];
  }
  *sec_out = (int64_t)sec;
  *nsec_out = (int64_t)frac;
  return 0;
}

int textlib_push_error(lua_State *L, const char *err) {
  lua_pushnil(L);
  lua_pushstring(L, err);
  return 2;
}

/* timestamp(s) -> sec, nsec (see parse_timestamp), else nil, err. */
static int l_timestamp(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  int64_t sec, nsec;
  if (textlib_timestamp(s, n, &sec, &nsec) < 0)
    return textlib_push_error(L, TEXTLIB_TIME_ERROR);
  lua_pushinteger(L, sec);
  lua_pushinteger(L, nsec);
  return 2;
}

/* now_ns - sec.nsec as "+S.NNNNNNNNN" / "-S.NNNNNNNNN" into out
 * (TEXTLIB_DIFF_MAX bytes, not terminated); returns the length. */
size_t textlib_timediff(int64_t now, int64_t sec, int64_t nsec, char *out) {
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
  char *p = out + TEXTLIB_DIFF_MAX;
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
  size_t len = (size_t)(out + TEXTLIB_DIFF_MAX - p);
  memmove(out, p, len);
  return len;
}

/* timediff(now_ns, sec, nsec) -> "+S.NNNNNNNNN" / "-S.NNNNNNNNN". */
static int l_timediff(lua_State *L) {
  int64_t now = luaL_checkinteger(L, 1);
  int64_t sec = luaL_checkinteger(L, 2);
  int64_t nsec = luaL_checkinteger(L, 3);
  char out[TEXTLIB_DIFF_MAX];
  lua_pushlstring(L, out, textlib_timediff(now, sec, nsec, out));
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
  const char *p = s + *i, *e = s + n, *start = p;
  if (p >= e || (*p != '+' && *p != '-')) return -1;
  const char *int_begin = ++p;
  while (p < e && *p == '0')
    p++;
  const char *sig = p;
  uint64_t m = 0;
  p = take_digits(p, e, &m);
  if (p == int_begin) return -1;
  size_t sig_int = (size_t)(p - sig), frac_len = 0;
  if (p < e && *p == '.') {
    const char *f = ++p;
    p = take_digits(p, e, &m);
    frac_len = (size_t)(p - f);
    if (frac_len == 0) return -1;
  }
  /* Leading zeros of a fraction count here: a rare input then takes the
   * strtod path, which is exact too. */
  if (sig_int + frac_len <= 15) {
    *v = (double)m / pow10[frac_len];
    if (*start == '-') *v = -*v;
  } else {
    char tmp[64];
    if ((size_t)(p - start) >= sizeof tmp) return -1;
    memcpy(tmp, start, (size_t)(p - start));
    tmp[p - start] = '\0';
    *v = strtod(tmp, NULL);
  }
  *i = (size_t)(p - s);
  return 0;
}

/* A location as the protocol defines it: ISO 6709 "[+-]lat[+-]lon" decimal
 * degrees with the latitude within ±90 and the longitude within ±180.
 * NULL or what is wrong. */
const char *textlib_latlon(const char *s, size_t n, double *lat, double *lon) {
  size_t i = 0;
  if (signed_decimal(s, n, &i, lat) < 0 || signed_decimal(s, n, &i, lon) < 0 ||
      i != n)
    return LOCATION_ERROR;
  if (*lat < -90 || *lat > 90) return "latitude out of range";
  if (*lon < -180 || *lon > 180) return "longitude out of range";
  return NULL;
}

/* latlon(s) -> lat, lon for a location (see parse_latlon), else nil, err. */
static int l_latlon(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  double lat, lon;
  const char *err = textlib_latlon(s, n, &lat, &lon);
  if (err) return textlib_push_error(L, err);
  lua_pushnumber(L, lat);
  lua_pushnumber(L, lon);
  return 2;
}

/* Bit k set when s[k] is white space, for k < n <= 16; bits from n on set
 * too, so that a field running to the end closes there. */
static uint32_t space_mask(const char *s, size_t n) {
  uint32_t m = 0;
#ifdef __SSE2__
  if (n == 16) {
    __m128i v = _mm_loadu_si128((const __m128i *)s);
    /* space, or \t..\r: (v - 9) <= 4 unsigned */
    __m128i ctl = _mm_sub_epi8(v, _mm_set1_epi8(9));
    __m128i is_ctl = _mm_cmpeq_epi8(_mm_min_epu8(ctl, _mm_set1_epi8(4)), ctl);
    __m128i is_sp = _mm_cmpeq_epi8(v, _mm_set1_epi8(' '));
    return (uint32_t)_mm_movemask_epi8(_mm_or_si128(is_ctl, is_sp));
  }
#endif
  for (size_t k = 0; k < n; k++)
    m |= (uint32_t)is_space((unsigned char)s[k]) << k;
  return m | (0xffffu << n & 0xffffu);
}

/* The first fields of s, at most max, into f; returns how many (a caller
 * that must see "more than N" asks for N + 1). Sixteen bytes are
 * classified at a time, and field edges found from the masks: this runs
 * on every line. */
int textlib_split(const char *s, size_t n, textlib_span_t *f, int max) {
  int count = 0;
  uint32_t prev_space = 1; /* before the string */
  size_t start = 0;
  for (size_t base = 0; base < n && count < max; base += 16) {
    size_t len = n - base < 16 ? n - base : 16;
    uint32_t m = space_mask(s + base, len);
    uint32_t before = ((m << 1) | prev_space) & 0xffffu; /* s[k - 1] */
    uint32_t edges = (~m & before) | (m & ~before & 0xffffu);
    prev_space = m >> 15 & 1;
    while (edges && count < max) {
      unsigned k = (unsigned)__builtin_ctz(edges);
      edges &= edges - 1;
      if (!(m >> k & 1))
        start = base + k; /* a field starts */
      else
        f[count++] = (textlib_span_t){s + start, base + k - start};
    }
  }
  if (!prev_space && count < max) /* a field runs to the end */
    f[count++] = (textlib_span_t){s + start, n - start};
  return count;
}

/* fields(s [, max]) -> the white-space separated fields of s, at most max
 * (default and limit MAX_FIELDS): fields(line, 1) is the verb alone. */
static int l_fields(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  lua_Integer max = luaL_optinteger(L, 2, MAX_FIELDS);
  if (max > MAX_FIELDS) max = MAX_FIELDS;
  if (max < 1) return 0;
  textlib_span_t f[MAX_FIELDS];
  int count = textlib_split(s, n, f, (int)max);
  luaL_checkstack(L, count, "fields");
  for (int k = 0; k < count; k++)
    lua_pushlstring(L, f[k].p, f[k].len);
  return count;
}

const luaL_Reg textlib_lua_fns[] = {{"fields", l_fields},
                                    {"timestamp", l_timestamp},
                                    {"timediff", l_timediff},
                                    {"latlon", l_latlon},
                                    {NULL, NULL}};
