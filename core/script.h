/* script: the embedded Lua 5.4 state and every call from C into Lua.
 * Owns the lua_State (with a counting allocator that caps its memory and an
 * instruction budget per call), the loading and validation of scripts, the
 * named hooks they return, and the registry references C holds on Lua values.
 * Every C->Lua call goes through script_run (or script_call, when nothing
 * it pushes can allocate), which runs the function protected, logs a
 * failure with its traceback and leaves the stack clean.
 * Loop-thread only; never call Lua from inside a libcurl callback. */
#ifndef HERD_SCRIPT_H
#define HERD_SCRIPT_H

#include <lua.h>
#include <stddef.h>

/* The hooks scripts may return, in the order of this enum. */
typedef enum {
  HOOK_ON_LINE,    /* on_line(conn, line) -> reply | nil           */
  HOOK_ON_RECORD,  /* on_record(from, client, sec, nsec, line)      */
  HOOK_NEIGHBOURS, /* neighbours(self, config) -> { names }         */
  HOOK_ON_START,   /* on_start()                                    */
  HOOK_ON_LINK,    /* on_link(peer, up)                             */
  HOOK_FORWARD, /* forward(origin, from, live) -> { names } | "flood", rule */
  HOOK_COUNT
} hook_t;

typedef struct script_limits {
  size_t memory; /* bytes the Lua state may hold; 0 = no cap     */
  long budget;   /* VM instructions per hook call, counted once
                    the call has run ~10-20 ms of CPU; 0 = no cap */
} script_limits_t;

/* Starts the watchdog that enforces instruction budgets (SIGVTALRM). */
void script_watchdog_start(void);

/* Creates a Lua state with the standard libraries, the `core` module
 * preloaded, and package.path covering script_dir and extra_dir (may be
 * NULL). Returns NULL with a message in err. */
lua_State *script_open(const script_limits_t *limits, const char *script_dir,
                       const char *extra_dir, char *err, size_t errlen);
void script_close(lua_State *L);
/* Frees the small blocks the Lua allocator keeps for reuse (at exit). */
void script_pool_free(void);
/* Sets the memory cap (bytes) and instruction budget once the config says. */
void script_set_limits(lua_State *L, size_t memory, long budget);
/* Puts dir (the config's directory) first on package.path. */
void script_set_path(lua_State *L, const char *dir);
/* Where the built-in scripts live: $HERD_SCRIPT_DIR, else the build's. */
const char *script_dir(void);
/* The state that handles events now (replaced by a reload). */
lua_State *script_current(void);
void script_set_current(lua_State *L);
/* Runs one script file; the table it returns adds or chains hooks (a later
 * script's hook gets the earlier one as an extra last argument). Unknown or
 * mistyped hooks are errors naming the script and the hook. */
int script_load(lua_State *L, const char *path, char *err, size_t errlen);
/* "protocol.lua@1a2b3c4d ...": each loaded script with a digest of it. */
const char *script_versions(lua_State *L);
/* Checks that every required hook is defined. */
int script_check(lua_State *L, char *err, size_t errlen);
/* Pushes the hook's function; returns 0, or -1 (nothing pushed) if absent. */
int script_push_hook(lua_State *L, hook_t hook);
const char *script_hook_name(hook_t hook);

/* Pushes a function and its arguments onto L and returns the number of
 * arguments. Runs inside the protected call: a push that finds the Lua heap
 * full raises a memory error there instead of aborting the process. */
typedef int (*script_push_fn)(lua_State *L, void *ud);
#define SCRIPT_EPUSH (-2)
/* The entry point into Lua: push(L, ud), then the call, both protected,
 * with the instruction budget armed. On success leaves nres results and
 * returns 0. On failure logs "<what>: <error>" (then one "<what>: | <line>"
 * per traceback line), leaves nothing and returns -1, or SCRIPT_EPUSH if
 * the pushes themselves failed (the function never ran). */
int script_run(lua_State *L, script_push_fn push, void *ud, int nres,
               const char *what);
/* Calls the function below nargs arguments on L's stack, as script_run
 * does; for callers whose pushes cannot allocate (a registry reference,
 * integers, booleans). */
int script_call(lua_State *L, int nargs, int nres, const char *what);
/* Pops the value on top of L's stack and returns a reference to it. */
int script_ref(lua_State *L);
/* Releases *ref (no-op for LUA_NOREF) and sets it to LUA_NOREF. */
void script_unref(lua_State *L, int *ref);
/* Marks L as replaced by a reload (see lua_core_retire). */
void script_retire(lua_State *L);
int script_retired(lua_State *L);
/* Lua states open now: the current one and replaced ones not yet closed. */
int script_states(void);
/* Live references, for the shutdown check and the stats. */
long script_live_refs(void);
/* Bytes the Lua state holds now. */
size_t script_memory(lua_State *L);

#endif
