import BFTCore
import BFTCrypto
import Foundation
import BFTSession

/// Why loading or checking a configuration or key file failed.
///
/// Every case renders as one line (`description`) because the executables print it verbatim
/// after their name and exit: an operator with a typo in `cluster.json` should see exactly what
/// is wrong without a stack trace. Equatable so tests can compare whole errors.
public enum ConfigError: Error, Equatable, CustomStringConvertible {
    /// The configuration file does not exist or cannot be read.
    case fileUnreadable(path: String, reason: String)
    /// The file is not valid JSON or does not have the expected shape (detail says where).
    case invalidJSON(path: String, detail: String)
    /// `f < 1`, or the number of replicas listed is not `3f + 1`.
    case badReplicaCount(replicas: Int, f: Int)
    /// Replica ids are not exactly `0 ..< n` (payload: the ids as listed).
    case badReplicaIDs([Int])
    /// Client ids are not exactly `0 ..< m` (payload: the ids as listed).
    case badClientIDs([Int])
    /// A replica's host is empty or its port is outside 1...65535.
    case badAddress(replica: Int, reason: String)
    /// Two replicas share one host:port.
    case duplicateAddress(address: String, replicas: [Int])
    /// A public key is not 64 hex characters (32 bytes). `principal` is e.g. "replica 2".
    case badPublicKey(principal: String, reason: String)
    /// Two principals share one public key, so one could sign as the other.
    case duplicatePublicKey(principals: [String])
    /// A protocol setting is out of range (message from our checks or `ProtocolConfig.validate()`).
    case badProtocol(String)
    /// A private key file does not exist or cannot be read.
    case privateKeyUnreadable(path: String, reason: String)
    /// A private key file is not an unencrypted PKCS#8 PEM Ed25519 private key.
    case privateKeyInvalid(path: String, reason: String)
    /// A private key file grants some access to its group or to others (`mode`: the file's
    /// permission bits). Whoever can read it can sign as its owner.
    case privateKeyExposed(path: String, mode: Int)
    /// A private key does not belong to the principal it is used for.
    case keyMismatch(String)
    /// Writing a configuration file failed.
    case writeFailed(path: String, reason: String)

    public var description: String {
        switch self {
        case .fileUnreadable(let path, let reason):
            return "cannot read configuration \(path): \(reason)"
        case .invalidJSON(let path, let detail):
            return "invalid configuration \(path): \(detail)"
        case .badReplicaCount(let replicas, let f):
            if f < 1 { return "invalid configuration: f must be at least 1 (got \(f))" }
            return "invalid configuration: f=\(f) needs exactly 3f+1=\(3 * f + 1) replicas, but \(replicas) are listed"
        case .badReplicaIDs(let ids):
            return "invalid configuration: replica ids must be exactly 0..<\(ids.count) (got \(ids))"
        case .badClientIDs(let ids):
            return "invalid configuration: client ids must be exactly 0..<\(ids.count) (got \(ids))"
        case .badAddress(let replica, let reason):
            return "invalid configuration: replica \(replica): \(reason)"
        case .duplicateAddress(let address, let replicas):
            return "invalid configuration: replicas \(replicas.map(String.init).joined(separator: " and ")) share the address \(address)"
        case .badPublicKey(let principal, let reason):
            return "invalid configuration: \(principal): bad publicKey: \(reason)"
        case .duplicatePublicKey(let principals):
            return "invalid configuration: \(principals.joined(separator: " and ")) share one public key"
        case .badProtocol(let reason):
            return "invalid configuration: protocol: \(reason)"
        case .privateKeyUnreadable(let path, let reason):
            return "cannot read private key \(path): \(reason)"
        case .privateKeyInvalid(let path, let reason):
            return "\(path) is not a PEM Ed25519 private key: \(reason)"
        case .privateKeyExposed(let path, let mode):
            let who = mode & 0o007 != 0 ? "readable by others" : "accessible by its group"
            return "private key \(path) is \(who) (mode \(String(format: "%04o", mode & 0o7777))); run chmod 600 \(path)"
        case .keyMismatch(let reason):
            return reason
        case .writeFailed(let path, let reason):
            return "cannot write \(path): \(reason)"
        }
    }
}

