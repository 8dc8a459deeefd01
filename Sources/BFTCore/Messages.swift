import BFTCrypto

/// Message kinds on the wire. The frame header carries this byte; the body is the message encoding.
public enum MessageKind: UInt8, Sendable, CaseIterable {
    case request = 1
    case reply = 2
    case prePrepare = 3
    case prepare = 4
    case commit = 5
    case checkpoint = 6
    case viewChange = 7
    case newView = 8
    case status = 9
    case fetch = 10
    case catchUp = 11
    case stateTransfer = 12
    case batch = 13
}

/// Length of every signature field (Ed25519; the simulator's stand-in uses the same size).
public let signatureByteCount = 64

/// A message with a signature over `[kind] ++ clusterID ++ fields`. The signature is the last
/// 64 bytes of the encoding, so the signed bytes are the encoding minus its tail plus a
/// five-byte domain prefix: the kind stops a signature being reused for another message type,
/// the cluster id stops replay across clusters.
public protocol SignedMessage: Sendable, Equatable {
    static var kind: MessageKind { get }
    var signature: [UInt8] { get set }
    /// The principal whose key must have produced `signature`.
    var signer: Principal { get }
    func encodeFields(into w: inout WireWriter)
    /// The fields the signature covers; all of them except where a message says otherwise.
    func encodeSignedFields(into w: inout WireWriter)
    /// Decodes the fields (not the signature) from `r`.
    static func decodeFields(_ r: inout WireReader, limits: MessageLimits) throws(DecodeError) -> Self
    /// Decodes fields and signature from `r` (a message inside another, or a whole one).
    static func decodeInline(_ r: inout WireReader, limits: MessageLimits) throws(DecodeError) -> Self
}

extension SignedMessage {
    public func encodeSignedFields(into w: inout WireWriter) { encodeFields(into: &w) }

    public func signingBytes(clusterID: UInt32) -> [UInt8] {
        var w = WireWriter()
        w.u8(Self.kind.rawValue)
        w.u32(clusterID)
        encodeSignedFields(into: &w)
        return w.bytes
    }

    /// Full canonical encoding: fields followed by the signature.
    public var encoded: [UInt8] {
        var w = WireWriter()
        encode(into: &w)
        return w.bytes
    }

    public func encode(into w: inout WireWriter) {
        encodeFields(into: &w)
        precondition(signature.count == signatureByteCount, "encoding an unsigned \(Self.kind)")
        w.raw(signature)
    }

    public static func decodeInline(_ r: inout WireReader, limits: MessageLimits) throws(DecodeError) -> Self {
        var m = try decodeFields(&r, limits: limits)
        m.signature = try r.raw(signatureByteCount)
        return m
    }

    public static func decode(_ bytes: [UInt8], limits: MessageLimits = .default) throws(DecodeError) -> Self {
        var r = WireReader(bytes)
        let m = try decodeInline(&r, limits: limits)
        try r.finish()
        return m
    }

    public mutating func sign(with signer: any MessageSigner, clusterID: UInt32) {
        signature = signer.sign(signingBytes(clusterID: clusterID))
    }

    public func signed(with signer: any MessageSigner, clusterID: UInt32) -> Self {
        var copy = self
        copy.sign(with: signer, clusterID: clusterID)
        return copy
    }
}

func decodeList<T: SignedMessage>(_ r: inout WireReader, field: String, limit: Int, limits: MessageLimits) throws(DecodeError) -> [T] {
    let n = try r.count(field: field, limit: limit, minElementBytes: signatureByteCount)
    var out: [T] = []
    out.reserveCapacity(n)
    for _ in 0..<n { out.append(try T.decodeInline(&r, limits: limits)) }
    return out
}

func encodeList<T: SignedMessage>(_ list: [T], into w: inout WireWriter) {
    w.u32(UInt32(list.count))
    for m in list { m.encode(into: &w) }
}

func decodeReplica(_ r: inout WireReader) throws(DecodeError) -> ReplicaID { Int(try r.u16()) }

// MARK: - Client messages

/// ⟨REQUEST, o, t, c⟩σc. `timestamp` orders a client's requests; `sessionStart` marks the first
/// request of a client session, whose timestamp may jump ahead of the last one executed.
/// Within a session timestamps are consecutive, which lets replicas keep each client's
/// requests in timestamp order even with several outstanding (causal order).
public struct Request: SignedMessage, Hashable {
    public static let kind = MessageKind.request
    public var client: ClientID { didSet { refreshDigest() } }
    public var timestamp: UInt64 { didSet { refreshDigest() } }
    public var sessionStart: Bool { didSet { refreshDigest() } }
    public var operation: [UInt8] { didSet { refreshDigest() } }
    public var signature: [UInt8] { didSet { refreshDigest() } }
    /// SHA-256 of the signed request's encoding: the request's identity in batches and logs.
    /// Computed once when the request is made, decoded or changed, not at every use (the
    /// verifier, the pre-prepare's batch digest and execution all need it).
    public private(set) var digest: Digest = .zero

