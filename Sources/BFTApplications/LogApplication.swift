import BFTCore
import BFTCrypto
import Foundation
import Logging
import BFTStorage

/// Why a log snapshot was refused, or the log file could not be opened.
public enum LogApplicationError: Error, Equatable, CustomStringConvertible {
    case cannotOpen(path: String, reason: String)
    case invalidSnapshot(String)

    public var description: String {
        switch self {
        case .cannotOpen(let path, let reason): return "cannot open application log \(path): \(reason)"
        case .invalidSnapshot(let reason): return "invalid log snapshot: \(reason)"
        }
    }
}

/// An append-only log: every executed request becomes one JSON line in a file,
///
///     {"index":1,"seq":1,"client":0,"timestamp":17,"operation":"SET a 1"}
///
/// with `"operationBase64"` instead of `"operation"` when the bytes are not valid UTF-8. The
/// reply is the request's index as decimal text.
///
/// The replicated state is not the file but `count` and a SHA-256 hash chain over the entries
/// (`chain' = SHA-256(chain ‖ index ‖ client ‖ timestamp ‖ len ‖ operation)`), so the
/// snapshot is 40 bytes however long the log grows, and equal histories give equal snapshots.
/// The file is local output: a replica that catches up by state transfer did not see the
/// transferred requests, so `restore` writes a marker line instead
/// (`{"stateTransfer":true,"upTo":N,"chain":"<hex>"}`).
///
/// Each line is written with one write(2) (no fsync: the log is an observation, not the
/// source of truth, and syncing per request would bound throughput by the disk).
public final class LogApplication: ReplicatedApplication {
    public let path: String
    /// Entries executed or restored.
    public private(set) var count: UInt64 = 0
    /// Hash chain over all entries so far (`Digest.zero` for none).
    public private(set) var chain: Digest = .zero
    /// Write failures so far (the state stays correct; only the local file misses lines).
    public private(set) var writeFailures = 0
    private let fd: Int32
    private let logger: Logger

    /// Opens `path` for appending (created if missing). A file left by an earlier run is kept:
    /// the new run's lines follow it.
    public init(path: String, logger: Logger = Logger(label: "bft.app.log")) throws(LogApplicationError) {
        self.path = path
        self.logger = logger
        do throws(BlockingIOError) {
            fd = try BlockingIO.openForAppend(path)
        } catch {
            throw .cannotOpen(path: path, reason: error.description)
        }
    }

    deinit {
        BlockingIO.closeQuietly(fd)
    }

    public func execute(_ operation: [UInt8], context: ExecutionContext) -> [UInt8] {
        count += 1
        var w = WireWriter(capacity: 32 + operation.count)
        w.u64(count); w.u32(context.client); w.u64(context.timestamp); w.blob(operation)
        chain = SHA256.hash(parts: [chain.bytes, w.bytes])

        var line = "{\"index\":\(count),\"seq\":\(context.seq),\"client\":\(context.client),\"timestamp\":\(context.timestamp),"
        if let text = String(validating: operation, as: UTF8.self) {
            line += "\"operation\":" + JSONText.quote(text)
        } else {
            line += "\"operationBase64\":\"" + Data(operation).base64EncodedString() + "\""
        }
        line += "}\n"
        writeLine(line)
        return Array(String(count).utf8)
    }

    /// `count (u64, big-endian) ‖ chain (32 bytes)`.
    public func snapshot() -> [UInt8] {
        var w = WireWriter(capacity: 40)
        w.u64(count); w.digest(chain)
        return w.bytes
    }

    public func restore(from snapshot: [UInt8]) throws {
        guard snapshot.count == 8 + Digest.byteCount else {
            throw LogApplicationError.invalidSnapshot("expected 40 bytes, got \(snapshot.count)")
        }
        var r = WireReader(snapshot)
        count = try r.u64()
        chain = try r.digest()
        writeLine("{\"stateTransfer\":true,\"upTo\":\(count),\"chain\":\"\(chain.hex)\"}\n")
    }

    private func writeLine(_ line: String) {
        do {
            try BlockingIO.writeAll(fd, Array(line.utf8))
        } catch {
            writeFailures += 1
            // Log the first failure and then every 1000th, so a full disk does not flood stderr.
            if writeFailures == 1 || writeFailures % 1000 == 0 {
                logger.error("cannot append to application log", metadata: ["path": "\(path)", "error": "\(error)", "failures": "\(writeFailures)"])
            }
        }
    }
}

/// Minimal JSON string quoting (RFC 8259): escapes quotes, backslashes and control characters,
/// and leaves everything else as UTF-8. Hand-written so lines are compact and identical on
/// every platform (JSONEncoder's escaping of `/` and non-ASCII differs between versions).
enum JSONText {
    static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where u.value < 0x20:
                let hex = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default:
                out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }
}
