/* idmap: see idmap.h. */
#include "idmap.h"

#include <stdlib.h>

#include "buf.h"

static size_t slot_of(uint64_t key, size_t cap) {
  key ^= key >> 33;
  key *= 0xff51afd7ed558ccdULL;
  key ^= key >> 33;
  return (size_t)key & (cap - 1);
}

void idmap_init(idmap_t *m) {
  m->keys = NULL;
  m->vals = NULL;
  m->cap = 0;
  m->len = 0;
}

void idmap_free(idmap_t *m) {
  free(m->keys);
  free(m->vals);
  idmap_init(m);
}

void *idmap_get(const idmap_t *m, uint64_t key) {
  if (!m->cap) return NULL;
  for (size_t i = slot_of(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
    if (m->keys[i] == key) return m->vals[i];
    if (m->keys[i] == 0) return NULL;
  }
}

static void grow(idmap_t *m) {
  idmap_t n;
  n.cap = m->cap ? m->cap * 2 : 16;
  n.len = 0;
  n.keys = xcalloc(n.cap, sizeof *n.keys);
  n.vals = xcalloc(n.cap, sizeof *n.vals);
  for (size_t i = 0; i < m->cap; i++)
    if (m->keys[i]) idmap_put(&n, m->keys[i], m->vals[i]);
  free(m->keys);
  free(m->vals);
  *m = n;
}

void idmap_put(idmap_t *m, uint64_t key, void *val) {
  if ((m->len + 1) * 4 > m->cap * 3) grow(m);
  size_t i = slot_of(key, m->cap);
  while (m->keys[i] && m->keys[i] != key)
    i = (i + 1) & (m->cap - 1);
  if (!m->keys[i]) m->len++;
  m->keys[i] = key;
  m->vals[i] = val;
}

void *idmap_del(idmap_t *m, uint64_t key) {
  if (!m->cap) return NULL;
  size_t mask = m->cap - 1, i = slot_of(key, m->cap);
  while (m->keys[i] != key) {
    if (!m->keys[i]) return NULL;
    i = (i + 1) & mask;
  }
  void *val = m->vals[i];
  /* Backward-shift: move later entries of the cluster into the hole when
   * their home slot allows it, so lookups never need tombstones. */
  for (size_t j = (i + 1) & mask; m->keys[j]; j = (j + 1) & mask) {
    size_t home = slot_of(m->keys[j], m->cap);
    if (((j - home) & mask) >= ((j - i) & mask)) {
      m->keys[i] = m->keys[j];
      m->vals[i] = m->vals[j];
      i = j;
    }
  }
  m->keys[i] = 0;
  m->vals[i] = NULL;
  m->len--;
  return val;
}
