import BFTCore
import BFTCrypto

/// The f Byzantine replicas of a run acting as one, as a real coalition would: they pool every
/// message any of them received and sign for each other (they share their keys), so each member
/// can use what any member saw. It cannot sign for a correct replica; where a message needs a
/// correct replica's signature it either uses one it observed or, to probe the checks that must
/// refuse it, puts garbage in its place.
///
/// What it does, each aimed at a rule a weakened replica would break (`ByzantineMode.coalition`):
/// - **Double voting**: every member prepares and commits every conflicting batch it sees.
/// - **Equivocation**: a member that is primary sends f correct replicas a different batch, or
///   every backup both batches, one after the other.
/// - **Damaging VIEW-CHANGEs**: for each sequence number, the prepared certificate whose batch
///   differs from the one most replicas committed — a genuine stale one if it can assemble it,
///   else one forged in a single way (too few prepares, a repeated signer, garbage signatures).
/// - **Short or selective NEW-VIEWs**: a member that is the new primary sends, as soon as it
///   holds 2f view changes, a NEW-VIEW built from the ones that report the least (correct
///   replicas must refuse it); or, half the time, a valid one from 2f+1 view changes chosen the
///   same way, leaving out a correct replica that alone prepared (or committed) something. Then
///   it proposes conflicting batches for the sequence numbers it left out.
/// - **Short CATCH-UPs** to replicas whose STATUS shows them behind: committed certificates for
///   conflicting batches with the coalition's commits only.
/// - **Wrong states** to replicas that FETCH: genuine proof and manifest with a corrupted chunk,
///   or a made-up state at a later checkpoint with a proof signed by the coalition alone.
/// - **Running ahead of the watermarks**: now and then, pre-prepares (from a member that leads
///   the view), prepares and commits from every member for sequence numbers beyond the high
///   watermark; a replica without the watermark check would hold slots without bound.
public final class Coalition: @unchecked Sendable {
    public let members: [ReplicaID]
    let signers: [ReplicaID: any MessageSigner]
    let config: ProtocolConfig

    struct VoteKey: Hashable {
        var view: ViewNum, seq: SeqNum, digest: Digest
    }

    /// Pre-prepare headers seen (or sent by a member), per sequence number, in arrival order.
    var headers: [SeqNum: [PrePrepareHeader]] = [:]
    /// Batch bodies by digest, for headers above.
    var bodies: [Digest: [Request]] = [PrePrepare.nullDigest: []]
    var prepares: [VoteKey: [ReplicaID: Prepare]] = [:]
    var commits: [VoteKey: [ReplicaID: Commit]] = [:]
    var viewChanges: [ViewNum: [ReplicaID: ViewChange]] = [:]
    /// Members' VIEW-CHANGEs that a correct replica accepts (no certificates: a member may
    /// claim it prepared nothing), for the short NEW-VIEW.
    var validViewChanges: [ViewNum: [ReplicaID: ViewChange]] = [:]
    /// Whether members send their prepares and commits to one correct replica only (drawn per
    /// coalition).
    public var selectiveCommits: Bool
    /// Double votes already cast (one per key: all members at once).
    var doubleVoted: Set<VoteKey> = []
    /// Views for which a crafted NEW-VIEW (short or selective) was sent, with the certificates its
    /// view changes reported.
    var craftedNewViewCerts: [ViewNum: Int] = [:]
    /// Tick of the last short CATCH-UP / wrong state per victim (rate limit).
    var lastCatchUp: [ReplicaID: UInt64] = [:]
    var lastWrongState: [ReplicaID: UInt64] = [:]
    /// Messages a member decided to send on what it observed, sent with its next outputs.
    var queued: [ReplicaID: [Outbound]] = [:]
    var statuses: [ReplicaID: [Status]] = [:]
    var fetches: [ReplicaID: [Fetch]] = [:]
    var rng: SplitMix64
    /// Generators of their own for running ahead of the watermarks and for choosing the NEW-VIEW
    /// size, so the draws of every other weapon stay as they were.
    var aheadRng: SplitMix64
    var newViewRng: SplitMix64
    /// View changes per NEW-VIEW a member sends as primary of a view: 2f (short, must be
    /// refused) or 2f+1 (valid, the ones that report least).
    var newViewSize: [ViewNum: Int] = [:]

