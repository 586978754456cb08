/* script: see script.h. */
#include "script.h"

#include <lauxlib.h>
#include <lualib.h>
#include <errno.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "log.h"

#define BUDGET_STEP 1000  /* instructions between two budget checks */
#define WATCHDOG_US 10000 /* CPU time between two looks at the running call */
/* The budget is CPU time too: a loop whose few instructions each call a
 * costly C function (string.rep of a megabyte) would run for hours on
 * instructions alone. A call may take 1 ms of CPU per INSTR_PER_MS
 * instructions of its budget, and at least MIN_CPU_MS: far more than its
 * instructions need (some 400,000 a millisecond), so only such loops meet
 * it, while C work a script may well do (filling its heap, parsing a big
 * answer) runs its course. */
#define INSTR_PER_MS 10000
#if defined(__SANITIZE_ADDRESS__) /* C work runs some 5 times slower */
#define MIN_CPU_MS 5000
#else
#define MIN_CPU_MS 1000
#endif

int luaopen_core(lua_State *L);     /* lua_core.c */
int luaopen_herdtext(lua_State *L); /* herdtext.c */

/* Lives in the state's extra space, so every C function can reach it. */
typedef struct script_state {
  size_t mem;
  size_t mem_limit;
  long budget;
  long used;   /* instructions spent in the current top-level call */
  int depth;   /* nesting of script_call */
  int retired; /* replaced by a reload, closed once idle */
  int hooks[HOOK_COUNT];
  buf_t versions; /* "protocol.lua@1a2b3c4d topology.lua@..." */
} script_state_t;

static const struct {
  const char *name;
  int arity;
  int required;
} hook_info[HOOK_COUNT] = {
    [HOOK_ON_LINE] = {"on_line", 2, 1},
    [HOOK_ON_RECORD] = {"on_record", 5, 1},
    [HOOK_NEIGHBOURS] = {"neighbours", 2, 1},
    [HOOK_ON_START] = {"on_start", 0, 0},
    [HOOK_ON_LINK] = {"on_link", 2, 0},
    [HOOK_FORWARD] = {"forward", 3, 0},
};

static long live_refs;
static int open_states;
static lua_State *current;

/* $HERD_SCRIPT_DIR, else the directory compiled in (the checkout, or
 * PREFIX/share/herd/scripts for `make install`). */
const char *script_dir(void) {
  const char *d = getenv("HERD_SCRIPT_DIR");
  return d && *d ? d : HERD_SCRIPT_DIR;
}

lua_State *script_current(void) {
  return current;
}

void script_set_current(lua_State *L) {
  current = L;
}

static script_state_t *state_of(lua_State *L) {
  return *(script_state_t **)lua_getextraspace(L);
}

const char *script_hook_name(hook_t hook) {
  return hook_info[hook].name;
}

/* Small blocks come from per-size free lists: every request makes and
 * drops a few short strings (its line, its reply), freed in bulk by the
 * collector, which overflows malloc's small caches. Lua gives the old size
 * on every free and resize, so a block's class is always known. Bounded
 * (POOL_KEEP blocks per class); off under AddressSanitizer, so that a use
 * after free is still caught. */
#define POOL_STEP 16
#define POOL_CLASSES 16 /* blocks up to 256 bytes */
#define POOL_KEEP 4096
#if defined(__SANITIZE_ADDRESS__)
#define POOL_ON 0
#else
#define POOL_ON 1
#endif
typedef struct pool_block {
  struct pool_block *next;
} pool_block_t;
static struct {
  pool_block_t *head;
  unsigned n;
} pool[POOL_CLASSES + 1];

/* The class of a block of size n (1..POOL_CLASSES), or 0: malloc's. */
static size_t pool_class(size_t n) {
  size_t c = (n + POOL_STEP - 1) / POOL_STEP;
  return POOL_ON && c <= POOL_CLASSES ? c : 0;
}

static void *pool_get(size_t c) {
  pool_block_t *b = pool[c].head;
  if (!b) return malloc(c * POOL_STEP);
  pool[c].head = b->next;
  pool[c].n--;
  return b;
}

