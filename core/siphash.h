/* siphash: SipHash (Aumasson and Bernstein), the keyed hash of the store.
 * A 128-bit key makes the hash of an input unpredictable to whoever does not
 * hold the key, so nobody can choose inputs that land in one bucket.
 * siphash13 (1 compression round, 3 finalisation rounds, as CPython and Rust
 * use for their hash tables) is what the store runs; siphash24 is the
 * reference variant, kept so the shared code is checked against the
 * published test vectors (tests/c/siphash_test.c). */
#ifndef HERD_SIPHASH_H
#define HERD_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

typedef struct siphash_key {
  uint64_t k0, k1; /* the 16 key bytes, read little-endian */
} siphash_key_t;

siphash_key_t siphash_key(const uint8_t bytes[16]);
uint64_t siphash13(const siphash_key_t *key, const void *data, size_t len);
uint64_t siphash24(const siphash_key_t *key, const void *data, size_t len);

#endif
