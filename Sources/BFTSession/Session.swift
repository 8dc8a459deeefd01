import BFTCrypto

/// An authenticated session after the handshake: seals frame bodies into
/// records and opens records back into frame bodies.
///
/// Record format (all of it authenticated):
///
///     seq (u64 BE) ‖ body length (u32 BE) ‖ ChaCha20-Poly1305(body) ‖ tag (16)
///
/// The 12-byte header is the AEAD's associated data and `seq` is the Noise
/// nonce of the sending direction. Each direction has its own key (Noise
/// `Split`) and counter, and the receiver accepts only `seq` equal to its next
/// expected counter. That detects, with distinct reasons: replay (`seq` below),
/// reordering or loss (`seq` above), truncation (shorter than declared),
/// tampering (tag), and reflection (a record sent back to its sender is opened
/// under the other direction's key and fails the tag). The explicit `seq` and
/// length cost 12 bytes per record and buy those reasons; the nonce is still
/// the counter, never taken from the wire on trust.
///
/// Any failure closes the session: later calls throw `.sessionClosed`. Not
/// `Sendable`: one connection owns it.
public final class Session {
    public static let headerByteCount = 12
    public static let recordOverhead = headerByteCount + ChaCha20Poly1305.tagByteCount

    /// The authenticated peer.
    public let peer: SessionPrincipal
    /// The peer's Noise static key for this process lifetime.
    public let peerStaticKey: X25519.PublicKey
    /// Noise `h` after the handshake: identical on both sides, unique per session.
    public let handshakeHash: [UInt8]
    public let isInitiator: Bool
    public let limits: SessionLimits

    private var sender: CipherState
    private var receiver: CipherState
    /// The first failure, if any (the session is then closed).
    public private(set) var failure: SessionError?

    init(peer: SessionPrincipal, peerStaticKey: X25519.PublicKey, handshakeHash: [UInt8], isInitiator: Bool,
         sender: CipherState, receiver: CipherState, limits: SessionLimits) {
        self.peer = peer
        self.peerStaticKey = peerStaticKey
        self.handshakeHash = handshakeHash
        self.isInitiator = isInitiator
        self.sender = sender
        self.receiver = receiver
        self.limits = limits
    }

    public var isClosed: Bool { failure != nil }
    /// Sequence number the next sealed record gets.
    public var nextSendSequence: UInt64 { sender.nonce }
    /// Sequence number the next opened record must carry.
    public var nextReceiveSequence: UInt64 { receiver.nonce }

    private func fail(_ error: SessionError) -> SessionError {
        if failure == nil { failure = error }
        return error
    }

    /// Seals one frame body into a record.
    public func seal(_ frameBody: [UInt8]) throws(SessionError) -> [UInt8] {
        if failure != nil { throw .sessionClosed }
        guard frameBody.count <= limits.maxFrameBodyBytes else { throw fail(.recordTooLarge) }
        let header = bigEndianBytes(sender.nonce) + bigEndianBytes(UInt32(frameBody.count))
        do {
            // The header is both the associated data and the record's first 12 bytes.
            return try header.withUnsafeBytes { h in
                frameBody.withUnsafeBytes { body in
                    Result { () throws(SessionError) in try sender.encryptWithAd(h, body, prefix: h) }
                }
            }.get()
        } catch {
            throw fail(error)
        }
    }

    /// Opens one record, returning its frame body.
    public func open(_ record: [UInt8]) throws(SessionError) -> [UInt8] {
        if failure != nil { throw .sessionClosed }
        guard record.count <= limits.maxRecordBytes else { throw fail(.recordTooLarge) }
        guard record.count >= Session.recordOverhead else { throw fail(.recordTruncated) }
        var seq: UInt64 = 0
        for i in 0..<8 { seq = seq << 8 | UInt64(record[i]) }
        var length = 0
        for i in 8..<12 { length = length << 8 | Int(record[i]) }
        guard length <= limits.maxFrameBodyBytes else { throw fail(.recordTooLarge) }
        let expectedCount = Session.recordOverhead + length
        guard record.count >= expectedCount else { throw fail(.recordTruncated) }
        guard record.count == expectedCount else { throw fail(.recordMalformed) }
        guard seq >= receiver.nonce else { throw fail(.recordReplayed) }
        guard seq == receiver.nonce else { throw fail(.recordOutOfOrder) }
        do {
            return try record.withUnsafeBytes { raw in
                Result { () throws(SessionError) in
                    try receiver.decryptWithAd(UnsafeRawBufferPointer(rebasing: raw[0..<Session.headerByteCount]),
                                               UnsafeRawBufferPointer(rebasing: raw[Session.headerByteCount...]))
                }
            }.get()
        } catch .handshakeDecryptFailed {
            throw fail(.recordAuthenticationFailed)
        } catch {
            throw fail(error)
        }
    }
}
