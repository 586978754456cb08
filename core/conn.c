/* conn: see conn.h.
 *
 * A connection on the tls_port has a TLS engine: ciphertext read goes into
 * it, the plaintext it gives back goes through the same line framing as
 * the plain port's bytes; replies collect in plain_out and are encrypted
 * once per flush (many replies, one record), so every limit, timeout and
 * queue below applies to both ports alike. */
#include "conn.h"

#include <lauxlib.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "idmap.h"
#include "log.h"
#include "hist.h"
#include "script.h"
#include "state.h"
#include "wqueue.h"

#define READ_CHUNK (64 * 1024)
#define ECHO_MAX 256 /* bytes of an over-long line echoed after "? " */
#define SWEEP_MS 1000
/* Replies a connection may have waiting behind a deferred one (or deferred
 * themselves) before it stops reading: with out_pause, this bounds what one
 * client makes the server hold. */
#define PENDING_MAX 64
/* Lines one connection may have handled per loop turn. The rest of what it
 * sent waits (held, reading stopped) for the next turn, which starts after
 * the poll has picked up every other client's lines: a client pipelining
 * hundreds of requests cannot make another's one request wait behind them
 * all. 16 IAMATs are about 70 us of work. */
#define LINES_PER_TURN 16

/* A reply that cannot leave yet because an earlier one is still pending. */
typedef struct slot {
  struct slot *next;
  struct conn *conn;
  uint64_t token;   /* nonzero while registered for conn_answer */
  uint64_t started; /* uv_hrtime when its line was read (timed: metrics) */
  int timed;        /* 1 + hist_kind_t of its command, or 0 */
  int ready;
  buf_t text;
} slot_t;

typedef struct conn {
  uv_tcp_t tcp; /* first: the handle pointer is the conn pointer */
  uint64_t id;
  struct conn *prev, *next; /* every open connection */
  struct conn *dirty_next;  /* connections with output to write */
  slot_t *head, *tail;      /* replies waiting for an earlier one */
  buf_t in;                 /* the unfinished line */
  buf_t held;               /* read but not handled: reading is paused */
  tls_conn_t *tls;          /* NULL on the plain port */
  buf_t plain_out;          /* TLS: replies not yet encrypted */
  unsigned nslots;          /* replies waiting in head..tail */
  wqueue_t wq;              /* output */
  uint64_t last_active;     /* uv_now of the last input or output */
  uint64_t accepted_at;
  uint64_t write_started;
  uint32_t addr_hash;
  uint64_t turn;       /* the loop turn turn_lines counts in */
  unsigned turn_lines; /* lines handled in that turn */
  unsigned eof : 1, closing : 1, paused : 1, skipping : 1, dirty : 1,
      got_line : 1, tls_up : 1, /* handshake done */
      tls_eof : 1,              /* close_notify read behind held input */
      tls_bye : 1,              /* our close_notify queued */
      yielded : 1;              /* held until the next turn (LINES_PER_TURN) */
  char addr[64];
} conn_t;

static uv_loop_t *loop;
static uv_tcp_t listener, tls_listener;
static tls_ctx_t *tls_ctx; /* the caller's (conn_listen) */
static buf_t tls_plain;    /* plaintext of one TLS read, handled at once */
static uv_timer_t sweeper;
static uv_idle_t again; /* active while a flush pass left work behind */
static conn_limits_t lim;
static conn_stats_t stats;
static idmap_t by_id, by_token;
static idmap_t per_addr; /* address hash -> count, as a pointer-sized int */
static conn_t *all, *dirty;
static uint64_t next_id = 1, next_token = 1;
static int listening, tls_listening;
static char read_buf[READ_CHUNK]; /* lines are handled before reading on */
/* The loop turn (conn_next_turn), and the ids of the connections that used
 * up their lines in it: ids, not pointers, since one may close meanwhile. */
static uint64_t turn;
static uint64_t *yielded;
static size_t nyielded, yielded_cap;

/* The line being handled by on_line, for conn_defer. */
static conn_t *cur_conn;
static slot_t *cur_slot;

static void conn_close(conn_t *c);
static void flush(conn_t *c);
static void on_again(uv_idle_t *h) {} /* the loop's flush phases do it */

