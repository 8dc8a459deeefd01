import BFTCrypto

/// Where an output message goes.
public enum Destination: Sendable, Equatable, Hashable {
    case replica(ReplicaID)
    /// Every replica except the sender.
    case allReplicas
    case client(ClientID)
}

public struct Outbound: Sendable, Equatable {
    public var destination: Destination
    public var message: Message
    public init(_ destination: Destination, _ message: Message) {
        self.destination = destination; self.message = message
    }
}

/// Why a peer's message was dropped: one spelling (snake_case, the raw value) for the core's
/// rules and the edge's signature checks, used as the counter label and in logs.
public enum DropReason: String, Sendable, CaseIterable {
    case badNestedSignature = "bad_nested_signature"
    case badSignature = "bad_signature"
    case clientWindowFull = "client_window_full"
    case conflictingCommittedCertificate = "conflicting_committed_certificate"
    case conflictsWithOwnPrepare = "conflicts_with_own_prepare"
    case equivocation = "equivocation"
    case fetchRateLimited = "fetch_rate_limited"
    case futureView = "future_view"
    case invalidCheckpointProof = "invalid_checkpoint_proof"
    case invalidCommittedCertificate = "invalid_committed_certificate"
    case invalidViewChange = "invalid_view_change"
    case invalidViewChangeInNewView = "invalid_view_change_in_new_view"
    case malformedBatch = "malformed_batch"
    case newViewNotFromPrimary = "new_view_not_from_primary"
    case outsideWatermarks = "outside_watermarks"
    case prePrepareNotFromPrimary = "pre_prepare_not_from_primary"
    case prepareFromPrimary = "prepare_from_primary"
    case replayRateLimited = "replay_rate_limited"
    case replyToReplica = "reply_to_replica"
    case reproposalsDoNotFollow = "reproposals_do_not_follow"
    case sessionTimestampJump = "session_timestamp_jump"
    case staleTimestamp = "stale_timestamp"
    case staleView = "stale_view"
    case stateDigestMismatch = "state_digest_mismatch"
    case stateManifestInvalid = "state_manifest_invalid"
    case stateTransferRateLimited = "state_transfer_rate_limited"
    case tooFewViewChanges = "too_few_view_changes"
    case undecodableState = "undecodable_state"
    case unknownPrincipal = "unknown_principal"
    case unwantedBatch = "unwanted_batch"
    case viewChangeInProgress = "view_change_in_progress"
}

/// The view-change phase of a replica for its current view.
public enum ViewPhase: Sendable, Equatable {
    /// Active in the view: pre-prepares, prepares and commits of the view are accepted.
    case normal
    /// Sent VIEW-CHANGE for the view and waiting for its NEW-VIEW; only view-change traffic counts.
    case changing
}

/// Something worth logging or counting. Never a reason to stop.
public enum ReplicaEvent: Sendable, Equatable {
    case viewChangeStarted(view: ViewNum)
    case newViewInstalled(view: ViewNum)
    case checkpointStable(seq: SeqNum, digest: Digest)
    case stateTransferred(seq: SeqNum)
    case checkpointMismatch(seq: SeqNum)
    /// This backup held a client's next request that no pre-prepare carried, and the primary
    /// sent no new pre-prepare for `waitedTicks`: it suspects the primary (a view change follows).
    case prePrepareDeadlineMissed(primary: ReplicaID, waitedTicks: UInt64)
    /// A peer message broken against the protocol rules: dropped, counted by `reason`.
    case dropped(kind: MessageKind, from: Principal, reason: DropReason)
    /// Two validly signed, conflicting messages from one replica for the same view and sequence.
    case equivocation(EquivocationProof)
}

/// Proof of misbehaviour: both messages carry valid signatures of `replica` (they passed the
/// verifier) and conflict for the same view and sequence number.
public struct EquivocationProof: Sendable, Equatable {
    public let replica: ReplicaID
    public let view: ViewNum
    public let seq: SeqNum
    public let first: Message
    public let second: Message
}

/// A decorator on a replica's send: sees every message the replica receives and may rewrite
/// what it sends. Fault injection (the test-only Byzantine behaviours) is written this way, so
/// the honest code has no branches for it and the shells only apply the decorator they are given.
public protocol OutboundInterceptor {
    /// A verified message the replica is about to step on.
    mutating func observe(_ message: Message)
    /// The messages to send instead of `outputs` (the replica's state after its step is given).
    mutating func transform(_ outputs: [Outbound], replica: Replica) -> [Outbound]
}

/// Everything one step of the core produced.
///
/// Ordering contract for the caller: `deliveries` have already been applied to the application
/// (in order, exactly once); `messages` may be sent in any order after the caller has made durable
/// whatever it persists for this step (persist before send), and dropping any of them is safe
/// (the protocol retransmits), but they must not be altered.
public struct ReplicaOutput: Sendable {
    /// Records to make durable before any of `messages` is sent (persist before send).
    public var persist: [PersistRecord] = []
    public var messages: [Outbound] = []
    public var deliveries: [Delivery] = []
    public var events: [ReplicaEvent] = []
    /// Requests accepted on their client's session without a signature check that this replica
    /// now needs checked (a backup would suspect the primary over them): the caller verifies each
    /// and steps it again as a checked request, or calls `discardUnverifiable` for one that fails.
    public var verifyRequests: [Request] = []
    public init() {}

    public var isEmpty: Bool { persist.isEmpty && messages.isEmpty && deliveries.isEmpty && events.isEmpty }
}

/// A PBFT replica as a deterministic state machine (Castro & Liskov, OSDI'99 §4).
///
/// It owns no sockets, files, clocks, randomness or tasks: inputs are verified messages
/// (`step`) and clock ticks (`tick`), effects leave as a `ReplicaOutput`. The application is the
/// only object it calls, synchronously and deterministically, in sequence order.
public struct Replica {
    public let id: ReplicaID
    public let config: ProtocolConfig
    let signer: any MessageSigner
    let app: any ReplicatedApplication

    // MARK: State, in the paper's parts (each checks its own invariants, see Replica+Invariants)
    /// Per-client records with the reply cache, signed reply stubs, pending requests (§4.1).
    var clients: ClientTable
    /// Slots with their certificates, batch bodies, execution progress (§4.2).
    var log = MessageLog()
    /// Stable checkpoint, own checkpoints and votes, state transfer (§4.3).
    var checkpoints = CheckpointState()
    /// View, phase, VIEW-CHANGEs and NEW-VIEW, the timers that suspect the primary (§4.4).
    var viewChange = ViewChangeState()

    /// Current view, or the view being moved to while a view change is in progress.
    public var view: ViewNum { viewChange.view }
    /// Where the replica is in the view-change protocol (§4.4) for `view`.
    public var phase: ViewPhase { viewChange.phase }
    /// False between sending VIEW-CHANGE for `view` and installing its NEW-VIEW.
    public var active: Bool { viewChange.active }
    /// The NEW-VIEW this replica installed last.
    public var lastNewView: NewView? { viewChange.lastNewView }
    public var lastExecuted: SeqNum { log.lastExecuted }
    /// Requests delivered so far (the index of the last delivery).
    public var executedCount: UInt64 { log.executedCount }
    public var stableSeq: SeqNum { checkpoints.stableSeq }
    public var stableDigest: Digest { checkpoints.stableDigest }
    /// Set while `step(_:[VerifiedMessage])` feeds a group of inputs.
    var proposalsDeferred = false

    // MARK: Timers, in ticks
    public internal(set) var now: UInt64 = 0
    var lastProgressTick: UInt64 = 0
    var nextRetransmit: UInt64 = 0
    var nextStatus: UInt64 = 0

    // MARK: Accounting
    public internal(set) var dropCounts: [String: Int] = [:]
    /// Proofs of equivocation, at most `maxEquivocationProofs` (one per replica/view/seq).
    public internal(set) var equivocationProofs: [EquivocationProof] = []
    public let maxEquivocationProofs = 64

    public init(id: ReplicaID, config: ProtocolConfig, signer: any MessageSigner, application: any ReplicatedApplication) {
        precondition(config.validate() == nil, config.validate() ?? "")
        precondition(id >= 0 && id < config.n)
        self.id = id
        self.config = config
        self.signer = signer
        self.app = application
        self.clients = ClientTable(maxPendingPerClient: config.maxPendingPerClient)
        let genesis = checkpointState()
        let manifest = StateManifest(state: genesis, chunkBytes: config.stateChunkBytes)
        self.checkpoints.stableDigest = manifest.digest
        self.checkpoints.stableState = genesis
        self.checkpoints.stableManifest = manifest
        self.nextStatus = config.statusIntervalTicks
        self.nextRetransmit = config.retransmitTicks
    }

