@testable import BFTCore
import BFTCrypto

/// A synchronous in-memory cluster for rule-by-rule tests: messages are delivered in FIFO order
/// through each receiver's verifier; a test can cut links, hold messages or inject its own.
final class TestCluster {
    let config: ProtocolConfig
    let signatures: StandInSignatures
    /// Each replica with its in-memory log, driven as the node drives its core.
    var drivers: [ReplicaDriver<InMemoryLog>]
    /// The replicas; a rule test may change one in place (`c.replicas[i].startViewChange(…)`).
    var replicas: [Replica] {
        get { drivers.map(\.replica) }
        set { for (i, r) in newValue.enumerated() { drivers[i].replica = r } }
    }
    let verifiers: [MessageVerifier]
    let clientVerifier: MessageVerifier
    var queue: [(from: Principal, to: Principal, message: Message)] = []
    var deliveries: [[Delivery]]
    var events: [[ReplicaEvent]]
    var replies: [(replica: ReplicaID, reply: Reply)] = []
    var observers: [ObservingApplication]
    func observer(_ r: ReplicaID) -> ObservingApplication { observers[r] }
    /// Each replica's persisted records, compacted at checkpoint records as the node's log is.
    var persisted: [[PersistRecord]] { drivers.map(\.log.records) }
    /// Logical time, in ticks (the same for every replica).
    var now: UInt64 = 0
    /// Links that drop everything: (from, to).
    var cut: Set<[Int]> = []
    /// Replicas that receive nothing and whose ticks are skipped.
    var down: Set<ReplicaID> = []
    /// Optional filter: return false to drop a message.
    var filter: ((Principal, Principal, Message) -> Bool)?

    /// Bytes every replica's application adds to its snapshot (to make checkpoint states span
    /// several state-transfer chunks).
    let ballastBytes: Int

    init(n: Int = 4, clients: Int = 2, ballastBytes: Int = 0, configure: (inout ProtocolConfig) -> Void = { _ in }) {
        self.ballastBytes = ballastBytes
        var cfg = ProtocolConfig(n: n, clusterID: 9, clientCount: clients)
        cfg.checkpointInterval = 4
        cfg.watermarkWindow = 8
        cfg.viewChangeTimeoutTicks = 20
        cfg.retransmitTicks = 10
        cfg.statusIntervalTicks = 10
        cfg.fetchCooldownTicks = 4
        configure(&cfg)
        config = cfg
        let sigs = StandInSignatures(seed: 42, replicas: n, clients: clients)
        signatures = sigs
        let apps = (0..<n).map { _ in ObservingApplication(ballastBytes: ballastBytes) }
        observers = apps
        drivers = (0..<n).map {
            ReplicaDriver(replica: Replica(id: $0, config: cfg, signer: sigs.signer(for: .replica($0)), application: apps[$0]),
                          log: InMemoryLog(limits: cfg.limits), checkInvariants: true)
        }
        verifiers = (0..<n).map { _ in MessageVerifier(checker: sigs, clusterID: cfg.clusterID, replicaCount: n, clientCount: clients) }
        clientVerifier = MessageVerifier(checker: sigs, clusterID: cfg.clusterID, replicaCount: n, clientCount: clients)
        deliveries = Array(repeating: [], count: n)
        events = Array(repeating: [], count: n)
    }

    /// Replaces replica `r` with a fresh one recovered from its persisted records.
    @discardableResult
    func restart(_ r: ReplicaID) -> ReplicaOutput {
        let fresh = Replica(id: r, config: config, signer: signatures.signer(for: .replica(r)),
                            application: ObservingApplication(ballastBytes: ballastBytes))
        var driver = ReplicaDriver(replica: fresh, log: drivers[r].log, checkInvariants: true)
        let out = try! driver.recover(now: now)
        drivers[r] = driver
        return out
    }

    func signer(_ p: Principal) -> any MessageSigner { signatures.signer(for: p) }

    func request(client: ClientID, timestamp: UInt64, sessionStart: Bool = false, op: String) -> Request {
        Request(client: client, timestamp: timestamp, sessionStart: sessionStart, operation: Array(op.utf8))
            .signed(with: signer(.client(client)), clusterID: config.clusterID)
    }

