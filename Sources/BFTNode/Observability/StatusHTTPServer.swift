import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import BFTApplications
import BFTConfig
import BFTFrameCodec
import BFTStorage
import BFTTransport

extension ListenerRole {
    /// The node's `/metrics` and `/status` endpoint (`StatusHTTPServer`).
    public static let statusHTTP = ListenerRole(serving: "serve metrics", name: "status HTTP server")
}

/// A small read-only HTTP/1.1 endpoint: `GET /metrics` (Prometheus text format) and
/// `GET /status` (the node's JSON status document).
///
/// It is exposed to whoever can reach the port, so it defends itself:
/// - only `GET` on the two paths (404 for other paths, 405 for other methods, 400 for bytes
///   that are not HTTP, after which the connection is closed);
/// - at most `maxRequestBytes` received per request (request line, headers and any body);
///   over that, 431 and close. The decoder's own header limits are set to the same value;
/// - at most `maxConnections` open connections, and at most `maxConnectionsPerAddress` from
///   one source address; further ones are closed at once;
/// - every request must arrive completely within `requestTimeout` of the connection opening
///   or of the previous response being written, else the connection is closed. Unlike an
///   idle timer (`IdleStateHandler`), trickling one byte at a time does not extend it, so a
///   slowloris client cannot hold a connection; after a keep-alive response the next request
///   gets only `idleTimeout`;
/// - one outstanding response per connection: the next request is not answered, and nothing
///   more is read, until the previous response was written to the socket and the channel is
///   writable again. A client that pipelines requests and never reads holds at most one
///   response in memory;
/// - every connection is closed `connectionLifetime` after it was accepted, and once it has
///   read and written `maxBytesPerConnection` bytes together;
/// - it runs on the event loop group it is given (the node passes a dedicated one-thread
///   group, so a scrape can never delay the replica's threads).
///
/// The `status` closure runs on that event loop for every `GET /status`: it must be quick
/// and must not wait for the replica's core thread (hand it a cached snapshot, see
/// `StatusSnapshot`).
public final class StatusHTTPServer: @unchecked Sendable {
    public struct Limits: Sendable {
        /// Open connections in all. Each costs a socket and a little memory; a scraper needs one.
        public var maxConnections: Int
        /// Time for one complete request (from accept or the previous response), so a client
        /// trickling bytes (slowloris) cannot hold a connection.
        public var requestTimeout: TimeAmount
        /// Bytes of one request (request line, headers, body): our routes need under 100.
        public var maxRequestBytes: Int
        /// Open connections from one source address, below `maxConnections`, so one host
        /// cannot take every slot and lock out the real scrapers.
        public var maxConnectionsPerAddress: Int
        /// Absolute lifetime of a connection from accept, whatever it does: a scrape takes
        /// milliseconds, so nothing legitimate needs longer, and no connection lives forever.
        public var connectionLifetime: TimeAmount
        /// Time for the next request after a keep-alive response: idle keep-alive connections
        /// would otherwise hold slots that scrapers need.
        public var idleTimeout: TimeAmount
        /// Bytes read and written on one connection together; then it is closed. Bounds what
        /// one connection can cost however fast it reads (a few /metrics scrapes fit).
        public var maxBytesPerConnection: Int
        /// Complete requests waiting behind the response in flight (pipelining) before the
        /// connection is closed; reads stop while a response is in flight, so only what one
        /// read already delivered can queue here.
        public var maxQueuedRequests: Int

        public init(maxConnections: Int = 64, requestTimeout: TimeAmount = .seconds(5), maxRequestBytes: Int = 8 * 1024,
                    maxConnectionsPerAddress: Int = 8, connectionLifetime: TimeAmount = .seconds(10),
                    idleTimeout: TimeAmount = .seconds(2), maxBytesPerConnection: Int = 4 * 1024 * 1024,
                    maxQueuedRequests: Int = 16) {
            self.maxConnections = maxConnections
            self.requestTimeout = requestTimeout
            self.maxRequestBytes = maxRequestBytes
            self.maxConnectionsPerAddress = maxConnectionsPerAddress
            self.connectionLifetime = connectionLifetime
            self.idleTimeout = idleTimeout
            self.maxBytesPerConnection = maxBytesPerConnection
            self.maxQueuedRequests = maxQueuedRequests
        }
    }

    /// Counters about the server itself (for tests and logs).
    public struct Stats: Sendable, Equatable {
        public var accepted = 0
        public var rejected = 0
        public var timedOut = 0
        public var tooLarge = 0
        public var badRequests = 0
        public var responses = 0
        public var open = 0
        /// Refused because their source address already had `maxConnectionsPerAddress`.
        public var rejectedPerAddress = 0
        /// Closed at `connectionLifetime`.
        public var lifetimeExpired = 0
        /// Closed after a keep-alive response because no request followed within `idleTimeout`.
        public var idleClosed = 0
        /// Closed at `maxBytesPerConnection`.
        public var budgetExceeded = 0
        /// Closed because more than `maxQueuedRequests` requests were pipelined.
        public var pipelineOverflow = 0
    }

