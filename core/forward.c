/* forward: see forward.h. */
#include "forward.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "log.h"
#include "peer.h"
#include "script.h"

/* A decision: flood (FLOODREC to every live link but the sender), or the
 * links to send a RECORD on (on[i]). */
typedef struct decision {
  int flood;
  uint8_t on[];
} decision_t;

#define RULE_NAME_MAX 32

static const config_t *cfg;
static int self = -1;
static forward_stats_t stats;
/* The cache: (nservers + 1) origins (the last: not a server) by
 * (nlinks + 1) incoming links (the last: this server's own record). */
static decision_t **cache;
static int cache_origins, cache_froms, cache_links;
static char rule[RULE_NAME_MAX] = "flood";
static int rule_known;

static void on_links(int link, int up);

void forward_init(const config_t *c, int s) {
  cfg = c;
  self = s;
  peer_set_links_handler(on_links);
}

static void cache_drop(void) {
  int n = cache_origins * cache_froms;
  for (int i = 0; i < n; i++)
    free(cache[i]);
  free(cache);
  cache = NULL;
  cache_origins = cache_froms = cache_links = 0;
}

static void on_links(int link, int up) {
  /* Decisions depend on which links are up. */
  cache_drop();
  if (up || !cfg) return;
  lua_State *L = script_current();
  if (L && script_push_hook(L, HOOK_FORWARD) == 0) {
    lua_pop(L, 1);
    /* A rule that sends a record on fewer links than a flood may have lost
     * records on this one that no other link carries, and that the
     * servers past it, whose links did not change, need too: the whole
     * herd pulls now, not at the next periodic reconciliation. */
    peer_pull_herd();
  }
}

void forward_reset(void) {
  cache_drop();
  rule_known = 0;
}

/* The cache, built empty after it was dropped. */
static void cache_ready(void) {
  int links = peer_link_count();
  if (cache && cache_links == links && cache_origins == cfg->nservers + 1)
    return;
  cache_drop();
  cache_links = links;
  cache_origins = cfg->nservers + 1;
  cache_froms = links + 1;
  cache = xcalloc((size_t)cache_origins * (size_t)cache_froms, sizeof *cache);
}

/* The index of the server named by the second field of line, or
 * cfg->nservers when it names none. */
static int origin_of(const char *line, size_t ln) {
  size_t i = 0;
  while (i < ln && line[i] != ' ')
    i++;
  size_t start = ++i;
  while (i < ln && line[i] != ' ')
    i++;
  if (start >= ln) return cfg->nservers;
  size_t n = i - start;
  for (int k = 0; k < cfg->nservers; k++) {
    const char *name = cfg->servers[k].name;
    if (strlen(name) == n && memcmp(name, line + start, n) == 0) return k;
  }
  return cfg->nservers;
}

typedef struct ask {
  int origin, from;
} ask_t;

/* forward(origin, from, live), pushed inside the protected call. */
static int push_forward(lua_State *L, void *ud) {
  const ask_t *a = ud;
  script_push_hook(L, HOOK_FORWARD);
  if (a->origin < cfg->nservers)
    lua_pushstring(L, cfg->servers[a->origin].name);
  else
    lua_pushnil(L);
  if (a->from < cache_links)
    lua_pushstring(L, peer_link_name(a->from));
  else
    lua_pushnil(L);
  lua_createtable(L, cache_links, 0);
  int n = 0;
  for (int i = 0; i < cache_links; i++)
    if (peer_link_up(i)) {
      lua_pushstring(L, peer_link_name(i));
      lua_rawseti(L, -2, ++n);
    }
  return 3;
}

/* Reads the hook's answer (list or "flood", then the rule's name) into d.
 * -1 when it is neither. */
static int read_answer(lua_State *L, decision_t *d) {
  snprintf(rule, sizeof rule, "%s",
           lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "script");
  rule_known = 1;
  if (lua_type(L, -2) == LUA_TSTRING &&
      strcmp(lua_tostring(L, -2), "flood") == 0) {
    d->flood = 1;
    return 0;
  }
  if (!lua_istable(L, -2)) return -1;
  for (lua_Integer k = 1; k <= cache_links; k++) {
    if (lua_rawgeti(L, -2, k) != LUA_TSTRING) {
      lua_pop(L, 1);
      break;
    }
    int i = peer_link_find(lua_tostring(L, -1));
    if (i >= 0) d->on[i] = 1; /* names that are no link are ignored */
    lua_pop(L, 1);
  }
  return 0;
}

/* The decision for (origin, from): the built-in flood without a hook,
 * else the hook's (a failing or malformed hook floods, once per cache). */
static const decision_t *decide(int origin, int from) {
  decision_t **slot = &cache[origin * cache_froms + from];
  if (*slot) return *slot;
  decision_t *d = xcalloc(1, sizeof *d + (size_t)cache_links + 1);
  lua_State *L = script_current();
  if (script_push_hook(L, HOOK_FORWARD) < 0) {
    memset(d->on, 1, (size_t)cache_links); /* the built-in flood */
    snprintf(rule, sizeof rule, "flood");
    rule_known = 1;
  } else {
    lua_pop(L, 1);
    stats.rule_calls++;
    ask_t a = {origin, from};
    if (script_run(L, push_forward, &a, 2, "forward") < 0) {
      memset(d->on, 1, (size_t)cache_links);
    } else {
      if (read_answer(L, d) < 0) {
        log_warn(
            "forward: the hook returned a %s, not a list of names or "
            "\"flood\": flooding",
            luaL_typename(L, -2));
        memset(d->on, 1, (size_t)cache_links);
      }
      lua_pop(L, 2);
    }
  }
  *slot = d;
  return d;
}

/* Sends r as a FLOODREC to every live link but from, once per version: a
 * fallback flood ends where every server has flooded it on once, however
 * many cycles the links make. (A bounded table of the versions flooded let
 * a burst evict them, and under a 200k/s burst records kept circling a
 * five-server herd, a core busy for seconds after the load had stopped.) */
static int flood_out(const char *from, const store_rec_t *r) {
  if (store_mark_flooded(r)) return 0;
  stats.fallback_floods++;
  return peer_forward(r, NULL, from, 1);
}

int forward_record(const char *from, const char *client, size_t cn,
                   const char *line, size_t ln, int flood) {
  if (!cfg) return 0;
  const store_rec_t *r = store_get(client, cn);
  if (!r) return 0;
  if (flood) return flood_out(from, r);
  cache_ready();
  int in = from ? peer_link_find(from) : cache_links;
  if (in < 0) in = cache_links;
  int origin = from ? origin_of(line, ln) : self;
  const decision_t *d = decide(origin, in);
  if (d->flood) return flood_out(from, r);
  return peer_forward(r, d->on, from, 0);
}

void forward_flood_again(const char *from, const store_rec_t *r) {
  if (cfg) flood_out(from, r);
}

const char *forward_rule(void) {
  if (!rule_known && cfg && script_current()) {
    cache_ready();
    decide(self, cache_links);
  }
  return rule;
}

const forward_stats_t *forward_stats(void) {
  return &stats;
}
