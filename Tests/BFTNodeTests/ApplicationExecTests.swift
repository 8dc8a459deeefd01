@testable import BFTCore
import Foundation
import Testing

@testable import BFTNode
import BFTStorage
@testable import BFTFrameCodec
@testable import BFTTransport
@testable import BFTApplications
@testable import BFTConfig
@testable import BFTClient

/// `docs/examples/counter.py`, found from this file's location in the repository.
private let counterScript: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.appendingPathComponent("docs/examples/counter.py").path
}()

/// Whether `python3` can be run (the example test is skipped without it).
private let python3Available: Bool = {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/sh")
    p.arguments = ["-c", "command -v python3 >/dev/null 2>&1"]
    guard (try? p.run()) != nil else { return false }
    p.waitUntilExit()
    return p.terminationStatus == 0
}()

private func ctx(_ i: UInt64, client: ClientID = 0) -> ExecutionContext {
    ExecutionContext(client: client, timestamp: 1000 + i, seq: i, index: i)
}

private func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

/// Collects failures reported through `onFailure`.
private final class FailureBox { var errors: [ExecApplicationError] = [] }

@Suite("ExecApplication")
struct ApplicationExecTests {
    @Test("the example counter.py speaks the protocol", .enabled(if: python3Available, "python3 not installed"))
    func counterExample() throws {
        let a = try ExecApplication(command: "python3 '\(counterScript)'")
        defer { a.shutdown() }
        #expect(text(a.execute(Array("hello".utf8), context: ctx(1))) == "1 hello")
        #expect(text(a.execute(Array("SET x 1".utf8), context: ctx(2, client: 3))) == "2 SET x 1")
        #expect(a.execute([0xFF, 0x00], context: ctx(3)) == Array("3 ".utf8) + [0xFF, 0x00], "binary operations pass through base64")
        let snap = a.snapshot()
        #expect(snap == [0, 0, 0, 0, 0, 0, 0, 3])
        #expect(a.snapshot() == snap, "a snapshot does not change the state")

        let b = try ExecApplication(command: "python3 '\(counterScript)'")
        defer { b.shutdown() }
        try b.restore(from: snap)
        #expect(b.snapshot() == snap)
        #expect(text(b.execute(Array("next".utf8), context: ctx(4))) == "4 next")
        #expect(text(a.execute(Array("next".utf8), context: ctx(4))) == "4 next")
        #expect(a.snapshot() == b.snapshot())
        #expect(a.failure == nil && b.failure == nil)

        // A snapshot the child refuses (it exits) is a failure: restore throws.
        let c = try ExecApplication(command: "python3 '\(counterScript)' 2>/dev/null")
        defer { c.shutdown() }
        #expect(throws: ExecApplicationError.self) { try c.restore(from: [1, 2, 3]) }
        #expect(c.failure != nil)
    }

