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
#define BFT_X25519_KEY_BYTES 32
#define BFT_CHACHAPOLY_KEY_BYTES 32
#define BFT_CHACHAPOLY_NONCE_BYTES 12
#define BFT_CHACHAPOLY_TAG_BYTES 16

/** An OpenSSL EVP_PKEY (opaque to callers). */
typedef struct evp_pkey_st bft_pkey;
/** An OpenSSL EVP_MD_CTX used for incremental SHA-256 (opaque to callers). */
typedef struct evp_md_ctx_st bft_sha256_ctx;
/** A keyed ChaCha20-Poly1305 context (opaque to callers; see below). */
typedef struct bft_aead_st bft_aead;

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

/* ---- X25519 (RFC 7748) ---------------------------------------------------- */

/** New X25519 private key from 32 raw bytes (clamped by OpenSSL as RFC 7748
 *  requires). Free with bft_x25519_key_free. NULL on failure. */
bft_pkey *bft_x25519_private_key_from_raw(const uint8_t *raw, size_t raw_len,
                                          char *err, size_t err_len);
/** Copy the 32-byte u-coordinate public key of an X25519 private key into out.
 *  Returns 1 on success, 0 on failure. */
int bft_x25519_raw_public_key(const bft_pkey *key, uint8_t *out, size_t out_len);
/** Returns 1 if key is an X25519 key, else 0. */
int bft_x25519_key_is_x25519(const bft_pkey *key);
/** Free an X25519 key (NULL is ignored); OpenSSL cleanses the private bytes. */
void bft_x25519_key_free(bft_pkey *key);
/**
 * X25519(private, peer_public) into out (32 bytes). A fresh EVP_PKEY_CTX is
 * created per call, so one key object may be used from many threads at once.
 * Returns 1 on success; 0 if the peer key is rejected because the result is
 * all zero (a low-order point, RFC 7748 section 6.1; out is zeroed); -1 on an
 * internal error or a bad argument.
 */
int bft_x25519_derive(const bft_pkey *key, const uint8_t *peer, size_t peer_len,
                      uint8_t *out, size_t out_len);

/* ---- ChaCha20-Poly1305 AEAD (RFC 8439) ------------------------------------ */

/**
 * A context keyed once (32-byte key) and reused for every record: each seal or
 * open only re-sets the 12-byte nonce, which avoids allocating and keying an
 * EVP_CIPHER_CTX per record. NOT thread-safe: one owner at a time.
 * NULL on failure (wrong key length, allocation).
 */
bft_aead *bft_chachapoly_new(const uint8_t *key, size_t key_len, char *err, size_t err_len);
/** Free a context (NULL is ignored); the key schedule is cleansed. */
void bft_chachapoly_free(bft_aead *ctx);
/**
 * Encrypt pt (pt_len bytes) under nonce with associated data ad, writing
 * ciphertext || 16-byte tag into out; out_len must equal pt_len + 16.
 * pt and ad may be NULL when their lengths are 0. out may not overlap pt.
 * Returns 1 on success, 0 on failure.
 */
int bft_chachapoly_seal(bft_aead *ctx, const uint8_t *nonce, size_t nonce_len,
                        const void *ad, size_t ad_len, const void *pt, size_t pt_len,
                        uint8_t *out, size_t out_len);
/**
 * Decrypt ct (ct_len bytes = ciphertext || 16-byte tag) into out
 * (out_len must equal ct_len - 16). Returns 1 if the tag verified, 0 if it did
 * not (out is then zeroed: no unauthenticated plaintext escapes), -1 on a bad
 * argument or internal error (out zeroed as well).
 */
int bft_chachapoly_open(bft_aead *ctx, const uint8_t *nonce, size_t nonce_len,
                        const void *ad, size_t ad_len, const void *ct, size_t ct_len,
                        uint8_t *out, size_t out_len);

/* ---- HMAC-SHA256 (RFC 2104) ----------------------------------------------- */

/** HMAC-SHA256(key, data) into out (32 bytes). key/data may be NULL when their
 *  lengths are 0. Returns 1 on success, 0 on failure. */
int bft_hmac_sha256(const void *key, size_t key_len, const void *data, size_t data_len,
                    uint8_t *out, size_t out_len);

/* ---- Randomness ----------------------------------------------------------- */

/** Fill buf with len bytes from OpenSSL's CSPRNG. Returns 1 on success, 0 on failure. */
int bft_random_bytes(uint8_t *buf, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* BFT_CRYPTO_SHIM_H */
