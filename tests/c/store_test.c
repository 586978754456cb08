/* store_test: SipHash against published vectors and OpenSSL's independent
 * implementation, the store's tree key (two stores with one key agree,
 * different keys put clients in different leaves, rekeying a full store
 * equals filling it under the new key), the table's growth: it doubles in
 * place (no second table beside the old one), and while its buckets are
 * split every record is found, updated, replaced, listed exactly once and
 * rekeyed, new ones are added, the move
 * ends within a bounded number of puts, and no put or loop step takes more
 * than GROWTH_MAX_CPU_MS of CPU time at any size (the old table moved every
 * record in the one put that filled it); and loading a state's records
 * (store_load) equals putting them, updates of loaded records included,
 * also when a move was under way.
 *
 *   build/test/store_test [RECORDS [IDS]]   (default 20000; IDS: a file of
 *       client ids, one a line, for the growth checks too, such as the
 *       colliding ids of build/test/collide_ids)
 *
 * Prints one summary line; exits 0 when every check passed. */
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../core/siphash.h"
#include "../../core/store.h"

static int failures, checks;

#define CHECK(cond, ...)                                     \
  do {                                                       \
    checks++;                                                \
    if (!(cond)) {                                           \
      failures++;                                            \
      if (failures <= 20) {                                  \
        fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
        fprintf(stderr, __VA_ARGS__);                        \
        fputc('\n', stderr);                                 \
      }                                                      \
    }                                                        \
  } while (0)

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next_u64(void) { /* xorshift64* */
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return rng * 2685821657736338717ull;
}

/* SipHash-2-4 of bytes 0..n-1 under key 00..0f, from the SipHash paper's
 * reference code (vectors.h): the first, a few across the block edges,
 * and the last. */
static const struct {
  size_t len;
  uint64_t out;
} reference[] = {
    {0, 0x726fdb47dd0e0e31ULL},  {1, 0x74f839c593dc67fdULL},
    {7, 0xab0200f58b01d137ULL},  {8, 0x93f5f5799a932462ULL},
    {15, 0xa129ca6149be45e5ULL}, {16, 0x3f2acc7f57c29bdbULL},
    {63, 0x958a324ceb064572ULL},
};

/* OpenSSL's SipHash MAC with the given round counts, as a 64-bit value. */
static uint64_t openssl_siphash(const uint8_t key[16], const void *data,
                                size_t len, unsigned c, unsigned d) {
  EVP_MAC *mac = EVP_MAC_fetch(NULL, "SIPHASH", NULL);
  EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
  unsigned size = 8;
  OSSL_PARAM params[] = {OSSL_PARAM_construct_uint(OSSL_MAC_PARAM_SIZE, &size),
                         OSSL_PARAM_construct_uint(OSSL_MAC_PARAM_C_ROUNDS, &c),
                         OSSL_PARAM_construct_uint(OSSL_MAC_PARAM_D_ROUNDS, &d),
                         OSSL_PARAM_construct_end()};
  uint8_t out[8] = {0};
  size_t outlen = 0;
  int ok = ctx && EVP_MAC_init(ctx, key, 16, params) == 1 &&
           EVP_MAC_update(ctx, data, len) == 1 &&
           EVP_MAC_final(ctx, out, &outlen, sizeof out) == 1 && outlen == 8;
  EVP_MAC_CTX_free(ctx);
  EVP_MAC_free(mac);
  if (!ok) {
    fprintf(stderr, "OpenSSL SIPHASH unavailable\n");
    exit(2);
  }
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = v << 8 | out[i];
  return v;
}

static void siphash_checks(void) {
  uint8_t key[16], msg[256];
  for (int i = 0; i < 16; i++)
    key[i] = (uint8_t)i;
  for (int i = 0; i < 64; i++)
    msg[i] = (uint8_t)i;
  siphash_key_t k = siphash_key(key);
  for (size_t i = 0; i < sizeof reference / sizeof reference[0]; i++)
    CHECK(siphash24(&k, msg, reference[i].len) == reference[i].out,
          "siphash24 reference vector, %zu bytes", reference[i].len);
  /* Random keys and every length up to 255, both variants. */
  for (int t = 0; t < 2000; t++) {
    for (int i = 0; i < 16; i++)
      key[i] = (uint8_t)next_u64();
    size_t len = (size_t)t % 256;
    for (size_t i = 0; i < len; i++)
      msg[i] = (uint8_t)next_u64();
    k = siphash_key(key);
    CHECK(siphash13(&k, msg, len) == openssl_siphash(key, msg, len, 1, 3),
          "siphash13 against OpenSSL, %zu bytes", len);
    CHECK(siphash24(&k, msg, len) == openssl_siphash(key, msg, len, 2, 4),
          "siphash24 against OpenSSL, %zu bytes", len);
  }
}

