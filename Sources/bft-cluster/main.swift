import ArgumentParser
import BFTClusterHarness
import BFTConfig
import Foundation

/// `bft-cluster`: a local cluster (`up`, the default), and the checks the multi-process tests
/// and CI run on one (`check-logs`, `status`).
struct BFTClusterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bft-cluster",
        abstract: "Run the replicas of a configuration on this machine, and check their deliver logs.",
        subcommands: [Up.self, CheckLogs.self, Status.self],
        defaultSubcommand: Up.self)
}

func fail(_ message: String, code: Int32 = 2) -> Never {
    FileHandle.standardError.write(Data("bft-cluster: \(message)\n".utf8))
    Foundation.exit(code)
}

BFTClusterCommand.main()
