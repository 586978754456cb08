/* store: see store.h. */
#include "store.h"

#include <malloc.h>
#include <sys/mman.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>
#include <uv.h>

#include "buf.h"
#include "siphash.h"

/* The table grows as Redis's dict does: when it holds as many records as
 * buckets it doubles, and the records are moved a few buckets at a time
 * (STORE_REHASH_PUT_BUCKETS per store_put, at most STORE_REHASH_LOOP_US of
 * work per loop iteration from an idle handle that runs only meanwhile),
 * never all at once: moving 4M records took 2 s. The table doubles in
 * place (linear hashing's split): bucket i of the old size holds the
 * records of buckets i and i + old_cap of the new one, so moving it splits
 * its chain in two, and no second table is mapped, filled and given back.
 * During the move a record is in bucket h & (old_cap - 1) if that bucket
 * is at or after old_next, else in h & (table_cap - 1), so a lookup reads
 * one chain, as always. */
static store_rec_t **table;
static size_t table_cap;         /* buckets in use: a power of two */
static size_t table_mapped;      /* bytes of address space the table has */
static size_t old_cap, old_next; /* moving: buckets below old_next are split */
static uv_loop_t *rehash_loop;
static uv_idle_t rehash_idle;
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

/* The table comes straight from mmap: the kernel zeroes a page when it is
 * first touched, so buckets cost nothing until used. Its address space is
 * reserved for the most buckets limits.max_records can need (at most
 * TABLE_RESERVE_MAX buckets; beyond, mremap grows it), so doubling touches
 * no page table but those of the pages it fills, and nothing is given
 * back while the server serves: each munmap of a slice of an old table
 * (1 MiB at a time, 64 per 5M-client load) was followed by a stall of the
 * virtual CPU of 4-7.5 ms, one time in seven, on the test machine
 * (docs/reliability.md). */
#define TABLE_RESERVE_MAX ((size_t)1 << 32)

static size_t table_reserve(size_t cap) {
  size_t want = 1024;
  while (want < max_count && want < TABLE_RESERVE_MAX)
    want *= 2;
  return (want > cap ? want : cap) * sizeof(store_rec_t *);
}

/* A table of at least cap buckets, with room to double in place. */
static store_rec_t **table_map(size_t cap, size_t *mapped) {
  size_t size = table_reserve(cap);
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    size = cap * sizeof(store_rec_t *);
    p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
             -1, 0);
  }
  if (p == MAP_FAILED) xoom(size);
  *mapped = size;
  return p;
}

/* Doubles table_cap and starts splitting the old buckets. */
static void table_double(void) {
  size_t need = table_cap * 2 * sizeof *table;
  if (need > table_mapped) {
    size_t want = table_reserve(table_cap * 2);
    void *p = mremap(table, table_mapped, want, MREMAP_MAYMOVE);
    if (p == MAP_FAILED && want > need)
      p = mremap(table, table_mapped, want = need, MREMAP_MAYMOVE);
    if (p == MAP_FAILED) xoom(need);
    table = p;
    table_mapped = want;
  }
  old_cap = table_cap;
  old_next = 0;
  table_cap *= 2;
}

/* When the idle handle last returned, and how long the loop did nothing
 * else for the loop to count as idle. */
static uint64_t rehash_idle_end;
#define LOOP_IDLE_NS 50000

static void on_rehash_idle(uv_idle_t *h) {
  /* An idle loop (nothing but this callback and a poll since the last
   * call) moves buckets for the full STORE_REHASH_LOOP_US; a busy one for a
   * quarter of the time it spent on other work: a busy loop polls without
   * waiting while this handle is active, and a fixed share per iteration,
   * however short the iteration, could take most of its time. */
  uint64_t other = uv_hrtime() - rehash_idle_end;
  uint64_t usec = STORE_REHASH_LOOP_US;
  if (other >= LOOP_IDLE_NS && other / 4000 < usec) usec = other / 4000;
  store_rehash_run((unsigned)usec);
  rehash_idle_end = uv_hrtime();
}

