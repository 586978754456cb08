/* store: see store.h. */
#include "store.h"

#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <openssl/rand.h>

#include "buf.h"
#include "siphash.h"

static store_rec_t **table;
static size_t table_cap; /* power of two */
static size_t count, bytes;
static size_t max_count = SIZE_MAX;
static void (*on_change)(const store_rec_t *r);
/* The records loaded from a state live in one block (store_load_begin):
 * one mapping with huge pages instead of a million mallocs and page
 * faults. Each takes SLAB_ROUND-rounded room; a record replaced by one
 * that does not fit leaves its room unused until the server stops (at
 * most the block: the state it loaded). */
#define SLAB_ROUND 16
#define SLAB_ALIGN ((size_t)2 << 20)
static char *slab, *slab_next, *slab_end;
static size_t slab_size;
/* tree[0] = root, tree[1] = level 1 (FANOUT nodes), ... leaves last. */
static uint64_t *tree[STORE_DEPTH + 1];
static store_rec_t **leaves;

/* Two keys: the bucket key is this process's own secret (an attacker who
 * cannot learn it cannot aim client ids at one bucket); the tree key decides
 * leaves and digests, which every server of the herd must compute alike, so
 * the herd shares it (store_set_tree_key). */
static siphash_key_t bucket_key, tree_key;

static uint64_t bucket_hash(const char *client, size_t len) {
  return siphash13(&bucket_key, client, len);
}

static uint32_t leaf_of(const char *client, size_t len) {
  return (uint32_t)(siphash13(&tree_key, client, len) % STORE_LEAVES);
}

/* The version's digest: the line names the client and carries its time;
 * the timestamp is folded in too (injectively) so two versions never share
 * a digest even if a script stores a line whose text disagrees with it. */
static uint64_t digest_of(const char *line, size_t len, int64_t sec,
                          int32_t nsec) {
  uint64_t stamp = (uint64_t)sec * 1000000000ULL + (uint64_t)nsec;
  return (siphash13(&tree_key, line, len) ^ stamp) | 1;
}

int store_init(void) {
  uint8_t key[16];
  if (RAND_bytes(key, sizeof key) != 1) return -1;
  bucket_key = siphash_key(key);
  memset(key, 0, sizeof key);
  tree_key = siphash_key(key);
  table_cap = 1024;
  table = xcalloc(table_cap, sizeof *table);
  size_t n = 1;
  for (int l = 0; l <= STORE_DEPTH; l++) {
    tree[l] = xcalloc(n, sizeof *tree[l]);
    n *= STORE_FANOUT;
  }
  leaves = xcalloc(STORE_LEAVES, sizeof *leaves);
  return 0;
}

void store_on_change(void (*fn)(const store_rec_t *r)) {
  on_change = fn;
}

void store_set_limit(size_t max_clients) {
  max_count = max_clients;
}

static int in_slab(const store_rec_t *r) {
  return (const char *)r >= slab && (const char *)r < slab_end;
}

static size_t slab_room(size_t client_len, size_t line_len) {
  size_t n = sizeof(store_rec_t) + client_len + line_len;
  return (n + SLAB_ROUND - 1) & ~(size_t)(SLAB_ROUND - 1);
}

/* The bytes r may grow to in place. A block record's first room is not
 * kept, but rounding its present size never exceeds it. */
static size_t rec_room(store_rec_t *r) {
  return in_slab(r) ? slab_room(r->client_len, r->line_len)
                    : malloc_usable_size(r);
}

static void rec_free(store_rec_t *r) {
  if (!in_slab(r)) free(r);
}

