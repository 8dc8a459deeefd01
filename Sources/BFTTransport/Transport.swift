import Logging
import NIOCore
import NIOPosix
import BFTFrameCodec
import BFTCrypto
import BFTSession

/// A frame received on an inbound connection.
///
/// The consumer **must** eventually pass every delivered frame to `Transport.release(_:)`
/// (or `release(connection:count:)`), even if it discards the frame: unreleased frames are
/// what inbound backpressure counts, and leaking them eventually stops all reading.
public struct InboundFrame: Sendable {
    public let connection: ConnectionID
    public let kind: UInt8
    public let body: ByteBuffer
    /// "ip:port" of the sender, for logs only (not authenticated).
    public let remote: String
    /// Who is at the other end, proven by the connection's session handshake (nil when the
    /// transport runs without sessions, as some transport tests do).
    public let principal: SessionPrincipal?

    public init(connection: ConnectionID, kind: UInt8, body: ByteBuffer, remote: String, principal: SessionPrincipal? = nil) {
        self.connection = connection
        self.kind = kind
        self.body = body
        self.remote = remote
        self.principal = principal
    }
}

/// Moves opaque framed messages between replicas and to/from clients.
///
/// Topology: every replica dials every other replica and *sends* only on the connections it
/// dialed; it *receives* only on connections it accepted. No handshake is needed (the
/// transport never needs to know who is on the other end of an inbound connection; message
/// authenticity is checked by signatures above this layer), and each direction has exactly one
/// TCP stream so per-sender ordering is preserved. Clients connect to us and get replies on the
/// same accepted connection (`send(toConnection:)`).
///
/// Guarantees: everything a remote party can grow is bounded (see `WireLimits`); flushes are
/// coalesced (one per channel per event-loop turn); malformed input closes only the offending
/// connection, with a counted and (rate-limited) logged reason.
///
/// Thread-safety: all methods may be called from any thread. `onFrame` is invoked on the
/// receiving connection's event loop; it must not block.
public final class Transport: @unchecked Sendable {
    public let clusterID: UInt32
    public let limits: WireLimits
    public let rules: FrameRules

    private let listenHost: String
    private let listenPort: Int
    private let group: EventLoopGroup
    private let logger: Logger
    private let onFrame: @Sendable (InboundFrame) -> Void
    private let allocator = ByteBufferAllocator()
    private let statsRecorder = StatsRecorder()
    /// Shared by the outbound queues of all accepted (client) connections:
    /// `limits.maxOutboundQueuedBytesAllClients`. Dialed peer links do not use it.
    private let clientBudget: OutboundBudget
    private let throttle = LogThrottle()
    private let flow: InboundFlowControl
    private let reporter: ConnectionErrorReporter
    private let links: [Int: PeerLink]
    /// Authenticated sessions on every connection (nil: plain frames, for transport tests).
    private let session: SessionSetup?
    /// This process's Noise static key (fresh per process; identity comes from the Ed25519 key).
    private let staticKey: X25519.PrivateKey?

    private enum Phase { case idle, started, shutDown }

    /// An accepted connection, as far as the owner needs it.
    private struct InboundRecord {
        let channel: Channel
        let queue: OutboundFrameQueue
        let remote: String
        var penalties = 0
        var principal: SessionPrincipal?
    }

    private struct State {
        var phase = Phase.idle
        var serverChannel: Channel?
        var inbound: [ConnectionID: InboundRecord] = [:]
        var nextConnectionID: ConnectionID = 1
        var shutdownFuture: EventLoopFuture<Void>?
        /// Open authenticated sessions per principal on accepted connections.
        var sessionsPerPrincipal: [SessionPrincipal: Int] = [:]
    }

    private let state = LockedBox(State())

