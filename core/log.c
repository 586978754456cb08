/* log: see log.h. */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define LOG_FLUSH_AT (64 * 1024) /* write early when this much is buffered */
/* The log holds every client's movements: private to the server's user and
 * group when herd creates it (an existing directory keeps its mode). */
#define LOG_DIR_MODE 0750
#define LOG_FILE_MODE 0640

static int log_fd = -1;
static off_t written, released; /* end of the file; dropped from the cache */
static char log_path[4096];
static int log_json;
static int log_io = 1; /* data lines (client IN/OUT) are written */
static buf_t log_buf;
#define STAMP_SECONDS 19      /* "2026-11-25T19:42:02" */
#define STAMP_LEN 27          /* and ".123456Z" */
static time_t stamp_sec = -1; /* second the cached text was made for */
static char stamp_text[32];
static int stamp_fresh; /* the cached stamp is this loop phase's */
/* Bytes copied as is, [0] in plain text, [1] in JSON (which also escapes
 * '"'); filled at the first use. */
static unsigned char plain_byte[2][256];

static void fill_plain_bytes(void) {
  for (int j = 0; j < 2; j++)
    for (int c = 0; c < 256; c++)
      plain_byte[j][c] = c >= 0x20 && c < 0x7f && c != '\\' && !(j && c == '"');
}

void log_set_io(int on) {
  log_io = on;
}

void log_set_json(int json) {
  log_json = json;
}

static int mkdir_p(const char *dir) {
  char path[4096];
  size_t n = strlen(dir);
  if (n == 0 || n >= sizeof path) return -1;
  memcpy(path, dir, n + 1);
  for (char *p = path + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(path, LOG_DIR_MODE) < 0 && errno != EEXIST) return -1;
    *p = '/';
  }
  if (mkdir(path, LOG_DIR_MODE) < 0 && errno != EEXIST) return -1;
  return 0;
}

int log_open(const char *dir, const char *name, char *err, size_t errlen) {
  char path[4096];
  if (mkdir_p(dir) < 0) {
    snprintf(err, errlen, "cannot create log directory %s: %s", dir,
             strerror(errno));
    return -1;
  }
  snprintf(path, sizeof path, "%s/%s.log", dir, name);
  snprintf(log_path, sizeof log_path, "%s", path);
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, LOG_FILE_MODE);
  if (fd < 0) {
    snprintf(err, errlen, "cannot open log %s: %s", path, strerror(errno));
    return -1;
  }
  log_fd = fd;
  written = released = lseek(fd, 0, SEEK_END); /* file offsets, for release */
  return 0;
}

/* The UTC timestamp with microseconds, "2026-11-25T19:42:02.123456Z".
 * Lines logged in the same loop phase (one batch of reads, say) share one
 * reading of the clock, taken at the first of them; the part up to the
 * second is formatted once per second. */
static const char *stamp(void) {
  if (!stamp_fresh) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != stamp_sec) {
      struct tm tm;
      gmtime_r(&ts.tv_sec, &tm);
      strftime(stamp_text, sizeof stamp_text, "%Y-%m-%dT%H:%M:%S", &tm);
      stamp_sec = ts.tv_sec;
    }
    long us = ts.tv_nsec / 1000;
    char *t = stamp_text + STAMP_SECONDS;
    t[0] = '.';
    for (int i = 6; i >= 1; i--, us /= 10)
      t[i] = (char)('0' + us % 10);
    t[7] = 'Z';
    stamp_fresh = 1;
  }
  return stamp_text;
}

/* Nonzero when any byte of w is below 0x20, above 0x7e, a backslash, or
 * (in JSON) a double quote: eight bytes checked at once, since nearly every
 * byte of a log line is plain. */
static uint64_t word_needs_escape(uint64_t w, int json) {
  const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
  uint64_t below = (w - ones * 0x20) & ~w; /* byte < 0x20 (or >= 0x80) */
  uint64_t above = (w + ones * (0x80 - 0x7f)) | w; /* byte >= 0x7f */
  uint64_t bs = w ^ (ones * '\\');
  uint64_t q = w ^ (ones * '"');
  uint64_t zero = ((bs - ones) & ~bs) | (json ? ((q - ones) & ~q) : 0);
  return (below | above | zero) & high;
}

