/* peer: see peer.h.
 *
 * Wire format: every frame is a 4-byte big-endian length (of what follows),
 * a version byte (PEER_VERSION), a type byte and the payload. Lengths are
 * checked before anything is allocated: a frame longer than the limit (small
 * before authentication) closes the link.
 *
 * Handshake: both sides send HELLO(name, 32-byte random nonce) at once; each
 * answers with AUTH = HMAC-SHA256(secret, "herd-auth-v1" | sender | receiver
 * | receiver's nonce | sender's nonce). A side accepts a link only after
 * checking the other's AUTH against its own fresh nonce, so a recorded
 * handshake cannot be replayed, and naming the sender first defeats
 * reflection. Nothing but HELLO and AUTH is accepted before that.
 *
 * Reconciliation: when a link comes up, and every PEER_SYNC_MS after, the side
 * with the smaller name sends SUMS of the root's children; each side answers
 * a SUMS by descending into the children whose sums differ, down to LEAF
 * frames listing (client, timestamp, digest); each side then sends the
 * RECORDs the other lacks or holds older. Traffic grows with the number of
 * differing records times the tree depth, not with the store. */
#include "peer.h"

#include <lauxlib.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "conn.h"
#include "log.h"
#include "script.h"
#include "store.h"
#include "textlib.h"
#include "wqueue.h"

#define PEER_VERSION 1
#define NONCE_LEN 32
#define MAC_LEN 32
#define PREAUTH_MAX_FRAME 512 /* HELLO and AUTH fit easily */
#define HANDSHAKE_MS 5000
#define TICK_MS 250
#define PEER_SYNC_MS 5000
#define MAX_UNAUTHED 64

enum {
  F_HELLO = 1,
  F_AUTH = 2,
  F_RECORD = 3,
  F_SUMS = 4,
  F_LEAF = 5,
  F_PING = 6,
  F_PONG = 7
};

typedef struct link link_t;

/* One TCP connection to or from another server. */
typedef struct pconn {
  uv_tcp_t tcp; /* first: the handle pointer is the pconn pointer */
  uv_connect_t creq;
  link_t *link; /* known at dial time, or after HELLO for inbound */
  struct pconn *next;
  struct pconn *dirty_next;
  wqueue_t wq;
  buf_t in;
  uint64_t opened_at, last_rx, last_tx;
  uint8_t my_nonce[NONCE_LEN], peer_nonce[NONCE_LEN];
  unsigned outbound : 1, connected : 1, got_hello : 1, verified : 1,
      closing : 1, dirty : 1, active : 1;
  char addr[64];
} pconn_t;

struct link {
  int idx;
  const config_server_t *srv;
  pconn_t *active;
  uv_timer_t redial;
  unsigned backoff_ms;
  uint64_t cut_until;
  uint64_t up_since;
  uint64_t frames_in, frames_out;
  int dialing;
  int failures; /* consecutive failed dials, to keep the log short */
};

static uv_loop_t *loop;
static const config_t *cfg;
static const char *self_name;
static uv_tcp_t listener;
static uv_timer_t ticker;
static link_t *links;
static int nlinks;
static pconn_t *conns, *dirty;
static peer_stats_t stats;
static int started;
static uint64_t last_sync;

static void pconn_close(pconn_t *pc, const char *why);
static void schedule_redial(link_t *l);

const peer_stats_t *peer_stats(void) {
  return &stats;
}

/* ---- encoding helpers ---------------------------------------------------- */

static void put_u16(buf_t *b, uint16_t v) {
  uint8_t x[2] = {(uint8_t)(v >> 8), (uint8_t)v};
  buf_append(b, x, 2);
}

static void put_u32(buf_t *b, uint32_t v) {
  uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8),
                  (uint8_t)v};
  buf_append(b, x, 4);
}

static void put_u64(buf_t *b, uint64_t v) {
  put_u32(b, (uint32_t)(v >> 32));
  put_u32(b, (uint32_t)v);
}

static uint32_t get_u32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
         p[3];
}

static uint64_t get_u64(const uint8_t *p) {
  return (uint64_t)get_u32(p) << 32 | get_u32(p + 4);
}

/* A bounds-checked reader over one frame's payload. */
typedef struct reader {
  const uint8_t *p;
  size_t left;
  int bad;
} reader_t;

static const uint8_t *take(reader_t *r, size_t n) {
  if (r->bad || r->left < n) {
    r->bad = 1;
    return NULL;
  }
  const uint8_t *p = r->p;
  r->p += n;
  r->left -= n;
  return p;
}

