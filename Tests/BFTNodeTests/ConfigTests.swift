import BFTCore
import BFTCrypto
import Foundation
import Testing

@testable import BFTNode
@testable import BFTFrameCodec
@testable import BFTTransport
@testable import BFTApplications
@testable import BFTConfig
@testable import BFTClient

/// A fresh directory under the system temp directory for one test.
private func makeTempDir(_ label: String) throws -> String {
    let dir = NSTemporaryDirectory() + "bft-config-\(label)-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

/// Keys generated once for all configuration tests (generation is cheap, but stable keys make
/// failures easier to compare).
private let replicaKeys: [Ed25519PrivateKey] = (0..<4).map { _ in try! Ed25519PrivateKey.generate() }
private let clientKeys: [Ed25519PrivateKey] = (0..<2).map { _ in try! Ed25519PrivateKey.generate() }

private func hex(_ k: Ed25519PrivateKey) -> String { Hex.encode(k.publicKey.rawRepresentation) }

/// A valid cluster file as a JSON object, for tests to break in one place.
private func baseDocument() -> [String: Any] {
    [
        "clusterID": 7,
        "f": 1,
        "replicas": (0..<4).map { i -> [String: Any] in
            ["id": i, "host": "127.0.0.1", "port": 7000 + i, "publicKey": hex(replicaKeys[i])]
        },
        "clients": (0..<2).map { j -> [String: Any] in ["id": j, "publicKey": hex(clientKeys[j])] },
        "protocol": ["checkpointInterval": 64, "watermarkWindow": 128, "maxBatchRequests": 256,
                     "maxInFlightBatches": 4, "viewChangeTimeoutMs": 2000, "tickMs": 10],
    ]
}

private func data(_ doc: [String: Any]) -> Data {
    try! JSONSerialization.data(withJSONObject: doc)
}

/// Decodes `doc` and returns the error's one-line description (or nil if it loaded).
private func errorMessage(_ doc: [String: Any]) -> String? {
    do {
        _ = try ClusterConfiguration.decode(data(doc), path: "test.json")
        return nil
    } catch {
        return error.description
    }
}

/// One way to break the file and the message it must produce.
struct BrokenConfigCase: Sendable, CustomTestStringConvertible {
    let name: String
    let expected: String
    let mutate: @Sendable (inout [String: Any]) -> Void
    var testDescription: String { name }
}

private func setReplica(_ doc: inout [String: Any], _ i: Int, _ key: String, _ value: Any) {
    var replicas = doc["replicas"] as! [[String: Any]]
    replicas[i][key] = value
    doc["replicas"] = replicas
}

private func setProtocol(_ doc: inout [String: Any], _ key: String, _ value: Any) {
    var p = doc["protocol"] as! [String: Any]
    p[key] = value
    doc["protocol"] = p
}

private let brokenCases: [BrokenConfigCase] = [
    .init(name: "f = 0", expected: "invalid configuration: f must be at least 1 (got 0)") { $0["f"] = 0 },
    .init(name: "n != 3f+1", expected: "invalid configuration: f=2 needs exactly 3f+1=7 replicas, but 4 are listed") { $0["f"] = 2 },
    .init(name: "replica ids not 0..<n", expected: "invalid configuration: replica ids must be exactly 0..<4 (got [0, 1, 2, 5])") {
        setReplica(&$0, 3, "id", 5)
    },
    .init(name: "duplicate replica id", expected: "invalid configuration: replica ids must be exactly 0..<4 (got [0, 1, 1, 3])") {
        setReplica(&$0, 2, "id", 1)
    },
    .init(name: "duplicate host:port", expected: "invalid configuration: replicas 0 and 2 share the address 127.0.0.1:7000") {
        setReplica(&$0, 2, "port", 7000)
    },
    .init(name: "port out of range", expected: "invalid configuration: replica 1: port 70000 is outside 1...65535") {
        setReplica(&$0, 1, "port", 70000)
    },
    .init(name: "empty host", expected: "invalid configuration: replica 3: host is empty") { setReplica(&$0, 3, "host", "") },
    .init(name: "public key not hex", expected: "invalid configuration: replica 1: bad publicKey: not hexadecimal") {
        setReplica(&$0, 1, "publicKey", String(repeating: "zz", count: 32))
    },
    .init(name: "public key too short", expected: "invalid configuration: replica 0: bad publicKey: expected 64 hex characters, got 6") {
        setReplica(&$0, 0, "publicKey", "abcdef")
    },
    .init(name: "client ids not 0..<m", expected: "invalid configuration: client ids must be exactly 0..<2 (got [0, 2])") {
        $0["clients"] = [["id": 0, "publicKey": hex(clientKeys[0])], ["id": 2, "publicKey": hex(clientKeys[1])]]
    },
    .init(name: "negative client id", expected: "invalid configuration: client ids must be exactly 0..<1 (got [-1])") {
        $0["clients"] = [["id": -1, "publicKey": hex(clientKeys[0])]]
    },
    .init(name: "shared public key", expected: "invalid configuration: replica 0 and client 1 share one public key") {
        $0["clients"] = [["id": 0, "publicKey": hex(clientKeys[0])], ["id": 1, "publicKey": hex(replicaKeys[0])]]
    },
    .init(name: "watermark window not a multiple", expected: "invalid configuration: protocol: watermark window must be a multiple of the checkpoint interval and at least twice it") {
        setProtocol(&$0, "watermarkWindow", 100)
    },
    .init(name: "tick out of range", expected: "invalid configuration: protocol: tickMs must be in 1...1000 (got 0)") {
        setProtocol(&$0, "tickMs", 0)
    },
    .init(name: "negative checkpoint interval", expected: "invalid configuration: protocol: checkpointInterval must be positive (got -64)") {
        setProtocol(&$0, "checkpointInterval", -64)
    },
    .init(name: "timeout below tick", expected: "invalid configuration: protocol: viewChangeTimeoutMs (5) must be at least tickMs (10)") {
        setProtocol(&$0, "viewChangeTimeoutMs", 5)
    },
    .init(name: "batch above decoder limit", expected: "invalid configuration: protocol: maxBatchRequests 100000 exceeds the decoder's requests per batch 512") {
        setProtocol(&$0, "maxBatchRequests", 100_000)
    },
    .init(name: "watermark window above what a view change carries", expected: "invalid configuration: protocol: watermarkWindow 4096 exceeds the prepared certificates a VIEW-CHANGE may carry (1024)") {
        setProtocol(&$0, "watermarkWindow", 4096)
    },
    .init(name: "batch bytes below one largest request", expected: "invalid configuration: protocol: maxBatchBytes 65536 is smaller than one largest request (maxRequestBytes 65617 from maxOperationBytes 65536)") {
        setProtocol(&$0, "maxBatchBytes", 65536)
    },
    .init(name: "state budget not positive", expected: "invalid configuration: protocol: maxApplicationStateBytes must be positive (got 0)") {
        setProtocol(&$0, "maxApplicationStateBytes", 0)
    },
    .init(name: "unknown protocol key", expected: "invalid configuration test.json: protocol: unknown key \"checkpointIntervall\" (known: checkpointInterval, watermarkWindow, maxBatchRequests, maxInFlightBatches, viewChangeTimeoutMs, tickMs, maxApplicationStateBytes, maxOperationBytes, maxResultBytes, maxBatchBytes, stateTransferBytesPerSecond)") {
        setProtocol(&$0, "checkpointIntervall", 32)
    },
    .init(name: "missing f", expected: "invalid configuration test.json: missing key \"f\"") { $0["f"] = nil },
    .init(name: "port is a string", expected: "invalid configuration test.json: replicas[1].port: expected an integer") {
        setReplica(&$0, 1, "port", "7001")
    },
    .init(name: "replicas not an array", expected: "invalid configuration test.json: replicas: expected an array") {
        $0["replicas"] = "none"
    },
]

@Suite("Cluster configuration")
struct ConfigTests {
    @Test("a valid file loads with every field")
    func loadsValidFile() throws {
        let config = try ClusterConfiguration.decode(data(baseDocument()))
        #expect(config.n == 4)
        #expect(config.f == 1)
        #expect(config.clusterID == 7)
        #expect(config.replicas.map(\.id) == [0, 1, 2, 3])
        #expect(config.replicas[2].publicKey == replicaKeys[2].publicKey)
        #expect(config.clients.map(\.id) == [0, 1])
        #expect(config.address(of: 3) == ("127.0.0.1", 7003))
        #expect(config.tickMilliseconds == 10)
        let keyring = config.keyring()
        #expect(keyring.replicaKeys.count == 4)
        let sig = clientKeys[1].signature(for: [1, 2, 3])
        #expect(keyring.isValid(signature: sig, for: [1, 2, 3], by: .client(1)))
        #expect(!keyring.isValid(signature: sig, for: [1, 2, 3], by: .client(0)))
    }

    @Test("broken files give their one-line message", arguments: brokenCases)
    func brokenFile(_ c: BrokenConfigCase) {
        var doc = baseDocument()
        c.mutate(&doc)
        let message = errorMessage(doc)
        #expect(message == c.expected)
        #expect(message?.contains("\n") == false)
    }

    @Test("a missing file says so")
    func missingFile() {
        #expect(throws: ConfigError.fileUnreadable(path: "/nonexistent/cluster.json", reason: "no such file")) {
            try ClusterConfiguration.load(path: "/nonexistent/cluster.json")
        }
        let e = ConfigError.fileUnreadable(path: "/nonexistent/cluster.json", reason: "no such file")
        #expect(e.description == "cannot read configuration /nonexistent/cluster.json: no such file")
    }

    @Test("a directory is not a configuration")
    func directoryIsNotAFile() throws {
        let dir = try makeTempDir("dir")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(throws: ConfigError.fileUnreadable(path: dir, reason: "is a directory")) {
            try ClusterConfiguration.load(path: dir)
        }
    }

    @Test("invalid JSON is reported on one line with its position")
    func invalidJSON() {
        let text = "{\"clusterID\": 1,\n \"f\": 1,\n \"replicas\": [ oops ] }"
        do {
            _ = try ClusterConfiguration.decode(Data(text.utf8), path: "bad.json")
            Issue.record("decoded invalid JSON")
        } catch {
            let message = error.description
            #expect(message.hasPrefix("invalid configuration bad.json: "))
            #expect(!message.contains("\n"))
            #expect(message == "invalid configuration bad.json: not valid JSON: Invalid value around character 41 (line 3, column 16)")
        }
    }

    @Test("protocol is optional, and so is each of its fields")
    func protocolDefaults() throws {
        var doc = baseDocument()
        doc["protocol"] = nil
        let config = try ClusterConfiguration.decode(data(doc))
        #expect(config.protocolSettings == .init())
        doc["protocol"] = ["tickMs": 5]
        let partial = try ClusterConfiguration.decode(data(doc))
        #expect(partial.protocolSettings.tickMs == 5)
        #expect(partial.protocolSettings.checkpointInterval == 64)
        #expect(partial.protocolSettings.viewChangeTimeoutMs == 2000)
    }

    @Test("protocolConfig maps milliseconds to ticks")
    func protocolMapping() throws {
        let config = try ClusterConfiguration.decode(data(baseDocument()))
        let p = config.protocolConfig()
        #expect(p.n == 4 && p.f == 1 && p.clusterID == 7 && p.clientCount == 2)
        #expect(p.checkpointInterval == 64 && p.watermarkWindow == 128)
        #expect(p.maxBatchRequests == 256 && p.maxInFlightBatches == 4)
        #expect(p.viewChangeTimeoutTicks == 200)
        #expect(p.maxViewChangeTimeoutTicks == 3200)
        #expect(p.retransmitTicks == 50 && p.statusIntervalTicks == 50 && p.fetchCooldownTicks == 20)
        #expect(p.validate() == nil)

        var doc = baseDocument()
        doc["protocol"] = ["tickMs": 5, "viewChangeTimeoutMs": 1000, "checkpointInterval": 8, "watermarkWindow": 32]
        let q = try ClusterConfiguration.decode(data(doc)).protocolConfig()
        #expect(q.viewChangeTimeoutTicks == 200)
        #expect(q.retransmitTicks == 100 && q.statusIntervalTicks == 100 && q.fetchCooldownTicks == 40)
        #expect(q.checkpointInterval == 8 && q.watermarkWindow == 32)

        doc["protocol"] = ["tickMs": 1000, "viewChangeTimeoutMs": 1500]
        let coarse = try ClusterConfiguration.decode(data(doc)).protocolConfig()
        #expect(coarse.viewChangeTimeoutTicks == 1)
        #expect(coarse.fetchCooldownTicks == 1 && coarse.retransmitTicks == 1)
    }

    @Test("encoding is stable, sorted and round-trips through save/load")
    func roundTrip() throws {
        let dir = try makeTempDir("roundtrip")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = try ClusterConfiguration.decode(data(baseDocument()))
        let encoded = config.encoded()
        #expect(encoded == config.encoded())
        let text = String(decoding: encoded, as: UTF8.self)
        #expect(text.hasSuffix("}\n"))
        // Top-level keys in sorted order.
        let order = ["\"clients\"", "\"clusterID\"", "\"f\"", "\"protocol\"", "\"replicas\""]
            .map { text.range(of: $0)!.lowerBound }
        #expect(order == order.sorted())

        let path = dir + "/cluster.json"
        try config.save(to: path)
        let loaded = try ClusterConfiguration.load(path: path)
        #expect(loaded.clusterID == config.clusterID && loaded.f == config.f)
        #expect(loaded.replicas == config.replicas)
        #expect(loaded.clients == config.clients)
        #expect(loaded.protocolSettings == config.protocolSettings)
        #expect(loaded.encoded() == encoded)
    }

    @Test("entries may be listed in any order; they are stored by id")
    func unorderedEntries() throws {
        var doc = baseDocument()
        doc["replicas"] = Array((doc["replicas"] as! [[String: Any]]).reversed())
        let config = try ClusterConfiguration.decode(data(doc))
        #expect(config.replicas.map(\.id) == [0, 1, 2, 3])
        #expect(config.address(of: 0).port == 7000)
    }

    @Test("private keys load from PEM, with clear errors otherwise")
    func privateKeys() throws {
        let dir = try makeTempDir("keys")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let good = dir + "/replica-1.pem"
        try replicaKeys[1].pemRepresentation().write(toFile: good, atomically: true, encoding: .utf8)
        chmod(good, 0o600)
        let loaded = try ClusterConfiguration.loadPrivateKey(path: good)
        #expect(loaded.publicKey == replicaKeys[1].publicKey)

        #expect(throws: ConfigError.privateKeyUnreadable(path: dir + "/none.pem", reason: "no such file")) {
            try ClusterConfiguration.loadPrivateKey(path: dir + "/none.pem")
        }
        let garbage = dir + "/garbage.pem"
        try "hello".write(toFile: garbage, atomically: true, encoding: .utf8)
        chmod(garbage, 0o600)
        #expect(throws: ConfigError.privateKeyInvalid(path: garbage, reason: "no PEM block found")) {
            try ClusterConfiguration.loadPrivateKey(path: garbage)
        }
        let pub = dir + "/public.pem"
        try replicaKeys[1].publicKey.pemRepresentation().write(toFile: pub, atomically: true, encoding: .utf8)
        chmod(pub, 0o600)
        #expect(throws: ConfigError.privateKeyInvalid(path: pub, reason: "it holds a public key; pass the private key file")) {
            try ClusterConfiguration.loadPrivateKey(path: pub)
        }
        #expect(ConfigError.privateKeyInvalid(path: pub, reason: "x").description == "\(pub) is not a PEM Ed25519 private key: x")
    }

    @Test func privateKeyReadableByOthersIsRefusedWithAOneLineChmodHint() throws {
        let dir = try makeTempDir("keymode")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/replica-0.pem"
        try replicaKeys[0].pemRepresentation().write(toFile: path, atomically: true, encoding: .utf8)
        #expect(chmod(path, 0o644) == 0)
        let expected = ConfigError.privateKeyExposed(path: path, mode: 0o644)
        #expect(throws: expected) { try ClusterConfiguration.loadPrivateKey(path: path, allowInsecurePermissions: false) }
        #expect(expected.description == "private key \(path) is readable by others (mode 0644); run chmod 600 \(path)")
        #expect(!expected.description.contains("\n"))
        // Group access alone is refused as well.
        #expect(chmod(path, 0o640) == 0)
        #expect(throws: ConfigError.privateKeyExposed(path: path, mode: 0o640)) {
            try ClusterConfiguration.loadPrivateKey(path: path, allowInsecurePermissions: false)
        }
        // The explicit development override loads it anyway.
        #expect(try ClusterConfiguration.loadPrivateKey(path: path, allowInsecurePermissions: true).publicKey == replicaKeys[0].publicKey)
        // Tightening (what bft-cluster and bft-loadgen do to the checked-out dev keys) makes it 0600 and loadable.
        #expect(ClusterConfiguration.tightenKeyFilePermissions(path: path))
        #expect(!ClusterConfiguration.tightenKeyFilePermissions(path: path))
        #expect(try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int == 0o600)
        let loaded = try ClusterConfiguration.loadPrivateKey(path: path, allowInsecurePermissions: false)
        #expect(loaded.publicKey == replicaKeys[0].publicKey)
    }

    @Test func replicasAtLocalhostAndLoopbackOnTheSamePortAreDuplicates() throws {
        var doc = baseDocument()
        setReplica(&doc, 2, "host", "localhost")
        setReplica(&doc, 2, "port", 7000)
        #expect(throws: ConfigError.duplicateAddress(address: "localhost:7000", replicas: [0, 2])) {
            try ClusterConfiguration.decode(data(doc))
        }
        // Same names, different ports: fine.
        setReplica(&doc, 2, "port", 7002)
        #expect(try ClusterConfiguration.decode(data(doc)).replicas[2].host == "localhost")
        // A name that does not resolve here is compared by name only and still loads.
        setReplica(&doc, 3, "host", "replica3.invalid")
        #expect(try ClusterConfiguration.decode(data(doc)).replicas[3].host == "replica3.invalid")
        #expect(ClusterConfiguration.resolveAddresses(host: "replica3.invalid", port: 7003).isEmpty)
        #expect(ClusterConfiguration.resolveAddresses(host: "127.0.0.1", port: 7000) == ["resolved 127.0.0.1 port 7000"])
    }

    @Test("keys are checked against the configured principals")
    func keyChecks() throws {
        let config = try ClusterConfiguration.decode(data(baseDocument()))
        try config.checkKey(replicaKeys[2], matchesReplica: 2)
        #expect(throws: ConfigError.self) { try config.checkKey(replicaKeys[2], matchesReplica: 1) }
        #expect(throws: ConfigError.self) { try config.checkKey(replicaKeys[0], matchesReplica: 4) }
        try config.checkKey(clientKeys[1], matchesClient: 1)
        #expect(throws: ConfigError.self) { try config.checkKey(clientKeys[1], matchesClient: 0) }
        #expect(throws: ConfigError.self) { try config.checkKey(clientKeys[1], matchesClient: 9) }
        #expect(try config.clientID(for: clientKeys[1]) == 1)
        #expect(throws: ConfigError.keyMismatch("the private key belongs to no client of this cluster")) {
            try config.clientID(for: replicaKeys[0])
        }
        do {
            try config.checkKey(replicaKeys[2], matchesReplica: 1)
        } catch {
            #expect(error.description == "the private key does not belong to replica 1 (its public key differs from the one in the configuration)")
        }
    }
}
