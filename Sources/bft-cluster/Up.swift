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

    func run() throws {
        let configPath = keys + "/cluster.json"
        let cluster: ClusterConfiguration
        do { cluster = try ClusterConfiguration.load(path: configPath) } catch { fail("\(error)") }
        let node: String
        do { node = try NodeBinary.locate(override: nodeBinary, tool: "bft-cluster") } catch { fail("\(error)") }
        let tightened = tightenKeyFiles(keysDirectory: keys, cluster: cluster)
        if !tightened.isEmpty {
            print("made \(tightened.count) key files in \(keys) readable only by you (chmod 600): bft-node refuses keys others can read")
        }
        let specs = cluster.replicas.map { r in
            LocalCluster.ReplicaSpec(id: r.id, arguments: LocalCluster.nodeArguments(
                configPath: configPath, id: r.id, dataDirectory: "\(data)/replica-\(r.id)", app: app))
        }
        let local = LocalCluster(node: node, dataDirectory: data, specs: specs)
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
