/* records: see records.h. */
#include "records.h"

#include <stdio.h>
#include <string.h>

#include "textlib.h"
#ifndef RECORDS_FORMAT_ONLY
#include "forward.h"
#include "log.h"
#include "peer.h"
#include "script.h"
#include "store.h"
#endif

/* ---- the AT line's format ----
 *
 *   AT <server> <[+-]S.NNNNNNNNN> <client> <location> <time>
 *
 * field:  0      1          2          3          4        5 */
enum { AT_VERB, AT_SERVER, AT_DIFF, AT_CLIENT, AT_LOCATION, AT_TIME, AT_N };

static int is_digit(unsigned char c) {
  return c >= '0' && c <= '9';
}

/* A report's location and time fields: the location checked, the time
 * read into *sec, *nsec; NULL or what is wrong. */
static const char *parse_report(textlib_span_t loc, textlib_span_t time,
                                int64_t *sec, int64_t *nsec) {
  double lat, lon;
  const char *err = textlib_latlon(loc.p, loc.len, &lat, &lon);
  if (err) return err;
  if (textlib_timestamp(time.p, time.len, sec, nsec) < 0)
    return TEXTLIB_TIME_ERROR;
  return NULL;
}

/* "[+-]digits.ddddddddd": a time difference as textlib_timediff writes. */
static int is_diff(const char *s, size_t n) {
  if (n < 12 || (s[0] != '+' && s[0] != '-') || s[n - 10] != '.') return 0;
  for (size_t i = 1; i < n; i++)
    if (i != n - 10 && !is_digit((unsigned char)s[i])) return 0;
  return 1;
}

/* The fields of an AT line into f (AT_N of them); NULL or what is wrong
 * with its shape. */
static const char *split_at(const char *s, size_t n, textlib_span_t *f) {
  textlib_span_t more[AT_N + 1]; /* one field too many is noticed */
  if (textlib_split(s, n, more, AT_N + 1) != AT_N || more[0].len != 2 ||
      memcmp(more[0].p, "AT", 2))
    return "not an AT line";
  memcpy(f, more, sizeof(textlib_span_t) * AT_N);
  return NULL;
}

const char *records_check(const char *s, size_t n, const char *client,
                          size_t client_len, int64_t sec, int64_t nsec) {
  textlib_span_t f[AT_N];
  int64_t at_sec, at_nsec;
  const char *err;
  if ((err = split_at(s, n, f))) return err;
  if (!is_diff(f[AT_DIFF].p, f[AT_DIFF].len))
    return "not an AT line: bad time difference";
  if ((err = parse_report(f[AT_LOCATION], f[AT_TIME], &at_sec, &at_nsec)))
    return err;
  if (f[AT_CLIENT].len != client_len ||
      memcmp(f[AT_CLIENT].p, client, client_len))
    return "client does not match";
  if (at_sec != sec || at_nsec != nsec) return "timestamp does not match";
  return NULL;
}

/* iamat(line, server, now_ns) -> client, sec, nsec, reply for
 * "<verb> <client> <location> <time>" (the verb is the caller's business),
 * where reply is "AT <server> <now - time> <client> <location> <time>\n"
 * with the operands byte for byte; else nil, err. One call does what
 * fields + latlon + timestamp + timediff + a concatenation did on every
 * IAMAT, and the reply with its newline is one string, which the store
 * takes as it is (store_put drops the newline). */
