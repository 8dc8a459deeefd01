import BFTConfig
import Foundation

/// The deliver-log comparison every multi-process check uses (`bft-cluster check-logs`, the e2e
/// tests, the Podman run of the compose file).
///
/// A deliver log has one JSON line per delivered request (`DeliverLogEntry`, which bft-node
/// writes and which reads them here too). Every correct replica writes the same `index`, `seq`,
/// `client`, `timestamp` and `digest` for an index; `view` may differ (a batch committed in view
/// v at one replica can be executed from its re-proposal in v+1 at another). A replica that
/// caught up by state transfer has no lines for the indices the state covered.
public enum DeliverLogCheck {
    /// One replica's log, named for the messages (e.g. `replica-2`).
    public struct Log: Sendable {
        public var name: String
        public var entries: [DeliverLogEntry]
        /// The replica caught up by state transfer (its node log says so): its log may skip indices.
        public var stateTransferred: Bool
        /// The replica was stopped during the run: its log is checked on its own and for
        /// agreement, but not for length, coverage, being non-empty or `after`.
        public var stopped: Bool

        public init(name: String, entries: [DeliverLogEntry], stateTransferred: Bool = false, stopped: Bool = false) {
            self.name = name; self.entries = entries; self.stateTransferred = stateTransferred; self.stopped = stopped
        }
    }

    public struct Options: Sendable {
        /// Every running replica's log has the same number of entries.
        public var equalLength = false
        /// Gaps in the indices are accepted in every log, not only after a state transfer.
        public var allowGaps = false
        /// Every running replica delivered something.
        public var nonEmpty = false
        /// Every entry of a running replica above index `after.index` is in a view above
        /// `after.view`, and there is at least one (what was delivered after the primary of
        /// that view stopped).
        public var after: (index: UInt64, view: UInt64)?

        public init(equalLength: Bool = false, allowGaps: Bool = false, nonEmpty: Bool = false,
                    after: (index: UInt64, view: UInt64)? = nil) {
            self.equalLength = equalLength; self.allowGaps = allowGaps; self.nonEmpty = nonEmpty; self.after = after
        }
    }

    /// The first rule a set of logs breaks, in one line.
    public struct Violation: Error, Equatable, CustomStringConvertible, Sendable {
        public let description: String
        init(_ d: String) { description = d }
    }

    /// Checks the logs; returns the one-line summary, or throws the first violation.
    public static func check(_ logs: [Log], options: Options = Options()) throws(Violation) -> String {
        var skipped: [String] = []
        for log in logs {
            let gaps = try checkOwn(log, allowGaps: options.allowGaps)
            if gaps > 0 { skipped.append("\(log.name) skipped \(gaps) by state transfer") }
        }
        let running = logs.filter { !$0.stopped }
        if options.nonEmpty, let empty = running.first(where: { $0.entries.isEmpty }) {
            throw Violation("\(empty.name) delivered nothing")
        }
        if options.equalLength, Set(running.map(\.entries.count)).count > 1 {
            throw Violation("deliver logs differ in length: " + running.map { "\($0.name)=\($0.entries.count)" }.joined(separator: " "))
        }
        let viewsDiffer = try checkAgreement(logs)
        let range = try checkCoverage(running)
        var summary = "deliver logs agree: " + logs.map { "\($0.name)=\($0.entries.count)\($0.stopped ? " (stopped)" : "")" }.joined(separator: " ")
        if let range { summary += "; common indices \(range.lowerBound)..\(range.upperBound) identical apart from view" }
        if viewsDiffer > 0 { summary += "; view differs on \(viewsDiffer) re-proposed entries" }
        if !skipped.isEmpty { summary += "; " + skipped.joined(separator: ", ") }
        if let after = options.after { summary += "; " + (try checkAfter(running, index: after.index, view: after.view)) }
        return summary
    }

    /// Indices increase, no request twice, gaps only after a state transfer. Returns how many
    /// indices the log skips.
    static func checkOwn(_ log: Log, allowGaps: Bool) throws(Violation) -> UInt64 {
        var seen: [String: UInt64] = [:]
        var skipped: UInt64 = 0
        var previous: UInt64?
        for e in log.entries {
            if let p = previous {
                guard e.index > p else { throw Violation("\(log.name): index \(e.index) follows \(p) (indices must increase)") }
                if e.index > p + 1 {
                    guard allowGaps || log.stateTransferred else {
                        let missing = e.index == p + 2 ? "index \(p + 1)" : "indices \(p + 1)..\(e.index - 1)"
                        throw Violation("\(log.name): \(missing) missing without a state transfer in its node log")
                    }
                    skipped += e.index - p - 1
                }
            }
            previous = e.index
            let key = "\(e.client)/\(e.timestamp)"
            if let first = seen[key] {
                throw Violation("\(log.name): request of client \(e.client) timestamp \(e.timestamp) delivered twice (indices \(first) and \(e.index))")
            }
            seen[key] = e.index
        }
        return skipped
    }

