/* loadgen: the bench's load generator for herd and its baselines.
 *
 * One thread, raw epoll (plus timerfd for sub-millisecond pacing), so that it
 * can be pinned to one core with taskset and its own CPU use can be printed
 * beside every figure.  Each mode prints exactly one line on stdout:
 *
 *     RESULT mode=<mode> key=value key=value ...
 *
 * with the load generator's CPU use (lg_cpu_pct: user+system time over the
 * measured wall time), so a reader can see it was not the bottleneck.
 *
 * Modes (see README.md for what each figure means):
 *   iamat     persistent connections, N IAMATs in flight on each; with
 *             --tls, inside TLS (a server's tls_port; the server's
 *             certificate is not verified: a throughput figure)
 *             --probe-ms, a probe connection beside them sends one IAMAT
 *             every M ms (one at a time) and reports its round trips
 *   oneshot   one IAMAT per connection: connect, write, shutdown(SHUT_WR),
 *             read the reply until EOF, close; source addresses rotate over
 *             127.0.0.2..127.0.0.9 so source ports do not run out
 *   prop      propagation: IAMAT at one server, poll another with WHATSAT
 *             (or any one-line query) until the record shows up, optionally
 *             under a background IAMAT load at a fixed rate
 *   whatsat   C connections each doing R WHATSATs one after another
 *             (C=1000, R=1: the concurrency figure; C=1, R=many: per query)
 *   http      C connections each doing R HTTP GETs one after another, on
 *             keep-alive (to the places mock: the direct round trip that
 *             WHATSAT's overhead is measured against)
 *   idle      open N connections and hold them; with --pid, resident bytes
 *             of the server per connection
 *   startup   run a command, time until its port accepts a connection
 *   floor     no server: a byte goes around a chain of --hops relay
 *             processes (pinned with --child-cpus, like the servers) and
 *             back, one at a time every --gap-us: the propagation time no
 *             herd can beat on this machine (the wake-ups alone)
 *   hiccup    no server: sleep 1 ms again and again for --duration and
 *             report how much longer each sleep took (run it pinned to the
 *             servers' CPU): the pauses the machine itself makes
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

/* ------------------------------------------------------------------ options */

static struct {
    const char *mode;
    const char *host;
    int port, port2;
    int conns, inflight;
    double duration, warmup;
    long count;          /* iamat: stop after this many replies (preload) */
    int unique;          /* iamat: every IAMAT for a new client id */
    int idpool;          /* iamat: ids per connection, reused with newer times */
    int srcaddrs;        /* oneshot: rotate over 127.0.0.2 .. 127.0.0.(1+n) */
    double rate;         /* prop: background IAMATs per second at --port */
    int bgconns;
    int poll_us, gap_us, probe_timeout_ms;
    const char *poll_fmt;
    int poll_lines;      /* prop: 0 = poll reply ends with a blank line when found */
    int rounds;          /* whatsat: queries per connection, one after another */
    double radius;
    int bound;
    int timeout_ms;
    int pid;             /* server pid for resident-memory figures */
    const char *tag;     /* client id prefix, unique per run */
    int tls;             /* iamat: connections speak TLS */
    int probe_ms;        /* iamat: one probe IAMAT every M ms on its own connection */
    const char *probe_log; /* iamat: "<replies so far> <round trip µs>" per probe */
    int hops;            /* floor: relays between the writer and the reader */
    const char *child_cpus; /* startup: pin the command to these CPUs ("0", "0,1", "0-1") */
    char **cmd;          /* startup: command to run */
} opt = {
    .host = "127.0.0.1", .conns = 8, .inflight = 1, .duration = 2.0, .warmup = 0.5,
    .idpool = 1000, .srcaddrs = 8, .bgconns = 4, .poll_us = 50, .gap_us = 2000,
    .probe_timeout_ms = 1000, .poll_fmt = "WHATSAT %s 1 0", .rounds = 1, .hops = 3,
    .radius = 10, .bound = 5, .timeout_ms = 15000,
};

/* ------------------------------------------------------------------- time */

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *fmt, const char *arg)
{
    fprintf(stderr, "loadgen: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    exit(1);
}

/* CPU time of this process, in ns. */
static uint64_t cpu_ns(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000ull +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000ull;
}

/* -------------------------------------------------------------- histogram */

/* Log-linear histogram of nanoseconds: 64 sub-buckets per power of two,
 * so every percentile is within 1.6 % of the true value. */
#define HSUB 64
#define HBUCKETS (HSUB * 59)
typedef struct {
    uint64_t n, max, sum;
    uint64_t b[HBUCKETS];
} hist_t;

static int hidx(uint64_t v)
{
    if (v < HSUB) return (int)v;
    int e = 63 - __builtin_clzll(v);
    int sh = e - 6;
    return (sh + 1) * HSUB + (int)((v >> sh) - HSUB);
}

static uint64_t hval(int i)
{
    if (i < HSUB) return (uint64_t)i;
    int sh = i / HSUB - 1;
    uint64_t sub = (uint64_t)(i % HSUB + HSUB);
    return (sub << sh) + ((1ull << sh) >> 1);
}

static void hadd(hist_t *h, uint64_t v)
{
    h->b[hidx(v)]++;
    h->n++;
    h->sum += v;
    if (v > h->max) h->max = v;
}

static double hpct(const hist_t *h, double p)
{
    if (!h->n) return 0;
    uint64_t rank = (uint64_t)(p * (double)h->n + 0.999999);
    if (rank < 1) rank = 1;
    uint64_t acc = 0;
    for (int i = 0; i < HBUCKETS; i++) {
        acc += h->b[i];
        if (acc >= rank) {
            uint64_t v = hval(i);
            return (double)(v > h->max ? h->max : v);
        }
    }
    return (double)h->max;
}

/* ----------------------------------------------------------------- sockets */

static int epfd;

typedef struct conn conn_t;
typedef void (*ev_cb)(conn_t *c, uint32_t events);

struct conn {
    int fd;
    ev_cb cb;
    int id;
    uint32_t want;       /* epoll events registered */
    char *out;           /* bytes waiting to be written */
    size_t olen, ooff, ocap;
    char line[128];      /* start of the current reply line */
    size_t lpos;
    /* request timing: ring of send times, replies come back in order */
    uint64_t *ring;
    size_t rhead, rtail, rcap;
    long sent, replied;
    int state;
    uint64_t t0;
    int srcidx;
    SSL *ssl;            /* --tls: the connection's TLS engine */
    char *rbuf;          /* whole-reply buffer (whatsat, prop polls) */
    size_t rlen, rcap2;
    int rounds_left;
};

static void set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void ep_set(conn_t *c, uint32_t ev)
{
    struct epoll_event e = { .events = ev, .data.ptr = c };
    if (c->want == 0 && ev != 0) epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &e);
    else if (ev == 0 && c->want != 0) epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    else if (ev != c->want) epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &e);
    c->want = ev;
}

static struct sockaddr_in dst_addr(int port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    if (inet_pton(AF_INET, opt.host, &a.sin_addr) != 1) die("bad host %s", opt.host);
    return a;
}

static int nodelay(int fd)
{
    int one = 1;
    if (fd >= 0) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* Pins this process to the CPUs in list ("0", "0,1", "0-1"). */
static int pin_to(const char *list)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    char *copy = strdup(list), *save = NULL;
    if (!copy) return -1;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int a = atoi(t), b = a;
        char *dash = strchr(t, '-');
        if (dash) b = atoi(dash + 1);
        for (int i = a; i <= b && i < CPU_SETSIZE; i++) CPU_SET(i, &set);
    }
    free(copy);
    return sched_setaffinity(0, sizeof set, &set);
}

/* Nonblocking connect; returns fd (connect in progress or done) or -1. */
static int start_connect(int port, int srcidx, int *err)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) { *err = errno; return -1; }
    nodelay(fd);
    int one = 1;
    if (srcidx > 0) {
        struct sockaddr_in s = { .sin_family = AF_INET };
        s.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)srcidx);  /* 127.0.0.(1+i) */
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&s, sizeof s) < 0) { *err = errno; close(fd); return -1; }
    }
    struct sockaddr_in a = dst_addr(port);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) {
        *err = errno;
        close(fd);
        return -1;
    }
    return fd;
}

