import Foundation
import BFTByzantine
import BFTCore
import BFTCrypto

/// Everything a seed decides: cluster size, workload, fault rates and Byzantine replicas.
public struct Scenario: Sendable, CustomStringConvertible {
    public var seed: UInt64
    public var n: Int
    public var clients: Int
    public var requestsPerClient: Int
    public var clientWindow: Int
    /// Ticks of the fault phase; afterwards the network heals and crashed replicas recover.
    public var faultTicks: UInt64
    /// Ticks allowed after the heal for every request to complete and every correct replica to converge.
    public var livenessTicks: UInt64
    public var dropRate: Double
    public var duplicateRate: Double
    public var maxDelayTicks: Int
    /// Partitions during the fault phase: (start, end, isolated replicas, one-way?).
    public var partitions: [(start: UInt64, end: UInt64, isolated: [ReplicaID], oneWay: Bool)]
    /// Crashes during the fault phase: (replica, down from, up at, amnesia). Without amnesia the
    /// replica keeps its memory (a pause); with amnesia it restarts empty and recovers from the
    /// records it persisted, as a node does from its write-ahead log.
    public var crashes: [(replica: ReplicaID, from: UInt64, to: UInt64, amnesia: Bool)]
    public var byzantine: [(replica: ReplicaID, mode: ByzantineMode)]
    public var useEd25519: Bool
    /// Bytes added to every operation (0: short operations). With a payload the application
    /// keeps every operation (its state grows) and echoes it back (the reply cache grows), and
    /// the cluster runs with a small size budget — 4 KiB state chunks, small batches — so
    /// checkpoints span many chunks and view changes re-propose batches by digest.
    public var payloadBytes: Int = 0
    /// Replicas route a client's replies as the node does with authenticated sessions: to the
    /// link the client's own request arrived on. Off, they follow whichever link last delivered
    /// a request of that client (a request relayed by a replica moves the route), as the node
    /// did before sessions — kept to show the attack.
    public var sessions: Bool = true
    /// Twins (Bano et al., OPODIS 2021): one replica run as two honest instances with the same
    /// key, placed in different partitions, so it equivocates in every phase without a
    /// hand-written attack. The twinned replica counts as faulty; the checkers apply to the rest.
    public var twins: TwinsPlan? = nil
    /// A Byzantine client: it sends some replicas a different request with the same timestamp
    /// (validly signed), others a copy with a garbage signature, and floods every request
    /// three times. The checkers treat every variant it signed as submitted.
    public var byzantineClient: Int? = nil
    /// Crashes at the worst moment: now and then during the fault phase a replica (correct or
    /// Byzantine) crashes inside a step — after persisting all of its records, or only a torn
    /// prefix of them, and before sending anything — and restarts from its log at once.
    public var crashAtWorstMoment = false
    /// Deaf replicas: during (start, end) the replica's outgoing links work but nothing reaches
    /// it (the opposite of a one-way partition, which lets the isolated replicas hear but not be
    /// heard). It keeps sending what its timers make: view changes nobody follows, stale votes.
    public var deaf: [(replica: ReplicaID, start: UInt64, end: UInt64)] = []

    // Test-only knobs: weaken one part of the system so a test can show the checkers notice.
    /// Clients complete a request on the first verified reply instead of f+1 matching ones.
    public var carelessClients = false
    /// This replica's application returns a wrong result for its `divergentAtIndex`-th
    /// execution (its state stays right): a correct-looking replica that diverges.
    public var divergentApplication: ReplicaID? = nil
    public var divergentAtIndex: UInt64 = 3
    /// With `divergentApplication`: its state diverges from that execution on, and its results stay right.
    public var divergentState = false
    /// Replaces the slot and batch bounds the state checker enforces (to show it reports).
    public var stateBoundOverride: Int? = nil
    /// Byzantine wrappers pass everything through unchanged (an adversary that does nothing).
    public var passiveAdversaries = false
    /// Skips the replicas' invariant checks (to see what the other checkers alone catch, e.g.
    /// in the planted-bug score). Not written to scenario files.
    public var skipInvariantChecks = false