    public init(client: ClientID, timestamp: UInt64, sessionStart: Bool, operation: [UInt8], signature: [UInt8] = []) {
        self.client = client
        self.timestamp = timestamp
        self.sessionStart = sessionStart
        self.operation = operation
        self.signature = signature
        refreshDigest()
    }

    public var signer: Principal { .client(client) }

    private mutating func refreshDigest() {
        var w = WireWriter(capacity: 17 + operation.count + signature.count)
        encodeFields(into: &w)
        w.raw(signature)
        digest = SHA256.hash(w.bytes)
    }

    public static func == (a: Request, b: Request) -> Bool {
        a.client == b.client && a.timestamp == b.timestamp && a.sessionStart == b.sessionStart
            && a.operation == b.operation && a.signature == b.signature
    }

    public func hash(into h: inout Hasher) { h.combine(digest) }

    public func encodeFields(into w: inout WireWriter) {
        w.u32(client); w.u64(timestamp); w.bool(sessionStart); w.blob(operation)
    }

    public static func decodeFields(_ r: inout WireReader, limits: MessageLimits) throws(DecodeError) -> Request {
        let c = try r.u32(), t = try r.u64(), s = try r.bool()
        let op = try r.blob(field: "operation", limit: limits.maxOperationBytes)
        return Request(client: c, timestamp: t, sessionStart: s, operation: op)
    }

    /// Decodes fields and signature, computing the digest once (the generic path would hash
    /// the request twice: once without its signature, once when the signature is set).
    public static func decodeInline(_ r: inout WireReader, limits: MessageLimits) throws(DecodeError) -> Request {
        let c = try r.u32(), t = try r.u64(), s = try r.bool()
        let op = try r.blob(field: "operation", limit: limits.maxOperationBytes)
        let sig = try r.raw(signatureByteCount)
        return Request(client: c, timestamp: t, sessionStart: s, operation: op, signature: sig)
    }
}

/// ⟨REPLY, v, t, c, i, r⟩σi, signed once per executed batch: `entries` lists the digest of
/// (client, timestamp, result) of every request the batch executed, and the signature covers
/// (view, seq, replica, entries) only. The reply is authentic for this client when the
/// signature verifies and its own entry is in the list. One signature per batch instead of one
/// per request removes most of the replicas' signing work.
public struct Reply: SignedMessage, Hashable {
    public static let kind = MessageKind.reply
    public var view: ViewNum
    /// Sequence number of the batch that executed the request (0 for a reply from the cache).
    public var seq: SeqNum
    public var timestamp: UInt64
    public var client: ClientID
    public var replica: ReplicaID
    public var result: [UInt8]
    public var entries: [Digest]
    public var signature: [UInt8] = []

    public init(view: ViewNum, timestamp: UInt64, client: ClientID, replica: ReplicaID, result: [UInt8],
                seq: SeqNum = 0, entries: [Digest]? = nil) {
        self.view = view; self.seq = seq; self.timestamp = timestamp; self.client = client; self.replica = replica
        self.result = result
        self.entries = entries ?? [Reply.entryDigest(client: client, timestamp: timestamp, result: result)]
    }

    public var signer: Principal { .replica(replica) }

    public static func entryDigest(client: ClientID, timestamp: UInt64, result: [UInt8]) -> Digest {
        var w = WireWriter(capacity: 16 + result.count)
        w.u32(client); w.u64(timestamp); w.blob(result)
        return SHA256.hash(w.bytes)
    }

    public var entryDigest: Digest { Reply.entryDigest(client: client, timestamp: timestamp, result: result) }

    /// The reply's own entry is among the signed ones.
    public var isCoveredBySignature: Bool { entries.contains(entryDigest) }

    public func encodeFields(into w: inout WireWriter) {
        w.u64(view); w.u64(seq); w.u64(timestamp); w.u32(client); w.u16(UInt16(replica)); w.blob(result)
        w.u32(UInt32(entries.count))
        for e in entries { w.digest(e) }
    }

    public func encodeSignedFields(into w: inout WireWriter) {
        w.u64(view); w.u64(seq); w.u16(UInt16(replica))
        w.u32(UInt32(entries.count))
        for e in entries { w.digest(e) }
    }

    public static func decodeFields(_ r: inout WireReader, limits: MessageLimits) throws(DecodeError) -> Reply {
        let v = try r.u64(), n = try r.u64(), t = try r.u64(), c = try r.u32(), i = try decodeReplica(&r)
        let res = try r.blob(field: "result", limit: limits.maxResultBytes)
        let k = try r.count(field: "entries", limit: limits.maxRequestsPerBatch, minElementBytes: Digest.byteCount)
        var entries: [Digest] = []
        entries.reserveCapacity(k)
        for _ in 0..<k { entries.append(try r.digest()) }
        return Reply(view: v, timestamp: t, client: c, replica: i, result: res, seq: n, entries: entries)
    }
}

