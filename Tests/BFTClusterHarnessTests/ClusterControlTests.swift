import BFTClusterHarness
import BFTConfig
import Foundation
import Testing

/// A stand-in for bft-node: prints its arguments and the Byzantine permission, exits with N when
/// an argument is `exit=N`, and otherwise runs until SIGTERM, which it answers with exit 0 (as
/// bft-node does).
private let fakeNode = """
    #!/bin/sh
    echo "args: $*"
    echo "BFT_ALLOW_BYZANTINE=${BFT_ALLOW_BYZANTINE:-unset}"
    for a in "$@"; do case "$a" in exit=*) exit "${a#exit=}" ;; esac; done
    trap 'kill $child; echo terminated; exit 0' TERM
    echo "ready $$"
    sleep 60 &
    child=$!
    wait $child
    """

/// A temporary data directory with the fake node, and a 2-replica cluster running it.
private func makeCluster() throws -> (LocalCluster, String) {
    let root = NSTemporaryDirectory() + "bft-control-test-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    let node = root + "/fake-node"
    try fakeNode.write(toFile: node, atomically: true, encoding: .utf8)
    try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: node)
    let specs = (0..<2).map { LocalCluster.ReplicaSpec(id: $0, arguments: ["--id", "\($0)"]) }
    return (LocalCluster(node: node, dataDirectory: root, specs: specs), root)
}

/// Runs `body` on a thread of its own: the harness waits for processes by polling, and a
/// blocked cooperative thread (a 2-core machine has two) would stall the other suites.
private func offPool<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        Thread { continuation.resume(returning: body()) }.start()
    }
}

