import ArgumentParser
import BFTByzantine
import BFTCore
import BFTCrypto
import BFTNode
import Foundation
import Histogram
import Logging
import NIOCore
import NIOPosix
import Synchronization
import BFTApplications
import BFTConfig
import BFTClient
import BFTFrameCodec
import BFTStorage
import BFTTransport

/// `bft-loadgen`: closed- and open-loop load against a PBFT cluster, with HdrHistogram latency,
/// and the signature bound measured in the same run.
struct LoadGen: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bft-loadgen",
        abstract: "Generate load against a PBFT cluster and report throughput and latency.",
        discussion: """
        Closed loop (default): N clients each keep W requests outstanding. Open loop (--rate R): \
        requests are sent at R per second and latency is measured from the intended send time, so \
        a stalled cluster shows up in the percentiles. At start the signature costs of this machine \
        are measured and the bound they put on throughput is printed; at the end, the efficiency \
        (throughput / bound).
        """)

    @Option(help: "Cluster configuration (cluster.json).")
    var config: String = "keys/cluster.json"

    @Option(name: .customLong("key-dir"), help: "Directory with client-<j>.pem (default: the configuration's directory).")
    var keyDir: String?

    @Option(help: "Number of client identities (at most the configured clients).")
    var clients: Int = 4

    @Option(help: "Requests each client keeps outstanding (closed loop), at most the replicas' per-client window.")
    var window: Int = 8

    @Option(help: "Measured duration, e.g. 30s, 500ms, 2m.")
    var duration: String = "30s"

    @Option(help: "Warm-up before measuring (not counted).")
    var warmup: String = "5s"

    @Option(help: "Operation payload size in bytes.")
    var payload: Int = 0

    @Option(help: "Open loop: requests per second (0 = closed loop).")
    var rate: Double = 0

    @Option(help: "Write the result as JSON to this file.")
    var json: String?

    @Flag(help: "Start a local cluster from the configuration's keys (bft-node next to this binary), run, stop it.")
    var spawn = false

    @Option(help: "With --spawn: the replicas' write-ahead log fsync, on or off.")
    var fsync: String = "on"

    @Flag(help: "Raise the offered load (open loop) step by step until throughput stops growing; report the peak.")
    var sweep = false

    @Option(name: .customLong("request-timeout"), help: "Seconds before a request counts as an error.")
    var requestTimeout: Double = 10

    @Option(help: ArgumentHelp("With --spawn: run replica R as a Byzantine replica in MODE (\(ByzantineMode.allCases.map(\.rawValue).joined(separator: ", "))). Test only.", valueName: "R:MODE"))
    var byzantine: String?

    @Flag(help: "Client identity number --clients floods every replica (fresh, replayed and forged requests, about 20,000 frames/s) while the other clients measure.")
    var flood = false

    @Option(name: .customLong("kill-primary-at"), help: "With --spawn: SIGKILL the primary this many seconds into the measured run; report the time to the first reply committed in a later view.")
    var killPrimaryAt: Double?

    @Option(name: .customLong("restart-after"), help: "With --kill-primary-at: restart the killed replica this many seconds after the kill; report how long it takes to catch up.")
    var restartAfter: Double?

    @Flag(name: .customLong("attack-table"), help: "With --spawn: run fault-free, then with replica 0 in each Byzantine mode, then with a flooding client (each on a fresh cluster); print each throughput as a fraction of the fault-free one.")
    var attackTable = false

    func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data("bft-loadgen: \(message)\n".utf8))
        Foundation.exit(2)
    }

    func run() throws {
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = .warning
            return h
        }
        guard let durationS = parseDuration(duration), let warmupS = parseDuration(warmup) else {
            fail("durations look like 30s, 500ms or 2m")
        }
        let cluster: ClusterConfiguration
        do { cluster = try ClusterConfiguration.load(path: config) } catch { fail("\(error)") }
        guard clients >= 1 && clients <= cluster.clients.count else {
            fail("--clients must be between 1 and the \(cluster.clients.count) clients in the configuration")
        }
        let proto = cluster.protocolConfig()
        guard window >= 1 && window <= proto.maxPendingPerClient else { fail("--window must be 1...\(proto.maxPendingPerClient)") }
        let dir = keyDir ?? URL(fileURLWithPath: config).deletingLastPathComponent().path
        var identities: [(id: ClientID, key: Ed25519PrivateKey)] = []
        // A git checkout leaves the committed development keys 0644, which loadPrivateKey (and
        // bft-node) refuse: make them private to their owner first (never loosens; a read-only
        // mount is left alone).
        for j in 0..<cluster.clients.count { ClusterConfiguration.tightenKeyFilePermissions(path: "\(dir)/client-\(j).pem") }
        if spawn {
            let keys = URL(fileURLWithPath: config).deletingLastPathComponent().path
            for r in cluster.replicas { ClusterConfiguration.tightenKeyFilePermissions(path: "\(keys)/replica-\(r.id).pem") }
        }
        for j in 0..<clients {
            do {
                let key = try ClusterConfiguration.loadPrivateKey(path: "\(dir)/client-\(j).pem")
                identities.append((try cluster.clientID(for: key), key))
            } catch { fail("\(error)") }
        }

        let bound = SignatureBound.measure(replicas: cluster.n)
        print(String(format: "signature costs on this machine: sign %.1f µs, verify %.1f µs; cores %d", bound.signMicros, bound.verifyMicros, bound.cores))
        print(String(format: "signature bound (1 client signature + %d verifications per request, %d cores shared): %.0f requests/s", cluster.n, bound.cores, bound.requestsPerSecond))

        if (byzantine != nil || killPrimaryAt != nil || attackTable) && !spawn {
            fail("--byzantine, --kill-primary-at and --attack-table need --spawn")
        }
        if restartAfter != nil && killPrimaryAt == nil { fail("--restart-after needs --kill-primary-at") }
        guard fsync == "on" || fsync == "off" else { fail("--fsync takes on or off") }
        var byzantineReplica: (id: Int, mode: ByzantineMode)?
        if let byzantine {
            let parts = byzantine.split(separator: ":", maxSplits: 1).map(String.init)
            guard parts.count == 2, let r = Int(parts[0]), r >= 0, r < cluster.n, let mode = ByzantineMode(rawValue: parts[1]) else {
                fail("--byzantine takes R:MODE with R in 0..<\(cluster.n) and MODE one of \(ByzantineMode.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            byzantineReplica = (r, mode)
        }
        // The flooder is the identity after the honest ones.
        var flooderIdentity: (id: ClientID, key: Ed25519PrivateKey)?
        if flood || attackTable {
            guard clients < cluster.clients.count else {
                fail("a flooding client needs a client identity beyond --clients (lower --clients below \(cluster.clients.count))")
            }
            do {
                let key = try ClusterConfiguration.loadPrivateKey(path: "\(dir)/client-\(clients).pem")
                flooderIdentity = (try cluster.clientID(for: key), key)
            } catch { fail("\(error)") }
        }

        let fingerprint = Fingerprint(n: cluster.n, f: cluster.f, batchLimit: proto.maxBatchRequests, window: window, clients: clients,
                                      payload: payload, mode: rate > 0 ? "open(\(Int(rate))/s)" : "closed", authentication: "ed25519-signed requests, ed25519-signed replica messages",
                                      fsync: spawn ? fsync : "as configured on the replicas", build: buildConfiguration, cores: bound.cores)
        print("configuration: \(fingerprint.line)")

        /// One run against a cluster (spawned fresh when --spawn), optionally with a Byzantine
        /// replica, a flooding client and a kill of the primary.
        func measure(label: String, byzantine: (id: Int, mode: ByzantineMode)?, flooding: Bool, fault: FaultPlan?) -> RunResult {
            var spawned: SpawnedCluster?
            if spawn {
                do {
                    spawned = try SpawnedCluster.start(configPath: config, cluster: cluster, fsync: fsync, byzantine: byzantine,
                                                       statusIntervalMs: fault == nil ? 1000 : 50)
                } catch { fail("\(error)") }
                let extra = byzantine.map { " (replica \($0.id) Byzantine: \($0.mode.rawValue))" } ?? ""
                print("spawned \(cluster.n) replicas\(extra), data in \(spawned!.dataDirectory)")
            }
            defer { spawned?.stop() }
            let runtime = ClientRuntime(configuration: cluster, clients: identities, window: window, logger: Logger(label: "bft-loadgen"))
            runtime.start()
            defer { runtime.shutdown() }
            var flooder: Flooder?
            if flooding, let f = flooderIdentity {
                flooder = Flooder(configuration: cluster, identity: f)
                flooder?.start()
                print("flooding as client \(f.id): \(flooder!.poolSize) pre-signed requests, 1 in \(Flooder.forgedEvery) forged, \(Flooder.framesPerMillisecond) frames/ms to every replica")
            }
            defer { flooder?.stop() }
            var r = Driver(runtime: runtime, identities: identities, payload: payload, rate: rate, timeout: requestTimeout)
                .run(warmup: warmupS, duration: durationS, label: label, fault: fault, cluster: spawned)
            r.byzantine = byzantine.map { "\($0.id):\($0.mode.rawValue)" }
            r.flooding = flooding
            r.views = spawned?.statuses().map(\.view).max()
            return r
        }

        var fault: FaultPlan?
        if let killPrimaryAt {
            guard killPrimaryAt < durationS else { fail("--kill-primary-at must fall inside --duration") }
            fault = FaultPlan(killAt: killPrimaryAt, restartAfter: restartAfter)
        }

        var results: [RunResult] = []
        if attackTable {
            var rows: [(String, (id: Int, mode: ByzantineMode)?, Bool)] = [("fault-free", nil, false)]
            for mode in ByzantineMode.allCases { rows.append(("replica 0 \(mode.rawValue)", (0, mode), false)) }
            rows.append(("flooding client", nil, true))
            for (label, byz, flooding) in rows {
                let r = measure(label: label, byzantine: byz, flooding: flooding, fault: nil)
                results.append(r)
                print(r.summaryLine)
            }
            let base = results[0].throughput
            print("")
            print("throughput under attack (\(clients) honest clients, window \(window), \(Int(durationS)) s each; fraction of fault-free)")
            print("  " + "scenario".padding(toLength: 28, withPad: " ", startingAt: 0) + "   req/s   fraction   p50 ms    p99 ms  errors  final view")
            for r in results {
                print("  " + r.label.padding(toLength: 28, withPad: " ", startingAt: 0)
                      + String(format: " %7.0f   %7.1f%%  %7.2f  %8.2f  %6d  %10@", r.throughput, base > 0 ? 100 * r.throughput / base : 0,
                               r.p50ms, r.p99ms, r.errors, r.views.map { "\($0)" } ?? "-"))
            }
        } else if sweep {
            var spawned: SpawnedCluster?
            if spawn {
                do { spawned = try SpawnedCluster.start(configPath: config, cluster: cluster, fsync: fsync, byzantine: byzantineReplica, statusIntervalMs: 1000) } catch { fail("\(error)") }
                print("spawned \(cluster.n) replicas (data in \(spawned!.dataDirectory))")
            }
            defer { spawned?.stop() }
            let runtime = ClientRuntime(configuration: cluster, clients: identities, window: window, logger: Logger(label: "bft-loadgen"))
            runtime.start()
            defer { runtime.shutdown() }
            var offered = max(200, bound.requestsPerSecond * 0.1)
            var best: RunResult?
            var stepsWithoutGrowth = 0
            while stepsWithoutGrowth < 2 && offered < bound.requestsPerSecond * 3 {
                let r = Driver(runtime: runtime, identities: identities, payload: payload, rate: offered,
                               timeout: requestTimeout).run(warmup: 1, duration: max(3, durationS / 4), label: "sweep \(Int(offered))/s")
                results.append(r)
                print(r.summaryLine)
                if let b = best, r.throughput <= b.throughput * 1.03 { stepsWithoutGrowth += 1 } else { stepsWithoutGrowth = 0 }
                if best == nil || r.throughput > best!.throughput { best = r }
                offered *= 1.4
            }
            if let b = best {
                print(String(format: "peak: %.0f requests/s at offered %.0f/s (p50 %.2f ms, p99 %.2f ms); efficiency %.1f%% of the signature bound",
                             b.throughput, b.offered, b.p50ms, b.p99ms, 100 * b.throughput / bound.requestsPerSecond))
            }
        } else {
            let r = measure(label: "run", byzantine: byzantineReplica, flooding: flood, fault: fault)
            results.append(r)
            r.printTable(bound: bound)
        }
        if let json {
            let doc = Report(fingerprint: fingerprint, bound: bound, results: results)
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            do { try enc.encode(doc).write(to: URL(fileURLWithPath: json)) } catch { fail("cannot write \(json): \(error.localizedDescription)") }
        }
        let completed = results.reduce(0) { $0 + $1.completed }
        if completed == 0 { fail("no request completed") }
    }
}