static uint64_t take_u64(reader_t *r) {
  const uint8_t *p = take(r, 8);
  return p ? get_u64(p) : 0;
}

static uint32_t take_u32(reader_t *r) {
  const uint8_t *p = take(r, 4);
  return p ? get_u32(p) : 0;
}

static uint16_t take_u16(reader_t *r) {
  const uint8_t *p = take(r, 2);
  return p ? (uint16_t)(p[0] << 8 | p[1]) : 0;
}

static uint8_t take_u8(reader_t *r) {
  const uint8_t *p = take(r, 1);
  return p ? p[0] : 0;
}

/* Starts a frame in b; returns the offset to patch the length at. */
static size_t frame_begin(buf_t *b, int type) {
  size_t at = b->len;
  put_u32(b, 0);
  uint8_t h[2] = {PEER_VERSION, (uint8_t)type};
  buf_append(b, h, 2);
  return at;
}

static void frame_end(buf_t *b, size_t at) {
  uint32_t n = (uint32_t)(b->len - at - 4);
  uint8_t *p = (uint8_t *)b->data + at;
  p[0] = (uint8_t)(n >> 24);
  p[1] = (uint8_t)(n >> 16);
  p[2] = (uint8_t)(n >> 8);
  p[3] = (uint8_t)n;
}

static void mark_dirty(pconn_t *pc) {
  if (pc->dirty || pc->closing) return;
  pc->dirty = 1;
  pc->dirty_next = dirty;
  dirty = pc;
}

static void sent(pconn_t *pc, size_t bytes) {
  stats.frames_out++;
  stats.bytes_out += bytes;
  if (pc->link) pc->link->frames_out++;
  pc->last_tx = uv_now(loop);
  mark_dirty(pc);
}

static uint8_t *put_be(uint8_t *p, uint64_t v, int bytes) {
  for (int k = bytes - 1; k >= 0; k--)
    *p++ = (uint8_t)(v >> (8 * k));
  return p;
}

/* A record frame, written in place: floods call this for every record and
 * link, so it reserves once instead of appending field by field. */
static void encode_record(buf_t *b, const store_rec_t *r) {
  size_t body = 2 + 8 + 4 + 2 + r->client_len + 2 + r->line_len;
  buf_reserve(b, 4 + body);
  uint8_t *p = (uint8_t *)b->data + b->len;
  p = put_be(p, body, 4);
  *p++ = PEER_VERSION;
  *p++ = F_RECORD;
  p = put_be(p, (uint64_t)r->sec, 8);
  p = put_be(p, (uint32_t)r->nsec, 4);
  p = put_be(p, r->client_len, 2);
  memcpy(p, STORE_CLIENT(r), r->client_len);
  p += r->client_len;
  p = put_be(p, r->line_len, 2);
  memcpy(p, STORE_LINE(r), r->line_len);
  b->len += 4 + body;
}

/* ---- writing ------------------------------------------------------------- */

static void on_written(wqueue_t *q, int status) {
  pconn_t *pc = (pconn_t *)((char *)q - offsetof(pconn_t, wq));
  if (status < 0) {
    pconn_close(pc, uv_strerror(status));
    return;
  }
  mark_dirty(pc);
}

void peer_flush_all(void) {
  while (dirty) {
    pconn_t *pc = dirty;
    dirty = pc->dirty_next;
    pc->dirty = 0;
    if (pc->closing) continue;
    int n = wqueue_flush(&pc->wq);
    if (n < 0) pconn_close(pc, uv_strerror(n));
  }
}

/* ---- link state ---------------------------------------------------------- */

static link_t *find_link(const char *name, size_t len) {
  for (int i = 0; i < nlinks; i++)
    if (strlen(links[i].srv->name) == len &&
        memcmp(links[i].srv->name, name, len) == 0)
      return &links[i];
  return NULL;
}

static void call_on_link(link_t *l, int up) {
  lua_State *L = script_current();
  if (script_push_hook(L, HOOK_ON_LINK) < 0) return;
  lua_pushstring(L, l->srv->name);
  lua_pushboolean(L, up);
  script_call(L, 2, 0, "on_link");
}

