@testable import BFTCore
import BFTCrypto
import Testing

/// The size budget and the rules that keep strangers from making a replica repeat work or grow
/// without bound: every limit derives from one budget, nothing large travels in one message,
/// replays cost nothing new.
@Suite("Size budget and replay rules")
struct BudgetRuleTests {
    // MARK: One budget

    @Test("budget: the largest VIEW-CHANGE, NEW-VIEW and PRE-PREPARE a correct replica makes fit the derived limits (n = 4 and n = 7)",
          arguments: [4, 7])
    func largestMessagesFitTheDerivedLimits(n: Int) throws {
        var cfg = ProtocolConfig(n: n, clusterID: 1, clientCount: 4)
        cfg.watermarkWindow = 256
        cfg.checkpointInterval = 64
        #expect(cfg.validate() == nil)
        let sig = [UInt8](repeating: 1, count: signatureByteCount)
        func signed<M: SignedMessage>(_ m: M) -> M { var c = m; c.signature = sig; return c }
        let proof = (0..<cfg.quorum).map { signed(Checkpoint(seq: 64, digest: .zero, replica: $0)) }
        let certs = (1...Int(cfg.watermarkWindow)).map { s in
            PreparedCertificate(prePrepare: signed(PrePrepareHeader(view: 9, seq: SeqNum(64 + s), replica: 9 % n, digest: .zero)),
                                prepares: (0..<2 * cfg.f).map { signed(Prepare(view: 9, seq: SeqNum(64 + s), digest: .zero, replica: $0)) })
        }
        let vc = signed(ViewChange(newView: 10, stableSeq: 64, stableDigest: .zero, checkpointProof: proof, prepared: certs, replica: 1))
        #expect(vc.encoded.count <= cfg.maxViewChangeBytes)
        let headers = (1...Int(cfg.watermarkWindow)).map { signed(PrePrepareHeader(view: 10, seq: SeqNum(64 + $0), replica: 10 % n, digest: .zero)) }
        let nv = signed(NewView(view: 10, viewChanges: Array(repeating: vc, count: cfg.quorum), prePrepares: headers, replica: 10 % n))
        #expect(nv.encoded.count <= cfg.maxNewViewBytes)
        #expect(cfg.maxNewViewBytes < 2 * 1024 * 1024, "a NEW-VIEW no longer grows with request sizes")
        // A batch as large as the primary cuts: requests of the largest operation up to maxBatchBytes.
        let op = [UInt8](repeating: 7, count: cfg.maxOperationBytes)
        let perRequest = op.count + 81
        let requests = (0..<(cfg.maxBatchBytes / perRequest)).map { signed(Request(client: 0, timestamp: UInt64($0 + 1), sessionStart: false, operation: op)) }
        let pp = signed(PrePrepare(view: 0, seq: 1, replica: 0, requests: requests))
        #expect(pp.encoded.count <= cfg.maxPrePrepareBytes)
        #expect(cfg.maxReplicaMessageBytes >= cfg.maxStateTransferBytes)
        // Decoders take what the budget lets a correct replica produce.
        let back = try ViewChange.decode(vc.encoded, limits: cfg.limits)
        #expect(back == vc)
        #expect(cfg.limits.maxStateBytes == cfg.maxCheckpointStateBytes)
        #expect(cfg.maxCheckpointStateBytes >= cfg.maxApplicationStateBytes + 4 * cfg.replyCacheDepth * cfg.maxResultBytes)
    }

    @Test("budget: settings that do not fit together are refused, naming both values")
    func mismatchedSettingsAreRefused() {
        var cfg = ProtocolConfig(n: 4, clientCount: 1)
        cfg.watermarkWindow = 4096
        #expect(cfg.validate()?.contains("watermarkWindow 4096") == true)
        cfg = ProtocolConfig(n: 4, clientCount: 1)
        cfg.maxBatchBytes = 1000
        #expect(cfg.validate()?.contains("maxBatchBytes 1000") == true)
        #expect(cfg.validate()?.contains("maxOperationBytes 65536") == true)
    }

