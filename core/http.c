/* http: see http.h.
 *
 * The shape is curl's docs/examples/multi-uv.c with the fixes its history
 * taught: a 0 ms curl timeout ("act now") is run
 * from a check handle in the same loop iteration, not from a uv timer (a
 * 1 ms timer, against libuv 1.44's busy loop on a zero timer restarted from
 * its own callback, added 1-2 ms to every request with libuv's millisecond
 * clock); an idle handle, active only while such an action is pending,
 * keeps the poll phase from sleeping before the check phase runs it, and an
 * action asked for from inside the check callback waits for the next
 * iteration's check phase, so nothing busy-loops within one pass. -1 stops
 * the timer, the timer is never repeating and never stopped on socket
 * activity, completions are drained after every curl_multi_socket_action,
 * and a poll error is passed on to curl as CURL_CSELECT_ERR. A kept
 * connection stays in epoll between requests (http_sock_t), so a query
 * over it costs no epoll_ctl. */
#include "http.h"

#include <curl/curl.h>
#include <lauxlib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "idmap.h"
#include "log.h"
#include "hist.h"
#include "script.h"

#ifndef HERD_VERSION
#define HERD_VERSION "dev"
#endif

/* One core.http() call. Owned by http.c: created in l_http and freed only in
 * req_free, which every ending (completion, cancel, shutdown) goes through,
 * so req_free is the one place that releases the callback reference. */
typedef struct http_req {
  struct http_req *prev, *next; /* the active list, while easy != NULL   */
  struct http_req *done_next;   /* a batch of finished requests          */
  CURL *easy;                   /* NULL once out of the multi handle     */
  struct curl_slist *hdrs;      /* request headers, freed with the easy  */
  lua_State *L;                 /* main thread of the callback's state   */
  int cb_ref;                   /* the Lua callback; LUA_NOREF once freed */
  int cancelled;                /* cancelled after it finished           */
  uint64_t id;                  /* what Lua holds                        */
  uint64_t started;             /* uv_hrtime at creation, for the stats  */
  buf_t head;                   /* header lines of the last response     */
  buf_t body;
  size_t max_bytes; /* cap on head.len + body.len            */
  int too_big;
  CURLcode result;
  long status;
  char errbuf[CURL_ERROR_SIZE];
} http_req_t;

/* One socket curl watches, by descriptor number, kept for the descriptor's
 * life: a storm of queries over cached connections then costs no
 * uv_poll_init (two epoll_ctl calls and an ioctl), uv_close and allocation
 * per request. Freed in its close callback (fail_all, shutdown).
 *
 * A connection curl opened (on_open_socket: own) stays in epoll, parked,
 * when curl stops watching it between two requests: libuv's uv_poll_start
 * and uv_poll_stop each cost an epoll_ctl (uv_poll_start removes the
 * descriptor first, even to watch the same events), three a request on a
 * kept connection. The next request's watch finds it already watched. A
 * parked socket that wakes the loop (the server closed it) is stopped
 * then. curl closes its connections through on_close_socket, which stops
 * the watch before the descriptor number can be reused. Sockets curl did
 * not open through us (a resolver's socketpair, closed without telling)
 * are stopped at once, as before. */
typedef struct http_sock {
  uv_poll_t poll;
  curl_socket_t fd;
  int events; /* UV_READABLE | UV_WRITABLE watched now; 0: stopped   */
  int parked; /* watched although curl does not: see above           */
  int own;    /* opened by on_open_socket, closed by on_close_socket */
  struct http_sock *prev, *next;
} http_sock_t;

static struct {
  uv_loop_t *loop;
  CURLM *multi;
  uv_timer_t timer;
  uv_check_t kick;     /* runs a 0 ms curl timeout: active while pending */
  uv_idle_t kick_idle; /* keeps the loop awake until the kick has run   */
  int global_init;
  idmap_t reqs;       /* id -> request, until called back or cancelled */
  http_req_t *active; /* requests inside the multi handle             */
  http_sock_t *socks; /* every http_sock_t, watched or parked           */
  http_sock_t **byfd; /* descriptor number -> its http_sock_t          */
  size_t nbyfd;
  uint64_t next_id;
  CURL *spare[HTTP_SPARE_EASY]; /* reset handles kept for reuse           */
  int nspare;
  http_stats_t stats;
} H;