static void send_sums(pconn_t *pc, int level, uint32_t index) {
  buf_t *b = &pc->wq.out;
  size_t before = b->len;
  size_t at = frame_begin(b, F_SUMS);
  uint8_t lv = (uint8_t)level;
  buf_append(b, &lv, 1);
  put_u32(b, index);
  for (uint32_t c = 0; c < STORE_FANOUT; c++)
    put_u64(b, store_node(level + 1, index * STORE_FANOUT + c));
  frame_end(b, at);
  stats.sync_bytes_out += b->len - before;
  sent(pc, b->len - before);
}

static int initiates_sync(const link_t *l) {
  return strcmp(self_name, l->srv->name) < 0;
}

static void link_up(pconn_t *pc) {
  link_t *l = pc->link;
  pconn_t *old = l->active;
  if (old) {
    /* Both sides dialled at once: keep the link dialled by the smaller
     * name (both ends apply the same rule), or the newer of two from the
     * same dialler (the old one is dead but not yet noticed). */
    const char *d_old = old->outbound ? self_name : l->srv->name;
    const char *d_new = pc->outbound ? self_name : l->srv->name;
    int keep_old = strcmp(d_old, d_new) != 0 && strcmp(d_old, d_new) < 0;
    pconn_t *loser = keep_old ? pc : old;
    if (!keep_old) {
      old->active = 0;
      l->active = NULL;
    }
    pconn_close(loser, "duplicate link");
    if (keep_old) return;
  }
  pc->active = 1;
  l->active = pc;
  l->up_since = uv_now(loop);
  l->backoff_ms = 0;
  l->failures = 0;
  uv_timer_stop(&l->redial);
  stats.links_up++;
  log_info("link %s up (%s, %s)", l->srv->name, pc->addr,
           pc->outbound ? "dialled" : "accepted");
  if (initiates_sync(l)) {
    stats.reconciles++;
    send_sums(pc, 0, 0);
  }
  call_on_link(l, 1);
}

static void on_pconn_closed(uv_handle_t *h) {
  pconn_t *pc = (pconn_t *)h;
  wqueue_free(&pc->wq);
  buf_free(&pc->in);
  free(pc);
}

static void pconn_close(pconn_t *pc, const char *why) {
  if (pc->closing) return;
  pc->closing = 1;
  for (pconn_t **p = &conns; *p; p = &(*p)->next)
    if (*p == pc) {
      *p = pc->next;
      break;
    }
  link_t *l = pc->link;
  if (l && pc->active) {
    l->active = NULL;
    log_info("link %s down (%s): %s", l->srv->name, pc->addr, why);
    call_on_link(l, 0);
  }
  if (l && pc->outbound) l->dialing = 0;
  if (l && !l->active && !l->dialing && started) schedule_redial(l);
  uv_close((uv_handle_t *)&pc->tcp, on_pconn_closed);
}

/* ---- frames -------------------------------------------------------------- */

static void make_mac(const char *from, const char *to, const uint8_t *nonce_to,
                     const uint8_t *nonce_from, uint8_t out[MAC_LEN]) {
  buf_t m;
  buf_init(&m);
  buf_append_str(&m, "herd-auth-v1");
  buf_append(&m, "", 1);
  buf_append_str(&m, from);
  buf_append(&m, "", 1);
  buf_append_str(&m, to);
  buf_append(&m, "", 1);
  buf_append(&m, nonce_to, NONCE_LEN);
  buf_append(&m, nonce_from, NONCE_LEN);
  const char *key = cfg->secret ? cfg->secret : "";
  unsigned len = MAC_LEN;
  HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)m.data,
       m.len, out, &len);
  buf_free(&m);
}

static void send_hello(pconn_t *pc) {
  buf_t *b = &pc->wq.out;
  size_t at = frame_begin(b, F_HELLO);
  uint8_t n = (uint8_t)strlen(self_name);
  buf_append(b, &n, 1);
  buf_append(b, self_name, n);
  buf_append(b, pc->my_nonce, NONCE_LEN);
  frame_end(b, at);
  sent(pc, b->len - at);
}

