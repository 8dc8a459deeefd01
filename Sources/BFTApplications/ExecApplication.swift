import BFTCore
import Foundation
import Logging
import BFTStorage

/// Why the external application cannot be used.
public enum ExecApplicationError: Error, Equatable, CustomStringConvertible {
    /// The child process could not be started.
    case launchFailed(command: String, reason: String)
    /// The child exited, closed its output, timed out or answered something that is not a
    /// reply. After this the replica's state can no longer follow the others deterministically.
    case processFailed(String)
    /// An earlier failure; the child is no longer used.
    case alreadyFailed

    public var description: String {
        switch self {
        case .launchFailed(let command, let reason): return "cannot start application '\(command)': \(reason)"
        case .processFailed(let reason): return "application process failed: \(reason)"
        case .alreadyFailed: return "application process failed earlier"
        }
    }
}

/// Runs the application as a child process (`/bin/sh -c COMMAND`), so it can be written in
/// any language. The node talks to it with one JSON object per line:
///
/// | node → child (stdin) | child → node (stdout), one line |
/// |---|---|
/// | `{"type":"execute","index":N,"seq":S,"client":C,"timestamp":T,"operation":"<base64>"}` | `{"result":"<base64>"}`, or any line not starting with `{`, taken verbatim (its bytes, without the newline and a trailing `\r`) as the result |
/// | `{"type":"snapshot"}` | `{"state":"<base64>"}` |
/// | `{"type":"restore","state":"<base64>"}` | `{"ok":true}` |
///
/// A reply line whose first non-blank character is `{` must be a JSON object with the expected
/// field; anything else is garbage. The child's standard error is inherited (it goes to the
/// node's log). The child must be deterministic: same requests in the same order, same replies
/// and same snapshot bytes on every replica. See `docs/examples/counter.py`.
///
/// Failure: if the child dies, closes stdout, misses the deadline for a reply line, answers
/// garbage or a line longer than `maxLineBytes`, or fails a snapshot or restore, the replica
/// cannot continue deterministically (it does not know whether the request took effect). The
/// application then stops using the child, logs the error, records it in `failure` /
/// `applicationFailure` (`FailableApplication`) and calls `onFailure`. `ReplicaNode` checks
/// `applicationFailure` after every step and stops the process before it persists, replies or
/// signs anything derived from that step, so no result of a failed child is ever certified.
/// What `execute` returns after a failure is an empty placeholder that never leaves the node;
/// snapshots become a fixed marker, so even a runtime that did not stop could not help certify
/// a checkpoint with it. Nothing traps.
///
/// A result longer than `maxResultBytes` is replaced by `ERR result too large`: deterministic
/// (every correct replica's child returns the same result), and replies must fit the wire limit.
public final class ExecApplication: ReplicatedApplication, FailableApplication {
    public let command: String
    /// Deadline for one whole reply line, from the moment the request was written (not per
    /// read: a child trickling a byte at a time still misses it); nil waits forever. The core
    /// thread waits for the reply, so this bounds how long a stuck child can stall the replica.
    public let responseTimeoutMilliseconds: Int?
    /// Default for `responseTimeoutMilliseconds`: generous for a request or a snapshot of a
    /// few MiB, short enough that a stuck child stops the replica instead of silencing it.
    public static let defaultResponseTimeoutMilliseconds = 10_000
    public let maxResultBytes: Int
    /// The first failure, if the child is no longer usable.
    public private(set) var failure: ExecApplicationError?
    /// Called once, on the first failure.
    public var onFailure: ((ExecApplicationError) -> Void)?

    /// `FailableApplication`: the first failure as one line, or nil.
    public var applicationFailure: String? { failure.map { "\($0) (command '\(command)')" } }

    /// What `execute` returns after a failure: a placeholder that the node never delivers,
    /// since it stops on `applicationFailure` before applying the step's output.
    public static let failedReply: [UInt8] = []
    /// The snapshot after a failure.
    public static let failedSnapshot = Array("ERR application process failed".utf8)

    private let process: Process
    private let stdinPipe: Pipe
    private let stdoutPipe: Pipe
    private var stdinOpen = true
    private var reader: LineReader
    private let logger: Logger

    /// Largest snapshot the child may return: the cluster's `maxApplicationStateBytes`. A larger
    /// one cannot be certified, so it is an application failure (the replica stops), never a
    /// checkpoint the decoders would refuse.
    public let maxStateBytes: Int
    /// Longest reply line: a base64 state of up to `maxStateBytes` plus framing.
    var maxLineBytes: Int { (maxStateBytes + 2) / 3 * 4 + 64 * 1024 }