    @Test("§4.2 the primary never cuts a batch larger than maxBatchBytes, however many requests wait")
    func batchesStayWithinMaxBatchBytes() {
        let c = TestCluster(clients: 2) { $0.maxOperationBytes = 2000; $0.maxBatchBytes = 5000; $0.maxBatchRequests = 64 }
        let op = String(repeating: "z", count: 2000)
        for t in 1...6 { c.submit(c.request(client: 0, timestamp: UInt64(t), sessionStart: t == 1, op: op)) }
        var sizes: [Int] = []
        c.filter = { _, _, m in
            if case .prePrepare(let pp) = m { sizes.append(pp.requests.reduce(0) { $0 + $1.operation.count + 81 }) }
            return true
        }
        c.run()
        c.tick(5)
        #expect(c.deliveries[1].count == 6)
        #expect(!sizes.isEmpty && sizes.allSatisfy { $0 <= 5000 })
    }

    // MARK: Replays cost nothing new

    @Test("§4.1 a replayed request gets the reply signed when it executed, not a new signature, and replays are rate-limited per client")
    func replayedRequestReusesTheExecutionSignature() {
        let c = TestCluster { $0.maxReplayRepliesPerInterval = 5 }
        let r = c.request(client: 0, timestamp: 1, sessionStart: true, op: "once")
        c.submit(r)
        c.run()
        let original = c.replies.first { $0.replica == 1 && $0.reply.timestamp == 1 }!.reply
        #expect(original.seq == 1)
        c.replies = []
        for _ in 0..<8 { c.inject(.request(r), from: .client(0), to: 1) }
        c.run()
        let resent = c.replies.filter { $0.replica == 1 }.map(\.reply)
        #expect(resent.count == 5)
        #expect(resent.allSatisfy { $0.signature == original.signature && $0.seq == original.seq && $0.result == original.result })
        #expect(c.drops(1, reason: "replay_rate_limited") == 3)
        #expect(c.deliveries[1].count == 1)
        // The next interval allows resends again.
        c.tick(Int(c.config.retransmitTicks))
        c.replies = []
        c.inject(.request(r), from: .client(0), to: 1)
        c.run()
        #expect(c.replies.filter { $0.replica == 1 }.count == 1)
    }

