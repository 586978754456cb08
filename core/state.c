/* state: see state.h.
 * On disk, one LMDB environment per server with two databases: "meta"
 * ("format" = STATE_FORMAT) and "records", one entry per client:
 *   key    the client id (up to KEY_DIRECT_MAX bytes), or for a longer id
 *          its first KEY_LONG_PREFIX bytes, a 0 byte and its SHA-256 (LMDB
 *          keys are at most 511 bytes; ids up to STORE_MAX_CLIENT)
 *   value  check (u64, SipHash-2-4 of the rest under a fixed key: catches
 *          damaged values), sec (i64), nsec (i32), client length (u16),
 *          client, AT line; integers little-endian */
#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/sysmacros.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "siphash.h"
#include "store.h"

#define STATE_FORMAT "herd-state 1"
#define KEY_DIRECT_MAX 480
#define KEY_LONG_PREFIX 448
#define KEY_MAX (KEY_LONG_PREFIX + 1 + 32)
#define VALUE_HEAD 22 /* check, sec, nsec, client length */
/* Address space only (the map is read-only and file-backed): room for
 * tens of millions of records without a resize. */
#define MAP_SIZE ((size_t)16 << 30)

static MDB_env *env;
static MDB_dbi records_dbi;
static char data_path[4200]; /* <dir>/<name>/data.mdb, for messages */
static int dir_fd = -1; /* holds the flock that keeps a second server out */
static state_sync_t sync_mode;
static uv_loop_t *state_loop;
static uv_timer_t sync_timer;
static uv_work_t sync_req;
static int sync_running, unsynced;
static buf_t pending; /* (u16 key length, key, u32 value length, value)* */
static size_t npending;
static state_stats_t stats;

static const uint8_t check_key_bytes[16] = "herd state check";

const char *state_sync_name(state_sync_t mode) {
  return mode == STATE_SYNC_ALWAYS ? "always"
         : mode == STATE_SYNC_OFF  ? "off"
                                   : "batch";
}

int state_sync_parse(const char *name) {
  if (strcmp(name, "batch") == 0) return STATE_SYNC_BATCH;
  if (strcmp(name, "always") == 0) return STATE_SYNC_ALWAYS;
  if (strcmp(name, "off") == 0) return STATE_SYNC_OFF;
  return -1;
}

const state_stats_t *state_stats(void) {
  return &stats;
}

static void put_le(uint8_t *p, uint64_t v, int n) {
  for (int i = 0; i < n; i++, v >>= 8)
    p[i] = (uint8_t)v;
}

static uint64_t get_le(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; i--)
    v = v << 8 | p[i];
  return v;
}

static size_t key_of(const char *client, size_t len, uint8_t out[KEY_MAX]) {
  if (len <= KEY_DIRECT_MAX) {
    memcpy(out, client, len);
    return len;
  }
  memcpy(out, client, KEY_LONG_PREFIX);
  out[KEY_LONG_PREFIX] = 0;
  EVP_Digest(client, len, out + KEY_LONG_PREFIX + 1, NULL, EVP_sha256(), NULL);
  return KEY_MAX;
}

static uint64_t check_of(const uint8_t *value, size_t len) {
  siphash_key_t k = siphash_key(check_key_bytes);
  return siphash24(&k, value + 8, len - 8);
}

/* The store noted a record: queue it for the next commit. */
static void note(const store_rec_t *r) {
  uint8_t key[KEY_MAX];
  size_t kn = key_of(STORE_CLIENT(r), r->client_len, key);
  size_t vn = VALUE_HEAD + r->client_len + r->line_len;
  buf_reserve(&pending, 2 + kn + 4 + vn);
  uint8_t *p = (uint8_t *)pending.data + pending.len;
  put_le(p, kn, 2);
  memcpy(p + 2, key, kn);
  p += 2 + kn;
  put_le(p, vn, 4);
  uint8_t *v = p + 4;
  put_le(v + 8, (uint64_t)r->sec, 8);
  put_le(v + 16, (uint64_t)(uint32_t)r->nsec, 4);
  put_le(v + 20, r->client_len, 2);
  memcpy(v + VALUE_HEAD, STORE_CLIENT(r), r->client_len);
  memcpy(v + VALUE_HEAD + r->client_len, STORE_LINE(r), r->line_len);
  put_le(v, check_of(v, vn), 8);
  pending.len += 2 + kn + 4 + vn;
  npending++;
}

