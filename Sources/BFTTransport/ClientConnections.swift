import Logging
import NIOCore
import NIOPosix
import BFTFrameCodec
import BFTCrypto
import BFTSession

/// Client side of the transport (for `bft-client` and the load generator): one dialed,
/// auto-reconnecting connection per replica, same framing as replicas use.
///
/// Requests go out on the connection to the chosen replica(s); replies come back on the same
/// connections and are handed to `onFrame` with the replica index. Unlike `Transport`, frames
/// delivered here need no `release`: there is no inbound accounting on the client side.
///
/// Bounds: each replica has a bounded outbound queue (oldest dropped first while the replica
/// is unreachable). Inbound frames are delivered synchronously on the event loop with no
/// queue in between, so the only buffering is the decoder's (one frame, bounded by
/// `limits.maxFrameBodyBytes`); the callback must not block and must bound whatever it keeps.
public final class ClientConnections: @unchecked Sendable {
    public let clusterID: UInt32
    public let limits: WireLimits
    public let rules: FrameRules

    private let allocator = ByteBufferAllocator()
    private let statsRecorder = StatsRecorder()
    private let throttle = LogThrottle()
    private let links: [Int: PeerLink]
    private let logger: Logger
    private let group: EventLoopGroup
    private let shutdownState = LockedBox<EventLoopFuture<Void>?>(nil)

    /// - Parameters:
    ///   - replicas: replica index → address.
    ///   - knownKinds: kinds replicas may send us (replies); anything else closes the link.
    ///   - onFrame: `(replicaIndex, frame)`, called on an event loop.
    public init(
        clusterID: UInt32,
        replicas: [Int: PeerAddress],
        knownKinds: Set<UInt8>,
        limits: WireLimits = .default,
        backoff: BackoffPolicy = .default,
        session: SessionSetup? = nil,
        group: EventLoopGroup,
        logger: Logger,
        onFrame: @escaping @Sendable (_ replica: Int, _ frame: InboundFrame) -> Void
    ) {
        self.clusterID = clusterID
        let staticKey = SessionPipeline.makeStaticKey(for: session)
        self.limits = limits
        self.logger = logger
        self.group = group
        let rules = FrameRules(clusterID: clusterID, knownKinds: knownKinds, clientKinds: [], limits: limits)
        self.rules = rules
        let stats = self.statsRecorder
        let reporter = ConnectionErrorReporter(logger: logger, stats: stats, throttle: self.throttle)
        let ids = LockedBox<ConnectionID>(1)
        var links: [Int: PeerLink] = [:]
        for (index, address) in replicas {
            let queue = OutboundFrameQueue(limits: limits, stats: stats)
            links[index] = PeerLink(
                index: index,
                address: address,
                eventLoop: group.next(),
                queue: queue,
                backoff: backoff,
                stats: stats,
                logger: logger,
                throttle: self.throttle,
                pipelineSetup: { channel in
                    let connection = ids.withLock { id -> ConnectionID in
                        defer { id += 1 }
                        return id
                    }
                    let callbacks = ConnectionCallbacks(
                        onActive: { _ in
                            stats.update {
                                $0.connectionsOpen += 1
                                $0.outboundConnectionsOpen += 1
                            }
                        },
                        onFrame: { frame in
                            stats.update {
                                $0.framesIn += 1
                                $0.bytesIn += FrameHeader.byteCount + frame.body.readableBytes
                            }
                            onFrame(
                                index,
                                InboundFrame(connection: connection, kind: frame.kind, body: frame.body, remote: "\(address)",
                                             principal: session == nil ? nil : .replica(UInt32(index)))
                            )
                        },
                        onError: { error in
                            reporter.report(error, connection: connection, remote: "\(address)", role: "replica")
                        },
                        onInactive: { _ in
                            stats.update {
                                $0.connectionsOpen -= 1
                                $0.outboundConnectionsOpen -= 1
                            }
                        }
                    )
                    let handler = FrameConnectionHandler(sink: queue, admission: nil, callbacks: callbacks)
                    try addFramePipeline(to: channel, rules: rules, admission: nil, handler: handler,
                                         session: SessionPipeline.dialing(replica: index, session: session, staticKey: staticKey))
                }
            )
        }
        self.links = links
    }

