import BFTCrypto
import BFTFrameCodec
import BFTSession
import Logging
import NIOCore

/// What a transport needs to run authenticated sessions on its connections (see
/// `docs/sessions.md`): who we are, how to look up everyone else's identity key, and the limits.
public struct SessionSetup: Sendable {
    public var clusterID: UInt32
    public var principal: SessionPrincipal
    public var signingKey: Ed25519PrivateKey
    /// Ed25519 key of a principal of the cluster, or nil when it is not one.
    public var keyring: @Sendable (SessionPrincipal) -> Ed25519PublicKey?
    /// Longest a connection may take to finish its handshake.
    public var handshakeTimeout: TimeAmount
    /// An authenticated session that receives nothing for this long is closed (replicas send
    /// STATUS twice a second, so only silent clients hit it).
    public var idleTimeout: TimeAmount
    /// Most open sessions per principal on accepted connections (a reconnecting peer briefly
    /// has two).
    public var maxSessionsPerReplica: Int
    public var maxSessionsPerClient: Int

    public init(clusterID: UInt32, principal: SessionPrincipal, signingKey: Ed25519PrivateKey,
                keyring: @escaping @Sendable (SessionPrincipal) -> Ed25519PublicKey?,
                handshakeTimeout: TimeAmount = .seconds(5), idleTimeout: TimeAmount = .seconds(300),
                maxSessionsPerReplica: Int = 2, maxSessionsPerClient: Int = 4) {
        self.clusterID = clusterID; self.principal = principal; self.signingKey = signingKey; self.keyring = keyring
        self.handshakeTimeout = handshakeTimeout; self.idleTimeout = idleTimeout
        self.maxSessionsPerReplica = maxSessionsPerReplica; self.maxSessionsPerClient = maxSessionsPerClient
    }
}

/// Outer frame kinds of a session connection: the three handshake messages, then sealed
/// records whose plaintext is the inner frame's kind byte and body. Every inner message, its
/// kind included, is encrypted and authenticated.
public enum SessionFrameKind {
    public static let handshake: UInt8 = 0x40
    public static let sealed: UInt8 = 0x41
    /// Handshake messages are 32, 165 and 133 bytes; anything larger before authentication is refused.
    public static let maxHandshakeBytes = 1024
}

/// Why a session connection was closed (low-cardinality, for counters).
struct SessionClosed: Error, CustomStringConvertible {
    let reason: String
    var description: String { "session: \(reason)" }
}

/// Runs the Noise XX handshake of `BFTSession` on a connection and then seals every outgoing
/// frame and opens every incoming one. Sits between the frame decoder and the
/// `FrameConnectionHandler`; the latter sees `channelActive` only once the peer is
/// authenticated, so nothing but the handshake is ever written before that.
///
/// Before authentication the decoder's `FrameGate` admits only handshake frames of at most
/// 1 KiB, and the handshake must finish within `handshakeTimeout`; after it, sealed records up
/// to what the authenticated principal may send (clients: one request). An inner frame of a kind
/// the principal may not send (a client sending replica messages) closes the connection.
final class SessionHandler: ChannelDuplexHandler {
    typealias InboundIn = Frame
    typealias InboundOut = Frame
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Role { case initiator(expected: SessionPrincipal), responder }
    private enum State {
        case idle
        case initiating(InitiatorHandshake)
        case responding(ResponderHandshake)
        case established(Session)
        case failed
    }

    private let role: Role
    private let setup: SessionSetup
    private let staticKey: X25519.PrivateKey
    private let gate: FrameGate
    /// Inner frames: known kinds, client kinds and limits.
    private let innerRules: FrameRules
    /// Called once the peer is authenticated; returns false to refuse it (a per-principal cap).
    private let onAuthenticated: (SessionPrincipal) -> Bool
    private var state = State.idle
    private var timer: Scheduled<Void>?
    private var idleTask: RepeatedTask?
    private var lastRead = NIODeadline.now()
    private var activeSeen = false

