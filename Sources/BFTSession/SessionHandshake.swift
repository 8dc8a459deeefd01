import BFTCrypto

/// Size limits a peer cannot exceed. Checked before any parsing or crypto.
public struct SessionLimits: Sendable, Equatable {
    /// Largest handshake message accepted (ours are 32, 165 and 133 bytes).
    public var maxHandshakeMessageBytes: Int
    /// Largest record (header ‖ ciphertext ‖ tag) sealed or opened; the largest
    /// frame body is this minus `Session.recordOverhead`.
    public var maxRecordBytes: Int

    public init(maxHandshakeMessageBytes: Int = 1024, maxRecordBytes: Int) {
        precondition(maxRecordBytes >= Session.recordOverhead, "maxRecordBytes must cover the record overhead")
        self.maxHandshakeMessageBytes = maxHandshakeMessageBytes
        self.maxRecordBytes = maxRecordBytes
    }

    public var maxFrameBodyBytes: Int { maxRecordBytes - Session.recordOverhead }
}

/// What one process brings to every handshake.
public struct SessionConfig: Sendable {
    public var clusterID: UInt32
    /// Who we are (our entry in `cluster.json`).
    public var principal: SessionPrincipal
    /// Our Ed25519 identity key (the one whose public half is in `cluster.json`).
    public var signingKey: Ed25519PrivateKey
    /// Our Noise static key: a fresh X25519 key per process, never persisted.
    public var staticKey: X25519.PrivateKey
    /// Ed25519 public key of a principal of the cluster, or nil if unknown.
    public var keyring: @Sendable (SessionPrincipal) -> Ed25519PublicKey?
    public var limits: SessionLimits

    public init(clusterID: UInt32, principal: SessionPrincipal, signingKey: Ed25519PrivateKey,
                staticKey: X25519.PrivateKey, limits: SessionLimits,
                keyring: @escaping @Sendable (SessionPrincipal) -> Ed25519PublicKey?) {
        self.clusterID = clusterID
        self.principal = principal
        self.signingKey = signingKey
        self.staticKey = staticKey
        self.keyring = keyring
        self.limits = limits
    }
}

/// Message sizes of our XX handshake (fixed: the payloads have fixed sizes).
enum HandshakeSizes {
    static let tag = ChaCha20Poly1305.tagByteCount
    /// `e` ‖ empty payload.
    static let message1 = X25519.byteCount
    /// `e` ‖ enc(s) ‖ enc(proof).
    static let message2 = X25519.byteCount + (X25519.byteCount + tag) + (IdentityBinding.proofByteCount + tag)
    /// enc(s) ‖ enc(proof).
    static let message3 = (X25519.byteCount + tag) + (IdentityBinding.proofByteCount + tag)
}

private func checkSize(_ message: [UInt8], expected: Int, limits: SessionLimits) throws(SessionError) {
    guard message.count <= limits.maxHandshakeMessageBytes else { throw .handshakeMessageTooLarge }
    guard message.count == expected else { throw .handshakeMalformed }
}

/// The dialling side: `start()` → message 1; `finish(message2)` → message 3 and
/// the `Session`. The responder is authenticated inside `finish` before
/// message 3 (which carries our identity) is produced.
///
/// Any error leaves the handshake failed: discard it with its connection.
public struct InitiatorHandshake {
    private let config: SessionConfig
    public let expectedPeer: SessionPrincipal
    private var state: HandshakeState
    private var step = 0 // 0: start, 1: await message 2, 2: done, -1: failed

    /// `random` supplies the ephemeral key (pass `SecureRandomNumberGenerator`
    /// in production, a seeded generator in tests).
    public init(config: SessionConfig, expectedPeer: SessionPrincipal,
                random: inout some RandomNumberGenerator) throws(SessionError) {
        let ephemeral: X25519.PrivateKey
        do { ephemeral = try X25519.PrivateKey(using: &random) } catch { throw .internalError }
        self.init(config: config, expectedPeer: expectedPeer, ephemeralKey: ephemeral)
    }

    /// Explicit ephemeral key, for tests that reproduce exact bytes.
    public init(config: SessionConfig, expectedPeer: SessionPrincipal, ephemeralKey: X25519.PrivateKey) {
        self.config = config
        self.expectedPeer = expectedPeer
        state = HandshakeState(pattern: .xx, initiator: true,
                               prologue: IdentityBinding.prologue(clusterID: config.clusterID),
                               localStatic: config.staticKey, localEphemeral: ephemeralKey)
    }

