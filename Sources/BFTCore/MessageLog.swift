import BFTCrypto

/// Per-slot log entry for one sequence number inside the watermark window.
struct Slot {
    /// Accepted pre-prepare of the current view (its signed header; the body is kept by digest
    /// in `MessageLog.batches`).
    var prePrepare: PrePrepareHeader?
    var digest: Digest?
    var prepares: [ReplicaID: Prepare] = [:]
    var commits: [ReplicaID: Commit] = [:]
    var prepared = false
    var committed = false
    /// Prepared certificate of the highest view in which this slot prepared here (for VIEW-CHANGE).
    var preparedCertificate: PreparedCertificate?
    /// Committed certificate once committed here (served to lagging replicas).
    var committedCertificate: CommittedCertificate?

    mutating func resetForNewView() {
        prePrepare = nil; digest = nil
        prepares = [:]; commits = [:]
        prepared = false
        if committedCertificate == nil { committed = false }
    }
}

/// The message log (§4.2): what the replica accepted for each sequence number, the batch bodies
/// those messages name, and how far it executed. It exists so that a request is ordered by a
/// quorum certificate before it executes, and executes in sequence order.
///
/// Holds the slots between the watermarks (the low one is `CheckpointState.stableSeq`; garbage
/// collection drops everything at or below it, §4.3).
struct MessageLog {
    /// One slot per sequence number above the stable checkpoint this replica heard of.
    var slots: [SeqNum: Slot] = [:]
    /// Batch bodies by digest, for every batch a slot above the stable checkpoint names (and the
    /// null batch). Pre-prepares, certificates, VIEW-CHANGEs and NEW-VIEWs name batches by
    /// digest; a body this replica lacks is fetched (`Fetch.batches`) and checked against it.
    var batches: [Digest: [Request]] = [PrePrepare.nullDigest: []]
    /// Next sequence number the primary assigns.
    var nextSeq: SeqNum = 1
    /// The last sequence number executed (every one up to it executed, in order).
    var lastExecuted: SeqNum = 0
    /// Requests delivered so far (the index of the last delivery).
    var executedCount: UInt64 = 0

    /// Certificates consistent with the slots that hold them, executed implies committed, and
    /// bodies only for what slots name.
    func invariantViolations(config: ProtocolConfig) -> [String] {
        var v: [String] = []
        for (seq, slot) in slots {
            if let pp = slot.prePrepare {
                if pp.seq != seq { v.append("slot \(seq) holds the pre-prepare of \(pp.seq)") }
                if slot.digest != pp.digest { v.append("slot \(seq) digest differs from its pre-prepare's") }
                if pp.replica != config.primary(of: pp.view) { v.append("slot \(seq) pre-prepare not from the primary of view \(pp.view)") }
            }
            if let cert = slot.preparedCertificate {
                let h = cert.prePrepare
                let backups = Set(cert.prepares.filter { $0.view == h.view && $0.seq == seq && $0.digest == h.digest && $0.replica != h.replica }.map(\.replica))
                if h.seq != seq || backups.count < 2 * config.f { v.append("slot \(seq) prepared certificate has \(backups.count) matching prepares") }
            }
            if slot.committed != (slot.committedCertificate != nil) { v.append("slot \(seq) committed flag without a committed certificate") }
            if let cert = slot.committedCertificate {
                let h = cert.prePrepare
                let signers = Set(cert.commits.filter { $0.view == h.view && $0.seq == seq && $0.digest == h.digest }.map(\.replica))
                if h.seq != seq || signers.count < config.quorum { v.append("slot \(seq) committed certificate has \(signers.count) matching commits") }
            }
            if seq <= lastExecuted && !slot.committed { v.append("slot \(seq) executed but not committed") }
        }
        // Bodies: only for slots above the stable checkpoint (three digests per slot at most) and the null batch.
        if batches.count > 3 * slots.count + 1 { v.append("\(batches.count) batch bodies for \(slots.count) slots") }
        if batches[PrePrepare.nullDigest] == nil { v.append("the null batch body is missing") }
        return v
    }
}