    /// - Parameters:
    ///   - peers: replica id → address of every *other* replica.
    ///   - knownKinds: frame kinds accepted from the network; anything else closes the connection.
    ///   - clientKinds: kinds sent by clients; they get `limits.maxClientFrameBodyBytes`.
    ///   - onFrame: called on an event loop for each inbound frame; see `InboundFrame`.
    public init(
        clusterID: UInt32,
        listenHost: String,
        listenPort: Int,
        peers: [Int: PeerAddress],
        knownKinds: Set<UInt8>,
        clientKinds: Set<UInt8> = [],
        limits: WireLimits = .default,
        backoff: BackoffPolicy = .default,
        session: SessionSetup? = nil,
        group: EventLoopGroup,
        logger: Logger,
        onFrame: @escaping @Sendable (InboundFrame) -> Void
    ) {
        self.clusterID = clusterID
        self.session = session
        let staticKey = SessionPipeline.makeStaticKey(for: session)
        self.staticKey = staticKey
        self.limits = limits
        self.rules = FrameRules(clusterID: clusterID, knownKinds: knownKinds, clientKinds: clientKinds, limits: limits)
        self.clientBudget = OutboundBudget(limit: limits.maxOutboundQueuedBytesAllClients)
        self.listenHost = listenHost
        self.listenPort = listenPort
        self.group = group
        self.logger = logger
        self.onFrame = onFrame
        self.flow = InboundFlowControl(maxInboundQueuedFrames: limits.maxInboundQueuedFrames, stats: self.statsRecorder)
        self.reporter = ConnectionErrorReporter(logger: logger, stats: self.statsRecorder, throttle: self.throttle)

        var links: [Int: PeerLink] = [:]
        let idSource = self.state
        for (id, address) in peers {
            let queue = OutboundFrameQueue(limits: limits, stats: self.statsRecorder)
            let stats = self.statsRecorder
            let reporter = self.reporter
            let rules = self.rules
            let logger = logger
            links[id] = PeerLink(
                index: id,
                address: address,
                eventLoop: group.next(),
                queue: queue,
                backoff: backoff,
                stats: stats,
                logger: logger,
                throttle: self.throttle,
                pipelineSetup: { channel in
                    let connection = idSource.withLock { s -> ConnectionID in
                        defer { s.nextConnectionID += 1 }
                        return s.nextConnectionID
                    }
                    // Peers never send on connections we dialed; anything that arrives is
                    // still decoded (so garbage closes the link) but dropped.
                    let callbacks = ConnectionCallbacks(
                        onActive: { _ in
                            stats.update {
                                $0.connectionsOpen += 1
                                $0.outboundConnectionsOpen += 1
                            }
                        },
                        onFrame: { _ in stats.drop(.unexpectedFrameOnOutbound) },
                        onError: { error in
                            reporter.report(error, connection: connection, remote: "\(address)", role: "outbound")
                        },
                        onInactive: { _ in
                            stats.update {
                                $0.connectionsOpen -= 1
                                $0.outboundConnectionsOpen -= 1
                            }
                            logger.debug("peer connection closed", metadata: ["peer": "\(id)", "connection": "\(connection)"])
                        }
                    )
                    let handler = FrameConnectionHandler(sink: queue, admission: nil, callbacks: callbacks)
                    try addFramePipeline(to: channel, rules: rules, admission: nil, handler: handler,
                                         session: SessionPipeline.dialing(replica: id, session: session, staticKey: staticKey))
                }
            )
        }
        self.links = links
    }

    /// Convenience for a peer table written as tuples. Disfavoured so that `peers: [:]`
    /// resolves to the designated initializer instead of being ambiguous.
    @_disfavoredOverload
    public convenience init(
        clusterID: UInt32,
        listenHost: String,
        listenPort: Int,
        peers: [Int: (host: String, port: Int)],
        knownKinds: Set<UInt8>,
        clientKinds: Set<UInt8> = [],
        limits: WireLimits = .default,
        backoff: BackoffPolicy = .default,
        session: SessionSetup? = nil,
        group: EventLoopGroup,
        logger: Logger,
        onFrame: @escaping @Sendable (InboundFrame) -> Void
    ) {
        self.init(
            clusterID: clusterID,
            listenHost: listenHost,
            listenPort: listenPort,
            peers: peers.mapValues { PeerAddress(host: $0.host, port: $0.port) },
            knownKinds: knownKinds,
            clientKinds: clientKinds,
            limits: limits,
            backoff: backoff,
            session: session,
            group: group,
            logger: logger,
            onFrame: onFrame
        )
    }

    // MARK: Lifecycle