/* Writes s escaped at p, so that a log entry is one printable line (JSON's
 * escapes when json, else C-like); returns the end. p has room for
 * ESCAPED_MAX(len) bytes. */
#define ESCAPED_MAX(len) (6 * (len))
static char *put_escaped(char *p, const char *s, size_t len, int json) {
  static const char hex[] = "0123456789abcdef";
  if (!plain_byte[0]['a']) fill_plain_bytes();
  size_t i = 0;
  while (i < len) {
    size_t run = i;
#ifdef __SSE2__
    /* Sixteen bytes at a time: a signed compare with 0x20 catches both the
     * control bytes and every byte >= 0x80. */
    const __m128i space = _mm_set1_epi8(0x20), del = _mm_set1_epi8(0x7f),
                  bs = _mm_set1_epi8('\\'),
                  quote = _mm_set1_epi8(json ? '"' : '\\');
    for (; run + 16 <= len; run += 16) {
      __m128i v = _mm_loadu_si128((const __m128i *)(s + run));
      __m128i bad = _mm_or_si128(
          _mm_or_si128(_mm_cmplt_epi8(v, space), _mm_cmpeq_epi8(v, del)),
          _mm_or_si128(_mm_cmpeq_epi8(v, bs), _mm_cmpeq_epi8(v, quote)));
      if (_mm_movemask_epi8(bad)) break;
    }
#endif
    for (uint64_t w; run + 8 <= len; run += 8) {
      memcpy(&w, s + run, 8);
      if (word_needs_escape(w, json)) break;
    }
    while (run < len && plain_byte[json][(unsigned char)s[run]])
      run++;
    memcpy(p, s + i, run - i); /* printable runs are copied whole */
    p += run - i;
    if (run == len) break;
    unsigned char c = (unsigned char)s[run];
    i = run + 1;
    *p++ = '\\';
    switch (c) {
      case '\n':
        *p++ = 'n';
        break;
      case '\r':
        *p++ = 'r';
        break;
      case '\t':
        *p++ = 't';
        break;
      case '\\':
        *p++ = '\\';
        break;
      case '"':
        *p++ = '"';
        break;
      default:
        if (json) {
          memcpy(p, "u00", 3);
          p += 3;
        } else {
          *p++ = 'x';
        }
        *p++ = hex[c >> 4];
        *p++ = hex[c & 15];
    }
  }
  return p;
}

static char *put(char *p, const char *s, size_t n) {
  memcpy(p, s, n);
  return p + n;
}

/* One entry, written straight into the buffer: room for the worst case is
 * made once, since this runs twice per request. */
static void put_entry(const char *tag, const char *who, const char *msg,
                      size_t len) {
  buf_t *b = &log_buf;
  size_t tag_len = strlen(tag), who_len = who ? strlen(who) : 0;
  buf_reserve(
      b, STAMP_LEN + tag_len + ESCAPED_MAX(who_len) + ESCAPED_MAX(len) + 48);
  char *p = b->data + b->len;
  if (log_json) {
    p = put(p, "{\"time\":\"", 9);
    p = put(p, stamp(), STAMP_LEN);
    p = put(p, "\",\"kind\":\"", 10);
    p = put(p, tag, tag_len);
    if (who) {
      p = put(p, "\",\"peer\":\"", 10);
      p = put_escaped(p, who, who_len, 1);
    }
    p = put(p, "\",\"msg\":\"", 9);
    p = put_escaped(p, msg, len, 1);
    p = put(p, "\"}\n", 3);
  } else {
    p = put(p, stamp(), STAMP_LEN);
    *p++ = ' ';
    p = put(p, tag, tag_len);
    *p++ = ' ';
    if (who) {
      p = put(p, who, who_len);
      *p++ = ' ';
    }
    p = put_escaped(p, msg, len, 0);
    *p++ = '\n';
  }
  b->len = (size_t)(p - b->data);
  if (log_fd < 0 || log_buf.len >= LOG_FLUSH_AT) log_flush();
}