void http_get_stats(http_stats_t *out) {
  *out = H.stats;
}

static void count_done(const http_req_t *r) {
  uint64_t ns = uv_hrtime() - r->started, us = ns / 1000;
  hist_observe(HIST_HTTP, ns);
  H.stats.completed++;
  if (r->result != CURLE_OK || r->too_big) H.stats.failed++;
  H.stats.latency_us_total += us;
  if (us > H.stats.latency_us_max) H.stats.latency_us_max = us;
}

/* An easy handle costs several allocations to make; finished ones are
 * reset and reused (their connections live in the multi handle anyway). */
static CURL *easy_get(void) {
  return H.nspare ? H.spare[--H.nspare] : curl_easy_init();
}

static void easy_put(CURL *easy) {
  if (H.nspare == HTTP_SPARE_EASY) {
    curl_easy_cleanup(easy);
    return;
  }
  curl_easy_reset(easy);
  H.spare[H.nspare++] = easy;
}

static void drain(void);
static void req_unlink(http_req_t *r);

/* ---- sockets and the timer: libcurl tells us what to watch ---- */

static void sock_stop(http_sock_t *s) {
  if (s->events) uv_poll_stop(&s->poll);
  s->events = 0;
  s->parked = 0;
}

static void sock_closed(uv_handle_t *h) {
  free(h->data);
}

static void sock_close(http_sock_t *s) {
  if ((size_t)s->fd < H.nbyfd && H.byfd[s->fd] == s) H.byfd[s->fd] = NULL;
  if (s->prev)
    s->prev->next = s->next;
  else
    H.socks = s->next;
  if (s->next) s->next->prev = s->prev;
  sock_stop(s);
  uv_close((uv_handle_t *)&s->poll, sock_closed);
}

static CURLM *multi_new(void);
static void run_batch(http_req_t *r);

static void kick_stop(void) {
  uv_check_stop(&H.kick);
  uv_idle_stop(&H.kick_idle);
}

/* After a failed curl_multi_socket_action the state of every transfer is
 * uncertain and the multi handle must not be used again (libcurl's docs):
 * fail every request and start over with a fresh multi handle. */
static void fail_all(CURLMcode rc) {
  log_error("http: curl_multi_socket_action: %s; failing %ld requests",
            curl_multi_strerror(rc), http_in_flight());
  http_req_t *batch = NULL, **tail = &batch;
  while (H.active) {
    http_req_t *r = H.active;
    curl_multi_remove_handle(H.multi, r->easy);
    curl_easy_cleanup(r->easy);
    r->easy = NULL;
    req_unlink(r);
    r->result = CURLE_SEND_ERROR;
    snprintf(r->errbuf, sizeof r->errbuf, "http engine failure: %s",
             curl_multi_strerror(rc));
    *tail = r;
    tail = &r->done_next;
  }
  curl_multi_cleanup(H.multi);
  while (H.socks)
    sock_close(H.socks);
  uv_timer_stop(&H.timer);
  kick_stop();
  H.multi = multi_new(); /* NULL makes core.http refuse */
  run_batch(batch);
}

static void action(curl_socket_t fd, int flags) {
  int running;
  if (!H.multi) return;
  CURLMcode rc = curl_multi_socket_action(H.multi, fd, flags, &running);
  if (rc != CURLM_OK) {
    fail_all(rc);
    return;
  }
  drain();
}

static void on_uv_timer(uv_timer_t *t) {
  action(CURL_SOCKET_TIMEOUT, 0);
}

static void on_kick(uv_check_t *h) {
  kick_stop(); /* before the action, which may ask for another */
  action(CURL_SOCKET_TIMEOUT, 0);
}

static void on_kick_idle(uv_idle_t *h) {} /* the check handle does the work */

