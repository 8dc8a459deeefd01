import CBFTCryptoShim

/// SHA-256 via OpenSSL's EVP API.
///
/// Why OpenSSL rather than a Swift implementation: it uses SHA-NI/AVX2 code paths
/// and is already a dependency for Ed25519; the shim fetches the EVP_MD once so
/// each call avoids OpenSSL 3's implicit per-call algorithm fetch.
///
/// Failures here can only mean memory exhaustion or a broken libcrypto, neither
/// of which a caller could handle, so they trap instead of throwing; this keeps
/// hashing usable from non-throwing protocol code.
public enum SHA256 {
    /// Hash of `bytes`.
    public static func hash(_ bytes: [UInt8]) -> Digest {
        bytes.withUnsafeBytes { hash($0) }
    }

    /// Hash of the bytes in `buffer` (may be empty; a nil base address is fine).
    public static func hash(_ buffer: UnsafeRawBufferPointer) -> Digest {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: Digest.byteCount) { out in
            guard bft_sha256(buffer.baseAddress, buffer.count, out.baseAddress) == 1 else {
                fatalError("BFTCrypto: SHA-256 failed inside OpenSSL")
            }
            return Digest(unsafeBytes: UnsafeRawBufferPointer(out))
        }
    }

    /// Hash of the concatenation of `parts`, fed incrementally into one EVP_MD_CTX
    /// so that no concatenated copy is ever built (messages are hashed as
    /// header + payload pieces).
    public static func hash<S: Sequence>(parts: S) -> Digest where S.Element == [UInt8] {
        guard let ctx = bft_sha256_new() else {
            fatalError("BFTCrypto: cannot create SHA-256 context")
        }
        defer { bft_sha256_free(ctx) }
        for part in parts {
            let ok = part.withUnsafeBytes { bft_sha256_update(ctx, $0.baseAddress, $0.count) }
            guard ok == 1 else { fatalError("BFTCrypto: SHA-256 update failed inside OpenSSL") }
        }
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: Digest.byteCount) { out in
            guard bft_sha256_final(ctx, out.baseAddress) == 1 else {
                fatalError("BFTCrypto: SHA-256 final failed inside OpenSSL")
            }
            return Digest(unsafeBytes: UnsafeRawBufferPointer(out))
        }
    }
}
