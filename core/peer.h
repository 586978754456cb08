/* peer: the links between servers of a herd.
 * Owns the peer listener (on the server's peer_port, never the client port),
 * one link per neighbour named by the topology script (dialled out and
 * accepted in, deduplicated, redialled with backoff and jitter), the framed
 * peer wire format, the mutual HMAC-SHA256 challenge that authenticates a
 * link, flooding of records, and reconciliation of the record store when a
 * link comes up (a walk down the store's hash tree). Records that arrive go
 * to the scripts' on_record hook; the scripts decide what is new. */
#ifndef HERD_PEER_H
#define HERD_PEER_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"

typedef struct peer_stats {
  uint64_t frames_in, frames_out, bytes_in, bytes_out, records_in, records_out,
      records_stale, records_flooded, auth_failures, links_up, reconciles, sync_bytes_out;
} peer_stats_t;

/* Listens on the peer port and starts dialling every neighbour. */
int peer_start(uv_loop_t *loop, const config_t *cfg, int self,
               const int *neighbours, int n, char *err, size_t errlen);
void peer_shutdown(void);
void peer_flush_all(void);
/* Sends the stored record of client to every live link except the one to
 * the server named except (may be NULL). Returns the number of links. */
int peer_flood(const char *client, size_t len, const char *except);
/* Pushes { name = { state=, since_ms=, frames_in=, ... } } for the links. */
void peer_push_links(lua_State *L);
/* Cuts the link to name and refuses it for ms (tests, admin). */
int peer_cut(const char *name, unsigned ms);
const peer_stats_t *peer_stats(void);

#endif