static void pool_put(size_t c, void *p) {
  if (pool[c].n >= POOL_KEEP) {
    free(p);
    return;
  }
  pool_block_t *b = p;
  b->next = pool[c].head;
  pool[c].head = b;
  pool[c].n++;
}

void script_pool_free(void) {
  for (size_t c = 1; c <= POOL_CLASSES; c++) {
    while (pool[c].head) {
      pool_block_t *b = pool[c].head;
      pool[c].head = b->next;
      free(b);
    }
    pool[c].n = 0;
  }
}

/* Gives back ptr, a block of size bytes, to its class or to malloc. */
static void pool_free(void *ptr, size_t size) {
  size_t c = pool_class(size);
  if (c)
    pool_put(c, ptr);
  else
    free(ptr);
}

/* A block of nsize for ptr (osize), from its class or malloc. */
static void *pool_realloc(void *ptr, size_t osize, size_t nsize) {
  size_t oc = ptr ? pool_class(osize) : 0, nc = pool_class(nsize);
  if (ptr && oc == 0 && nc == 0) return realloc(ptr, nsize);
  if (ptr && oc == nc) return ptr; /* the block already has room */
  void *p = nc ? pool_get(nc) : malloc(nsize);
  if (!p || !ptr) return p;
  memcpy(p, ptr, osize < nsize ? osize : nsize);
  pool_free(ptr, osize);
  return p;
}

/* The counting allocator: refusing to grow past the cap makes Lua raise a
 * memory error in the script, which script_call reports like any error. */
static void *alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  script_state_t *s = ud;
  size_t old = ptr ? osize : 0;
  if (nsize == 0) {
    if (ptr) pool_free(ptr, osize);
    s->mem -= old;
    return NULL;
  }
  if (s->mem_limit && nsize > old && s->mem + (nsize - old) > s->mem_limit)
    return NULL;
  void *p = pool_realloc(ptr, old, nsize);
  if (p) s->mem = s->mem - old + nsize;
  return p;
}

static volatile sig_atomic_t ticks; /* watchdog ticks in the current call */
static volatile sig_atomic_t tick_limit; /* ... past which it is stopped */

/* The CPU time a call may take, in watchdog ticks. */
static long budget_ticks(long budget) {
  long ms = budget / INSTR_PER_MS;
  return (ms < MIN_CPU_MS ? MIN_CPU_MS : ms) / (WATCHDOG_US / 1000);
}

/* Once the budget is spent the hook fires on every line and raises again,
 * so a pcall inside the script cannot swallow the stop. The error names
 * the line that was running (level 0 in a hook), not its caller. */
static void budget_hook(lua_State *L, lua_Debug *ar) {
  script_state_t *s = state_of(L);
  if (ar->event == LUA_HOOKCOUNT) s->used += BUDGET_STEP;
  if (!s->budget || s->depth == 0) return;
  int slow = ticks >= tick_limit;
  if (s->used > s->budget || slow) {
    lua_sethook(L, budget_hook, LUA_MASKLINE | LUA_MASKCOUNT, 1);
    luaL_where(L, 0);
    if (slow && s->used <= s->budget)
      lua_pushfstring(
          L,
          "script exceeded its budget of %I instructions "
          "(as CPU time: %I ms)",
          (lua_Integer)s->budget,
          (lua_Integer)(budget_ticks(s->budget) * WATCHDOG_US / 1000));
    else
      lua_pushfstring(L, "script exceeded its budget of %I instructions",
                      (lua_Integer)s->budget);
    lua_concat(L, 2);
    lua_error(L);
  }
}

/* The instruction budget without its cost: a count hook makes Lua 5.4 trap
 * every VM instruction (a fifth of an IAMAT's instructions), so calls run
 * unhooked and a watchdog arms the hook only for a call still running
 * after a tick of CPU time (SIGVTALRM every WATCHDOG_US of this thread's
 * CPU time, sent to this thread alone, never to a resolver thread of
 * libcurl's; lua_sethook is safe in a signal handler, as lua.c's Ctrl-C
 * relies on). The budget then counts from there. */
