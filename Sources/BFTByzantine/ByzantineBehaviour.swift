import BFTCore
import BFTCrypto

/// Byzantine behaviours, each a wrapper around the honest replica: the honest code runs
/// unchanged and the wrapper rewrites, withholds, delays or adds to what it sends. The wrapper
/// only ever holds its own replica's signer, so it can lie but cannot forge anyone else.
/// The simulator uses them, and `bft-node --byzantine MODE` (test-only) runs them for real.
public enum ByzantineMode: String, CaseIterable, Sendable {
    /// As primary, sends different pre-prepares for the same sequence number to different backups.
    case equivocate
    /// As primary, proposes nothing (and sends no NEW-VIEW).
    case silent
    /// As primary, sends pre-prepares to only some backups.
    case selective
    /// As primary, holds each pre-prepare for most of the view-change timeout before sending it.
    case slow
    /// Corrupts the signature of a share of everything it sends.
    case badSignatures = "bad-signatures"
    /// Resends stale messages of earlier views and sequence numbers.
    case replay
    /// Sends VIEW-CHANGEs with forged or incomplete prepared certificates and NEW-VIEWs with too few view changes.
    case bogusViewChange = "bogus-view-change"
    /// Sends protocol messages with sequence numbers outside the watermark window.
    case outOfWindow = "out-of-window"
    /// Answers clients with validly signed replies carrying a wrong result: at once for every
    /// request it sees (before anyone executed it) and in place of every honest reply.
    case forgedReplies = "forged-replies"
    /// Signs two different, wrong results for every request it executes (and new ones on each
    /// retransmission), so its replies disagree with each other and with the correct replicas.
    case divergentReplies = "divergent-replies"
    /// All f faulty replicas act as one coalition (`Coalition`): double votes, equivocation,
    /// damaging view changes, short NEW-VIEWs and CATCH-UPs, wrong states. Simulator only.
    case coalition

    /// The modes a replica can run on its own (`coalition` needs the simulator to share one
    /// `Coalition` among the faulty replicas).
    public static let standalone: [ByzantineMode] = allCases.filter { $0 != .coalition }
}

/// What a Byzantine wrapper actually did, so a run can prove its adversary acted: a mode whose
/// counter stays at zero tested nothing.
public struct ByzantineCounters: Sendable, Equatable {
    /// Conflicting pre-prepares sent for one (view, sequence number).
    public var equivocations = 0
    /// Messages (or copies to some destinations) the honest replica produced but did not send.
    public var withheld = 0
    /// Messages held back before sending.
    public var delayed = 0
    /// Messages sent with a corrupted signature.
    public var corruptedSignatures = 0
    /// Stale messages resent.
    public var replayed = 0
    /// Protocol messages fabricated (bogus view changes and new views, out-of-window messages).
    public var forged = 0
    /// Replies to clients with a wrong, validly signed result.
    public var forgedReplies = 0
    /// Prepares and commits cast for a batch conflicting with one already seen (coalition).
    public var doubleVotes = 0
    /// Prepared certificates put in a VIEW-CHANGE for a batch other than the one most replicas
    /// committed: stale genuine ones or forged ones (coalition).
    public var forgedCertificates = 0
    /// Valid NEW-VIEWs from the 2f+1 view changes that report least, leaving others out (coalition).
    public var selectiveNewViews = 0
    /// Pre-prepares, prepares and commits sent for sequence numbers beyond the high watermark (coalition).
    public var beyondWatermarks = 0

    public init() {}

    public var total: Int {
        equivocations + withheld + delayed + corruptedSignatures + replayed + forged + forgedReplies + doubleVotes + forgedCertificates
            + selectiveNewViews + beyondWatermarks
    }

    /// The counter that shows `mode` deviated from the honest replica.
    public func acted(as mode: ByzantineMode) -> Int {
        switch mode {
        case .equivocate: return equivocations
        case .silent, .selective: return withheld
        case .slow: return delayed
        case .badSignatures: return corruptedSignatures
        case .replay: return replayed
        case .bogusViewChange, .outOfWindow: return forged
        case .forgedReplies, .divergentReplies: return forgedReplies
        case .coalition: return doubleVotes + forgedCertificates + forged + equivocations + selectiveNewViews + beyondWatermarks
        }
    }

    /// The non-zero counters, in a fixed order.
    public var summary: String {
        let all = [("equivocations", equivocations), ("withheld", withheld), ("delayed", delayed),
                   ("corruptedSignatures", corruptedSignatures), ("replayed", replayed), ("forged", forged),
                   ("forgedReplies", forgedReplies), ("doubleVotes", doubleVotes), ("forgedCertificates", forgedCertificates),
                   ("selectiveNewViews", selectiveNewViews), ("beyondWatermarks", beyondWatermarks)]
        let nonZero = all.filter { $0.1 > 0 }.map { "\($0.0)=\($0.1)" }
        return nonZero.isEmpty ? "none" : nonZero.joined(separator: " ")
    }
}

