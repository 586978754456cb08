/* wqueue: see wqueue.h. */
#include "wqueue.h"

static void on_write(uv_write_t *req, int status) {
  wqueue_t *q = req->data;
  q->writing = 0;
  q->wbuf.len = 0;
  q->done(q, status);
}

void wqueue_init(wqueue_t *q, uv_stream_t *stream, wqueue_done_cb done) {
  buf_init(&q->out);
  buf_init(&q->wbuf);
  q->stream = stream;
  q->done = done;
  q->writing = 0;
  q->req.data = q;
}

void wqueue_free(wqueue_t *q) {
  buf_free(&q->out);
  buf_free(&q->wbuf);
}

int wqueue_flush(wqueue_t *q) {
  if (q->writing || !q->out.len) return 0;
  uv_buf_t b = uv_buf_init(q->out.data, (unsigned)q->out.len);
  int n = uv_try_write(q->stream, &b, 1);
  if (n == UV_EAGAIN) n = 0;
  if (n < 0) return n;
  size_t total = q->out.len;
  if ((size_t)n == total) {
    q->out.len = 0;
    return n;
  }
  buf_consume(&q->out, (size_t)n);
  buf_swap(&q->out, &q->wbuf);
  q->writing = 1;
  q->req.data = q;
  b = uv_buf_init(q->wbuf.data, (unsigned)q->wbuf.len);
  int rc = uv_write(&q->req, q->stream, &b, 1, on_write);
  if (rc < 0) {
    q->writing = 0;
    return rc;
  }
  return (int)total;
}