/// The cluster file, `cluster.json`: who the replicas and clients are, where the replicas
/// listen, and the protocol settings. Every replica and client of a cluster must load the same
/// file, since the keys in it decide which signatures are accepted.
///
/// A value of this type is always valid: the only ways to get one (`load(path:)` and the
/// throwing initialiser) run every check, so the runtime never re-validates. Replicas are kept
/// sorted by id, so `replicas[i].id == i`.
public struct ClusterConfiguration: Sendable {
    /// One replica: its id (`0 ..< n`), where it listens, and its Ed25519 public key.
    public struct ReplicaEntry: Sendable, Equatable {
        public var id: ReplicaID
        public var host: String
        public var port: Int
        public var publicKey: Ed25519PublicKey

        public init(id: ReplicaID, host: String, port: Int, publicKey: Ed25519PublicKey) {
            self.id = id; self.host = host; self.port = port; self.publicKey = publicKey
        }
    }

    /// One client: its id (`0 ..< m`) and Ed25519 public key. Clients have no address: they
    /// connect to the replicas, and replies go back over those connections.
    public struct ClientEntry: Sendable, Equatable {
        public var id: ClientID
        public var publicKey: Ed25519PublicKey

        public init(id: ClientID, publicKey: Ed25519PublicKey) {
            self.id = id; self.publicKey = publicKey
        }
    }

    /// The optional `protocol` object. Times are in milliseconds in the file, because operators
    /// think in wall-clock time; `protocolConfig()` converts them to ticks of `tickMs`.
    /// Every field is optional in the file and defaults to the values below.
    public struct ProtocolSettings: Sendable, Equatable {
        public var checkpointInterval: Int = 64
        public var watermarkWindow: Int = 128
        public var maxBatchRequests: Int = 256
        public var maxInFlightBatches: Int = 4
        public var viewChangeTimeoutMs: Int = 2000
        public var tickMs: Int = 10
        /// The size budget (see `ProtocolConfig`): the application's largest state, the largest
        /// operation and result, and the request bytes per batch. Every other size derives from these.
        public var maxApplicationStateBytes: Int = 256 * 1024 * 1024
        public var maxOperationBytes: Int = 64 * 1024
        public var maxResultBytes: Int = 64 * 1024
        public var maxBatchBytes: Int = 256 * 1024
        /// State-transfer bytes a replica sends one peer per second at most.
        public var stateTransferBytesPerSecond: Int = 128 * 1024 * 1024

        /// Bounds for `tickMs`: below 1 ms the tick timer would spin; above 1 s timeouts become coarse.
        public static let tickRange = 1...1000
        /// Bounds for `viewChangeTimeoutMs` (at most ten minutes, so doubling cannot overflow).
        public static let viewChangeTimeoutRange = 1...600_000

        public init() {}

        public init(checkpointInterval: Int = 64, watermarkWindow: Int = 128, maxBatchRequests: Int = 256,
                    maxInFlightBatches: Int = 4, viewChangeTimeoutMs: Int = 2000, tickMs: Int = 10) {
            self.checkpointInterval = checkpointInterval
            self.watermarkWindow = watermarkWindow
            self.maxBatchRequests = maxBatchRequests
            self.maxInFlightBatches = maxInFlightBatches
            self.viewChangeTimeoutMs = viewChangeTimeoutMs
            self.tickMs = tickMs
        }
    }

    /// Mixed into every signature, so messages of one cluster are useless in another.
    public let clusterID: UInt32
    /// Tolerated faulty replicas.
    public let f: Int
    /// Sorted by id: `replicas[i].id == i`.
    public let replicas: [ReplicaEntry]
    /// Sorted by id: `clients[j].id == j`.
    public let clients: [ClientEntry]
    public let protocolSettings: ProtocolSettings

    /// Number of replicas, `3f + 1`.
    public var n: Int { replicas.count }
    /// The node's clock tick in milliseconds (the runtime's timer period).
    public var tickMilliseconds: Int { protocolSettings.tickMs }

    /// Builds and validates a configuration. Entries may be given in any order; they are
    /// stored sorted by id.
    public init(clusterID: UInt32, f: Int, replicas: [ReplicaEntry], clients: [ClientEntry],
                protocolSettings: ProtocolSettings = ProtocolSettings()) throws(ConfigError) {
        let sortedReplicas = replicas.sorted { $0.id < $1.id }
        let sortedClients = clients.sorted { $0.id < $1.id }
        try Self.validate(f: f, replicas: replicas, clients: clients, settings: protocolSettings)
        self.clusterID = clusterID
        self.f = f
        self.replicas = sortedReplicas
        self.clients = sortedClients
        self.protocolSettings = protocolSettings
    }

    // MARK: - Validation

