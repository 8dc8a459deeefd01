import CBFTCryptoShim

/// Cryptographically secure random bytes from OpenSSL's DRBG (RAND_bytes).
///
/// Why not `SystemRandomNumberGenerator`: key generation should use the same
/// vetted CSPRNG as the rest of the crypto stack, independent of platform.
public enum SecureRandom {
    /// Returns `count` random bytes. Traps if `count` is negative or the DRBG
    /// fails (it only fails if the OS entropy source is unusable, which no
    /// caller could recover from safely).
    public static func bytes(count: Int) -> [UInt8] {
        precondition(count >= 0, "SecureRandom.bytes: negative count")
        return [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            guard bft_random_bytes(buffer.baseAddress, count) == 1 else {
                fatalError("BFTCrypto: RAND_bytes failed")
            }
            initialized = count
        }
    }
}

/// A `RandomNumberGenerator` backed by OpenSSL's DRBG. Code that takes an
/// injected generator (so tests can be deterministic) gets this in production.
public struct SecureRandomNumberGenerator: RandomNumberGenerator, Sendable {
    public init() {}

    public mutating func next() -> UInt64 {
        var word: UInt64 = 0
        withUnsafeMutableBytes(of: &word) { buffer in
            guard bft_random_bytes(buffer.baseAddress!.assumingMemoryBound(to: UInt8.self), 8) == 1 else {
                fatalError("BFTCrypto: RAND_bytes failed")
            }
        }
        return word
    }
}