static int on_hello(pconn_t *pc, reader_t *r) {
  uint8_t n = take_u8(r);
  const uint8_t *name = take(r, n);
  const uint8_t *nonce = take(r, NONCE_LEN);
  if (r->bad || pc->got_hello) return -1;
  link_t *l = find_link((const char *)name, n);
  if (!l || (pc->link && pc->link != l)) {
    log_warn("peer %s says it is '%.*s', which is not %s", pc->addr, (int)n,
             name, pc->link ? pc->link->srv->name : "a neighbour");
    return -1;
  }
  if (l->cut_until > uv_now(loop)) return -1;
  pc->link = l;
  pc->got_hello = 1;
  memcpy(pc->peer_nonce, nonce, NONCE_LEN);
  buf_t *b = &pc->wq.out;
  size_t at = frame_begin(b, F_AUTH);
  uint8_t mac[MAC_LEN];
  make_mac(self_name, l->srv->name, pc->peer_nonce, pc->my_nonce, mac);
  buf_append(b, mac, MAC_LEN);
  frame_end(b, at);
  sent(pc, b->len - at);
  return 0;
}

static int on_auth(pconn_t *pc, reader_t *r) {
  const uint8_t *mac = take(r, MAC_LEN);
  if (r->bad || !pc->got_hello || pc->verified) return -1;
  uint8_t want[MAC_LEN];
  make_mac(pc->link->srv->name, self_name, pc->my_nonce, pc->peer_nonce, want);
  if (CRYPTO_memcmp(mac, want, MAC_LEN) != 0) {
    stats.auth_failures++;
    log_warn(
        "link %s (%s): authentication failed: the peer does not hold "
        "this herd's secret",
        pc->link->srv->name, pc->addr);
    return -1;
  }
  pc->verified = 1;
  link_up(pc);
  return 0;
}

static int on_record(pconn_t *pc, reader_t *r) {
  int64_t sec = (int64_t)take_u64(r);
  int32_t nsec = (int32_t)take_u32(r);
  uint16_t cn = take_u16(r);
  const uint8_t *client = take(r, cn);
  uint16_t ln = take_u16(r);
  const uint8_t *line = take(r, ln);
  if (r->bad || cn == 0 || ln == 0 || nsec < 0 || nsec > 999999999) return -1;
  stats.records_in++;
  /* A record no newer than the stored one could never be stored (the store
   * keeps only newer ones), so it skips Lua: in a meshed herd about half of
   * all receptions are such echoes of a flood. */
  const store_rec_t *cur = store_get((const char *)client, cn);
  if (cur && store_compare(sec, nsec, (const char *)line, ln, cur) <= 0) {
    stats.records_stale++;
    return 0;
  }
  lua_State *L = script_current();
  script_push_hook(L, HOOK_ON_RECORD);
  if (lua_tocfunction(L, -1) == peer_l_accept_record) {
    /* The built-in rule, with no script around it: no Lua at all. */
    lua_pop(L, 1);
    const char *err;
    peer_accept_record(pc->link->srv->name, (const char *)client, cn, sec, nsec,
                       (const char *)line, ln, &err);
    return 0;
  }
  lua_pushstring(L, pc->link->srv->name);
  lua_pushlstring(L, (const char *)client, cn);
  lua_pushinteger(L, sec);
  lua_pushinteger(L, nsec);
  lua_pushlstring(L, (const char *)line, ln);
  script_call(L, 5, 0, "on_record");
  return 0;
}

static void send_leaf(pconn_t *pc, uint32_t leaf, int want_reply) {
  buf_t *b = &pc->wq.out;
  size_t before = b->len;
  size_t at = frame_begin(b, F_LEAF);
  put_u32(b, leaf);
  uint8_t w = (uint8_t)want_reply;
  buf_append(b, &w, 1);
  size_t count_at = b->len;
  put_u16(b, 0);
  uint16_t count = 0;
  for (const store_rec_t *r = store_leaf(leaf); r && count < 65535;
       r = r->leaf_next) {
    if (b->len - at + 32 + r->client_len > cfg->peer_max_frame) break;
    put_u16(b, r->client_len);
    buf_append(b, STORE_CLIENT(r), r->client_len);
    put_u64(b, (uint64_t)r->sec);
    put_u32(b, (uint32_t)r->nsec);
    put_u64(b, r->digest);
    count++;
  }
  b->data[count_at] = (char)(count >> 8);
  b->data[count_at + 1] = (char)count;
  frame_end(b, at);
  stats.sync_bytes_out += b->len - before;
  sent(pc, b->len - before);
}