nonisolated var buildConfiguration: String {
    #if DEBUG
    return "debug"
    #else
    return "release"
    #endif
}

func parseDuration(_ s: String) -> Double? {
    if s.hasSuffix("ms"), let v = Double(s.dropLast(2)) { return v / 1000 }
    if s.hasSuffix("s"), let v = Double(s.dropLast()) { return v }
    if s.hasSuffix("m"), let v = Double(s.dropLast()) { return v * 60 }
    return Double(s)
}

struct Fingerprint: Codable {
    var n: Int, f: Int, batchLimit: Int, window: Int, clients: Int, payload: Int
    var mode: String, authentication: String, fsync: String, build: String, cores: Int
    var line: String {
        "n=\(n) f=\(f) batch<=\(batchLimit) clients=\(clients) window=\(window) payload=\(payload)B mode=\(mode) auth=\(authentication) fsync=\(fsync) build=\(build) cores=\(cores)"
    }
}

/// What Ed25519 alone allows on this machine when every replica and the load generator share it.
struct SignatureBound: Codable {
    var signMicros: Double
    var verifyMicros: Double
    var cores: Int
    var replicas: Int
    /// cores / (sign + n × verify)
    var requestsPerSecond: Double

    static func measure(replicas: Int) -> SignatureBound {
        let key = try! Ed25519PrivateKey(seed: Array(repeating: 7, count: 32))
        let msg = Array(repeating: UInt8(1), count: 64)
        var sig: [UInt8] = []
        let iterations = 2000
        var t0 = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<iterations { sig = key.signature(for: msg) }
        let sign = Double(DispatchTime.now().uptimeNanoseconds - t0) / Double(iterations) / 1000
        t0 = DispatchTime.now().uptimeNanoseconds
        var ok = true
        for _ in 0..<iterations { ok = ok && key.publicKey.isValidSignature(sig, for: msg) }
        let verify = Double(DispatchTime.now().uptimeNanoseconds - t0) / Double(iterations) / 1000
        precondition(ok)
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let perRequest = sign + Double(replicas) * verify
        return SignatureBound(signMicros: sign, verifyMicros: verify, cores: cores, replicas: replicas,
                              requestsPerSecond: Double(cores) * 1_000_000 / perRequest)
    }
}

