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

private func makeTempDir(_ label: String) throws -> String {
    let dir = NSTemporaryDirectory() + "bft-keygen-\(label)-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

private func mode(_ path: String) throws -> Int {
    let attrs = try FileManager.default.attributesOfItem(atPath: path)
    return (attrs[.posixPermissions] as! NSNumber).intValue & 0o777
}

@Suite("KeyGenerator (bft-keygen)")
struct KeyGenTests {
    @Test("writes a loadable cluster whose keys match, private keys mode 0600")
    func generatesCluster() throws {
        let root = try makeTempDir("gen")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let out = root + "/nested/keys" // created if missing
        var options = KeyGenerator.Options(replicas: 4, outputDirectory: out)
        options.clients = 3
        options.clusterID = 42
        let written = try KeyGenerator.generate(options)
        #expect(written.count == 1 + 4 + 3)
        #expect(written.first == out + "/cluster.json")

        let config = try ClusterConfiguration.load(path: out + "/cluster.json")
        #expect(config.n == 4 && config.f == 1 && config.clusterID == 42 && config.clients.count == 3)
        #expect(config.replicas.map(\.port) == [7000, 7001, 7002, 7003])
        #expect(config.replicas.allSatisfy { $0.host == "127.0.0.1" })
        for i in 0..<4 {
            let path = out + "/replica-\(i).pem"
            try config.checkKey(try ClusterConfiguration.loadPrivateKey(path: path), matchesReplica: i)
            #expect(try mode(path) == 0o600)
        }
        for j in 0..<3 {
            let path = out + "/client-\(j).pem"
            #expect(try config.clientID(for: try ClusterConfiguration.loadPrivateKey(path: path)) == ClientID(j))
            #expect(try mode(path) == 0o600)
        }
        #expect(try mode(out + "/cluster.json") == 0o644)
    }

    @Test("refuses to overwrite without force, and writes nothing")
    func refusesOverwrite() throws {
        let out = try makeTempDir("overwrite")
        defer { try? FileManager.default.removeItem(atPath: out) }
        let options = KeyGenerator.Options(replicas: 4, outputDirectory: out)
        try KeyGenerator.generate(options)
        let before = try Data(contentsOf: URL(fileURLWithPath: out + "/cluster.json"))
        let keyBefore = try String(contentsOfFile: out + "/replica-0.pem", encoding: .utf8)

        #expect(throws: KeyGenError.wouldOverwrite(path: out + "/cluster.json")) {
            try KeyGenerator.generate(options)
        }
        #expect(KeyGenError.wouldOverwrite(path: "k/cluster.json").description == "k/cluster.json already exists (use --force to overwrite)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: out + "/cluster.json")) == before)

        // Only a key file in the way: still refused, and cluster.json untouched.
        try FileManager.default.removeItem(atPath: out + "/cluster.json")
        #expect(throws: KeyGenError.wouldOverwrite(path: out + "/replica-0.pem")) {
            try KeyGenerator.generate(options)
        }
        #expect(!FileManager.default.fileExists(atPath: out + "/cluster.json"))

        var forced = options
        forced.force = true
        try KeyGenerator.generate(forced)
        #expect(try String(contentsOfFile: out + "/replica-0.pem", encoding: .utf8) != keyBefore)
        #expect(try mode(out + "/replica-0.pem") == 0o600)
    }

    @Test("replica count must be 3f+1 >= 4", arguments: [0, 1, 3, 5, 6])
    func badReplicaCount(_ n: Int) throws {
        let out = try makeTempDir("count")
        defer { try? FileManager.default.removeItem(atPath: out) }
        #expect(throws: KeyGenError.invalidOptions("--replicas must be 3f+1 with f >= 1 (4, 7, 10, ...), got \(n)")) {
            try KeyGenerator.generate(KeyGenerator.Options(replicas: n, outputDirectory: out))
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: out).isEmpty)
    }

    @Test("seven replicas, per-replica hosts, custom base port")
    func hostsAndPorts() throws {
        let out = try makeTempDir("hosts")
        defer { try? FileManager.default.removeItem(atPath: out) }
        var options = KeyGenerator.Options(replicas: 7, outputDirectory: out)
        options.hosts = (0..<7).map { "node\($0).example" }
        options.basePort = 9100
        try KeyGenerator.generate(options)
        let config = try ClusterConfiguration.load(path: out + "/cluster.json")
        #expect(config.f == 2)
        #expect(config.address(of: 6) == ("node6.example", 9106))

        var wrong = options
        wrong.hosts = ["a", "b"]
        wrong.force = true
        #expect(throws: KeyGenError.invalidOptions("--hosts lists 2 hosts but there are 7 replicas")) {
            try KeyGenerator.generate(wrong)
        }
        var highPort = options
        highPort.basePort = 65532
        highPort.force = true
        #expect(throws: KeyGenError.invalidOptions("ports 65532...65538 are outside 1...65535")) {
            try KeyGenerator.generate(highPort)
        }
    }

    @Test("same port needs distinct hosts")
    func samePort() throws {
        let out = try makeTempDir("sameport")
        defer { try? FileManager.default.removeItem(atPath: out) }
        var options = KeyGenerator.Options(replicas: 4, outputDirectory: out)
        options.samePort = true
        #expect(throws: KeyGenError.configuration(.duplicateAddress(address: "127.0.0.1:7000", replicas: [0, 1]))) {
            try KeyGenerator.generate(options)
        }
        options.hosts = ["replica0", "replica1", "replica2", "replica3"]
        try KeyGenerator.generate(options)
        let config = try ClusterConfiguration.load(path: out + "/cluster.json")
        #expect(config.replicas.map(\.port) == [7000, 7000, 7000, 7000])
        #expect(config.address(of: 2).host == "replica2")
    }

    @Test("reuse-keys writes only cluster.json, with the same public keys")
    func reuseKeys() throws {
        let root = try makeTempDir("reuse")
        defer { try? FileManager.default.removeItem(atPath: root) }
        try KeyGenerator.generate(KeyGenerator.Options(replicas: 4, outputDirectory: root + "/keys"))
        var docker = KeyGenerator.Options(replicas: 4, outputDirectory: root + "/keys/docker")
        docker.hosts = ["replica0", "replica1", "replica2", "replica3"]
        docker.samePort = true
        docker.reuseKeysFrom = root + "/keys"
        let written = try KeyGenerator.generate(docker)
        #expect(written == [root + "/keys/docker/cluster.json"])
        let local = try ClusterConfiguration.load(path: root + "/keys/cluster.json")
        let remote = try ClusterConfiguration.load(path: root + "/keys/docker/cluster.json")
        #expect(local.replicas.map(\.publicKey) == remote.replicas.map(\.publicKey))
        #expect(local.clients == remote.clients)

        var missing = docker
        missing.reuseKeysFrom = root + "/nowhere"
        missing.force = true
        #expect(throws: KeyGenError.reuse(.privateKeyUnreadable(path: root + "/nowhere/replica-0.pem", reason: "no such file"))) {
            try KeyGenerator.generate(missing)
        }
    }
}