static lua_State *volatile watched;    /* the thread running the call */
static volatile sig_atomic_t call_seq; /* changes on every call edge */
static sig_atomic_t seen_seq = -1;

static void on_watchdog(int sig) {
  lua_State *L = watched;
  if (L && call_seq == seen_seq) {
    /* Past its CPU time the hook fires at the next instruction, not 1000
     * costly ones later. */
    if (++ticks >= tick_limit)
      lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
    else if (lua_gethook(L) != budget_hook)
      lua_sethook(L, budget_hook, LUA_MASKCOUNT, BUDGET_STEP);
  }
  seen_seq = call_seq;
}

void script_watchdog_start(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_watchdog;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGVTALRM, &sa, NULL);
  struct sigevent ev;
  memset(&ev, 0, sizeof ev);
  ev.sigev_notify = SIGEV_THREAD_ID;
  ev.sigev_signo = SIGVTALRM;
  ev._sigev_un._tid = gettid(); /* glibc 2.36 has no sigev_notify_thread_id */
  timer_t timer;
  if (timer_create(CLOCK_THREAD_CPUTIME_ID, &ev, &timer) < 0) {
    log_warn("no watchdog timer (%s): instruction budgets are off",
             strerror(errno));
    return;
  }
  struct itimerspec it = {{0, WATCHDOG_US * 1000}, {0, WATCHDOG_US * 1000}};
  timer_settime(timer, 0, &it, NULL);
}

static void watch_begin(lua_State *L, script_state_t *s) {
  s->used = 0;
  ticks = 0;
  tick_limit = (sig_atomic_t)budget_ticks(s->budget);
  if (lua_gethook(L)) lua_sethook(L, NULL, 0, 0);
  if (s->budget) watched = L;
  call_seq++;
}

static void watch_end(lua_State *L) {
  watched = NULL;
  call_seq++;
  if (lua_gethook(L)) lua_sethook(L, NULL, 0, 0);
}

static int msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      return 1;
    msg =
        lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* ---- coroutines under the budget ------------------------------------------
 * Lua gives a new coroutine its creator's hook and nothing later, so a loop
 * in a coroutine would escape the watchdog. coroutine.resume, wrap and
 * close are replaced (the bodies follow Lua 5.4's lcorolib.c): the thread
 * they run becomes the watched one and takes the caller's hook, and gives
 * it back when it yields, returns or fails, so the budget and its "raise on
 * every line once spent" hold inside nested coroutines, in ones resumed
 * later from another call, and in their __close handlers. */

/* co runs now, on behalf of L: returns the thread watched before. */
static lua_State *enter(lua_State *L, lua_State *co) {
  lua_sethook(co, lua_gethook(L), lua_gethookmask(L), lua_gethookcount(L));
  lua_State *outer = watched;
  if (outer) watched = co;
  return outer;
}

/* co has stopped running: L is watched again, armed if co was. */
static void leave(lua_State *L, lua_State *co, lua_State *outer) {
  if (outer) watched = outer;
  if (lua_gethook(co))
    lua_sethook(L, lua_gethook(co), lua_gethookmask(co), lua_gethookcount(co));
}

static int resume_watched(lua_State *L, lua_State *co, int narg) {
  if (lua_status(co) == LUA_OK && lua_gettop(co) == 0) {
    lua_pushliteral(L, "cannot resume dead coroutine");
    return -1;
  }
  if (!lua_checkstack(co, narg)) {
    lua_pushliteral(L, "too many arguments to resume");
    return -1;
  }
  lua_xmove(L, co, narg);
  lua_State *outer = enter(L, co);
  int nres, status = lua_resume(co, L, narg, &nres);
  leave(L, co, outer);
  if (status == LUA_OK || status == LUA_YIELD) {
    if (!lua_checkstack(L, nres + 1)) {
      lua_pop(co, nres);
      lua_pushliteral(L, "too many results to resume");
      return -1;
    }
    lua_xmove(co, L, nres);
    return nres;
  }
  lua_xmove(co, L, 1); /* the error object */
  return -1;
}

static int co_resume(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  luaL_argexpected(L, co, 1, "coroutine");
  int r = resume_watched(L, co, lua_gettop(L) - 1);
  if (r < 0) {
    lua_pushboolean(L, 0);
    lua_insert(L, -2);
    return 2;
  }
  lua_pushboolean(L, 1);
  lua_insert(L, -(r + 1));
  return r + 1;
}

static int co_wrapped(lua_State *L) {
  lua_State *co = lua_tothread(L, lua_upvalueindex(1));
  int r = resume_watched(L, co, lua_gettop(L));
  if (r >= 0) return r;
  int stat = lua_status(co);
  if (stat != LUA_OK && stat != LUA_YIELD) { /* an error in the coroutine */
    lua_State *outer = enter(L, co);
    stat = lua_resetthread(co); /* runs its __close handlers */
    leave(L, co, outer);
    lua_xmove(co, L, 1);
  }
  if (stat != LUA_ERRMEM && lua_type(L, -1) == LUA_TSTRING) {
    luaL_where(L, 1);
    lua_insert(L, -2);
    lua_concat(L, 2);
  }
  return lua_error(L);
}

static int co_wrap(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_State *co = lua_newthread(L);
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 1);
  lua_pushcclosure(L, co_wrapped, 1);
  return 1;
}

