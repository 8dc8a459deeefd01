import BFTCrypto

/// A checkpoint state arriving in chunks, each checked against the certified manifest.
struct StateAssembly {
    let seq: SeqNum
    let digest: Digest
    let proof: [Checkpoint]
    let manifest: StateManifest
    var chunks: [Int: [UInt8]] = [:]
    /// Chunks asked for so far (exclusive): the next FETCH goes out when all below it arrived.
    var requestedUpTo = 0

    init(seq: SeqNum, digest: Digest, proof: [Checkpoint], manifest: StateManifest) {
        self.seq = seq; self.digest = digest; self.proof = proof; self.manifest = manifest
    }

    var firstMissing: Int {
        var i = 0
        while chunks[i] != nil { i += 1 }
        return i
    }

    var isComplete: Bool { chunks.count == manifest.chunkDigests.count }
}

/// Checkpoints (§4.3) and the state transfer that brings a lagging replica to one. It exists so
/// the log can be garbage-collected: once 2f+1 replicas signed the same state digest for a
/// sequence number, that checkpoint is stable, its proof replaces the log below it, and a
/// replica that lacks the state fetches it from a peer, in chunks, against the proof.
struct CheckpointState {
    /// The stable checkpoint: the low watermark.
    var stableSeq: SeqNum = 0
    var stableDigest: Digest = .zero
    /// The 2f+1 CHECKPOINTs that make `stableSeq` stable.
    var stableProof: [Checkpoint] = []
    /// Checkpoint state at `stableSeq`, if this replica has it (served to others by state transfer).
    var stableState: [UInt8]?
    var stableManifest: StateManifest?
    /// Our signature over (stableSeq, manifest digest) for STATE-TRANSFER chunks: made once per checkpoint.
    var stableTransferSignature: [UInt8]?
    /// Checkpoints this replica took above the stable one, with their state, until one is stable.
    var own: [SeqNum: (digest: Digest, manifest: StateManifest, state: [UInt8])] = [:]
    /// CHECKPOINT messages above the stable checkpoint, per sequence number and signer.
    var votes: [SeqNum: [ReplicaID: Checkpoint]] = [:]

    // MARK: State transfer and catch-up
    /// A checkpoint state being received in chunks.
    var incomingState: StateAssembly?
    /// Chunk tokens per peer we send state to (a token bucket in bytes).
    var transferCredit: [ReplicaID: (bytes: Int, at: UInt64)] = [:]
    /// The latest STATUS of each peer: FETCH for state is answered only when it shows the peer behind.
    var peerStatus: [ReplicaID: Status] = [:]
    /// When this replica last sent a FETCH (the fetch cooldown).
    var lastFetchSent: UInt64?
    /// Per peer: when this replica last answered its FETCH (the answer cooldown).
    var lastFetchAnswered: [ReplicaID: UInt64] = [:]

    /// The stable checkpoint is at a checkpoint interval.
    func invariantViolations(config: ProtocolConfig) -> [String] {
        var v: [String] = []
        if stableSeq % config.checkpointInterval != 0 { v.append("stable checkpoint \(stableSeq) is not a checkpoint") }
        // §4.3: a checkpoint is stable only with 2f+1 matching CHECKPOINTs from distinct replicas.
        if stableSeq > 0 {
            let signers = Set(stableProof.filter { $0.seq == stableSeq && $0.digest == stableDigest }.map(\.replica))
            if signers.count < config.quorum { v.append("stable checkpoint \(stableSeq) proved by \(signers.count) matching CHECKPOINTs") }
        }
        return v
    }
}