    public var primary: ReplicaID { config.primary(of: view) }
    public var isPrimary: Bool { primary == id }
    var f: Int { config.f }
    var highWatermark: SeqNum { stableSeq + config.watermarkWindow }
    public var pendingRequestCount: Int { clients.pending.count }
    /// Highest sequence number with an accepted pre-prepare (for status/lag reporting).
    public var highestSeqSeen: SeqNum { log.slots.keys.max() ?? lastExecuted }

    // MARK: - Inputs

    /// Feeds one verified message.
    public mutating func step(_ input: VerifiedMessage) -> ReplicaOutput {
        var out = ReplicaOutput()
        switch input.message {
        case .request(let r): onRequest(r, signatureChecked: input.signatureChecked, &out)
        case .prePrepare(let m): onPrePrepare(m, &out)
        case .prepare(let m): onPrepare(m, &out)
        case .commit(let m): onCommit(m, &out)
        case .checkpoint(let m): onCheckpoint(m, &out)
        case .viewChange(let m): onViewChange(m, &out)
        case .newView(let m): onNewView(m, &out)
        case .status(let m): onStatus(m, &out)
        case .fetch(let m): onFetch(m, &out)
        case .catchUp(let m): onCatchUp(m, &out)
        case .stateTransfer(let m): onStateTransfer(m, &out)
        case .batch(let m): onBatch(m, &out)
        case .reply(let m): drop(.reply, .replica(m.replica), .replyToReplica, &out)
        }
        return out
    }

    /// Feeds several verified messages as one step. The primary cuts batches once, after all of
    /// them, so requests that arrive together are ordered together.
    public mutating func step(_ inputs: [VerifiedMessage]) -> ReplicaOutput {
        var out = ReplicaOutput()
        proposalsDeferred = true
        for input in inputs {
            let o = step(input)
            out.persist += o.persist; out.messages += o.messages; out.deliveries += o.deliveries; out.events += o.events
            out.verifyRequests += o.verifyRequests
        }
        proposalsDeferred = false
        tryPropose(&out)
        return out
    }

    /// Advances logical time by one tick: timers, retransmission, heartbeats.
    public mutating func tick() -> ReplicaOutput { tick(now: now + 1) }

    /// Advances logical time to `newNow` (ticks; time comes from outside — the node's timer,
    /// the simulator's clock), then runs the timers once.
    public mutating func tick(now newNow: UInt64) -> ReplicaOutput {
        var out = ReplicaOutput()
        now = max(now, newNow)
        if let deadline = viewChange.deadline, now >= deadline {
            viewChange.deadline = nil
            startViewChange(to: view + 1, &out)
        }
        checkPrePrepareDeadline(&out)
        if now >= nextRetransmit {
            nextRetransmit = now + config.retransmitTicks
            retransmit(&out)
        }
        if now >= nextStatus {
            nextStatus = now + config.statusIntervalTicks
            let s = Status(view: view, lastExecuted: lastExecuted, stableSeq: stableSeq, replica: id)
            send(.allReplicas, .status(sign(s)), &out)
        }
        return out
    }

    // MARK: - Helpers

    func sign<M: SignedMessage>(_ m: M) -> M { m.signed(with: signer, clusterID: config.clusterID) }

    func send(_ d: Destination, _ m: Message, _ out: inout ReplicaOutput) {
        out.messages.append(Outbound(d, m))
    }

    mutating func drop(_ kind: MessageKind, _ from: Principal, _ reason: DropReason, _ out: inout ReplicaOutput) {
        dropCounts[reason.rawValue, default: 0] += 1
        out.events.append(.dropped(kind: kind, from: from, reason: reason))
    }

    mutating func recordEquivocation(replica: ReplicaID, view: ViewNum, seq: SeqNum, _ a: Message, _ b: Message, _ out: inout ReplicaOutput) {
        if equivocationProofs.contains(where: { $0.replica == replica && $0.view == view && $0.seq == seq }) { return }
        guard equivocationProofs.count < maxEquivocationProofs else { return }
        let proof = EquivocationProof(replica: replica, view: view, seq: seq, first: a, second: b)
        equivocationProofs.append(proof)
        out.events.append(.equivocation(proof))
        (app as? MisbehaviourObserver)?.observed(equivocation: proof)
    }

    func inWindow(_ seq: SeqNum) -> Bool { seq > stableSeq && seq <= highWatermark }

    func viewChangeTimeout() -> UInt64 {
        let shift = UInt64(min(max(viewChange.attempts - 1, 0), 16))
        return min(config.viewChangeTimeoutTicks << shift, config.maxViewChangeTimeoutTicks)
    }

    /// Timestamp after which request `r` would be the next one executable for its client.
    func nextExecutable(_ r: Request, after last: UInt64) -> Bool {
        r.timestamp == last + 1 || (r.sessionStart && r.timestamp > last && r.timestamp - last <= config.maxSessionTimestampJump)
    }

    /// True when some pending request is one an honest primary must order next: the
    /// view-change timer runs only for those, so a client that skips timestamps cannot make
    /// replicas suspect a correct primary.
    func hasOrderablePending() -> Bool {
        for c in clients.pending.order {
            guard let first = clients.pending.byClient[c]?.first else { continue }
            let last = max(clients.records[c]?.lastTimestamp ?? 0, clients.proposedTimestamps[c] ?? 0)
            if first.timestamp <= last { return true }  // assigned but not yet executed
            if nextExecutable(first, after: last) && clients.pending.isChecked(first) { return true }
        }
        return false
    }

    /// Backups: true when some client's next request is pending here and no accepted
    /// pre-prepare carries it, i.e. the primary has something it should be ordering.
    func hasUnproposedPending() -> Bool { !unproposedPending(limit: 1).isEmpty }

    /// Backups: each client's next request that is pending here and in no accepted pre-prepare.
    func unproposedPending(limit: Int) -> [Request] {
        var found: [Request] = []
        for c in clients.pending.order where found.count < limit {
            guard let list = clients.pending.byClient[c] else { continue }
            let last = max(clients.records[c]?.lastTimestamp ?? 0, clients.proposedTimestamps[c] ?? 0)
            if let r = list.first(where: { $0.timestamp > last }), nextExecutable(r, after: last), clients.pending.isChecked(r) { found.append(r) }
        }
        return found
    }

    /// Each client's next request that is pending unchecked and that no pre-prepare carries.
    func uncheckedUnproposed(limit: Int) -> [Request] {
        var found: [Request] = []
        for c in clients.pending.order where found.count < limit {
            guard let list = clients.pending.byClient[c] else { continue }
            let last = max(clients.records[c]?.lastTimestamp ?? 0, clients.proposedTimestamps[c] ?? 0)
            if let r = list.first(where: { $0.timestamp > last }), nextExecutable(r, after: last), !clients.pending.isChecked(r) { found.append(r) }
        }
        return found
    }

    /// A backup monitors the primary only for signature-checked requests. A client's next request
    /// that arrived unchecked over its session and that no pre-prepare carries for half the
    /// pre-prepare deadline is handed to the caller for a check; once checked, the deadline
    /// applies to it. So a slow or censoring primary is still suspected (after 1.5 deadlines
    /// instead of one), while under normal load requests are proposed before anyone checks them
    /// here, and a client with bad signatures cannot make a correct primary look faulty.
    mutating func askToVerifyUnchecked(_ out: inout ReplicaOutput) {
        let waiting = uncheckedUnproposed(limit: Replica.maxForwardedRequests)
        guard !waiting.isEmpty else { clients.uncheckedDeadline = nil; return }
        guard let deadline = clients.uncheckedDeadline else { clients.uncheckedDeadline = now + max(1, viewChangeTimeout() / 4); return }
        guard now >= deadline else { return }
        clients.uncheckedDeadline = nil
        for r in waiting where clients.verificationAsked.insert(r.digest).inserted { out.verifyRequests.append(r) }
        if clients.verificationAsked.count > 4 * config.clientCount * config.maxPendingPerClient + 64 {
            clients.verificationAsked = clients.verificationAsked.filter { clients.pending.unchecked.contains($0) }
        }
    }

    /// An unchecked request whose signature failed the caller's check: forgotten, never proposed.
    public mutating func discardUnverifiable(_ r: Request) {
        guard clients.pending.unchecked.contains(r.digest), var list = clients.pending.byClient[r.client] else { return }
        list.removeAll { $0.digest == r.digest }
        clients.pending.unchecked.remove(r.digest)
        if list.isEmpty {
            clients.pending.byClient[r.client] = nil
            clients.pending.order.removeAll { $0 == r.client }
        } else {
            clients.pending.byClient[r.client] = list
        }
    }

    /// Most requests a backup forwards to the primary at once (one per client).
    static let maxForwardedRequests = 64

