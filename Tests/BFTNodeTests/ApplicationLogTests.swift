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

private func makeTempDir(_ label: String) throws -> String {
    let dir = NSTemporaryDirectory() + "bft-app-\(label)-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

private func lines(_ path: String) throws -> [String] {
    try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
        .map(String.init).filter { !$0.isEmpty }
}

@Suite("LogApplication and ApplicationFactory")
struct ApplicationLogTests {
    @Test("appends one JSON line per request and replies with the index")
    func appendsLines() throws {
        let dir = try makeTempDir("log")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let app = try LogApplication(path: dir + "/app.log")
        #expect(app.execute(Array("SET a 1".utf8), context: ExecutionContext(client: 3, timestamp: 17, seq: 5, index: 1)) == Array("1".utf8))
        #expect(app.execute(Array("say \"hi\"\n\\".utf8), context: ExecutionContext(client: 0, timestamp: 18, seq: 5, index: 2)) == Array("2".utf8))
        #expect(app.execute([0xFF, 0x00, 0x41], context: ExecutionContext(client: 1, timestamp: 9, seq: 6, index: 3)) == Array("3".utf8))
        let l = try lines(dir + "/app.log")
        #expect(l == [
            #"{"index":1,"seq":5,"client":3,"timestamp":17,"operation":"SET a 1"}"#,
            #"{"index":2,"seq":5,"client":0,"timestamp":18,"operation":"say \"hi\"\n\\"}"#,
            #"{"index":3,"seq":6,"client":1,"timestamp":9,"operationBase64":"/wBB"}"#,
        ])
        // Every line is valid JSON that decodes back to the operation.
        let second = try JSONSerialization.jsonObject(with: Data(l[1].utf8)) as! [String: Any]
        #expect(second["operation"] as? String == "say \"hi\"\n\\")
        #expect(app.count == 3)
    }

    @Test("snapshot is a deterministic count and hash chain; restore writes a marker")
    func snapshotAndRestore() throws {
        let dir = try makeTempDir("logsnap")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let a = try LogApplication(path: dir + "/a.log")
        let b = try LogApplication(path: dir + "/b.log")
        #expect(a.snapshot() == [UInt8](repeating: 0, count: 40))
        for i in 1...20 {
            let op = Array("op \(i)".utf8)
            let c = ExecutionContext(client: ClientID(i % 3), timestamp: UInt64(100 + i), seq: UInt64(i), index: UInt64(i))
            #expect(a.execute(op, context: c) == b.execute(op, context: c))
        }
        #expect(a.snapshot() == b.snapshot())
        #expect(a.snapshot().count == 40)
        #expect(Array(a.snapshot().prefix(8)) == [0, 0, 0, 0, 0, 0, 0, 20])

        // A different history gives a different chain.
        let c = try LogApplication(path: dir + "/c.log")
        for i in 1...20 {
            _ = c.execute(Array("op \(21 - i)".utf8), context: ExecutionContext(client: 0, timestamp: UInt64(i), seq: 1, index: UInt64(i)))
        }
        #expect(c.snapshot() != a.snapshot())

        let d = try LogApplication(path: dir + "/d.log")
        try d.restore(from: a.snapshot())
        #expect(d.snapshot() == a.snapshot())
        #expect(try lines(dir + "/d.log") == [#"{"stateTransfer":true,"upTo":20,"chain":"\#(a.chain.hex)"}"#])
        // Execution continues from the restored state exactly as on the source.
        let next = ExecutionContext(client: 1, timestamp: 500, seq: 21, index: 21)
        #expect(d.execute(Array("x".utf8), context: next) == Array("21".utf8))
        #expect(a.execute(Array("x".utf8), context: next) == Array("21".utf8))
        #expect(d.snapshot() == a.snapshot())

        #expect(throws: LogApplicationError.invalidSnapshot("expected 40 bytes, got 39")) {
            try d.restore(from: [UInt8](repeating: 1, count: 39))
        }
        #expect(d.snapshot() == a.snapshot())
    }

    @Test("an existing log is appended to, not truncated")
    func appendsToExisting() throws {
        let dir = try makeTempDir("logappend")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "earlier\n".write(toFile: dir + "/app.log", atomically: true, encoding: .utf8)
        let app = try LogApplication(path: dir + "/app.log")
        _ = app.execute(Array("a".utf8), context: ExecutionContext(client: 0, timestamp: 1, seq: 1, index: 1))
        #expect(try lines(dir + "/app.log").count == 2)
        #expect(throws: LogApplicationError.self) { try LogApplication(path: dir + "/missing-dir/app.log") }
    }

    @Test("factory builds kv, log and exec; refuses unknown specs")
    func factory() throws {
        let dir = try makeTempDir("factory")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(try ApplicationFactory.make(spec: "kv", dataDirectory: dir) is KVApplication)
        let log = try ApplicationFactory.make(spec: "log", dataDirectory: dir)
        #expect((log as? LogApplication)?.path == dir + "/app.log")
        #expect(FileManager.default.fileExists(atPath: dir + "/app.log"))
        let exec = try ApplicationFactory.make(spec: "exec:cat", dataDirectory: dir)
        #expect((exec as? ExecApplication)?.command == "cat")
        (exec as? ExecApplication)?.shutdown()
        #expect(throws: ApplicationFactoryError.unknownSpec("redis")) {
            try ApplicationFactory.make(spec: "redis", dataDirectory: dir)
        }
        #expect(throws: ApplicationFactoryError.emptyCommand) {
            try ApplicationFactory.make(spec: "exec: ", dataDirectory: dir)
        }
        #expect(ApplicationFactoryError.unknownSpec("redis").description == "unknown application 'redis' (expected kv, log or exec:COMMAND)")
    }
}
