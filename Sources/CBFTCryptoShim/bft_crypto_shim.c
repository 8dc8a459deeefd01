/*
 * Implementation of the bft_crypto_shim API; see include/bft_crypto_shim.h for
 * the contract. Every failure path funnels through bft_fail(), which records
 * the first queued OpenSSL error (if the caller wants it) and then clears the
 * thread's error queue, so a failed call never poisons a later one.
 */
#include "bft_crypto_shim.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

/* A valid non-NULL address for empty inputs: some EVP paths dislike NULL data. */
static const uint8_t bft_empty[1] = {0};

/* Record the first queued OpenSSL error (or `fallback`) into err, then clear the queue. */
static void bft_fail(char *err, size_t err_len, const char *fallback) {
    if (err != NULL && err_len > 0) {
        unsigned long code = ERR_peek_error();
        if (code != 0) {
            char buf[256];
            ERR_error_string_n(code, buf, sizeof(buf));
            if (fallback != NULL) {
                snprintf(err, err_len, "%s: %s", fallback, buf);
            } else {
                snprintf(err, err_len, "%s", buf);
            }
        } else {
            snprintf(err, err_len, "%s", fallback != NULL ? fallback : "unknown OpenSSL error");
        }
    }
    ERR_clear_error();
}

/* ---- SHA-256 message digest, fetched once ------------------------------- */

/* In OpenSSL 3, EVP_sha256() triggers an implicit provider fetch on every
 * EVP_DigestInit; fetching explicitly once avoids that per-hash cost and the
 * lock traffic that comes with it. */
static pthread_once_t bft_md_once = PTHREAD_ONCE_INIT;
static const EVP_MD *bft_md_sha256 = NULL;

static void bft_md_init(void) {
    EVP_MD *md = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (md == NULL) {
        ERR_clear_error();
        bft_md_sha256 = EVP_sha256(); /* fall back to the implicit-fetch object */
    } else {
        bft_md_sha256 = md; /* intentionally never freed: process-lifetime cache */
    }
}

static const EVP_MD *bft_sha256_md(void) {
    pthread_once(&bft_md_once, bft_md_init);
    return bft_md_sha256;
}

/* ---- Ed25519 key objects ------------------------------------------------ */

bft_pkey *bft_ed25519_private_key_from_seed(const uint8_t *seed, size_t seed_len,
                                            char *err, size_t err_len) {
    if (seed == NULL || seed_len != BFT_ED25519_KEY_BYTES) {
        bft_fail(err, err_len, "Ed25519 seed must be 32 bytes");
        return NULL;
    }
    EVP_PKEY *key = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, seed_len);
    if (key == NULL) {
        bft_fail(err, err_len, "EVP_PKEY_new_raw_private_key failed");
    }
    return key;
}

bft_pkey *bft_ed25519_public_key_from_raw(const uint8_t *raw, size_t raw_len,
                                          char *err, size_t err_len) {
    if (raw == NULL || raw_len != BFT_ED25519_KEY_BYTES) {
        bft_fail(err, err_len, "Ed25519 public key must be 32 bytes");
        return NULL;
    }
    EVP_PKEY *key = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, raw, raw_len);
    if (key == NULL) {
        bft_fail(err, err_len, "EVP_PKEY_new_raw_public_key failed");
    }
    return key;
}

int bft_ed25519_raw_public_key(const bft_pkey *key, uint8_t *out, size_t out_len) {
    size_t len = out_len;
    if (key == NULL || out == NULL || out_len != BFT_ED25519_KEY_BYTES
        || EVP_PKEY_get_raw_public_key(key, out, &len) != 1 || len != BFT_ED25519_KEY_BYTES) {
        bft_fail(NULL, 0, NULL);
        return 0;
    }
    return 1;
}

int bft_ed25519_raw_private_key(const bft_pkey *key, uint8_t *out, size_t out_len) {
    size_t len = out_len;
    if (key == NULL || out == NULL || out_len != BFT_ED25519_KEY_BYTES
        || EVP_PKEY_get_raw_private_key(key, out, &len) != 1 || len != BFT_ED25519_KEY_BYTES) {
        bft_fail(NULL, 0, NULL);
        return 0;
    }
    return 1;
}