    func sign<M: SignedMessage>(_ m: M, as p: Principal) -> M { m.signed(with: signer(p), clusterID: config.clusterID) }

    func submit(_ r: Request, to targets: [ReplicaID]? = nil) {
        for i in targets ?? Array(0..<config.n) { queue.append((.client(r.client), .replica(i), .request(r))) }
    }

    func inject(_ m: Message, from: Principal, to: ReplicaID) { queue.append((from, .replica(to), m)) }

    /// Carries out a replica's step through its driver: persist, deliver, send; then, as the
    /// node does, checks the requests the core asks to have checked and steps them again.
    func absorb(_ r: ReplicaID, _ out: ReplicaOutput) {
        try! drivers[r].apply(out, deliver: { deliveries[r] += $0 }) { m, recipients in
            for to in recipients { queue.append((.replica(r), to, m)) }
        }
        events[r] += out.events
        for request in out.verifyRequests {
            switch verifiers[r].verify(.request(request)) {
            case .success(let v): absorb(r, drivers[r].stepOnly([v]))
            case .failure(let why):
                events[r].append(.dropped(kind: .request, from: request.signer, reason: why.dropReason))
                drivers[r].discardUnverifiable(request)
            }
        }
    }

    /// Delivers `request` to replica `to` as if it arrived over its client's own authenticated
    /// session (accepted without a signature check the first time, as the node's backups do).
    func submitOverSession(_ request: Request, to r: ReplicaID) {
        if let v = verifiers[r].acceptFromOwnSession(request) {
            absorb(r, drivers[r].stepOnly([v]))
        } else {
            inject(.request(request), from: .client(request.client), to: r)
        }
    }

    /// Delivers queued messages until none are left (or `limit` deliveries).
    @discardableResult
    func run(limit: Int = 100_000) -> Int {
        var n = 0
        while !queue.isEmpty && n < limit {
            let (from, to, m) = queue.removeFirst()
            n += 1
            if let filter, !filter(from, to, m) { continue }
            if case .replica(let a) = from, case .replica(let b) = to, cut.contains([a, b]) { continue }
            switch to {
            case .replica(let r):
                guard !down.contains(r) else { continue }
                switch verifiers[r].verify(m) {
                case .success(let v): absorb(r, drivers[r].stepOnly([v]))
                case .failure(let why): events[r].append(.dropped(kind: m.kind, from: m.signer, reason: why.dropReason))
                }
            case .client:
                if case .reply(let reply) = m, case .success = clientVerifier.verify(m) { replies.append((reply.replica, reply)) }
            }
        }
        return n
    }

    /// Advances every live replica by `ticks`, delivering messages after each tick.
    func tick(_ ticks: Int) {
        for _ in 0..<ticks {
            now += 1
            for r in 0..<config.n where !down.contains(r) { absorb(r, drivers[r].tickOnly(now: now)) }
            run()
        }
    }

    func drops(_ r: ReplicaID, reason: String) -> Int {
        events[r].filter { if case .dropped(_, _, let why) = $0 { return why.rawValue == reason }; return false }.count
    }

    func delivered(_ r: ReplicaID) -> [Digest] { deliveries[r].map(\.digest) }
}

/// The hash-chain test application that also records equivocation proofs it is told about.
final class ObservingApplication: ReplicatedApplication, MisbehaviourObserver {
    let inner = HashChainApplication()
    var proofs: [EquivocationProof] = []
    /// Fixed filler appended to the snapshot (same on every replica).
    let ballast: [UInt8]
    init(ballastBytes: Int = 0) { ballast = (0..<ballastBytes).map { UInt8(truncatingIfNeeded: $0 &* 7) } }
    func execute(_ operation: [UInt8], context: ExecutionContext) -> [UInt8] { inner.execute(operation, context: context) }
    func snapshot() -> [UInt8] { inner.snapshot() + ballast }
    func restore(from snapshot: [UInt8]) throws {
        guard snapshot.count >= ballast.count, Array(snapshot.suffix(ballast.count)) == ballast else { throw DecodeError.invalidValue("ballast") }
        try inner.restore(from: Array(snapshot.dropLast(ballast.count)))
    }
    func observed(equivocation proof: EquivocationProof) { proofs.append(proof) }
}
