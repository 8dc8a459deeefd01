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

/// Every size a peer can influence has a name and a limit here. Decoders check these before
/// allocating. A replica's limits are not set one by one: `ProtocolConfig.limits` derives them
/// from the cluster's size budget, so what one replica may produce another accepts.
public struct MessageLimits: Sendable, Equatable {
    /// Largest client operation (request payload), in bytes.
    public var maxOperationBytes: Int = 64 * 1024
    /// Largest application result carried in a reply, in bytes.
    public var maxResultBytes: Int = 64 * 1024
    /// Most requests in one pre-prepare batch.
    public var maxRequestsPerBatch: Int = 512
    /// Most prepared certificates in one VIEW-CHANGE, and re-proposals in one NEW-VIEW (at least
    /// the watermark window: `ProtocolConfig.validate` checks it).
    public var maxPreparedCertificates: Int = 1024
    /// Most signed messages in a quorum proof (checkpoint proof, prepares, commits, view changes).
    public var maxProofMessages: Int = 256
    /// Largest checkpoint state (client table plus application snapshot), in bytes.
    public var maxStateBytes: Int = 32 * 1024 * 1024
    /// Bytes per state-transfer chunk (the last chunk may be shorter).
    public var stateChunkBytes: Int = 1024 * 1024
    /// Most committed certificates in one CATCH-UP message.
    public var maxCatchUpEntries: Int = 64

    /// Most chunks of a checkpoint state.
    public var maxStateChunks: Int { (maxStateBytes + stateChunkBytes - 1) / stateChunkBytes }

    public init() {}
    public static let `default` = MessageLimits()
}