int bft_ed25519_key_is_ed25519(const bft_pkey *key) {
    return key != NULL && EVP_PKEY_id(key) == EVP_PKEY_ED25519;
}

void bft_ed25519_key_free(bft_pkey *key) {
    EVP_PKEY_free(key);
}

/* ---- Ed25519 sign / verify ---------------------------------------------- */

int bft_ed25519_sign(const bft_pkey *key, const void *msg, size_t msg_len,
                     uint8_t *sig, size_t sig_len) {
    if (key == NULL || sig == NULL || sig_len != BFT_ED25519_SIGNATURE_BYTES
        || (msg == NULL && msg_len != 0)) {
        bft_fail(NULL, 0, NULL);
        return 0;
    }
    if (msg == NULL) msg = bft_empty;
    /* A fresh context per call: EVP_MD_CTX is not thread-safe, the EVP_PKEY
     * (read-only, reference counted) is. */
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL) {
        bft_fail(NULL, 0, NULL);
        return 0;
    }
    size_t len = sig_len;
    int ok = EVP_DigestSignInit(ctx, NULL, NULL, NULL, (EVP_PKEY *)key) == 1
          && EVP_DigestSign(ctx, sig, &len, msg, msg_len) == 1
          && len == BFT_ED25519_SIGNATURE_BYTES;
    EVP_MD_CTX_free(ctx);
    if (!ok) {
        bft_fail(NULL, 0, NULL);
        return 0;
    }
    return 1;
}

int bft_ed25519_verify(const bft_pkey *key, const uint8_t *sig, size_t sig_len,
                       const void *msg, size_t msg_len) {
    if (key == NULL || (msg == NULL && msg_len != 0)) {
        bft_fail(NULL, 0, NULL);
        return -1;
    }
    if (sig == NULL || sig_len != BFT_ED25519_SIGNATURE_BYTES) {
        return 0; /* malformed signature: simply not valid */
    }
    if (msg == NULL) msg = bft_empty;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL) {
        bft_fail(NULL, 0, NULL);
        return -1;
    }
    int result;
    if (EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, (EVP_PKEY *)key) != 1) {
        result = -1;
    } else {
        result = EVP_DigestVerify(ctx, sig, sig_len, msg, msg_len) == 1 ? 1 : 0;
    }
    EVP_MD_CTX_free(ctx);
    if (result != 1) {
        /* A failed verify queues an error; drop it so it is not misreported later. */
        ERR_clear_error();
    }
    return result;
}

/* ---- PEM ------------------------------------------------------------------ */

/* Passphrase callback that refuses: without it OpenSSL's default callback
 * would try to prompt on the controlling terminal for encrypted keys. */
static int bft_no_passphrase(char *buf, int size, int rwflag, void *u) {
    (void)buf; (void)size; (void)rwflag; (void)u;
    return -1;
}

static BIO *bft_bio_from(const char *pem, size_t pem_len) {
    if (pem == NULL || pem_len > INT_MAX) return NULL;
    return BIO_new_mem_buf(pem, (int)pem_len);
}

bft_pkey *bft_pem_read_private_key(const char *pem, size_t pem_len, char *err, size_t err_len) {
    BIO *bio = bft_bio_from(pem, pem_len);
    if (bio == NULL) {
        bft_fail(err, err_len, "cannot create memory BIO");
        return NULL;
    }
    EVP_PKEY *key = PEM_read_bio_PrivateKey(bio, NULL, bft_no_passphrase, NULL);
    BIO_free(bio);
    if (key == NULL) {
        bft_fail(err, err_len, "PEM_read_bio_PrivateKey failed");
        return NULL;
    }
    /* The decoder may leave benign errors queued from formats it tried first. */
    ERR_clear_error();
    return key;
}