static int on_sums(pconn_t *pc, reader_t *r) {
  uint8_t level = take_u8(r);
  uint32_t index = take_u32(r);
  const uint8_t *sums = take(r, 8 * STORE_FANOUT);
  uint32_t width = 1;
  for (int i = 0; i < level; i++)
    width *= STORE_FANOUT;
  if (r->bad || level >= STORE_DEPTH || index >= width) return -1;
  for (uint32_t c = 0; c < STORE_FANOUT; c++) {
    uint32_t child = index * STORE_FANOUT + c;
    if (store_node(level + 1, child) == get_u64(sums + 8 * c)) continue;
    if (level + 1 == STORE_DEPTH)
      send_leaf(pc, child, 1);
    else
      send_sums(pc, level + 1, child);
  }
  return 0;
}

static void send_rec(pconn_t *pc, const store_rec_t *rec) {
  buf_t *b = &pc->wq.out;
  size_t before = b->len;
  encode_record(b, rec);
  stats.records_out++;
  stats.sync_bytes_out += b->len - before;
  sent(pc, b->len - before);
}

static int on_leaf(pconn_t *pc, reader_t *r) {
  uint32_t leaf = take_u32(r);
  uint8_t want = take_u8(r);
  uint16_t count = take_u16(r);
  /* Every entry takes at least 22 bytes: check before allocating. */
  if (r->bad || leaf >= STORE_LEAVES || (size_t)count * 22 > r->left) return -1;
  /* Their entries, checked and kept as pointers into the frame. */
  typedef struct {
    const char *client;
    uint16_t len;
    int64_t sec;
    int32_t nsec;
    uint64_t digest;
  } entry_t;
  entry_t *e = xcalloc(count ? count : 1, sizeof *e);
  for (uint16_t i = 0; i < count; i++) {
    e[i].len = take_u16(r);
    e[i].client = (const char *)take(r, e[i].len);
    e[i].sec = (int64_t)take_u64(r);
    e[i].nsec = (int32_t)take_u32(r);
    e[i].digest = take_u64(r);
  }
  if (r->bad) {
    free(e);
    return -1;
  }
  /* Send what they lack or hold older; ties with different digests go
   * both ways and on_record settles them by the fixed rule. */
  for (const store_rec_t *rec = store_leaf(leaf); rec; rec = rec->leaf_next) {
    const entry_t *match = NULL;
    for (uint16_t i = 0; i < count && !match; i++)
      if (e[i].len == rec->client_len &&
          memcmp(e[i].client, STORE_CLIENT(rec), e[i].len) == 0)
        match = &e[i];
    if (match && match->digest == rec->digest) continue;
    if (!match || rec->sec > match->sec ||
        (rec->sec == match->sec && rec->nsec >= match->nsec))
      send_rec(pc, rec);
  }
  int they_have_more = 0;
  for (uint16_t i = 0; i < count && !they_have_more; i++) {
    const store_rec_t *mine = store_get(e[i].client, e[i].len);
    they_have_more =
        !mine || (mine->digest != e[i].digest &&
                  (e[i].sec > mine->sec ||
                   (e[i].sec == mine->sec && e[i].nsec >= mine->nsec)));
  }
  free(e);
  if (want && they_have_more) send_leaf(pc, leaf, 0);
  return 0;
}

static int handle_frame(pconn_t *pc, const uint8_t *p, size_t len) {
  if (p[0] != PEER_VERSION) {
    log_warn("peer %s speaks peer protocol version %d, this server %d",
             pc->addr, p[0], PEER_VERSION);
    return -1;
  }
  int type = p[1];
  reader_t r = {p + 2, len - 2, 0};
  stats.frames_in++;
  stats.bytes_in += len + 4;
  pc->last_rx = uv_now(loop);
  if (pc->link) pc->link->frames_in++;
  if (!pc->verified) {
    if (type == F_HELLO) return on_hello(pc, &r);
    if (type == F_AUTH) return on_auth(pc, &r);
    return -1;
  }
  switch (type) {
    case F_RECORD:
      return on_record(pc, &r);
    case F_SUMS:
      return on_sums(pc, &r);
    case F_LEAF:
      return on_leaf(pc, &r);
    case F_PING: {
      buf_t *b = &pc->wq.out;
      size_t at = frame_begin(b, F_PONG);
      frame_end(b, at);
      sent(pc, 6);
      return 0;
    }
    case F_PONG:
      return 0;
    default:
      log_warn("link %s: unknown frame type %d", pc->link->srv->name, type);
      return -1;
  }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  pconn_t *pc = (pconn_t *)h;
  buf_reserve(&pc->in, 64 * 1024);
  *b = uv_buf_init(pc->in.data + pc->in.len,
                   (unsigned)(pc->in.cap - pc->in.len));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
  pconn_t *pc = (pconn_t *)s;
  if (nread < 0) {
    pconn_close(pc,
                nread == UV_EOF ? "closed by peer" : uv_strerror((int)nread));
    return;
  }
  pc->in.len += (size_t)nread;
  size_t off = 0;
  while (!pc->closing && pc->in.len - off >= 4) {
    const uint8_t *p = (const uint8_t *)pc->in.data + off;
    uint32_t len = get_u32(p);
    size_t max = pc->verified ? cfg->peer_max_frame : PREAUTH_MAX_FRAME;
    if (len < 2 || len > max) {
      log_warn("peer %s: bad frame length %u (limit %zu)", pc->addr, len, max);
      pconn_close(pc, "bad frame");
      return;
    }
    if (pc->in.len - off < 4 + (size_t)len) {
      buf_reserve(&pc->in, 4 + (size_t)len);
      break;
    }
    if (handle_frame(pc, p + 4, len) < 0) {
      if (!pc->closing) {
        if (pc->verified)
          log_warn("link %s: malformed frame, link closed",
                   pc->link->srv->name);
        pconn_close(pc, "refused");
      }
      return;
    }
    off += 4 + (size_t)len;
  }
  buf_consume(&pc->in, off);
}

