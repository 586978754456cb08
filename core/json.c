/* json: see json.h. Needs nothing from the rest of the core. */
#include "json.h"

#include <lauxlib.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int is_digit(unsigned char c) {
  return c >= '0' && c <= '9';
}

/* ---- json_cut: the places answer's JSON, checked and cut in one pass ----
 *
 * A WHATSAT storm turns hundreds of provider answers (about 10 KB each)
 * into replies; decoding them into Lua tables and encoding them back cost
 * more than everything else together. This scans the text once, strictly
 * (RFC 8259, UTF-8 checked), and copies it compacted, with the top-level
 * "results" array cut to a bound. The copy is done in runs: bytes are
 * copied only where something is dropped (white space, the "\" of "\/",
 * results past the bound), so a compact input costs one memcpy. Nesting
 * is bounded, so the recursion is too. */

#define JSON_MAX_DEPTH 64
#define JSON_MAX_TOP 256  /* top-level members, when they are reordered */
#define JSON_MAX_ORDER 16 /* keys in the order list */
#define JSON_MAX_KEY 64   /* longer keys never match a named one */
#define JSON_MAX_POS 66   /* "results" positions: "[", 64 elements, "]" */

typedef struct {
  size_t off, len; /* "key":value in the output */
  const char *key; /* the key as written (set after the scan), and */
  size_t klen;     /* its length with quotes */
  int rank;        /* place in the order list, or the list's length */
  int idx;         /* place in the input */
  int named;       /* whether the key is in the order list */
} json_member;

/* Where the top-level results array's parts are in the output (1-based):
 * its "[", the last byte of each element, its "]". */
typedef struct {
  size_t at[JSON_MAX_POS];
  int n, over; /* over: too many elements to note */
} json_pos;

typedef struct {
  const unsigned char *s;
  size_t n, i, run; /* input, position, start of the bytes not yet copied */
  char *out;        /* the output (never longer than the input) */
  size_t on;
  int mute; /* past the bound: check but do not copy */
  const char *err;
  size_t err_at;
} json_scan;

static int json_fail(json_scan *j, const char *why) {
  if (!j->err) {
    j->err = why;
    j->err_at = j->i;
  }
  return -1;
}

/* Copies the pending run [run, i) unless muted. */
static void json_flush(json_scan *j) {
  if (!j->mute && j->i > j->run) {
    memcpy(j->out + j->on, j->s + j->run, j->i - j->run);
    j->on += j->i - j->run;
  }
  j->run = j->i;
}

/* Byte classes, so the hot loops test one table entry per byte. A Lua
 * string always ends with a '\0' after its length, which is in neither
 * class, so these loops stop at the end without a bounds check. */
/* clang-format off */
#define JSON_WS 1    /* space, \t, \n, \r */
#define JSON_PLAIN 2 /* copied as is in a string: ASCII but " \ and controls */
#define W JSON_WS
#define P JSON_PLAIN
#define P16 P, P, P, P, P, P, P, P, P, P, P, P, P, P, P, P
#define Z16 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
static const unsigned char json_class[256] = {
  0, 0, 0, 0, 0, 0, 0, 0, 0, W, W, 0, 0, W, 0, 0,   /* 0x00 */
  Z16,                                              /* 0x10 */
  W | P, P, 0, P, P, P, P, P, P, P, P, P, P, P, P, P, /* 0x20: " */
  P16, P16,                                         /* 0x30, 0x40 */
  P, P, P, P, P, P, P, P, P, P, P, P, 0, P, P, P,   /* 0x50: \ */
  P16, P16,                                         /* 0x60, 0x70 */
  Z16, Z16, Z16, Z16, Z16, Z16, Z16, Z16,           /* UTF-8: checked apart */
};
#undef W
#undef P
#undef P16
#undef Z16
/* clang-format on */

/* Skips white space. Locals, not j->i: the compiler must assume a store
 * through j may change the bytes of s, and would reload at every byte. */
static void json_ws(json_scan *j) {
  const unsigned char *s = j->s;
  size_t i = j->i;
  if (!(json_class[s[i]] & JSON_WS)) return;
  json_flush(j);
  do
    i++;
  while (json_class[s[i]] & JSON_WS);
  j->i = j->run = i;
}