/// Rewrites the honest replica's outputs according to a mode.
public struct ByzantineBehaviour: OutboundInterceptor {
    public let mode: ByzantineMode
    let id: ReplicaID
    let config: ProtocolConfig
    let signer: any MessageSigner
    var rng: SplitMix64
    /// Messages seen or sent earlier, for replay (bounded).
    var history: [Message] = []
    let historyLimit = 256

    /// Pre-prepares held back by `slow`, with the tick at which they leave.
    var delayed: [(due: UInt64, outbound: Outbound)] = []
    /// Ticks `slow` holds a pre-prepare: just under the view-change timeout.
    public var slowDelayTicks: UInt64
    /// What this wrapper did so far.
    public private(set) var counters = ByzantineCounters()
    /// Test hook: when set, the wrapper passes every honest output through unchanged (a mode
    /// that "does nothing"), so a test can show the counters catch an idle adversary.
    public var passive = false
    /// Replies fabricated on seeing a request, sent with the next outputs.
    var forgedOut: [Outbound] = []
    /// The view the wrapped replica was in at its last output (for fabricated replies).
    var lastView: ViewNum = 0
    /// The coalition this replica belongs to (mode `coalition`), shared with the other members.
    public var coalition: Coalition?

    public init(mode: ByzantineMode, id: ReplicaID, config: ProtocolConfig, signer: any MessageSigner, seed: UInt64) {
        self.mode = mode; self.id = id; self.config = config; self.signer = signer; self.rng = SplitMix64(seed: seed)
        self.slowDelayTicks = config.viewChangeTimeoutTicks * 8 / 10
    }

    func sign<M: SignedMessage>(_ m: M) -> M { m.signed(with: signer, clusterID: config.clusterID) }

    mutating func remember(_ m: Message) {
        if history.count >= historyLimit { history.removeFirst(historyLimit / 4) }
        history.append(m)
    }

