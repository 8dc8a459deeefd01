import BFTCrypto

// Noise Protocol Framework, revision 34 (noiseprotocol.org/noise.html), for the
// one protocol we use: Noise_XX_25519_ChaChaPoly_SHA256. The objects and their
// operations are named as in the specification (§5) so the code can be read
// side by side with it. Pure: no sockets, clocks or randomness (ephemeral keys
// are passed in).

/// Noise §5.1: a cipher key `k` (possibly empty) and a 64-bit nonce `n`.
///
/// Nonces are encoded as the specification requires for ChaChaPoly (§12.3):
/// 32 bits of zeros followed by the little-endian 64-bit counter. 2^64 − 1 is
/// reserved, so a state whose counter reaches it refuses to encrypt or
/// decrypt (`SessionError.nonceExhausted`). Rekey is not implemented.
///
/// Not `Sendable`: it owns a keyed OpenSSL context. Copies share that context,
/// which is harmless because every call sets the nonce, but a copy must not be
/// used from another thread at the same time.
public struct CipherState {
    public static let maxNonce = UInt64.max

    private var aead: ChaCha20Poly1305?
    /// `n`: the next nonce.
    public private(set) var nonce: UInt64 = 0

    /// A state with an empty key (encryption is the identity function).
    public init() {}

    /// `InitializeKey(key)`: sets `k` and resets `n` to 0.
    public init(key: [UInt8]) throws(SessionError) {
        try initializeKey(key)
    }

    /// `InitializeKey(key)`; `nil` means empty.
    public mutating func initializeKey(_ key: [UInt8]?) throws(SessionError) {
        if let key {
            do { aead = try ChaCha20Poly1305(key: key) } catch { throw .internalError }
        } else {
            aead = nil
        }
        nonce = 0
    }

    /// `HasKey()`.
    public var hasKey: Bool { aead != nil }

    /// `SetNonce(nonce)`.
    public mutating func setNonce(_ n: UInt64) { nonce = n }

    /// The 12-byte ChaChaPoly nonce for counter `n`: 4 zero bytes ‖ LE64(n).
    public static func encodeNonce(_ n: UInt64) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 12)
        for i in 0..<8 { out[4 + i] = UInt8(truncatingIfNeeded: n >> (8 * UInt64(i))) }
        return out
    }

    /// `EncryptWithAd(ad, plaintext)`; the result is preceded by `prefix` (not
    /// encrypted), so a record header and its ciphertext share one allocation.
    public mutating func encryptWithAd(_ ad: UnsafeRawBufferPointer, _ plaintext: UnsafeRawBufferPointer,
                                       prefix: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0)) throws(SessionError) -> [UInt8] {
        guard let aead else { return Array(prefix) + Array(plaintext) }
        guard nonce != CipherState.maxNonce else { throw .nonceExhausted }
        let out: [UInt8]
        do {
            out = try aead.seal(plaintext, nonce: CipherState.encodeNonce(nonce), associatedData: ad, prefix: prefix)
        } catch { throw .internalError }
        nonce += 1
        return out
    }

    /// `DecryptWithAd(ad, ciphertext)`: on a tag mismatch throws
    /// `.handshakeDecryptFailed` (callers outside the handshake map it) and,
    /// as the specification requires, leaves `n` unchanged.
    public mutating func decryptWithAd(_ ad: UnsafeRawBufferPointer, _ ciphertext: UnsafeRawBufferPointer) throws(SessionError) -> [UInt8] {
        guard let aead else { return Array(ciphertext) }
        guard nonce != CipherState.maxNonce else { throw .nonceExhausted }
        let out: [UInt8]
        do {
            out = try aead.open(ciphertext, nonce: CipherState.encodeNonce(nonce), associatedData: ad)
        } catch .authenticationFailure, .invalidCiphertextLength(_) {
            throw .handshakeDecryptFailed
        } catch {
            throw .internalError
        }
        nonce += 1
        return out
    }

    public mutating func encryptWithAd(_ ad: [UInt8], _ plaintext: [UInt8]) throws(SessionError) -> [UInt8] {
        try ad.withUnsafeBytes { a in
            plaintext.withUnsafeBytes { p in Result { () throws(SessionError) in try encryptWithAd(a, p) } }
        }.get()
    }

    public mutating func decryptWithAd(_ ad: [UInt8], _ ciphertext: [UInt8]) throws(SessionError) -> [UInt8] {
        try ad.withUnsafeBytes { a in
            ciphertext.withUnsafeBytes { c in Result { () throws(SessionError) in try decryptWithAd(a, c) } }
        }.get()
    }
}

/// Noise §5.2: chaining key `ck`, handshake hash `h` and a `CipherState`.
public struct SymmetricState {
    public static let hashLength = 32