/* Output not yet handed to the kernel, encrypted or not. */
static size_t unsent(const conn_t *c) {
  return c->plain_out.len + wqueue_pending(&c->wq);
}

const conn_stats_t *conn_stats(void) {
  return &stats;
}

static void mark_dirty(conn_t *c) {
  if (c->dirty) return;
  c->dirty = 1;
  c->dirty_next = dirty;
  dirty = c;
}

static void emit(conn_t *c, const char *data, size_t len) {
  log_data("OUT", c->addr, data, len && data[len - 1] == '\n' ? len - 1 : len);
  buf_append(c->tls ? &c->plain_out : &c->wq.out, data, len);
  stats.replies_out++;
  mark_dirty(c);
  if (!c->paused && !c->eof && unsent(c) > lim.out_pause) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->paused = 1;
  }
}

static slot_t *slot_push(conn_t *c) {
  slot_t *s = xcalloc(1, sizeof *s);
  s->conn = c;
  c->nslots++;
  if (c->tail)
    c->tail->next = s;
  else
    c->head = s;
  c->tail = s;
  return s;
}

static void slot_free(slot_t *s) {
  s->conn->nslots--;
  if (s->token) idmap_del(&by_token, s->token);
  buf_free(&s->text);
  free(s);
}

/* Moves every reply at the head of the queue that is ready to the output. */
static void drain_slots(conn_t *c) {
  while (c->head && c->head->ready) {
    slot_t *s = c->head;
    c->head = s->next;
    if (!c->head) c->tail = NULL;
    emit(c, s->text.data, s->text.len);
    slot_free(s);
  }
}

/* A reply in request order: straight to the output when nothing is waiting
 * before it (the common case, no allocation), else queued. */
static void reply(conn_t *c, const char *data, size_t len) {
  if (!c->head) {
    emit(c, data, len);
    return;
  }
  slot_t *s = slot_push(c);
  s->ready = 1;
  buf_append(&s->text, data, len);
}

static void reply_invalid(conn_t *c, const char *line, size_t len) {
  char stack[ECHO_MAX + 8];
  size_t n = len;
  stack[0] = '?';
  stack[1] = ' ';
  if (n <= ECHO_MAX) {
    memcpy(stack + 2, line, n);
    stack[2 + n] = '\n';
    reply(c, stack, n + 3);
    return;
  }
  buf_t b;
  buf_init(&b);
  buf_append(&b, "? ", 2);
  buf_append(&b, line, len);
  buf_append(&b, "\n", 1);
  reply(c, b.data, b.len);
  buf_free(&b);
}

typedef struct line_args {
  uint64_t id;
  const char *line;
  size_t len;
} line_args_t;

/* on_line(conn, line), pushed inside the protected call (script_run). */
static int push_on_line(lua_State *L, void *ud) {
  const line_args_t *a = ud;
  script_push_hook(L, HOOK_ON_LINE);
  lua_pushinteger(L, (lua_Integer)a->id);
  lua_pushlstring(L, a->line, a->len);
  return 2;
}

/* 1 + the histogram of a line's command (IAMAT, WHATSAT), or 0. */
static int timed_command(const char *line, size_t len) {
  static const char ws[] = " \t\r\n\f\v";
  while (len && strchr(ws, *line) && *line) {
    line++;
    len--;
  }
  if (len > 5 && memcmp(line, "IAMAT", 5) == 0 && line[5] &&
      strchr(ws, line[5]))
    return 1 + HIST_IAMAT;
  if (len > 7 && memcmp(line, "WHATSAT", 7) == 0 && line[7] &&
      strchr(ws, line[7]))
    return 1 + HIST_WHATSAT;
  return 0;
}

