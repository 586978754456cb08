/* peer: see peer.h.
 *
 * Trust: a link is TLS 1.3 (core/tls.c). By default each side holds the
 * herd secrets and the key of a link is an external PSK,
 * HKDF-SHA256(secret, salt "herd psk v1", info dialler NUL acceptor), so a
 * key is bound to its direction and pair and cannot be reflected. The
 * dialler's PSK identity is "herd1 <key id> <dialler>": the key id (4 bytes
 * of HKDF(secret, "herd key id v1"), never the secret) says which secret it
 * offers (always its first) and the acceptor looks the key up among all of
 * its secrets, for a dialler the topology gives it. Only psk_dhe_ke, so
 * every link also does an ephemeral key exchange. With tls = { cert, key,
 * ca } both sides present certificates instead: the dialler checks the
 * name of the server it dialled, the acceptor maps the certificate's name
 * to a neighbour. insecure = true: plaintext, and a HELLO frame only names
 * the dialler (no authentication).
 *
 * Admission: until its handshake completes an inbound connection is
 * unauthenticated; their number is bounded per source address and in
 * total, each has limits.peer_handshake_ms to finish, and when the bounds are
 * reached the oldest (preferably one that has sent nothing) makes room, so
 * silent connections cannot keep a neighbour out. peers_from filters sources.
 *
 * Wire format, inside TLS: every frame is a 4-byte big-endian length (of
 * what follows), a version byte (PEER_VERSION), a type byte and the payload.
 * Lengths are checked before anything is allocated: a frame longer than the
 * limit closes the link. Frames are encoded into a per-link plaintext
 * buffer (a flood encodes a record once and copies it) and encrypted at
 * flush time; a link whose unsent output passes limits.peer_out_max is
 * dropped and redialled, and reconciliation catches the neighbour up.
 *
 * Reconciliation is a pull, run by each side of a link on its own: when
 * the link comes up, every limits.peer_sync_ms after, when the neighbour
 * hints that it learned records (HINT), and when a PULLALL arrives. The puller
 * walks the store's hash tree with requests (SUMS_REQ: the 32 child sums of a
 * node, answered by SUMS), descends where the neighbour's sums differ from its
 * own and are not empty, and asks for each differing leaf with LEAF, listing
 * the digests it holds there; the neighbour answers with SYNCREC frames (the
 * records whose digest is not listed) and a DONE. Traffic grows with the
 * difference, not with the store.
 * Bounded slices: a puller keeps at most SYNC_WINDOW requests unanswered;
 * each loop phase parses at most SYNC_SLICE bytes of frames and produces at
 * most SYNC_SLICE bytes of sync output over all links; no request is
 * answered or sent while the link's unsent output is over sync_bound()
 * (well under peer_out_max): the frame waits in the input buffer (reading
 * goes on, so two sides waiting on each other cannot deadlock) and is
 * answered as the output drains. Records that arrive by reconciliation are
 * not flooded (that would be output no flow control holds back): when a
 * pull stored records, the puller hints its other neighbours, which pull.
 * A PULLALL (peer_pull_herd) goes through the whole herd, each server
 * passing its id on once (the last PULLALL_SEEN ids are remembered) and
 * pulling from every live link.
 * A joiner linked to several holders pulls from all at once but never asks
 * two for the same leaf at the same time (leaf_busy): the second asks only
 * after the first answered, listing what it now holds, and skips any node
 * whose sum has meanwhile become the neighbour's. A holder's own pull
 * from a joiner that is taking records from it is answered BUSY (the
 * joiner hints once its last pull has ended), so no holder walks a
 * half-filled tree.
 * A store full at limits.max_records refuses records a neighbour holds:
 * the pull counts them (records_diverged), logs once, and remembers both
 * trees, so later pulls end after one SUMS while neither store changes. */
#include "peer.h"

#include <lauxlib.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "conn.h"
#include "log.h"
#include "script.h"
#include "siphash.h"
#include "store.h"
#include "tls.h"
#include "wqueue.h"

#define PEER_VERSION 2 /* 2: reconciliation by pull (SUMS_REQ, DONE...) */
#define PREAUTH_MAX_FRAME 512 /* an insecure HELLO fits easily */
#define TICK_MS 250
#define SYNC_WINDOW 64          /* a puller's unanswered requests */
#define SYNC_SLICE (32 * 1024)  /* bytes of frames per loop phase, each way */
#define SYNC_STACK_MAX 65536    /* nodes a walk keeps to visit */
#define MAX_UNAUTHED 64         /* inbound connections still in handshake */
#define MAX_UNAUTHED_PER_ADDR 8 /* ... from one source address */
#define KEY_ID_LEN 4
#define MAX_SECRETS 16
#define PULLALL_SEEN 256 /* recent PULLALL ids a server remembers */

enum {
  F_HELLO = 1, /* insecure herds only: names the dialler */
  F_RECORD = 3,
  F_SUMS = 4, /* key id, level, index, the 32 child sums: answers SUMS_REQ */
  F_LEAF = 5, /* key id, leaf, 0, count, digests: "send what I lack" */
  F_PING = 6,
  F_PONG = 7,
  F_TREEKEY = 8,   /* the reconciliation tree's key, 16 bytes */
  F_SUMS_REQ = 9,  /* key id, level, index */
  F_DONE = 10,     /* key id, leaf: the answer to a LEAF is complete */
  F_SYNCREC = 11,  /* a RECORD sent by reconciliation: stored, not flooded */
  F_HINT = 12,     /* "I learned records": the receiver pulls */
  F_BUSY = 13,     /* key id: answers a root SUMS_REQ while this side is
                    * taking records from the asker; it hints when done */
  F_FLOODREC = 14, /* a RECORD sent by a fallback flood: the receiver floods
                    * it on too (once), whatever its forwarding rule says */
  F_PULLALL = 15   /* an id: "pull from every link", passed on once */
};

/* A node of the tree a pull is to visit, with the neighbour's sum of it. */
typedef struct sync_node {
  uint64_t theirs;
  uint32_t index;
  uint8_t level;
} sync_node_t;

typedef struct node_list {
  sync_node_t *v;
  size_t n, cap;
} node_list_t;

/* One pull from a neighbour (see the header). */
typedef struct sync {
  enum { SYNC_IDLE, SYNC_RUNNING, SYNC_DRAINING } state;
  int again;                  /* another pull asked for while this one runs */
  int outstanding;            /* requests sent, not yet answered */
  node_list_t todo, deferred; /* deferred: leaves another pull is asking */
  uint64_t deferred_epoch;    /* busy_epoch when the last was deferred */
  uint32_t inflight[SYNC_WINDOW]; /* leaves asked, not yet DONE */
  int ninflight;
  uint64_t stored, refused; /* records this pull stored, refused as full */
  uint64_t root_theirs;     /* a hash of the neighbour's level-1 sums */
  /* The trees when the last pull ended with refusals: while both are
   * unchanged, a pull ends after the first SUMS. */
  uint64_t full_theirs, full_mine;
  uint64_t diverged; /* records refused at the last pull (a gauge) */
  int full_known;
} sync_t;

typedef struct link link_t;

/* One TCP connection to or from another server. */
typedef struct pconn {
  uv_tcp_t tcp; /* first: the handle pointer is the pconn pointer */
  uv_connect_t creq;
  link_t *link; /* known at dial time, or after HELLO for inbound */
  struct pconn *next;
  struct pconn *dirty_next;
  wqueue_t wq; /* bytes on the wire (ciphertext under TLS) */
  buf_t out;   /* frames not yet encrypted (TLS only) */
  buf_t in;    /* plaintext frames read */
  tls_conn_t *tls;
  uint64_t opened_at, last_rx, last_tx, rx_bytes, handshake_us;
  int secret_idx; /* which secret keys the link (PSK mode) */
  sync_t sync;    /* this side's pull from the neighbour */
  /* held: frames wait in `in` (the phase's slice is spent, or a request
   * waits for the output to drain). */
  unsigned outbound : 1, connected : 1, verified : 1, closing : 1, dirty : 1,
      active : 1, cut : 1, held : 1;
  char addr[128]; /* ip:port, or name (ip):port for a dialled name */
  char ip[48];    /* the source address alone, for per-address bounds */
} pconn_t;