/* Calls the original function (upvalue 1) with every argument. */
static int call_original(lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

/* coroutine.close runs the coroutine's __close handlers. */
static int co_close(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  luaL_argexpected(L, co, 1, "coroutine");
  lua_State *outer = enter(L, co);
  int n = call_original(L);
  leave(L, co, outer);
  return n;
}

/* A finalizer runs with hooks off (Lua's GC forbids them), so a loop in a
 * __gc metamethod would escape the budget: scripts get no __gc. */
static int no_gc_setmetatable(lua_State *L) {
  if (lua_type(L, 2) == LUA_TTABLE) {
    lua_pushliteral(L, "__gc");
    if (lua_rawget(L, 2) != LUA_TNIL)
      return luaL_error(L,
                        "__gc metamethods are not available to scripts "
                        "(a finalizer runs outside the instruction budget)");
    lua_pop(L, 1);
  }
  return call_original(L);
}

/* Precompiled chunks can crash the Lua VM (it does not verify bytecode), so
 * load, loadfile and dofile take text only: the mode argument (argument
 * mode_arg) is forced to "t". */
static int text_only(lua_State *L, int mode_arg) {
  if (lua_gettop(L) >= mode_arg) {
    lua_pushliteral(L, "t");
    lua_replace(L, mode_arg);
  } else {
    lua_settop(L, mode_arg - 1);
    lua_pushliteral(L, "t");
  }
  return call_original(L);
}

static int text_load(lua_State *L) {
  return text_only(L, 3); /* load(chunk, chunkname, mode, env) */
}

static int text_loadfile(lua_State *L) {
  return text_only(L, 2); /* loadfile(filename, mode, env) */
}

static int text_dofile(lua_State *L) {
  const char *fname = luaL_optstring(L, 1, NULL);
  lua_settop(L, 1);
  if (luaL_loadfilex(L, fname, "t") != LUA_OK) return lua_error(L);
  lua_call(L, 0, LUA_MULTRET);
  return lua_gettop(L) - 1;
}

/* A script's own hook would replace the budget's (and a hook cannot be
 * interrupted), so debug.sethook is not available to scripts. */
static int no_sethook(lua_State *L) {
  return luaL_error(L, "debug.sethook is reserved for the instruction budget");
}

/* Replaces lib.name (lib a global table, or _G when NULL) with fn, giving
 * fn the original as its upvalue. */
static void replace(lua_State *L, const char *lib, const char *name,
                    lua_CFunction fn) {
  if (lib)
    lua_getglobal(L, lib);
  else
    lua_pushglobaltable(L);
  lua_getfield(L, -1, name);
  lua_pushcclosure(L, fn, 1);
  lua_setfield(L, -2, name);
  lua_pop(L, 1);
}

static void guard_libs(lua_State *L) {
  replace(L, "coroutine", "resume", co_resume);
  replace(L, "coroutine", "wrap", co_wrap);
  replace(L, "coroutine", "close", co_close);
  replace(L, NULL, "setmetatable", no_gc_setmetatable);
  replace(L, "debug", "setmetatable", no_gc_setmetatable);
  replace(L, "debug", "sethook", no_sethook);
  replace(L, NULL, "load", text_load);
  replace(L, NULL, "loadfile", text_loadfile);
  replace(L, NULL, "dofile", text_dofile);
}

/* ---- protected calls ------------------------------------------------------
 */

/* Logs "<what>: <first line>", then each traceback line as
 * "<what>: | <line>" (its tab as two spaces): one log line each, as the
 * log escapes newlines inside a line, so a traceback reads as it would on
 * a terminal and `grep 'on_line: |'` finds every one. */
static void log_failure(const char *what, const char *msg) {
  if (!msg) msg = "(no message)";
  const char *nl = strchr(msg, '\n');
  log_error("%s: %.*s", what, (int)(nl ? nl - msg : (long)strlen(msg)), msg);
  while (nl) {
    const char *line = nl + 1;
    nl = strchr(line, '\n');
    int n = (int)(nl ? nl - line : (long)strlen(line));
    int tab = n && *line == '\t';
    log_error("%s: | %s%.*s", what, tab ? "  " : "", n - tab, line + tab);
  }
}

/* Calls the function below nargs arguments, protected, with the budget
 * armed; on failure logs and pops the error. */
static int call_protected(lua_State *L, int nargs, int nres, const char *what) {
  script_state_t *s = state_of(L);
  int base = lua_gettop(L) - nargs;
  /* From the event loop the message handler waits at the bottom of the
   * stack (pushed when the state was made), which spares two stack
   * rotations per call; a call from inside Lua (a C function's frame)
   * pushes its own. */
  int own = s->depth > 0 || lua_tocfunction(L, 1) != msghandler;
  if (own) {
    lua_pushcfunction(L, msghandler);
    lua_insert(L, base);
  }
  if (s->depth++ == 0) watch_begin(L, s);
  int status = lua_pcall(L, nargs, nres, own ? base : 1);
  if (--s->depth == 0) watch_end(L);
  if (own) lua_remove(L, base);
  if (status != LUA_OK) {
    log_failure(what,
                lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL);
    lua_pop(L, 1);
    return -1;
  }
  return 0;
}

int script_call(lua_State *L, int nargs, int nres, const char *what) {
  return call_protected(L, nargs, nres, what);
}

typedef struct run {
  script_push_fn push;
  void *ud;
  int nres;
  int pushed; /* the function and its arguments are on the stack */
} run_t;

/* Runs inside the protected call: every allocation the pushes make may fail
 * with a Lua error, never a panic. */
static int run_pushed(lua_State *L) {
  run_t *r = lua_touserdata(L, 1);
  lua_pop(L, 1);
  int nargs = r->push(L, r->ud);
  r->pushed = 1;
  lua_call(L, nargs, r->nres);
  return r->nres == LUA_MULTRET ? lua_gettop(L) : r->nres;
}

int script_run(lua_State *L, script_push_fn push, void *ud, int nres,
               const char *what) {
  run_t r = {push, ud, nres, 0};
  lua_pushcfunction(L, run_pushed); /* neither push allocates */
  lua_pushlightuserdata(L, &r);
  if (call_protected(L, 1, nres, what) == 0) return 0;
  return r.pushed ? -1 : SCRIPT_EPUSH;
}

int script_ref(lua_State *L) {
  int ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (ref != LUA_NOREF && ref != LUA_REFNIL) live_refs++;
  return ref;
}

void script_unref(lua_State *L, int *ref) {
  if (*ref != LUA_NOREF && *ref != LUA_REFNIL) {
    luaL_unref(L, LUA_REGISTRYINDEX, *ref);
    live_refs--;
  }
  *ref = LUA_NOREF;
}

void script_retire(lua_State *L) {
  state_of(L)->retired = 1;
}

int script_retired(lua_State *L) {
  return state_of(L)->retired;
}

int script_states(void) {
  return open_states;
}

long script_live_refs(void) {
  return live_refs;
}

size_t script_memory(lua_State *L) {
  return state_of(L)->mem;
}

static void add_path(buf_t *b, const char *dir) {
  if (!dir || !*dir) return;
  buf_append_str(b, dir);
  buf_append_str(b, "/?.lua;");
  buf_append_str(b, dir);
  buf_append_str(b, "/?/init.lua;");
}

lua_State *script_open(const script_limits_t *limits, const char *script_dir,
                       const char *extra_dir, char *err, size_t errlen) {
  script_state_t *s = xcalloc(1, sizeof *s);
  s->mem_limit = limits->memory;
  s->budget = limits->budget;
  for (int i = 0; i < HOOK_COUNT; i++)
    s->hooks[i] = LUA_NOREF;
  lua_State *L = lua_newstate(alloc, s);
  if (!L) {
    snprintf(err, errlen, "cannot create the Lua state");
    free(s);
    return NULL;
  }
  *(script_state_t **)lua_getextraspace(L) = s;
  open_states++;
  luaL_openlibs(L);
  guard_libs(L);
  lua_gc(L, LUA_GCGEN, 0, 0);
  lua_pushcfunction(L, msghandler); /* stays at index 1: see script_call */

  /* Scripts find each other in the script directory and beside the config;
   * Debian's Lua modules (cjson) stay reachable through the default path. */
  script_set_path(L, script_dir);
  script_set_path(L, extra_dir);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, luaopen_core);
  lua_setfield(L, -2, "core");
  lua_pushcfunction(L, luaopen_herdtext);
  lua_setfield(L, -2, "herdtext");
  lua_pop(L, 2);
  return L;
}

