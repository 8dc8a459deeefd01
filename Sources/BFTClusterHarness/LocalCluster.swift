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

    /// Starts replica `id` (again) on its data directory.
    public func launch(_ id: Int) throws(HarnessError) {
        guard let spec = specs.first(where: { $0.id == id }) else { throw HarnessError("no replica \(id)") }
        let dir = directory(of: id)
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw HarnessError("cannot create \(dir): \(error.localizedDescription)")
        }
        let p = try ReplicaProcess.launch(executable: node, arguments: spec.arguments,
                                          extraEnvironment: spec.extraEnvironment, logPath: "\(dir)/node.log")
        processes.withLock { $0[id] = p }
    }

    public func process(_ id: Int) -> ReplicaProcess? { processes.withLock { $0[id] } }

    public func isRunning(_ id: Int) -> Bool { process(id)?.isRunning ?? false }

    /// No replica is running (all exited by themselves, were stopped, or never started).
    public var allExited: Bool { replicaIDs.allSatisfy { !isRunning($0) } }

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
    /// is the restarted process's.
    public func restart(_ id: Int) throws(HarnessError) {
        try? FileManager.default.removeItem(atPath: "\(directory(of: id))/status.json")
        try launch(id)
    }

    /// SIGTERM to every replica, up to `timeout` seconds for all of them to exit, then SIGKILL.
    public func stop(timeout: Double = 10) {
        let all = processes.withLock { Array($0.values) }
        for p in all { p.send(SIGTERM) }
        let deadline = Date().addingTimeInterval(timeout)
        for p in all where !p.waitUntilExit(timeout: max(0, deadline.timeIntervalSinceNow)) {
            p.send(SIGKILL)
            p.waitUntilExit()
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
