import ArgumentParser
import BFTCore
import BFTCrypto
import BFTNode
import Foundation
import Histogram
import Logging
import NIOCore
import NIOPosix
import Synchronization

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
        for j in 0..<clients {
            do {
                let key = try ClusterConfiguration.loadPrivateKey(path: "\(dir)/client-\(j).pem")
                identities.append((try cluster.clientID(for: key), key))
            } catch { fail("\(error)") }
        }

        let bound = SignatureBound.measure(replicas: cluster.n)
        print(String(format: "signature costs on this machine: sign %.1f µs, verify %.1f µs; cores %d", bound.signMicros, bound.verifyMicros, bound.cores))
        print(String(format: "signature bound (1 client signature + %d verifications per request, %d cores shared): %.0f requests/s", cluster.n, bound.cores, bound.requestsPerSecond))

        var spawned: SpawnedCluster?
        if spawn {
            guard fsync == "on" || fsync == "off" else { fail("--fsync takes on or off") }
            do { spawned = try SpawnedCluster.start(configPath: config, cluster: cluster, fsync: fsync) } catch { fail("\(error)") }
            print("spawned \(cluster.n) replicas (data in \(spawned!.dataDirectory))")
        }
        defer { spawned?.stop() }

        let runtime = ClientRuntime(configuration: cluster, clients: identities, window: window, logger: Logger(label: "bft-loadgen"))
        runtime.start()
        defer { runtime.shutdown() }

        let fingerprint = Fingerprint(n: cluster.n, f: cluster.f, batchLimit: proto.maxBatchRequests, window: window, clients: clients,
                                      payload: payload, mode: rate > 0 ? "open(\(Int(rate))/s)" : "closed", authentication: "ed25519-signed requests, ed25519-signed replica messages",
                                      fsync: spawn ? fsync : "as configured on the replicas", build: buildConfiguration, cores: bound.cores)
        print("configuration: \(fingerprint.line)")

        var results: [RunResult] = []
        if sweep {
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
            let r = Driver(runtime: runtime, identities: identities, payload: payload, rate: rate, timeout: requestTimeout)
                .run(warmup: warmupS, duration: durationS, label: "run")
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
        if completed == 0 {
            spawned?.stop()
            runtime.shutdown()
            fail("no request completed")
        }
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
    }
    let state = Mutex(State())

    func record(latencyMicros: UInt64, ok: Bool) {
        state.withLock { s in
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

    func run(warmup: Double, duration: Double, label: String) -> RunResult {
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
                            if case .completed = outcome { m.record(latencyMicros: micros, ok: true) } else { m.record(latencyMicros: micros, ok: false) }
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
                let due = Int(Double(now - begin) / 1e9 / interval)
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
                            if case .completed = outcome { m.record(latencyMicros: micros, ok: true) } else { m.record(latencyMicros: micros, ok: false) }
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
        stop.store(true, ordering: .relaxed)
        // Let outstanding requests drain so the next step starts clean.
        Thread.sleep(forTimeInterval: 0.5)
        let retransmits = ((try? loop.submit { runtime.retransmissions }.wait()) ?? 0) - retransmitsBefore
        let h = final.histogram
        func ms(_ v: UInt64) -> Double { Double(v) / 1000 }
        return RunResult(label: label, offered: rate, seconds: seconds, completed: final.completed, errors: final.errors,
                         retransmissions: retransmits, throughput: Double(final.completed) / seconds,
                         p50ms: ms(h.valueAtPercentile(50)), p90ms: ms(h.valueAtPercentile(90)), p99ms: ms(h.valueAtPercentile(99)),
                         p999ms: ms(h.valueAtPercentile(99.9)), maxms: ms(h.max))
    }
}

/// A local cluster started by `--spawn`.
struct SpawnedCluster {
    let processes: [Process]
    let dataDirectory: String

    static func start(configPath: String, cluster: ClusterConfiguration, fsync: String) throws -> SpawnedCluster {
        let selfPath = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        let node = selfPath.deletingLastPathComponent().appendingPathComponent("bft-node").path
        guard FileManager.default.isExecutableFile(atPath: node) else {
            throw SpawnError("bft-node not found next to bft-loadgen (\(node)); build it with the same configuration")
        }
        let keys = URL(fileURLWithPath: configPath).deletingLastPathComponent().path
        let data = NSTemporaryDirectory() + "bft-loadgen-\(getpid())"
        var processes: [Process] = []
        for r in cluster.replicas {
            let dir = "\(data)/replica-\(r.id)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: node)
            p.arguments = ["--config", configPath, "--id", "\(r.id)", "--key", "\(keys)/replica-\(r.id).pem",
                           "--data", dir, "--app", "kv", "--deliver-log", "\(dir)/deliver.log", "--fsync", fsync]
            _ = FileManager.default.createFile(atPath: "\(dir)/node.log", contents: nil)
            p.standardError = FileHandle(forWritingAtPath: "\(dir)/node.log")
            try p.run()
            processes.append(p)
        }
        Thread.sleep(forTimeInterval: 1.0)
        if let dead = processes.firstIndex(where: { !$0.isRunning }) {
            for p in processes where p.isRunning { p.terminate() }
            throw SpawnError("replica \(dead) exited at start; see \(data)/replica-\(dead)/node.log")
        }
        return SpawnedCluster(processes: processes, dataDirectory: data)
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
