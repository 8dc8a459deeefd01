import BFTConfig
import Foundation

/// The line protocol of `bft-cluster up --control`: the replicas of a `LocalCluster` driven by
/// one command per line, each answered by exactly one JSON line. The e2e tests and operator
/// scripts use it, so starting, signalling and stopping replicas has one implementation (this
/// harness) instead of one per caller.
///
///     start <i> [--byzantine <mode>] [bft-node arguments...]   start (or restart) replica i
///     kill <i> [SIGKILL|SIGTERM|SIGSTOP|SIGCONT]               send a signal (default SIGKILL); does not wait
///     wait-exit <i> <seconds>                                  wait until replica i has exited
///     status <i>                                               its process state and status.json
///     tail <i> [lines]                                         the end of its node.log (default 20 lines)
///     pids                                                     the running replicas' process ids
///     stop-all [seconds]                                       SIGCONT+SIGTERM to all, SIGKILL after seconds (default 10)
///
/// Arguments are separated by spaces (no quoting). `start` removes the replica's old
/// `status.json` (a status read afterwards is the new process's) and appends the process's
/// output to `DATA/replica-<i>/node.log`; `--byzantine` also sets the environment variable
/// bft-node requires for it. Every answer has `ok` and `command`; a failed command has `error`;
/// replica commands add the process state: `state` (`not-started`, `running`, `exited` with
/// `exit`, `signaled` with `signal`, `failed-to-start` with `error`) and `pid` while it runs.
/// `status` adds `status` (the status document, absent until the replica wrote one), `tail`
/// adds `tail`, `pids` adds `pids` (replica id → pid), `stop-all` adds `replicas` (each one's
/// final state). At the end of the input every replica is stopped, so a controller that dies
/// leaves no replica behind.
public final class ClusterControl: Sendable {
    public enum Command: Equatable, Sendable {
        case start(replica: Int, byzantine: String?, arguments: [String])
        case kill(replica: Int, signal: Int32)
        case waitExit(replica: Int, seconds: Double)
        case status(replica: Int)
        case tail(replica: Int, lines: Int)
        case pids
        case stopAll(seconds: Double)

        /// The signals `kill` accepts, by name.
        public static let signals: [String: Int32] = ["SIGKILL": SIGKILL, "SIGTERM": SIGTERM, "SIGSTOP": SIGSTOP, "SIGCONT": SIGCONT]

        public static func parse(_ line: String) throws(HarnessError) -> Command {
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard let name = words.first else { throw HarnessError("empty command") }
            let rest = Array(words.dropFirst())
            func replica() throws(HarnessError) -> Int {
                guard let word = rest.first else { throw HarnessError("\(name): give a replica id") }
                guard let id = Int(word), id >= 0 else { throw HarnessError("\(name): '\(word)' is not a replica id") }
                return id
            }
            func atMost(_ count: Int, _ usage: String) throws(HarnessError) {
                if rest.count > count { throw HarnessError("usage: \(usage)") }
            }
            func seconds(_ word: String) throws(HarnessError) -> Double {
                guard let s = Double(word), s >= 0, s.isFinite else { throw HarnessError("\(name): '\(word)' is not a number of seconds") }
                return s
            }
            switch name {
            case "start":
                let id = try replica()
                var arguments = Array(rest.dropFirst())
                var byzantine: String?
                if let at = arguments.firstIndex(of: "--byzantine") {
                    guard at + 1 < arguments.count else { throw HarnessError("start: --byzantine needs a mode") }
                    byzantine = arguments[at + 1]
                    arguments.removeSubrange(at...at + 1)
                }
                return .start(replica: id, byzantine: byzantine, arguments: arguments)
            case "kill":
                try atMost(2, "kill <i> [SIGKILL|SIGTERM|SIGSTOP|SIGCONT]")
                let id = try replica()
                guard rest.count == 2 else { return .kill(replica: id, signal: SIGKILL) }
                let given = rest[1].uppercased()
                guard let signal = signals[given.hasPrefix("SIG") ? given : "SIG" + given] else {
                    throw HarnessError("kill: unknown signal '\(rest[1])' (SIGKILL, SIGTERM, SIGSTOP or SIGCONT)")
                }
                return .kill(replica: id, signal: signal)
            case "wait-exit":
                try atMost(2, "wait-exit <i> <seconds>")
                let id = try replica()
                guard rest.count == 2 else { throw HarnessError("usage: wait-exit <i> <seconds>") }
                return .waitExit(replica: id, seconds: try seconds(rest[1]))
            case "status":
                try atMost(1, "status <i>")
                return .status(replica: try replica())
            case "tail":
                try atMost(2, "tail <i> [lines]")
                let id = try replica()
                guard rest.count == 2 else { return .tail(replica: id, lines: 20) }
                guard let lines = Int(rest[1]), lines > 0 else { throw HarnessError("tail: '\(rest[1])' is not a line count") }
                return .tail(replica: id, lines: lines)
            case "pids":
                try atMost(0, "pids")
                return .pids
            case "stop-all":
                try atMost(1, "stop-all [seconds]")
                guard let word = rest.first else { return .stopAll(seconds: 10) }
                return .stopAll(seconds: try seconds(word))
            default:
                throw HarnessError("unknown command '\(name)' (start, kill, wait-exit, status, tail, pids, stop-all)")
            }
        }
    }