/* ---- connections --------------------------------------------------------- */

static pconn_t *pconn_new(void) {
  pconn_t *pc = xcalloc(1, sizeof *pc);
  uv_tcp_init(loop, &pc->tcp);
  wqueue_init(&pc->wq, (uv_stream_t *)&pc->tcp, on_written);
  pc->opened_at = pc->last_rx = pc->last_tx = uv_now(loop);
  RAND_bytes(pc->my_nonce, NONCE_LEN);
  pc->next = conns;
  conns = pc;
  return pc;
}

static void start_io(pconn_t *pc) {
  pc->connected = 1;
  uv_tcp_nodelay(&pc->tcp, 1);
  uv_tcp_keepalive(&pc->tcp, 1, 10);
  send_hello(pc);
  uv_read_start((uv_stream_t *)&pc->tcp, on_alloc, on_read);
}

static void on_connected(uv_connect_t *req, int status) {
  pconn_t *pc = req->data;
  if (pc->closing) return;
  if (status < 0) {
    link_t *l = pc->link;
    if (l->failures++ == 0 || l->failures % 20 == 0)
      log_info("link %s: cannot connect to %s:%d: %s (retrying)", l->srv->name,
               l->srv->host, l->srv->peer_port, uv_strerror(status));
    pconn_close(pc, uv_strerror(status));
    return;
  }
  start_io(pc);
}

static void dial(link_t *l) {
  if (l->active || l->dialing || l->cut_until > uv_now(loop)) return;
  struct sockaddr_storage ss;
  if (uv_ip4_addr(l->srv->host, l->srv->peer_port, (struct sockaddr_in *)&ss) &&
      uv_ip6_addr(l->srv->host, l->srv->peer_port,
                  (struct sockaddr_in6 *)&ss)) {
    log_error("link %s: bad address %s", l->srv->name, l->srv->host);
    return;
  }
  pconn_t *pc = pconn_new();
  pc->link = l;
  pc->outbound = 1;
  snprintf(pc->addr, sizeof pc->addr, "%s:%d", l->srv->host, l->srv->peer_port);
  l->dialing = 1;
  pc->creq.data = pc;
  int rc =
      uv_tcp_connect(&pc->creq, &pc->tcp, (struct sockaddr *)&ss, on_connected);
  if (rc < 0) pconn_close(pc, uv_strerror(rc));
}

static void on_redial(uv_timer_t *t) {
  dial((link_t *)t->data);
}

/* Exponential backoff with jitter: min, 2*min, ... up to max, each delay
 * drawn from [d/2, d] so restarted herds do not dial in lockstep. */
static void schedule_redial(link_t *l) {
  unsigned d = l->backoff_ms ? l->backoff_ms * 2 : cfg->redial_min_ms;
  if (d > cfg->redial_max_ms) d = cfg->redial_max_ms;
  l->backoff_ms = d;
  unsigned delay = d / 2 + (unsigned)(rand() % (int)(d / 2 + 1));
  uint64_t now = uv_now(loop);
  if (l->cut_until > now && l->cut_until - now > delay)
    delay = (unsigned)(l->cut_until - now);
  uv_timer_start(&l->redial, on_redial, delay, 0);
}