/* The http_sock_t for descriptor fd, made when there is none. */
static http_sock_t *sock_for(curl_socket_t fd) {
  if ((size_t)fd >= H.nbyfd) {
    size_t n = H.nbyfd ? H.nbyfd : 64;
    while (n <= (size_t)fd)
      n *= 2;
    H.byfd = xrealloc(H.byfd, n * sizeof *H.byfd);
    memset(H.byfd + H.nbyfd, 0, (n - H.nbyfd) * sizeof *H.byfd);
    H.nbyfd = n;
  }
  if (H.byfd[fd]) return H.byfd[fd];
  http_sock_t *s = xcalloc(1, sizeof *s);
  int rc = uv_poll_init_socket(H.loop, &s->poll, fd);
  if (rc < 0) {
    log_error("http: cannot watch socket %d: %s", (int)fd, uv_strerror(rc));
    free(s);
    return NULL;
  }
  s->fd = fd;
  s->poll.data = s;
  H.byfd[fd] = s;
  s->next = H.socks;
  if (H.socks) H.socks->prev = s;
  H.socks = s;
  return s;
}

static void on_uv_poll(uv_poll_t *h, int status, int events) {
  http_sock_t *s = h->data;
  if (s->parked) { /* curl does not wait on it: the server closed it */
    sock_stop(s);
    return;
  }
  int flags = 0;
  if (status < 0) {
    flags = CURL_CSELECT_ERR;
  } else {
    if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  }
  action(s->fd, flags);
}

static curl_socket_t on_open_socket(void *clientp, curlsocktype purpose,
                                    struct curl_sockaddr *a) {
  curl_socket_t fd = socket(a->family, a->socktype, a->protocol);
  if (fd < 0) return CURL_SOCKET_BAD;
  http_sock_t *s = sock_for(fd);
  if (!s) {
    close(fd);
    return CURL_SOCKET_BAD;
  }
  sock_stop(s); /* a watch left on the number by a socket closed unseen */
  s->own = 1;
  return fd;
}

static int on_close_socket(void *clientp, curl_socket_t fd) {
  http_sock_t *s = fd >= 0 && (size_t)fd < H.nbyfd ? H.byfd[fd] : NULL;
  if (s) {
    sock_stop(s); /* before the number can be reused */
    s->own = 0;
  }
  return close(fd);
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp,
                          void *socketp) {
  http_sock_t *s = socketp;
  if (what == CURL_POLL_REMOVE) {
    if (s) {
      if (s->own && s->events == UV_READABLE)
        s->parked = 1;
      else
        sock_stop(s);
      curl_multi_assign(H.multi, fd, NULL);
    }
    return 0;
  }
  if (!s) {
    if (fd < 0) return -1;
    s = sock_for(fd);
    if (!s) return -1;
    curl_multi_assign(H.multi, fd, s);
  }
  int events = 0;
  if (what & CURL_POLL_IN) events |= UV_READABLE;
  if (what & CURL_POLL_OUT) events |= UV_WRITABLE;
  s->parked = 0;
  /* Only our own sockets skip the restart: any other may have been closed
   * and its number reused without our knowing, and needs the fresh
   * registration uv_poll_start makes. */
  if (events != s->events || !s->own) {
    uv_poll_start(&s->poll, events, on_uv_poll);
    s->events = events;
  }
  return 0;
}

/* Each call replaces the timeout before it. 0 means "now, but not from
 * inside this callback": see the top. */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp) {
  if (timeout_ms == 0) {
    uv_timer_stop(&H.timer);
    uv_check_start(&H.kick, on_kick);
    uv_idle_start(&H.kick_idle, on_kick_idle);
  } else {
    kick_stop();
    if (timeout_ms < 0)
      uv_timer_stop(&H.timer);
    else
      uv_timer_start(&H.timer, on_uv_timer, (uint64_t)timeout_ms, 0);
  }
  return 0;
}

/* ---- requests ---- */

static void req_unlink(http_req_t *r) {
  if (r->prev)
    r->prev->next = r->next;
  else if (H.active == r)
    H.active = r->next;
  if (r->next) r->next->prev = r->prev;
  r->prev = r->next = NULL;
}

/* Takes the request out of libcurl; its buffers stay for the callback. */
static void req_detach(http_req_t *r) {
  if (!r->easy) return;
  curl_multi_remove_handle(H.multi, r->easy);
  easy_put(r->easy);
  r->easy = NULL;
  curl_slist_free_all(r->hdrs);
  r->hdrs = NULL;
  req_unlink(r);
}