    @Test("§4.1 a new session may not jump its timestamp past maxSessionTimestampJump (no self lock-out at 2^64 - 1)")
    func sessionTimestampJumpIsBounded() {
        let c = TestCluster()
        let far = c.request(client: 0, timestamp: UInt64.max, sessionStart: true, op: "lock me out")
        c.submit(far)
        c.run()
        c.tick(30)
        for i in 0..<4 { #expect(c.deliveries[i].isEmpty) }
        #expect(c.drops(1, reason: "session_timestamp_jump") == 1)
        let ok = c.request(client: 0, timestamp: 1_000_000, sessionStart: true, op: "fine")
        c.submit(ok)
        c.run()
        for i in 0..<4 { #expect(c.delivered(i) == [ok.digest]) }
    }

    // MARK: State transfer in chunks

    /// Replica 3 misses everything past a stable checkpoint whose state spans several chunks.
    static func laggingCluster() -> TestCluster {
        let c = TestCluster(ballastBytes: 40_000) {
            $0.stateChunkBytes = 4096
            $0.stateTransferBurstChunks = 2
            $0.stateTransferBytesPerTick = 4096
        }
        c.down = [3]
        for t in 1...5 { c.submit(c.request(client: 0, timestamp: UInt64(t), sessionStart: t == 1, op: "\(t)")); c.run() }
        c.down = []
        return c
    }

    @Test("§4.3 a checkpoint state larger than one chunk reaches a lagging replica chunk by chunk, each checked against the certified manifest")
    func stateMovesInCheckedChunks() {
        let c = Self.laggingCluster()
        let manifest = c.replicas[0].checkpoints.stableManifest!
        #expect(manifest.chunkDigests.count >= 10)
        #expect(manifest.digest == c.replicas[0].stableDigest)
        var chunksSeen = Set<UInt32>()
        var largest = 0
        c.filter = { _, to, m in
            if to == .replica(3), case .stateTransfer(let st) = m { chunksSeen.insert(st.index); largest = max(largest, m.encoded().count) }
            return true
        }
        c.tick(60)
        #expect(c.replicas[3].lastExecuted >= 4)
        #expect(c.events[3].contains(.stateTransferred(seq: 4)))
        #expect(chunksSeen.count == manifest.chunkDigests.count)
        #expect(largest <= c.config.maxStateTransferBytes && largest < 6000)
        #expect(c.replicas[3].stableDigest == c.replicas[0].stableDigest)
    }

    @Test("§4.3 FETCH is answered with state only to a peer whose STATUS shows it behind, and replays drain a per-peer byte bucket")
    func replayedFetchCannotStreamTheState() {
        let c = Self.laggingCluster()
        c.down = [3]  // we play replica 3's part by hand
        let fetch = c.sign(Fetch(view: 0, lastExecuted: 0, replica: 3), as: .replica(3))
        var chunks = 0
        c.filter = { from, _, m in
            if from == .replica(0), case .stateTransfer = m { chunks += 1 }
            return true
        }
        // No STATUS from replica 3 yet: nothing.
        c.inject(.fetch(fetch), from: .replica(3), to: 0)
        c.run()
        #expect(chunks == 0)
        // Its STATUS shows it behind: one burst of chunks, then the bucket is empty.
        c.inject(.status(c.sign(Status(view: 0, lastExecuted: 0, stableSeq: 0, replica: 3), as: .replica(3))), from: .replica(3), to: 0)
        for _ in 0..<10 { c.inject(.fetch(fetch), from: .replica(3), to: 0) }
        c.run()
        #expect(chunks == 2)
        #expect(c.drops(0, reason: "state_transfer_rate_limited") == 9)
        // Caught up (its STATUS says so): a replayed FETCH gets no state at all.
        chunks = 0
        c.tick(10)
        let caughtUp = c.sign(Status(view: 0, lastExecuted: 5, stableSeq: 4, replica: 3), as: .replica(3))
        c.inject(.status(caughtUp), from: .replica(3), to: 0)
        for _ in 0..<5 { c.inject(.fetch(fetch), from: .replica(3), to: 0) }
        c.run()
        #expect(chunks == 0)
    }

    @Test("§4.3 every chunk of one checkpoint carries one signature, made once however many chunks are sent")
    func stateTransferIsSignedOncePerCheckpoint() {
        let c = Self.laggingCluster()
        var signatures: [ReplicaID: Set<[UInt8]>] = [:]
        var count = 0
        c.filter = { _, _, m in
            if case .stateTransfer(let st) = m { signatures[st.replica, default: []].insert(st.signature); count += 1 }
            return true
        }
        c.tick(60)
        #expect(count >= 10)
        #expect(!signatures.isEmpty && signatures.values.allSatisfy { $0.count == 1 })
    }

    // MARK: View change by digest

    @Test("§4.4 a backup that never saw a batch fetches its body after a NEW-VIEW names it by digest, checks it, and executes it")
    func missingBodyIsFetchedAfterNewView() {
        let c = TestCluster()
        let r = c.request(client: 0, timestamp: 1, sessionStart: true, op: "body")
        // Replica 3 never gets the pre-prepare (nor the request); view-0 commits are lost.
        c.filter = { _, to, m in
            if to == .replica(3), case .prePrepare = m { return false }
            if to == .replica(3), case .request = m { return false }
            if case .commit = m { return false }
            return true
        }
        c.submit(r)
        c.run()
        for i in 0..<4 { #expect(c.deliveries[i].isEmpty) }
        var bodies = 0
        c.filter = { from, to, m in
            if to == .replica(3), case .batch = m { bodies += 1 }
            if case .commit(let cm) = m, cm.view == 0 { return false }
            return from != .replica(0)
        }
        c.down = [0]
        c.tick(120)
        for i in 1..<4 { #expect(c.delivered(i) == [r.digest]) }
        #expect(bodies >= 1)
        #expect(c.replicas[3].lastNewView?.prePrepares.first?.digest == PrePrepare.batchDigest([r]))
    }

    @Test("§4.4 a BATCH whose digest no slot names is dropped (a peer cannot make a replica store bodies)")
    func unwantedBatchIsDropped() {
        let c = TestCluster()
        let r = c.request(client: 1, timestamp: 1, sessionStart: true, op: "unasked")
        let b = c.sign(BatchBody(replica: 2, requests: [r]), as: .replica(2))
        c.inject(.batch(b), from: .replica(2), to: 1)
        c.run()
        #expect(c.drops(1, reason: "unwanted_batch") == 1)
        #expect(c.replicas[1].log.batches[b.digest] == nil)
    }
}

/// The session fast path: backups take a request from its client's own session without a
/// signature check, and that must neither let a bad signature through nor blind them to a faulty primary.
@Suite("Requests taken from a client's session")
struct SessionRequestRuleTests {
    @Test("§4.4 backups suspect a silent primary over requests they took unchecked, once they have checked them", arguments: [4, 7])
    func silentPrimaryStillReplaced(n: Int) {
        let c = TestCluster(n: n)
        c.filter = { from, _, _ in from != .replica(0) }
        c.down = [0]
        let r = c.request(client: 0, timestamp: 1, sessionStart: true, op: "unchecked")
        for i in 1..<n { c.submitOverSession(r, to: i) }
        c.tick(200)
        for i in 1..<n {
            #expect(c.replicas[i].view >= 1)
            #expect(c.delivered(i) == [r.digest])
        }
    }

    @Test("§4.1 a request with a bad signature taken from the client's session is checked, dropped and never makes backups suspect a correct primary")
    func badSignatureNeverBlamesThePrimary() {
        let c = TestCluster()
        var forged = c.request(client: 1, timestamp: 1, sessionStart: true, op: "garbage")
        forged.signature[3] ^= 0x40
        c.inject(.request(forged), from: .client(1), to: 0)  // the primary checks what it may propose
        for i in 1..<4 { c.submitOverSession(forged, to: i) }
        c.tick(150)
        for i in 0..<4 {
            #expect(c.replicas[i].view == 0, "replica \(i) changed view over a client's bad signature")
            #expect(c.deliveries[i].isEmpty)
            #expect(c.replicas[i].pendingRequestCount == 0)
        }
        for i in 1..<4 { #expect(c.drops(i, reason: "bad_signature") == 1) }
        // The cluster still orders a good request afterwards.
        let good = c.request(client: 0, timestamp: 1, sessionStart: true, op: "good")
        c.submit(good)
        c.run()
        for i in 0..<4 { #expect(c.delivered(i) == [good.digest]) }
    }
}

/// The replica's invariant checks are real: a planted broken state is reported.
@Suite("Replica invariants")
struct InvariantTests {
    @Test("a healthy replica after normal operation has no invariant violations")
    func healthyReplicaPasses() {
        let c = TestCluster()
        for t in 1...6 { c.submit(c.request(client: 0, timestamp: UInt64(t), sessionStart: t == 1, op: "\(t)")); c.run() }
        for i in 0..<4 { #expect(c.replicas[i].invariantViolations().isEmpty) }
    }

    @Test("planted broken states are each reported: a slot at or below the stable checkpoint, a commit flag without a certificate, a short prepared certificate, an out-of-order reply cache")
    func plantedBrokenStatesAreReported() {
        let c = TestCluster()
        for t in 1...6 { c.submit(c.request(client: 0, timestamp: UInt64(t), sessionStart: t == 1, op: "\(t)")); c.run() }
        let healthy = c.replicas[1]

        var below = healthy
        below.log.slots[below.stableSeq] = Slot()
        #expect(below.stableSeq > 0)
        #expect(below.invariantViolations().contains { $0.contains("at or below the stable checkpoint") })

        var flag = healthy
        var slot = Slot()
        slot.committed = true
        flag.log.slots[flag.stableSeq + 1] = slot
        #expect(flag.invariantViolations().contains { $0.contains("committed flag without a committed certificate") })

        var short = healthy
        let seq = short.stableSeq + 2
        let header = PrePrepareHeader(view: 0, seq: seq, replica: 0, digest: PrePrepare.nullDigest, signature: [UInt8](repeating: 0, count: 64))
        var s2 = Slot()
        s2.preparedCertificate = PreparedCertificate(prePrepare: header, prepares: [])
        short.log.slots[seq] = s2
        #expect(short.invariantViolations().contains { $0.contains("prepared certificate has 0 matching prepares") })

        var cache = healthy
        cache.clients.records[0]!.replies.reverse()
        #expect(cache.invariantViolations().contains { $0.contains("reply cache out of order") })
    }
}