    /// Monitoring of the primary's pace, after Aardvark (Clement et al., NSDI'09). The view-change
    /// timer only catches a primary that keeps a request from executing for the whole timeout, so
    /// a primary that holds every pre-prepare for just under it keeps its view while throughput
    /// collapses. So a backup holding a client's next request that no pre-prepare carries expects
    /// *some* new pre-prepare within half the (current) view-change timeout. A correct primary
    /// whose pipeline or window is full still sends one each time a batch executes, so load alone
    /// does not make it suspect.
    mutating func checkPrePrepareDeadline(_ out: inout ReplicaOutput) {
        if active && !isPrimary && !clients.pending.unchecked.isEmpty { askToVerifyUnchecked(&out) }
        guard active, !isPrimary, hasUnproposedPending() else { viewChange.prePrepareDeadline = nil; return }
        let wait = max(1, viewChangeTimeout() / 2)
        guard let deadline = viewChange.prePrepareDeadline else { viewChange.prePrepareDeadline = now + wait; return }
        if now == deadline - wait / 2 {
            // Halfway: the primary may simply not have the request (its copy was lost, or refused
            // while that client's window was full there). Forward it, as PBFT backups do, so a
            // correct primary can propose it before the deadline; the client's own retransmission
            // may come too late.
            for r in unproposedPending(limit: Replica.maxForwardedRequests) { send(.replica(primary), .request(r), &out) }
        }
        if now >= deadline {
            viewChange.prePrepareDeadline = nil
            out.events.append(.prePrepareDeadlineMissed(primary: primary, waitedTicks: wait))
            startViewChange(to: view + 1, &out)
        }
    }

    mutating func armViewChangeTimerIfNeeded() {
        guard active else { return }
        if hasOrderablePending() {
            if viewChange.deadline == nil { viewChange.deadline = now + viewChangeTimeout() }
        } else {
            viewChange.deadline = nil
        }
    }

    // MARK: - Requests (§4.1)

    mutating func onRequest(_ r: Request, signatureChecked: Bool = true, _ out: inout ReplicaOutput) {
        let record = clients.records[r.client] ?? ClientRecord()
        if r.timestamp <= record.lastTimestamp {
            // Already executed: resend the cached reply, never execute twice.
            resendCachedReply(r, record, &out)
            return
        }
        if r.sessionStart && r.timestamp - record.lastTimestamp > config.maxSessionTimestampJump && r.timestamp != record.lastTimestamp + 1 {
            return drop(.request, .client(r.client), .sessionTimestampJump, &out)
        }
        switch clients.pending.insert(r, signatureChecked: signatureChecked) {
        case .inserted: break
        case .duplicate: return
        case .nowChecked:
            // Checked because no pre-prepare carried it for a while (`askToVerifyUnchecked`): the
            // primary may have refused it (its window for that client was full), so forward it
            // now, as a backup does halfway to the pre-prepare deadline.
            if active && !isPrimary, unproposedPending(limit: Replica.maxForwardedRequests).contains(where: { $0.digest == r.digest }) {
                send(.replica(primary), .request(r), &out)
            }
        case .full:
            drop(.request, .client(r.client), .clientWindowFull, &out)
            return
        }
        if isPrimary && active && !proposalsDeferred {
            tryPropose(&out)
        }
        armViewChangeTimerIfNeeded()
    }

    /// A replayed or retransmitted request that already executed gets the reply this replica
    /// signed when it executed it, not a new signature; resends are rate-limited per client, so
    /// replaying captured request frames costs the replica a lookup, not a signature each.
    mutating func resendCachedReply(_ r: Request, _ record: ClientRecord, _ out: inout ReplicaOutput) {
        guard let cached = record.replies.last(where: { $0.timestamp == r.timestamp }) else {
            return drop(.request, .client(r.client), .staleTimestamp, &out)
        }
        let interval = now / max(config.retransmitTicks, 1)
        var budget = clients.replayBudget[r.client] ?? (interval, 0)
        if budget.interval != interval { budget = (interval, 0) }
        guard budget.sent < config.maxReplayRepliesPerInterval else {
            return drop(.request, .client(r.client), .replayRateLimited, &out)
        }
        budget.sent += 1
        clients.replayBudget[r.client] = budget
        if let stub = clients.signedReplies[r.client]?.last(where: { $0.timestamp == r.timestamp }) {
            send(.client(r.client), .reply(stub.reply(client: r.client, replica: id, result: cached.result)), &out)
            return
        }
        // Executed before a restart or a state transfer: sign once, then keep it.
        let reply = sign(Reply(view: view, timestamp: r.timestamp, client: r.client, replica: id, result: cached.result))
        rememberSignedReply(reply)
        send(.client(r.client), .reply(reply), &out)
    }

    mutating func rememberSignedReply(_ reply: Reply) {
        var list = clients.signedReplies[reply.client] ?? []
        list.append(SignedReplyStub(reply))
        if list.count > config.replyCacheDepth { list.removeFirst(list.count - config.replyCacheDepth) }
        clients.signedReplies[reply.client] = list
    }

    /// Primary: assigns sequence numbers to batches while the pipeline and the window allow.
    mutating func tryPropose(_ out: inout ReplicaOutput) {
        guard isPrimary && active else { return }
        while log.nextSeq <= highWatermark && Int(log.nextSeq - 1 - min(lastExecuted, log.nextSeq - 1)) < config.maxInFlightBatches {
            let batch = cutBatch()
            if batch.isEmpty { return }
            let pp = sign(PrePrepare(view: view, seq: log.nextSeq, replica: id, requests: batch))
            out.persist.append(.ownMessage(.prePrepare(pp)))
            log.batches[pp.digest] = pp.requests
            log.nextSeq += 1
            send(.allReplicas, .prePrepare(pp), &out)
            acceptPrePrepare(pp.header, &out)
        }
    }

    /// Takes requests fairly across clients, each client's in timestamp order with no gaps.
    mutating func cutBatch() -> [Request] {
        var batch: [Request] = []
        var bytes = 0
        let clientsInOrder = clients.pending.order
        guard !clientsInOrder.isEmpty else { return [] }
        let start = clients.pending.rotation % clientsInOrder.count
        clients.pending.rotation &+= 1
        for k in 0..<clientsInOrder.count {
            let c = clientsInOrder[(start + k) % clientsInOrder.count]
            guard let list = clients.pending.byClient[c] else { continue }
            var last = max(clients.records[c]?.lastTimestamp ?? 0, clients.proposedTimestamps[c] ?? 0)
            for r in list where r.timestamp > last {
                guard nextExecutable(r, after: last), clients.pending.isChecked(r) else { break }
                let size = r.operation.count + 81  // the request's encoded size
                if batch.count >= config.maxBatchRequests || bytes + size > config.maxBatchBytes {
                    return batch
                }
                batch.append(r)
                bytes += size
                last = r.timestamp
                clients.proposedTimestamps[c] = last
            }
        }
        return batch
    }

    // MARK: - Normal case (§4.2)

    mutating func onPrePrepare(_ pp: PrePrepare, _ out: inout ReplicaOutput) {
        let from = Principal.replica(pp.replica)
        guard pp.replica == config.primary(of: pp.view) else { return drop(.prePrepare, from, .prePrepareNotFromPrimary, &out) }
        guard pp.view == view else { return drop(.prePrepare, from, pp.view < view ? .staleView : .futureView, &out) }
        guard active else { return drop(.prePrepare, from, .viewChangeInProgress, &out) }
        guard pp.replica != id else { return }
        // Signed by the primary of our view: it is making progress, even if this replica lags
        // too far behind to accept it.
        viewChange.prePrepareDeadline = nil
        guard inWindow(pp.seq) else { return drop(.prePrepare, from, .outsideWatermarks, &out) }
        guard pp.requests.count <= config.maxBatchRequests, batchIsWellFormed(pp.requests) else {
            return drop(.prePrepare, from, .malformedBatch, &out)
        }
        if let existing = log.slots[pp.seq]?.prePrepare {
            if existing.digest != pp.digest {
                let first: Message = log.batches[existing.digest].map { .prePrepare(PrePrepare(header: existing, requests: $0)) }
                    ?? .prePrepare(PrePrepare(header: existing, requests: []))
                recordEquivocation(replica: pp.replica, view: pp.view, seq: pp.seq, first, .prePrepare(pp), &out)
                drop(.prePrepare, from, .equivocation, &out)
            } else {
                storeBody(pp.requests, digest: pp.digest, &out)
            }
            return
        }
        if let mine = log.slots[pp.seq]?.prepares[id], mine.view == pp.view, mine.digest != pp.digest {
            // We prepared another batch for this view and sequence before a restart: never contradict it.
            return drop(.prePrepare, from, .conflictsWithOwnPrepare, &out)
        }
        storeBody(pp.requests, digest: pp.digest, &out)
        acceptPrePrepare(pp.header, &out)
    }

    /// Keeps a batch body whose digest was checked, persisting it the first time (a backup that
    /// prepared a batch must still have it after a crash: a later view may re-propose the digest).
    mutating func storeBody(_ requests: [Request], digest: Digest, _ out: inout ReplicaOutput) {
        guard log.batches[digest] == nil else { return }
        log.batches[digest] = requests
        out.persist.append(.batch(requests))
    }

