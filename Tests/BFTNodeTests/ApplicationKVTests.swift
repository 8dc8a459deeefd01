@testable import BFTCore
import BFTCrypto
import Foundation
import Testing

@testable import BFTNode
@testable import BFTFrameCodec
@testable import BFTTransport
@testable import BFTApplications
@testable import BFTConfig
@testable import BFTClient

private func ctx(_ i: UInt64) -> ExecutionContext {
    ExecutionContext(client: 0, timestamp: i, seq: i, index: i)
}

/// Runs `command` and returns the reply as text (invalid UTF-8 replaced, for comparisons).
@discardableResult
private func run(_ app: KVApplication, _ command: String) -> String {
    String(decoding: app.execute(Array(command.utf8), context: ctx(1)), as: UTF8.self)
}

@Suite("KVApplication")
struct ApplicationKVTests {
    @Test("SET, GET, DEL semantics")
    func semantics() {
        let app = KVApplication()
        #expect(run(app, "GET a") == "(nil)")
        #expect(run(app, "SET a 1") == "OK")
        #expect(run(app, "GET a") == "1")
        #expect(run(app, "SET a hello  world ") == "OK")
        #expect(run(app, "GET a") == "hello  world ", "the value is the rest of the line, spaces included")
        #expect(run(app, "SET empty ") == "OK")
        #expect(run(app, "GET empty") == "")
        #expect(run(app, "set b 2") == "OK", "verbs are case-insensitive")
        #expect(run(app, "Get b") == "2")
        #expect(run(app, "GET B") == "(nil)", "keys are case-sensitive")
        #expect(run(app, "DEL a") == "1")
        #expect(run(app, "DEL a") == "0")
        #expect(run(app, "GET a") == "(nil)")
        #expect(app.count == 2)
        #expect(app.totalBytes == "empty".utf8.count + "b".utf8.count + 1)
    }

    @Test("malformed commands get ERR and change nothing", arguments: [
        "", "SET", "SET a", "SET  a 1", "GET", "GET ", "GET a b", "DEL", "DEL a b", "FOO a", "GETX a", "SETa 1",
        "\u{0}\u{0}\u{0}", "é", "DELETE a",
    ])
    func malformed(_ command: String) {
        let app = KVApplication()
        run(app, "SET k v")
        let before = app.snapshot()
        let reply = run(app, command)
        #expect(reply.hasPrefix("ERR "), "reply was \(reply)")
        #expect(app.snapshot() == before)
    }

