/* tls_client: a test tool that is a client of a herd server's tls_port,
 * so specs (plain LuaSocket) can talk the client protocol inside TLS.
 *
 *   tls_client --connect PORT [--host H] [--cert F --key F] [--ca F]
 *              [--tls12] (--check | --listen PORT | --flood FILE --hold S)
 *
 * --cert/--key: the client certificate to present; --ca: verify the
 * server's certificate against it; --tls12: offer TLS 1.2 only.
 * --check: handshake, send "CHECK" and print "ok" once the "? CHECK" reply
 * comes back (exit 0), else "failed: why" (exit 1): a TLS 1.3 client
 * finishes its handshake before the server has checked its certificate,
 * so only a reply proves the server kept the connection.
 * --listen: accept one plain connection on 127.0.0.1:PORT (printing
 * "ready PORT" once listening) and relay it both ways; the plain side's
 * EOF becomes a close_notify (the client's "I am done"), and the relay
 * ends when the server closes. --flood: after the handshake, write FILE's
 * bytes and never read; exit after S seconds. Every mode exits within
 * 300 s. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int tcp_connect(const char *host, int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  inet_pton(AF_INET, host, &a.sin_addr);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) return -1;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

static int failed(const char *what) {
  char e[200] = "";
  unsigned long code = ERR_get_error();
  if (code) ERR_error_string_n(code, e, sizeof e);
  printf("failed: %s%s%s\n", what, *e ? ": " : "", e);
  fflush(stdout);
  return 1;
}

static char *read_file(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *d = malloc(len > 0 ? (size_t)len : 1);
  *n = fread(d, 1, len > 0 ? (size_t)len : 0, f);
  fclose(f);
  return d;
}

/* Relays local <-> ssl until the server closes, both sockets non-blocking
 * with a bounded buffer each way, so a side that does not read stops only
 * its own direction (a blocking relay would stop reading the server while
 * stuck writing to it, and deadlock a pipelining client). */
