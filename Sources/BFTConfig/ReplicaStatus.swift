import Foundation

/// What a replica writes to `DATA/status.json` once per status interval (the fields the tools
/// read; `bft-node` writes more, e.g. drops by reason).
public struct ReplicaStatus: Decodable, Sendable, Equatable {
    public var replica: Int
    public var view: UInt64
    public var primary: Int
    public var active: Bool
    public var lastExecuted: UInt64
    public var stableCheckpoint: UInt64
    public var delivered: UInt64
    public var pendingRequests: Int

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
