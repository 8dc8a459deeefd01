import BFTClusterHarness
import BFTConfig
import BFTCore
import BFTCrypto
import Foundation
import Testing

/// Lines exactly as bft-node's DeliverLog writes them (`DeliverLogEntry.line`).
private func lines(_ indices: [UInt64], view: (UInt64) -> ViewNum = { _ in 0 },
                   digest: (UInt64) -> String = { "request \($0)" }, timestamp: (UInt64) -> UInt64 = { 16 + $0 }) -> String {
    indices.map { i in
        DeliverLogEntry(index: i, seq: i + 2, view: view(i), client: ClientID(i % 3),
                        timestamp: timestamp(i), digest: SHA256.hash(Array(digest(i).utf8))).line
    }.joined()
}

private func log(_ name: String, _ text: String, transferred: Bool = false, stopped: Bool = false) throws -> DeliverLogCheck.Log {
    DeliverLogCheck.Log(name: name, entries: try DeliverLogEntry.parse(Data(text.utf8), name: name),
                        stateTransferred: transferred, stopped: stopped)
}

private func violation(_ logs: [DeliverLogCheck.Log], _ options: DeliverLogCheck.Options = .init()) -> String? {
    do {
        _ = try DeliverLogCheck.check(logs, options: options)
        return nil
    } catch {
        return error.description
    }
}

@Suite("Deliver-log comparison")
struct DeliverLogCheckTests {
    let all = Array(UInt64(1)...20)

    @Test("agreeing logs pass, also when views differ on a re-proposed entry")
    func agree() throws {
        let a = try log("replica-0", lines(all))
        let b = try log("replica-1", lines(all, view: { $0 == 7 ? 1 : 0 }))
        let c = try log("replica-2", lines(Array(1...15)))
        let summary = try DeliverLogCheck.check([a, b, c])
        #expect(summary.hasPrefix("deliver logs agree: replica-0=20 replica-1=20 replica-2=15"))
        #expect(summary.contains("common indices 1..15"))
        #expect(summary.contains("view differs on 1 re-proposed entries"))
        #expect(violation([a, b, c], .init(equalLength: true)) == "deliver logs differ in length: replica-0=20 replica-1=20 replica-2=15")
        #expect(violation([a, b], .init(equalLength: true, nonEmpty: true)) == nil)
    }

    @Test("a different digest at one index fails, naming the index and both replicas")
    func differingDigest() throws {
        let a = try log("replica-0", lines(all))
        let b = try log("replica-3", lines(all, digest: { $0 == 9 ? "forged" : "request \($0)" }))
        let reason = try #require(violation([a, b]))
        #expect(reason.hasPrefix("index 9: replica-0 and replica-3 differ in digest"))
    }

    @Test("a request delivered twice fails")
    func duplicate() throws {
        let a = try log("replica-1", lines(all, timestamp: { $0 == 12 ? 16 + 9 : 16 + $0 }))
        #expect(violation([a]) == "replica-1: request of client 0 timestamp 25 delivered twice (indices 9 and 12)")
    }

    @Test("a gap fails without a state transfer, and passes with one")
    func gap() throws {
        let gapped = lines(all.filter { !(5...8).contains($0) })
        let full = try log("replica-0", lines(all))
        #expect(violation([full, try log("replica-2", gapped)])
                == "replica-2: indices 5..8 missing without a state transfer in its node log")
        let summary = try DeliverLogCheck.check([full, try log("replica-2", gapped, transferred: true)])
        #expect(summary.contains("replica-2 skipped 4 by state transfer"))
        #expect(violation([full, try log("replica-2", gapped)], .init(allowGaps: true)) == nil)
    }

    @Test("indices that do not increase fail")
    func order() throws {
        let a = try log("replica-0", lines([1, 2, 3, 2]))
        #expect(violation([a]) == "replica-0: index 2 follows 3 (indices must increase)")
    }

    @Test("an index no running replica has fails; a stopped replica is left out of coverage and length")
    func coverageAndStopped() throws {
        let a = try log("replica-0", lines(all.filter { $0 != 10 }), transferred: true)
        let b = try log("replica-1", lines(all.filter { $0 != 10 }), transferred: true)
        #expect(violation([a, b]) == "index 10 is in no running replica's deliver log")
        let stopped = try log("replica-3", lines(Array(1...4)), stopped: true)
        let full = try log("replica-2", lines(all))
        #expect(violation([full, stopped], .init(equalLength: true, nonEmpty: true)) == nil)
    }

    @Test("entries after a stop must be in a later view")
    func afterStop() throws {
        let later = try log("replica-1", lines(all, view: { $0 > 10 ? 1 : 0 }))
        #expect(try DeliverLogCheck.check([later], options: .init(after: (10, 0))).contains("10 entries after index 10, all in views > 0 (highest 1)"))
        let stale = try log("replica-1", lines(all, view: { $0 > 12 ? 1 : 0 }))
        #expect(violation([stale], .init(after: (10, 0))) == "2 entries after index 10 are in a view <= 0, e.g. replica-1 index 11 in view 0")
        #expect(violation([later], .init(after: (20, 0))) == "nothing was delivered after index 20")
    }

    @Test("malformed lines are reported with file and line")
    func malformed() {
        #expect(throws: DeliverLogError.malformedLine(path: "x", line: 1, reason: "missing key \"seq\"")) {
            try DeliverLogEntry.parse(Data("{\"index\":1}\n".utf8), name: "x")
        }
        do {
            _ = try DeliverLogEntry.parse(Data((lines([1]) + "garbage\n").utf8), name: "x.log")
            Issue.record("parsed garbage")
        } catch {
            #expect(error.description.hasPrefix("x.log:2: not a deliver-log entry"))
        }
    }

    @Test("check-logs loads a replica's log with the node's reader: a malformed line in the file stops it")
    func loadRefusesAMalformedFile() throws {
        let dir = NSTemporaryDirectory() + "bft-checklogs-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try (lines([1, 2]) + "{\"index\":3}\n" + lines([4])).write(toFile: dir + "/deliver.log", atomically: true, encoding: .utf8)
        #expect(throws: DeliverLogError.malformedLine(path: dir + "/deliver.log", line: 3, reason: "missing key \"seq\"")) {
            try DeliverLogCheck.load(dir)
        }
        try lines([1, 2]).write(toFile: dir + "/deliver.log", atomically: true, encoding: .utf8)
        let loaded = try DeliverLogCheck.load(dir)
        #expect(loaded.entries.map(\.index) == [1, 2] && !loaded.stateTransferred)
        #expect(throws: DeliverLogError.cannotRead(path: dir + "/none.log", reason: "no such file")) {
            try DeliverLogCheck.load(dir + "/none.log")
        }
    }
}
