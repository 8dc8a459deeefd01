import BFTCrypto

/// Index of a replica in the configuration, `0 ..< n`. The primary of view `v` is `v mod n`.
public typealias ReplicaID = Int
/// Identifier of a configured client. Only clients listed in the configuration are accepted.
public typealias ClientID = UInt32
/// Sequence number assigned by the primary to a batch (PBFT's `n`).
public typealias SeqNum = UInt64
/// View number (PBFT's `v`).
public typealias ViewNum = UInt64

/// Who signed a message: the verifier looks the key up by principal.
public enum Principal: Hashable, Sendable, CustomStringConvertible {
    case replica(ReplicaID)
    case client(ClientID)

    public var description: String {
        switch self {
        case .replica(let r): return "replica-\(r)"
        case .client(let c): return "client-\(c)"
        }
    }
}

/// Every size a peer can influence has a name and a limit here. Decoders check these before allocating.
public struct MessageLimits: Sendable, Equatable {
    /// Largest client operation (request payload), in bytes.
    public var maxOperationBytes: Int = 64 * 1024
    /// Largest application result carried in a reply, in bytes.
    public var maxResultBytes: Int = 64 * 1024
    /// Most requests in one pre-prepare batch.
    public var maxRequestsPerBatch: Int = 512
    /// Most prepared certificates in one VIEW-CHANGE (bounded by the watermark window anyway).
    public var maxPreparedCertificates: Int = 1024
    /// Most signed messages in a quorum proof (checkpoint proof, prepares, commits, view changes).
    public var maxProofMessages: Int = 256
    /// Largest checkpoint state (application snapshot plus client table) moved by state transfer, in bytes.
    public var maxStateBytes: Int = 32 * 1024 * 1024
    /// Most committed certificates in one CATCH-UP message.
    public var maxCatchUpEntries: Int = 64

    public init() {}
    public static let `default` = MessageLimits()
}

/// Static protocol parameters, identical on every replica of a cluster.
public struct ProtocolConfig: Sendable, Equatable {
    /// Number of replicas, `n = 3f + 1`.
    public var n: Int
    /// Tolerated faulty replicas.
    public var f: Int { (n - 1) / 3 }
    /// Quorum size for prepared/committed certificates, stable checkpoints and new views: `2f + 1`.
    public var quorum: Int { 2 * f + 1 }
    /// Matching replies a client needs: `f + 1`.
    public var replyQuorum: Int { f + 1 }
    /// Cluster identifier, mixed into every signature so messages cannot be replayed across clusters.
    public var clusterID: UInt32
    /// Clients allowed to submit requests.
    public var clientCount: Int
    /// A checkpoint is taken every `checkpointInterval` sequence numbers (PBFT's K).
    public var checkpointInterval: UInt64 = 64
    /// Width of the watermark window: sequence numbers in `(h, h + watermarkWindow]` are accepted (PBFT's L).
    public var watermarkWindow: UInt64 = 128
    /// Most batches the primary keeps in flight (proposed but not executed): pipelining depth.
    public var maxInFlightBatches: Int = 4
    /// Most requests the primary puts in one batch.
    public var maxBatchRequests: Int = 256
    /// Most request bytes the primary puts in one batch.
    public var maxBatchBytes: Int = 256 * 1024
    /// Requests a replica holds per client while waiting to be ordered (the client's window).
    public var maxPendingPerClient: Int = 64
    /// Replies a replica keeps per client for retransmitted requests (exactly-once with several outstanding).
    public var replyCacheDepth: Int = 64
    /// Ticks a backup waits for a pending request to execute before suspecting the primary.
    public var viewChangeTimeoutTicks: UInt64 = 200
    /// Upper bound of the view-change timeout after repeated doubling.
    public var maxViewChangeTimeoutTicks: UInt64 = 3200
    /// Ticks between retransmissions of our own votes for an unfinished slot or view change.
    public var retransmitTicks: UInt64 = 50
    /// Ticks between STATUS heartbeats.
    public var statusIntervalTicks: UInt64 = 50
    /// Minimum ticks between two FETCH requests we send, and between two answers to one peer.
    public var fetchCooldownTicks: UInt64 = 20
    public var limits: MessageLimits = .default

    public init(n: Int, clusterID: UInt32 = 1, clientCount: Int) {
        self.n = n
        self.clusterID = clusterID
        self.clientCount = clientCount
    }

    public func primary(of view: ViewNum) -> ReplicaID { Int(view % UInt64(n)) }

    /// Checks the invariants the protocol relies on; returns a one-line reason when violated.
    public func validate() -> String? {
        if n < 4 || (n - 1) % 3 != 0 { return "n must be 3f+1 with f >= 1 (got \(n))" }
        if checkpointInterval == 0 { return "checkpoint interval must be positive" }
        if watermarkWindow < checkpointInterval * 2 || watermarkWindow % checkpointInterval != 0 {
            return "watermark window must be a multiple of the checkpoint interval and at least twice it"
        }
        if maxInFlightBatches < 1 || maxBatchRequests < 1 { return "batching limits must be positive" }
        if maxBatchRequests > limits.maxRequestsPerBatch { return "max batch requests exceeds the decoder limit" }
        if clientCount < 0 { return "client count must not be negative" }
        return nil
    }
}
