import BFTCore
import BFTByzantine
@testable import BFTSim
import Testing

/// The simulator over many seeds: every seed runs a fault phase with up to f Byzantine replicas,
/// heals, and checks agreement, total order, integrity, per-client order, validity and equal
/// checkpoint digests. A failure names its seed and the command that replays it.
@Suite("Simulator")
struct SimulatorTests {
    /// 520 seeds in 13 chunks so Swift Testing spreads them over the cores.
    @Test("random seeds with faults and Byzantine replicas keep every PBFT property", arguments: 0..<13)
    func seeds(chunk: Int) {
        var messages: [String] = []
        let (passed, failed) = SeedRunner.run(start: 10_000 + UInt64(chunk) * 40, count: 40) { messages.append($0) }
        #expect(failed.isEmpty, "\(messages.joined(separator: "\n"))")
        #expect(passed == 40)
    }

    @Test("the same seed replays the same trace")
    func determinism() {
        for seed in [UInt64(3), 77, 1234] {
            let a = Simulation(scenario: .random(seed: seed)).run()
            let b = Simulation(scenario: .random(seed: seed)).run()
            #expect(a.traceHash == b.traceHash)
            #expect(a.ticks == b.ticks && a.messages == b.messages && a.delivered == b.delivered)
        }
        let x = Simulation(scenario: .random(seed: 5)).run()
        let y = Simulation(scenario: .random(seed: 6)).run()
        #expect(x.traceHash != y.traceHash)
    }

    static func scenario(_ mode: ByzantineMode?, seed: UInt64 = 99, ed25519: Bool = false) -> Scenario {
        var s = Scenario.random(seed: seed, useEd25519: ed25519)
        s.n = 4
        s.clients = 2
        s.requestsPerClient = 12
        s.clientWindow = 2
        s.dropRate = 0
        s.duplicateRate = 0
        s.partitions = []
        s.crashes = []
        s.byzantine = mode.map { [(0, $0)] } ?? []
        return s
    }

    @Test("§4.4 a silent primary provokes a view change and progress resumes under the new primary")
    func silentPrimaryViewChange() {
        let r = Simulation(scenario: Self.scenario(.silent)).run()
        #expect(r.passed, "\(r.failures)")
        #expect(r.viewChanges >= 3)  // at least the three correct replicas
        #expect(r.delivered == 24)
    }

    @Test("§4.4 an equivocating primary provokes a view change and progress resumes")
    func equivocatingPrimaryViewChange() {
        let r = Simulation(scenario: Self.scenario(.equivocate)).run()
        #expect(r.passed, "\(r.failures)")
        #expect(r.viewChanges >= 3)
        #expect(r.delivered == 24)
    }

    @Test("every Byzantine mode as primary keeps the properties", arguments: ByzantineMode.allCases)
    func everyModeAsPrimary(_ mode: ByzantineMode) {
        let r = Simulation(scenario: Self.scenario(mode, seed: 4242)).run()
        #expect(r.passed, "\(mode): \(r.failures)")
        #expect(r.delivered == 24)
    }

    @Test("a replica that can send but not receive: it hears nothing, its messages still go out, and every property holds", arguments: [0, 1])
    func deafReplica(_ deafReplica: Int) {
        // Replica 0 is the first primary: deaf, it hears no request and proposes nothing, so the
        // others change view without it while its STATUS and timers still speak; 1 is a backup.
        let sim = Simulation(scenario: {
            var s = Self.scenario(nil, seed: 777)
            s.deaf = [(deafReplica, 20, s.faultTicks)]
            return s
        }())
        let r = sim.run()
        #expect(r.passed, "\(r.failures)")
        #expect(r.delivered == 24)
        #expect(sim.deafDrops > 0, "the network kept messages from the deaf replica")
        #expect(sim.deafSends > 0, "the deaf replica still sent messages")
    }

    @Test("deaf replicas are drawn in some seeds (never with a coalition) and survive the scenario file round trip")
    func deafIsDrawn() throws {
        let drawn = (UInt64(1)...UInt64(200)).map { Scenario.random(seed: $0) }.filter { !$0.deaf.isEmpty }
        #expect(!drawn.isEmpty)
        #expect(drawn.allSatisfy { s in !s.byzantine.contains { $0.mode == .coalition } })
        let back = try Scenario(json: drawn[0].jsonData())
        #expect(back.deaf.map(\.replica) == drawn[0].deaf.map(\.replica))
        #expect(back.deaf.map(\.start) == drawn[0].deaf.map(\.start) && back.deaf.map(\.end) == drawn[0].deaf.map(\.end))
    }

    @Test("real Ed25519 signatures work in the simulator")
    func ed25519Seeds() {
        for seed in [UInt64(11), 12] {
            let r = Simulation(scenario: .random(seed: seed, useEd25519: true)).run()
            #expect(r.passed, "seed \(seed): \(r.failures)")
        }
        let r = Simulation(scenario: Self.scenario(.badSignatures, ed25519: true)).run()
        #expect(r.passed, "\(r.failures)")
    }
}

extension ByzantineMode: CustomTestStringConvertible {
    public var testDescription: String { rawValue }
}

/// The reply-route attack (a Byzantine replica relays clients' requests so correct replicas send
/// the replies to it) and the authenticated sessions that stop it.
@Suite("Sessions in the simulator")
struct SessionSimulationTests {
    static func relayScenario(sessions: Bool) -> Scenario {
        var s = SimulatorTests.scenario(.replay, seed: 31)
        s.byzantine = [(1, .replay)]
        s.requestsPerClient = 30
        s.sessions = sessions
        return s
    }

    @Test("without sessions a relaying replica moves clients' reply routes; with sessions it cannot, and every request completes either way")
    func relayedRequestsNeverMoveReplyRoutes() {
        let without = Simulation(scenario: Self.relayScenario(sessions: false)).run()
        #expect(without.passed, "\(without.failures)")
        #expect(without.misroutedReplies > 0, "the relaying replica should have captured some routes")
        let with = Simulation(scenario: Self.relayScenario(sessions: true)).run()
        #expect(with.passed, "\(with.failures)")
        #expect(with.misroutedReplies == 0)
        #expect(with.adversaries.first?.counters.replayed ?? 0 > 0, "the adversary must have relayed something")
    }
}