struct link {
  int idx;
  const config_server_t *srv;
  pconn_t *active;
  uv_timer_t redial;
  uv_getaddrinfo_t resolve; /* a dial to a DNS name waits for it */
  unsigned backoff_ms;
  uint64_t cut_until;
  uint64_t up_since;
  uint64_t frames_in, frames_out;
  int dialing;
  int failures; /* consecutive failed dials, to keep the log short */
  /* The far end closed the active connection while another to the same
   * neighbour was in its handshake here (both ends dialled at once and the
   * far end kept the other): the link is not reported down unless that
   * one fails too. */
  int replacing;
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
static tls_ctx_t *tls_ctx; /* NULL: insecure */
static int cert_mode;
/* The herd secrets (PSK mode), copied from the config at start and at
 * each reload, with their key ids. */
static char *secrets[MAX_SECRETS];
static uint8_t key_ids[MAX_SECRETS][KEY_ID_LEN];
static int nsecrets;
/* The key of the store's hash tree (leaf assignment, digests), which the
 * herd agrees on link by link (the smaller wins), and its short id, which
 * reconciliation frames carry: a pull answered under another key stops. */
static uint8_t tree_key[16];
static uint8_t tree_kid[KEY_ID_LEN];
/* Reconciliation: */
static uint8_t leaf_busy[STORE_LEAVES / 8]; /* leaves some pull is asking */
static uint64_t busy_epoch;                 /* bumped when one is answered */
static size_t slice_in = SYNC_SLICE, slice_out = SYNC_SLICE; /* this phase's */
static uv_idle_t pump_idle; /* keeps the loop turning while slices are due */
static int hint_due;        /* a pull stored records: hint the neighbours */
static peer_links_fn links_handler; /* told when a link comes up or goes down */
/* Herd-wide pulls (peer_pull_herd): this server's ids are pullall_base
 * plus a count (the base random per process), and the last ids seen. */
static uint64_t pullall_base, pullall_count;
static uint64_t pullall_seen[PULLALL_SEEN];
static unsigned pullall_next;

static void pconn_close(pconn_t *pc, const char *why);
static void schedule_redial(link_t *l);
static void on_redial(uv_timer_t *t);
static void sync_issue(pconn_t *pc);
static int sync_due(const pconn_t *pc);
static size_t unsent(const pconn_t *pc);
static size_t sync_bound(void);
static void parse_frames(pconn_t *pc);

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

/* Where frames for pc are encoded: plaintext waiting for encryption, or
 * (insecure) the write queue itself. */
static buf_t *obuf(pconn_t *pc) {
  return pc->tls ? &pc->out : &pc->wq.out;
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
static void encode_record(buf_t *b, const store_rec_t *r, int type) {
  size_t body = 2 + 8 + 4 + 2 + r->client_len + 2 + r->line_len;
  buf_reserve(b, 4 + body);
  uint8_t *p = (uint8_t *)b->data + b->len;
  p = put_be(p, body, 4);
  *p++ = PEER_VERSION;
  *p++ = (uint8_t)type;
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

/* Encrypts what is pending and hands the wire bytes to the kernel; a link
 * whose unsent output passes peer_out_max (a neighbour that does not read)
 * is dropped: redialled, it catches up by reconciliation. */
static void on_pump_idle(uv_idle_t *h) {} /* the flush phases do the work */

/* A slice of reconciliation per loop phase: held input first (answers),
 * then the pulls' next requests. */
static void sync_pump(void) {
  pconn_t *next;
  for (pconn_t *pc = conns; pc; pc = next) {
    next = pc->next;
    if (pc->closing || !pc->verified) continue;
    if (pc->held) parse_frames(pc);
    if (!pc->closing && pc->active) sync_issue(pc);
  }
}

/* The loop must not sleep while a slice is due: input held only by the
 * slice, or a pull with requests to send. */
static void sync_schedule(void) {
  int due = 0;
  for (pconn_t *pc = conns; pc && !due; pc = pc->next)
    if (!pc->closing && pc->verified)
      due = (pc->held && unsent(pc) < sync_bound()) ||
            (pc->active && sync_due(pc));
  if (due)
    uv_idle_start(&pump_idle, on_pump_idle);
  else
    uv_idle_stop(&pump_idle);
}

void peer_flush_all(void) {
  slice_in = slice_out = SYNC_SLICE;
  sync_pump();
  while (dirty) {
    pconn_t *pc = dirty;
    dirty = pc->dirty_next;
    pc->dirty = 0;
    if (pc->closing) continue;
    if (pc->tls) {
      if (pc->out.len && tls_conn_write(pc->tls, pc->out.data, pc->out.len)) {
        pconn_close(pc, tls_conn_error(pc->tls));
        continue;
      }
      pc->out.len = 0;
      tls_conn_drain(pc->tls, &pc->wq.out);
    }
    int n = wqueue_flush(&pc->wq);
    if (n < 0) {
      pconn_close(pc, uv_strerror(n));
      continue;
    }
    size_t left = unsent(pc);
    if (left > cfg->peer_out_max) {
      stats.out_drops++;
      log_warn(
          "link %s (%s): %zu bytes unsent, over limits.peer_out_max "
          "(%zu): dropped, to be redialled",
          pc->link ? pc->link->srv->name : "?", pc->addr, left,
          cfg->peer_out_max);
      pconn_close(pc, "output over peer_out_max");
    }
  }
  if (started) sync_schedule();
}

/* ---- link state ---------------------------------------------------------- */

static link_t *find_link(const char *name, size_t len) {
  for (int i = 0; i < nlinks; i++)
    if (strlen(links[i].srv->name) == len &&
        memcmp(links[i].srv->name, name, len) == 0)
      return &links[i];
  return NULL;
}

typedef struct link_event {
  const char *name;
  int up;
} link_event_t;

/* on_link(peer, up), pushed inside the protected call (script_run). */
static int push_on_link(lua_State *L, void *ud) {
  const link_event_t *e = ud;
  script_push_hook(L, HOOK_ON_LINK);
  lua_pushstring(L, e->name);
  lua_pushboolean(L, e->up);
  return 2;
}

static void call_on_link(link_t *l, int up) {
  if (links_handler) links_handler((int)(l - links), up);
  lua_State *L = script_current();
  if (script_push_hook(L, HOOK_ON_LINK) < 0) return;
  lua_pop(L, 1);
  link_event_t e = {l->srv->name, up};
  script_run(L, push_on_link, &e, 0, "on_link");
}

/* ---- reconciliation (see the header) ------------------------------------ */

static size_t unsent(const pconn_t *pc) {
  return pc->out.len + wqueue_pending(&pc->wq);
}

/* Sync output waits while a link holds this much unsent, so floods (which
 * never wait) keep room under peer_out_max. */
static size_t sync_bound(void) {
  size_t b = cfg->peer_out_max / 8;
  return b < 256 * 1024 ? b : 256 * 1024;
}

static int out_blocked(const pconn_t *pc) {
  return slice_out == 0 || unsent(pc) >= sync_bound();
}

static void sync_sent(pconn_t *pc, size_t bytes) {
  stats.sync_bytes_out += bytes;
  slice_out = slice_out > bytes ? slice_out - bytes : 0;
  sent(pc, bytes);
}

static void node_push(node_list_t *l, int level, uint32_t index,
                      uint64_t theirs) {
  if (l->n == l->cap) {
    l->cap = l->cap ? 2 * l->cap : 64;
    l->v = xrealloc(l->v, l->cap * sizeof *l->v);
  }
  l->v[l->n++] = (sync_node_t){theirs, index, (uint8_t)level};
}

static int leaf_is_busy(uint32_t leaf) {
  return leaf_busy[leaf / 8] >> (leaf % 8) & 1;
}

static void leaf_set_busy(uint32_t leaf, int on) {
  if (on) {
    leaf_busy[leaf / 8] |= (uint8_t)(1u << (leaf % 8));
  } else {
    leaf_busy[leaf / 8] &= (uint8_t) ~(1u << (leaf % 8));
    busy_epoch++;
  }
}

static size_t kid_frame(buf_t *b, int type) {
  size_t at = frame_begin(b, type);
  buf_append(b, tree_kid, KEY_ID_LEN);
  return at;
}

static void send_sums_req(pconn_t *pc, int level, uint32_t index) {
  buf_t *b = obuf(pc);
  size_t at = kid_frame(b, F_SUMS_REQ);
  uint8_t lv = (uint8_t)level;
  buf_append(b, &lv, 1);
  put_u32(b, index);
  frame_end(b, at);
  sync_sent(pc, b->len - at);
}

/* Asks for the records of leaf whose digests this server lacks. */
static void send_leaf_req(pconn_t *pc, uint32_t leaf) {
  buf_t *b = obuf(pc);
  size_t at = kid_frame(b, F_LEAF);
  put_u32(b, leaf);
  uint8_t flags = 0;
  buf_append(b, &flags, 1);
  size_t count_at = b->len;
  put_u16(b, 0);
  uint16_t count = 0;
  /* A leaf too big for one frame lists what fits; the rest comes back
   * as stale copies, which cost traffic, not correctness. */
  for (const store_rec_t *r = store_leaf(leaf);
       r && count < 65535 && b->len - at + 16 <= cfg->peer_max_frame;
       r = r->leaf_next, count++)
    put_u64(b, r->digest);
  b->data[count_at] = (char)(count >> 8);
  b->data[count_at + 1] = (char)count;
  frame_end(b, at);
  sync_sent(pc, b->len - at);
}

static void sync_start(pconn_t *pc) {
  sync_t *s = &pc->sync;
  if (s->state != SYNC_IDLE) {
    s->again = 1;
    return;
  }
  s->state = SYNC_RUNNING;
  s->again = 0;
  s->stored = s->refused = 0;
  s->todo.n = s->deferred.n = 0;
  node_push(&s->todo, 0, 0, 0);
  stats.reconciles++;
}

/* Gives up the pull's leaves; answers still on their way are counted
 * off (DRAINING) before the next pull starts. */
static void sync_abort(pconn_t *pc) {
  sync_t *s = &pc->sync;
  for (int i = 0; i < s->ninflight; i++)
    leaf_set_busy(s->inflight[i], 0);
  s->ninflight = 0;
  s->todo.n = s->deferred.n = 0;
  if (s->state == SYNC_RUNNING)
    s->state = s->outstanding ? SYNC_DRAINING : SYNC_IDLE;
  if (s->state == SYNC_IDLE && s->again) sync_start(pc);
}

static void set_diverged(sync_t *s, uint64_t n) {
  stats.records_diverged = stats.records_diverged - s->diverged + n;
  s->diverged = n;
}

static void send_hint(pconn_t *pc) {
  buf_t *b = obuf(pc);
  size_t at = frame_begin(b, F_HINT);
  frame_end(b, at);
  sync_sent(pc, b->len - at);
}

/* Passes the herd-wide pull id on to every live link but from (once per
 * id) and pulls from every live link, from included. */
static void pullall_spread(uint64_t id, const pconn_t *from) {
  for (int i = 0; i < PULLALL_SEEN; i++)
    if (pullall_seen[i] == id) return;
  pullall_seen[pullall_next++ % PULLALL_SEEN] = id;
  stats.pull_alls++;
  for (int i = 0; i < nlinks; i++) {
    pconn_t *pc = links[i].active;
    if (!pc || pc == from) continue;
    buf_t *b = obuf(pc);
    size_t at = frame_begin(b, F_PULLALL);
    put_u64(b, id);
    frame_end(b, at);
    sync_sent(pc, b->len - at);
  }
  peer_pull_all();
}

/* Once no pull of this server runs any more and one stored records, every
 * neighbour is hinted to pull. Waiting for the last pull keeps a joiner
 * from having a holder walk its half-filled tree. */
static void hint_if_idle(void) {
  if (!hint_due) return;
  for (int i = 0; i < nlinks; i++)
    if (links[i].active && links[i].active->sync.state != SYNC_IDLE) return;
  hint_due = 0;
  for (int i = 0; i < nlinks; i++)
    if (links[i].active) send_hint(links[i].active);
}

/* unchanged: both trees are as when the last pull ended with refusals. */
static void sync_finish(pconn_t *pc, int unchanged) {
  sync_t *s = &pc->sync;
  const char *name = pc->link->srv->name;
  s->state = SYNC_IDLE;
  if (!unchanged && s->refused) {
    if (!s->diverged)
      log_warn(
          "reconciliation with %s: %llu records it holds refused, store "
          "full (limits.max_records = %zu); counted in records_diverged, "
          "not asked for again until either store changes",
          name, (unsigned long long)s->refused, cfg->max_records);
    set_diverged(s, s->refused);
    s->full_known = 1;
    s->full_theirs = s->root_theirs;
    s->full_mine = store_node(0, 0);
  } else if (!unchanged && s->diverged) {
    log_info("reconciliation with %s: no record refused any more", name);
    set_diverged(s, 0);
    s->full_known = 0;
  }
  if (s->again) sync_start(pc);
  hint_if_idle();
}

/* Sends the pull's next requests, within its window and the link's bound. */
static void sync_issue(pconn_t *pc) {
  sync_t *s = &pc->sync;
  while (s->state == SYNC_RUNNING && s->outstanding < SYNC_WINDOW &&
         !out_blocked(pc)) {
    if (!s->todo.n) {
      if (!s->deferred.n || s->deferred_epoch == busy_epoch) break;
      node_list_t t = s->todo; /* retry the deferred leaves */
      s->todo = s->deferred;
      s->deferred = t;
      continue;
    }
    sync_node_t nd = s->todo.v[--s->todo.n];
    /* Another pull may have brought this node level with theirs. */
    if (nd.level && store_node(nd.level, nd.index) == nd.theirs) continue;
    if (nd.level == STORE_DEPTH) {
      if (leaf_is_busy(nd.index)) {
        node_push(&s->deferred, nd.level, nd.index, nd.theirs);
        s->deferred_epoch = busy_epoch;
        continue;
      }
      leaf_set_busy(nd.index, 1);
      s->inflight[s->ninflight++] = nd.index;
      send_leaf_req(pc, nd.index);
    } else {
      send_sums_req(pc, nd.level, nd.index);
    }
    s->outstanding++;
  }
  if (s->state == SYNC_RUNNING && !s->outstanding && !s->todo.n &&
      !s->deferred.n)
    sync_finish(pc, 0);
}

/* Whether sync_issue has something to do now. */
static int sync_due(const pconn_t *pc) {
  const sync_t *s = &pc->sync;
  if (s->state != SYNC_RUNNING || unsent(pc) >= sync_bound()) return 0;
  if (!s->outstanding && !s->todo.n && !s->deferred.n) return 1;
  return s->outstanding < SYNC_WINDOW &&
         (s->todo.n || (s->deferred.n && s->deferred_epoch != busy_epoch));
}

/* An answer arrived: one request fewer outstanding. 0 if the answer is
 * for the running pull, -1 if it is to be ignored. */
static int sync_answered(pconn_t *pc, const uint8_t *kid) {
  sync_t *s = &pc->sync;
  if (s->state == SYNC_IDLE || !s->outstanding) return -1; /* unasked */
  s->outstanding--;
  if (s->state == SYNC_DRAINING) {
    if (!s->outstanding) {
      s->state = SYNC_IDLE;
      if (s->again) sync_start(pc);
      hint_if_idle();
    }
    return -1;
  }
  if (memcmp(kid, tree_kid, KEY_ID_LEN) != 0) { /* keys converging */
    sync_abort(pc);
    return -1;
  }
  return 0;
}

static const siphash_key_t zero_key;

/* SUMS: the neighbour's child sums of a node this pull asked for. */
static int on_sums(pconn_t *pc, reader_t *r) {
  const uint8_t *kid = take(r, KEY_ID_LEN);
  uint8_t level = take_u8(r);
  uint32_t index = take_u32(r);
  const uint8_t *sums = take(r, 8 * STORE_FANOUT);
  uint32_t width = 1;
  for (int i = 0; i < level && i < STORE_DEPTH; i++)
    width *= STORE_FANOUT;
  if (r->bad || r->left || level >= STORE_DEPTH || index >= width) return -1;
  if (sync_answered(pc, kid) < 0) return 0;
  sync_t *s = &pc->sync;
  if (level == 0) {
    s->root_theirs = siphash13(&zero_key, sums, 8 * STORE_FANOUT);
    if (s->full_known && s->root_theirs == s->full_theirs &&
        store_node(0, 0) == s->full_mine && !s->outstanding) {
      sync_finish(pc, 1);
      return 0;
    }
  }
  for (uint32_t c = 0; c < STORE_FANOUT; c++) {
    uint32_t child = index * STORE_FANOUT + c;
    uint64_t theirs = get_u64(sums + 8 * c);
    /* 0: they hold nothing there (every digest is odd, so a sum of
     * records is 0 only for an empty node, or with odds of 2^-63). */
    if (!theirs || store_node(level + 1, child) == theirs) continue;
    if (s->todo.n >= SYNC_STACK_MAX) {
      sync_abort(pc);
      return 0;
    }
    node_push(&s->todo, level + 1, child, theirs);
  }
  return 0;
}

/* DONE: every record of a leaf this pull asked for has been sent. */
static int on_done(pconn_t *pc, reader_t *r) {
  const uint8_t *kid = take(r, KEY_ID_LEN);
  uint32_t leaf = take_u32(r);
  if (r->bad || r->left || leaf >= STORE_LEAVES) return -1;
  sync_t *s = &pc->sync;
  for (int i = 0; i < s->ninflight; i++)
    if (s->inflight[i] == leaf) {
      s->inflight[i] = s->inflight[--s->ninflight];
      leaf_set_busy(leaf, 0);
      break;
    }
  sync_answered(pc, kid);
  return 0;
}

/* SUMS_REQ: answered with this server's child sums (under its own key id;
 * a puller under another key gives up). 1: held (output over the bound). */
static int on_sums_req(pconn_t *pc, reader_t *r) {
  take(r, KEY_ID_LEN);
  uint8_t level = take_u8(r);
  uint32_t index = take_u32(r);
  uint32_t width = 1;
  for (int i = 0; i < level && i < STORE_DEPTH; i++)
    width *= STORE_FANOUT;
  if (r->bad || r->left || level >= STORE_DEPTH || index >= width) return -1;
  buf_t *b = obuf(pc);
  if (level == 0 && pc->sync.state == SYNC_RUNNING && pc->sync.stored) {
    size_t at = kid_frame(b, F_BUSY);
    frame_end(b, at);
    sync_sent(pc, b->len - at);
    return 0;
  }
  size_t at = kid_frame(b, F_SUMS);
  buf_append(b, &level, 1);
  put_u32(b, index);
  for (uint32_t c = 0; c < STORE_FANOUT; c++)
    put_u64(b, store_node(level + 1, index * STORE_FANOUT + c));
  frame_end(b, at);
  sync_sent(pc, b->len - at);
  return 0;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static void send_syncrec(pconn_t *pc, const store_rec_t *rec) {
  buf_t *b = obuf(pc);
  size_t before = b->len;
  encode_record(b, rec, F_SYNCREC);
  stats.records_out++;
  sync_sent(pc, b->len - before);
}

/* LEAF: the records of the leaf whose digests the puller does not list,
 * then DONE. */
static int on_leaf(pconn_t *pc, reader_t *r) {
  const uint8_t *kid = take(r, KEY_ID_LEN);
  uint32_t leaf = take_u32(r);
  take_u8(r); /* flags, none yet */
  uint16_t count = take_u16(r);
  if (r->bad || leaf >= STORE_LEAVES || (size_t)count * 8 != r->left) return -1;
  if (memcmp(kid, tree_kid, KEY_ID_LEN) == 0) {
    uint64_t *have = xmalloc((count ? count : 1) * sizeof *have);
    for (uint16_t i = 0; i < count; i++)
      have[i] = take_u64(r);
    qsort(have, count, sizeof *have, cmp_u64);
    for (const store_rec_t *rec = store_leaf(leaf); rec; rec = rec->leaf_next)
      if (!bsearch(&rec->digest, have, count, sizeof *have, cmp_u64))
        send_syncrec(pc, rec);
    free(have);
  }
  buf_t *b = obuf(pc);
  size_t at = kid_frame(b, F_DONE);
  put_u32(b, leaf);
  frame_end(b, at);
  sync_sent(pc, b->len - at);
  return 0;
}

/* A pull's state goes with its connection; its leaves are freed at once. */
static void sync_free(pconn_t *pc) {
  sync_t *s = &pc->sync;
  s->again = 0;
  sync_abort(pc);
  s->state = SYNC_IDLE;
  set_diverged(s, 0);
  free(s->todo.v);
  free(s->deferred.v);
  memset(s, 0, sizeof *s);
}

static void send_treekey(pconn_t *pc) {
  buf_t *b = obuf(pc);
  size_t at = frame_begin(b, F_TREEKEY);
  buf_append(b, tree_key, sizeof tree_key);
  frame_end(b, at);
  sent(pc, b->len - at);
}

static void hex(const uint8_t *p, size_t n, char *out) {
  for (size_t i = 0; i < n; i++)
    sprintf(out + 2 * i, "%02x", p[i]);
}

/* Rekeys the store's tree (every record: O(n)) and names the key by id. */
static int set_tree_key(const uint8_t key[16]) {
  uint8_t kid[KEY_ID_LEN];
  if (tls_hkdf(key, 16, "herd tree key id v1", "", 0, kid, sizeof kid) < 0) {
    log_error("HKDF failed: the reconciliation key stays as it was");
    return -1;
  }
  memcpy(tree_key, key, sizeof tree_key);
  memcpy(tree_kid, kid, sizeof kid);
  store_set_tree_key(tree_key);
  return 0;
}

/* A neighbour's tree key: the smaller of two keys wins, so the herd ends
 * on one key (the smallest any server started with). A side that adopts
 * one passes it on to its other links and reconciles at once. */
static int on_treekey(pconn_t *pc, reader_t *r) {
  const uint8_t *key = take(r, sizeof tree_key);
  if (r->bad || r->left) return -1;
  int cmp = memcmp(key, tree_key, sizeof tree_key);
  if (cmp > 0) send_treekey(pc); /* theirs is greater: they adopt ours */
  if (cmp >= 0) return 0;
  if (set_tree_key(key) < 0) return 0;
  char id[2 * KEY_ID_LEN + 1];
  hex(tree_kid, KEY_ID_LEN, id);
  log_info("reconciliation key: adopted %s's (key id %s), a smaller one",
           pc->link->srv->name, id);
  /* Every pull under the old key is void: start again, and have every
   * neighbour pull too. */
  for (int i = 0; i < nlinks; i++) {
    pconn_t *o = links[i].active;
    if (!o) continue;
    if (o != pc) send_treekey(o);
    send_hint(o);
    o->sync.again = 1; /* restarts it now, or once its answers are in */
    sync_abort(o);
    if (o->sync.state == SYNC_IDLE) sync_start(o);
  }
  return 0;
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
  char how[160] = "insecure: plaintext, not authenticated";
  if (pc->tls) {
    char suite[100];
    tls_conn_describe(pc->tls, suite, sizeof suite);
    if (cert_mode)
      snprintf(how, sizeof how, "%s, certificate", suite);
    else
      snprintf(how, sizeof how, "%s, secret #%d", suite, pc->secret_idx + 1);
    size_t n = strlen(how);
    snprintf(how + n, sizeof how - n, ", handshake %.1f ms",
             (double)pc->handshake_us / 1000.0);
  }
  log_info("link %s up (%s, %s, %s)", l->srv->name, pc->addr,
           pc->outbound ? "dialled" : "accepted", how);
  send_treekey(pc); /* before any SUMS, so a greater key is replaced first */
  sync_start(pc);
  l->replacing = 0;
  call_on_link(l, 1);
}

static void on_pconn_closed(uv_handle_t *h) {
  pconn_t *pc = (pconn_t *)h;
  wqueue_free(&pc->wq);
  tls_conn_free(pc->tls);
  buf_free(&pc->out);
  buf_free(&pc->in);
  free(pc);
}

/* Another connection of l's, besides pc, still open. */
static int sibling_pending(const link_t *l, const pconn_t *pc) {
  for (const pconn_t *p = conns; p; p = p->next)
    if (p != pc && p->link == l && !p->closing) return 1;
  return 0;
}

/* may_replace: the far end closed pc, so a sibling in its handshake may be
 * the connection it kept (see link_t.replacing). */
static void close_conn(pconn_t *pc, const char *why, int may_replace) {
  if (pc->closing) return;
  pc->closing = 1;
  for (pconn_t **p = &conns; *p; p = &(*p)->next)
    if (*p == pc) {
      *p = pc->next;
      break;
    }
  sync_free(pc);
  link_t *l = pc->link;
  if (l && pc->active) {
    l->active = NULL;
    if (may_replace && sibling_pending(l, pc)) {
      l->replacing = 1;
      log_info(
          "link %s (%s): %s; its other connection, dialled at the same "
          "time, is finishing its handshake",
          l->srv->name, pc->addr, why);
    } else {
      log_info("link %s down (%s): %s", l->srv->name, pc->addr, why);
      call_on_link(l, 0);
    }
  } else if (l && l->replacing && !l->active && !sibling_pending(l, pc)) {
    l->replacing = 0;
    log_info("link %s down (%s): %s", l->srv->name, pc->addr, why);
    call_on_link(l, 0);
  }
  if (l && pc->outbound) l->dialing = 0;
  if (l && !l->active && !l->dialing && started) schedule_redial(l);
  uv_close((uv_handle_t *)&pc->tcp, on_pconn_closed);
}

static void pconn_close(pconn_t *pc, const char *why) {
  close_conn(pc, why, 0);
}

/* ---- frames -------------------------------------------------------------- */

/* A name that came from the network, made printable for a log line. */
static void printable(const char *in, size_t n, char *out, size_t outlen) {
  size_t o = 0;
  for (size_t i = 0; i < n && o + 5 < outlen; i++) {
    unsigned char c = (unsigned char)in[i];
    if (c >= 0x20 && c < 0x7f && c != '\\')
      out[o++] = (char)c;
    else
      o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", c);
  }
  out[o] = '\0';
}

/* Insecure herds: the dialler names itself, nothing more. */
static void send_hello(pconn_t *pc) {
  buf_t *b = obuf(pc);
  size_t at = frame_begin(b, F_HELLO);
  uint8_t n = (uint8_t)strlen(self_name);
  buf_append(b, &n, 1);
  buf_append(b, self_name, n);
  frame_end(b, at);
  sent(pc, b->len - at);
}

static int on_hello(pconn_t *pc, reader_t *r) {
  uint8_t n = take_u8(r);
  const uint8_t *name = take(r, n);
  if (r->bad || pc->outbound) return -1;
  link_t *l = find_link((const char *)name, n);
  if (!l) {
    char shown[80];
    printable((const char *)name, n, shown, sizeof shown);
    log_warn("peer %s says it is '%s', which is not a neighbour", pc->addr,
             shown);
    return -1;
  }
  if (l->cut_until > uv_now(loop)) return -1;
  pc->link = l;
  pc->verified = 1;
  link_up(pc);
  return 0;
}

static peer_record_fn record_handler;

void peer_set_record_handler(peer_record_fn fn) {
  record_handler = fn;
}

/* sync: a record sent by reconciliation, stored for the pull (counted
 * there) and not flooded; flood: sent by a fallback flood (F_FLOODREC).
 * The record goes up to the handler (records.c). */
static int on_record(pconn_t *pc, reader_t *r, int sync, int flood) {
  int64_t sec = (int64_t)take_u64(r);
  int32_t nsec = (int32_t)take_u32(r);
  uint16_t cn = take_u16(r);
  const uint8_t *client = take(r, cn);
  uint16_t ln = take_u16(r);
  const uint8_t *line = take(r, ln);
  if (r->bad || cn == 0 || ln == 0 || nsec < 0 || nsec > 999999999) return -1;
  stats.records_in++;
  if (!record_handler) return 0;
  peer_tally_t tally = {0, 0};
  record_handler(pc->link->srv->name, (const char *)client, cn, sec, nsec,
                 (const char *)line, ln, sync ? &tally : NULL, flood);
  if (sync) {
    pc->sync.stored += tally.stored;
    pc->sync.refused += tally.refused;
    if (tally.stored) hint_due = 1; /* not flooded: the pull hints instead */
  }
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
  /* A request waits while the link's output is over the bound. */
  if (pc->verified && (type == F_SUMS_REQ || type == F_LEAF) && out_blocked(pc))
    return 1;
  stats.frames_in++;
  stats.bytes_in += len + 4;
  pc->last_rx = uv_now(loop);
  if (pc->link) pc->link->frames_in++;
  if (!pc->verified) return type == F_HELLO && !tls_ctx ? on_hello(pc, &r) : -1;
  switch (type) {
    case F_RECORD:
      return on_record(pc, &r, 0, 0);
    case F_FLOODREC:
      return on_record(pc, &r, 0, 1);
    case F_SYNCREC:
      return on_record(pc, &r, 1, 0);
    case F_SUMS:
      return on_sums(pc, &r);
    case F_SUMS_REQ:
      return on_sums_req(pc, &r);
    case F_LEAF:
      return on_leaf(pc, &r);
    case F_DONE:
      return on_done(pc, &r);
    case F_BUSY: {
      const uint8_t *kid = take(&r, KEY_ID_LEN);
      if (r.bad || r.left) return -1;
      /* It takes records from this server and hints when done. */
      if (sync_answered(pc, kid) == 0 && !pc->sync.outstanding)
        sync_finish(pc, 1);
      return 0;
    }
    case F_HINT:
      if (r.left) return -1;
      sync_start(pc);
      return 0;
    case F_PULLALL: {
      uint64_t id = take_u64(&r);
      if (r.bad || r.left) return -1;
      pullall_spread(id, pc);
      return 0;
    }
    case F_PING: {
      buf_t *b = obuf(pc);
      size_t at = frame_begin(b, F_PONG);
      frame_end(b, at);
      sent(pc, 6);
      return 0;
    }
    case F_PONG:
      return 0;
    case F_TREEKEY:
      return on_treekey(pc, &r);
    default:
      log_warn("link %s: unknown frame type %d", pc->link->srv->name, type);
      return -1;
  }
}

/* Ciphertext is read into one shared buffer (the engine copies it at
 * once); plaintext (insecure) straight into the frame buffer. */
static char wire_in[64 * 1024];

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  pconn_t *pc = (pconn_t *)h;
  if (pc->tls) {
    *b = uv_buf_init(wire_in, sizeof wire_in);
    return;
  }
  buf_reserve(&pc->in, 64 * 1024);
  *b = uv_buf_init(pc->in.data + pc->in.len,
                   (unsigned)(pc->in.cap - pc->in.len));
}

/* A TLS handshake failed or named no neighbour: logged as an
 * authentication failure (the reason is OpenSSL's or the PSK lookup's). */
static void refuse(pconn_t *pc, const char *why) {
  stats.auth_failures++;
  if (pc->link)
    log_warn("link %s (%s): authentication failed: %s", pc->link->srv->name,
             pc->addr, why);
  else
    log_warn("peer %s: authentication failed: %s", pc->addr, why);
  pconn_close(pc, "authentication failed");
}

/* The handshake is done: decide which neighbour this is. */
static int tls_up(pconn_t *pc) {
  pc->handshake_us = (uv_hrtime() / 1000) - pc->handshake_us;
  if (cert_mode && !pc->outbound) {
    /* The certificate's name must be a neighbour's (the dialler checked
     * ours with SSL_set1_host). */
    pc->link = NULL;
    for (int i = 0; i < nlinks && !pc->link; i++)
      if (tls_conn_peer_has_name(pc->tls, links[i].srv->name))
        pc->link = &links[i];
    if (!pc->link) {
      refuse(pc, "its certificate names no neighbour of this server");
      return -1;
    }
  }
  if (!pc->link || pc->link->cut_until > uv_now(loop)) {
    pconn_close(pc, "refused");
    return -1;
  }
  pc->verified = 1;
  link_up(pc);
  return pc->closing ? -1 : 0;
}

static void parse_frames(pconn_t *pc);

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
  pconn_t *pc = (pconn_t *)s;
  if (nread < 0) {
    /* A close without an alert during a handshake is no proof of a bad
     * key (a refused key gets an alert first): the other side gave up,
     * e.g. a duplicate dial, and it is redialled as any closed link. */
    if (pc->tls && !pc->verified)
      pconn_close(pc, "closed during the TLS handshake");
    else
      close_conn(
          pc, nread == UV_EOF ? "closed by peer" : uv_strerror((int)nread), 1);
    return;
  }
  pc->rx_bytes += (size_t)nread;
  if (!pc->tls) {
    pc->in.len += (size_t)nread;
    parse_frames(pc);
    return;
  }
  tls_conn_feed(pc->tls, b->base, (size_t)nread);
  mark_dirty(pc); /* handshake messages, alerts or key updates to send */
  if (!pc->verified) {
    int rc = tls_conn_handshake(pc->tls);
    if (rc < 0) {
      if (pc->cut)
        pconn_close(pc, "refused: the link is cut");
      else
        refuse(pc, tls_conn_error(pc->tls));
      return;
    }
    if (rc == 0 || tls_up(pc) < 0) return;
  }
  if (tls_conn_read(pc->tls, &pc->in) < 0) {
    const char *why = tls_conn_error(pc->tls);
    if (strcmp(why, "closed by peer") != 0 && pc->link)
      log_warn("link %s (%s): TLS error, link closed: %s", pc->link->srv->name,
               pc->addr, why);
    pconn_close(pc, why);
    return;
  }
  parse_frames(pc);
}

/* Handles the frames read, within this phase's slice; what is left (the
 * slice is spent, or a request waits for the output to drain) stays in
 * `in`, held, for sync_pump. */
static void parse_frames(pconn_t *pc) {
  size_t off = 0;
  pc->held = 0;
  while (!pc->closing && pc->in.len - off >= 4) {
    if (pc->verified && !slice_in) {
      pc->held = 1;
      break;
    }
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
    int rc = handle_frame(pc, p + 4, len);
    if (rc < 0) {
      if (!pc->closing) {
        if (pc->verified)
          log_warn("link %s: malformed frame, link closed",
                   pc->link->srv->name);
        pconn_close(pc, "refused");
      }
      return;
    }
    if (rc > 0) {
      pc->held = 1;
      break;
    }
    off += 4 + (size_t)len;
    slice_in = slice_in > 4 + (size_t)len ? slice_in - 4 - len : 0;
  }
  buf_consume(&pc->in, off);
}

/* ---- connections --------------------------------------------------------- */

static pconn_t *pconn_new(void) {
  pconn_t *pc = xcalloc(1, sizeof *pc);
  uv_tcp_init(loop, &pc->tcp);
  wqueue_init(&pc->wq, (uv_stream_t *)&pc->tcp, on_written);
  pc->opened_at = pc->last_rx = pc->last_tx = uv_now(loop);
  pc->next = conns;
  conns = pc;
  return pc;
}

static void start_io(pconn_t *pc) {
  pc->connected = 1;
  uv_tcp_nodelay(&pc->tcp, 1);
  uv_tcp_keepalive(&pc->tcp, 1, 10);
  pc->handshake_us = uv_hrtime() / 1000;
  if (tls_ctx) {
    pc->tls = tls_conn_new(tls_ctx, !pc->outbound, pc);
    if (!pc->tls || (cert_mode && pc->outbound &&
                     tls_conn_expect_host(pc->tls, pc->link->srv->name) < 0)) {
      log_error("peer %s: cannot set up TLS", pc->addr);
      pconn_close(pc, "TLS set-up failed");
      return;
    }
    if (pc->outbound && tls_conn_handshake(pc->tls) < 0) { /* ClientHello */
      refuse(pc, tls_conn_error(pc->tls));
      return;
    }
    mark_dirty(pc);
  } else if (pc->outbound) {
    send_hello(pc);
    pc->handshake_us = 0;
    pc->verified = 1;
    link_up(pc);
    if (pc->closing) return;
  }
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

static void connect_to(link_t *l, const struct sockaddr *sa) {
  char ip[64] = "?";
  if (sa->sa_family == AF_INET)
    uv_ip4_name((const struct sockaddr_in *)sa, ip, sizeof ip);
  else
    uv_ip6_name((const struct sockaddr_in6 *)sa, ip, sizeof ip);
  pconn_t *pc = pconn_new();
  pc->link = l;
  pc->outbound = 1;
  if (strcmp(ip, l->srv->host) == 0)
    snprintf(pc->addr, sizeof pc->addr, "%s:%d", ip, l->srv->peer_port);
  else
    snprintf(pc->addr, sizeof pc->addr, "%s (%s):%d", l->srv->host, ip,
             l->srv->peer_port);
  pc->creq.data = pc;
  int rc = uv_tcp_connect(&pc->creq, &pc->tcp, sa, on_connected);
  if (rc < 0) pconn_close(pc, uv_strerror(rc));
}

static void on_resolved(uv_getaddrinfo_t *req, int status,
                        struct addrinfo *res) {
  link_t *l = req->data;
  if (status == UV_ECANCELED || !started) {
    uv_freeaddrinfo(res);
    return;
  }
  if (status < 0 || !res) {
    if (l->failures++ == 0 || l->failures % 20 == 0)
      log_info("link %s: cannot resolve %s: %s (retrying)", l->srv->name,
               l->srv->host, uv_strerror(status));
    l->dialing = 0;
    uv_freeaddrinfo(res);
    schedule_redial(l);
    return;
  }
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  const struct addrinfo *ai = conn_pick_address(res); /* as the listener */
  memcpy(&ss, ai->ai_addr,
         ai->ai_addrlen < sizeof ss ? ai->ai_addrlen : sizeof ss);
  uv_freeaddrinfo(res);
  uint16_t port = htons((uint16_t)l->srv->peer_port);
  if (ss.ss_family == AF_INET)
    ((struct sockaddr_in *)&ss)->sin_port = port;
  else
    ((struct sockaddr_in6 *)&ss)->sin6_port = port;
  connect_to(l, (struct sockaddr *)&ss);
}

/* An address is dialled at once; a DNS name is resolved first, at every
 * dial (without blocking), so a neighbour that moved is found again. */
static void dial(link_t *l) {
  if (l->active || l->dialing) return;
  uint64_t now = uv_now(loop);
  if (l->cut_until > now) { /* dial when the cut ends */
    uv_timer_start(&l->redial, on_redial, l->cut_until - now, 0);
    return;
  }
  l->dialing = 1;
  struct sockaddr_storage ss;
  if (uv_ip4_addr(l->srv->host, l->srv->peer_port, (struct sockaddr_in *)&ss) ==
          0 ||
      uv_ip6_addr(l->srv->host, l->srv->peer_port,
                  (struct sockaddr_in6 *)&ss) == 0) {
    connect_to(l, (struct sockaddr *)&ss);
    return;
  }
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  l->resolve.data = l;
  int rc = uv_getaddrinfo(loop, &l->resolve, on_resolved, l->srv->host, NULL,
                          &hints);
  if (rc < 0) {
    log_warn("link %s: cannot resolve %s: %s", l->srv->name, l->srv->host,
             uv_strerror(rc));
    l->dialing = 0;
    schedule_redial(l);
  }
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

/* The oldest inbound connection still in its handshake (from ip when ip
 * is not NULL), preferring one that has sent nothing. */
static pconn_t *eviction_victim(const pconn_t *except, const char *ip) {
  pconn_t *silent = NULL, *any = NULL;
  for (pconn_t *p = conns; p; p = p->next) {
    if (p == except || p->outbound || p->verified || p->closing) continue;
    if (ip && strcmp(p->ip, ip) != 0) continue;
    if (!any || p->opened_at <= any->opened_at) any = p;
    if (!p->rx_bytes && (!silent || p->opened_at <= silent->opened_at))
      silent = p;
  }
  return silent ? silent : any;
}

/* Makes room for pc among the unauthenticated inbound connections: over a
 * bound, the oldest goes, so junk cannot keep a neighbour's fresh
 * connection out (on loopback the neighbour shares its address with any
 * local attacker). Outbound dials never count. */
static void admit(pconn_t *pc) {
  for (;;) {
    int total = 0, same = 0;
    for (pconn_t *p = conns; p; p = p->next) {
      if (p == pc || p->outbound || p->verified || p->closing) continue;
      total++;
      same += strcmp(p->ip, pc->ip) == 0;
    }
    pconn_t *victim = NULL;
    if (same >= MAX_UNAUTHED_PER_ADDR)
      victim = eviction_victim(pc, pc->ip);
    else if (total >= MAX_UNAUTHED)
      victim = eviction_victim(pc, NULL);
    if (!victim) return;
    static log_limit_t evictions;
    unsigned long held;
    stats.handshakes_evicted++;
    if (log_limit_due(&evictions, uv_now(loop), &held))
      log_warn(
          "peer port: %d connections in handshake%s; the oldest (%s) "
          "closed to make room (%lu more since the last line)",
          same >= MAX_UNAUTHED_PER_ADDR ? MAX_UNAUTHED_PER_ADDR : MAX_UNAUTHED,
          same >= MAX_UNAUTHED_PER_ADDR ? " from one address" : "",
          victim->addr, held);
    pconn_close(victim, "evicted before its handshake");
  }
}

static void on_peer_connection(uv_stream_t *server, int status) {
  if (status < 0) return;
  pconn_t *pc = pconn_new();
  if (uv_accept(server, (uv_stream_t *)&pc->tcp) < 0) {
    pconn_close(pc, "refused");
    return;
  }
  struct sockaddr_storage ss;
  int len = sizeof ss;
  memset(&ss, 0, sizeof ss);
  uv_tcp_getpeername(&pc->tcp, (struct sockaddr *)&ss, &len);
  conn_format_addr(&ss, pc->addr, sizeof pc->addr);
  const unsigned char *bytes;
  if (ss.ss_family == AF_INET) {
    bytes = (const unsigned char *)&((struct sockaddr_in *)&ss)->sin_addr;
    uv_ip4_name((struct sockaddr_in *)&ss, pc->ip, sizeof pc->ip);
  } else {
    bytes = (const unsigned char *)&((struct sockaddr_in6 *)&ss)->sin6_addr;
    uv_ip6_name((struct sockaddr_in6 *)&ss, pc->ip, sizeof pc->ip);
  }
  if (!config_peer_allowed(cfg, ss.ss_family, bytes)) {
    static log_limit_t refusals;
    unsigned long held;
    stats.peers_refused++;
    if (log_limit_due(&refusals, uv_now(loop), &held))
      log_warn(
          "peer %s: refused, not in peers_from (%lu more since the last "
          "line)",
          pc->addr, held);
    pconn_close(pc, "not in peers_from");
    return;
  }
  admit(pc);
  start_io(pc);
}

/* Handshake deadlines, keepalives, dead links, periodic reconciliation. */
static void on_tick(uv_timer_t *t) {
  uint64_t now = uv_now(loop);
  int sync = now - last_sync >= cfg->peer_sync_ms;
  if (sync) last_sync = now;
  pconn_t *next;
  for (pconn_t *pc = conns; pc; pc = next) {
    next = pc->next;
    if (!pc->connected) continue;
    if (!pc->verified && now - pc->opened_at > cfg->peer_handshake_ms) {
      static log_limit_t timeouts;
      unsigned long held;
      stats.handshake_timeouts++;
      if (log_limit_due(&timeouts, now, &held))
        log_warn(
            "peer %s: no handshake within %u ms (%lu more since the "
            "last line)",
            pc->addr, cfg->peer_handshake_ms, held);
      pconn_close(pc, "handshake timeout");
      continue;
    }
    if (!pc->active) continue;
    if (now - pc->last_rx > cfg->peer_timeout_ms) {
      pconn_close(pc, "timed out");
      continue;
    }
    if (now - pc->last_tx > cfg->peer_timeout_ms / 3) {
      buf_t *b = obuf(pc);
      size_t at = frame_begin(b, F_PING);
      frame_end(b, at);
      sent(pc, 6);
    }
    if (sync && pc->sync.state == SYNC_IDLE) sync_start(pc);
  }
}

/* ---- keys ---------------------------------------------------------------- */

/* The PSK of a link from dialler to acceptor under secret i. */
static int link_psk(int i, const char *dialler, const char *acceptor,
                    uint8_t key[32]) {
  buf_t info;
  buf_init(&info);
  buf_append_str(&info, dialler);
  buf_append(&info, "", 1);
  buf_append_str(&info, acceptor);
  int rc = tls_hkdf(secrets[i], strlen(secrets[i]), "herd psk v1", info.data,
                    info.len, key, 32);
  buf_free(&info);
  if (rc < 0) log_error("HKDF failed: no key for the link, refused");
  return rc;
}

/* Dialling: offer the first secret, naming this server. */
static int psk_use(void *app, char *identity, size_t idlen, uint8_t key[32]) {
  pconn_t *pc = app;
  if (!pc->link || !nsecrets) return -1;
  if (link_psk(0, self_name, pc->link->srv->name, key) < 0) return -1;
  char id[2 * KEY_ID_LEN + 1];
  hex(key_ids[0], KEY_ID_LEN, id);
  snprintf(identity, idlen, "herd1 %s %s", id, self_name);
  pc->secret_idx = 0;
  return 0;
}

/* Accepting: "herd1 <key id> <dialler>", a neighbour, one of our secrets. */
static int psk_find(void *app, const char *identity, size_t n,
                    uint8_t key[32]) {
  pconn_t *pc = app;
  char shown[300];
  printable(identity, n > 200 ? 200 : n, shown, sizeof shown);
  if (n < 6 + 2 * KEY_ID_LEN + 2 || memcmp(identity, "herd1 ", 6) != 0 ||
      identity[6 + 2 * KEY_ID_LEN] != ' ') {
    log_warn("peer %s: PSK identity '%s' is not a herd server's", pc->addr,
             shown);
    return -1;
  }
  const char *name = identity + 7 + 2 * KEY_ID_LEN;
  link_t *l = find_link(name, n - (size_t)(name - identity));
  if (!l) {
    log_warn("peer %s: PSK identity '%s' names no neighbour of this server",
             pc->addr, shown);
    return -1;
  }
  pc->link = l;
  if (l->cut_until > uv_now(loop)) {
    /* Closed before the handshake completes, so the dialler never sees
     * the link up (it redials as after any lost connection). */
    pc->cut = 1;
    return -1;
  }
  int found = -1;
  for (int i = 0; i < nsecrets && found < 0; i++) {
    char id[2 * KEY_ID_LEN + 1];
    hex(key_ids[i], KEY_ID_LEN, id);
    if (memcmp(id, identity + 6, 2 * KEY_ID_LEN) == 0) found = i;
  }
  if (found < 0) {
    log_warn(
        "link %s (%s): its secret (key id %.*s) is none of this "
        "server's",
        l->srv->name, pc->addr, 2 * KEY_ID_LEN, identity + 6);
    return -1;
  }
  if (link_psk(found, l->srv->name, self_name, key) < 0) return -1;
  pc->secret_idx = found;
  return 0;
}

int peer_set_secrets(const config_t *c) {
  int n = c->nsecrets < MAX_SECRETS ? c->nsecrets : MAX_SECRETS;
  uint8_t ids[MAX_SECRETS][KEY_ID_LEN];
  for (int i = 0; i < n; i++)
    if (tls_hkdf(c->secrets[i], strlen(c->secrets[i]), "herd key id v1", "", 0,
                 ids[i], KEY_ID_LEN) < 0) {
      log_error("HKDF failed: the secrets stay as they were");
      return -1;
    }
  for (int i = 0; i < nsecrets; i++) {
    OPENSSL_cleanse(secrets[i], strlen(secrets[i]));
    free(secrets[i]);
  }
  for (int i = 0; i < n; i++)
    secrets[i] = xstrdup(c->secrets[i]);
  memcpy(key_ids, ids, sizeof ids);
  if (started && nsecrets != n)
    log_info("peer links: %d secret%s (the first is offered)", n,
             n == 1 ? "" : "s");
  nsecrets = n;
  return 0;
}

/* The tree key a server starts with: derived from its first secret (so
 * a herd on one secret starts agreed), random with certificates only, a
 * constant when insecure. A reload never changes it (a rotation must not
 * make every reconciliation a full transfer). */
static int tree_key_ready;

int peer_tree_key_init(const config_t *c) {
  if (tree_key_ready) return 0;
  uint8_t key[16] = {0};
  if (!c->insecure && c->nsecrets) {
    if (tls_hkdf(c->secrets[0], strlen(c->secrets[0]), "herd tree key v1", "",
                 0, key, sizeof key) < 0)
      return -1;
  } else if (!c->insecure) {
    if (RAND_bytes(key, sizeof key) != 1) return -1;
  }
  if (set_tree_key(key) < 0) return -1;
  tree_key_ready = 1;
  return 0;
}

static int setup_tls(const config_t *c, char *err, size_t errlen) {
  if (peer_tree_key_init(c) < 0) {
    snprintf(err, errlen, "cannot derive the reconciliation key");
    return -1;
  }
  if (c->insecure) return 0;
  if (c->tls_cert) {
    char cert[4096], key[4096], ca[4096];
    config_with_name(c->tls_cert, self_name, cert, sizeof cert);
    config_with_name(c->tls_key, self_name, key, sizeof key);
    config_with_name(c->tls_ca, self_name, ca, sizeof ca);
    tls_ctx = tls_ctx_cert(cert, key, ca, 1, err, errlen);
    cert_mode = 1;
  } else {
    if (peer_set_secrets(c) < 0) {
      snprintf(err, errlen, "cannot derive the peer keys");
      return -1;
    }
    tls_ctx = tls_ctx_psk(psk_use, psk_find, err, errlen);
  }
  return tls_ctx ? 0 : -1;
}

int peer_insecure(void) {
  return started && !tls_ctx;
}

int peer_start(uv_loop_t *l, const config_t *c, int self, const int *neighbours,
               int n, char *err, size_t errlen) {
  loop = l;
  cfg = c;
  self_name = c->servers[self].name;
  srand((unsigned)uv_hrtime());
  if (RAND_bytes((uint8_t *)&pullall_base, sizeof pullall_base) != 1) {
    snprintf(err, errlen, "no random bytes for the herd-wide pull ids");
    return -1;
  }
  links = xcalloc((size_t)(n ? n : 1), sizeof *links);
  nlinks = n;
  const config_server_t *me = &c->servers[self];
  struct sockaddr_storage ss;
  if (conn_resolve(loop, me->host, me->peer_port, &ss) < 0) {
    snprintf(err, errlen, "bad peer address %s (it does not resolve)",
             me->host);
    return -1;
  }
  if (setup_tls(c, err, errlen) < 0) return -1;
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
  uv_idle_init(loop, &pump_idle);
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
  for (int i = 0; i < nlinks; i++) {
    uv_cancel((uv_req_t *)&links[i].resolve);
    uv_close((uv_handle_t *)&links[i].redial, NULL);
  }
  uv_close((uv_handle_t *)&ticker, NULL);
  uv_close((uv_handle_t *)&pump_idle, NULL);
  uv_close((uv_handle_t *)&listener, NULL);
}

/* Sends r on the links whose flag in on[] is set (all live links when on
 * is NULL) but the one named except, as frames of type; the record is
 * encoded once and its bytes copied to the other links. Returns the
 * number of links. */
static int send_record(const store_rec_t *r, const uint8_t *on,
                       const char *except, int type) {
  int n = 0;
  pconn_t *frame = NULL; /* the link whose buffer holds the encoded record */
  size_t frame_at = 0;
  for (int i = 0; i < nlinks; i++) {
    pconn_t *pc = links[i].active;
    if (!pc || (on && !on[i]) ||
        (except && strcmp(except, links[i].srv->name) == 0))
      continue;
    buf_t *b = obuf(pc);
    size_t before = b->len;
    if (!frame) {
      encode_record(b, r, type);
      frame = pc;
      frame_at = before;
    } else { /* the same bytes as the first link's */
      const buf_t *fb = obuf(frame);
      size_t bytes = fb->len - frame_at;
      buf_reserve(b, bytes);
      memcpy(b->data + before, fb->data + frame_at, bytes);
      b->len += bytes;
    }
    stats.records_out++;
    sent(pc, b->len - before);
    n++;
  }
  return n;
}

int peer_flood(const char *client, size_t len, const char *except) {
  const store_rec_t *r = store_get(client, len);
  if (!r) return 0;
  int n = send_record(r, NULL, except, F_RECORD);
  stats.records_flooded += (uint64_t)n;
  return n;
}

int peer_forward(const store_rec_t *r, const uint8_t *on, const char *except,
                 int flood) {
  int n = send_record(r, on, except, flood ? F_FLOODREC : F_RECORD);
  stats.records_forwarded += (uint64_t)n;
  return n;
}

int peer_link_count(void) {
  return nlinks;
}

const char *peer_link_name(int i) {
  return links[i].srv->name;
}

int peer_link_up(int i) {
  return links[i].active != NULL;
}

int peer_link_find(const char *name) {
  for (int i = 0; i < nlinks; i++)
    if (links[i].srv->name == name || strcmp(links[i].srv->name, name) == 0)
      return i;
  return -1;
}

void peer_set_links_handler(peer_links_fn fn) {
  links_handler = fn;
}

void peer_pull_all(void) {
  if (!started) return; /* stopping: the links are closing */
  for (int i = 0; i < nlinks; i++)
    if (links[i].active) sync_start(links[i].active);
}

void peer_pull_herd(void) {
  if (!started) return;
  pullall_spread(pullall_base + ++pullall_count, NULL);
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
    peer_link_info_t info = {
        l->srv->name, l->active != NULL, l->frames_in, l->frames_out,
        l->active ? l->active->out.len + wqueue_pending(&l->active->wq) : 0};
    fn(&info, ud);
  }
}