/* A herd's worth of clients, with AT lines as the store keeps them. */
static void fill(int n, int reverse, int expect) {
  char client[64], line[256];
  for (int j = 0; j < n; j++) {
    int i = reverse ? n - 1 - j : j;
    int cn = snprintf(client, sizeof client, "client-%d.example", i);
    int ln = snprintf(line, sizeof line,
                      "AT A +0.000000001 %s +34.068930-118.445127 %d.%09d",
                      client, 1700000000 + i, i);
    CHECK(store_put(client, (size_t)cn, 1700000000 + i, i, line, (size_t)ln) ==
              expect,
          "store_put %s", client);
  }
}

/* Every node of the tree, to compare two stores. */
static uint64_t *snapshot(void) {
  size_t total = 0, n = 1;
  for (int l = 0; l <= STORE_DEPTH; l++, n *= STORE_FANOUT)
    total += n;
  uint64_t *s = malloc(total * sizeof *s);
  size_t at = 0;
  n = 1;
  for (int l = 0; l <= STORE_DEPTH; l++, n *= STORE_FANOUT)
    for (uint32_t i = 0; i < n; i++)
      s[at++] = store_node(l, i);
  return s;
}

static size_t snapshot_len(void) {
  size_t total = 0, n = 1;
  for (int l = 0; l <= STORE_DEPTH; l++, n *= STORE_FANOUT)
    total += n;
  return total * sizeof(uint64_t);
}

/* Each record sits in the leaf its client hashes to, exactly once. */
static void check_leaves(int n) {
  int seen = 0;
  for (uint32_t leaf = 0; leaf < STORE_LEAVES; leaf++)
    for (const store_rec_t *r = store_leaf(leaf); r; r = r->leaf_next) {
      seen++;
      CHECK(store_leaf_of(STORE_CLIENT(r), r->client_len) == leaf,
            "record in the wrong leaf");
    }
  CHECK(seen == n, "leaves hold %d records, store %d", seen, n);
}

static void fresh(void) {
  store_free();
  CHECK(store_init(NULL) == 0, "store_init");
}

static void tree_key_checks(int n) {
  uint8_t k1[16], k2[16], zero[16] = {0};
  for (int i = 0; i < 16; i++) {
    k1[i] = (uint8_t)(0xa0 + i);
    k2[i] = (uint8_t)(0x50 + i);
  }
  /* Default: the all-zero key, so two stores without a key agree. */
  fresh();
  fill(n, 0, 1);
  uint64_t *zero_tree = snapshot();
  fresh();
  fill(n, 1, 1);
  uint64_t *t = snapshot();
  CHECK(memcmp(zero_tree, t, snapshot_len()) == 0,
        "two stores with the default key disagree");
  free(t);
  store_set_tree_key(zero);
  t = snapshot();
  CHECK(memcmp(zero_tree, t, snapshot_len()) == 0,
        "setting the current key changed the tree");
  free(t);

  /* Same key, different insertion order: the same tree. */
  fresh();
  store_set_tree_key(k1);
  fill(n, 0, 1);
  uint64_t *k1_tree = snapshot();
  check_leaves(n);
  fresh();
  store_set_tree_key(k1);
  fill(n, 1, 1);
  t = snapshot();
  CHECK(memcmp(k1_tree, t, snapshot_len()) == 0,
        "two stores with one key disagree");
  free(t);
  CHECK(k1_tree[0] != zero_tree[0], "the key does not change the root");

  /* A different key: different leaves for nearly every client. */
  char client[64];
  int moved = 0;
  uint32_t *leaf1 = malloc((size_t)n * sizeof *leaf1);
  for (int i = 0; i < n; i++) {
    int cn = snprintf(client, sizeof client, "client-%d.example", i);
    leaf1[i] = store_leaf_of(client, (size_t)cn);
  }
  store_set_tree_key(k2);
  for (int i = 0; i < n; i++) {
    int cn = snprintf(client, sizeof client, "client-%d.example", i);
    moved += store_leaf_of(client, (size_t)cn) != leaf1[i];
  }
  CHECK(moved > n * 99 / 100, "only %d of %d clients changed leaf", moved, n);
  CHECK(store_node(0, 0) != k1_tree[0], "another key, the same root");
  check_leaves(n);

  /* Rekeying a full store equals filling it under the new key. */
  store_set_tree_key(k1);
  t = snapshot();
  CHECK(memcmp(k1_tree, t, snapshot_len()) == 0,
        "rekeyed store differs from one filled under the key");
  free(t);
  check_leaves(n);
  CHECK(store_count() == (size_t)n, "rekeying lost records");

  /* Updates after a rekey still keep the tree right. */
  fill(n, 0, 0); /* not newer: nothing changes */
  t = snapshot();
  CHECK(memcmp(k1_tree, t, snapshot_len()) == 0, "stale puts changed tree");
  free(t);
  free(leaf1);
  free(k1_tree);
  free(zero_tree);
}

