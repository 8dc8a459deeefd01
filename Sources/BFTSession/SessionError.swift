/// Why a session or a handshake failed.
///
/// Why one flat enum with string raw values: the transport counts failures by
/// reason (a metric label must be low-cardinality) and tests compare reasons
/// with `==`. After any of these the handshake or session is dead and must be
/// discarded together with its connection; nothing is retried on the same state.
public enum SessionError: String, Error, Equatable, Hashable, CaseIterable, Sendable, CustomStringConvertible {
    // Handshake
    /// A handshake message exceeded `SessionLimits.maxHandshakeMessageBytes`.
    case handshakeMessageTooLarge = "handshake_message_too_large"
    /// A handshake message did not have the length/structure this protocol sends.
    case handshakeMalformed = "handshake_malformed"
    /// A handshake message failed authentication: tampered bytes, or a peer with a
    /// different prologue (protocol version or cluster id).
    case handshakeDecryptFailed = "handshake_decrypt_failed"
    /// A peer's X25519 key gave an all-zero shared secret (low-order point).
    case lowOrderKey = "low_order_key"
    /// The identity payload could not be parsed.
    case malformedIdentity = "malformed_identity"
    /// The peer claimed a principal the keyring does not know.
    case unknownPrincipal = "unknown_principal"
    /// The peer's Ed25519 signature over the handshake did not verify.
    case identitySignatureInvalid = "identity_signature_invalid"
    /// The responder proved a principal other than the one the initiator dialled.
    case unexpectedPrincipal = "unexpected_principal"
    /// A step was called out of order, or after an earlier failure.
    case handshakeOutOfOrder = "handshake_out_of_order"

    // Records
    /// A record is shorter than its header and tag, or than its declared length.
    case recordTruncated = "record_truncated"
    /// A record (or a frame body to seal) exceeds `SessionLimits.maxRecordBytes`.
    case recordTooLarge = "record_too_large"
    /// A record is longer than its declared length.
    case recordMalformed = "record_malformed"
    /// A record's sequence number was already consumed (replay).
    case recordReplayed = "record_replayed"
    /// A record's sequence number is ahead of the next expected one (reordering or loss).
    case recordOutOfOrder = "record_out_of_order"
    /// A record's tag did not verify (bit flip, wrong direction/key, forged header).
    case recordAuthenticationFailed = "record_authentication_failed"
    /// The 64-bit nonce space is used up (2^64 − 1 is reserved by Noise).
    case nonceExhausted = "nonce_exhausted"
    /// The session already failed once and was closed.
    case sessionClosed = "session_closed"
    /// OpenSSL failed for a reason unrelated to the input (memory exhaustion).
    case internalError = "internal_error"

    /// The low-cardinality label for counters.
    public var reason: String { rawValue }
    public var description: String { rawValue }
}