    public init(members: [ReplicaID], signers: [ReplicaID: any MessageSigner], config: ProtocolConfig, seed: UInt64) {
        self.members = members.sorted()
        self.signers = signers
        self.config = config
        self.rng = SplitMix64(seed: seed)
        self.aheadRng = SplitMix64(seed: seed ^ 0x5eed_a4ead)
        self.newViewRng = SplitMix64(seed: seed ^ 0x4e3_71e3)
        self.selectiveCommits = rng.chance(0.5)
    }

    /// `vc` claiming no prepared certificate (still valid: nobody can prove what a replica prepared).
    static func withoutCertificates(_ vc: ViewChange, signedBy signer: any MessageSigner, config: ProtocolConfig) -> ViewChange {
        ViewChange(newView: vc.newView, stableSeq: vc.stableSeq, stableDigest: vc.stableDigest, checkpointProof: vc.checkpointProof,
                   prepared: [], replica: vc.replica).signed(with: signer, clusterID: config.clusterID)
    }

    func isMember(_ r: ReplicaID) -> Bool { members.contains(r) }
    var correct: [ReplicaID] { (0..<config.n).filter { !isMember($0) } }

    func sign<M: SignedMessage>(_ m: M, as r: ReplicaID) -> M { m.signed(with: signers[r]!, clusterID: config.clusterID) }

    /// A signature-shaped value that verifies for nobody.
    func garbage<M: SignedMessage>(_ m: M, as r: ReplicaID) -> M {
        var x = sign(m, as: members[0])
        x.signature = x.signature.map { $0 ^ 0xa5 }
        return x
    }

    // MARK: Learning

    /// A verified message a member is about to step on.
    func learn(_ m: Message, member: ReplicaID, counters: inout ByzantineCounters) {
        switch m {
        case .prePrepare(let pp):
            record(pp.header, body: pp.requests)
            doubleVote(pp.header, counters: &counters, by: member)
        case .prepare(let p):
            prepares[VoteKey(view: p.view, seq: p.seq, digest: p.digest), default: [:]][p.replica] = p
        case .commit(let c):
            commits[VoteKey(view: c.view, seq: c.seq, digest: c.digest), default: [:]][c.replica] = c
        case .viewChange(let vc):
            viewChanges[vc.newView, default: [:]][vc.replica] = vc
        case .newView(let nv):
            for vc in nv.viewChanges { viewChanges[vc.newView, default: [:]][vc.replica] = vc }
        case .status(let s) where !isMember(s.replica):
            statuses[member, default: []].append(s)
        case .fetch(let f) where !isMember(f.replica):
            fetches[member, default: []].append(f)
        case .catchUp(let cu):
            for e in cu.entries { record(e.certificate.prePrepare, body: e.requests) }
        default: break
        }
    }

    func record(_ h: PrePrepareHeader, body: [Request]?) {
        if let body { bodies[h.digest] = body }
        var list = headers[h.seq] ?? []
        if !list.contains(where: { $0.view == h.view && $0.digest == h.digest }) {
            list.append(h)
            headers[h.seq] = list
        }
    }

