/* tls: see tls.h.
 *
 * Each engine has two memory BIOs: rbio holds ciphertext the socket read
 * and the engine has not consumed; wbio collects what the engine produced
 * (handshake messages, records) until the owner drains it into its write
 * queue. Session tickets are off (the herd never resumes: every link does a
 * full handshake with a fresh ephemeral key exchange). */
#include "tls.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/kdf.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

struct tls_ctx {
  SSL_CTX *ssl;
  tls_psk_use_cb use;
  tls_psk_find_cb find;
};

struct tls_conn {
  SSL *ssl;
  BIO *rbio, *wbio; /* owned by ssl */
  tls_ctx_t *ctx;
  void *app;
  char identity[256]; /* must outlive the use callback's return */
  char err[200];
};

/* The last OpenSSL error as text (the queue is emptied). */
static void openssl_error(char *out, size_t n, const char *what) {
  unsigned long e = ERR_get_error();
  char buf[160] = "unknown error";
  if (e) ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  snprintf(out, n, "%s: %s", what, buf);
}

int tls_hkdf(const void *ikm, size_t ikmlen, const char *salt, const void *info,
             size_t infolen, uint8_t *out, size_t outlen) {
  EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
  EVP_KDF_CTX *kctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
  int rc = -1;
  if (kctx) {
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, "SHA256", 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm,
                                          ikmlen),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt,
                                          strlen(salt)),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info,
                                          infolen),
        OSSL_PARAM_construct_end()};
    rc = EVP_KDF_derive(kctx, out, outlen, params) == 1 ? 0 : -1;
  }
  EVP_KDF_CTX_free(kctx);
  EVP_KDF_free(kdf);
  if (rc < 0) {
    memset(out, 0, outlen);
    ERR_clear_error();
  }
  return rc;
}

/* A session carrying an external PSK for TLS_AES_128_GCM_SHA256. */
static SSL_SESSION *psk_session(SSL *ssl, const uint8_t key[32]) {
  static const unsigned char aes128gcm[] = {0x13, 0x01};
  const SSL_CIPHER *cipher = SSL_CIPHER_find(ssl, aes128gcm);
  SSL_SESSION *s = cipher ? SSL_SESSION_new() : NULL;
  if (!s) return NULL;
  if (!SSL_SESSION_set1_master_key(s, key, 32) ||
      !SSL_SESSION_set_cipher(s, cipher) ||
      !SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION)) {
    SSL_SESSION_free(s);
    return NULL;
  }
  return s;
}

static int on_psk_use(SSL *ssl, const EVP_MD *md, const unsigned char **id,
                      size_t *idlen, SSL_SESSION **sess) {
  tls_conn_t *t = SSL_get_app_data(ssl);
  *sess = NULL;
  uint8_t key[32];
  if (md && md != EVP_sha256()) return 1; /* a HelloRetry for another hash */
  if (t->ctx->use(t->app, t->identity, sizeof t->identity, key) < 0) return 1;
  *sess = psk_session(ssl, key);
  OPENSSL_cleanse(key, sizeof key);
  if (!*sess) return 0;
  *id = (const unsigned char *)t->identity;
  *idlen = strlen(t->identity);
  return 1;
}

static int on_psk_find(SSL *ssl, const unsigned char *identity, size_t idlen,
                       SSL_SESSION **sess) {
  tls_conn_t *t = SSL_get_app_data(ssl);
  *sess = NULL;
  uint8_t key[32];
  if (t->ctx->find(t->app, (const char *)identity, idlen, key) < 0)
    return 1; /* unknown: no PSK, so the handshake fails */
  *sess = psk_session(ssl, key);
  OPENSSL_cleanse(key, sizeof key);
  return *sess != NULL;
}

