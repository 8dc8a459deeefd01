import BFTCore
import BFTCrypto
import Foundation
import Logging
import NIOCore
import Testing

@testable import BFTNode
@testable import BFTFrameCodec
@testable import BFTTransport
@testable import BFTApplications
@testable import BFTConfig
@testable import BFTClient

private func mode(_ path: String) throws -> Int {
    (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int) ?? -1
}

@Suite("Data file modes")
struct DataFileModeTests {
    @Test func replicaDataDirectoryAndFilesArePrivateToTheUser() async throws {
        let root = NSTemporaryDirectory() + "bft-modes-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        // bft-node creates its data directory (and missing parents) with DataDirectory.create.
        let data = root + "/nested/replica-0"
        try DataDirectory.create(data)
        #expect(try mode(root + "/nested") == 0o700)
        #expect(try mode(data) == 0o700)

        let keys = try (0..<4).map { _ in try Ed25519PrivateKey.generate() }
        let ports = try NodeIntegrationTests.freePorts(4)
        let replicas = (0..<4).map { i in
            ClusterConfiguration.ReplicaEntry(id: i, host: "127.0.0.1", port: ports[i], publicKey: keys[i].publicKey)
        }
        let client = try Ed25519PrivateKey.generate()
        let config = try ClusterConfiguration(clusterID: 9, f: 1, replicas: replicas,
                                              clients: [.init(id: 0, publicKey: client.publicKey)])
        var logger = Logger(label: "modes")
        logger.logLevel = .critical
        let app = try LogApplication(path: data + "/app.log", logger: logger)
        let node = try ReplicaNode(configuration: config, id: 0, key: keys[0], application: app, dataDirectory: data,
                                   deliverLogPath: data + "/deliver.log", logger: logger, statusInterval: .milliseconds(20))
        try node.start()
        let wrote = await NodeIntegrationTests.waitUntil(5) { FileManager.default.fileExists(atPath: data + "/status.json") }
        node.shutdown()
        #expect(wrote)

        #expect(try mode(data + "/status.json") == 0o600)
        #expect(try mode(data + "/deliver.log") == 0o600)
        #expect(try mode(data + "/app.log") == 0o600)
        #expect(try mode(data + "/wal") == 0o700)
        let walFiles = try FileManager.default.contentsOfDirectory(atPath: data + "/wal")
        #expect(!walFiles.isEmpty)
        for f in walFiles {
            #expect(try mode(data + "/wal/" + f) == 0o600, "wal/\(f)")
        }
    }
}