static void req_free(http_req_t *r) {
  req_detach(r);
  curl_slist_free_all(r->hdrs);
  script_unref(r->L, &r->cb_ref);
  buf_free(&r->head);
  buf_free(&r->body);
  free(r);
}

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
  http_req_t *r = ud;
  size_t len = size * n;
  if (r->head.len + r->body.len + len > r->max_bytes) {
    r->too_big = 1;
    return 0; /* makes the transfer fail with CURLE_WRITE_ERROR */
  }
  if (r->body.cap == 0) {
    /* One allocation for the whole body when its length is announced
     * (within the cap), not a doubling series. */
    curl_off_t cl = -1;
    curl_easy_getinfo(r->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
    if (cl > 0 && (size_t)cl <= r->max_bytes) buf_reserve(&r->body, (size_t)cl);
  }
  buf_append(&r->body, p, len);
  return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud) {
  http_req_t *r = ud;
  size_t len = size * n;
  /* A new status line starts a new response (after a 100 Continue). */
  if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) r->head.len = 0;
  if (r->head.len + r->body.len + len > r->max_bytes) {
    r->too_big = 1;
    return 0;
  }
  buf_append(&r->head, p, len);
  return len;
}

/* Pushes {name = value} from the raw header lines: names lowercased, values
 * trimmed, repeated headers joined with ", ". */
static void push_headers(lua_State *L, const buf_t *h) {
  lua_newtable(L);
  size_t i = 0;
  while (i < h->len) {
    const char *line = h->data + i;
    const char *nl = memchr(line, '\n', h->len - i);
    size_t n = nl ? (size_t)(nl - line) : h->len - i;
    i += n + 1;
    if (n && line[n - 1] == '\r') n--;
    const char *colon = memchr(line, ':', n);
    char name[128];
    size_t nlen = colon ? (size_t)(colon - line) : 0;
    if (nlen == 0 || nlen >= sizeof name) continue; /* status line, junk */
    for (size_t k = 0; k < nlen; k++) {
      char c = line[k];
      name[k] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    const char *v = colon + 1, *end = line + n;
    while (v < end && (*v == ' ' || *v == '\t'))
      v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
      end--;
    lua_pushlstring(L, name, nlen);
    lua_pushvalue(L, -1);
    lua_rawget(L, -3);
    if (lua_isstring(L, -1)) {
      lua_pushliteral(L, ", ");
      lua_pushlstring(L, v, (size_t)(end - v));
      lua_concat(L, 3);
    } else {
      lua_pop(L, 1);
      lua_pushlstring(L, v, (size_t)(end - v));
    }
    lua_rawset(L, -3);
  }
}

typedef struct answer {
  http_req_t *r;
  int no_room; /* a first try found no room in the Lua heap for it */
} answer_t;

/* Pushes the callback and its two arguments for a finished request; runs
 * inside the protected call (script_run), so a body too big for the Lua
 * heap fails that call, and the second try tells the callback so. */
static int push_callback(lua_State *L, void *ud) {
  const answer_t *a = ud;
  http_req_t *r = a->r;
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->cb_ref);
  if (a->no_room) {
    lua_pushnil(L);
    lua_pushfstring(L, "response of %I bytes does not fit in the Lua heap",
                    (lua_Integer)(r->head.len + r->body.len));
    return 2;
  }
  if (r->result == CURLE_OK) {
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, r->status);
    lua_setfield(L, -2, "status");
    push_headers(L, &r->head);
    lua_setfield(L, -2, "headers");
    lua_pushlstring(L, r->body.data ? r->body.data : "", r->body.len);
    lua_setfield(L, -2, "body");
    lua_pushnil(L);
    return 2;
  }
  lua_pushnil(L);
  if (r->too_big || r->result == CURLE_FILESIZE_EXCEEDED)
    lua_pushfstring(L, "response too large (over %d bytes)", (int)r->max_bytes);
  else if (r->result == CURLE_OPERATION_TIMEDOUT)
    lua_pushliteral(L, "timeout");
  else if (r->errbuf[0])
    lua_pushstring(L, r->errbuf);
  else
    lua_pushstring(L, curl_easy_strerror(r->result));
  return 2;
}

/* Runs the callbacks of a batch of detached requests. A callback may start
 * or cancel requests (even ones later in this batch), but it runs outside
 * every libcurl call, as libcurl requires. */
