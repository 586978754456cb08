/* http: asynchronous HTTP(S) client requests for the scripts.
 * Owns one libcurl multi handle driven by the libuv loop (one uv_timer_t for
 * curl's timeouts, a uv_check_t and a uv_idle_t for its "act now" zero
 * timeouts, one uv_poll_t per socket descriptor curl asks us to watch,
 * kept stopped while its connection idles in curl's cache: the
 * pattern of curl's docs/examples/multi-uv.c), every request in flight and
 * the Lua callback reference each one holds. No threads of ours and no
 * blocking call; connections and DNS answers are cached in the multi handle
 * and reused. Lua is never called from inside a libcurl callback: finished
 * transfers are collected after curl_multi_socket_action returns, removed
 * from the multi handle, and only then handed to their Lua callbacks.
 * Loop-thread only. */
#ifndef HERD_HTTP_H
#define HERD_HTTP_H

#include <lua.h>
#include <stddef.h>
#include <uv.h>

#define HTTP_TIMEOUT_MS 10000           /* default per-request timeout    */
#define HTTP_MAX_TIMEOUT_MS 300000      /* largest timeout_ms accepted    */
#define HTTP_MAX_BYTES (4 << 20)        /* default cap on headers + body  */
#define HTTP_MAX_BYTES_LIMIT (64 << 20) /* largest max_bytes accepted     */
#define HTTP_MAX_IN_FLIGHT 10000        /* requests at once, then refused */
#define HTTP_SPARE_EASY 256 /* finished easy handles kept to reuse */
#define HTTP_MAX_IDLE_CONNS                                                   \
  1024 /* idle connections kept for reuse: a burst of this many queries finds \
          them open */

typedef struct http_stats {
  uint64_t started, completed, failed; /* failed: an error or a too-big body */
  uint64_t latency_us_total, latency_us_max; /* of completed requests */
} http_stats_t;

void http_get_stats(http_stats_t *out);

/* Sets up libcurl and the multi handle on loop. Returns 0, or -1 with a
 * message in err. */
int http_init(uv_loop_t *loop, char *err, size_t errlen);
/* Cancels every request without calling Lua (releasing their callback
 * references, so call it before script_close), cleans up libcurl and closes
 * the uv handles, so that the loop can finish. Safe to call twice. */
void http_shutdown(void);
/* Cancels, without calling back, every request whose callback lives in L
 * (for a script reload that drops the old state). */
void http_cancel_state(lua_State *L);
/* Adds `http` and `http_cancel` to the table on top of L's stack:
 *   core.http({method=, url=, headers={Name="v"}, body=, timeout_ms=,
 *              max_bytes=}, function(resp, err) end) -> id | nil, err
 *   resp = {status=, headers={lowercased name = value}, body=}
 *   core.http_cancel(id) -> true if it was pending (never calls back) */
void http_lua_register(lua_State *L);
/* Requests started and not yet called back or cancelled. */
long http_in_flight(void);
/* The same, for the requests whose callbacks live in L. */
long http_in_flight_for(lua_State *L);

#endif
