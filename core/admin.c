/* admin: see admin.h. */
#include "admin.h"

#include <ctype.h>
#include <errno.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "buf.h"
#include "conn.h"
#include "log.h"
#include "lua_core.h"
#include "peer.h"
#include "script.h"
#include "store.h"
#include "wqueue.h"

typedef struct aconn {
  uv_pipe_t pipe; /* first: the handle pointer is the aconn pointer */
  wqueue_t wq;
  buf_t in;
  int eof, closing;
} aconn_t;

static uv_loop_t *loop;
static uv_pipe_t server;
static char *sock_path;
static admin_reload_fn do_reload;
static int running;

static void on_closed(uv_handle_t *h) {
  aconn_t *a = (aconn_t *)h;
  wqueue_free(&a->wq);
  buf_free(&a->in);
  free(a);
}

static void aconn_close(aconn_t *a) {
  if (a->closing) return;
  a->closing = 1;
  uv_close((uv_handle_t *)&a->pipe, on_closed);
}

static void flush(aconn_t *a) {
  if (a->closing) return;
  if (wqueue_flush(&a->wq) < 0) {
    aconn_close(a);
    return;
  }
  if (a->eof && !wqueue_pending(&a->wq)) aconn_close(a);
}

static void on_written(wqueue_t *q, int status) {
  aconn_t *a = (aconn_t *)((char *)q - offsetof(aconn_t, wq));
  if (status < 0)
    aconn_close(a);
  else
    flush(a);
}

static void put_stat(buf_t *b, const char *name, unsigned long long v) {
  char line[128];
  int n = snprintf(line, sizeof line, "%s %llu\n", name, v);
  buf_append(b, line, (size_t)n);
}

/* Pushes core.stats itself, not what a script may have put in its place
 * (script_run then builds the table under protection). */
static int push_stats(lua_State *L, void *ud) {
  lua_pushcfunction(L, lua_core_stats);
  return 0;
}

