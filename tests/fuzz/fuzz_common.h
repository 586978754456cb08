/* What both libFuzzer targets share: a server's start-up without its
 * listeners (config, the built-in scripts with their limits, the record
 * store, the local places data, a log that goes to /dev/null), and a
 * socketpair that stands in for a client or peer connection, so that the
 * core's real output path (uv_try_write, uv_write, on_written) runs too.
 *
 * Each target #includes one core file (conn.c or peer.c) to reach its
 * static functions; production code is compiled as is. See README.md. */
#ifndef HERD_FUZZ_COMMON_H
#define HERD_FUZZ_COMMON_H

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "lua_core.h"
#include "places.h"
#include "records.h"
#include "script.h"
#include "store.h"

static uv_loop_t *fz_loop;
static config_t fz_cfg;
static lua_State *fz_L;
static unsigned long fz_runs;

static void fz_die(const char *what, const char *err) {
  fprintf(stderr, "fuzz set-up: %s: %s\n", what, err);
  exit(1);
}

/* A herd of two: self ("F") and one neighbour ("P"). */
static void fz_start(const char *limits) {
  char dir[] = "/tmp/herd-fuzz-XXXXXX";
  if (!mkdtemp(dir)) fz_die("mkdtemp", "failed");
  char path[256], logpath[256], err[4096];
  snprintf(path, sizeof path, "%s/herd.lua", dir);
  FILE *f = fopen(path, "w");
  if (!f) fz_die("config", path);
  fprintf(f,
          "return { servers = { F = { port = 1 }, P = { port = 2 } },\n"
          "  links = { { 'F', 'P' } }, secret = 'fuzz-secret',\n"
          "  log_dir = '%s', places = { provider = 'local' },\n"
          "  limits = { %s } }\n",
          dir, limits);
  fclose(f);
  /* The log goes nowhere: the escaping code still runs on every line. */
  snprintf(logpath, sizeof logpath, "%s/F.log", dir);
  if (symlink("/dev/null", logpath) < 0) fz_die("symlink", logpath);

  fz_loop = uv_default_loop();
  lua_core_init(fz_loop, "F");
  records_init(NULL); /* takes the records the peer target feeds in */
  if (store_init(fz_loop) < 0) fz_die("store_init", "RAND_bytes");
  script_limits_t none = {0, 0};
  fz_L = script_open(&none, script_dir(), NULL, err, sizeof err);
  if (!fz_L) fz_die("script_open", err);
  if (config_load(fz_L, path, &fz_cfg, err, sizeof err) < 0)
    fz_die("config", err);
  script_set_limits(fz_L, fz_cfg.lua_memory, fz_cfg.lua_budget);
  script_set_path(fz_L, fz_cfg.dir);
  for (int i = 0; i < fz_cfg.nscripts; i++)
    if (script_load(fz_L, fz_cfg.scripts[i], err, sizeof err) < 0)
      fz_die("script", err);
  if (script_check(fz_L, err, sizeof err) < 0) fz_die("scripts", err);
  script_set_current(fz_L);
  if (log_open(fz_cfg.log_dir, "F", err, sizeof err) < 0) fz_die("log", err);
  char data[4096];
  snprintf(data, sizeof data, "%s/places-sample.bin", HERD_DATA_DIR);
  if (places_open(access(data, R_OK) == 0 ? data : NULL, err, sizeof err) < 0)
    fprintf(stderr, "fuzz set-up: no local places data (%s); WHATSAT "
                    "answers errors\n", err);
  /* Everything is read or open: leave nothing behind in /tmp. */
  unlink(path);
  unlink(logpath);
  rmdir(dir);
}

/* The store is kept between inputs (later inputs meet earlier records),
 * but emptied now and then so a long run does not grow without end. */
static void fz_between_runs(void) {
  uv_run(fz_loop, UV_RUN_NOWAIT);
  log_flush();
  /* HERD_FUZZ_TRACE=1: what the server holds, now and then (stdout). */
  if (getenv("HERD_FUZZ_TRACE") && fz_runs % 20000 == 0) {
    printf("runs %lu lua %zu KiB store %zu records %zu KiB\n", fz_runs,
           script_memory(fz_L) >> 10, store_count(), store_bytes() >> 10);
    fflush(stdout);
  }
  if (++fz_runs % 5000 == 0) {
    store_free();
    if (store_init(fz_loop) < 0) fz_die("store_init", "RAND_bytes");
  }
}

/* A connected pair: fd[0] goes to the core's handle, fd[1] is the other
 * side. Small buffers, so writes are often partial and go through
 * uv_write and on_written. */
static void fz_pair(uv_tcp_t *tcp, int fd[2]) {
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, fd) < 0) fz_die("socketpair", "");
  int small = 4096;
  setsockopt(fd[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  setsockopt(fd[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  fcntl(fd[1], F_SETFL, O_NONBLOCK);
  uv_tcp_init(fz_loop, tcp);
  if (uv_tcp_open(tcp, fd[0]) < 0) fz_die("uv_tcp_open", "");
}

/* Reads and drops what the core wrote; returns the byte count. */
static size_t fz_drain(int fd) {
  char sink[65536];
  size_t total = 0;
  ssize_t n;
  while ((n = read(fd, sink, sizeof sink)) > 0) total += (size_t)n;
  return total;
}

#endif