static int json_hex4(const unsigned char *p, size_t avail, unsigned *v) {
  if (avail < 4) return -1;
  unsigned x = 0;
  for (int k = 0; k < 4; k++) {
    unsigned char c = p[k];
    x <<= 4;
    if (c >= '0' && c <= '9')
      x |= (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f')
      x |= (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F')
      x |= (unsigned)(c - 'A' + 10);
    else
      return -1;
  }
  *v = x;
  return 0;
}

/* The length of the UTF-8 sequence at p (RFC 3629: no overlong forms, no
 * surrogates, at most U+10FFFF), or 0. */
static size_t json_utf8(const unsigned char *p, size_t avail) {
  unsigned char c = p[0];
  if (c < 0xC2 || c > 0xF4) return 0;
  size_t len = c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
  if (avail < len) return 0;
  for (size_t k = 1; k < len; k++)
    if ((p[k] & 0xC0) != 0x80) return 0;
  if ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] >= 0xA0) ||
      (c == 0xF0 && p[1] < 0x90) || (c == 0xF4 && p[1] >= 0x90))
    return 0;
  return len;
}

/* A string at s[i] == '"'; *escaped tells whether it held an escape. */
static int json_string(json_scan *j, int *escaped) {
  const unsigned char *s = j->s;
  size_t n = j->n, i = j->i + 1;
  int esc = 0;
  for (;;) {
    while (json_class[s[i]] & JSON_PLAIN)
      i++;
    if (i >= n) {
      j->i = i;
      return json_fail(j, "unterminated string");
    }
    unsigned char c = s[i];
    if (c == '"') break;
    if (c < 0x20) {
      j->i = i;
      return json_fail(j, "control character in string");
    }
    if (c >= 0x80) {
      size_t len = json_utf8(s + i, n - i);
      if (!len) {
        j->i = i;
        return json_fail(j, "invalid UTF-8 in string");
      }
      i += len;
      continue;
    }
    /* an escape */
    esc = 1;
    unsigned char e = i + 1 < n ? s[i + 1] : 0;
    if (e == '/') { /* written as a plain "/", like the Lua writer does */
      j->i = i;
      json_flush(j);
      j->run = i + 1;
      i += 2;
    } else if (e == '"' || e == '\\' || e == 'b' || e == 'f' || e == 'n' ||
               e == 'r' || e == 't') {
      i += 2;
    } else if (e == 'u') {
      unsigned cp, lo;
      if (json_hex4(s + i + 2, n - i - 2, &cp) < 0) {
        j->i = i;
        return json_fail(j, "bad \\u escape in string");
      }
      if (cp >= 0xDC00 && cp <= 0xDFFF) {
        j->i = i;
        return json_fail(j, "lone low surrogate in string");
      }
      if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (i + 7 >= n || s[i + 6] != '\\' || s[i + 7] != 'u' ||
            json_hex4(s + i + 8, n - i - 8, &lo) < 0 || lo < 0xDC00 ||
            lo > 0xDFFF) {
          j->i = i;
          return json_fail(j, "lone high surrogate in string");
        }
        i += 6;
      }
      i += 6;
    } else {
      j->i = i;
      return json_fail(j, "bad escape in string");
    }
  }
  j->i = i + 1;
  if (escaped) *escaped = esc;
  return 0;
}

static int json_digits(json_scan *j) {
  size_t start = j->i;
  while (j->i < j->n && is_digit(j->s[j->i]))
    j->i++;
  return j->i > start ? 0 : json_fail(j, "bad number");
}

static int json_number(json_scan *j) {
  if (j->s[j->i] == '-') j->i++;
  if (j->i < j->n && j->s[j->i] == '0')
    j->i++;
  else if (json_digits(j) < 0)
    return -1;
  if (j->i < j->n && j->s[j->i] == '.') {
    j->i++;
    if (json_digits(j) < 0) return -1;
  }
  if (j->i < j->n && (j->s[j->i] == 'e' || j->s[j->i] == 'E')) {
    j->i++;
    if (j->i < j->n && (j->s[j->i] == '+' || j->s[j->i] == '-')) j->i++;
    if (json_digits(j) < 0) return -1;
  }
  return 0;
}

static int json_literal(json_scan *j, const char *word, size_t len) {
  if (j->n - j->i < len || memcmp(j->s + j->i, word, len) != 0)
    return json_fail(j, "unexpected character");
  j->i += len;
  return 0;
}

static int json_array(json_scan *j, int depth, lua_Integer cut, json_pos *pos);
static int json_object(json_scan *j, int depth);

static int json_value(json_scan *j, int depth) {
  if (j->i >= j->n) return json_fail(j, "unexpected end");
  switch (j->s[j->i]) {
    case '{':
      return json_object(j, depth + 1);
    case '[':
      return json_array(j, depth + 1, -1, NULL);
    case '"':
      return json_string(j, NULL);
    case 't':
      return json_literal(j, "true", 4);
    case 'f':
      return json_literal(j, "false", 5);
    case 'n':
      return json_literal(j, "null", 4);
    default:
      if (j->s[j->i] == '-' || is_digit(j->s[j->i])) return json_number(j);
      return json_fail(j, "unexpected character");
  }
}

