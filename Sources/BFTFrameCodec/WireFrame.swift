import NIOCore

/// Size limits for everything the transport buffers.
///
/// Why every limit exists: a replica must survive arbitrary bytes from the network, so no
/// queue, buffer or counter that a remote party can grow may be unbounded. Each limit below
/// caps one such structure; exceeding it drops (outbound) or pauses reading (inbound) or
/// closes the offending connection (malformed input), never crashes.
public struct WireLimits: Sendable, Equatable {
    /// Largest body accepted for non-client kinds. Large because state transfer ships
    /// checkpoints in one frame.
    public var maxFrameBodyBytes: Int
    /// Largest body accepted for kinds marked as client kinds. Clients are untrusted and
    /// numerous, so a much smaller bound keeps their per-connection buffering cheap.
    public var maxClientFrameBodyBytes: Int
    /// Frames waiting to be written on one connection (or, for a dialed peer, while it is
    /// unreachable). When full the oldest frame is dropped: newer protocol messages
    /// supersede older ones, and PBFT tolerates loss.
    public var maxOutboundQueuedFramesPerConnection: Int
    /// Bytes waiting to be written on one connection; same policy as the frame count.
    public var maxOutboundQueuedBytesPerConnection: Int
    /// Bytes of replies waiting for one client (accepted) connection, counting those handed to
    /// the socket but not yet written. Much smaller than the peer limit: a client that does not
    /// read its replies is not keeping up, and there may be a thousand of them. A reply that
    /// does not fit closes that connection (`client_outbound_queue_full`); the client reconnects
    /// and retransmits.
    public var maxOutboundQueuedBytesPerClientConnection: Int
    /// Bytes of replies waiting for all client connections together (same accounting). When
    /// spent, replies to clients are dropped (`client_outbound_budget`) until writes free some:
    /// without it, many clients that never read could each hold their own limit (12 such
    /// connections grew a replica by 830 MB). Peer connections do not use it.
    public var maxOutboundQueuedBytesAllClients: Int
    /// Frames delivered to the consumer but not yet released, for the whole node. Above
    /// this, connections stop reading until the count falls below half.
    public var maxInboundQueuedFrames: Int
    /// Penalties (reported by higher layers via `Transport.penalize`) after which the
    /// connection is closed.
    public var maxMalformedFramesPerConnection: Int
    /// Accepted connections open at once. Each one may buffer up to one maximal frame, so
    /// without this cap memory would be unbounded in the number of connections.
    public var maxInboundConnections: Int

    public init(
        maxFrameBodyBytes: Int = 16 * 1024 * 1024,
        maxClientFrameBodyBytes: Int = 64 * 1024,
        maxOutboundQueuedFramesPerConnection: Int = 4096,
        maxOutboundQueuedBytesPerConnection: Int = 64 * 1024 * 1024,
        maxOutboundQueuedBytesPerClientConnection: Int = 4 * 1024 * 1024,
        maxOutboundQueuedBytesAllClients: Int = 64 * 1024 * 1024,
        maxInboundQueuedFrames: Int = 8192,
        maxMalformedFramesPerConnection: Int = 8,
        maxInboundConnections: Int = 1024
    ) {
        self.maxFrameBodyBytes = maxFrameBodyBytes
        self.maxClientFrameBodyBytes = maxClientFrameBodyBytes
        self.maxOutboundQueuedFramesPerConnection = maxOutboundQueuedFramesPerConnection
        self.maxOutboundQueuedBytesPerConnection = maxOutboundQueuedBytesPerConnection
        self.maxOutboundQueuedBytesPerClientConnection = maxOutboundQueuedBytesPerClientConnection
        self.maxOutboundQueuedBytesAllClients = maxOutboundQueuedBytesAllClients
        self.maxInboundQueuedFrames = maxInboundQueuedFrames
        self.maxMalformedFramesPerConnection = maxMalformedFramesPerConnection
        self.maxInboundConnections = maxInboundConnections
    }

    public static let `default` = WireLimits()
}

