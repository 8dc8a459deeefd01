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

private func makeTempDir() throws -> String {
    let dir = NSTemporaryDirectory() + "bft-deliverlog-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

private func delivery(_ i: UInt64, client: ClientID = 0, view: ViewNum = 0) -> Delivery {
    Delivery(index: i, seq: i + 2, view: view, client: client, timestamp: 16 + i,
             digest: SHA256.hash(Array("request \(i)".utf8)), result: Array("result".utf8))
}

@Suite("DeliverLog")
struct DeliverLogTests {
    @Test("golden line format")
    func goldenFormat() {
        let d = Delivery(index: 1, seq: 3, view: 0, client: 0, timestamp: 17,
                         digest: Digest(hex: String(repeating: "ab", count: 32))!, result: [1, 2])
        #expect(DeliverLogEntry(d).line == #"{"index":1,"seq":3,"view":0,"client":"0","timestamp":17,"digest":"abababababababababababababababababababababababababababababababab"}"# + "\n")
        let big = Delivery(index: UInt64.max, seq: 18_446_744_073_709_551_614, view: 7, client: UInt32.max,
                           timestamp: 1_732_000_000_123_456, digest: SHA256.hash([]), result: [])
        #expect(DeliverLogEntry(big).line == #"{"index":18446744073709551615,"seq":18446744073709551614,"view":7,"client":"4294967295","timestamp":1732000000123456,"digest":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}"# + "\n")
    }

    @Test("appends in order, buffers until flush, appends to an existing file, and parses back")
    func appendFlushRead() throws {
        let dir = try makeTempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/deliver.log"
        let log = try DeliverLog(path: path)
        let first = (1...3).map { delivery($0, client: ClientID($0 % 2)) }
        try log.append(first)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "", "nothing written before flush")
        try log.flush()
        try log.flush() // idempotent
        let expected = first.map { DeliverLogEntry($0).line }.joined()
        #expect(try String(contentsOfFile: path, encoding: .utf8) == expected)

        // A second log on the same file (a restarted node) appends.
        let again = try DeliverLog(path: path)
        let second = (4...5).map { delivery($0, view: 1) }
        try again.append(second)
        try again.flush()
        let entries = try DeliverLogEntry.read(path: path)
        #expect(entries == (first + second).map(DeliverLogEntry.init))
        #expect(entries.map(\.index) == [1, 2, 3, 4, 5])
        #expect(log.lastError == nil)
    }

    @Test("auto-flushes a large buffer and flushes on deinit")
    func autoFlush() throws {
        let dir = try makeTempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/deliver.log"
        let log = try DeliverLog(path: path, autoFlushBytes: 300)
        try log.append([delivery(1)])
        #expect(try DeliverLogEntry.read(path: path).isEmpty)
        try log.append([delivery(2), delivery(3)])
        #expect(try DeliverLogEntry.read(path: path).count == 3)
        do {
            let scoped = try DeliverLog(path: path)
            try scoped.append([delivery(4)])
        }
        #expect(try DeliverLogEntry.read(path: path).count == 4)
    }

    @Test("open and parse errors are clear")
    func errors() throws {
        let dir = try makeTempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(throws: DeliverLogError.self) { try DeliverLog(path: dir + "/no/such/dir/deliver.log") }
        #expect(throws: DeliverLogError.cannotRead(path: dir + "/none.log", reason: "no such file")) {
            try DeliverLogEntry.read(path: dir + "/none.log")
        }
        let path = dir + "/bad.log"
        try (DeliverLogEntry(delivery(1)).line + "{\"index\":2}\n").write(toFile: path, atomically: true, encoding: .utf8)
        do {
            _ = try DeliverLogEntry.read(path: path)
            Issue.record("parsed a malformed line")
        } catch {
            #expect(error.description == "\(path):2: missing key \"seq\"")
        }
    }
}
