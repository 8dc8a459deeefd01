import CBFTCryptoShim

/// Runs a shim call that reports failures through an `(err, err_len)` buffer and
/// returns the call's result together with the message (empty on success).
/// Why: OpenSSL's error queue is thread-local; the shim copies the reason out and
/// clears the queue inside the same call, so nothing depends on thread affinity.
@inline(__always)
func withOpenSSLErrorMessage<R>(
    _ body: (UnsafeMutablePointer<CChar>, Int) -> R
) -> (R, String) {
    var buffer = [CChar](repeating: 0, count: 256)
    let result = buffer.withUnsafeMutableBufferPointer { body($0.baseAddress!, $0.count) }
    let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
    return (result, String(decoding: bytes, as: UTF8.self))
}

/// Parses PEM text with one of the shim's PEM readers, mapping failure to `.invalidPEM`
/// and checking that the key is Ed25519. The returned handle is owned by the caller.
private func readPEM(
    _ pem: String,
    _ reader: (UnsafePointer<CChar>?, Int, UnsafeMutablePointer<CChar>?, Int) -> OpaquePointer?
) throws(CryptoError) -> OpaquePointer {
    var text = pem
    let (handle, message) = withOpenSSLErrorMessage { err, errLen in
        text.withUTF8 { utf8 in
            utf8.withMemoryRebound(to: CChar.self) { reader($0.baseAddress, $0.count, err, errLen) }
        }
    }
    guard let handle else { throw .invalidPEM(message) }
    guard bft_ed25519_key_is_ed25519(handle) == 1 else {
        bft_ed25519_key_free(handle)
        throw .wrongKeyType
    }
    return handle
}

/// Turns a malloc'd buffer from a `bft_pem_write_*` function into a String.
/// Serialising a valid in-memory key can only fail on memory exhaustion, so
/// failure traps rather than making every caller handle an impossible error.
private func writePEM(
    _ handle: OpaquePointer,
    _ writer: (OpaquePointer?, UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?, UnsafeMutablePointer<Int>?) -> Int32
) -> String {
    var out: UnsafeMutablePointer<CChar>? = nil
    var length = 0
    guard writer(handle, &out, &length) == 1, let out else {
        fatalError("BFTCrypto: OpenSSL failed to write PEM")
    }
    defer { bft_free(out) }
    return out.withMemoryRebound(to: UInt8.self, capacity: length) {
        String(decoding: UnsafeBufferPointer(start: $0, count: length), as: UTF8.self)
    }
}

/// An Ed25519 private key (RFC 8032, pure Ed25519).
///
/// Why a final class owning an `EVP_PKEY`: building the OpenSSL key object on
/// every signature roughly doubles the cost of signing, so the handle is created
/// once and cached here, and freed in `deinit`.
///
/// Thread safety (`@unchecked Sendable`): the handle is never mutated after
/// `init`; OpenSSL 3 allows concurrent read-only use of one `EVP_PKEY`, and every
/// signature uses its own freshly created `EVP_MD_CTX`. One key object can
/// therefore be shared by all threads/tasks of a replica.
public final class Ed25519PrivateKey: @unchecked Sendable {
    /// Owned EVP_PKEY; immutable for the object's lifetime.
    private let handle: OpaquePointer

    /// The matching public key (derived once at construction).
    public let publicKey: Ed25519PublicKey

    /// Creates a key from its 32-byte RFC 8032 seed ("secret key" in the RFC).
    public init(seed: [UInt8]) throws(CryptoError) {
        guard seed.count == Ed25519PublicKey.byteCount else {
            throw .invalidKeyLength(seed.count)
        }
        let (created, message) = withOpenSSLErrorMessage { err, errLen in
            seed.withUnsafeBufferPointer {
                bft_ed25519_private_key_from_seed($0.baseAddress, $0.count, err, errLen)
            }
        }
        guard let created else { throw .openssl(message) }
        var raw = [UInt8](repeating: 0, count: Ed25519PublicKey.byteCount)
        guard bft_ed25519_raw_public_key(created, &raw, raw.count) == 1 else {
            bft_ed25519_key_free(created)
            throw .openssl("cannot derive Ed25519 public key")
        }
        // Build the public key before storing the handle: if this throws, deinit
        // will not run, so the handle must be freed here.
        let pub: Ed25519PublicKey
        do {
            pub = try Ed25519PublicKey(rawRepresentation: raw)
        } catch {
            bft_ed25519_key_free(created)
            throw error
        }
        self.handle = created
        self.publicKey = pub
    }

    /// Generates a fresh key from OpenSSL's CSPRNG (RAND_bytes).
    public static func generate() throws(CryptoError) -> Ed25519PrivateKey {
        try Ed25519PrivateKey(seed: SecureRandom.bytes(count: Ed25519PublicKey.byteCount))
    }

    /// Loads an unencrypted PKCS#8 PEM ("-----BEGIN PRIVATE KEY-----"), as written
    /// by `openssl genpkey -algorithm ED25519`. Encrypted keys are rejected (no
    /// passphrase prompt); non-Ed25519 keys throw `.wrongKeyType`.
    public convenience init(pem: String) throws(CryptoError) {
        let parsed = try readPEM(pem, bft_pem_read_private_key)
        var seed = [UInt8](repeating: 0, count: Ed25519PublicKey.byteCount)
        let ok = bft_ed25519_raw_private_key(parsed, &seed, seed.count)
        bft_ed25519_key_free(parsed)
        guard ok == 1 else { throw .openssl("cannot extract Ed25519 private key bytes") }
        try self.init(seed: seed)
    }

