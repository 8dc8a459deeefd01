/// The replica's own invariants, checked after every step by `ReplicaDriver` (in debug builds
/// and in every simulator step). A violation is a bug in this code, never something a peer can
/// cause: peers' messages are refused before they change the state.
extension Replica {
    /// Every invariant that does not hold, in words (empty when all hold).
    public func invariantViolations() -> [String] {
        var v: [String] = []
        // Checkpoints and watermarks (§4.3).
        if stableState != nil && stableSeq > lastExecuted {
            v.append("stable checkpoint \(stableSeq) with its state, but last executed is \(lastExecuted)")
        }
        if stableSeq % config.checkpointInterval != 0 { v.append("stable checkpoint \(stableSeq) is not a checkpoint") }
        if nextSeq <= stableSeq { v.append("next sequence number \(nextSeq) at or below the stable checkpoint \(stableSeq)") }
        // The message log: slots inside the watermarks, consistent with their certificates.
        for (seq, slot) in slots {
            // Both watermarks hold after a restart too: a stable checkpoint adopted without its
            // state is persisted (`PersistRecord.stableCheckpoint`), so the votes a replica signed
            // above its old window come back inside the window it had moved to.
            if seq <= stableSeq {
                v.append("slot \(seq) at or below the stable checkpoint \(stableSeq)")
            }
            if seq > highWatermark {
                v.append("slot \(seq) above the high watermark \(highWatermark)")
            }
            if let pp = slot.prePrepare {
                if pp.seq != seq { v.append("slot \(seq) holds the pre-prepare of \(pp.seq)") }
                if slot.digest != pp.digest { v.append("slot \(seq) digest differs from its pre-prepare's") }
                if pp.replica != config.primary(of: pp.view) { v.append("slot \(seq) pre-prepare not from the primary of view \(pp.view)") }
            }
            if let cert = slot.preparedCertificate {
                let h = cert.prePrepare
                let backups = Set(cert.prepares.filter { $0.view == h.view && $0.seq == seq && $0.digest == h.digest && $0.replica != h.replica }.map(\.replica))
                if h.seq != seq || backups.count < 2 * f { v.append("slot \(seq) prepared certificate has \(backups.count) matching prepares") }
            }
            if slot.committed != (slot.committedCertificate != nil) { v.append("slot \(seq) committed flag without a committed certificate") }
            if let cert = slot.committedCertificate {
                let h = cert.prePrepare
                let signers = Set(cert.commits.filter { $0.view == h.view && $0.seq == seq && $0.digest == h.digest }.map(\.replica))
                if h.seq != seq || signers.count < config.quorum { v.append("slot \(seq) committed certificate has \(signers.count) matching commits") }
            }
            if seq <= lastExecuted && !slot.committed { v.append("slot \(seq) executed but not committed") }
        }
        // Execution (§4.2): in order, and nothing executed twice — each client's cached replies
        // are in increasing timestamp order, none past what it last executed.
        for (c, record) in clients {
            if record.replies.count > config.replyCacheDepth { v.append("client \(c) caches \(record.replies.count) replies") }
            var last: UInt64 = 0
            for reply in record.replies {
                if reply.timestamp <= last || reply.timestamp > record.lastTimestamp {
                    v.append("client \(c) reply cache out of order at timestamp \(reply.timestamp)")
                    break
                }
                last = reply.timestamp
            }
            if let pending = pending.byClient[c], pending.count > config.maxPendingPerClient {
                v.append("client \(c) has \(pending.count) pending requests")
            }
        }
        // Bodies: only for slots above the stable checkpoint (three digests per slot at most) and the null batch.
        if batches.count > 3 * slots.count + 1 { v.append("\(batches.count) batch bodies for \(slots.count) slots") }
        if batches[PrePrepare.nullDigest] == nil { v.append("the null batch body is missing") }
        // View change (§4.4): our own VIEW-CHANGE is for the view we are moving to.
        if !active, let mine = viewChanges[id], mine.newView > view { v.append("own VIEW-CHANGE for \(mine.newView) above view \(view)") }
        return v
    }
}
