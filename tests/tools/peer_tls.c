/* peer_tls: a test tool that speaks to a herd server's peer port as a
 * neighbour would, over TLS 1.3, so specs can send hand-made frames inside
 * a genuine (or deliberately wrong) link. It computes the link key as
 * docs/operations.md describes it (independently of core/tls.c).
 *
 *   peer_tls --connect PORT [--host H] --me NAME --them NAME
 *            [--secret S] [--key-secret S] [--identity ID]
 *            [--cert F --key F --ca F] [--listen PORT | --check]
 *
 * --secret: the herd secret the PSK identity's key id names; --key-secret:
 * the secret the key is actually derived from (default the same: a
 * different one is a wrong key behind a right key id); --identity replaces
 * the whole PSK identity. --check: print "ok" or "failed: why" after the
 * handshake and exit 0 or 1. --listen: accept one plain connection on
 * 127.0.0.1:PORT (printing "ready" once listening) and relay it to the TLS
 * link both ways until either side closes. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/kdf.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *me, *them, *secret, *key_secret, *identity;
static char ident[300];

static int hkdf(const char *ikm, const char *salt, const void *info,
                size_t infolen, unsigned char *out, size_t outlen) {
  EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
  EVP_KDF_CTX *k = EVP_KDF_CTX_new(kdf);
  OSSL_PARAM p[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, "SHA256", 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm,
                                        strlen(ikm)),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt,
                                        strlen(salt)),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info,
                                        infolen),
      OSSL_PARAM_construct_end()};
  int ok = EVP_KDF_derive(k, out, outlen, p) == 1;
  EVP_KDF_CTX_free(k);
  EVP_KDF_free(kdf);
  return ok ? 0 : -1;
}

static int use_psk(SSL *ssl, const EVP_MD *md, const unsigned char **id,
                   size_t *idlen, SSL_SESSION **sess) {
  unsigned char key[32], kid[4];
  char info[256];
  int n = snprintf(info, sizeof info, "%s%c%s", me, 0, them);
  if (hkdf(key_secret, "herd psk v1", info, (size_t)n, key, 32) < 0 ||
      hkdf(secret, "herd key id v1", "", 0, kid, 4) < 0)
    return 0;
  if (identity)
    snprintf(ident, sizeof ident, "%s", identity);
  else
    snprintf(ident, sizeof ident, "herd1 %02x%02x%02x%02x %s", kid[0], kid[1],
             kid[2], kid[3], me);
  static const unsigned char aes[] = {0x13, 0x01};
  SSL_SESSION *s = SSL_SESSION_new();
  SSL_SESSION_set1_master_key(s, key, 32);
  SSL_SESSION_set_cipher(s, SSL_CIPHER_find(ssl, aes));
  SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION);
  *sess = s;
  *id = (const unsigned char *)ident;
  *idlen = strlen(ident);
  return 1;
}

static int tcp_connect(const char *host, int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  inet_pton(AF_INET, host, &a.sin_addr);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) return -1;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1", *cert = NULL, *key = NULL, *ca = NULL;
  int port = 0, listen_port = -1, check = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--check")) {
      check = 1;
      continue;
    }
    if (!v) {
      fprintf(stderr, "peer_tls: %s needs a value\n", a);
      return 2;
    }
    i++;
    if (!strcmp(a, "--connect")) port = atoi(v);
    else if (!strcmp(a, "--host")) host = v;
    else if (!strcmp(a, "--listen")) listen_port = atoi(v);
    else if (!strcmp(a, "--me")) me = v;
    else if (!strcmp(a, "--them")) them = v;
    else if (!strcmp(a, "--secret")) secret = v;
    else if (!strcmp(a, "--key-secret")) key_secret = v;
    else if (!strcmp(a, "--identity")) identity = v;
    else if (!strcmp(a, "--cert")) cert = v;
    else if (!strcmp(a, "--key")) key = v;
    else if (!strcmp(a, "--ca")) ca = v;
    else {
      fprintf(stderr, "peer_tls: unknown option %s\n", a);
      return 2;
    }
  }
  if (!port || !me || !them || (!secret && !cert)) {
    fprintf(stderr, "peer_tls: --connect, --me, --them and --secret or "
                    "--cert are required\n");
    return 2;
  }
  if (!key_secret) key_secret = secret;
  alarm(300);
  int lfd = -1;
  if (listen_port >= 0 && !check) {
    lfd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons(listen_port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 1) < 0) {
      perror("peer_tls: listen");
      return 1;
    }
    socklen_t alen = sizeof a;
    getsockname(lfd, (struct sockaddr *)&a, &alen);
    printf("ready %d\n", ntohs(a.sin_port));
    fflush(stdout);
  }
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  if (cert) {
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
      fprintf(stderr, "peer_tls: cannot load the certificate files\n");
      return 1;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  } else {
    SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256");
    SSL_CTX_set_psk_use_session_callback(ctx, use_psk);
  }
  int local = -1;
  if (lfd >= 0) local = accept(lfd, NULL, NULL);
  int fd = tcp_connect(host, port);
  if (fd < 0) {
    printf("failed: cannot connect\n");
    return 1;
  }
  SSL *ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  if (cert) SSL_set1_host(ssl, them);
  int rc = SSL_connect(ssl);
  /* A TLS 1.3 client finishes before the server has checked it: a short
   * read shows whether the server kept the link. */
  char buf[65536];
  if (rc == 1 && check) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 300) > 0) {
      int n = SSL_read(ssl, buf, sizeof buf);
      if (n <= 0) rc = -1;
    }
  }
  if (rc != 1) {
    char e[200] = "handshake refused";
    unsigned long code = ERR_get_error();
    if (code) ERR_error_string_n(code, e, sizeof e);
    printf("failed: %s\n", e);
    return 1;
  }
  if (check) {
    printf("ok\n");
    SSL_shutdown(ssl);
    return 0;
  }
  if (local < 0) return 0;
  for (;;) {
    struct pollfd p[2] = {{local, POLLIN, 0}, {fd, POLLIN, 0}};
    if (!SSL_pending(ssl) && poll(p, 2, -1) < 0) break;
    if (SSL_pending(ssl) || (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
      int n = SSL_read(ssl, buf, sizeof buf);
      if (n <= 0) break;
      if (write(local, buf, (size_t)n) != n) break;
    }
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = read(local, buf, sizeof buf);
      if (n <= 0) break;
      if (SSL_write(ssl, buf, (int)n) <= 0) break;
    }
  }
  close(local);
  close(fd);
  return 0;
}