    public let host: String
    public let port: Int
    public let limits: Limits
    let group: any EventLoopGroup
    let metrics: NodeMetrics
    let status: @Sendable () -> [UInt8]
    let logger: Logger

    private enum Phase { case idle, started, shutDown }
    private struct State {
        var phase = Phase.idle
        var server: (any Channel)?
        var connections: [ObjectIdentifier: any Channel] = [:]
        var perAddress: [String: Int] = [:]
        var stats = Stats()
    }
    private let state = LockedBox(State())

    public init(
        host: String, port: Int, group: any EventLoopGroup, metrics: NodeMetrics,
        status: @escaping @Sendable () -> [UInt8], logger: Logger, limits: Limits = Limits()
    ) {
        self.host = host
        self.port = port
        self.group = group
        self.metrics = metrics
        self.status = status
        self.logger = logger
        self.limits = limits
    }

    /// The port actually bound (useful with port 0), or nil before `start()` / after `shutdown()`.
    public var boundPort: Int? {
        state.withLock { $0.server?.localAddress?.port }
    }

    public func stats() -> Stats {
        state.withLock { $0.stats }
    }

    /// Binds and starts serving. Throws `ListenerError.addressInUse` if the port is taken.
    public func start() throws {
        try state.withLock { s in
            switch s.phase {
            case .idle: s.phase = .started
            case .started: throw ListenerError.alreadyStarted(.statusHTTP)
            case .shutDown: throw ListenerError.shutDown(.statusHTTP)
            }
        }
        let server: any Channel
        do {
            server = try ServerBootstrap(group: group)
                .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
                .serverChannelOption(ChannelOptions.backlog, value: 64)
                .childChannelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
                .childChannelOption(ChannelOptions.maxMessagesPerRead, value: 4)
                .childChannelInitializer { [self] channel in
                    channel.eventLoop.makeCompletedFuture { try self.setUp(channel) }
                }
                .bind(host: host, port: port)
                .wait()
        } catch {
            state.withLock { $0.phase = .idle }
            throw ListenerError.binding(.statusHTTP, host: host, port: port, failedWith: error)
        }
        let closeNow = state.withLock { s -> Bool in
            if s.phase == .shutDown { return true }
            s.server = server
            return false
        }
        if closeNow {
            server.close(promise: nil)
            throw ListenerError.shutDown(.statusHTTP)
        }
        logger.info("metrics and status endpoint listening", metadata: [
            "address": "\(host):\(server.localAddress?.port ?? port)", "paths": "/metrics /status"])
    }

    /// Closes the listener and every open connection; idempotent. Waits for the closes
    /// (do not call it from one of the group's event loops).
    public func shutdown() {
        let (server, connections) = state.withLock { s -> ((any Channel)?, [any Channel]) in
            s.phase = .shutDown
            let out = (s.server, Array(s.connections.values))
            s.server = nil
            s.connections = [:]
            return out
        }
        try? server?.close().wait()
        for c in connections { try? c.close().wait() }
    }

    // MARK: - Per connection

    private func setUp(_ channel: any Channel) throws {
        let id = ObjectIdentifier(channel)
        let source = channel.remoteAddress?.ipAddress ?? "unknown"
        let refusal = state.withLock { s -> String? in
            guard s.phase == .started, s.connections.count < max(1, limits.maxConnections) else {
                s.stats.rejected += 1
                return "connection limit reached"
            }
            guard s.perAddress[source, default: 0] < max(1, limits.maxConnectionsPerAddress) else {
                s.stats.rejected += 1
                s.stats.rejectedPerAddress += 1
                return "per-address connection limit reached"
            }
            s.connections[id] = channel
            s.perAddress[source, default: 0] += 1
            s.stats.accepted += 1
            s.stats.open = s.connections.count
            return nil
        }
        if let refusal {
            logger.debug("refusing status connection: \(refusal)", metadata: [
                "source": "\(source)", "limit": "\(limits.maxConnections)", "perAddress": "\(limits.maxConnectionsPerAddress)"])
            // The bootstrap closes a child channel whose initializer fails.
            throw ChannelError.inappropriateOperationForState
        }
        channel.closeFuture.whenComplete { [weak self] _ in
            self?.state.withLock { s in
                s.connections[id] = nil
                let left = s.perAddress[source, default: 1] - 1
                s.perAddress[source] = left > 0 ? left : nil
                s.stats.open = s.connections.count
            }
        }
        var decoderLimits = NIOHTTPDecoderLimitConfiguration()
        decoderLimits.maxHeaderFieldSize = limits.maxRequestBytes
        decoderLimits.maxHeaderListSize = limits.maxRequestBytes
        decoderLimits.maxHeaderFieldCount = 100
        let sync = channel.pipeline.syncOperations
        let guardHandler = ConnectionGuard(limits: limits, server: self)
        try sync.addHandler(guardHandler)
        let limiter = RequestByteLimiter(limit: limits.maxRequestBytes, server: self)
        try sync.addHandler(limiter)
        try sync.configureHTTPServerPipeline(
            withPipeliningAssistance: true, withErrorHandling: true,
            withEncoderConfiguration: .init(), withDecoderLimitConfiguration: decoderLimits)
        try sync.addHandler(StatusHTTPHandler(server: self, limiter: limiter, guard: guardHandler, limits: limits))
    }