    /// On every index two logs both have, the entries are identical apart from `view`. Returns
    /// how many entries had another view than the first log's.
    static func checkAgreement(_ logs: [Log]) throws(Violation) -> Int {
        var first: [UInt64: (name: String, entry: DeliverLogEntry)] = [:]
        var viewsDiffer = 0
        for log in logs {
            for e in log.entries {
                guard let ref = first[e.index] else { first[e.index] = (log.name, e); continue }
                if let d = ref.entry.difference(from: e) {
                    throw Violation("index \(e.index): \(ref.name) and \(log.name) differ in \(d)")
                }
                if ref.entry.view != e.view { viewsDiffer += 1 }
            }
        }
        return viewsDiffer
    }

    /// Every index between the highest first index and the lowest last index of the running
    /// replicas is in one of their logs. Returns that range (nil when a log is empty).
    static func checkCoverage(_ running: [Log]) throws(Violation) -> ClosedRange<UInt64>? {
        guard !running.isEmpty, running.allSatisfy({ !$0.entries.isEmpty }) else { return nil }
        let lo = running.map { $0.entries.first!.index }.max()!
        let hi = running.map { $0.entries.last!.index }.min()!
        guard lo <= hi else { throw Violation("the running replicas have no index in common (\(lo)..\(hi))") }
        let present = Set(running.flatMap { $0.entries.map(\.index) }.filter { $0 >= lo && $0 <= hi })
        if present.count != Int(hi - lo + 1), let missing = (lo...hi).first(where: { !present.contains($0) }) {
            throw Violation("index \(missing) is in no running replica's deliver log")
        }
        return lo...hi
    }

    static func checkAfter(_ running: [Log], index: UInt64, view: UInt64) throws(Violation) -> String {
        let late = running.flatMap { log in log.entries.filter { $0.index > index }.map { (log.name, $0) } }
        guard !late.isEmpty else { throw Violation("nothing was delivered after index \(index)") }
        if let stale = late.first(where: { $0.1.view <= view }) {
            let count = late.filter { $0.1.view <= view }.count
            throw Violation("\(count) entries after index \(index) are in a view <= \(view), e.g. \(stale.0) index \(stale.1.index) in view \(stale.1.view)")
        }
        let top = late.map(\.1.view).max()!
        return "\(late.count / max(1, running.count)) entries after index \(index), all in views > \(view) (highest \(top))"
    }
}

extension DeliverLogCheck {
    /// The log of one replica given as a data directory (`DIR/deliver.log`) or a deliver-log
    /// file. It counts as state-transferred when the replica's `node.log` (in DIR, or beside
    /// the file) has a `state transferred` line.
    public static func load(_ path: String, stopped: Bool = false) throws(DeliverLogError) -> Log {
        var isDirectory: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory)
        let dir = exists && isDirectory.boolValue ? path : URL(fileURLWithPath: path).deletingLastPathComponent().path
        let file = exists && isDirectory.boolValue ? "\(path)/deliver.log" : path
        let name = exists && isDirectory.boolValue ? URL(fileURLWithPath: path).lastPathComponent : path
        let nodeLog = FileManager.default.contents(atPath: "\(dir)/node.log") ?? Data()
        let transferred = nodeLog.range(of: Data("state transferred".utf8)) != nil
        return Log(name: name, entries: try DeliverLogEntry.read(path: file), stateTransferred: transferred, stopped: stopped)
    }
}

extension DeliverLogEntry {
    /// The first field other than `view` in which two entries differ, with both values.
    func difference(from other: DeliverLogEntry) -> String? {
        if seq != other.seq { return "seq \(seq) vs \(other.seq)" }
        if client != other.client { return "client \(client) vs \(other.client)" }
        if timestamp != other.timestamp { return "timestamp \(timestamp) vs \(other.timestamp)" }
        if digest != other.digest { return "digest \(digest.hex.prefix(12))… vs \(other.digest.hex.prefix(12))…" }
        return nil
    }
}