/* Blocking connect with retries; the socket stays blocking. */
static int connect_retry(int port)
{
    for (int tries = 0; tries < 50; tries++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) die("socket: %s", strerror(errno));
        struct sockaddr_in a = dst_addr(port);
        if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) return nodelay(fd);
        int e = errno;
        close(fd);
        if (e != ECONNREFUSED) die("connect: %s", strerror(e));
        usleep(20000);
    }
    fprintf(stderr, "loadgen: nothing listens on %s:%d\n", opt.host, port);
    exit(1);
}

/* The same, nonblocking, for the persistent connections. */
static int connect_blocking(int port)
{
    int fd = connect_retry(port);
    set_nonblock(fd);
    return fd;
}

static conn_t *conn_new(int fd, ev_cb cb, int id)
{
    conn_t *c = calloc(1, sizeof *c);
    if (!c) die("%s", "out of memory");
    c->fd = fd;
    c->cb = cb;
    c->id = id;
    return c;
}

static void out_reserve(conn_t *c, size_t n)
{
    if (c->ooff && c->ooff == c->olen) c->ooff = c->olen = 0;
    if (c->olen + n <= c->ocap) return;
    if (c->ooff) {
        memmove(c->out, c->out + c->ooff, c->olen - c->ooff);
        c->olen -= c->ooff;
        c->ooff = 0;
        if (c->olen + n <= c->ocap) return;
    }
    size_t nc = c->ocap ? c->ocap : 4096;
    while (nc < c->olen + n) nc *= 2;
    c->out = realloc(c->out, nc);
    if (!c->out) die("%s", "out of memory");
    c->ocap = nc;
}

static void out_put(conn_t *c, const char *s, size_t n)
{
    out_reserve(c, n);
    memcpy(c->out + c->olen, s, n);
    c->olen += n;
}

static size_t out_pending(const conn_t *c) { return c->olen - c->ooff; }

static long io_errors;
static char first_error[200];

static void note_error(const char *what, const char *detail)
{
    io_errors++;
    if (!first_error[0]) {
        snprintf(first_error, sizeof first_error, "%s: %s", what, detail);
        for (char *p = first_error; *p; p++)
            if (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t') *p = '_';
    }
}

/* Write what can be written; keep EPOLLOUT while something is left.
 * Returns -1 on a write error. */
static int out_flush(conn_t *c)
{
    while (out_pending(c) && c->ssl) {
        int w = SSL_write(c->ssl, c->out + c->ooff, (int)out_pending(c));
        if (w > 0) { c->ooff += (size_t)w; continue; }
        int e = SSL_get_error(c->ssl, w);
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) break;
        note_error("SSL_write", "failed");
        return -1;
    }
    while (out_pending(c) && !c->ssl) {
        ssize_t w = write(c->fd, c->out + c->ooff, out_pending(c));
        if (w > 0) { c->ooff += (size_t)w; continue; }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EAGAIN) break;
        note_error("write", strerror(errno));
        return -1;
    }
    uint32_t ev = EPOLLIN | (out_pending(c) ? EPOLLOUT : 0);
    if (c->want != ev) ep_set(c, ev);
    return 0;
}

static void ring_push(conn_t *c, uint64_t t)
{
    if (c->rhead - c->rtail == c->rcap) {
        size_t nc = c->rcap ? c->rcap * 2 : 64;
        uint64_t *nr = malloc(nc * sizeof *nr);
        if (!nr) die("%s", "out of memory");
        for (size_t i = 0; i < c->rhead - c->rtail; i++) nr[i] = c->ring[(c->rtail + i) % c->rcap];
        c->rhead -= c->rtail;
        c->rtail = 0;
        free(c->ring);
        c->ring = nr;
        c->rcap = nc;
    }
    c->ring[c->rhead++ % c->rcap] = t;
}

static uint64_t ring_pop(conn_t *c)
{
    if (c->rtail == c->rhead) return 0;
    return c->ring[c->rtail++ % c->rcap];
}

/* Feed received bytes; calls on_line(c, ok) for every complete line, where
 * ok means it starts with "AT ". */
static void scan_lines(conn_t *c, const char *p, size_t n, void (*on_line)(conn_t *, int))
{
    const char *end = p + n;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *stop = nl ? nl : end;
        size_t seg = (size_t)(stop - p);
        if (c->lpos < sizeof c->line) {
            size_t k = sizeof c->line - c->lpos;
            if (k > seg) k = seg;
            memcpy(c->line + c->lpos, p, k);
        }
        c->lpos += seg;
        if (!nl) break;
        int ok = c->lpos >= 3 && memcmp(c->line, "AT ", 3) == 0;
        if (!ok) {
            size_t k = c->lpos < sizeof c->line ? c->lpos : sizeof c->line - 1;
            char tmp[sizeof c->line];
            memcpy(tmp, c->line, k);
            tmp[k] = 0;
            note_error("bad reply", tmp);
        }
        c->lpos = 0;
        on_line(c, ok);
        p = nl + 1;
    }
}

/* Read what is there; returns bytes read, 0 on EOF, -1 on error, -2 if none. */
static char rdbuf[256 * 1024];
static ssize_t read_some(conn_t *c)
{
    if (c->ssl) {  /* every record that is there, up to rdbuf's size */
        size_t got = 0;
        while (got < sizeof rdbuf) {
            int r = SSL_read(c->ssl, rdbuf + got, (int)(sizeof rdbuf - got));
            if (r > 0) { got += (size_t)r; continue; }
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE || got) break;
            if (e == SSL_ERROR_ZERO_RETURN) return 0;
            note_error("SSL_read", "failed");
            return -1;
        }
        return got ? (ssize_t)got : -2;
    }
    for (;;) {
        ssize_t r = read(c->fd, rdbuf, sizeof rdbuf);
        if (r >= 0) return r;
        if (errno == EINTR) continue;
        if (errno == EAGAIN) return -2;
        note_error("read", strerror(errno));
        return -1;
    }
}

/* ----------------------------------------------------------- IAMAT lines */

static const char *LOC = "+34.068930-118.445127";
static char tag[40];

static char *utoa(char *p, unsigned long v)
{
    char tmp[24];
    int n = 0;
    do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    while (n) *p++ = tmp[--n];
    return p;
}

/* Current POSIX time, "sec.nnnnnnnnn". */
static size_t fmt_now(char *buf)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (size_t)sprintf(buf, "%ld.%09ld", (long)ts.tv_sec, ts.tv_nsec);
}

/* Append "IAMAT <tag>c<conn>-<k> LOC TS\n". */
static void put_iamat(conn_t *c, unsigned long k, const char *ts, size_t tslen)
{
    char line[200], *p = line;
    memcpy(p, "IAMAT ", 6); p += 6;
    size_t tl = strlen(tag);
    memcpy(p, tag, tl); p += tl;
    *p++ = 'c';
    p = utoa(p, (unsigned long)c->id);
    *p++ = '-';
    p = utoa(p, k);
    *p++ = ' ';
    memcpy(p, LOC, 21); p += 21;
    *p++ = ' ';
    memcpy(p, ts, tslen); p += tslen;
    *p++ = '\n';
    out_put(c, line, (size_t)(p - line));
}

/* ------------------------------------------------------------ event loop */

static volatile sig_atomic_t stop_flag;

static void loop_until(uint64_t deadline_ns, int (*done)(void))
{
    struct epoll_event evs[256];
    while (!stop_flag) {
        if (done && done()) return;
        uint64_t now = mono_ns();
        if (deadline_ns && now >= deadline_ns) return;
        int to = -1;
        if (deadline_ns) {
            uint64_t ms = (deadline_ns - now + 999999) / 1000000;
            to = ms > 1000 ? 1000 : (int)ms;
        }
        int n = epoll_wait(epfd, evs, 256, to);
        if (n < 0 && errno != EINTR) die("epoll_wait: %s", strerror(errno));
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            c->cb(c, evs[i].events);
        }
    }
}

/* ------------------------------------------------------------- rss, fds */

static long rss_kb(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) { kb = strtol(line + 6, NULL, 10); break; }
    fclose(f);
    return kb;
}

static long fd_count(int pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", pid);
    DIR *d = opendir(path);
    if (!d) return -1;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d))) if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

/* ====================================================== mode: iamat */

static hist_t hist;
static int measuring;
static long win_replies, total_replies, bad_replies;
static uint64_t t_win0, t_win1;
static long target_count;
static unsigned long uniq_next;