    func count(_ body: (inout Stats) -> Void) {
        state.withLock { body(&$0.stats) }
    }

    /// Status, content type and body for one request.
    func route(method: HTTPMethod, uri: String) -> (HTTPResponseStatus, String, [UInt8], extra: [(String, String)]) {
        let path = uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? uri
        let known = path == "/metrics" || path == "/status"
        guard known else {
            return (.notFound, "text/plain; charset=utf-8", Array("not found\n".utf8), [])
        }
        guard method == .GET else {
            return (.methodNotAllowed, "text/plain; charset=utf-8", Array("method not allowed\n".utf8), [("Allow", "GET")])
        }
        if path == "/metrics" {
            return (.ok, "text/plain; version=0.0.4; charset=utf-8", metrics.expositionBytes(), [])
        }
        return (.ok, "application/json", status(), [])
    }
}

/// Closes a connection that sends more than `limit` bytes for one request (request line,
/// headers and body together). Sits in front of the HTTP decoder, whose URL length is not
/// otherwise bounded.
final class RequestByteLimiter: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let limit: Int
    weak var server: StatusHTTPServer?
    private var received = 0
    private var tripped = false

    init(limit: Int, server: StatusHTTPServer) {
        self.limit = limit
        self.server = server
    }

    /// A request was read completely: the next one starts from zero.
    func requestCompleted() { received = 0 }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if tripped { return }
        let buffer = unwrapInboundIn(data)
        received += buffer.readableBytes
        if received > limit {
            tripped = true
            server?.count { $0.tooLarge += 1 }
            let response = "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            let out = context.channel.allocator.buffer(string: response)
            context.writeAndFlush(wrapOutboundOut(out)).assumeIsolated().whenComplete { _ in
                context.close(promise: nil)
            }
            return
        }
        context.fireChannelRead(data)
    }
}

