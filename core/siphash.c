/* siphash: see siphash.h. */
#include "siphash.h"

#include <string.h>

static uint64_t rotl(uint64_t x, int b) {
  return (x << b) | (x >> (64 - b));
}

static uint64_t load_le64(const uint8_t *p) {
  return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 |
         (uint64_t)p[3] << 24 | (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 |
         (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;
}

siphash_key_t siphash_key(const uint8_t bytes[16]) {
  siphash_key_t k = {load_le64(bytes), load_le64(bytes + 8)};
  return k;
}

#define SIPROUND       \
  do {                 \
    v0 += v1;          \
    v1 = rotl(v1, 13); \
    v1 ^= v0;          \
    v0 = rotl(v0, 32); \
    v2 += v3;          \
    v3 = rotl(v3, 16); \
    v3 ^= v2;          \
    v0 += v3;          \
    v3 = rotl(v3, 21); \
    v3 ^= v0;          \
    v2 += v1;          \
    v1 = rotl(v1, 17); \
    v1 ^= v2;          \
    v2 = rotl(v2, 32); \
  } while (0)

/* c compression rounds per 8-byte word, d finalisation rounds; inlined into
 * the two variants so the round counts are constants. */
static inline uint64_t siphash(const siphash_key_t *key, const void *data,
                               size_t len, int c, int d) {
  const uint8_t *p = data;
  uint64_t v0 = key->k0 ^ 0x736f6d6570736575ULL;
  uint64_t v1 = key->k1 ^ 0x646f72616e646f6dULL;
  uint64_t v2 = key->k0 ^ 0x6c7967656e657261ULL;
  uint64_t v3 = key->k1 ^ 0x7465646279746573ULL;
  uint64_t b = (uint64_t)len << 56;
  const uint8_t *end = p + (len & ~(size_t)7);
  for (; p != end; p += 8) {
    uint64_t m = load_le64(p);
    v3 ^= m;
    for (int i = 0; i < c; i++)
      SIPROUND;
    v0 ^= m;
  }
  uint8_t tail[8] = {0};
  memcpy(tail, p, len & 7);
  b |= load_le64(tail);
  v3 ^= b;
  for (int i = 0; i < c; i++)
    SIPROUND;
  v0 ^= b;
  v2 ^= 0xff;
  for (int i = 0; i < d; i++)
    SIPROUND;
  return v0 ^ v1 ^ v2 ^ v3;
}

uint64_t siphash13(const siphash_key_t *key, const void *data, size_t len) {
  return siphash(key, data, len, 1, 3);
}

uint64_t siphash24(const siphash_key_t *key, const void *data, size_t len) {
  return siphash(key, data, len, 2, 4);
}