    /// Digests named by slots above the last executed sequence number whose body this replica lacks.
    func missingBodies(limit: Int) -> [Digest] {
        var found: [Digest] = []
        for seq in log.slots.keys.sorted() where seq > lastExecuted {
            guard found.count < limit, let slot = log.slots[seq] else { break }
            let d = slot.committedCertificate?.prePrepare.digest ?? slot.digest
            if let d, log.batches[d] == nil, !found.contains(d) { found.append(d) }
        }
        return found
    }

    /// No request twice in one batch, and each client's requests in increasing timestamp order.
    func batchIsWellFormed(_ requests: [Request]) -> Bool {
        var last: [ClientID: UInt64] = [:]
        for r in requests {
            if let l = last[r.client], r.timestamp <= l { return false }
            last[r.client] = r.timestamp
        }
        return true
    }

    /// Logs a pre-prepare of the current view and, at a backup, multicasts PREPARE. Preparing
    /// needs only the signed digest; executing needs the body (fetched if missing).
    mutating func acceptPrePrepare(_ pp: PrePrepareHeader, _ out: inout ReplicaOutput) {
        var slot = log.slots[pp.seq] ?? Slot()
        slot.prePrepare = pp
        slot.digest = pp.digest
        log.slots[pp.seq] = slot
        if pp.replica != id {
            // The primary is making progress: the pre-prepare deadline starts again, and its
            // requests count as proposed here too (for `hasUnproposedPending`).
            viewChange.prePrepareDeadline = nil
            for r in log.batches[pp.digest] ?? [] { clients.proposedTimestamps[r.client] = max(clients.proposedTimestamps[r.client] ?? 0, r.timestamp) }
            let p = sign(Prepare(view: view, seq: pp.seq, digest: pp.digest, replica: id))
            if log.slots[pp.seq]!.prepares[id] != p { out.persist.append(.ownMessage(.prepare(p))) }
            log.slots[pp.seq]!.prepares[id] = p
            send(.allReplicas, .prepare(p), &out)
        }
        checkPrepared(pp.seq, &out)
    }

    mutating func onPrepare(_ p: Prepare, _ out: inout ReplicaOutput) {
        let from = Principal.replica(p.replica)
        guard p.view == view else { return drop(.prepare, from, p.view < view ? .staleView : .futureView, &out) }
        guard active else { return drop(.prepare, from, .viewChangeInProgress, &out) }
        guard p.replica != config.primary(of: p.view) else { return drop(.prepare, from, .prepareFromPrimary, &out) }
        guard inWindow(p.seq) else { return drop(.prepare, from, .outsideWatermarks, &out) }
        var slot = log.slots[p.seq] ?? Slot()
        if let existing = slot.prepares[p.replica] {
            if existing.digest != p.digest {
                recordEquivocation(replica: p.replica, view: p.view, seq: p.seq, .prepare(existing), .prepare(p), &out)
                drop(.prepare, from, .equivocation, &out)
            }
            return
        }
        slot.prepares[p.replica] = p
        log.slots[p.seq] = slot
        checkPrepared(p.seq, &out)
    }

    /// prepared(m, v, n, i): pre-prepare plus 2f matching prepares from distinct backups.
    mutating func checkPrepared(_ seq: SeqNum, _ out: inout ReplicaOutput) {
        guard var slot = log.slots[seq], !slot.prepared, let pp = slot.prePrepare, let d = slot.digest else { return }
        let matching = slot.prepares.values
            .filter { $0.view == pp.view && $0.digest == d && $0.replica != pp.replica }
            .sorted { $0.replica < $1.replica }
        guard matching.count >= 2 * f else { return }
        slot.prepared = true
        slot.preparedCertificate = PreparedCertificate(prePrepare: pp, prepares: Array(matching.prefix(2 * f)))
        out.persist.append(.prepared(slot.preparedCertificate!))
        let c = sign(Commit(view: view, seq: seq, digest: d, replica: id))
        out.persist.append(.ownMessage(.commit(c)))
        slot.commits[id] = c
        log.slots[seq] = slot
        send(.allReplicas, .commit(c), &out)
        checkCommitted(seq, &out)
    }

    mutating func onCommit(_ c: Commit, _ out: inout ReplicaOutput) {
        let from = Principal.replica(c.replica)
        guard c.view == view else { return drop(.commit, from, c.view < view ? .staleView : .futureView, &out) }
        guard active else { return drop(.commit, from, .viewChangeInProgress, &out) }
        guard inWindow(c.seq) else { return drop(.commit, from, .outsideWatermarks, &out) }
        var slot = log.slots[c.seq] ?? Slot()
        if let existing = slot.commits[c.replica] {
            if existing.digest != c.digest {
                recordEquivocation(replica: c.replica, view: c.view, seq: c.seq, .commit(existing), .commit(c), &out)
                drop(.commit, from, .equivocation, &out)
            }
            return
        }
        slot.commits[c.replica] = c
        log.slots[c.seq] = slot
        checkCommitted(c.seq, &out)
    }

    /// committed-local(m, v, n, i): prepared plus 2f+1 matching commits.
    mutating func checkCommitted(_ seq: SeqNum, _ out: inout ReplicaOutput) {
        guard var slot = log.slots[seq], slot.prepared, !slot.committed, let pp = slot.prePrepare, let d = slot.digest else { return }
        let matching = slot.commits.values.filter { $0.view == pp.view && $0.digest == d }.sorted { $0.replica < $1.replica }
        guard matching.count >= config.quorum else { return }
        slot.committed = true
        slot.committedCertificate = CommittedCertificate(prePrepare: pp, commits: Array(matching.prefix(config.quorum)))
        out.persist.append(.committed(slot.committedCertificate!))
        log.slots[seq] = slot
        executeReady(&out)
    }

    // MARK: - Execution (§4.2, exactly-once and per-client order)

    mutating func executeReady(_ out: inout ReplicaOutput) {
        var progressed = false
        while let slot = log.slots[lastExecuted + 1], slot.committed, let cert = slot.committedCertificate,
              let body = log.batches[cert.prePrepare.digest] {
            execute(PrePrepare(header: cert.prePrepare, requests: body), &out)
            progressed = true
        }
        if progressed {
            lastProgressTick = now
            viewChange.prePrepareDeadline = nil
            if active {
                viewChange.attempts = 0
                viewChange.deadline = nil
                armViewChangeTimerIfNeeded()
            }
            if isPrimary && active && !proposalsDeferred {
                if log.nextSeq <= lastExecuted { log.nextSeq = lastExecuted + 1 }
                tryPropose(&out)
            }
        }
    }

    mutating func execute(_ pp: PrePrepare, _ out: inout ReplicaOutput) {
        let seq = pp.seq
        var replies: [Reply] = []
        for r in pp.requests {
            var record = clients.records[r.client] ?? ClientRecord()
            // Repeated or out-of-order timestamps are never executed: the client retransmits.
            guard r.timestamp > record.lastTimestamp else { continue }
            guard nextExecutable(r, after: record.lastTimestamp) else {
                // A gap (only a faulty primary or a view change leaves one): let it be proposed again.
                clients.proposedTimestamps[r.client] = nil
                continue
            }
            log.executedCount += 1
            let ctx = ExecutionContext(client: r.client, timestamp: r.timestamp, seq: seq, index: executedCount)
            let result = app.execute(r.operation, context: ctx)
            record.lastTimestamp = r.timestamp
            record.replies.append((r.timestamp, result))
            if record.replies.count > config.replyCacheDepth { record.replies.removeFirst(record.replies.count - config.replyCacheDepth) }
            clients.records[r.client] = record
            clients.pending.removeUpTo(client: r.client, timestamp: r.timestamp)
            if let p = clients.proposedTimestamps[r.client], p <= r.timestamp { clients.proposedTimestamps[r.client] = nil }
            out.deliveries.append(Delivery(index: executedCount, seq: seq, view: pp.view, client: r.client,
                                           timestamp: r.timestamp, digest: r.digest, result: result))
            replies.append(Reply(view: view, timestamp: r.timestamp, client: r.client, replica: id, result: result, seq: seq))
        }
        if !replies.isEmpty {
            // One signature for the whole batch's replies (it covers every reply's entry).
            let entries = replies.map(\.entryDigest)
            var signed = replies[0]
            signed.entries = entries
            signed = sign(signed)
            for var reply in replies {
                reply.entries = entries
                reply.signature = signed.signature
                rememberSignedReply(reply)
                send(.client(reply.client), .reply(reply), &out)
            }
        }
        log.lastExecuted = seq
        if seq % config.checkpointInterval == 0 {
            takeCheckpoint(seq, &out)
        }
    }

    // MARK: - Checkpoints and garbage collection (§4.3)