#define RELAY_CAP (64 * 1024)
static void relay(int local, SSL *ssl, int fd) {
  static char up[RELAY_CAP], down[RELAY_CAP]; /* to the server, to local */
  size_t nup = 0, ndown = 0;
  int local_open = 1, want_write = 0;
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  fcntl(local, F_SETFL, fcntl(local, F_GETFL) | O_NONBLOCK);
  SSL_set_mode(
      ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  for (;;) {
    short lev =
        (local_open && nup < RELAY_CAP ? POLLIN : 0) | (ndown ? POLLOUT : 0);
    struct pollfd p[2] = {
        {fd, (ndown < RELAY_CAP ? POLLIN : 0) | (want_write ? POLLOUT : 0), 0},
        {local, lev, 0}};
    if (!(SSL_pending(ssl) && ndown < RELAY_CAP) && poll(p, 2, 1000) < 0) break;
    while (ndown < RELAY_CAP) { /* from the server */
      int n = SSL_read(ssl, down + ndown, (int)(RELAY_CAP - ndown));
      if (n > 0) {
        ndown += (size_t)n;
        continue;
      }
      int e = SSL_get_error(ssl, n);
      if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) goto done;
      break;
    }
    if (ndown) { /* to local */
      ssize_t n = write(local, down, ndown);
      if (n > 0) {
        memmove(down, down + n, ndown - (size_t)n);
        ndown -= (size_t)n;
      } else if (n < 0 && errno != EAGAIN) {
        goto done;
      }
    }
    if (local_open && nup < RELAY_CAP) { /* from local */
      ssize_t n = read(local, up + nup, RELAY_CAP - nup);
      if (n > 0)
        nup += (size_t)n;
      else if (n == 0 || errno != EAGAIN)
        local_open = 0;
    }
    want_write = 0;
    if (nup) { /* to the server */
      int n = SSL_write(ssl, up, (int)nup);
      if (n > 0) {
        memmove(up, up + n, nup - (size_t)n);
        nup -= (size_t)n;
      } else if (SSL_get_error(ssl, n) == SSL_ERROR_WANT_WRITE) {
        want_write = 1;
      } else {
        goto done;
      }
    }
    if (!local_open && !nup && !(SSL_get_shutdown(ssl) & SSL_SENT_SHUTDOWN))
      SSL_shutdown(ssl); /* close_notify: the client has finished */
  }
done:
  /* What the server sent before it closed still goes to local. */
  fcntl(local, F_SETFL, fcntl(local, F_GETFL) & ~O_NONBLOCK);
  if (ndown && write(local, down, ndown) < 0) ndown = 0;
  shutdown(local, SHUT_WR);
  while (local_open && read(local, up, sizeof up) > 0) {
  }
  close(local);
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1", *cert = NULL, *key = NULL, *ca = NULL,
             *flood = NULL;
  int port = 0, listen_port = -1, check = 0, tls12 = 0, hold = 1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--check") || !strcmp(a, "--tls12")) {
      *(a[2] == 'c' ? &check : &tls12) = 1;
      continue;
    }
    if (!v) {
      fprintf(stderr, "tls_client: %s needs a value\n", a);
      return 2;
    }
    i++;
    if (!strcmp(a, "--connect"))
      port = atoi(v);
    else if (!strcmp(a, "--host"))
      host = v;
    else if (!strcmp(a, "--listen"))
      listen_port = atoi(v);
    else if (!strcmp(a, "--cert"))
      cert = v;
    else if (!strcmp(a, "--key"))
      key = v;
    else if (!strcmp(a, "--ca"))
      ca = v;
    else if (!strcmp(a, "--flood"))
      flood = v;
    else if (!strcmp(a, "--hold"))
      hold = atoi(v);
    else {
      fprintf(stderr, "tls_client: unknown option %s\n", a);
      return 2;
    }
  }
  if (!port || (!check && listen_port < 0 && !flood)) {
    fprintf(stderr,
            "tls_client: --connect and one of --check, --listen, "
            "--flood are required\n");
    return 2;
  }
  alarm(300);
  int lfd = -1;
  if (listen_port >= 0) {
    lfd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons(listen_port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 1) < 0) {
      perror("tls_client: listen");
      return 1;
    }
    socklen_t alen = sizeof a;
    getsockname(lfd, (struct sockaddr *)&a, &alen);
    printf("ready %d\n", ntohs(a.sin_port));
    fflush(stdout);
  }
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  if (tls12) SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
  if (cert && (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
               SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1))
    return failed("cannot load the client certificate");
  if (ca) {
    if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1)
      return failed("cannot load the CA");
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  }
  int local = lfd >= 0 ? accept(lfd, NULL, NULL) : -1;
  int fd = tcp_connect(host, port);
  if (fd < 0) return failed("cannot connect");
  SSL *ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  if (SSL_connect(ssl) != 1) {
    if (local >= 0) close(local);
    return failed("handshake");
  }
  if (check) {
    char buf[256];
    struct pollfd p = {fd, POLLIN, 0};
    if (SSL_write(ssl, "CHECK\n", 6) != 6) return failed("write");
    if (!SSL_pending(ssl) && poll(&p, 1, 5000) <= 0)
      return failed("no reply in 5 s");
    int n = SSL_read(ssl, buf, sizeof buf - 1);
    if (n <= 0) return failed("closed by the server");
    buf[n] = '\0';
    if (strncmp(buf, "? CHECK", 7) != 0) return failed("unexpected reply");
    printf("ok %s\n", SSL_get_version(ssl));
    SSL_shutdown(ssl);
    return 0;
  }
  if (flood) {
    size_t n;
    char *data = read_file(flood, &n);
    if (!data) return failed("cannot read the flood file");
    alarm((unsigned)hold); /* SSL_write blocks once the server stops reading */
    for (size_t off = 0; off < n;) {
      int chunk = n - off > 16384 ? 16384 : (int)(n - off);
      int w = SSL_write(ssl, data + off, chunk);
      if (w <= 0) return failed("write");
      off += (size_t)w;
    }
    sleep((unsigned)hold);
    return 0;
  }
  relay(local, ssl, fd);
  close(fd);
  return 0;
}