/* Notes the output position of the byte just copied (pos->at[]), or, with
 * ahead, of the byte about to be. Only used when nothing is muted. */
static void json_note(json_scan *j, json_pos *pos, int ahead) {
  if (!pos) return;
  json_flush(j);
  if (pos->n == JSON_MAX_POS)
    pos->over = 1;
  else
    pos->at[pos->n++] = j->on + (size_t)ahead;
}

/* An array at s[i] == '['; with cut >= 0 only its first cut elements are
 * copied (the rest is still checked); pos (or NULL) notes its parts. */
static int json_array(json_scan *j, int depth, lua_Integer cut, json_pos *pos) {
  if (depth > JSON_MAX_DEPTH) return json_fail(j, "nesting deeper than 64");
  j->i++;
  json_note(j, pos, 0);
  json_ws(j);
  if (j->i < j->n && j->s[j->i] == ']') {
    json_note(j, pos, 1);
    j->i++;
    return 0;
  }
  int saved = j->mute;
  lua_Integer k = 0;
  if (cut == 0) {
    json_flush(j);
    j->mute = 1;
  }
  for (;;) {
    if (json_value(j, depth) < 0) return -1;
    k++;
    json_note(j, pos, 0);
    json_ws(j);
    if (j->i >= j->n) return json_fail(j, "unexpected end in array");
    if (j->s[j->i] == ',') {
      if (cut >= 0 && k == cut) {
        json_flush(j);
        j->mute = 1;
      }
      j->i++;
      json_ws(j);
      continue;
    }
    if (j->s[j->i] != ']') return json_fail(j, "expected , or ] in array");
    if (j->mute != saved) {
      json_flush(j);
      j->mute = saved;
    }
    json_note(j, pos, 1);
    j->i++;
    return 0;
  }
}

/* After an object member: 0 when the object closes, 1 when another member
 * follows (its white space skipped), -1 on an error. */
static int json_member_end(json_scan *j) {
  json_ws(j);
  if (j->i >= j->n) return json_fail(j, "unexpected end in object");
  if (j->s[j->i] == '}') {
    j->i++;
    return 0;
  }
  if (j->s[j->i] != ',') return json_fail(j, "expected , or } in object");
  j->i++;
  json_ws(j);
  return 1;
}

static int json_object(json_scan *j, int depth) {
  if (depth > JSON_MAX_DEPTH) return json_fail(j, "nesting deeper than 64");
  j->i++;
  json_ws(j);
  if (j->i < j->n && j->s[j->i] == '}') {
    j->i++;
    return 0;
  }
  for (;;) {
    if (j->i >= j->n || j->s[j->i] != '"')
      return json_fail(j, "expected a string key");
    if (json_string(j, NULL) < 0) return -1;
    json_ws(j);
    if (j->i >= j->n || j->s[j->i] != ':') return json_fail(j, "expected :");
    j->i++;
    json_ws(j);
    if (json_value(j, depth) < 0) return -1;
    int end = json_member_end(j);
    if (end <= 0) return end;
  }
}

/* Decodes the body of a checked string (no quotes) into d, which has room
 * for len bytes (decoding never grows a string); returns its length. */
static size_t json_unescape(const unsigned char *p, size_t len, char *d) {
  const unsigned char *end = p + len;
  char *d0 = d;
  while (p < end) {
    if (*p != '\\') {
      *d++ = (char)*p++;
      continue;
    }
    unsigned char e = p[1];
    p += 2;
    switch (e) {
      case 'b':
        *d++ = '\b';
        break;
      case 'f':
        *d++ = '\f';
        break;
      case 'n':
        *d++ = '\n';
        break;
      case 'r':
        *d++ = '\r';
        break;
      case 't':
        *d++ = '\t';
        break;
      case 'u': {
        unsigned cp, lo;
        json_hex4(p, 4, &cp);
        p += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          json_hex4(p + 2, 4, &lo);
          p += 6;
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        }
        if (cp < 0x80) {
          *d++ = (char)cp;
        } else if (cp < 0x800) {
          *d++ = (char)(0xC0 | (cp >> 6));
          *d++ = (char)(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
          *d++ = (char)(0xE0 | (cp >> 12));
          *d++ = (char)(0x80 | ((cp >> 6) & 0x3F));
          *d++ = (char)(0x80 | (cp & 0x3F));
        } else {
          *d++ = (char)(0xF0 | (cp >> 18));
          *d++ = (char)(0x80 | ((cp >> 12) & 0x3F));
          *d++ = (char)(0x80 | ((cp >> 6) & 0x3F));
          *d++ = (char)(0x80 | (cp & 0x3F));
        }
        break;
      }
      default: /* " \ / */
        *d++ = (char)e;
    }
  }
  return (size_t)(d - d0);
}