    /// Draws a scenario from a seed. `forceTwins` twins a replica even where the seed would not;
    /// `forceCoalition` makes f replicas a coalition even where the seed would not.
    public static func random(seed: UInt64, useEd25519: Bool = false, forceTwins: Bool = false, forceCoalition: Bool = false) -> Scenario {
        var rng = SimRandom(seed: seed)
        let n = rng.chance(0.2) ? 7 : 4
        let f = (n - 1) / 3
        let faultTicks = UInt64(rng.int(600...2000))
        var s = Scenario(seed: seed, n: n, clients: rng.int(1...4), requestsPerClient: rng.int(5...25),
                         clientWindow: rng.int(1...4), faultTicks: faultTicks, livenessTicks: 60_000,
                         dropRate: rng.chance(0.7) ? rng.double(0...0.15) : 0,
                         duplicateRate: rng.chance(0.5) ? rng.double(0...0.05) : 0,
                         maxDelayTicks: rng.int(1...20), partitions: [], crashes: [], byzantine: [],
                         useEd25519: useEd25519)
        for _ in 0..<rng.int(0...3) {
            let start = UInt64(rng.int(0...Int(faultTicks)))
            let end = min(faultTicks, start + UInt64(rng.int(50...800)))
            let size = rng.int(1...max(1, n / 2))
            var isolated: [ReplicaID] = []
            while isolated.count < size { let r = rng.int(0...(n - 1)); if !isolated.contains(r) { isolated.append(r) } }
            s.partitions.append((start, end, isolated.sorted(), rng.chance(0.3)))
        }
        for _ in 0..<rng.int(0...2) {
            let start = UInt64(rng.int(0...Int(faultTicks)))
            s.crashes.append((rng.int(0...(n - 1)), start, min(faultTicks, start + UInt64(rng.int(50...600))), rng.chance(0.5)))
        }
        let byzCount = rng.chance(0.6) ? rng.int(1...f) : 0
        var taken: Set<ReplicaID> = []
        for _ in 0..<byzCount {
            // Favour the first primaries so that primary-only behaviours matter.
            var r = rng.chance(0.6) ? rng.int(0...min(1, n - 1)) : rng.int(0...(n - 1))
            while taken.contains(r) { r = (r + 1) % n }
            taken.insert(r)
            let mode = ByzantineMode.standalone[rng.int(0...(ByzantineMode.standalone.count - 1))]
            s.byzantine.append((r, mode))
        }
        if rng.chance(0.3) { s.payloadBytes = rng.int(200...3000) }
        // Draws appended below leave every earlier draw (and so older seeds' faults) unchanged.
        // Some Byzantine replicas attack the clients instead: forged or divergent signed replies.
        if !s.byzantine.isEmpty && rng.chance(0.25) {
            let k = rng.int(0...(s.byzantine.count - 1))
            s.byzantine[k].mode = rng.chance(0.5) ? .forgedReplies : .divergentReplies
        }
        // Twins: the twinned replica takes the place of a Byzantine one if f are already drawn.
        if rng.chance(0.2) || forceTwins {
            if s.byzantine.count >= f { s.byzantine.removeLast() }
            var t = rng.chance(0.6) ? rng.int(0...1) : rng.int(0...(n - 1))
            while s.byzantine.contains(where: { $0.replica == t }) { t = (t + 1) % n }
            s.twins = TwinsPlan.random(twinned: t, n: n, faultTicks: faultTicks, rng: &rng)
        }
        // A coalition: where Byzantine replicas were drawn (or when forced), f of them act as
        // one, and the network cuts f correct replicas off for a long stretch (both ways, or
        // one-way: they hear but are not heard), so that the groups the coalition needs form: a
        // quorum that commits without them, and replicas that lag and report little in their
        // view changes, which the coalition can then feed alone.
        if (s.twins == nil && !s.byzantine.isEmpty && rng.chance(0.35)) || forceCoalition {
            s.twins = nil
            var members = s.byzantine.map(\.replica)
            while members.count < f {
                var r = rng.int(0...(n - 1))
                while members.contains(r) { r = (r + 1) % n }
                members.append(r)
            }
            s.byzantine = members.prefix(f).sorted().map { ($0, ByzantineMode.coalition) }
            let correct = (0..<n).filter { r in !s.byzantine.contains { $0.replica == r } }
            var isolated: [ReplicaID] = []
            while isolated.count < f {
                let r = correct[rng.int(0...(correct.count - 1))]
                if !isolated.contains(r) { isolated.append(r) }
            }
            let start = UInt64(rng.int(0...Int(faultTicks / 2)))
            s.partitions.append((start, min(faultTicks, start + UInt64(rng.int(300...900))), isolated.sorted(), rng.chance(0.5)))
        }
        // A Byzantine client, from a generator of its own so that every draw above is unchanged.
        var clientRng = SimRandom(seed: seed ^ 0xb12c_11e7)
        if s.clients > 1 && clientRng.chance(0.2) { s.byzantineClient = clientRng.int(0...(s.clients - 1)) }
        var crashRng = SimRandom(seed: seed ^ 0xc4a5_4ed0)
        s.crashAtWorstMoment = crashRng.chance(0.2)
        // A replica that can send but not receive, one seed in ten, for 200–800 ticks (not with
        // a coalition, whose own partition already shapes the links).
        var deafRng = SimRandom(seed: seed ^ 0xdeaf_5eed)
        if deafRng.chance(0.1) && !s.byzantine.contains(where: { $0.mode == .coalition }) {
            let start = UInt64(deafRng.int(0...Int(faultTicks / 2)))
            s.deaf = [(deafRng.int(0...(n - 1)), start, min(faultTicks, start + UInt64(deafRng.int(200...800))))]
        }
        return s
    }

    public var description: String {
        let byz = byzantine.map { "\($0.replica):\($0.mode.rawValue)" }.joined(separator: ",")
        let twin = twins.map { " twins=r\($0.replica)/\($0.windows.count)w" } ?? ""
        return "n=\(n) clients=\(clients)x\(requestsPerClient) window=\(clientWindow) payload=\(payloadBytes) faultTicks=\(faultTicks) drop=\(Int(dropRate * 1000))‰ dup=\(Int(duplicateRate * 1000))‰ delay<=\(maxDelayTicks) partitions=\(partitions.count) crashes=\(crashes.count) byzantine=[\(byz)]\(twin)\(byzantineClient.map { " byzantineClient=\($0)" } ?? "")\(crashAtWorstMoment ? " worstMomentCrashes" : "")\(deaf.map { " deaf=r\($0.replica)@\($0.start)-\($0.end)" }.joined())"
    }
}

/// Which replica is twinned and how the network is split while the fault phase lasts.
public struct TwinsPlan: Sendable, Codable, Equatable {
    /// The twinned replica id: node `replica` is its first instance, node `n` its second.
    public var replica: ReplicaID
    /// Partition windows. Nodes are `0 ..< n` (replicas; the twinned id is the first instance)
    /// and `n` (the twin's second instance). In a window only nodes of one group hear each
    /// other; a node listed in no group is isolated. Clients reach every node. Windows may
    /// overlap (a link must be up in each). Outside the windows, and after the heal, every
    /// node, both instances included, hears every other.
    public var windows: [TwinsWindow]

    public init(replica: ReplicaID, windows: [TwinsWindow]) { self.replica = replica; self.windows = windows }

    /// One to four windows over the fault phase, each splitting the n+1 nodes into two or three
    /// groups with the two instances in different groups.
    public static func random(twinned t: ReplicaID, n: Int, faultTicks: UInt64, rng: inout SimRandom) -> TwinsPlan {
        var windows: [TwinsWindow] = []
        for _ in 0..<rng.int(1...4) {
            let start = UInt64(rng.int(0...Int(faultTicks)))
            let end = min(faultTicks, start + UInt64(rng.int(100...900)))
            let groupCount = rng.chance(0.25) ? 3 : 2
            var groups: [[Int]] = Array(repeating: [], count: groupCount)
            for node in 0...n {
                let g = node == t ? 0 : node == n ? 1 : rng.int(0...(groupCount - 1))
                groups[g].append(node)
            }
            windows.append(TwinsWindow(start: start, end: end, groups: groups))
        }
        return TwinsPlan(replica: t, windows: windows.sorted { ($0.start, $0.end) < ($1.start, $1.end) })
    }
}

public struct TwinsWindow: Sendable, Codable, Equatable {
    public var start: UInt64
    public var end: UInt64
    public var groups: [[Int]]
    public init(start: UInt64, end: UInt64, groups: [[Int]]) { self.start = start; self.end = end; self.groups = groups }

    func group(of node: Int) -> Int? { groups.firstIndex { $0.contains(node) } }
}