struct RunResult: Codable {
    var label: String
    var offered: Double
    var seconds: Double
    var completed: Int
    var errors: Int
    var retransmissions: Int
    var throughput: Double
    var p50ms: Double, p90ms: Double, p99ms: Double, p999ms: Double, maxms: Double
    /// "R:MODE" when a replica ran a Byzantine mode.
    var byzantine: String?
    var flooding = false
    /// Highest view any replica reported at the end (spawned clusters only).
    var views: UInt64?
    /// With --kill-primary-at: the replica killed, the view it led, and the time from the kill to
    /// the first reply committed in a later view.
    var killedReplica: Int?
    var killedView: UInt64?
    var failoverMs: Double?
    /// With --restart-after: time from the restart until the restarted replica had executed
    /// everything the others had executed when it came back.
    var catchUpMs: Double?
    var catchUpTarget: UInt64?

    var summaryLine: String {
        String(format: "%@: %.0f req/s, p50 %.2f ms, p99 %.2f ms, errors %d", label, throughput, p50ms, p99ms, errors)
    }

    func printTable(bound: SignatureBound) {
        print("")
        print("  completed     \(completed) in \(String(format: "%.1f", seconds)) s")
        print(String(format: "  throughput    %.0f requests/s", throughput))
        print(String(format: "  latency ms    p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f", p50ms, p90ms, p99ms, p999ms, maxms))
        print("  errors        \(errors) (timeouts)   retransmissions \(retransmissions)")
        print(String(format: "  bound         %.0f requests/s (signatures alone)", bound.requestsPerSecond))
        print(String(format: "  efficiency    %.1f%% of the bound", 100 * throughput / bound.requestsPerSecond))
        if let killedReplica, let killedView {
            if let failoverMs {
                print(String(format: "  failover      %.0f ms from SIGKILL of primary %d (view %d) to the first reply committed in a later view", failoverMs, killedReplica, killedView))
            } else {
                print("  failover      no reply committed in a view after \(killedView) before the run ended")
            }
            if let catchUpTarget {
                if let catchUpMs {
                    print(String(format: "  catch-up      %.0f ms from restart until replica %d executed seq %d (the others' position at its restart)", catchUpMs, killedReplica, catchUpTarget))
                } else {
                    print("  catch-up      replica \(killedReplica) did not reach seq \(catchUpTarget) before the run ended")
                }
            }
        }
    }
}

