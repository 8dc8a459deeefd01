/*
 * bft_crypto_shim: a deliberately tiny C layer over OpenSSL 3's EVP API.
 *
 * Why a shim at all: the EVP API is macro- and out-parameter-heavy and
 * several of its entry points are awkward to call from Swift directly
 * (variadic callbacks, BIO plumbing, thread-local error queues). Keeping the
 * OpenSSL calls here lets the Swift layer deal only in byte buffers and
 * 0/1 return codes.
 *
 * Why prefixed names (bft_*): avoids any clash with OpenSSL's own symbols or
 * with other C shims linked into the same binary.
 *
 * Why opaque pointers: this header intentionally does not include OpenSSL
 * headers, so Swift sees key handles as OpaquePointer and never depends on
 * OpenSSL struct layouts.
 *
 * Message/data parameters are `const void *` so Swift can pass an
 * UnsafeRawBufferPointer's base address without rebinding memory.
 *
 * Error convention: every function that can fail clears the calling thread's
 * OpenSSL error queue before returning a failure, so stale errors never leak
 * into later, unrelated calls. Functions taking (err, err_len) copy a short
 * human-readable description of the first OpenSSL error into err (always
 * NUL-terminated when err_len > 0); err may be NULL.
 */
#ifndef BFT_CRYPTO_SHIM_H
#define BFT_CRYPTO_SHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BFT_ED25519_KEY_BYTES 32
#define BFT_ED25519_SIGNATURE_BYTES 64
#define BFT_SHA256_BYTES 32

/** An OpenSSL EVP_PKEY (opaque to callers). */
typedef struct evp_pkey_st bft_pkey;
/** An OpenSSL EVP_MD_CTX used for incremental SHA-256 (opaque to callers). */
typedef struct evp_md_ctx_st bft_sha256_ctx;

/* ---- Ed25519 key objects ------------------------------------------------ */

/** New Ed25519 private key from a 32-byte seed. NULL on failure. */
bft_pkey *bft_ed25519_private_key_from_seed(const uint8_t *seed, size_t seed_len,
                                            char *err, size_t err_len);
/** New Ed25519 public key from 32 raw bytes. NULL on failure. */
bft_pkey *bft_ed25519_public_key_from_raw(const uint8_t *raw, size_t raw_len,
                                          char *err, size_t err_len);
/** Copy the 32 raw public-key bytes into out. Returns 1 on success, 0 on failure. */
int bft_ed25519_raw_public_key(const bft_pkey *key, uint8_t *out, size_t out_len);
/** Copy the 32-byte private seed into out. Returns 1 on success, 0 on failure. */
int bft_ed25519_raw_private_key(const bft_pkey *key, uint8_t *out, size_t out_len);
/** Returns 1 if key is an Ed25519 key, else 0. */
int bft_ed25519_key_is_ed25519(const bft_pkey *key);
/** Free a key (NULL is ignored). */
void bft_ed25519_key_free(bft_pkey *key);

/* ---- Ed25519 sign / verify ---------------------------------------------- */

/**
 * Sign msg (pure Ed25519, RFC 8032) into sig (64 bytes). A fresh EVP_MD_CTX is
 * created per call so a single key object may be used from many threads at once.
 * Returns 1 on success, 0 on failure. msg may be NULL when msg_len == 0.
 */
int bft_ed25519_sign(const bft_pkey *key, const void *msg, size_t msg_len,
                     uint8_t *sig, size_t sig_len);
/**
 * Verify sig over msg. Returns 1 if valid, 0 if invalid (including wrong
 * signature length), -1 on an internal error. Never leaves errors queued.
 */
int bft_ed25519_verify(const bft_pkey *key, const uint8_t *sig, size_t sig_len,
                       const void *msg, size_t msg_len);

/* ---- PEM ------------------------------------------------------------------ */

/** Parse a PEM private key (PKCS#8 "BEGIN PRIVATE KEY"). Never prompts for a
 *  passphrase: encrypted keys fail. NULL on failure. The key type is NOT checked. */
bft_pkey *bft_pem_read_private_key(const char *pem, size_t pem_len, char *err, size_t err_len);
/** Parse a PEM SubjectPublicKeyInfo ("BEGIN PUBLIC KEY"). NULL on failure.
 *  The key type is NOT checked. */
bft_pkey *bft_pem_read_public_key(const char *pem, size_t pem_len, char *err, size_t err_len);
/** Write key as unencrypted PKCS#8 PEM. On success returns 1 and sets *out to a
 *  malloc'd buffer (free with bft_free) of *out_len bytes (not NUL-terminated). */
int bft_pem_write_private_key(const bft_pkey *key, char **out, size_t *out_len);
/** Write key's public half as SPKI PEM; same buffer convention as above. */
int bft_pem_write_public_key(const bft_pkey *key, char **out, size_t *out_len);
/** Free a buffer returned by the bft_pem_write_* functions. */
void bft_free(void *p);

/* ---- SHA-256 -------------------------------------------------------------- */

/** One-shot SHA-256 into out (32 bytes). Returns 1 on success, 0 on failure. */
int bft_sha256(const void *data, size_t len, uint8_t *out);
/** Incremental SHA-256: new (already initialised) context, or NULL. */
bft_sha256_ctx *bft_sha256_new(void);
/** Feed bytes. Returns 1 on success, 0 on failure. data may be NULL when len == 0. */
int bft_sha256_update(bft_sha256_ctx *ctx, const void *data, size_t len);
/** Finish into out (32 bytes). Returns 1 on success, 0 on failure. */
int bft_sha256_final(bft_sha256_ctx *ctx, uint8_t *out);
/** Free a context (NULL is ignored). */
void bft_sha256_free(bft_sha256_ctx *ctx);

/* ---- Randomness ----------------------------------------------------------- */

/** Fill buf with len bytes from OpenSSL's CSPRNG. Returns 1 on success, 0 on failure. */
int bft_random_bytes(uint8_t *buf, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* BFT_CRYPTO_SHIM_H */
