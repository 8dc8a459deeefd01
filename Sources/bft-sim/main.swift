import ArgumentParser
import BFTSim
import BFTConfig

/// `bft-sim`: the deterministic PBFT simulator. One seed decides the cluster, the workload, the
/// network faults, crashes and Byzantine replicas; the same seed replays the same trace.
struct BFTSimCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bft-sim",
        abstract: "Run the deterministic PBFT simulator over a range of seeds.",
        discussion: """
        Each seed runs a fault phase (message loss, duplication, reordering, delay, partitions, \
        crashes, up to f Byzantine replicas), then heals the network and checks liveness. \
        Checkers: agreement and total order, integrity, per-client order, validity, equal \
        checkpoint digests. Ends with the line 'N passed, M failed'.
        """)

    @Option(help: "Number of seeds to run.")
    var seeds: Int = 100

    @Option(help: "First seed.")
    var start: UInt64 = 1

    @Flag(help: "Use real Ed25519 signatures (OpenSSL) instead of the fast stand-in.")
    var ed25519 = false

    @Flag(help: "Print each seed's scenario, trace hash and statistics.")
    var verbose = false

    func run() throws {
        var passed = 0, failed = 0
        for i in 0..<seeds {
            let seed = start + UInt64(i)
            let scenario = Scenario.random(seed: seed, useEd25519: ed25519)
            let r = Simulation(scenario: scenario).run()
            if verbose || !r.passed {
                print("seed \(seed): \(r.passed ? "ok" : "FAILED") trace=\(String(r.traceHash, radix: 16)) ticks=\(r.ticks) delivered=\(r.delivered) viewChanges=\(r.viewChanges) stateTransfers=\(r.stateTransfers) laterChunks=\(r.laterStateChunks) batchBodies=\(r.batchBodies) messages=\(r.messages) drops=\(r.drops)")
                print("  \(r.scenario)")
            }
            if r.passed {
                passed += 1
            } else {
                failed += 1
                for f in r.failures.prefix(5) { print("  \(f)") }
                print("  replay: \(SeedRunner.replayCommand(seed: seed, ed25519: ed25519))")
            }
        }
        print("\(passed) passed, \(failed) failed")
        if failed > 0 { throw ExitCode(1) }
    }
}

BFTSimCommand.main()