static void handle_line(conn_t *c, const char *line, size_t len) {
  if (len && line[len - 1] == '\r') len--;
  uint64_t started = uv_hrtime();
  int timed = timed_command(line, len);
  c->got_line = 1;
  c->turn_lines++;
  stats.lines_in++;
  log_data("IN", c->addr, line, len);

  lua_State *L = script_current();
  line_args_t args = {c->id, line, len};
  cur_conn = c;
  cur_slot = NULL;
  int rc = script_run(L, push_on_line, &args, 1, "on_line");
  slot_t *deferred = cur_slot;
  cur_conn = NULL;
  cur_slot = NULL;
  if (rc < 0) {
    stats.script_errors++;
    if (deferred) {
      /* The handler failed after deferring: answer its slot now. */
      buf_append(&deferred->text, "? ", 2);
      buf_append(&deferred->text, line, len);
      buf_append(&deferred->text, "\n", 1);
      idmap_del(&by_token, deferred->token);
      deferred->token = 0;
      deferred->ready = 1;
      drain_slots(c);
    } else {
      reply_invalid(c, line, len);
    }
    return;
  }
  size_t n;
  const char *text =
      lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;
  if (text && !deferred && !c->closing) reply(c, text, n);
  lua_pop(L, 1);
  if (deferred) {
    deferred->started = started;
    deferred->timed = timed;
  } else if (timed) {
    hist_observe((hist_kind_t)(timed - 1), uv_hrtime() - started);
  }
}

static void too_long(conn_t *c, const char *start, size_t len) {
  stats.too_long++;
  log_warn("%s: line longer than %zu bytes, answered and discarded", c->addr,
           lim.max_line);
  log_data("IN", c->addr, start, len < ECHO_MAX ? len : ECHO_MAX);
  reply_invalid(c, start, len < ECHO_MAX ? len : ECHO_MAX);
  c->skipping = 1;
}

/* The connection has used its lines for this turn: conn_next_turn hands
 * the rest back. */
static void yield(conn_t *c) {
  if (c->yielded) return;
  c->yielded = 1;
  if (nyielded == yielded_cap) {
    yielded_cap = yielded_cap ? yielded_cap * 2 : 64;
    yielded = xrealloc(yielded, yielded_cap * sizeof *yielded);
  }
  yielded[nyielded++] = c->id;
}

/* Splits the bytes read into lines. Complete lines are handled straight from
 * the read buffer; only an unfinished line is copied. */
static void feed(conn_t *c, const char *p, size_t n) {
  if (c->turn != turn) {
    c->turn = turn;
    c->turn_lines = 0;
  }
  /* eof here means core.close was called: the lines after it are not
   * handled (a client's own EOF comes after its last bytes). */
  while (n && !c->closing && !c->eof) {
    int spent = c->turn_lines >= LINES_PER_TURN;
    if (c->paused || c->nslots >= PENDING_MAX || spent) {
      /* Too much output or too many replies waiting: the rest of this read
       * waits too (maybe_resume hands it back), else one 64 KiB read of
       * short requests with long replies could queue megabytes. Or this
       * turn's lines are used up (yield). */
      if (!c->paused) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->paused = 1;
      }
      if (spent) yield(c);
      buf_append(&c->held, p, n);
      return;
    }
    const char *nl = memchr(p, '\n', n);
    size_t take = nl ? (size_t)(nl - p) : n;
    if (c->skipping) {
      if (nl) c->skipping = 0;
    } else if (c->in.len + take > lim.max_line) {
      buf_append(&c->in, p, take < ECHO_MAX ? take : ECHO_MAX);
      too_long(c, c->in.data, c->in.len);
      c->in.len = 0;
      if (nl) c->skipping = 0;
    } else if (!nl) {
      buf_append(&c->in, p, take);
    } else if (c->in.len) {
      buf_append(&c->in, p, take);
      size_t len = c->in.len;
      c->in.len = 0; /* the block stays valid until the conn is freed */
      handle_line(c, c->in.data, len);
    } else {
      handle_line(c, p, take);
    }
    if (!nl) break;
    p = nl + 1;
    n -= take + 1;
  }
}

/* Closes a connection whose client has finished once every reply is out;
 * a TLS client first gets our close_notify (written by the next flush),
 * so it can tell the end of the replies from a cut connection. */
static void maybe_finish(conn_t *c) {
  if (!c->eof || c->head || unsent(c)) return;
  if (c->tls && c->tls_up && !c->tls_bye) {
    c->tls_bye = 1;
    tls_conn_close_notify(c->tls);
    mark_dirty(c);
    return;
  }
  conn_close(c);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  *b = uv_buf_init(read_buf, sizeof read_buf);
}

