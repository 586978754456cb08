/* metrics: see metrics.h. */
#include "metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "forward.h"
#include "hist.h"
#include "http.h"
#include "log.h"
#include "peer.h"
#include "records.h"
#include "script.h"
#include "state.h"
#include "store.h"

#ifndef HERD_VERSION
#define HERD_VERSION "dev"
#endif

/* ---- the stats: the one list ---- */

enum { COUNTER, GAUGE };

/* X(name, kind, help, value): every stat `herd ctl stats` prints, in its
 * order. On /metrics a counter is herd_<name>_total, a gauge herd_<name>.
 * The values read the locals of collect(). */
#define HERD_STATS(X)                                                         \
  X(connections, GAUGE, "Client connections open now.", c->open)              \
  X(accepted, COUNTER, "Client connections accepted.", c->accepted)           \
  X(refused, COUNTER, "Client connections refused by the connection limits.", \
    c->refused)                                                               \
  X(lines_in, COUNTER, "Lines read from clients.", c->lines_in)               \
  X(replies_out, COUNTER, "Replies given to clients.", c->replies_out)        \
  X(bytes_in, COUNTER, "Bytes read from clients.", c->bytes_in)               \
  X(bytes_out, COUNTER, "Bytes written to clients.", c->bytes_out)            \
  X(script_errors, COUNTER, "Script hook calls that raised an error.",        \
    c->script_errors)                                                         \
  X(lines_too_long, COUNTER, "Client lines over limits.max_line.",            \
    c->too_long)                                                              \
  X(timeouts, COUNTER,                                                        \
    "Client connections closed by a time limit (first line, idle, stall).",   \
    c->timeouts)                                                              \
  X(tls_connections, GAUGE,                                                   \
    "Client connections open now on the tls_port (handshakes included).",     \
    c->tls_open)                                                              \
  X(tls_accepted, COUNTER, "tls_port connections whose handshake completed.", \
    c->tls_accepted)                                                          \
  X(tls_handshake_failures, COUNTER,                                          \
    "tls_port connections closed before their handshake completed (refused, " \
    "not TLS, no client certificate, deadline).",                             \
    c->tls_failures)                                                          \
  X(records, GAUGE, "Client locations stored.", store_count())                \
  X(record_bytes, GAUGE, "Bytes of the stored records and the record table.", \
    store_bytes())                                                            \
  X(state_writes, COUNTER, "Records written to the state on disk.",           \
    st->records_written)                                                      \
  X(state_commits, COUNTER, "Write transactions of the state on disk.",       \
    st->commits)                                                              \
  X(state_syncs, COUNTER, "Syncs of the state on disk to the device.",        \
    st->syncs)                                                                \
  X(state_write_errors, COUNTER,                                              \
    "Failed writes or syncs of the state on disk.", st->write_errors)         \
  X(state_commit_us_max, GAUGE,                                               \
    "Longest write transaction in the event loop, microseconds (synced "      \
    "with state_sync always).",                                               \
    st->commit_us_max)                                                        \
  X(state_sync_us_last, GAUGE, "Duration of the last sync, microseconds.",    \
    st->sync_us_last)                                                         \
  X(state_sync_us_max, GAUGE, "Longest sync, microseconds.", st->sync_us_max) \
  X(state_bytes, GAUGE, "Bytes of the state file in use.", st->bytes)         \
  X(peer_frames_in, COUNTER, "Frames received from peers.", p->frames_in)     \
  X(peer_frames_out, COUNTER, "Frames sent to peers.", p->frames_out)         \
  X(peer_records_in, COUNTER, "Records received from peers.", p->records_in)  \
  X(peer_records_out, COUNTER, "Records sent to peers.", p->records_out)      \
  X(peer_records_forwarded, COUNTER,                                          \
    "Records sent to peers by the dissemination rule (one per link).",        \
    p->records_forwarded)                                                     \
  X(peer_records_flooded, COUNTER,                                            \
    "Records sent to peers by a script's core.flood.", p->records_flooded)    \
  X(forward_rule_calls, COUNTER,                                              \
    "Forwarding decisions the topology script was asked for (cache misses).", \
    f->rule_calls)                                                            \
  X(forward_fallback_floods, COUNTER,                                         \
    "Records this server flooded as a fallback (FLOODREC).",                  \
    f->fallback_floods)                                                       \
  X(records_refused, COUNTER,                                                 \
    "Records refused by the store (too long, or a new client when full).",    \
    r->refused)                                                               \
  X(peer_records_stale, COUNTER,                                              \
    "Records from peers no newer than the stored one.", r->stale)             \
  X(peer_auth_failures, COUNTER,                                              \
    "Peer connections that failed to "                                        \
    "authenticate.",                                                          \
    p->auth_failures)                                                         \
  X(peer_out_drops, COUNTER, "Links dropped over limits.peer_out_max.",       \
    p->out_drops)                                                             \
  X(peer_handshakes_evicted, COUNTER,                                         \
    "Unauthenticated peer connections closed to make room.",                  \
    p->handshakes_evicted)                                                    \
  X(peer_handshake_timeouts, COUNTER,                                         \
    "Peer connections closed at limits.peer_handshake_ms.",                   \
    p->handshake_timeouts)                                                    \
  X(peer_refused_from, COUNTER,                                               \
    "Peer connections closed by peers_from before TLS.", p->peers_refused)    \
  X(peer_insecure, GAUGE, "1 when peer links run without TLS.",               \
    (uint64_t)peer_insecure())                                                \
  X(reconciles, COUNTER, "Store reconciliations with a peer.", p->reconciles) \
  X(peer_pull_alls, COUNTER,                                                  \
    "Herd-wide pulls (PULLALL) this server started or passed on.",            \
    p->pull_alls)                                                             \
  X(sync_bytes_out, COUNTER, "Bytes sent to peers by reconciliation.",        \
    p->sync_bytes_out)                                                        \
  X(records_diverged, GAUGE,                                                  \
    "Records neighbours hold that this full store refused at the last "       \
    "reconciliation (limits.max_records).",                                   \
    p->records_diverged)                                                      \
  X(http_in_flight, GAUGE, "HTTP requests (places provider) in flight.",      \
    (uint64_t)http_in_flight())                                               \
  X(http_started, COUNTER, "HTTP requests started.", h.started)               \
  X(http_completed, COUNTER, "HTTP requests completed (failures included).",  \
    h.completed)                                                              \
  X(http_failed, COUNTER,                                                     \
    "HTTP requests that failed (no answer, timeout, too large).", h.failed)   \
  X(http_latency_us_avg, GAUGE,                                               \
    "Mean HTTP request latency since start, microseconds.",                   \
    h.completed ? h.latency_us_total / h.completed : 0)                       \
  X(http_latency_us_max, GAUGE,                                               \
    "Longest HTTP request latency since start, microseconds.",                \
    h.latency_us_max)                                                         \
  X(loop_turn_us_max, GAUGE,                                                  \
    "Longest event loop turn since start (waiting in the poll excluded), "    \
    "microseconds.",                                                          \
    turn_ns_max / 1000)                                                       \
  X(reloads, COUNTER, "Script reloads that succeeded.", reloads_ok)           \
  X(reload_failures, COUNTER, "Script reloads refused.", reloads_failed)      \
  X(lua_memory, GAUGE, "Bytes held by the current scripts' Lua state.",       \
    L ? (uint64_t)script_memory(L) : 0)                                       \
  X(lua_refs, GAUGE, "Lua references held by the core.",                      \
    (uint64_t)script_live_refs())                                             \
  X(lua_states, GAUGE,                                                        \
    "Lua states open (1, plus any replaced by a reload and finishing).",      \
    (uint64_t)script_states())

