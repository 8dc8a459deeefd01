import ArgumentParser
import BFTClusterHarness
import BFTConfig
import Foundation

/// `bft-cluster check-logs`: the deliver-log comparison of the e2e tests and the Podman run.
struct CheckLogs: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-logs",
        abstract: "Check that replicas' deliver logs agree (total order, no duplicates, gaps only after a state transfer).",
        discussion: """
        Each LOG is a replica's data directory (its deliver.log is read, and its node.log tells \
        whether it caught up by state transfer) or a deliver-log file (node.log beside it). \
        Checked: indices increase in every log; no (client, timestamp) twice in a log; a gap in \
        the indices only in the log of a replica that caught up by state transfer (or with \
        --allow-gaps); on every index two logs both have, the entries are identical apart from \
        view; every index between the running replicas' highest first and lowest last index is \
        in one of their logs. Prints one line: the verdict, or the first violation (exit 1). \
        Exit 2 when a log cannot be read or parsed.
        """)

    @Argument(help: "Data directories or deliver-log files of the running replicas.")
    var logs: [String] = []

    @Option(name: .customLong("logs"), parsing: .upToNextOption, help: "Deliver-log files (the same as giving them as arguments).")
    var logFiles: [String] = []

    @Option(help: "A replica stopped during the run (repeatable): checked on its own and for agreement only.")
    var stopped: [String] = []

    @Flag(name: .customLong("equal-length"), help: "Every running replica's log has as many entries.")
    var equalLength = false

    @Flag(name: .customLong("allow-gaps"), help: "Accept gaps in every log, not only after a state transfer.")
    var allowGaps = false

    @Flag(name: .customLong("non-empty"), help: "Every running replica delivered something.")
    var nonEmpty = false

    @Option(name: .customLong("after-index"), help: "With --view-above: entries above this index (delivered after a stop)...")
    var afterIndex: UInt64?

    @Option(name: .customLong("view-above"), help: "...are all in a view above this one, and there is at least one.")
    var viewAbove: UInt64?

    func validate() throws {
        if logs.isEmpty && logFiles.isEmpty { throw ValidationError("give at least one deliver log") }
        if (afterIndex == nil) != (viewAbove == nil) { throw ValidationError("--after-index and --view-above go together") }
    }

    func run() throws {
        var loaded: [DeliverLogCheck.Log] = []
        do {
            for path in logs + logFiles { loaded.append(try DeliverLogCheck.load(path)) }
            for path in stopped { loaded.append(try DeliverLogCheck.load(path, stopped: true)) }
        } catch { fail("\(error)") }
        var options = DeliverLogCheck.Options(equalLength: equalLength, allowGaps: allowGaps, nonEmpty: nonEmpty)
        if let afterIndex, let viewAbove { options.after = (afterIndex, viewAbove) }
        do {
            print(try DeliverLogCheck.check(loaded, options: options))
        } catch {
            print("VIOLATION \(error)")
            Foundation.exit(1)
        }
    }
}

/// `bft-cluster status`: what replicas' `status.json` files say.
struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the status.json of replicas' data directories.",
        discussion: "With --majority, one line 'VIEW PRIMARY COUNT': the view and primary most replicas report.")

    @Argument(help: "Data directories (each with a status.json).")
    var directories: [String]

    @Flag(help: "Print only the view and primary most replicas report, and how many do.")
    var majority = false

    func run() throws {
        let statuses = directories.map { ReplicaStatus.read(dataDirectory: $0) }
        if majority {
            guard let m = ReplicaStatus.majority(statuses.compactMap { $0 }) else { fail("no readable status.json", code: 1) }
            print("\(m.view) \(m.primary) \(m.count)")
            return
        }
        for (dir, s) in zip(directories, statuses) {
            print("\(dir):" + (s.map(Up.describe) ?? " no readable status.json"))
        }
    }
}
