/* log: see log.h. */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"

#define LOG_FLUSH_AT (64 * 1024) /* write early when this much is buffered */

static int log_fd = -1;
static char log_path[4096];
static int log_json;
static buf_t log_buf;
static time_t stamp_sec = -1; /* second the cached prefix was made for */
static char stamp_prefix[32]; /* "2026-11-25T19:42:02" */
static char stamp_tail[9];    /* ".123456Z" */
static int stamp_fresh;       /* the cached stamp is this loop phase's */
static unsigned char plain_byte[256]; /* copied as is; set by log_set_json */

void log_set_json(int json) {
  log_json = json;
  for (int c = 0; c < 256; c++)
    plain_byte[c] = c >= 0x20 && c < 0x7f && c != '\\' && !(json && c == '"');
}

static int mkdir_p(const char *dir) {
  char path[4096];
  size_t n = strlen(dir);
  if (n == 0 || n >= sizeof path) return -1;
  memcpy(path, dir, n + 1);
  for (char *p = path + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(path, 0755) < 0 && errno != EEXIST) return -1;
    *p = '/';
  }
  if (mkdir(path, 0755) < 0 && errno != EEXIST) return -1;
  return 0;
}

int log_open(const char *dir, const char *name, char *err, size_t errlen) {
  char path[4096];
  log_set_json(log_json); /* fills the escape table */
  if (mkdir_p(dir) < 0) {
    snprintf(err, errlen, "cannot create log directory %s: %s", dir,
             strerror(errno));
    return -1;
  }
  snprintf(path, sizeof path, "%s/%s.log", dir, name);
  snprintf(log_path, sizeof log_path, "%s", path);
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    snprintf(err, errlen, "cannot open log %s: %s", path, strerror(errno));
    return -1;
  }
  log_fd = fd;
  return 0;
}

/* Appends the UTC timestamp with microseconds. Lines logged in the same
 * loop phase (one batch of reads, say) share one reading of the clock,
 * taken at the first of them; the part up to the second is formatted once
 * per second. */
static void put_stamp(buf_t *b) {
  if (!stamp_fresh) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != stamp_sec) {
      struct tm tm;
      gmtime_r(&ts.tv_sec, &tm);
      strftime(stamp_prefix, sizeof stamp_prefix, "%Y-%m-%dT%H:%M:%S", &tm);
      stamp_sec = ts.tv_sec;
    }
    memcpy(stamp_tail, ".000000Z", 9);
    long us = ts.tv_nsec / 1000;
    for (int i = 6; i >= 1; i--, us /= 10)
      stamp_tail[i] = (char)('0' + us % 10);
    stamp_fresh = 1;
  }
  buf_append_str(b, stamp_prefix);
  buf_append(b, stamp_tail, 8);
}

/* Escapes bytes so that a log entry is one printable line. In JSON mode the
 * escapes are JSON's; otherwise C-like. */
/* Nonzero when any byte of w is below 0x20, above 0x7e, a backslash, or
 * (in JSON) a double quote: eight bytes checked at once, since nearly every
 * byte of a log line is plain. */
static uint64_t word_needs_escape(uint64_t w) {
  const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
  uint64_t below = (w - ones * 0x20) & ~w; /* byte < 0x20 (or >= 0x80) */
  uint64_t above = (w + ones * (0x80 - 0x7f)) | w; /* byte >= 0x7f */
  uint64_t bs = w ^ (ones * '\\');
  uint64_t q = w ^ (ones * '"');
  uint64_t zero = ((bs - ones) & ~bs) | (log_json ? ((q - ones) & ~q) : 0);
  return (below | above | zero) & high;
}

static void put_escaped(buf_t *b, const char *s, size_t len) {
  static const char hex[] = "0123456789abcdef";
  size_t i = 0;
  while (i < len) {
    size_t run = i;
    for (uint64_t w; run + 8 <= len; run += 8) {
      memcpy(&w, s + run, 8);
      if (word_needs_escape(w)) break;
    }
    while (run < len && plain_byte[(unsigned char)s[run]])
      run++;
    buf_append(b, s + i, run - i); /* copy printable runs whole */
    if (run == len) break;
    unsigned char c = (unsigned char)s[run];
    i = run + 1;
    char e[8];
    size_t n = 2;
    e[0] = '\\';
    switch (c) {
      case '\n':
        e[1] = 'n';
        break;
      case '\r':
        e[1] = 'r';
        break;
      case '\t':
        e[1] = 't';
        break;
      case '\\':
        e[1] = '\\';
        break;
      case '"':
        e[1] = '"';
        break;
      default:
        if (log_json) {
          memcpy(e, "\\u00", 4);
          e[4] = hex[c >> 4];
          e[5] = hex[c & 15];
          n = 6;
        } else {
          e[1] = 'x';
          e[2] = hex[c >> 4];
          e[3] = hex[c & 15];
          n = 4;
        }
    }
    buf_append(b, e, n);
  }
}

static void put_entry(const char *tag, const char *who, const char *msg,
                      size_t len) {
  buf_t *b = &log_buf;
  if (log_json) {
    buf_append_str(b, "{\"time\":\"");
    put_stamp(b);
    buf_append_str(b, "\",\"kind\":\"");
    buf_append_str(b, tag);
    if (who) {
      buf_append_str(b, "\",\"peer\":\"");
      put_escaped(b, who, strlen(who));
    }
    buf_append_str(b, "\",\"msg\":\"");
    put_escaped(b, msg, len);
    buf_append_str(b, "\"}\n");
  } else {
    put_stamp(b);
    buf_append(b, " ", 1);
    buf_append_str(b, tag);
    buf_append(b, " ", 1);
    if (who) {
      buf_append_str(b, who);
      buf_append(b, " ", 1);
    }
    put_escaped(b, msg, len);
    buf_append(b, "\n", 1);
  }
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
  if (level != LOG_INFO || log_fd < 0)
    fprintf(stderr, "herd: %s: %.*s\n", names[level], (int)len, msg);
  if (log_fd >= 0) put_entry(names[level], NULL, msg, len);
}

void log_data(const char *tag, const char *who, const char *data, size_t len) {
  if (log_fd < 0) return;
  put_entry(tag, who, data, len);
}

void log_flush(void) {
  size_t off = 0;
  stamp_fresh =
      0; /* called at every loop phase: the next line reads the clock */
  if (log_fd < 0) {
    log_buf.len = 0;
    return;
  }
  while (off < log_buf.len) {
    ssize_t n = write(log_fd, log_buf.data + off, log_buf.len - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break; /* disk full or gone: drop rather than grow forever */
    off += (size_t)n;
  }
  log_buf.len = 0;
}

void log_reopen(void) {
  if (log_fd < 0) return;
  log_flush();
  int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    log_warn("cannot reopen log %s: %s; writing on to the old file", log_path,
             strerror(errno));
    return;
  }
  close(log_fd);
  log_fd = fd;
}

void log_close(void) {
  log_flush();
  if (log_fd >= 0) close(log_fd);
  log_fd = -1;
  buf_free(&log_buf);
}