struct Report: Codable {
    var fingerprint: Fingerprint
    var bound: SignatureBound
    var results: [RunResult]
}

/// Shared measurement state; touched from the client loop and read by the progress printer.
final class Measurements: @unchecked Sendable {
    struct State {
        var histogram = Histogram<UInt64>(highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: .three)
        var interval = Histogram<UInt64>(highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: .three)
        var completed = 0
        var intervalCompleted = 0
        var errors = 0
        var intervalErrors = 0
        var measuring = false
        /// Set by the fault plan: completions in a view above `killedView` end the failover.
        var killedView: UInt64?
        var killedAt: UInt64?
        var firstLaterViewReplyAt: UInt64?
    }
    let state = Mutex(State())

    func record(latencyMicros: UInt64, ok: Bool, view: UInt64? = nil) {
        state.withLock { s in
            if let v = view, let kv = s.killedView, v > kv, s.firstLaterViewReplyAt == nil {
                s.firstLaterViewReplyAt = DispatchTime.now().uptimeNanoseconds
            }
            guard s.measuring else { return }
            if ok {
                _ = s.histogram.record(max(latencyMicros, 1))
                _ = s.interval.record(max(latencyMicros, 1))
                s.completed += 1
                s.intervalCompleted += 1
            } else {
                s.errors += 1
                s.intervalErrors += 1
            }
        }
    }
}