void store_free(void) {
  for (size_t i = 0; i < table_cap; i++) {
    store_rec_t *r = table ? table[i] : NULL;
    while (r) {
      store_rec_t *next = r->next;
      rec_free(r);
      r = next;
    }
  }
  if (slab) munmap(slab, slab_size);
  slab = slab_next = slab_end = NULL;
  slab_size = 0;
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

uint32_t store_leaf_of(const char *client, size_t client_len) {
  return leaf_of(client, client_len);
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

static void rehash(size_t cap) {
  store_rec_t **t = xcalloc(cap, sizeof *t);
  for (size_t i = 0; i < table_cap; i++) {
    store_rec_t *r = table[i];
    while (r) {
      store_rec_t *next = r->next;
      size_t b = bucket_hash(STORE_CLIENT(r), r->client_len) & (cap - 1);
      r->next = t[b];
      t[b] = r;
      r = next;
    }
  }
  free(table);
  table = t;
  table_cap = cap;
}

static void grow(void) {
  rehash(table_cap * 2);
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
  return find_h(client, len, bucket_hash(client, len));
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
  uint64_t h = bucket_hash(client, client_len);
  store_rec_t **slot = find_h(client, client_len, h);
  store_rec_t *old = *slot;
  if (old && store_compare(sec, nsec, line, line_len, old) <= 0) return 0;
  if (!old && count >= max_count) return STORE_FULL;
  uint64_t digest = digest_of(line, line_len, sec, nsec);
  uint32_t leaf = leaf_of(client, client_len);
  if (old && rec_room(old) >= sizeof *old + client_len + line_len) {
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
    if (on_change) on_change(old);
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
    rec_free(old);
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
  if (on_change) on_change(r);
  return 1;
}

void store_load_begin(size_t n, size_t bytes_max) {
  size_t cap = table_cap;
  while (cap < n)
    cap *= 2;
  if (cap > table_cap) rehash(cap);
  if (slab || !n) return;
  size_t size = (bytes_max + SLAB_ALIGN - 1) & ~(SLAB_ALIGN - 1);
  /* Reserved, not committed: only what is written becomes resident. */
  void *p = mmap(NULL, size + SLAB_ALIGN, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return; /* records are malloc'd one by one */
  char *base = p;
  char *aligned = (char *)(((uintptr_t)base + SLAB_ALIGN - 1) &
                           ~(uintptr_t)(SLAB_ALIGN - 1));
  if (aligned > base) munmap(base, (size_t)(aligned - base));
  char *end = aligned + size;
  if (base + size + SLAB_ALIGN > end)
    munmap(end, (size_t)(base + size + SLAB_ALIGN - end));
  madvise(aligned, size, MADV_HUGEPAGE); /* fewer faults; advice only */
  slab = slab_next = aligned;
  slab_end = end;
  slab_size = size;
}

/* Loaded records wait here for their bucket, which was prefetched when they
 * came in: with a table of millions of buckets nearly every insertion
 * misses the cache, and a few in flight hide most of it. */
#define LOAD_AHEAD 16
static struct {
  store_rec_t *r;
  size_t bucket;
} ahead[LOAD_AHEAD];
static unsigned nahead, ahead_next; /* entries 0..nahead-1 until full */

static void load_insert(unsigned i) {
  store_rec_t *r = ahead[i].r;
  r->next = table[ahead[i].bucket];
  table[ahead[i].bucket] = r;
}

static void load_flush(void) {
  for (unsigned i = 0; i < nahead; i++)
    load_insert(i);
  nahead = ahead_next = 0;
}

void store_load_end(void) {
  load_flush();
  if (!slab) return;
  /* The unused tail goes back (whole huge pages past the last record). */
  char *used = (char *)(((uintptr_t)slab_next + SLAB_ALIGN - 1) &
                        ~(uintptr_t)(SLAB_ALIGN - 1));
  if (used < slab_end) {
    munmap(used, (size_t)(slab_end - used));
    slab_size = (size_t)(used - slab);
    slab_end = used;
  }
  if (slab_size == 0) slab = slab_next = slab_end = NULL;
}

int store_load(const char *client, size_t client_len, int64_t sec, int32_t nsec,
               const char *line, size_t line_len) {
  if (client_len == 0 || client_len > STORE_MAX_CLIENT || line_len == 0 ||
      line_len > STORE_MAX_LINE || nsec < 0 || nsec > 999999999)
    return -1;
  if (count >= max_count) return STORE_FULL;
  size_t room = slab_room(client_len, line_len);
  store_rec_t *r;
  if (slab && (size_t)(slab_end - slab_next) >= room) {
    r = (store_rec_t *)slab_next;
    slab_next += room;
  } else {
    r = xmalloc(sizeof *r + client_len + line_len);
  }
  r->sec = sec;
  r->nsec = nsec;
  r->client_len = (uint16_t)client_len;
  r->line_len = (uint16_t)line_len;
  memcpy(r->data, client, client_len);
  memcpy(r->data + client_len, line, line_len);
  r->digest = digest_of(line, line_len, sec, nsec);
  size_t b = bucket_hash(client, client_len) & (table_cap - 1);
  __builtin_prefetch(&table[b], 1);
  if (nahead == LOAD_AHEAD)
    load_insert(ahead_next); /* the oldest */
  else
    nahead++;
  ahead[ahead_next].r = r;
  ahead[ahead_next].bucket = b;
  ahead_next = (ahead_next + 1) % LOAD_AHEAD;
  uint32_t leaf = leaf_of(client, client_len);
  r->leaf_next = leaves[leaf];
  leaves[leaf] = r;
  tree_apply(leaf, r->digest);
  bytes += sizeof *r + client_len + line_len;
  count++;
  if (count > table_cap) {
    load_flush(); /* grow rehashes what the table holds */
    grow();
  }
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

void store_set_tree_key(const uint8_t key[16]) {
  siphash_key_t k = siphash_key(key);
  if (k.k0 == tree_key.k0 && k.k1 == tree_key.k1) return;
  tree_key = k;
  size_t n = 1;
  for (int l = 0; l <= STORE_DEPTH; l++) {
    memset(tree[l], 0, n * sizeof *tree[l]);
    n *= STORE_FANOUT;
  }
  memset(leaves, 0, STORE_LEAVES * sizeof *leaves);
  uint64_t *leaf_sums = tree[STORE_DEPTH];
  for (size_t i = 0; i < table_cap; i++)
    for (store_rec_t *r = table[i]; r; r = r->next) {
      uint32_t leaf = leaf_of(STORE_CLIENT(r), r->client_len);
      r->digest = digest_of(STORE_LINE(r), r->line_len, r->sec, r->nsec);
      r->leaf_next = leaves[leaf];
      leaves[leaf] = r;
      leaf_sums[leaf] ^= r->digest;
    }
  /* The inner levels from the leaves up, once, not per record. */
  n = STORE_LEAVES;
  for (int l = STORE_DEPTH; l > 0; l--, n /= STORE_FANOUT)
    for (size_t i = 0; i < n; i++)
      tree[l - 1][i / STORE_FANOUT] ^= tree[l][i];
}
