import ArgumentParser
import BFTByzantine
import BFTCore
import BFTCrypto
import BFTNode
import Dispatch
import Foundation
import Logging
import BFTApplications
import BFTConfig
import BFTClient
import BFTFrameCodec
import BFTStorage
import BFTTransport

/// `bft-node`: one PBFT replica of a 3f+1 cluster.
struct BFTNodeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bft-node",
        abstract: "Run one replica of a PBFT cluster.",
        discussion: """
        The replica listens on the address the configuration gives for its id, orders client \
        requests with the other replicas (pre-prepare, prepare, commit; view changes; checkpoints; \
        state transfer) and delivers committed requests in sequence order to the application. \
        Stop it with SIGTERM or SIGINT.

        Exit codes: 0 stopped by SIGTERM/SIGINT; 2 bad configuration, key (e.g. a key file others \
        can read), flag or port in use; 3 the write-ahead log failed; 4 the application failed \
        (an exec: child died, closed its output, missed its reply deadline or answered garbage).
        """)

    @Option(help: "Cluster configuration written by bft-keygen (cluster.json).")
    var config: String

    @Option(help: "This replica's id, 0 ..< n.")
    var id: Int

    @Option(help: "This replica's Ed25519 private key (PKCS#8 PEM).")
    var key: String

    @Option(help: "Data directory (created if missing): status file and application files.")
    var data: String

    @Option(help: "Application: 'kv' (SET/GET/DEL), 'log' (appends to DATA/app.log) or 'exec:COMMAND' (JSON lines over a child process's stdin/stdout).")
    var app: String = "kv"

    @Option(name: .customLong("deliver-log"), help: "Append one JSON line per delivered request to this file.")
    var deliverLog: String?

    @Option(help: "Address to listen on instead of the configured host (e.g. 0.0.0.0 in a container).")
    var listen: String?

    @Option(help: ArgumentHelp("TEST ONLY: misbehave as a Byzantine replica: \(ByzantineMode.standalone.map(\.rawValue).joined(separator: ", ")). Refused unless the environment has BFT_ALLOW_BYZANTINE=1.", valueName: "mode"))
    var byzantine: String?

    @Option(help: ArgumentHelp("Serve Prometheus metrics on http://HOST:PORT/metrics and a JSON status on /status.", valueName: "host:port"))
    var metrics: String?

    @Option(help: "fdatasync the write-ahead log before sending (on), or not (off: for benchmarks only; a crash can then lose what this replica signed).")
    var fsync: String = "on"

    @Option(name: .customLong("status-interval-ms"), help: "How often DATA/status.json and /status are refreshed, in milliseconds (50...60000).")
    var statusIntervalMs: Int = 1000

    @Option(name: .customLong("log-level"), help: "Log level: trace, debug, info, notice, warning, error.")
    var logLevel: String = "notice"

    func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data("bft-node: \(message)\n".utf8))
        Foundation.exit(2)
    }

    func run() throws {
        guard let level = Logger.Level(rawValue: logLevel) else { fail("unknown log level '\(logLevel)'") }
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        let logger = Logger(label: "bft-node")
        guard fsync == "on" || fsync == "off" else { fail("--fsync takes on or off") }
        guard (50...60_000).contains(statusIntervalMs) else { fail("--status-interval-ms must be 50...60000") }
        var metricsAddress: (host: String, port: Int)?
        if let metrics {
            guard let colon = metrics.lastIndex(of: ":"), let port = Int(metrics[metrics.index(after: colon)...]), port >= 0, port < 65536 else {
                fail("--metrics takes HOST:PORT (got '\(metrics)')")
            }
            metricsAddress = (String(metrics[..<colon]), port)
        }
        var byzantineMode: ByzantineMode?
        if let byzantine {
            guard let mode = ByzantineMode(rawValue: byzantine), mode != .coalition else {
                fail("unknown --byzantine mode '\(byzantine)' (\(ByzantineMode.standalone.map(\.rawValue).joined(separator: ", ")))")
            }
            guard ProcessInfo.processInfo.environment["BFT_ALLOW_BYZANTINE"] == "1" else {
                fail("--byzantine is for tests only; set BFT_ALLOW_BYZANTINE=1 to confirm")
            }
            byzantineMode = mode
            logger.critical("THIS REPLICA IS BYZANTINE (test mode '\(mode.rawValue)'): it will deliberately break the protocol")
        }
        let cluster: ClusterConfiguration
        let privateKey: BFTCrypto.Ed25519PrivateKey
        do {
            cluster = try ClusterConfiguration.load(path: config)
            guard id >= 0 && id < cluster.n else { fail("--id \(id) is not a replica of this cluster (0..<\(cluster.n))") }
            privateKey = try ClusterConfiguration.loadPrivateKey(path: key)
            try cluster.checkKey(privateKey, matchesReplica: id)
        } catch {
            fail("\(error)")
        }
        do {
            try DataDirectory.create(data)
        } catch {
            fail("cannot create data directory \(data): \(error.localizedDescription)")
        }
        let application: any ReplicatedApplication
        do {
            application = try ApplicationFactory.make(spec: app, dataDirectory: data, budget: cluster.protocolConfig())
        } catch {
            fail("\(error)")
        }
        let node: ReplicaNode
        do {
            node = try ReplicaNode(configuration: cluster, id: id, key: privateKey, application: application,
                                   dataDirectory: data, deliverLogPath: deliverLog, logger: logger, listenHost: listen,
                                   interceptor: byzantineMode.map {
                                       ByzantineBehaviour(mode: $0, id: id, config: cluster.protocolConfig(),
                                                          signer: Ed25519MessageSigner(key: privateKey), seed: UInt64(id) &+ 0xB12)
                                   }, fsync: fsync == "on", metricsAddress: metricsAddress,
                                   statusInterval: .milliseconds(Int64(statusIntervalMs)))
            try node.start()
        } catch let error as DurabilityError {
            // The write-ahead log cannot be trusted as it is: same exit code as a failing disk.
            FileHandle.standardError.write(Data("bft-node: cannot recover replica \(id) from its data directory: \(error)\n".utf8))
            Foundation.exit(3)
        } catch {
            fail("cannot start replica \(id): \(error)")
        }
        let stop = { (signal: Int32) in
            logger.notice("stopping on signal \(signal)")
            node.shutdown()
            Foundation.exit(0)
        }
        for sig in [SIGTERM, SIGINT] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .main)
            source.setEventHandler { stop(sig) }
            source.resume()
            signalSources.append(source)
        }
        dispatchMain()
    }
}

nonisolated(unsafe) var signalSources: [DispatchSourceSignal] = []

BFTNodeCommand.main()