    private static func validate(f: Int, replicas: [ReplicaEntry], clients: [ClientEntry],
                                 settings: ProtocolSettings) throws(ConfigError) {
        guard f >= 1, replicas.count == 3 * f + 1 else {
            throw .badReplicaCount(replicas: replicas.count, f: f)
        }
        let replicaIDs = replicas.map(\.id)
        guard replicaIDs.sorted() == Array(0..<replicas.count) else { throw .badReplicaIDs(replicaIDs) }
        let clientIDs = clients.map { Int($0.id) }
        guard clientIDs.sorted() == Array(0..<clients.count) else { throw .badClientIDs(clientIDs) }

        var seenAddress: [String: Int] = [:]
        for r in replicas.sorted(by: { $0.id < $1.id }) {
            if r.host.isEmpty { throw .badAddress(replica: r.id, reason: "host is empty") }
            if r.host.contains(where: { $0.isWhitespace }) {
                throw .badAddress(replica: r.id, reason: "host '\(r.host)' contains whitespace")
            }
            guard (1...65535).contains(r.port) else {
                throw .badAddress(replica: r.id, reason: "port \(r.port) is outside 1...65535")
            }
            // Compare hosts case-insensitively: DNS names are, and "LOCALHOST:7000" twice is a clash.
            let address = "\(r.host.lowercased()):\(r.port)"
            if let other = seenAddress[address] {
                throw .duplicateAddress(address: "\(r.host):\(r.port)", replicas: [other, r.id])
            }
            seenAddress[address] = r.id
            // And by what the names resolve to, so 127.0.0.1:7000 and localhost:7000 clash too.
            for resolved in resolveAddresses(host: r.host, port: r.port) {
                if let other = seenAddress[resolved], other != r.id {
                    throw .duplicateAddress(address: "\(r.host):\(r.port)", replicas: [other, r.id])
                }
                seenAddress[resolved] = r.id
            }
        }

        var seenKey: [[UInt8]: String] = [:]
        let principals = replicas.sorted { $0.id < $1.id }.map { ("replica \($0.id)", $0.publicKey) }
            + clients.sorted { $0.id < $1.id }.map { ("client \($0.id)", $0.publicKey) }
        for (name, key) in principals {
            if let other = seenKey[key.rawRepresentation] { throw .duplicatePublicKey(principals: [other, name]) }
            seenKey[key.rawRepresentation] = name
        }

        if let reason = checkSettings(settings, n: replicas.count, clients: clients.count) {
            throw .badProtocol(reason)
        }
    }

