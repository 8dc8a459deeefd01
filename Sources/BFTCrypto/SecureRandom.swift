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