void log_msg(log_level_t level, const char *fmt, ...) {
  static const char *names[] = {"INFO", "WARN", "ERROR"};
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  size_t len = (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1;
  if (level != LOG_INFO || log_fd < 0) {
    /* Escaped as in the file: a name from the network holding a newline
     * must not forge a line on stderr either. */
    char line[ESCAPED_MAX(sizeof msg) + 64];
    char *p = line + snprintf(line, 64, "herd: %s: ", names[level]);
    p = put_escaped(p, msg, len, 0);
    *p++ = '\n';
    fwrite(line, 1, (size_t)(p - line), stderr);
  }
  if (log_fd >= 0) put_entry(names[level], NULL, msg, len);
  if (level != LOG_INFO) log_flush(); /* trouble is handed over at once */
}

void log_data(const char *tag, const char *who, const char *data, size_t len) {
  if (log_fd < 0 || !log_io) return;
  put_entry(tag, who, data, len);
}

/* The writes themselves run on a thread of the log's own, the writer: the
 * loop hands it each batch (log_flush swaps the buffer into a queue) and
 * never waits for the disk. In the loop, a write of a 32-64 KiB batch took
 * up to 5 ms under load (page cache pages taken, dirty pages throttled),
 * and a log on a disk that stalls stalled every client with it. The queue
 * is bounded (LOG_QUEUE_MAX): past it the loop waits for the writer, as a
 * write in the loop would have. Warnings and errors are handed over at
 * once; a reopen and the close wait until everything queued is written
 * (log_drain), so a rotation splits the lines where it happened and
 * nothing is lost on SIGTERM. Without the thread (pthread_create failed)
 * the loop writes.
 *
 * A busy server logs 100 MB a second. Left alone, all of it stays in the
 * page cache, and the kernel's cost of taking fresh pages for it grew until
 * it took a fifth of the server's time (a VM's untouched memory is dear).
 * So every LOG_RELEASE bytes written, the writer hands the chunk just
 * written to writeback and drops the one before it, written back by then,
 * from the cache: the log keeps a few MiB of cache whatever its size. (In
 * the loop, starting the writeback and dropping the pages took up to 14 ms:
 * 15 of 2,500 releases over 4 ms while 5M clients were loaded.) */
#define LOG_RELEASE (8 << 20)
#define LOG_QUEUE_MAX (64 << 20) /* bytes handed to the writer, not written */
#define LOG_SPARE 8              /* emptied buffers kept for reuse */

typedef struct chunk {
  struct chunk *next;
  buf_t b;
} chunk_t;

static pthread_t wr_thread;
static pthread_mutex_t wr_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wr_work = PTHREAD_COND_INITIALIZER; /* to the writer */
static pthread_cond_t wr_done = PTHREAD_COND_INITIALIZER; /* from it */
static int wr_started, wr_failed, wr_stop, wr_busy;
static chunk_t *wr_head, *wr_tail, *wr_spare;
static size_t wr_queued, wr_nspare;

static void release_range(int fd, off_t end) {
  sync_file_range(fd, end - LOG_RELEASE, LOG_RELEASE, SYNC_FILE_RANGE_WRITE);
  posix_fadvise(fd, 0, end - LOG_RELEASE, POSIX_FADV_DONTNEED);
}

/* Writes len bytes at p to fd and releases what passed a LOG_RELEASE
 * boundary. On the writer (or, without it, in the loop). */
static void write_out(int fd, const char *p, size_t len) {
  size_t off = 0;
  while (off < len) {
    ssize_t n = write(fd, p + off, len - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break; /* disk full or gone: drop rather than grow forever */
    off += (size_t)n;
  }
  written += (off_t)off;
  if (written - released < 2 * LOG_RELEASE) return;
  off_t end = written - written % LOG_RELEASE;
  release_range(fd, end);
  released = end - LOG_RELEASE;
}

static void *writer_main(void *arg) {
  pthread_mutex_lock(&wr_mu);
  for (;;) {
    while (!wr_head && !wr_stop)
      pthread_cond_wait(&wr_work, &wr_mu);
    if (!wr_head) break; /* stopping, nothing left */
    chunk_t *c = wr_head;
    wr_head = c->next;
    if (!wr_head) wr_tail = NULL;
    int fd = log_fd; /* a reopen drains the queue before it changes */
    wr_busy = 1;
    pthread_mutex_unlock(&wr_mu);
    write_out(fd, c->b.data, c->b.len);
    pthread_mutex_lock(&wr_mu);
    wr_busy = 0;
    wr_queued -= c->b.len;
    c->b.len = 0;
    if (wr_nspare < LOG_SPARE) {
      c->next = wr_spare;
      wr_spare = c;
      wr_nspare++;
    } else {
      buf_free(&c->b);
      free(c);
    }
    pthread_cond_broadcast(&wr_done);
  }
  pthread_mutex_unlock(&wr_mu);
  return NULL;
}

/* The thread takes no signal: the loop's handlers stay on the loop. */
static int writer_start(void) {
  if (wr_failed) return -1;
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int rc = pthread_create(&wr_thread, NULL, writer_main, NULL);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  wr_started = rc == 0;
  wr_failed = rc != 0;
  return rc == 0 ? 0 : -1;
}

/* Waits until the writer has written everything handed to it. */
static void writer_wait(void) {
  if (!wr_started) return;
  pthread_mutex_lock(&wr_mu);
  while (wr_head || wr_busy)
    pthread_cond_wait(&wr_done, &wr_mu);
  pthread_mutex_unlock(&wr_mu);
}

static void writer_stop(void) {
  if (!wr_started) return;
  pthread_mutex_lock(&wr_mu);
  wr_stop = 1;
  pthread_cond_signal(&wr_work);
  pthread_mutex_unlock(&wr_mu);
  pthread_join(wr_thread, NULL);
  wr_started = wr_stop = 0;
  while (wr_spare) {
    chunk_t *c = wr_spare;
    wr_spare = c->next;
    buf_free(&c->b);
    free(c);
  }
  wr_nspare = 0;
}

int log_limit_due(log_limit_t *l, uint64_t now_ms, unsigned long *held) {
  if (l->last_ms && now_ms - l->last_ms < 1000) {
    l->held++;
    return 0;
  }
  *held = l->held;
  l->last_ms = now_ms;
  l->held = 0;
  return 1;
}

size_t log_pending(void) {
  return log_buf.len;
}

void log_tick(void) {
  stamp_fresh = 0;
}

void log_flush(void) {
  if (log_fd < 0 || !log_buf.len) {
    log_buf.len = 0;
    return;
  }
  if (!wr_started && writer_start() < 0) {
    write_out(log_fd, log_buf.data, log_buf.len);
    log_buf.len = 0;
    return;
  }
  pthread_mutex_lock(&wr_mu);
  while (wr_queued >= LOG_QUEUE_MAX) /* a disk slower than the log */
    pthread_cond_wait(&wr_done, &wr_mu);
  chunk_t *c = wr_spare;
  if (c) {
    wr_spare = c->next;
    wr_nspare--;
  } else {
    c = xcalloc(1, sizeof *c);
  }
  buf_t empty = c->b; /* the loop goes on in the spare's buffer */
  c->b = log_buf;
  log_buf = empty;
  c->next = NULL;
  if (wr_tail)
    wr_tail->next = c;
  else
    wr_head = c;
  wr_tail = c;
  wr_queued += c->b.len;
  pthread_cond_signal(&wr_work);
  pthread_mutex_unlock(&wr_mu);
}

void log_drain(void) {
  log_flush();
  writer_wait();
}

void log_reopen(void) {
  if (log_fd < 0) return;
  log_drain();
  int fd =
      open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, LOG_FILE_MODE);
  if (fd < 0) {
    log_warn("cannot reopen log %s: %s; writing on to the old file", log_path,
             strerror(errno));
    return;
  }
  close(log_fd);
  log_fd = fd;
  written = released = lseek(fd, 0, SEEK_END); /* file offsets, for release */
}

void log_close(void) {
  log_drain();
  writer_stop();
  if (log_fd >= 0) close(log_fd);
  log_fd = -1;
  buf_free(&log_buf);
}