int store_init(uv_loop_t *loop) {
  rehash_loop = loop;
  if (loop) {
    uv_idle_init(loop, &rehash_idle);
    /* The move alone never keeps a loop running. */
    uv_unref((uv_handle_t *)&rehash_idle);
  }
  uint8_t key[16];
  if (RAND_bytes(key, sizeof key) != 1) return -1;
  bucket_key = siphash_key(key);
  memset(key, 0, sizeof key);
  tree_key = siphash_key(key);
  table_cap = 1024;
  table = table_map(table_cap, &table_mapped);
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

static void free_chains(store_rec_t **t, size_t from, size_t to) {
  for (size_t i = from; t && i < to; i++) {
    store_rec_t *r = t[i];
    while (r) {
      store_rec_t *next = r->next;
      rec_free(r);
      r = next;
    }
  }
}

/* Buckets that may hold records: during a move, the new half's buckets
 * past those split are still untouched pages. */
static size_t buckets_used(void) {
  return old_cap ? old_cap + old_next : table_cap;
}

void store_free(void) {
  free_chains(table, 0, buckets_used());
  if (table) munmap(table, table_mapped);
  old_cap = old_next = table_mapped = 0;
  if (slab) munmap(slab, slab_size);
  slab = slab_next = slab_end = NULL;
  slab_size = 0;
  table = NULL;
  table_cap = count = bytes = 0;
  rehash_loop = NULL;
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

size_t store_rehash_pending(void) {
  return old_cap ? old_cap - old_next : 0;
}

static void rehash_done(void) {
  old_cap = old_next = 0;
  if (rehash_loop) uv_idle_stop(&rehash_idle);
}

void store_rehash_step(size_t buckets) {
  /* Empty buckets cost a read each: at most ten per bucket moved, as in
   * Redis, so a sparse stretch cannot make one step long. */
  size_t empty_left = buckets < SIZE_MAX / 10 ? buckets * 10 : SIZE_MAX;
  while (old_cap && old_next < old_cap && buckets) {
    size_t i = old_next++;
    store_rec_t *r = table[i], *stay = NULL, *moved = NULL;
    while (r) {
      store_rec_t *next = r->next;
      if (bucket_hash(STORE_CLIENT(r), r->client_len) & old_cap) {
        r->next = moved;
        moved = r;
      } else {
        r->next = stay;
        stay = r;
      }
      r = next;
    }
    table[i] = stay;
    /* Written even when empty: the new half's pages are first written,
     * in order, never first read (a read maps the zero page, which the
     * write after it must replace, flushing the TLB). */
    table[i + old_cap] = moved;
    if (stay || moved)
      buckets--;
    else if (--empty_left == 0)
      break;
  }
  if (old_cap && old_next == old_cap) rehash_done();
}

void store_rehash_run(unsigned usec) {
  /* The clock is read between slices of 16 buckets (about 30 us at
   * millions of records, where each record moved misses the cache). */
  uint64_t end = uv_hrtime() + (uint64_t)usec * 1000;
  do
    store_rehash_step(16);
  while (old_cap && uv_hrtime() < end);
}

/* Starts the move to twice the buckets. */
static void grow(void) {
  table_double();
  if (rehash_loop) {
    rehash_idle_end = uv_hrtime();
    uv_idle_start(&rehash_idle, on_rehash_idle);
  }
}

/* The chain a client with bucket hash h is in, or goes in. */
static store_rec_t **bucket_of(uint64_t h) {
  if (old_cap) {
    size_t b = h & (old_cap - 1);
    if (b >= old_next) return &table[b];
  }
  return &table[h & (table_cap - 1)];
}

static store_rec_t **find_h(const char *client, size_t len, uint64_t h) {
  store_rec_t **p = bucket_of(h);
  while (*p && ((*p)->client_len != len ||
                memcmp(STORE_CLIENT(*p), client, len) != 0))
    p = &(*p)->next;
  return p;
}

static store_rec_t **find(const char *client, size_t len) {
  return find_h(client, len, bucket_hash(client, len));
}

int store_mark_flooded(const store_rec_t *r) {
  store_rec_t *w = (store_rec_t *)r; /* the store's own record */
  int was = w->flooded;
  w->flooded = 1;
  return was;
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
  /* Before the lookup: a step moves chains, slot must point into its
   * final place. */
  if (old_cap) store_rehash_step(STORE_REHASH_PUT_BUCKETS);
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
    old->flooded = 0;
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
  r->flooded = 0;
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
  if (count > table_cap && !old_cap) grow();
  if (on_change) on_change(r);
  return 1;
}

/* Grows the table to cap buckets at once: for loading, before the server
 * serves anyone, where a move in steps would only make store_load look in
 * two places. */
static void rehash_now(size_t cap) {
  store_rehash_step(SIZE_MAX); /* ends a move under way */
  while (table_cap < cap) {
    table_double();
    store_rehash_step(SIZE_MAX);
  }
}

void store_load_begin(size_t n, size_t bytes_max) {
  size_t cap = table_cap;
  while (cap < n)
    cap *= 2;
  if (cap > table_cap || old_cap) rehash_now(cap);
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
  r->flooded = 0;
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
    load_flush(); /* the move takes what the table holds */
    rehash_now(table_cap * 2);
  }
  return 1;
}

const char *store_refusal(int rc) {
  return rc == STORE_FULL ? "store full (limits.max_records)"
                          : "record too long or empty";
}

/* Every record, split or not yet. */
static void each_rec(void (*fn)(store_rec_t *r, void *ud), void *ud) {
  size_t n = buckets_used();
  for (size_t i = 0; i < n; i++)
    for (store_rec_t *r = table[i]; r; r = r->next)
      fn(r, ud);
}

typedef struct {
  void (*fn)(const store_rec_t *r, void *ud);
  void *ud;
} each_const_t;

static void call_const(store_rec_t *r, void *ud) {
  each_const_t *c = ud;
  c->fn(r, c->ud);
}

void store_each(void (*fn)(const store_rec_t *r, void *ud), void *ud) {
  each_const_t c = {fn, ud};
  each_rec(call_const, &c);
}

/* Files r under the new tree key: its leaf, digest and leaf sum. */
static void rekey(store_rec_t *r, void *ud) {
  uint32_t leaf = leaf_of(STORE_CLIENT(r), r->client_len);
  r->digest = digest_of(STORE_LINE(r), r->line_len, r->sec, r->nsec);
  r->leaf_next = leaves[leaf];
  leaves[leaf] = r;
  tree[STORE_DEPTH][leaf] ^= r->digest;
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
  each_rec(rekey, NULL);
  /* The inner levels from the leaves up, once, not per record. */
  n = STORE_LEAVES;
  for (int l = STORE_DEPTH; l > 0; l--, n /= STORE_FANOUT)
    for (size_t i = 0; i < n; i++)
      tree[l - 1][i / STORE_FANOUT] ^= tree[l][i];
}