    /// Message 1 (`-> e`, empty payload).
    public mutating func start() throws(SessionError) -> [UInt8] {
        guard step == 0 else { step = -1; throw .handshakeOutOfOrder }
        do throws(SessionError) {
            let m = try state.writeMessage(payload: [])
            step = 1
            return m
        } catch { step = -1; throw error }
    }

    /// Reads message 2 (`<- e, ee, s, es` + responder proof), authenticates the
    /// responder, and returns message 3 (`-> s, se` + our proof) with the session.
    public mutating func finish(_ message2: [UInt8]) throws(SessionError) -> (message3: [UInt8], session: Session) {
        guard step == 1 else { step = -1; throw .handshakeOutOfOrder }
        do throws(SessionError) {
            try checkSize(message2, expected: HandshakeSizes.message2, limits: config.limits)
            let proof = try state.readMessage(message2)
            let peer = try IdentityBinding.verifyProof(proof, clusterID: config.clusterID,
                                                       handshakeHash: state.hashBeforeLastPayload,
                                                       peerStaticKey: state.remoteStatic, keyring: config.keyring)
            guard peer == expectedPeer else { throw SessionError.unexpectedPrincipal }
            let config = self.config
            let message3 = try state.writeMessage(payload: { (h: [UInt8]) throws(SessionError) in
                IdentityBinding.makeProof(principal: config.principal, signingKey: config.signingKey,
                                          clusterID: config.clusterID, handshakeHash: h,
                                          staticKey: config.staticKey.publicKey)
            })
            let (send, receive) = try state.split()
            step = 2
            let session = Session(peer: peer, peerStaticKey: state.remoteStatic!, handshakeHash: state.handshakeHash,
                                  isInitiator: true, sender: send, receiver: receive, limits: config.limits)
            return (message3, session)
        } catch { step = -1; throw error }
    }
}

/// The accepting side: `respond(to: message1)` → message 2;
/// `finish(message3)` → the `Session`, once the initiator is authenticated.
public struct ResponderHandshake {
    private let config: SessionConfig
    private var state: HandshakeState
    private var step = 0

    public init(config: SessionConfig, random: inout some RandomNumberGenerator) throws(SessionError) {
        let ephemeral: X25519.PrivateKey
        do { ephemeral = try X25519.PrivateKey(using: &random) } catch { throw .internalError }
        self.init(config: config, ephemeralKey: ephemeral)
    }

    public init(config: SessionConfig, ephemeralKey: X25519.PrivateKey) {
        self.config = config
        state = HandshakeState(pattern: .xx, initiator: false,
                               prologue: IdentityBinding.prologue(clusterID: config.clusterID),
                               localStatic: config.staticKey, localEphemeral: ephemeralKey)
    }

    /// Reads message 1 and returns message 2 carrying our proof.
    public mutating func respond(to message1: [UInt8]) throws(SessionError) -> [UInt8] {
        guard step == 0 else { step = -1; throw .handshakeOutOfOrder }
        do throws(SessionError) {
            try checkSize(message1, expected: HandshakeSizes.message1, limits: config.limits)
            _ = try state.readMessage(message1) // payload is empty (length checked above)
            let config = self.config
            let message2 = try state.writeMessage(payload: { (h: [UInt8]) throws(SessionError) in
                IdentityBinding.makeProof(principal: config.principal, signingKey: config.signingKey,
                                          clusterID: config.clusterID, handshakeHash: h,
                                          staticKey: config.staticKey.publicKey)
            })
            step = 1
            return message2
        } catch { step = -1; throw error }
    }

    /// Reads message 3, authenticates the initiator, returns the session.
    public mutating func finish(_ message3: [UInt8]) throws(SessionError) -> Session {
        guard step == 1 else { step = -1; throw .handshakeOutOfOrder }
        do throws(SessionError) {
            try checkSize(message3, expected: HandshakeSizes.message3, limits: config.limits)
            let proof = try state.readMessage(message3)
            let peer = try IdentityBinding.verifyProof(proof, clusterID: config.clusterID,
                                                       handshakeHash: state.hashBeforeLastPayload,
                                                       peerStaticKey: state.remoteStatic, keyring: config.keyring)
            let (receive, send) = try state.split()
            step = 2
            return Session(peer: peer, peerStaticKey: state.remoteStatic!, handshakeHash: state.handshakeHash,
                           isInitiator: false, sender: send, receiver: receive, limits: config.limits)
        } catch { step = -1; throw error }
    }
}