    /// The numeric addresses `host` resolves to, each as "resolved <address> port <port>"
    /// (a key that cannot collide with a `host:port` name key), for the duplicate check.
    ///
    /// Numeric hosts are normalised by `getaddrinfo` itself (`127.000.000.001` is not accepted,
    /// `::0001` becomes `::1`), and `localhost` resolves to 127.0.0.1 and/or ::1 as the system's
    /// resolver says. A host that does not resolve here yields an empty set: a configuration is
    /// also loaded by clients and tools on machines that cannot resolve every replica's name
    /// (e.g. the docker hosts `replica0..3` outside the compose network), so failing to resolve
    /// is not an error; such hosts are compared only by their lower-cased names.
    static func resolveAddresses(host: String, port: Int) -> Set<String> {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        #if canImport(Glibc)
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #else
        hints.ai_socktype = SOCK_STREAM
        #endif
        hints.ai_flags = AI_NUMERICSERV
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &list) == 0, let first = list else { return [] }
        defer { freeaddrinfo(first) }
        var out: Set<String> = []
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let ai = cursor {
            var name = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            if getnameinfo(ai.pointee.ai_addr, ai.pointee.ai_addrlen, &name, socklen_t(name.count), nil, 0, NI_NUMERICHOST) == 0 {
                let text = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                out.insert("resolved \(text) port \(port)")
            }
            cursor = ai.pointee.ai_next
        }
        return out
    }

    /// Range checks on the file's numbers that must pass before they are converted to the
    /// core's unsigned types (a negative value would trap in `UInt64(_:)`), then the core's own
    /// `ProtocolConfig.validate()` for the invariants the protocol relies on.
    private static func checkSettings(_ s: ProtocolSettings, n: Int, clients: Int) -> String? {
        if s.checkpointInterval < 1 { return "checkpointInterval must be positive (got \(s.checkpointInterval))" }
        if s.watermarkWindow < 1 { return "watermarkWindow must be positive (got \(s.watermarkWindow))" }
        if s.maxBatchRequests < 1 { return "maxBatchRequests must be positive (got \(s.maxBatchRequests))" }
        if s.maxInFlightBatches < 1 { return "maxInFlightBatches must be positive (got \(s.maxInFlightBatches))" }
        if !ProtocolSettings.tickRange.contains(s.tickMs) {
            return "tickMs must be in \(ProtocolSettings.tickRange.lowerBound)...\(ProtocolSettings.tickRange.upperBound) (got \(s.tickMs))"
        }
        if !ProtocolSettings.viewChangeTimeoutRange.contains(s.viewChangeTimeoutMs) {
            return "viewChangeTimeoutMs must be in 1...\(ProtocolSettings.viewChangeTimeoutRange.upperBound) (got \(s.viewChangeTimeoutMs))"
        }
        if s.viewChangeTimeoutMs < s.tickMs {
            return "viewChangeTimeoutMs (\(s.viewChangeTimeoutMs)) must be at least tickMs (\(s.tickMs))"
        }
        for (name, value) in [("maxApplicationStateBytes", s.maxApplicationStateBytes), ("maxOperationBytes", s.maxOperationBytes),
                              ("maxResultBytes", s.maxResultBytes), ("maxBatchBytes", s.maxBatchBytes),
                              ("stateTransferBytesPerSecond", s.stateTransferBytesPerSecond)] where value < 1 {
            return "\(name) must be positive (got \(value))"
        }
        if s.maxOperationBytes > 16 * 1024 * 1024 || s.maxResultBytes > 16 * 1024 * 1024 {
            return "maxOperationBytes and maxResultBytes must be at most 16777216"
        }
        return makeProtocolConfig(n: n, clusterID: 0, clients: clients, settings: s).validate()
    }

    // MARK: - Views for the runtime

    /// The core's parameters. Millisecond settings become ticks of `tickMs` (at least one
    /// tick each). Settings the file does not expose are scaled from the tick so that they keep
    /// their wall-clock meaning when `tickMs` changes: votes are retransmitted and STATUS sent
    /// every ~500 ms, FETCH is rate-limited to one per ~200 ms, and the view-change timeout may
    /// double up to 16 times its initial value.
    public func protocolConfig() -> ProtocolConfig {
        Self.makeProtocolConfig(n: n, clusterID: clusterID, clients: clients.count, settings: protocolSettings)
    }

    private static func makeProtocolConfig(n: Int, clusterID: UInt32, clients: Int, settings s: ProtocolSettings) -> ProtocolConfig {
        var p = ProtocolConfig(n: n, clusterID: clusterID, clientCount: clients)
        let tick = max(1, s.tickMs)
        func ticks(_ ms: Int) -> UInt64 { UInt64(max(1, ms / tick)) }
        p.checkpointInterval = UInt64(max(0, s.checkpointInterval))
        p.watermarkWindow = UInt64(max(0, s.watermarkWindow))
        p.maxBatchRequests = s.maxBatchRequests
        p.maxInFlightBatches = s.maxInFlightBatches
        p.viewChangeTimeoutTicks = ticks(s.viewChangeTimeoutMs)
        p.maxViewChangeTimeoutTicks = p.viewChangeTimeoutTicks * 16
        p.retransmitTicks = ticks(500)
        p.statusIntervalTicks = ticks(500)
        p.fetchCooldownTicks = ticks(200)
        p.maxApplicationStateBytes = s.maxApplicationStateBytes
        p.maxOperationBytes = s.maxOperationBytes
        p.maxResultBytes = s.maxResultBytes
        p.maxBatchBytes = s.maxBatchBytes
        p.maxCatchUpBytes = max(p.maxCatchUpBytes, p.maxBatchEncodingBytes)
        p.stateTransferBytesPerTick = max(1, Int(clamping: Int64(s.stateTransferBytesPerSecond) * Int64(tick) / 1000))
        return p
    }

    /// The public keys of every replica and client, for signature verification.
    public func keyring() -> Ed25519Keyring {
        var clientKeys: [ClientID: Ed25519PublicKey] = [:]
        for c in clients { clientKeys[c.id] = c.publicKey }
        return Ed25519Keyring(replicaKeys: replicas.map(\.publicKey), clientKeys: clientKeys)
    }

    /// Identity keys for session handshakes: a principal's Ed25519 key from this file, or nil
    /// when it is not a replica or client of this cluster.
    public func sessionKeyring() -> @Sendable (SessionPrincipal) -> Ed25519PublicKey? {
        let replicaKeys = replicas.map(\.publicKey)
        let clientKeys = clients.map(\.publicKey)
        return { principal in
            switch principal {
            case .replica(let r): return Int(r) < replicaKeys.count ? replicaKeys[Int(r)] : nil
            case .client(let c): return Int(c) < clientKeys.count ? clientKeys[Int(c)] : nil
            }
        }
    }

    /// Where replica `replica` listens. Precondition: `0 <= replica < n` (callers check ids
    /// from the command line against `n` first).
    public func address(of replica: Int) -> (host: String, port: Int) {
        precondition(replica >= 0 && replica < n, "replica \(replica) is not in 0..<\(n)")
        return (replicas[replica].host, replicas[replica].port)
    }

    // MARK: - Keys

    /// Throws unless `key` is the private key of replica `id`. Why: a replica started with the
    /// wrong key would sign messages every peer rejects, which looks like a network fault;
    /// failing at start-up names the real problem.
    public func checkKey(_ key: Ed25519PrivateKey, matchesReplica id: Int) throws(ConfigError) {
        guard id >= 0 && id < n else { throw .keyMismatch("replica \(id) is not in this cluster (ids 0..<\(n))") }
        guard replicas[id].publicKey == key.publicKey else {
            throw .keyMismatch("the private key does not belong to replica \(id) (its public key differs from the one in the configuration)")
        }
    }

    /// Throws unless `key` is the private key of client `id`.
    public func checkKey(_ key: Ed25519PrivateKey, matchesClient id: ClientID) throws(ConfigError) {
        guard Int(id) < clients.count else { throw .keyMismatch("client \(id) is not in this cluster (ids 0..<\(clients.count))") }
        guard clients[Int(id)].publicKey == key.publicKey else {
            throw .keyMismatch("the private key does not belong to client \(id) (its public key differs from the one in the configuration)")
        }
    }

    /// The id of the client whose public key matches `key`, so client tools need only a key
    /// file. Public keys are unique (validated), so the answer is unambiguous.
    public func clientID(for key: Ed25519PrivateKey) throws(ConfigError) -> ClientID {
        guard let entry = clients.first(where: { $0.publicKey == key.publicKey }) else {
            throw .keyMismatch("the private key belongs to no client of this cluster")
        }
        return entry.id
    }

    /// The environment variable that lets `loadPrivateKey` accept a key file readable by its
    /// group or others. Meant only for the committed development keys bind-mounted into
    /// containers (`docker/docker-compose.yml`), where the container user cannot own the file.
    public static let insecureKeyPermissionsVariable = "BFT_INSECURE_KEY_PERMISSIONS"

    /// True when `BFT_INSECURE_KEY_PERMISSIONS=1` is set.
    public static var insecureKeyPermissionsAllowed: Bool {
        ProcessInfo.processInfo.environment[insecureKeyPermissionsVariable] == "1"
    }

    /// Loads an unencrypted PKCS#8 PEM Ed25519 private key (as written by `bft-keygen` or
    /// `openssl genpkey -algorithm ED25519`).
    ///
    /// Refuses (`ConfigError.privateKeyExposed`) a file whose permission bits give its group or
    /// others any access, like ssh does: a key others can read is no longer a secret, and an
    /// operator should learn that at start-up, not after an incident. `bft-keygen` writes 0600;
    /// a git checkout of the development keys is 0644, which `bft-cluster` and `bft-loadgen`
    /// tighten before use (`tightenKeyFilePermissions`). `allowInsecurePermissions` (default:
    /// `BFT_INSECURE_KEY_PERMISSIONS=1`) skips the check.
    public static func loadPrivateKey(
        path: String, allowInsecurePermissions: Bool = insecureKeyPermissionsAllowed
    ) throws(ConfigError) -> Ed25519PrivateKey {
        var info = stat()
        if !allowInsecurePermissions, stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG,
           Int(info.st_mode) & 0o077 != 0 {
            throw .privateKeyExposed(path: path, mode: Int(info.st_mode) & 0o7777)
        }
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw .privateKeyUnreadable(path: path, reason: fileReadReason(path: path, error: error))
        }
        do throws(CryptoError) {
            return try Ed25519PrivateKey(pem: text)
        } catch {
            let reason: String
            if text.contains("-----BEGIN PUBLIC KEY-----") {
                reason = "it holds a public key; pass the private key file"
            } else if text.contains("ENCRYPTED PRIVATE KEY") {
                reason = "encrypted keys are not supported"
            } else if !text.contains("-----BEGIN") {
                reason = "no PEM block found"
            } else {
                reason = error.description
            }
            throw .privateKeyInvalid(path: path, reason: reason)
        }
    }

    /// Removes every group and other permission bit from the key file at `path` (like
    /// `chmod go-rwx`) if it has any; returns true when it changed the mode. Never loosens.
    /// Errors (no such file, not the owner, read-only mount) are ignored: `loadPrivateKey`
    /// then reports the problem. Used by the tools that run the committed development keys,
    /// which a git checkout leaves 0644.
    @discardableResult
    public static func tightenKeyFilePermissions(path: String) -> Bool {
        var info = stat()
        guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG, Int(info.st_mode) & 0o077 != 0 else { return false }
        return chmod(path, mode_t(Int(info.st_mode) & 0o700)) == 0
    }

    // MARK: - File format

    /// Reads and validates `cluster.json`.
    public static func load(path: String) throws(ConfigError) -> ClusterConfiguration {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw .fileUnreadable(path: path, reason: fileReadReason(path: path, error: error))
        }
        return try decode(data, path: path)
    }

    /// Parses and validates the bytes of a cluster file; `path` only labels errors.
    public static func decode(_ data: Data, path: String = "cluster.json") throws(ConfigError) -> ClusterConfiguration {
        let file: ClusterFile
        do {
            file = try JSONDecoder().decode(ClusterFile.self, from: data)
        } catch let error as DecodingError {
            if let syntax = syntaxError(in: data) { throw .invalidJSON(path: path, detail: syntax) }
            throw .invalidJSON(path: path, detail: describe(error))
        } catch {
            throw .invalidJSON(path: path, detail: "\(error)")
        }
        var replicas: [ReplicaEntry] = []
        for r in file.replicas {
            replicas.append(ReplicaEntry(id: r.id, host: r.host, port: r.port,
                                         publicKey: try parseKey(r.publicKey, principal: "replica \(r.id)")))
        }
        var clients: [ClientEntry] = []
        for c in file.clients {
            // Ids outside UInt32 (negative or huge) are reported like any other bad id list.
            guard let id = ClientID(exactly: c.id) else { throw .badClientIDs(file.clients.map(\.id)) }
            clients.append(ClientEntry(id: id, publicKey: try parseKey(c.publicKey, principal: "client \(c.id)")))
        }
        return try ClusterConfiguration(clusterID: file.clusterID, f: file.f, replicas: replicas, clients: clients,
                                        protocolSettings: file.protocolSettings ?? ProtocolSettings())
    }

    /// The file's text: pretty-printed with sorted keys, so files diff cleanly and two
    /// generations of the same configuration are byte-identical. Ends with a newline.
    public func encoded() -> Data {
        let file = ClusterFile(
            clusterID: clusterID, f: f,
            replicas: replicas.map { .init(id: $0.id, host: $0.host, port: $0.port, publicKey: Hex.encode($0.publicKey.rawRepresentation)) },
            clients: clients.map { .init(id: Int($0.id), publicKey: Hex.encode($0.publicKey.rawRepresentation)) },
            protocolSettings: protocolSettings)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        // Encoding plain strings and integers cannot fail.
        var data = (try? encoder.encode(file)) ?? Data()
        data.append(0x0A)
        return data
    }

    /// Writes `encoded()` to `path` (atomically: a reader never sees half a file).
    public func save(to path: String) throws(ConfigError) {
        do {
            try encoded().write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw .writeFailed(path: path, reason: error.localizedDescription)
        }
    }

    private static func parseKey(_ hex: String, principal: String) throws(ConfigError) -> Ed25519PublicKey {
        guard hex.utf8.count == 2 * Ed25519PublicKey.byteCount else {
            throw .badPublicKey(principal: principal, reason: "expected \(2 * Ed25519PublicKey.byteCount) hex characters, got \(hex.utf8.count)")
        }
        guard let raw = Hex.decode(hex) else {
            throw .badPublicKey(principal: principal, reason: "not hexadecimal")
        }
        do throws(CryptoError) {
            return try Ed25519PublicKey(rawRepresentation: raw)
        } catch {
            throw .badPublicKey(principal: principal, reason: error.description)
        }
    }

    /// A short reason for a failed read: "no such file" is by far the most common case and
    /// Foundation's message for it varies by platform.
    public static func fileReadReason(path: String, error: any Error) -> String {
        var isDirectory: ObjCBool = false
        if !FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) { return "no such file" }
        if isDirectory.boolValue { return "is a directory" }
        if !FileManager.default.isReadableFile(atPath: path) { return "permission denied" }
        return error.localizedDescription
    }

    /// A one-line description of a JSON syntax error with its line and column, or nil if
    /// `data` is syntactically valid JSON. Why a second parser: JSONDecoder on Linux reports
    /// only "The given data was not valid JSON", while JSONSerialization names the offset.
    static func syntaxError(in data: Data) -> String? {
        do {
            _ = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
            return nil
        } catch {
            var reason = ((error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String) ?? "syntax error"
            if reason.hasSuffix(".") { reason.removeLast() }
            guard let r = reason.range(of: #"character [0-9]+"#, options: .regularExpression),
                  let offset = Int(reason[r].dropFirst("character ".count)) else {
                return "not valid JSON: \(reason)"
            }
            let prefix = data.prefix(max(0, min(offset, data.count)))
            let line = 1 + prefix.reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) }
            let lineStart = prefix.lastIndex(of: 0x0A).map { $0 + 1 } ?? prefix.startIndex
            let column = 1 + prefix.distance(from: lineStart, to: prefix.endIndex)
            return "not valid JSON: \(reason) (line \(line), column \(column))"
        }
    }

    /// Turns a `DecodingError` into one line naming the JSON path, e.g.
    /// `replicas[1].port: expected Int` or `missing key "f"`.
    public static func describe(_ error: DecodingError) -> String {
        func path(_ codingPath: [any CodingKey]) -> String {
            var s = ""
            for key in codingPath {
                if let i = key.intValue { s += "[\(i)]" } else { s += (s.isEmpty ? "" : ".") + key.stringValue }
            }
            return s
        }
        func at(_ codingPath: [any CodingKey]) -> String {
            let p = path(codingPath)
            return p.isEmpty ? "" : "\(p): "
        }
        switch error {
        case .typeMismatch(let type, let ctx):
            return "\(at(ctx.codingPath))expected \(jsonTypeName(type))"
        case .valueNotFound(let type, let ctx):
            return "\(at(ctx.codingPath))expected \(jsonTypeName(type)), found null"
        case .keyNotFound(let key, let ctx):
            return "\(at(ctx.codingPath))missing key \"\(key.stringValue)\""
        case .dataCorrupted(let ctx):
            var detail = ctx.debugDescription
            if let underlying = ctx.underlyingError {
                let u = (underlying as NSError).userInfo[NSDebugDescriptionErrorKey] as? String ?? "\(underlying)"
                detail = u
            }
            detail = detail.replacingOccurrences(of: "\n", with: " ")
            return "\(at(ctx.codingPath))\(detail)"
        @unknown default:
            return "\(error)"
        }
    }

    private static func jsonTypeName(_ type: Any.Type) -> String {
        if type == String.self { return "a string" }
        if type == Int.self || type == UInt32.self { return "an integer" }
        let name = "\(type)"
        if name.hasPrefix("Array") { return "an array" }
        return "an object"
    }
}

