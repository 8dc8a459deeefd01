import ArgumentParser
import Foundation
import BFTConfig

/// `bft-keygen`: writes a cluster configuration and the private keys of its replicas and
/// clients. All logic lives in `KeyGenerator` (BFTConfig) so it is unit-tested; this file only
/// maps flags to options and errors to a one-line message with exit code 2.
struct BFTKeygen: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bft-keygen",
        abstract: "Generate a PBFT cluster configuration (cluster.json) and Ed25519 keys.",
        discussion: """
        Writes OUT/cluster.json, OUT/replica-<i>.pem for each replica and OUT/client-<j>.pem for \
        each client (unencrypted PKCS#8 PEM, mode 0600). Replica i listens on HOST:BASE_PORT+i \
        (or hosts[i], and BASE_PORT for all with --same-port). Existing files are never \
        overwritten without --force.

        Examples:
          bft-keygen --replicas 4 --out keys
          bft-keygen --replicas 4 --out keys/docker --reuse-keys keys \\
              --hosts replica0,replica1,replica2,replica3 --same-port
        """)

    @Option(help: ArgumentHelp("Number of replicas n; must be 3f+1 with f >= 1 (4, 7, 10, ...).", valueName: "n"))
    var replicas: Int

    @Option(help: ArgumentHelp("Number of client identities (ids 0..<m).", valueName: "m"))
    var clients: Int = 4

    @Option(help: ArgumentHelp("Output directory (created if missing).", valueName: "dir"))
    var out: String

    @Option(help: ArgumentHelp("Host every replica listens on (default 127.0.0.1). Not with --hosts.", valueName: "host"))
    var host: String?

    @Option(help: ArgumentHelp("Comma-separated host per replica, in id order (e.g. replica0,replica1,replica2,replica3). Not with --host.", valueName: "h0,h1,..."))
    var hosts: String?

    @Option(help: ArgumentHelp("Port of replica 0; replica i uses base-port+i unless --same-port is given.", valueName: "port"))
    var basePort: Int = 7000

    @Flag(help: "Every replica uses --base-port (for distinct hosts, e.g. containers on one network).")
    var samePort = false

    @Option(help: ArgumentHelp("Cluster id, mixed into every signature so messages cannot cross clusters.", valueName: "id"))
    var clusterId: UInt32 = 1

    @Option(help: ArgumentHelp("Reuse replica-<i>.pem and client-<j>.pem from this directory instead of generating keys; only cluster.json is written.", valueName: "dir"))
    var reuseKeys: String?

    @Flag(help: "Overwrite existing files.")
    var force = false

    func validate() throws {
        if host != nil && hosts != nil { throw ValidationError("give either --host or --hosts, not both") }
    }

    func run() throws {
        var options = KeyGenerator.Options(replicas: replicas, outputDirectory: out)
        options.clients = clients
        if let hosts {
            options.hosts = hosts.split(separator: ",", omittingEmptySubsequences: false)
                .map { $0.trimmingCharacters(in: .whitespaces) }
        } else if let host {
            options.hosts = [host]
        }
        options.basePort = basePort
        options.samePort = samePort
        options.clusterID = clusterId
        options.force = force
        options.reuseKeysFrom = reuseKeys
        do {
            let written = try KeyGenerator.generate(options)
            for path in written { print(path) }
        } catch {
            FileHandle.standardError.write(Data("bft-keygen: \(error)\n".utf8))
            throw ExitCode(2)
        }
    }
}

BFTKeygen.main()
