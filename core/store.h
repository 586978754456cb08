/* store: the client records, owned by C so that they survive a script reload
 * and so that the links can reconcile them.
 * One record per client: the newest by client timestamp, with a fixed
 * tie-break (the greater AT line, byte by byte) so every server picks the
 * same winner. Records also feed a hash tree (root, STORE_FANOUT children per
 * node, STORE_DEPTH levels below the root; each node the XOR of its records'
 * digests), kept up to date on every change, which lets two servers find the
 * records they differ on with traffic that grows with the difference, not
 * with the store.
 * Hashes are keyed (SipHash-1-3, core/siphash.h): the table's buckets with a
 * random key of this process, the tree's leaves and digests with the herd's
 * shared tree key, so nobody without the keys can aim client ids at one
 * bucket or one leaf.
 * The table doubles in place when it holds as many records as buckets, and
 * splits its old buckets into their new pairs a few at a time (on each
 * store_put, and on each loop iteration from an idle handle that is active
 * only until the move is done), so growing never stalls the loop. */
#ifndef HERD_STORE_H
#define HERD_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define STORE_FANOUT 32
#define STORE_DEPTH 3 /* levels below the root; the last holds the leaves */
#define STORE_LEAVES (STORE_FANOUT * STORE_FANOUT * STORE_FANOUT)
#define STORE_MAX_CLIENT 1024 /* bytes in a client id */
#define STORE_MAX_LINE 8192   /* bytes in a stored AT line */
/* While the table grows, each store_put moves this many buckets of the old
 * table (a microsecond or two at millions of records, each record moved
 * missing the cache; 2 buckets made a put 2.5x as slow at 4M records), so a
 * doubling of D buckets ends within D puts, before the next, even without a
 * loop; and each loop iteration moves buckets for this long when the loop
 * did nothing else since (an idle server ends the move at full speed), or
 * for a quarter of the time it spent on other work, if less. */
#define STORE_REHASH_PUT_BUCKETS 1
#define STORE_REHASH_LOOP_US 200

typedef struct store_rec {
  struct store_rec *next;      /* hash chain */
  struct store_rec *leaf_next; /* records of the same leaf */
  uint64_t digest;             /* identifies this version of the record */
  int64_t sec;                 /* client timestamp */
  int32_t nsec;
  uint16_t client_len;
  uint16_t line_len;
  uint8_t flooded; /* this version was fallback-flooded (forward.c) */
  char data[];     /* client id, then the AT line */
} store_rec_t;

#define STORE_CLIENT(r) ((r)->data)
#define STORE_LINE(r) ((r)->data + (r)->client_len)

/* 0, or -1 if no random bucket key could be had (RAND_bytes failed). The
 * tree key starts as all zero bytes (what an insecure herd shares). With a
 * loop, an idle handle of the store finishes a table's growth on it (closed
 * with the loop's other handles, before store_free); without one (tests),
 * only store_put and store_rehash_step move buckets (store_load_begin
 * finishes a move at once). */
int store_init(uv_loop_t *loop);
/* Marks r's version as flooded by this server's fallback flood; returns
 * whether it was marked already. A newer version starts unmarked. */
int store_mark_flooded(const store_rec_t *r);
/* Sets the tree key every server of the herd shares and rekeys every record
 * (its leaf and digest; the tree is rebuilt): O(n), about 0.3 s per million
 * records, during which nothing else runs; a no-op when the key is the
 * current one. */
void store_set_tree_key(const uint8_t key[16]);
/* fn is called with every record store_put keeps (after it is in place),
 * so the state on disk can follow; NULL: nobody. */
void store_on_change(void (*fn)(const store_rec_t *r));
/* The most clients the store keeps (limits.max_records); default none. */
void store_set_limit(size_t max_clients);
void store_free(void);
#define STORE_FULL (-2)
/* Keeps the record if it is newer than the stored one for this client; a
 * final "\n" of line is not kept (a reply line is stored as it is sent).
 * Returns 1 if stored, 0 if not newer, -1 if malformed (too long, empty),
 * STORE_FULL for a new client when the store holds its limit of clients
 * (known clients are still updated). */
int store_put(const char *client, size_t client_len, int64_t sec, int32_t nsec,
              const char *line, size_t line_len);
/* Before store_load of n records whose client ids and lines take at most
 * bytes_max - n * (sizeof(store_rec_t) + 16) bytes: sizes the table once
 * and keeps the records in one block (address space reserved, only what
 * is used becomes resident) rather than a malloc each. store_load_end
 * (required before any other store call) puts the last loaded records in
 * their buckets and gives the block's unused part back. */
void store_load_begin(size_t n, size_t bytes_max);
void store_load_end(void);
/* store_put for a client the store does not hold (the caller knows: each
 * record of a state is a distinct client), without looking for it: for
 * loading a state. Returns 1, -1 if malformed, STORE_FULL. */
int store_load(const char *client, size_t client_len, int64_t sec, int32_t nsec,
               const char *line, size_t line_len);
/* Why store_put refused a record, for its return value rc < 0. */
const char *store_refusal(int rc);
const store_rec_t *store_get(const char *client, size_t client_len);
size_t store_count(void);
size_t store_bytes(void);
/* >0 if a is newer than b (timestamp, then line bytes), 0 if equal. */
int store_compare(int64_t asec, int32_t ansec, const char *aline, size_t alen,
                  const store_rec_t *b);
/* Calls fn for every record once (order unspecified); fn must not put. */
void store_each(void (*fn)(const store_rec_t *r, void *ud), void *ud);
/* Buckets of the old size not yet split (0: the table is not growing). */
size_t store_rehash_pending(void);
/* Splits up to that many non-empty buckets of the old size (and passes at
 * most ten empty ones per bucket), ending the growth when none are left. */
void store_rehash_step(size_t buckets);
/* Moves buckets for about usec microseconds, as the loop does each
 * iteration (STORE_REHASH_LOOP_US). */
void store_rehash_run(unsigned usec);

/* The hash tree. Level 0 is the root (index 0); level STORE_DEPTH holds the
 * leaves. */
uint64_t store_node(int level, uint32_t index);
uint32_t store_leaf_of(const char *client, size_t client_len);
const store_rec_t *store_leaf(uint32_t leaf); /* then follow leaf_next */

#endif