    /// Binds the listener (blocking until bound) and starts dialling peers.
    /// Must not be called on an event loop thread.
    /// - Throws: `ListenerError.addressInUse` if the port is taken, `.bindFailed` otherwise.
    public func start() throws {
        try self.state.withLock { s in
            switch s.phase {
            case .idle: s.phase = .started
            case .started: throw ListenerError.alreadyStarted(.transport)
            case .shutDown: throw ListenerError.shutDown(.transport)
            }
        }
        let server: Channel
        do {
            server = try ServerBootstrap(group: self.group)
                .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
                .serverChannelOption(ChannelOptions.backlog, value: 256)
                .childChannelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
                .childChannelOption(ChannelOptions.writeBufferWaterMark, value: transportWriteWatermark)
                .childChannelInitializer { [self] channel in
                    channel.eventLoop.makeCompletedFuture {
                        try self.setUpInbound(channel)
                    }
                }
                .bind(host: self.listenHost, port: self.listenPort)
                .wait()
        } catch {
            self.state.withLock { $0.phase = .idle }
            throw ListenerError.binding(.transport, host: self.listenHost, port: self.listenPort, failedWith: error)
        }
        let closeNow: Bool = self.state.withLock { s in
            if s.phase == .shutDown { return true }
            s.serverChannel = server
            return false
        }
        if closeNow {
            server.close(promise: nil)
            throw ListenerError.shutDown(.transport)
        }
        self.logger.info(
            "transport listening",
            metadata: ["address": "\(self.listenHost):\(self.boundPort)", "peers": "\(self.links.count)"]
        )
        for link in self.links.values { link.start() }
    }

    /// Closes the listener, every connection and every dialer; idempotent. The returned future
    /// completes when all channels are closed (the event loop group stays the caller's).
    @discardableResult
    public func shutdown() -> EventLoopFuture<Void> {
        let (existing, server, inbound): (EventLoopFuture<Void>?, Channel?, [InboundRecord]) = self.state.withLock { s in
            if let future = s.shutdownFuture { return (future, nil, []) }
            s.phase = .shutDown
            let server = s.serverChannel
            s.serverChannel = nil
            return (nil, server, Array(s.inbound.values))
        }
        if let existing { return existing }
        let loop = self.group.next()
        var futures: [EventLoopFuture<Void>] = []
        if let server { futures.append(server.close().recover { _ in }) }
        for record in inbound {
            futures.append(record.channel.close().recover { _ in })
        }
        for link in self.links.values { futures.append(link.shutdown()) }
        let all = EventLoopFuture.andAllComplete(futures, on: loop)
        return self.state.withLock { s in
            if let future = s.shutdownFuture { return future }
            s.shutdownFuture = all
            return all
        }
    }

    /// The port actually bound (useful when `listenPort` is 0); 0 before `start()`.
    public var boundPort: Int {
        self.state.withLock { $0.serverChannel?.localAddress?.port } ?? 0
    }

    // MARK: Sending

    /// Queues a frame on our outbound connection to replica `id`. Frames queued while the peer
    /// is unreachable are kept (bounded, oldest dropped first) and sent after reconnecting.
    public func send(toReplica id: Int, kind: UInt8, body: ByteBuffer) {
        guard let link = self.links[id] else {
            self.statsRecorder.drop(.unknownReplica)
            return
        }
        guard self.checkOutbound(kind: kind, body: body) else { return }
        link.queue.enqueue(Frame.encoded(kind: kind, clusterID: self.clusterID, body: body, allocator: self.allocator))
    }

    /// Queues a frame to every peer. Encoded once; all queues share the same buffer.
    public func broadcast(kind: UInt8, body: ByteBuffer) {
        guard !self.links.isEmpty, self.checkOutbound(kind: kind, body: body) else { return }
        let frame = Frame.encoded(kind: kind, clusterID: self.clusterID, body: body, allocator: self.allocator)
        for link in self.links.values { link.queue.enqueue(frame) }
    }

    /// Queues a frame on an accepted connection (replies to clients). Dropped and counted as
    /// `unknown_connection` if that connection is gone.
    public func send(toConnection id: ConnectionID, kind: UInt8, body: ByteBuffer) {
        guard let queue = self.state.withLock({ $0.inbound[id]?.queue }) else {
            self.statsRecorder.drop(.unknownConnection)
            return
        }
        guard self.checkOutbound(kind: kind, body: body) else { return }
        queue.enqueue(Frame.encoded(kind: kind, clusterID: self.clusterID, body: body, allocator: self.allocator))
    }