/* The client closed its side: a last line without newline still counts,
 * then the connection closes once every reply is out. */
static void client_eof(conn_t *c) {
  if (c->in.len && !c->skipping && !c->closing) {
    size_t len = c->in.len;
    c->in.len = 0;
    handle_line(c, c->in.data, len);
  }
  c->eof = 1;
  uv_read_stop((uv_stream_t *)&c->tcp);
  maybe_finish(c);
}

/* A TLS connection that never completed its handshake: counted, logged
 * (at most a line a second: a scanner cannot flood the log), sent the
 * alert the engine produced if the socket takes it now, and closed. */
static void tls_refuse(conn_t *c, const char *why) {
  static log_limit_t refusals;
  unsigned long held;
  stats.tls_failures++;
  if (log_limit_due(&refusals, uv_now(loop), &held))
    log_warn(
        "%s: TLS handshake failed, connection closed: %s (%lu more since "
        "the last such line)",
        c->addr, why, held);
  tls_conn_drain(c->tls, &c->wq.out);
  wqueue_flush(&c->wq);
  conn_close(c);
}

/* Ciphertext from a tls_port client: the handshake, then lines. */
static void tls_read(conn_t *c, const char *p, size_t n) {
  tls_conn_feed(c->tls, p, n);
  mark_dirty(c); /* handshake messages or alerts to send */
  if (!c->tls_up) {
    int rc = tls_conn_handshake(c->tls);
    if (rc < 0) {
      tls_refuse(c, tls_conn_error(c->tls));
      return;
    }
    if (rc == 0) return;
    c->tls_up = 1;
    stats.tls_accepted++;
  }
  tls_plain.len = 0;
  long rc = tls_conn_read(c->tls, &tls_plain);
  if (tls_plain.len) feed(c, tls_plain.data, tls_plain.len);
  if (rc >= 0 || c->closing) return;
  if (!tls_conn_peer_closed(c->tls)) {
    log_info("%s: TLS error, connection closed: %s", c->addr,
             tls_conn_error(c->tls));
    conn_close(c);
  } else if (c->held.len) {
    c->tls_eof = 1; /* after the held lines (maybe_resume) */
  } else if (!c->eof) {
    client_eof(c);
  }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
  conn_t *c = (conn_t *)s;
  if (nread > 0) {
    c->last_active = uv_now(loop);
    stats.bytes_in += (uint64_t)nread;
    if (c->tls)
      tls_read(c, b->base, (size_t)nread);
    else
      feed(c, b->base, (size_t)nread);
    return;
  }
  if (nread == 0) return;
  if (c->tls && !c->tls_up) {
    tls_refuse(c, nread == UV_EOF ? "closed during the handshake"
                                  : uv_strerror((int)nread));
    return;
  }
  if (nread != UV_EOF) {
    conn_close(c);
    return;
  }
  client_eof(c);
}

/* Reading paused on a full output resumes once half of it has left, whether
 * it left through uv_write (on_written) or at once through uv_try_write in
 * flush: a client that reads its replies promptly must not stay paused.
 * What was read but held back is handled first. Runs from flush, never
 * inside a script call. */