static void write_failed(const char *what, int rc) {
  static log_limit_t limit;
  unsigned long held = 0;
  stats.write_errors++;
  if (!log_limit_due(&limit, state_loop ? uv_now(state_loop) : 0, &held))
    return;
  log_error(
      "state: %s %s failed: %s (%lu more since the last line); the "
      "records stay in memory",
      data_path, what, mdb_strerror(rc), held);
}

/* The state file's pages in use. */
static void note_size(void) {
  MDB_envinfo info;
  MDB_stat ms;
  if (mdb_env_info(env, &info) == 0 && mdb_env_stat(env, &ms) == 0)
    stats.bytes = (uint64_t)(info.me_last_pgno + 1) * ms.ms_psize;
}

/* The map's pages a write transaction read stay in this process's resident
 * set, though they are the page cache's (the map is read-only and
 * file-backed); left alone they would count the whole state file in the
 * server's memory, as much again as the records. They are let go now and
 * then (each costs a minor fault when touched again): a pass over the file
 * starts every MAP_DROP_MS and lets go of MAP_DROP_SLICE at each commit,
 * since one madvise over the whole file held the loop 4 ms at 1M records
 * (272 MB), growing with the file. */
#define MAP_DROP_MS 1000
#define MAP_DROP_SLICE ((size_t)8 << 20)
static char *map_addr;
static uint64_t map_dropped_at;
static size_t map_drop_next; /* where the pass under way has got to */
static int map_dropping;

/* LMDB does not tell where its map is (me_mapaddr is only set for a fixed
 * map): /proc/self/maps does, by the file's device and inode. */
static void find_map(void) {
  struct stat st;
  map_addr = NULL;
  if (stat(data_path, &st) < 0) return;
  FILE *f = fopen("/proc/self/maps", "r");
  if (!f) return;
  char line[4608];
  while (fgets(line, sizeof line, f)) {
    unsigned long lo, hi, off, ino;
    unsigned maj, min;
    char perms[8];
    if (sscanf(line, "%lx-%lx %7s %lx %x:%x %lu", &lo, &hi, perms, &off, &maj,
               &min, &ino) == 7 &&
        ino == st.st_ino && makedev(maj, min) == st.st_dev && off == 0 &&
        hi - lo == MAP_SIZE) {
      map_addr = (char *)lo;
      break;
    }
  }
  fclose(f);
}

static void drop_map_pages(void) {
  if (!map_addr) return;
  if (!map_dropping) {
    uint64_t now = uv_now(state_loop);
    if (now - map_dropped_at < MAP_DROP_MS) return;
    map_dropped_at = now;
    map_dropping = 1;
    map_drop_next = 0;
  }
  size_t end = stats.bytes, n = 0;
  if (end > map_drop_next) n = end - map_drop_next;
  if (n > MAP_DROP_SLICE) n = MAP_DROP_SLICE;
  if (n) madvise(map_addr + map_drop_next, n, MADV_DONTNEED);
  map_drop_next += n;
  if (map_drop_next >= end) map_dropping = 0;
}

void state_commit(void) {
  if (!npending || !env) return;
  uint64_t t0 = uv_hrtime();
  MDB_txn *txn;
  int rc = mdb_txn_begin(env, NULL, 0, &txn);
  if (rc) {
    write_failed("transaction", rc);
  } else {
    const uint8_t *p = (const uint8_t *)pending.data;
    const uint8_t *end = p + pending.len;
    while (p < end && rc == 0) {
      MDB_val k = {get_le(p, 2), (void *)(p + 2)};
      p += 2 + k.mv_size;
      MDB_val v = {get_le(p, 4), (void *)(p + 4)};
      p += 4 + v.mv_size;
      rc = mdb_put(txn, records_dbi, &k, &v, 0);
    }
    if (rc) {
      mdb_txn_abort(txn);
      write_failed("write", rc);
    } else if ((rc = mdb_txn_commit(txn)) != 0) {
      write_failed("commit", rc);
    } else {
      uint64_t us = (uv_hrtime() - t0) / 1000;
      stats.records_written += npending;
      stats.commits++;
      if (us > stats.commit_us_max) stats.commit_us_max = us;
      unsynced = 1;
      if (sync_mode == STATE_SYNC_ALWAYS) {
        stats.syncs++;
        stats.sync_us_last = us;
        if (us > stats.sync_us_max) stats.sync_us_max = us;
      }
      note_size();
    }
  }
  pending.len = 0;
  npending = 0;
  drop_map_pages();
}

