import BFTCrypto

/// What a replica must remember across a crash so that it never contradicts what it signed and
/// never forgets what it prepared or committed (§4.1 assumes stable storage for this).
///
/// The core emits these in `ReplicaOutput.persist`; the node writes them to its write-ahead log
/// and syncs before sending the step's messages. `Replica.recover(from:)` rebuilds the replica
/// from the records that follow the last `.checkpoint`.
public enum PersistRecord: Sendable, Equatable {
    /// A stable checkpoint whose state this replica holds: the base of recovery (compaction point).
    case checkpoint(seq: SeqNum, digest: Digest, proof: [Checkpoint], state: [UInt8])
    /// The view this replica is in, and whether it is active in it or changing to it.
    case view(ViewNum, active: Bool)
    /// A protocol message this replica signed (pre-prepare, prepare, commit, view change).
    case ownMessage(Message)
    /// A prepared certificate (must survive a crash: view changes report it).
    case prepared(PreparedCertificate)
    /// A committed certificate (re-executed on recovery).
    case committed(CommittedCertificate)
    /// The NEW-VIEW this replica installed.
    case newView(NewView)
    /// A batch body this replica accepted (from a pre-prepare, a CATCH-UP or a fetched BATCH):
    /// certificates name batches by digest, so the bodies must survive a crash too.
    case batch([Request])
    /// A stable checkpoint adopted before this replica reached it (2f+1 CHECKPOINTs or a NEW-VIEW
    /// ahead of it), whose state it does not hold yet. Not a compaction point: the state recovery
    /// starts from is still the last `.checkpoint`. It moves the low watermark on recovery, as it
    /// did live, so what the replica signed above it (up to the new high watermark) comes back
    /// inside the window instead of beyond it.
    case stableCheckpoint(seq: SeqNum, digest: Digest, proof: [Checkpoint])

    enum Tag: UInt8 { case checkpoint = 1, view, ownMessage, prepared, committed, newView, batch, stableCheckpoint }

    public func encoded() -> [UInt8] {
        var w = WireWriter(capacity: 256)
        switch self {
        case .checkpoint(let seq, let digest, let proof, let state):
            w.u8(Tag.checkpoint.rawValue); w.u64(seq); w.digest(digest); encodeList(proof, into: &w); w.blob(state)
        case .view(let v, let active):
            w.u8(Tag.view.rawValue); w.u64(v); w.bool(active)
        case .ownMessage(let m):
            w.u8(Tag.ownMessage.rawValue); w.u8(m.kind.rawValue); w.blob(m.encoded())
        case .prepared(let cert):
            w.u8(Tag.prepared.rawValue); cert.encode(into: &w)
        case .committed(let cert):
            w.u8(Tag.committed.rawValue); cert.encode(into: &w)
        case .newView(let nv):
            w.u8(Tag.newView.rawValue); nv.encode(into: &w)
        case .batch(let requests):
            w.u8(Tag.batch.rawValue); encodeList(requests, into: &w)
        case .stableCheckpoint(let seq, let digest, let proof):
            w.u8(Tag.stableCheckpoint.rawValue); w.u64(seq); w.digest(digest); encodeList(proof, into: &w)
        }
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8], limits: MessageLimits = .default) throws(DecodeError) -> PersistRecord {
        var r = WireReader(bytes)
        let record: PersistRecord
        switch Tag(rawValue: try r.u8()) {
        case .checkpoint:
            let seq = try r.u64(), digest = try r.digest()
            let proof: [Checkpoint] = try decodeList(&r, field: "proof", limit: limits.maxProofMessages, limits: limits)
            record = .checkpoint(seq: seq, digest: digest, proof: proof, state: try r.blob(field: "state", limit: limits.maxStateBytes))
        case .view:
            record = .view(try r.u64(), active: try r.bool())
        case .ownMessage:
            let kind = try r.u8()
            let body = try r.blob(field: "message", limit: Int(UInt32.max))
            record = .ownMessage(try Message.decode(kind: kind, body: body, limits: limits))
        case .prepared:
            record = .prepared(try PreparedCertificate.decode(&r, limits: limits))
        case .committed:
            record = .committed(try CommittedCertificate.decode(&r, limits: limits))
        case .newView:
            record = .newView(try NewView.decodeInline(&r, limits: limits))
        case .batch:
            record = .batch(try decodeList(&r, field: "requests", limit: limits.maxRequestsPerBatch, limits: limits))
        case .stableCheckpoint:
            let seq = try r.u64(), digest = try r.digest()
            record = .stableCheckpoint(seq: seq, digest: digest,
                                       proof: try decodeList(&r, field: "proof", limit: limits.maxProofMessages, limits: limits))
        case nil:
            throw .invalidValue("persist record tag")
        }
        try r.finish()
        return record
    }
}