    public private(set) var cipherState = CipherState()
    /// `ck`.
    public private(set) var chainingKey: [UInt8]
    /// `h`.
    public private(set) var handshakeHash: [UInt8]

    /// `InitializeSymmetric(protocol_name)`: `h` is the name padded with zeros
    /// if it fits in 32 bytes, else its hash; `ck = h`; empty key.
    public init(protocolName: [UInt8]) {
        if protocolName.count <= SymmetricState.hashLength {
            handshakeHash = protocolName + [UInt8](repeating: 0, count: SymmetricState.hashLength - protocolName.count)
        } else {
            handshakeHash = SHA256.hash(protocolName).bytes
        }
        chainingKey = handshakeHash
    }

    /// `MixKey(input_key_material)`: `ck, temp_k = HKDF(ck, ikm, 2)`; `InitializeKey(temp_k)`.
    public mutating func mixKey(_ inputKeyMaterial: [UInt8]) throws(SessionError) {
        let out = HKDF.noise(chainingKey: chainingKey, inputKeyMaterial: inputKeyMaterial, numOutputs: 2)
        chainingKey = out[0]
        try cipherState.initializeKey(out[1]) // HASHLEN = 32: no truncation needed
    }

    /// `MixHash(data)`: `h = HASH(h || data)`.
    public mutating func mixHash(_ data: [UInt8]) {
        handshakeHash = SHA256.hash(parts: [handshakeHash, data]).bytes
    }

    /// `EncryptAndHash(plaintext)`: encrypt with `h` as associated data, then mix the ciphertext.
    public mutating func encryptAndHash(_ plaintext: [UInt8]) throws(SessionError) -> [UInt8] {
        let ciphertext = try cipherState.encryptWithAd(handshakeHash, plaintext)
        mixHash(ciphertext)
        return ciphertext
    }

    /// `DecryptAndHash(ciphertext)`.
    public mutating func decryptAndHash(_ ciphertext: [UInt8]) throws(SessionError) -> [UInt8] {
        let plaintext = try cipherState.decryptWithAd(handshakeHash, ciphertext)
        mixHash(ciphertext)
        return plaintext
    }

    /// `Split()`: `temp_k1, temp_k2 = HKDF(ck, zerolen, 2)`; two fresh states.
    /// The first encrypts initiator → responder, the second responder → initiator.
    public func split() throws(SessionError) -> (CipherState, CipherState) {
        let out = HKDF.noise(chainingKey: chainingKey, inputKeyMaterial: [], numOutputs: 2)
        return (try CipherState(key: out[0]), try CipherState(key: out[1]))
    }
}

/// A token of a Noise message pattern (§7.1).
public enum NoiseToken: Sendable, Equatable {
    case e, s, ee, es, se, ss
}

/// A handshake pattern without pre-messages (§7).
public struct HandshakePattern: Sendable {
    public let name: String
    /// Message patterns; even indices are sent by the initiator.
    public let messages: [[NoiseToken]]

    /// XX (§7.5): `-> e`, `<- e, ee, s, es`, `-> s, se`. Both static keys travel
    /// encrypted, so neither side needs to know the other's in advance.
    public static let xx = HandshakePattern(name: "XX", messages: [[.e], [.e, .ee, .s, .es], [.s, .se]])

    public func protocolName() -> String { "Noise_\(name)_25519_ChaChaPoly_SHA256" }
}

/// Noise §5.3: the handshake state machine for one side.
///
/// `writeMessage`/`readMessage` are called alternately as the pattern
/// dictates; once all messages are processed `split()` gives the transport
/// cipher states and `handshakeHash` identifies the session (channel binding).
public struct HandshakeState {
    public let pattern: HandshakePattern
    public let isInitiator: Bool
    private var symmetric: SymmetricState
    /// `s`.
    private let localStatic: X25519.PrivateKey
    /// `e` (supplied up front: the module draws no randomness itself).
    private let localEphemeral: X25519.PrivateKey
    /// `rs`, known once the peer's `s` token was read.
    public private(set) var remoteStatic: X25519.PublicKey?
    /// `re`.
    public private(set) var remoteEphemeral: X25519.PublicKey?
    private var messageIndex = 0

    /// `h` right before the payload of the last message written or read was
    /// encrypted/decrypted. The identity proof signs (writer) and checks
    /// (reader) this value.
    public private(set) var hashBeforeLastPayload: [UInt8] = []

    /// `Initialize(handshake_pattern, initiator, prologue, s, e)` for patterns
    /// without pre-messages.
    public init(pattern: HandshakePattern, initiator: Bool, prologue: [UInt8],
                localStatic: X25519.PrivateKey, localEphemeral: X25519.PrivateKey) {
        self.pattern = pattern
        self.isInitiator = initiator
        self.localStatic = localStatic
        self.localEphemeral = localEphemeral
        symmetric = SymmetricState(protocolName: Array(pattern.protocolName().utf8))
        symmetric.mixHash(prologue)
    }

