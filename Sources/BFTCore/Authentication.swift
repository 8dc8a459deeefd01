import BFTCrypto
import Synchronization

/// Produces signatures for one principal. The node uses Ed25519; the simulator may use a stand-in.
public protocol MessageSigner: Sendable {
    func sign(_ bytes: [UInt8]) -> [UInt8]
}

/// Checks a signature against the key of a principal. Unknown principals are never valid.
public protocol SignatureChecker: Sendable {
    func isValid(signature: [UInt8], for bytes: [UInt8], by principal: Principal) -> Bool
}

/// Ed25519 signing with a cached key object (building the key per call doubles the cost).
public struct Ed25519MessageSigner: MessageSigner {
    public let key: Ed25519PrivateKey
    public init(key: Ed25519PrivateKey) { self.key = key }
    public func sign(_ bytes: [UInt8]) -> [UInt8] { key.signature(for: bytes) }
}

/// Public keys of every replica and client in the configuration.
public struct Ed25519Keyring: SignatureChecker {
    public let replicaKeys: [Ed25519PublicKey]
    public let clientKeys: [ClientID: Ed25519PublicKey]

    public init(replicaKeys: [Ed25519PublicKey], clientKeys: [ClientID: Ed25519PublicKey]) {
        self.replicaKeys = replicaKeys; self.clientKeys = clientKeys
    }

    public func isValid(signature: [UInt8], for bytes: [UInt8], by principal: Principal) -> Bool {
        let key: Ed25519PublicKey?
        switch principal {
        case .replica(let r): key = (r >= 0 && r < replicaKeys.count) ? replicaKeys[r] : nil
        case .client(let c): key = clientKeys[c]
        }
        guard let key else { return false }
        return key.isValidSignature(signature, for: bytes)
    }
}

/// A fast deterministic stand-in for signatures, for the simulator and unit tests only: a
/// principal's signature is SHA-256(secret ‖ bytes) twice over. It is unforgeable *inside a
/// simulation* because Byzantine wrappers are only ever handed their own signer, never the
/// table of secrets. It is not a public-key scheme and must never be used by a real node.
public struct StandInSignatures: SignatureChecker {
    let secrets: [Principal: [UInt8]]

    /// Secrets derived from `seed` for `replicas` replicas and `clients` clients.
    public init(seed: UInt64, replicas: Int, clients: Int) {
        var s: [Principal: [UInt8]] = [:]
        func secret(_ tag: UInt8, _ i: UInt64) -> [UInt8] {
            var w = WireWriter(); w.u64(seed); w.u8(tag); w.u64(i)
            return SHA256.hash(w.bytes).bytes
        }
        for r in 0..<replicas { s[.replica(r)] = secret(1, UInt64(r)) }
        for c in 0..<clients { s[.client(ClientID(c))] = secret(2, UInt64(c)) }
        secrets = s
    }

    public func signer(for principal: Principal) -> any MessageSigner {
        StandInSigner(secret: secrets[principal] ?? [])
    }

    public func isValid(signature: [UInt8], for bytes: [UInt8], by principal: Principal) -> Bool {
        guard let secret = secrets[principal], signature.count == signatureByteCount else { return false }
        return StandInSigner(secret: secret).sign(bytes) == signature
    }
}

struct StandInSigner: MessageSigner {
    let secret: [UInt8]
    func sign(_ bytes: [UInt8]) -> [UInt8] {
        let a = SHA256.hash(parts: [secret, bytes]).bytes
        let b = SHA256.hash(parts: [a, secret]).bytes
        return a + b
    }
}

/// A message whose every signature (outer and nested) has been checked against the configured
/// keys. Only `MessageVerifier` makes these, so the protocol core can take them as proven
/// authentic and check only the protocol rules.
public struct VerifiedMessage: Sendable {
    public let message: Message
    /// False for a request accepted on its client's own authenticated session without a
    /// signature check: the core then neither proposes it nor suspects the primary over it until
    /// a signature-checked copy arrives (the client's retransmission is checked).
    public let signatureChecked: Bool
    init(_ message: Message, signatureChecked: Bool = true) { self.message = message; self.signatureChecked = signatureChecked }
}