static void on_peer_connection(uv_stream_t *server, int status) {
  if (status < 0) return;
  int unauthed = 0;
  for (pconn_t *p = conns; p; p = p->next)
    unauthed += !p->verified;
  pconn_t *pc = pconn_new();
  if (uv_accept(server, (uv_stream_t *)&pc->tcp) < 0 ||
      unauthed >= MAX_UNAUTHED) {
    pconn_close(pc, "refused");
    return;
  }
  struct sockaddr_storage ss;
  int len = sizeof ss;
  memset(&ss, 0, sizeof ss);
  uv_tcp_getpeername(&pc->tcp, (struct sockaddr *)&ss, &len);
  conn_format_addr(&ss, pc->addr, sizeof pc->addr);
  start_io(pc);
}

/* Handshake deadlines, keepalives, dead links, periodic reconciliation. */
static void on_tick(uv_timer_t *t) {
  uint64_t now = uv_now(loop);
  int sync = now - last_sync >= PEER_SYNC_MS;
  if (sync) last_sync = now;
  pconn_t *next;
  for (pconn_t *pc = conns; pc; pc = next) {
    next = pc->next;
    if (!pc->connected) continue;
    if (!pc->verified && now - pc->opened_at > HANDSHAKE_MS) {
      log_warn("peer %s: no authentication within %d ms", pc->addr,
               HANDSHAKE_MS);
      pconn_close(pc, "handshake timeout");
      continue;
    }
    if (!pc->active) continue;
    if (now - pc->last_rx > cfg->peer_timeout_ms) {
      pconn_close(pc, "timed out");
      continue;
    }
    if (now - pc->last_tx > cfg->peer_timeout_ms / 3) {
      buf_t *b = &pc->wq.out;
      size_t at = frame_begin(b, F_PING);
      frame_end(b, at);
      sent(pc, 6);
    }
    if (sync && initiates_sync(pc->link)) send_sums(pc, 0, 0);
  }
}

int peer_start(uv_loop_t *l, const config_t *c, int self, const int *neighbours,
               int n, char *err, size_t errlen) {
  loop = l;
  cfg = c;
  self_name = c->servers[self].name;
  srand((unsigned)uv_hrtime());
  links = xcalloc((size_t)(n ? n : 1), sizeof *links);
  nlinks = n;
  const config_server_t *me = &c->servers[self];
  struct sockaddr_storage ss;
  if (uv_ip4_addr(me->host, me->peer_port, (struct sockaddr_in *)&ss) &&
      uv_ip6_addr(me->host, me->peer_port, (struct sockaddr_in6 *)&ss)) {
    snprintf(err, errlen, "bad peer address %s", me->host);
    return -1;
  }
  uv_tcp_init(loop, &listener);
  int rc = uv_tcp_bind(&listener, (struct sockaddr *)&ss, 0);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)&listener, 128, on_peer_connection);
  if (rc < 0) {
    snprintf(err, errlen, "cannot listen for peers on %s:%d: %s", me->host,
             me->peer_port, uv_strerror(rc));
    return -1;
  }
  for (int i = 0; i < n; i++) {
    links[i].idx = neighbours[i];
    links[i].srv = &c->servers[neighbours[i]];
    uv_timer_init(loop, &links[i].redial);
    links[i].redial.data = &links[i];
  }
  uv_timer_init(loop, &ticker);
  uv_timer_start(&ticker, on_tick, TICK_MS, TICK_MS);
  last_sync = uv_now(loop);
  started = 1;
  for (int i = 0; i < n; i++)
    dial(&links[i]);
  return 0;
}

void peer_shutdown(void) {
  if (!started) return;
  started = 0;
  peer_flush_all();
  while (conns)
    pconn_close(conns, "server stopping");
  for (int i = 0; i < nlinks; i++)
    uv_close((uv_handle_t *)&links[i].redial, NULL);
  uv_close((uv_handle_t *)&ticker, NULL);
  uv_close((uv_handle_t *)&listener, NULL);
}