extension Replica {
    /// Rebuilds a freshly made replica from its persisted records (oldest first): restores the
    /// last stable checkpoint's state, re-executes the committed certificates after it, and
    /// restores its view, its own signed messages and its prepared certificates, so that it
    /// resends rather than contradicts what it signed before the crash. Returns the deliveries
    /// re-executed (the caller reconciles its deliver log with them); no message is sent.
    public mutating func recover(from records: [PersistRecord], now: UInt64 = 0) -> ReplicaOutput {
        var out = ReplicaOutput()
        self.now = max(self.now, now)
        nextStatus = self.now + config.statusIntervalTicks
        nextRetransmit = self.now + config.retransmitTicks
        let base = records.lastIndex { if case .checkpoint = $0 { return true }; return false }
        if let base, case .checkpoint(let seq, let digest, let proof, let state) = records[base] {
            let manifest = StateManifest(state: state, chunkBytes: config.stateChunkBytes)
            if manifest.digest == digest, (try? restoreCheckpointState(state)) != nil {
                log.lastExecuted = seq
                checkpoints.stableSeq = seq
                checkpoints.stableDigest = digest
                checkpoints.stableProof = proof
                checkpoints.stableState = state
                checkpoints.stableManifest = manifest
                log.nextSeq = seq + 1
            } else {
                out.events.append(.checkpointMismatch(seq: seq))
            }
        }
        for record in records[(base.map { $0 + 1 } ?? 0)...] {
            switch record {
            case .checkpoint: break
            case .view(let v, let isActive):
                viewChange.view = v
                viewChange.phase = isActive ? .normal : .changing
            case .ownMessage(let m):
                switch m {
                case .prePrepare(let pp) where pp.seq > stableSeq:
                    log.batches[pp.digest] = pp.requests
                    log.slots[pp.seq, default: Slot()].prePrepare = pp.header
                    log.slots[pp.seq]!.digest = pp.digest
                    log.nextSeq = max(log.nextSeq, pp.seq + 1)
                case .prepare(let p) where p.seq > stableSeq:
                    log.slots[p.seq, default: Slot()].prepares[id] = p
                case .commit(let c) where c.seq > stableSeq:
                    log.slots[c.seq, default: Slot()].commits[id] = c
                case .viewChange(let vc):
                    viewChange.received[id] = vc
                default: break
                }
            case .prepared(let cert) where cert.prePrepare.seq > stableSeq:
                log.slots[cert.prePrepare.seq, default: Slot()].preparedCertificate = cert
            case .committed(let cert) where cert.prePrepare.seq <= stableSeq && cert.prePrepare.seq == lastExecuted + 1:
                // Executed live in order behind a stable checkpoint adopted without its state
                // (`onCatchUp`): the log below that checkpoint is gone, so execute it again here.
                if let body = log.batches[cert.prePrepare.digest] {
                    execute(PrePrepare(header: cert.prePrepare, requests: body), &out)
                }
            case .committed(let cert) where cert.prePrepare.seq > stableSeq:
                log.slots[cert.prePrepare.seq, default: Slot()].committed = true
                log.slots[cert.prePrepare.seq]!.committedCertificate = cert
            case .batch(let requests):
                log.batches[PrePrepare.batchDigest(requests)] = requests
            case .stableCheckpoint(let seq, let digest, let proof) where seq > stableSeq:
                // Live, the replica executed what it could before it adopted this checkpoint and
                // then dropped everything at or below it; recovery does the same, here.
                executeReady(&out)
                makeStable(seq: seq, digest: digest, proof: proof, state: nil, &out)
            case .newView(let nv):
                viewChange.lastNewView = nv
                if nv.replica == id {
                    for pp in nv.prePrepares where pp.seq > stableSeq {
                        log.slots[pp.seq, default: Slot()].prePrepare = pp
                        log.slots[pp.seq]!.digest = pp.digest
                        log.nextSeq = max(log.nextSeq, pp.seq + 1)
                    }
                }
            default: break
            }
        }
        // Slots of the current view resume where they were: prepared ones keep their certificate.
        for seq in log.slots.keys.sorted() {
            guard var slot = log.slots[seq] else { continue }
            if let cert = slot.preparedCertificate, cert.prePrepare.view == view {
                slot.prePrepare = cert.prePrepare
                slot.digest = cert.prePrepare.digest
                slot.prepared = true
                for p in cert.prepares { slot.prepares[p.replica] = p }
            }
            log.slots[seq] = slot
        }
        if !active, let mine = viewChange.received[id], mine.newView == view { viewChange.attempts = 1 }
        // As installing a NEW-VIEW does: view changes for this view or earlier ones are done with.
        if active { viewChange.received = viewChange.received.filter { $0.value.newView > view } }
        collectBodies()
        executeReady(&out)
        lastProgressTick = now
        out.messages = []
        out.persist = []
        return out
    }
}
