/* log: the server's log file, <log_dir>/<NAME>.log.
 * Owns the file descriptor, an output buffer and the writer thread. Lines
 * are buffered and handed to the writer in batches (the loop hands over at
 * most once per LOG_DELAY_MS, or at LOG_BATCH bytes, see main.c), so the
 * loop never waits for the disk (unless LOG_QUEUE_MAX bytes wait for it);
 * warnings and errors are handed over at once, and a reopen and the exit
 * wait until the file has every line, so nothing is lost on SIGTERM.
 * Before log_open and for warnings and errors, lines also go to stderr,
 * escaped as in the file. The writer also releases written chunks from
 * the page cache (see log.c). */
#ifndef HERD_LOG_H
#define HERD_LOG_H

#include <stddef.h>
#include <stdint.h>

typedef enum { LOG_INFO, LOG_WARN, LOG_ERROR } log_level_t;

/* Opens (creating the directory, 0750, if needed) <dir>/<name>.log (0640
 * when created) for appending.
 * Returns 0, or -1 with a message in err. */
int log_open(const char *dir, const char *name, char *err, size_t errlen);
/* One formatted line: "<time> <LEVEL> <message>". */
void log_msg(log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
/* One data line: "<time> <tag> <who> <data>", data escaped so that control
 * bytes, backslashes and non-ASCII show as \n, \xNN, ... on one line. */
void log_data(const char *tag, const char *who, const char *data, size_t len);
#define LOG_BATCH (32 * 1024)
#define LOG_DELAY_MS 2
/* Hands what is buffered to the writer. */
void log_flush(void);
/* log_flush, then waits until the file has it all. */
void log_drain(void);
/* Bytes buffered and not yet written. */
size_t log_pending(void);
/* A new loop phase: the next line reads the clock again. */
void log_tick(void);
void log_close(void);
/* Opens the log path again (after a rotation renamed the file). */
void log_reopen(void);
/* At most one line a second for a kind of warning that may come in a
 * flood (refused connections, refused records): log_limit_due says
 * whether one is due at now_ms; if so *held is how many were held back
 * since the last, which the line should count, else this one is counted.
 * One zero-initialised log_limit_t per kind. */
typedef struct log_limit {
  uint64_t last_ms;
  unsigned long held;
} log_limit_t;
int log_limit_due(log_limit_t *l, uint64_t now_ms, unsigned long *held);
/* Whether log_data lines (client IN/OUT) are written: config log_io. */
void log_set_io(int on);
/* Plain lines instead of JSON lines (the default); see README. */
void log_set_json(int json);

#endif