// MARK: - Normal case

/// ⟨PRE-PREPARE, v, n, d⟩σp with the batch piggybacked. An empty batch is PBFT's null request,
/// used to fill gaps in a new view.
///
/// The signature covers (v, n, p, d) only, not the requests: d binds them. So the signed header
/// (`PrePrepareHeader`) stands for the pre-prepare in prepared certificates, view changes and
/// NEW-VIEWs without carrying the batch, and a body obtained elsewhere is checked against d
/// (PBFT's implementation does the same, §5 of the TOCS paper). This keeps VIEW-CHANGE and
/// NEW-VIEW sizes independent of request sizes.
public struct PrePrepare: SignedMessage, Hashable {
    public static let kind = MessageKind.prePrepare
    public var view: ViewNum
    public var seq: SeqNum
    public var replica: ReplicaID
    /// The batch. Setting it recomputes `digest` (computed once, not per use).
    public var requests: [Request] { didSet { digest = Self.batchDigest(requests) } }
    /// Digest of the batch: SHA-256 over the requests' digests in order.
    public private(set) var digest: Digest
    public var signature: [UInt8] = []

    public init(view: ViewNum, seq: SeqNum, replica: ReplicaID, requests: [Request]) {
        self.view = view; self.seq = seq; self.replica = replica; self.requests = requests
        self.digest = Self.batchDigest(requests)
    }

    /// Re-attaches a body to a signed header; the caller checked `batchDigest(requests) == header.digest`.
    public init(header: PrePrepareHeader, requests: [Request]) {
        self.view = header.view; self.seq = header.seq; self.replica = header.replica
        self.requests = requests
        self.digest = header.digest
        self.signature = header.signature
    }

    public var signer: Principal { .replica(replica) }

    /// The signed part without the body.
    public var header: PrePrepareHeader {
        PrePrepareHeader(view: view, seq: seq, replica: replica, digest: digest, signature: signature)
    }

    public static func batchDigest(_ requests: [Request]) -> Digest {
        SHA256.hash(parts: requests.map { $0.digest.bytes })
    }

    /// Digest of the null request (an empty batch).
    public static let nullDigest = batchDigest([])

    public func encodeFields(into w: inout WireWriter) {
        w.u64(view); w.u64(seq); w.u16(UInt16(replica))
        encodeList(requests, into: &w)
    }

    public func encodeSignedFields(into w: inout WireWriter) {
        w.u64(view); w.u64(seq); w.u16(UInt16(replica)); w.digest(digest)
    }

    public static func decodeFields(_ r: inout WireReader, limits: MessageLimits) throws(DecodeError) -> PrePrepare {
        let v = try r.u64(), n = try r.u64(), p = try decodeReplica(&r)
        let reqs: [Request] = try decodeList(&r, field: "requests", limit: limits.maxRequestsPerBatch, limits: limits)
        return PrePrepare(view: v, seq: n, replica: p, requests: reqs)
    }
}

/// The signed part of a pre-prepare: (v, n, p, d) and the primary's signature, whose signing
/// bytes are exactly those of the full `PrePrepare` (same kind, same fields). Never a message
/// of its own on the wire; it travels inside certificates, VIEW-CHANGEs and NEW-VIEWs.
public struct PrePrepareHeader: SignedMessage, Hashable {
    public static let kind = MessageKind.prePrepare
    public var view: ViewNum
    public var seq: SeqNum
    public var replica: ReplicaID
    public var digest: Digest
    public var signature: [UInt8] = []

    public init(view: ViewNum, seq: SeqNum, replica: ReplicaID, digest: Digest, signature: [UInt8] = []) {
        self.view = view; self.seq = seq; self.replica = replica; self.digest = digest; self.signature = signature
    }

    public var signer: Principal { .replica(replica) }

    /// Encoded size of a header (fields and signature).
    public static let encodedBytes = 8 + 8 + 2 + Digest.byteCount + signatureByteCount

    public func encodeFields(into w: inout WireWriter) {
        w.u64(view); w.u64(seq); w.u16(UInt16(replica)); w.digest(digest)
    }

    public static func decodeFields(_ r: inout WireReader, limits: MessageLimits) throws(DecodeError) -> PrePrepareHeader {
        PrePrepareHeader(view: try r.u64(), seq: try r.u64(), replica: try decodeReplica(&r), digest: try r.digest())
    }
}

