import Foundation

/// Runs many seeds and reports in the form CI and humans both read.
public enum SeedRunner {
    /// The command that replays one seed exactly.
    public static func replayCommand(seed: UInt64, ed25519: Bool) -> String {
        "swift run -c release bft-sim --seeds 1 --start \(seed)\(ed25519 ? " --ed25519" : "") --verbose"
    }

    /// Seeds `start ..< start+count`. Every `ed25519Every`-th seed (0 = none) uses real Ed25519.
    public static func run(start: UInt64, count: Int, ed25519Every: Int = 0, ed25519All: Bool = false,
                           log: (String) -> Void) -> (passed: Int, failed: [SimulationResult]) {
        var passed = 0
        var failed: [SimulationResult] = []
        for i in 0..<count {
            let seed = start + UInt64(i)
            let ed = ed25519All || (ed25519Every > 0 && i % ed25519Every == 0)
            let result = Simulation(scenario: .random(seed: seed, useEd25519: ed)).run()
            if result.passed {
                passed += 1
            } else {
                failed.append(result)
                log("FAIL seed \(seed): \(result.scenario)")
                for f in result.failures.prefix(5) { log("  \(f)") }
                log("  replay: \(replayCommand(seed: seed, ed25519: ed))")
            }
        }
        return (passed, failed)
    }
}

extension SeedRunner {
    /// Runs `scenarios` on `jobs` threads and returns the results in input order, so the output
    /// does not depend on which thread finished first. Each `Simulation` is independent.
    public static func runParallel(_ scenarios: [Scenario], jobs: Int) -> [SimulationResult] {
        let box = ResultBox(count: scenarios.count)
        let workers = max(1, min(jobs, scenarios.count))
        DispatchQueue.concurrentPerform(iterations: workers) { _ in
            while let i = box.claim() {
                box.store(Simulation(scenario: scenarios[i]).run(), at: i)
            }
        }
        return box.results.map { $0! }
    }
}

/// Work queue and result slots shared by the worker threads (guarded by one lock).
private final class ResultBox: @unchecked Sendable {
    private let lock = NSLock()
    private var next = 0
    private(set) var results: [SimulationResult?]

    init(count: Int) { results = Array(repeating: nil, count: count) }

    func claim() -> Int? {
        lock.lock(); defer { lock.unlock() }
        guard next < results.count else { return nil }
        next += 1
        return next - 1
    }

    func store(_ r: SimulationResult, at i: Int) {
        lock.lock(); defer { lock.unlock() }
        results[i] = r
    }
}