    /// The state a checkpoint certifies: delivery count, client table and application snapshot.
    func checkpointState() -> [UInt8] {
        let snapshot = app.snapshot()
        var w = WireWriter(capacity: 64 + snapshot.count + clients.records.count * 32)
        w.u64(executedCount)
        let ids = clients.records.keys.sorted()
        w.u32(UInt32(ids.count))
        for c in ids {
            let rec = clients.records[c]!
            w.u32(c); w.u64(rec.lastTimestamp)
            w.u32(UInt32(rec.replies.count))
            for (t, res) in rec.replies { w.u64(t); w.blob(res) }
        }
        w.blob(snapshot)
        return w.bytes
    }

    mutating func restoreCheckpointState(_ bytes: [UInt8]) throws {
        var r = WireReader(bytes)
        let count = try r.u64()
        let n = try r.count(field: "clients", limit: max(config.clientCount, 0), minElementBytes: 16)
        var table: [ClientID: ClientRecord] = [:]
        for _ in 0..<n {
            let c = try r.u32()
            var rec = ClientRecord()
            rec.lastTimestamp = try r.u64()
            let k = try r.count(field: "replies", limit: config.replyCacheDepth, minElementBytes: 12)
            for _ in 0..<k { rec.replies.append((try r.u64(), try r.blob(field: "result", limit: config.maxResultBytes))) }
            table[c] = rec
        }
        let snapshot = try r.blob(field: "snapshot", limit: config.maxApplicationStateBytes)
        try r.finish()
        try app.restore(from: snapshot)
        log.executedCount = count
        clients.records = table
        clients.signedReplies = [:]
    }

    mutating func takeCheckpoint(_ seq: SeqNum, _ out: inout ReplicaOutput) {
        let state = checkpointState()
        let manifest = StateManifest(state: state, chunkBytes: config.stateChunkBytes)
        let digest = manifest.digest
        checkpoints.own[seq] = (digest, manifest, state)
        let cp = sign(Checkpoint(seq: seq, digest: digest, replica: id))
        checkpoints.votes[seq, default: [:]][id] = cp
        send(.allReplicas, .checkpoint(cp), &out)
        if seq == stableSeq && checkpoints.stableState == nil {
            // We adopted this checkpoint as stable before reaching it (from a NEW-VIEW or from
            // 2f+1 CHECKPOINTs); now that we reached it ourselves we can serve its state.
            if digest == stableDigest {
                checkpoints.stableState = state
                checkpoints.stableManifest = manifest
                persistCheckpoint(seq: seq, digest: digest, proof: checkpoints.stableProof, state: state, &out)
            } else {
                out.events.append(.checkpointMismatch(seq: seq))
            }
        }
        checkStable(seq, &out)
    }

    mutating func onCheckpoint(_ cp: Checkpoint, _ out: inout ReplicaOutput) {
        guard cp.seq > stableSeq, cp.seq % config.checkpointInterval == 0 else { return }
        guard cp.seq <= highWatermark + config.watermarkWindow else {
            return drop(.checkpoint, .replica(cp.replica), .outsideWatermarks, &out)
        }
        checkpoints.votes[cp.seq, default: [:]][cp.replica] = cp
        let before = stableSeq
        checkStable(cp.seq, &out)
        // A higher low watermark opens the window: a primary held at its high watermark proposes.
        if stableSeq > before && !proposalsDeferred { tryPropose(&out) }
    }

    /// A checkpoint is stable once 2f+1 replicas signed the same digest for it.
    mutating func checkStable(_ seq: SeqNum, _ out: inout ReplicaOutput) {
        guard seq > stableSeq, let votes = checkpoints.votes[seq] else { return }
        var byDigest: [Digest: [Checkpoint]] = [:]
        for cp in votes.values { byDigest[cp.digest, default: []].append(cp) }
        guard let (digest, proofVotes) = byDigest.first(where: { $0.value.count >= config.quorum }) else { return }
        let proof = Array(proofVotes.sorted { $0.replica < $1.replica }.prefix(config.quorum))
        var state: (StateManifest, [UInt8])? = nil
        if let own = checkpoints.own[seq] {
            if own.digest == digest {
                state = (own.manifest, own.state)
            } else {
                out.events.append(.checkpointMismatch(seq: seq))
            }
        }
        makeStable(seq: seq, digest: digest, proof: proof, state: state, &out)
        if state == nil { requestFetch(from: proof.first { $0.replica != id }?.replica, &out) }
    }

    /// Moves the low watermark to `seq` and discards everything at or below it.
    mutating func makeStable(seq: SeqNum, digest: Digest, proof: [Checkpoint], state: (StateManifest, [UInt8])?, _ out: inout ReplicaOutput) {
        guard seq > stableSeq else { return }
        checkpoints.stableSeq = seq
        checkpoints.stableDigest = digest
        checkpoints.stableProof = proof
        checkpoints.stableManifest = state?.0
        checkpoints.stableState = state?.1
        checkpoints.stableTransferSignature = nil
        log.slots = log.slots.filter { $0.key > seq }
        collectBodies()
        if let state {
            persistCheckpoint(seq: seq, digest: digest, proof: proof, state: state.1, &out)
        } else {
            out.persist.append(.stableCheckpoint(seq: seq, digest: digest, proof: proof))
        }
        checkpoints.votes = checkpoints.votes.filter { $0.key > seq }
        checkpoints.own = checkpoints.own.filter { $0.key > seq }
        if let incoming = checkpoints.incomingState, incoming.seq < seq || (incoming.seq == seq && state != nil) { checkpoints.incomingState = nil }
        if log.nextSeq <= seq { log.nextSeq = seq + 1 }
        out.events.append(.checkpointStable(seq: seq, digest: digest))
    }

    /// Keeps only the bodies that slots still name (and the null batch).
    mutating func collectBodies() {
        var keep: Set<Digest> = [PrePrepare.nullDigest]
        for slot in log.slots.values {
            if let d = slot.digest { keep.insert(d) }
            if let c = slot.committedCertificate { keep.insert(c.prePrepare.digest) }
            if let p = slot.preparedCertificate { keep.insert(p.prePrepare.digest) }
        }
        log.batches = log.batches.filter { keep.contains($0.key) }
    }

    /// A checkpoint record lets the log drop everything before it, so everything still needed
    /// above the checkpoint is written again after it: the log from a checkpoint record on is
    /// enough to recover.
    func persistCheckpoint(seq: SeqNum, digest: Digest, proof: [Checkpoint], state: [UInt8], _ out: inout ReplicaOutput) {
        out.persist.append(.checkpoint(seq: seq, digest: digest, proof: proof, state: state))
        out.persist.append(.view(view, active: active))
        if let nv = lastNewView { out.persist.append(.newView(nv)) }
        var written: Set<Digest> = [PrePrepare.nullDigest]
        for seq in log.slots.keys.sorted() {
            guard let slot = log.slots[seq] else { continue }
            for d in [slot.digest, slot.committedCertificate?.prePrepare.digest, slot.preparedCertificate?.prePrepare.digest] {
                if let d, let body = log.batches[d], written.insert(d).inserted { out.persist.append(.batch(body)) }
            }
            if let pp = slot.prePrepare, pp.replica == id, let body = log.batches[pp.digest] {
                out.persist.append(.ownMessage(.prePrepare(PrePrepare(header: pp, requests: body))))
            }
            if let p = slot.prepares[id] { out.persist.append(.ownMessage(.prepare(p))) }
            if let c = slot.commits[id] { out.persist.append(.ownMessage(.commit(c))) }
            if let cert = slot.preparedCertificate { out.persist.append(.prepared(cert)) }
            if let cert = slot.committedCertificate { out.persist.append(.committed(cert)) }
        }
        if let vc = viewChange.received[id] { out.persist.append(.ownMessage(.viewChange(vc))) }
    }

    // MARK: - Catch-up and state transfer

    /// Sends FETCH (at most once per `fetchCooldownTicks`, unless `continuing` a state transfer
    /// whose last requested chunks all arrived): it names the chunk of the checkpoint state we
    /// assemble, and the batch bodies we lack.
    mutating func requestFetch(from peer: ReplicaID?, continuing: Bool = false, _ out: inout ReplicaOutput) {
        if !continuing, let last = checkpoints.lastFetchSent, now < last + config.fetchCooldownTicks { return }
        checkpoints.lastFetchSent = now
        if checkpoints.incomingState != nil { checkpoints.incomingState!.requestedUpTo = checkpoints.incomingState!.firstMissing + config.stateTransferBurstChunks }
        let fetch = makeFetch()
        if let peer, peer != id {
            send(.replica(peer), .fetch(fetch), &out)
        } else {
            send(.allReplicas, .fetch(fetch), &out)
        }
    }