static const struct {
  const char *name, *help;
  int kind;
} stats[] = {
#define X(name, kind, help, value) {#name, help, kind},
    HERD_STATS(X)
#undef X
};
#define NSTATS (sizeof stats / sizeof stats[0])

static uint64_t reloads_ok, reloads_failed;
static uint64_t turn_ns_max;

static void collect(uint64_t *out) {
  const conn_stats_t *c = conn_stats();
  const peer_stats_t *p = peer_stats();
  const records_stats_t *r = records_stats();
  const forward_stats_t *f = forward_stats();
  const state_stats_t *st = state_stats();
  http_stats_t h;
  http_get_stats(&h);
  lua_State *L = script_current();
  size_t i = 0;
#define X(name, kind, help, value) out[i++] = (uint64_t)(value);
  HERD_STATS(X)
#undef X
}

void metrics_count_turn(uint64_t ns) {
  if (ns > turn_ns_max) turn_ns_max = ns;
  hist_observe(HIST_TURN, ns);
}

void metrics_count_reload(int ok) {
  if (ok)
    reloads_ok++;
  else
    reloads_failed++;
}

void metrics_push_stats(lua_State *L) {
  uint64_t v[NSTATS];
  collect(v);
  lua_createtable(L, 0, (int)NSTATS);
  for (size_t i = 0; i < NSTATS; i++) {
    lua_pushinteger(L, (lua_Integer)v[i]);
    lua_setfield(L, -2, stats[i].name);
  }
  lua_pushstring(L, forward_rule());
  lua_setfield(L, -2, "dissemination");
}