static void run_batch(http_req_t *r) {
  while (r) {
    http_req_t *next = r->done_next;
    idmap_del(&H.reqs, r->id);
    if (r->cancelled || r->cb_ref == LUA_NOREF) {
      req_free(r);
    } else {
      count_done(r);
      answer_t a = {r, 0};
      if (script_run(r->L, push_callback, &a, 0, "http callback") ==
          SCRIPT_EPUSH) {
        a.no_room = 1;
        script_run(r->L, push_callback, &a, 0, "http callback");
      }
      req_free(r);
    }
    r = next;
  }
}

/* Collects every finished transfer, takes it out of libcurl (copying what we
 * need from the message first: it does not survive remove_handle), then
 * runs the Lua callbacks. */
static void drain(void) {
  http_req_t *batch = NULL, **tail = &batch;
  CURLMsg *msg;
  int left;
  while ((msg = curl_multi_info_read(H.multi, &left))) {
    if (msg->msg != CURLMSG_DONE) continue;
    CURL *easy = msg->easy_handle;
    CURLcode result = msg->data.result;
    char *priv = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
    http_req_t *r = (http_req_t *)priv;
    r->result = result;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &r->status);
    req_detach(r);
    *tail = r;
    tail = &r->done_next;
  }
  run_batch(batch);
}

/* ---- the Lua API ---- */

static int fail(lua_State *L, const char *msg) {
  lua_pushnil(L);
  lua_pushstring(L, msg);
  return 2;
}

/* Optional integer field in [lo, hi]; raises on a wrong type or range. */
static long opt_int_field(lua_State *L, const char *field, long dflt, long lo,
                          long hi) {
  long v = dflt;
  lua_getfield(L, 1, field);
  if (!lua_isnil(L, -1)) {
    int isint;
    lua_Integer i = lua_tointegerx(L, -1, &isint);
    if (!isint || i < lo || i > hi)
      luaL_error(L, "core.http: %s must be an integer from %d to %d", field,
                 (int)lo, (int)hi);
    v = (long)i;
  }
  lua_pop(L, 1);
  return v;
}

/* Optional string field; raises on a wrong type. Valid while the table
 * holds it. */
static const char *opt_str_field(lua_State *L, const char *field, size_t *len) {
  lua_getfield(L, 1, field);
  const char *s = NULL;
  if (lua_type(L, -1) == LUA_TSTRING)
    s = lua_tolstring(L, -1, len);
  else if (!lua_isnil(L, -1))
    luaL_error(L, "core.http: %s must be a string", field);
  lua_pop(L, 1); /* the string stays alive in the table */
  return s;
}

static int is_token(const char *s, size_t len) {
  if (len == 0) return 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c <= ' ' || c >= 127 || strchr("\"(),/:;<=>?@[\\]{}", c)) return 0;
  }
  return 1;
}

/* First pass over opts.headers: raises on anything that is not a valid
 * name = string value, before any resource is taken. Returns whether the
 * caller set its own Expect header. */
static int check_headers(lua_State *L) {
  int has_expect = 0;
  lua_getfield(L, 1, "headers");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return 0;
  }
  if (!lua_istable(L, -1)) luaL_error(L, "core.http: headers must be a table");
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    size_t nlen, vlen;
    if (lua_type(L, -2) != LUA_TSTRING)
      luaL_error(L, "core.http: header names must be strings");
    const char *name = lua_tolstring(L, -2, &nlen);
    if (!is_token(name, nlen))
      luaL_error(L, "core.http: invalid header name '%s'", name);
    if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
      luaL_error(L, "core.http: header '%s' must have a string value", name);
    lua_pushvalue(L, -1);
    const char *v = lua_tolstring(L, -1, &vlen);
    if (strlen(v) != vlen || strpbrk(v, "\r\n"))
      luaL_error(L, "core.http: header '%s' has a line break or NUL", name);
    lua_pop(L, 2);
    if (nlen == 6 && strncasecmp(name, "expect", 6) == 0) has_expect = 1;
  }
  lua_pop(L, 1);
  return has_expect;
}

