/* idmap: a hash map from nonzero 64-bit ids to pointers (open addressing,
 * linear probing, backward-shift deletion). Used to hand integer handles to
 * Lua (connections, pending replies, timers) without exposing pointers. The
 * map owns only its arrays, never the values. */
#ifndef HERD_IDMAP_H
#define HERD_IDMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct idmap {
  uint64_t *keys;
  void **vals;
  size_t cap; /* power of two */
  size_t len;
} idmap_t;

void idmap_init(idmap_t *m);
void idmap_free(idmap_t *m);
void *idmap_get(const idmap_t *m, uint64_t key);
void idmap_put(idmap_t *m, uint64_t key, void *val);
void *idmap_del(idmap_t *m, uint64_t key);

#endif