public struct SimulationResult: Sendable {
    public let seed: UInt64
    public let scenario: String
    public let failures: [String]
    public let traceHash: UInt64
    public let ticks: UInt64
    public let delivered: Int
    public let viewChanges: Int
    public let stateTransfers: Int
    public let messages: Int
    public let drops: Int
    /// STATE-TRANSFER chunks after the first (index > 0) delivered to correct replicas: a
    /// checkpoint state moved in several pieces.
    public let laterStateChunks: Int
    /// BATCH bodies delivered to correct replicas (fetched after a NEW-VIEW named only digests).
    public let batchBodies: Int
    /// Replies a correct replica sent to a replica instead of their client, because a relayed
    /// request had moved that client's route (possible only without sessions).
    public let misroutedReplies: Int
    /// What each Byzantine wrapper did, in replica order.
    public let adversaries: [AdversaryReport]
    /// Largest tables any correct replica held at a tick of the run.
    public let peakSlots: Int
    public let peakBatches: Int
    public let peakPending: Int
    /// Equivocation proofs recorded by correct replicas.
    public let equivocationsObserved: Int
    /// View changes the twin's instances started (Twins scenarios).
    public let twinViewChanges: Int
    public var passed: Bool { failures.isEmpty }
    /// Byzantine replicas whose mode never deviated from the honest replica in this run.
    public var idleAdversaries: [ReplicaID] { adversaries.filter { $0.acted == 0 }.map(\.replica) }
}

/// One Byzantine replica's activity in a run.
public struct AdversaryReport: Sendable, CustomStringConvertible {
    public let replica: ReplicaID
    public let mode: ByzantineMode
    public let counters: ByzantineCounters
    /// The counter that proves this mode acted.
    public var acted: Int { counters.acted(as: mode) }
    public var description: String { "r\(replica):\(mode.rawValue) \(counters.summary)" }
}

/// Simulator-only: wraps the honest application and returns a wrong result for one execution,
/// leaving the state untouched — a replica whose output diverges without its checkpoints showing it.
final class DivergentApplication: ReplicatedApplication {
    let inner: any ReplicatedApplication
    let atIndex: UInt64
    let divergeState: Bool
    var diverged = false
    init(_ inner: any ReplicatedApplication, atIndex: UInt64, divergeState: Bool) {
        self.inner = inner; self.atIndex = atIndex; self.divergeState = divergeState
    }

    func execute(_ operation: [UInt8], context: ExecutionContext) -> [UInt8] {
        var r = inner.execute(operation, context: context)
        if context.index == atIndex {
            // Either the result or (from here on) the state diverges, so each checker is shown alone.
            if divergeState { diverged = true } else if r.isEmpty { r = [1] } else { r[0] ^= 0xa5 }
        }
        return r
    }
    func snapshot() -> [UInt8] { inner.snapshot() + (diverged ? [0xd1] : []) }
    func restore(from snapshot: [UInt8]) throws { try inner.restore(from: snapshot) }
}

/// A deterministic cluster simulation: replicas, clients and a faulty network driven by one seed.
public final class Simulation {
    public let scenario: Scenario
    let config: ProtocolConfig
    var rng: SimRandom
    var netRng: SimRandom

    /// A message on the wire. Nodes: `0 ..< n` replicas, `n` the twin's second instance, -1 a client.
    struct InFlight { let at: UInt64; let order: UInt64; let from: Principal; let fromNode: Int; let to: Principal; let toNode: Int; let message: Message }
    var queue = MessageQueue()
    var orderCounter: UInt64 = 0

    /// Indexed by node: the replicas, then the twin's second instance if the scenario has twins.
    /// Each is driven through the one `ReplicaDriver` the node uses: its in-memory log (compacted
    /// at checkpoint records, records through their codec) is what a restart recovers from, a
    /// Byzantine behaviour is the driver's send decorator, and the replica's invariants are
    /// checked after every step.
    var drivers: [ReplicaDriver<InMemoryLog>] = []
    /// The nodes' replicas (read-only view).
    var replicas: [Replica] { drivers.map(\.replica) }
    var replicaSigners: [any MessageSigner] = []
    var restarts = 0
    /// Crashes inside a step so far (`Scenario.crashAtWorstMoment`).
    public private(set) var worstMomentCrashes = 0
    /// Nodes whose invariant violation was reported (once each).
    var invariantReported: Set<Int> = []
    /// The shared knowledge of the coalition, when the scenario has one.
    var coalition: Coalition?
    func behaviour(_ node: Int) -> ByzantineBehaviour? { drivers[node].interceptor as? ByzantineBehaviour }
    var verifiers: [MessageVerifier] = []
    var clients: [ClientCore] = []
    var clientVerifier: MessageVerifier
    var clientSubmitted: [Int] = []
    var clientCompleted: [Int] = []
    var clientResults: [[UInt64: [UInt8]]] = []
    var submittedDigests: Set<Digest> = []
    var clientSigners: [any MessageSigner] = []
    /// What the Byzantine client did: conflicting variants, garbage signatures, flooded copies.
    public private(set) var byzantineClientActs = 0
    /// Every submitted operation by request digest, so the model can execute the agreed order.
    var operations: [Digest: [UInt8]] = [:]
    /// Careless clients: the timestamps already completed on a first reply.
    var carelessDone: [Set<UInt64>] = []

    /// The sequential model: one application fed by the agreed total order.
    var model: any ReplicatedApplication = HashChainApplication()
    var modelIndex: UInt64 = 0
    var modelResults: [UInt64: [UInt8]] = [:]
    var modelByRequest: [ClientID: [UInt64: [UInt8]]] = [:]
    var orderDeliveries: [UInt64: Delivery] = [:]
    /// Client completions waiting for the model to reach their request.
    var completionsToCheck: [(client: Int, timestamp: UInt64, result: [UInt8])] = []
    /// Per correct replica: deliveries whose result was compared with the model.
    var resultsCheckedUpTo: [Int] = []
    /// The result digest of the first correct reply per (client, timestamp), and who sent it.
    var correctReplies: [ClientID: [UInt64: (replica: ReplicaID, result: Digest)]] = [:]
    var peakSlots = 0, peakBatches = 0, peakPending = 0
    /// Messages the network kept from a deaf replica, and messages a deaf replica sent.
    var deafDrops = 0, deafSends = 0

    var now: UInt64 = 0
    var trace = TraceHash()
    var deliveries: [[Delivery]] = []
    var stableDigests: [SeqNum: Digest] = [:]
    var failures: [String] = []
    var viewChanges = 0
    var stateTransfers = 0
    var messageCount = 0
    var dropCount = 0
    var laterStateChunks = 0
    var misroutedReplies = 0
    /// Per node: where each client's replies go (the link its request came on), as the node routes them.
    var replyRoutes: [[ClientID: Principal]] = []
    var batchBodies = 0
    var twinViewChanges = 0
    /// Equivocation proofs correct replicas recorded (a twin or an equivocating primary caught).
    var equivocationsObserved = 0