static void maybe_resume(conn_t *c) {
  if (!c->paused || c->yielded || c->eof || c->closing ||
      unsent(c) > lim.out_pause / 2 || c->nslots > PENDING_MAX / 2)
    return;
  c->paused = 0;
  if (c->held.len) {
    buf_t h = c->held;
    buf_init(&c->held);
    feed(c, h.data, h.len);
    buf_free(&h);
    if (c->paused || c->closing || c->eof) return; /* held again */
  }
  if (c->tls_eof) {
    client_eof(c);
    return;
  }
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void on_written(wqueue_t *q, int status) {
  conn_t *c = (conn_t *)((char *)q - offsetof(conn_t, wq));
  if (status < 0) {
    conn_close(c);
    return;
  }
  c->last_active = uv_now(loop);
  if (c->closing) return;
  maybe_resume(c);
  flush(c);
}

/* Encrypts the replies waiting (one TLS record for many) and moves what the
 * engine has to send (records, handshake messages, alerts) to the wire
 * queue. 0, or -1 with the connection closed. */
static int tls_seal(conn_t *c) {
  if (c->plain_out.len) {
    if (tls_conn_write(c->tls, c->plain_out.data, c->plain_out.len) < 0) {
      log_warn("%s: TLS error, connection closed: %s", c->addr,
               tls_conn_error(c->tls));
      conn_close(c);
      return -1;
    }
    c->plain_out.len = 0;
  }
  tls_conn_drain(c->tls, &c->wq.out);
  return 0;
}

static void flush(conn_t *c) {
  if (c->closing) return;
  /* Replies acknowledge records: whatever was stored before they leave is
   * written (and with state_sync "always", synced) first, on every path,
   * also for lines handled when a paused connection resumes in a write
   * callback. Free when nothing was stored. */
  state_commit();
  if (c->tls && tls_seal(c) < 0) return;
  int n = wqueue_flush(&c->wq);
  if (n < 0) {
    conn_close(c);
    return;
  }
  if (n > 0) {
    stats.bytes_out += (uint64_t)n;
    c->last_active = uv_now(loop);
    if (c->wq.writing) c->write_started = c->last_active;
  }
  maybe_resume(c);
  maybe_finish(c);
}

/* One pass over the connections with output. A connection that has more
 * to do after its flush (held input handled by maybe_resume) waits for the
 * next pass, so one client whose replies the kernel keeps absorbing cannot
 * hold the loop; the idle handle keeps the loop from sleeping meanwhile. */
void conn_flush_all(void) {
  conn_t *list = dirty;
  dirty = NULL;
  while (list) {
    conn_t *c = list;
    list = c->dirty_next;
    c->dirty = 0;
    flush(c);
  }
  if (listening) {
    if (dirty || nyielded)
      uv_idle_start(&again, on_again);
    else
      uv_idle_stop(&again);
  }
}

void conn_next_turn(void) {
  turn++;
  /* A connection that uses up its lines again goes on a fresh list. */
  uint64_t *ids = yielded;
  size_t n = nyielded;
  yielded = NULL;
  nyielded = yielded_cap = 0;
  for (size_t i = 0; i < n; i++) {
    conn_t *c = idmap_get(&by_id, ids[i]);
    if (!c || !c->yielded) continue;
    c->yielded = 0;
    maybe_resume(c); /* its replies mark it dirty, as on any path */
  }
  free(ids);
}

static uint32_t hash_addr(const struct sockaddr_storage *ss) {
  const unsigned char *p;
  size_t n;
  if (ss->ss_family == AF_INET) {
    p = (const unsigned char *)&((const struct sockaddr_in *)ss)->sin_addr;
    n = 4;
  } else {
    p = (const unsigned char *)&((const struct sockaddr_in6 *)ss)->sin6_addr;
    n = 16;
  }
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++)
    h = (h ^ p[i]) * 16777619u;
  return h | 1; /* never 0: 0 is idmap's empty key */
}

static void addr_count(uint32_t h, int delta) {
  uintptr_t n = (uintptr_t)idmap_get(&per_addr, h);
  n += (uintptr_t)(intptr_t)delta;
  if (n)
    idmap_put(&per_addr, h, (void *)n);
  else
    idmap_del(&per_addr, h);
}

static void on_close(uv_handle_t *h) {
  conn_t *c = (conn_t *)h;
  while (c->head) {
    slot_t *s = c->head;
    c->head = s->next;
    slot_free(s);
  }
  buf_free(&c->in);
  buf_free(&c->held);
  buf_free(&c->plain_out);
  tls_conn_free(c->tls);
  wqueue_free(&c->wq);
  free(c);
}

static void conn_close(conn_t *c) {
  if (c->closing) return;
  c->closing = 1;
  stats.open--;
  if (c->tls) stats.tls_open--;
  idmap_del(&by_id, c->id);
  if (c->addr_hash) addr_count(c->addr_hash, -1);
  if (c->prev)
    c->prev->next = c->next;
  else
    all = c->next;
  if (c->next) c->next->prev = c->prev;
  /* Pending replies can no longer be answered. */
  for (slot_t *s = c->head; s; s = s->next)
    if (s->token) {
      idmap_del(&by_token, s->token);
      s->token = 0;
    }
  uv_close((uv_handle_t *)&c->tcp, on_close);
}