static int l_iamat(lua_State *L) {
  size_t n, name_len;
  const char *s = luaL_checklstring(L, 1, &n);
  const char *name = luaL_checklstring(L, 2, &name_len);
  int64_t now = luaL_checkinteger(L, 3);
  textlib_span_t f[5]; /* a fifth field is one too many */
  int64_t sec, nsec;
  const char *err = NULL;
  if (textlib_split(s, n, f, 5) != 4)
    err = "IAMAT takes a client, a location and a time";
  else
    err = parse_report(f[2], f[3], &sec, &nsec);
  if (err) return textlib_push_error(L, err);
  char diff[TEXTLIB_DIFF_MAX];
  size_t diff_len = textlib_timediff(now, sec, nsec, diff);
  lua_pushlstring(L, f[1].p, f[1].len);
  lua_pushinteger(L, sec);
  lua_pushinteger(L, nsec);
  /* The AT line is assembled on the C stack when it fits (it nearly always
   * does), else in a luaL_Buffer. */
  size_t at_len =
      3 + name_len + 1 + diff_len + 3 + f[1].len + f[2].len + f[3].len + 1;
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
  *p = '\n';
  if (start == stack)
    lua_pushlstring(L, stack, at_len);
  else
    luaL_pushresultsize(&b, at_len);
  return 4;
}

/* at(line, client, sec, nsec) -> true, else nil, err: records_check. */
static int l_at(lua_State *L) {
  size_t n, client_len;
  const char *s = luaL_checklstring(L, 1, &n);
  const char *client = luaL_checklstring(L, 2, &client_len);
  lua_Integer sec = luaL_checkinteger(L, 3);
  lua_Integer nsec = luaL_checkinteger(L, 4);
  const char *err = records_check(s, n, client, client_len, sec, nsec);
  if (err) return textlib_push_error(L, err);
  lua_pushboolean(L, 1);
  return 1;
}

/* at_fields(line) -> server, diff, client, location, time of an AT line
 * (its shape only: no field is checked), else nil, err. */
static int l_at_fields(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  textlib_span_t f[AT_N];
  const char *err = split_at(s, n, f);
  if (err) return textlib_push_error(L, err);
  for (int k = AT_SERVER; k < AT_N; k++)
    lua_pushlstring(L, f[k].p, f[k].len);
  return AT_N - 1;
}

/* same_report(a, b) -> whether two AT lines report the same location and
 * time, byte for byte, whichever server took them. */
static int l_same_report(lua_State *L) {
  size_t an, bn;
  const char *a = luaL_checklstring(L, 1, &an);
  const char *b = luaL_checklstring(L, 2, &bn);
  textlib_span_t fa[AT_N], fb[AT_N];
  int same = !split_at(a, an, fa) && !split_at(b, bn, fb);
  for (int k = AT_LOCATION; same && k <= AT_TIME; k++)
    same = fa[k].len == fb[k].len && !memcmp(fa[k].p, fb[k].p, fa[k].len);
  lua_pushboolean(L, same);
  return 1;
}

const luaL_Reg records_lua_fns[] = {{"iamat", l_iamat},
                                    {"at", l_at},
                                    {"at_fields", l_at_fields},
                                    {"same_report", l_same_report},
                                    {NULL, NULL}};

#ifndef RECORDS_FORMAT_ONLY
/* ---- the accept rule ---- */

static records_stats_t stats;
static uv_loop_t *loop;        /* NULL under --check */
static peer_tally_t *cur_sync; /* the pull whose record is being stored */
static int cur_flood;          /* it came by a fallback flood (FLOODREC) */

/* checked: the caller has checked the line (a script's format). */
static int accept_line(const char *from, const char *client, size_t cn,
                       int64_t sec, int32_t nsec, const char *line, size_t ln,
                       int checked, const char **err) {
  if (from && !checked &&
      (*err = records_check(line, ln, client, cn, sec, nsec))) {
    log_warn("record from %s dropped: %s", from, *err);
    return -1;
  }
  int stored = store_put(client, cn, sec, nsec, line, ln);
  if (stored < 0) {
    /* A full store refuses every new client, and a bigger herd's
     * reconciliation may offer thousands at once: one line a second. */
    static log_limit_t full;
    unsigned long held = 0;
    uint64_t now = loop ? uv_now(loop) : 0;
    *err = store_refusal(stored);
    stats.refused++;
    /* A pull counts its refusals and logs them once. */
    if (cur_sync && stored == STORE_FULL) {
      cur_sync->refused++;
      return -1;
    }
    if (stored == STORE_FULL && !log_limit_due(&full, now, &held)) return -1;
    char more[64] = "";
    if (stored == STORE_FULL)
      snprintf(more, sizeof more, " (%lu more since the last line)", held);
    log_warn("record for %.*s%s%s refused: %s%s", (int)(cn > 64 ? 64 : cn),
             client, from ? " from " : "", from ? from : "", *err, more);
    return -1;
  }
  if (stored && cur_sync)
    cur_sync->stored++; /* not forwarded: the pull hints instead */
  else if (stored)
    forward_record(from, client, cn, line, ln, from && cur_flood);
  return stored;
}