    /// Every member prepares and commits a batch that conflicts with another one seen for the
    /// same view and sequence number (an honest replica votes for the first only).
    func doubleVote(_ h: PrePrepareHeader, counters: inout ByzantineCounters, by member: ReplicaID) {
        let conflicting = (headers[h.seq] ?? []).contains { $0.view == h.view && $0.digest != h.digest }
        let key = VoteKey(view: h.view, seq: h.seq, digest: h.digest)
        guard conflicting, doubleVoted.insert(key).inserted else { return }
        for r in members where r != h.replica {
            queued[member, default: []].append(Outbound(.allReplicas, .prepare(sign(Prepare(view: h.view, seq: h.seq, digest: h.digest, replica: r), as: r))))
        }
        for r in members {
            queued[member, default: []].append(Outbound(.allReplicas, .commit(sign(Commit(view: h.view, seq: h.seq, digest: h.digest, replica: r), as: r))))
        }
        counters.doubleVotes += 1
    }

    /// Forgets what lies below `stable` (bounded memory).
    func prune(below stable: SeqNum) {
        guard stable > 0 else { return }
        headers = headers.filter { $0.key > stable }
        prepares = prepares.filter { $0.key.seq > stable }
        commits = commits.filter { $0.key.seq > stable }
        doubleVoted = doubleVoted.filter { $0.seq > stable }
        var keep: Set<Digest> = [PrePrepare.nullDigest]
        for list in headers.values { for h in list { keep.insert(h.digest) } }
        bodies = bodies.filter { keep.contains($0.key) }
        if let top = viewChanges.keys.max() { viewChanges = viewChanges.filter { $0.key + 8 >= top } }
        if let top = validViewChanges.keys.max() { validViewChanges = validViewChanges.filter { $0.key + 8 >= top } }
        if let top = craftedNewViewCerts.keys.max() { craftedNewViewCerts = craftedNewViewCerts.filter { $0.key + 8 >= top } }
        if let top = newViewSize.keys.max() { newViewSize = newViewSize.filter { $0.key + 8 >= top } }
    }

    /// A batch different from `body` (its requests in another order, or fewer of them).
    static func alternative(to body: [Request]) -> [Request] {
        body.count > 1 ? Array(body.reversed().dropLast()) : []
    }

    /// The digest most replicas committed (or prepared) at `seq`, as far as the coalition saw.
    func favourite(at seq: SeqNum) -> Digest? {
        var best: (Digest, Int)? = nil
        for h in (headers[seq] ?? []) {
            let k = VoteKey(view: h.view, seq: seq, digest: h.digest)
            let weight = (commits[k]?.count ?? 0) * 2 + (prepares[k]?.count ?? 0)
            if best == nil || weight > best!.1 { best = (h.digest, weight) }
        }
        return best?.0
    }

    // MARK: Acting

    /// What member `id` sends instead of the honest `outputs` of `replica`.
    func rewrite(_ outputs: [Outbound], member id: ReplicaID, replica: Replica, counters: inout ByzantineCounters) -> [Outbound] {
        prune(below: replica.stableSeq)
        var result = queued.removeValue(forKey: id) ?? []
        for s in statuses.removeValue(forKey: id) ?? [] { result += shortCatchUp(for: s, member: id, replica: replica, counters: &counters) }
        for f in fetches.removeValue(forKey: id) ?? [] { result += answerFetch(f, member: id, replica: replica, counters: &counters) }
        for o in outputs {
            switch o.message {
            case .prePrepare(let pp) where o.destination == .allReplicas && pp.replica == id:
                result += equivocate(pp, member: id, counters: &counters)
            case .viewChange(let vc) where vc.replica == id:
                let damaging = damagingViewChange(vc, member: id, counters: &counters)
                viewChanges[vc.newView, default: [:]][id] = damaging
                validViewChanges[vc.newView, default: [:]][id] = Self.withoutCertificates(vc, signedBy: signers[id]!, config: config)
                result.append(Outbound(o.destination, .viewChange(damaging)))
            case .newView(let nv) where nv.replica == id && craftedNewViewCerts[nv.view] != nil:
                // The honest NEW-VIEW would overtake the crafted one: withhold it.
                counters.withheld += 1
            case .commit(let c) where c.replica == id && o.destination == .allReplicas
                && (selectiveCommits || isMember(config.primary(of: c.view + 1))):
                // Commits reach one correct replica only (a different one per sequence number):
                // it alone may execute, the others prepared but wait, and change view.
                result += toTarget(o.message, seq: c.seq, member: id)
                counters.withheld += 1
            case .prepare(let p) where p.replica == id && o.destination == .allReplicas && selectiveCommits:
                // Prepares too, to the same replica: with the network hiding that replica's own
                // votes (a one-way partition), it alone prepares; the others never do, change
                // view without it, and a NEW-VIEW that leaves it out may reuse the sequence number.
                result += toTarget(o.message, seq: p.seq, member: id)
                counters.withheld += 1
            default:
                result.append(o)
            }
        }
        result += craftedNewView(member: id, replica: replica, counters: &counters)
        result += aheadOfWatermarks(outputs, member: id, replica: replica, counters: &counters)
        return result
    }

