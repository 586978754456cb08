/* mock_places: a stand-in for Google's legacy Nearby Search, for the bench.
 *
 * Answers every HTTP request (any method, any path) after a settable delay
 * with a fixed 200 response in the legacy Nearby Search shape (20 results,
 * status OK).  Keep-alive connections are served one request after another;
 * thousands of requests can wait at once (each waits on its own timer).
 * On SIGTERM/SIGINT it prints what it served to stderr and exits.
 *
 * usage: mock_places [--host 127.0.0.1] --port PORT [--delay-ms 200]
 */
#include <uv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <ctype.h>

#define MAX_REQ (64 * 1024)

typedef struct {
    uv_tcp_t tcp;
    uv_timer_t timer;
    char *buf;
    size_t len, cap;
    size_t req_len;     /* bytes of the request being delayed, 0 = none */
    int keep_alive;
    int eof;
    int closing, handles;
} conn_t;

static uv_loop_t *loop;
static uint64_t delay_ms = 200;
static char *response;
static size_t response_len;
static unsigned long served, waiting, max_waiting, conns_open, max_conns;

static void on_handle_closed(uv_handle_t *h)
{
    conn_t *c = h->data;
    if (--c->handles == 0) { free(c->buf); free(c); }
}

static void conn_close(conn_t *c)
{
    if (c->closing) return;
    c->closing = 1;
    conns_open--;
    if (c->req_len) { waiting--; c->req_len = 0; }
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

static void try_request(conn_t *c);

static void on_write(uv_write_t *req, int status)
{
    conn_t *c = req->data;
    free(req);
    if (c->closing) return;
    if (status < 0 || !c->keep_alive) { conn_close(c); return; }
    try_request(c);
}

static void on_timer(uv_timer_t *t)
{
    conn_t *c = t->data;
    /* drop the request from the buffer, answer it */
    memmove(c->buf, c->buf + c->req_len, c->len - c->req_len);
    c->len -= c->req_len;
    c->req_len = 0;
    waiting--;
    served++;
    uv_write_t *w = malloc(sizeof *w);
    if (!w) { conn_close(c); return; }
    w->data = c;
    uv_buf_t b = uv_buf_init(response, (unsigned)response_len);
    if (uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) { free(w); conn_close(c); }
}

/* Look for one whole request at the head of the buffer; if there is one,
 * start its delay. */
static void try_request(conn_t *c)
{
    if (c->req_len || c->closing) return;
    char *hend = NULL;
    for (size_t i = 0; i + 3 < c->len; i++)
        if (c->buf[i] == '\r' && !memcmp(c->buf + i, "\r\n\r\n", 4)) { hend = c->buf + i + 4; break; }
    if (!hend) {
        if (c->eof) conn_close(c);
        return;
    }
    size_t hlen = (size_t)(hend - c->buf), clen = 0;
    int keep = 1;
    /* headers, case-insensitively */
    const char *p = c->buf;
    const char *eol = memchr(p, '\n', hlen);
    if (eol && eol - p >= 8 && memmem(p, (size_t)(eol - p), "HTTP/1.0", 8)) keep = 0;
    while (eol && eol + 1 < hend) {
        p = eol + 1;
        eol = memchr(p, '\n', (size_t)(hend - p));
        if (!eol) break;
        if (!strncasecmp(p, "content-length:", 15)) clen = strtoul(p + 15, NULL, 10);
        else if (!strncasecmp(p, "connection:", 11)) {
            const char *v = p + 11;
            while (*v == ' ') v++;
            if (!strncasecmp(v, "close", 5)) keep = 0;
            else if (!strncasecmp(v, "keep-alive", 10)) keep = 1;
        }
    }
    if (hlen + clen > MAX_REQ) { conn_close(c); return; }
    if (c->len < hlen + clen) { if (c->eof) conn_close(c); return; }
    c->req_len = hlen + clen;
    c->keep_alive = keep;
    waiting++;
    if (waiting > max_waiting) max_waiting = waiting;
    uv_timer_start(&c->timer, on_timer, delay_ms, 0);
}

static void alloc_cb(uv_handle_t *h, size_t sug, uv_buf_t *buf)
{
    conn_t *c = h->data;
    if (c->cap - c->len < 4096) {
        size_t ncap = c->cap ? c->cap * 2 : 8192;
        char *nb = ncap <= 2 * MAX_REQ ? realloc(c->buf, ncap) : NULL;
        if (!nb) { *buf = uv_buf_init(NULL, 0); return; }
        c->buf = nb;
        c->cap = ncap;
    }
    *buf = uv_buf_init(c->buf + c->len, (unsigned)(c->cap - c->len));
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    conn_t *c = s->data;
    if (nread > 0) {
        c->len += (size_t)nread;
        try_request(c);
    } else if (nread == UV_EOF) {
        c->eof = 1;
        if (!c->req_len) try_request(c);
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
    uv_timer_init(loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->handles = 2;
    conns_open++;
    if (conns_open > max_conns) max_conns = conns_open;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) { conn_close(c); return; }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
}

static void on_signal(uv_signal_t *h, int sig)
{
    fprintf(stderr, "mock_places: served %lu requests, at most %lu waiting at once, "
            "at most %lu connections\n", served, max_waiting, max_conns);
    exit(0);
}

static void build_response(void)
{
    static const char *names[] = { "Royce Hall", "Powell Library", "Pauley Pavilion",
        "Ackerman Union", "Boelter Hall", "Kerckhoff Hall", "Hammer Museum",
        "Fowler Museum", "Sunset Canyon", "Janss Steps" };
    size_t cap = 64 * 1024, n = 0;
    char *body = malloc(cap);
    if (!body) exit(1);
    n += (size_t)snprintf(body + n, cap - n,
        "{\n   \"html_attributions\" : [],\n   \"next_page_token\" : \"mock\",\n   \"results\" : [\n");
    for (int i = 0; i < 20; i++) {
        n += (size_t)snprintf(body + n, cap - n,
            "      {\n"
            "         \"geometry\" : { \"location\" : { \"lat\" : %.7f, \"lng\" : %.7f } },\n"
            "         \"icon\" : \"https://maps.gstatic.com/mapfiles/place_api/icons/generic_business-71.png\",\n"
            "         \"name\" : \"%s %d\",\n"
            "         \"place_id\" : \"MOCKPLACE%04d\",\n"
            "         \"rating\" : %.1f,\n"
            "         \"reference\" : \"MOCKREF%04d\",\n"
            "         \"scope\" : \"GOOGLE\",\n"
            "         \"types\" : [ \"point_of_interest\", \"establishment\" ],\n"
            "         \"user_ratings_total\" : %d,\n"
            "         \"vicinity\" : \"%d Westwood Plaza, Los Angeles\"\n"
            "      }%s\n",
            34.068930 + i * 0.0007, -118.445127 - i * 0.0005, names[i % 10], i, i,
            3.5 + (i % 15) / 10.0, i, 100 + i * 7, 100 + i, i < 19 ? "," : "");
    }
    n += (size_t)snprintf(body + n, cap - n, "   ],\n   \"status\" : \"OK\"\n}\n");
    response = malloc(n + 256);
    if (!response) exit(1);
    response_len = (size_t)sprintf(response,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=UTF-8\r\n"
        "Content-Length: %zu\r\nConnection: keep-alive\r\n\r\n", n);
    memcpy(response + response_len, body, n);
    response_len += n;
    free(body);
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    int port = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--host") && i + 1 < argc) host = argv[++i];
        else if (!strcmp(argv[i], "--port") && i + 1 < argc) port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--delay-ms") && i + 1 < argc) delay_ms = strtoull(argv[++i], NULL, 10);
        else { fprintf(stderr, "usage: mock_places [--host H] --port P [--delay-ms MS]\n"); return 2; }
    }
    if (port <= 0) { fprintf(stderr, "mock_places: --port required\n"); return 2; }
    build_response();
    loop = uv_default_loop();
    uv_tcp_t server;
    struct sockaddr_in addr;
    uv_ip4_addr(host, port, &addr);
    uv_tcp_init(loop, &server);
    int r = uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0);
    if (!r) r = uv_listen((uv_stream_t *)&server, 4096, on_conn);
    if (r) { fprintf(stderr, "mock_places: %s:%d: %s\n", host, port, uv_strerror(r)); return 1; }
    uv_signal_t sint, sterm;
    uv_signal_init(loop, &sint);
    uv_signal_init(loop, &sterm);
    uv_signal_start(&sint, on_signal, SIGINT);
    uv_signal_start(&sterm, on_signal, SIGTERM);
    uv_run(loop, UV_RUN_DEFAULT);
    return 0;
}