    public init(scenario: Scenario) {
        self.scenario = scenario
        var cfg = ProtocolConfig(n: scenario.n, clusterID: 7, clientCount: scenario.clients)
        cfg.checkpointInterval = 8
        cfg.watermarkWindow = 32
        cfg.maxBatchRequests = 8
        cfg.viewChangeTimeoutTicks = 150
        cfg.maxViewChangeTimeoutTicks = 2400
        cfg.retransmitTicks = 40
        cfg.statusIntervalTicks = 40
        cfg.fetchCooldownTicks = 20
        if scenario.payloadBytes > 0 {
            cfg.stateChunkBytes = 4096
            cfg.maxOperationBytes = 4096
            cfg.maxResultBytes = 4096 + 64
            cfg.maxBatchBytes = 16 * 1024
            cfg.maxCatchUpBytes = 32 * 1024
            cfg.maxApplicationStateBytes = 8 * 1024 * 1024
            cfg.stateTransferBytesPerTick = 8 * 1024
            cfg.stateTransferBurstChunks = 2
        }
        config = cfg
        rng = SimRandom(seed: scenario.seed ^ 0x5eed)
        netRng = rng.fork()

        let checker: any SignatureChecker
        var replicaSigners: [any MessageSigner] = []
        var clientSigners: [any MessageSigner] = []
        if scenario.useEd25519 {
            var seedRng = rng.fork()
            func key() -> Ed25519PrivateKey {
                try! Ed25519PrivateKey(seed: (0..<32).map { _ in UInt8.random(in: 0...255, using: &seedRng) })
            }
            let rk = (0..<scenario.n).map { _ in key() }
            let ck = (0..<scenario.clients).map { _ in key() }
            replicaSigners = rk.map { Ed25519MessageSigner(key: $0) }
            clientSigners = ck.map { Ed25519MessageSigner(key: $0) }
            var clientKeys: [ClientID: Ed25519PublicKey] = [:]
            for (i, k) in ck.enumerated() { clientKeys[ClientID(i)] = k.publicKey }
            checker = Ed25519Keyring(replicaKeys: rk.map(\.publicKey), clientKeys: clientKeys)
        } else {
            let s = StandInSignatures(seed: scenario.seed, replicas: scenario.n, clients: scenario.clients)
            replicaSigners = (0..<scenario.n).map { s.signer(for: .replica($0)) }
            clientSigners = (0..<scenario.clients).map { s.signer(for: .client(ClientID($0))) }
            checker = s
        }
        clientVerifier = MessageVerifier(checker: checker, clusterID: cfg.clusterID, replicaCount: cfg.n, clientCount: cfg.clientCount)
        self.replicaSigners = replicaSigners
        let members = scenario.byzantine.filter { $0.mode == .coalition }.map(\.replica)
        var signersOfMembers: [ReplicaID: any MessageSigner] = [:]
        for r in members { signersOfMembers[r] = replicaSigners[r] }
        let coalition = members.isEmpty ? nil : Coalition(members: members, signers: signersOfMembers, config: cfg, seed: rng.next())
        self.coalition = coalition
        for i in 0..<scenario.n {
            let replica = Replica(id: i, config: cfg, signer: replicaSigners[i], application: makeApplication(for: i))
            verifiers.append(MessageVerifier(checker: checker, clusterID: cfg.clusterID, replicaCount: cfg.n, clientCount: cfg.clientCount))
            let byz = scenario.byzantine.first { $0.replica == i }
            let behaviour: ByzantineBehaviour? = byz.map {
                var b = ByzantineBehaviour(mode: $0.mode, id: i, config: cfg, signer: replicaSigners[i], seed: rng.next())
                b.passive = scenario.passiveAdversaries
                if $0.mode == .coalition { b.coalition = coalition }
                return b
            }
            var driver = ReplicaDriver(replica: replica, log: InMemoryLog(limits: cfg.limits), interceptor: behaviour, checkInvariants: !scenario.skipInvariantChecks)
            driver.recordInvariantViolations = true
            drivers.append(driver)
            deliveries.append([])
            replyRoutes.append([:])
        }
        if let twin = scenario.twins {
            // The second instance: same id, same key, an honest replica of its own.
            let t = twin.replica
            var second = ReplicaDriver(replica: Replica(id: t, config: cfg, signer: replicaSigners[t], application: makeApplication()),
                                       log: InMemoryLog(limits: cfg.limits), checkInvariants: !scenario.skipInvariantChecks)
            second.recordInvariantViolations = true
            drivers.append(second)
            verifiers.append(MessageVerifier(checker: checker, clusterID: cfg.clusterID, replicaCount: cfg.n, clientCount: cfg.clientCount))
            deliveries.append([])
            replyRoutes.append([:])
        }
        self.clientSigners = clientSigners
        for c in 0..<scenario.clients {
            clients.append(ClientCore(id: ClientID(c), config: cfg, signer: clientSigners[c],
                                      initialTimestamp: UInt64(1 + c * 1000), window: scenario.clientWindow,
                                      retransmitTicks: 120, maxRetransmitTicks: 1200))
            clientSubmitted.append(0)
            clientCompleted.append(0)
            clientResults.append([:])
            carelessDone.append([])
        }
        model = makeApplication()
        resultsCheckedUpTo = Array(repeating: 0, count: scenario.n)
    }

    let debugEnabled = ProcessInfo.processInfo.environment["BFT_SIM_DEBUG"] != nil

    func makeApplication() -> any ReplicatedApplication {
        scenario.payloadBytes > 0 ? GrowingLogApplication() as any ReplicatedApplication : HashChainApplication()
    }

    func makeApplication(for r: ReplicaID) -> any ReplicatedApplication {
        let app = makeApplication()
        return scenario.divergentApplication == r ? DivergentApplication(app, atIndex: scenario.divergentAtIndex, divergeState: scenario.divergentState) : app
    }

    /// Nodes: replicas `0 ..< n`, and node `n` for the twin's second instance.
    var nodeCount: Int { drivers.count }
    func replicaID(ofNode node: Int) -> ReplicaID { node < scenario.n ? node : scenario.twins!.replica }
    /// The nodes that receive what is addressed to replica `r`.
    func nodes(of r: ReplicaID) -> [Int] { scenario.twins?.replica == r ? [r, scenario.n] : [r] }

    /// A Byzantine wrapper or an instance of the twinned replica: excluded from the checkers.
    func isByzantine(_ node: Int) -> Bool {
        behaviour(node) != nil || (scenario.twins.map { node == $0.replica || node == scenario.n } ?? false)
    }
    var healed: Bool { now > scenario.faultTicks }