/* What the caller learns about the top-level object. */
typedef struct {
  lua_Integer cut;
  const char *order[JSON_MAX_ORDER];
  size_t order_len[JSON_MAX_ORDER];
  int norder;
  int nm;
  int has_status, attrs_array, results_array;
  int nresults, results_idx;     /* "results" members, the last one's index */
  json_pos pos;                  /* its parts, when not cut */
  size_t status_off, status_len; /* the status string in the input */
  json_member m[JSON_MAX_TOP];   /* last: not cleared */
} json_top;

/* The top-level object: like json_object, noting each member and cutting
 * "results". For a repeated key the last one counts, as in decoders. */
static int json_top_object(json_scan *j, json_top *t) {
  if (j->i >= j->n) return json_fail(j, "unexpected end");
  if (j->s[j->i] != '{') return json_fail(j, "the top level is not an object");
  j->i++;
  json_ws(j);
  if (j->i < j->n && j->s[j->i] == '}') {
    j->i++;
    return 0;
  }
  for (int idx = 0;; idx++) {
    if (j->i >= j->n || j->s[j->i] != '"')
      return json_fail(j, "expected a string key");
    if (t->norder && idx >= JSON_MAX_TOP)
      return json_fail(j, "more than 256 top-level members");
    json_flush(j);
    size_t off = j->on, kstart = j->i;
    int escaped;
    if (json_string(j, &escaped) < 0) return -1;
    /* The key as a decoder sees it, if short enough to be a named one. */
    char key[JSON_MAX_KEY];
    size_t klen = j->i - kstart - 2;
    if (klen <= JSON_MAX_KEY) {
      if (escaped)
        klen = json_unescape(j->s + kstart + 1, klen, key);
      else
        memcpy(key, j->s + kstart + 1, klen);
    } else {
      klen = (size_t)-1; /* matches nothing below */
    }
#define KEY_IS(lit) (klen == sizeof lit - 1 && !memcmp(key, lit, klen))
    json_flush(j);
    size_t key_out = j->on - off;
    json_ws(j);
    if (j->i >= j->n || j->s[j->i] != ':') return json_fail(j, "expected :");
    j->i++;
    json_ws(j);
    size_t vstart = j->i;
    unsigned char first = j->i < j->n ? j->s[j->i] : 0;
    int rc;
    if (KEY_IS("results")) {
      t->nresults++;
      t->results_idx = idx;
    }
    if (KEY_IS("results") && first == '[')
      rc = json_array(j, 2, t->cut, t->cut < 0 ? &t->pos : NULL);
    else
      rc = json_value(j, 1);
    if (rc < 0) return -1;
    json_flush(j);
    if (KEY_IS("results")) t->results_array = first == '[';
    if (KEY_IS("html_attributions")) t->attrs_array = first == '[';
    if (KEY_IS("status")) {
      t->has_status = first == '"';
      t->status_off = vstart + 1;
      t->status_len = j->i - vstart - 2;
    }
    if (t->norder) {
      json_member *m = &t->m[idx];
      m->off = off;
      m->len = j->on - off;
      m->klen = key_out;
      m->idx = idx;
      m->rank = t->norder;
      m->named = 0;
      for (int r = 0; r < t->norder; r++)
        if (klen == t->order_len[r] && !memcmp(key, t->order[r], klen)) {
          m->rank = r;
          m->named = 1;
          break;
        }
      t->nm = idx + 1;
    }
#undef KEY_IS
    int end = json_member_end(j);
    if (end <= 0) return end;
  }
}

/* Members in the order list's order, then the others by key bytes; equal
 * keys keep their input order, so the last still wins when decoded. */
static int json_member_cmp(const void *pa, const void *pb) {
  const json_member *a = pa, *b = pb;
  if (a->rank != b->rank) return a->rank < b->rank ? -1 : 1;
  if (a->named) return a->idx < b->idx ? -1 : a->idx > b->idx;
  /* without the quotes, so "a" sorts before "a!" */
  size_t l = a->klen < b->klen ? a->klen : b->klen;
  int c = memcmp(a->key + 1, b->key + 1, l - 2);
  if (c == 0 && a->klen != b->klen) c = a->klen < b->klen ? -1 : 1;
  if (c == 0) c = a->idx < b->idx ? -1 : a->idx > b->idx;
  return c;
}

