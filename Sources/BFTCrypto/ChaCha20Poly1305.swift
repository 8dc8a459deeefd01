import CBFTCryptoShim

/// ChaCha20-Poly1305 AEAD (RFC 8439) with a key fixed at construction.
///
/// Why a keyed object rather than a stateless function: a session seals and
/// opens every frame under the same key, and creating and keying an OpenSSL
/// `EVP_CIPHER_CTX` per record costs more than sealing a small record. The
/// context is created once here and only the nonce changes per call.
///
/// Not `Sendable`: the underlying context is mutated by every call. One owner
/// (one connection) at a time; create one object per direction.
public final class ChaCha20Poly1305 {
    public static let keyByteCount = 32
    public static let nonceByteCount = 12
    public static let tagByteCount = 16

    private let handle: OpaquePointer

    public init(key: [UInt8]) throws(CryptoError) {
        guard key.count == ChaCha20Poly1305.keyByteCount else { throw .invalidKeyLength(key.count) }
        let (created, message) = withOpenSSLErrorMessage { err, errLen in
            key.withUnsafeBufferPointer { bft_chachapoly_new($0.baseAddress, $0.count, err, errLen) }
        }
        guard let created else { throw .openssl(message) }
        handle = created
    }

    deinit {
        bft_chachapoly_free(handle)
    }

    /// Encrypts `plaintext`, returning ciphertext ‖ 16-byte tag.
    public func seal(
        _ plaintext: UnsafeRawBufferPointer, nonce: [UInt8], associatedData: UnsafeRawBufferPointer
    ) throws(CryptoError) -> [UInt8] {
        try seal(plaintext, nonce: nonce, associatedData: associatedData, prefix: UnsafeRawBufferPointer(start: nil, count: 0))
    }

    /// Encrypts `plaintext`, returning `prefix` ‖ ciphertext ‖ 16-byte tag in one
    /// allocation (a record header in front of its ciphertext without a second copy).
    public func seal(
        _ plaintext: UnsafeRawBufferPointer, nonce: [UInt8], associatedData: UnsafeRawBufferPointer,
        prefix: UnsafeRawBufferPointer
    ) throws(CryptoError) -> [UInt8] {
        guard nonce.count == ChaCha20Poly1305.nonceByteCount else { throw .invalidNonceLength(nonce.count) }
        let sealedCount = plaintext.count + ChaCha20Poly1305.tagByteCount
        let count = prefix.count + sealedCount
        var ok: Int32 = 0
        let out = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            if prefix.count > 0 {
                UnsafeMutableRawBufferPointer(buffer).copyMemory(from: prefix)
            }
            ok = nonce.withUnsafeBufferPointer { n in
                bft_chachapoly_seal(handle, n.baseAddress, n.count,
                                    associatedData.baseAddress, associatedData.count,
                                    plaintext.baseAddress, plaintext.count,
                                    buffer.baseAddress! + prefix.count, sealedCount)
            }
            initialized = count // the sealed part is zeroed by the shim on failure
        }
        guard ok == 1 else { throw .openssl("ChaCha20-Poly1305 seal failed") }
        return out
    }

    /// Decrypts ciphertext ‖ tag. Throws `.authenticationFailure` on any tag
    /// mismatch; the plaintext is then never returned.
    public func open(
        _ ciphertext: UnsafeRawBufferPointer, nonce: [UInt8], associatedData: UnsafeRawBufferPointer
    ) throws(CryptoError) -> [UInt8] {
        guard nonce.count == ChaCha20Poly1305.nonceByteCount else { throw .invalidNonceLength(nonce.count) }
        guard ciphertext.count >= ChaCha20Poly1305.tagByteCount else {
            throw .invalidCiphertextLength(ciphertext.count)
        }
        let count = ciphertext.count - ChaCha20Poly1305.tagByteCount
        var rc: Int32 = -1
        let out = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            rc = nonce.withUnsafeBufferPointer { n in
                bft_chachapoly_open(handle, n.baseAddress, n.count,
                                    associatedData.baseAddress, associatedData.count,
                                    ciphertext.baseAddress, ciphertext.count,
                                    buffer.baseAddress, count)
            }
            initialized = count // zeroed by the shim on failure
        }
        switch rc {
        case 1: return out
        case 0: throw .authenticationFailure
        default: throw .openssl("ChaCha20-Poly1305 open failed")
        }
    }

    /// Array convenience for `seal`.
    public func seal(_ plaintext: [UInt8], nonce: [UInt8], associatedData: [UInt8] = []) throws(CryptoError) -> [UInt8] {
        // Array.withUnsafeBytes only rethrows untyped errors, so carry a Result out.
        try plaintext.withUnsafeBytes { p in
            associatedData.withUnsafeBytes { a in
                Result { () throws(CryptoError) in try seal(p, nonce: nonce, associatedData: a) }
            }
        }.get()
    }

    /// Array convenience for `open`.
    public func open(_ ciphertext: [UInt8], nonce: [UInt8], associatedData: [UInt8] = []) throws(CryptoError) -> [UInt8] {
        try ciphertext.withUnsafeBytes { c in
            associatedData.withUnsafeBytes { a in
                Result { () throws(CryptoError) in try open(c, nonce: nonce, associatedData: a) }
            }
        }.get()
    }
}