static void iamat_send(conn_t *c, int n)
{
    char ts[40];
    size_t tl = fmt_now(ts);
    uint64_t now = mono_ns();
    for (int i = 0; i < n; i++) {
        unsigned long k;
        if (opt.unique) {
            if (target_count && (long)uniq_next >= target_count) break;
            k = uniq_next++;
        } else {
            k = (unsigned long)(c->sent % opt.idpool);
        }
        put_iamat(c, k, ts, tl);
        ring_push(c, now);
        c->sent++;
    }
    out_flush(c);
}

static int iamat_stopping;

static void iamat_line(conn_t *c, int ok)
{
    uint64_t t = ring_pop(c);
    c->replied++;
    total_replies++;
    if (!ok) bad_replies++;
    if (measuring) {
        win_replies++;
        hadd(&hist, mono_ns() - t);
    }
}

static void iamat_cb(conn_t *c, uint32_t ev)
{
    if (ev & EPOLLOUT) {
        if (out_flush(c) < 0) stop_flag = 1;
    }
    if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        for (;;) {
            ssize_t r = read_some(c);
            if (r == -2) break;
            if (r <= 0) {
                if (r == 0) note_error("read", "server closed the connection");
                stop_flag = 1;
                return;
            }
            long before = c->replied;
            scan_lines(c, rdbuf, (size_t)r, iamat_line);
            long got = c->replied - before;
            if (got > 0 && !iamat_stopping) iamat_send(c, (int)got);
            if ((size_t)r < sizeof rdbuf) break;
        }
    }
}

static conn_t **conns;

static int count_done(void) { return target_count && total_replies >= target_count; }

static int all_replied(void)
{
    for (int i = 0; i < opt.conns; i++) if (conns[i]->replied < conns[i]->sent) return 0;
    return 1;
}

/* --tls: a TLS client on fd (nonblocking), its handshake done before any
 * figure is measured. */
static SSL *tls_client(int fd)
{
    static SSL_CTX *ctx;
    if (!ctx) {
        ctx = SSL_CTX_new(TLS_client_method());
        if (!ctx) die("%s", "SSL_CTX_new failed");
    }
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    for (int tries = 0; tries < 1000; tries++) {
        int r = SSL_connect(ssl);
        if (r == 1) return ssl;
        int e = SSL_get_error(ssl, r);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) break;
        struct pollfd p = { fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, 0 };
        poll(&p, 1, 100);
    }
    char why[160] = "handshake";
    ERR_error_string_n(ERR_get_error(), why, sizeof why);
    die("TLS handshake failed: %s", why);
    return NULL;
}

/* The probe beside a load: one IAMAT every --probe-ms on its own connection,
 * never two outstanding, so a server that stalls shows as one long round
 * trip (and the probes it would have got are simply not sent). */
static conn_t *probe_conn, *probe_timer;
static hist_t probe_hist;
static uint64_t probe_t0, probe_max_at;
static long probe_loaded;   /* load replies when the outstanding probe left */
static int probe_out;
static FILE *probe_log;

static void probe_line(conn_t *c, int ok)
{
    (void)c;
    if (!ok) bad_replies++;
    if (!probe_out) return;
    uint64_t rtt = mono_ns() - probe_t0;
    if (rtt > probe_hist.max) probe_max_at = (uint64_t)probe_loaded;
    hadd(&probe_hist, rtt);
    if (probe_log) fprintf(probe_log, "%ld %.1f\n", probe_loaded, rtt / 1e3);
    probe_out = 0;
}

static void probe_cb(conn_t *c, uint32_t ev)
{
    if (ev & EPOLLOUT) out_flush(c);
    if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        for (;;) {
            ssize_t r = read_some(c);
            if (r == -2) break;
            if (r <= 0) { if (r == 0) note_error("read", "probe connection closed"); stop_flag = 1; return; }
            scan_lines(c, rdbuf, (size_t)r, probe_line);
        }
    }
}

static void probe_tick(conn_t *c, uint32_t ev)
{
    uint64_t x;
    if (read(c->fd, &x, sizeof x) < 0 || probe_out) return;
    char ts[40], line[200];
    size_t tl = fmt_now(ts);
    int n = snprintf(line, sizeof line, "IAMAT %sprobe %s %.*s\n", tag, LOC, (int)tl, ts);
    probe_t0 = mono_ns();
    probe_loaded = total_replies;
    probe_out = 1;
    out_put(probe_conn, line, (size_t)n);
    out_flush(probe_conn);
}

static void probe_open(void)
{
    if (opt.probe_log && !(probe_log = fopen(opt.probe_log, "w")))
        die("cannot write %s", opt.probe_log);
    probe_conn = conn_new(connect_blocking(opt.port), probe_cb, -1);
    ep_set(probe_conn, EPOLLIN);
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (tfd < 0) die("timerfd: %s", strerror(errno));
    probe_timer = conn_new(tfd, probe_tick, -2);
    ep_set(probe_timer, EPOLLIN);
    uint64_t ns = (uint64_t)opt.probe_ms * 1000000ull;
    struct itimerspec its = {
        .it_value = { (time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull) },
        .it_interval = { (time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull) },
    };
    timerfd_settime(tfd, 0, &its, NULL);
}

static void probe_report(void)
{
    printf(" probes=%lu probe_p50_us=%.1f probe_p99_us=%.1f probe_max_us=%.1f probe_max_at=%lu",
           (unsigned long)probe_hist.n, hpct(&probe_hist, .5) / 1e3, hpct(&probe_hist, .99) / 1e3,
           probe_hist.max / 1e3, (unsigned long)probe_max_at);
    if (probe_log) fclose(probe_log);
}

static void mode_iamat(void)
{
    conns = calloc((size_t)opt.conns, sizeof *conns);
    long rss0 = opt.pid ? rss_kb(opt.pid) : -1;
    for (int i = 0; i < opt.conns; i++) {
        conns[i] = conn_new(connect_blocking(opt.port), iamat_cb, i);
        if (opt.tls) conns[i]->ssl = tls_client(conns[i]->fd);
        ep_set(conns[i], EPOLLIN);
    }
    if (opt.probe_ms > 0) probe_open();
    target_count = opt.count;
    uint64_t t0 = mono_ns(), c0 = 0;
    if (target_count) {
        /* preload: a fixed number of IAMATs, all measured */
        measuring = 1;
        c0 = cpu_ns();
        t_win0 = t0;
        for (int i = 0; i < opt.conns; i++) iamat_send(conns[i], opt.inflight);
        loop_until(t0 + (uint64_t)(opt.duration * 1e9), count_done);
        t_win1 = mono_ns();
    } else {
        for (int i = 0; i < opt.conns; i++) iamat_send(conns[i], opt.inflight);
        loop_until(t0 + (uint64_t)(opt.warmup * 1e9), NULL);
        measuring = 1;
        c0 = cpu_ns();
        t_win0 = mono_ns();
        loop_until(t_win0 + (uint64_t)(opt.duration * 1e9), NULL);
        t_win1 = mono_ns();
        measuring = 0;
        iamat_stopping = 1;
        loop_until(t_win1 + 2000000000ull, all_replied);
    }
    uint64_t c1 = cpu_ns();
    double win = (double)(t_win1 - t_win0) / 1e9;
    long count = target_count ? total_replies : win_replies;
    printf("RESULT mode=iamat tls=%d conns=%d inflight=%d rate=%.0f replies=%ld bad=%ld errors=%ld "
           "p50_us=%.1f p99_us=%.1f max_us=%.1f seconds=%.3f lg_cpu_pct=%.1f",
           opt.tls, opt.conns, opt.inflight, count / win, count, bad_replies, io_errors,
           hpct(&hist, .5) / 1e3, hpct(&hist, .99) / 1e3, hist.max / 1e3, win,
           (double)(c1 - c0) / (double)(t_win1 - t_win0) * 100);
    if (opt.probe_ms > 0) probe_report();
    if (opt.pid) {
        usleep(300000);
        long rss1 = rss_kb(opt.pid);
        printf(" rss_before_kb=%ld rss_after_kb=%ld bytes_per_record=%.1f", rss0, rss1,
               count ? (double)(rss1 - rss0) * 1024.0 / (double)count : 0.0);
    }
    if (first_error[0]) printf(" first_error=%s", first_error);
    printf("\n");
    if (target_count && total_replies < target_count) exit(3);
}

/* ====================================================== mode: oneshot */

enum { OS_CONNECTING = 1, OS_READING };
static long os_ok, os_bad, os_fail;
static int os_stopping, os_active;