/// A batch body sent to a replica that holds a certified digest without the requests (after a
/// NEW-VIEW, which carries digests only). The receiver checks `PrePrepare.batchDigest(requests)`
/// against the digest it wants, and the verifier checks every request's client signature, so
/// the sender's signature (over the batch digest, computed once) only attributes the message.
public struct BatchBody: SignedMessage, Hashable {
    public static let kind = MessageKind.batch
    public var replica: ReplicaID
    public var requests: [Request] { didSet { digest = PrePrepare.batchDigest(requests) } }
    public private(set) var digest: Digest
    public var signature: [UInt8] = []

    public init(replica: ReplicaID, requests: [Request]) {
        self.replica = replica; self.requests = requests; self.digest = PrePrepare.batchDigest(requests)
    }

    public var signer: Principal { .replica(replica) }

    public func encodeFields(into w: inout WireWriter) {
        w.u16(UInt16(replica)); encodeList(requests, into: &w)
    }

    public func encodeSignedFields(into w: inout WireWriter) {
        w.u16(UInt16(replica)); w.digest(digest)
    }

    public static func decodeFields(_ r: inout WireReader, limits: MessageLimits) throws(DecodeError) -> BatchBody {
        let i = try decodeReplica(&r)
        let reqs: [Request] = try decodeList(&r, field: "requests", limit: limits.maxRequestsPerBatch, limits: limits)
        return BatchBody(replica: i, requests: reqs)
    }
}

/// ⟨PREPARE, v, n, d, i⟩σi and ⟨COMMIT, v, n, d, i⟩σi share a shape.
public struct Prepare: SignedMessage, Hashable {
    public static let kind = MessageKind.prepare
    public var view: ViewNum
    public var seq: SeqNum
    public var digest: Digest
    public var replica: ReplicaID
    public var signature: [UInt8] = []

    public init(view: ViewNum, seq: SeqNum, digest: Digest, replica: ReplicaID) {
        self.view = view; self.seq = seq; self.digest = digest; self.replica = replica
    }

    public var signer: Principal { .replica(replica) }

    public func encodeFields(into w: inout WireWriter) {
        w.u64(view); w.u64(seq); w.digest(digest); w.u16(UInt16(replica))
    }

    /// Encoded size (fields and signature).
    public static let encodedBytes = 8 + 8 + Digest.byteCount + 2 + signatureByteCount

    public static func decodeFields(_ r: inout WireReader, limits: MessageLimits) throws(DecodeError) -> Prepare {
        Prepare(view: try r.u64(), seq: try r.u64(), digest: try r.digest(), replica: try decodeReplica(&r))
    }
}

public struct Commit: SignedMessage, Hashable {
    public static let kind = MessageKind.commit
    public var view: ViewNum
    public var seq: SeqNum
    public var digest: Digest
    public var replica: ReplicaID
    public var signature: [UInt8] = []

    public init(view: ViewNum, seq: SeqNum, digest: Digest, replica: ReplicaID) {
        self.view = view; self.seq = seq; self.digest = digest; self.replica = replica
    }

    public var signer: Principal { .replica(replica) }

    public func encodeFields(into w: inout WireWriter) {
        w.u64(view); w.u64(seq); w.digest(digest); w.u16(UInt16(replica))
    }

    /// Encoded size (fields and signature).
    public static let encodedBytes = 8 + 8 + Digest.byteCount + 2 + signatureByteCount

    public static func decodeFields(_ r: inout WireReader, limits: MessageLimits) throws(DecodeError) -> Commit {
        Commit(view: try r.u64(), seq: try r.u64(), digest: try r.digest(), replica: try decodeReplica(&r))
    }
}

// MARK: - Checkpoints

/// ⟨CHECKPOINT, n, d, i⟩σi: `digest` is the digest of the checkpoint state after executing `seq`.
public struct Checkpoint: SignedMessage, Hashable {
    public static let kind = MessageKind.checkpoint
    public var seq: SeqNum
    public var digest: Digest
    public var replica: ReplicaID
    public var signature: [UInt8] = []

    public init(seq: SeqNum, digest: Digest, replica: ReplicaID) {
        self.seq = seq; self.digest = digest; self.replica = replica
    }

    public var signer: Principal { .replica(replica) }

    public func encodeFields(into w: inout WireWriter) {
        w.u64(seq); w.digest(digest); w.u16(UInt16(replica))
    }

    /// Encoded size (fields and signature).
    public static let encodedBytes = 8 + Digest.byteCount + 2 + signatureByteCount

    public static func decodeFields(_ r: inout WireReader, limits: MessageLimits) throws(DecodeError) -> Checkpoint {
        Checkpoint(seq: try r.u64(), digest: try r.digest(), replica: try decodeReplica(&r))
    }
}

// MARK: - View change