bft_pkey *bft_pem_read_public_key(const char *pem, size_t pem_len, char *err, size_t err_len) {
    BIO *bio = bft_bio_from(pem, pem_len);
    if (bio == NULL) {
        bft_fail(err, err_len, "cannot create memory BIO");
        return NULL;
    }
    EVP_PKEY *key = PEM_read_bio_PUBKEY(bio, NULL, bft_no_passphrase, NULL);
    BIO_free(bio);
    if (key == NULL) {
        bft_fail(err, err_len, "PEM_read_bio_PUBKEY failed");
        return NULL;
    }
    ERR_clear_error();
    return key;
}

/* Copy a memory BIO's contents into a malloc'd buffer owned by the caller. */
static int bft_bio_take(BIO *bio, char **out, size_t *out_len) {
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    if (n <= 0 || data == NULL) return 0;
    char *copy = malloc((size_t)n);
    if (copy == NULL) return 0;
    memcpy(copy, data, (size_t)n);
    *out = copy;
    *out_len = (size_t)n;
    return 1;
}

int bft_pem_write_private_key(const bft_pkey *key, char **out, size_t *out_len) {
    if (key == NULL || out == NULL || out_len == NULL) {
        bft_fail(NULL, 0, NULL);
        return 0;
    }
    BIO *bio = BIO_new(BIO_s_mem());
    int ok = bio != NULL
          && PEM_write_bio_PKCS8PrivateKey(bio, (EVP_PKEY *)key, NULL, NULL, 0, NULL, NULL) == 1
          && bft_bio_take(bio, out, out_len);
    BIO_free(bio);
    if (!ok) {
        bft_fail(NULL, 0, NULL);
        return 0;
    }
    return 1;
}

int bft_pem_write_public_key(const bft_pkey *key, char **out, size_t *out_len) {
    if (key == NULL || out == NULL || out_len == NULL) {
        bft_fail(NULL, 0, NULL);
        return 0;
    }
    BIO *bio = BIO_new(BIO_s_mem());
    int ok = bio != NULL
          && PEM_write_bio_PUBKEY(bio, (EVP_PKEY *)key) == 1
          && bft_bio_take(bio, out, out_len);
    BIO_free(bio);
    if (!ok) {
        bft_fail(NULL, 0, NULL);
        return 0;
    }
    return 1;
}

void bft_free(void *p) {
    free(p);
}

/* ---- SHA-256 -------------------------------------------------------------- */

int bft_sha256(const void *data, size_t len, uint8_t *out) {
    if (out == NULL || (data == NULL && len != 0)) {
        bft_fail(NULL, 0, NULL);
        return 0;
    }
    if (data == NULL) data = bft_empty;
    unsigned int out_len = 0;
    if (EVP_Digest(data, len, out, &out_len, bft_sha256_md(), NULL) != 1
        || out_len != BFT_SHA256_BYTES) {
        bft_fail(NULL, 0, NULL);
        return 0;
    }
    return 1;
}

bft_sha256_ctx *bft_sha256_new(void) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL) {
        bft_fail(NULL, 0, NULL);
        return NULL;
    }
    if (EVP_DigestInit_ex(ctx, bft_sha256_md(), NULL) != 1) {
        EVP_MD_CTX_free(ctx);
        bft_fail(NULL, 0, NULL);
        return NULL;
    }
    return ctx;
}

int bft_sha256_update(bft_sha256_ctx *ctx, const void *data, size_t len) {
    if (ctx == NULL || (data == NULL && len != 0)) {
        bft_fail(NULL, 0, NULL);
        return 0;
    }
    if (len == 0) return 1;
    if (EVP_DigestUpdate(ctx, data, len) != 1) {
        bft_fail(NULL, 0, NULL);
        return 0;
    }
    return 1;
}

int bft_sha256_final(bft_sha256_ctx *ctx, uint8_t *out) {
    unsigned int out_len = 0;
    if (ctx == NULL || out == NULL
        || EVP_DigestFinal_ex(ctx, out, &out_len) != 1 || out_len != BFT_SHA256_BYTES) {
        bft_fail(NULL, 0, NULL);
        return 0;
    }
    return 1;
}