/* The batch sync runs on the thread pool: fdatasync must not stall the
 * loop, and LMDB allows it beside a write transaction. */
static int sync_rc;
static uint64_t sync_us;

static void sync_work(uv_work_t *req) {
  uint64_t t0 = uv_hrtime();
  sync_rc = mdb_env_sync(env, 1);
  sync_us = (uv_hrtime() - t0) / 1000;
}

static void sync_done(uv_work_t *req, int status) {
  sync_running = 0;
  if (sync_rc) {
    write_failed("sync", sync_rc);
  } else if (status == 0) {
    stats.syncs++;
    stats.sync_us_last = sync_us;
    if (sync_us > stats.sync_us_max) stats.sync_us_max = sync_us;
  }
}

static void on_sync_timer(uv_timer_t *t) {
  if (!unsynced || sync_running) return;
  unsynced = 0;
  sync_running = 1;
  if (uv_queue_work(state_loop, &sync_req, sync_work, sync_done) != 0)
    sync_running = 0;
}

/* Records, loaded into the store (load) or only checked. Returns the
 * count, or -1 with err. */
static long walk(MDB_txn *txn, MDB_dbi dbi, int load, char *err,
                 size_t errlen) {
  MDB_cursor *cur;
  int rc = mdb_cursor_open(txn, dbi, &cur);
  if (rc) {
    snprintf(err, errlen, "%s: %s", data_path, mdb_strerror(rc));
    return -1;
  }
  MDB_stat ms;
  if (load && mdb_stat(txn, dbi, &ms) == 0)
    /* Values hold the client ids and lines, so their pages bound them. */
    store_load_begin(ms.ms_entries,
                     (ms.ms_leaf_pages + ms.ms_overflow_pages) * ms.ms_psize +
                         ms.ms_entries * (sizeof(store_rec_t) + 16));
  MDB_val k, v;
  long n = 0;
  unsigned long refused = 0;
  while ((rc = mdb_cursor_get(cur, &k, &v, n ? MDB_NEXT : MDB_FIRST)) == 0) {
    const uint8_t *p = v.mv_data;
    const char *why = NULL;
    uint8_t key[KEY_MAX];
    size_t cn = v.mv_size >= VALUE_HEAD ? get_le(p + 20, 2) : 0;
    int64_t sec = v.mv_size >= VALUE_HEAD ? (int64_t)get_le(p + 8, 8) : 0;
    int32_t nsec = v.mv_size >= VALUE_HEAD ? (int32_t)get_le(p + 16, 4) : 0;
    if (v.mv_size < VALUE_HEAD || get_le(p, 8) != check_of(p, v.mv_size))
      why = "damaged record";
    else if (cn == 0 || cn > STORE_MAX_CLIENT || VALUE_HEAD + cn >= v.mv_size)
      why = "bad client length";
    else if (key_of((const char *)p + VALUE_HEAD, cn, key) != k.mv_size ||
             memcmp(key, k.mv_data, k.mv_size) != 0)
      why = "record under the wrong key";
    if (!why && load) {
      /* Keys are unique and each is its client's (checked above), so
       * each record is a client of its own: no lookup. */
      int put = store_load((const char *)p + VALUE_HEAD, cn, sec, nsec,
                           (const char *)p + VALUE_HEAD + cn,
                           v.mv_size - VALUE_HEAD - cn);
      if (put == STORE_FULL)
        refused++;
      else if (put != 1)
        why = "malformed record";
    }
    if (why) {
      snprintf(err, errlen, "%s: corrupt state: %s (entry %ld)", data_path, why,
               n + 1);
      mdb_cursor_close(cur);
      if (load) store_load_end();
      return -1;
    }
    n++;
  }
  mdb_cursor_close(cur);
  if (load) store_load_end();
  if (rc != MDB_NOTFOUND) {
    snprintf(err, errlen, "%s: corrupt state: %s (after entry %ld)", data_path,
             mdb_strerror(rc), n);
    return -1;
  }
  if (refused)
    log_warn(
        "state: %lu of %ld records in %s not loaded: the store is full "
        "(limits.max_records)",
        refused, n, data_path);
  return n;
}