void script_set_limits(lua_State *L, size_t memory, long budget) {
  script_state_t *s = state_of(L);
  s->mem_limit = memory;
  s->budget = budget;
}

void script_set_path(lua_State *L, const char *dir) {
  if (!dir || !*dir) return;
  buf_t path;
  buf_init(&path);
  add_path(&path, dir);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  buf_append_str(&path, lua_tostring(L, -1));
  lua_pop(L, 1);
  lua_pushlstring(L, path.data, path.len);
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);
  buf_free(&path);
}

void script_close(lua_State *L) {
  if (!L) return;
  script_state_t *s = state_of(L);
  for (int i = 0; i < HOOK_COUNT; i++)
    script_unref(L, &s->hooks[i]);
  lua_close(L);
  open_states--;
  buf_free(&s->versions);
  free(s);
}

const char *script_versions(lua_State *L) {
  script_state_t *s = state_of(L);
  return s->versions.len ? s->versions.data : "";
}

/* Appends "<file name>@<first 8 hex digits of its SHA-256>". */
static void add_version(script_state_t *s, const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return;
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
  char chunk[8192];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
    EVP_DigestUpdate(ctx, chunk, n);
  fclose(f);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  EVP_DigestFinal_ex(ctx, md, &len);
  EVP_MD_CTX_free(ctx);
  const char *base = strrchr(path, '/');
  char v[300];
  snprintf(v, sizeof v, "%s%s@%02x%02x%02x%02x", s->versions.len ? " " : "",
           base ? base + 1 : path, md[0], md[1], md[2], md[3]);
  if (s->versions.len) s->versions.len--; /* drop the NUL */
  buf_append(&s->versions, v, strlen(v) + 1);
}

