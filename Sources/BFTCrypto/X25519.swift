import CBFTCryptoShim

/// X25519 Diffie-Hellman (RFC 7748), the DH function of the session handshake.
///
/// Why a separate key type from Ed25519: the curve is the same but the encoding
/// (Montgomery u-coordinate vs. Edwards point) and the operation differ; mixing
/// them up must be a type error, not a runtime surprise.
public enum X25519 {
    /// Size of a private key, a public key and a shared secret.
    public static let byteCount = 32

    /// An X25519 public key: the 32-byte little-endian u-coordinate.
    /// Any 32 bytes are a syntactically valid key; low-order points are only
    /// detected when a shared secret is computed (`CryptoError.lowOrderPoint`).
    public struct PublicKey: Hashable, Sendable {
        public let rawRepresentation: [UInt8]

        public init(rawRepresentation: [UInt8]) throws(CryptoError) {
            guard rawRepresentation.count == X25519.byteCount else {
                throw .invalidKeyLength(rawRepresentation.count)
            }
            self.rawRepresentation = rawRepresentation
        }
    }

    /// An X25519 private key.
    ///
    /// Like `Ed25519PrivateKey`, it caches its `EVP_PKEY` and is shareable
    /// between threads (`@unchecked Sendable`): the handle is never mutated and
    /// every key agreement uses its own `EVP_PKEY_CTX`.
    public final class PrivateKey: @unchecked Sendable {
        private let handle: OpaquePointer
        /// The matching public key (derived once at construction).
        public let publicKey: PublicKey

        /// A key from 32 raw bytes (the RFC 7748 scalar before clamping; OpenSSL
        /// clamps). Tests use this to reproduce published vectors.
        public init(rawRepresentation: [UInt8]) throws(CryptoError) {
            guard rawRepresentation.count == X25519.byteCount else {
                throw .invalidKeyLength(rawRepresentation.count)
            }
            let (created, message) = withOpenSSLErrorMessage { err, errLen in
                rawRepresentation.withUnsafeBufferPointer {
                    bft_x25519_private_key_from_raw($0.baseAddress, $0.count, err, errLen)
                }
            }
            guard let created else { throw .openssl(message) }
            var raw = [UInt8](repeating: 0, count: X25519.byteCount)
            guard bft_x25519_raw_public_key(created, &raw, raw.count) == 1 else {
                bft_x25519_key_free(created)
                throw .openssl("cannot derive X25519 public key")
            }
            self.handle = created
            self.publicKey = try PublicKey(rawRepresentation: raw)
        }

        /// A fresh key from OpenSSL's CSPRNG.
        public static func generate() throws(CryptoError) -> PrivateKey {
            try PrivateKey(rawRepresentation: SecureRandom.bytes(count: X25519.byteCount))
        }

        /// A key drawn from an injected generator, so that code which must stay
        /// free of ambient randomness (the session handshake) is deterministic in
        /// tests. In production pass `SecureRandomNumberGenerator`.
        public convenience init<R: RandomNumberGenerator>(using generator: inout R) throws(CryptoError) {
            var raw = [UInt8]()
            raw.reserveCapacity(X25519.byteCount)
            for _ in 0..<(X25519.byteCount / 8) {
                let word = generator.next()
                for i in 0..<8 { raw.append(UInt8(truncatingIfNeeded: word >> (8 * UInt64(i)))) }
            }
            try self.init(rawRepresentation: raw)
        }

        deinit {
            bft_x25519_key_free(handle)
        }

        /// X25519(self, peer). Throws `.lowOrderPoint` if the result is all zero
        /// (the peer sent a low-order point, RFC 7748 section 6.1).
        public func sharedSecret(with peer: PublicKey) throws(CryptoError) -> [UInt8] {
            var out = [UInt8](repeating: 0, count: X25519.byteCount)
            let rc = peer.rawRepresentation.withUnsafeBufferPointer { p in
                bft_x25519_derive(handle, p.baseAddress, p.count, &out, out.count)
            }
            switch rc {
            case 1: return out
            case 0: throw .lowOrderPoint
            default: throw .openssl("X25519 key agreement failed")
            }
        }
    }
}