/// Everything a receiver needs to judge a frame header: which cluster we are, which kinds
/// exist, which kinds come from (untrusted, numerous) clients and the size limits.
///
/// Why a separate value: the decoder, the transport's outbound checks and tests all apply
/// exactly the same rules, so they are written once here.
public struct FrameRules: Sendable {
    public var clusterID: UInt32
    public var knownKinds: Set<UInt8>
    public var clientKinds: Set<UInt8>
    public var limits: WireLimits

    public init(clusterID: UInt32, knownKinds: Set<UInt8>, clientKinds: Set<UInt8> = [], limits: WireLimits = .default) {
        self.clusterID = clusterID
        self.knownKinds = knownKinds
        self.clientKinds = clientKinds
        self.limits = limits
    }

    /// The body limit that applies to `kind`: client kinds get the small client limit.
    public func maxBodyBytes(for kind: UInt8) -> Int {
        self.clientKinds.contains(kind) ? self.limits.maxClientFrameBodyBytes : self.limits.maxFrameBodyBytes
    }
}

/// Why a frame (and so its connection) was rejected.
///
/// Header errors are fatal for the connection: the stream has no resynchronisation marker,
/// so after a bad header nothing that follows can be trusted to be frame-aligned.
public enum FrameError: Error, Equatable, Sendable, CustomStringConvertible {
    case badMagic
    case unsupportedVersion(UInt8)
    case nonZeroFlags
    case wrongCluster(UInt32)
    case oversized(UInt32)
    case unknownKind(UInt8)
    /// The peer closed the connection in the middle of a frame.
    case truncated(expected: Int, received: Int)

    /// A fixed, low-cardinality label for statistics and log throttling. Why not
    /// `description`: it embeds values chosen by the remote side, which would let a peer
    /// create unboundedly many dictionary keys.
    public var label: String {
        switch self {
        case .badMagic: return "bad_magic"
        case .unsupportedVersion: return "unsupported_version"
        case .nonZeroFlags: return "non_zero_flags"
        case .wrongCluster: return "wrong_cluster"
        case .oversized: return "oversized"
        case .unknownKind: return "unknown_kind"
        case .truncated: return "truncated"
        }
    }

    public var description: String {
        switch self {
        case .badMagic: return "bad magic (not a PBFT frame)"
        case .unsupportedVersion(let v): return "unsupported frame version \(v)"
        case .nonZeroFlags: return "non-zero frame flags"
        case .wrongCluster(let c): return "frame for cluster \(c)"
        case .oversized(let n): return "frame body of \(n) bytes exceeds the limit"
        case .unknownKind(let k): return "unknown frame kind \(k)"
        case .truncated(let expected, let received):
            return "connection closed mid-frame (\(received) of \(expected) bytes)"
        }
    }
}

/// The fixed 16-byte frame header, big-endian:
///
/// ```
/// 0..<4   magic "PBFT" (0x50 0x42 0x46 0x54)
/// 4       version (1)
/// 5       kind
/// 6..<8   flags (must be 0; reserved so a later version can signal e.g. compression)
/// 8..<12  clusterID
/// 12..<16 bodyLength
/// ```
///
/// Why a fixed header with the length up front: the receiver can validate and bound a frame
/// before buffering any of its body.
public struct FrameHeader: Equatable, Sendable {
    public static let magic: UInt32 = 0x5042_4654
    public static let magicBytes: [UInt8] = [0x50, 0x42, 0x46, 0x54]
    public static let currentVersion: UInt8 = 1
    public static let byteCount = 16

    public var version: UInt8
    public var kind: UInt8
    public var flags: UInt16
    public var clusterID: UInt32
    public var bodyLength: UInt32

    public init(kind: UInt8, clusterID: UInt32, bodyLength: UInt32) {
        self.version = FrameHeader.currentVersion
        self.kind = kind
        self.flags = 0
        self.clusterID = clusterID
        self.bodyLength = bodyLength
    }