/* Opens the environment at path (read-only or not) and checks its format;
 * writes the format into a new one. Returns 0 or -1 with err (env closed). */
static int open_env(const char *path, int readonly, unsigned flags,
                    MDB_dbi *rec, char *err, size_t errlen) {
  struct stat st;
  off_t size_before = stat(data_path, &st) == 0 ? st.st_size : -1;
  int rc = mdb_env_create(&env);
  if (!rc) rc = mdb_env_set_maxdbs(env, 2);
  if (!rc) rc = mdb_env_set_mapsize(env, MAP_SIZE);
  if (!rc)
    rc = mdb_env_open(env, path,
                      flags | MDB_NOTLS | (readonly ? MDB_RDONLY : 0), 0640);
  if (rc) {
    snprintf(err, errlen, "%s: %s%s", data_path, mdb_strerror(rc),
             rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH
                 ? " (not a herd state file, or a damaged one)"
                 : "");
    goto fail;
  }
  /* A file cut short would make LMDB read past its end (SIGBUS): refuse
   * one shorter than its own last page says. */
  MDB_envinfo info;
  MDB_stat ms;
  mdb_env_info(env, &info);
  mdb_env_stat(env, &ms);
  if (size_before >= 0 &&
      (uint64_t)size_before < ((uint64_t)info.me_last_pgno + 1) * ms.ms_psize) {
    snprintf(err, errlen,
             "%s: corrupt state: truncated (%lld bytes, its pages need %llu)",
             data_path, (long long)size_before,
             (unsigned long long)(info.me_last_pgno + 1) * ms.ms_psize);
    goto fail;
  }
  MDB_txn *txn;
  rc = mdb_txn_begin(env, NULL, readonly ? MDB_RDONLY : 0, &txn);
  if (rc) {
    snprintf(err, errlen, "%s: %s", data_path, mdb_strerror(rc));
    goto fail;
  }
  MDB_dbi meta;
  unsigned create = readonly ? 0 : MDB_CREATE;
  rc = mdb_dbi_open(txn, "meta", create, &meta);
  MDB_val fk = {6, "format"}, fv;
  if (!rc) rc = mdb_get(txn, meta, &fk, &fv);
  if (rc == MDB_NOTFOUND && !readonly && info.me_last_pgno < 2) {
    fv.mv_size = strlen(STATE_FORMAT);
    fv.mv_data = STATE_FORMAT;
    rc = mdb_put(txn, meta, &fk, &fv, 0);
  }
  if (rc) {
    snprintf(err, errlen, "%s: corrupt state: no format record (%s)", data_path,
             mdb_strerror(rc));
    mdb_txn_abort(txn);
    goto fail;
  }
  if (fv.mv_size != strlen(STATE_FORMAT) ||
      memcmp(fv.mv_data, STATE_FORMAT, fv.mv_size) != 0) {
    snprintf(err, errlen,
             "%s: state format '%.*s', this herd reads '" STATE_FORMAT "'",
             data_path, (int)(fv.mv_size > 64 ? 64 : fv.mv_size),
             (const char *)fv.mv_data);
    mdb_txn_abort(txn);
    goto fail;
  }
  rc = mdb_dbi_open(txn, "records", create, rec);
  if (rc == MDB_NOTFOUND && readonly) {
    rc = 0; /* a state without records yet; 0 is never a named database */
    *rec = 0;
  }
  if (rc)
    mdb_txn_abort(txn);
  else
    rc = mdb_txn_commit(txn); /* keeps the handles, read-only or not */
  if (rc) {
    snprintf(err, errlen, "%s: %s", data_path, mdb_strerror(rc));
    goto fail;
  }
  return 0;
fail:
  mdb_env_close(env);
  env = NULL;
  return -1;
}

