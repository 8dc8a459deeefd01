import ArgumentParser
import BFTCore
import BFTCrypto
import Foundation
import Logging
import NIOCore
import BFTConfig
import BFTClient

/// `bft-client`: submits requests to the cluster and prints the agreed reply.
@main
struct BFTClientCommand: AsyncParsableCommand {
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

    func run() async throws {
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = .warning
            return h
        }
        let client: Client
        do {
            let cluster = try ClusterConfiguration.load(path: config)
            let privateKey = try ClusterConfiguration.loadPrivateKey(path: key)
            client = try Client(configuration: cluster, key: privateKey, logger: Logger(label: "bft-client"))
        } catch {
            fail("\(error)")
        }
        defer { client.shutdown() }
        var lines = commands
        if lines.isEmpty {
            while let line = readLine() { if !line.isEmpty { lines.append(line) } }
        }
        let seconds = Int64(timeout * 1000)
        for line in lines {
            do {
                let reply = try await client.submit(Array(line.utf8), timeout: .milliseconds(seconds))
                print(String(decoding: reply.result, as: UTF8.self))
            } catch {
                client.shutdown()
                switch error {
                case .timedOut: fail("no f+1 matching replies within \(timeout) s for '\(line)'", code: 1)
                default: fail("\(error) for '\(line)'", code: 1)
                }
            }
        }
    }
}