/* ----------------------------------------------------------- growth */

/* The clients of the growth checks, and the version each should hold. */
typedef struct {
  char **id;
  size_t *len;
  int *version;
  int n, cap;
} clients_t;

static void clients_free(clients_t *c) {
  for (int i = 0; i < c->n; i++)
    free(c->id[i]);
  free(c->id);
  free(c->len);
  free(c->version);
  memset(c, 0, sizeof *c);
}

static void clients_add(clients_t *c, const char *id, size_t len) {
  if (c->n == c->cap) {
    c->cap = c->cap ? 2 * c->cap : 1024;
    c->id = realloc(c->id, (size_t)c->cap * sizeof *c->id);
    c->len = realloc(c->len, (size_t)c->cap * sizeof *c->len);
    c->version = realloc(c->version, (size_t)c->cap * sizeof *c->version);
  }
  c->id[c->n] = malloc(len);
  memcpy(c->id[c->n], id, len);
  c->len[c->n] = len;
  c->version[c->n] = 0;
  c->n++;
}

static clients_t numbered_clients(int n) {
  clients_t c = {0};
  char id[64];
  for (int i = 0; i < n; i++)
    clients_add(&c, id,
                (size_t)snprintf(id, sizeof id, "client-%d.example", i));
  return c;
}

static clients_t file_clients(const char *path) {
  clients_t c = {0};
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "cannot read %s\n", path);
    exit(2);
  }
  char id[STORE_MAX_CLIENT + 2];
  while (fgets(id, sizeof id, f)) {
    size_t len = strcspn(id, "\n");
    if (len) clients_add(&c, id, len);
  }
  fclose(f);
  return c;
}

/* Puts version v of client i: odd versions a short line (updated in place),
 * even ones a line 200 bytes longer (a new record replaces the old one in
 * its chain and leaf). */
static int put_version(clients_t *c, int i, int v) {
  char line[STORE_MAX_LINE];
  int ln =
      snprintf(line, sizeof line, "AT A +0.000000001 %.*s +34.1-118.4 %d.0%s",
               (int)c->len[i], c->id[i], 1700000000 + v,
               v % 2 ? ""
                     : " ......................................................"
                       "......................................................"
                       "......................................................"
                       "................................");
  int rc = store_put(c->id[i], c->len[i], 1700000000 + v, 0, line, (size_t)ln);
  if (rc == 1) c->version[i] = v;
  return rc;
}

static int cmp_ptr(const void *a, const void *b) {
  const void *x = *(const void *const *)a, *y = *(const void *const *)b;
  return x < y ? -1 : x > y;
}

typedef struct {
  const void **seen;
  size_t n, cap;
} seen_t;

static void note_seen(const store_rec_t *r, void *ud) {
  seen_t *s = ud;
  if (s->n < s->cap) s->seen[s->n] = r;
  s->n++;
}