static void os_start(conn_t *c);

static void os_finish(conn_t *c, int ok)
{
    ep_set(c, 0);
    close(c->fd);
    c->fd = -1;
    os_active--;
    if (measuring) {
        if (ok == 1) { os_ok++; hadd(&hist, mono_ns() - c->t0); }
        else if (ok == 0) os_bad++;
        else os_fail++;
    }
    if (!os_stopping) os_start(c);
}

static void os_cb(conn_t *c, uint32_t ev)
{
    if (c->state == OS_CONNECTING) {
        if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
        int err = 0;
        socklen_t l = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err) { note_error("connect", strerror(err)); os_finish(c, -1); return; }
        char ts[40], line[200];
        size_t tl = fmt_now(ts);
        int n = snprintf(line, sizeof line, "IAMAT %so%d-%ld %s %.*s\n", tag, c->id,
                         c->sent++ % opt.idpool, LOC, (int)tl, ts);
        if (write(c->fd, line, (size_t)n) != n) {
            note_error("write", strerror(errno));
            os_finish(c, -1);
            return;
        }
        shutdown(c->fd, SHUT_WR);
        c->state = OS_READING;
        c->lpos = 0;
        ep_set(c, EPOLLIN);
        return;
    }
    for (;;) {
        ssize_t r = read_some(c);
        if (r == -2) return;
        if (r < 0) { os_finish(c, -1); return; }
        if (r == 0) {
            int ok = c->lpos >= 3 && memcmp(c->line, "AT ", 3) == 0;
            if (!ok) {
                c->line[c->lpos < sizeof c->line ? c->lpos : sizeof c->line - 1] = 0;
                note_error("bad reply", c->lpos ? c->line : "(empty)");
            }
            os_finish(c, ok);
            return;
        }
        if (c->lpos < sizeof c->line) {
            size_t k = sizeof c->line - c->lpos;
            if (k > (size_t)r) k = (size_t)r;
            memcpy(c->line + c->lpos, rdbuf, k);
        }
        c->lpos += (size_t)r;
    }
}

static void os_start(conn_t *c)
{
    int err = 0;
    c->srcidx = opt.srcaddrs > 0 ? 1 + (int)((c->srcidx) % opt.srcaddrs) : 0;
    int fd = start_connect(opt.port, c->srcidx, &err);
    c->t0 = mono_ns();
    if (fd < 0) {
        note_error("connect", strerror(err));
        if (measuring) os_fail++;
        /* try again on the next tick rather than spinning */
        c->fd = -1;
        return;
    }
    c->fd = fd;
    c->want = 0;
    c->state = OS_CONNECTING;
    os_active++;
    ep_set(c, EPOLLOUT);
}

static int os_none_active(void) { return os_active == 0; }

static void mode_oneshot(void)
{
    conns = calloc((size_t)opt.conns, sizeof *conns);
    for (int i = 0; i < opt.conns; i++) {
        conns[i] = conn_new(-1, os_cb, i);
        conns[i]->srcidx = i;
    }
    uint64_t t0 = mono_ns();
    for (int i = 0; i < opt.conns; i++) os_start(conns[i]);
    uint64_t warm_end = t0 + (uint64_t)(opt.warmup * 1e9), c0 = 0;
    /* restart slots whose connect failed, every 10 ms */
    uint64_t end = 0;
    while (!stop_flag) {
        uint64_t now = mono_ns();
        if (!measuring && now >= warm_end && !end) {
            measuring = 1;
            c0 = cpu_ns();
            t_win0 = now;
            end = now + (uint64_t)(opt.duration * 1e9);
        }
        if (end && now >= end) break;
        loop_until(now + 10000000ull, NULL);
        for (int i = 0; i < opt.conns; i++)
            if (conns[i]->fd < 0) os_start(conns[i]);
    }
    t_win1 = mono_ns();
    uint64_t c1 = cpu_ns();
    measuring = 0;
    os_stopping = 1;
    loop_until(t_win1 + 2000000000ull, os_none_active);
    double win = (double)(t_win1 - t_win0) / 1e9;
    printf("RESULT mode=oneshot conns=%d srcaddrs=%d rate=%.0f ok=%ld bad=%ld failed=%ld "
           "p50_us=%.1f p99_us=%.1f max_us=%.1f seconds=%.3f lg_cpu_pct=%.1f",
           opt.conns, opt.srcaddrs, os_ok / win, os_ok, os_bad, os_fail,
           hpct(&hist, .5) / 1e3, hpct(&hist, .99) / 1e3, hist.max / 1e3, win,
           (double)(c1 - c0) / (double)(t_win1 - t_win0) * 100);
    if (first_error[0]) printf(" first_error=%s", first_error);
    printf("\n");
}

/* ========================================================= mode: prop */

/* A probe: IAMAT for a fresh client id at --port (X), then poll --port2 (Y)
 * with --poll-fmt until Y answers with an AT line; the delay is from just
 * before the IAMAT is written to the moment the first positive poll reply
 * is complete (an upper bound: it includes one poll round trip).  Between
 * two negative polls it waits --poll-us or a tenth of the time waited so
 * far, whichever is longer (at most 1 ms); between probes --gap-us. */
enum { PR_IDLE, PR_POLLING, PR_WAITPOLL };
static conn_t *px, *py, *ptimer, *bgtimer;
static conn_t **bg;
static hist_t phist;
static long probes_started, probes_seen, probes_timeout, polls;
static int pr_state;
static uint64_t pr_t0;
static char pr_id[96];
static int prop_active = 1;
static uint64_t bg_start;
static long bg_sent, bg_win_replies, bg_replies, bg_dropped, bg_win_sent;

static void timer_arm(conn_t *t, uint64_t ns, uint64_t interval_ns)
{
    struct itimerspec its = {
        .it_value = { (time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull) },
        .it_interval = { (time_t)(interval_ns / 1000000000ull), (long)(interval_ns % 1000000000ull) },
    };
    if (ns == 0) its.it_value.tv_nsec = 1;
    timerfd_settime(t->fd, 0, &its, NULL);
}

static void send_poll(void)
{
    char line[200];
    char q[160];
    snprintf(q, sizeof q, opt.poll_fmt, pr_id);
    int n = snprintf(line, sizeof line, "%s\n", q);
    py->rlen = 0;
    polls++;
    out_put(py, line, (size_t)n);
    out_flush(py);
    pr_state = PR_POLLING;
}

static void probe_start(void)
{
    if (!prop_active) return;
    snprintf(pr_id, sizeof pr_id, "%sp%ld", tag, probes_started);
    char ts[40];
    size_t tl = fmt_now(ts);
    char line[200];
    int n = snprintf(line, sizeof line, "IAMAT %s %s %.*s\n", pr_id, LOC, (int)tl, ts);
    pr_t0 = mono_ns();
    out_put(px, line, (size_t)n);
    out_flush(px);
    probes_started++;
    send_poll();
}

static void probe_end(int seen)
{
    uint64_t now = mono_ns();
    int in_win = measuring && pr_t0 >= t_win0;
    if (in_win) {
        if (seen) { probes_seen++; hadd(&phist, now - pr_t0); }
        else probes_timeout++;
    }
    pr_state = PR_IDLE;
    timer_arm(ptimer, (uint64_t)opt.gap_us * 1000ull, 0);
}

static void px_line(conn_t *c, int ok) { (void)c; if (!ok) bad_replies++; }

static void px_cb(conn_t *c, uint32_t ev)
{
    if (ev & EPOLLOUT) out_flush(c);
    if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        for (;;) {
            ssize_t r = read_some(c);
            if (r == -2) break;
            if (r <= 0) { if (r == 0) note_error("read", "X closed the connection"); stop_flag = 1; return; }
            scan_lines(c, rdbuf, (size_t)r, px_line);
        }
    }
}

/* Is the poll reply in py->rbuf complete?  1 = found, 0 = not found,
 * -1 = incomplete, -2 = unexpected. */
static int poll_reply_state(void)
{
    char *b = py->rbuf;
    size_t n = py->rlen;
    if (n < 2) return -1;
    if (b[0] == '?' && b[1] == ' ') return memchr(b, '\n', n) ? 0 : -1;
    if (n >= 3 && !memcmp(b, "AT ", 3)) {
        if (opt.poll_lines == 1) return memchr(b, '\n', n) ? 1 : -1;
        return memmem(b, n, "\n\n", 2) ? 1 : -1;
    }
    if (n >= 3) return -2;
    return -1;
}

