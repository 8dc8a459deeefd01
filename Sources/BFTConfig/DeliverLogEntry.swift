import BFTCore
import BFTCrypto
import Foundation

/// One line of a deliver log: one delivered request, in delivery order.
///
///     {"index":1,"seq":3,"view":0,"client":"0","timestamp":17,"digest":"<64 hex>"}
///
/// The format is written by bft-node's `DeliverLog` and read back by the node on recovery and by
/// the harness's `DeliverLogCheck` (`bft-cluster check-logs`); it lives here, below both, so
/// there is one writer of the line and one reader.
///
/// Why this exact, hand-written format: every correct replica must produce byte-identical
/// files, so tests and operators can compare replicas with `cmp`/`diff`; a JSON encoder gives
/// no key-order or spacing guarantee. The result is deliberately not logged (it may be large or
/// private); the digest identifies the signed request. The client id is a string so JSON
/// tools that read numbers as doubles never mangle it.
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

    /// The exact line, with its newline.
    public var line: String {
        "{\"index\":\(index),\"seq\":\(seq),\"view\":\(view),\"client\":\"\(client)\",\"timestamp\":\(timestamp),\"digest\":\"\(digest.hex)\"}\n"
    }

    /// Parses the deliver log at `path`.
    public static func read(path: String) throws(DeliverLogError) -> [DeliverLogEntry] {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw .cannotRead(path: path, reason: ClusterConfiguration.fileReadReason(path: path, error: error))
        }
        return try parse(data, name: path)
    }

    /// Parses a deliver log's bytes; `name` names it in errors. A final line without a newline
    /// is accepted (a file copied while being written); an empty or malformed line is an error
    /// naming the line, never skipped: a reader that skipped one would see a shorter log.
    public static func parse(_ data: Data, name: String) throws(DeliverLogError) -> [DeliverLogEntry] {
        var lines = data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        if lines.last?.isEmpty == true { lines.removeLast() }
        let decoder = JSONDecoder()
        var entries: [DeliverLogEntry] = []
        entries.reserveCapacity(lines.count)
        for (i, line) in lines.enumerated() {
            func malformed(_ reason: String) -> DeliverLogError { .malformedLine(path: name, line: i + 1, reason: reason) }
            let raw: RawEntry
            do {
                raw = try decoder.decode(RawEntry.self, from: Data(line))
            } catch let error as DecodingError {
                if case .dataCorrupted(let context) = error, context.codingPath.isEmpty {
                    throw malformed("not a deliver-log entry: \(String(decoding: line.prefix(80), as: UTF8.self))")
                }
                throw malformed(ClusterConfiguration.describe(error))
            } catch {
                throw malformed("\(error)")
            }
            guard let client = ClientID(raw.client) else {
                throw malformed("client \"\(raw.client)\" is not a client id")
            }
            guard let digest = Digest(hex: raw.digest) else {
                throw malformed("digest is not 64 hex characters")
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

/// Why a deliver log could not be opened, written or parsed.
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