static SSL_CTX *new_ctx(int min_version, char *err, size_t errlen) {
  SSL_CTX *c = SSL_CTX_new(TLS_method());
  if (!c) {
    openssl_error(err, errlen, "SSL_CTX_new");
    return NULL;
  }
  /* No tickets, no resumption, no renegotiation (TLS 1.2 would allow a
   * client to make the server redo its handshake work at will). Without
   * SSL_OP_ALLOW_NO_DHE_KEX a PSK handshake is psk_dhe_ke. */
  if (!SSL_CTX_set_min_proto_version(c, min_version) ||
      !SSL_CTX_set_num_tickets(c, 0)) {
    openssl_error(err, errlen, "TLS set-up");
    SSL_CTX_free(c);
    return NULL;
  }
  SSL_CTX_set_options(c, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION |
                             SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_clear_options(c, SSL_OP_ALLOW_NO_DHE_KEX);
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
  return c;
}

tls_ctx_t *tls_ctx_psk(tls_psk_use_cb use, tls_psk_find_cb find, char *err,
                       size_t errlen) {
  SSL_CTX *s = new_ctx(TLS1_3_VERSION, err, errlen);
  if (!s) return NULL;
  if (!SSL_CTX_set_ciphersuites(s, "TLS_AES_128_GCM_SHA256")) {
    openssl_error(err, errlen, "ciphersuites");
    SSL_CTX_free(s);
    return NULL;
  }
  tls_ctx_t *c = xcalloc(1, sizeof *c);
  c->ssl = s;
  c->use = use;
  c->find = find;
  SSL_CTX_set_psk_use_session_callback(s, on_psk_use);
  SSL_CTX_set_psk_find_session_callback(s, on_psk_find);
  return c;
}

/* Loads a certificate chain, its key and (ca not NULL) the CAs that must
 * have signed the other side's certificate into s. 0, or -1 with a message
 * naming the file that failed. */
static int load_cert(SSL_CTX *s, const char *cert, const char *key,
                     const char *ca, int require_peer, char *err,
                     size_t errlen) {
  char what[300];
  const char *failed = NULL;
  if (SSL_CTX_use_certificate_chain_file(s, cert) != 1)
    failed = cert;
  else if (SSL_CTX_use_PrivateKey_file(s, key, SSL_FILETYPE_PEM) != 1)
    failed = key;
  else if (SSL_CTX_check_private_key(s) != 1)
    failed = "the key does not match the certificate";
  else if (ca && SSL_CTX_load_verify_locations(s, ca, NULL) != 1)
    failed = ca;
  if (failed) {
    snprintf(what, sizeof what, "%s", failed);
    openssl_error(err, errlen, what);
    return -1;
  }
  if (ca)
    SSL_CTX_set_verify(
        s,
        SSL_VERIFY_PEER | (require_peer ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
        NULL);
  return 0;
}

tls_ctx_t *tls_ctx_cert(const char *cert, const char *key, const char *ca,
                        int require_peer, char *err, size_t errlen) {
  SSL_CTX *s = new_ctx(TLS1_3_VERSION, err, errlen);
  if (!s) return NULL;
  if (load_cert(s, cert, key, ca, require_peer, err, errlen) < 0) {
    SSL_CTX_free(s);
    return NULL;
  }
  tls_ctx_t *c = xcalloc(1, sizeof *c);
  c->ssl = s;
  return c;
}

tls_ctx_t *tls_ctx_server(const char *cert, const char *key, const char *ca,
                          char *err, size_t errlen) {
  SSL_CTX *s = new_ctx(TLS1_2_VERSION, err, errlen);
  if (!s) return NULL;
  if (load_cert(s, cert, key, ca, 1, err, errlen) < 0) {
    SSL_CTX_free(s);
    return NULL;
  }
  /* Thousands of clients mostly wait between lines: an idle connection
   * gives its 16 KiB+ record buffers back (29 KB to 20 KB a connection). */
  SSL_CTX_set_mode(s, SSL_MODE_RELEASE_BUFFERS);
  if (ca) {
    /* Tells clients which CAs' certificates the server accepts. */
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca);
    if (names) SSL_CTX_set_client_CA_list(s, names);
    ERR_clear_error();
  }
  tls_ctx_t *c = xcalloc(1, sizeof *c);
  c->ssl = s;
  return c;
}

void tls_ctx_free(tls_ctx_t *c) {
  if (!c) return;
  SSL_CTX_free(c->ssl);
  free(c);
}

tls_conn_t *tls_conn_new(tls_ctx_t *c, int server, void *app) {
  tls_conn_t *t = xcalloc(1, sizeof *t);
  t->ctx = c;
  t->app = app;
  t->ssl = SSL_new(c->ssl);
  t->rbio = BIO_new(BIO_s_mem());
  t->wbio = BIO_new(BIO_s_mem());
  if (!t->ssl || !t->rbio || !t->wbio) {
    BIO_free(t->rbio);
    BIO_free(t->wbio);
    SSL_free(t->ssl);
    free(t);
    ERR_clear_error();
    return NULL;
  }
  /* An empty read BIO means "wait for more", not end of file. */
  BIO_set_mem_eof_return(t->rbio, -1);
  SSL_set_bio(t->ssl, t->rbio, t->wbio);
  SSL_set_app_data(t->ssl, t);
  if (server)
    SSL_set_accept_state(t->ssl);
  else
    SSL_set_connect_state(t->ssl);
  return t;
}

void tls_conn_free(tls_conn_t *t) {
  if (!t) return;
  SSL_free(t->ssl);
  free(t);
}

int tls_conn_expect_host(tls_conn_t *t, const char *host) {
  if (SSL_set1_host(t->ssl, host) != 1) {
    openssl_error(t->err, sizeof t->err, "SSL_set1_host");
    return -1;
  }
  SSL_set_hostflags(t->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  return 0;
}

void tls_conn_feed(tls_conn_t *t, const void *data, size_t len) {
  if (len) BIO_write(t->rbio, data, (int)len);
}

/* Fills t->err for a failed SSL call that returned rc. */
static int failed(tls_conn_t *t, int rc, const char *what) {
  int e = SSL_get_error(t->ssl, rc);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
  if (e == SSL_ERROR_ZERO_RETURN) {
    snprintf(t->err, sizeof t->err, "closed by peer");
    return -1;
  }
  long v = SSL_get_verify_result(t->ssl);
  if (v != X509_V_OK) {
    snprintf(t->err, sizeof t->err, "%s: certificate: %s", what,
             X509_verify_cert_error_string(v));
    ERR_clear_error();
  } else {
    openssl_error(t->err, sizeof t->err, what);
  }
  return -1;
}

int tls_conn_handshake(tls_conn_t *t) {
  if (SSL_is_init_finished(t->ssl)) return 1;
  int rc = SSL_do_handshake(t->ssl);
  if (rc == 1) return 1;
  return failed(t, rc, "handshake");
}

long tls_conn_read(tls_conn_t *t, buf_t *out) {
  long total = 0;
  for (;;) {
    buf_reserve(out, 16 * 1024);
    size_t got = 0;
    int rc =
        SSL_read_ex(t->ssl, out->data + out->len, out->cap - out->len, &got);
    if (rc != 1) {
      if (failed(t, 0, "read") < 0) return -1;
      return total;
    }
    out->len += got;
    total += (long)got;
  }
}

int tls_conn_write(tls_conn_t *t, const void *data, size_t len) {
  size_t done = 0;
  if (!len) return 0;
  if (SSL_write_ex(t->ssl, data, len, &done) != 1 || done != len) {
    openssl_error(t->err, sizeof t->err, "write");
    return -1;
  }
  return 0;
}

size_t tls_conn_drain(tls_conn_t *t, buf_t *out) {
  size_t n = BIO_ctrl_pending(t->wbio);
  if (!n) return 0;
  buf_reserve(out, n);
  int got = BIO_read(t->wbio, out->data + out->len, (int)n);
  if (got <= 0) return 0;
  out->len += (size_t)got;
  return (size_t)got;
}

int tls_conn_peer_closed(const tls_conn_t *t) {
  return (SSL_get_shutdown(t->ssl) & SSL_RECEIVED_SHUTDOWN) != 0;
}

void tls_conn_close_notify(tls_conn_t *t) {
  if (SSL_get_shutdown(t->ssl) & SSL_SENT_SHUTDOWN) return;
  SSL_shutdown(t->ssl); /* writes the alert to wbio; never waits */
  ERR_clear_error();
}

const char *tls_conn_error(const tls_conn_t *t) {
  return *t->err ? t->err : "TLS failed";
}

void tls_conn_describe(const tls_conn_t *t, char *out, size_t n) {
  int nid = SSL_get_negotiated_group(t->ssl);
  const char *group =
      nid > 0 && !(nid & TLSEXT_nid_unknown) ? OBJ_nid2sn(nid) : NULL;
  snprintf(out, n, "%s %s%s%s", SSL_get_version(t->ssl),
           SSL_get_cipher_name(t->ssl), group && *group ? " " : "",
           group ? group : "");
}

int tls_conn_peer_has_name(const tls_conn_t *t, const char *name) {
  X509 *cert = SSL_get0_peer_certificate(t->ssl);
  return cert &&
         X509_check_host(cert, name, 0, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS,
                         NULL) == 1;
}