/// Why a message was refused at the edge. Counted by reason, never fatal.
public enum VerificationFailure: Error, Equatable, CustomStringConvertible {
    case badSignature(MessageKind)
    case badNestedSignature(MessageKind)
    case unknownPrincipal(Principal)

    public var description: String {
        switch self {
        case .badSignature(let k): return "bad signature on \(k)"
        case .badNestedSignature(let k): return "bad nested signature in \(k)"
        case .unknownPrincipal(let p): return "unknown principal \(p)"
        }
    }

    public var dropReason: DropReason {
        switch self {
        case .badSignature: return .badSignature
        case .badNestedSignature: return .badNestedSignature
        case .unknownPrincipal: return .unknownPrincipal
        }
    }

    public var reason: String { dropReason.rawValue }
}

/// Verifies signatures once, at the edge. Thread-safe: the node calls it from a pool of threads
/// in parallel. Client requests that were already verified (received directly from the client
/// and then again inside a pre-prepare) are recognised by their digest in a bounded cache, so
/// each replica verifies each request once.
public final class MessageVerifier: Sendable {
    public let checker: any SignatureChecker
    public let clusterID: UInt32
    public let replicaCount: Int
    public let clientCount: Int
    /// Most request digests remembered as verified.
    public let verifiedRequestCacheLimit: Int
    private let cache: Mutex<DigestCache>
    /// Requests received over their own client's session (see `acceptFromOwnSession`).
    private let sessionRequests: Mutex<DigestCache>
    /// Reply batch signatures already verified, by digest of (signed bytes, signature). Replies
    /// are signed once per executed batch (`Reply.entries`), so a client with several requests
    /// in one batch gets the same signature from a replica several times: it is checked once.
    private let replyBatches: Mutex<DigestCache>
    /// Replica messages already verified, by digest of their kind and full encoding (nested
    /// messages and signatures included). A message resent byte for byte (a retransmission, or
    /// a Byzantine replica replaying old traffic) then costs a hash instead of signature checks,
    /// and the core drops it as stale or duplicate.
    private let verifiedMessages: Mutex<DigestCache>
    /// Most replica messages remembered as verified.
    public static let verifiedMessageCacheLimit = 8192

    public init(checker: any SignatureChecker, clusterID: UInt32, replicaCount: Int, clientCount: Int, verifiedRequestCacheLimit: Int = 65_536) {
        self.checker = checker
        self.clusterID = clusterID
        self.replicaCount = replicaCount
        self.clientCount = clientCount
        self.verifiedRequestCacheLimit = verifiedRequestCacheLimit
        self.cache = Mutex(DigestCache(limit: verifiedRequestCacheLimit))
        self.sessionRequests = Mutex(DigestCache(limit: verifiedRequestCacheLimit))
        self.replyBatches = Mutex(DigestCache(limit: 4096))
        self.verifiedMessages = Mutex(DigestCache(limit: MessageVerifier.verifiedMessageCacheLimit))
    }

    public func verify(_ message: Message) -> Result<VerifiedMessage, VerificationFailure> {
        if let p = unknown(message.signer) { return .failure(.unknownPrincipal(p)) }
        switch message {
        case .request(let r):
            return verifyRequest(r, acceptSession: false) ? .success(VerifiedMessage(message)) : .failure(.badSignature(.request))
        case .reply(let r):
            return r.isCoveredBySignature && verifyReplyBatch(r) ? .success(VerifiedMessage(message)) : .failure(.badSignature(.reply))
        default:
            let key = SHA256.hash(parts: [[message.kind.rawValue], message.encoded()])
            if verifiedMessages.withLock({ $0.contains(key) }) { return .success(VerifiedMessage(message)) }
            guard check(message.payload) else { return .failure(.badSignature(message.kind)) }
            guard nestedValid(message) else { return .failure(.badNestedSignature(message.kind)) }
            verifiedMessages.withLock { $0.insert(key) }
            return .success(VerifiedMessage(message))
        }
    }

