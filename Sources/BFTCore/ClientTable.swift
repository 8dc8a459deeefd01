import BFTCrypto

/// Client table entry: exactly-once execution and the reply cache. Part of the checkpoint state,
/// so identical on every correct replica.
struct ClientRecord: Equatable {
    var lastTimestamp: UInt64 = 0
    /// Most recent replies, oldest first, at most `replyCacheDepth`.
    var replies: [(timestamp: UInt64, result: [UInt8])] = []

    static func == (a: ClientRecord, b: ClientRecord) -> Bool {
        a.lastTimestamp == b.lastTimestamp && a.replies.elementsEqual(b.replies) { $0.timestamp == $1.timestamp && $0.result == $1.result }
    }
}

/// A reply this replica signed when it executed the request (its batch's entries and the
/// signature), kept so a retransmitted or replayed request costs no new signature. The result
/// itself is in the client table.
struct SignedReplyStub {
    var timestamp: UInt64
    var view: ViewNum
    var seq: SeqNum
    var entries: [Digest]
    var signature: [UInt8]

    init(_ reply: Reply) {
        timestamp = reply.timestamp; view = reply.view; seq = reply.seq; entries = reply.entries; signature = reply.signature
    }

    func reply(client: ClientID, replica: ReplicaID, result: [UInt8]) -> Reply {
        var r = Reply(view: view, timestamp: timestamp, client: client, replica: replica, result: result, seq: seq, entries: entries)
        r.signature = signature
        return r
    }
}

/// Requests waiting to be ordered, per client in timestamp order, with a fair deterministic
/// order across clients. Bounded: `maxPerClient` per configured client.
struct PendingRequests {
    var byClient: [ClientID: [Request]] = [:]
    /// Requests accepted on their client's session without a signature check: never proposed,
    /// and never a reason to suspect the primary, until a checked copy arrives.
    var unchecked: Set<Digest> = []
    /// Clients with pending requests, in the order they first had one (round robin for batching).
    var order: [ClientID] = []
    var rotation = 0
    let maxPerClient: Int

    init(maxPerClient: Int) { self.maxPerClient = maxPerClient }

    var isEmpty: Bool { order.isEmpty }
    var count: Int { byClient.values.reduce(0) { $0 + $1.count } }

    enum InsertResult { case inserted, duplicate, nowChecked, full }

    func isChecked(_ r: Request) -> Bool { unchecked.isEmpty || !unchecked.contains(r.digest) }

    mutating func insert(_ r: Request, signatureChecked: Bool = true) -> InsertResult {
        var list = byClient[r.client] ?? []
        if let existing = list.first(where: { $0.timestamp == r.timestamp }) {
            if signatureChecked && existing.digest == r.digest && unchecked.remove(r.digest) != nil { return .nowChecked }
            return .duplicate
        }
        if !signatureChecked { unchecked.insert(r.digest) }
        if list.count >= maxPerClient { return .full }
        let idx = list.firstIndex { $0.timestamp > r.timestamp } ?? list.count
        list.insert(r, at: idx)
        if list.count == 1 { order.append(r.client) }
        byClient[r.client] = list
        return .inserted
    }

    mutating func removeUpTo(client: ClientID, timestamp: UInt64) {
        guard var list = byClient[client] else { return }
        if !unchecked.isEmpty { for r in list where r.timestamp <= timestamp { unchecked.remove(r.digest) } }
        list.removeAll { $0.timestamp <= timestamp }
        if list.isEmpty {
            byClient[client] = nil
            order.removeAll { $0 == client }
        } else {
            byClient[client] = list
        }
    }
}

/// The client table (§4.1): everything a replica keeps per client. It exists so that each
/// request executes at most once and in its client's timestamp order, a retransmitted request
/// gets the reply it already had, and requests wait here until a pre-prepare orders them.
///
/// `records` is part of the checkpoint state (identical on every correct replica); the rest is
/// this replica's own: the replies it signed, its replay budget, and the requests it holds.
struct ClientTable {
    /// Per client: the last timestamp executed and the most recent replies (the reply cache).
    var records: [ClientID: ClientRecord] = [:]
    /// The replies this replica signed, per client, for resending to a retransmitted request
    /// without signing again. Local (the signature is this replica's), so not in the checkpoint;
    /// at most `replyCacheDepth` per client, results omitted (they are in `records`).
    var signedReplies: [ClientID: [SignedReplyStub]] = [:]
    /// Cached replies resent per client in the current `retransmitTicks` interval.
    var replayBudget: [ClientID: (interval: UInt64, sent: Int)] = [:]
    /// Requests received and not yet executed.
    var pending: PendingRequests
    /// Highest timestamp per client assigned to a sequence number in this view but not yet executed.
    var proposedTimestamps: [ClientID: UInt64] = [:]
    /// Digests this replica already asked its caller to verify (bounded by the pending requests).
    var verificationAsked: Set<Digest> = []
    /// When the unchecked requests no pre-prepare carries get checked (see `askToVerifyUnchecked`).
    var uncheckedDeadline: UInt64?

    init(maxPendingPerClient: Int) { pending = PendingRequests(maxPerClient: maxPendingPerClient) }

    /// Nothing executed twice (§4.2): each client's cached replies are in increasing timestamp
    /// order, none past what it last executed; and the table stays within its bounds.
    func invariantViolations(config: ProtocolConfig) -> [String] {
        var v: [String] = []
        for (c, record) in records {
            if record.replies.count > config.replyCacheDepth { v.append("client \(c) caches \(record.replies.count) replies") }
            var last: UInt64 = 0
            for reply in record.replies {
                if reply.timestamp <= last || reply.timestamp > record.lastTimestamp {
                    v.append("client \(c) reply cache out of order at timestamp \(reply.timestamp)")
                    break
                }
                last = reply.timestamp
            }
            if let pending = pending.byClient[c], pending.count > config.maxPendingPerClient {
                v.append("client \(c) has \(pending.count) pending requests")
            }
        }
        return v
    }
}