/* Stats come from the scripts' own view (core.stats) so that both agree. */
static void cmd_stats(buf_t *b) {
  lua_State *L = script_current();
  if (script_run(L, push_stats, NULL, 1, "admin stats") < 0) return;
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    if (lua_isinteger(L, -1)) {
      put_stat(b, lua_tostring(L, -2),
               (unsigned long long)lua_tointeger(L, -1));
    } else if (lua_type(L, -1) == LUA_TSTRING) { /* dissemination */
      char line[128];
      int n = snprintf(line, sizeof line, "%s %s\n", lua_tostring(L, -2),
                       lua_tostring(L, -1));
      buf_append(b, line, n < (int)sizeof line ? (size_t)n : sizeof line - 1);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

static int links_table(lua_State *L) {
  peer_push_links(L);
  return 1;
}

static int push_links(lua_State *L, void *ud) {
  lua_pushcfunction(L, links_table);
  return 0;
}

static void cmd_links(buf_t *b) {
  lua_State *L = script_current();
  if (script_run(L, push_links, NULL, 1, "admin links") < 0) return;
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    char line[256];
    lua_getfield(L, -1, "state");
    lua_getfield(L, -2, "up_ms");
    lua_getfield(L, -3, "frames_in");
    lua_getfield(L, -4, "frames_out");
    int n = snprintf(
        line, sizeof line, "%s %s %lld %lld %lld\n", lua_tostring(L, -6),
        lua_tostring(L, -4), (long long)lua_tointeger(L, -3),
        (long long)lua_tointeger(L, -2), (long long)lua_tointeger(L, -1));
    buf_append(b, line, (size_t)n);
    lua_pop(L, 5);
  }
  lua_pop(L, 1);
}

static void put_record(const store_rec_t *r, void *ud) {
  buf_append(ud, STORE_LINE(r), r->line_len);
  buf_append(ud, "\n", 1);
}

static void run_command(aconn_t *a, char *line) {
  buf_t *b = &a->wq.out;
  char *argv[4] = {0};
  int argc = 0;
  for (char *tok = strtok(line, " \t\r"); tok && argc < 4;
       tok = strtok(NULL, " \t\r"))
    argv[argc++] = tok;
  if (argc == 0) return;
  if (strcmp(argv[0], "stats") == 0) {
    cmd_stats(b);
  } else if (strcmp(argv[0], "links") == 0) {
    cmd_links(b);
  } else if (strcmp(argv[0], "records") == 0) {
    store_each(put_record, b);
  } else if (strcmp(argv[0], "record") == 0 && argc == 2) {
    const store_rec_t *r = store_get(argv[1], strlen(argv[1]));
    if (r)
      put_record(r, b);
    else
      buf_append_str(b, "none\n");
  } else if (strcmp(argv[0], "cut") == 0 && argc == 3) {
    char *end;
    errno = 0;
    unsigned long ms = strtoul(argv[2], &end, 10);
    if (!isdigit((unsigned char)argv[2][0]) || *end || errno ||
        ms > ADMIN_MAX_CUT_MS)
      buf_append_str(b, "error: MS must be an integer from 0 to 86400000\n");
    else if (peer_cut(argv[1], (unsigned)ms) == 0)
      buf_append_str(b, "ok\n");
    else
      buf_append_str(b, "error: no link to that server\n");
  } else if (strcmp(argv[0], "reload") == 0) {
    char msg[4096];
    int rc = do_reload(msg, sizeof msg);
    buf_append_str(b, rc == 0 ? "ok: " : "error: ");
    buf_append_str(b, msg);
    buf_append_str(b, "\n");
  } else {
    buf_append_str(b,
                   "error: commands are stats, links, records, record "
                   "CLIENT, cut NAME MS, reload\n");
  }
  buf_append(b, "\n", 1);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  aconn_t *a = (aconn_t *)h;
  buf_reserve(&a->in, 512);
  *b = uv_buf_init(a->in.data + a->in.len, (unsigned)(a->in.cap - a->in.len));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
  aconn_t *a = (aconn_t *)s;
  if (nread < 0) {
    a->eof = 1;
    uv_read_stop(s);
    flush(a);
    return;
  }
  a->in.len += (size_t)nread;
  char *nl;
  size_t used = 0;
  while ((nl = memchr(a->in.data + used, '\n', a->in.len - used))) {
    *nl = '\0';
    run_command(a, a->in.data + used);
    used = (size_t)(nl - a->in.data) + 1;
  }
  buf_consume(&a->in, used);
  if (a->in.len > ADMIN_MAX_LINE) {
    char msg[96];
    snprintf(msg, sizeof msg, "error: a command is at most %d bytes\n\n",
             ADMIN_MAX_LINE);
    buf_append_str(&a->wq.out, msg);
    a->eof = 1;
    uv_read_stop(s);
  }
  flush(a);
}

static void on_connection(uv_stream_t *s, int status) {
  if (status < 0) return;
  aconn_t *a = xcalloc(1, sizeof *a);
  uv_pipe_init(loop, &a->pipe, 0);
  wqueue_init(&a->wq, (uv_stream_t *)&a->pipe, on_written);
  if (uv_accept(s, (uv_stream_t *)&a->pipe) < 0) {
    aconn_close(a);
    return;
  }
  uv_read_start((uv_stream_t *)&a->pipe, on_alloc, on_read);
}

int admin_start(uv_loop_t *l, const char *path, admin_reload_fn reload,
                char *err, size_t errlen) {
  loop = l;
  do_reload = reload;
  if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
    snprintf(err, errlen, "admin socket path too long: %s", path);
    return -1;
  }
  /* A socket that answers belongs to a live server: never take it over. A
   * stale one from a killed server is removed. */
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  strcpy(sa.sun_path, path);
  int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof sa) == 0) {
    close(probe);
    snprintf(err, errlen,
             "admin socket %s is in use: is this server "
             "already running?",
             path);
    return -1;
  }
  if (probe >= 0) close(probe);
  unlink(path);
  uv_pipe_init(loop, &server, 0);
  int rc = uv_pipe_bind(&server, path);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&server, 16, on_connection);
  if (rc < 0) {
    snprintf(err, errlen, "cannot listen on admin socket %s: %s", path,
             uv_strerror(rc));
    uv_close((uv_handle_t *)&server, NULL);
    return -1;
  }
  chmod(path, 0600);
  sock_path = xstrdup(path);
  running = 1;
  return 0;
}

void admin_shutdown(void) {
  if (!running) return;
  running = 0;
  uv_close((uv_handle_t *)&server, NULL);
  unlink(sock_path);
  free(sock_path);
  sock_path = NULL;
}

int admin_ctl(const char *path, const char *command) {
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  if (strlen(path) >= sizeof sa.sun_path) {
    fprintf(stderr, "herd ctl: socket path too long: %s\n", path);
    return 1;
  }
  strcpy(sa.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    fprintf(stderr, "herd ctl: cannot reach %s: %s (is the server running?)\n",
            path, strerror(errno));
    if (fd >= 0) close(fd);
    return 1;
  }
  size_t n = strlen(command);
  if (write(fd, command, n) != (ssize_t)n || write(fd, "\n", 1) != 1) {
    close(fd);
    return 1;
  }
  shutdown(fd, SHUT_WR);
  char chunk[4096];
  ssize_t got;
  int failed = 0;
  while ((got = read(fd, chunk, sizeof chunk)) > 0) {
    if (got >= 6 && memcmp(chunk, "error:", 6) == 0) failed = 1;
    fwrite(chunk, 1, (size_t)got, stdout);
  }
  close(fd);
  return failed;
}