    /// When the member proposes or commits, one time in ten: a pre-prepare (if it leads the view)
    /// and every member's prepare and commit for a sequence number beyond the high watermark.
    /// A correct replica drops them (`outsideWatermarks`); one that took them would keep a slot
    /// for each, beyond its window, until the bounded-state check reports it.
    func aheadOfWatermarks(_ outputs: [Outbound], member id: ReplicaID, replica: Replica, counters: inout ByzantineCounters) -> [Outbound] {
        let acts = outputs.contains {
            switch $0.message {
            case .prePrepare(let pp): return pp.replica == id
            case .commit(let c): return c.replica == id
            default: return false
            }
        }
        guard acts, replica.active, aheadRng.chance(0.1) else { return [] }
        let w = replica.view
        let seq = replica.stableSeq + config.watermarkWindow + 1 + UInt64(aheadRng.int(0...Int(config.watermarkWindow) * 4))
        var digest = PrePrepare.nullDigest
        var out: [Outbound] = []
        if config.primary(of: w) == id {
            let pp = sign(PrePrepare(view: w, seq: seq, replica: id, requests: []), as: id)
            digest = pp.digest
            out.append(Outbound(.allReplicas, .prePrepare(pp)))
        }
        for r in members where r != config.primary(of: w) {
            out.append(Outbound(.allReplicas, .prepare(sign(Prepare(view: w, seq: seq, digest: digest, replica: r), as: r))))
        }
        for r in members {
            out.append(Outbound(.allReplicas, .commit(sign(Commit(view: w, seq: seq, digest: digest, replica: r), as: r))))
        }
        counters.beyondWatermarks += out.count
        return out
    }

    /// `m` to the one correct replica chosen for `seq`, and to the other members.
    func toTarget(_ m: Message, seq: SeqNum, member id: ReplicaID) -> [Outbound] {
        let target = correct[Int(seq % UInt64(max(correct.count, 1)))]
        return [Outbound(.replica(target), m)] + members.filter { $0 != id }.map { Outbound(.replica($0), m) }
    }

    func equivocate(_ pp: PrePrepare, member id: ReplicaID, counters: inout ByzantineCounters) -> [Outbound] {
        record(pp.header, body: pp.requests)
        let victims = Set(correct.rotated(by: Int(pp.seq % UInt64(max(correct.count, 1)))).prefix(config.f))
        var alt = pp
        alt.requests = Self.alternative(to: pp.requests)
        alt = sign(alt, as: id)
        record(alt.header, body: alt.requests)
        var out: [Outbound] = []
        if rng.chance(0.5) {
            // Split: the victims get the other batch only.
            for r in 0..<config.n where r != id {
                out.append(Outbound(.replica(r), .prePrepare(victims.contains(r) ? alt : pp)))
            }
        } else {
            // Both, one after the other, to every backup: a backup must keep the first.
            for r in 0..<config.n where r != id { out.append(Outbound(.replica(r), .prePrepare(pp))) }
            for r in 0..<config.n where r != id { out.append(Outbound(.replica(r), .prePrepare(alt))) }
        }
        // The coalition votes for both.
        var none = ByzantineCounters()
        doubleVote(alt.header, counters: &none, by: id)
        out += queued.removeValue(forKey: id) ?? []
        counters.equivocations += 1
        return out
    }