    @Test("arbitrary bytes, including invalid UTF-8, never crash and round-trip")
    func arbitraryBytes() {
        let app = KVApplication()
        let key: [UInt8] = [0xFF, 0xFE, 0x00, 0x80]
        let value: [UInt8] = [0xC3, 0x28, 0x20, 0xA0, 0xA1, 0x0A]
        #expect(app.execute(Array("SET ".utf8) + key + [0x20] + value, context: ctx(1)) == Array("OK".utf8))
        #expect(app.execute(Array("GET ".utf8) + key, context: ctx(2)) == value)
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let length = Int.random(in: 0..<24, using: &rng)
            var op = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
            // Bias towards real verbs so the argument parsing is exercised, not only the verb check.
            if Bool.random(using: &rng) { op = Array(["SET ", "GET ", "DEL ", "set "].randomElement(using: &rng)!.utf8) + op }
            _ = app.execute(op, context: ctx(3))
        }
        let restored = KVApplication()
        #expect(throws: Never.self) { try restored.restore(from: app.snapshot()) }
        #expect(restored.snapshot() == app.snapshot())
    }

    @Test("limits give ERR")
    func limits() {
        var limits = KVApplication.Limits()
        limits.maxKeys = 2
        limits.maxKeyBytes = 4
        limits.maxValueBytes = 8
        limits.maxTotalBytes = 15
        let app = KVApplication(limits: limits)
        #expect(run(app, "SET abcde 1") == "ERR key too long (max 4 bytes)")
        #expect(run(app, "GET abcde") == "ERR key too long (max 4 bytes)")
        #expect(run(app, "SET a 123456789") == "ERR value too long (max 8 bytes)")
        #expect(run(app, "SET a 12345678") == "OK")         // 9 bytes
        #expect(run(app, "SET b 12345") == "OK")            // 15 bytes
        #expect(run(app, "SET c 1") == "ERR too many keys (max 2)")
        #expect(run(app, "SET a 1") == "OK", "overwriting an existing key is not a new key") // 8 bytes
        #expect(run(app, "DEL a") == "1")                   // 6 bytes
        #expect(run(app, "SET cc 12345678") == "ERR store full (max 15 bytes)")
        #expect(run(app, "SET c 1234567") == "OK")          // 14 bytes
        #expect(app.totalBytes == 14)
    }

    @Test("a SET that would grow the snapshot past the cluster's state budget gets ERR on every replica, before the state grows")
    func stateBudgetIsEnforcedBeforeGrowth() {
        var budget = ProtocolConfig(n: 4, clientCount: 1)
        budget.maxApplicationStateBytes = 1000
        budget.maxResultBytes = 300
        let replicas = (0..<4).map { _ in KVApplication(limits: KVApplication.Limits(budget: budget)) }
        var answers: [[String]] = Array(repeating: [], count: 4)
        for (i, app) in replicas.enumerated() {
            for k in 0..<6 { answers[i].append(run(app, "SET k\(k) " + String(repeating: "v", count: 200))) }
            answers[i].append(run(app, "SET big " + String(repeating: "w", count: 301)))
            #expect(app.snapshot().count <= 1000)
            #expect(app.snapshot().count == app.snapshotBytes)
        }
        #expect(answers.allSatisfy { $0 == answers[0] })
        #expect(Array(answers[0].prefix(4)) == ["OK", "OK", "OK", "OK"])
        #expect(answers[0][4] == "ERR store full (state budget 1000 bytes)")
        #expect(answers[0][6] == "ERR value too long (max 300 bytes)")
    }

    @Test("same operations in the same order give the same snapshot bytes")
    func deterministicSnapshots() throws {
        let ops = (0..<500).map { i -> String in
            switch i % 5 {
            case 0, 1: return "SET key\(i % 37) value \(i)"
            case 2: return "DEL key\((i * 7) % 37)"
            case 3: return "GET key\(i % 11)"
            default: return "SET k\(i) \(String(repeating: "x", count: i % 13))"
            }
        }
        let a = KVApplication(), b = KVApplication()
        for (i, op) in ops.enumerated() {
            let ra = a.execute(Array(op.utf8), context: ctx(UInt64(i + 1)))
            let rb = b.execute(Array(op.utf8), context: ctx(UInt64(i + 1)))
            #expect(ra == rb)
        }
        #expect(a.snapshot() == b.snapshot())

        // The same contents reached in a different insertion order also give the same bytes.
        let c = KVApplication(), d = KVApplication()
        for i in 0..<100 { run(c, "SET k\(i) v\(i)") }
        for i in (0..<100).reversed() { run(d, "SET k\(i) v\(i)") }
        #expect(c.snapshot() == d.snapshot())

        // Restore reproduces the state exactly.
        let e = KVApplication()
        try e.restore(from: a.snapshot())
        #expect(e.snapshot() == a.snapshot())
        #expect(e.count == a.count && e.totalBytes == a.totalBytes)
        #expect(run(e, "GET key3") == run(a, "GET key3"))
        #expect(KVApplication().snapshot() == [1, 0, 0, 0, 0, 0, 0, 0, 0])
    }

    @Test("snapshot format is pinned")
    func snapshotFormat() {
        let app = KVApplication()
        run(app, "SET b 2")
        run(app, "SET a xy")
        #expect(app.snapshot() == [1, 0, 0, 0, 0, 0, 0, 0, 2,
                                   0, 0, 0, 1, 0x61, 0, 0, 0, 2, 0x78, 0x79,
                                   0, 0, 0, 1, 0x62, 0, 0, 0, 1, 0x32])
    }

    @Test("malformed snapshots are refused and leave the state unchanged")
    func malformedSnapshots() throws {
        let app = KVApplication()
        run(app, "SET a 1")
        run(app, "SET b 2")
        let good = app.snapshot()
        var rng = SystemRandomNumberGenerator()
        var cases: [[UInt8]] = [
            [],
            [2] + good.dropFirst(),                                       // unknown version
            Array(good.dropLast()),                                       // truncated
            good + [0],                                                   // trailing byte
            [1, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],          // huge count
            [1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 1, 0x62, 0, 0, 0, 0, 0, 0, 0, 1, 0x61, 0, 0, 0, 0], // unsorted
            [1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 1, 0x61, 0, 0, 0, 0, 0, 0, 0, 1, 0x61, 0, 0, 0, 0], // duplicate
            [1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0],          // empty key
            [1, 0, 0, 0, 0, 0, 0, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF],          // huge key length
        ]
        for _ in 0..<300 { cases.append((0..<Int.random(in: 1..<40, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }) }
        for bad in cases {
            let target = KVApplication()
            run(target, "SET z 9")
            let before = target.snapshot()
            do {
                try target.restore(from: bad)
                // A random buffer may by chance be a valid snapshot; then it must re-encode identically.
                #expect(target.snapshot() == bad)
            } catch {
                #expect(error is KVSnapshotError)
                #expect(target.snapshot() == before)
            }
        }
        let limited = KVApplication(limits: { var l = KVApplication.Limits(); l.maxKeys = 1; return l }())
        #expect(throws: KVSnapshotError.self) { try limited.restore(from: good) }
    }
}
