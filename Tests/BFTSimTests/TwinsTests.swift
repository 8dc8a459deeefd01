import BFTCore
import BFTByzantine
import BFTSim
import Foundation
import Testing

/// Twins (Bano et al., OPODIS 2021): a replica run as two honest instances with one key in
/// different partitions equivocates in every phase; the correct replicas must stay safe and,
/// after the heal, live.
@Suite("Twins")
struct TwinsTests {
    /// 100 seeds with a twinned replica, run on two threads.
    @Test("100 Twins seeds keep every property for the correct replicas")
    func twinsSeeds() {
        let scenarios = (30_000..<30_100).map { Scenario.random(seed: UInt64($0), forceTwins: true) }
        #expect(scenarios.allSatisfy { $0.twins != nil })
        let results = SeedRunner.runParallel(scenarios, jobs: 2)
        let failed = results.filter { !$0.passed }
        #expect(failed.isEmpty, "\(failed.map { "seed \($0.seed) (\($0.scenario)): \($0.failures.prefix(3))" }.joined(separator: "\n"))")
        // The twins did equivocate: correct replicas caught conflicting signed messages in many seeds.
        let caught = results.filter { $0.equivocationsObserved > 0 }.count
        #expect(caught >= 20, "only \(caught) of 100 seeds saw an equivocation")
    }

    @Test("a twinned first primary split from its twin equivocates, the correct replicas notice and stay safe")
    func twinnedPrimaryEquivocates() {
        // Seed 1 with --twins: replica 0 (the first primary) is twinned; one window splits {0, 1} from {twin, 2, 3}.
        let s = Scenario.random(seed: 1, forceTwins: true)
        #expect(s.twins?.replica == 0)
        let r = Simulation(scenario: s).run()
        #expect(r.passed, "\(r.failures)")
        #expect(r.delivered == s.clients * s.requestsPerClient)
        #expect(r.equivocationsObserved > 0)
    }

    @Test("a twin in a partition for the whole fault phase cannot stop the correct replicas")
    func twinWholeFaultPhase() {
        var s = SimulatorTests.scenario(nil, seed: 4242)
        s.twins = TwinsPlan(replica: 0, windows: [TwinsWindow(start: 0, end: s.faultTicks, groups: [[0, 1], [4, 2, 3]])])
        let r = Simulation(scenario: s).run()
        #expect(r.passed, "\(r.failures)")
        #expect(r.delivered == 24)
    }

    @Test("a scenario survives the JSON round trip and replays the same trace")
    func scenarioFileRoundTrip() throws {
        let s = Scenario.random(seed: 31_337, forceTwins: true)
        let data = try s.jsonData(note: "round trip")
        let back = try Scenario(json: data)
        #expect(back.description == s.description)
        #expect(back.twins == s.twins)
        #expect(try back.jsonData(note: "round trip") == data)
        let a = Simulation(scenario: s).run()
        let b = Simulation(scenario: back).run()
        #expect(a.traceHash == b.traceHash && a.ticks == b.ticks)
    }

    @Test("a scenario file with more than f faulty replicas or an unknown mode is refused")
    func scenarioFileValidation() throws {
        var s = Scenario.random(seed: 5, forceTwins: true)
        s.n = 4
        s.byzantine = [(s.twins!.replica == 1 ? 2 : 1, .silent)]
        #expect(throws: Scenario.FileError.self) { try Scenario(json: s.jsonData()) }
        let text = String(decoding: try Scenario.random(seed: 6).jsonData(), as: UTF8.self)
        var bad = Scenario.random(seed: 6)
        bad.byzantine = [(1, .silent)]
        let json = String(decoding: try bad.jsonData(), as: UTF8.self).replacingOccurrences(of: "\"silent\"", with: "\"sleepy\"")
        #expect(throws: Scenario.FileError.self) { try Scenario(json: Data(json.utf8)) }
        #expect(!text.isEmpty)
    }

    /// Kept scenarios (Twins schedules and failures found by seed runs) replay as regressions.
    @Test("every kept scenario file passes")
    func keptScenarios() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Scenarios")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".json") }.sorted()
        #expect(!files.isEmpty)
        for name in files {
            let s = try Scenario(json: Data(contentsOf: dir.appendingPathComponent(name)))
            let r = Simulation(scenario: s).run()
            #expect(r.passed, "\(name): \(r.failures.prefix(3))")
        }
    }
}
