import Logging
import NIOCore
import BFTFrameCodec

/// A snapshot of transport counters. Why so many: the transport silently drops and closes
/// things by design (bounded queues, hostile input), so every such decision must be visible
/// somewhere for operators and tests.
public struct TransportStats: Sendable, Equatable {
    /// Frames delivered to the consumer / written to sockets.
    public var framesIn = 0
    public var framesOut = 0
    /// Bytes of frames (header + body) delivered / written.
    public var bytesIn = 0
    public var bytesOut = 0
    /// Flushes issued. With coalescing this is far below `framesOut` under load: one flush
    /// per connection per event-loop turn, however many frames were queued in it.
    public var flushes = 0
    /// Frames dropped because an outbound queue was full (oldest first).
    public var droppedOutbound = 0
    /// Every dropped frame, by `TransportDropReason.label` (`outbound_queue_full`, …). Keyed
    /// by the label so the node can fold it into its metric as it is.
    public var droppedByReason: [String: Int] = [:]
    /// Connections we closed (or saw fail), by `ConnectionCloseReason.label` (`bad_magic`,
    /// `session_handshake_timeout`, `penalties`, `disconnect_<reason>`, `io`, …).
    public var closedByReason: [String: Int] = [:]
    /// Penalties reported via `penalize`, by reason label (first word of the reason).
    public var penaltiesByReason: [String: Int] = [:]
    /// Connections currently active (both directions).
    public var connectionsOpen = 0
    public var inboundConnectionsOpen = 0
    public var outboundConnectionsOpen = 0
    /// Inbound connections accepted / refused because `maxInboundConnections` was reached.
    public var connectionsAccepted = 0
    public var connectionsRejected = 0
    /// Dial attempts after the first one for a peer (i.e. retries after a failure or loss).
    public var reconnects = 0
    /// Dial attempts that failed.
    public var connectFailures = 0
    /// Frames delivered but not yet released by the consumer (snapshot).
    public var inboundUnreleased = 0
    /// How often a connection stopped reading because of inbound backpressure.
    public var readPauses = 0
    /// Bytes of replies queued for client connections or handed to their sockets and not yet
    /// written (at most `WireLimits.maxOutboundQueuedBytesAllClients`).
    public var clientOutboundBytes = 0

    public init() {}

    /// Total of `droppedByReason`.
    public var droppedTotal: Int { self.droppedByReason.values.reduce(0, +) }
}

/// Thread-safe accumulator behind `TransportStats`.
final class StatsRecorder: @unchecked Sendable {
    private let box = LockedBox(TransportStats())

    func update(_ body: (inout TransportStats) -> Void) {
        self.box.withLock { body(&$0) }
    }

    func drop(_ reason: TransportDropReason, count: Int = 1) {
        guard count > 0 else { return }
        self.box.withLock { $0.droppedByReason[reason.label, default: 0] += count }
    }

    func closed(_ reason: ConnectionCloseReason) {
        let key = reason.label
        self.box.withLock { s in
            Self.bump(&s.closedByReason, key)
        }
    }

    func penalty(_ reason: String) {
        let key = Self.label(reason)
        self.box.withLock { s in
            Self.bump(&s.penaltiesByReason, key)
        }
    }

    /// Distinct keys kept per dictionary; later new keys are counted under `other`. Why:
    /// reasons passed in by higher layers may embed text derived from network input.
    static let maxDistinctReasons = 64

    private static func bump(_ dict: inout [String: Int], _ key: String) {
        if dict[key] == nil && dict.count >= Self.maxDistinctReasons {
            dict["other", default: 0] += 1
        } else {
            dict[key, default: 0] += 1
        }
    }

    /// A caller-supplied reason reduced to a short statistics key: its leading run of
    /// letters, digits, `_`, `-` and `.`, at most 40 characters ("undecodable 3: bad length"
    /// becomes "undecodable").
    static func label(_ reason: String) -> String {
        let allowed = reason.prefix { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" || $0 == "." }.prefix(40)
        return allowed.isEmpty ? "unspecified" : String(allowed)
    }

    func snapshot() -> TransportStats {
        self.box.withLock { $0 }
    }
}

/// Rate-limits log lines per reason label.
///
/// Why: a flood of garbage connections must not turn into a flood of log output (which would
/// itself be a denial of service on disk or the terminal). The first event per label is
/// logged, then at most one per `interval`, mentioning how many were suppressed.
final class LogThrottle: @unchecked Sendable {
    private struct Entry {
        var lastLogged: NIODeadline
        var suppressed: Int
    }

    private let interval: TimeAmount
    private let entries = LockedBox([String: Entry]())

    init(interval: TimeAmount = .seconds(1)) {
        self.interval = interval
    }

    /// Returns `nil` if this event should be suppressed, otherwise the number of events
    /// suppressed since the last logged one.
    func admit(_ label: String) -> Int? {
        let now = NIODeadline.now()
        return self.entries.withLock { entries in
            if var entry = entries[label] {
                if now - entry.lastLogged < self.interval {
                    entry.suppressed += 1
                    entries[label] = entry
                    return nil
                }
                let suppressed = entry.suppressed
                entries[label] = Entry(lastLogged: now, suppressed: 0)
                return suppressed
            }
            // Labels come from a fixed set, so this dictionary stays small.
            entries[label] = Entry(lastLogged: now, suppressed: 0)
            return 0
        }
    }

    func log(
        _ logger: Logger,
        level: Logger.Level,
        label: String,
        _ message: @autoclosure () -> Logger.Message,
        metadata: @autoclosure () -> Logger.Metadata = [:]
    ) {
        guard logger.logLevel <= level, let suppressed = self.admit(label) else { return }
        var meta = metadata()
        if suppressed > 0 { meta["suppressed"] = "\(suppressed)" }
        logger.log(level: level, message(), metadata: meta)
    }
}