// MARK: - On-disk representation

/// A `CodingKey` for any string, used to find keys the format does not know.
private struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

/// Rejects keys outside `known`. Why: JSONDecoder silently ignores unknown keys, so a typo
/// such as `"checkpointIntervall"` would otherwise quietly fall back to the default value.
private func rejectUnknownKeys(_ decoder: any Decoder, known: [String]) throws {
    let container = try decoder.container(keyedBy: AnyKey.self)
    for key in container.allKeys where !known.contains(key.stringValue) {
        throw DecodingError.dataCorrupted(.init(
            codingPath: decoder.codingPath,
            debugDescription: "unknown key \"\(key.stringValue)\" (known: \(known.joined(separator: ", ")))"))
    }
}

/// The JSON shape of `cluster.json`. Kept separate from `ClusterConfiguration` so the public
/// type holds parsed keys while the file holds hex strings, and so field names in the file are
/// pinned here independent of Swift property names.
private struct ClusterFile: Codable {
    struct Replica: Codable {
        var id: Int
        var host: String
        var port: Int
        var publicKey: String

        init(id: Int, host: String, port: Int, publicKey: String) {
            self.id = id; self.host = host; self.port = port; self.publicKey = publicKey
        }

        init(from decoder: any Decoder) throws {
            try rejectUnknownKeys(decoder, known: ["id", "host", "port", "publicKey"])
            let c = try decoder.container(keyedBy: CodingKeys.self)
            id = try c.decode(Int.self, forKey: .id)
            host = try c.decode(String.self, forKey: .host)
            port = try c.decode(Int.self, forKey: .port)
            publicKey = try c.decode(String.self, forKey: .publicKey)
        }
    }