@Suite("Cluster control (bft-cluster up --control)", .serialized)
struct ClusterControlTests {
    @Test("commands parse; malformed ones are refused with a reason")
    func parse() throws {
        typealias C = ClusterControl.Command
        #expect(try C.parse("start 2") == .start(replica: 2, byzantine: nil, arguments: []))
        #expect(try C.parse("start 0 --byzantine silent --log-level info --metrics 127.0.0.1:9100")
                == .start(replica: 0, byzantine: "silent", arguments: ["--log-level", "info", "--metrics", "127.0.0.1:9100"]))
        #expect(try C.parse("start 1 --log-level info --byzantine slow")
                == .start(replica: 1, byzantine: "slow", arguments: ["--log-level", "info"]))
        #expect(try C.parse("kill 3") == .kill(replica: 3, signal: SIGKILL))
        #expect(try C.parse("kill 3 SIGSTOP") == .kill(replica: 3, signal: SIGSTOP))
        #expect(try C.parse("kill 3 cont") == .kill(replica: 3, signal: SIGCONT))
        #expect(try C.parse("wait-exit 1 2.5") == .waitExit(replica: 1, seconds: 2.5))
        #expect(try C.parse("status 0") == .status(replica: 0))
        #expect(try C.parse("tail 0") == .tail(replica: 0, lines: 20))
        #expect(try C.parse("tail 0 400") == .tail(replica: 0, lines: 400))
        #expect(try C.parse("pids") == .pids)
        #expect(try C.parse("stop-all") == .stopAll(seconds: 10))
        #expect(try C.parse("stop-all 3") == .stopAll(seconds: 3))
        func reason(_ line: String) -> String? {
            guard case .failure(let error) = Result(catching: { () throws(HarnessError) in try C.parse(line) }) else { return nil }
            return error.description
        }
        #expect(reason("") == "empty command")
        #expect(reason("restart 1")?.hasPrefix("unknown command 'restart'") == true)
        #expect(reason("start") == "start: give a replica id")
        #expect(reason("kill x") == "kill: 'x' is not a replica id")
        #expect(reason("kill 1 SIGHUP")?.hasPrefix("kill: unknown signal 'SIGHUP'") == true)
        #expect(reason("wait-exit 1") == "usage: wait-exit <i> <seconds>")
        #expect(reason("wait-exit 1 soon") == "wait-exit: 'soon' is not a number of seconds")
        #expect(reason("start 1 --byzantine") == "start: --byzantine needs a mode")
        #expect(reason("status 1 2") == "usage: status <i>")
    }

    @Test("start, signal, wait for, read and stop replicas; every answer is one JSON line")
    func session() async throws {
        let (cluster, root) = try makeCluster()
        defer { cluster.stop(timeout: 2); try? FileManager.default.removeItem(atPath: root) }
        let control = ClusterControl(cluster: cluster)
        func send(_ line: String) async -> ClusterControl.Reply { await offPool { control.handle(line) } }

        // A Byzantine start gets the flag and the permission; extra arguments follow the spec's.
        var r = await send("start 0 --byzantine silent --log-level info")
        #expect(r.ok && r.state == "running" && r.pid != nil, "\(r)")
        #expect(await send("start 0").error?.hasPrefix("replica 0 is running") == true)
        let sawArguments = await offPool {
            for _ in 0..<200 where !(cluster.logTail(of: 0) ?? "").contains("ready ") { usleep(10_000) }
            return cluster.logTail(of: 0) ?? ""
        }
        #expect(sawArguments.contains("args: --id 0 --byzantine silent --log-level info"), "\(sawArguments)")
        #expect(sawArguments.contains("BFT_ALLOW_BYZANTINE=1"))
        r = await send("tail 0 2")
        #expect(r.ok && r.tail?.hasPrefix("BFT_ALLOW_BYZANTINE=1\nready ") == true, "\(r)")

        // status: the process state, and the status document once the replica wrote one.
        r = await send("status 0")
        #expect(r.ok && r.state == "running" && r.status == nil)
        let doc = ReplicaStatus(replica: 0, view: 2, primary: 2, active: true, lastExecuted: 40, stableCheckpoint: 32,
                                delivered: 41, pendingRequests: 0, viewChanges: 1, dropped: ["bad_signature": 3])
        try JSONEncoder().encode(doc).write(to: URL(fileURLWithPath: cluster.directory(of: 0) + "/status.json"))
        #expect(await send("status 0").status == doc)

        // An exit code is reported as such, and a replica that is not running takes no signal.
        r = await send("start 1 exit=3")
        #expect(r.ok, "\(r)")
        r = await send("wait-exit 1 10")
        #expect(r.ok && r.state == "exited" && r.exit == 3, "\(r)")
        r = await send("kill 1 SIGTERM")
        #expect(!r.ok && r.sent == false && r.error == "replica 1 is not running (exited)")
        let pids = await send("pids").pids
        #expect(pids?.keys.sorted() == ["0"])

        // SIGSTOP leaves it running; SIGKILL is reported as a signal.
        #expect(await send("kill 0 SIGSTOP").sent == true)
        #expect(await send("wait-exit 0 0.3").error == "replica 0 still running after 0.3 s")
        #expect(await send("kill 0 SIGKILL").ok)
        r = await send("wait-exit 0 10")
        #expect(r.ok && r.state == "signaled" && r.signal == SIGKILL, "\(r)")

        // A restart removes the old status.json, so what status shows is the new process's.
        #expect(await send("start 0").ok)
        #expect(await send("status 0").status == nil)
        // Its SIGTERM handler must be installed before it is stopped (a shell that has not run
        // its `trap` yet dies of the SIGTERM instead): wait for the line it prints after it.
        let ready = "ready \(await send("pids").pids?["0"] ?? -1)\n"
        var isReady = false
        for _ in 0..<400 where !isReady {
            isReady = await offPool { cluster.logTail(of: 0, lines: 1) } == ready
            if !isReady { try await Task.sleep(for: .milliseconds(25)) }
        }
        #expect(isReady, "replica 0 never printed \(ready)")

        // stop-all continues a SIGSTOPped replica, so it exits by its own SIGTERM handler (exit
        // 0) instead of being SIGKILLed when the timeout runs out.
        #expect(await send("kill 0 SIGSTOP").ok)
        let started = ContinuousClock.now
        r = await send("stop-all 20")
        #expect(ContinuousClock.now - started < .seconds(15))
        #expect(r.replicas == [ClusterControl.ProcessState(replica: 0, state: "exited", exit: 0),
                               ClusterControl.ProcessState(replica: 1, state: "exited", exit: 3)], "\(r)")
        #expect(await offPool { cluster.logTail(of: 0, lines: 1) } == "terminated\n")

        // Unknown replicas and commands are errors, and every answer encodes as one JSON line.
        r = await send("status 7")
        #expect(!r.ok && r.error == "no replica 7 (replicas: 0 1)")
        for line in ["status 7", "bogus", "pids", "tail 0 3"] {
            let json = ClusterControl.encode(await send(line))
            #expect(!json.contains("\n"))
            let object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
            #expect(object?["ok"] is Bool && object?["command"] as? String == String(line.split(separator: " ")[0]))
        }
    }

    @Test("serve answers each line and stops every replica at the end of its input")
    func serveStopsAtEnd() async throws {
        let (cluster, root) = try makeCluster()
        defer { cluster.stop(timeout: 2); try? FileManager.default.removeItem(atPath: root) }
        let control = ClusterControl(cluster: cluster)
        let output = await offPool {
            var input = ["start 0", "", "start 1", "pids"][...]
            var written: [String] = []
            control.serve(readLine: { input.popFirst() }, write: { written.append($0); return true }, stopTimeout: 10)
            return written
        }
        #expect(output.count == 4 && output.allSatisfy { $0.hasSuffix("}\n") && $0.dropLast().firstIndex(of: "\n") == nil })
        #expect(output[1] == #"{"command":"","error":"empty command","ok":false}"# + "\n")
        #expect(output[3].contains(#""pids":{"0":"#) && output[3].contains(#""1":"#))
        #expect(!cluster.isRunning(0) && !cluster.isRunning(1))
        #expect(cluster.process(0)?.stateDescription == "exited 0")
    }

    @Test("the log tail is the file's last lines, also past the read window and without a final newline")
    func logTail() throws {
        let (cluster, root) = try makeCluster()
        defer { try? FileManager.default.removeItem(atPath: root) }
        #expect(cluster.logTail(of: 0) == nil)
        try FileManager.default.createDirectory(atPath: cluster.directory(of: 0), withIntermediateDirectories: true)
        let lines = (1...5000).map { "line \($0) " + String(repeating: "x", count: 60) }
        try (lines.joined(separator: "\n") + "\n").write(toFile: cluster.logPath(of: 0), atomically: true, encoding: .utf8)
        #expect(cluster.logTail(of: 0, lines: 3) == lines.suffix(3).joined(separator: "\n") + "\n")
        // 4,000 lines of ~70 bytes are more than the first 64 KiB window holds.
        #expect(cluster.logTail(of: 0, lines: 4000) == lines.suffix(4000).joined(separator: "\n") + "\n")
        #expect(cluster.logTail(of: 0, lines: 9000) == lines.joined(separator: "\n") + "\n")
        try "a\nb\nc".write(toFile: cluster.logPath(of: 0), atomically: true, encoding: .utf8)
        #expect(cluster.logTail(of: 0, lines: 2) == "b\nc")
        try "".write(toFile: cluster.logPath(of: 0), atomically: true, encoding: .utf8)
        #expect(cluster.logTail(of: 0) == "")
    }
}