static void py_cb(conn_t *c, uint32_t ev)
{
    if (ev & EPOLLOUT) out_flush(c);
    if (!(ev & (EPOLLIN | EPOLLHUP | EPOLLERR))) return;
    for (;;) {
        ssize_t r = read_some(c);
        if (r == -2) break;
        if (r <= 0) { if (r == 0) note_error("read", "Y closed the connection"); stop_flag = 1; return; }
        if (c->rlen + (size_t)r > c->rcap2) {
            c->rcap2 = (c->rlen + (size_t)r) * 2;
            c->rbuf = realloc(c->rbuf, c->rcap2);
            if (!c->rbuf) die("%s", "out of memory");
        }
        memcpy(c->rbuf + c->rlen, rdbuf, (size_t)r);
        c->rlen += (size_t)r;
    }
    if (pr_state != PR_POLLING) return;
    int st = poll_reply_state();
    if (st == -1) return;
    if (st == -2) {
        char tmp[121];
        size_t k = c->rlen < 120 ? c->rlen : 120;
        memcpy(tmp, c->rbuf, k);
        tmp[k] = 0;
        note_error("unexpected poll reply", tmp);
        stop_flag = 1;
        return;
    }
    if (st == 1) { probe_end(1); return; }
    uint64_t elapsed = mono_ns() - pr_t0;
    if (elapsed > (uint64_t)opt.probe_timeout_ms * 1000000ull) { probe_end(0); return; }
    /* wait --poll-us, or a tenth of the time waited so far (at most 1 ms):
     * the resolution stays within 10 %, and a slow server is not flooded
     * with polls that would slow its neighbours on the same CPU */
    uint64_t wait = (uint64_t)opt.poll_us * 1000ull;
    if (elapsed / 10 > wait) wait = elapsed / 10;
    if (wait > 1000000ull) wait = 1000000ull;
    pr_state = PR_WAITPOLL;
    timer_arm(ptimer, wait, 0);
}

static void ptimer_cb(conn_t *c, uint32_t ev)
{
    uint64_t x;
    if (read(c->fd, &x, sizeof x) < 0) return;
    if (pr_state == PR_IDLE) probe_start();
    else if (pr_state == PR_WAITPOLL) send_poll();
}

static void bg_line(conn_t *c, int ok)
{
    (void)c;
    bg_replies++;
    if (!ok) bad_replies++;
    if (measuring) bg_win_replies++;
}

static void bg_cb(conn_t *c, uint32_t ev)
{
    if (ev & EPOLLOUT) out_flush(c);
    if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        for (;;) {
            ssize_t r = read_some(c);
            if (r == -2) break;
            if (r <= 0) { if (r == 0) note_error("read", "server closed the connection"); stop_flag = 1; return; }
            scan_lines(c, rdbuf, (size_t)r, bg_line);
            if ((size_t)r < sizeof rdbuf) break;
        }
    }
}

static void bgtimer_cb(conn_t *t, uint32_t ev)
{
    uint64_t x;
    if (read(t->fd, &x, sizeof x) < 0) return;
    if (!prop_active) return;
    uint64_t now = mono_ns();
    long due = (long)(opt.rate * (double)(now - bg_start) / 1e9);
    long k = due - bg_sent - bg_dropped;
    if (k <= 0) return;
    char ts[40];
    size_t tl = fmt_now(ts);
    for (int i = 0; i < opt.bgconns; i++) {
        conn_t *c = bg[i];
        long share = k / opt.bgconns + (i < k % opt.bgconns ? 1 : 0);
        if (out_pending(c) > 256 * 1024) { bg_dropped += share; continue; }  /* not keeping up */
        for (long j = 0; j < share; j++) put_iamat(c, (unsigned long)(c->sent++ % opt.idpool), ts, tl);
        bg_sent += share;
        if (measuring) bg_win_sent += share;
        out_flush(c);
    }
}

static conn_t *timer_new(ev_cb cb)
{
    int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (fd < 0) die("timerfd: %s", strerror(errno));
    conn_t *t = conn_new(fd, cb, -1);
    ep_set(t, EPOLLIN);
    return t;
}

static void mode_prop(void)
{
    if (!opt.port2) die("%s", "prop needs --port2 (the server polled)");
    px = conn_new(connect_blocking(opt.port), px_cb, 0);
    py = conn_new(connect_blocking(opt.port2), py_cb, 1);
    ep_set(px, EPOLLIN);
    ep_set(py, EPOLLIN);
    ptimer = timer_new(ptimer_cb);
    if (opt.rate > 0) {
        bg = calloc((size_t)opt.bgconns, sizeof *bg);
        for (int i = 0; i < opt.bgconns; i++) {
            bg[i] = conn_new(connect_blocking(opt.port), bg_cb, 100 + i);
            ep_set(bg[i], EPOLLIN);
        }
        bgtimer = timer_new(bgtimer_cb);
        bg_start = mono_ns();
        timer_arm(bgtimer, 200000, 200000);  /* every 0.2 ms */
    }
    uint64_t t0 = mono_ns();
    timer_arm(ptimer, 1000, 0);
    loop_until(t0 + (uint64_t)(opt.warmup * 1e9), NULL);
    measuring = 1;
    uint64_t c0 = cpu_ns();
    t_win0 = mono_ns();
    loop_until(t_win0 + (uint64_t)(opt.duration * 1e9), NULL);
    t_win1 = mono_ns();
    uint64_t c1 = cpu_ns();
    /* a probe still in flight gets its chance */
    if (pr_state != PR_IDLE && !stop_flag) {
        while (pr_state != PR_IDLE && !stop_flag &&
               mono_ns() - pr_t0 < (uint64_t)opt.probe_timeout_ms * 1000000ull)
            loop_until(mono_ns() + 1000000ull, NULL);
        if (pr_state != PR_IDLE) probe_end(0);
    }
    measuring = 0;
    prop_active = 0;
    double win = (double)(t_win1 - t_win0) / 1e9;
    double offered = opt.rate;
    double achieved = bg_win_replies / win;
    long backlog = bg_sent - bg_replies;
    int sustained = probes_timeout == 0 && stop_flag == 0 && io_errors == 0 &&
                    (opt.rate <= 0 || (achieved >= 0.95 * offered && bg_dropped == 0 &&
                                       backlog <= (long)(offered * 0.05) + 64));
    printf("RESULT mode=prop rate=%.0f achieved=%.0f probes=%ld seen=%ld timeouts=%ld polls=%ld "
           "p50_us=%.1f p90_us=%.1f p99_us=%.1f max_us=%.1f backlog=%ld dropped=%ld bad=%ld "
           "sustained=%d seconds=%.3f lg_cpu_pct=%.1f",
           offered, achieved, probes_seen + probes_timeout, probes_seen, probes_timeout, polls,
           hpct(&phist, .5) / 1e3, hpct(&phist, .9) / 1e3, hpct(&phist, .99) / 1e3,
           phist.max / 1e3, backlog, bg_dropped, bad_replies, sustained, win,
           (double)(c1 - c0) / (double)(t_win1 - t_win0) * 100);
    if (first_error[0]) printf(" first_error=%s", first_error);
    printf("\n");
}

/* ========================================================= mode: whatsat */

static long wq_ok, wq_bad, wq_done_conns, wq_connected, wq_conn_failed;
static uint64_t wq_first_send, wq_last_reply;

static void wq_send(conn_t *c)
{
    char line[200];
    int n = snprintf(line, sizeof line, "WHATSAT %sw%d %g %d\n", tag, c->id, opt.radius, opt.bound);
    c->rlen = 0;
    c->t0 = mono_ns();
    if (!wq_first_send) wq_first_send = c->t0;
    out_put(c, line, (size_t)n);
    out_flush(c);
}