    @Test("plain text reply lines are the result; \\r is stripped")
    func plainTextReplies() throws {
        let app = try ExecApplication(command: #"while read line; do printf 'pong\r\n'; done"#)
        defer { app.shutdown() }
        #expect(text(app.execute(Array("a".utf8), context: ctx(1))) == "pong")
        #expect(text(app.execute(Array("b".utf8), context: ctx(2))) == "pong")
        #expect(app.failure == nil)
    }

    @Test("the request line has the documented fields")
    func requestFormat() throws {
        // The child echoes the request back after a prefix, as a plain line (a line starting
        // with '{' would be parsed as a JSON reply).
        let app = try ExecApplication(command: "while read line; do echo \"got $line\"; done")
        defer { app.shutdown() }
        let reply = text(app.execute(Array("hi".utf8), context: ExecutionContext(client: 2, timestamp: 77, seq: 9, index: 4)))
        #expect(reply == #"got {"type":"execute","index":4,"seq":9,"client":2,"timestamp":77,"operation":"aGk="}"#)
        #expect(text(app.execute([], context: ExecutionContext(client: 0, timestamp: 1, seq: 1, index: 5))).hasSuffix(#""operation":""}"#))
        #expect(app.failure == nil)
    }

    @Test("a child that exits is a failure, reported once, and never traps")
    func childExits() throws {
        let box = FailureBox()
        let app = try ExecApplication(command: "exit 3")
        app.onFailure = { box.errors.append($0) }
        let result = app.execute(Array("a".utf8), context: ctx(1))
        // No error text that could pass for a result: the node stops on applicationFailure instead.
        #expect(result.isEmpty)
        #expect(!text(result).contains("ERR"))
        let reported = try #require(app.applicationFailure)
        #expect(reported.contains("exited with status 3") && !reported.contains("\n"), "\(reported)")
        #expect((app as any FailableApplication).applicationFailure == reported)
        guard case .processFailed(let reason)? = app.failure else {
            Issue.record("no failure recorded: \(String(describing: app.failure))")
            return
        }
        #expect(reason.contains("exited with status 3"), "reason: \(reason)")
        #expect(app.execute(Array("b".utf8), context: ctx(2)) == ExecApplication.failedReply)
        #expect(app.snapshot() == ExecApplication.failedSnapshot)
        #expect(throws: ExecApplicationError.alreadyFailed) { try app.restore(from: []) }
        #expect(box.errors.count == 1)
    }

    @Test("a command that does not exist fails on first use")
    func missingCommand() throws {
        let app = try ExecApplication(command: "/nonexistent/app 2>/dev/null")
        #expect(app.execute([], context: ctx(1)) == ExecApplication.failedReply)
        #expect(app.failure?.description.contains("127") == true, "\(String(describing: app.failure))")
    }

    @Test("garbage replies are failures", arguments: [
        #"echo '{not json'"#, #"echo '{"result":"***"}'"#, #"echo '{"state":"AAAA"}'"#, #"echo '[1]' | sed 's/\[/{/'"#,
    ])
    func garbage(_ reply: String) throws {
        let app = try ExecApplication(command: "read line; \(reply); exec sleep 5")
        defer { app.shutdown() }
        #expect(app.execute(Array("a".utf8), context: ctx(1)) == ExecApplication.failedReply)
        #expect(app.failure != nil)
    }

    @Test("snapshot replies must carry base64 state")
    func badSnapshotReply() throws {
        let app = try ExecApplication(command: "read line; echo '{\"result\":\"\"}'; exec sleep 5")
        defer { app.shutdown() }
        #expect(app.snapshot() == ExecApplication.failedSnapshot)
        #expect(app.failure != nil)
    }

    @Test("a child that does not answer in time is a failure")
    func timeout() throws {
        let app = try ExecApplication(command: "exec sleep 30", responseTimeoutMilliseconds: 200)
        let start = ContinuousClock.now
        #expect(app.execute(Array("a".utf8), context: ctx(1)) == ExecApplication.failedReply)
        #expect(ContinuousClock.now - start < .seconds(10))
        #expect(app.failure?.description.contains("no complete line within 200 ms") == true)
        app.shutdown()
    }

    @Test func childTricklingBytesHitsTheWholeLineDeadline() throws {
        // One byte every 100 ms, never a newline: each read is quick, the line never completes.
        let app = try ExecApplication(
            command: "read line; while :; do printf x; sleep 0.1; done", responseTimeoutMilliseconds: 500)
        defer { app.shutdown() }
        let start = ContinuousClock.now
        _ = app.execute(Array("a".utf8), context: ctx(1))
        let took = ContinuousClock.now - start
        #expect(took >= .milliseconds(450) && took < .seconds(3), "took \(took)")
        #expect(app.applicationFailure?.contains("no complete line within 500 ms") == true, "\(String(describing: app.applicationFailure))")
    }

    @Test func lineReaderDeadlineCoversTheWholeLineNotEachRead() throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        let writer = fds[1]
        // The writer stops when told, and the pipe closes only after it has: a write to a pipe
        // with no reader would raise SIGPIPE.
        let stop = LockedFlag()
        let finished = DispatchSemaphore(value: 0)
        let trickle = Thread {
            for _ in 0..<60 where !stop.value {
                _ = try? BlockingIO.writeAll(writer, [UInt8(ascii: "x")])
                Thread.sleep(forTimeInterval: 0.05)
            }
            finished.signal()
        }
        trickle.start()
        var reader = LineReader(fd: fds[0], maxLineBytes: 1000)
        let start = ContinuousClock.now
        #expect(throws: LineReader.Failure.timedOut(milliseconds: 300)) { try reader.readLine(timeoutMilliseconds: 300) }
        // A per-read deadline would only fire once the 3 s trickle stops; the whole-line deadline
        // fires at 300 ms. 2.5 s separates the two with room for a loaded machine.
        #expect(ContinuousClock.now - start < .milliseconds(2500))
        stop.set()
        finished.wait()
    }

    @Test("results above the reply limit become a deterministic ERR")
    func oversizedResult() throws {
        let app = try ExecApplication(command: "while read line; do head -c 70000 /dev/zero | tr '\\0' x; echo; done",
                                      maxResultBytes: 64 * 1024)
        defer { app.shutdown() }
        #expect(text(app.execute([], context: ctx(1))) == "ERR result too large")
        #expect(app.failure == nil)
    }

    @Test("JSON results are base64-decoded")
    func jsonResult() throws {
        // base64 of bytes 00 FF 0A: "AP8K"
        let app = try ExecApplication(command: #"while read line; do echo '  {"result":"AP8K"}'; done"#)
        defer { app.shutdown() }
        #expect(app.execute([], context: ctx(1)) == [0x00, 0xFF, 0x0A])
    }

    @Test("line reader splits, joins and bounds lines")
    func lineReader() throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer { close(fds[0]) }
        try BlockingIO.writeAll(fds[1], Array("one\ntw".utf8))
        var reader = LineReader(fd: fds[0], maxLineBytes: 8)
        #expect(try reader.readLine() == Array("one".utf8))
        try BlockingIO.writeAll(fds[1], Array("o\n\nthree\n123456789".utf8))
        #expect(try reader.readLine() == Array("two".utf8))
        #expect(try reader.readLine() == [])
        #expect(try reader.readLine() == Array("three".utf8))
        #expect(throws: LineReader.Failure.lineTooLong(8)) { try reader.readLine(timeoutMilliseconds: 50) }
        var second = LineReader(fd: fds[0], maxLineBytes: 100)
        #expect(throws: LineReader.Failure.timedOut(milliseconds: 50)) { try second.readLine(timeoutMilliseconds: 50) }
        try BlockingIO.writeAll(fds[1], Array("partial".utf8))
        close(fds[1])
        #expect(throws: LineReader.Failure.endOfFile) { try second.readLine() }
    }
}

/// A flag one thread sets and another polls.
final class LockedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var raised = false
    var value: Bool { lock.withLock { raised } }
    func set() { lock.withLock { raised = true } }
}
