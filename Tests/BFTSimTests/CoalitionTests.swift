@testable import BFTCore
import BFTByzantine
@testable import BFTSim
import Testing

/// The coalition adversary (f Byzantine replicas acting as one) against the unmodified protocol:
/// every weapon it has is used across a handful of seeds, and the correct replicas stay safe and
/// live. `scripts/mutation_score.py --sim-args=--coalition` shows the same adversary turning
/// weakened checks into safety violations (ARCHITECTURE.md, planted-bug score).
@Suite("Coalition adversary")
struct CoalitionTests {
    static let seeds = (UInt64(1)...UInt64(60)).map { Scenario.random(seed: $0, forceCoalition: true) }

    @Test("f replicas acting as one double-vote, equivocate, put damaging certificates in view changes, send short and selective NEW-VIEWs, vote beyond the watermarks and forge CATCH-UPs and states, and every seed still passes")
    func coalitionActsAndTheProtocolHolds() {
        let results = SeedRunner.runParallel(Self.seeds, jobs: 2)
        let failed = results.filter { !$0.passed }
        #expect(failed.isEmpty, "\(failed.map { "\($0.seed): \($0.failures)" })")
        var total = ByzantineCounters()
        for r in results {
            for a in r.adversaries {
                #expect(a.mode == .coalition)
                total.doubleVotes += a.counters.doubleVotes
                total.forgedCertificates += a.counters.forgedCertificates
                total.forged += a.counters.forged
                total.equivocations += a.counters.equivocations
                total.withheld += a.counters.withheld
                total.selectiveNewViews += a.counters.selectiveNewViews
                total.beyondWatermarks += a.counters.beyondWatermarks
            }
        }
        #expect(total.selectiveNewViews > 0, "valid NEW-VIEWs that leave a replica's view change out")
        #expect(total.beyondWatermarks > 0, "votes beyond the high watermark")
        #expect(total.withheld > 0, "prepares and commits sent to one correct replica only")
        #expect(total.doubleVotes > 0)
        #expect(total.forgedCertificates > 0)
        #expect(total.forged > 0)
        #expect(total.equivocations > 0)
        #expect(results.filter { $0.idleAdversaries.isEmpty }.count * 2 > results.count, "most coalition seeds must see it act")
    }

    @Test("a coalition has f members and a partition that cuts f correct replicas off, on n = 4 and n = 7")
    func coalitionScenarioShape() {
        for s in Self.seeds {
            let f = (s.n - 1) / 3
            #expect(s.byzantine.count == f && s.byzantine.allSatisfy { $0.mode == .coalition })
            #expect(s.twins == nil)
            let members = Set(s.byzantine.map(\.replica))
            #expect(s.partitions.contains { $0.isolated.count == f && members.isDisjoint(with: $0.isolated) })
        }
        #expect(Self.seeds.contains { $0.n == 7 })
    }

    @Test("without --coalition, some seeds that drew Byzantine replicas get a coalition, and the regression seeds keep the modes they failed with")
    func coalitionIsDrawnByDefault() {
        let drawn = (UInt64(1)...UInt64(200)).map { Scenario.random(seed: $0) }
        #expect(drawn.contains { $0.byzantine.contains { $0.mode == .coalition } })
        #expect(drawn.contains { $0.byzantine.contains { $0.mode != .coalition } })
        #expect(Scenario.random(seed: 7_000_095).byzantine.map(\.mode) == [.badSignatures])
        #expect(Scenario.random(seed: 5_000_224).byzantine.map(\.mode) == [.forgedReplies, .outOfWindow])
        #expect(Scenario.random(seed: 5_000_784).byzantine.map(\.mode) == [.divergentReplies])
    }

    @Test("a correct replica's broken invariant is reported as the seed's failure, with the replica named, instead of trapping")
    func invariantViolationIsReportedPerSeed() {
        var s = Scenario.random(seed: 11)
        s.byzantine = []
        s.twins = nil
        let sim = Simulation(scenario: s)
        // A committed flag without its certificate, planted in replica 2's log of slots.
        var replica = sim.drivers[2].replica
        var slot = Slot()
        slot.committed = true
        replica.log.slots[replica.stableSeq + 1] = slot
        sim.drivers[2].replica = replica
        let r = sim.run()
        #expect(!r.passed)
        #expect(r.failures.contains { $0.hasPrefix("invariant violated at replica 2") && $0.contains("committed flag") }, "\(r.failures)")
    }
}

/// Byzantine clients in the simulator (`Scenario.byzantineClient`, drawn in one seed in five
/// with more than one client): conflicting requests under one timestamp, garbage signatures,
/// floods. One request per timestamp executes, the same on every correct replica.
@Suite("Byzantine clients")
struct ByzantineClientTests {
    @Test("a client that signs two operations under one timestamp, sends garbage signatures and floods: every correct replica executes the same one, once, and every seed passes")
    func conflictingRequestsUnderOneTimestamp() {
        let scenarios = (UInt64(1)...UInt64(400)).map { Scenario.random(seed: $0) }.filter { $0.byzantineClient != nil }.prefix(24)
        #expect(scenarios.count == 24)
        var otherExecuted = 0, originalExecuted = 0
        for s in scenarios {
            let sim = Simulation(scenario: s)
            let r = sim.run()
            #expect(r.passed, "seed \(s.seed): \(r.failures)")
            #expect(sim.byzantineClientActs > 0, "seed \(s.seed): the Byzantine client never sent anything")
            let c = ClientID(s.byzantineClient!)
            for d in sim.deliveries[sim.correct[0]] where d.client == c {
                let op = sim.operations[d.digest] ?? []
                if op.suffix(6) == Array("#other".utf8) { otherExecuted += 1 } else { originalExecuted += 1 }
            }
        }
        // Both variants win somewhere: the checkers saw the conflict resolved both ways.
        #expect(otherExecuted > 0 && originalExecuted > 0, "other \(otherExecuted), original \(originalExecuted)")
    }
}