    func makeFetch() -> Fetch {
        sign(Fetch(view: view, lastExecuted: lastExecuted, replica: id,
                   stateSeq: checkpoints.incomingState?.seq ?? 0, nextChunk: UInt32(checkpoints.incomingState?.firstMissing ?? 0),
                   batches: missingBodies(limit: Fetch.maxBatches)))
    }

    mutating func onStatus(_ s: Status, _ out: inout ReplicaOutput) {
        guard s.replica != id else { return }
        checkpoints.peerStatus[s.replica] = s
        let stalled = now >= lastProgressTick + config.retransmitTicks
        // Behind our own stable checkpoint, only a peer at or past it can help.
        let canHelp = lastExecuted >= stableSeq || s.stableSeq >= stableSeq
        // A peer helps only if it executed what we lack (a peer that adopted a later stable
        // checkpoint without its state cannot send it): asking such a peer starved two lagging
        // replicas that kept asking each other while the peers ahead went unasked (seed 5000224).
        let hasState = s.stableSeq > lastExecuted && s.lastExecuted >= s.stableSeq
        if canHelp && ((s.lastExecuted > lastExecuted && stalled) || hasState || s.view > view) {
            requestFetch(from: s.replica, &out)
        }
        // The peer's low watermark is behind ours: it lost the CHECKPOINTs that made ours stable,
        // and nobody retransmits a checkpoint once it is stable. Left alone, a primary in that
        // state stops at its high watermark until a view change. The 2f+1 signed CHECKPOINTs of
        // our proof let it move on (at most once per STATUS it sends, so bounded by its rate).
        if s.stableSeq < stableSeq && !checkpoints.stableProof.isEmpty {
            for cp in checkpoints.stableProof { send(.replica(s.replica), .checkpoint(cp), &out) }
        }
    }

    mutating func onFetch(_ fetch: Fetch, _ out: inout ReplicaOutput) {
        let peer = fetch.replica
        guard peer != id else { return }
        // Chunks of our stable checkpoint state: only to a peer whose own STATUS shows it behind
        // that checkpoint (a replayed FETCH from a peer that caught up gets nothing), and at
        // most `stateTransferBytesPerTick` per tick per peer.
        if fetch.lastExecuted < stableSeq, let status = checkpoints.peerStatus[peer], status.lastExecuted < stableSeq {
            sendStateChunks(to: peer, fetch: fetch, &out)
        }
        // Bodies the peer lacks (cheap to sign: the signature covers the batch digest).
        var sentBodies = 0
        for d in fetch.batches where sentBodies < Fetch.maxBatches {
            guard d != PrePrepare.nullDigest, let body = log.batches[d] else { continue }
            send(.replica(peer), .batch(sign(BatchBody(replica: id, requests: body))), &out)
            sentBodies += 1
        }
        if let last = checkpoints.lastFetchAnswered[peer], now < last + config.fetchCooldownTicks / 2 {
            return drop(.fetch, .replica(peer), .fetchRateLimited, &out)
        }
        checkpoints.lastFetchAnswered[peer] = now
        let from = max(fetch.lastExecuted, fetch.lastExecuted < stableSeq && checkpoints.stableState != nil ? stableSeq : 0)
        var entries: [CatchUpEntry] = []
        var bytes = 0
        var s = from + 1
        while s <= lastExecuted && entries.count < config.limits.maxCatchUpEntries,
              let cert = log.slots[s]?.committedCertificate, let body = log.batches[cert.prePrepare.digest] {
            let size = body.reduce(0) { $0 + $1.operation.count + 81 }
            if !entries.isEmpty && bytes + size > config.maxCatchUpBytes { break }
            entries.append(CatchUpEntry(certificate: cert, requests: body))
            bytes += size
            s += 1
        }
        // A peer in a view below the last NEW-VIEW we installed gets it, whether or not we are
        // still active there: it is self-certifying, and a replica that has since moved on alone
        // to a view change may be the only peer that peer asks — its STATUS shows the highest
        // view (seed 20050147: a restarted replica stayed active in view 1 beside two replicas
        // active in view 2, fetching only from the third, alone in a change to view 3). A peer
        // in our view but (perhaps) still waiting for its NEW-VIEW gets it from the primary of
        // our view (one sender, not every replica the peer asks).
        let nv = lastNewView.flatMap { nv in
            nv.view > fetch.view || (active && fetch.view == view && isPrimary && nv.view == view) ? nv : nil
        }
        if !entries.isEmpty || nv != nil {
            send(.replica(peer), .catchUp(sign(CatchUp(entries: entries, newView: nv, replica: id))), &out)
        }
    }

    /// Sends the chunks of our stable state the FETCH asks for (from its `nextChunk` if it
    /// assembles our checkpoint, else from the start), within the peer's token bucket.
    mutating func sendStateChunks(to peer: ReplicaID, fetch: Fetch, _ out: inout ReplicaOutput) {
        guard let state = checkpoints.stableState, let manifest = checkpoints.stableManifest else { return }
        let chunkBytes = config.stateChunkBytes
        let cap = config.stateTransferBurstChunks * chunkBytes
        var credit = checkpoints.transferCredit[peer] ?? (cap, now)
        credit.bytes = min(cap, credit.bytes + Int(min(now - credit.at, UInt64(cap))) * config.stateTransferBytesPerTick)
        credit.at = now
        defer { checkpoints.transferCredit[peer] = credit }
        let signature: [UInt8]
        if let sig = checkpoints.stableTransferSignature {
            signature = sig
        } else {
            signature = sign(StateTransfer(seq: stableSeq, proof: checkpoints.stableProof, manifest: manifest, index: 0, chunk: [], replica: id)).signature
            checkpoints.stableTransferSignature = signature
        }
        var index = fetch.stateSeq == stableSeq ? Int(fetch.nextChunk) : 0
        var sent = 0
        let count = max(manifest.chunkDigests.count, 1)
        while index < count && sent < config.stateTransferBurstChunks {
            let range = manifest.chunkDigests.isEmpty ? 0..<0 : manifest.range(of: index, chunkBytes: chunkBytes)
            guard credit.bytes >= range.count else {
                if sent == 0 { drop(.fetch, .replica(peer), .stateTransferRateLimited, &out) }
                break
            }
            credit.bytes -= range.count
            var st = StateTransfer(seq: stableSeq, proof: checkpoints.stableProof, manifest: manifest, index: UInt32(index),
                                   chunk: Array(state[range]), replica: id)
            st.signature = signature
            send(.replica(peer), .stateTransfer(st), &out)
            sent += 1
            index += 1
        }
    }

    func validCheckpointProof(seq: SeqNum, digest: Digest, proof: [Checkpoint]) -> Bool {
        var seen = Set<ReplicaID>()
        for cp in proof {
            guard cp.seq == seq, cp.digest == digest, cp.replica >= 0, cp.replica < config.n else { return false }
            seen.insert(cp.replica)
        }
        return seen.count >= config.quorum
    }

    mutating func onStateTransfer(_ st: StateTransfer, _ out: inout ReplicaOutput) {
        let from = Principal.replica(st.replica)
        guard st.seq > lastExecuted else { return }
        let digest = st.manifest.digest
        guard validCheckpointProof(seq: st.seq, digest: digest, proof: st.proof) else {
            return drop(.stateTransfer, from, .invalidCheckpointProof, &out)
        }
        let chunkBytes = config.stateChunkBytes
        let manifest = st.manifest
        let expectedChunks = (Int(manifest.totalBytes) + chunkBytes - 1) / chunkBytes
        guard manifest.totalBytes <= UInt64(config.maxCheckpointStateBytes), manifest.chunkDigests.count == expectedChunks else {
            return drop(.stateTransfer, from, .stateManifestInvalid, &out)
        }
        if checkpoints.incomingState == nil || checkpoints.incomingState!.seq < st.seq {
            checkpoints.incomingState = StateAssembly(seq: st.seq, digest: digest, proof: st.proof, manifest: manifest)
        }
        guard var assembly = checkpoints.incomingState, assembly.seq == st.seq, assembly.digest == digest else { return }
        if expectedChunks > 0 {
            let index = Int(st.index)
            guard index < expectedChunks, st.chunk.count == manifest.range(of: index, chunkBytes: chunkBytes).count,
                  SHA256.hash(st.chunk) == manifest.chunkDigests[index] else {
                return drop(.stateTransfer, from, .stateDigestMismatch, &out)
            }
            assembly.chunks[index] = st.chunk
        }
        guard assembly.isComplete else {
            checkpoints.incomingState = assembly
            // All chunks we asked for so far arrived: ask the same peer for the next ones now.
            if assembly.firstMissing >= assembly.requestedUpTo { requestFetch(from: st.replica, continuing: true, &out) }
            return
        }
        checkpoints.incomingState = nil
        var state: [UInt8] = []
        state.reserveCapacity(Int(manifest.totalBytes))
        for i in 0..<expectedChunks { state.append(contentsOf: assembly.chunks[i]!) }
        do {
            try restoreCheckpointState(state)
        } catch {
            return drop(.stateTransfer, from, .undecodableState, &out)
        }
        log.lastExecuted = st.seq
        lastProgressTick = now
        for (c, rec) in clients.records { clients.pending.removeUpTo(client: c, timestamp: rec.lastTimestamp) }
        clients.proposedTimestamps = [:]
        log.slots = log.slots.filter { $0.key > st.seq }
        collectBodies()
        if st.seq > stableSeq {
            makeStable(seq: st.seq, digest: digest, proof: st.proof, state: (manifest, state), &out)
        } else if st.seq == stableSeq {
            checkpoints.stableState = state
            checkpoints.stableManifest = manifest
            persistCheckpoint(seq: st.seq, digest: digest, proof: st.proof, state: state, &out)
        }
        out.events.append(.stateTransferred(seq: st.seq))
        executeReady(&out)
        armViewChangeTimerIfNeeded()
    }