static int find_hook(const char *name) {
  for (int i = 0; i < HOOK_COUNT; i++)
    if (strcmp(hook_info[i].name, name) == 0) return i;
  return -1;
}

/* Wraps `new` so it receives `prev` as an extra last argument. */
static void chain_hook(lua_State *L, hook_t hook, int prev_ref) {
  static const char *args[] = {"",          "a1,",          "a1,a2,",
                               "a1,a2,a3,", "a1,a2,a3,a4,", "a1,a2,a3,a4,a5,"};
  const char *a = args[hook_info[hook].arity];
  char src[256];
  snprintf(src, sizeof src,
           "local new, prev = ...\n"
           "return function(%.*s) return new(%sprev) end",
           (int)(strlen(a) ? strlen(a) - 1 : 0), a, a);
  if (luaL_loadstring(L, src) != LUA_OK) lua_error(L); /* new chunk */
  lua_insert(L, -2);                                   /* chunk new */
  lua_rawgeti(L, LUA_REGISTRYINDEX, prev_ref);         /* chunk new prev */
  lua_call(L, 2, 1);                                   /* wrapper */
}

/* Installs the hooks of the validated table at index 1 (protected: the
 * wrappers and key strings allocate; raw reads, so no __index runs). */
static int install_hooks(lua_State *L) {
  script_state_t *s = state_of(L);
  for (int h = 0; h < HOOK_COUNT; h++) {
    lua_pushstring(L, hook_info[h].name);
    if (lua_rawget(L, 1) == LUA_TNIL) {
      lua_pop(L, 1);
      continue;
    }
    if (s->hooks[h] != LUA_NOREF) {
      chain_hook(L, (hook_t)h, s->hooks[h]);
      script_unref(L, &s->hooks[h]);
    }
    s->hooks[h] = script_ref(L);
  }
  return 0;
}