/* Every client with a version is found with it, store_each lists each
 * record exactly once, and the leaves hold every record. */
static void check_clients(const clients_t *c, const char *when) {
  int stored = 0;
  for (int i = 0; i < c->n; i++) {
    const store_rec_t *r = store_get(c->id[i], c->len[i]);
    if (!c->version[i]) {
      CHECK(!r, "%s: client %d found before it was put", when, i);
      continue;
    }
    stored++;
    CHECK(r && r->sec == 1700000000 + c->version[i],
          "%s: client %d not found, or not its version %d", when, i,
          c->version[i]);
  }
  CHECK(store_count() == (size_t)stored, "%s: count %zu, %d stored", when,
        store_count(), stored);
  seen_t s = {malloc((size_t)stored * sizeof(void *)), 0, (size_t)stored};
  store_each(note_seen, &s);
  CHECK(s.n == (size_t)stored, "%s: store_each listed %zu of %d records", when,
        s.n, stored);
  if (s.n == (size_t)stored) {
    qsort(s.seen, s.n, sizeof *s.seen, cmp_ptr);
    size_t dups = 0;
    for (size_t i = 1; i < s.n; i++)
      dups += s.seen[i] == s.seen[i - 1];
    CHECK(dups == 0, "%s: store_each listed %zu records twice", when, dups);
  }
  free(s.seen);
  check_leaves(stored);
}

/* A table of 1024 buckets doubles at each power of two above it. */
static int doubling_below(int n) {
  int d = 1024;
  while (d * 2 <= n)
    d *= 2;
  return d;
}

static void growth_checks(clients_t *c, const char *what) {
  uint8_t k1[16];
  for (int i = 0; i < 16; i++)
    k1[i] = (uint8_t)(0x30 + i);
  /* The put of record d + 1 starts the move of a table of d buckets;
   * half the clients are left to be added during it. */
  int d = doubling_below(c->n / 2);
  fresh();
  for (int i = 0; i < d; i++)
    CHECK(put_version(c, i, 1) == 1, "%s: put %d", what, i);
  size_t before = store_bytes();
  CHECK(put_version(c, d, 1) == 1, "%s: put %d", what, d);
  /* The table doubles in place: d buckets more, not a second table of 2d
   * beside the old one. */
  CHECK(store_bytes() - before < 2 * d * sizeof(void *),
        "%s: the doubling from %d buckets took %zu bytes", what, d,
        store_bytes() - before);
  CHECK(store_rehash_pending() == (size_t)d,
        "%s: %d records, %zu buckets left to move, not %d", what, d + 1,
        store_rehash_pending(), d);
  check_clients(c, "the move started");

  store_rehash_step((size_t)d / 8);
  size_t left = store_rehash_pending();
  CHECK(left > 0 && left < (size_t)d, "%s: %zu of %d buckets left", what, left,
        d);
  check_clients(c, "a step into the move");

  /* Updates in place, replaced records, stale puts and new clients, while
   * the move goes on (each put moves a few buckets). */
  int m = d / 64;
  for (int i = 0; i < m; i++) {
    CHECK(put_version(c, i, 3) == 1, "%s: in-place update %d", what, i);
    CHECK(put_version(c, m + i, 2) == 1, "%s: replacing update %d", what, i);
    CHECK(put_version(c, 2 * m + i, 0) == 0, "%s: stale put %d", what, i);
    CHECK(put_version(c, d + 1 + i, 1) == 1, "%s: new client %d", what, i);
  }
  CHECK(store_rehash_pending() > 0, "%s: the move ended too soon", what);
  check_clients(c, "puts during the move");

  /* Rekeying during the move rebuilds the tree from split and unsplit
   * buckets. */
  store_set_tree_key(k1);
  CHECK(store_rehash_pending() > 0, "%s: rekeying ended the move", what);
  check_clients(c, "rekeyed during the move");

  /* Each put moves at least STORE_REHASH_PUT_BUCKETS buckets, so the move
   * ends within that many puts, loop or no loop. */
  left = store_rehash_pending();
  size_t puts = 0, most = left / STORE_REHASH_PUT_BUCKETS + 1;
  for (int i = d + 1 + m; i < c->n && store_rehash_pending() && puts <= most;
       i++, puts++)
    CHECK(put_version(c, i, 1) == 1, "%s: new client %d", what, i);
  CHECK(store_rehash_pending() == 0,
        "%s: %zu buckets still to move after %zu puts", what,
        store_rehash_pending(), puts);
  check_clients(c, "the move ended");

  /* The tree equals that of a store filled with the same records under the
   * same key, with no move going on at the end. */
  uint64_t *t = snapshot();
  fresh();
  store_set_tree_key(k1);
  for (int i = 0; i < c->n; i++)
    if (c->version[i]) put_version(c, i, c->version[i]);
  while (store_rehash_pending())
    store_rehash_step(1024);
  uint64_t *u = snapshot();
  CHECK(memcmp(t, u, snapshot_len()) == 0,
        "%s: tree after a move differs from a tree filled directly", what);
  free(t);
  free(u);
  check_clients(c, "filled again");
}