/* ---- histograms ---- */

static const struct {
  const char *name, *help;
} hist_defs[HIST_N] = {
    {"herd_iamat_seconds",
     "IAMAT service time: from the line read to its reply given."},
    {"herd_whatsat_seconds",
     "WHATSAT service time: from the line read to its reply given, the "
     "places provider included."},
    {"herd_places_request_seconds",
     "HTTP request latency (the places provider's, for the built-in "
     "scripts): from the request to its completion, failures included."},
    {"herd_loop_turn_seconds",
     "Event loop turns: the loop's work from one poll to the next (waiting "
     "in the poll excluded). Every client waits behind a long one."},
};

/* ---- rendering ---- */

static void appendf(buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void appendf(buf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n <= 0) return;
  buf_reserve(b, (size_t)n + 1);
  va_start(ap, fmt);
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

/* A label value as the format wants it: \, " and newline escaped. */
static void append_label(buf_t *b, const char *s) {
  for (; *s; s++) {
    if (*s == '\\' || *s == '"')
      buf_append(b, "\\", 1);
    else if (*s == '\n') {
      buf_append(b, "\\n", 2);
      continue;
    }
    buf_append(b, s, 1);
  }
}

static void family(buf_t *b, const char *name, const char *type,
                   const char *help) {
  appendf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static struct { char *server, *provider, *links; } info;

static void render_link(const peer_link_info_t *l, void *ud) {
  buf_t *b = ud;
  static const char *names[] = {"up", "frames_in_total", "frames_out_total",
                                "bytes_queued"};
  uint64_t v[] = {(uint64_t)l->up, l->frames_in, l->frames_out,
                  (uint64_t)l->bytes_queued};
  for (size_t i = 0; i < 4; i++) {
    appendf(b, "herd_link_%s{peer=\"", names[i]);
    append_label(b, l->name);
    appendf(b, "\"} %llu\n", (unsigned long long)v[i]);
  }
}

static void render_links(buf_t *b) {
  /* Per family, every peer: the format wants a family's samples together. */
  buf_t rows;
  buf_init(&rows);
  peer_each_link(render_link, &rows);
  static const struct {
    const char *name, *type, *help;
  } fams[] = {
      {"herd_link_up", "gauge", "1 while the link to the peer is up."},
      {"herd_link_frames_in_total", "counter",
       "Frames received on the link to the peer."},
      {"herd_link_frames_out_total", "counter",
       "Frames sent on the link to the peer."},
      {"herd_link_bytes_queued", "gauge",
       "Bytes waiting to be written to the peer."},
  };
  for (size_t f = 0; f < 4; f++) {
    family(b, fams[f].name, fams[f].type, fams[f].help);
    size_t n = strlen(fams[f].name);
    for (size_t i = 0; i < rows.len;) {
      const char *line = rows.data + i;
      const char *nl = memchr(line, '\n', rows.len - i);
      size_t len = (size_t)(nl - line) + 1;
      if (strncmp(line, fams[f].name, n) == 0 && line[n] == '{')
        buf_append(b, line, len);
      i += len;
    }
  }
  buf_free(&rows);
}

static void render_hist(buf_t *b, const hist_t *h, const char *name,
                        const char *help) {
  family(b, name, "histogram", help);
  uint64_t cum = 0;
  for (size_t i = 0; i < HIST_NBOUNDS; i++) {
    cum += h->bucket[i];
    appendf(b, "%s_bucket{le=\"%s\"} %llu\n", name, hist_bounds[i].le,
            (unsigned long long)cum);
  }
  appendf(b, "%s_bucket{le=\"+Inf\"} %llu\n", name,
          (unsigned long long)h->count);
  appendf(b, "%s_sum %llu.%09llu\n", name,
          (unsigned long long)(h->sum_ns / 1000000000u),
          (unsigned long long)(h->sum_ns % 1000000000u));
  appendf(b, "%s_count %llu\n", name, (unsigned long long)h->count);
}

void metrics_render(buf_t *b) {
  family(b, "herd_info", "gauge",
         "Build and config of this server (the value is always 1).");
  buf_append_str(b, "herd_info{version=\"");
  append_label(b, HERD_VERSION);
  buf_append_str(b, "\",name=\"");
  append_label(b, info.server ? info.server : "");
  buf_append_str(b, "\",provider=\"");
  append_label(b, info.provider ? info.provider : "");
  buf_append_str(b, "\",links=\"");
  append_label(b, peer_insecure() ? "insecure" : info.links ? info.links : "");
  buf_append_str(b, "\",dissemination=\"");
  append_label(b, forward_rule());
  buf_append_str(b, "\"} 1\n");
  uint64_t v[NSTATS];
  collect(v);
  for (size_t i = 0; i < NSTATS; i++) {
    char name[128];
    snprintf(name, sizeof name, "herd_%s%s", stats[i].name,
             stats[i].kind == COUNTER ? "_total" : "");
    family(b, name, stats[i].kind == COUNTER ? "counter" : "gauge",
           stats[i].help);
    appendf(b, "%s %llu\n", name, (unsigned long long)v[i]);
  }
  render_links(b);
  for (int i = 0; i < HIST_N; i++)
    render_hist(b, hist_get((hist_kind_t)i), hist_defs[i].name,
                hist_defs[i].help);
}

/* ---- the HTTP listener ---- */

typedef struct mconn {
  uv_tcp_t tcp; /* first: the handle pointer is the mconn pointer */
  struct mconn *prev, *next;
  uv_write_t wreq;
  buf_t out;
  uint64_t deadline; /* uv_now by which it is closed, done or not */
  size_t len;
  int closing, answered;
  char in[METRICS_MAX_REQUEST];
} mconn_t;

static uv_loop_t *loop;
static uv_tcp_t listener;
static uv_timer_t sweeper;
static mconn_t *mconns;
static unsigned nconns;
static int listening;

static void on_mclosed(uv_handle_t *h) {
  mconn_t *m = (mconn_t *)h;
  buf_free(&m->out);
  free(m);
}

static void mconn_close(mconn_t *m) {
  if (m->closing) return;
  m->closing = 1;
  nconns--;
  if (m->prev)
    m->prev->next = m->next;
  else
    mconns = m->next;
  if (m->next) m->next->prev = m->prev;
  uv_close((uv_handle_t *)&m->tcp, on_mclosed);
}

static void on_mwritten(uv_write_t *w, int status) {
  mconn_close(w->data);
}

static void respond(mconn_t *m, int found) {
  buf_t body;
  buf_init(&body);
  if (found)
    metrics_render(&body);
  else
    buf_append_str(&body, "not found: the metrics are at GET /metrics\n");
  appendf(&m->out,
          "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
          "Connection: close\r\n\r\n",
          found ? "200 OK" : "404 Not Found",
          found ? "text/plain; version=0.0.4; charset=utf-8"
                : "text/plain; charset=utf-8",
          body.len);
  buf_append(&m->out, body.data, body.len);
  buf_free(&body);
  m->answered = 1;
  uv_read_stop((uv_stream_t *)&m->tcp);
  uv_buf_t b = uv_buf_init(m->out.data, (unsigned)m->out.len);
  m->wreq.data = m;
  if (uv_write(&m->wreq, (uv_stream_t *)&m->tcp, &b, 1, on_mwritten) < 0)
    mconn_close(m);
}

/* The request line of a complete request: GET /metrics (a query string
 * allowed) is the only thing served. */
static int wants_metrics(const char *req, size_t len) {
  static const char get[] = "GET /metrics";
  size_t n = sizeof get - 1;
  if (len <= n || memcmp(req, get, n) != 0) return 0;
  return req[n] == ' ' || req[n] == '?';
}

static void on_malloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  mconn_t *m = (mconn_t *)h;
  *b = uv_buf_init(m->in + m->len, (unsigned)(sizeof m->in - m->len));
}

static void on_mread(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
  mconn_t *m = (mconn_t *)s;
  if (nread < 0) {
    mconn_close(m);
    return;
  }
  m->len += (size_t)nread;
  /* The request ends at its blank line (a GET has no body). */
  const char *end = memmem(m->in, m->len, "\r\n\r\n", 4);
  if (!end) end = memmem(m->in, m->len, "\n\n", 2);
  if (end) {
    respond(m, wants_metrics(m->in, m->len));
  } else if (m->len == sizeof m->in) {
    mconn_close(m); /* over METRICS_MAX_REQUEST: not a scraper */
  }
}

static void on_mconnection(uv_stream_t *server, int status) {
  if (status < 0) return;
  mconn_t *m = xcalloc(1, sizeof *m);
  uv_tcp_init(loop, &m->tcp);
  if (uv_accept(server, (uv_stream_t *)&m->tcp) < 0 ||
      nconns >= METRICS_MAX_CONNS) {
    static log_limit_t refusals;
    unsigned long held;
    if (log_limit_due(&refusals, uv_now(loop), &held))
      log_warn(
          "metrics: connection refused: %d scrapers at once "
          "(%lu more refused since the last such line)",
          METRICS_MAX_CONNS, held);
    uv_close((uv_handle_t *)&m->tcp, on_mclosed);
    return;
  }
  nconns++;
  m->deadline = uv_now(loop) + METRICS_LIFETIME_MS;
  m->next = mconns;
  if (mconns) mconns->prev = m;
  mconns = m;
  uv_tcp_nodelay(&m->tcp, 1);
  uv_read_start((uv_stream_t *)&m->tcp, on_malloc, on_mread);
}

/* A scraper that is slow to ask or never reads its answer goes at its
 * deadline. */
static void on_msweep(uv_timer_t *t) {
  uint64_t now = uv_now(loop);
  mconn_t *next;
  for (mconn_t *m = mconns; m; m = next) {
    next = m->next;
    if (now >= m->deadline) mconn_close(m);
  }
}

int metrics_start(uv_loop_t *l, const config_t *cfg, int self, char *err,
                  size_t errlen) {
  const config_server_t *me = &cfg->servers[self];
  loop = l;
  info.server = xstrdup(me->name);
  info.provider = xstrdup(cfg->places_provider ? cfg->places_provider : "");
  info.links = xstrdup(cfg->tls_cert ? "tls-certificate" : "tls-secret");
  if (!me->metrics_port) return 0;
  struct sockaddr_storage ss;
  if (uv_ip4_addr(me->metrics_host, me->metrics_port,
                  (struct sockaddr_in *)&ss) != 0 &&
      uv_ip6_addr(me->metrics_host, me->metrics_port,
                  (struct sockaddr_in6 *)&ss) != 0) {
    snprintf(err, errlen, "bad metrics address %s", me->metrics_host);
    return -1;
  }
  uv_tcp_init(loop, &listener);
  int rc = uv_tcp_bind(&listener, (struct sockaddr *)&ss, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&listener, 64, on_mconnection);
  if (rc < 0) {
    snprintf(err, errlen, "cannot listen for metrics on %s:%d: %s",
             me->metrics_host, me->metrics_port, uv_strerror(rc));
    uv_close((uv_handle_t *)&listener, NULL);
    return -1;
  }
  uv_timer_init(loop, &sweeper);
  uv_timer_start(&sweeper, on_msweep, 1000, 1000);
  uv_unref((uv_handle_t *)&sweeper);
  listening = 1;
  log_info("metrics on http://%s:%d/metrics", me->metrics_host,
           me->metrics_port);
  return 0;
}

void metrics_shutdown(void) {
  if (listening) {
    uv_close((uv_handle_t *)&listener, NULL);
    uv_close((uv_handle_t *)&sweeper, NULL);
    listening = 0;
  }
  while (mconns)
    mconn_close(mconns);
  free(info.server);
  free(info.provider);
  free(info.links);
  memset(&info, 0, sizeof info);
}