void conn_format_addr(const struct sockaddr_storage *ss, char *out, size_t n) {
  char ip[INET6_ADDRSTRLEN] = "?";
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
    uv_ip4_name(a, ip, sizeof ip);
    snprintf(out, n, "%s:%d", ip, ntohs(a->sin_port));
  } else {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
    uv_ip6_name(a, ip, sizeof ip);
    snprintf(out, n, "[%s]:%d", ip, ntohs(a->sin6_port));
  }
}

static void on_connection(uv_stream_t *server, int status) {
  if (status < 0) {
    log_warn("accept failed: %s", uv_strerror(status));
    return;
  }
  conn_t *c = xcalloc(1, sizeof *c);
  uv_tcp_init(loop, &c->tcp);
  if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
    uv_close((uv_handle_t *)&c->tcp, on_close);
    return;
  }
  struct sockaddr_storage ss;
  int len = sizeof ss;
  memset(&ss, 0, sizeof ss);
  uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len);
  conn_format_addr(&ss, c->addr, sizeof c->addr);
  uint32_t h = hash_addr(&ss);
  uintptr_t from_addr = (uintptr_t)idmap_get(&per_addr, h);
  if ((lim.max_conns && stats.open >= lim.max_conns) ||
      (lim.max_per_addr && from_addr >= lim.max_per_addr)) {
    /* A flood of connections cannot flood the log. */
    static log_limit_t refusals;
    unsigned long held;
    stats.refused++;
    if (log_limit_due(&refusals, uv_now(loop), &held)) {
      int total = lim.max_conns && stats.open >= lim.max_conns;
      log_warn(
          "%s: connection refused: limit of %u connections%s reached"
          " (%lu more refused since the last such line)",
          c->addr, total ? lim.max_conns : lim.max_per_addr,
          total ? "" : " per address", held);
    }
    uv_close((uv_handle_t *)&c->tcp, on_close);
    return;
  }
  if (server == (uv_stream_t *)&tls_listener) {
    c->tls = tls_conn_new(tls_ctx, 1, c);
    if (!c->tls) {
      log_error("%s: cannot set up TLS for a client connection", c->addr);
      uv_close((uv_handle_t *)&c->tcp, on_close);
      return;
    }
    stats.tls_open++;
  }
  stats.accepted++;
  stats.open++;
  c->addr_hash = h;
  addr_count(h, +1);
  wqueue_init(&c->wq, (uv_stream_t *)&c->tcp, on_written);
  c->id = next_id++;
  c->accepted_at = c->last_active = uv_now(loop);
  idmap_put(&by_id, c->id, c);
  c->next = all;
  if (all) all->prev = c;
  all = c;
  uv_tcp_nodelay(&c->tcp, 1);
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* Closes connections that break a time limit (slowloris, idle, clients that
 * never read). One sweep a second is cheaper than a timer per connection. */
static void on_sweep(uv_timer_t *t) {
  uint64_t now = uv_now(loop);
  conn_t *next;
  for (conn_t *c = all; c; c = next) {
    next = c->next;
    const char *why = NULL;
    if (lim.first_line_ms && c->tls && !c->tls_up &&
        now - c->accepted_at > lim.first_line_ms)
      why = "no TLS handshake before the deadline (limits.first_line_ms)";
    else if (lim.first_line_ms && !c->got_line &&
             now - c->accepted_at > lim.first_line_ms)
      why = "no complete line before the deadline";
    else if (lim.idle_ms && !c->wq.writing && !c->head &&
             now - c->last_active > lim.idle_ms)
      why = "idle";
    else if (lim.stall_ms && c->wq.writing &&
             now - c->write_started > lim.stall_ms &&
             now - c->last_active > lim.stall_ms)
      why = "not reading its replies";
    if (!why) continue;
    stats.timeouts++;
    if (c->tls && !c->tls_up) stats.tls_failures++;
    log_info("%s: connection closed: %s", c->addr, why);
    conn_close(c);
  }
}

const struct addrinfo *conn_pick_address(const struct addrinfo *list) {
  for (const struct addrinfo *a = list; a; a = a->ai_next)
    if (a->ai_family == AF_INET) return a;
  return list;
}

