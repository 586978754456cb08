/* conn: the client listeners and client connections.
 * Owns the listening sockets (the plain port and the optional tls_port,
 * whose connections run the same protocol inside TLS through tls.c), every
 * client connection (its TLS engine, its line framing, its
 * queue of replies kept in request order, its output buffers) and the limits
 * on them. Each complete line goes to the scripts' on_line hook; a reply can
 * be given at once or deferred (conn_defer/conn_answer) and still leaves in
 * request order. Output is batched per connection and written once per loop
 * iteration (conn_flush_all). Lua sees connections as integer ids. */
#ifndef HERD_CONN_H
#define HERD_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "tls.h"

typedef struct conn_limits {
  size_t max_line;        /* bytes in one line, without its newline     */
  size_t out_pause;       /* unsent bytes at which reading pauses       */
  unsigned max_conns;     /* client connections in total               */
  unsigned max_per_addr;  /* client connections from one address       */
  unsigned first_line_ms; /* deadline for the first complete line (on
                             the tls_port, the TLS handshake included)  */
  unsigned idle_ms;       /* no input and no output for this long      */
  unsigned stall_ms;      /* a write that makes no progress this long  */
} conn_limits_t;

typedef struct conn_stats {
  uint64_t accepted, refused, open, lines_in, replies_out, bytes_in, bytes_out,
      script_errors, too_long, timeouts;
  uint64_t tls_open, tls_accepted, tls_failures; /* the tls_port */
} conn_stats_t;

/* Listens on host:port for clients and, when tls_port is not 0, on
 * host:tls_port for clients speaking TLS with tls (tls_ctx_server), which
 * stays the caller's and must outlive conn_shutdown's last loop turn. The
 * TLS port opens first: once the plain port accepts, both do. 0 or -1
 * with a message. */
int conn_listen(uv_loop_t *loop, const char *host, int port, int tls_port,
                tls_ctx_t *tls, const conn_limits_t *limits, char *err,
                size_t errlen);
/* Writes every connection's pending output; called each loop iteration. */
void conn_flush_all(void);
/* Starts a loop turn, before the poll: connections that used up their
 * lines in the last one (LINES_PER_TURN) go on with the lines they sent. */
void conn_next_turn(void);
/* Stops listening and closes every connection (after a last flush). */
void conn_shutdown(void);
const conn_stats_t *conn_stats(void);

/* For the Lua API. Ids and tokens of closed connections are ignored
 * (return -1). */
int conn_send(uint64_t id, const char *data, size_t len);
int conn_close_id(uint64_t id);
/* During an on_line call: makes that line's reply asynchronous. Returns the
 * token for conn_answer, or 0 when not inside on_line. */
uint64_t conn_defer(void);
int conn_answer(uint64_t token, const char *data, size_t len);
const char *conn_addr(uint64_t id);
/* The address a name stands for, for listening and dialling alike: its
 * first IPv4 address, else its first (so "localhost" is 127.0.0.1 even
 * where ::1 sorts first, and both ends of a link agree). */
const struct addrinfo *conn_pick_address(const struct addrinfo *list);
/* host (an address, or a DNS name resolved now, blocking: start-up only)
 * and port into ss. 0 or -1. */
int conn_resolve(uv_loop_t *loop, const char *host, int port,
                 struct sockaddr_storage *ss);
/* "1.2.3.4:5" or "[::1]:5" into out (at least 64 bytes). */
void conn_format_addr(const struct sockaddr_storage *ss, char *out, size_t n);

#endif