/* No put, and no loop iteration's share of the move, costs more than this
 * much CPU time at any size; the old table moved all 131,072 records in the
 * put of the 131,073rd (52 ms). A shared machine charges a stray
 * millisecond of interrupts to any put, so each put's cost is the least of
 * GROWTH_RUNS fills: a cost that comes with a size is there in every run. */
#define GROWTH_RECORDS 150000
#define GROWTH_RUNS 3
/* ASan and UBSan make every store operation several times dearer; the
 * bound is about shape (no put pays for a whole table), so it scales. */
#if defined(__SANITIZE_ADDRESS__)
#define GROWTH_MAX_CPU_MS 8.0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define GROWTH_MAX_CPU_MS 8.0
#endif
#endif
#ifndef GROWTH_MAX_CPU_MS
#define GROWTH_MAX_CPU_MS 2.0
#endif

static double cpu_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void growth_cost_checks(void) {
  clients_t c = numbered_clients(GROWTH_RECORDS);
  int nsteps = GROWTH_RECORDS / 64 + 1;
  double *put = malloc((size_t)c.n * sizeof *put);
  double *step = malloc((size_t)nsteps * sizeof *step);
  for (int i = 0; i < c.n; i++)
    put[i] = 1e9;
  for (int i = 0; i < nsteps; i++)
    step[i] = 0;
  for (int run = 0; run < GROWTH_RUNS; run++) {
    fresh();
    for (int i = 0; i < c.n; i++) {
      double t0 = cpu_ms();
      CHECK(put_version(&c, i, run + 1) == 1, "put %d", i);
      double t = cpu_ms() - t0;
      if (t < put[i]) put[i] = t;
      /* As the loop does between reads of a busy server; steps are timed
       * by the store, their cost is checked in the first run only. */
      if (i % 64 == 0 && store_rehash_pending()) {
        t0 = cpu_ms();
        store_rehash_run(STORE_REHASH_LOOP_US);
        t = cpu_ms() - t0;
        if (run == 0 || t < step[i / 64]) step[i / 64] = t;
      }
    }
  }
  double put_max = 0, step_max = 0;
  int put_max_at = 0;
  for (int i = 0; i < c.n; i++)
    if (put[i] > put_max) {
      put_max = put[i];
      put_max_at = i + 1;
    }
  for (int i = 0; i < nsteps; i++)
    if (step[i] > step_max) step_max = step[i];
  printf(
      "growth: %d records, least of %d runs; longest put %.3f ms CPU "
      "(record %d), longest loop step %.3f ms CPU\n",
      c.n, GROWTH_RUNS, put_max, put_max_at, step_max);
  CHECK(put_max < GROWTH_MAX_CPU_MS, "a put took %.1f ms CPU (record %d)",
        put_max, put_max_at);
  CHECK(step_max < GROWTH_MAX_CPU_MS, "a loop step took %.1f ms CPU", step_max);
  free(put);
  free(step);
  clients_free(&c);
}

/* Loading (a state's records, each a distinct client, into one block)
 * gives the store, tree and leaves that putting them one by one gives;
 * the loaded records are then updated in place and moved out (a longer
 * line), and the store stays right (ASan watches the block). */
