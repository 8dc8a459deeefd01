@testable import BFTCore
import BFTCrypto
import Testing

/// Every drop reason `Replica` can emit has a test that triggers it (here, or in
/// `PBFTRuleTests` / `QuorumRuleTests` / `BudgetRuleTests` where the rule is tested).
@Suite("Drop reasons")
struct DropReasonTests {
    static func isolated(target: ReplicaID, configure: (inout ProtocolConfig) -> Void = { _ in }) -> TestCluster {
        let c = TestCluster(configure: configure)
        c.filter = { _, to, _ in to == .replica(target) }
        return c
    }

    @Test("§4.1 a request beyond the per-client pending bound is dropped: client_window_full")
    func clientWindowFull() {
        let c = Self.isolated(target: 1) { $0.maxPendingPerClient = 2 }
        // Timestamps after a gap stay pending (none is the client's next one).
        for t in [5, 6, 7] { c.submit(c.request(client: 0, timestamp: UInt64(t), op: "\(t)"), to: [1]) }
        c.run()
        #expect(c.drops(1, reason: "client_window_full") == 1)
        #expect(c.replicas[1].pendingRequestCount == 2)
    }

    @Test("§4.1 an old request whose reply left the cache is dropped: stale_timestamp")
    func staleTimestamp() {
        let c = TestCluster { $0.replyCacheDepth = 1 }
        let r1 = c.request(client: 0, timestamp: 1, sessionStart: true, op: "1")
        c.submit(r1); c.run()
        c.submit(c.request(client: 0, timestamp: 2, op: "2")); c.run()
        c.submit(r1, to: [1]); c.run()
        #expect(c.drops(1, reason: "stale_timestamp") == 1)
        #expect(c.delivered(1).count == 2)
    }

    @Test("a REPLY sent to a replica is dropped: reply_to_replica")
    func replyToReplica() {
        let c = Self.isolated(target: 1)
        let reply = c.sign(Reply(view: 0, timestamp: 1, client: 0, replica: 2, result: [1]), as: .replica(2))
        c.inject(.reply(reply), from: .replica(2), to: 1)
        c.run()
        #expect(c.drops(1, reason: "reply_to_replica") == 1)
    }

    @Test("§4.2 prepares and commits of a view still being changed to are dropped: view_change_in_progress")
    func viewChangeInProgress() {
        let c = Self.isolated(target: 1)
        var out = ReplicaOutput()
        c.replicas[1].startViewChange(to: 1, &out)
        let d = SHA256.hash([1])
        c.inject(.prepare(c.sign(Prepare(view: 1, seq: 1, digest: d, replica: 2), as: .replica(2))), from: .replica(2), to: 1)
        c.inject(.commit(c.sign(Commit(view: 1, seq: 1, digest: d, replica: 2), as: .replica(2))), from: .replica(2), to: 1)
        let pp = c.sign(PrePrepare(view: 1, seq: 1, replica: 1, requests: []), as: .replica(1))
        c.inject(.prePrepare(pp), from: .replica(1), to: 2)  // filtered out; only replica 1 listens
        c.run()
        #expect(c.drops(1, reason: "view_change_in_progress") == 2)
        #expect(c.replicas[1].log.slots[1] == nil)
    }

    @Test("§4.2 messages of an earlier view are dropped: stale_view")
    func staleView() {
        let c = Self.isolated(target: 2)
        let all = [0, 1, 3].map { c.sign(ViewChange(newView: 1, stableSeq: 0, stableDigest: .zero, checkpointProof: [], prepared: [], replica: $0), as: .replica($0)) }
        c.inject(.newView(c.sign(NewView(view: 1, viewChanges: all, prePrepares: [], replica: 1), as: .replica(1))), from: .replica(1), to: 2)
        c.run()
        #expect(c.replicas[2].view == 1 && c.replicas[2].active)
        let d = SHA256.hash([1])
        c.inject(.prepare(c.sign(Prepare(view: 0, seq: 1, digest: d, replica: 3), as: .replica(3))), from: .replica(3), to: 2)
        c.inject(.commit(c.sign(Commit(view: 0, seq: 1, digest: d, replica: 3), as: .replica(3))), from: .replica(3), to: 2)
        c.inject(.prePrepare(c.sign(PrePrepare(view: 0, seq: 1, replica: 0, requests: []), as: .replica(0))), from: .replica(0), to: 2)
        let old = c.sign(ViewChange(newView: 0, stableSeq: 0, stableDigest: .zero, checkpointProof: [], prepared: [], replica: 3), as: .replica(3))
        c.inject(.viewChange(old), from: .replica(3), to: 2)
        c.inject(.newView(c.sign(NewView(view: 1, viewChanges: all, prePrepares: [], replica: 1), as: .replica(1))), from: .replica(1), to: 2)
        c.run()
        #expect(c.drops(2, reason: "stale_view") == 5)
    }

    @Test("§4.2 a prepare or commit contradicting the sender's earlier one is equivocation")
    func prepareAndCommitEquivocation() {
        let c = Self.isolated(target: 1)
        for d in [SHA256.hash([1]), SHA256.hash([2])] {
            c.inject(.prepare(c.sign(Prepare(view: 0, seq: 1, digest: d, replica: 2), as: .replica(2))), from: .replica(2), to: 1)
            c.inject(.commit(c.sign(Commit(view: 0, seq: 1, digest: d, replica: 3), as: .replica(3))), from: .replica(3), to: 1)
        }
        c.run()
        #expect(c.drops(1, reason: "equivocation") == 2)
        #expect(Set(c.replicas[1].equivocationProofs.map(\.replica)) == [2, 3])
    }