static void wq_cb(conn_t *c, uint32_t ev)
{
    if (c->state == 1) {  /* connecting */
        if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
        int err = 0;
        socklen_t l = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err) { note_error("connect", strerror(err)); wq_conn_failed++; ep_set(c, 0); close(c->fd); c->state = 3; return; }
        c->state = 2;
        wq_connected++;
        ep_set(c, EPOLLIN);
        return;
    }
    if (ev & EPOLLOUT) out_flush(c);
    if (!(ev & (EPOLLIN | EPOLLHUP | EPOLLERR))) return;
    for (;;) {
        ssize_t r = read_some(c);
        if (r == -2) break;
        if (r <= 0) {
            if (r == 0) note_error("read", "server closed the connection");
            ep_set(c, 0);
            c->state = 3;
            wq_done_conns++;
            return;
        }
        if (c->rlen + (size_t)r + 1 > c->rcap2) {
            c->rcap2 = (c->rlen + (size_t)r + 1) * 2;
            c->rbuf = realloc(c->rbuf, c->rcap2);
            if (!c->rbuf) die("%s", "out of memory");
        }
        memcpy(c->rbuf + c->rlen, rdbuf, (size_t)r);
        c->rlen += (size_t)r;
    }
    int done = 0, ok = 0;
    if (c->rlen >= 2 && c->rbuf[0] == '?' && memchr(c->rbuf, '\n', c->rlen)) done = 1;
    else if (c->rlen >= 3 && !memcmp(c->rbuf, "AT ", 3) && memmem(c->rbuf, c->rlen, "\n\n", 2)) {
        done = 1;
        c->rbuf[c->rlen] = 0;
        ok = strstr(c->rbuf, "\"results\"") != NULL;
    } else if (c->rlen >= 3 && memcmp(c->rbuf, "AT ", 3) && c->rbuf[0] != '?') done = 1;
    if (!done) return;
    uint64_t now = mono_ns();
    if (ok) { wq_ok++; hadd(&hist, now - c->t0); }
    else {
        wq_bad++;
        c->rbuf[c->rlen < 150 ? c->rlen : 150] = 0;
        note_error("bad WHATSAT reply", c->rbuf);
    }
    wq_last_reply = now;
    if (--c->rounds_left > 0) wq_send(c);
    else { c->state = 3; wq_done_conns++; ep_set(c, 0); }
}

static int wq_all_done(void) { return wq_done_conns >= opt.conns; }
static int wq_connect_settled(void) { return wq_connected + wq_conn_failed >= opt.conns; }
static int iamat_all(void) { return conns[0]->replied >= conns[0]->sent; }

static void mode_whatsat(void)
{
    /* phase 1: tell the server where the queried clients are */
    conns = calloc(1, sizeof *conns);
    conns[0] = conn_new(connect_blocking(opt.port), iamat_cb, 0);
    ep_set(conns[0], EPOLLIN);
    iamat_stopping = 1;
    {
        char ts[40];
        size_t tl = fmt_now(ts);
        for (int i = 0; i < opt.conns; i++) {
            char line[200];
            /* spread the clients over a few kilometres around UCLA */
            int n = snprintf(line, sizeof line, "IAMAT %sw%d %+.6f%+.6f %.*s\n", tag, i,
                             34.068930 + (i % 100) * 0.0003, -118.445127 - (i / 100) * 0.0003,
                             (int)tl, ts);
            out_put(conns[0], line, (size_t)n);
            conns[0]->sent++;
        }
        out_flush(conns[0]);
        loop_until(mono_ns() + 10000000000ull, iamat_all);
        if (conns[0]->replied < conns[0]->sent || bad_replies) {
            printf("RESULT mode=whatsat error=iamat_phase_failed replied=%ld bad=%ld first_error=%s\n",
                   conns[0]->replied, bad_replies, first_error[0] ? first_error : "-");
            exit(3);
        }
    }
    /* phase 2: open every connection first, in batches the listen queue takes */
    conn_t **qc = calloc((size_t)opt.conns, sizeof *qc);
    for (int i = 0; i < opt.conns; i += 200) {
        for (int j = i; j < opt.conns && j < i + 200; j++) {
            int err = 0;
            int fd = start_connect(opt.port, 0, &err);
            if (fd < 0) die("connect: %s", strerror(err));
            qc[j] = conn_new(fd, wq_cb, j);
            qc[j]->state = 1;
            qc[j]->rounds_left = opt.rounds;
            ep_set(qc[j], EPOLLOUT);
        }
        long want = i + 200 < opt.conns ? i + 200 : opt.conns;
        while (wq_connected + wq_conn_failed < want && !stop_flag)
            loop_until(mono_ns() + 5000000ull, wq_connect_settled);
        usleep(10000);
    }
    if (wq_conn_failed) {
        printf("RESULT mode=whatsat error=connect_failed failed=%ld first_error=%s\n",
               wq_conn_failed, first_error);
        exit(3);
    }
    usleep(200000);  /* let the server accept them all */
    /* phase 3: every connection sends its first WHATSAT at once */
    uint64_t c0 = cpu_ns(), t0 = mono_ns();
    for (int i = 0; i < opt.conns; i++) wq_send(qc[i]);
    loop_until(t0 + (uint64_t)opt.timeout_ms * 1000000ull, wq_all_done);
    uint64_t t1 = mono_ns(), c1 = cpu_ns();
    long missing = (long)opt.conns * opt.rounds - wq_ok - wq_bad;
    double total_ms = wq_last_reply ? (double)(wq_last_reply - wq_first_send) / 1e6 : 0;
    printf("RESULT mode=whatsat conns=%d rounds=%d ok=%ld bad=%ld missing=%ld total_ms=%.1f "
           "p50_us=%.1f p99_us=%.1f max_us=%.1f mean_us=%.1f lg_cpu_pct=%.1f",
           opt.conns, opt.rounds, wq_ok, wq_bad, missing, total_ms, hpct(&hist, .5) / 1e3,
           hpct(&hist, .99) / 1e3, hist.max / 1e3, hist.n ? (double)hist.sum / hist.n / 1e3 : 0,
           (double)(c1 - c0) / (double)(t1 - t0) * 100);
    if (first_error[0]) printf(" first_error=%s", first_error);
    printf("\n");
}

/* ============================================================ mode: http */

/* A GET the size of the one herd's google provider sends for a WHATSAT. */
static void http_send(conn_t *c)
{
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET /maps/api/place/nearbysearch/json?location=%%2B34.068930%%2C-118.445127"
                     "&radius=10000&key=bench-key HTTP/1.1\r\nHost: %s:%d\r\n"
                     "User-Agent: loadgen\r\nAccept-Encoding: deflate, gzip, br\r\n"
                     "Accept: application/json\r\n\r\n", opt.host, opt.port);
    c->rlen = 0;
    c->t0 = mono_ns();
    out_put(c, req, (size_t)n);
    out_flush(c);
}

/* 1 when rbuf holds one whole response (headers and Content-Length body). */
static int http_complete(conn_t *c, int *ok)
{
    c->rbuf[c->rlen] = 0;
    char *end = strstr(c->rbuf, "\r\n\r\n");
    if (!end) return 0;
    char *cl = strcasestr(c->rbuf, "\r\ncontent-length:");
    size_t body = cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0;
    if (c->rlen < (size_t)(end + 4 - c->rbuf) + body) return 0;
    *ok = !strncmp(c->rbuf, "HTTP/1.1 200", 12);
    return 1;
}

static void http_cb(conn_t *c, uint32_t ev)
{
    if (ev & EPOLLOUT) out_flush(c);
    if (!(ev & (EPOLLIN | EPOLLHUP | EPOLLERR))) return;
    for (;;) {
        ssize_t r = read_some(c);
        if (r == -2) break;
        if (r <= 0) {
            note_error("read", "server closed the connection");
            ep_set(c, 0);
            c->state = 3;
            wq_done_conns++;
            return;
        }
        if (c->rlen + (size_t)r + 1 > c->rcap2) {
            c->rcap2 = (c->rlen + (size_t)r + 1) * 2;
            c->rbuf = realloc(c->rbuf, c->rcap2);
            if (!c->rbuf) die("%s", "out of memory");
        }
        memcpy(c->rbuf + c->rlen, rdbuf, (size_t)r);
        c->rlen += (size_t)r;
    }
    int ok = 0;
    if (!c->rbuf || !http_complete(c, &ok)) return;
    if (ok) { wq_ok++; hadd(&hist, mono_ns() - c->t0); }
    else { wq_bad++; c->rbuf[c->rlen < 150 ? c->rlen : 150] = 0; note_error("bad HTTP reply", c->rbuf); }
    if (--c->rounds_left > 0) http_send(c);
    else { c->state = 3; wq_done_conns++; ep_set(c, 0); }
}

