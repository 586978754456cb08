/* store_test: SipHash against published vectors and OpenSSL's independent
 * implementation, and the store's tree key (two stores with one key agree,
 * different keys put clients in different leaves, rekeying a full store
 * equals filling it under the new key), and loading a state's records
 * (store_load) equals putting them, updates of loaded records included.
 *
 *   build/test/store_test [RECORDS]   (default 20000)
 *
 * Prints one summary line; exits 0 when every check passed. */
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
  CHECK(store_init() == 0, "store_init");
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
}

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 20000;
  siphash_checks();
  if (store_init() < 0) {
    fprintf(stderr, "store_init failed\n");
    return 2;
  }
  tree_key_checks(n);
  load_checks(n);
  store_free();
  printf("store_test: %d checks, %d failed (%d records)\n", checks, failures,
         n);
  return failures ? 1 : 0;
}