    deinit {
        bft_ed25519_key_free(handle)
    }

    /// The 32-byte seed. Read from OpenSSL on demand so no extra copy of the
    /// secret is kept in Swift memory.
    public var seed: [UInt8] {
        var out = [UInt8](repeating: 0, count: Ed25519PublicKey.byteCount)
        guard bft_ed25519_raw_private_key(handle, &out, out.count) == 1 else {
            fatalError("BFTCrypto: cannot read Ed25519 seed from a valid key")
        }
        return out
    }

    /// Unencrypted PKCS#8 PEM, byte-for-byte the format `openssl genpkey` writes,
    /// so key files interoperate with the OpenSSL CLI.
    public func pemRepresentation() -> String {
        writePEM(handle, bft_pem_write_private_key)
    }

    /// Signs `message`, returning the 64-byte signature.
    public func signature(for message: [UInt8]) -> [UInt8] {
        message.withUnsafeBytes { signature(for: $0) }
    }

    /// Signs the bytes in `message` (no copy), returning the 64-byte signature.
    /// Signing a valid key cannot fail except on memory exhaustion, so this traps
    /// rather than throws, keeping the hot path non-throwing.
    public func signature(for message: UnsafeRawBufferPointer) -> [UInt8] {
        let count = Ed25519PublicKey.signatureByteCount
        return [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            guard bft_ed25519_sign(handle, message.baseAddress, message.count, buffer.baseAddress, count) == 1 else {
                fatalError("BFTCrypto: Ed25519 signing failed inside OpenSSL")
            }
            initialized = count
        }
    }
}

/// An Ed25519 public key.
///
/// Like `Ed25519PrivateKey`, it caches its `EVP_PKEY` (verification is the hot
/// path: every protocol message is checked) and is safe to share across threads,
/// since each verification uses a fresh `EVP_MD_CTX`.
/// Equality and hashing use the 32 raw bytes, so keys can index dictionaries.
public final class Ed25519PublicKey: @unchecked Sendable, Hashable {
    /// Size of a raw Ed25519 public key (and of a seed).
    public static let byteCount = 32
    /// Size of an Ed25519 signature.
    public static let signatureByteCount = 64

    /// Owned EVP_PKEY; immutable for the object's lifetime.
    private let handle: OpaquePointer

    /// The 32-byte encoded point (RFC 8032 "public key").
    public let rawRepresentation: [UInt8]

    /// Creates a key from its 32 raw bytes. Point validity is checked by OpenSSL
    /// at verification time (an invalid point simply never verifies).
    public init(rawRepresentation: [UInt8]) throws(CryptoError) {
        guard rawRepresentation.count == Ed25519PublicKey.byteCount else {
            throw .invalidKeyLength(rawRepresentation.count)
        }
        let (created, message) = withOpenSSLErrorMessage { err, errLen in
            rawRepresentation.withUnsafeBufferPointer {
                bft_ed25519_public_key_from_raw($0.baseAddress, $0.count, err, errLen)
            }
        }
        guard let created else { throw .openssl(message) }
        self.handle = created
        self.rawRepresentation = rawRepresentation
    }

    /// Loads a SubjectPublicKeyInfo PEM ("-----BEGIN PUBLIC KEY-----"), as written
    /// by `openssl pkey -pubout`. Non-Ed25519 keys throw `.wrongKeyType`.
    public convenience init(pem: String) throws(CryptoError) {
        let parsed = try readPEM(pem, bft_pem_read_public_key)
        var raw = [UInt8](repeating: 0, count: Ed25519PublicKey.byteCount)
        let ok = bft_ed25519_raw_public_key(parsed, &raw, raw.count)
        bft_ed25519_key_free(parsed)
        guard ok == 1 else { throw .openssl("cannot extract Ed25519 public key bytes") }
        try self.init(rawRepresentation: raw)
    }

    deinit {
        bft_ed25519_key_free(handle)
    }

    /// SubjectPublicKeyInfo PEM, the format `openssl pkey -pubout` writes.
    public func pemRepresentation() -> String {
        writePEM(handle, bft_pem_write_public_key)
    }

    /// True iff `signature` is a valid signature of `message` under this key.
    /// Returns false (never traps) for a signature that is not 64 bytes, since
    /// signatures arrive from untrusted peers.
    public func isValidSignature(_ signature: [UInt8], for message: [UInt8]) -> Bool {
        message.withUnsafeBytes { isValidSignature(signature, for: $0) }
    }

    /// Same as above for a message in a raw buffer (no copy).
    public func isValidSignature(_ signature: [UInt8], for message: UnsafeRawBufferPointer) -> Bool {
        guard signature.count == Ed25519PublicKey.signatureByteCount else { return false }
        return signature.withUnsafeBufferPointer { sig in
            bft_ed25519_verify(handle, sig.baseAddress, sig.count, message.baseAddress, message.count) == 1
        }
    }

    public static func == (lhs: Ed25519PublicKey, rhs: Ed25519PublicKey) -> Bool {
        lhs.rawRepresentation == rhs.rawRepresentation
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(rawRepresentation)
    }
}