    /// Prepares for `h` from every backup the coalition has (observed ones and its own).
    func assembledPrepares(_ h: PrePrepareHeader) -> [Prepare] {
        let key = VoteKey(view: h.view, seq: h.seq, digest: h.digest)
        var byReplica = prepares[key] ?? [:]
        for r in members where r != h.replica && byReplica[r] == nil {
            byReplica[r] = sign(Prepare(view: h.view, seq: h.seq, digest: h.digest, replica: r), as: r)
        }
        return byReplica.keys.sorted().filter { $0 != h.replica }.map { byReplica[$0]! }
    }

    enum Forgery: CaseIterable { case tooFewPrepares, repeatedSigner, garbageSignatures }

    /// The member's VIEW-CHANGE with, for each sequence number the coalition knows a conflict or
    /// can make one for, the certificate for the batch most replicas did not commit.
    func damagingViewChange(_ vc: ViewChange, member id: ReplicaID, counters: inout ByzantineCounters) -> ViewChange {
        // Half the time a VIEW-CHANGE a correct replica must accept: genuine certificates only,
        // the ones for batches replicas committed left out (§4.4 relies on the 2f+1 others to
        // report them). Otherwise certificates forged in one way each, which it must refuse.
        let forgery: Forgery? = rng.chance(0.5) ? nil : Forgery.allCases[rng.int(0...(Forgery.allCases.count - 1))]
        let lastSeq = vc.stableSeq + config.watermarkWindow
        var certs: [SeqNum: PreparedCertificate] = [:]
        for c in vc.prepared { certs[c.prePrepare.seq] = c }
        var changed = 0
        for seq in headers.keys.sorted() where seq > vc.stableSeq && seq <= lastSeq {
            let fav = favourite(at: seq)
            let candidates = (headers[seq] ?? []).filter { $0.view < vc.newView && $0.digest != fav && $0.replica == config.primary(of: $0.view) }
            // A genuine certificate for another batch, if the coalition can assemble one.
            if let h = candidates.sorted(by: { $0.view < $1.view }).first(where: { assembledPrepares($0).count >= 2 * config.f }) {
                certs[seq] = PreparedCertificate(prePrepare: h, prepares: assembledPrepares(h))
                changed += 1
                continue
            }
            guard let forgery else {
                if certs.removeValue(forKey: seq) != nil { changed += 1 }
                continue
            }
            // Else one forged for the highest view below the new one that a member led, or a
            // conflicting header already seen.
            var header = candidates.max { $0.view < $1.view }
            if header == nil, let base = (headers[seq] ?? []).filter({ $0.view < vc.newView }).max(by: { $0.view < $1.view }),
               let u = (base.view..<vc.newView).reversed().first(where: { isMember(config.primary(of: $0)) }) {
                let leader = config.primary(of: u)
                var pp = PrePrepare(view: u, seq: seq, replica: leader, requests: Self.alternative(to: bodies[base.digest] ?? []))
                pp = sign(pp, as: leader)
                record(pp.header, body: pp.requests)
                header = pp.header
            }
            guard let h = header else { continue }
            var ps = assembledPrepares(h)
            switch forgery {
            case .tooFewPrepares:
                break
            case .repeatedSigner:
                if let first = ps.first { while ps.count < 2 * config.f { ps.append(first) } }
            case .garbageSignatures:
                for r in correct where ps.count < 2 * config.f && r != h.replica && !ps.contains(where: { $0.replica == r }) {
                    ps.append(garbage(Prepare(view: h.view, seq: h.seq, digest: h.digest, replica: r), as: r))
                }
            }
            certs[seq] = PreparedCertificate(prePrepare: h, prepares: ps)
            changed += 1
        }
        guard changed > 0 else { return vc }
        counters.forgedCertificates += changed
        let prepared = certs.keys.sorted().map { certs[$0]! }
        return sign(ViewChange(newView: vc.newView, stableSeq: vc.stableSeq, stableDigest: vc.stableDigest,
                               checkpointProof: vc.checkpointProof, prepared: prepared, replica: id), as: id)
    }