void bft_sha256_free(bft_sha256_ctx *ctx) {
    EVP_MD_CTX_free(ctx);
}

/* ---- X25519 (RFC 7748) ---------------------------------------------------- */

bft_pkey *bft_x25519_private_key_from_raw(const uint8_t *raw, size_t raw_len,
                                          char *err, size_t err_len) {
    if (raw == NULL || raw_len != BFT_X25519_KEY_BYTES) {
        bft_fail(err, err_len, "X25519 private key must be 32 bytes");
        return NULL;
    }
    EVP_PKEY *key = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, raw, raw_len);
    if (key == NULL) {
        bft_fail(err, err_len, "EVP_PKEY_new_raw_private_key(X25519) failed");
    }
    return key;
}

int bft_x25519_raw_public_key(const bft_pkey *key, uint8_t *out, size_t out_len) {
    size_t len = out_len;
    if (key == NULL || out == NULL || out_len != BFT_X25519_KEY_BYTES
        || EVP_PKEY_id(key) != EVP_PKEY_X25519
        || EVP_PKEY_get_raw_public_key(key, out, &len) != 1 || len != BFT_X25519_KEY_BYTES) {
        bft_fail(NULL, 0, NULL);
        return 0;
    }
    return 1;
}

int bft_x25519_key_is_x25519(const bft_pkey *key) {
    return key != NULL && EVP_PKEY_id(key) == EVP_PKEY_X25519;
}

void bft_x25519_key_free(bft_pkey *key) {
    EVP_PKEY_free(key);
}

int bft_x25519_derive(const bft_pkey *key, const uint8_t *peer, size_t peer_len,
                      uint8_t *out, size_t out_len) {
    if (key == NULL || peer == NULL || peer_len != BFT_X25519_KEY_BYTES
        || out == NULL || out_len != BFT_X25519_KEY_BYTES || EVP_PKEY_id(key) != EVP_PKEY_X25519) {
        bft_fail(NULL, 0, NULL);
        return -1;
    }
    EVP_PKEY *peer_key = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, peer, peer_len);
    if (peer_key == NULL) {
        bft_fail(NULL, 0, NULL);
        return -1;
    }
    /* A fresh context per call: the EVP_PKEY is shared read-only between threads. */
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, (EVP_PKEY *)key, NULL);
    int result = -1;
    if (ctx != NULL && EVP_PKEY_derive_init(ctx) == 1
        && EVP_PKEY_derive_set_peer_ex(ctx, peer_key, 0) == 1) {
        size_t len = out_len;
        /* Once init and set_peer succeeded, OpenSSL's X25519 derive fails only
         * when the result is all zero (it checks, as RFC 7748 section 6.1 allows). */
        if (EVP_PKEY_derive(ctx, out, &len) == 1 && len == BFT_X25519_KEY_BYTES) {
            /* Check again ourselves, in constant time, rather than rely on it. */
            uint8_t acc = 0;
            for (size_t i = 0; i < BFT_X25519_KEY_BYTES; i++) acc |= out[i];
            result = acc != 0 ? 1 : 0;
        } else {
            result = 0;
        }
    }
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(peer_key);
    if (result != 1) {
        OPENSSL_cleanse(out, out_len);
        bft_fail(NULL, 0, NULL);
    }
    return result;
}

/* ---- ChaCha20-Poly1305 AEAD (RFC 8439) ------------------------------------ */

/* Fetched once for the same reason as SHA-256 above. */
static pthread_once_t bft_chachapoly_once = PTHREAD_ONCE_INIT;
static const EVP_CIPHER *bft_chachapoly_cipher_obj = NULL;

static void bft_chachapoly_init(void) {
    EVP_CIPHER *c = EVP_CIPHER_fetch(NULL, "ChaCha20-Poly1305", NULL);
    if (c == NULL) {
        ERR_clear_error();
        bft_chachapoly_cipher_obj = EVP_chacha20_poly1305();
    } else {
        bft_chachapoly_cipher_obj = c; /* process-lifetime cache */
    }
}