/* Rewrites the object's members in out (which starts with "{") in sorted
 * order; the length stays the same (members joined by single commas). */
static void json_reorder(lua_State *L, char *out, size_t on, json_top *t) {
  for (int k = 0; k < t->nm; k++)
    t->m[k].key = out + t->m[k].off;
  int sorted = 1;
  for (int k = 1; k < t->nm && sorted; k++)
    sorted = json_member_cmp(&t->m[k - 1], &t->m[k]) < 0;
  if (sorted) return;
  qsort(t->m, (size_t)t->nm, sizeof t->m[0], json_member_cmp);
  char *copy = lua_newuserdatauv(L, on, 0);
  memcpy(copy, out, on);
  size_t pos = 1;
  for (int k = 0; k < t->nm; k++) {
    if (k) out[pos++] = ',';
    memcpy(out + pos, copy + t->m[k].off, t->m[k].len);
    pos += t->m[k].len;
    if (t->m[k].idx == t->results_idx)
      for (int p = 0; p < t->pos.n; p++)
        t->pos.at[p] = t->pos.at[p] - t->m[k].off + pos - t->m[k].len;
  }
  lua_pop(L, 1);
}

/* json_cut(text [, bound [, order]]) -> json, status, attributions_array,
 * results_array [, parts] | nil, "reason at byte N". text must be one JSON
 * object; json is it compacted ("\/" written "/"), the top-level "results"
 * array cut to its first bound elements (no cut without bound), the
 * top-level members in order's order (a list of keys) then the rest by
 * key, when order is given. status is the top-level "status" string
 * decoded, or nil; the booleans tell whether html_attributions and results
 * are arrays. Without bound, when there is one "results" array of at most
 * 64 elements, parts lists where in json its "[", the last byte of each
 * element and its "]" are, so later cuts need no second scan. */
int json_l_cut(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  json_top top, *t = &top; /* about 12 KB of C stack, no allocation */
  memset(t, 0, offsetof(json_top, m));
  t->cut = -1;
  if (!lua_isnoneornil(L, 2)) {
    t->cut = luaL_checkinteger(L, 2);
    luaL_argcheck(L, t->cut >= 0, 2, "bound must be 0 or more");
  }
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_Integer len = luaL_len(L, 3);
    luaL_argcheck(L, len <= JSON_MAX_ORDER, 3, "at most 16 keys");
    for (int k = 0; k < (int)len; k++) {
      lua_geti(L, 3, k + 1);
      size_t kl;
      const char *key =
          lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &kl) : NULL;
      luaL_argcheck(L, key && kl <= JSON_MAX_KEY, 3,
                    "keys must be strings of at most 64 bytes");
      t->order[k] = key; /* the table keeps it alive */
      t->order_len[k] = kl;
      lua_pop(L, 1);
    }
    t->norder = (int)len;
  }

  luaL_Buffer b;
  json_scan j = {.s = (const unsigned char *)s, .n = n};
  j.out = luaL_buffinitsize(L, &b, n);
  json_ws(&j);
  if (json_top_object(&j, t) == 0) {
    json_ws(&j);
    if (j.i < j.n) json_fail(&j, "trailing characters");
  }
  if (j.err) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s at byte %I", j.err, (lua_Integer)j.err_at + 1);
    return 2;
  }
  json_flush(&j);
  if (t->norder && t->nm > 1) json_reorder(L, j.out, j.on, t);
  luaL_pushresultsize(&b, j.on);

  if (t->has_status) {
    luaL_Buffer sb;
    char *d = luaL_buffinitsize(L, &sb, t->status_len);
    size_t len = json_unescape((const unsigned char *)s + t->status_off,
                               t->status_len, d);
    luaL_pushresultsize(&sb, len);
  } else {
    lua_pushnil(L);
  }
  lua_pushboolean(L, t->attrs_array);
  lua_pushboolean(L, t->results_array);
  if (t->cut < 0 && t->results_array && t->nresults == 1 && !t->pos.over) {
    lua_createtable(L, t->pos.n, 0);
    for (int k = 0; k < t->pos.n; k++) {
      lua_pushinteger(L, (lua_Integer)t->pos.at[k]);
      lua_rawseti(L, -2, k + 1);
    }
    return 5;
  }
  return 4;
}
