import Foundation

/// The status document a replica writes to `DATA/status.json` (and serves at `/status`) once per
/// status interval; `bft-node` writes it and the tools (`bft-cluster`, `bft-loadgen`, the
/// harness) read it, so both sides use this one type.
public struct ReplicaStatus: Codable, Sendable, Equatable {
    public var replica: Int
    public var view: UInt64
    public var primary: Int
    public var active: Bool
    public var lastExecuted: UInt64
    public var stableCheckpoint: UInt64
    public var delivered: UInt64
    public var pendingRequests: Int
    public var viewChanges: Int
    /// Drops counted by reason, at the edge and by the core.
    public var dropped: [String: Int]

    public init(replica: Int, view: UInt64, primary: Int, active: Bool, lastExecuted: UInt64, stableCheckpoint: UInt64,
                delivered: UInt64, pendingRequests: Int, viewChanges: Int, dropped: [String: Int]) {
        self.replica = replica; self.view = view; self.primary = primary; self.active = active
        self.lastExecuted = lastExecuted; self.stableCheckpoint = stableCheckpoint; self.delivered = delivered
        self.pendingRequests = pendingRequests; self.viewChanges = viewChanges; self.dropped = dropped
    }

    /// Reads `DIR/status.json`; nil when it is missing or not (yet) a complete status document.
    public static func read(dataDirectory: String) -> ReplicaStatus? {
        guard let data = FileManager.default.contents(atPath: dataDirectory + "/status.json") else { return nil }
        return try? JSONDecoder().decode(ReplicaStatus.self, from: data)
    }

    /// The (view, primary) most of `statuses` report, with how many report it; ties go to the
    /// higher view. Nil for no statuses.
    public static func majority(_ statuses: [ReplicaStatus]) -> (view: UInt64, primary: Int, count: Int)? {
        var counts: [String: (view: UInt64, primary: Int, count: Int)] = [:]
        for s in statuses { counts["\(s.view)/\(s.primary)", default: (s.view, s.primary, 0)].count += 1 }
        return counts.values.max { ($0.count, $0.view) < ($1.count, $1.view) }
    }
}
