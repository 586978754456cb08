/* script: the embedded Lua 5.4 state and every call from C into Lua.
 * Owns the lua_State (with a counting allocator that caps its memory and an
 * instruction budget per call), the loading and validation of scripts, the
 * named hooks they return, and the registry references C holds on Lua values.
 * Every C->Lua call goes through script_call, which runs the function
 * protected, logs a failure with its traceback and leaves the stack clean.
 * Loop-thread only; never call Lua from inside a libcurl callback. */
#ifndef HERD_SCRIPT_H
#define HERD_SCRIPT_H

#include <lua.h>
#include <stddef.h>

/* The hooks scripts may return, in the order of this enum. */
typedef enum {
  HOOK_ON_LINE,     /* on_line(conn, line) -> reply | nil           */
  HOOK_ON_RECORD,   /* on_record(from, client, sec, nsec, line)      */
  HOOK_NEIGHBOURS,  /* neighbours(self, config) -> { names }         */
  HOOK_ON_START,    /* on_start()                                    */
  HOOK_ON_LINK,     /* on_link(peer, up)                             */
  HOOK_COUNT
} hook_t;

/* Calls the function below nargs arguments on L's stack, protected, with the
 * instruction budget armed. On success leaves nres results and returns 0; on
 * failure logs "<what>: <error and traceback>", pops everything it was given
 * and returns -1. */
int script_call(lua_State *L, int nargs, int nres, const char *what);
/* Pops the value on top of L's stack and returns a reference to it. */
int script_ref(lua_State *L);
/* Releases *ref (no-op for LUA_NOREF) and sets it to LUA_NOREF. */
void script_unref(lua_State *L, int *ref);
/* Live references, for the shutdown check and the stats. */
long script_live_refs(void);

#endif
