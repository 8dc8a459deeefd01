import BFTCrypto

/// The client side of PBFT (§4.1) as a deterministic state machine: it signs requests,
/// multicasts them to every replica, accepts a result once f+1 replicas sent matching replies,
/// and retransmits on timeout. Several requests may be outstanding (the window); timestamps are
/// consecutive within a session so replicas can keep them in order.
public struct ClientCore {
    public let id: ClientID
    public let config: ProtocolConfig
    let signer: any MessageSigner
    /// Most requests outstanding at once.
    public let window: Int
    /// Ticks before the first retransmission; doubles per retry up to `maxRetransmitTicks`.
    public let retransmitTicks: UInt64
    public let maxRetransmitTicks: UInt64

    public struct Outstanding {
        public let request: Request
        public let sentAt: UInt64
        var nextRetransmit: UInt64
        var retries: Int
        /// Tick after which the request is given up (nil: never).
        var deadline: UInt64?
        /// Replies not yet verified, one per replica: signatures are checked only for f+1 that
        /// match (`onUnverifiedReply`), not for every reply of every replica.
        var unverified: [ReplicaID: Reply] = [:]
        /// Result digest reported by each replica.
        var votes: [ReplicaID: Digest] = [:]
        var results: [Digest: [UInt8]] = [:]
        var views: [ReplicaID: ViewNum] = [:]
    }

    public struct Completion: Sendable, Equatable {
        public let timestamp: UInt64
        public let result: [UInt8]
        public let latencyTicks: UInt64
        public let retries: Int
        /// The lowest view among the f+1 matching replies: at least one correct replica executed
        /// the request from a pre-prepare of this view or a later one (a failover benchmark uses
        /// it to see the first commit of a new view).
        public let view: ViewNum
    }

    public struct Output: Sendable {
        /// Requests to multicast to every replica.
        public var broadcasts: [Request] = []
        public var completions: [Completion] = []
        public var retransmissions = 0
        /// Requests given up at their deadline (timestamps); no reply for them is accepted later.
        public var timedOut: [UInt64] = []
    }

    public private(set) var now: UInt64 = 0
    var nextTimestamp: UInt64
    var sessionStarted = false
    public private(set) var outstanding: [UInt64: Outstanding] = [:]
    public private(set) var droppedReplies = 0

    /// `initialTimestamp` must exceed every timestamp this client used before (a clock reading
    /// in microseconds works); the first request is marked as a session start.
    public init(id: ClientID, config: ProtocolConfig, signer: any MessageSigner, initialTimestamp: UInt64,
                window: Int = 1, retransmitTicks: UInt64 = 100, maxRetransmitTicks: UInt64 = 1600) {
        precondition(window >= 1 && window <= config.maxPendingPerClient)
        self.id = id
        self.config = config
        self.signer = signer
        self.nextTimestamp = max(initialTimestamp, 1)
        self.window = window
        self.retransmitTicks = retransmitTicks
        self.maxRetransmitTicks = maxRetransmitTicks
    }

    public var canSubmit: Bool { outstanding.count < window }

    /// Signs and sends a new request. Precondition: `canSubmit`.
    /// `timeoutTicks`: give up after that many ticks (reported in `Output.timedOut`).
    public mutating func submit(_ operation: [UInt8], timeoutTicks: UInt64? = nil) -> (timestamp: UInt64, output: Output) {
        precondition(canSubmit, "client window full")
        let t = nextTimestamp
        nextTimestamp += 1
        let r = Request(client: id, timestamp: t, sessionStart: !sessionStarted, operation: operation)
            .signed(with: signer, clusterID: config.clusterID)
        sessionStarted = true
        outstanding[t] = Outstanding(request: r, sentAt: now, nextRetransmit: now + retransmitTicks, retries: 0,
                                     deadline: timeoutTicks.map { now + $0 })
        var out = Output()
        out.broadcasts.append(r)
        return (t, out)
    }

    /// Takes a reply whose signature was NOT checked yet and decides what to verify: nothing
    /// until f+1 replicas sent the same result for an outstanding request, then exactly those
    /// f+1 replies (the caller verifies them and feeds the good ones to `onReply`). A client thus
    /// checks f+1 signatures per request, not one per reply of every replica, and a faulty
    /// replica's reply is never counted unverified.
    public mutating func onUnverifiedReply(_ reply: Reply) -> [Reply] {
        guard reply.client == id, reply.replica >= 0, reply.replica < config.n, var o = outstanding[reply.timestamp] else {
            droppedReplies += 1
            return []
        }
        o.unverified[reply.replica] = reply
        let d = SHA256.hash(reply.result)
        let verified = o.votes.filter { $0.value == d && o.unverified[$0.key] == nil }.count
        let matching = o.unverified.values.filter { $0.result == reply.result }.sorted { $0.replica < $1.replica }
        guard verified + matching.count >= config.replyQuorum else {
            outstanding[reply.timestamp] = o
            return []
        }
        for r in matching { o.unverified[r.replica] = nil }
        outstanding[reply.timestamp] = o
        return matching
    }

    /// Takes a reply whose signature was verified at the edge.
    public mutating func onReply(_ reply: Reply) -> Output {
        var out = Output()
        guard reply.client == id, reply.replica >= 0, reply.replica < config.n, var o = outstanding[reply.timestamp] else {
            droppedReplies += 1
            return out
        }
        let d = SHA256.hash(reply.result)
        o.votes[reply.replica] = d
        o.results[d] = reply.result
        o.views[reply.replica] = reply.view
        let matching = o.votes.filter { $0.value == d }
        if matching.count >= config.replyQuorum {
            outstanding[reply.timestamp] = nil
            let view = matching.keys.compactMap { o.views[$0] }.min() ?? reply.view
            out.completions.append(Completion(timestamp: reply.timestamp, result: reply.result,
                                              latencyTicks: now - o.sentAt, retries: o.retries, view: view))
        } else {
            outstanding[reply.timestamp] = o
        }
        return out
    }

    /// Advances time; retransmits overdue requests to every replica, oldest first.
    public mutating func tick() -> Output {
        now += 1
        var out = Output()
        for t in outstanding.keys.sorted() {
            if let deadline = outstanding[t]?.deadline, now >= deadline {
                outstanding[t] = nil
                out.timedOut.append(t)
                continue
            }
            guard var o = outstanding[t], now >= o.nextRetransmit else { continue }
            o.retries += 1
            let backoff = min(retransmitTicks << UInt64(min(o.retries, 16)), maxRetransmitTicks)
            o.nextRetransmit = now + backoff
            outstanding[t] = o
            out.broadcasts.append(o.request)
            out.retransmissions += 1
        }
        return out
    }
}