    /// Starts the child. Throws `.launchFailed` if `/bin/sh` cannot be spawned; a command that
    /// does not exist shows up as a failure on the first request (the shell exits with 127).
    public init(command: String, responseTimeoutMilliseconds: Int? = ExecApplication.defaultResponseTimeoutMilliseconds,
                maxResultBytes: Int = MessageLimits.default.maxResultBytes,
                maxStateBytes: Int = MessageLimits.default.maxStateBytes,
                logger: Logger = Logger(label: "bft.app.exec")) throws(ExecApplicationError) {
        _ = BlockingIO.ignoreSIGPIPE
        self.command = command
        self.responseTimeoutMilliseconds = responseTimeoutMilliseconds
        self.maxResultBytes = maxResultBytes
        self.maxStateBytes = maxStateBytes
        self.logger = logger
        process = Process()
        stdinPipe = Pipe()
        stdoutPipe = Pipe()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command]
        process.standardInput = stdinPipe
        process.standardOutput = stdoutPipe
        reader = LineReader(fd: stdoutPipe.fileHandleForReading.fileDescriptor, maxLineBytes: (maxStateBytes + 2) / 3 * 4 + 64 * 1024)
        do {
            try process.run()
        } catch {
            throw .launchFailed(command: command, reason: error.localizedDescription)
        }
        // Our copies of the child's ends must be closed, or we would never see EOF when the
        // child dies (Foundation closes them on some platforms; closing twice is harmless
        // because the handles track their own state).
        try? stdinPipe.fileHandleForReading.close()
        try? stdoutPipe.fileHandleForWriting.close()
    }

    deinit {
        shutdown()
    }

    /// Closes the child's stdin (a well-behaved child exits on EOF), waits up to one second,
    /// then terminates it. Idempotent.
    public func shutdown() {
        if stdinOpen {
            stdinOpen = false
            try? stdinPipe.fileHandleForWriting.close()
        }
        var waited = 0
        while process.isRunning && waited < 100 {
            usleep(10_000)
            waited += 1
        }
        if process.isRunning { process.terminate() }
    }

    // MARK: - ReplicatedApplication

    public func execute(_ operation: [UInt8], context: ExecutionContext) -> [UInt8] {
        let request = "{\"type\":\"execute\",\"index\":\(context.index),\"seq\":\(context.seq),\"client\":\(context.client),\"timestamp\":\(context.timestamp),\"operation\":\"\(Data(operation).base64EncodedString())\"}\n"
        do throws(ExecApplicationError) {
            let line = try exchange(request)
            let result = try Self.parseResult(line)
            if result.count > maxResultBytes { return Array("ERR result too large".utf8) }
            return result
        } catch {
            fail(error)
            return Self.failedReply
        }
    }

    public func snapshot() -> [UInt8] {
        do throws(ExecApplicationError) {
            let line = try exchange("{\"type\":\"snapshot\"}\n")
            guard let object = Self.jsonObject(line), let text = object["state"] as? String,
                  let state = Data(base64Encoded: text) else {
                throw .processFailed("expected {\"state\":\"<base64>\"} in reply to snapshot, got \(Self.preview(line))")
            }
            guard state.count <= maxStateBytes else {
                throw .processFailed("snapshot of \(state.count) bytes exceeds maxApplicationStateBytes \(maxStateBytes)")
            }
            return [UInt8](state)
        } catch {
            fail(error)
            return Self.failedSnapshot
        }
    }

    public func restore(from snapshot: [UInt8]) throws {
        do throws(ExecApplicationError) {
            let line = try exchange("{\"type\":\"restore\",\"state\":\"\(Data(snapshot).base64EncodedString())\"}\n")
            guard let object = Self.jsonObject(line), object["ok"] as? Bool == true else {
                throw .processFailed("expected {\"ok\":true} in reply to restore, got \(Self.preview(line))")
            }
        } catch {
            fail(error)
            throw error
        }
    }

    // MARK: - Protocol

    /// Sends one request line and reads one reply line.
    private func exchange(_ request: String) throws(ExecApplicationError) -> [UInt8] {
        if failure != nil { throw .alreadyFailed }
        guard stdinOpen else { throw .processFailed("application was shut down") }
        do throws(BlockingIOError) {
            try BlockingIO.writeAll(stdinPipe.fileHandleForWriting.fileDescriptor, Array(request.utf8))
        } catch {
            throw .processFailed("cannot write to the process (\(error))\(exitNote())")
        }
        do throws(LineReader.Failure) {
            return try reader.readLine(timeoutMilliseconds: responseTimeoutMilliseconds)
        } catch .endOfFile {
            throw .processFailed("the process closed its output\(exitNote())")
        } catch {
            throw .processFailed("reading its reply: \(error)")
        }
    }

    /// Turns one reply line into result bytes; see the type's documentation for the format.
    static func parseResult(_ raw: [UInt8]) throws(ExecApplicationError) -> [UInt8] {
        var line = raw[...]
        if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
        let firstNonBlank = line.first { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\t") }
        guard firstNonBlank == UInt8(ascii: "{") else { return Array(line) }
        guard let object = jsonObject(Array(line)), let text = object["result"] as? String,
              let bytes = Data(base64Encoded: text) else {
            throw .processFailed("expected {\"result\":\"<base64>\"} or a plain text line, got \(preview(raw))")
        }
        return [UInt8](bytes)
    }

    private static func jsonObject(_ line: [UInt8]) -> [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(line))) as? [String: Any]
    }

    /// The start of a bad line for the log, with invalid UTF-8 replaced.
    private static func preview(_ line: [UInt8]) -> String {
        let text = String(decoding: line.prefix(80), as: UTF8.self)
        return "'" + text + (line.count > 80 ? "…" : "") + "'"
    }

    private func exitNote() -> String {
        // Give Foundation a moment to reap the child so the exit status is known.
        for _ in 0..<100 where process.isRunning { usleep(5_000) }
        guard !process.isRunning else { return "" }
        switch process.terminationReason {
        case .exit: return "; it exited with status \(process.terminationStatus)"
        case .uncaughtSignal: return "; it was killed by signal \(process.terminationStatus)"
        @unknown default: return ""
        }
    }

    private func fail(_ error: ExecApplicationError) {
        guard failure == nil else { return }
        failure = error
        logger.critical("\(error); this replica can no longer execute requests deterministically",
                        metadata: ["command": "\(command)"])
        // The child may be half-way through a request; stop it so it cannot act on more input.
        stdinOpen = false
        try? stdinPipe.fileHandleForWriting.close()
        if process.isRunning { process.terminate() }
        onFailure?(error)
    }
}
