import ArgumentParser
import BFTSim
import Foundation

/// `bft-sim`: the deterministic PBFT simulator. One seed decides the cluster, the workload, the
/// network faults, crashes and Byzantine replicas; the same seed replays the same trace.
struct BFTSimCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bft-sim",
        abstract: "Run the deterministic PBFT simulator over a range of seeds.",
        discussion: """
        Each seed runs a fault phase (message loss, duplication, reordering, delay, partitions, \
        crashes, up to f Byzantine replicas or a Twins pair), then heals the network and checks \
        liveness. Checkers: agreement and total order, integrity, per-client order, validity, \
        equal checkpoint digests, client results against a sequential model, bounded replica \
        state. Ends with the line 'N passed, M failed'.
        """)

    @Option(help: "Number of seeds to run.")
    var seeds: Int = 100

    @Option(help: "First seed.")
    var start: UInt64 = 1

    @Flag(help: "Use real Ed25519 signatures (OpenSSL) instead of the fast stand-in.")
    var ed25519 = false

    @Flag(help: "Print each seed's scenario, trace hash and statistics.")
    var verbose = false

    @Flag(help: "Twin a replica in every seed (Twins: two honest instances with one key in different partitions).")
    var twins = false

    @Flag(help: "Make f replicas a coalition in every seed (one adversary: double votes, damaging view changes, short NEW-VIEWs and CATCH-UPs, wrong states) with a network that cuts f correct replicas off.")
    var coalition = false

    @Flag(help: "Skip the replicas' invariant checks (to see what the safety checkers alone catch).")
    var noInvariantChecks = false

    @Option(help: "Run the scenario in this JSON file (written by --write-scenario) instead of random seeds.")
    var scenario: String?

    @Option(help: "Write the scenario of seed --start (with --twins if given) as JSON to this file and exit.")
    var writeScenario: String?

    @Option(help: "Seeds run in parallel (default: the number of cores). Output stays in seed order.")
    var jobs: Int = ProcessInfo.processInfo.activeProcessorCount

    /// The flags that shape scenarios, for the replay lines.
    var flags: String { (twins ? " --twins" : "") + (coalition ? " --coalition" : "") + (noInvariantChecks ? " --no-invariant-checks" : "") }

    func run() throws {
        var passed = 0, failed = 0, idle = 0
        let began = Date()
        if let path = writeScenario {
            let s = Scenario.random(seed: start, useEd25519: ed25519, forceTwins: twins, forceCoalition: coalition)
            try s.jsonData(note: "seed \(start)\(flags)").write(to: URL(fileURLWithPath: path))
            print("wrote \(path): \(s)")
            return
        }
        var scenarios = (0..<seeds).map { Scenario.random(seed: start + UInt64($0), useEd25519: ed25519, forceTwins: twins, forceCoalition: coalition) }
        if let path = scenario {
            scenarios = [try Scenario(json: Data(contentsOf: URL(fileURLWithPath: path)))]
        }
        if noInvariantChecks { for i in scenarios.indices { scenarios[i].skipInvariantChecks = true } }
        let results = SeedRunner.runParallel(scenarios, jobs: jobs)
        for r in results {
            let seed = r.seed
            if !r.idleAdversaries.isEmpty { idle += 1 }
            if verbose || !r.passed {
                print("seed \(seed): \(r.passed ? "ok" : "FAILED") trace=\(String(r.traceHash, radix: 16)) ticks=\(r.ticks) delivered=\(r.delivered) viewChanges=\(r.viewChanges) stateTransfers=\(r.stateTransfers) laterChunks=\(r.laterStateChunks) batchBodies=\(r.batchBodies) messages=\(r.messages) drops=\(r.drops) peakSlots=\(r.peakSlots) peakBatches=\(r.peakBatches) peakPending=\(r.peakPending) equivocationsObserved=\(r.equivocationsObserved)")
                print("  \(r.scenario)")
                for a in r.adversaries { print("  adversary \(a)\(a.acted == 0 ? " (idle: its mode never acted)" : "")") }
            }
            if r.passed {
                passed += 1
            } else {
                failed += 1
                for f in r.failures.prefix(5) { print("  \(f)") }
                if let path = scenario {
                    print("  replay: bft-sim --scenario \(path) --verbose")
                } else {
                    print("  replay: \(SeedRunner.replayCommand(seed: seed, ed25519: ed25519))\(flags)")
                    print("  keep it: bft-sim --start \(seed)\(flags) --write-scenario FILE.json")
                }
            }
        }
        let seconds = Date().timeIntervalSince(began)
        print("seeds with an idle adversary: \(idle)")
        print("\(scenarios.count) seeds in \(String(format: "%.1f", seconds)) s (\(String(format: "%.1f", Double(scenarios.count) / max(seconds, 1e-9))) seeds/s, \(jobs) jobs)")
        print("\(passed) passed, \(failed) failed")
        if failed > 0 { throw ExitCode(1) }
    }
}

BFTSimCommand.main()