    init(role: Role, setup: SessionSetup, staticKey: X25519.PrivateKey, gate: FrameGate, innerRules: FrameRules,
         onAuthenticated: @escaping (SessionPrincipal) -> Bool) {
        self.role = role
        self.setup = setup
        self.staticKey = staticKey
        self.gate = gate
        self.innerRules = innerRules
        self.onAuthenticated = onAuthenticated
        gate.maxBodyBytes = [SessionFrameKind.handshake: SessionFrameKind.maxHandshakeBytes]
    }

    private var sessionConfig: SessionConfig {
        SessionConfig(clusterID: setup.clusterID, principal: setup.principal, signingKey: setup.signingKey,
                      staticKey: staticKey,
                      limits: SessionLimits(maxHandshakeMessageBytes: SessionFrameKind.maxHandshakeBytes,
                                            maxRecordBytes: 1 + max(innerRules.limits.maxFrameBodyBytes, innerRules.limits.maxClientFrameBodyBytes) + Session.recordOverhead),
                      keyring: setup.keyring)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { begin(context: context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        idleTask?.cancel()
    }

    func channelActive(context: ChannelHandlerContext) {
        begin(context: context)
        // Not forwarded: the connection handler becomes active when the session does.
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        idleTask?.cancel()
        if case .established = state { context.fireChannelInactive() }
        state = .failed
    }

    private func begin(context: ChannelHandlerContext) {
        guard !activeSeen else { return }
        activeSeen = true
        timer = context.eventLoop.scheduleTask(in: setup.handshakeTimeout) { [weak self] in
            guard let self, case .established = self.state else {
                self?.fail(context: context, "handshake_timeout")
                return
            }
        }
        guard case .initiator(let expected) = role else { return }
        do {
            var random = SecureRandomNumberGenerator()
            var hs = try InitiatorHandshake(config: sessionConfig, expectedPeer: expected, random: &random)
            let message1 = try hs.start()
            state = .initiating(hs)
            writeHandshake(message1, context: context)
        } catch {
            fail(context: context, error.reason)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = Self.unwrapInboundIn(data)
        lastRead = .now()
        switch state {
        case .established(let session):
            guard frame.kind == SessionFrameKind.sealed else { return fail(context: context, "unexpected_frame_kind") }
            var body = frame.body
            let record = body.readBytes(length: body.readableBytes) ?? []
            let plain: [UInt8]
            do {
                plain = try session.open(record)
            } catch {
                return fail(context: context, error.reason)
            }
            guard let kind = plain.first else { return fail(context: context, "empty_record") }
            let fromClient: Bool
            if case .client = session.peer { fromClient = true } else { fromClient = false }
            guard innerRules.knownKinds.contains(kind), !fromClient || innerRules.clientKinds.contains(kind) else {
                return fail(context: context, fromClient ? "client_sent_replica_kind" : "unknown_inner_kind")
            }
            let limit = fromClient ? innerRules.limits.maxClientFrameBodyBytes : innerRules.limits.maxFrameBodyBytes
            guard plain.count - 1 <= limit else { return fail(context: context, "inner_frame_oversized") }
            var inner = context.channel.allocator.buffer(capacity: plain.count - 1)
            plain.withUnsafeBytes { inner.writeBytes(UnsafeRawBufferPointer(rebasing: $0[1...])) }
            context.fireChannelRead(Self.wrapInboundOut(Frame(kind: kind, body: inner)))
        case .initiating(var hs):
            guard frame.kind == SessionFrameKind.handshake else { return fail(context: context, "unexpected_frame_kind") }
            var body = frame.body
            do {
                let (message3, session) = try hs.finish(body.readBytes(length: body.readableBytes) ?? [])
                writeHandshake(message3, context: context)
                established(session, context: context)
            } catch {
                fail(context: context, error.reason)
            }
        case .idle:
            guard case .responder = role, frame.kind == SessionFrameKind.handshake else { return fail(context: context, "unexpected_frame_kind") }
            var body = frame.body
            do {
                var random = SecureRandomNumberGenerator()
                var hs = try ResponderHandshake(config: sessionConfig, random: &random)
                let message2 = try hs.respond(to: body.readBytes(length: body.readableBytes) ?? [])
                state = .responding(hs)
                writeHandshake(message2, context: context)
            } catch {
                fail(context: context, error.reason)
            }
        case .responding(var hs):
            guard frame.kind == SessionFrameKind.handshake else { return fail(context: context, "unexpected_frame_kind") }
            var body = frame.body
            do {
                let session = try hs.finish(body.readBytes(length: body.readableBytes) ?? [])
                established(session, context: context)
            } catch {
                fail(context: context, error.reason)
            }
        case .failed:
            return
        }
    }

    private func established(_ session: Session, context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        guard onAuthenticated(session.peer) else { return fail(context: context, "too_many_sessions_for_principal") }
        state = .established(session)
        let fromClient: Bool
        if case .client = session.peer { fromClient = true } else { fromClient = false }
        let inner = fromClient ? innerRules.limits.maxClientFrameBodyBytes : innerRules.limits.maxFrameBodyBytes
        gate.maxBodyBytes = [SessionFrameKind.sealed: 1 + inner + Session.recordOverhead]
        let idle = setup.idleTimeout
        let half = TimeAmount.nanoseconds(max(idle.nanoseconds / 2, 1))
        idleTask = context.eventLoop.scheduleRepeatedTask(initialDelay: half, delay: half) { [weak self] _ in
            guard let self, NIODeadline.now() - self.lastRead > idle else { return }
            self.fail(context: context, "idle_timeout")
        }
        context.fireChannelActive()
    }

    /// Seals an encoded frame (header and body) into a sealed record frame.
    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard case .established(let session) = state else {
            promise?.fail(SessionClosed(reason: "not_established"))
            return
        }
        var frame = Self.unwrapOutboundIn(data)
        guard frame.readableBytes >= FrameHeader.byteCount,
              let kind = frame.getInteger(at: frame.readerIndex + 5, as: UInt8.self) else {
            promise?.fail(SessionClosed(reason: "malformed_outbound_frame"))
            return
        }
        frame.moveReaderIndex(forwardBy: FrameHeader.byteCount - 1)
        // The kind byte sits right before the body: overwrite the last header byte with it and
        // seal [kind ‖ body] in one piece.
        frame.setInteger(kind, at: frame.readerIndex)
        let plain = frame.readBytes(length: frame.readableBytes) ?? []
        let record: [UInt8]
        do {
            record = try session.seal(plain)
        } catch {
            promise?.fail(error)
            return fail(context: context, error.reason)
        }
        var out = context.channel.allocator.buffer(capacity: FrameHeader.byteCount + record.count)
        FrameHeader(kind: SessionFrameKind.sealed, clusterID: setup.clusterID, bodyLength: UInt32(record.count)).encode(into: &out)
        out.writeBytes(record)
        context.write(Self.wrapOutboundOut(out), promise: promise)
    }

    private func writeHandshake(_ message: [UInt8], context: ChannelHandlerContext) {
        var out = context.channel.allocator.buffer(capacity: FrameHeader.byteCount + message.count)
        FrameHeader(kind: SessionFrameKind.handshake, clusterID: setup.clusterID, bodyLength: UInt32(message.count)).encode(into: &out)
        out.writeBytes(message)
        context.writeAndFlush(Self.wrapOutboundOut(out), promise: nil)
    }

    private func fail(context: ChannelHandlerContext, _ reason: String) {
        if case .failed = state { return }
        state = .failed
        timer?.cancel()
        idleTask?.cancel()
        context.fireErrorCaught(SessionClosed(reason: reason))
        context.close(promise: nil)
    }
}