int script_load(lua_State *L, const char *path, char *err, size_t errlen) {
  script_state_t *s = state_of(L);
  if (luaL_loadfilex(L, path, "t") != LUA_OK) {
    snprintf(err, errlen, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return -1;
  }
  lua_pushcfunction(L, msghandler);
  lua_insert(L, -2);
  if (s->depth++ == 0) watch_begin(L, s);
  int status = lua_pcall(L, 0, 1, -2);
  if (--s->depth == 0) watch_end(L);
  lua_remove(L, -2);
  if (status != LUA_OK) {
    snprintf(err, errlen, "%s",
             lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
                                            : "not enough memory");
    lua_pop(L, 1);
    return -1;
  }
  if (!lua_istable(L, -1)) {
    snprintf(err, errlen, "%s: a script must return a table of hooks, got %s",
             path, luaL_typename(L, -1));
    lua_pop(L, 1);
    return -1;
  }
  /* Validate every key before installing any, so a bad script changes
   * nothing. */
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    const char *key =
        lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    int h = key ? find_hook(key) : -1;
    if (h < 0) {
      snprintf(err, errlen,
               "%s: unknown hook '%s' (hooks are on_line, on_record, "
               "neighbours, on_start, on_link, forward)",
               path, key ? key : luaL_typename(L, -2));
      lua_pop(L, 3);
      return -1;
    }
    if (!lua_isfunction(L, -1)) {
      snprintf(err, errlen, "%s: hook '%s' must be a function, got %s", path,
               key, luaL_typename(L, -1));
      lua_pop(L, 3);
      return -1;
    }
    lua_pop(L, 1);
  }
  lua_pushcfunction(L, install_hooks);
  lua_insert(L, -2);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    snprintf(err, errlen, "%s: cannot install its hooks: %s", path,
             lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
                                            : "not enough memory");
    lua_pop(L, 1);
    return -1;
  }
  add_version(s, path);
  return 0;
}

int script_check(lua_State *L, char *err, size_t errlen) {
  script_state_t *s = state_of(L);
  for (int h = 0; h < HOOK_COUNT; h++) {
    if (hook_info[h].required && s->hooks[h] == LUA_NOREF) {
      snprintf(err, errlen, "no script defines the required hook '%s'",
               hook_info[h].name);
      return -1;
    }
  }
  return 0;
}

int script_push_hook(lua_State *L, hook_t hook) {
  script_state_t *s = state_of(L);
  if (s->hooks[hook] == LUA_NOREF) return -1;
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->hooks[hook]);
  return 0;
}