    /// Refuses to send what a correctly configured receiver (same cluster configuration) would
    /// reject: an unknown kind or over-limit frame would make the receiver close the whole
    /// connection and lose the frames queued behind it.
    private func checkOutbound(kind: UInt8, body: ByteBuffer) -> Bool {
        if self.state.withLock({ $0.phase == .shutDown }) {
            self.statsRecorder.drop(.shutdown)
            return false
        }
        if !self.rules.knownKinds.contains(kind) {
            self.statsRecorder.drop(.unknownKind)
            self.throttle.log(
                self.logger,
                level: .warning,
                label: "outbound_unknown_kind",
                "refusing to send a frame of a kind peers would reject",
                metadata: ["kind": "\(kind)"]
            )
            return false
        }
        if body.readableBytes > self.rules.maxBodyBytes(for: kind) {
            self.statsRecorder.drop(.outboundTooLarge)
            self.throttle.log(
                self.logger,
                level: .warning,
                label: TransportDropReason.outboundTooLarge.label,
                "refusing to send an over-limit frame",
                metadata: ["kind": "\(kind)", "bytes": "\(body.readableBytes)"]
            )
            return false
        }
        return true
    }

    // MARK: Connection control

    /// Records a protocol violation detected above this layer (undecodable body, bad
    /// signature, ...). After `limits.maxMalformedFramesPerConnection` penalties the connection
    /// is closed. Only accepted connections can be penalised (we never receive on others).
    /// `reason` is logged in full; statistics key it by its first word only (see
    /// `StatsRecorder.label`), so reasons that embed message content stay low-cardinality.
    public func penalize(_ id: ConnectionID, reason: String) {
        let toClose: (Channel, String)? = self.state.withLock { s in
            guard var record = s.inbound[id] else { return nil }
            record.penalties += 1
            s.inbound[id] = record
            if record.penalties == max(1, self.limits.maxMalformedFramesPerConnection) {
                return (record.channel, record.remote)
            }
            return nil
        }
        self.statsRecorder.penalty(reason)
        if let (channel, remote) = toClose {
            self.statsRecorder.closed(.penalties)
            self.throttle.log(
                self.logger,
                level: .notice,
                label: ConnectionCloseReason.penalties.label,
                "closing connection after repeated malformed frames",
                metadata: ["connection": "\(id)", "remote": "\(remote)", "lastReason": "\(reason)"]
            )
            channel.close(promise: nil)
        }
    }

    /// Closes an accepted connection on request of a higher layer; counted as
    /// `disconnect_` + the first word of `reason` (`ConnectionCloseReason.disconnect`).
    public func disconnect(_ id: ConnectionID, reason: String) {
        guard let channel = self.state.withLock({ $0.inbound[id]?.channel }) else { return }
        self.statsRecorder.closed(.disconnect(reason))
        self.logger.info("disconnecting", metadata: ["connection": "\(id)", "reason": "\(reason)"])
        channel.close(promise: nil)
    }

    /// Whether our outbound connection to replica `id` is currently up.
    public func isConnected(toReplica id: Int) -> Bool {
        self.links[id]?.isConnected ?? false
    }

    /// Ids of currently open accepted connections.
    public var inboundConnections: [ConnectionID] {
        self.state.withLock { Array($0.inbound.keys) }
    }

    // MARK: Inbound backpressure

    /// The consumer is done with `frame`; see `InboundFrame`.
    public func release(_ frame: InboundFrame) {
        self.flow.release(frame.connection, count: 1)
    }

    /// The consumer is done with `count` frames that arrived on `connection`.
    public func release(connection: ConnectionID, count: Int) {
        self.flow.release(connection, count: count)
    }

    public func stats() -> TransportStats {
        var snapshot = self.statsRecorder.snapshot()
        snapshot.inboundUnreleased = self.flow.unreleased
        snapshot.clientOutboundBytes = self.clientBudget.bytes
        return snapshot
    }

    // MARK: Accepted connections