    struct Client: Codable {
        var id: Int
        var publicKey: String

        init(id: Int, publicKey: String) { self.id = id; self.publicKey = publicKey }

        init(from decoder: any Decoder) throws {
            try rejectUnknownKeys(decoder, known: ["id", "publicKey"])
            let c = try decoder.container(keyedBy: CodingKeys.self)
            id = try c.decode(Int.self, forKey: .id)
            publicKey = try c.decode(String.self, forKey: .publicKey)
        }
    }

    var clusterID: UInt32
    var f: Int
    var replicas: [Replica]
    var clients: [Client]
    var protocolSettings: ClusterConfiguration.ProtocolSettings?

    enum CodingKeys: String, CodingKey {
        case clusterID, f, replicas, clients
        case protocolSettings = "protocol"
    }

    init(clusterID: UInt32, f: Int, replicas: [Replica], clients: [Client], protocolSettings: ClusterConfiguration.ProtocolSettings?) {
        self.clusterID = clusterID; self.f = f; self.replicas = replicas; self.clients = clients
        self.protocolSettings = protocolSettings
    }

    init(from decoder: any Decoder) throws {
        try rejectUnknownKeys(decoder, known: ["clusterID", "f", "replicas", "clients", "protocol"])
        let c = try decoder.container(keyedBy: CodingKeys.self)
        clusterID = try c.decode(UInt32.self, forKey: .clusterID)
        f = try c.decode(Int.self, forKey: .f)
        replicas = try c.decode([Replica].self, forKey: .replicas)
        // A cluster without clients is legal (nothing can be ordered, but replicas still run).
        clients = try c.decodeIfPresent([Client].self, forKey: .clients) ?? []
        protocolSettings = try c.decodeIfPresent(ClusterConfiguration.ProtocolSettings.self, forKey: .protocolSettings)
    }
}