struct Driver {
    let runtime: ClientRuntime
    let identities: [(id: ClientID, key: Ed25519PrivateKey)]
    let payload: Int
    let rate: Double
    let timeout: Double

    func run(warmup: Double, duration: Double, label: String, fault: FaultPlan? = nil, cluster: SpawnedCluster? = nil) -> RunResult {
        let m = Measurements()
        let op = Array(repeating: UInt8(ascii: "x"), count: payload)
        let stop = Atomic<Bool>(false)
        let loop = runtime.loopForCallbacks
        let timeoutAmount = TimeAmount.milliseconds(Int64(timeout * 1000))
        let retransmitsBefore = (try? loop.submit { runtime.retransmissions }.wait()) ?? 0

        if rate <= 0 {
            // Closed loop: keep every client's window full. A request that times out keeps its
            // slot until it completes (the client retransmits; abandoning it would leave a gap in
            // the client's timestamps that replicas never fill).
            @Sendable func fill() {
                guard !stop.load(ordering: .relaxed) else { return }
                for (id, _) in identities {
                    while true {
                        let start = DispatchTime.now().uptimeNanoseconds
                        let ok = runtime.trySubmitOnLoop(client: id, operation: op, timeout: timeoutAmount) { outcome in
                            let micros = (DispatchTime.now().uptimeNanoseconds - start) / 1000
                            if case .completed(_, _, let view) = outcome { m.record(latencyMicros: micros, ok: true, view: view) } else { m.record(latencyMicros: micros, ok: false) }
                            fill()
                        }
                        if !ok { break }
                    }
                }
            }
            let task = loop.scheduleRepeatedTask(initialDelay: .zero, delay: .milliseconds(5)) { _ in fill() }
            _ = task
        } else {
            // Open loop: a due-time schedule; latency counts from the intended send time.
            let interval = 1.0 / rate
            let begin = DispatchTime.now().uptimeNanoseconds
            let queued = Mutex<[UInt64]>([])
            let sentCount = Mutex<Int>(0)
            let task = loop.scheduleRepeatedTask(initialDelay: .zero, delay: .milliseconds(1)) { _ in
                guard !stop.load(ordering: .relaxed) else { return }
                let now = DispatchTime.now().uptimeNanoseconds
                // Requests 0 ..< due have intended send times at or before now (request k at
                // begin + k × interval; counting only completed intervals sent each one an
                // interval late and added that much to every latency).
                let due = Int(Double(now - begin) / 1e9 / interval) + 1
                var intended = queued.withLock { q -> [UInt64] in let x = q; q.removeAll(); return x }
                let already = sentCount.withLock { $0 }
                for k in already..<max(already, due) { intended.append(begin + UInt64(Double(k) * interval * 1e9)) }
                sentCount.withLock { $0 = max($0, due) }
                var leftover: [UInt64] = []
                var idx = 0
                for t in intended {
                    var sent = false
                    for _ in 0..<identities.count {
                        let id = identities[idx % identities.count].id
                        idx += 1
                        if runtime.trySubmitOnLoop(client: id, operation: op, timeout: timeoutAmount, done: { outcome in
                            let micros = (DispatchTime.now().uptimeNanoseconds - t) / 1000
                            if case .completed(_, _, let view) = outcome { m.record(latencyMicros: micros, ok: true, view: view) } else { m.record(latencyMicros: micros, ok: false) }
                        }) { sent = true; break }
                    }
                    if !sent { leftover.append(t) }
                }
                // Windows full: requests wait (and their latency grows) instead of being dropped.
                if leftover.count > 100_000 { leftover.removeFirst(leftover.count - 100_000) }
                queued.withLock { $0 = leftover + $0 }
            }
            _ = task
        }

        Thread.sleep(forTimeInterval: warmup)
        m.state.withLock { $0.measuring = true }
        let start = Date()
        let faultOutcome = FaultOutcome.Box()
        let faultDone = DispatchSemaphore(value: 0)
        if let fault, let cluster {
            Thread.detachNewThread {
                fault.carryOut(on: cluster, measurements: m, outcome: faultOutcome, until: start.addingTimeInterval(duration))
                faultDone.signal()
            }
        } else {
            faultDone.signal()
        }
        var lastPrint = start
        while Date().timeIntervalSince(start) < duration {
            Thread.sleep(forTimeInterval: min(1.0, max(0.01, duration - Date().timeIntervalSince(start))))
            let now = Date()
            let (n, e, p50, p99) = m.state.withLock { s -> (Int, Int, UInt64, UInt64) in
                let r = (s.intervalCompleted, s.intervalErrors, s.interval.valueAtPercentile(50), s.interval.valueAtPercentile(99))
                s.intervalCompleted = 0; s.intervalErrors = 0; s.interval.reset()
                return r
            }
            let dt = now.timeIntervalSince(lastPrint)
            lastPrint = now
            print(String(format: "[%@ %5.1fs] %7.0f req/s  p50 %7.2f ms  p99 %7.2f ms  errors %d", label, now.timeIntervalSince(start),
                         Double(n) / max(dt, 0.001), Double(p50) / 1000, Double(p99) / 1000, e))
            fflush(nil)
        }
        let seconds = Date().timeIntervalSince(start)
        let final = m.state.withLock { s -> Measurements.State in s.measuring = false; return s }
        faultDone.wait()
        let fo = faultOutcome.value.withLock { $0 }
        stop.store(true, ordering: .relaxed)
        // Let outstanding requests drain so the next step starts clean.
        Thread.sleep(forTimeInterval: 0.5)
        let retransmits = ((try? loop.submit { runtime.retransmissions }.wait()) ?? 0) - retransmitsBefore
        let h = final.histogram
        func ms(_ v: UInt64) -> Double { Double(v) / 1000 }
        return RunResult(label: label, offered: rate, seconds: seconds, completed: final.completed, errors: final.errors,
                         retransmissions: retransmits, throughput: Double(final.completed) / seconds,
                         p50ms: ms(h.valueAtPercentile(50)), p90ms: ms(h.valueAtPercentile(90)), p99ms: ms(h.valueAtPercentile(99)),
                         p999ms: ms(h.valueAtPercentile(99.9)), maxms: ms(h.max),
                         killedReplica: fo.killedReplica, killedView: fo.killedView,
                         failoverMs: final.firstLaterViewReplyAt.flatMap { t in final.killedAt.map { Double(t - $0) / 1e6 } },
                         catchUpMs: fo.catchUpMs, catchUpTarget: fo.catchUpTarget)
    }
}

