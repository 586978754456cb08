/* metrics: the server's counters and the Prometheus endpoint.
 * Owns the one list of stats (name, counter or gauge, help text, where the
 * value comes from) that both core.stats (so `herd ctl stats`) and
 * GET /metrics print, so the two cannot drift (the service-time
 * histograms are core/hist.c's); and the optional HTTP listener on metrics_port
 * with its connections. The listener answers GET /metrics in the Prometheus
 * text format 0.0.4 and 404 to anything else, one response per connection, on
 * the server's loop: a response is rendered in one pass over counters
 * (no I/O, no Lua), requests are capped in size, connections in number
 * and in lifetime, so a hostile scraper costs a bounded amount and never
 * blocks the loop. Loop-thread only. */
#ifndef HERD_METRICS_H
#define HERD_METRICS_H

#include <lua.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "config.h"

#define METRICS_MAX_REQUEST 4096  /* bytes of request line + headers */
#define METRICS_MAX_CONNS 8       /* scrapers at once; more are closed */
#define METRICS_LIFETIME_MS 10000 /* request in and response out by then */

/* Counts one event loop turn of ns nanoseconds (waiting in the poll
 * excluded): loop_turn_us_max and herd_loop_turn_seconds. */
void metrics_count_turn(uint64_t ns);
/* Counts a script reload that succeeded (ok) or was refused. */
void metrics_count_reload(int ok);
/* Pushes { name = value } for every stat (core.stats). */
void metrics_push_stats(lua_State *L);
/* Appends the /metrics text for this server to out. */
void metrics_render(buf_t *out);
/* Remembers what the info gauge shows, and listens on the server's
 * metrics_host:metrics_port when it has one. Returns 0 or -1 with a
 * message in err. */
int metrics_start(uv_loop_t *loop, const config_t *cfg, int self, char *err,
                  size_t errlen);
/* Stops listening and closes every scraper's connection. */
void metrics_shutdown(void);

#endif
