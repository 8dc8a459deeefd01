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

    /// Draws a scenario from a seed.
    public static func random(seed: UInt64, useEd25519: Bool = false) -> Scenario {
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
            let mode = ByzantineMode.allCases[rng.int(0...(ByzantineMode.allCases.count - 1))]
            s.byzantine.append((r, mode))
        }
        if rng.chance(0.3) { s.payloadBytes = rng.int(200...3000) }
        return s
    }

    public var description: String {
        let byz = byzantine.map { "\($0.replica):\($0.mode.rawValue)" }.joined(separator: ",")
        return "n=\(n) clients=\(clients)x\(requestsPerClient) window=\(clientWindow) payload=\(payloadBytes) faultTicks=\(faultTicks) drop=\(Int(dropRate * 1000))‰ dup=\(Int(duplicateRate * 1000))‰ delay<=\(maxDelayTicks) partitions=\(partitions.count) crashes=\(crashes.count) byzantine=[\(byz)]"
    }
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
    public var passed: Bool { failures.isEmpty }
}

/// A deterministic cluster simulation: replicas, clients and a faulty network driven by one seed.
public final class Simulation {
    public let scenario: Scenario
    let config: ProtocolConfig
    var rng: SimRandom
    var netRng: SimRandom

    struct InFlight { let at: UInt64; let order: UInt64; let from: Principal; let to: Principal; let message: Message }
    var queue = MessageQueue()
    var orderCounter: UInt64 = 0

