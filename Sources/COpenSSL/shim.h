/*
 * Umbrella header for the system libcrypto (OpenSSL 3, from libssl-dev).
 * Only the EVP-level headers the crypto shim needs are pulled in, so that the
 * module stays small and does not drag in libssl (TLS is not used here).
 */
#ifndef COPENSSL_SHIM_H
#define COPENSSL_SHIM_H

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/crypto.h>

#endif /* COPENSSL_SHIM_H */