static const EVP_CIPHER *bft_chachapoly_cipher(void) {
    pthread_once(&bft_chachapoly_once, bft_chachapoly_init);
    return bft_chachapoly_cipher_obj;
}

struct bft_aead_st {
    EVP_CIPHER_CTX *ctx;
};

bft_aead *bft_chachapoly_new(const uint8_t *key, size_t key_len, char *err, size_t err_len) {
    if (key == NULL || key_len != BFT_CHACHAPOLY_KEY_BYTES) {
        bft_fail(err, err_len, "ChaCha20-Poly1305 key must be 32 bytes");
        return NULL;
    }
    const EVP_CIPHER *cipher = bft_chachapoly_cipher();
    bft_aead *a = malloc(sizeof(*a));
    if (a == NULL) {
        bft_fail(err, err_len, "out of memory");
        return NULL;
    }
    a->ctx = EVP_CIPHER_CTX_new();
    /* Key now; the nonce is supplied per record. */
    if (cipher == NULL || a->ctx == NULL
        || EVP_CipherInit_ex2(a->ctx, cipher, key, NULL, 1, NULL) != 1) {
        EVP_CIPHER_CTX_free(a->ctx);
        free(a);
        bft_fail(err, err_len, "cannot key ChaCha20-Poly1305");
        return NULL;
    }
    return a;
}

void bft_chachapoly_free(bft_aead *a) {
    if (a == NULL) return;
    EVP_CIPHER_CTX_free(a->ctx); /* cleanses the provider context */
    free(a);
}

/* Re-initialise for one record: same key, new nonce, given direction; feed AD. */
static int bft_chachapoly_begin(bft_aead *a, const uint8_t *nonce, int enc,
                                const void *ad, size_t ad_len) {
    int len = 0;
    if (EVP_CipherInit_ex2(a->ctx, NULL, NULL, nonce, enc, NULL) != 1) return 0;
    if (ad_len > 0 && EVP_CipherUpdate(a->ctx, NULL, &len, ad, (int)ad_len) != 1) return 0;
    return 1;
}

int bft_chachapoly_seal(bft_aead *a, const uint8_t *nonce, size_t nonce_len,
                        const void *ad, size_t ad_len, const void *pt, size_t pt_len,
                        uint8_t *out, size_t out_len) {
    if (a == NULL || nonce == NULL || nonce_len != BFT_CHACHAPOLY_NONCE_BYTES
        || (ad == NULL && ad_len != 0) || (pt == NULL && pt_len != 0) || out == NULL
        || pt_len > (size_t)INT_MAX - BFT_CHACHAPOLY_TAG_BYTES || ad_len > (size_t)INT_MAX
        || out_len != pt_len + BFT_CHACHAPOLY_TAG_BYTES) {
        bft_fail(NULL, 0, NULL);
        return 0;
    }
    int len = 0, fin = 0;
    int ok = bft_chachapoly_begin(a, nonce, 1, ad, ad_len)
          && (pt_len == 0 || EVP_CipherUpdate(a->ctx, out, &len, pt, (int)pt_len) == 1)
          && EVP_CipherFinal_ex(a->ctx, out + len, &fin) == 1
          && (size_t)(len + fin) == pt_len
          && EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_AEAD_GET_TAG, BFT_CHACHAPOLY_TAG_BYTES,
                                 out + pt_len) == 1;
    if (!ok) {
        OPENSSL_cleanse(out, out_len);
        bft_fail(NULL, 0, NULL);
        return 0;
    }
    return 1;
}