    /// Runs on the new child channel's event loop, before it becomes active.
    private func setUpInbound(_ channel: Channel) throws {
        let remote = describeRemote(channel)
        // Replies go out only on accepted connections (replicas talk over the links they dial),
        // so these queues share the client budget; one that overflows its own limit belongs to
        // a client that does not read: close it.
        let overflowed = LockedBox(false)
        let closeStats = self.statsRecorder
        let throttle = self.throttle
        let logger = self.logger
        let queue = OutboundFrameQueue(limits: self.limits, stats: self.statsRecorder, clientBudget: self.clientBudget) {
            guard overflowed.withLock({ o in defer { o = true }; return !o }) else { return }
            closeStats.closed(.clientOutboundQueueFull)
            throttle.log(logger, level: .notice, label: ConnectionCloseReason.clientOutboundQueueFull.label,
                         "closing client connection that does not read its replies", metadata: ["remote": "\(remote)"])
            channel.close(promise: nil)
        }
        let id: ConnectionID? = self.state.withLock { s in
            guard s.phase == .started, s.inbound.count < max(1, self.limits.maxInboundConnections) else { return nil }
            let id = s.nextConnectionID
            s.nextConnectionID += 1
            s.inbound[id] = InboundRecord(channel: channel, queue: queue, remote: remote)
            return id
        }
        guard let id else {
            self.statsRecorder.update { $0.connectionsRejected += 1 }
            self.statsRecorder.closed(.tooManyConnections)
            self.throttle.log(
                self.logger,
                level: .warning,
                label: ConnectionCloseReason.tooManyConnections.label,
                "refusing inbound connection: connection limit reached",
                metadata: ["remote": "\(remote)", "limit": "\(self.limits.maxInboundConnections)"]
            )
            throw ChannelError.inappropriateOperationForState
        }

        let flow = self.flow
        let admission = FrameAdmission { flow.tryAdmit(id) }
        let onFrame = self.onFrame
        // Set once by the session handshake, read for every frame (both on this channel's loop).
        let principal = NIOLoopBoundBox<SessionPrincipal?>(nil, eventLoop: channel.eventLoop)
        let stats = self.statsRecorder
        let reporter = self.reporter
        let callbacks = ConnectionCallbacks(
            onActive: { _ in
                stats.update {
                    $0.connectionsOpen += 1
                    $0.inboundConnectionsOpen += 1
                    $0.connectionsAccepted += 1
                }
            },
            onFrame: { frame in
                stats.update {
                    $0.framesIn += 1
                    $0.bytesIn += FrameHeader.byteCount + frame.body.readableBytes
                }
                onFrame(InboundFrame(connection: id, kind: frame.kind, body: frame.body, remote: remote, principal: principal.value))
            },
            onError: { error in
                reporter.report(error, connection: id, remote: remote, role: "inbound")
            },
            onInactive: { [weak self] heldAtClose in
                stats.update {
                    $0.connectionsOpen -= 1
                    $0.inboundConnectionsOpen -= 1
                }
                if heldAtClose { stats.drop(.heldAtClose) }
                self?.inboundClosed(id)
            }
        )
        let handler = FrameConnectionHandler(sink: queue, admission: admission, callbacks: callbacks)
        let bound = NIOLoopBound(handler, eventLoop: channel.eventLoop)
        let loop = channel.eventLoop
        flow.register(id) {
            loop.execute { bound.value.resume() }
        }
        // If the pipeline cannot be built, forget the connection again.
        let pipeline = self.session.map { setup in
            SessionPipeline(setup: setup, staticKey: self.staticKey!, role: .responder) { [weak self] peer in
                guard let self, self.sessionAuthenticated(id, peer) else { return false }
                principal.value = peer
                return true
            }
        }
        do {
            try addFramePipeline(to: channel, rules: self.rules, admission: admission, handler: handler, session: pipeline)
        } catch {
            self.inboundClosed(id)
            throw error
        }
        // Safety net for channels that close without ever becoming active (the handler only
        // reports inactivity after activity). Runs after `channelInactive`, so the normal path
        // has already cleaned up and this is a no-op.
        channel.closeFuture.whenComplete { [weak self] _ in
            self?.inboundClosed(id)
        }
    }

    /// Records the principal an accepted connection proved; false (the connection is then
    /// closed) when that principal already has its cap of open sessions.
    private func sessionAuthenticated(_ id: ConnectionID, _ peer: SessionPrincipal) -> Bool {
        let cap: Int
        switch peer {
        case .replica: cap = self.session?.maxSessionsPerReplica ?? 1
        case .client: cap = self.session?.maxSessionsPerClient ?? 1
        }
        return self.state.withLock { s in
            guard s.inbound[id] != nil, s.sessionsPerPrincipal[peer, default: 0] < cap else { return false }
            s.sessionsPerPrincipal[peer, default: 0] += 1
            s.inbound[id]!.principal = peer
            return true
        }
    }

    private func inboundClosed(_ id: ConnectionID) {
        let record = self.state.withLock { s -> InboundRecord? in
            let record = s.inbound.removeValue(forKey: id)
            if let peer = record?.principal {
                s.sessionsPerPrincipal[peer, default: 1] -= 1
                if s.sessionsPerPrincipal[peer] == 0 { s.sessionsPerPrincipal[peer] = nil }
            }
            return record
        }
        self.flow.unregister(id)
        record?.queue.close(countingAs: .connectionClosed)
    }
}
