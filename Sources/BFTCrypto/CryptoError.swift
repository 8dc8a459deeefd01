/// Errors thrown by BFTCrypto.
///
/// Why an enum with payloads: callers (config loading, key files, wire decoding)
/// want to distinguish "the input was malformed" (lengths, PEM, key type) from
/// "OpenSSL itself failed", and tests want to compare errors with `==`.
public enum CryptoError: Error, Equatable, CustomStringConvertible {
    /// A key had the wrong number of bytes (payload: the length that was given).
    case invalidKeyLength(Int)
    /// A signature had the wrong number of bytes (payload: the length that was given).
    case invalidSignatureLength(Int)
    /// PEM text could not be parsed (payload: OpenSSL's reason, for diagnostics).
    case invalidPEM(String)
    /// The PEM parsed, but it holds a key of another algorithm (e.g. RSA, P-256).
    case wrongKeyType
    /// An OpenSSL call failed for a reason other than malformed input.
    case openssl(String)
    /// An AEAD nonce had the wrong number of bytes (payload: the length given; 12 expected).
    case invalidNonceLength(Int)
    /// An AEAD ciphertext was shorter than its 16-byte tag (payload: the length given).
    case invalidCiphertextLength(Int)
    /// An AEAD tag did not verify: the ciphertext, nonce, key or associated data
    /// differ from what was sealed. No plaintext is returned.
    case authenticationFailure
    /// An X25519 peer key gave the all-zero shared secret (a low-order point,
    /// RFC 7748 section 6.1): the peer could force a known key, so it is refused.
    case lowOrderPoint

    public var description: String {
        switch self {
        case .invalidKeyLength(let n):
            return "invalid key length \(n) (expected 32 bytes)"
        case .invalidSignatureLength(let n):
            return "invalid Ed25519 signature length \(n) (expected 64 bytes)"
        case .invalidPEM(let reason):
            return "invalid PEM: \(reason)"
        case .wrongKeyType:
            return "wrong key type (expected ED25519)"
        case .openssl(let reason):
            return "OpenSSL error: \(reason)"
        case .invalidNonceLength(let n):
            return "invalid nonce length \(n) (expected 12 bytes)"
        case .invalidCiphertextLength(let n):
            return "invalid ciphertext length \(n) (shorter than the 16-byte tag)"
        case .authenticationFailure:
            return "authentication tag mismatch"
        case .lowOrderPoint:
            return "X25519 peer key is a low-order point (all-zero shared secret)"
        }
    }
}