int bft_chachapoly_open(bft_aead *a, const uint8_t *nonce, size_t nonce_len,
                        const void *ad, size_t ad_len, const void *ct, size_t ct_len,
                        uint8_t *out, size_t out_len) {
    if (a == NULL || nonce == NULL || nonce_len != BFT_CHACHAPOLY_NONCE_BYTES
        || (ad == NULL && ad_len != 0) || ct == NULL || ct_len < BFT_CHACHAPOLY_TAG_BYTES
        || ct_len > (size_t)INT_MAX || ad_len > (size_t)INT_MAX
        || out_len != ct_len - BFT_CHACHAPOLY_TAG_BYTES || (out == NULL && out_len != 0)) {
        if (out != NULL && out_len > 0 && out_len <= ct_len) OPENSSL_cleanse(out, out_len);
        bft_fail(NULL, 0, NULL);
        return -1;
    }
    size_t body = ct_len - BFT_CHACHAPOLY_TAG_BYTES;
    const uint8_t *tag = (const uint8_t *)ct + body;
    uint8_t scratch[1];
    uint8_t *dst = out != NULL ? out : scratch;
    int len = 0, fin = 0;
    if (!bft_chachapoly_begin(a, nonce, 0, ad, ad_len)
        || EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_AEAD_SET_TAG, BFT_CHACHAPOLY_TAG_BYTES,
                               (void *)tag) != 1
        || (body > 0 && EVP_CipherUpdate(a->ctx, dst, &len, ct, (int)body) != 1)) {
        if (out_len > 0) OPENSSL_cleanse(out, out_len);
        bft_fail(NULL, 0, NULL);
        return -1;
    }
    /* Final compares the tag; on mismatch the decrypted bytes must not escape. */
    if (EVP_CipherFinal_ex(a->ctx, dst + len, &fin) != 1 || (size_t)(len + fin) != body) {
        if (out_len > 0) OPENSSL_cleanse(out, out_len);
        ERR_clear_error();
        return 0;
    }
    return 1;
}

/* ---- HMAC-SHA256 (RFC 2104) ----------------------------------------------- */

static pthread_once_t bft_hmac_once = PTHREAD_ONCE_INIT;
static EVP_MAC *bft_hmac_obj = NULL;

static void bft_hmac_init(void) {
    bft_hmac_obj = EVP_MAC_fetch(NULL, "HMAC", NULL); /* process-lifetime cache */
    if (bft_hmac_obj == NULL) ERR_clear_error();
}

int bft_hmac_sha256(const void *key, size_t key_len, const void *data, size_t data_len,
                    uint8_t *out, size_t out_len) {
    if ((key == NULL && key_len != 0) || (data == NULL && data_len != 0)
        || out == NULL || out_len != BFT_SHA256_BYTES) {
        bft_fail(NULL, 0, NULL);
        return 0;
    }
    pthread_once(&bft_hmac_once, bft_hmac_init);
    if (bft_hmac_obj == NULL) {
        bft_fail(NULL, 0, NULL);
        return 0;
    }
    if (key == NULL) key = bft_empty;
    if (data == NULL) data = bft_empty;
    /* A fresh EVP_MAC_CTX per call keeps the function thread-safe; HMAC is used
     * a handful of times per handshake, never per record. */
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(bft_hmac_obj);
    OSSL_PARAM params[2];
    params[0] = OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();
    size_t len = 0;
    int ok = ctx != NULL
          && EVP_MAC_init(ctx, key, key_len, params) == 1
          && EVP_MAC_update(ctx, data, data_len) == 1
          && EVP_MAC_final(ctx, out, &len, out_len) == 1
          && len == BFT_SHA256_BYTES;
    EVP_MAC_CTX_free(ctx);
    if (!ok) {
        bft_fail(NULL, 0, NULL);
        return 0;
    }
    return 1;
}

/* ---- Randomness ----------------------------------------------------------- */

int bft_random_bytes(uint8_t *buf, size_t len) {
    if (buf == NULL && len != 0) {
        bft_fail(NULL, 0, NULL);
        return 0;
    }
    while (len > 0) {
        int chunk = len > (size_t)INT_MAX ? INT_MAX : (int)len;
        if (RAND_bytes(buf, chunk) != 1) {
            bft_fail(NULL, 0, NULL);
            return 0;
        }
        buf += chunk;
        len -= (size_t)chunk;
    }
    return 1;
}
