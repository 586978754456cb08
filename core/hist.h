/* hist: the service-time histograms (IAMAT, WHATSAT, places HTTP, loop
 * turns), which conn.c, http.c and metrics.c count into and metrics.c
 * prints. A leaf module, so the modules that count do not depend on the one
 * that prints (metrics reads their stats). Loop-thread only. */
#ifndef HERD_HIST_H
#define HERD_HIST_H

#include <stddef.h>
#include <stdint.h>

typedef enum hist_kind {
  HIST_IAMAT,   /* an IAMAT line: read to reply given */
  HIST_WHATSAT, /* a WHATSAT line: read to reply given (provider incl.) */
  HIST_HTTP,    /* a core.http request: started to completed */
  HIST_TURN,    /* a loop turn: the loop's work between two polls */
  HIST_N
} hist_kind_t;

/* 50 µs to 10 s, in the usual 1-2.5-5 steps; le is the text /metrics
 * prints. */
#define HIST_NBOUNDS 17
typedef struct hist_bound {
  uint64_t ns;
  const char *le;
} hist_bound_t;
extern const hist_bound_t hist_bounds[HIST_NBOUNDS];

typedef struct hist {
  uint64_t bucket[HIST_NBOUNDS + 1]; /* per bucket, not cumulative; +Inf */
  uint64_t count, sum_ns;
} hist_t;

/* Counts one duration. */
void hist_observe(hist_kind_t which, uint64_t ns);
const hist_t *hist_get(hist_kind_t which);

#endif