/// A prepared certificate: a signed pre-prepare header and 2f matching prepares from distinct
/// backups. It names the batch by digest; the body travels separately (see `PrePrepare`).
public struct PreparedCertificate: Sendable, Hashable {
    public var prePrepare: PrePrepareHeader
    public var prepares: [Prepare]

    public init(prePrepare: PrePrepareHeader, prepares: [Prepare]) {
        self.prePrepare = prePrepare; self.prepares = prepares
    }

    /// Largest encoding for `prepares` prepares.
    public static func maxEncodedBytes(prepares: Int) -> Int {
        PrePrepareHeader.encodedBytes + 4 + prepares * Prepare.encodedBytes
    }

    func encode(into w: inout WireWriter) {
        prePrepare.encode(into: &w)
        encodeList(prepares, into: &w)
    }

    static func decode(_ r: inout WireReader, limits: MessageLimits) throws(DecodeError) -> PreparedCertificate {
        let pp = try PrePrepareHeader.decodeInline(&r, limits: limits)
        let ps: [Prepare] = try decodeList(&r, field: "prepares", limit: limits.maxProofMessages, limits: limits)
        return PreparedCertificate(prePrepare: pp, prepares: ps)
    }
}

/// ⟨VIEW-CHANGE, v+1, n, C, P, i⟩σi: the stable checkpoint `stableSeq` with its proof `C`
/// (2f+1 CHECKPOINTs, empty for the genesis checkpoint 0) and the prepared certificates `P`
/// for sequence numbers above it.
public struct ViewChange: SignedMessage, Hashable {
    public static let kind = MessageKind.viewChange
    public var newView: ViewNum
    public var stableSeq: SeqNum
    public var stableDigest: Digest
    public var checkpointProof: [Checkpoint]
    public var prepared: [PreparedCertificate]
    public var replica: ReplicaID
    public var signature: [UInt8] = []

    public init(newView: ViewNum, stableSeq: SeqNum, stableDigest: Digest, checkpointProof: [Checkpoint], prepared: [PreparedCertificate], replica: ReplicaID) {
        self.newView = newView; self.stableSeq = stableSeq; self.stableDigest = stableDigest
        self.checkpointProof = checkpointProof; self.prepared = prepared; self.replica = replica
    }

    public var signer: Principal { .replica(replica) }

    public func encodeFields(into w: inout WireWriter) {
        w.u64(newView); w.u64(stableSeq); w.digest(stableDigest)
        encodeList(checkpointProof, into: &w)
        w.u32(UInt32(prepared.count))
        for c in prepared { c.encode(into: &w) }
        w.u16(UInt16(replica))
    }

    public static func decodeFields(_ r: inout WireReader, limits: MessageLimits) throws(DecodeError) -> ViewChange {
        let v = try r.u64(), s = try r.u64(), d = try r.digest()
        let proof: [Checkpoint] = try decodeList(&r, field: "checkpointProof", limit: limits.maxProofMessages, limits: limits)
        let n = try r.count(field: "prepared", limit: limits.maxPreparedCertificates, minElementBytes: 2 * signatureByteCount)
        var certs: [PreparedCertificate] = []
        certs.reserveCapacity(n)
        for _ in 0..<n { certs.append(try PreparedCertificate.decode(&r, limits: limits)) }
        let i = try decodeReplica(&r)
        return ViewChange(newView: v, stableSeq: s, stableDigest: d, checkpointProof: proof, prepared: certs, replica: i)
    }
}

/// ⟨NEW-VIEW, v+1, V, O⟩σp: 2f+1 view changes and the pre-prepares re-proposed from them, as
/// signed headers (digests): a replica that lacks a body fetches it and checks it against the
/// digest, so a NEW-VIEW's size does not grow with request sizes.
public struct NewView: SignedMessage, Hashable {
    public static let kind = MessageKind.newView
    public var view: ViewNum
    public var viewChanges: [ViewChange]
    public var prePrepares: [PrePrepareHeader]
    public var replica: ReplicaID
    public var signature: [UInt8] = []

    public init(view: ViewNum, viewChanges: [ViewChange], prePrepares: [PrePrepareHeader], replica: ReplicaID) {
        self.view = view; self.viewChanges = viewChanges; self.prePrepares = prePrepares; self.replica = replica
    }

    public var signer: Principal { .replica(replica) }

    public func encodeFields(into w: inout WireWriter) {
        w.u64(view)
        encodeList(viewChanges, into: &w)
        encodeList(prePrepares, into: &w)
        w.u16(UInt16(replica))
    }

    public static func decodeFields(_ r: inout WireReader, limits: MessageLimits) throws(DecodeError) -> NewView {
        let v = try r.u64()
        let vcs: [ViewChange] = try decodeList(&r, field: "viewChanges", limit: limits.maxProofMessages, limits: limits)
        let pps: [PrePrepareHeader] = try decodeList(&r, field: "prePrepares", limit: limits.maxPreparedCertificates, limits: limits)
        return NewView(view: v, viewChanges: vcs, prePrepares: pps, replica: try decodeReplica(&r))
    }
}