    /// A request that arrived over its own client's authenticated session: the session proves
    /// its sender, so its signature is not checked here. Its digest is remembered, so the same
    /// request (byte for byte, signature included) inside a pre-prepare needs no check either;
    /// a replica that did not receive it this way checks its signature there (`verifyRequest`).
    ///
    /// Returns nil for a request already seen this way (a client retransmits only when it got no
    /// reply in time): the caller then checks its signature with `verify`, so a client that signs
    /// garbage is caught on its first retransmission and never makes a backup suspect the primary.
    public func acceptFromOwnSession(_ r: Request) -> VerifiedMessage? {
        let d = r.digest
        if cache.withLock({ $0.contains(d) }) { return VerifiedMessage(.request(r)) }
        let first = sessionRequests.withLock { c -> Bool in
            if c.contains(d) { return false }
            c.insert(d)
            return true
        }
        return first ? VerifiedMessage(.request(r), signatureChecked: false) : nil
    }

    /// For messages this replica created itself (trusted by construction).
    public func trusted(_ message: Message) -> VerifiedMessage { VerifiedMessage(message) }

    private func unknown(_ p: Principal) -> Principal? {
        switch p {
        case .replica(let r): return (r >= 0 && r < replicaCount) ? nil : p
        case .client(let c): return Int(c) < clientCount ? nil : p
        }
    }

    private func check(_ m: any SignedMessage) -> Bool {
        if unknown(m.signer) != nil || m.signature.count != signatureByteCount { return false }
        return checker.isValid(signature: m.signature, for: m.signingBytes(clusterID: clusterID), by: m.signer)
    }

    /// `acceptSession`: a request this replica received byte for byte over its client's own
    /// session counts as authentic (inside a pre-prepare); a top-level request is checked.
    private func verifyRequest(_ r: Request, acceptSession: Bool = true) -> Bool {
        let d = r.digest
        if cache.withLock({ $0.contains(d) }) || (acceptSession && sessionRequests.withLock({ $0.contains(d) })) { return true }
        guard check(r) else { return false }
        cache.withLock { $0.insert(d) }
        return true
    }

    private func verifyReplyBatch(_ r: Reply) -> Bool {
        guard unknown(r.signer) == nil, r.signature.count == signatureByteCount else { return false }
        let signed = r.signingBytes(clusterID: clusterID)
        let key = SHA256.hash(parts: [signed, r.signature])
        if replyBatches.withLock({ $0.contains(key) }) { return true }
        guard checker.isValid(signature: r.signature, for: signed, by: r.signer) else { return false }
        replyBatches.withLock { $0.insert(key) }
        return true
    }

    private func viewChangeValid(_ vc: ViewChange) -> Bool {
        check(vc) && vc.checkpointProof.allSatisfy(check)
            && vc.prepared.allSatisfy { check($0.prePrepare) && $0.prepares.allSatisfy(check) }
    }

    private func newViewNestedValid(_ nv: NewView) -> Bool {
        nv.viewChanges.allSatisfy(viewChangeValid) && nv.prePrepares.allSatisfy(check)
    }

    private func nestedValid(_ message: Message) -> Bool {
        switch message {
        case .prePrepare(let pp): return pp.requests.allSatisfy { verifyRequest($0) }
        case .batch(let b): return b.requests.allSatisfy { verifyRequest($0) }
        case .viewChange(let vc):
            return vc.checkpointProof.allSatisfy(check)
                && vc.prepared.allSatisfy { check($0.prePrepare) && $0.prepares.allSatisfy(check) }
        case .newView(let nv): return newViewNestedValid(nv)
        case .catchUp(let cu):
            if let nv = cu.newView, !(check(nv) && newViewNestedValid(nv)) { return false }
            return cu.entries.allSatisfy {
                check($0.certificate.prePrepare) && $0.certificate.commits.allSatisfy(check) && $0.requests.allSatisfy { verifyRequest($0) }
            }
        case .stateTransfer(let st): return st.proof.allSatisfy(check)
        default: return true
        }
    }
}

/// Bounded FIFO set of digests.
struct DigestCache: ~Copyable {
    let limit: Int
    var set: Set<Digest> = []
    var order: [Digest] = []
    var head = 0

    init(limit: Int) { self.limit = max(limit, 1) }

    func contains(_ d: Digest) -> Bool { set.contains(d) }

    mutating func insert(_ d: Digest) {
        guard set.insert(d).inserted else { return }
        order.append(d)
        if set.count > limit {
            set.remove(order[head])
            head += 1
            if head > limit { order.removeFirst(head); head = 0 }
        }
    }
}
