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

    public var description: String {
        switch self {
        case .invalidKeyLength(let n):
            return "invalid Ed25519 key length \(n) (expected 32 bytes)"
        case .invalidSignatureLength(let n):
            return "invalid Ed25519 signature length \(n) (expected 64 bytes)"
        case .invalidPEM(let reason):
            return "invalid PEM: \(reason)"
        case .wrongKeyType:
            return "wrong key type (expected ED25519)"
        case .openssl(let reason):
            return "OpenSSL error: \(reason)"
        }
    }
}
