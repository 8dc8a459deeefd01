import BFTFrameCodec

/// Why the transport dropped a frame: the keys of `TransportStats.droppedByReason` (by
/// `label`) and, prefixed `transport_`, reasons of the node's `bft_messages_dropped_total`.
///
/// Labels are snake_case like every other reason in the project (the core's `DropReason`, the
/// session's `SessionError`), so one metric's label values read alike whatever layer counted.
public enum TransportDropReason: String, Sendable, CaseIterable {
    /// A peer's outbound queue was full; its oldest frames made room for new ones.
    case outboundQueueFull = "outbound_queue_full"
    /// Sent to a replica that is not one of our peers.
    case unknownReplica = "unknown_replica"
    /// Sent on an accepted connection that is gone.
    case unknownConnection = "unknown_connection"
    /// Refused to send a kind the receiver would reject (and close the connection for).
    case unknownKind = "unknown_kind"
    /// Refused to send a frame over the receiver's limit (or over the queue's byte limit).
    case outboundTooLarge = "outbound_too_large"
    /// Sent after, or still queued at, shutdown.
    case shutdown = "shutdown"
    /// Still queued when its accepted connection closed.
    case connectionClosed = "connection_closed"
    /// Arrived on a connection we dialed (peers never send on those).
    case unexpectedFrameOnOutbound = "unexpected_frame_on_outbound"
    /// Complete inbound frames held back for backpressure when the connection closed.
    case heldAtClose = "held_at_close"
    /// A reply that did not fit its client connection's own queue (that connection is closed).
    case clientOutboundQueueFull = "client_outbound_queue_full"
    /// A reply that did not fit the budget all client connections share.
    case clientOutboundBudget = "client_outbound_budget"

    /// The statistics and metric label.
    public var label: String { rawValue }
}

/// Why the transport closed a connection or saw it fail: the keys of
/// `TransportStats.closedByReason` (by `label`, snake_case).
public enum ConnectionCloseReason: Sendable, Equatable {
    /// A frame header broke the rules (`FrameError.label`: `bad_magic`, `oversized`, …).
    case frame(FrameError)
    /// The session layer closed it (`session_` + its reason: `session_handshake_timeout`, …).
    case session(String)
    /// The decoder's buffer limit was reached.
    case bufferLimit
    /// A plain I/O error (reset, refused, …).
    case io
    /// Too many penalties reported by a higher layer (`Transport.penalize`).
    case penalties
    /// Refused on accept: `WireLimits.maxInboundConnections` was reached.
    case tooManyConnections
    /// A client that does not read its replies overflowed its queue.
    case clientOutboundQueueFull
    /// Closed on request of a higher layer (`Transport.disconnect`): `disconnect_` + the first
    /// word of its reason (see `StatsRecorder.label`).
    case disconnect(String)

    /// The statistics label; low-cardinality (reasons from higher layers are cut to one word).
    public var label: String {
        switch self {
        case .frame(let error): return error.label
        case .session(let reason): return "session_" + reason
        case .bufferLimit: return "buffer_limit"
        case .io: return "io"
        case .penalties: return "penalties"
        case .tooManyConnections: return "too_many_connections"
        case .clientOutboundQueueFull: return TransportDropReason.clientOutboundQueueFull.label
        case .disconnect(let reason): return "disconnect_" + StatsRecorder.label(reason)
        }
    }
}