    func isDown(_ node: Int) -> Bool {
        !healed && scenario.crashes.contains { $0.replica == node && now >= $0.from && now < $0.to }
    }

    /// Whether the network currently carries a message from node `a` to node `b` (-1: a client).
    func linkUp(_ a: Principal, _ b: Principal, fromNode: Int, toNode: Int) -> Bool {
        guard !healed else { return true }
        if let twin = scenario.twins, fromNode >= 0, toNode >= 0 {
            for w in twin.windows where now >= w.start && now < w.end {
                guard let g = w.group(of: fromNode), g == w.group(of: toNode) else { return false }
            }
        }
        for d in scenario.deaf where now >= d.start && now < d.end && a != b {
            if b == .replica(d.replica) { deafDrops += 1; return false }
            if a == .replica(d.replica) { deafSends += 1 }
        }
        for p in scenario.partitions where now >= p.start && now < p.end {
            let aIn: Bool, bIn: Bool
            if case .replica(let r) = a { aIn = p.isolated.contains(r) } else { aIn = false }
            if case .replica(let r) = b { bIn = p.isolated.contains(r) } else { bIn = false }
            if p.oneWay { if aIn && !bIn { return false } } else if aIn != bIn { return false }
        }
        return true
    }

    /// Sends from node `fromNode` (-1: a client) to a principal: a twinned replica's two
    /// instances each get their own copy, subject to their own links.
    func send(from: Principal, fromNode: Int, to: Principal, _ m: Message) {
        messageCount += 1
        if case .replica(let r) = to {
            for node in nodes(of: r) { send(from: from, fromNode: fromNode, to: to, toNode: node, m) }
        } else {
            send(from: from, fromNode: fromNode, to: to, toNode: -1, m)
        }
    }

    func send(from: Principal, fromNode: Int, to: Principal, toNode: Int, _ m: Message) {
        guard linkUp(from, to, fromNode: fromNode, toNode: toNode) else { return }
        if !healed && netRng.chance(scenario.dropRate) { return }
        let copies = (!healed && netRng.chance(scenario.duplicateRate)) ? 2 : 1
        for _ in 0..<copies {
            let delay = UInt64(netRng.int(1...(healed ? 3 : scenario.maxDelayTicks)))
            orderCounter += 1
            queue.push(InFlight(at: now + delay, order: orderCounter, from: from, fromNode: fromNode, to: to, toNode: toNode, message: m))
        }
    }

    /// Carries out a node's step through its driver (persist, then send, with its Byzantine
    /// decorator if it has one) and records what correct replicas delivered.
    func dispatch(from node: Int, _ output: ReplicaOutput) {
        let r = replicaID(ofNode: node)
        if let broken = drivers[node].invariantViolations.first, invariantReported.insert(node).inserted {
            // The honest code broke its own invariants (Byzantine wrappers run it unchanged too).
            failures.append("invariant violated at replica \(r) (node \(node)) at tick \(now): \(broken)")
        }
        if scenario.crashAtWorstMoment, !healed, node < scenario.n, scenario.twins?.replica != node, !output.persist.isEmpty,
           worstMomentCrashes < 8, netRng.chance(0.02) {
            // Between persist and send (or inside a torn persist): nothing of this step leaves.
            // After a whole persist the step's deliveries reached the deliver log (persist, then
            // deliver, then send); after a torn one they did not, as in the node.
            worstMomentCrashes += 1
            var kept = netRng.chance(0.5) ? netRng.int(0...(output.persist.count - 1)) : output.persist.count
            // A checkpoint and the records after it are one compaction, durable together or not
            // at all (`WriteAheadLog.compact(startingWith:)`): a torn persist stops before it.
            if kept < output.persist.count, let c = output.persist[..<kept].lastIndex(where: { $0.compactsLog }) { kept = c }
            if !isByzantine(node) && kept == output.persist.count { record(replica: r, output) }
            if debugEnabled { print("t=\(now) worst-moment crash r\(r): kept \(kept) of \(output.persist.count) records, deliveries \(output.deliveries.map(\.index))") }
            try! drivers[node].log.persist(Array(output.persist.prefix(kept)))
            restartFromLog(r)
            return
        }
        if !isByzantine(node) {
            record(replica: r, output)
        } else if behaviour(node) == nil {
            for e in output.events { if case .viewChangeStarted = e { twinViewChanges += 1 } }
        }
        let correctNode = !isByzantine(node)  // read before the driver is borrowed for `apply`
        if debugEnabled {
            for o in output.messages {
                switch o.message {
                case .prePrepare(let pp): print("t=\(now) r\(r) PP v\(pp.view) n\(pp.seq) \(pp.digest.hex.prefix(8)) reqs \(pp.requests.map { "c\($0.client)/\($0.timestamp)" }) -> \(o.destination)")
                case .newView(let nv): print("t=\(now) r\(r) NEWVIEW v\(nv.view) from \(nv.viewChanges.map { "r\($0.replica):s\($0.stableSeq):\($0.prepared.map { "n\($0.prePrepare.seq)v\($0.prePrepare.view)/\($0.prePrepare.digest.hex.prefix(4))" })" }) O \(nv.prePrepares.map { "n\($0.seq)/\($0.digest.hex.prefix(4))" })")
                case .viewChange(let vc): print("t=\(now) r\(r) VC v\(vc.newView) s\(vc.stableSeq) P \(vc.prepared.map { "n\($0.prePrepare.seq)v\($0.prePrepare.view)/\($0.prePrepare.digest.hex.prefix(4))" })")
                default: break
                }
            }
        }
        try! drivers[node].apply(output) { m, recipients in
            for to in recipients {
                if case .client(let c) = to, let route = self.replyRoutes[node][c], route != to {
                    // The route points at a replica that relayed this client's request.
                    if correctNode { self.misroutedReplies += 1 }
                    self.send(from: .replica(r), fromNode: node, to: route, m)
                    continue
                }
                self.send(from: .replica(r), fromNode: node, to: to, m)
            }
        }
    }

