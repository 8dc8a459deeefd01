import BFTCore
import BFTCrypto
import Foundation
import BFTStorage

/// Why key generation refused or failed. One line each, printed verbatim by `bft-keygen`.
public enum KeyGenError: Error, Equatable, CustomStringConvertible {
    /// The requested cluster shape or addresses are not valid.
    case invalidOptions(String)
    /// A file would be overwritten and `force` is off.
    case wouldOverwrite(path: String)
    /// Reading keys to reuse failed.
    case reuse(ConfigError)
    /// The resulting configuration failed validation (e.g. duplicate addresses).
    case configuration(ConfigError)
    /// Creating the directory or writing a file failed.
    case writeFailed(path: String, reason: String)
    /// The system random generator failed.
    case crypto(String)

    public var description: String {
        switch self {
        case .invalidOptions(let reason): return reason
        case .wouldOverwrite(let path): return "\(path) already exists (use --force to overwrite)"
        case .reuse(let e): return "cannot reuse keys: \(e)"
        case .configuration(let e): return "\(e)"
        case .writeFailed(let path, let reason): return "cannot write \(path): \(reason)"
        case .crypto(let reason): return "key generation failed: \(reason)"
        }
    }
}

/// Generates a cluster: `cluster.json` plus one PEM private key per replica and client.
/// This is the library behind `bft-keygen`, so its checks (shape, overwrite refusal, file
/// modes) are unit-testable without spawning the executable.
public enum KeyGenerator {
    /// What to generate. Defaults match `bft-keygen`'s.
    public struct Options: Sendable {
        /// Number of replicas, must be `3f + 1 >= 4`.
        public var replicas: Int
        /// Number of clients (at least 1).
        public var clients: Int = 4
        /// Directory receiving `cluster.json` and the key files (created if missing).
        public var outputDirectory: String
        /// One host for every replica, or one host per replica (`hosts[i]` for replica `i`).
        public var hosts: [String] = ["127.0.0.1"]
        /// Replica `i` listens on `basePort + i`, or on `basePort` when `samePort` is set.
        public var basePort: Int = 7000
        /// Every replica uses `basePort` (distinct hosts, e.g. containers on one network).
        public var samePort: Bool = false
        public var clusterID: UInt32 = 1
        /// Overwrite existing files instead of refusing.
        public var force: Bool = false
        /// Read `replica-<i>.pem` / `client-<j>.pem` from this directory instead of generating
        /// keys; then only `cluster.json` is written. Lets two configurations (e.g. localhost and
        /// docker) describe the same identities.
        public var reuseKeysFrom: String? = nil
        public var protocolSettings = ClusterConfiguration.ProtocolSettings()

        public init(replicas: Int, outputDirectory: String) {
            self.replicas = replicas
            self.outputDirectory = outputDirectory
        }
    }

    /// File name of replica `i`'s private key inside a key directory.
    public static func replicaKeyFile(_ i: Int) -> String { "replica-\(i).pem" }
    /// File name of client `j`'s private key inside a key directory.
    public static func clientKeyFile(_ j: Int) -> String { "client-\(j).pem" }
    /// File name of the configuration inside a key directory.
    public static let configFile = "cluster.json"

    /// Generates (or reuses) the keys, validates the configuration and writes the files.
    /// Nothing is written unless every check passes and, without `force`, none of the target
    /// files exists. Private keys are created with mode 0600. Returns the paths written, in order.
    @discardableResult
    public static func generate(_ options: Options) throws(KeyGenError) -> [String] {
        let n = options.replicas
        guard n >= 4, (n - 1) % 3 == 0 else {
            throw .invalidOptions("--replicas must be 3f+1 with f >= 1 (4, 7, 10, ...), got \(n)")
        }
        guard options.clients >= 1 else { throw .invalidOptions("--clients must be at least 1, got \(options.clients)") }
        guard options.hosts.count == 1 || options.hosts.count == n else {
            throw .invalidOptions("--hosts lists \(options.hosts.count) hosts but there are \(n) replicas")
        }
        let lastPort = options.samePort ? options.basePort : options.basePort + n - 1
        guard options.basePort >= 1, lastPort <= 65535 else {
            throw .invalidOptions("ports \(options.basePort)...\(lastPort) are outside 1...65535")
        }
        let dir = options.outputDirectory

        // Keys first (in memory), so nothing is written if reuse fails.
        var replicaKeys: [Ed25519PrivateKey] = []
        var clientKeys: [Ed25519PrivateKey] = []
        if let source = options.reuseKeysFrom {
            do throws(ConfigError) {
                for i in 0..<n { replicaKeys.append(try ClusterConfiguration.loadPrivateKey(path: join(source, replicaKeyFile(i)))) }
                for j in 0..<options.clients { clientKeys.append(try ClusterConfiguration.loadPrivateKey(path: join(source, clientKeyFile(j)))) }
            } catch {
                throw .reuse(error)
            }
        } else {
            do throws(CryptoError) {
                for _ in 0..<n { replicaKeys.append(try Ed25519PrivateKey.generate()) }
                for _ in 0..<options.clients { clientKeys.append(try Ed25519PrivateKey.generate()) }
            } catch {
                throw .crypto(error.description)
            }
        }

        let replicas = (0..<n).map { i in
            ClusterConfiguration.ReplicaEntry(
                id: i, host: options.hosts.count == 1 ? options.hosts[0] : options.hosts[i],
                port: options.samePort ? options.basePort : options.basePort + i,
                publicKey: replicaKeys[i].publicKey)
        }
        let clients = (0..<options.clients).map { j in
            ClusterConfiguration.ClientEntry(id: ClientID(j), publicKey: clientKeys[j].publicKey)
        }
        let config: ClusterConfiguration
        do throws(ConfigError) {
            config = try ClusterConfiguration(clusterID: options.clusterID, f: (n - 1) / 3, replicas: replicas,
                                              clients: clients, protocolSettings: options.protocolSettings)
        } catch {
            throw .configuration(error)
        }

        var files: [(path: String, contents: Data, mode: mode_t)] = [(join(dir, configFile), config.encoded(), 0o644)]
        if options.reuseKeysFrom == nil {
            for (i, k) in replicaKeys.enumerated() { files.append((join(dir, replicaKeyFile(i)), Data(k.pemRepresentation().utf8), 0o600)) }
            for (j, k) in clientKeys.enumerated() { files.append((join(dir, clientKeyFile(j)), Data(k.pemRepresentation().utf8), 0o600)) }
        }
        if !options.force {
            for file in files where FileManager.default.fileExists(atPath: file.path) {
                throw .wouldOverwrite(path: file.path)
            }
        }
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        } catch {
            throw .writeFailed(path: dir, reason: error.localizedDescription)
        }
        for file in files {
            try write(file.contents, to: file.path, mode: file.mode)
        }
        return files.map(\.path)
    }

    private static func join(_ dir: String, _ name: String) -> String {
        dir.hasSuffix("/") ? dir + name : dir + "/" + name
    }

    /// Writes with open(2) so the file is created with `mode` from the start: a private key
    /// must never exist, even briefly, with the umask's default (usually world-readable) mode.
    /// `fchmod` also fixes the mode of a file that existed before (`--force`).
    private static func write(_ data: Data, to path: String, mode: mode_t) throws(KeyGenError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw .writeFailed(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        guard fchmod(fd, mode) == 0 else { throw .writeFailed(path: path, reason: String(cString: strerror(errno))) }
        do throws(BlockingIOError) {
            try BlockingIO.writeAll(fd, [UInt8](data))
        } catch {
            throw .writeFailed(path: path, reason: error.description)
        }
    }
}