/// Static protocol parameters, identical on every replica of a cluster.
///
/// **One budget.** The operator states three sizes — the application's largest state
/// (`maxApplicationStateBytes`), the largest operation and the largest result — and every other
/// size follows from them and from the window settings: the checkpoint state (application state
/// plus the client table with its reply cache), the decoders' limits (`limits`), the largest
/// message of each kind a correct replica produces (`maxReplicaMessageBytes`, the frame limit),
/// and the largest write-ahead-log record (`maxPersistRecordBytes`). Nothing large travels in one
/// piece: checkpoint states move in chunks of `stateChunkBytes`, and VIEW-CHANGE / NEW-VIEW carry
/// batch digests, not batches.
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
    /// Most encoded request bytes the primary puts in one batch (at least one largest request).
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

    // MARK: The size budget

    /// Largest application snapshot, in bytes: the budget every other size derives from. An
    /// application refuses (with a deterministic error reply) an operation that would grow its
    /// state past it.
    public var maxApplicationStateBytes: Int = 256 * 1024 * 1024
    /// Largest client operation, in bytes.
    public var maxOperationBytes: Int = 64 * 1024
    /// Largest application result, in bytes.
    public var maxResultBytes: Int = 64 * 1024
    /// Bytes per state-transfer chunk.
    public var stateChunkBytes: Int = 1024 * 1024
    /// Batch bytes one CATCH-UP carries beyond its first entry.
    public var maxCatchUpBytes: Int = 4 * 1024 * 1024
    /// State-transfer bytes a replica sends one peer per tick at most (token bucket of
    /// `stateTransferBurstChunks` chunks), so a replayed FETCH cannot make it stream its state
    /// without limit.
    public var stateTransferBytesPerTick: Int = 1024 * 1024
    /// Chunks one FETCH may be answered with.
    public var stateTransferBurstChunks: Int = 4
    /// Largest timestamp jump a new client session may make over the client's last executed
    /// timestamp, so a client (by bug or by a bad clock) cannot start a session at 2^64 − 1 and
    /// lock its own id out for good.
    public var maxSessionTimestampJump: UInt64 = 1 << 56
    /// Cached replies a replica resends to one client per `retransmitTicks` at most (replays of
    /// old requests are served from the reply cache without new signatures, and rate-limited).
    public var maxReplayRepliesPerInterval: Int = 128

    public init(n: Int, clusterID: UInt32 = 1, clientCount: Int) {
        self.n = n
        self.clusterID = clusterID
        self.clientCount = clientCount
    }

    // MARK: Derived sizes

    /// Largest encoded request: fields (client, timestamp, session flag, operation length),
    /// operation and signature.
    public var maxRequestBytes: Int { 4 + 8 + 1 + 4 + maxOperationBytes + signatureByteCount }
    /// Largest client-table entry in a checkpoint: id, last timestamp, and a full reply cache.
    public var maxClientRecordBytes: Int { 4 + 8 + 4 + replyCacheDepth * (8 + 4 + maxResultBytes) }
    /// Largest checkpoint state: delivery count, client table, application snapshot.
    public var maxCheckpointStateBytes: Int {
        8 + 4 + clientCount * maxClientRecordBytes + 4 + maxApplicationStateBytes
    }
    /// Largest reply a replica sends: fields, result, one entry digest per request of a batch.
    public var maxReplyBytes: Int {
        8 + 8 + 8 + 4 + 2 + 4 + maxResultBytes + 4 + maxBatchRequests * Digest.byteCount + signatureByteCount
    }
    /// Largest batch encoding (the request list of a PRE-PREPARE or a BATCH).
    public var maxBatchEncodingBytes: Int { 4 + maxBatchBytes }
    public var maxPrePrepareBytes: Int { 8 + 8 + 2 + maxBatchEncodingBytes + signatureByteCount }
    /// A correct replica's VIEW-CHANGE: checkpoint proof of 2f+1 and one prepared certificate
    /// (header and 2f prepares) per sequence number of the window.
    public var maxViewChangeBytes: Int {
        8 + 8 + Digest.byteCount + 4 + quorum * Checkpoint.encodedBytes
            + 4 + Int(watermarkWindow) * PreparedCertificate.maxEncodedBytes(prepares: 2 * f) + 2 + signatureByteCount
    }
    /// A correct primary's NEW-VIEW: 2f+1 view changes and one header per sequence number of the window.
    public var maxNewViewBytes: Int {
        8 + 4 + quorum * maxViewChangeBytes + 4 + Int(watermarkWindow) * PrePrepareHeader.encodedBytes + 2 + signatureByteCount
    }
    /// A committed certificate (header and 2f+1 commits).
    public var maxCommittedCertificateBytes: Int { PrePrepareHeader.encodedBytes + 4 + quorum * Commit.encodedBytes }
    /// A correct replica's CATCH-UP: entries up to `maxCatchUpBytes` of batches plus one, and a NEW-VIEW.
    public var maxCatchUpMessageBytes: Int {
        4 + limits.maxCatchUpEntries * maxCommittedCertificateBytes + maxCatchUpBytes + maxBatchEncodingBytes
            + 1 + maxNewViewBytes + 2 + signatureByteCount
    }
    /// A STATE-TRANSFER: proof, manifest (one digest per chunk), one chunk.
    public var maxStateTransferBytes: Int {
        8 + 4 + quorum * Checkpoint.encodedBytes + 8 + 4 + limits.maxStateChunks * Digest.byteCount
            + 4 + 4 + stateChunkBytes + 2 + signatureByteCount
    }
    /// The largest message a correct replica sends another: the frame-body limit for replica kinds.
    public var maxReplicaMessageBytes: Int {
        [maxPrePrepareBytes, maxViewChangeBytes, maxNewViewBytes, maxCatchUpMessageBytes, maxStateTransferBytes,
         maxReplyBytes].max()!
    }
    /// The largest write-ahead-log record other than a checkpoint's state (which the node writes
    /// to a file of its own): an own pre-prepare or batch, a VIEW-CHANGE, a NEW-VIEW, a certificate.
    public var maxPersistRecordBytes: Int {
        16 + [maxPrePrepareBytes, maxViewChangeBytes, maxNewViewBytes, maxCommittedCertificateBytes].max()!
    }

    /// The decoders' limits, derived from the budget.
    public var limits: MessageLimits {
        var l = MessageLimits()
        l.maxOperationBytes = maxOperationBytes
        l.maxResultBytes = maxResultBytes
        l.maxStateBytes = maxCheckpointStateBytes
        l.stateChunkBytes = stateChunkBytes
        l.maxRequestsPerBatch = max(l.maxRequestsPerBatch, maxBatchRequests)
        l.maxPreparedCertificates = max(l.maxPreparedCertificates, Int(clamping: watermarkWindow))
        l.maxProofMessages = max(l.maxProofMessages, n)
        return l
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
        if clientCount < 0 { return "client count must not be negative" }
        let decoder = MessageLimits.default
        if maxBatchRequests > decoder.maxRequestsPerBatch {
            return "maxBatchRequests \(maxBatchRequests) exceeds the decoder's requests per batch \(decoder.maxRequestsPerBatch)"
        }
        if watermarkWindow > UInt64(decoder.maxPreparedCertificates) {
            return "watermarkWindow \(watermarkWindow) exceeds the prepared certificates a VIEW-CHANGE may carry (\(decoder.maxPreparedCertificates))"
        }
        if n > decoder.maxProofMessages { return "n \(n) exceeds the signed messages a proof may carry (\(decoder.maxProofMessages))" }
        if maxOperationBytes < 1 || maxResultBytes < 1 || maxApplicationStateBytes < 0 {
            return "maxOperationBytes and maxResultBytes must be positive and maxApplicationStateBytes not negative"
        }
        if maxBatchBytes < maxRequestBytes {
            return "maxBatchBytes \(maxBatchBytes) is smaller than one largest request (maxRequestBytes \(maxRequestBytes) from maxOperationBytes \(maxOperationBytes))"
        }
        if stateChunkBytes < 4096 || stateChunkBytes > 16 * 1024 * 1024 { return "stateChunkBytes \(stateChunkBytes) must be in 4096...16777216" }
        // Sizes are Ints on the wire as u32 lengths: the checkpoint state as a whole never is one
        // blob (chunks are), but its parts are.
        if maxApplicationStateBytes > Int(UInt32.max) - 16 {
            return "maxApplicationStateBytes \(maxApplicationStateBytes) exceeds the largest snapshot blob (\(Int(UInt32.max) - 16))"
        }
        if maxCheckpointStateBytes / stateChunkBytes > 1 << 20 {
            return "maxCheckpointStateBytes \(maxCheckpointStateBytes) needs more than 2^20 chunks of stateChunkBytes \(stateChunkBytes)"
        }
        if maxReplicaMessageBytes > Int(UInt32.max) {
            return "the largest replica message (\(maxReplicaMessageBytes) bytes) exceeds a frame's u32 length"
        }
        if maxCatchUpBytes < maxBatchEncodingBytes { return "maxCatchUpBytes \(maxCatchUpBytes) is smaller than one batch (\(maxBatchEncodingBytes))" }
        if stateTransferBurstChunks < 1 || stateTransferBytesPerTick < 1 { return "state transfer rate limits must be positive" }
        return nil
    }
}