    public func encode(into buffer: inout ByteBuffer) {
        buffer.writeInteger(FrameHeader.magic, endianness: .big, as: UInt32.self)
        buffer.writeInteger(self.version, as: UInt8.self)
        buffer.writeInteger(self.kind, as: UInt8.self)
        buffer.writeInteger(self.flags, endianness: .big, as: UInt16.self)
        buffer.writeInteger(self.clusterID, endianness: .big, as: UInt32.self)
        buffer.writeInteger(self.bodyLength, endianness: .big, as: UInt32.self)
    }

    /// Validates the header at `buffer.readerIndex` without consuming anything.
    ///
    /// Returns `nil` when fewer than 16 bytes are readable and the bytes present are a valid
    /// prefix. Fields are checked as soon as their bytes have arrived (in wire order), so
    /// garbage is rejected after its first byte rather than after 16.
    public static func decode(_ buffer: ByteBuffer, rules: FrameRules) throws(FrameError) -> FrameHeader? {
        let available = buffer.readableBytes
        let base = buffer.readerIndex
        // Magic, byte by byte.
        for i in 0..<min(4, available) {
            if buffer.getInteger(at: base + i, as: UInt8.self)! != FrameHeader.magicBytes[i] {
                throw .badMagic
            }
        }
        guard available >= 5 else { return nil }
        let version = buffer.getInteger(at: base + 4, as: UInt8.self)!
        guard version == FrameHeader.currentVersion else { throw .unsupportedVersion(version) }
        guard available >= 6 else { return nil }
        let kind = buffer.getInteger(at: base + 5, as: UInt8.self)!
        guard rules.knownKinds.contains(kind) else { throw .unknownKind(kind) }
        // A non-zero first flags byte is already an error; check it before the second arrives.
        for i in 6..<min(8, available) where buffer.getInteger(at: base + i, as: UInt8.self)! != 0 {
            throw .nonZeroFlags
        }
        guard available >= 12 else { return nil }
        let cluster = buffer.getInteger(at: base + 8, endianness: .big, as: UInt32.self)!
        guard cluster == rules.clusterID else { throw .wrongCluster(cluster) }
        guard available >= 16 else { return nil }
        let length = buffer.getInteger(at: base + 12, endianness: .big, as: UInt32.self)!
        guard UInt64(length) <= UInt64(max(0, rules.maxBodyBytes(for: kind))) else { throw .oversized(length) }
        return FrameHeader(kind: kind, clusterID: cluster, bodyLength: length)
    }
}

/// One decoded frame: a kind byte and an opaque body. The body is a slice of the receive
/// buffer (no copy); the transport never interprets it.
public struct Frame: Sendable {
    public var kind: UInt8
    public var body: ByteBuffer

    public init(kind: UInt8, body: ByteBuffer) {
        self.kind = kind
        self.body = body
    }

    /// Appends header + body to `buffer`. The body's readable bytes are copied; `body` is not
    /// consumed. Traps if the body exceeds `UInt32.max` bytes (a programming error: limits
    /// are far below that).
    public static func encode(kind: UInt8, clusterID: UInt32, body: ByteBuffer, into buffer: inout ByteBuffer) {
        precondition(body.readableBytes <= Int(UInt32.max), "frame body too large for the wire format")
        FrameHeader(kind: kind, clusterID: clusterID, bodyLength: UInt32(body.readableBytes)).encode(into: &buffer)
        var copy = body
        buffer.writeBuffer(&copy)
    }

    /// Encodes one complete frame into a fresh buffer. Why a single contiguous buffer:
    /// a broadcast hands the same (copy-on-write, shared) buffer to every connection, so the
    /// encoding cost is paid once however many peers there are.
    public static func encoded(
        kind: UInt8,
        clusterID: UInt32,
        body: ByteBuffer,
        allocator: ByteBufferAllocator = ByteBufferAllocator()
    ) -> ByteBuffer {
        var out = allocator.buffer(capacity: FrameHeader.byteCount + body.readableBytes)
        Frame.encode(kind: kind, clusterID: clusterID, body: body, into: &out)
        return out
    }
}
