import Logging
import NIOCore
import BFTFrameCodec
import BFTCrypto
import BFTSession

/// What a connection reports to its owner. All callbacks run on the channel's event loop.
struct ConnectionCallbacks: Sendable {
    /// The channel became active (after the outbound queue was attached).
    var onActive: @Sendable (Channel) -> Void
    /// A decoded, admitted frame. Synchronous: whatever the owner does here runs on the loop.
    var onFrame: @Sendable (Frame) -> Void
    /// The first error seen on the connection (later ones are consequences and ignored).
    /// The handler closes the connection right after.
    var onError: @Sendable (Error) -> Void
    /// The channel became inactive. `heldAtClose` says complete frames were being held back
    /// for backpressure and are lost with the connection.
    var onInactive: @Sendable (_ heldAtClose: Bool) -> Void
}

/// The last handler of every transport channel (inbound, dialed peer, client link), after
/// `ByteToMessageHandler(FrameDecoder)`.
///
/// Why one handler for all: each direction needs the same three things — hand frames to the
/// owner, stop reading under inbound backpressure, and drain the bounded outbound queue when
/// the socket becomes writable again — plus the "close on any protocol error" rule.
final class FrameConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = Frame
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let sink: OutboundFrameQueue
    private let admission: FrameAdmission?
    private let callbacks: ConnectionCallbacks
    private var context: ChannelHandlerContext?
    /// A `read()` was swallowed while held; it is re-issued on resume.
    private var pendingRead = false
    private var failed = false

    init(sink: OutboundFrameQueue, admission: FrameAdmission?, callbacks: ConnectionCallbacks) {
        self.sink = sink
        self.admission = admission
        self.callbacks = callbacks
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        // A handler added to an already-active channel will not see `channelActive`.
        if context.channel.isActive {
            self.becameActive(context: context)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    private var activated = false

    private func becameActive(context: ChannelHandlerContext) {
        guard !self.activated else { return }
        self.activated = true
        self.sink.attach(context.channel)
        self.callbacks.onActive(context.channel)
    }

    func channelActive(context: ChannelHandlerContext) {
        self.becameActive(context: context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.sink.detach(context.channel)
        if self.activated {
            self.callbacks.onInactive(self.admission?.isHeld ?? false)
        }
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.callbacks.onFrame(Self.unwrapInboundIn(data))
    }

    /// Inbound backpressure: while the decoder holds frames back, swallow read requests so
    /// the socket is not drained further (the kernel buffer fills, TCP slows the sender).
    func read(context: ChannelHandlerContext) {
        if let admission = self.admission, admission.isHeld {
            self.pendingRead = true
        } else {
            context.read()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            self.sink.drain()
        }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if !self.failed {
            self.failed = true
            self.callbacks.onError(error)
        }
        context.close(promise: nil)
    }

    /// Called on the event loop when the flow control allows this connection to deliver
    /// again: re-runs the decoder over the bytes it already buffered (by firing an empty read
    /// through the pipeline head, which makes `ByteToMessageHandler` decode its cumulation),
    /// then re-issues the swallowed socket read if the decoder did not hold again.
    func resume() {
        guard let context = self.context, let admission = self.admission, admission.isHeld else { return }
        admission.resume()
        if context.channel.isActive {
            let empty = context.channel.allocator.buffer(capacity: 0)
            context.pipeline.syncOperations.fireChannelRead(NIOAny(empty))
        }
        if self.pendingRead && !admission.isHeld {
            self.pendingRead = false
            context.read()
        }
    }
}

/// Turns connection errors into a counted, logged close reason.
///
/// Protocol violations (bad frames) are logged at `.notice`, throttled per reason, because
/// they indicate a misconfigured or hostile peer; plain I/O errors (resets, refused
/// connections) are routine in a network that loses peers and go to `.debug`.
struct ConnectionErrorReporter: Sendable {
    let logger: Logger
    let stats: StatsRecorder
    let throttle: LogThrottle

    func report(_ error: Error, connection: ConnectionID, remote: String, role: String) {
        let reason: ConnectionCloseReason
        let level: Logger.Level
        switch error {
        case let closed as SessionClosed:
            reason = .session(closed.reason)
            level = .notice
        case let frameError as FrameError:
            reason = .frame(frameError)
            level = .notice
        case is ByteToMessageDecoderError.PayloadTooLargeError:
            reason = .bufferLimit
            level = .notice
        default:
            reason = .io
            level = .debug
        }
        let label = reason.label
        self.stats.closed(reason)
        self.throttle.log(
            self.logger,
            level: level,
            label: label,
            "closing \(role) connection: \(error)",
            metadata: ["connection": "\(connection)", "remote": "\(remote)", "reason": "\(label)"]
        )
    }
}

/// Builds the standard pipeline: decoder, then `FrameConnectionHandler`.
///
/// The decoder's `maximumBufferSize` is a second line of defence on top of the header check:
/// even while frames are held back for backpressure, the cumulation may exceed one maximal
/// frame only by the reads already in flight (a few recv buffers), never without bound.
func addFramePipeline(
    to channel: Channel,
    rules: FrameRules,
    admission: FrameAdmission?,
    handler: FrameConnectionHandler,
    session: SessionPipeline? = nil
) throws {
    guard let session else {
        let maxBody = max(rules.limits.maxFrameBodyBytes, rules.limits.maxClientFrameBodyBytes)
        let decoder = ByteToMessageHandler(
            FrameDecoder(rules: rules, admission: admission),
            maximumBufferSize: FrameHeader.byteCount + maxBody + 4 * 1024 * 1024
        )
        try channel.pipeline.syncOperations.addHandlers([decoder, handler])
        return
    }
    // With sessions the decoder sees only handshake and sealed frames (the gate admits the
    // former before authentication, the latter after); the session handler opens records into
    // the inner frames `rules` describes.
    let outer = session.outerRules(inner: rules)
    let gate = FrameGate(maxBodyBytes: [:])
    let decoder = ByteToMessageHandler(
        FrameDecoder(rules: outer, admission: admission, gate: gate),
        maximumBufferSize: FrameHeader.byteCount + outer.limits.maxFrameBodyBytes + 4 * 1024 * 1024
    )
    let sessionHandler = SessionHandler(role: session.role, setup: session.setup, staticKey: session.staticKey, gate: gate,
                                        innerRules: rules, onAuthenticated: session.onAuthenticated)
    try channel.pipeline.syncOperations.addHandlers([decoder, sessionHandler, handler])
}

/// How to put a session handler into a connection's pipeline.
struct SessionPipeline {
    let setup: SessionSetup
    let staticKey: X25519.PrivateKey
    let role: SessionHandler.Role
    let onAuthenticated: (SessionPrincipal) -> Bool

    /// A fresh Noise static key for a transport that runs sessions (nil without). The identity
    /// comes from the Ed25519 key; this key only lives as long as the process.
    static func makeStaticKey(for session: SessionSetup?) -> X25519.PrivateKey? {
        let key = session.flatMap { _ in try? X25519.PrivateKey.generate() }
        precondition(session == nil || key != nil, "the system's secure random source failed")
        return key
    }

    /// The pipeline for a connection this side dials to replica `index` (nil without sessions):
    /// the handshake must prove that replica.
    static func dialing(replica index: Int, session: SessionSetup?, staticKey: X25519.PrivateKey?) -> SessionPipeline? {
        guard let session, let staticKey else { return nil }
        return SessionPipeline(setup: session, staticKey: staticKey, role: .initiator(expected: .replica(UInt32(index))),
                               onAuthenticated: { _ in true })
    }

    /// The decoder's rules for the outer frames: handshake frames (small) and sealed records
    /// large enough for the largest inner frame.
    func outerRules(inner: FrameRules) -> FrameRules {
        var limits = inner.limits
        limits.maxFrameBodyBytes = 1 + max(inner.limits.maxFrameBodyBytes, inner.limits.maxClientFrameBodyBytes) + Session.recordOverhead
        limits.maxClientFrameBodyBytes = SessionFrameKind.maxHandshakeBytes
        return FrameRules(clusterID: inner.clusterID, knownKinds: [SessionFrameKind.handshake, SessionFrameKind.sealed],
                          clientKinds: [SessionFrameKind.handshake], limits: limits)
    }
}

/// Human-readable remote address ("ip:port") for logs and `InboundFrame.remote`.
func describeRemote(_ channel: Channel) -> String {
    guard let address = channel.remoteAddress else { return "unknown" }
    if let ip = address.ipAddress, let port = address.port {
        return ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)"
    }
    return "\(address)"
}

/// Watermarks for NIO's own outbound buffer. Frames move from our bounded queue into the
/// channel only while it is writable, so this caps what sits inside NIO per connection.
let transportWriteWatermark = ChannelOptions.Types.WriteBufferWaterMark(low: 256 * 1024, high: 1024 * 1024)
