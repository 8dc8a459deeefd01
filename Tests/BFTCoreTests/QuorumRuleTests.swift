@testable import BFTCore
import BFTCrypto
import Testing

/// The quorum rules on n = 4 and n = 7. With n = 4, 2f = f + 1 and 2f + 1 = n − f, so a mixed-up
/// quorum formula cannot show there; n = 7 (f = 2) tells them apart.
@Suite("PBFT quorum rules, n = 4 and n = 7")
struct QuorumRuleTests {
    static func f(_ n: Int) -> Int { (n - 1) / 3 }

    /// A cluster in which only `target` receives anything, so a test decides exactly which
    /// messages it sees.
    static func isolated(_ n: Int, target: ReplicaID) -> TestCluster {
        let c = TestCluster(n: n)
        c.filter = { _, to, _ in to == .replica(target) }
        return c
    }

    static func prepares(_ c: TestCluster, _ pp: PrePrepare, from ids: some Sequence<Int>) -> [Prepare] {
        ids.map { c.sign(Prepare(view: pp.view, seq: pp.seq, digest: pp.digest, replica: $0), as: .replica($0)) }
    }

    static func commits(_ c: TestCluster, _ pp: PrePrepare, from ids: some Sequence<Int>) -> [Commit] {
        ids.map { c.sign(Commit(view: pp.view, seq: pp.seq, digest: pp.digest, replica: $0), as: .replica($0)) }
    }

    static func viewChange(_ c: TestCluster, to view: ViewNum, from r: ReplicaID, prepared: [PreparedCertificate] = []) -> ViewChange {
        c.sign(ViewChange(newView: view, stableSeq: 0, stableDigest: .zero, checkpointProof: [], prepared: prepared, replica: r), as: .replica(r))
    }

    @Test("§4.2 prepared needs 2f matching prepares from backups: 2f−1 is not enough, the primary's does not count", arguments: [4, 7])
    func preparedNeedsTwoFPrepares(n: Int) {
        let f = Self.f(n), target = 1
        let c = Self.isolated(n, target: target)
        let r = c.request(client: 0, timestamp: 1, sessionStart: true, op: "a")
        let pp = c.sign(PrePrepare(view: 0, seq: 1, replica: 0, requests: [r]), as: .replica(0))
        c.inject(.prePrepare(pp), from: .replica(0), to: target)
        // The target's own PREPARE is one of the 2f; 2f−2 more from other backups make 2f−1.
        let others = Array(2..<n)
        for p in Self.prepares(c, pp, from: others.prefix(2 * f - 2)) { c.inject(.prepare(p), from: .replica(p.replica), to: target) }
        c.inject(.prepare(Self.prepares(c, pp, from: [0])[0]), from: .replica(0), to: target)
        c.run()
        #expect(c.drops(target, reason: "prepare_from_primary") == 1)
        #expect(c.replicas[target].log.slots[1]?.prepared == false, "2f−1 prepares from backups")
        #expect(c.replicas[target].log.slots[1]?.commits[target] == nil, "no COMMIT before prepared")
        let last = Self.prepares(c, pp, from: [others[2 * f - 2]])[0]
        c.inject(.prepare(last), from: .replica(last.replica), to: target)
        c.run()
        #expect(c.replicas[target].log.slots[1]?.prepared == true)
        #expect(c.replicas[target].log.slots[1]?.preparedCertificate?.prepares.count == 2 * f)
        #expect(c.replicas[target].log.slots[1]?.commits[target] != nil)
    }

    @Test("§4.2 committed-local needs 2f+1 matching commits: 2f is not enough", arguments: [4, 7])
    func committedNeedsQuorumOfCommits(n: Int) {
        let f = Self.f(n), target = 1
        let c = Self.isolated(n, target: target)
        let r = c.request(client: 0, timestamp: 1, sessionStart: true, op: "a")
        let pp = c.sign(PrePrepare(view: 0, seq: 1, replica: 0, requests: [r]), as: .replica(0))
        c.inject(.prePrepare(pp), from: .replica(0), to: target)
        for p in Self.prepares(c, pp, from: Array(2..<n).prefix(2 * f - 1)) { c.inject(.prepare(p), from: .replica(p.replica), to: target) }
        c.run()
        #expect(c.replicas[target].log.slots[1]?.prepared == true)
        // Its own COMMIT plus 2f−1 others: 2f.
        let senders = [0] + Array(2..<n)
        for cm in Self.commits(c, pp, from: senders.prefix(2 * f - 1)) { c.inject(.commit(cm), from: .replica(cm.replica), to: target) }
        c.run()
        #expect(c.replicas[target].log.slots[1]?.committed == false)
        #expect(c.delivered(target).isEmpty)
        let last = Self.commits(c, pp, from: [senders[2 * f - 1]])[0]
        c.inject(.commit(last), from: .replica(last.replica), to: target)
        c.run()
        #expect(c.replicas[target].log.slots[1] == nil || c.replicas[target].lastExecuted == 1)
        #expect(c.delivered(target) == [r.digest])
    }