    /// One replica's process as an answer states it.
    public struct ProcessState: Codable, Equatable, Sendable {
        public var replica: Int
        /// `not-started`, `running`, `exited`, `signaled` or `failed-to-start`.
        public var state: String
        public var pid: Int32?
        public var exit: Int32?
        public var signal: Int32?
        public var error: String?

        public init(replica: Int, state: String, pid: Int32? = nil, exit: Int32? = nil, signal: Int32? = nil, error: String? = nil) {
            self.replica = replica; self.state = state; self.pid = pid; self.exit = exit; self.signal = signal; self.error = error
        }
    }

    /// One answer; absent fields are left out of the JSON line.
    public struct Reply: Codable, Equatable, Sendable {
        public var ok: Bool
        public var command: String
        public var error: String?
        public var replica: Int?
        public var state: String?
        public var pid: Int32?
        public var exit: Int32?
        public var signal: Int32?
        /// `kill`: whether the signal was sent (false: the replica was not running).
        public var sent: Bool?
        public var status: ReplicaStatus?
        public var tail: String?
        public var pids: [String: Int32]?
        public var replicas: [ProcessState]?

        init(ok: Bool, command: String, error: String? = nil) {
            self.ok = ok; self.command = command; self.error = error
        }

        mutating func describe(_ p: ProcessState) {
            replica = p.replica; state = p.state; pid = p.pid; exit = p.exit; signal = p.signal
            if error == nil { error = p.error }
        }
    }

    public let cluster: LocalCluster

    public init(cluster: LocalCluster) { self.cluster = cluster }

    public func processState(_ id: Int) -> ProcessState {
        var s = ProcessState(replica: id, state: "not-started")
        switch cluster.process(id)?.phase {
        case nil, .starting?: break
        case .running(let pid)?: s.state = "running"; s.pid = pid
        case .exited(.exited(let code))?: s.state = "exited"; s.exit = code
        case .exited(.signaled(let signal))?: s.state = "signaled"; s.signal = signal
        case .failedToStart(let why)?: s.state = "failed-to-start"; s.error = why
        }
        return s
    }

    /// Carries out one command line and answers it.
    public func handle(_ line: String) -> Reply {
        let name = String(line.split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "")
        let command: Command
        do { command = try Command.parse(line) } catch {
            return Reply(ok: false, command: name, error: error.description)
        }
        var reply = Reply(ok: true, command: name)
        func known(_ id: Int) -> Bool {
            guard cluster.replicaIDs.contains(id) else {
                reply.ok = false
                reply.error = "no replica \(id) (replicas: \(cluster.replicaIDs.map(String.init).joined(separator: " ")))"
                return false
            }
            return true
        }
        switch command {
        case .start(let id, let byzantine, let arguments):
            guard known(id) else { break }
            var extra = arguments
            var environment: [String: String] = [:]
            if let byzantine {
                let b = LocalCluster.byzantineOptions(mode: byzantine)
                extra = b.arguments + extra
                environment = b.environment
            }
            do { try cluster.restart(id, extraArguments: extra, extraEnvironment: environment) } catch {
                reply.ok = false
                reply.error = error.description
            }
            reply.describe(processState(id))
        case .kill(let id, let signal):
            guard known(id) else { break }
            let sent = cluster.send(signal, to: id)
            reply.sent = sent
            reply.describe(processState(id))
            if !sent {
                reply.ok = false
                reply.error = "replica \(id) is not running (\(reply.state ?? "?"))"
            }
        case .waitExit(let id, let seconds):
            guard known(id) else { break }
            if cluster.process(id) == nil {
                reply.ok = false
                reply.error = "replica \(id) was never started"
            } else if !cluster.waitUntilExit(id, timeout: seconds) {
                reply.ok = false
                reply.error = "replica \(id) still running after \(seconds) s"
            }
            reply.describe(processState(id))
        case .status(let id):
            guard known(id) else { break }
            reply.describe(processState(id))
            reply.status = cluster.status(of: id)
        case .tail(let id, let lines):
            guard known(id) else { break }
            reply.replica = id
            reply.tail = cluster.logTail(of: id, lines: lines) ?? ""
        case .pids:
            var pids: [String: Int32] = [:]
            for id in cluster.replicaIDs { if let pid = cluster.process(id)?.pid { pids["\(id)"] = pid } }
            reply.pids = pids
        case .stopAll(let seconds):
            cluster.stop(timeout: seconds)
            reply.replicas = cluster.replicaIDs.map(processState)
        }
        return reply
    }

    /// `reply` as one line of JSON (no newline inside; keys sorted).
    public static func encode(_ reply: Reply) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(reply) else {
            return #"{"command":"?","error":"answer could not be encoded","ok":false}"#
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// Answers every line `readLine` returns, through `write` (one JSON line each, newline
    /// included), until the input ends or `write` fails (the reader is gone); then stops every
    /// replica within `stopTimeout` seconds.
    public func serve(readLine: () -> String?, write: (String) -> Bool, stopTimeout: Double = 10) {
        while let line = readLine() {
            let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if !write(Self.encode(handle(trimmed)) + "\n") { break }
        }
        cluster.stop(timeout: stopTimeout)
    }
}