/// `--kill-primary-at` / `--restart-after`: what to do to a spawned cluster during the run.
struct FaultPlan {
    let killAt: Double
    let restartAfter: Double?

    func carryOut(on cluster: SpawnedCluster, measurements m: Measurements, outcome box: FaultOutcome.Box, until end: Date) {
        let start = Date()
        Thread.sleep(forTimeInterval: killAt)
        // The primary of the highest view an active replica reports.
        let statuses = cluster.statuses()
        guard let lead = statuses.filter(\.active).max(by: { $0.view < $1.view }) else {
            print("fault plan: no replica reported an active view; nothing killed")
            return
        }
        let victim = lead.primary
        let view = lead.view
        m.state.withLock { s in
            s.killedView = view
            s.killedAt = DispatchTime.now().uptimeNanoseconds
        }
        cluster.kill(victim)
        box.value.withLock { $0.killedReplica = victim; $0.killedView = view }
        print(String(format: "[fault %5.1fs] SIGKILL replica %d, the primary of view %d", Date().timeIntervalSince(start), victim, view))
        guard let restartAfter else { return }
        Thread.sleep(forTimeInterval: restartAfter)
        let target = cluster.statuses().filter { $0.replica != victim }.map(\.lastExecuted).max() ?? 0
        let restartedAt = DispatchTime.now().uptimeNanoseconds
        do { try cluster.restart(victim) } catch {
            print("fault plan: restart of replica \(victim) failed: \(error)")
            return
        }
        box.value.withLock { $0.catchUpTarget = target }
        print(String(format: "[fault %5.1fs] restarted replica %d; the others had executed up to seq %d", Date().timeIntervalSince(start), victim, target))
        while Date() < end.addingTimeInterval(30) {
            if let st = cluster.status(of: victim), st.lastExecuted >= target {
                let ms = Double(DispatchTime.now().uptimeNanoseconds - restartedAt) / 1e6
                box.value.withLock { $0.catchUpMs = ms }
                print(String(format: "[fault %5.1fs] replica %d reached seq %d (now at %d, view %d)", Date().timeIntervalSince(start), victim, target, st.lastExecuted, st.view))
                return
            }
            Thread.sleep(forTimeInterval: 0.02)
        }
    }
}

