/* buf: a growable byte buffer, the one byte container of the core.
 * Owns its heap block; out of memory aborts (like Redis' zmalloc): the core's
 * own structures are bounded by limits elsewhere, so OOM here is fatal. */
#ifndef HERD_BUF_H
#define HERD_BUF_H

#include <stddef.h>

typedef struct buf {
  char *data;
  size_t len;
  size_t cap;
} buf_t;

void buf_init(buf_t *b);
void buf_free(buf_t *b);
/* Makes room for at least extra more bytes. */
void buf_reserve(buf_t *b, size_t extra);
void buf_append(buf_t *b, const void *data, size_t len);
void buf_append_str(buf_t *b, const char *s);
/* Drops the first n bytes. */
void buf_consume(buf_t *b, size_t n);
/* Swaps two buffers' contents (cheap hand-over of a block). */
void buf_swap(buf_t *a, buf_t *b);

/* Allocation wrappers that abort on OOM. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
/* Reports that n bytes could not be had and aborts (for other allocators,
 * such as mmap). */
void xoom(size_t n);

#endif