// MARK: - Catch-up and state transfer

/// Heartbeat: lets a lagging or partitioned replica learn that it is behind.
public struct Status: SignedMessage, Hashable {
    public static let kind = MessageKind.status
    public var view: ViewNum
    public var lastExecuted: SeqNum
    public var stableSeq: SeqNum
    public var replica: ReplicaID
    public var signature: [UInt8] = []

    public init(view: ViewNum, lastExecuted: SeqNum, stableSeq: SeqNum, replica: ReplicaID) {
        self.view = view; self.lastExecuted = lastExecuted; self.stableSeq = stableSeq; self.replica = replica
    }

    public var signer: Principal { .replica(replica) }

    public func encodeFields(into w: inout WireWriter) {
        w.u64(view); w.u64(lastExecuted); w.u64(stableSeq); w.u16(UInt16(replica))
    }

    public static func decodeFields(_ r: inout WireReader, limits: MessageLimits) throws(DecodeError) -> Status {
        Status(view: try r.u64(), lastExecuted: try r.u64(), stableSeq: try r.u64(), replica: try decodeReplica(&r))
    }
}

/// Asks a peer for what follows `lastExecuted`: committed certificates, the stable checkpoint's
/// state if we are behind it, and its NEW-VIEW if its view is above `view`. While assembling a
/// checkpoint state, `stateSeq`/`nextChunk` name the first chunk still missing; `batches` names
/// batch bodies this replica holds a certified digest for but not the requests.
public struct Fetch: SignedMessage, Hashable {
    public static let kind = MessageKind.fetch
    public var view: ViewNum
    public var lastExecuted: SeqNum
    public var replica: ReplicaID
    /// Checkpoint whose state we are assembling (0: none yet, send from chunk 0 of yours).
    public var stateSeq: SeqNum
    public var nextChunk: UInt32
    public var batches: [Digest]
    public var signature: [UInt8] = []

    /// Most batch digests one FETCH asks for.
    public static let maxBatches = 16

    public init(view: ViewNum, lastExecuted: SeqNum, replica: ReplicaID, stateSeq: SeqNum = 0, nextChunk: UInt32 = 0, batches: [Digest] = []) {
        self.view = view; self.lastExecuted = lastExecuted; self.replica = replica
        self.stateSeq = stateSeq; self.nextChunk = nextChunk; self.batches = batches
    }

    public var signer: Principal { .replica(replica) }

    public func encodeFields(into w: inout WireWriter) {
        w.u64(view); w.u64(lastExecuted); w.u16(UInt16(replica)); w.u64(stateSeq); w.u32(nextChunk)
        w.u32(UInt32(batches.count))
        for d in batches { w.digest(d) }
    }

    public static func decodeFields(_ r: inout WireReader, limits: MessageLimits) throws(DecodeError) -> Fetch {
        let v = try r.u64(), e = try r.u64(), i = try decodeReplica(&r), s = try r.u64(), c = try r.u32()
        let k = try r.count(field: "batches", limit: Fetch.maxBatches, minElementBytes: Digest.byteCount)
        var ds: [Digest] = []
        for _ in 0..<k { ds.append(try r.digest()) }
        return Fetch(view: v, lastExecuted: e, replica: i, stateSeq: s, nextChunk: c, batches: ds)
    }
}

/// A committed certificate: a signed pre-prepare header and 2f+1 matching commits.
/// Self-certifying, so a replica can execute it on the word of a single (possibly faulty) peer
/// once it has a body whose digest matches.
public struct CommittedCertificate: Sendable, Hashable {
    public var prePrepare: PrePrepareHeader
    public var commits: [Commit]

    public init(prePrepare: PrePrepareHeader, commits: [Commit]) {
        self.prePrepare = prePrepare; self.commits = commits
    }

    func encode(into w: inout WireWriter) {
        prePrepare.encode(into: &w)
        encodeList(commits, into: &w)
    }

    static func decode(_ r: inout WireReader, limits: MessageLimits) throws(DecodeError) -> CommittedCertificate {
        let pp = try PrePrepareHeader.decodeInline(&r, limits: limits)
        let cs: [Commit] = try decodeList(&r, field: "commits", limit: limits.maxProofMessages, limits: limits)
        return CommittedCertificate(prePrepare: pp, commits: cs)
    }
}

/// One entry of a CATCH-UP: a committed certificate and the batch it names.
public struct CatchUpEntry: Sendable, Hashable {
    public var certificate: CommittedCertificate
    public var requests: [Request]

    public init(certificate: CommittedCertificate, requests: [Request]) {
        self.certificate = certificate; self.requests = requests
    }