    func validCommittedCertificate(_ cert: CommittedCertificate) -> Bool {
        let pp = cert.prePrepare
        guard pp.replica == config.primary(of: pp.view) else { return false }
        var seen = Set<ReplicaID>()
        for c in cert.commits {
            guard c.view == pp.view, c.seq == pp.seq, c.digest == pp.digest else { return false }
            seen.insert(c.replica)
        }
        return seen.count >= config.quorum
    }

    mutating func onCatchUp(_ cu: CatchUp, _ out: inout ReplicaOutput) {
        if let nv = cu.newView, nv.view > view || (nv.view == view && !active) {
            onNewView(nv, &out)
        }
        for entry in cu.entries.sorted(by: { $0.certificate.prePrepare.seq < $1.certificate.prePrepare.seq }) {
            let cert = entry.certificate
            let seq = cert.prePrepare.seq
            guard seq > lastExecuted else { continue }
            guard validCommittedCertificate(cert), entry.requests.count <= config.maxBatchRequests,
                  batchIsWellFormed(entry.requests), PrePrepare.batchDigest(entry.requests) == cert.prePrepare.digest else {
                return drop(.catchUp, .replica(cu.replica), .invalidCommittedCertificate, &out)
            }
            if seq <= stableSeq {
                // Behind a checkpoint we adopted without its state: the log below it is gone, so
                // execute in order directly; reaching the checkpoint then recovers its state.
                guard seq == lastExecuted + 1 else { break }
                out.persist.append(.batch(entry.requests))
                out.persist.append(.committed(cert))
                execute(entry.prePrepare, &out)
                lastProgressTick = now
                continue
            }
            guard inWindow(seq) else { break }
            var slot = log.slots[seq] ?? Slot()
            if let mine = slot.committedCertificate, mine.prePrepare.digest != cert.prePrepare.digest {
                // Two committed certificates for one sequence number cannot both be valid with
                // at most f faulty replicas; keep ours and refuse the other.
                return drop(.catchUp, .replica(cu.replica), .conflictingCommittedCertificate, &out)
            }
            storeBody(entry.requests, digest: cert.prePrepare.digest, &out)
            if slot.committedCertificate == nil {
                slot.committed = true
                slot.committedCertificate = cert
                out.persist.append(.committed(cert))
                log.slots[seq] = slot
            }
        }
        executeReady(&out)
    }

    /// A batch body we asked for: kept if some slot names its digest and we lack it.
    mutating func onBatch(_ b: BatchBody, _ out: inout ReplicaOutput) {
        guard log.batches[b.digest] == nil else { return }
        let wanted = log.slots.contains { seq, slot in
            seq > lastExecuted && (slot.digest == b.digest || slot.committedCertificate?.prePrepare.digest == b.digest
                || slot.preparedCertificate?.prePrepare.digest == b.digest)
        }
        guard wanted else { return drop(.batch, .replica(b.replica), .unwantedBatch, &out) }
        guard b.requests.count <= config.maxBatchRequests, batchIsWellFormed(b.requests) else {
            return drop(.batch, .replica(b.replica), .malformedBatch, &out)
        }
        storeBody(b.requests, digest: b.digest, &out)
        for seq in log.slots.keys.sorted() where seq > lastExecuted {
            guard log.slots[seq]?.digest == b.digest, let pp = log.slots[seq]?.prePrepare, pp.replica != id else { continue }
            for r in b.requests { clients.proposedTimestamps[r.client] = max(clients.proposedTimestamps[r.client] ?? 0, r.timestamp) }
        }
        executeReady(&out)
    }

    // MARK: - Retransmission

    mutating func retransmit(_ out: inout ReplicaOutput) {
        if !active {
            if let mine = viewChange.received[id], mine.newView == view {
                send(.allReplicas, .viewChange(mine), &out)
            } else {
                // Changing view without our VIEW-CHANGE: a crash tore the step that started this
                // view change after its view record, so the VIEW-CHANGE was never persisted and
                // never sent. Left alone, no one hears from us again and, as the new primary, we
                // never count 2f+1 (seed 20031677, worst-moment crashes). Make it now.
                sendViewChange(&out)
                viewChange.attempts = max(viewChange.attempts, 1)
                armNewViewTimerIfNeeded()
                tryBuildNewView(&out)
                if active { return }
            }
            // The new primary resends its NEW-VIEW when our VIEW-CHANGE reaches it, and also
            // answers a FETCH with it: a second way in, should one of the two keep getting lost.
            // This FETCH does not take the cooldown: a STATUS-driven FETCH to a peer that is ahead
            // must still go out, or two replicas in a view change only ever fetch from each other.
            if config.primary(of: view) != id { send(.replica(config.primary(of: view)), .fetch(makeFetch()), &out) }
            return
        }
        let stuck = log.slots.keys.filter { $0 > lastExecuted }.sorted()
        for seq in stuck {
            guard let slot = log.slots[seq], !slot.committed else { continue }
            if let pp = slot.prePrepare, pp.replica == id, let body = log.batches[pp.digest] {
                send(.allReplicas, .prePrepare(PrePrepare(header: pp, requests: body)), &out)
            }
            if let p = slot.prepares[id], p.view == view { send(.allReplicas, .prepare(p), &out) }
            if let c = slot.commits[id], c.view == view { send(.allReplicas, .commit(c), &out) }
        }
        // A committed slot still needs others' progress when our own commit was lost.
        if let latest = checkpoints.own.keys.max(), let cp = checkpoints.votes[latest]?[id] {
            send(.allReplicas, .checkpoint(cp), &out)
        }
        if hasOrderablePending() && isPrimary { tryPropose(&out) }
        // Certified digests whose bodies we lack (after a NEW-VIEW): ask everyone.
        if !missingBodies(limit: 1).isEmpty { requestFetch(from: nil, &out) }
        // A state transfer that stalled (a lost chunk): ask again.
        if checkpoints.incomingState != nil { requestFetch(from: nil, &out) }
    }

    // MARK: - View change (§4.4)

    mutating func startViewChange(to newView: ViewNum, _ out: inout ReplicaOutput) {
        guard newView > view || (newView == view && active) else { return }
        viewChange.view = newView
        viewChange.phase = .changing
        viewChange.received = viewChange.received.filter { $0.value.newView > newView }
        out.persist.append(.view(newView, active: false))
        sendViewChange(&out)
        viewChange.deadline = nil
        viewChange.attempts += 1
        out.events.append(.viewChangeStarted(view: newView))
        armNewViewTimerIfNeeded()
        tryBuildNewView(&out)
    }

    /// Our VIEW-CHANGE for the view we are changing to, with the prepared certificates above our
    /// stable checkpoint: persisted, then multicast.
    mutating func sendViewChange(_ out: inout ReplicaOutput) {
        var certs: [PreparedCertificate] = []
        for seq in log.slots.keys.sorted() where seq > stableSeq {
            if let cert = log.slots[seq]?.preparedCertificate { certs.append(cert) }
        }
        let vc = sign(ViewChange(newView: view, stableSeq: stableSeq, stableDigest: stableDigest,
                                 checkpointProof: checkpoints.stableProof, prepared: certs, replica: id))
        viewChange.received[id] = vc
        out.persist.append(.ownMessage(.viewChange(vc)))
        send(.allReplicas, .viewChange(vc), &out)
    }

    /// §4.5.2: the timer for the next view starts only once 2f+1 replicas are changing to this
    /// one or a later one, so a replica cut off alone does not run ahead through views nobody
    /// else joins. A replica already changing to a later view counts: it has left this view as
    /// well, and with f replicas silent in view changes, not counting it left the others
    /// waiting forever for a NEW-VIEW its vote was missing from (found by the coalition).
    mutating func armNewViewTimerIfNeeded() {
        guard !active, viewChange.deadline == nil else { return }
        let joined = viewChange.received.values.filter { $0.newView >= view }.count
        if joined >= config.quorum { viewChange.deadline = now + viewChangeTimeout() }
    }