/* Second pass: the header list for curl (no raising from here on). */
static struct curl_slist *build_headers(lua_State *L, int has_expect) {
  struct curl_slist *list = NULL;
  buf_t line;
  buf_init(&line);
  lua_getfield(L, 1, "headers");
  if (lua_istable(L, -1)) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      lua_pushvalue(L, -1);
      size_t vlen;
      const char *v = lua_tolstring(L, -1, &vlen);
      line.len = 0;
      buf_append_str(&line, lua_tostring(L, -3));
      /* "Name;" is curl's way to send a header with an empty value. */
      buf_append_str(&line, vlen ? ": " : ";");
      buf_append(&line, v, vlen + 1); /* with the NUL */
      list = curl_slist_append(list, line.data);
      lua_pop(L, 2);
    }
  }
  lua_pop(L, 1);
  /* No "Expect: 100-continue" round trip before a large body. */
  if (!has_expect) list = curl_slist_append(list, "Expect:");
  buf_free(&line);
  return list;
}

static int l_http(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  size_t url_len, body_len = 0, method_len = 0;
  const char *url = opt_str_field(L, "url", &url_len);
  if (!url) return luaL_error(L, "core.http: url is required");
  const char *body = opt_str_field(L, "body", &body_len);
  const char *method = opt_str_field(L, "method", &method_len);
  if (!method)
    method = body ? "POST" : "GET";
  else if (!is_token(method, method_len))
    return luaL_error(L, "core.http: invalid method '%s'", method);
  long timeout =
      opt_int_field(L, "timeout_ms", HTTP_TIMEOUT_MS, 1, HTTP_MAX_TIMEOUT_MS);
  long max_bytes =
      opt_int_field(L, "max_bytes", HTTP_MAX_BYTES, 1, HTTP_MAX_BYTES_LIMIT);
  int has_expect = check_headers(L);
  if (strlen(url) != url_len) return fail(L, "url contains a NUL byte");
  if (!H.multi) return fail(L, "http is not available");
  if (script_retired(L))
    return fail(L, "these scripts were replaced by a reload");
  if (H.reqs.len >= HTTP_MAX_IN_FLIGHT)
    return fail(L, "too many http requests in flight");

  CURL *easy = easy_get();
  if (!easy) return fail(L, "cannot create a curl handle");
  http_req_t *r = xcalloc(1, sizeof *r);
  r->easy = easy;
  r->cb_ref = LUA_NOREF;
  r->max_bytes = (size_t)max_bytes;
  buf_init(&r->head);
  buf_init(&r->body);
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  r->L = lua_tothread(L, -1); /* a coroutine may be gone when we call back */
  lua_pop(L, 1);
  r->hdrs = build_headers(L, has_expect);

  curl_easy_setopt(easy, CURLOPT_URL, url);
  curl_easy_setopt(easy, CURLOPT_PRIVATE, (char *)r);
  curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, r->errbuf);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(easy, CURLOPT_HEADERDATA, r);
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, r->hdrs);
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
  curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
  curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, timeout);
  curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
  curl_easy_setopt(easy, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)max_bytes);
  curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(easy, CURLOPT_USERAGENT, "herd/" HERD_VERSION);
  /* Over TLS, wait for an HTTP/2 connection to a host rather than open a
   * second one: reuse is what keeps a provider's latency low. */
  if (url_len >= 8 && strncasecmp(url, "https://", 8) == 0)
    curl_easy_setopt(easy, CURLOPT_PIPEWAIT, 1L);
  if (body) {
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    curl_easy_setopt(easy, CURLOPT_COPYPOSTFIELDS, body);
    if (strcmp(method, "POST") != 0)
      curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, method);
  } else if (strcmp(method, "GET") == 0) {
    curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
  } else if (strcmp(method, "HEAD") == 0) {
    curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
  } else if (strcmp(method, "POST") == 0) {
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, 0L);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, "");
  } else {
    curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, method);
  }

  CURLMcode rc = curl_multi_add_handle(H.multi, easy);
  if (rc != CURLM_OK) {
    r->easy = NULL;
    curl_easy_cleanup(easy);
    req_free(r);
    return fail(L, curl_multi_strerror(rc));
  }
  r->next = H.active;
  if (H.active) H.active->prev = r;
  H.active = r;
  r->id = ++H.next_id;
  r->started = uv_hrtime();
  H.stats.started++;
  idmap_put(&H.reqs, r->id, r);
  lua_pushvalue(L, 2);
  r->cb_ref = script_ref(L);
  lua_pushinteger(L, (lua_Integer)r->id);
  return 1;
}

