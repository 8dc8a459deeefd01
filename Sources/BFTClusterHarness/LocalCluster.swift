import BFTConfig
import Foundation
import Synchronization

/// The replicas of one configuration run as local `bft-node` processes: each gets
/// `DATA/replica-<i>` (write-ahead log, `status.json`, `deliver.log`, and `node.log` with its
/// standard output and error). Used by `bft-cluster` and `bft-loadgen --spawn`.
public final class LocalCluster: Sendable {
    /// How one replica is started.
    public struct ReplicaSpec: Sendable {
        public var id: Int
        public var arguments: [String]
        public var extraEnvironment: [String: String]

        public init(id: Int, arguments: [String], extraEnvironment: [String: String] = [:]) {
            self.id = id
            self.arguments = arguments
            self.extraEnvironment = extraEnvironment
        }
    }

    public let node: String
    public let dataDirectory: String
    public let specs: [ReplicaSpec]
    private let processes = Mutex<[Int: ReplicaProcess]>([:])

    public var replicaIDs: [Int] { specs.map(\.id) }

    public init(node: String, dataDirectory: String, specs: [ReplicaSpec]) {
        self.node = node
        self.dataDirectory = dataDirectory
        self.specs = specs
    }

    /// `DATA/replica-<id>`.
    public func directory(of id: Int) -> String { "\(dataDirectory)/replica-\(id)" }

    /// The arguments `bft-node` gets for replica `id` of the configuration at `configPath`,
    /// with its key in the configuration's directory and everything else in `dataDirectory`.
    public static func nodeArguments(configPath: String, id: Int, dataDirectory: String, app: String,
                                     extra: [String] = []) -> [String] {
        let keys = URL(fileURLWithPath: configPath).deletingLastPathComponent().path
        return ["--config", configPath, "--id", "\(id)", "--key", "\(keys)/replica-\(id).pem", "--data", dataDirectory,
                "--app", app, "--deliver-log", "\(dataDirectory)/deliver.log"] + extra
    }

    /// Makes the data directories (mode 0700, like bft-node) and starts every replica.
    public func startAll() throws(HarnessError) {
        for spec in specs { try launch(spec.id) }
    }

    /// The arguments and environment that make bft-node run replica behaviour `mode`
    /// (test-only; bft-node refuses `--byzantine` without `BFT_ALLOW_BYZANTINE=1`).
    public static func byzantineOptions(mode: String) -> (arguments: [String], environment: [String: String]) {
        (["--byzantine", mode], ["BFT_ALLOW_BYZANTINE": "1"])
    }

