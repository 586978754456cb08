/* wqueue: the output side of a libuv stream, shared by client connections
 * and peer links. Owns two buffers: bytes not yet handed to the kernel and
 * the bytes of the one uv_write in flight. A flush tries uv_try_write first
 * (no allocation, no callback) and hands only the rest to uv_write, so a
 * burst of replies costs one syscall. */
#ifndef HERD_WQUEUE_H
#define HERD_WQUEUE_H

#include <uv.h>

#include "buf.h"

typedef struct wqueue wqueue_t;
/* Called when a uv_write finishes; status < 0 means the stream failed. */
typedef void (*wqueue_done_cb)(wqueue_t *q, int status);

struct wqueue {
  buf_t out;
  buf_t wbuf;
  uv_write_t req;
  uv_stream_t *stream;
  wqueue_done_cb done;
  unsigned writing : 1;
};

void wqueue_init(wqueue_t *q, uv_stream_t *stream, wqueue_done_cb done);
void wqueue_free(wqueue_t *q);
/* Writes what it can. Returns bytes handed to the kernel or to uv_write, or
 * a negative libuv error (the owner closes the stream). */
int wqueue_flush(wqueue_t *q);
static inline size_t wqueue_pending(const wqueue_t *q) {
  return q->out.len + q->wbuf.len;
}

#endif
