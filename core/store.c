/* store: see store.h. */
#include "store.h"

#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

static store_rec_t **table;
static size_t table_cap; /* power of two */
static size_t count, bytes;
static size_t max_count = SIZE_MAX;
/* tree[0] = root, tree[1] = level 1 (FANOUT nodes), ... leaves last. */
static uint64_t *tree[STORE_DEPTH + 1];
static store_rec_t **leaves;

static uint64_t mix64(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

/* 8 bytes at a time with xxHash64's round (multiply, rotate, multiply),
 * then a full mix: these hashes run several times per IAMAT (client ids,
 * and the digest of every new line). */
static uint64_t rotl64(uint64_t x, int r) {
  return (x << r) | (x >> (64 - r));
}

static uint64_t hash_bytes(const char *p, size_t n, uint64_t seed) {
  const uint64_t p1 = 0x9e3779b185ebca87ULL, p2 = 0xc2b2ae3d27d4eb4fULL;
  uint64_t h = seed ^ (n * p1);
  while (n >= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    h = rotl64(h + w * p2, 31) * p1;
    p += 8;
    n -= 8;
  }
  uint64_t w = 0;
  memcpy(&w, p, n);
  h = rotl64(h + (w ^ n) * p2, 31) * p1;
  return mix64(h);
}

void store_init(void) {
  table_cap = 1024;
  table = xcalloc(table_cap, sizeof *table);
  size_t n = 1;
  for (int l = 0; l <= STORE_DEPTH; l++) {
    tree[l] = xcalloc(n, sizeof *tree[l]);
    n *= STORE_FANOUT;
  }
  leaves = xcalloc(STORE_LEAVES, sizeof *leaves);
}

void store_set_limit(size_t max_clients) {
  max_count = max_clients;
}

void store_free(void) {
  for (size_t i = 0; i < table_cap; i++) {
    store_rec_t *r = table ? table[i] : NULL;
    while (r) {
      store_rec_t *next = r->next;
      free(r);
      r = next;
    }
  }
  free(table);
  table = NULL;
  table_cap = count = bytes = 0;
  for (int l = 0; l <= STORE_DEPTH; l++) {
    free(tree[l]);
    tree[l] = NULL;
  }
  free(leaves);
  leaves = NULL;
}

size_t store_count(void) {
  return count;
}

size_t store_bytes(void) {
  return bytes + table_cap * sizeof *table;
}

/* The leaf comes from the high bits of the same hash that picks the
 * bucket (low bits), so a put hashes the client once. */
static uint32_t leaf_of_hash(uint64_t h) {
  return (uint32_t)((h >> 40) % STORE_LEAVES);
}

uint32_t store_leaf_of(const char *client, size_t client_len) {
  return leaf_of_hash(hash_bytes(client, client_len, 0));
}

static void tree_apply(uint32_t leaf, uint64_t delta) {
  uint32_t idx = leaf;
  for (int l = STORE_DEPTH; l >= 0; l--) {
    tree[l][idx] ^= delta;
    idx /= STORE_FANOUT;
  }
}

uint64_t store_node(int level, uint32_t index) {
  return tree[level][index];
}

const store_rec_t *store_leaf(uint32_t leaf) {
  return leaves[leaf];
}

int store_compare(int64_t asec, int32_t ansec, const char *aline, size_t alen,
                  const store_rec_t *b) {
  if (asec != b->sec) return asec > b->sec ? 1 : -1;
  if (ansec != b->nsec) return ansec > b->nsec ? 1 : -1;
  size_t n = alen < b->line_len ? alen : b->line_len;
  int c = memcmp(aline, STORE_LINE(b), n);
  if (c) return c;
  return alen == b->line_len ? 0 : (alen > b->line_len ? 1 : -1);
}

static void grow(void) {
  size_t cap = table_cap * 2;
  store_rec_t **t = xcalloc(cap, sizeof *t);
  for (size_t i = 0; i < table_cap; i++) {
    store_rec_t *r = table[i];
    while (r) {
      store_rec_t *next = r->next;
      size_t b = hash_bytes(STORE_CLIENT(r), r->client_len, 0) & (cap - 1);
      r->next = t[b];
      t[b] = r;
      r = next;
    }
  }
  free(table);
  table = t;
  table_cap = cap;
}

static store_rec_t **find_h(const char *client, size_t len, uint64_t h) {
  size_t b = h & (table_cap - 1);
  store_rec_t **p = &table[b];
  while (*p && ((*p)->client_len != len ||
                memcmp(STORE_CLIENT(*p), client, len) != 0))
    p = &(*p)->next;
  return p;
}

static store_rec_t **find(const char *client, size_t len) {
  return find_h(client, len, hash_bytes(client, len, 0));
}

const store_rec_t *store_get(const char *client, size_t client_len) {
  return *find(client, client_len);
}

static void leaf_remove(uint32_t leaf, store_rec_t *r) {
  store_rec_t **p = &leaves[leaf];
  while (*p != r)
    p = &(*p)->leaf_next;
  *p = r->leaf_next;
}

int store_put(const char *client, size_t client_len, int64_t sec, int32_t nsec,
              const char *line, size_t line_len) {
  if (line_len && line[line_len - 1] == '\n') line_len--;
  if (client_len == 0 || client_len > STORE_MAX_CLIENT || line_len == 0 ||
      line_len > STORE_MAX_LINE || nsec < 0 || nsec > 999999999)
    return -1;
  uint64_t h = hash_bytes(client, client_len, 0);
  store_rec_t **slot = find_h(client, client_len, h);
  store_rec_t *old = *slot;
  if (old && store_compare(sec, nsec, line, line_len, old) <= 0) return 0;
  if (!old && count >= max_count) return STORE_FULL;
  /* The version's digest: the line names the client, so line and timestamp
   * identify it. */
  uint64_t digest = hash_bytes(line, line_len,
                               (uint64_t)sec * 1000000007ULL ^ (uint64_t)nsec) |
                    1;
  uint32_t leaf = leaf_of_hash(h);
  if (old && malloc_usable_size(old) >= sizeof *old + client_len + line_len) {
    /* A newer line for a known client nearly always fits the old block
     * (lines differ by a digit or two): updated in place, the record keeps
     * its chains and neither the allocator nor the leaf's chain is touched,
     * which in a herd of busy servers sharing a core saves cache misses
     * more than instructions. */
    tree_apply(leaf, old->digest ^ digest);
    bytes = bytes - old->line_len + line_len;
    old->sec = sec;
    old->nsec = nsec;
    old->digest = digest;
    old->line_len = (uint16_t)line_len;
    memcpy(old->data + client_len, line, line_len);
    return 1;
  }

  store_rec_t *r = xmalloc(sizeof *r + client_len + line_len);
  r->sec = sec;
  r->nsec = nsec;
  r->client_len = (uint16_t)client_len;
  r->line_len = (uint16_t)line_len;
  memcpy(r->data, client, client_len);
  memcpy(r->data + client_len, line, line_len);
  r->digest = digest;
  uint64_t delta = r->digest;
  if (old) {
    r->next = old->next;
    leaf_remove(leaf, old);
    delta ^= old->digest;
    bytes -= sizeof *old + old->client_len + old->line_len;
    free(old);
  } else {
    r->next = NULL;
    count++;
  }
  *slot = r;
  r->leaf_next = leaves[leaf];
  leaves[leaf] = r;
  tree_apply(leaf, delta);
  bytes += sizeof *r + client_len + line_len;
  if (count > table_cap) grow();
  return 1;
}

const char *store_refusal(int rc) {
  return rc == STORE_FULL ? "store full (limits.max_records)"
                          : "record too long or empty";
}

void store_each(void (*fn)(const store_rec_t *r, void *ud), void *ud) {
  for (size_t i = 0; i < table_cap; i++)
    for (store_rec_t *r = table[i]; r; r = r->next)
      fn(r, ud);
}