struct FaultOutcome {
    final class Box: Sendable { let value = Mutex(FaultOutcome()) }
    var killedReplica: Int?
    var killedView: UInt64?
    var catchUpTarget: UInt64?
    var catchUpMs: Double?
}

/// A hostile client for the under-attack benchmark: it sends, to every replica and without
/// waiting for replies, a cycle over a pool of pre-signed requests with consecutive timestamps
/// (new ones on the first pass, replays after), one in `forgedEvery` with a corrupted signature,
/// `framesPerMillisecond` frames each millisecond. The replicas must hold it to its window,
/// answer replays from their reply cache, penalise and disconnect it for forgeries, and keep
/// serving the honest clients.
final class Flooder: @unchecked Sendable {
    static let framesPerMillisecond = 20
    static let forgedEvery = 16
    let poolSize = 8192
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let connections: ClientConnections
    var pool: [ByteBuffer] = []
    var next = 0
    var task: RepeatedTask?

    init(configuration: ClusterConfiguration, identity: (id: ClientID, key: Ed25519PrivateKey)) {
        let proto = configuration.protocolConfig()
        var addresses: [Int: (host: String, port: Int)] = [:]
        for r in configuration.replicas { addresses[r.id] = (r.host, r.port) }
        connections = ClientConnections(clusterID: proto.clusterID, replicas: addresses, knownKinds: [MessageKind.reply.rawValue],
                                        group: group, logger: Logger(label: "bft-loadgen.flooder"), onFrame: { _, _ in })
        let signer = Ed25519MessageSigner(key: identity.key)
        let t0 = UInt64(Date().timeIntervalSince1970 * 1_000_000) + 1_000_000
        for k in 0..<poolSize {
            var r = Request(client: identity.id, timestamp: t0 + UInt64(k), sessionStart: k == 0, operation: Array("SET flood \(k)".utf8))
                .signed(with: signer, clusterID: proto.clusterID)
            if k % Flooder.forgedEvery == Flooder.forgedEvery - 1 { r.signature[0] ^= 0x55 }
            var buf = ByteBufferAllocator().buffer(capacity: 0)
            buf.writeBytes(r.encoded)
            pool.append(buf)
        }
    }

    func start() {
        connections.start()
        task = group.next().scheduleRepeatedTask(initialDelay: .zero, delay: .milliseconds(1)) { [self] _ in
            for _ in 0..<Flooder.framesPerMillisecond {
                connections.broadcast(kind: MessageKind.request.rawValue, body: pool[next])
                next = (next + 1) % pool.count
            }
        }
    }

    func stop() {
        task?.cancel()
        try? connections.shutdown().wait()
        try? group.syncShutdownGracefully()
    }
}

/// A local cluster started by `--spawn`.
final class SpawnedCluster: @unchecked Sendable {
    let node: String
    let dataDirectory: String
    var arguments: [[String]] = []
    var environments: [[String: String]] = []
    var processes: [Process] = []
    static let runs = Atomic<Int>(0)

    init(node: String, dataDirectory: String) {
        self.node = node
        self.dataDirectory = dataDirectory
    }

