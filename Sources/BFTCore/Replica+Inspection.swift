/// Read-only views of a replica's internal tables, for checkers (the simulator bounds them per
/// seed) and diagnostics. None of these change the replica.
extension Replica {
    /// Sequence slots held (pre-prepares, prepares, commits, certificates) above the low watermark.
    public var slotCount: Int { log.slots.count }
    /// Where the replica stands and which slots it holds, for a checker's failure message.
    public var slotSummary: String {
        let seqs = log.slots.keys.sorted()
        let range = seqs.isEmpty ? "none" : "\(seqs.first!)...\(seqs.last!)"
        return "view \(view) (\(phase)), stable checkpoint \(stableSeq), last executed \(lastExecuted), slots \(range)"
    }
    /// Batch bodies kept by digest (including the null batch).
    public var batchCount: Int { log.batches.count }
    /// Sequence numbers for which CHECKPOINT votes are held.
    public var checkpointVoteCount: Int { checkpoints.votes.count }
    /// Own checkpoints not yet stable (each holds a state copy).
    public var ownCheckpointCount: Int { checkpoints.own.count }
    /// VIEW-CHANGE messages held for the view change in progress.
    public var viewChangeMessageCount: Int { viewChange.received.count }
    /// The 2f+1 CHECKPOINTs proving the stable checkpoint.
    public var stableCheckpointProof: [Checkpoint] { checkpoints.stableProof }
    /// The stable checkpoint's state and manifest, if this replica holds them.
    public var stableCheckpointState: (manifest: StateManifest, state: [UInt8])? {
        guard let m = checkpoints.stableManifest, let s = checkpoints.stableState else { return nil }
        return (m, s)
    }
    /// Entries across every client's reply cache.
    public var cachedReplyCount: Int { clients.records.values.reduce(0) { $0 + $1.replies.count } }
}
