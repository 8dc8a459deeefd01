import ArgumentParser
import BFTClusterHarness
import BFTConfig
import Foundation

/// `bft-cluster up` (the default): starts every replica of a configuration as a local
/// `bft-node` process, shows a live line per replica, and stops them all on Ctrl-C.
struct Up: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start the 3f+1 replicas of a configuration on this machine and show their progress.",
        discussion: """
        Each replica runs as 'bft-node --config KEYS/cluster.json --id I --key KEYS/replica-I.pem \
        --data DATA/replica-I --deliver-log DATA/replica-I/deliver.log', logging to \
        DATA/replica-I/node.log. The status lines show view (and primary), last executed \
        sequence number, stable checkpoint and requests delivered. Ctrl-C stops every replica. \
        bft-node must be built (it is looked for next to this executable): swift build.

        With --control no replica is started: commands are read from standard input, one per \
        line, and each is answered with one JSON line on standard output (ok, error, the \
        replica's process state, exit code or signal, status document): \
        'start I [--byzantine MODE] [bft-node arguments]', 'kill I [SIGKILL|SIGTERM|SIGSTOP|SIGCONT]', \
        'wait-exit I SECONDS', 'status I', 'tail I [LINES]', 'pids', 'stop-all [SECONDS]'. \
        At the end of input (or on SIGTERM) every replica is stopped. The e2e tests drive \
        their replicas this way.
        """)

    @Option(help: "Directory with cluster.json and replica-<i>.pem.")
    var keys: String = "keys"

    @Option(help: "Data directory; each replica gets DATA/replica-<i>.")
    var data: String = ".cluster-data"

    @Option(help: "Application for every replica: kv, log or exec:COMMAND.")
    var app: String = "kv"

    @Option(name: .customLong("node-binary"), help: "Path of bft-node (default: next to this executable).")
    var nodeBinary: String?

    @Option(help: "Stop after this many seconds (0 = run until Ctrl-C).")
    var duration: Double = 0

    @Flag(help: "Print a status block every few seconds instead of redrawing in place.")
    var plain = false

    @Flag(help: "Start no replica; take commands on standard input and answer each with one JSON line (the commands are in the overview).")
    var control = false

    func validate() throws {
        if control && (duration != 0 || plain) { throw ValidationError("--duration and --plain do not apply to --control") }
    }

    func run() throws {
        let configPath = keys + "/cluster.json"
        let cluster: ClusterConfiguration
        do { cluster = try ClusterConfiguration.load(path: configPath) } catch { fail("\(error)") }
        let node: String
        do { node = try NodeBinary.locate(override: nodeBinary, tool: "bft-cluster") } catch { fail("\(error)") }
        let tightened = tightenKeyFiles(keysDirectory: keys, cluster: cluster)
        if !tightened.isEmpty {
            note("made \(tightened.count) key files in \(keys) readable only by you (chmod 600): bft-node refuses keys others can read")
        }
        let specs = cluster.replicas.map { r in
            LocalCluster.ReplicaSpec(id: r.id, arguments: LocalCluster.nodeArguments(
                configPath: configPath, id: r.id, dataDirectory: "\(data)/replica-\(r.id)", app: app))
        }
        let local = LocalCluster(node: node, dataDirectory: data, specs: specs)
        if control { serveControl(local) }
        do { try local.startAll() } catch {
            local.stop()
            fail("\(error)")
        }
        print("started \(specs.count) replicas (f=\(cluster.f)); logs and deliver logs in \(data)/replica-<i>/; Ctrl-C stops them")
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let s = DispatchSource.makeSignalSource(signal: sig, queue: .main)
            s.setEventHandler {
                print("\nstopping replicas")
                local.stop(timeout: 5)
                Foundation.exit(0)
            }
            s.resume()
            keepAlive.append(s)
        }
        showProgress(of: local)
    }

    /// Standard output carries only the answers in control mode; notes go to standard error.
    func note(_ line: String) {
        if control { FileHandle.standardError.write(Data((line + "\n").utf8)) } else { print(line) }
    }

    /// `--control`: the harness's line protocol (`ClusterControl`) on standard input and output.
    func serveControl(_ local: LocalCluster) -> Never {
        // A controller that went away must not kill this process by SIGPIPE before it stops
        // the replicas (the harness resets signal dispositions in the replicas it starts).
        signal(SIGPIPE, SIG_IGN)
        let signals = DispatchQueue(label: "bft-cluster.signals")
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let s = DispatchSource.makeSignalSource(signal: sig, queue: signals)
            s.setEventHandler {
                local.stop(timeout: 5)
                Foundation.exit(0)
            }
            s.resume()
            keepAlive.append(s)
        }
        ClusterControl(cluster: local).serve(readLine: { Swift.readLine() }, write: { line in
            var bytes = Array(line.utf8)[...]
            while !bytes.isEmpty {
                let n = bytes.withUnsafeBytes { Foundation.write(STDOUT_FILENO, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return false }
                bytes = bytes.dropFirst(n)
            }
            return true
        })
        Foundation.exit(0)
    }

    /// A line per replica every second (redrawn in place on a terminal), until `duration` or
    /// every replica exited.
    func showProgress(of local: LocalCluster) -> Never {
        let started = Date()
        let tty = isatty(STDOUT_FILENO) == 1 && !plain
        let timer = DispatchSource.makeTimerSource(queue: .main)
        var printedLines = 0
        var ticks = 0
        timer.schedule(deadline: .now() + 1, repeating: 1)
        timer.setEventHandler {
            ticks += 1
            let lines = local.replicaIDs.map { id in
                "replica \(id) [\(local.process(id)?.stateDescription ?? "not started")]" + (local.status(of: id).map(Self.describe) ?? " starting")
            }
            if tty {
                if printedLines > 0 { print("\u{1B}[\(printedLines)A", terminator: "") }
                for l in lines { print("\u{1B}[2K" + l) }
                printedLines = lines.count
            } else if ticks % 5 == 0 {
                print("--- \(Int(Date().timeIntervalSince(started))) s")
                for l in lines { print(l) }
            }
            fflush(nil)
            if duration > 0 && Date().timeIntervalSince(started) >= duration {
                local.stop(timeout: 5)
                Foundation.exit(0)
            }
            if local.allExited {
                print("all replicas exited; see \(data)/replica-<i>/node.log")
                Foundation.exit(1)
            }
        }
        timer.resume()
        keepAlive.append(timer)
        dispatchMain()
    }

    static func describe(_ s: ReplicaStatus) -> String {
        " view \(s.view) (primary \(s.primary))\(s.active ? "" : " changing")  executed \(s.lastExecuted)  stable \(s.stableCheckpoint)  delivered \(s.delivered)  pending \(s.pendingRequests)"
    }
}

nonisolated(unsafe) var keepAlive: [any DispatchSourceProtocol] = []
