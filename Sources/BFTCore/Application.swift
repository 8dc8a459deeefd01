import BFTCrypto

/// The replicated application: the local hook that receives committed requests in sequence
/// order. It must be deterministic — every correct replica executes the same requests in the
/// same order and must reach the same state — because checkpoints compare state digests.
public protocol ReplicatedApplication: AnyObject {
    /// Executes one committed request and returns the reply sent to the client.
    func execute(_ operation: [UInt8], context: ExecutionContext) -> [UInt8]
    /// The application's state, for checkpoints and state transfer. Equal states must give equal bytes.
    func snapshot() -> [UInt8]
    /// Replaces the state with a snapshot taken by `snapshot()` on another replica.
    func restore(from snapshot: [UInt8]) throws
}

/// Optional: an application that wants to know about proven misbehaviour. The replica calls it
/// once per proof, when it holds two validly signed, conflicting messages from one replica for
/// the same view and sequence number — evidence a third party can check with the public keys.
public protocol MisbehaviourObserver: AnyObject {
    func observed(equivocation proof: EquivocationProof)
}

/// What the application learns about a request it executes.
public struct ExecutionContext: Sendable {
    public let client: ClientID
    public let timestamp: UInt64
    public let seq: SeqNum
    /// 1-based position of the request in the total order.
    public let index: UInt64

    /// Public so applications can be tested (and fuzzed) outside a replica; a replica makes
    /// its own for every delivery.
    public init(client: ClientID, timestamp: UInt64, seq: SeqNum, index: UInt64) {
        self.client = client; self.timestamp = timestamp; self.seq = seq; self.index = index
    }
}

/// A request delivered to the application, in delivery order.
public struct Delivery: Sendable, Equatable {
    public let index: UInt64
    public let seq: SeqNum
    public let view: ViewNum
    public let client: ClientID
    public let timestamp: UInt64
    /// SHA-256 of the signed request.
    public let digest: Digest
    public let result: [UInt8]
}

/// A trivial deterministic application used in tests and the simulator: it appends every
/// operation to a running hash and echoes the operation's length and the hash.
public final class HashChainApplication: ReplicatedApplication {
    public private(set) var chain: Digest = .zero
    public private(set) var executed: UInt64 = 0

    public init() {}

    public func execute(_ operation: [UInt8], context: ExecutionContext) -> [UInt8] {
        chain = SHA256.hash(parts: [chain.bytes, operation])
        executed += 1
        return Array(chain.bytes.prefix(8))
    }

    public func snapshot() -> [UInt8] {
        var w = WireWriter()
        w.digest(chain); w.u64(executed)
        return w.bytes
    }

    public func restore(from snapshot: [UInt8]) throws {
        var r = WireReader(snapshot)
        chain = try r.digest()
        executed = try r.u64()
        try r.finish()
    }
}