    /// A crash with amnesia: the replica restarts empty and recovers from its persisted records.
    func restartFromLog(_ r: ReplicaID) {
        restarts += 1
        let fresh = Replica(id: r, config: config, signer: replicaSigners[r], application: makeApplication(for: r))
        let before = deliveries[r]
        let old = drivers[r].replica
        var driver = ReplicaDriver(replica: fresh, log: drivers[r].log, interceptor: drivers[r].interceptor, checkInvariants: !scenario.skipInvariantChecks)
        driver.recordInvariantViolations = true
        let out: ReplicaOutput
        do {
            out = try driver.recover(now: now)
        } catch {
            failures.append("replica \(r): a persisted record does not decode (\(error))")
            return
        }
        for case .checkpointMismatch(let seq) in out.events {
            failures.append("replica \(r): its persisted checkpoint at seq \(seq) does not match its digest after recovery")
        }
        if debugEnabled {
            let x = driver.replica
            print("t=\(now) restart r\(r): records \(driver.log.encoded.count) recoveredExec \(x.lastExecuted) count \(x.executedCount) stable \(x.stableSeq) view \(x.view) active \(x.active); before: lastExec \(old.lastExecuted) count \(old.executedCount) stable \(old.stableSeq); recovered deliveries \(out.deliveries.count)")
        }
        for d in out.deliveries {
            if let prior = before.first(where: { $0.index == d.index }), prior.digest != d.digest {
                failures.append("replica \(r) re-executed index \(d.index) differently after recovery")
            }
        }
        if debugEnabled {
            let recs = (try? driver.log.recoverableRecords()) ?? []
            for rec in recs {
                switch rec {
                case .ownMessage(.prePrepare(let pp)): print("   rec own PP v\(pp.view) n\(pp.seq) \(pp.digest.hex.prefix(4))")
                case .view(let v, let a): print("   rec view \(v) \(a)")
                case .newView(let nv): print("   rec newView v\(nv.view) by r\(nv.replica)")
                case .checkpoint(let seq, _, _, _): print("   rec checkpoint \(seq)")
                case .stableCheckpoint(let seq, _, _): print("   rec stableCheckpoint \(seq)")
                default: break
                }
            }
            print("   \(driver.replica.slotSummary)")
        }
        // Deliveries beyond what it had recorded (possible only if it crashed mid-step) are new.
        let known = before.last?.index ?? 0
        deliveries[r] += out.deliveries.filter { $0.index > known }
        // Time continues from where the cluster is (the driver recovered it at `now`).
        drivers[r] = driver
    }

    func record(replica r: ReplicaID, _ output: ReplicaOutput) {
        for d in output.deliveries {
            trace.mix(UInt64(r)); trace.mix(d.index); trace.mix(bytes: d.digest.bytes)
            if debugEnabled { print("t=\(now) DELIVER r\(r) idx \(d.index) seq \(d.seq) view \(d.view) c\(d.client) ts \(d.timestamp) \(d.digest.hex.prefix(8))") }
            // As the node's deliver log: an index delivered before a crash is not written again,
            // but executing it again must give the same request.
            if let last = deliveries[r].last, d.index <= last.index {
                if let prior = deliveries[r].last(where: { $0.index == d.index }), prior.digest != d.digest {
                    failures.append("replica \(r) re-executed index \(d.index) differently after recovery")
                }
                continue
            }
            deliveries[r].append(d)
        }
        for e in output.events {
            switch e {
            case .viewChangeStarted: viewChanges += 1
            case .stateTransferred: stateTransfers += 1
            case .dropped(let kind, let from, let reason):
                dropCount += 1
                if debugEnabled { print("t=\(now) DROP r\(r) \(kind) from \(from) \(reason)") }
            case .checkpointStable(let seq, let digest):
                if let prev = stableDigests[seq], prev != digest {
                    failures.append("checkpoint digests differ at seq \(seq): \(prev.hex) vs \(digest.hex) (replica \(r))")
                }
                stableDigests[seq] = digest
            case .equivocation: equivocationsObserved += 1
            case .checkpointMismatch(let seq):
                failures.append("replica \(r): its own checkpoint state at seq \(seq) differs from the stable digest (checkpointMismatch)")
            default: break
            }
        }
        for o in output.messages {
            guard case .reply(let reply) = o.message else { continue }
            let d = SHA256.hash(reply.result)
            if let first = correctReplies[reply.client]?[reply.timestamp] {
                if first.result != d {
                    failures.append("correct replicas \(first.replica) and \(r) replied differently to client \(reply.client) timestamp \(reply.timestamp)")
                }
            } else {
                correctReplies[reply.client, default: [:]][reply.timestamp] = (r, d)
            }
        }
    }

    func deliver(_ m: InFlight) {
        if debugEnabled && healed {
            switch m.message.kind {
            case .fetch, .stateTransfer, .catchUp, .newView, .viewChange:
                print("t=\(now) \(m.from) -> \(m.to) \(m.message.kind)")
            default: break
            }
        }
        trace.mix(m.at); trace.mix(UInt64(m.message.kind.rawValue))
        if m.toNode >= scenario.n { trace.mix(UInt64(m.toNode)) }
        switch m.to {
        case .replica:
            let node = m.toNode
            guard !isDown(node) else { return }
            if !isByzantine(node) {
                if case .stateTransfer(let st) = m.message, st.index > 0 { laterStateChunks += 1 }
                if case .batch = m.message { batchBodies += 1 }
            }
            if case .request(let req) = m.message {
                while replyRoutes.count <= node { replyRoutes.append([:]) }
                if !scenario.sessions || m.from == .client(req.client) { replyRoutes[node][req.client] = m.from }
            }
            switch verifiers[node].verify(m.message) {
            case .success(let v): dispatch(from: node, drivers[node].stepOnly([v]))
            case .failure: dropCount += 1
            }
        case .client(let c):
            guard case .reply = m.message, case .success(let v) = clientVerifier.verify(m.message),
                  case .reply(let reply) = v.message else { dropCount += 1; return }
            if scenario.carelessClients, reply.client == c, clients[Int(c)].outstanding[reply.timestamp] != nil,
               carelessDone[Int(c)].insert(reply.timestamp).inserted {
                // The weakened client: the first verified reply decides.
                complete(Int(c), timestamp: reply.timestamp, result: reply.result)
            }
            let out = clients[Int(c)].onReply(reply)
            handleClient(Int(c), out)
        }
    }

    func handleClient(_ c: Int, _ out: ClientCore.Output) {
        for r in out.broadcasts {
            guard scenario.byzantineClient == c else {
                for to in 0..<scenario.n { send(from: .client(ClientID(c)), fromNode: -1, to: .replica(to), .request(r)) }
                continue
            }
            // Another operation under the same timestamp, signed: replicas disagree on what the
            // client asked, and must still execute one request per timestamp, the same everywhere.
            var other = r
            other.operation = r.operation + Array("#other".utf8)
            other = other.signed(with: clientSigners[c], clusterID: config.clusterID)
            submittedDigests.insert(other.digest)
            operations[other.digest] = other.operation
            var garbage = r
            if !garbage.signature.isEmpty { garbage.signature[0] ^= 0xff }
            for to in 0..<scenario.n {
                let variant = netRng.chance(0.4) ? other : r
                for _ in 0..<3 { send(from: .client(ClientID(c)), fromNode: -1, to: .replica(to), .request(variant)) }
                if netRng.chance(0.3) { send(from: .client(ClientID(c)), fromNode: -1, to: .replica(to), .request(garbage)) }
            }
            byzantineClientActs += 1
        }
        for done in out.completions where !carelessDone[c].contains(done.timestamp) {
            complete(c, timestamp: done.timestamp, result: done.result)
        }
    }

