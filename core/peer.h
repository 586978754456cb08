/* peer: the links between servers of a herd.
 * Owns the peer listener (on the server's peer_port, never the client port),
 * one link per neighbour named by the topology script (dialled out and
 * accepted in, deduplicated, redialled with backoff and jitter), their TLS
 * 1.3 trust (herd-secret PSK or certificates, through core/tls.c), the
 * admission of unauthenticated connections, the framed peer wire format,
 * flooding of records, and reconciliation of the record store (each side
 * pulls what it lacks down the store's hash tree, in bounded slices with
 * flow control, when a link comes up and periodically). Records that arrive
 * are handed up to the record handler (core/records.c registers it); what
 * a record must look like and whether it is stored is not this module's
 * business. */
#ifndef HERD_PEER_H
#define HERD_PEER_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "store.h"

typedef struct peer_stats {
  uint64_t frames_in, frames_out, bytes_in, bytes_out, records_in, records_out,
      records_flooded, auth_failures, links_up, reconciles, sync_bytes_out,
      records_forwarded, out_drops, handshakes_evicted, handshake_timeouts,
      peers_refused, pull_alls,
      records_diverged; /* a gauge: refused as full at the last pulls */
} peer_stats_t;

/* Sets the reconciliation tree's first key (derived from the first secret,
 * random with certificates only, a constant when insecure). Called before
 * a state is loaded, so the records are keyed once, not rekeyed at
 * peer_start; peer_start calls it when nobody did. 0 or -1. */
int peer_tree_key_init(const config_t *cfg);
/* Listens on the peer port and starts dialling every neighbour. */
int peer_start(uv_loop_t *loop, const config_t *cfg, int self,
               const int *neighbours, int n, char *err, size_t errlen);
void peer_shutdown(void);
/* Takes the config's secret list (at start and at each reload): the first
 * is offered when dialling, any is accepted. 0, or -1 (kept as it was). */
int peer_set_secrets(const config_t *cfg);
/* Whether links run without TLS (insecure = true). */
int peer_insecure(void);
void peer_flush_all(void);
/* Sends the stored record of client to every live link except the one to
 * the server named except (may be NULL), for core.flood (counted in
 * records_flooded). Returns the number of links. */
int peer_flood(const char *client, size_t len, const char *except);
/* Sends r on each live link i with on[i] set (every live link when on is
 * NULL) except the one to the server named except: as a RECORD, or with
 * flood set as a FLOODREC, which the receiver floods on too. For the
 * forwarding rule (core/forward.c); counted in records_forwarded. Returns
 * the number of links. */
int peer_forward(const store_rec_t *r, const uint8_t *on, const char *except,
                 int flood);
/* The links, 0 .. peer_link_count() - 1, in the order of the neighbours
 * given to peer_start: each one's server name and whether it is up now. */
int peer_link_count(void);
const char *peer_link_name(int i);
int peer_link_up(int i);
/* The index of the link to the server named name, or -1. */
int peer_link_find(const char *name);
/* Called with a link's index when it comes up (up 1) or goes down (0),
 * before the scripts' on_link hook. */
typedef void (*peer_links_fn)(int link, int up);
void peer_set_links_handler(peer_links_fn fn);
/* Starts a reconciliation pull on every live link (or asks the running
 * one to go again). */
void peer_pull_all(void);
/* Starts a herd-wide pull: a PULLALL frame goes to every live link and
 * every server that receives it passes it on (once) and pulls from every
 * live link of its own, so records that only a lost link was carrying
 * reach, from any server that holds them, the servers past the loss whose
 * links did not change. Each frame follows, on its link, everything sent
 * on it before, so a server pulls from a neighbour that already holds
 * what it was sent. */
void peer_pull_herd(void);
/* What a reconciliation pull's records came to: stored, refused as full. */
typedef struct peer_tally {
  uint64_t stored, refused;
} peer_tally_t;
/* Takes a record a neighbour sent: from the neighbour named from, client
 * reporting at sec.nsec, line as received; sync is NULL for a forwarded
 * record, else the tally of the pull it came by (not to be forwarded);
 * flood is set when the sender flooded it as a fallback (FLOODREC). */
typedef void (*peer_record_fn)(const char *from, const char *client, size_t cn,
                               int64_t sec, int32_t nsec, const char *line,
                               size_t ln, peer_tally_t *sync, int flood);
/* Sets who takes received records (records.c); without one they are
 * counted and dropped. */
void peer_set_record_handler(peer_record_fn fn);
/* Pushes { name = { state=, since_ms=, frames_in=, ... } } for the links. */
void peer_push_links(lua_State *L);
/* Cuts the link to name and refuses it for ms (tests, admin). */
int peer_cut(const char *name, unsigned ms);
/* One link as metrics shows it. */
typedef struct peer_link_info {
  const char *name;
  int up;
  uint64_t frames_in, frames_out;
  size_t bytes_queued; /* written by us, not yet taken by the kernel */
} peer_link_info_t;
/* Calls fn for every link. */
void peer_each_link(void (*fn)(const peer_link_info_t *, void *), void *ud);
const peer_stats_t *peer_stats(void);

#endif