static void load_checks(int n) {
  uint8_t k1[16];
  for (int i = 0; i < 16; i++)
    k1[i] = (uint8_t)(0xa0 + i);
  fresh();
  store_set_tree_key(k1);
  fill(n, 0, 1);
  uint64_t *put_tree = snapshot();
  fresh();
  store_set_tree_key(k1);
  char client[64], line[512];
  store_load_begin((size_t)n, (size_t)n * (sizeof(store_rec_t) + 16 + 128));
  for (int i = n - 1; i >= 0; i--) {
    int cn = snprintf(client, sizeof client, "client-%d.example", i);
    int ln = snprintf(line, sizeof line,
                      "AT A +0.000000001 %s +34.068930-118.445127 %d.%09d",
                      client, 1700000000 + i, i);
    CHECK(store_load(client, (size_t)cn, 1700000000 + i, i, line, (size_t)ln) ==
              1,
          "store_load %s", client);
  }
  store_load_end();
  uint64_t *t = snapshot();
  CHECK(memcmp(put_tree, t, snapshot_len()) == 0,
        "a loaded store differs from one filled by store_put");
  free(t);
  check_leaves(n);
  CHECK(store_count() == (size_t)n, "loaded %zu of %d", store_count(), n);
  fill(n, 0, 0); /* the same records again: not newer */
  for (int i = 0; i < n; i++) {
    int cn = snprintf(client, sizeof client, "client-%d.example", i);
    /* Even: one digit more (fits the room); odd: 200 bytes more. */
    int ln = snprintf(line, sizeof line,
                      "AT A +0.000000002 %s +34.068930-118.445127 %d.%09d%s",
                      client, 1700000001 + i, i,
                      i % 2 ? "                                        "
                              "                                        "
                              "                                        "
                              "                                        "
                              "                                        "
                            : "");
    CHECK(
        store_put(client, (size_t)cn, 1700000001 + i, i, line, (size_t)ln) == 1,
        "update %s", client);
    const store_rec_t *r = store_get(client, (size_t)cn);
    CHECK(r && r->line_len == ln && memcmp(STORE_LINE(r), line, ln) == 0,
          "updated %s reads back", client);
  }
  check_leaves(n);
  CHECK(store_count() == (size_t)n, "updates changed the count");
  free(put_tree);

  /* A load that begins while the table is moving (1025 puts start a move)
   * finishes the move first: every record, put or loaded, is found. */
  fresh();
  fill(1025, 0, 1);
  CHECK(store_rehash_pending() > 0, "1025 puts did not start a move");
  store_load_begin((size_t)n, (size_t)n * (sizeof(store_rec_t) + 16 + 128));
  CHECK(store_rehash_pending() == 0, "store_load_begin left a move pending");
  for (int i = 1025; i < 1025 + n; i++) {
    int cn = snprintf(client, sizeof client, "client-%d.example", i);
    int ln = snprintf(line, sizeof line,
                      "AT A +0.000000001 %s +34.068930-118.445127 %d.%09d",
                      client, 1700000000 + i, i);
    CHECK(store_load(client, (size_t)cn, 1700000000 + i, i, line, (size_t)ln) ==
              1,
          "store_load %s after a move", client);
  }
  store_load_end();
  for (int i = 0; i < 1025 + n; i++) {
    int cn = snprintf(client, sizeof client, "client-%d.example", i);
    const store_rec_t *r = store_get(client, (size_t)cn);
    CHECK(r && r->sec == 1700000000 + i, "%s lost across a load", client);
  }
  CHECK(store_count() == (size_t)(1025 + n),
        "count %zu after a move and a load", store_count());
  check_leaves(1025 + n);
}

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 20000;
  siphash_checks();
  if (store_init(NULL) < 0) {
    fprintf(stderr, "store_init failed\n");
    return 2;
  }
  tree_key_checks(n);
  clients_t c = numbered_clients(n);
  growth_checks(&c, "numbered ids");
  clients_free(&c);
  if (argc > 2) {
    c = file_clients(argv[2]);
    growth_checks(&c, argv[2]);
    clients_free(&c);
  }
  growth_cost_checks();
  load_checks(n);
  store_free();
  printf("store_test: %d checks, %d failed (%d records)\n", checks, failures,
         n);
  return failures ? 1 : 0;
}