static int l_http_cancel(lua_State *L) {
  lua_Integer id = luaL_checkinteger(L, 1);
  http_req_t *r = id > 0 ? idmap_del(&H.reqs, (uint64_t)id) : NULL;
  if (r) {
    if (r->easy)
      req_free(r);
    else
      r->cancelled = 1; /* finished, in a batch: run_batch frees it */
  }
  lua_pushboolean(L, r != NULL);
  return 1;
}

void http_lua_register(lua_State *L) {
  lua_pushcfunction(L, l_http);
  lua_setfield(L, -2, "http");
  lua_pushcfunction(L, l_http_cancel);
  lua_setfield(L, -2, "http_cancel");
}

/* ---- set-up and shutdown ---- */

static CURLM *multi_new(void) {
  CURLM *m = curl_multi_init();
  if (!m) return NULL;
  curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
  curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, on_curl_timer);
  curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long)HTTP_MAX_IDLE_CONNS);
  return m;
}

int http_init(uv_loop_t *loop, char *err, size_t errlen) {
  if (H.multi) return 0;
  if (!H.global_init) {
    CURLcode c = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (c != CURLE_OK) {
      snprintf(err, errlen, "curl_global_init: %s", curl_easy_strerror(c));
      return -1;
    }
    H.global_init = 1;
  }
  H.loop = loop;
  int rc = uv_timer_init(loop, &H.timer);
  if (rc < 0) {
    snprintf(err, errlen, "http timer: %s", uv_strerror(rc));
    return -1;
  }
  uv_check_init(loop, &H.kick);
  uv_idle_init(loop, &H.kick_idle);
  H.multi = multi_new();
  if (!H.multi) {
    uv_close((uv_handle_t *)&H.timer, NULL);
    uv_close((uv_handle_t *)&H.kick, NULL);
    uv_close((uv_handle_t *)&H.kick_idle, NULL);
    snprintf(err, errlen, "curl_multi_init failed");
    return -1;
  }
  idmap_init(&H.reqs);
  H.active = NULL;
  H.socks = NULL;
  return 0;
}

/* Shutdown order from libcurl's docs: every easy handle out of the multi
 * and cleaned up, then the multi (which may still call the socket callback
 * while it closes cached connections, so the loop and the sockets must
 * still be valid), then our uv handles; the caller runs the loop until
 * their close callbacks have run. */
void http_shutdown(void) {
  if (!H.loop) return;
  while (H.active) {
    http_req_t *r = H.active;
    idmap_del(&H.reqs, r->id);
    req_free(r);
  }
  if (H.multi) curl_multi_cleanup(H.multi);
  H.multi = NULL;
  while (H.nspare)
    curl_easy_cleanup(H.spare[--H.nspare]);
  while (H.socks)
    sock_close(H.socks);
  free(H.byfd);
  H.byfd = NULL;
  H.nbyfd = 0;
  uv_timer_stop(&H.timer);
  uv_close((uv_handle_t *)&H.timer, NULL);
  kick_stop();
  uv_close((uv_handle_t *)&H.kick, NULL);
  uv_close((uv_handle_t *)&H.kick_idle, NULL);
  idmap_free(&H.reqs);
  H.loop = NULL;
  if (H.global_init) curl_global_cleanup();
  H.global_init = 0;
}

void http_cancel_state(lua_State *L) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  lua_State *main = lua_tothread(L, -1);
  lua_pop(L, 1);
  http_req_t *r = H.active;
  while (r) {
    http_req_t *next = r->next;
    if (r->L == main) {
      idmap_del(&H.reqs, r->id);
      req_free(r);
    }
    r = next;
  }
}

long http_in_flight_for(lua_State *L) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  lua_State *main = lua_tothread(L, -1);
  lua_pop(L, 1);
  long n = 0;
  for (http_req_t *r = H.active; r; r = r->next)
    n += r->L == main;
  return n;
}

long http_in_flight(void) {
  return (long)H.reqs.len;
}