    /// The full pre-prepare (header and body).
    public var prePrepare: PrePrepare { PrePrepare(header: certificate.prePrepare, requests: requests) }
}

/// Answer to FETCH: committed certificates with their batches in sequence order (at most
/// `maxCatchUpEntries`, and at most `ProtocolConfig.maxCatchUpBytes` of batches after the first)
/// and, optionally, the sender's latest NEW-VIEW.
public struct CatchUp: SignedMessage, Hashable {
    public static let kind = MessageKind.catchUp
    public var entries: [CatchUpEntry]
    public var newView: NewView?
    public var replica: ReplicaID
    public var signature: [UInt8] = []

    public init(entries: [CatchUpEntry], newView: NewView?, replica: ReplicaID) {
        self.entries = entries; self.newView = newView; self.replica = replica
    }

    public var signer: Principal { .replica(replica) }

    public func encodeFields(into w: inout WireWriter) {
        w.u32(UInt32(entries.count))
        for e in entries {
            e.certificate.encode(into: &w)
            encodeList(e.requests, into: &w)
        }
        if let nv = newView { w.bool(true); nv.encode(into: &w) } else { w.bool(false) }
        w.u16(UInt16(replica))
    }

    public static func decodeFields(_ r: inout WireReader, limits: MessageLimits) throws(DecodeError) -> CatchUp {
        let n = try r.count(field: "entries", limit: limits.maxCatchUpEntries, minElementBytes: 2 * signatureByteCount)
        var entries: [CatchUpEntry] = []
        for _ in 0..<n {
            let cert = try CommittedCertificate.decode(&r, limits: limits)
            let reqs: [Request] = try decodeList(&r, field: "requests", limit: limits.maxRequestsPerBatch, limits: limits)
            entries.append(CatchUpEntry(certificate: cert, requests: reqs))
        }
        let nv: NewView? = try r.bool() ? try NewView.decodeInline(&r, limits: limits) : nil
        return CatchUp(entries: entries, newView: nv, replica: try decodeReplica(&r))
    }
}

/// The checkpoint digest is taken over a manifest, not over the state in one piece: the state is
/// cut into chunks of `ProtocolConfig.stateChunkBytes`, and the digest is SHA-256 over the total
/// length and every chunk's SHA-256. So a state of any size moves in chunks, each checked against
/// the certified digest on arrival, and no frame or buffer has to hold the whole state.
public struct StateManifest: Sendable, Hashable {
    public var totalBytes: UInt64
    public var chunkDigests: [Digest]

    public init(totalBytes: UInt64, chunkDigests: [Digest]) {
        self.totalBytes = totalBytes; self.chunkDigests = chunkDigests
    }

    /// The manifest of `state` cut into chunks of `chunkBytes` (an empty state has no chunks).
    public init(state: [UInt8], chunkBytes: Int) {
        precondition(chunkBytes > 0)
        var digests: [Digest] = []
        digests.reserveCapacity((state.count + chunkBytes - 1) / chunkBytes)
        var start = 0
        state.withUnsafeBytes { buf in
            while start < buf.count {
                let end = min(start + chunkBytes, buf.count)
                digests.append(SHA256.hash(UnsafeRawBufferPointer(rebasing: buf[start..<end])))
                start = end
            }
        }
        self.init(totalBytes: UInt64(state.count), chunkDigests: digests)
    }

    /// The checkpoint digest this manifest stands for.
    public var digest: Digest {
        var w = WireWriter(capacity: 24 + 32 * chunkDigests.count)
        w.raw(Array("PBFT-state".utf8)); w.u64(totalBytes); w.u32(UInt32(chunkDigests.count))
        for d in chunkDigests { w.digest(d) }
        return SHA256.hash(w.bytes)
    }

    /// Byte range of chunk `index` for chunks of `chunkBytes`.
    public func range(of index: Int, chunkBytes: Int) -> Range<Int> {
        let start = index * chunkBytes
        return start..<min(start + chunkBytes, Int(totalBytes))
    }

    func encode(into w: inout WireWriter) {
        w.u64(totalBytes); w.u32(UInt32(chunkDigests.count))
        for d in chunkDigests { w.digest(d) }
    }

    static func decode(_ r: inout WireReader, limits: MessageLimits) throws(DecodeError) -> StateManifest {
        let total = try r.u64()
        guard total <= UInt64(limits.maxStateBytes) else { throw .tooLarge(field: "state", size: Int(clamping: total), limit: limits.maxStateBytes) }
        let k = try r.count(field: "chunkDigests", limit: limits.maxStateChunks, minElementBytes: Digest.byteCount)
        var ds: [Digest] = []
        ds.reserveCapacity(k)
        for _ in 0..<k { ds.append(try r.digest()) }
        return StateManifest(totalBytes: total, chunkDigests: ds)
    }
}

