/* lineserver: the machine's ceiling for a line protocol on libuv.
 *
 * Answers every line it receives with one fixed reply of the length of a
 * typical AT line, without parsing anything and without Lua.  Replies to
 * all the lines of one read go out in one write.  A client that half-closes
 * gets its remaining replies (a last line without a newline counts), then
 * the server closes the connection, as SPEC section 4 asks of herd.
 *
 * usage: lineserver [--host 127.0.0.1] --port PORT [--reply-len N]
 */
#include <uv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define READ_BUF (64 * 1024)
#define BATCH 1024 /* replies in the prebuilt block */

typedef struct {
    uv_tcp_t tcp;
    int partial;  /* bytes of an unterminated line were seen */
    int closing;
} conn_t;

typedef struct {
    uv_write_t req;
    size_t n;  /* replies in this write */
} wreq_t;

static uv_loop_t *loop;
static char *block;      /* BATCH replies back to back */
static size_t reply_len = 74;
static char readbuf[READ_BUF];  /* one buffer: reads are consumed at once */

static void on_close(uv_handle_t *h) { free(h->data); }

static void conn_close(conn_t *c)
{
    if (c->closing) return;
    c->closing = 1;
    uv_close((uv_handle_t *)&c->tcp, on_close);
}

static void on_write(uv_write_t *req, int status)
{
    free((wreq_t *)req);
}

static void on_shutdown_write(uv_write_t *req, int status)
{
    conn_t *c = req->handle->data;
    free((wreq_t *)req);
    conn_close(c);
}

static void alloc_cb(uv_handle_t *h, size_t sug, uv_buf_t *buf)
{
    /* All reads are consumed synchronously in read_cb, so a single static
     * buffer serves every connection: idle connections cost no buffer. */
    *buf = uv_buf_init(readbuf, READ_BUF);
}

static void send_replies(conn_t *c, size_t n, uv_write_cb cb)
{
    uv_buf_t bufs[64];
    size_t nb = 0;
    wreq_t *w = malloc(sizeof *w);
    if (!w) { conn_close(c); return; }
    w->n = n;
    while (n > 0 && nb < 64) {
        size_t k = n > BATCH ? BATCH : n;
        bufs[nb++] = uv_buf_init(block, (unsigned)(k * reply_len));
        n -= k;
    }
    /* n > 0 only with more than 64*BATCH lines in one 64 KiB read: impossible */
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, bufs, (unsigned)nb, cb) != 0) {
        free(w);
        conn_close(c);
    }
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    conn_t *c = s->data;
    if (nread > 0) {
        size_t n = 0;
        const char *p = buf->base, *end = buf->base + nread;
        const char *nl;
        while ((nl = memchr(p, '\n', (size_t)(end - p))) != NULL) { n++; p = nl + 1; }
        c->partial = p < end;
        if (n) send_replies(c, n, on_write);
    } else if (nread == UV_EOF) {
        uv_read_stop(s);
        if (c->partial) {
            c->partial = 0;
            send_replies(c, 1, on_shutdown_write);  /* close once written */
        } else {
            /* wait for queued writes: a zero-length write completes after them */
            wreq_t *w = malloc(sizeof *w);
            uv_buf_t b = uv_buf_init(block, 0);
            if (!w || uv_write(&w->req, s, &b, 1, on_shutdown_write) != 0) {
                free(w);
                conn_close(c);
            }
        }
    } else if (nread < 0) {
        conn_close(c);
    }
}

static void on_conn(uv_stream_t *server, int status)
{
    if (status < 0) return;
    conn_t *c = calloc(1, sizeof *c);
    if (!c) return;
    uv_tcp_init(loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) { conn_close(c); return; }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
}

static void on_signal(uv_signal_t *h, int sig) { uv_stop(loop); }

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    int port = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--host") && i + 1 < argc) host = argv[++i];
        else if (!strcmp(argv[i], "--port") && i + 1 < argc) port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reply-len") && i + 1 < argc) reply_len = (size_t)atoi(argv[++i]);
        else { fprintf(stderr, "usage: lineserver [--host H] --port P [--reply-len N]\n"); return 2; }
    }
    if (port <= 0 || reply_len < 4) { fprintf(stderr, "lineserver: --port required\n"); return 2; }

    block = malloc(BATCH * reply_len);
    if (!block) return 1;
    for (size_t i = 0; i < BATCH; i++) {
        char *r = block + i * reply_len;
        memset(r, 'x', reply_len);
        memcpy(r, "AT ", 3);
        r[reply_len - 1] = '\n';
    }

    loop = uv_default_loop();
    uv_tcp_t server;
    struct sockaddr_in addr;
    uv_ip4_addr(host, port, &addr);
    uv_tcp_init(loop, &server);
    int r = uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0);
    if (!r) r = uv_listen((uv_stream_t *)&server, 4096, on_conn);
    if (r) { fprintf(stderr, "lineserver: %s:%d: %s\n", host, port, uv_strerror(r)); return 1; }

    uv_signal_t sint, sterm;
    uv_signal_init(loop, &sint);
    uv_signal_init(loop, &sterm);
    uv_signal_start(&sint, on_signal, SIGINT);
    uv_signal_start(&sterm, on_signal, SIGTERM);
    uv_run(loop, UV_RUN_DEFAULT);
    return 0;
}