int state_open(uv_loop_t *loop, const char *dir, const char *name,
               state_sync_t mode, unsigned sync_ms, char *err, size_t errlen) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  snprintf(data_path, sizeof data_path, "%s/data.mdb", path);
  if ((mkdir(dir, 0750) < 0 && errno != EEXIST) ||
      (mkdir(path, 0750) < 0 && errno != EEXIST)) {
    snprintf(err, errlen, "state_dir %s: %s", path, strerror(errno));
    return -1;
  }
  dir_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0 || flock(dir_fd, LOCK_EX | LOCK_NB) < 0) {
    snprintf(
        err, errlen, "state_dir %s: %s", path,
        errno == EWOULDBLOCK ? "in use by another server" : strerror(errno));
    if (dir_fd >= 0) close(dir_fd);
    dir_fd = -1;
    return -1;
  }
  unsigned flags = mode == STATE_SYNC_ALWAYS ? 0 : MDB_NOSYNC;
  if (open_env(path, 0, flags, &records_dbi, err, errlen) < 0) goto fail;
  MDB_txn *txn;
  int rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
  if (rc) {
    snprintf(err, errlen, "%s: %s", data_path, mdb_strerror(rc));
    goto fail_env;
  }
  uint64_t t0 = uv_hrtime();
  long n = walk(txn, records_dbi, 1, err, errlen);
  mdb_txn_abort(txn);
  if (n < 0) goto fail_env;
  /* Reading the whole file brought its pages into this process's map;
   * they are the page cache's, not the server's (and LMDB does not tell
   * where its map is): a fresh map lets them go, so the state does not
   * count twice in the server's memory. */
  mdb_env_close(env);
  env = NULL;
  /* Serving touches a few pages per record: no readahead (the whole-file
   * scan above wanted it). */
  if (open_env(path, 0, flags | MDB_NORDAHEAD, &records_dbi, err, errlen) < 0)
    goto fail;
  log_info("state: %ld records loaded from %s in %.1f ms (state_sync %s)", n,
           data_path, (double)(uv_hrtime() - t0) / 1e6, state_sync_name(mode));
  sync_mode = mode;
  state_loop = loop;
  note_size();
  find_map();
  map_dropped_at = uv_now(loop);
  buf_init(&pending);
  store_on_change(note);
  if (mode == STATE_SYNC_BATCH) {
    uv_timer_init(loop, &sync_timer);
    uv_timer_start(&sync_timer, on_sync_timer, sync_ms, sync_ms);
    uv_unref((uv_handle_t *)&sync_timer);
  }
  return 0;
fail_env:
  mdb_env_close(env);
  env = NULL;
fail:
  close(dir_fd);
  dir_fd = -1;
  return -1;
}

long state_check(const char *dir, const char *name, char *err, size_t errlen) {
  char path[4096];
  struct stat st;
  snprintf(path, sizeof path, "%s/%s", dir, name);
  snprintf(data_path, sizeof data_path, "%s/data.mdb", path);
  if (stat(data_path, &st) < 0) return 0; /* no state yet */
  MDB_dbi rec;
  if (open_env(path, 1, 0, &rec, err, errlen) < 0) return -1;
  long n = 0;
  if (rec) {
    MDB_txn *txn;
    int rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
    if (rc) {
      snprintf(err, errlen, "%s: %s", data_path, mdb_strerror(rc));
      n = -1;
    } else {
      n = walk(txn, rec, 0, err, errlen);
      mdb_txn_abort(txn);
    }
  }
  mdb_env_close(env);
  env = NULL;
  return n;
}

void state_close(void) {
  if (!env) return;
  state_commit();
  store_on_change(NULL);
  int rc = mdb_env_sync(env, 1);
  if (rc) write_failed("sync", rc);
  mdb_env_close(env);
  env = NULL;
  buf_free(&pending);
  close(dir_fd);
  dir_fd = -1;
}