    var replicas: [Replica] = []
    /// Each replica's persisted records since its last checkpoint record (its write-ahead log).
    var persisted: [[[UInt8]]] = []
    var replicaSigners: [any MessageSigner] = []
    var restarts = 0
    var behaviours: [ByzantineBehaviour?] = []
    var verifiers: [MessageVerifier] = []
    var clients: [ClientCore] = []
    var clientVerifier: MessageVerifier
    var clientSubmitted: [Int] = []
    var clientCompleted: [Int] = []
    var clientResults: [[UInt64: [UInt8]]] = []
    var submittedDigests: Set<Digest> = []

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
    var batchBodies = 0

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
        for i in 0..<scenario.n {
            persisted.append([])
            replicas.append(Replica(id: i, config: cfg, signer: replicaSigners[i], application: makeApplication()))
            verifiers.append(MessageVerifier(checker: checker, clusterID: cfg.clusterID, replicaCount: cfg.n, clientCount: cfg.clientCount))
            let byz = scenario.byzantine.first { $0.replica == i }
            behaviours.append(byz.map { ByzantineBehaviour(mode: $0.mode, id: i, config: cfg, signer: replicaSigners[i], seed: rng.next()) })
            deliveries.append([])
        }
        for c in 0..<scenario.clients {
            clients.append(ClientCore(id: ClientID(c), config: cfg, signer: clientSigners[c],
                                      initialTimestamp: UInt64(1 + c * 1000), window: scenario.clientWindow,
                                      retransmitTicks: 120, maxRetransmitTicks: 1200))
            clientSubmitted.append(0)
            clientCompleted.append(0)
            clientResults.append([:])
        }
    }

    let debugEnabled = ProcessInfo.processInfo.environment["BFT_SIM_DEBUG"] != nil

    func makeApplication() -> any ReplicatedApplication {
        scenario.payloadBytes > 0 ? GrowingLogApplication() as any ReplicatedApplication : HashChainApplication()
    }

    func isByzantine(_ r: ReplicaID) -> Bool { behaviours[r] != nil }
    var healed: Bool { now > scenario.faultTicks }

    func isDown(_ r: ReplicaID) -> Bool {
        !healed && scenario.crashes.contains { $0.replica == r && now >= $0.from && now < $0.to }
    }

    /// Whether the network currently carries a message from `a` to `b`.
    func linkUp(_ a: Principal, _ b: Principal) -> Bool {
        guard !healed else { return true }
        for p in scenario.partitions where now >= p.start && now < p.end {
            let aIn: Bool, bIn: Bool
            if case .replica(let r) = a { aIn = p.isolated.contains(r) } else { aIn = false }
            if case .replica(let r) = b { bIn = p.isolated.contains(r) } else { bIn = false }
            if p.oneWay { if aIn && !bIn { return false } } else if aIn != bIn { return false }
        }
        return true
    }

    func send(from: Principal, to: Principal, _ m: Message) {
        messageCount += 1
        guard linkUp(from, to) else { return }
        if !healed && netRng.chance(scenario.dropRate) { return }
        let copies = (!healed && netRng.chance(scenario.duplicateRate)) ? 2 : 1
        for _ in 0..<copies {
            let delay = UInt64(netRng.int(1...(healed ? 3 : scenario.maxDelayTicks)))
            orderCounter += 1
            queue.push(InFlight(at: now + delay, order: orderCounter, from: from, to: to, message: m))
        }
    }

    func dispatch(from r: ReplicaID, _ output: ReplicaOutput) {
        var messages = output.messages
        if var b = behaviours[r] {
            messages = b.transform(messages, replica: replicas[r])
            behaviours[r] = b
        } else {
            record(replica: r, output)
            persist(replica: r, output.persist)
        }
        for o in messages {
            switch o.destination {
            case .replica(let to): send(from: .replica(r), to: .replica(to), o.message)
            case .allReplicas:
                for to in 0..<scenario.n where to != r { send(from: .replica(r), to: .replica(to), o.message) }
            case .client(let c): send(from: .replica(r), to: .client(c), o.message)
            }
        }
    }

    /// Appends to the replica's log; a checkpoint record compacts everything before it, as the
    /// node's write-ahead log does. Records go through their codec, as they would on disk.
    func persist(replica r: ReplicaID, _ records: [PersistRecord]) {
        for rec in records {
            if case .checkpoint = rec { persisted[r].removeAll() }
            persisted[r].append(rec.encoded())
        }
    }

    /// A crash with amnesia: the replica restarts empty and recovers from its persisted records.
    func restartFromLog(_ r: ReplicaID) {
        restarts += 1
        var fresh = Replica(id: r, config: config, signer: replicaSigners[r], application: makeApplication())
        var records: [PersistRecord] = []
        for bytes in persisted[r] {
            guard let rec = try? PersistRecord.decode(bytes) else {
                failures.append("replica \(r): a persisted record does not decode")
                return
            }
            records.append(rec)
        }
        let out = fresh.recover(from: records)
        let before = deliveries[r]
        if debugEnabled {
            print("t=\(now) restart r\(r): records \(records.count) recoveredExec \(fresh.lastExecuted) count \(fresh.executedCount) stable \(fresh.stableSeq) view \(fresh.view) active \(fresh.active); before: lastExec \(replicas[r].lastExecuted) count \(replicas[r].executedCount) stable \(replicas[r].stableSeq); recovered deliveries \(out.deliveries.count)")
        }
        for d in out.deliveries {
            if let prior = before.first(where: { $0.index == d.index }), prior.digest != d.digest {
                failures.append("replica \(r) re-executed index \(d.index) differently after recovery")
            }
        }
        // Deliveries beyond what it had recorded (possible only if it crashed mid-step) are new.
        let known = before.last?.index ?? 0
        deliveries[r] += out.deliveries.filter { $0.index > known }
        // Time continues from where the cluster is.
        for _ in 0..<now { _ = fresh.tick() }
        replicas[r] = fresh
    }

    func record(replica r: ReplicaID, _ output: ReplicaOutput) {
        for d in output.deliveries {
            trace.mix(UInt64(r)); trace.mix(d.index); trace.mix(bytes: d.digest.bytes)
            deliveries[r].append(d)
        }
        for e in output.events {
            switch e {
            case .viewChangeStarted: viewChanges += 1
            case .stateTransferred: stateTransfers += 1
            case .dropped: dropCount += 1
            case .checkpointStable(let seq, let digest):
                if let prev = stableDigests[seq], prev != digest {
                    failures.append("checkpoint digests differ at seq \(seq): \(prev.hex) vs \(digest.hex) (replica \(r))")
                }
                stableDigests[seq] = digest
            default: break
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
        switch m.to {
        case .replica(let r):
            guard !isDown(r) else { return }
            behaviours[r]?.observe(m.message)
            if !isByzantine(r) {
                if case .stateTransfer(let st) = m.message, st.index > 0 { laterStateChunks += 1 }
                if case .batch = m.message { batchBodies += 1 }
            }
            switch verifiers[r].verify(m.message) {
            case .success(let v): dispatch(from: r, replicas[r].step(v))
            case .failure: dropCount += 1
            }
        case .client(let c):
            guard case .reply = m.message, case .success(let v) = clientVerifier.verify(m.message),
                  case .reply(let reply) = v.message else { dropCount += 1; return }
            let out = clients[Int(c)].onReply(reply)
            handleClient(Int(c), out)
        }
    }

    func handleClient(_ c: Int, _ out: ClientCore.Output) {
        for r in out.broadcasts {
            for to in 0..<scenario.n { send(from: .client(ClientID(c)), to: .replica(to), .request(r)) }
        }
        for done in out.completions {
            clientCompleted[c] += 1
            if clientResults[c][done.timestamp] != nil {
                failures.append("client \(c) completed timestamp \(done.timestamp) twice")
            }
            clientResults[c][done.timestamp] = done.result
        }
    }

    func clientStep(_ c: Int) {
        handleClient(c, clients[c].tick())
        while clients[c].canSubmit && clientSubmitted[c] < scenario.requestsPerClient && netRng.chance(0.3) {
            var op = Array("c\(c)-op\(clientSubmitted[c])".utf8)
            if scenario.payloadBytes > 0 { op += [UInt8](repeating: UInt8(truncatingIfNeeded: c &* 31 &+ clientSubmitted[c]), count: scenario.payloadBytes) }
            let (_, out) = clients[c].submit(op)
            for r in out.broadcasts { submittedDigests.insert(r.digest) }
            clientSubmitted[c] += 1
            handleClient(c, out)
        }
    }

    var correct: [ReplicaID] { (0..<scenario.n).filter { !isByzantine($0) } }

    var done: Bool {
        guard healed, clientCompleted.allSatisfy({ $0 == scenario.requestsPerClient }) else { return false }
        let counts = correct.map { replicas[$0].executedCount }
        guard counts.allSatisfy({ $0 == UInt64(scenario.clients * scenario.requestsPerClient) }) else { return false }
        // Views settled: the active correct replicas share one view, and a correct replica still in
        // a view change is ahead of it (waiting for f+1 to join, §4.5.2), never waiting for the
        // NEW-VIEW of a view the others already run: that one exists and must reach it.
        let activeViews = Set(correct.filter { replicas[$0].active }.map { replicas[$0].view })
        guard activeViews.count == 1, let view = activeViews.first else { return false }
        return correct.allSatisfy { replicas[$0].active || replicas[$0].view > view }
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
            for r in 0..<scenario.n where !isDown(r) {
                dispatch(from: r, replicas[r].tick())
            }
            for c in 0..<scenario.clients { clientStep(c) }
            checkSafety()
            if done { break }
        }
        if failures.isEmpty && !done {
            let status = correct.map { r in "r\(r): view \(replicas[r].view)\(replicas[r].active ? "" : "*") exec \(replicas[r].lastExecuted) delivered \(replicas[r].executedCount) stable \(replicas[r].stableSeq) pending \(replicas[r].pendingRequestCount)" }
            failures.append("liveness: after \(now) ticks clients completed \(clientCompleted) of \(scenario.requestsPerClient) each; \(status.joined(separator: "; "))")
        }
        checkSafety()
        return SimulationResult(seed: scenario.seed, scenario: scenario.description, failures: failures,
                                traceHash: trace.value, ticks: now, delivered: deliveries.map(\.count).max() ?? 0,
                                viewChanges: viewChanges, stateTransfers: stateTransfers, messages: messageCount, drops: dropCount,
                                laterStateChunks: laterStateChunks, batchBodies: batchBodies)
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
