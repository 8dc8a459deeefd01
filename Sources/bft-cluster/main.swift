import ArgumentParser
import BFTNode
import Foundation
import BFTConfig

/// `bft-cluster`: starts every replica of a configuration as a local `bft-node` process,
/// shows a live line per replica, and stops them all on Ctrl-C.
struct BFTClusterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bft-cluster",
        abstract: "Start the 3f+1 replicas of a configuration on this machine and show their progress.",
        discussion: """
        Each replica runs as 'bft-node --config KEYS/cluster.json --id I --key KEYS/replica-I.pem \
        --data DATA/replica-I --deliver-log DATA/replica-I/deliver.log', logging to \
        DATA/replica-I/node.log. The status lines show view (and primary), last executed \
        sequence number, stable checkpoint and requests delivered. Ctrl-C stops every replica.
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

    func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data("bft-cluster: \(message)\n".utf8))
        Foundation.exit(2)
    }

    func run() throws {
        let configPath = keys + "/cluster.json"
        let cluster: ClusterConfiguration
        do { cluster = try ClusterConfiguration.load(path: configPath) } catch { fail("\(error)") }
        let selfPath = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        let node = nodeBinary ?? selfPath.deletingLastPathComponent().appendingPathComponent("bft-node").path
        if !FileManager.default.isExecutableFile(atPath: node) && nodeBinary == nil
            && FileManager.default.fileExists(atPath: "Package.swift") {
            // `swift run bft-cluster` builds only this product: build the replica binary beside it.
            let configuration = selfPath.deletingLastPathComponent().lastPathComponent == "release" ? "release" : "debug"
            print("bft-node is not built yet; running 'swift build -c \(configuration) --product bft-node'")
            let build = Process()
            build.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            build.arguments = ["swift", "build", "-c", configuration, "--product", "bft-node"]
            try? build.run()
            build.waitUntilExit()
        }
        guard FileManager.default.isExecutableFile(atPath: node) else {
            fail("bft-node not found at \(node) (build it with 'swift build' or pass --node-binary)")
        }
        // A git checkout leaves the committed development keys 0644, which bft-node refuses:
        // make the key files this cluster uses private to their owner (never loosens).
        var tightened: [String] = []
        for path in cluster.replicas.map({ "\(keys)/replica-\($0.id).pem" }) + cluster.clients.map({ "\(keys)/client-\($0.id).pem" })
        where ClusterConfiguration.tightenKeyFilePermissions(path: path) {
            tightened.append(path)
        }
        if !tightened.isEmpty {
            print("made \(tightened.count) key files in \(keys) readable only by you (chmod 600): bft-node refuses keys others can read")
        }
        var processes: [Process] = []
        for r in cluster.replicas {
            let dir = "\(data)/replica-\(r.id)"
            do {
                try DataDirectory.create(dir)
            } catch { fail("cannot create \(dir): \(error.localizedDescription)") }
            let keyPath = "\(keys)/replica-\(r.id).pem"
            let p = Process()
            p.executableURL = URL(fileURLWithPath: node)
            p.arguments = ["--config", configPath, "--id", "\(r.id)", "--key", keyPath, "--data", dir,
                           "--app", app, "--deliver-log", "\(dir)/deliver.log"]
            _ = FileManager.default.createFile(atPath: "\(dir)/node.log", contents: nil)
            let logHandle = FileHandle(forWritingAtPath: "\(dir)/node.log")
            logHandle?.seekToEndOfFile()
            p.standardError = logHandle
            p.standardOutput = logHandle
            do { try p.run() } catch { fail("cannot start replica \(r.id): \(error.localizedDescription)") }
            processes.append(p)
        }
        print("started \(processes.count) replicas (f=\(cluster.f)); logs and deliver logs in \(data)/replica-<i>/; Ctrl-C stops them")
        let stopAll = {
            for p in processes where p.isRunning { p.terminate() }
            let deadline = Date().addingTimeInterval(5)
            while processes.contains(where: \.isRunning) && Date() < deadline { usleep(50_000) }
            for p in processes where p.isRunning { kill(p.processIdentifier, SIGKILL) }
        }
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let s = DispatchSource.makeSignalSource(signal: sig, queue: .main)
            s.setEventHandler {
                print("\nstopping replicas")
                stopAll()
                Foundation.exit(0)
            }
            s.resume()
            keepAlive.append(s)
        }
        let started = Date()
        let tty = isatty(STDOUT_FILENO) == 1 && !plain
        let timer = DispatchSource.makeTimerSource(queue: .main)
        var printedLines = 0
        var ticks = 0
        timer.schedule(deadline: .now() + 1, repeating: 1)
        timer.setEventHandler {
            ticks += 1
            var lines: [String] = []
            for (i, r) in cluster.replicas.enumerated() {
                let running = processes[i].isRunning
                let statusPath = "\(data)/replica-\(r.id)/status.json"
                var line = "replica \(r.id) [\(running ? "up" : "exited \(processes[i].terminationStatus)")]"
                if let d = FileManager.default.contents(atPath: statusPath),
                   let s = try? JSONDecoder().decode(ReplicaNode.StatusReport.self, from: d) {
                    line += " view \(s.view) (primary \(s.primary))\(s.active ? "" : " changing")  executed \(s.lastExecuted)  stable \(s.stableCheckpoint)  delivered \(s.delivered)  pending \(s.pendingRequests)"
                } else {
                    line += " starting"
                }
                lines.append(line)
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
                stopAll()
                Foundation.exit(0)
            }
            if processes.allSatisfy({ !$0.isRunning }) {
                print("all replicas exited; see \(data)/replica-<i>/node.log")
                Foundation.exit(1)
            }
        }
        timer.resume()
        keepAlive.append(timer)
        dispatchMain()
    }
}

nonisolated(unsafe) var keepAlive: [any DispatchSourceProtocol] = []

BFTClusterCommand.main()
