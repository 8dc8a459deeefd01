import BFTCore
import BFTCrypto
import Foundation
import BFTApplications
import BFTConfig
import BFTFrameCodec
import BFTStorage
import BFTTransport

/// One parsed line of a deliver log.
public struct DeliverLogEntry: Sendable, Equatable {
    public var index: UInt64
    public var seq: SeqNum
    public var view: ViewNum
    public var client: ClientID
    public var timestamp: UInt64
    public var digest: Digest

    public init(index: UInt64, seq: SeqNum, view: ViewNum, client: ClientID, timestamp: UInt64, digest: Digest) {
        self.index = index; self.seq = seq; self.view = view; self.client = client
        self.timestamp = timestamp; self.digest = digest
    }

    public init(_ d: Delivery) {
        self.init(index: d.index, seq: d.seq, view: d.view, client: d.client, timestamp: d.timestamp, digest: d.digest)
    }
}

/// Why a deliver log could not be opened or parsed.
public enum DeliverLogError: Error, Equatable, CustomStringConvertible {
    case cannotOpen(path: String, reason: String)
    case cannotRead(path: String, reason: String)
    /// Line `line` (1-based) is not a deliver-log entry.
    case malformedLine(path: String, line: Int, reason: String)
    /// Writing buffered lines failed (the lines are lost; the replica must stop).
    case cannotWrite(path: String, reason: String)

    public var description: String {
        switch self {
        case .cannotOpen(let path, let reason): return "cannot open deliver log \(path): \(reason)"
        case .cannotRead(let path, let reason): return "cannot read deliver log \(path): \(reason)"
        case .malformedLine(let path, let line, let reason): return "\(path):\(line): \(reason)"
        case .cannotWrite(let path, let reason): return "cannot write deliver log \(path): \(reason)"
        }
    }
}

/// Appends one JSON line per delivered request, in delivery order:
///
///     {"index":1,"seq":3,"view":0,"client":"0","timestamp":17,"digest":"<64 hex>"}
///
/// Why this exact, hand-written format: every correct replica must produce byte-identical
/// files, so tests and operators can compare replicas with `cmp`/`diff`; a JSON encoder gives
/// no key-order or spacing guarantee. The result is deliberately not logged (it may be large or
/// private); the digest identifies the signed request. The client id is a string so JSON
/// tools that read numbers as doubles never mangle it.
///
/// Not thread-safe: the runtime touches it only from its core thread. Lines are buffered by
/// `append` and written with one write(2) per `flush()`, so a crash can lose only the lines
/// appended since the last flush, never produce half a line unless the disk fills.
public final class DeliverLog {
    public let path: String
    private var fd: Int32
    private var buffer: [UInt8] = []
    /// Bytes at which `append` flushes by itself, so a long burst cannot grow the buffer unbounded.
    public let autoFlushBytes: Int
    /// The last write error, if any (also thrown by `flush`, which stops the node).
    public private(set) var lastError: String?

    /// Opens `path` in append mode, creating it (mode 0600) if missing.
    public init(path: String, autoFlushBytes: Int = 1 << 20) throws(DeliverLogError) {
        self.path = path
        self.autoFlushBytes = autoFlushBytes
        do throws(BlockingIOError) {
            fd = try BlockingIO.openForAppend(path)
        } catch {
            throw .cannotOpen(path: path, reason: error.description)
        }
    }

    deinit {
        try? flush()
        BlockingIO.closeQuietly(fd)
    }

    /// The exact line (with its newline) for one delivery.
    public static func line(for d: Delivery) -> String {
        line(for: DeliverLogEntry(d))
    }

    /// The exact line (with its newline) for one entry.
    public static func line(for e: DeliverLogEntry) -> String {
        "{\"index\":\(e.index),\"seq\":\(e.seq),\"view\":\(e.view),\"client\":\"\(e.client)\",\"timestamp\":\(e.timestamp),\"digest\":\"\(e.digest.hex)\"}\n"
    }

    /// Buffers one line per delivery, in the given order.
    public func append(_ deliveries: [Delivery]) throws(DeliverLogError) {
        for d in deliveries { buffer.append(contentsOf: Self.line(for: d).utf8) }
        if buffer.count >= autoFlushBytes { try flush() }
    }

    /// Writes the buffered lines. On failure the lines are dropped (and `lastError` set) rather
    /// than kept — retrying later could interleave a partial line with newer ones — and the
    /// error is thrown: the node stops rather than go on with a deliver log that has a hole.
    public func flush() throws(DeliverLogError) {
        guard !buffer.isEmpty, fd >= 0 else { return }
        defer { buffer.removeAll(keepingCapacity: true) }
        do {
            try BlockingIO.writeAll(fd, buffer)
        } catch {
            lastError = "\(error)"
            throw .cannotWrite(path: path, reason: "\(error)")
        }
    }

    /// Parses a deliver log (for tests and tools). Empty lines are not allowed, and a final
    /// line without a newline is accepted (a file copied while being written).
    public static func read(path: String) throws(DeliverLogError) -> [DeliverLogEntry] {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw .cannotRead(path: path, reason: ClusterConfiguration.fileReadReason(path: path, error: error))
        }
        var entries: [DeliverLogEntry] = []
        var lines = data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        if lines.last?.isEmpty == true { lines.removeLast() }
        let decoder = JSONDecoder()
        for (i, line) in lines.enumerated() {
            let raw: RawEntry
            do {
                raw = try decoder.decode(RawEntry.self, from: Data(line))
            } catch let error as DecodingError {
                throw .malformedLine(path: path, line: i + 1, reason: ClusterConfiguration.describe(error))
            } catch {
                throw .malformedLine(path: path, line: i + 1, reason: "\(error)")
            }
            guard let client = ClientID(raw.client) else {
                throw .malformedLine(path: path, line: i + 1, reason: "client \"\(raw.client)\" is not a client id")
            }
            guard let digest = Digest(hex: raw.digest) else {
                throw .malformedLine(path: path, line: i + 1, reason: "digest is not 64 hex characters")
            }
            entries.append(DeliverLogEntry(index: raw.index, seq: raw.seq, view: raw.view, client: client,
                                           timestamp: raw.timestamp, digest: digest))
        }
        return entries
    }

    private struct RawEntry: Decodable {
        var index: UInt64
        var seq: UInt64
        var view: UInt64
        var client: String
        var timestamp: UInt64
        var digest: String
    }
}