/// First handler of every connection (next to the socket): enforces the absolute connection
/// lifetime and the byte budget, and holds reads while told to (`setPaused`), so the server
/// stops reading while a response is in flight or the channel is not writable.
final class ConnectionGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = IOData
    typealias OutboundOut = IOData

    let limits: StatusHTTPServer.Limits
    weak var server: StatusHTTPServer?
    private var context: ChannelHandlerContext?
    private var lifetime: Scheduled<Void>?
    private var paused = false
    private var readPending = false
    /// Bytes read and written so far.
    private(set) var bytes = 0
    private var closing = false

    /// True once the connection used its byte budget; the handler closes after the response.
    var exhausted: Bool { bytes >= limits.maxBytesPerConnection }

    init(limits: StatusHTTPServer.Limits, server: StatusHTTPServer) {
        self.limits = limits
        self.server = server
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        let server = self.server
        lifetime = context.eventLoop.assumeIsolated().scheduleTask(in: limits.connectionLifetime) {
            server?.count { $0.lifetimeExpired += 1 }
            context.close(promise: nil)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        lifetime?.cancel()
        lifetime = nil
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        lifetime?.cancel()
        lifetime = nil
        context.fireChannelInactive()
    }

    /// Stops (true) or resumes (false) reading from the socket.
    func setPaused(_ value: Bool) {
        paused = value
        if !value, readPending, let context {
            readPending = false
            context.read()
        }
    }

    func read(context: ChannelHandlerContext) {
        if paused {
            readPending = true
        } else {
            context.read()
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if closing { return }
        bytes += unwrapInboundIn(data).readableBytes
        if bytes > limits.maxBytesPerConnection {
            closing = true
            server?.count { $0.budgetExceeded += 1 }
            context.close(promise: nil)
            return
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        bytes += unwrapOutboundIn(data).readableBytes
        context.write(data, promise: promise)
    }
}

/// Answers requests, one at a time, and enforces the per-request and idle deadlines.
final class StatusHTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    weak var server: StatusHTTPServer?
    let limiter: RequestByteLimiter
    let connectionGuard: ConnectionGuard
    let limits: StatusHTTPServer.Limits
    private var head: HTTPRequestHead?
    /// Complete requests not answered yet (pipelined behind the one in flight).
    private var queued: [HTTPRequestHead] = []
    /// A response was handed to the channel and its last byte is not written yet.
    private var inFlight = false
    private var deadline: Scheduled<Void>?
    private var closed = false

    init(server: StatusHTTPServer, limiter: RequestByteLimiter, guard connectionGuard: ConnectionGuard, limits: StatusHTTPServer.Limits) {
        self.server = server
        self.limiter = limiter
        self.connectionGuard = connectionGuard
        self.limits = limits
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { arm(context, limits.requestTimeout) }
    }

    func channelActive(context: ChannelHandlerContext) {
        if deadline == nil { arm(context, limits.requestTimeout) }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        closed = true
        queued = []
        deadline?.cancel()
        deadline = nil
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
    }

    /// (Re)starts the deadline for the next complete request; `idle` counts as an idle close.
    private func arm(_ context: ChannelHandlerContext, _ timeout: TimeAmount, idle: Bool = false) {
        deadline?.cancel()
        guard !closed else { return }
        let server = self.server
        deadline = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) {
            server?.count { if idle { $0.idleClosed += 1 } else { $0.timedOut += 1 } }
            context.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
        case .body:
            break  // Bounded by the byte limiter; no route takes a body.
        case .end:
            limiter.requestCompleted()
            guard let h = head else { return }
            head = nil
            queued.append(h)
            if queued.count > max(1, limits.maxQueuedRequests) {
                server?.count { $0.pipelineOverflow += 1 }
                closed = true
                context.close(promise: nil)
                return
            }
            serveNext(context)
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        serveNext(context)
        context.fireChannelWritabilityChanged()
    }

    /// Answers the oldest queued request if no response is in flight and the channel is
    /// writable; reading stays paused until then.
    private func serveNext(_ context: ChannelHandlerContext) {
        guard !closed else { return }
        let writable = context.channel.isWritable
        guard !inFlight, writable, !queued.isEmpty else {
            connectionGuard.setPaused(inFlight || !writable)
            return
        }
        let request = queued.removeFirst()
        inFlight = true
        connectionGuard.setPaused(true)
        respond(context, to: request)
    }

    private func respond(_ context: ChannelHandlerContext, to request: HTTPRequestHead) {
        // Hold the deadline while answering: a client that does not read the response
        // still loses the connection when it expires.
        guard let server else {
            context.close(promise: nil)
            return
        }
        let (status, contentType, body, extra) = server.route(method: request.method, uri: request.uri)
        let keepAlive = request.isKeepAlive && status == .ok
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: "\(body.count)")
        headers.add(name: "Cache-Control", value: "no-store")
        headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        for (n, v) in extra { headers.add(name: n, value: v) }
        let head = HTTPResponseHead(version: request.version.major == 1 ? request.version : .http1_1, status: status, headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if request.method != .HEAD {
            var buffer = context.channel.allocator.buffer(capacity: body.count)
            buffer.writeBytes(body)
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        }
        server.count { $0.responses += 1 }
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { [self] result in
            self.inFlight = false
            guard case .success = result, keepAlive, !self.closed else {
                context.close(promise: nil)
                return
            }
            if self.connectionGuard.exhausted {
                server.count { $0.budgetExceeded += 1 }
                self.closed = true
                context.close(promise: nil)
                return
            }
            if self.queued.isEmpty {
                self.arm(context, min(self.limits.idleTimeout, self.limits.requestTimeout), idle: true)
            }
            self.serveNext(context)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // HTTPServerProtocolErrorHandler has already answered 400 for parser errors.
        if error is HTTPParserError { server?.count { $0.badRequests += 1 } }
        context.close(promise: nil)
    }
}

/// The latest status document, updated by the node (e.g. once a tick from the core thread)
/// and read by the HTTP server without touching the replica.
public final class StatusSnapshot: @unchecked Sendable {
    private let box: LockedBox<[UInt8]>

    public init(_ initial: [UInt8] = Array("{}".utf8)) {
        self.box = LockedBox(initial)
    }

    public func update(_ bytes: [UInt8]) {
        box.withLock { $0 = bytes }
    }

    public var bytes: [UInt8] {
        box.withLock { $0 }
    }

    /// A closure for `StatusHTTPServer.init(status:)`.
    public var provider: @Sendable () -> [UInt8] {
        { [self] in self.bytes }
    }
}