    /// True once every message of the pattern was written or read.
    public var isComplete: Bool { messageIndex == pattern.messages.count }
    /// True if the next step is `writeMessage` (false: `readMessage`, or complete).
    public var isMyTurn: Bool { !isComplete && (messageIndex % 2 == 0) == isInitiator }
    /// `h`.
    public var handshakeHash: [UInt8] { symmetric.handshakeHash }

    private func dh(_ local: X25519.PrivateKey, _ remote: X25519.PublicKey?) throws(SessionError) -> [UInt8] {
        guard let remote else { throw .handshakeOutOfOrder }
        do { return try local.sharedSecret(with: remote) } catch .lowOrderPoint { throw .lowOrderKey } catch { throw .internalError }
    }

    private mutating func mixDH(_ token: NoiseToken) throws(SessionError) {
        switch token {
        case .ee: try symmetric.mixKey(dh(localEphemeral, remoteEphemeral))
        case .es: try symmetric.mixKey(isInitiator ? dh(localEphemeral, remoteStatic) : dh(localStatic, remoteEphemeral))
        case .se: try symmetric.mixKey(isInitiator ? dh(localStatic, remoteEphemeral) : dh(localEphemeral, remoteStatic))
        case .ss: try symmetric.mixKey(dh(localStatic, remoteStatic))
        case .e, .s: preconditionFailure("not a DH token")
        }
    }

    /// `WriteMessage(payload, message_buffer)`. The payload is produced by a
    /// closure that receives `h` at the moment the payload is encrypted, so it
    /// can sign it.
    public mutating func writeMessage(
        payload makePayload: (_ handshakeHash: [UInt8]) throws(SessionError) -> [UInt8]
    ) throws(SessionError) -> [UInt8] {
        guard isMyTurn else { throw .handshakeOutOfOrder }
        var buffer: [UInt8] = []
        for token in pattern.messages[messageIndex] {
            switch token {
            case .e:
                let pub = localEphemeral.publicKey.rawRepresentation
                buffer += pub
                symmetric.mixHash(pub)
            case .s:
                buffer += try symmetric.encryptAndHash(localStatic.publicKey.rawRepresentation)
            case .ee, .es, .se, .ss:
                try mixDH(token)
            }
        }
        hashBeforeLastPayload = symmetric.handshakeHash
        buffer += try symmetric.encryptAndHash(makePayload(symmetric.handshakeHash))
        messageIndex += 1
        return buffer
    }

    /// `WriteMessage` with a fixed payload.
    public mutating func writeMessage(payload: [UInt8]) throws(SessionError) -> [UInt8] {
        try writeMessage(payload: { (_: [UInt8]) throws(SessionError) in payload })
    }

    /// `ReadMessage(message, payload_buffer)`: returns the decrypted payload.
    public mutating func readMessage(_ message: [UInt8]) throws(SessionError) -> [UInt8] {
        guard !isComplete, !isMyTurn else { throw .handshakeOutOfOrder }
        var offset = 0
        func take(_ n: Int) throws(SessionError) -> [UInt8] {
            guard message.count - offset >= n else { throw .handshakeMalformed }
            defer { offset += n }
            return Array(message[offset..<(offset + n)])
        }
        for token in pattern.messages[messageIndex] {
            switch token {
            case .e:
                let raw = try take(X25519.byteCount)
                remoteEphemeral = try? X25519.PublicKey(rawRepresentation: raw)
                symmetric.mixHash(raw)
            case .s:
                let length = X25519.byteCount + (symmetric.cipherState.hasKey ? ChaCha20Poly1305.tagByteCount : 0)
                let raw = try symmetric.decryptAndHash(take(length))
                remoteStatic = try? X25519.PublicKey(rawRepresentation: raw)
            case .ee, .es, .se, .ss:
                try mixDH(token)
            }
        }
        hashBeforeLastPayload = symmetric.handshakeHash
        let rest = Array(message[offset...])
        if symmetric.cipherState.hasKey && rest.count < ChaCha20Poly1305.tagByteCount { throw .handshakeMalformed }
        let payload = try symmetric.decryptAndHash(rest)
        messageIndex += 1
        return payload
    }

    /// `Split()`, available once the handshake is complete: (initiator → responder, responder → initiator).
    public func split() throws(SessionError) -> (initiatorToResponder: CipherState, responderToInitiator: CipherState) {
        guard isComplete else { throw .handshakeOutOfOrder }
        let (c1, c2) = try symmetric.split()
        return (c1, c2)
    }
}