    @Test("§4.4 a NEW-VIEW not sent by the primary of its view is dropped: new_view_not_from_primary")
    func newViewNotFromPrimary() {
        let c = Self.isolated(target: 3)
        let vcs = [0, 1, 2].map { c.sign(ViewChange(newView: 1, stableSeq: 0, stableDigest: .zero, checkpointProof: [], prepared: [], replica: $0), as: .replica($0)) }
        c.inject(.newView(c.sign(NewView(view: 1, viewChanges: vcs, prePrepares: [], replica: 2), as: .replica(2))), from: .replica(2), to: 3)
        c.run()
        #expect(c.drops(3, reason: "new_view_not_from_primary") == 1)
        #expect(c.replicas[3].view == 0)
    }

    @Test("§4.4 a NEW-VIEW carrying a view change for another view is dropped: invalid_view_change_in_new_view")
    func invalidViewChangeInNewView() {
        let c = Self.isolated(target: 3)
        var vcs = [0, 1].map { c.sign(ViewChange(newView: 1, stableSeq: 0, stableDigest: .zero, checkpointProof: [], prepared: [], replica: $0), as: .replica($0)) }
        vcs.append(c.sign(ViewChange(newView: 2, stableSeq: 0, stableDigest: .zero, checkpointProof: [], prepared: [], replica: 2), as: .replica(2)))
        c.inject(.newView(c.sign(NewView(view: 1, viewChanges: vcs, prePrepares: [], replica: 1), as: .replica(1))), from: .replica(1), to: 3)
        c.run()
        #expect(c.drops(3, reason: "invalid_view_change_in_new_view") == 1)
        #expect(c.replicas[3].view == 0)
    }

    @Test("catch-up: a second valid-looking committed certificate for a committed sequence number is refused: conflicting_committed_certificate")
    func conflictingCommittedCertificate() {
        let c = Self.isolated(target: 3)
        func entry(_ op: String) -> (CatchUpEntry, Digest) {
            let r = c.request(client: 0, timestamp: 2, op: op)
            let pp = c.sign(PrePrepare(view: 0, seq: 2, replica: 0, requests: [r]), as: .replica(0))
            let commits = (0..<3).map { c.sign(Commit(view: 0, seq: 2, digest: pp.digest, replica: $0), as: .replica($0)) }
            return (CatchUpEntry(certificate: CommittedCertificate(prePrepare: pp.header, commits: commits), requests: [r]), pp.digest)
        }
        let (a, da) = entry("a"), (b, _) = entry("b")
        for e in [a, b] {
            c.inject(.catchUp(c.sign(CatchUp(entries: [e], newView: nil, replica: 0), as: .replica(0))), from: .replica(0), to: 3)
        }
        c.run()
        #expect(c.drops(3, reason: "conflicting_committed_certificate") == 1)
        #expect(c.replicas[3].log.slots[2]?.committedCertificate?.prePrepare.digest == da)
    }

    @Test("a FETCH from a peer answered less than half a cooldown ago is dropped: fetch_rate_limited")
    func fetchRateLimited() {
        let c = Self.isolated(target: 1)
        for _ in 0..<2 {
            c.inject(.fetch(c.sign(Fetch(view: 0, lastExecuted: 0, replica: 2), as: .replica(2))), from: .replica(2), to: 1)
        }
        c.run()
        #expect(c.drops(1, reason: "fetch_rate_limited") == 1)
    }

    @Test("§4.3 a state transfer whose manifest does not fit its size is dropped: state_manifest_invalid")
    func stateManifestInvalid() {
        let c = Self.isolated(target: 3)
        let manifest = StateManifest(totalBytes: 10, chunkDigests: [])
        let proof = (0..<3).map { c.sign(Checkpoint(seq: 4, digest: manifest.digest, replica: $0), as: .replica($0)) }
        let st = c.sign(StateTransfer(seq: 4, proof: proof, manifest: manifest, index: 0, chunk: [], replica: 0), as: .replica(0))
        c.inject(.stateTransfer(st), from: .replica(0), to: 3)
        c.run()
        #expect(c.drops(3, reason: "state_manifest_invalid") == 1)
        #expect(c.replicas[3].lastExecuted == 0)
    }

    @Test("§4.3 a certified state that does not decode is dropped: undecodable_state")
    func undecodableState() {
        let c = Self.isolated(target: 3)
        let state: [UInt8] = [1, 2, 3]
        let manifest = StateManifest(state: state, chunkBytes: c.config.stateChunkBytes)
        let proof = (0..<3).map { c.sign(Checkpoint(seq: 4, digest: manifest.digest, replica: $0), as: .replica($0)) }
        let st = c.sign(StateTransfer(seq: 4, proof: proof, manifest: manifest, index: 0, chunk: state, replica: 0), as: .replica(0))
        c.inject(.stateTransfer(st), from: .replica(0), to: 3)
        c.run()
        #expect(c.drops(3, reason: "undecodable_state") == 1)
        #expect(c.replicas[3].lastExecuted == 0)
    }
}
