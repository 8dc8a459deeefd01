import ArgumentParser
import BFTByzantine
import BFTClient
import BFTClusterHarness
import BFTConfig
import BFTCore
import BFTCrypto
import Foundation
import Logging

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

    @Option(help: ArgumentHelp("With --spawn: run replica R as a Byzantine replica in MODE (\(ByzantineMode.standalone.map(\.rawValue).joined(separator: ", "))). Test only.", valueName: "R:MODE"))
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
            // bft-node is not built here: say how to build it before anything else runs.
            do { _ = try NodeBinary.locate(tool: "bft-loadgen") } catch { fail("\(error)") }
            let keys = URL(fileURLWithPath: config).deletingLastPathComponent().path
            _ = tightenKeyFiles(keysDirectory: keys, cluster: cluster, clients: false)
        }
        for j in 0..<clients {
            do {
                let key = try ClusterConfiguration.loadPrivateKey(path: "\(dir)/client-\(j).pem")
                identities.append((try cluster.clientID(for: key), key))
            } catch { fail("\(error)") }
        }

        let bound = SignatureBound.measure(replicas: cluster.n)
        print(String(format: "signature costs on this machine: sign %.1f µs, verify %.1f µs; cores %d", bound.signMicros, bound.verifyMicros, bound.cores))
        print(String(format: "signature bound (1 client signature + %d verification per request — the primary's; backups take requests from the client's own session — %d cores shared): %.0f requests/s; one core verifies %.0f/s",
                     bound.verificationsPerRequest, bound.cores, bound.requestsPerSecond, bound.verifiesPerCore))

        if (byzantine != nil || killPrimaryAt != nil || attackTable) && !spawn {
            fail("--byzantine, --kill-primary-at and --attack-table need --spawn")
        }
        if restartAfter != nil && killPrimaryAt == nil { fail("--restart-after needs --kill-primary-at") }
        guard fsync == "on" || fsync == "off" else { fail("--fsync takes on or off") }
        var byzantineReplica: (id: Int, mode: ByzantineMode)?
        if let byzantine {
            let parts = byzantine.split(separator: ":", maxSplits: 1).map(String.init)
            guard parts.count == 2, let r = Int(parts[0]), r >= 0, r < cluster.n, let mode = ByzantineMode(rawValue: parts[1]), mode != .coalition else {
                fail("--byzantine takes R:MODE with R in 0..<\(cluster.n) and MODE one of \(ByzantineMode.standalone.map(\.rawValue).joined(separator: ", "))")
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
                                      payload: payload, mode: rate > 0 ? "open(\(Int(rate))/s)" : "closed", authentication: "noise-xx sessions; requests signed, checked by the primary only; ed25519-signed replica messages",
                                      fsync: spawn ? fsync : "as configured on the replicas", build: buildConfiguration, cores: bound.cores)
        print("configuration: \(fingerprint.line)")

        /// One run against a cluster (spawned fresh when --spawn), optionally with a Byzantine
        /// replica, a flooding client and a kill of the primary.
        func measure(label: String, byzantine: (id: Int, mode: ByzantineMode)?, flooding: Bool, fault: FaultPlan?) -> RunResult {
            var spawned: LocalCluster?
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
            for mode in ByzantineMode.standalone { rows.append(("replica 0 \(mode.rawValue)", (0, mode), false)) }
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
            var spawned: LocalCluster?
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
