import Logging
import NIOCore
import NIOPosix
import BFTFrameCodec

/// Identifies one connection for the lifetime of the process (never reused), so that a
/// reply or penalty aimed at a connection that has since closed cannot hit a newer one.
public typealias ConnectionID = UInt64

/// A `host:port` to dial.
public struct PeerAddress: Hashable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public var description: String {
        self.host.contains(":") ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)"
    }
}

/// How a dialer retries.
///
/// Why doubling without jitter: the cluster is small and fixed, so synchronised retries are
/// not a thundering herd, and deterministic delays keep tests and logs predictable.
public struct BackoffPolicy: Sendable, Equatable {
    /// Delay before the first retry; doubled after each failure.
    public var initialDelay: TimeAmount
    /// Ceiling for the delay.
    public var maximumDelay: TimeAmount
    /// A connection that stayed up this long resets the delay to `initialDelay`. Why not
    /// reset on every successful connect: a peer that accepts and immediately drops us
    /// (e.g. because it is overloaded) would otherwise be redialled at the minimum delay forever.
    public var stableAfter: TimeAmount
    /// Give up a single connect attempt after this long.
    public var connectTimeout: TimeAmount

    public init(
        initialDelay: TimeAmount = .milliseconds(20),
        maximumDelay: TimeAmount = .seconds(2),
        stableAfter: TimeAmount = .seconds(2),
        connectTimeout: TimeAmount = .seconds(2)
    ) {
        self.initialDelay = initialDelay
        self.maximumDelay = maximumDelay
        self.stableAfter = stableAfter
        self.connectTimeout = connectTimeout
    }

    public static let `default` = BackoffPolicy()
}

/// A connection we dial and keep dialling: owns the bounded outbound queue for one
/// destination, which outlives individual TCP connections.
///
/// All mutable state except the queue (which has its own lock) and `connected` is confined to
/// `eventLoop`; public entry points hop there.
final class PeerLink: @unchecked Sendable {
    let index: Int
    let address: PeerAddress
    let eventLoop: EventLoop
    let queue: OutboundFrameQueue

    private let backoff: BackoffPolicy
    private let stats: StatsRecorder
    private let logger: Logger
    private let throttle: LogThrottle
    /// Installs the pipeline on a freshly created channel (runs on its event loop).
    private let pipelineSetup: @Sendable (Channel) throws -> Void

    // Loop-confined.
    private var delay: TimeAmount
    private var dialAttempts = 0
    private var channel: Channel?
    private var connectedAt: NIODeadline?
    private var retry: Scheduled<Void>?
    private var isShutdown = false
    private var started = false

    private let connectedFlag = LockedBox(false)

    init(
        index: Int,
        address: PeerAddress,
        eventLoop: EventLoop,
        queue: OutboundFrameQueue,
        backoff: BackoffPolicy,
        stats: StatsRecorder,
        logger: Logger,
        throttle: LogThrottle,
        pipelineSetup: @escaping @Sendable (Channel) throws -> Void
    ) {
        self.index = index
        self.address = address
        self.eventLoop = eventLoop
        self.queue = queue
        self.backoff = backoff
        self.delay = backoff.initialDelay
        self.stats = stats
        self.logger = logger
        self.throttle = throttle
        self.pipelineSetup = pipelineSetup
    }

    /// Whether a connection to the peer is currently established.
    var isConnected: Bool { self.connectedFlag.withLock { $0 } }

    func start() {
        self.eventLoop.execute {
            guard !self.started, !self.isShutdown else { return }
            self.started = true
            self.dial()
        }
    }

    /// Stops dialling, discards queued frames and closes the current connection.
    func shutdown() -> EventLoopFuture<Void> {
        self.eventLoop.flatSubmit {
            self.isShutdown = true
            self.retry?.cancel()
            self.retry = nil
            self.queue.close(countingAs: .shutdown)
            guard let channel = self.channel else { return self.eventLoop.makeSucceededVoidFuture() }
            return channel.close().recover { _ in }
        }
    }

    /// Closes the current connection (if any); the link redials with backoff.
    func dropConnection() {
        self.eventLoop.execute {
            self.channel?.close(promise: nil)
        }
    }

    private func dial() {
        self.eventLoop.assertInEventLoop()
        guard !self.isShutdown else { return }
        self.dialAttempts += 1
        if self.dialAttempts > 1 {
            self.stats.update { $0.reconnects += 1 }
        }
        let setup = self.pipelineSetup
        ClientBootstrap(group: self.eventLoop)
            .channelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            .channelOption(ChannelOptions.writeBufferWaterMark, value: transportWriteWatermark)
            .connectTimeout(self.backoff.connectTimeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try setup(channel) }
            }
            .connect(host: self.address.host, port: self.address.port)
            .hop(to: self.eventLoop)
            .whenComplete { result in
                self.connectCompleted(result)
            }
    }

    private func connectCompleted(_ result: Result<Channel, Error>) {
        self.eventLoop.assertInEventLoop()
        switch result {
        case .success(let channel):
            if self.isShutdown {
                channel.close(promise: nil)
                return
            }
            self.channel = channel
            self.connectedAt = .now()
            self.connectedFlag.withLock { $0 = true }
            self.logger.debug(
                "connected to peer",
                metadata: ["peer": "\(self.index)", "address": "\(self.address)"]
            )
            channel.closeFuture.whenComplete { _ in
                self.eventLoop.execute { self.channelClosed(channel) }
            }
        case .failure(let error):
            self.stats.update { $0.connectFailures += 1 }
            self.throttle.log(
                self.logger,
                level: .debug,
                label: "dial-\(self.index)",
                "cannot reach peer: \(error)",
                metadata: ["peer": "\(self.index)", "address": "\(self.address)"]
            )
            self.scheduleRetry()
        }
    }

    private func channelClosed(_ channel: Channel) {
        self.eventLoop.assertInEventLoop()
        guard self.channel === channel else { return }
        self.channel = nil
        self.connectedFlag.withLock { $0 = false }
        if let since = self.connectedAt, NIODeadline.now() - since >= self.backoff.stableAfter {
            self.delay = self.backoff.initialDelay
        }
        self.connectedAt = nil
        self.scheduleRetry()
    }

    private func scheduleRetry() {
        guard !self.isShutdown else { return }
        let wait = self.delay
        self.delay = min(self.delay * 2, self.backoff.maximumDelay)
        self.retry = self.eventLoop.scheduleTask(in: wait) {
            self.retry = nil
            self.dial()
        }
    }
}