    func complete(_ c: Int, timestamp: UInt64, result: [UInt8]) {
        clientCompleted[c] += 1
        if clientResults[c][timestamp] != nil {
            failures.append("client \(c) completed timestamp \(timestamp) twice")
        }
        clientResults[c][timestamp] = result
        completionsToCheck.append((c, timestamp, result))
    }

    func clientStep(_ c: Int) {
        handleClient(c, clients[c].tick())
        while clients[c].canSubmit && clientSubmitted[c] < scenario.requestsPerClient && netRng.chance(0.3) {
            var op = Array("c\(c)-op\(clientSubmitted[c])".utf8)
            if scenario.payloadBytes > 0 { op += [UInt8](repeating: UInt8(truncatingIfNeeded: c &* 31 &+ clientSubmitted[c]), count: scenario.payloadBytes) }
            let (_, out) = clients[c].submit(op)
            for r in out.broadcasts { submittedDigests.insert(r.digest); operations[r.digest] = r.operation }
            clientSubmitted[c] += 1
            handleClient(c, out)
        }
    }

    var correct: [ReplicaID] { (0..<scenario.n).filter { !isByzantine($0) } }

    var done: Bool {
        guard healed, clientCompleted.allSatisfy({ $0 == scenario.requestsPerClient }) else { return false }
        let counts = correct.map { drivers[$0].replica.executedCount }
        guard counts.allSatisfy({ $0 == UInt64(scenario.clients * scenario.requestsPerClient) }) else { return false }
        // Views settled: the active correct replicas share one view, and a correct replica still in
        // a view change is ahead of it (waiting for f+1 to join, §4.5.2), never waiting for the
        // NEW-VIEW of a view the others already run: that one exists and must reach it.
        let activeViews = Set(correct.filter { drivers[$0].replica.active }.map { drivers[$0].replica.view })
        guard activeViews.count == 1, let view = activeViews.first else { return false }
        return correct.allSatisfy { drivers[$0].replica.active || drivers[$0].replica.view > view }
    }

    public func run() -> SimulationResult {
        let limit = scenario.faultTicks + scenario.livenessTicks
        while now < limit && failures.isEmpty {
            now += 1
            while let m = queue.peek(), m.at <= now {
                _ = queue.pop()
                deliver(m)
            }
            for c in scenario.crashes where c.amnesia && c.to == now && !isByzantine(c.replica) {
                restartFromLog(c.replica)
            }
            if now == scenario.faultTicks + 1 {
                // The heal brings back replicas whose crash outlasted the fault phase.
                for c in scenario.crashes where c.amnesia && c.to > scenario.faultTicks && !isByzantine(c.replica) {
                    restartFromLog(c.replica)
                }
            }
            for node in 0..<nodeCount where !isDown(node) {
                dispatch(from: node, drivers[node].tickOnly(now: now))
            }
            for c in 0..<scenario.clients { clientStep(c) }
            checkSafety()
            measureTables()
            if done { break }
        }
        if failures.isEmpty && !done {
            let status = correct.map { r in "r\(r): view \(drivers[r].replica.view)\(drivers[r].replica.active ? "" : "*") exec \(drivers[r].replica.lastExecuted) delivered \(drivers[r].replica.executedCount) stable \(drivers[r].replica.stableSeq) pending \(drivers[r].replica.pendingRequestCount)" }
            failures.append("liveness: after \(now) ticks clients completed \(clientCompleted) of \(scenario.requestsPerClient) each; \(status.joined(separator: "; "))")
        }
        checkSafety()
        checkFinal()
        let adversaries = (0..<scenario.n).compactMap { r in
            behaviour(r).map { AdversaryReport(replica: r, mode: $0.mode, counters: $0.counters) }
        }
        return SimulationResult(seed: scenario.seed, scenario: scenario.description, failures: failures,
                                traceHash: trace.value, ticks: now, delivered: deliveries.map(\.count).max() ?? 0,
                                viewChanges: viewChanges, stateTransfers: stateTransfers, messages: messageCount, drops: dropCount,
                                laterStateChunks: laterStateChunks, batchBodies: batchBodies, misroutedReplies: misroutedReplies, adversaries: adversaries,
                                peakSlots: peakSlots, peakBatches: peakBatches, peakPending: peakPending,
                                equivocationsObserved: equivocationsObserved, twinViewChanges: twinViewChanges)
    }

    var checkedUpTo: [Int] = []
    var totalOrder: [UInt64: Digest] = [:]
    var deliveredKeys: [Set<[UInt64]>] = []
    var lastTimestamp: [[ClientID: UInt64]] = []

    /// Agreement and total order, integrity and per-client order, checked incrementally.
    func checkSafety() {
        if checkedUpTo.isEmpty {
            checkedUpTo = Array(repeating: 0, count: scenario.n)
            deliveredKeys = Array(repeating: [], count: scenario.n)
            lastTimestamp = Array(repeating: [:], count: scenario.n)
        }
        for r in correct {
            let list = deliveries[r]
            while checkedUpTo[r] < list.count {
                let d = list[checkedUpTo[r]]
                checkedUpTo[r] += 1
                if let other = totalOrder[d.index], other != d.digest {
                    failures.append("total order violated at index \(d.index): replica \(r) delivered \(d.digest.hex), another correct replica \(other.hex)")
                }
                if totalOrder[d.index] == nil { orderDeliveries[d.index] = d }
                totalOrder[d.index] = d.digest
                if !submittedDigests.contains(d.digest) {
                    failures.append("integrity: replica \(r) delivered a request no client submitted (\(d.digest.hex))")
                }
                if !deliveredKeys[r].insert([UInt64(d.client), d.timestamp]).inserted {
                    failures.append("integrity: replica \(r) delivered client \(d.client) timestamp \(d.timestamp) twice")
                }
                if let last = lastTimestamp[r][d.client], d.timestamp <= last {
                    failures.append("causal order: replica \(r) delivered client \(d.client) timestamp \(d.timestamp) after \(last)")
                }
                lastTimestamp[r][d.client] = d.timestamp
            }
        }
        advanceModel()
    }

