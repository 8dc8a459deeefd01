import BFTCore
import BFTByzantine
import BFTSim
import Testing

/// The checkers must catch a weakened system: each test turns one part off (a careless client,
/// a diverging application, an idle adversary, a tight bound) and expects the report.
@Suite("Simulator checkers")
struct CheckerTests {
    static func scenario(_ mode: ByzantineMode?, seed: UInt64 = 4242) -> Scenario {
        SimulatorTests.scenario(mode, seed: seed)
    }

    @Test("a client that accepts the first reply is fooled by a forged signed reply, and the checker says so")
    func carelessClientForgedReply() {
        var s = Self.scenario(.forgedReplies)
        s.carelessClients = true
        let r = Simulation(scenario: s).run()
        #expect(!r.passed)
        #expect(r.failures.contains { $0.contains("accepted a forged or divergent result") }, "\(r.failures)")
    }

    @Test("a careless client against divergent replies is caught too")
    func carelessClientDivergentReplies() {
        var s = Self.scenario(.divergentReplies)
        s.carelessClients = true
        let r = Simulation(scenario: s).run()
        #expect(r.failures.contains { $0.contains("accepted a forged or divergent result") }, "\(r.failures)")
    }

    @Test("f+1 matching replies keep an honest client safe against forged and divergent replies",
          arguments: [ByzantineMode.forgedReplies, .divergentReplies])
    func honestClientSafe(_ mode: ByzantineMode) {
        for seed in [UInt64(4242), 7, 99] {
            let r = Simulation(scenario: Self.scenario(mode, seed: seed)).run()
            #expect(r.passed, "seed \(seed) \(mode): \(r.failures)")
            #expect(r.delivered == 24)
            let forged = r.adversaries.first?.counters.forgedReplies ?? 0
            #expect(forged > 0)
        }
    }

    @Test("a careless client with only correct replicas passes: the checker has no false alarm")
    func carelessClientAlone() {
        var s = Self.scenario(nil)
        s.carelessClients = true
        let r = Simulation(scenario: s).run()
        #expect(r.passed, "\(r.failures)")
    }

    @Test("a replica whose application returns a different result is reported")
    func divergentApplicationResult() {
        var s = Self.scenario(nil)
        s.divergentApplication = 2
        let r = Simulation(scenario: s).run()
        #expect(!r.passed)
        #expect(r.failures.contains { $0.contains("replica 2 delivered index 3 with a result the sequential model does not produce") }, "\(r.failures)")
    }

    @Test("a replica whose state diverges reports checkpointMismatch, and the checker fails the run")
    func divergentStateCheckpointMismatch() {
        var s = Self.scenario(nil)
        s.divergentApplication = 3
        s.divergentAtIndex = 1
        s.divergentState = true
        let r = Simulation(scenario: s).run()
        #expect(r.failures.contains { $0.contains("replica 3: its own checkpoint state") && $0.contains("checkpointMismatch") }, "\(r.failures)")
        #expect(!r.failures.contains { $0.contains("sequential model") })
    }

    @Test("every Byzantine mode proves it acted in a run where it is the first primary", arguments: ByzantineMode.allCases)
    func everyModeActs(_ mode: ByzantineMode) {
        let r = Simulation(scenario: Self.scenario(mode)).run()
        #expect(r.adversaries.count == 1)
        #expect(r.adversaries.first?.mode == mode)
        #expect((r.adversaries.first?.acted ?? 0) > 0, "\(mode): \(r.adversaries)")
        #expect(r.idleAdversaries.isEmpty)
    }

    @Test("an adversary that does nothing is caught by the counters", arguments: ByzantineMode.allCases)
    func idleAdversaryCaught(_ mode: ByzantineMode) {
        var s = Self.scenario(mode)
        s.passiveAdversaries = true
        let r = Simulation(scenario: s).run()
        #expect(r.passed, "\(r.failures)")
        #expect(r.idleAdversaries == [0])
        #expect(r.adversaries.first?.counters.total == 0)
    }

    @Test("state stays bounded: peaks within the window, and a tight bound is reported")
    func boundedState() {
        let r = Simulation(scenario: Self.scenario(.equivocate)).run()
        #expect(r.passed, "\(r.failures)")
        #expect(r.peakSlots > 0 && r.peakSlots <= 32 + 8)
        #expect(r.peakBatches > 0)
        var s = Self.scenario(nil)
        s.stateBoundOverride = 2
        let tight = Simulation(scenario: s).run()
        #expect(tight.failures.contains { $0.contains("bounded state") }, "\(tight.failures)")
    }

    @Test("random seeds prove their adversaries acted often: most Byzantine seeds have no idle adversary")
    func randomSeedsActed() {
        let results = SeedRunner.runParallel((20_000..<20_040).map { Scenario.random(seed: $0) }, jobs: 2)
        let withAdversary = results.filter { !$0.adversaries.isEmpty }
        #expect(withAdversary.count >= 10)
        let acted = withAdversary.filter { $0.idleAdversaries.isEmpty }
        #expect(acted.count * 2 > withAdversary.count, "\(withAdversary.map { "\($0.seed): \($0.adversaries)" })")
        let failed = results.filter { !$0.passed }
        #expect(failed.isEmpty, "\(results.filter { !$0.passed }.map { "\($0.seed): \($0.failures)" })")
    }
}
