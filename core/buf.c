/* buf: see buf.h. */
#include "buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void xoom(size_t n) {
  fprintf(stderr, "herd: out of memory allocating %zu bytes\n", n);
  abort();
}

void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) xoom(n);
  return p;
}

void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (!p) xoom(n * size);
  return p;
}

void *xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (!q) xoom(n);
  return q;
}

char *xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = xmalloc(n);
  memcpy(p, s, n);
  return p;
}

void buf_init(buf_t *b) {
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
}

void buf_free(buf_t *b) {
  free(b->data);
  buf_init(b);
}

void buf_reserve(buf_t *b, size_t extra) {
  if (b->cap - b->len >= extra) return;
  size_t cap = b->cap ? b->cap : 256;
  while (cap - b->len < extra)
    cap *= 2;
  b->data = xrealloc(b->data, cap);
  b->cap = cap;
}

void buf_append(buf_t *b, const void *data, size_t len) {
  if (len == 0) return;
  buf_reserve(b, len);
  memcpy(b->data + b->len, data, len);
  b->len += len;
}

void buf_append_str(buf_t *b, const char *s) {
  buf_append(b, s, strlen(s));
}

void buf_consume(buf_t *b, size_t n) {
  if (n >= b->len) {
    b->len = 0;
    return;
  }
  memmove(b->data, b->data + n, b->len - n);
  b->len -= n;
}

void buf_swap(buf_t *a, buf_t *b) {
  buf_t t = *a;
  *a = *b;
  *b = t;
}