    /// Feeds the model every agreed request it has not executed yet, then compares what clients
    /// accepted and what correct replicas delivered with the model's results.
    func advanceModel() {
        while let d = orderDeliveries[modelIndex + 1] {
            guard let op = operations[d.digest] else { break }  // reported by the integrity check
            modelIndex += 1
            let result = model.execute(op, context: ExecutionContext(client: d.client, timestamp: d.timestamp, seq: d.seq, index: d.index))
            modelResults[modelIndex] = result
            modelByRequest[d.client, default: [:]][d.timestamp] = result
        }
        for r in correct {
            let list = deliveries[r]
            while resultsCheckedUpTo[r] < list.count, list[resultsCheckedUpTo[r]].index <= modelIndex {
                let d = list[resultsCheckedUpTo[r]]
                resultsCheckedUpTo[r] += 1
                if modelResults[d.index] != d.result {
                    failures.append("replica \(r) delivered index \(d.index) with a result the sequential model does not produce")
                }
            }
        }
        var waiting: [(client: Int, timestamp: UInt64, result: [UInt8])] = []
        for c in completionsToCheck {
            guard let expected = modelByRequest[ClientID(c.client)]?[c.timestamp] else { waiting.append(c); continue }
            if expected != c.result {
                failures.append("client \(c.client) accepted a forged or divergent result for timestamp \(c.timestamp): no correct replica's execution produced it")
            }
        }
        completionsToCheck = waiting
    }

    /// Checks after the run: every completion matched an executed request, correct replies
    /// matched the model, and each correct replica's tables stayed bounded.
    func checkFinal() {
        for c in completionsToCheck {
            failures.append("client \(c.client) completed timestamp \(c.timestamp) but no correct replica executed it")
        }
        completionsToCheck = []
        if let highest = totalOrder.keys.max(), highest > modelIndex {
            failures.append("model: index \(modelIndex + 1) of \(highest) was delivered by no correct replica")
        }
        for c in correctReplies.keys.sorted() {
            for (t, first) in correctReplies[c]!.sorted(by: { $0.key < $1.key }) {
                if let expected = modelByRequest[c]?[t], SHA256.hash(expected) != first.result {
                    failures.append("replica \(first.replica) replied to client \(c) timestamp \(t) with a result the model does not produce")
                }
            }
        }
        // Once every request completed nothing stays pending beyond what clients may still send.
        checkBounds(pendingBound: scenario.clients * scenario.clientWindow, when: "after the run")
    }

    var slotBound: Int { scenario.stateBoundOverride ?? Int(config.watermarkWindow) + Self.slotSlack }
    var batchBound: Int { scenario.stateBoundOverride ?? Self.batchBound(window: Int(config.watermarkWindow)) }

    /// Each correct replica's tables: slots within the watermark window (plus slack), batch
    /// bodies only for slots, pending requests within `pendingBound`. Reports each breach once.
    func checkBounds(pendingBound: Int, when: String) {
        for r in correct {
            let rep = drivers[r].replica
            if rep.slotCount > slotBound {
                failures.append("bounded state \(when): replica \(r) holds \(rep.slotCount) slots (bound \(slotBound)): \(rep.slotSummary)")
            }
            if rep.pendingRequestCount > pendingBound {
                failures.append("bounded state \(when): replica \(r) holds \(rep.pendingRequestCount) pending requests (bound \(pendingBound))")
            }
            if rep.batchCount > batchBound {
                failures.append("bounded state \(when): replica \(r) holds \(rep.batchCount) batch bodies (bound \(batchBound))")
            }
        }
    }

    /// Slots beyond the watermark window a correct replica may hold (the window is counted from
    /// the stable checkpoint; a replica may hold slots up to the next checkpoint's proof).
    static let slotSlack = 8
    static func batchBound(window: Int) -> Int { 2 * window + 16 }

    /// Records the peaks and checks the hard bounds at every tick: a lagging replica may hold
    /// up to `maxPendingPerClient` requests per client until it catches up.
    func measureTables() {
        for r in correct {
            peakSlots = max(peakSlots, drivers[r].replica.slotCount)
            peakBatches = max(peakBatches, drivers[r].replica.batchCount)
            peakPending = max(peakPending, drivers[r].replica.pendingRequestCount)
        }
        if peakSlots > slotBound || peakBatches > batchBound || peakPending > scenario.clients * config.maxPendingPerClient {
            checkBounds(pendingBound: scenario.clients * config.maxPendingPerClient, when: "at tick \(now)")
        }
    }
}

/// Binary min-heap on (delivery tick, send order): deterministic, no `Set`/`Dictionary` order.
struct MessageQueue {
    var heap: [Simulation.InFlight] = []

    func less(_ a: Simulation.InFlight, _ b: Simulation.InFlight) -> Bool { (a.at, a.order) < (b.at, b.order) }

    func peek() -> Simulation.InFlight? { heap.first }

    mutating func push(_ x: Simulation.InFlight) {
        heap.append(x)
        var i = heap.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            if less(heap[i], heap[p]) { heap.swapAt(i, p); i = p } else { break }
        }
    }

    mutating func pop() -> Simulation.InFlight? {
        guard !heap.isEmpty else { return nil }
        heap.swapAt(0, heap.count - 1)
        let top = heap.removeLast()
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < heap.count && less(heap[l], heap[m]) { m = l }
            if r < heap.count && less(heap[r], heap[m]) { m = r }
            if m == i { break }
            heap.swapAt(i, m); i = m
        }
        return top
    }
}

/// The simulator's application for large-payload seeds: it keeps every operation (so its state,
/// and every checkpoint, grows with the load) and answers with the operation's digest followed
/// by the operation (so the reply cache grows too).
final class GrowingLogApplication: ReplicatedApplication {
    var log: [UInt8] = []
    var count: UInt64 = 0

    func execute(_ operation: [UInt8], context: ExecutionContext) -> [UInt8] {
        var w = WireWriter(capacity: operation.count + 4)
        w.blob(operation)
        log += w.bytes
        count += 1
        return SHA256.hash(log).bytes + operation
    }

    func snapshot() -> [UInt8] {
        var w = WireWriter(capacity: log.count + 12)
        w.u64(count); w.blob(log)
        return w.bytes
    }

    func restore(from snapshot: [UInt8]) throws {
        var r = WireReader(snapshot)
        count = try r.u64()
        log = try r.blob(field: "log", limit: Int(UInt32.max))
        try r.finish()
    }
}