    /// As the new primary: a NEW-VIEW from the 2f view changes that report the least (one short
    /// of a quorum), or from the 2f+1 that do (valid), then conflicting batches for the sequence
    /// numbers it leaves out.
    func craftedNewView(member id: ReplicaID, replica: Replica, counters: inout ByzantineCounters) -> [Outbound] {
        let w = replica.view
        guard !replica.active, config.primary(of: w) == id, let own = validViewChanges[w]?[id] else { return [] }
        if newViewSize[w] == nil { newViewSize[w] = newViewRng.chance(0.5) ? config.quorum : max(2, config.quorum - 1) }
        let size = newViewSize[w]!
        var pool = (viewChanges[w] ?? [:]).filter { !isMember($0.key) }
        for (r, vc) in validViewChanges[w] ?? [:] where r != id { pool[r] = vc }
        let others = pool.filter { $0.key != id }.values
            .sorted { ($0.prepared.count, $0.replica) < ($1.prepared.count, $1.replica) }
        guard others.count + 1 >= size else { return [] }
        let chosen = ([own] + others.prefix(size - 1)).sorted { $0.replica < $1.replica }
        // Again only when view changes that report less arrived.
        let reported = chosen.reduce(0) { $0 + $1.prepared.count }
        if let sent = craftedNewViewCerts[w], sent <= reported { return [] }
        craftedNewViewCerts[w] = reported
        let proposals = Replica.reproposals(view: w, viewChanges: chosen, config: config).map { sign($0, as: id) }
        let nv = sign(NewView(view: w, viewChanges: chosen, prePrepares: proposals, replica: id), as: id)
        var out = [Outbound(.allReplicas, .newView(nv))]
        if size >= config.quorum { counters.selectiveNewViews += 1 } else { counters.forged += 1 }
        // Conflicting batches where correct replicas may have committed something else.
        let covered = proposals.map(\.seq).max() ?? chosen.map(\.stableSeq).max() ?? 0
        for seq in headers.keys.sorted() where seq > covered && seq <= covered + UInt64(config.maxInFlightBatches) {
            guard let fav = favourite(at: seq), let body = bodies[fav] else { continue }
            let pp = sign(PrePrepare(view: w, seq: seq, replica: id, requests: Self.alternative(to: body)), as: id)
            record(pp.header, body: pp.requests)
            out.append(Outbound(.allReplicas, .prePrepare(pp)))
            for r in members where r != id {
                out.append(Outbound(.allReplicas, .prepare(sign(Prepare(view: w, seq: seq, digest: pp.digest, replica: r), as: r))))
            }
            for r in members {
                out.append(Outbound(.allReplicas, .commit(sign(Commit(view: w, seq: seq, digest: pp.digest, replica: r), as: r))))
            }
            counters.equivocations += 1
        }
        return out
    }