    @Test("§4.3 a checkpoint is stable with 2f+1 matching CHECKPOINTs: 2f is not enough", arguments: [4, 7])
    func stableCheckpointNeedsQuorum(n: Int) {
        let f = Self.f(n), target = 1
        let c = Self.isolated(n, target: target)
        let seq = c.config.checkpointInterval
        let d = SHA256.hash([7])
        let senders = [0] + Array(2..<n)
        for i in senders.prefix(2 * f) {
            c.inject(.checkpoint(c.sign(Checkpoint(seq: seq, digest: d, replica: i), as: .replica(i))), from: .replica(i), to: target)
        }
        // A CHECKPOINT for another digest does not add to them.
        let other = senders[2 * f]
        c.inject(.checkpoint(c.sign(Checkpoint(seq: seq, digest: SHA256.hash([8]), replica: other), as: .replica(other))), from: .replica(other), to: target)
        c.run()
        #expect(c.replicas[target].stableSeq == 0)
        let last = senders[2 * f + 1 < senders.count ? 2 * f + 1 : 2 * f]
        c.inject(.checkpoint(c.sign(Checkpoint(seq: seq, digest: d, replica: last), as: .replica(last))), from: .replica(last), to: target)
        c.run()
        #expect(c.replicas[target].stableSeq == seq)
        #expect(c.replicas[target].stableDigest == d)
    }

    @Test("§4.4 a NEW-VIEW needs 2f+1 view changes: 2f is refused, 2f+1 installs the view", arguments: [4, 7])
    func newViewNeedsQuorumOfViewChanges(n: Int) {
        let f = Self.f(n), target = 2
        let c = Self.isolated(n, target: target)
        let vcs = [0, 1] + Array(3..<n)
        let all = vcs.map { Self.viewChange(c, to: 1, from: $0) }
        let short = c.sign(NewView(view: 1, viewChanges: Array(all.prefix(2 * f)), prePrepares: [], replica: 1), as: .replica(1))
        c.inject(.newView(short), from: .replica(1), to: target)
        c.run()
        #expect(c.drops(target, reason: "too_few_view_changes") == 1)
        #expect(c.replicas[target].view == 0 && c.replicas[target].active)
        let full = c.sign(NewView(view: 1, viewChanges: Array(all.prefix(2 * f + 1)), prePrepares: [], replica: 1), as: .replica(1))
        c.inject(.newView(full), from: .replica(1), to: target)
        c.run()
        #expect(c.replicas[target].view == 1 && c.replicas[target].active)
    }

    @Test("§4.4 a NEW-VIEW with more than one but fewer than 2f+1 view changes is refused", arguments: [4, 7])
    func newViewWithSomeViewChangesRefused(n: Int) {
        let f = Self.f(n), target = 2
        let c = Self.isolated(n, target: target)
        let all = ([0, 1] + Array(3..<n)).map { Self.viewChange(c, to: 1, from: $0) }
        for k in 2...(2 * f) {
            let nv = c.sign(NewView(view: 1, viewChanges: Array(all.prefix(k)), prePrepares: [], replica: 1), as: .replica(1))
            c.inject(.newView(nv), from: .replica(1), to: target)
        }
        // 2f+1 entries, but one replica twice: still 2f view changes.
        let doubled = Array(all.prefix(2 * f)) + [all[0]]
        c.inject(.newView(c.sign(NewView(view: 1, viewChanges: doubled, prePrepares: [], replica: 1), as: .replica(1))), from: .replica(1), to: target)
        c.run()
        #expect(c.drops(target, reason: "too_few_view_changes") == 2 * f - 1)
        #expect(c.drops(target, reason: "invalid_view_change_in_new_view") == 1)
        #expect(c.replicas[target].view == 0 && c.replicas[target].active)
    }

