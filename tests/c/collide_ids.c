/* collide_ids: client ids that all collide under the store's old, unkeyed
 * hash (the xxHash-style hash_bytes of herd before keyed hashes), for the
 * hash-flooding test (tests/integration/hashflood_spec.lua).
 *
 *   build/test/collide_ids N   prints N distinct printable 24-byte ids,
 *                              one a line, all with one 64-bit old hash
 *
 * The old hash was invertible step by step: take a random first 8-byte word
 * and a second that counts through the printable bytes (so every id is new),
 * solve the third so the state before the final mix equals a fixed target,
 * keep it when all its bytes are printable (about 1 in 3,000). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint64_t P1 = 0x9e3779b185ebca87ULL, P2 = 0xc2b2ae3d27d4eb4fULL;

static uint64_t rotl64(uint64_t x, int r) {
  return (x << r) | (x >> (64 - r));
}

/* The old hash_bytes(p, n, 0), kept here only to check the ids. */
static uint64_t old_hash(const char *p, size_t n) {
  uint64_t h = n * P1;
  while (n >= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    h = rotl64(h + w * P2, 31) * P1;
    p += 8;
    n -= 8;
  }
  uint64_t w = 0;
  memcpy(&w, p, n);
  h = rotl64(h + (w ^ n) * P2, 31) * P1;
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

/* The inverse of an odd number modulo 2^64 (Newton's iteration). */
static uint64_t inverse(uint64_t a) {
  uint64_t x = a;
  for (int i = 0; i < 6; i++)
    x *= 2 - a * x;
  return x;
}

static uint64_t rng = 0x2545f4914f6cdd1dULL;
static uint64_t next_u64(void) { /* xorshift64* */
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return rng * 2685821657736338717ULL;
}

static int printable(uint64_t w) {
  for (int i = 0; i < 8; i++, w >>= 8)
    if ((w & 0xff) < 0x21 || (w & 0xff) > 0x7e) return 0;
  return 1;
}

static uint64_t random_word(void) {
  uint64_t w = 0;
  for (int i = 0; i < 8; i++)
    w |= (uint64_t)(0x21 + next_u64() % 94) << (8 * i);
  return w;
}

/* The next printable word after w, as an odometer of bytes 0x21..0x7e. */
static uint64_t next_word(uint64_t w) {
  for (int i = 0; i < 8; i++) {
    uint64_t b = (w >> (8 * i)) & 0xff;
    if (b < 0x7e) return w + ((uint64_t)1 << (8 * i));
    w = (w & ~((uint64_t)0xff << (8 * i))) | ((uint64_t)0x21 << (8 * i));
  }
  return w;
}

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 20000;
  const uint64_t inv1 = inverse(P1), inv2 = inverse(P2);
  /* The state after the three words, before the empty tail and the mix:
   * any fixed value will do. */
  const uint64_t target = 0x0123456789abcdefULL;
  const uint64_t need = rotl64(target * inv1, 64 - 31); /* h2 + w3 * P2 */
  uint64_t first = 0;
  uint64_t w[3] = {random_word(), random_word(), 0};
  const uint64_t h1 = rotl64(24 * P1 + w[0] * P2, 31) * P1;
  for (long found = 0; found < n;) {
    w[1] = next_word(w[1]);
    uint64_t h = rotl64(h1 + w[1] * P2, 31) * P1;
    w[2] = (need - h) * inv2;
    if (!printable(w[2])) continue;
    char id[25];
    memcpy(id, w, 24);
    id[24] = 0;
    uint64_t hash = old_hash(id, 24);
    if (!found) first = hash;
    if (hash != first) {
      fprintf(stderr, "collide_ids: inversion is wrong\n");
      return 1;
    }
    puts(id);
    found++;
  }
  return 0;
}