    /// Committed certificates for conflicting batches, with the coalition's commits only, to a
    /// replica whose STATUS shows it behind.
    func shortCatchUp(for s: Status, member id: ReplicaID, replica: Replica, counters: inout ByzantineCounters) -> [Outbound] {
        guard s.lastExecuted < replica.lastExecuted, replica.now >= (lastCatchUp[s.replica] ?? 0) + config.retransmitTicks else { return [] }
        lastCatchUp[s.replica] = replica.now
        var entries: [CatchUpEntry] = []
        for seq in (s.lastExecuted + 1)...min(replica.lastExecuted, s.lastExecuted + 4) {
            let base = (headers[seq] ?? []).max { $0.view < $1.view }
            let alt = Self.alternative(to: base.flatMap { bodies[$0.digest] } ?? [])
            // The pre-prepare of the latest view a member led (its signature is genuine).
            guard let u = (0...replica.view).reversed().first(where: { isMember(config.primary(of: $0)) }) else { return [] }
            let leader = config.primary(of: u)
            let pp = sign(PrePrepare(view: u, seq: seq, replica: leader, requests: alt), as: leader)
            let cs = members.map { sign(Commit(view: u, seq: seq, digest: pp.digest, replica: $0), as: $0) }
            entries.append(CatchUpEntry(certificate: CommittedCertificate(prePrepare: pp.header, commits: cs), requests: alt))
        }
        guard !entries.isEmpty else { return [] }
        counters.forged += entries.count
        return [Outbound(.replica(s.replica), .catchUp(sign(CatchUp(entries: entries, newView: nil, replica: id), as: id)))]
    }

    /// Bodies the coalition made up (so a replica that accepted a forged certificate can
    /// execute it), then a wrong state for a replica asking for one.
    func answerFetch(_ f: Fetch, member id: ReplicaID, replica: Replica, counters: inout ByzantineCounters) -> [Outbound] {
        var out: [Outbound] = []
        for d in f.batches.prefix(Fetch.maxBatches) where d != PrePrepare.nullDigest {
            if let body = bodies[d] { out.append(Outbound(.replica(f.replica), .batch(sign(BatchBody(replica: id, requests: body), as: id)))) }
        }
        guard f.lastExecuted < replica.stableSeq, let (manifest, state) = replica.stableCheckpointState,
              !state.isEmpty, replica.now >= (lastWrongState[f.replica] ?? 0) + config.retransmitTicks else { return out }
        lastWrongState[f.replica] = replica.now
        var wrong = state
        wrong[wrong.count - 1] ^= 0x01
        let chunkBytes = config.stateChunkBytes
        if rng.chance(0.5) {
            // Genuine proof and manifest, a corrupted last chunk.
            let last = max(manifest.chunkDigests.count, 1) - 1
            for index in 0...last {
                let range = manifest.chunkDigests.isEmpty ? 0..<0 : manifest.range(of: index, chunkBytes: chunkBytes)
                let st = StateTransfer(seq: replica.stableSeq, proof: replica.stableCheckpointProof, manifest: manifest,
                                       index: UInt32(index), chunk: Array(wrong[range]), replica: id)
                out.append(Outbound(.replica(f.replica), .stateTransfer(sign(st, as: id))))
            }
        } else {
            // A made-up state one checkpoint later, "proved" by the coalition alone.
            let seq = replica.stableSeq + config.checkpointInterval
            let fake = StateManifest(state: wrong, chunkBytes: chunkBytes)
            var proof = members.map { sign(Checkpoint(seq: seq, digest: fake.digest, replica: $0), as: $0) }
            while proof.count < config.quorum { proof.append(proof[0]) }
            for index in 0..<max(fake.chunkDigests.count, 1) {
                let range = fake.chunkDigests.isEmpty ? 0..<0 : fake.range(of: index, chunkBytes: chunkBytes)
                let st = StateTransfer(seq: seq, proof: proof, manifest: fake, index: UInt32(index), chunk: Array(wrong[range]), replica: id)
                out.append(Outbound(.replica(f.replica), .stateTransfer(sign(st, as: id))))
            }
        }
        counters.forged += 1
        return out
    }
}

extension Array {
    func rotated(by k: Int) -> [Element] {
        guard !isEmpty else { return self }
        let s = ((k % count) + count) % count
        return Array(self[s...] + self[..<s])
    }
}
