/* libFuzzer target: the peer wire format of core/peer.c. Bytes arrive on a
 * peer connection through the real reader (on_read: length checks before
 * allocation, frame reassembly across reads) into handle_frame and every
 * frame parser: the insecure HELLO before a link is up, RECORD (through the
 * on_record script hook into the store and flooding), the reconciliation
 * frames (SUMS_REQ, SUMS, LEAF, DONE, SYNCREC, HINT against the store), PING
 * and PONG after it. Replies go out through a socketpair.
 *
 * Input: byte 0 bit 0 set = the link is already up (TLS is OpenSSL's and
 * is not fuzzed here: the frames inside it are the herd's surface, and
 * without a TLS context the reader takes them as plaintext, as an insecure
 * herd does), bits 1-7 the read size (1..127 bytes, or x64); the rest is
 * what the peer sends.
 *
 * peer.c is included so its static functions and state are reachable; the
 * production code is unchanged. */
#include "../../core/peer.c"

#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  fz_start("peer_max_frame = 65536");
  /* What peer_start would set up, without listening or dialling: one
   * neighbour, P. started stays 0, so a closed link is not redialled. */
  loop = fz_loop;
  cfg = &fz_cfg;
  self_name = "F";
  int p = config_find(&fz_cfg, "P");
  links = xcalloc(1, sizeof *links);
  nlinks = 1;
  links[0].idx = p;
  links[0].srv = &fz_cfg.servers[p];
  uv_timer_init(loop, &links[0].redial);
  links[0].redial.data = &links[0];
  return 0;
}

/* A closed connection leaves conns at once and is freed by the next uv_run:
 * the harness looks it up there before touching it. */
static pconn_t *live(pconn_t *pc) {
  for (pconn_t *p = conns; p; p = p->next)
    if (p == pc) return pc;
  return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  int authed = data[0] & 1;
  size_t chunk = 1 + (size_t)(data[0] >> 1);
  if (chunk > 100) chunk = (chunk - 100) * 64;
  data += 1;
  size -= 1;

  /* A connection as pconn_new makes one, on a socketpair. */
  pconn_t *pc = xcalloc(1, sizeof *pc);
  int fd[2];
  fz_pair(&pc->tcp, fd);
  wqueue_init(&pc->wq, (uv_stream_t *)&pc->tcp, on_written);
  pc->opened_at = pc->last_rx = pc->last_tx = uv_now(loop);
  pc->next = conns;
  conns = pc;
  snprintf(pc->addr, sizeof pc->addr, "fuzz:%lu", fz_runs);
  pc->connected = 1;
  if (authed) {
    pc->link = &links[0];
    pc->verified = 1;
    link_up(pc); /* sends TREEKEY, starts a pull, calls on_link */
  }

  size_t off = 0;
  while (off < size && live(pc)) {
    size_t n = size - off < chunk ? size - off : chunk;
    /* on_alloc's contract: read into pc->in's free space. */
    uv_buf_t b;
    on_alloc((uv_handle_t *)&pc->tcp, 65536, &b);
    if (n > b.len) n = b.len;
    memcpy(b.base, data + off, n);
    on_read((uv_stream_t *)&pc->tcp, (ssize_t)n, &b);
    off += n;
    peer_flush_all();
    fz_drain(fd[1]);
    uv_run(loop, UV_RUN_NOWAIT);
  }
  if (live(pc)) on_read((uv_stream_t *)&pc->tcp, UV_EOF, NULL);
  peer_flush_all();
  uv_run(loop, UV_RUN_NOWAIT); /* on_pconn_closed frees it */
  close(fd[1]);
  fz_between_runs();
  return 0;
}
