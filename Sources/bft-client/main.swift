import ArgumentParser
import BFTCore
import BFTCrypto
import BFTNode
import Foundation
import Logging
import NIOCore

/// `bft-client`: submits requests to the cluster and prints the agreed reply.
struct BFTClientCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bft-client",
        abstract: "Submit requests to a PBFT cluster and print the agreed (f+1 matching) replies.",
        discussion: "Without COMMANDs, reads one command per line from standard input.")

    @Option(help: "Cluster configuration (cluster.json).")
    var config: String

    @Option(help: "This client's Ed25519 private key (PKCS#8 PEM); its id is looked up in the configuration.")
    var key: String

    @Option(help: "Seconds to wait for f+1 matching replies per request.")
    var timeout: Double = 10

    @Argument(help: "Commands, e.g. 'SET a 1' 'GET a'.")
    var commands: [String] = []

    func fail(_ message: String, code: Int32 = 2) -> Never {
        FileHandle.standardError.write(Data("bft-client: \(message)\n".utf8))
        Foundation.exit(code)
    }

    func run() throws {
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = .warning
            return h
        }
        let cluster: ClusterConfiguration
        let clientID: ClientID
        let privateKey: BFTCrypto.Ed25519PrivateKey
        do {
            cluster = try ClusterConfiguration.load(path: config)
            privateKey = try ClusterConfiguration.loadPrivateKey(path: key)
            clientID = try cluster.clientID(for: privateKey)
        } catch {
            fail("\(error)")
        }
        let runtime = ClientRuntime(configuration: cluster, clients: [(clientID, privateKey)], window: 1,
                                    logger: Logger(label: "bft-client"))
        runtime.start()
        defer { runtime.shutdown() }
        var lines = commands
        if lines.isEmpty {
            while let line = readLine() { if !line.isEmpty { lines.append(line) } }
        }
        for line in lines {
            switch runtime.call(client: clientID, operation: Array(line.utf8), timeout: .milliseconds(Int64(timeout * 1000))) {
            case .completed(let result, _, _):
                print(String(decoding: result, as: UTF8.self))
            case .timedOut:
                runtime.shutdown()
                fail("no f+1 matching replies within \(timeout) s for '\(line)'", code: 1)
            }
        }
    }
}

BFTClientCommand.main()