    /// Turns the honest outputs into what the faulty replica actually sends.
    public mutating func transform(_ outputs: [Outbound], replica: Replica) -> [Outbound] {
        if passive { return outputs }
        if mode == .coalition, let coalition { return coalition.rewrite(outputs, member: id, replica: replica, counters: &counters) }
        var result: [Outbound] = []
        let others = (0..<config.n).filter { $0 != id }
        lastView = replica.view
        if !forgedOut.isEmpty { result += forgedOut; forgedOut.removeAll() }
        if mode == .slow {
            let now = replica.now
            while let first = delayed.first, first.due <= now { result.append(first.outbound); delayed.removeFirst() }
        }
        for o in outputs {
            remember(o.message)
            switch mode {
            case .equivocate:
                if case .prePrepare(let pp) = o.message, o.destination == .allReplicas {
                    // f backups get the honest batch, the others a different one: neither batch
                    // can gather 2f+1 commits, so the backups must change view.
                    var alt = pp
                    alt.requests = pp.requests.count > 1 ? Array(pp.requests.reversed().dropLast()) : []
                    let altSigned = sign(alt)
                    counters.equivocations += 1
                    for (k, r) in others.enumerated() {
                        result.append(Outbound(.replica(r), .prePrepare(k < config.f ? pp : altSigned)))
                    }
                } else {
                    result.append(o)
                }
            case .silent:
                switch o.message {
                case .prePrepare, .newView: counters.withheld += 1; continue
                default: result.append(o)
                }
            case .slow:
                if case .prePrepare = o.message, delayed.count < 4096 {
                    delayed.append((replica.now + slowDelayTicks, o))
                    counters.delayed += 1
                } else {
                    result.append(o)
                }
            case .selective:
                if case .prePrepare = o.message, o.destination == .allReplicas {
                    let reached = others.prefix(max(others.count - config.f - 1, 1))
                    for r in reached { result.append(Outbound(.replica(r), o.message)) }
                    counters.withheld += others.count - reached.count
                } else {
                    result.append(o)
                }
            case .badSignatures:
                if rng.chance(0.5) {
                    result.append(Outbound(o.destination, corruptSignature(o.message)))
                    counters.corruptedSignatures += 1
                } else {
                    result.append(o)
                }
            case .replay:
                result.append(o)
                if rng.chance(0.3), !history.isEmpty {
                    let old = history[rng.int(0...(history.count - 1))]
                    result.append(Outbound(.allReplicas, old))
                    counters.replayed += 1
                }
            case .bogusViewChange:
                result.append(o)
                if rng.chance(0.05) {
                    let bogus = bogusViewMessages(replica)
                    result.append(contentsOf: bogus)
                    counters.forged += bogus.count
                }
            case .outOfWindow:
                result.append(o)
                if rng.chance(0.1) {
                    let far = replica.stableSeq + config.watermarkWindow + UInt64(rng.int(1...1000))
                    let d = SHA256.hash([UInt8(truncatingIfNeeded: far)])
                    result.append(Outbound(.allReplicas, .prepare(sign(Prepare(view: replica.view, seq: far, digest: d, replica: id)))))
                    result.append(Outbound(.allReplicas, .commit(sign(Commit(view: replica.view, seq: far, digest: d, replica: id)))))
                    if replica.isPrimary {
                        result.append(Outbound(.allReplicas, .prePrepare(sign(PrePrepare(view: replica.view, seq: far, replica: id, requests: [])))))
                        counters.forged += 1
                    }
                    counters.forged += 2
                }
            case .forgedReplies:
                if case .reply(let reply) = o.message {
                    var wrong = reply.result
                    if wrong.isEmpty { wrong = [0x5a] } else { wrong[0] ^= 0x5a }
                    result.append(Outbound(o.destination, .reply(forgeReply(reply, result: wrong))))
                } else {
                    result.append(o)
                }
            case .coalition:
                // Without a coalition to act with (a replica on its own) it behaves honestly.
                result.append(o)
            case .divergentReplies:
                if case .reply(let reply) = o.message {
                    // Two different results for the same request, each validly signed.
                    for _ in 0..<2 {
                        let wrong = (0..<max(reply.result.count, 1)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                        result.append(Outbound(o.destination, .reply(forgeReply(reply, result: wrong))))
                    }
                } else {
                    result.append(o)
                }
            }
        }
        return result
    }

    /// Also called for received messages so `replay` has others' messages to resend.
    public mutating func observe(_ m: Message) {
        if passive { return }
        if mode == .coalition { coalition?.learn(m, member: id, counters: &counters); return }
        if mode == .replay, rng.chance(0.2) { remember(m) }
        // Answer a request before anyone executed it, with a result made up from the operation.
        if mode == .forgedReplies, case .request(let r) = m, forgedOut.count < 1024 {
            let made = Array(SHA256.hash(r.operation + Array("forged".utf8)).bytes.prefix(8))
            let reply = Reply(view: lastView, timestamp: r.timestamp, client: r.client, replica: id, result: made)
            forgedOut.append(Outbound(.client(r.client), .reply(forgeReply(reply, result: made))))
        }
    }

    /// A reply with `result` in place of the honest one, signed on its own (a batch reply's
    /// signature covers the batch's entries, so the entries are replaced by this reply's own).
    mutating func forgeReply(_ reply: Reply, result: [UInt8]) -> Reply {
        var forged = Reply(view: reply.view, timestamp: reply.timestamp, client: reply.client, replica: id,
                           result: result, seq: reply.seq)
        forged = sign(forged)
        counters.forgedReplies += 1
        return forged
    }

    func corruptSignature(_ m: Message) -> Message {
        func flip<M: SignedMessage>(_ x: M) -> M {
            var c = x
            if !c.signature.isEmpty { c.signature[0] ^= 0xff }
            return c
        }
        switch m {
        case .request(let x): return .request(flip(x))
        case .reply(let x): return .reply(flip(x))
        case .prePrepare(let x): return .prePrepare(flip(x))
        case .prepare(let x): return .prepare(flip(x))
        case .commit(let x): return .commit(flip(x))
        case .checkpoint(let x): return .checkpoint(flip(x))
        case .viewChange(let x): return .viewChange(flip(x))
        case .newView(let x): return .newView(flip(x))
        case .status(let x): return .status(flip(x))
        case .fetch(let x): return .fetch(flip(x))
        case .catchUp(let x): return .catchUp(flip(x))
        case .stateTransfer(let x): return .stateTransfer(flip(x))
        case .batch(let x): return .batch(flip(x))
        }
    }

    /// Forged or incomplete certificates, and a NEW-VIEW with too few view changes.
    mutating func bogusViewMessages(_ replica: Replica) -> [Outbound] {
        var out: [Outbound] = []
        let target = replica.view + 1
        let fakeSeq = replica.stableSeq + 1
        // A "prepared certificate" with no prepares behind it, for a batch nobody proposed.
        let fakePP = sign(PrePrepare(view: replica.view, seq: fakeSeq, replica: id, requests: []))
        let selfPrepare = sign(Prepare(view: replica.view, seq: fakeSeq, digest: fakePP.digest, replica: id))
        let incomplete = PreparedCertificate(prePrepare: fakePP.header, prepares: [selfPrepare])
        let vc = sign(ViewChange(newView: target, stableSeq: replica.stableSeq, stableDigest: replica.stableDigest,
                                 checkpointProof: [], prepared: [incomplete], replica: id))
        out.append(Outbound(.allReplicas, .viewChange(vc)))
        // A view change claiming a stable checkpoint it cannot prove.
        let noProof = sign(ViewChange(newView: target, stableSeq: replica.stableSeq + config.checkpointInterval,
                                      stableDigest: SHA256.hash([1, 2, 3]), checkpointProof: [], prepared: [], replica: id))
        out.append(Outbound(.allReplicas, .viewChange(noProof)))
        // A NEW-VIEW for the next view it would lead, carrying only its own view change.
        var v = target
        while config.primary(of: v) != id { v += 1 }
        let own = sign(ViewChange(newView: v, stableSeq: 0, stableDigest: .zero, checkpointProof: [], prepared: [], replica: id))
        let nv = sign(NewView(view: v, viewChanges: [own], prePrepares: [], replica: id))
        out.append(Outbound(.allReplicas, .newView(nv)))
        return out
    }
}