static void mode_http(void)
{
    conn_t **hc = calloc((size_t)opt.conns, sizeof *hc);
    for (int i = 0; i < opt.conns; i++) {
        hc[i] = conn_new(connect_blocking(opt.port), http_cb, i);
        hc[i]->rounds_left = opt.rounds;
        ep_set(hc[i], EPOLLIN);
    }
    uint64_t c0 = cpu_ns(), t0 = mono_ns();
    for (int i = 0; i < opt.conns; i++) http_send(hc[i]);
    loop_until(t0 + (uint64_t)opt.timeout_ms * 1000000ull, wq_all_done);
    uint64_t t1 = mono_ns(), c1 = cpu_ns();
    long missing = (long)opt.conns * opt.rounds - wq_ok - wq_bad;
    printf("RESULT mode=http conns=%d rounds=%d ok=%ld bad=%ld missing=%ld "
           "p50_us=%.1f p99_us=%.1f max_us=%.1f lg_cpu_pct=%.1f",
           opt.conns, opt.rounds, wq_ok, wq_bad, missing, hpct(&hist, .5) / 1e3,
           hpct(&hist, .99) / 1e3, hist.max / 1e3, (double)(c1 - c0) / (double)(t1 - t0) * 100);
    if (first_error[0]) printf(" first_error=%s", first_error);
    printf("\n");
}

/* ============================================================ mode: idle */

static void idle_cb(conn_t *c, uint32_t ev)
{
    if (c->state == 1) {
        if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
        int err = 0;
        socklen_t l = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err) { note_error("connect", strerror(err)); wq_conn_failed++; ep_set(c, 0); close(c->fd); c->state = 3; return; }
        c->state = 2;
        wq_connected++;
        ep_set(c, EPOLLIN);
        return;
    }
    ssize_t r = read_some(c);
    if (r == 0 || r == -1) {
        /* the server closed an idle connection */
        ep_set(c, 0);
        c->state = 3;
        wq_done_conns++;
    }
}

static void mode_idle(void)
{
    long rss0 = -1, fd0 = -1;
    if (opt.pid) { rss0 = rss_kb(opt.pid); fd0 = fd_count(opt.pid); }
    uint64_t t0 = mono_ns(), c0 = cpu_ns();
    conn_t **ic = calloc((size_t)opt.conns, sizeof *ic);
    for (int i = 0; i < opt.conns; i += 500) {
        for (int j = i; j < opt.conns && j < i + 500; j++) {
            int err = 0;
            /* rotate source addresses: 10,000+ connections to one port */
            int fd = start_connect(opt.port, 1 + j % 8, &err);
            if (fd < 0) die("connect: %s", strerror(err));
            ic[j] = conn_new(fd, idle_cb, j);
            ic[j]->state = 1;
            ep_set(ic[j], EPOLLOUT);
        }
        long want = i + 500 < opt.conns ? i + 500 : opt.conns;
        uint64_t dl = mono_ns() + 10000000000ull;
        while (wq_connected + wq_conn_failed < want && !stop_flag && mono_ns() < dl)
            loop_until(mono_ns() + 5000000ull, NULL);
        usleep(5000);
    }
    long accepted = -1;
    if (opt.pid) {
        /* wait until the server holds them all (its fd count), at most 5 s */
        uint64_t dl = mono_ns() + 5000000000ull;
        while (mono_ns() < dl) {
            accepted = fd_count(opt.pid) - fd0;
            if (accepted >= wq_connected) break;
            loop_until(mono_ns() + 20000000ull, NULL);
        }
        loop_until(mono_ns() + 500000000ull, NULL);  /* let it settle */
    }
    uint64_t t1 = mono_ns(), c1 = cpu_ns();
    printf("RESULT mode=idle conns=%d open=%ld failed=%ld closed_by_server=%ld seconds=%.3f lg_cpu_pct=%.1f",
           opt.conns, wq_connected, wq_conn_failed, wq_done_conns, (double)(t1 - t0) / 1e9,
           (double)(c1 - c0) / (double)(t1 - t0) * 100);
    if (opt.pid) {
        long rss1 = rss_kb(opt.pid);
        printf(" accepted=%ld rss_before_kb=%ld rss_after_kb=%ld bytes_per_conn=%.1f", accepted,
               rss0, rss1, wq_connected ? (double)(rss1 - rss0) * 1024.0 / (double)wq_connected : 0.0);
    }
    if (first_error[0]) printf(" first_error=%s", first_error);
    printf("\n");
    fflush(stdout);
    if (opt.duration > 0) loop_until(mono_ns() + (uint64_t)(opt.duration * 1e9), NULL);
}

/* ========================================================= mode: floor */

/* A listening socket on a port the kernel picks. */
static int listen_any(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = dst_addr(0);
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 1) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0)
        die("floor: listen: %s", strerror(errno));
    *port = ntohs(a.sin_port);
    return fd;
}

/* A relay: what comes in from its predecessor goes on to next, until EOF. */
static void floor_relay(int lfd, int next_port)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (opt.child_cpus && pin_to(opt.child_cpus) < 0) _exit(126);
    int in = nodelay(accept(lfd, NULL, NULL));
    int out = connect_retry(next_port);
    char b[64];
    for (;;) {
        ssize_t n = read(in, b, sizeof b);
        if (n <= 0 || write(out, b, (size_t)n) != n) _exit(0);
    }
}

static void mode_floor(void)
{
    if (opt.hops < 1 || opt.hops > 16) die("%s", "floor: --hops is 1..16");
    int back_port, port[16], lfd[16];
    int back = listen_any(&back_port);
    for (int i = 0; i < opt.hops; i++) lfd[i] = listen_any(&port[i]);
    pid_t kid[16];
    for (int i = 0; i < opt.hops; i++) {
        kid[i] = fork();
        if (kid[i] < 0) die("fork: %s", strerror(errno));
        if (kid[i] == 0) floor_relay(lfd[i], i + 1 < opt.hops ? port[i + 1] : back_port);
    }
    int out = connect_retry(port[0]);
    int in = nodelay(accept(back, NULL, NULL));
    static hist_t h;
    uint64_t t0 = mono_ns(), start = t0 + (uint64_t)(opt.warmup * 1e9);
    uint64_t end = start + (uint64_t)(opt.duration * 1e9), c0 = 0;
    struct timespec gap = { 0, (long)opt.gap_us * 1000 };
    char b = 'x';
    for (uint64_t now = t0; now < end && !stop_flag; now = mono_ns()) {
        if (!c0 && now >= start) c0 = cpu_ns();
        uint64_t s0 = mono_ns();
        if (write(out, &b, 1) != 1 || read(in, &b, 1) != 1) die("%s", "floor: a relay went away");
        if (s0 >= start) hadd(&h, mono_ns() - s0);
        nanosleep(&gap, NULL);
    }
    uint64_t c1 = cpu_ns();
    close(out);
    close(in);
    for (int i = 0; i < opt.hops; i++) {
        kill(kid[i], SIGKILL);
        waitpid(kid[i], NULL, 0);
    }
    printf("RESULT mode=floor hops=%d probes=%lu p50_us=%.1f p99_us=%.1f max_us=%.1f "
           "lg_cpu_pct=%.1f\n",
           opt.hops, (unsigned long)h.n, hpct(&h, .5) / 1e3, hpct(&h, .99) / 1e3, h.max / 1e3,
           (double)(c1 - c0) / (opt.duration * 1e9) * 100);
}

/* ========================================================= mode: hiccup */

static void mode_hiccup(void)
{
    static hist_t h;
    struct timespec ms = { 0, 1000000 };
    uint64_t end = mono_ns() + (uint64_t)(opt.duration * 1e9);
    while (mono_ns() < end && !stop_flag) {
        uint64_t t = mono_ns();
        nanosleep(&ms, NULL);
        uint64_t slept = mono_ns() - t;
        hadd(&h, slept > 1000000 ? slept - 1000000 : 0);
    }
    printf("RESULT mode=hiccup samples=%lu p50_us=%.1f p99_us=%.1f max_us=%.1f\n",
           (unsigned long)h.n, hpct(&h, .5) / 1e3, hpct(&h, .99) / 1e3, h.max / 1e3);
}

/* ========================================================= mode: startup */