    @Test("§4.4 NEW-VIEW re-proposes the prepared certificate of the highest view for a sequence number", arguments: [4, 7])
    func reproposalTakesHighestView(n: Int) {
        let f = Self.f(n), target = n - 1
        let c = Self.isolated(n, target: target)
        let a = c.request(client: 0, timestamp: 1, sessionStart: true, op: "a")
        let b = c.request(client: 1, timestamp: 1, sessionStart: true, op: "b")
        // Seq 1 prepared as `a` in view 0 (primary 0), then as `b` in view 1 (primary 1).
        let pp0 = c.sign(PrePrepare(view: 0, seq: 1, replica: 0, requests: [a]), as: .replica(0))
        let pp1 = c.sign(PrePrepare(view: 1, seq: 1, replica: 1, requests: [b]), as: .replica(1))
        let cert0 = PreparedCertificate(prePrepare: pp0.header, prepares: Self.prepares(c, pp0, from: Array(1...(2 * f))))
        let cert1 = PreparedCertificate(prePrepare: pp1.header, prepares: Self.prepares(c, pp1, from: [0] + Array(2...(2 * f))))
        let low = Self.viewChange(c, to: 2, from: 0, prepared: [cert0])
        let high = Self.viewChange(c, to: 2, from: 1, prepared: [cert1])
        let rest = (3..<(2 * f + 2)).map { Self.viewChange(c, to: 2, from: $0) }
        for vcs in [[low, high] + rest, [high, low] + rest, rest + [high, low]] {
            let o = Replica.reproposals(view: 2, viewChanges: vcs, config: c.config)
            #expect(o.map(\.digest) == [pp1.digest], "the view-1 certificate wins whatever the order")
        }
        let vcs = [low, high] + rest
        #expect(vcs.count == 2 * f + 1)
        let wrong = c.sign(PrePrepare(view: 2, seq: 1, replica: 2, requests: [a]), as: .replica(2))
        c.inject(.newView(c.sign(NewView(view: 2, viewChanges: vcs, prePrepares: [wrong.header], replica: 2), as: .replica(2))), from: .replica(2), to: target)
        c.run()
        #expect(c.drops(target, reason: "reproposals_do_not_follow") == 1)
        #expect(c.replicas[target].view == 0)
        let right = c.sign(PrePrepare(view: 2, seq: 1, replica: 2, requests: [b]), as: .replica(2))
        c.inject(.newView(c.sign(NewView(view: 2, viewChanges: vcs, prePrepares: [right.header], replica: 2), as: .replica(2))), from: .replica(2), to: target)
        c.run()
        #expect(c.replicas[target].view == 2 && c.replicas[target].active)
        #expect(c.replicas[target].log.slots[1]?.digest == pp1.digest)
    }

    @Test("§4.5.2 a replica joins a view change seen from f+1 replicas, not from f", arguments: [4, 7])
    func joinsOnFPlusOneNotF(n: Int) {
        let f = Self.f(n), target = 1
        let c = Self.isolated(n, target: target)
        let senders = Array(2..<n)
        for i in senders.prefix(f) { c.inject(.viewChange(Self.viewChange(c, to: 2, from: i)), from: .replica(i), to: target) }
        c.run()
        #expect(c.replicas[target].view == 0 && c.replicas[target].active, "f replicas may all be faulty")
        let i = senders[f]
        c.inject(.viewChange(Self.viewChange(c, to: 2, from: i)), from: .replica(i), to: target)
        c.run()
        #expect(c.replicas[target].view == 2 && !c.replicas[target].active)
    }

    @Test("§4.1 a client accepts a result with f+1 matching replies, not with f", arguments: [4, 7])
    func clientNeedsFPlusOneReplies(n: Int) {
        let f = Self.f(n)
        let c = TestCluster(n: n)
        var client = ClientCore(id: 1, config: c.config, signer: c.signer(.client(1)), initialTimestamp: 10)
        let (t, _) = client.submit(Array("x".utf8))
        func reply(_ i: Int, _ result: UInt8) -> Reply {
            c.sign(Reply(view: 0, timestamp: t, client: 1, replica: i, result: [result]), as: .replica(i))
        }
        for i in 0..<f { #expect(client.onReply(reply(i, 1)).completions.isEmpty) }
        #expect(client.onReply(reply(0, 1)).completions.isEmpty, "the same replica twice counts once")
        for i in f..<(2 * f) { #expect(client.onReply(reply(i, 2)).completions.isEmpty, "different results do not match") }
        let done = client.onReply(reply(2 * f, 1)).completions
        #expect(done.count == 1 && done.first?.result == [1])
    }

    @Test("catch-up: a committed certificate with 2f commits (or 2f+1 from 2f replicas) is refused; 2f+1 is executed", arguments: [4, 7])
    func catchUpNeedsQuorumCertificate(n: Int) {
        let f = Self.f(n), target = n - 1
        let c = Self.isolated(n, target: target)
        let r = c.request(client: 0, timestamp: 1, sessionStart: true, op: "a")
        let pp = c.sign(PrePrepare(view: 0, seq: 1, replica: 0, requests: [r]), as: .replica(0))
        let commits = Self.commits(c, pp, from: 0..<(2 * f + 1))
        func catchUp(_ cs: [Commit]) -> Message {
            let cert = CommittedCertificate(prePrepare: pp.header, commits: cs)
            return .catchUp(c.sign(CatchUp(entries: [CatchUpEntry(certificate: cert, requests: [r])], newView: nil, replica: 0), as: .replica(0)))
        }
        c.inject(catchUp(Array(commits.prefix(2 * f))), from: .replica(0), to: target)
        c.inject(catchUp(Array(commits.prefix(2 * f)) + [commits[0]]), from: .replica(0), to: target)
        c.run()
        #expect(c.drops(target, reason: "invalid_committed_certificate") == 2)
        #expect(c.delivered(target).isEmpty)
        c.inject(catchUp(commits), from: .replica(0), to: target)
        c.run()
        #expect(c.delivered(target) == [r.digest])
    }
}
