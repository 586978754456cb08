/* admin: the local admin interface, a Unix socket beside the server (never
 * the client port). Owns the socket and its connections. One command per
 * line, each answer ends with an empty line:
 *   stats              counters, "name value" per line
 *   links              "NAME state up_ms frames_in frames_out" per link
 *   records            every stored AT line
 *   record CLIENT      one stored AT line, or "none"
 *   cut NAME MS        drop the link to NAME and refuse it for MS ms
 *                      (an integer from 0 to ADMIN_MAX_CUT_MS)
 *   reload             reload the scripts (same as SIGHUP)
 * Also the client side, `herd ctl`, which sends one command and prints the
 * answer. */
#ifndef HERD_ADMIN_H
#define HERD_ADMIN_H

#include <stddef.h>
#include <uv.h>

/* The longest command: a record command for the longest client id a
 * client line may hold (limits.max_line is at most 16 MiB). Longer ones
 * are refused with an error. */
#define ADMIN_MAX_LINE ((1 << 24) + 64)
/* The longest cut: a day. */
#define ADMIN_MAX_CUT_MS 86400000UL

/* Reloads the scripts; writes the outcome to msg. Provided by main. */
typedef int (*admin_reload_fn)(char *msg, size_t n);

int admin_start(uv_loop_t *loop, const char *path, admin_reload_fn reload,
                char *err, size_t errlen);
void admin_shutdown(void);
/* `herd ctl`: sends command to the socket at path, prints the answer to
 * stdout. Returns an exit code. */
int admin_ctl(const char *path, const char *command);

#endif