static void mode_startup(void)
{
    if (!opt.cmd || !opt.cmd[0]) die("%s", "startup needs a command after --");
    uint64_t t0 = mono_ns();
    pid_t pid = fork();
    if (pid < 0) die("fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);  /* never outlive loadgen */
        if (opt.child_cpus && pin_to(opt.child_cpus) < 0) _exit(126);
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) { dup2(devnull, 0); dup2(devnull, 1); }
        execvp(opt.cmd[0], opt.cmd);
        _exit(127);
    }
    double ms = -1;
    int exited = 0, status = 0;
    uint64_t dl = t0 + (uint64_t)opt.timeout_ms * 1000000ull;
    while (mono_ns() < dl) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = dst_addr(opt.port);
        int r = connect(fd, (struct sockaddr *)&a, sizeof a);
        close(fd);
        if (r == 0) { ms = (double)(mono_ns() - t0) / 1e6; break; }
        if (waitpid(pid, &status, WNOHANG) == pid) { exited = 1; break; }
        usleep(100);
    }
    if (!exited) {
        kill(pid, SIGTERM);
        for (int i = 0; i < 200 && waitpid(pid, &status, WNOHANG) != pid; i++) usleep(10000);
        if (waitpid(pid, &status, WNOHANG) == 0) { kill(pid, SIGKILL); waitpid(pid, &status, 0); }
    }
    if (ms < 0)
        printf("RESULT mode=startup ms=-1 error=%s\n", exited ? "exited_before_listening" : "timeout");
    else
        printf("RESULT mode=startup ms=%.2f\n", ms);
}

/* ================================================================= main */

static void usage(void)
{
    fprintf(stderr,
        "usage: loadgen MODE [options] [-- command for startup]\n"
        "modes: iamat oneshot prop whatsat http idle startup floor hiccup\n"
        "  --host H          server address (127.0.0.1)\n"
        "  --port P          server port (prop: where IAMATs go)\n"
        "  --port2 P         prop: the server polled\n"
        "  --conns N         connections (iamat 8, oneshot: concurrent slots)\n"
        "  --inflight N      iamat: messages in flight per connection (1)\n"
        "  --tls             iamat: speak TLS (a server's tls_port)\n"
        "  --duration S      measured seconds (2); idle: seconds to hold after\n"
        "  --warmup S        seconds before measuring (0.5)\n"
        "  --count N         iamat: send exactly N IAMATs (preload), all unique ids\n"
        "  --idpool N        ids per connection, reused with newer times (1000)\n"
        "  --srcaddrs N      oneshot: source addresses 127.0.0.2.. (8; 0 = any)\n"
        "  --rate R          prop: background IAMATs per second at --port (0)\n"
        "  --bgconns N       prop: background connections (4)\n"
        "  --poll-us U       prop: least wait between negative polls (50; grows to 10%% of the wait)\n"
        "  --gap-us U        prop, floor: wait between probes (2000)\n"
        "  --probe-timeout-ms M  prop: a probe not seen by then counts as lost (1000)\n"
        "  --poll-fmt F      prop: the query, %%s = client id (\"WHATSAT %%s 1 0\")\n"
        "  --poll-lines 1    prop: a positive poll reply is one line (default: ends with a blank line)\n"
        "  --rounds N        whatsat, http: queries per connection, one after another (1)\n"
        "  --radius R --bound N  whatsat operands (10, 5)\n"
        "  --timeout-ms M    whatsat/startup: give up after M ms (15000)\n"
        "  --pid PID         idle/iamat --count: report the server's resident memory\n"
        "  --tag S           client id prefix (default: unique per run)\n"
        "  --probe-ms M      iamat: a probe IAMAT every M ms on its own connection (0: none)\n"
        "  --probe-log F     iamat: write \"<load replies so far> <round trip us>\" per probe\n"
        "  --child-cpus L    startup: pin the command to CPUs L (\"0\", \"0,1\", \"0-1\");\n"
        "                    floor: pin the relays there\n"
        "  --hops N          floor: relays in the chain (3)\n");
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc < 2 || argv[1][0] == '-') usage();
    opt.mode = argv[1];
    static struct option lo[] = {
        { "host", 1, 0, 'h' }, { "port", 1, 0, 'p' }, { "port2", 1, 0, 'P' },
        { "conns", 1, 0, 'c' }, { "inflight", 1, 0, 'n' }, { "duration", 1, 0, 'd' },
        { "warmup", 1, 0, 'w' }, { "count", 1, 0, 'k' }, { "idpool", 1, 0, 'i' },
        { "srcaddrs", 1, 0, 's' }, { "rate", 1, 0, 'r' }, { "bgconns", 1, 0, 'b' },
        { "poll-us", 1, 0, 'u' }, { "gap-us", 1, 0, 'g' }, { "probe-timeout-ms", 1, 0, 'T' },
        { "poll-fmt", 1, 0, 'f' }, { "poll-lines", 1, 0, 'l' }, { "rounds", 1, 0, 'R' },
        { "radius", 1, 0, 'A' }, { "bound", 1, 0, 'B' }, { "timeout-ms", 1, 0, 't' },
        { "pid", 1, 0, 'x' }, { "tag", 1, 0, 'G' }, { "child-cpus", 1, 0, 'C' },
        { "tls", 0, 0, 'S' },
        { "probe-ms", 1, 0, 'M' }, { "probe-log", 1, 0, 'L' },
        { "hops", 1, 0, 'H' }, { 0, 0, 0, 0 }
    };
    int ch;
    optind = 2;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 'h': opt.host = optarg; break;
        case 'p': opt.port = atoi(optarg); break;
        case 'P': opt.port2 = atoi(optarg); break;
        case 'c': opt.conns = atoi(optarg); break;
        case 'n': opt.inflight = atoi(optarg); break;
        case 'd': opt.duration = atof(optarg); break;
        case 'w': opt.warmup = atof(optarg); break;
        case 'k': opt.count = atol(optarg); opt.unique = 1; break;
        case 'i': opt.idpool = atoi(optarg); break;
        case 's': opt.srcaddrs = atoi(optarg); break;
        case 'r': opt.rate = atof(optarg); break;
        case 'b': opt.bgconns = atoi(optarg); break;
        case 'u': opt.poll_us = atoi(optarg); break;
        case 'g': opt.gap_us = atoi(optarg); break;
        case 'T': opt.probe_timeout_ms = atoi(optarg); break;
        case 'f': opt.poll_fmt = optarg; break;
        case 'l': opt.poll_lines = atoi(optarg); break;
        case 'R': opt.rounds = atoi(optarg); break;
        case 'A': opt.radius = atof(optarg); break;
        case 'B': opt.bound = atoi(optarg); break;
        case 't': opt.timeout_ms = atoi(optarg); break;
        case 'x': opt.pid = atoi(optarg); break;
        case 'G': opt.tag = optarg; break;
        case 'C': opt.child_cpus = optarg; break;
        case 'S': opt.tls = 1; break;
        case 'M': opt.probe_ms = atoi(optarg); break;
        case 'L': opt.probe_log = optarg; break;
        case 'H': opt.hops = atoi(optarg); break;
        default: usage();
        }
    }
    if (optind < argc) opt.cmd = argv + optind;
    int serverless = !strcmp(opt.mode, "floor") || !strcmp(opt.mode, "hiccup");
    if (!opt.port && !serverless) usage();
    if (opt.conns < 1 || opt.inflight < 1 || opt.idpool < 1 || opt.bgconns < 1 || opt.rounds < 1) usage();
    if (opt.tag) snprintf(tag, sizeof tag, "%s", opt.tag);
    else snprintf(tag, sizeof tag, "b%x%lx", (unsigned)getpid(), (unsigned long)(mono_ns() / 1000000) & 0xffffff);

    signal(SIGPIPE, SIG_IGN);
    /* every mode ends by itself; this is the backstop */
    alarm((unsigned)(opt.warmup + (opt.duration > 0 ? opt.duration : 0) + opt.timeout_ms / 1000.0 + 60));
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) die("epoll: %s", strerror(errno));

    if (!strcmp(opt.mode, "iamat")) mode_iamat();
    else if (!strcmp(opt.mode, "oneshot")) mode_oneshot();
    else if (!strcmp(opt.mode, "prop")) mode_prop();
    else if (!strcmp(opt.mode, "whatsat")) mode_whatsat();
    else if (!strcmp(opt.mode, "http")) mode_http();
    else if (!strcmp(opt.mode, "idle")) mode_idle();
    else if (!strcmp(opt.mode, "startup")) mode_startup();
    else if (!strcmp(opt.mode, "floor")) mode_floor();
    else if (!strcmp(opt.mode, "hiccup")) mode_hiccup();
    else usage();
    fflush(stdout);
    _exit(0);  /* thousands of sockets: let the kernel close them */
}