    /// Semantic checks of a VIEW-CHANGE whose signatures were verified at the edge.
    func validViewChange(_ vc: ViewChange) -> Bool {
        if vc.stableSeq == 0 {
            guard vc.checkpointProof.isEmpty else { return false }
        } else {
            guard vc.stableSeq % config.checkpointInterval == 0,
                  validCheckpointProof(seq: vc.stableSeq, digest: vc.stableDigest, proof: vc.checkpointProof) else { return false }
        }
        guard vc.prepared.count <= Int(config.watermarkWindow) else { return false }
        var seqs = Set<SeqNum>()
        for cert in vc.prepared {
            let pp = cert.prePrepare
            guard seqs.insert(pp.seq).inserted,
                  pp.seq > vc.stableSeq, pp.seq <= vc.stableSeq + config.watermarkWindow,
                  pp.view < vc.newView, pp.replica == config.primary(of: pp.view) else { return false }
            let d = pp.digest
            var backups = Set<ReplicaID>()
            for p in cert.prepares {
                guard p.view == pp.view, p.seq == pp.seq, p.digest == d, p.replica != pp.replica else { return false }
                backups.insert(p.replica)
            }
            guard backups.count >= 2 * f else { return false }
        }
        return true
    }

    mutating func onViewChange(_ vc: ViewChange, _ out: inout ReplicaOutput) {
        let from = Principal.replica(vc.replica)
        guard vc.replica != id else { return }
        if active && vc.newView == view {
            // The sender missed the NEW-VIEW of our view. It is self-certifying, so any replica that
            // installed it resends it (at most once per `retransmitTicks` per peer): the primary
            // alone is not enough, it may itself have moved on to a later view.
            if let nv = lastNewView, nv.view == view, now >= (viewChange.newViewResent[vc.replica] ?? 0) {
                viewChange.newViewResent[vc.replica] = now + config.retransmitTicks
                send(.replica(vc.replica), .newView(nv), &out)
            }
            return
        }
        guard vc.newView > view || (vc.newView == view && !active) else { return drop(.viewChange, from, .staleView, &out) }
        guard validViewChange(vc) else { return drop(.viewChange, from, .invalidViewChange, &out) }
        if let existing = viewChange.received[vc.replica], existing.newView >= vc.newView { return }
        viewChange.received[vc.replica] = vc
        armNewViewTimerIfNeeded()

        // Liveness (§4.5.2): f+1 other replicas ahead of us means a view change is under way
        // without us. Only later views are ahead: a VIEW-CHANGE for the view we are active in
        // comes from a replica behind us (it missed the NEW-VIEW, resent above), and our own
        // does not count. Counting either made a restarted primary, whose log still held its
        // own VIEW-CHANGE for its view, leave that view and re-propose what it had proposed.
        let ahead = viewChange.received.values.filter { $0.replica != id && $0.newView > view }
        if ahead.count >= f + 1 {
            let target = ahead.map(\.newView).sorted()[ahead.count - (f + 1)]
            if target > view {
                startViewChange(to: target, &out)
                return
            }
        }
        tryBuildNewView(&out)
    }

    /// New primary: with 2f+1 view changes for `view`, multicast NEW-VIEW and enter the view.
    mutating func tryBuildNewView(_ out: inout ReplicaOutput) {
        guard !active, config.primary(of: view) == id else { return }
        let vcs = viewChange.received.values.filter { $0.newView == view }.sorted { $0.replica < $1.replica }
        guard vcs.count >= config.quorum else { return }
        let chosen = Array(vcs.prefix(config.quorum))
        let proposals = Replica.reproposals(view: view, viewChanges: chosen, config: config).map { sign($0) }
        let nv = sign(NewView(view: view, viewChanges: chosen, prePrepares: proposals, replica: id))
        send(.allReplicas, .newView(nv), &out)
        installNewView(nv, &out)
    }

    /// The set O of §4.4, computed identically by the new primary and by every backup that checks
    /// a NEW-VIEW: for every sequence number between the highest stable checkpoint min-s and the
    /// highest prepared max-s, re-propose the batch prepared in the highest view, or a null batch.
    public static func reproposals(view: ViewNum, viewChanges: [ViewChange], config: ProtocolConfig) -> [PrePrepareHeader] {
        let minS = viewChanges.map(\.stableSeq).max() ?? 0
        var best: [SeqNum: PrePrepareHeader] = [:]
        for vc in viewChanges {
            for cert in vc.prepared where cert.prePrepare.seq > minS {
                let pp = cert.prePrepare
                if let cur = best[pp.seq], cur.view >= pp.view { continue }
                best[pp.seq] = pp
            }
        }
        let maxS = best.keys.max() ?? minS
        guard maxS > minS else { return [] }
        return (minS + 1...maxS).map { seq in
            PrePrepareHeader(view: view, seq: seq, replica: config.primary(of: view), digest: best[seq]?.digest ?? PrePrepare.nullDigest)
        }
    }

    mutating func onNewView(_ nv: NewView, _ out: inout ReplicaOutput) {
        let from = Principal.replica(nv.replica)
        guard nv.view > view || (nv.view == view && !active) else { return drop(.newView, from, .staleView, &out) }
        guard nv.replica == config.primary(of: nv.view) else { return drop(.newView, from, .newViewNotFromPrimary, &out) }
        // Our own NEW-VIEW, relayed back (we made it before a restart, or before rejoining a view
        // change for our own view): it proves the view as well as anyone's and is the only way
        // back into it — the others are active there and send no VIEW-CHANGE for it (seed 5000784).
        if nv.replica == id && (nv.view != view || active) { return }
        var senders = Set<ReplicaID>()
        for vc in nv.viewChanges {
            guard vc.newView == nv.view, validViewChange(vc), senders.insert(vc.replica).inserted else {
                return drop(.newView, from, .invalidViewChangeInNewView, &out)
            }
        }
        guard senders.count >= config.quorum else { return drop(.newView, from, .tooFewViewChanges, &out) }
        let expected = Replica.reproposals(view: nv.view, viewChanges: nv.viewChanges, config: config)
        let matches = expected.count == nv.prePrepares.count && zip(expected, nv.prePrepares).allSatisfy { e, got in
            got.view == nv.view && got.seq == e.seq && got.replica == nv.replica && got.digest == e.digest
        }
        guard matches else { return drop(.newView, from, .reproposalsDoNotFollow, &out) }
        viewChange.view = nv.view
        installNewView(nv, &out)
    }

    mutating func installNewView(_ nv: NewView, _ out: inout ReplicaOutput) {
        viewChange.phase = .normal
        viewChange.prePrepareDeadline = nil
        viewChange.lastNewView = nv
        out.persist.append(.view(nv.view, active: true))
        out.persist.append(.newView(nv))
        viewChange.deadline = nil
        viewChange.received = viewChange.received.filter { $0.value.newView > nv.view }
        out.events.append(.newViewInstalled(view: nv.view))

        // Adopt the highest stable checkpoint among the view changes.
        if let top = nv.viewChanges.max(by: { $0.stableSeq < $1.stableSeq }), top.stableSeq > stableSeq {
            let state = checkpoints.own[top.stableSeq].flatMap { $0.digest == top.stableDigest ? ($0.manifest, $0.state) : nil }
            makeStable(seq: top.stableSeq, digest: top.stableDigest, proof: top.checkpointProof, state: state, &out)
        }
        // Slots of earlier views start afresh. A slot already pre-prepared in this very view
        // (the primary installing its own NEW-VIEW again after a restart or after rejoining a
        // view change for its view) keeps its pre-prepare: proposing another batch for a view
        // and sequence number it already proposed would be equivocation.
        var maxS = stableSeq
        for seq in log.slots.keys {
            if let pp = log.slots[seq]!.prePrepare, pp.view == nv.view {
                maxS = max(maxS, seq)
            } else {
                log.slots[seq]!.resetForNewView()
            }
        }
        for pp in nv.prePrepares where pp.seq > stableSeq {
            if let existing = log.slots[pp.seq]?.prePrepare, existing.view == nv.view { continue }
            acceptPrePrepare(pp, &out)
            maxS = max(maxS, pp.seq)
        }
        log.nextSeq = max(maxS, lastExecuted) + 1
        clients.proposedTimestamps = [:]
        for seq in log.slots.keys.sorted() where seq > lastExecuted {
            for r in log.slots[seq]?.prePrepare.flatMap({ log.batches[$0.digest] }) ?? [] {
                clients.proposedTimestamps[r.client] = max(clients.proposedTimestamps[r.client] ?? 0, r.timestamp)
            }
        }
        if lastExecuted < stableSeq || !missingBodies(limit: 1).isEmpty { requestFetch(from: nil, &out) }
        executeReady(&out)
        armViewChangeTimerIfNeeded()
        if isPrimary { tryPropose(&out) }
    }
}
