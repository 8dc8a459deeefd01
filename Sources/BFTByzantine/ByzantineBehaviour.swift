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
        var result: [Outbound] = []
        let others = (0..<config.n).filter { $0 != id }
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
                    for (k, r) in others.enumerated() {
                        result.append(Outbound(.replica(r), .prePrepare(k < config.f ? pp : altSigned)))
                    }
                } else {
                    result.append(o)
                }
            case .silent:
                switch o.message {
                case .prePrepare, .newView: continue
                default: result.append(o)
                }
            case .slow:
                if case .prePrepare = o.message, delayed.count < 4096 {
                    delayed.append((replica.now + slowDelayTicks, o))
                } else {
                    result.append(o)
                }
            case .selective:
                if case .prePrepare = o.message, o.destination == .allReplicas {
                    for r in others.prefix(max(others.count - config.f - 1, 1)) { result.append(Outbound(.replica(r), o.message)) }
                } else {
                    result.append(o)
                }
            case .badSignatures:
                if rng.chance(0.5) {
                    result.append(Outbound(o.destination, corruptSignature(o.message)))
                } else {
                    result.append(o)
                }
            case .replay:
                result.append(o)
                if rng.chance(0.3), !history.isEmpty {
                    let old = history[rng.int(0...(history.count - 1))]
                    result.append(Outbound(.allReplicas, old))
                }
            case .bogusViewChange:
                result.append(o)
                if rng.chance(0.05) { result.append(contentsOf: bogusViewMessages(replica)) }
            case .outOfWindow:
                result.append(o)
                if rng.chance(0.1) {
                    let far = replica.stableSeq + config.watermarkWindow + UInt64(rng.int(1...1000))
                    let d = SHA256.hash([UInt8(truncatingIfNeeded: far)])
                    result.append(Outbound(.allReplicas, .prepare(sign(Prepare(view: replica.view, seq: far, digest: d, replica: id)))))
                    result.append(Outbound(.allReplicas, .commit(sign(Commit(view: replica.view, seq: far, digest: d, replica: id)))))
                    if replica.isPrimary {
                        result.append(Outbound(.allReplicas, .prePrepare(sign(PrePrepare(view: replica.view, seq: far, replica: id, requests: [])))))
                    }
                }
            }
        }
        return result
    }

    /// Also called for received messages so `replay` has others' messages to resend.
    public mutating func observe(_ m: Message) {
        if mode == .replay, rng.chance(0.2) { remember(m) }
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
