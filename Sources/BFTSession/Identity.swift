import BFTCrypto

/// Who is at the other end of a session: a replica or a client of the cluster,
/// as listed in `cluster.json`. (BFTSession does not depend on BFTCore, so the
/// transport maps this to `BFTCore.Principal`.)
public enum SessionPrincipal: Hashable, Sendable, CustomStringConvertible {
    case replica(UInt32)
    case client(UInt32)

    /// Wire encoding: kind (1 byte: 0x01 replica, 0x02 client) ‖ id (u32 big-endian).
    public static let encodedByteCount = 5

    public var encoded: [UInt8] {
        let (kind, id): (UInt8, UInt32) = switch self {
        case .replica(let r): (0x01, r)
        case .client(let c): (0x02, c)
        }
        return [kind] + bigEndianBytes(id)
    }

    public init?(encoded bytes: ArraySlice<UInt8>) {
        guard bytes.count == SessionPrincipal.encodedByteCount else { return nil }
        let b = Array(bytes)
        let id = UInt32(b[1]) << 24 | UInt32(b[2]) << 16 | UInt32(b[3]) << 8 | UInt32(b[4])
        switch b[0] {
        case 0x01: self = .replica(id)
        case 0x02: self = .client(id)
        default: return nil
        }
    }

    public var description: String {
        switch self {
        case .replica(let r): return "replica-\(r)"
        case .client(let c): return "client-\(c)"
        }
    }
}

func bigEndianBytes(_ v: UInt32) -> [UInt8] {
    [UInt8(v >> 24), UInt8(truncatingIfNeeded: v >> 16), UInt8(truncatingIfNeeded: v >> 8), UInt8(truncatingIfNeeded: v)]
}

func bigEndianBytes(_ v: UInt64) -> [UInt8] {
    (0..<8).map { UInt8(truncatingIfNeeded: v >> (56 - 8 * UInt64($0))) }
}

/// How a Noise session is bound to an Ed25519 identity from `cluster.json`.
///
/// Noise static keys are X25519 and each process makes a fresh one, so they
/// prove nothing by themselves. The binding:
///
/// - prologue = `"swift-pbft session v1"` ‖ cluster id (u32 big-endian). Peers of
///   another protocol version or cluster compute a different `h` and the first
///   encrypted handshake field fails to decrypt.
/// - the responder's message-2 payload and the initiator's message-3 payload
///   are `principal kind ‖ id ‖ Ed25519 signature` (1 + 4 + 64 bytes), the
///   signature covering
///   `"swift-pbft session v1 identity"` ‖ cluster id (u32 BE) ‖ `h` at the point
///   the payload is encrypted ‖ the signer's Noise static public key.
/// - the receiver looks the principal's Ed25519 key up in the keyring (unknown →
///   `unknownPrincipal`), verifies the signature with the static key it just
///   received in the same message (`identitySignatureInvalid`), and only then
///   treats the session as authenticated. `h` commits to both ephemeral keys,
///   so a signature cannot be replayed into another handshake; the static key
///   in the signed message ties the long-term identity to the key that did the
///   `es`/`se` DH, so a relay that substitutes its own static key fails.
public enum IdentityBinding {
    public static let prologueLabel = Array("swift-pbft session v1".utf8)
    public static let signatureLabel = Array("swift-pbft session v1 identity".utf8)
    /// principal (5) ‖ signature (64).
    public static let proofByteCount = SessionPrincipal.encodedByteCount + Ed25519PublicKey.signatureByteCount

    public static func prologue(clusterID: UInt32) -> [UInt8] {
        prologueLabel + bigEndianBytes(clusterID)
    }

    public static func signedMessage(clusterID: UInt32, handshakeHash: [UInt8], signerStaticKey: X25519.PublicKey) -> [UInt8] {
        signatureLabel + bigEndianBytes(clusterID) + handshakeHash + signerStaticKey.rawRepresentation
    }

    /// The payload a side sends to prove who it is.
    public static func makeProof(principal: SessionPrincipal, signingKey: Ed25519PrivateKey, clusterID: UInt32,
                                 handshakeHash: [UInt8], staticKey: X25519.PublicKey) -> [UInt8] {
        let message = signedMessage(clusterID: clusterID, handshakeHash: handshakeHash, signerStaticKey: staticKey)
        return principal.encoded + signingKey.signature(for: message)
    }

    /// Checks a received proof; returns the proven principal.
    public static func verifyProof(_ payload: [UInt8], clusterID: UInt32, handshakeHash: [UInt8],
                                   peerStaticKey: X25519.PublicKey?,
                                   keyring: (SessionPrincipal) -> Ed25519PublicKey?) throws(SessionError) -> SessionPrincipal {
        guard payload.count == proofByteCount,
              let principal = SessionPrincipal(encoded: payload[0..<SessionPrincipal.encodedByteCount]) else {
            throw .malformedIdentity
        }
        guard let peerStaticKey else { throw .handshakeOutOfOrder }
        guard let key = keyring(principal) else { throw .unknownPrincipal }
        let signature = Array(payload[SessionPrincipal.encodedByteCount...])
        let message = signedMessage(clusterID: clusterID, handshakeHash: handshakeHash, signerStaticKey: peerStaticKey)
        guard key.isValidSignature(signature, for: message) else { throw .identitySignatureInvalid }
        return principal
    }
}