extension ClusterConfiguration.ProtocolSettings: Codable {
    enum CodingKeys: String, CodingKey {
        case checkpointInterval, watermarkWindow, maxBatchRequests, maxInFlightBatches, viewChangeTimeoutMs, tickMs
        case maxApplicationStateBytes, maxOperationBytes, maxResultBytes, maxBatchBytes, stateTransferBytesPerSecond
    }

    /// Every field is optional so a file may override just one setting.
    public init(from decoder: any Decoder) throws {
        try rejectUnknownKeys(decoder, known: CodingKeys.allNames)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = Self()
        checkpointInterval = try c.decodeIfPresent(Int.self, forKey: .checkpointInterval) ?? d.checkpointInterval
        watermarkWindow = try c.decodeIfPresent(Int.self, forKey: .watermarkWindow) ?? d.watermarkWindow
        maxBatchRequests = try c.decodeIfPresent(Int.self, forKey: .maxBatchRequests) ?? d.maxBatchRequests
        maxInFlightBatches = try c.decodeIfPresent(Int.self, forKey: .maxInFlightBatches) ?? d.maxInFlightBatches
        viewChangeTimeoutMs = try c.decodeIfPresent(Int.self, forKey: .viewChangeTimeoutMs) ?? d.viewChangeTimeoutMs
        tickMs = try c.decodeIfPresent(Int.self, forKey: .tickMs) ?? d.tickMs
        maxApplicationStateBytes = try c.decodeIfPresent(Int.self, forKey: .maxApplicationStateBytes) ?? d.maxApplicationStateBytes
        maxOperationBytes = try c.decodeIfPresent(Int.self, forKey: .maxOperationBytes) ?? d.maxOperationBytes
        maxResultBytes = try c.decodeIfPresent(Int.self, forKey: .maxResultBytes) ?? d.maxResultBytes
        maxBatchBytes = try c.decodeIfPresent(Int.self, forKey: .maxBatchBytes) ?? d.maxBatchBytes
        stateTransferBytesPerSecond = try c.decodeIfPresent(Int.self, forKey: .stateTransferBytesPerSecond) ?? d.stateTransferBytesPerSecond
    }
}

extension ClusterConfiguration.ProtocolSettings.CodingKeys: CaseIterable {
    static var allNames: [String] { allCases.map(\.rawValue) }
}