/// State transfer, one chunk at a time: chunk `index` of the checkpoint state at `seq`, with the
/// manifest and its proof of stability (2f+1 CHECKPOINTs whose digest is the manifest's digest).
/// Every chunk is checked against the manifest, and the manifest against the proof, so nothing
/// needs the sender's word; its signature covers (seq, manifest digest, replica) only and is
/// made once per checkpoint, however many chunks and peers it serves.
public struct StateTransfer: SignedMessage, Hashable {
    public static let kind = MessageKind.stateTransfer
    public var seq: SeqNum
    public var proof: [Checkpoint]
    public var manifest: StateManifest
    public var index: UInt32
    public var chunk: [UInt8]
    public var replica: ReplicaID
    public var signature: [UInt8] = []

    public init(seq: SeqNum, proof: [Checkpoint], manifest: StateManifest, index: UInt32, chunk: [UInt8], replica: ReplicaID) {
        self.seq = seq; self.proof = proof; self.manifest = manifest; self.index = index; self.chunk = chunk; self.replica = replica
    }

    public var signer: Principal { .replica(replica) }

    public func encodeFields(into w: inout WireWriter) {
        w.u64(seq); encodeList(proof, into: &w); manifest.encode(into: &w); w.u32(index); w.blob(chunk); w.u16(UInt16(replica))
    }

    public func encodeSignedFields(into w: inout WireWriter) {
        w.u64(seq); w.digest(manifest.digest); w.u16(UInt16(replica))
    }

    public static func decodeFields(_ r: inout WireReader, limits: MessageLimits) throws(DecodeError) -> StateTransfer {
        let s = try r.u64()
        let proof: [Checkpoint] = try decodeList(&r, field: "proof", limit: limits.maxProofMessages, limits: limits)
        let manifest = try StateManifest.decode(&r, limits: limits)
        let index = try r.u32()
        let chunk = try r.blob(field: "chunk", limit: limits.stateChunkBytes)
        return StateTransfer(seq: s, proof: proof, manifest: manifest, index: index, chunk: chunk, replica: try decodeReplica(&r))
    }
}

// MARK: - The message sum type

public enum Message: Sendable, Equatable {
    case request(Request)
    case reply(Reply)
    case prePrepare(PrePrepare)
    case prepare(Prepare)
    case commit(Commit)
    case checkpoint(Checkpoint)
    case viewChange(ViewChange)
    case newView(NewView)
    case status(Status)
    case fetch(Fetch)
    case catchUp(CatchUp)
    case stateTransfer(StateTransfer)
    case batch(BatchBody)

    public var kind: MessageKind { payload.kindValue }

    /// The signed message inside, as an existential for generic handling.
    public var payload: any SignedMessage {
        switch self {
        case .request(let m): return m
        case .reply(let m): return m
        case .prePrepare(let m): return m
        case .prepare(let m): return m
        case .commit(let m): return m
        case .checkpoint(let m): return m
        case .viewChange(let m): return m
        case .newView(let m): return m
        case .status(let m): return m
        case .fetch(let m): return m
        case .catchUp(let m): return m
        case .stateTransfer(let m): return m
        case .batch(let m): return m
        }
    }

    public var signer: Principal { payload.signer }

    /// Body bytes (without frame header).
    public func encoded() -> [UInt8] { payload.encoded }

    public static func decode(kind: UInt8, body: [UInt8], limits: MessageLimits = .default) throws(DecodeError) -> Message {
        guard let k = MessageKind(rawValue: kind) else { throw .unknownKind(kind) }
        switch k {
        case .request: return .request(try Request.decode(body, limits: limits))
        case .reply: return .reply(try Reply.decode(body, limits: limits))
        case .prePrepare: return .prePrepare(try PrePrepare.decode(body, limits: limits))
        case .prepare: return .prepare(try Prepare.decode(body, limits: limits))
        case .commit: return .commit(try Commit.decode(body, limits: limits))
        case .checkpoint: return .checkpoint(try Checkpoint.decode(body, limits: limits))
        case .viewChange: return .viewChange(try ViewChange.decode(body, limits: limits))
        case .newView: return .newView(try NewView.decode(body, limits: limits))
        case .status: return .status(try Status.decode(body, limits: limits))
        case .fetch: return .fetch(try Fetch.decode(body, limits: limits))
        case .catchUp: return .catchUp(try CatchUp.decode(body, limits: limits))
        case .stateTransfer: return .stateTransfer(try StateTransfer.decode(body, limits: limits))
        case .batch: return .batch(try BatchBody.decode(body, limits: limits))
        }
    }

    public static func == (a: Message, b: Message) -> Bool { a.kind == b.kind && a.encoded() == b.encoded() }
}

extension SignedMessage {
    var kindValue: MessageKind { Self.kind }
}
