/* forward: the dissemination rule, which live links a new record goes on.
 * Owns the decisions of the topology script's forward hook, cached per
 * (origin, incoming link): the hook is asked on a miss only, and the cache
 * is dropped when a link comes up or goes down and when the scripts are
 * reloaded, so a record costs a lookup in C. The origin is the server
 * that took the IAMAT (the AT line's second field; this server for its
 * own records). Without a forward hook the rule is the built-in flood
 * (every live link but the sender), with no Lua at all.
 * Also owns the fallback flood: a decision "flood" sends the record as a
 * FLOODREC to every live link but the sender, and a server that receives
 * one floods it on the same way once per record version (a mark on the
 * stored record), even when it already held the record, so a
 * fallback reaches every server the links still connect. When a link goes
 * down under a rule of a script, the whole herd pulls at once
 * (peer_pull_herd), for the records that were on their way over the lost
 * link: they may have been queued there only (a drop over peer_out_max
 * loses megabytes, the kernel's buffers included), and the servers below
 * it in the tree need them too, though none of their links changed. Pulls
 * at the two ends only, even repeated after a delay, cannot reach those;
 * flooding the lost records again would need the sender to know which
 * ones the neighbour's kernel never took, and would send them at once, past
 * peer_out_max on the other links; a herd-wide pull moves only what each
 * server lacks, under reconciliation's flow control. */
#ifndef HERD_FORWARD_H
#define HERD_FORWARD_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "store.h"

typedef struct forward_stats {
  uint64_t rule_calls;      /* decisions the topology script was asked for */
  uint64_t fallback_floods; /* records this server flooded as a fallback */
} forward_stats_t;

/* cfg (the running config, whose servers may be origins) and self. */
void forward_init(const config_t *cfg, int self);
/* Drops the decisions and the rule's name: the scripts were reloaded. */
void forward_reset(void);
/* Forwards the stored record of client, which came from the neighbour
 * named from (NULL: this server's own); line is the record's line, for its
 * origin; flood: it came as a FLOODREC. Returns the number of links. */
int forward_record(const char *from, const char *client, size_t cn,
                   const char *line, size_t ln, int flood);
/* A FLOODREC that carried the stored record r itself: floods r on to
 * every live link but from, unless this server flooded it already. */
void forward_flood_again(const char *from, const store_rec_t *r);
/* The running rule's name: "flood" (built in), or what the forward hook
 * says ("tree", or an operator's own). */
const char *forward_rule(void);
const forward_stats_t *forward_stats(void);

#endif
