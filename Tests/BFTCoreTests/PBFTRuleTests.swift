import Synchronization
@testable import BFTCore
import BFTCrypto
import Testing

/// One test per rule of Castro & Liskov, OSDI'99 §4 (and the TOCS'02 paper where noted).
@Suite("PBFT rules")
struct PBFTRuleTests {

    // MARK: §4.1 Client

    @Test("§4.1 a request is executed once and every replica replies; the client needs f+1 matching replies")
    func normalCaseDeliversAndClientAcceptsFPlusOne() {
        let c = TestCluster()
        let r = c.request(client: 0, timestamp: 1, sessionStart: true, op: "SET a 1")
        c.submit(r)
        c.run()
        for i in 0..<4 { #expect(c.delivered(i) == [r.digest]) }
        #expect(c.replies.count == 4)

        var client = ClientCore(id: 1, config: c.config, signer: c.signer(.client(1)), initialTimestamp: 10)
        let (t, out) = client.submit(Array("x".utf8))
        #expect(out.broadcasts.count == 1)
        let reply0 = c.sign(Reply(view: 0, timestamp: t, client: 1, replica: 0, result: [1]), as: .replica(0))
        #expect(client.onReply(reply0).completions.isEmpty)  // f = 1 reply is not enough
        let bogus = c.sign(Reply(view: 0, timestamp: t, client: 1, replica: 1, result: [2]), as: .replica(1))
        #expect(client.onReply(bogus).completions.isEmpty)   // a different result does not match
        let reply2 = c.sign(Reply(view: 0, timestamp: t, client: 1, replica: 2, result: [1]), as: .replica(2))
        let done = client.onReply(reply2).completions
        #expect(done.count == 1 && done.first?.result == [1])
    }

    @Test("§4.1 replies of one batch share one signature over all their entries; a reply not covered by it is refused")
    func batchSignedReplies() {
        let c = TestCluster()
        let a = c.request(client: 0, timestamp: 1, sessionStart: true, op: "a")
        let b = c.request(client: 1, timestamp: 1, sessionStart: true, op: "b")
        let pp = c.sign(PrePrepare(view: 0, seq: 1, replica: 0, requests: [a, b]), as: .replica(0))
        for i in 1..<4 { c.inject(.prePrepare(pp), from: .replica(0), to: i) }
        c.run()
        let fromReplica2 = c.replies.filter { $0.replica == 2 }.map(\.reply)
        #expect(fromReplica2.count == 2)
        #expect(Set(fromReplica2.map(\.signature)).count == 1)
        #expect(fromReplica2.allSatisfy { $0.entries.count == 2 && $0.isCoveredBySignature })
        var forged = fromReplica2[0]
        forged.result = Array("forged".utf8)  // the signature still verifies, but the entry is not in it
        if case .success = c.clientVerifier.verify(.reply(forged)) { Issue.record("reply outside the signed entries accepted") }
        if case .failure = c.clientVerifier.verify(.reply(fromReplica2[1])) { Issue.record("genuine reply refused") }
    }

    @Test("§4.1 a client checks a replica's batch signature once for all its replies in that batch, and a reply with altered signed entries still fails")
    func replyBatchSignatureCheckedOnce() {
        let c = TestCluster()
        let a = c.request(client: 0, timestamp: 1, sessionStart: true, op: "a")
        let b = c.request(client: 0, timestamp: 2, op: "b")
        let pp = c.sign(PrePrepare(view: 0, seq: 1, replica: 0, requests: [a, b]), as: .replica(0))
        for i in 1..<4 { c.inject(.prePrepare(pp), from: .replica(0), to: i) }
        c.run()
        let fromReplica2 = c.replies.filter { $0.replica == 2 }.map(\.reply)
        #expect(fromReplica2.count == 2)
        let counting = CountingChecker(inner: c.signatures)
        let verifier = MessageVerifier(checker: counting, clusterID: c.config.clusterID, replicaCount: 4, clientCount: 2)
        for r in fromReplica2 {
            if case .failure = verifier.verify(.reply(r)) { Issue.record("genuine reply refused") }
        }
        #expect(counting.calls.withLock { $0 } == 1)
        var altered = fromReplica2[1]
        altered.entries = [altered.entryDigest]  // covered, but not what replica 2 signed
        if case .success = verifier.verify(.reply(altered)) { Issue.record("reply with altered entries accepted") }
        #expect(counting.calls.withLock { $0 } == 2)
    }

    @Test("verify once at the edge: a replica message resent byte for byte is not checked again, a changed one is")
    func resentMessageVerifiedOnce() {
        let c = TestCluster()
        let counting = CountingChecker(inner: c.signatures)
        let verifier = MessageVerifier(checker: counting, clusterID: c.config.clusterID, replicaCount: 4, clientCount: 2)
        let p = c.sign(Prepare(view: 0, seq: 1, digest: SHA256.hash([1]), replica: 2), as: .replica(2))
        for _ in 0..<3 {
            if case .failure = verifier.verify(.prepare(p)) { Issue.record("genuine prepare refused") }
        }
        #expect(counting.calls.withLock { $0 } == 1)
        var forged = p
        forged.seq = 2  // same signature, other content: checked, and refused
        if case .success = verifier.verify(.prepare(forged)) { Issue.record("forged prepare accepted") }
        if case .success = verifier.verify(.prepare(forged)) { Issue.record("forged prepare accepted the second time") }
        #expect(counting.calls.withLock { $0 } == 3)
    }

    @Test("§4.1 a retransmitted request gets the cached reply and is never executed twice")
    func retransmissionGetsCachedReply() {
        let c = TestCluster()
        let r = c.request(client: 0, timestamp: 1, sessionStart: true, op: "op")
        c.submit(r); c.run()
        c.replies.removeAll()
        c.submit(r); c.run()
        for i in 0..<4 { #expect(c.deliveries[i].count == 1) }
        #expect(c.replies.count == 4)
        #expect(c.replies.allSatisfy { $0.reply.timestamp == 1 })
    }

    @Test("§4.1 exactly once: a committed batch that repeats an executed request, or skips a timestamp, executes neither")
    func committedBatchNeverExecutesTwiceOrOutOfOrder() {
        let c = TestCluster()
        let r1 = c.request(client: 0, timestamp: 1, sessionStart: true, op: "1")
        c.submit(r1); c.run()
        for i in 0..<4 { #expect(c.delivered(i) == [r1.digest]) }
        // A (faulty) primary orders r1 again and client 0's timestamp 3 before 2; the batch
        // commits everywhere, but nothing in it may execute.
        let r3 = c.request(client: 0, timestamp: 3, op: "3")
        let pp = c.sign(PrePrepare(view: 0, seq: 2, replica: 0, requests: [r1, r3]), as: .replica(0))
        for i in 1..<4 { c.inject(.prePrepare(pp), from: .replica(0), to: i) }
        c.run()
        for i in 1..<4 {
            #expect(c.replicas[i].lastExecuted == 2, "the batch committed")
            #expect(c.delivered(i) == [r1.digest], "neither the repeat nor the request after a gap executed")
            #expect(c.replicas[i].executedCount == 1)
        }
    }

    @Test("§4.1 with several outstanding, a client's requests are delivered in timestamp order even when they arrive reordered")
    func perClientTimestampOrder() {
        let c = TestCluster()
        let r1 = c.request(client: 0, timestamp: 100, sessionStart: true, op: "a")
        let r2 = c.request(client: 0, timestamp: 101, op: "b")
        let r3 = c.request(client: 0, timestamp: 102, op: "c")
        c.submit(r3); c.submit(r2); c.run()
        for i in 0..<4 { #expect(c.deliveries[i].isEmpty) }  // 101 and 102 wait for the session start
        c.submit(r1); c.run()
        for i in 0..<4 { #expect(c.deliveries[i].map(\.timestamp) == [100, 101, 102]) }
    }

    @Test("§4.1 a request from an unconfigured client or with a bad signature is refused at the edge")
    func unknownClientAndForgedRequestRefused() {
        let c = TestCluster()
        var forged = c.request(client: 0, timestamp: 1, sessionStart: true, op: "a")
        forged.operation = Array("b".utf8)  // signature no longer covers the fields
        if case .success = c.verifiers[0].verify(.request(forged)) { Issue.record("forged request accepted") }
        let stranger = Request(client: 7, timestamp: 1, sessionStart: true, operation: [1])
            .signed(with: c.signer(.client(0)), clusterID: c.config.clusterID)
        if case .failure(.unknownPrincipal) = c.verifiers[0].verify(.request(stranger)) {} else { Issue.record("unknown client accepted") }
    }

    // MARK: §4.2 Normal-case operation

    @Test("§4.2 a pre-prepare not sent by the primary of its view is dropped")
    func prePrepareFromNonPrimaryDropped() {
        let c = TestCluster()
        let r = c.request(client: 0, timestamp: 1, sessionStart: true, op: "a")
        let pp = c.sign(PrePrepare(view: 0, seq: 1, replica: 1, requests: [r]), as: .replica(1))
        c.inject(.prePrepare(pp), from: .replica(1), to: 2)
        c.run()
        #expect(c.drops(2, reason: "pre_prepare_not_from_primary") == 1)
        #expect(c.deliveries[2].isEmpty)
    }

    @Test("§4.2 a pre-prepare outside the watermarks (h, h+L] is dropped")
    func prePrepareOutsideWatermarksDropped() {
        let c = TestCluster()
        let pp = c.sign(PrePrepare(view: 0, seq: c.config.watermarkWindow + 1, replica: 0, requests: []), as: .replica(0))
        c.inject(.prePrepare(pp), from: .replica(0), to: 1)
        let zero = c.sign(PrePrepare(view: 0, seq: 0, replica: 0, requests: []), as: .replica(0))
        c.inject(.prePrepare(zero), from: .replica(0), to: 1)
        c.run()
        #expect(c.drops(1, reason: "outside_watermarks") == 2)
    }

    @Test("§4.2 a backup accepts one pre-prepare per view and sequence; a conflicting one is kept as equivocation proof")
    func equivocatingPrePrepareRecorded() {
        let c = TestCluster()
        let a = c.request(client: 0, timestamp: 1, sessionStart: true, op: "a")
        let b = c.request(client: 1, timestamp: 1, sessionStart: true, op: "b")
        let pp1 = c.sign(PrePrepare(view: 0, seq: 1, replica: 0, requests: [a]), as: .replica(0))
        let pp2 = c.sign(PrePrepare(view: 0, seq: 1, replica: 0, requests: [b]), as: .replica(0))
        c.inject(.prePrepare(pp1), from: .replica(0), to: 1)
        c.inject(.prePrepare(pp2), from: .replica(0), to: 1)
        c.run()
        #expect(c.replicas[1].equivocationProofs.count == 1)
        #expect(c.observer(1).proofs.count == 1)  // the application hook was told
        #expect(c.replicas[1].equivocationProofs.first?.replica == 0)
        #expect(c.drops(1, reason: "equivocation") >= 1)
        // Only the first was prepared by replica 1: all deliveries (if any) are `a`.
        for i in 0..<4 { #expect(c.deliveries[i].allSatisfy { $0.digest == a.digest }) }
    }

    @Test("§4.2 messages of a stale or a future view are dropped")
    func staleAndFutureViewDropped() {
        let c = TestCluster()
        let d = SHA256.hash([1])
        c.inject(.prepare(c.sign(Prepare(view: 3, seq: 1, digest: d, replica: 2), as: .replica(2))), from: .replica(2), to: 1)
        c.inject(.commit(c.sign(Commit(view: 5, seq: 1, digest: d, replica: 2), as: .replica(2))), from: .replica(2), to: 1)
        c.run()
        #expect(c.drops(1, reason: "future_view") == 2)
    }

    @Test("§4.2 the primary does not send prepares; a prepare claiming to be from the primary is dropped")
    func prepareFromPrimaryDropped() {
        let c = TestCluster()
        let p = c.sign(Prepare(view: 0, seq: 1, digest: SHA256.hash([1]), replica: 0), as: .replica(0))
        c.inject(.prepare(p), from: .replica(0), to: 1)
        c.run()
        #expect(c.drops(1, reason: "prepare_from_primary") == 1)
    }

    @Test("§4.2 a signature that does not cover every field is refused (changing the sequence number breaks it)")
    func signatureCoversEveryField() {
        let c = TestCluster()
        var p = c.sign(Prepare(view: 0, seq: 1, digest: SHA256.hash([1]), replica: 2), as: .replica(2))
        p.seq = 2
        if case .failure(.badSignature(.prepare)) = c.verifiers[1].verify(.prepare(p)) {} else { Issue.record("tampered prepare accepted") }
        // A request altered inside a pre-prepare is caught as a bad nested signature.
        var r = c.request(client: 0, timestamp: 1, sessionStart: true, op: "a")
        r.timestamp = 2
        let pp = c.sign(PrePrepare(view: 0, seq: 1, replica: 0, requests: [r]), as: .replica(0))
        if case .failure(.badNestedSignature(.prePrepare)) = c.verifiers[1].verify(.prePrepare(pp)) {} else { Issue.record("forged request accepted") }
    }

    @Test("§4.2 a message signed for another cluster is refused")
    func crossClusterReplayRefused() {
        let c = TestCluster()
        let p = Prepare(view: 0, seq: 1, digest: SHA256.hash([1]), replica: 2).signed(with: c.signer(.replica(2)), clusterID: 12345)
        if case .failure = c.verifiers[1].verify(.prepare(p)) {} else { Issue.record("foreign cluster message accepted") }
    }

    @Test("§4.2 a batch with a request twice is refused as malformed")
    func duplicateRequestInBatchRefused() {
        let c = TestCluster()
        let a = c.request(client: 0, timestamp: 1, sessionStart: true, op: "a")
        let pp = c.sign(PrePrepare(view: 0, seq: 1, replica: 0, requests: [a, a]), as: .replica(0))
        c.inject(.prePrepare(pp), from: .replica(0), to: 1)
        c.run()
        #expect(c.drops(1, reason: "malformed_batch") == 1)
    }

    @Test("§4.2 requests are batched and pipelined: several sequence numbers in flight, executed in order")
    func batchingAndPipelining() {
        let c = TestCluster(clients: 4) { $0.maxInFlightBatches = 2; $0.maxBatchRequests = 3 }
        var all: [Request] = []
        for client in 0..<4 {
            for t in 1...3 { all.append(c.request(client: ClientID(client), timestamp: UInt64(t), sessionStart: t == 1, op: "\(client)-\(t)")) }
        }
        // Hold the primary's first proposals so requests pile up, then release.
        for r in all { c.submit(r) }
        c.run()
        for i in 0..<4 {
            #expect(c.deliveries[i].count == 12)
            #expect(c.delivered(i) == c.delivered(0))
            let seqs = c.deliveries[i].map(\.seq)
            #expect(seqs == seqs.sorted())
        }
        #expect(c.deliveries[0].map(\.seq).max()! < 12)  // batched: fewer sequence numbers than requests
    }

    // MARK: §4.3 Garbage collection

    @Test("§4.3 a checkpoint becomes stable with 2f+1 matching CHECKPOINTs; the log below it is discarded and the watermarks move")
    func checkpointStableMovesWatermarks() {
        let c = TestCluster()
        for t in 1...6 { c.submit(c.request(client: 0, timestamp: UInt64(t), sessionStart: t == 1, op: "\(t)")); c.run() }
        for i in 0..<4 {
            #expect(c.replicas[i].stableSeq == 4)
            #expect(c.events[i].contains { if case .checkpointStable(4, _) = $0 { return true }; return false })
        }
        let digests = Set(c.replicas.map(\.stableDigest))
        #expect(digests.count == 1)
        // A pre-prepare at or below the new low watermark is now outside the window.
        let old = c.sign(PrePrepare(view: 0, seq: 3, replica: 0, requests: []), as: .replica(0))
        c.inject(.prePrepare(old), from: .replica(0), to: 1)
        c.run()
        #expect(c.drops(1, reason: "outside_watermarks") == 1)
    }

    @Test("§4.3 state transfer: a replica cut off past a stable checkpoint fetches the state with its proof and catches up")
    func stateTransferCatchesUp() {
        let c = TestCluster()
        c.down = [3]
        for t in 1...10 { c.submit(c.request(client: 0, timestamp: UInt64(t), sessionStart: t == 1, op: "\(t)")); c.run() }
        #expect(c.replicas[0].stableSeq >= 8)
        c.down = []
        c.tick(30)
        #expect(c.events[3].contains { if case .stateTransferred = $0 { return true }; return false })
        #expect(c.replicas[3].lastExecuted == c.replicas[0].lastExecuted)
        #expect(c.replicas[3].executedCount == 10)
        #expect(c.replicas[3].stableDigest == c.replicas[0].stableDigest)
    }

    @Test("§4.3 a replica that missed every CHECKPOINT of a stable checkpoint is sent its proof, so a primary stuck at its high watermark moves on without a view change")
    func laggingReplicaLearnsStableCheckpointProof() {
        let c = TestCluster()
        // The primary loses every CHECKPOINT: the backups' checkpoints at 4 and 8 become stable,
        // the primary's low watermark stays at 0, so its window ends at 8.
        c.filter = { _, to, m in !(to == .replica(0) && m.kind == .checkpoint) }
        for t in 1...8 { c.submit(c.request(client: 0, timestamp: UInt64(t), sessionStart: t == 1, op: "\(t)")); c.run() }
        #expect(c.replicas[0].stableSeq == 0)
        #expect(c.replicas[1].stableSeq == 8)
        c.filter = nil
        let r9 = c.request(client: 0, timestamp: 9, op: "9")
        c.submit(r9)
        c.run()
        #expect(c.replicas[0].lastExecuted == 8, "seq 9 is above the primary's high watermark")
        // Well inside the view-change timeout (20 ticks): the backups answer the primary's STATUS
        // with their stable checkpoint's proof.
        c.tick(12)
        #expect(c.replicas[0].stableSeq == 8)
        for i in 0..<4 {
            #expect(c.replicas[i].view == 0)
            #expect(c.delivered(i).last == r9.digest)
        }
    }

    @Test("§4.3 a state-transfer chunk that does not match the certified manifest, or a manifest without a 2f+1 proof, is refused")
    func stateTransferWithWrongDigestRefused() {
        let c = TestCluster()
        c.down = [3]
        for t in 1...5 { c.submit(c.request(client: 0, timestamp: UInt64(t), sessionStart: t == 1, op: "\(t)")); c.run() }
        c.down = []
        let good = c.replicas[0]
        let manifest = good.checkpoints.stableManifest!
        #expect(manifest.digest == good.stableDigest)
        let proof = (0..<3).map { c.sign(Checkpoint(seq: 4, digest: good.stableDigest, replica: $0), as: .replica($0)) }
        var wrong = good.checkpoints.stableState!
        wrong[wrong.count - 1] ^= 0xff
        let st = c.sign(StateTransfer(seq: 4, proof: proof, manifest: manifest, index: 0, chunk: wrong, replica: 0), as: .replica(0))
        c.inject(.stateTransfer(st), from: .replica(0), to: 3)
        let forged = StateManifest(state: wrong, chunkBytes: c.config.stateChunkBytes)
        let weak = c.sign(StateTransfer(seq: 4, proof: proof, manifest: forged, index: 0, chunk: wrong, replica: 0), as: .replica(0))
        c.inject(.stateTransfer(weak), from: .replica(0), to: 3)
        c.run()
        #expect(c.drops(3, reason: "state_digest_mismatch") == 1)
        #expect(c.drops(3, reason: "invalid_checkpoint_proof") == 1)
        #expect(c.replicas[3].lastExecuted == 0)
    }

    // MARK: §4.4 View changes

    @Test("§4.4 a silent primary is replaced: backups time out, change view, and the new primary orders the request")
    func silentPrimaryReplaced() {
        let c = TestCluster()
        c.down = [0]
        let r = c.request(client: 0, timestamp: 1, sessionStart: true, op: "a")
        c.submit(r)
        c.tick(80)
        for i in 1..<4 {
            #expect(c.replicas[i].view >= 1)
            #expect(c.replicas[i].active)
            #expect(c.delivered(i) == [r.digest])
        }
    }

    @Test("§4.4 (Aardvark) a primary that holds pre-prepares back is suspected after the pre-prepare deadline, well before the view-change timeout")
    func slowPrimarySuspectedAtPrePrepareDeadline() {
        // View-change timeout 20 ticks, so the pre-prepare deadline is 10: a backup that holds a
        // client's next request which no pre-prepare carries waits at most that long for any new
        // pre-prepare from the primary.
        let c = TestCluster()
        var held: [(from: Principal, to: Principal, message: Message)] = []
        c.filter = { from, to, m in
            if from == .replica(0), m.kind == .prePrepare { held.append((from, to, m)); return false }
            return true
        }
        let r = c.request(client: 0, timestamp: 1, sessionStart: true, op: "a")
        c.submit(r)
        c.tick(9)
        for i in 1..<4 { #expect(c.replicas[i].view == 0, "the deadline has not passed yet") }
        c.tick(4)
        for i in 1..<4 { #expect(c.replicas[i].view == 1, "suspected at the pre-prepare deadline, not the view-change timeout") }
        c.filter = nil
        c.tick(20)
        for i in 1..<4 {
            #expect(c.replicas[i].active)
            #expect(c.delivered(i) == [r.digest])
        }
    }

    @Test("§4.4 (Aardvark) a primary that keeps sending pre-prepares is not suspected while its pipeline is full")
    func busyPrimaryNotSuspected() {
        let c = TestCluster(clients: 1) { $0.maxInFlightBatches = 1; $0.maxBatchRequests = 1 }
        // Every pre-prepare reaches the backups 5 ticks late and the pipeline holds one batch, so
        // the backups hold unproposed requests for the 40 ticks the 8 requests take in all, four
        // times the deadline; but the primary is never silent for as long as the deadline.
        var held: [(from: Principal, to: Principal, message: Message)] = []
        c.filter = { from, to, m in
            if from == .replica(0), m.kind == .prePrepare { held.append((from, to, m)); return false }
            return true
        }
        for t in 1...8 { c.submit(c.request(client: 0, timestamp: UInt64(t), sessionStart: t == 1, op: "\(t)")) }
        c.run()
        for _ in 0..<10 {
            c.tick(5)
            let release = held
            held.removeAll()
            c.filter = nil
            for h in release { c.queue.append(h) }
            c.run()
            c.filter = { from, to, m in
                if from == .replica(0), m.kind == .prePrepare { held.append((from, to, m)); return false }
                return true
            }
        }
        for i in 0..<4 {
            #expect(c.replicas[i].view == 0)
            #expect(c.delivered(i).count == 8)
        }
    }

    @Test("§4.4 (PBFT request forwarding) a backup forwards a request the primary lacks halfway to the pre-prepare deadline, so no view change follows")
    func backupForwardsRequestPrimaryLacks() {
        let c = TestCluster()
        let r = c.request(client: 0, timestamp: 1, sessionStart: true, op: "a")
        c.submit(r, to: [1, 2, 3])  // the primary's copy is lost
        c.tick(15)
        for i in 0..<4 {
            #expect(c.replicas[i].view == 0)
            #expect(c.delivered(i) == [r.digest])
        }
    }

    @Test("§4.4 a replica that keeps missing the NEW-VIEW gets it by FETCH from the new primary")
    func missedNewViewFetchedFromPrimary() {
        let c = TestCluster()
        c.down = [0]
        // Replica 3 never receives a NEW-VIEW pushed to it, and only its first VIEW-CHANGE reaches
        // the new primary (enough for the NEW-VIEW; no resend is caused by a later one).
        var viewChangesFrom3 = 0
        c.filter = { from, to, m in
            if to == .replica(3), m.kind == .newView { return false }
            if from == .replica(3), to == .replica(1), m.kind == .viewChange {
                viewChangesFrom3 += 1
                return viewChangesFrom3 == 1
            }
            return true
        }
        let r = c.request(client: 0, timestamp: 1, sessionStart: true, op: "a")
        c.submit(r, to: [1, 2, 3])
        c.tick(60)
        for i in 1..<4 {
            #expect(c.replicas[i].view == 1)
            #expect(c.replicas[i].active)
            #expect(c.delivered(i) == [r.digest])
        }
    }

    @Test("§4.4 a replica that missed the NEW-VIEW gets it from any replica that installed it, even after the new primary moved on to a later view")
    func missedNewViewResentByBackups() {
        let c = TestCluster()
        // Replica 3 never receives the NEW-VIEW from the primary of view 1 (replica 1).
        c.filter = { from, to, m in !(from == .replica(1) && to == .replica(3) && m.kind == .newView) }
        for i in 0..<4 {
            var out = ReplicaOutput()
            c.replicas[i].startViewChange(to: 1, &out)
            c.absorb(i, out)
        }
        c.run()
        for i in [0, 1, 2] { #expect(c.replicas[i].view == 1 && c.replicas[i].active) }
        #expect(!c.replicas[3].active)
        // The primary of view 1 leaves it alone (its timer fired): it will never resend that NEW-VIEW.
        var out = ReplicaOutput()
        c.replicas[1].startViewChange(to: 2, &out)
        c.absorb(1, out)
        c.tick(30)
        #expect(c.replicas[3].view == 1)
        #expect(c.replicas[3].active, "replicas 0 and 2 hold view 1's NEW-VIEW and resend it on replica 3's VIEW-CHANGE")
        #expect(c.replicas[1].view == 2 && !c.replicas[1].active, "one replica ahead alone is not followed (f+1 rule)")
    }

    @Test("§4.4 a replica behind gets the last NEW-VIEW from a peer that has since left that view alone for a view change (seed 20050147)")
    func newViewFetchedFromPeerInLaterViewChange() {
        let c = TestCluster()
        c.down = [3]
        for i in 0..<3 {
            var out = ReplicaOutput()
            c.replicas[i].startViewChange(to: 1, &out)
            c.absorb(i, out)
        }
        c.run()
        for i in 0..<3 { #expect(c.replicas[i].view == 1 && c.replicas[i].active) }
        // Replica 2 moves on alone (its timer fired); f+1 are needed to follow it, so it stays there.
        var out = ReplicaOutput()
        c.replicas[2].startViewChange(to: 2, &out)
        c.absorb(2, out)
        c.run()
        // Replica 3 comes back still active in view 0 and hears only replica 2, whose STATUS shows
        // the highest view: it is the one replica 3 fetches from.
        c.down = []
        c.filter = { from, to, _ in to != .replica(3) || from == .replica(2) }
        c.tick(40)
        #expect(c.replicas[2].view == 2 && !c.replicas[2].active, "one replica ahead alone is not followed (f+1 rule)")
        #expect(c.replicas[3].view == 1 && c.replicas[3].active,
                "replica 2 installed view 1's NEW-VIEW and must hand it on even while changing to view 2")
    }

    @Test("§4.4 a replica that crashed after recording its view change but before its VIEW-CHANGE was persisted makes and sends one after restart (seed 20031677)")
    func tornViewChangeIsMadeAgainAfterRestart() {
        let c = TestCluster()
        // Replica 2 is the primary of view 2. Its step that starts the view change persists the
        // view record and then the VIEW-CHANGE; the crash keeps only the first, and nothing of
        // the step was sent (persist before send).
        var torn = ReplicaOutput()
        c.drivers[2].replica.startViewChange(to: 2, &torn)
        #expect(torn.persist.count == 2)
        try! c.drivers[2].log.persist(Array(torn.persist.prefix(1)))
        c.restart(2)
        #expect(c.replicas[2].view == 2 && !c.replicas[2].active)
        // The others change to view 2 as well (replica 0 stays out: f = 1 may be silent).
        for i in [1, 3] {
            var out = ReplicaOutput()
            c.replicas[i].startViewChange(to: 2, &out)
            c.absorb(i, out)
        }
        c.down = [0]
        c.tick(30)
        let own = c.persisted[2].contains { record in
            if case .ownMessage(.viewChange(let vc)) = record { return vc.newView == 2 }
            return false
        }
        #expect(own, "replica 2 persisted a VIEW-CHANGE for view 2")
        for i in [1, 2, 3] {
            #expect(c.replicas[i].view == 2 && c.replicas[i].active, "replica \(i): the new primary counted its own VIEW-CHANGE and sent the NEW-VIEW")
        }
    }

    @Test("catch-up: a replica waiting for a NEW-VIEW still fetches committed certificates from a peer whose STATUS shows it ahead")
    func waitingReplicaFetchesFromPeerAhead() {
        let c = TestCluster()
        c.down = [3]
        let r = c.request(client: 0, timestamp: 1, sessionStart: true, op: "a")
        c.submit(r)
        c.run()
        c.down = []
        // Replica 3 alone moves to view 1; its FETCHes to the primary of view 1 go unanswered
        // (the primary's answers are lost), so only the peers whose STATUS shows them ahead can help.
        c.filter = { from, to, m in !(from == .replica(1) && to == .replica(3) && m.kind == .catchUp) }
        var out = ReplicaOutput()
        c.replicas[3].startViewChange(to: 1, &out)
        c.absorb(3, out)
        c.run()
        c.tick(40)
        #expect(!c.replicas[3].active)
        #expect(c.delivered(3) == [r.digest], "the FETCH to the new primary must not starve the STATUS-driven one")
    }

    @Test("§4.4 requests prepared in the old view survive the view change (re-proposed in NEW-VIEW)")
    func preparedRequestSurvivesViewChange() {
        let c = TestCluster()
        let r = c.request(client: 0, timestamp: 1, sessionStart: true, op: "a")
        // Commits are lost: the request prepares everywhere but commits nowhere.
        c.filter = { _, _, m in if case .commit = m { return false }; return true }
        c.submit(r); c.run()
        for i in 0..<4 { #expect(c.deliveries[i].isEmpty) }
        // View-0 commits stay lost and the primary falls silent.
        c.filter = { from, _, m in
            if case .commit(let cm) = m, cm.view == 0 { return false }
            return from != .replica(0)
        }
        c.down = [0]
        c.tick(80)
        for i in 1..<4 { #expect(c.delivered(i) == [r.digest]) }
        let nv = c.replicas[1].lastNewView
        #expect(nv?.prePrepares.first?.digest == PrePrepare.batchDigest([r]))
    }

    /// A cluster whose primary of view 0 was down long enough for view 1 (primary: replica 1)
    /// to be installed, with every replica up again.
    static func clusterInView1() -> TestCluster {
        let c = TestCluster()
        c.down = [0]
        c.submit(c.request(client: 0, timestamp: 1, sessionStart: true, op: "a"))
        c.tick(80)
        #expect(c.replicas[1].view == 1 && c.replicas[1].active)
        c.down = []
        return c
    }

    @Test("§4.5.2 a restarted primary stays in its view: its own old VIEW-CHANGE and one other replica's are not f+1 replicas ahead (seed 777340)")
    func restartedPrimaryKeepsItsView() {
        let c = Self.clusterInView1()
        c.submit(c.request(client: 0, timestamp: 2, op: "b")); c.run()
        let proposedBefore = c.replicas[1].log.slots.filter { $0.value.prePrepare?.view == 1 }.count
        #expect(proposedBefore > 0)
        c.restart(1)
        #expect(c.replicas[1].view == 1 && c.replicas[1].active)
        // One other replica asks for view 2: f = 1, so that alone is not f+1.
        let vc = c.sign(ViewChange(newView: 2, stableSeq: 0, stableDigest: .zero, checkpointProof: [], prepared: [], replica: 2), as: .replica(2))
        c.inject(.viewChange(vc), from: .replica(2), to: 1)
        c.run(limit: 1)
        #expect(c.replicas[1].view == 1 && c.replicas[1].active, "the primary left its view")
    }

    @Test("§4.4 a primary that installs its own NEW-VIEW again keeps the pre-prepares it sent in that view and never proposes another batch for them")
    func reinstalledNewViewKeepsOwnPrePrepares() {
        let c = Self.clusterInView1()
        // Commits are lost, so the primary's batches stay pre-prepared and unexecuted.
        c.filter = { _, _, m in if case .commit = m { return false }; return true }
        c.submit(c.request(client: 1, timestamp: 1, sessionStart: true, op: "b")); c.run()
        let primary = c.replicas[1]
        let own = primary.log.slots.filter { $0.value.prePrepare?.view == 1 && $0.key > primary.lastExecuted }
        #expect(!own.isEmpty)
        guard let nv = primary.lastNewView else { Issue.record("no NEW-VIEW"); return }
        var again = primary
        var out = ReplicaOutput()
        again.installNewView(nv, &out)
        for (seq, slot) in own { #expect(again.log.slots[seq]?.prePrepare?.digest == slot.prePrepare?.digest) }
        #expect(again.log.nextSeq > (own.keys.max() ?? 0))
        #expect(!out.messages.contains { if case .prePrepare(let pp) = $0.message { return own[pp.seq] != nil }; return false })
    }

    @Test("§4.4 a NEW-VIEW with fewer than 2f+1 view changes is refused")
    func newViewWithTooFewViewChangesRefused() {
        let c = TestCluster()
        let vc = c.sign(ViewChange(newView: 1, stableSeq: 0, stableDigest: .zero, checkpointProof: [], prepared: [], replica: 1), as: .replica(1))
        let nv = c.sign(NewView(view: 1, viewChanges: [vc], prePrepares: [], replica: 1), as: .replica(1))
        c.inject(.newView(nv), from: .replica(1), to: 2)
        c.run()
        #expect(c.drops(2, reason: "too_few_view_changes") == 1)
        #expect(c.replicas[2].view == 0)
    }

    @Test("§4.4 a NEW-VIEW whose re-proposals do not follow from its view changes is refused")
    func newViewWithWrongReproposalsRefused() {
        let c = TestCluster()
        let vcs = (0..<3).map { c.sign(ViewChange(newView: 1, stableSeq: 0, stableDigest: .zero, checkpointProof: [], prepared: [], replica: $0), as: .replica($0)) }
        let r = c.request(client: 0, timestamp: 1, sessionStart: true, op: "sneaky")
        let pp = c.sign(PrePrepare(view: 1, seq: 1, replica: 1, requests: [r]), as: .replica(1))
        let nv = c.sign(NewView(view: 1, viewChanges: vcs, prePrepares: [pp.header], replica: 1), as: .replica(1))
        c.inject(.newView(nv), from: .replica(1), to: 2)
        c.run()
        #expect(c.drops(2, reason: "reproposals_do_not_follow") == 1)
        #expect(c.replicas[2].view == 0)
    }

    @Test("§4.4 a VIEW-CHANGE with a forged (incomplete) prepared certificate or an unproven checkpoint is refused")
    func viewChangeWithForgedCertificateRefused() {
        let c = TestCluster()
        let pp = c.sign(PrePrepare(view: 0, seq: 1, replica: 0, requests: []), as: .replica(0))
        let onePrepare = c.sign(Prepare(view: 0, seq: 1, digest: pp.digest, replica: 3), as: .replica(3))
        let vc = c.sign(ViewChange(newView: 1, stableSeq: 0, stableDigest: .zero, checkpointProof: [],
                                   prepared: [PreparedCertificate(prePrepare: pp.header, prepares: [onePrepare])], replica: 3), as: .replica(3))
        c.inject(.viewChange(vc), from: .replica(3), to: 1)
        let unproven = c.sign(ViewChange(newView: 1, stableSeq: 4, stableDigest: SHA256.hash([9]), checkpointProof: [], prepared: [], replica: 2), as: .replica(2))
        c.inject(.viewChange(unproven), from: .replica(2), to: 1)
        c.run()
        #expect(c.drops(1, reason: "invalid_view_change") == 2)
    }

    @Test("§4.4 NEW-VIEW fills gaps between min-s and max-s with null requests")
    func reproposalsFillGapsWithNull() {
        let c = TestCluster()
        let r = c.request(client: 0, timestamp: 1, sessionStart: true, op: "a")
        let pp = c.sign(PrePrepare(view: 0, seq: 3, replica: 0, requests: [r]), as: .replica(0))
        let prepares = [1, 2].map { c.sign(Prepare(view: 0, seq: 3, digest: pp.digest, replica: $0), as: .replica($0)) }
        let vc = ViewChange(newView: 1, stableSeq: 0, stableDigest: .zero, checkpointProof: [],
                            prepared: [PreparedCertificate(prePrepare: pp.header, prepares: prepares)], replica: 2)
        let o = Replica.reproposals(view: 1, viewChanges: [vc], config: c.config)
        #expect(o.map(\.seq) == [1, 2, 3])
        #expect(o[0].digest == PrePrepare.nullDigest && o[1].digest == PrePrepare.nullDigest)
        #expect(o[2].digest == PrePrepare.batchDigest([r]))
    }

    @Test("§4.5.2 a replica that sees f+1 view changes for higher views joins the smallest of them")
    func joinsViewChangeOnFPlusOne() {
        let c = TestCluster()
        for i in [2, 3] {
            let vc = c.sign(ViewChange(newView: 2, stableSeq: 0, stableDigest: .zero, checkpointProof: [], prepared: [], replica: i), as: .replica(i))
            c.inject(.viewChange(vc), from: .replica(i), to: 1)
        }
        c.run(limit: 2)
        #expect(c.replicas[1].view == 2)
        #expect(!c.replicas[1].active)
    }

    // MARK: Catch-up

    @Test("catch-up: a replica that missed commits fetches committed certificates and executes them")
    func committedCertificatesCatchUp() {
        let c = TestCluster()
        c.down = [2]
        c.submit(c.request(client: 0, timestamp: 1, sessionStart: true, op: "a")); c.run()
        c.down = []
        c.tick(30)
        #expect(c.replicas[2].executedCount == 1)
        #expect(c.delivered(2) == c.delivered(0))
    }
}

/// §4.1's assumption of stable storage, as the write-ahead log provides it.
@Suite("Recovery from persisted records")
struct RecoveryTests {
    @Test("a restarted replica recovers its checkpoint, re-executes committed batches after it and rejoins")
    func recoversStateAndRejoins() {
        let c = TestCluster()
        for t in 1...6 { c.submit(c.request(client: 0, timestamp: UInt64(t), sessionStart: t == 1, op: "\(t)")); c.run() }
        let before = c.replicas[2]
        let out = c.restart(2)
        #expect(c.replicas[2].lastExecuted == before.lastExecuted)
        #expect(c.replicas[2].executedCount == 6)
        #expect(c.replicas[2].stableSeq == before.stableSeq)
        #expect(c.replicas[2].stableDigest == before.stableDigest)
        #expect(out.deliveries.map(\.digest) == Array(c.delivered(2).suffix(out.deliveries.count)))
        #expect(out.messages.isEmpty)
        c.submit(c.request(client: 0, timestamp: 7, op: "7")); c.run()
        #expect(c.replicas[2].executedCount == 7)
        #expect(c.delivered(2).last == c.delivered(0).last)
    }

    @Test("a restarted backup never prepares a different batch for a view and sequence it prepared before the crash")
    func neverContradictsOwnPrepare() {
        let c = TestCluster()
        let a = c.request(client: 0, timestamp: 1, sessionStart: true, op: "a")
        let b = c.request(client: 1, timestamp: 1, sessionStart: true, op: "b")
        let pp1 = c.sign(PrePrepare(view: 0, seq: 1, replica: 0, requests: [a]), as: .replica(0))
        c.inject(.prePrepare(pp1), from: .replica(0), to: 1)
        c.run(limit: 1)
        c.queue.removeAll()
        c.restart(1)
        let pp2 = c.sign(PrePrepare(view: 0, seq: 1, replica: 0, requests: [b]), as: .replica(0))
        c.inject(.prePrepare(pp2), from: .replica(0), to: 1)
        c.run(limit: 1)
        #expect(c.drops(1, reason: "conflicts_with_own_prepare") == 1)
        #expect(c.queue.isEmpty)  // no prepare for the conflicting batch left replica 1
    }

    @Test("a stable checkpoint adopted without its state survives a restart: the low watermark stays there, so the slots signed above it stay inside the window")
    func adoptedStableCheckpointSurvivesRestart() {
        let c = TestCluster()  // checkpoint interval 4, watermark window 8
        // Replica 3 sees pre-prepares, prepares and CHECKPOINTs but no COMMIT and no state: it
        // signs prepares, adopts the stable checkpoints of the others without their state and
        // never executes.
        c.filter = { _, to, m in
            guard to == .replica(3) else { return true }
            switch m {
            case .commit, .stateTransfer, .catchUp: return false
            default: return true
            }
        }
        for t in 1...14 { c.submit(c.request(client: 0, timestamp: UInt64(t), sessionStart: t == 1, op: "\(t)")); c.run() }
        #expect(c.replicas[0].stableSeq >= 12)
        let before = c.replicas[3]
        #expect(before.lastExecuted == 0)
        #expect(before.stableSeq >= 8, "replica 3 adopted the others' stable checkpoint")
        #expect(c.persisted[3].contains { if case .stableCheckpoint(before.stableSeq, _, _) = $0 { return true }; return false })
        #expect(before.slotCount > 0)
        c.restart(3)
        let after = c.replicas[3]
        #expect(after.stableSeq == before.stableSeq)
        #expect(after.stableDigest == before.stableDigest)
        #expect(after.lastExecuted == 0)
        #expect(after.slotCount == before.slotCount)
        #expect(after.slotCount <= Int(c.config.watermarkWindow), "slots beyond the high watermark after recovery")
        // Once the network heals it fetches the state and agrees with the others.
        c.filter = nil
        c.tick(80)
        #expect(c.replicas[3].lastExecuted == c.replicas[0].lastExecuted)
        #expect(c.replicas[3].stableDigest == c.replicas[0].stableDigest)
    }

    @Test("every persisted record round-trips through its codec")
    func persistRecordCodec() throws {
        let c = TestCluster()
        for t in 1...5 { c.submit(c.request(client: 0, timestamp: UInt64(t), sessionStart: t == 1, op: "\(t)")); c.run() }
        c.down = [0]
        c.submit(c.request(client: 0, timestamp: 6, op: "6"))
        c.tick(60)
        let all = c.persisted.flatMap { $0 }
        #expect(all.contains { if case .view(_, false) = $0 { return true }; return false })
        #expect(all.contains { if case .newView = $0 { return true }; return false })
        for rec in all { #expect(try PersistRecord.decode(rec.encoded()) == rec) }
    }
}

/// Golden transcripts of small scenarios: the exact sequence of messages a run produces. A
/// change to the protocol's behaviour shows up here as a readable diff, not as a hash.
@Suite("Golden traces")
struct GoldenTraceTests {
    /// Delivers everything in FIFO order and records "from>to:KIND(view,seq)" for each message.
    static func transcript(_ c: TestCluster, limit: Int = 10_000) -> [String] {
        var lines: [String] = []
        c.filter = { from, to, m in
            func who(_ p: Principal) -> String {
                switch p { case .replica(let r): return "r\(r)"; case .client(let x): return "c\(x)" }
            }
            let detail: String
            switch m {
            case .request(let r): detail = "request(t\(r.timestamp))"
            case .prePrepare(let p): detail = "pre-prepare(v\(p.view),n\(p.seq))"
            case .prepare(let p): detail = "prepare(v\(p.view),n\(p.seq))"
            case .commit(let p): detail = "commit(v\(p.view),n\(p.seq))"
            case .reply(let r): detail = "reply(t\(r.timestamp))"
            case .checkpoint(let p): detail = "checkpoint(n\(p.seq))"
            case .viewChange(let v): detail = "view-change(v\(v.newView))"
            case .newView(let v): detail = "new-view(v\(v.view),o\(v.prePrepares.count))"
            default: detail = "\(m.kind)"
            }
            lines.append("\(who(from))>\(who(to)):\(detail)")
            return true
        }
        c.run(limit: limit)
        return lines
    }

    @Test("normal case, one request: request to all, pre-prepare, prepares, commits, replies")
    func normalCaseTranscript() {
        let c = TestCluster()
        c.submit(c.request(client: 0, timestamp: 1, sessionStart: true, op: "x"))
        let t = Self.transcript(c)
        #expect(t == [
            "c0>r0:request(t1)", "c0>r1:request(t1)", "c0>r2:request(t1)", "c0>r3:request(t1)",
            "r0>r1:pre-prepare(v0,n1)", "r0>r2:pre-prepare(v0,n1)", "r0>r3:pre-prepare(v0,n1)",
            "r1>r0:prepare(v0,n1)", "r1>r2:prepare(v0,n1)", "r1>r3:prepare(v0,n1)",
            "r2>r0:prepare(v0,n1)", "r2>r1:prepare(v0,n1)", "r2>r3:prepare(v0,n1)",
            "r3>r0:prepare(v0,n1)", "r3>r1:prepare(v0,n1)", "r3>r2:prepare(v0,n1)",
            // r2 is first to hold its own and r1's prepare (2f = 2), so it commits first.
            "r2>r0:commit(v0,n1)", "r2>r1:commit(v0,n1)", "r2>r3:commit(v0,n1)",
            "r3>r0:commit(v0,n1)", "r3>r1:commit(v0,n1)", "r3>r2:commit(v0,n1)",
            "r0>r1:commit(v0,n1)", "r0>r2:commit(v0,n1)", "r0>r3:commit(v0,n1)",
            "r1>r0:commit(v0,n1)", "r1>r2:commit(v0,n1)", "r1>r3:commit(v0,n1)",
            "r0>c0:reply(t1)", "r1>c0:reply(t1)", "r2>c0:reply(t1)", "r3>c0:reply(t1)",
        ])
    }
}

/// Counts signature checks, to show what the verifier's caches save.
final class CountingChecker: SignatureChecker {
    let inner: any SignatureChecker
    let calls = Mutex(0)
    init(inner: any SignatureChecker) { self.inner = inner }
    func isValid(signature: [UInt8], for bytes: [UInt8], by principal: Principal) -> Bool {
        calls.withLock { $0 += 1 }
        return inner.isValid(signature: signature, for: bytes, by: principal)
    }
}