int conn_resolve(uv_loop_t *l, const char *host, int port,
                 struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof *ss);
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0 ||
      uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0)
    return 0;
  uv_getaddrinfo_t req;
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  if (uv_getaddrinfo(l, &req, NULL, host, NULL, &hints) < 0) return -1;
  int rc = -1;
  const struct addrinfo *ai = conn_pick_address(req.addrinfo);
  if (ai && ai->ai_addrlen <= sizeof *ss) {
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    if (ss->ss_family == AF_INET)
      ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
    else
      ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
    rc = 0;
  }
  uv_freeaddrinfo(req.addrinfo);
  return rc;
}

static int listen_on(uv_tcp_t *t, const char *host, int port, char *err,
                     size_t errlen) {
  struct sockaddr_storage ss;
  if (conn_resolve(loop, host, port, &ss) < 0) {
    snprintf(err, errlen,
             "bad listen address %s (not an address, and it "
             "does not resolve)",
             host);
    return -1;
  }
  uv_tcp_init(loop, t);
  int rc = uv_tcp_bind(t, (struct sockaddr *)&ss, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)t, 1024, on_connection);
  if (rc < 0) {
    snprintf(err, errlen, "cannot listen on %s:%d: %s", host, port,
             uv_strerror(rc));
    uv_close((uv_handle_t *)t, NULL);
    return -1;
  }
  return 0;
}

int conn_listen(uv_loop_t *l, const char *host, int port, int tls_port,
                tls_ctx_t *tls, const conn_limits_t *limits, char *err,
                size_t errlen) {
  loop = l;
  lim = *limits;
  tls_ctx = tls;
  if (tls_port) {
    if (listen_on(&tls_listener, host, tls_port, err, errlen) < 0) return -1;
    tls_listening = 1;
  }
  if (listen_on(&listener, host, port, err, errlen) < 0) return -1;
  listening = 1;
  uv_timer_init(loop, &sweeper);
  uv_timer_start(&sweeper, on_sweep, SWEEP_MS, SWEEP_MS);
  uv_unref((uv_handle_t *)&sweeper);
  uv_idle_init(loop, &again);
  return 0;
}

void conn_shutdown(void) {
  conn_flush_all();
  if (listening) {
    uv_close((uv_handle_t *)&listener, NULL);
    uv_close((uv_handle_t *)&sweeper, NULL);
    uv_close((uv_handle_t *)&again, NULL);
    listening = 0;
  }
  if (tls_listening) {
    uv_close((uv_handle_t *)&tls_listener, NULL);
    tls_listening = 0;
  }
  while (all)
    conn_close(all);
  idmap_free(&by_id);
  idmap_free(&by_token);
  idmap_free(&per_addr);
  buf_free(&tls_plain);
  free(yielded);
  yielded = NULL;
  nyielded = yielded_cap = 0;
}

int conn_send(uint64_t id, const char *data, size_t len) {
  conn_t *c = idmap_get(&by_id, id);
  if (!c) return -1;
  reply(c, data, len);
  return 0;
}

int conn_close_id(uint64_t id) {
  conn_t *c = idmap_get(&by_id, id);
  if (!c) return -1;
  /* Close after the replies already given are out, like a client EOF. */
  c->eof = 1;
  uv_read_stop((uv_stream_t *)&c->tcp);
  mark_dirty(c);
  return 0;
}

uint64_t conn_defer(void) {
  if (!cur_conn) return 0;
  if (!cur_slot) {
    cur_slot = slot_push(cur_conn);
    cur_slot->token = next_token++;
    idmap_put(&by_token, cur_slot->token, cur_slot);
  }
  return cur_slot->token;
}

int conn_answer(uint64_t token, const char *data, size_t len) {
  slot_t *s = idmap_del(&by_token, token);
  if (!s) return -1;
  s->token = 0;
  s->ready = 1;
  if (s->timed)
    hist_observe((hist_kind_t)(s->timed - 1), uv_hrtime() - s->started);
  buf_append(&s->text, data, len);
  drain_slots(s->conn);
  return 0;
}

const char *conn_addr(uint64_t id) {
  conn_t *c = idmap_get(&by_id, id);
  return c ? c->addr : NULL;
}
