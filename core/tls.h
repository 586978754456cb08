/* tls: TLS 1.3 through OpenSSL 3, driven through memory BIOs so the libuv
 * loop owns the sockets: no blocking call, no thread. Owns SSL_CTX set-up
 * (external PSK or certificates), one engine per connection (ciphertext in,
 * plaintext out and back), and the HKDF the herd derives its keys with.
 * Any stream owner can use it (peer links, the client tls_port): feed what
 * the socket read, take what is to be written. */
#ifndef HERD_TLS_H
#define HERD_TLS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

typedef struct tls_ctx tls_ctx_t;
typedef struct tls_conn tls_conn_t;

/* PSK callbacks, called during a handshake with the connection's app
 * pointer. use: the dialler fills identity (NUL-terminated, < 256 bytes)
 * and key (32 bytes); find: the acceptor looks identity up and fills key.
 * Both return 0, or -1 to offer/accept no PSK (the handshake then fails). */
typedef int (*tls_psk_use_cb)(void *app, char *identity, size_t idlen,
                              uint8_t key[32]);
typedef int (*tls_psk_find_cb)(void *app, const char *identity, size_t idlen,
                               uint8_t key[32]);

/* A TLS 1.3-only context whose links authenticate with an external PSK
 * (psk_dhe_ke: every handshake also does an ephemeral key exchange).
 * NULL with a message on failure. */
tls_ctx_t *tls_ctx_psk(tls_psk_use_cb use, tls_psk_find_cb find, char *err,
                       size_t errlen);
/* A TLS 1.3-only context with a certificate chain, its key and, when ca is
 * not NULL, the CAs that must have signed the other side's certificate
 * (require_peer: a missing peer certificate fails the handshake). */
tls_ctx_t *tls_ctx_cert(const char *cert, const char *key, const char *ca,
                        int require_peer, char *err, size_t errlen);
/* A context for the client tls_port: TLS 1.2 or 1.3 (what clients of
 * every age speak, OpenSSL's default cipher suites, no renegotiation), the
 * server's certificate chain and key, and, when ca is not NULL, client
 * certificates required and verified against it. NULL with a message. */
tls_ctx_t *tls_ctx_server(const char *cert, const char *key, const char *ca,
                          char *err, size_t errlen);
void tls_ctx_free(tls_ctx_t *c);

/* One connection's engine; server = 1 on the accepting side. */
tls_conn_t *tls_conn_new(tls_ctx_t *c, int server, void *app);
void tls_conn_free(tls_conn_t *t);
/* The dialler expects the other side's certificate to carry host. */
int tls_conn_expect_host(tls_conn_t *t, const char *host);
/* Hands ciphertext read from the socket to the engine. */
void tls_conn_feed(tls_conn_t *t, const void *data, size_t len);
/* Advances the handshake: 1 done, 0 needs more bytes, -1 failed
 * (tls_conn_error says why). Call again after each feed until done. */
int tls_conn_handshake(tls_conn_t *t);
/* Appends the plaintext that is ready to out: bytes appended, 0 none yet,
 * -1 failed or closed by the other side (tls_conn_error says which). */
long tls_conn_read(tls_conn_t *t, buf_t *out);
/* Encrypts len bytes (memory BIOs never block: all of them or -1). */
int tls_conn_write(tls_conn_t *t, const void *data, size_t len);
/* Moves the ciphertext waiting to be sent to out; returns its length. */
size_t tls_conn_drain(tls_conn_t *t, buf_t *out);
/* Whether the other side sent close_notify (its orderly end of input). */
int tls_conn_peer_closed(const tls_conn_t *t);
/* Queues this side's close_notify (drain it like any output); once only. */
void tls_conn_close_notify(tls_conn_t *t);
const char *tls_conn_error(const tls_conn_t *t);
/* "TLSv1.3 TLS_AES_128_GCM_SHA256 X25519" for log lines. */
void tls_conn_describe(const tls_conn_t *t, char *out, size_t n);
/* Whether the other side's certificate carries name (cert mode). */
int tls_conn_peer_has_name(const tls_conn_t *t, const char *name);

/* HKDF-SHA256 (RFC 5869): out = HKDF(ikm, salt, info). 0 or -1. */
int tls_hkdf(const void *ikm, size_t ikmlen, const char *salt, const void *info,
             size_t infolen, uint8_t *out, size_t outlen);

#endif