int peer_accept_record(const char *from, const char *client, size_t cn,
                       int64_t sec, int32_t nsec, const char *line, size_t ln,
                       const char **err) {
  if (from && (*err = textlib_check_at(line, ln, client, cn, sec, nsec))) {
    log_warn("record from %s dropped: %s", from, *err);
    return -1;
  }
  int stored = store_put(client, cn, sec, nsec, line, ln);
  if (stored < 0) {
    /* A full store refuses every new client, and a bigger herd's
     * reconciliation may offer thousands at once: one line a second. */
    static log_limit_t full;
    unsigned long held = 0;
    uint64_t now = loop ? uv_now(loop) : 0; /* no loop under --check */
    *err = store_refusal(stored);
    stats.records_refused++;
    if (stored == STORE_FULL && !log_limit_due(&full, now, &held)) return -1;
    char more[64] = "";
    if (stored == STORE_FULL)
      snprintf(more, sizeof more, " (%lu more since the last line)", held);
    log_warn("record for %.*s%s%s refused: %s%s", (int)(cn > 64 ? 64 : cn),
             client, from ? " from " : "", from ? from : "", *err, more);
    return -1;
  }
  if (stored) peer_flood(client, cn, from);
  return stored;
}

int peer_l_accept_record(lua_State *L) {
  size_t cn, ln;
  const char *from = luaL_optstring(L, 1, NULL);
  const char *client = luaL_checklstring(L, 2, &cn);
  lua_Integer sec = luaL_checkinteger(L, 3);
  lua_Integer nsec = luaL_checkinteger(L, 4);
  const char *line = luaL_checklstring(L, 5, &ln);
  if (nsec < 0 || nsec > 999999999) luaL_argerror(L, 4, "nsec out of range");
  const char *err;
  int rc =
      peer_accept_record(from, client, cn, sec, (int32_t)nsec, line, ln, &err);
  if (rc < 0) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  lua_pushboolean(L, rc);
  return 1;
}

int peer_flood(const char *client, size_t len, const char *except) {
  int live = 0;
  for (int i = 0; i < nlinks; i++)
    live += links[i].active != NULL;
  if (!live) return 0;
  const store_rec_t *r = store_get(client, len);
  if (!r) return 0;
  int n = 0;
  pconn_t *frame = NULL; /* the link whose buffer holds the encoded record */
  size_t frame_at = 0;
  for (int i = 0; i < nlinks; i++) {
    pconn_t *pc = links[i].active;
    if (!pc || (except && strcmp(except, links[i].srv->name) == 0)) continue;
    size_t before = pc->wq.out.len;
    if (!frame) {
      encode_record(&pc->wq.out, r);
      frame = pc;
      frame_at = before;
    } else { /* the same bytes as the first link's */
      size_t bytes = frame->wq.out.len - frame_at;
      buf_reserve(&pc->wq.out, bytes);
      memcpy(pc->wq.out.data + before, frame->wq.out.data + frame_at, bytes);
      pc->wq.out.len += bytes;
    }
    stats.records_out++;
    stats.records_flooded++;
    sent(pc, pc->wq.out.len - before);
    n++;
  }
  return n;
}

void peer_push_links(lua_State *L) {
  uint64_t now = loop ? uv_now(loop) : 0;
  lua_createtable(L, 0, nlinks);
  for (int i = 0; i < nlinks; i++) {
    link_t *l = &links[i];
    lua_createtable(L, 0, 4);
    lua_pushstring(L, l->active ? "up" : (l->cut_until > now ? "cut" : "down"));
    lua_setfield(L, -2, "state");
    lua_pushinteger(L, l->active ? (lua_Integer)(now - l->up_since) : 0);
    lua_setfield(L, -2, "up_ms");
    lua_pushinteger(L, (lua_Integer)l->frames_in);
    lua_setfield(L, -2, "frames_in");
    lua_pushinteger(L, (lua_Integer)l->frames_out);
    lua_setfield(L, -2, "frames_out");
    lua_setfield(L, -2, l->srv->name);
  }
}

int peer_cut(const char *name, unsigned ms) {
  link_t *l = find_link(name, strlen(name));
  if (!l) return -1;
  l->cut_until = uv_now(loop) + ms;
  pconn_t *next;
  for (pconn_t *pc = conns; pc; pc = next) {
    next = pc->next;
    if (pc->link == l) pconn_close(pc, "cut by operator");
  }
  log_info("link %s cut for %u ms", name, ms);
  return 0;
}

void peer_each_link(void (*fn)(const peer_link_info_t *, void *), void *ud) {
  for (int i = 0; i < nlinks; i++) {
    const link_t *l = &links[i];
    peer_link_info_t info = {l->srv->name, l->active != NULL, l->frames_in,
                             l->frames_out,
                             l->active ? wqueue_pending(&l->active->wq) : 0};
    fn(&info, ud);
  }
}
