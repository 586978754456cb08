/* state: the store's records on disk (state_dir), in LMDB, so a server, or a
 * whole herd, restarted at once gets its clients back.
 * Owns the LMDB environment <state_dir>/<NAME>/ (data.mdb, lock.mdb) and the
 * records accepted since the last commit. Every record the store keeps is
 * noted (store_on_change) and written in one write transaction per loop
 * iteration (state_commit, called before replies leave). Durability is the
 * operator's choice (state_sync): "always" syncs each commit before the
 * replies go, "batch" syncs at most every state_sync_ms on the thread pool,
 * "off" leaves it to the OS. The records are not kept a second time in
 * memory: LMDB's map is read-only and file-backed. Single-threaded but for
 * the batch sync. */
#ifndef HERD_STATE_H
#define HERD_STATE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef enum {
  STATE_SYNC_BATCH = 0, /* the default */
  STATE_SYNC_ALWAYS,
  STATE_SYNC_OFF
} state_sync_t;

/* The name of a mode ("always", ...), and back: -1 for an unknown name. */
const char *state_sync_name(state_sync_t mode);
int state_sync_parse(const char *name);

/* Opens (creating if needed, 0750) <dir>/<name>/, checks its format and
 * loads every record into the store (which must be empty), then follows
 * the store. Returns 0, or -1 with a message naming the file in err (a
 * corrupt, truncated or foreign state is never half-loaded). */
int state_open(uv_loop_t *loop, const char *dir, const char *name,
               state_sync_t mode, unsigned sync_ms, char *err, size_t errlen);
/* Reads <dir>/<name>/ without changing it and checks every record, as
 * state_open would (for --check); a missing directory is fine. Returns the
 * number of records, or -1 with a message in err. */
long state_check(const char *dir, const char *name, char *err, size_t errlen);
/* Writes the records noted since the last call in one transaction (synced
 * when the mode is "always"). Cheap when there are none. */
void state_commit(void);
/* Commits, syncs and closes; the loop must have no state work left (run it
 * once more after stopping). */
void state_close(void);

typedef struct state_stats {
  uint64_t records_written;
  uint64_t commits;
  uint64_t syncs;
  uint64_t write_errors;
  uint64_t commit_us_max; /* longest commit on the loop ("always": synced) */
  uint64_t sync_us_last;  /* the last sync, and the longest */
  uint64_t sync_us_max;
  uint64_t bytes; /* the state file's pages in use */
} state_stats_t;
const state_stats_t *state_stats(void);

#endif
