/* libFuzzer target: a client connection's bytes through the real line
 * framing of core/conn.c (feed, the over-long-line path, held input while
 * output is over out_pause or a turn's LINES_PER_TURN are used up, replies
 * in request order, EOF with a last
 * unfinished line) into the built-in protocol scripts (IAMAT, WHATSAT with
 * the local provider, invalid input) and the herdtext C primitives, and the
 * replies back out through a socketpair.
 *
 * Input: byte 0 picks max_line (16..268, so long lines are common), byte 1
 * the read size (1..31 bytes or 64..1984), the rest is what the client
 * sends; then the client closes its side.
 *
 * conn.c is included so its static functions and state are reachable; the
 * production code is unchanged. */
#include "../../core/conn.c"

#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  fz_start("max_line = 64, out_pause = 1024");
  /* What conn_listen would set up, without a listening socket. */
  loop = fz_loop;
  lim = fz_cfg.limits;
  uv_idle_init(loop, &again);
  listening = 1;
  return 0;
}

/* Once closed, a connection is freed by the next uv_run: after conn_close
 * (which takes its id out of by_id) the harness only looks it up by id. */
static conn_t *live(uint64_t id) {
  conn_t *c = idmap_get(&by_id, id);
  return c && !c->closing ? c : NULL;
}

/* One loop iteration's work for the connection, as main.c's prepare and
 * check handlers and uv_run do it: a new turn (held lines over
 * LINES_PER_TURN go on), the flush, the client reading, the callbacks. */
static void iterate(int fd) {
  conn_next_turn();
  conn_flush_all();
  fz_drain(fd);
  uv_run(loop, UV_RUN_NOWAIT);
}

/* Lets the core write and the "client" read until reading resumes. A
 * client that reads everything must not leave the connection paused with
 * its output drained: that is a connection stuck for good (the bug fixed
 * in 21ba032), so it aborts like a crash. An input of at most 4096 bytes
 * is at most 4096 lines, 256 turns of LINES_PER_TURN. */
static void settle(uint64_t id, int fd) {
  conn_t *c;
  for (int i = 0; i < 1024 && (c = live(id)) && c->paused; i++)
    iterate(fd);
  if ((c = live(id)) && c->paused && !c->eof &&
      wqueue_pending(&c->wq) <= lim.out_pause / 2 &&
      c->nslots <= PENDING_MAX / 2) {
    fprintf(stderr, "stuck: paused with %zu bytes unsent, %u replies "
            "waiting, %zu bytes held\n", wqueue_pending(&c->wq), c->nslots,
            c->held.len);
    abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  lim.max_line = 16 + (size_t)(data[0] & 63) * 4;
  size_t chunk = 1 + (size_t)(data[1] & 31);
  if (data[1] & 0x80) chunk *= 64;
  data += 2;
  size -= 2;

  /* A connection as on_connection makes one. */
  conn_t *c = xcalloc(1, sizeof *c);
  int fd[2];
  fz_pair(&c->tcp, fd);
  snprintf(c->addr, sizeof c->addr, "fuzz:%lu", fz_runs);
  stats.accepted++;
  stats.open++;
  wqueue_init(&c->wq, (uv_stream_t *)&c->tcp, on_written);
  uint64_t id = c->id = next_id++;
  c->accepted_at = c->last_active = uv_now(loop);
  idmap_put(&by_id, c->id, c);
  c->next = all;
  if (all) all->prev = c;
  all = c;

  size_t off = 0;
  while (off < size) {
    settle(id, fd[1]);
    if (!(c = live(id)) || c->eof || c->paused) break; /* paused: never reads */
    size_t n = size - off < chunk ? size - off : chunk;
    uv_buf_t b = uv_buf_init((char *)data + off, (unsigned)n);
    on_read((uv_stream_t *)&c->tcp, (ssize_t)n, &b);
    off += n;
    conn_flush_all();
    fz_drain(fd[1]);
  }
  settle(id, fd[1]);
  if ((c = live(id)) && !c->eof && !c->paused)
    on_read((uv_stream_t *)&c->tcp, UV_EOF, NULL);
  for (int i = 0; i < 64 && live(id); i++)
    iterate(fd[1]);
  if ((c = live(id))) conn_close(c);
  uv_run(loop, UV_RUN_NOWAIT); /* on_close frees it */
  close(fd[1]);
  fz_between_runs();
  return 0;
}