    /// Starts replica `id` (again) on its data directory. `extraArguments` follow its spec's
    /// arguments and `extraEnvironment` overrides its spec's, for this run only. A replica that
    /// is still running is refused (two processes on one data directory would corrupt it).
    public func launch(_ id: Int, extraArguments: [String] = [], extraEnvironment: [String: String] = [:]) throws(HarnessError) {
        guard let spec = specs.first(where: { $0.id == id }) else {
            throw HarnessError("no replica \(id) (replicas: \(replicaIDs.map(String.init).joined(separator: " ")))")
        }
        if let pid = process(id)?.pid { throw HarnessError("replica \(id) is running (pid \(pid))") }
        let dir = directory(of: id)
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw HarnessError("cannot create \(dir): \(error.localizedDescription)")
        }
        let p = try ReplicaProcess.launch(executable: node, arguments: spec.arguments + extraArguments,
                                          extraEnvironment: spec.extraEnvironment.merging(extraEnvironment) { $1 },
                                          logPath: logPath(of: id))
        processes.withLock { $0[id] = p }
    }

    public func process(_ id: Int) -> ReplicaProcess? { processes.withLock { $0[id] } }

    public func isRunning(_ id: Int) -> Bool { process(id)?.isRunning ?? false }

    /// No replica is running (all exited by themselves, were stopped, or never started).
    public var allExited: Bool { replicaIDs.allSatisfy { !isRunning($0) } }

    /// Sends `signal` to replica `id` if it is running; returns whether it was sent.
    @discardableResult
    public func send(_ signal: Int32, to id: Int) -> Bool { process(id)?.send(signal) ?? false }

    /// Waits until replica `id` has exited (true at once if it never started); false when
    /// `timeout` seconds passed first.
    @discardableResult
    public func waitUntilExit(_ id: Int, timeout: Double) -> Bool { process(id)?.waitUntilExit(timeout: timeout) ?? true }

    /// SIGKILL: no shutdown code runs, as in a crash. Returns once the process is gone.
    public func kill(_ id: Int) {
        guard let p = process(id) else { return }
        p.send(SIGKILL)
        p.waitUntilExit()
    }

    /// SIGTERM, then SIGKILL if it has not exited after `timeout` seconds.
    public func terminate(_ id: Int, timeout: Double = 10) {
        guard let p = process(id) else { return }
        p.send(SIGTERM)
        if !p.waitUntilExit(timeout: timeout) { kill(id) }
    }

    /// Starts a stopped or killed replica again on its data directory (it recovers from its
    /// write-ahead log). Its old `status.json` is removed first, so a status read after this
    /// is the restarted process's. The extras are `launch`'s.
    public func restart(_ id: Int, extraArguments: [String] = [], extraEnvironment: [String: String] = [:]) throws(HarnessError) {
        if let pid = process(id)?.pid { throw HarnessError("replica \(id) is running (pid \(pid))") }
        try? FileManager.default.removeItem(atPath: "\(directory(of: id))/status.json")
        try launch(id, extraArguments: extraArguments, extraEnvironment: extraEnvironment)
    }

    /// SIGTERM to every replica, up to `timeout` seconds for all of them to exit, then SIGKILL.
    /// A replica stopped by SIGSTOP gets SIGCONT first, so it can shut down instead of waiting
    /// out the timeout for its SIGKILL.
    public func stop(timeout: Double = 10) {
        let all = processes.withLock { Array($0.values) }
        for p in all {
            p.send(SIGCONT)
            p.send(SIGTERM)
        }
        let deadline = Date().addingTimeInterval(timeout)
        for p in all where !p.waitUntilExit(timeout: max(0, deadline.timeIntervalSinceNow)) {
            p.send(SIGKILL)
            p.waitUntilExit()
        }
    }

    /// `DATA/replica-<id>/node.log`: the replica's standard output and error, appended across restarts.
    public func logPath(of id: Int) -> String { "\(directory(of: id))/node.log" }

    /// The last `lines` lines of replica `id`'s `node.log` (fewer if it has fewer); nil when
    /// there is no log. Reads only the end of the file, however large it grew.
    public func logTail(of id: Int, lines: Int = 20) -> String? {
        guard let handle = FileHandle(forReadingAtPath: logPath(of: id)) else { return nil }
        defer { try? handle.close() }
        guard lines > 0, let size = try? handle.seekToEnd(), size > 0 else { return "" }
        var window: UInt64 = 64 * 1024
        while true {
            let start = size > window ? size - window : 0
            guard (try? handle.seek(toOffset: start)) != nil, let data = try? handle.readToEnd() else { return nil }
            var cut = data[...]
            if cut.last == UInt8(ascii: "\n") { cut = cut.dropLast() }
            // The first line of a window that does not start the file may be partial.
            let newlines = cut.reduce(0) { $1 == UInt8(ascii: "\n") ? $0 + 1 : $0 }
            if newlines >= lines || start == 0 {
                var kept = 0
                var from = cut.endIndex
                while from > cut.startIndex {
                    let before = cut.index(before: from)
                    if cut[before] == UInt8(ascii: "\n") {
                        kept += 1
                        if kept == lines { break }
                    }
                    from = before
                }
                return String(decoding: data[from...], as: UTF8.self)
            }
            window *= 4
        }
    }

    /// Replica `id`'s `status.json`, if it has written one.
    public func status(of id: Int) -> ReplicaStatus? { ReplicaStatus.read(dataDirectory: directory(of: id)) }

    /// The status files of the replicas that are running.
    public func statuses() -> [ReplicaStatus] {
        replicaIDs.filter { isRunning($0) }.compactMap { status(of: $0) }
    }
}

/// Where the tools find `bft-node`, and what they say when it is not there.
public enum NodeBinary {
    /// `name` in the directory of the running executable (symlinks resolved).
    public static func besideExecutable(_ name: String = "bft-node") -> String {
        executableDirectory().appendingPathComponent(name).path
    }

    /// The build configuration the running executable comes from, as `swift build` spells it:
    /// debug when it sits in a `debug` folder, release (what the benchmarks want) otherwise.
    public static func buildFlag() -> String {
        executableDirectory().lastPathComponent == "debug" ? "" : "-c release "
    }

    /// `override` if given, else bft-node beside this executable; a one-line error saying how to
    /// build it when it is not there (the tools never build it themselves).
    public static func locate(override: String? = nil, tool: String) throws(HarnessError) -> String {
        if let override {
            guard FileManager.default.isExecutableFile(atPath: override) else {
                throw HarnessError("bft-node not found at \(override)")
            }
            return override
        }
        let path = besideExecutable()
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw HarnessError("bft-node not found next to \(tool) (\(path)); build it first: swift build \(buildFlag())--product bft-node")
        }
        return path
    }

    private static func executableDirectory() -> URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
    }
}

/// A git checkout leaves the committed development keys 0644, which bft-node refuses: make the
/// key files a cluster uses private to their owner (never loosens; a read-only mount is left
/// alone). Returns the files it changed.
public func tightenKeyFiles(keysDirectory: String, cluster: ClusterConfiguration, replicas: Bool = true,
                            clients: Bool = true) -> [String] {
    var paths: [String] = []
    if replicas { paths += cluster.replicas.map { "\(keysDirectory)/replica-\($0.id).pem" } }
    if clients { paths += cluster.clients.map { "\(keysDirectory)/client-\($0.id).pem" } }
    return paths.filter { ClusterConfiguration.tightenKeyFilePermissions(path: $0) }
}