    static func start(configPath: String, cluster: ClusterConfiguration, fsync: String, byzantine: (id: Int, mode: ByzantineMode)?,
                      statusIntervalMs: Int) throws -> SpawnedCluster {
        let selfPath = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        let node = selfPath.deletingLastPathComponent().appendingPathComponent("bft-node").path
        buildNodeOnce(beside: selfPath)
        guard FileManager.default.isExecutableFile(atPath: node) else {
            throw SpawnError("bft-node not found next to bft-loadgen (\(node)); build it with the same configuration")
        }
        let keys = URL(fileURLWithPath: configPath).deletingLastPathComponent().path
        let run = runs.add(1, ordering: .relaxed).newValue
        let c = SpawnedCluster(node: node, dataDirectory: NSTemporaryDirectory() + "bft-loadgen-\(getpid())-\(run)")
        for r in cluster.replicas {
            let dir = "\(c.dataDirectory)/replica-\(r.id)"
            try DataDirectory.create(dir)
            var args = ["--config", configPath, "--id", "\(r.id)", "--key", "\(keys)/replica-\(r.id).pem",
                        "--data", dir, "--app", "kv", "--deliver-log", "\(dir)/deliver.log", "--fsync", fsync,
                        "--status-interval-ms", "\(statusIntervalMs)"]
            var env = ProcessInfo.processInfo.environment
            if let byzantine, byzantine.id == r.id {
                args += ["--byzantine", byzantine.mode.rawValue]
                env["BFT_ALLOW_BYZANTINE"] = "1"
            }
            c.arguments.append(args)
            c.environments.append(env)
            c.processes.append(try c.launch(r.id))
        }
        Thread.sleep(forTimeInterval: 1.0)
        if let dead = c.processes.firstIndex(where: { !$0.isRunning }) {
            c.stop()
            throw SpawnError("replica \(dead) exited at start; see \(c.dataDirectory)/replica-\(dead)/node.log")
        }
        return c
    }

    static let nodeBuilt = Atomic<Bool>(false)

    /// `swift run bft-loadgen` builds only this product. Run from a package checkout, build the
    /// replica binary beside it (a no-op of a few seconds when it is up to date), so a clean
    /// clone works and a stale bft-node is never measured.
    static func buildNodeOnce(beside selfPath: URL) {
        guard !nodeBuilt.exchange(true, ordering: .relaxed),
              selfPath.path.contains("/.build/"), FileManager.default.fileExists(atPath: "Package.swift") else { return }
        let configuration = selfPath.deletingLastPathComponent().lastPathComponent == "release" ? "release" : "debug"
        print("building bft-node beside bft-loadgen: swift build -c \(configuration) --product bft-node")
        let build = Process()
        build.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        build.arguments = ["swift", "build", "-c", configuration, "--product", "bft-node"]
        build.standardOutput = FileHandle.nullDevice
        try? build.run()
        build.waitUntilExit()
    }

    func launch(_ id: Int) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: node)
        p.arguments = arguments[id]
        p.environment = environments[id]
        let log = "\(dataDirectory)/replica-\(id)/node.log"
        if !FileManager.default.fileExists(atPath: log) { _ = FileManager.default.createFile(atPath: log, contents: nil) }
        let handle = FileHandle(forWritingAtPath: log)
        handle?.seekToEndOfFile()
        p.standardError = handle
        try p.run()
        return p
    }

    /// SIGKILL: no shutdown code runs, as in a crash.
    func kill(_ id: Int) {
        Foundation.kill(processes[id].processIdentifier, SIGKILL)
        processes[id].waitUntilExit()
    }

    /// Starts a killed replica again on its data directory (it recovers from its write-ahead log).
    func restart(_ id: Int) throws {
        try? FileManager.default.removeItem(atPath: "\(dataDirectory)/replica-\(id)/status.json")
        processes[id] = try launch(id)
    }

    struct Status: Decodable {
        var replica: Int
        var view: UInt64
        var primary: Int
        var active: Bool
        var lastExecuted: UInt64
    }

    func status(of id: Int) -> Status? {
        guard let data = FileManager.default.contents(atPath: "\(dataDirectory)/replica-\(id)/status.json") else { return nil }
        return try? JSONDecoder().decode(Status.self, from: data)
    }

    /// The status files of the replicas that are running.
    func statuses() -> [Status] {
        processes.indices.filter { processes[$0].isRunning }.compactMap { status(of: $0) }
    }

    func stop() {
        for p in processes where p.isRunning { p.terminate() }
        for p in processes { p.waitUntilExit() }
    }
}

struct SpawnError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

LoadGen.main()
