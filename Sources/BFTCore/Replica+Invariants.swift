/// The replica's own invariants, checked after every step by `ReplicaDriver` (in debug builds
/// and in every simulator step). A violation is a bug in this code, never something a peer can
/// cause: peers' messages are refused before they change the state.
///
/// Each part of the state checks what concerns it alone (`ClientTable`, `MessageLog`,
/// `CheckpointState`, `ViewChangeState`); the checks here relate the parts to each other.
extension Replica {
    /// Every invariant that does not hold, in words (empty when all hold).
    public func invariantViolations() -> [String] {
        var v: [String] = []
        // Checkpoints and watermarks (§4.3).
        if checkpoints.stableState != nil && stableSeq > lastExecuted {
            v.append("stable checkpoint \(stableSeq) with its state, but last executed is \(lastExecuted)")
        }
        v += checkpoints.invariantViolations(config: config)
        if log.nextSeq <= stableSeq { v.append("next sequence number \(log.nextSeq) at or below the stable checkpoint \(stableSeq)") }
        // The message log: slots inside the watermarks, consistent with their certificates.
        for seq in log.slots.keys {
            // Both watermarks hold after a restart too: a stable checkpoint adopted without its
            // state is persisted (`PersistRecord.stableCheckpoint`), so the votes a replica signed
            // above its old window come back inside the window it had moved to.
            if seq <= stableSeq {
                v.append("slot \(seq) at or below the stable checkpoint \(stableSeq)")
            }
            if seq > highWatermark {
                v.append("slot \(seq) above the high watermark \(highWatermark)")
            }
        }
        v += log.invariantViolations(config: config)
        // Execution (§4.2): in order, and nothing executed twice.
        v += clients.invariantViolations(config: config)
        // View change (§4.4).
        v += viewChange.invariantViolations(replica: id)
        return v
    }
}