int records_accept(const char *from, const char *client, size_t cn, int64_t sec,
                   int32_t nsec, const char *line, size_t ln,
                   const char **err) {
  return accept_line(from, client, cn, sec, nsec, line, ln, 0, err);
}

int records_l_accept(lua_State *L) {
  size_t cn, ln;
  const char *from = luaL_optstring(L, 1, NULL);
  const char *client = luaL_checklstring(L, 2, &cn);
  lua_Integer sec = luaL_checkinteger(L, 3);
  lua_Integer nsec = luaL_checkinteger(L, 4);
  const char *line = luaL_checklstring(L, 5, &ln);
  if (nsec < 0 || nsec > 999999999) luaL_argerror(L, 4, "nsec out of range");
  int checked = lua_toboolean(L, 6);
  const char *err;
  int rc = accept_line(from, client, cn, sec, (int32_t)nsec, line, ln, checked,
                       &err);
  if (rc < 0) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  lua_pushboolean(L, rc);
  return 1;
}

typedef struct record_args {
  const char *from, *client;
  size_t cn;
  int64_t sec;
  int32_t nsec;
  const char *line;
  size_t ln;
} record_args_t;

/* on_record(from, client, sec, nsec, line), pushed inside the protected
 * call (script_run). */
static int push_on_record(lua_State *L, void *ud) {
  const record_args_t *a = ud;
  script_push_hook(L, HOOK_ON_RECORD);
  lua_pushstring(L, a->from);
  lua_pushlstring(L, a->client, a->cn);
  lua_pushinteger(L, a->sec);
  lua_pushinteger(L, a->nsec);
  lua_pushlstring(L, a->line, a->ln);
  return 5;
}

/* A record a neighbour sent (peer.c hands it up): to the on_record hook,
 * which is records_accept itself unless a script replaced it. */
static void receive(const char *from, const char *client, size_t cn,
                    int64_t sec, int32_t nsec, const char *line, size_t ln,
                    peer_tally_t *sync, int flood) {
  /* A record no newer than the stored one could never be stored (the store
   * keeps only newer ones), so it skips Lua: in a meshed herd about half of
   * all receptions are such echoes of a flood. */
  const store_rec_t *cur = store_get(client, cn);
  int order = cur ? store_compare(sec, nsec, line, ln, cur) : 1;
  if (order <= 0) {
    stats.stale++;
    /* The record itself, flooded as a fallback: it goes on once from here
     * too, since the neighbours this server sent it to may not be all. */
    if (flood && order == 0) forward_flood_again(from, cur);
    return;
  }
  lua_State *L = script_current();
  script_push_hook(L, HOOK_ON_RECORD);
  cur_sync = sync;
  cur_flood = flood;
  if (lua_tocfunction(L, -1) == records_l_accept) {
    /* The built-in rule, with no script around it: no Lua at all. */
    lua_pop(L, 1);
    const char *err;
    records_accept(from, client, cn, sec, nsec, line, ln, &err);
    cur_sync = NULL;
    cur_flood = 0;
    return;
  }
  lua_pop(L, 1);
  record_args_t a = {from, client, cn, sec, nsec, line, ln};
  script_run(L, push_on_record, &a, 0, "on_record");
  cur_sync = NULL;
  cur_flood = 0;
}

void records_init(uv_loop_t *l) {
  loop = l;
  peer_set_record_handler(receive);
}

const records_stats_t *records_stats(void) {
  return &stats;
}
#endif