    /// Convenience for an address table written as tuples.
    @_disfavoredOverload
    public convenience init(
        clusterID: UInt32,
        replicas: [Int: (host: String, port: Int)],
        knownKinds: Set<UInt8>,
        limits: WireLimits = .default,
        backoff: BackoffPolicy = .default,
        session: SessionSetup? = nil,
        group: EventLoopGroup,
        logger: Logger,
        onFrame: @escaping @Sendable (_ replica: Int, _ frame: InboundFrame) -> Void
    ) {
        self.init(
            clusterID: clusterID,
            replicas: replicas.mapValues { PeerAddress(host: $0.host, port: $0.port) },
            knownKinds: knownKinds,
            limits: limits,
            backoff: backoff,
            session: session,
            group: group,
            logger: logger,
            onFrame: onFrame
        )
    }

    /// Convenience: replica `i` is `replicas[i]`.
    public convenience init(
        clusterID: UInt32,
        replicas: [PeerAddress],
        knownKinds: Set<UInt8>,
        limits: WireLimits = .default,
        backoff: BackoffPolicy = .default,
        group: EventLoopGroup,
        logger: Logger,
        onFrame: @escaping @Sendable (_ replica: Int, _ frame: InboundFrame) -> Void
    ) {
        var table: [Int: PeerAddress] = [:]
        for (i, address) in replicas.enumerated() { table[i] = address }
        self.init(
            clusterID: clusterID,
            replicas: table,
            knownKinds: knownKinds,
            limits: limits,
            backoff: backoff,
            group: group,
            logger: logger,
            onFrame: onFrame
        )
    }

    /// Starts dialling every replica (non-blocking; frames sent before a connection is up are
    /// queued).
    public func start() {
        for link in self.links.values { link.start() }
    }

    /// Closes all connections and stops reconnecting; idempotent.
    @discardableResult
    public func shutdown() -> EventLoopFuture<Void> {
        if let existing = self.shutdownState.withLock({ $0 }) { return existing }
        let futures = self.links.values.map { $0.shutdown() }
        let all = EventLoopFuture.andAllComplete(futures, on: self.group.next())
        return self.shutdownState.withLock { state in
            if let existing = state { return existing }
            state = all
            return all
        }
    }

    public var replicaIndices: [Int] { self.links.keys.sorted() }

    public func isConnected(toReplica index: Int) -> Bool {
        self.links[index]?.isConnected ?? false
    }

    /// Number of replicas we currently have a connection to.
    public var connectedCount: Int {
        self.links.values.reduce(0) { $0 + ($1.isConnected ? 1 : 0) }
    }

    public func send(toReplica index: Int, kind: UInt8, body: ByteBuffer) {
        guard let link = self.links[index] else {
            self.statsRecorder.drop(.unknownReplica)
            return
        }
        guard self.checkOutbound(body: body) else { return }
        link.queue.enqueue(Frame.encoded(kind: kind, clusterID: self.clusterID, body: body, allocator: self.allocator))
    }

    /// Sends to every replica (encoded once).
    public func broadcast(kind: UInt8, body: ByteBuffer) {
        guard !self.links.isEmpty, self.checkOutbound(body: body) else { return }
        let frame = Frame.encoded(kind: kind, clusterID: self.clusterID, body: body, allocator: self.allocator)
        for link in self.links.values { link.queue.enqueue(frame) }
    }

    /// Replicas apply the client limit to what clients send, so refuse anything larger here
    /// rather than get the connection closed.
    private func checkOutbound(body: ByteBuffer) -> Bool {
        if body.readableBytes > self.limits.maxClientFrameBodyBytes {
            self.statsRecorder.drop(.outboundTooLarge)
            return false
        }
        return true
    }

    /// Closes the connection to one replica (it is redialled with backoff), e.g. after the
    /// replica sent something the layer above could not accept.
    public func reconnect(replica index: Int) {
        self.links[index]?.dropConnection()
    }

    public func stats() -> TransportStats {
        self.statsRecorder.snapshot()
    }
}
