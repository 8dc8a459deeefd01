import BFTCore
import BFTCrypto
import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization
import BFTConfig
import BFTFrameCodec
import BFTTransport
import BFTSession

/// Outcome of one request as the application sees it.
public enum RequestOutcome: Sendable {
    /// `view`: the lowest view among the f+1 matching replies (see `ClientCore.Completion.view`).
    case completed(result: [UInt8], retries: Int, view: ViewNum)
    case timedOut
    /// The runtime shut down before the request completed.
    case shutDown
}

/// Runs one or more PBFT clients (`ClientCore`) over TCP connections to every replica, one
/// authenticated session per client identity and replica. Used by `Client`, `bft-client` and
/// `bft-loadgen`. Each client identity keeps up to `window` requests outstanding; replies are
/// decoded on the I/O threads and handed to the client loop, where the core decides which to
/// verify (none when a reply came over its replica's session), and the cores run on that loop.
public final class ClientRuntime: @unchecked Sendable {
    public let configuration: ClusterConfiguration
    let group: MultiThreadedEventLoopGroup
    let ownsGroup: Bool
    let loop: EventLoop
    /// One set of connections per client identity: each runs its own authenticated session to
    /// every replica, so replicas route that client's replies by its own session.
    let connections: [ClientID: ClientConnections]
    let verifier: MessageVerifier
    let tickInterval: TimeAmount
    let logger: Logger

    /// Touched only on `loop`.
    var cores: [ClientID: ClientCore] = [:]
    var callbacks: [ClientID: [UInt64: @Sendable (RequestOutcome) -> Void]] = [:]
    /// Submissions waiting for room in their client's window, in submission order.
    var waiting: [ClientID: [(operation: [UInt8], timeout: TimeAmount, done: @Sendable (RequestOutcome) -> Void)]] = [:]
    var isShutDown = false
    var tickTask: RepeatedTask?
    /// Retransmissions so far (all clients).
    public private(set) var retransmissions = 0
    /// Replies refused by signature verification.
    let badReplies = Atomic<Int>(0)

    public init(configuration: ClusterConfiguration, clients: [(id: ClientID, key: Ed25519PrivateKey)], window: Int,
                logger: Logger, group: MultiThreadedEventLoopGroup? = nil) {
        self.configuration = configuration
        self.logger = logger
        self.ownsGroup = group == nil
        self.group = group ?? MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.loop = self.group.next()
        let proto = configuration.protocolConfig()
        self.tickInterval = .milliseconds(Int64(configuration.tickMilliseconds))
        self.verifier = MessageVerifier(checker: configuration.keyring(), clusterID: proto.clusterID,
                                        replicaCount: proto.n, clientCount: proto.clientCount)
        let start = UInt64(Date().timeIntervalSince1970 * 1_000_000)
        // Retransmit after ~1 s, backing off to ~8 s.
        let ticksPerSecond = UInt64(max(1, 1000 / configuration.tickMilliseconds))
        for (id, key) in clients {
            cores[id] = ClientCore(id: id, config: proto, signer: Ed25519MessageSigner(key: key), initialTimestamp: start,
                                   window: window, retransmitTicks: ticksPerSecond, maxRetransmitTicks: 8 * ticksPerSecond)
        }
        var addresses: [Int: (host: String, port: Int)] = [:]
        for r in configuration.replicas { addresses[r.id] = (r.host, r.port) }
        let sink = Sink()
        // What this side sends is limited as the replicas limit client frames (the largest
        // request); what it receives, to the largest reply the budget allows.
        var limits = WireLimits.default
        limits.maxFrameBodyBytes = proto.maxReplyBytes
        limits.maxClientFrameBodyBytes = proto.maxRequestBytes
        var connections: [ClientID: ClientConnections] = [:]
        let keyring = configuration.sessionKeyring()
        for (id, key) in clients {
            let session = SessionSetup(clusterID: proto.clusterID, principal: .client(id), signingKey: key, keyring: keyring)
            connections[id] = ClientConnections(clusterID: proto.clusterID, replicas: addresses,
                                                knownKinds: [MessageKind.reply.rawValue], limits: limits, session: session,
                                                group: self.group, logger: logger, onFrame: { sink.deliver($0, $1) })
        }
        self.connections = connections
        sink.runtime = self
    }

    final class Sink: @unchecked Sendable {
        weak var runtime: ClientRuntime?
        func deliver(_ replica: Int, _ frame: InboundFrame) { runtime?.onFrame(frame, from: replica) }
    }

    public func start() {
        for id in connections.keys.sorted() { connections[id]!.start() }
        tickTask = loop.scheduleRepeatedTask(initialDelay: tickInterval, delay: tickInterval) { [weak self] _ in
            self?.onTick()
        }
    }

    public func shutdown() {
        // Everything still waiting or outstanding ends now, with `.shutDown`.
        try? loop.submit {
            guard !self.isShutDown else { return }
            self.isShutDown = true
            for id in self.callbacks.keys.sorted() {
                for (_, cb) in self.callbacks[id] ?? [:] { cb(.shutDown) }
                for w in self.waiting[id] ?? [] { w.done(.shutDown) }
            }
            for id in self.waiting.keys.sorted() where self.callbacks[id] == nil {
                for w in self.waiting[id] ?? [] { w.done(.shutDown) }
            }
            self.callbacks = [:]
            self.waiting = [:]
        }.wait()
        tickTask?.cancel()
        for id in connections.keys.sorted() { try? connections[id]!.shutdown().wait() }
        if ownsGroup { try? group.syncShutdownGracefully() }
    }

    /// Replies are decoded on the I/O thread but verified lazily on the client loop: only once
    /// f+1 replies with the same result are in hand, and only those — verifying every reply of
    /// every replica would double the client's share of the signature cost.
    func onFrame(_ frame: InboundFrame, from replica: Int) {
        var body = frame.body
        let bytes = body.readBytes(length: body.readableBytes) ?? []
        guard case .reply(let reply)? = try? Message.decode(kind: frame.kind, body: bytes) else {
            badReplies.add(1, ordering: .relaxed)
            return
        }
        // A reply that replica r sent over our authenticated session with r is r's: the session
        // proves it, so its signature need not be checked (replies are authenticated by the session).
        let bySession = frame.principal == .replica(UInt32(replica)) && reply.replica == replica
        loop.execute { self.onUnverifiedReply(reply, authenticatedBySession: bySession) }
    }

    /// The core decides which replies to verify (f+1 matching ones); the shell verifies them.
    func onUnverifiedReply(_ reply: Reply, authenticatedBySession: Bool) {
        guard var core = cores[reply.client] else { return }
        if authenticatedBySession {
            return onReply(reply)
        }
        let toVerify = core.onUnverifiedReply(reply)
        cores[reply.client] = core
        for r in toVerify {
            if case .success = verifier.verify(.reply(r)) {
                onReply(r)
            } else {
                badReplies.add(1, ordering: .relaxed)
            }
        }
    }

    func onReply(_ reply: Reply) {
        guard var core = cores[reply.client] else { return }
        let out = core.onReply(reply)
        cores[reply.client] = core
        handle(reply.client, out)
    }

    /// Time reaches the cores as ticks; they retransmit and give up at their deadlines.
    func onTick() {
        for id in cores.keys.sorted() {
            var core = cores[id]!
            let out = core.tick()
            cores[id] = core
            retransmissions += out.retransmissions
            handle(id, out)
        }
    }

    func handle(_ id: ClientID, _ out: ClientCore.Output) {
        for r in out.broadcasts {
            var buf = ByteBufferAllocator().buffer(capacity: 0)
            buf.writeBytes(r.encoded)
            connections[id]?.broadcast(kind: MessageKind.request.rawValue, body: buf)
        }
        for c in out.completions {
            if let cb = callbacks[id]?.removeValue(forKey: c.timestamp) { cb(.completed(result: c.result, retries: c.retries, view: c.view)) }
        }
        for t in out.timedOut {
            if let cb = callbacks[id]?.removeValue(forKey: t) { cb(.timedOut) }
        }
        if !out.completions.isEmpty || !out.timedOut.isEmpty { drainWaiting(id) }
    }

    /// Submits `operation` as client `id` when its window has room; `done` runs on the client loop.
    /// Returns false (and does nothing) when the window is full.
    public func submit(client id: ClientID, operation: [UInt8], timeout: TimeAmount,
                       done: @escaping @Sendable (RequestOutcome) -> Void) -> EventLoopFuture<Bool> {
        loop.submit { self.trySubmitOnLoop(client: id, operation: operation, timeout: timeout, done: done) }
    }

    /// Same as `submit`, for callers already on the client loop (completion callbacks, load schedules).
    public func trySubmitOnLoop(client id: ClientID, operation: [UInt8], timeout: TimeAmount,
                                done: @escaping @Sendable (RequestOutcome) -> Void) -> Bool {
        loop.preconditionInEventLoop()
        guard var core = cores[id], core.canSubmit else { return false }
        let ticks = UInt64(max(1, (timeout.nanoseconds + tickInterval.nanoseconds - 1) / max(tickInterval.nanoseconds, 1)))
        let (t, out) = core.submit(operation, timeoutTicks: ticks)
        cores[id] = core
        callbacks[id, default: [:]][t] = done
        handle(id, out)
        return true
    }

    /// Submits `operation` as client `id` as soon as its window has room, after every earlier
    /// waiting submission of that client; `done` runs on the client loop.
    public func submitInOrder(client id: ClientID, operation: [UInt8], timeout: TimeAmount,
                              done: @escaping @Sendable (RequestOutcome) -> Void) {
        loop.execute {
            guard !self.isShutDown, self.cores[id] != nil else { return done(.shutDown) }
            self.waiting[id, default: []].append((operation, timeout, done))
            self.drainWaiting(id)
        }
    }

    func drainWaiting(_ id: ClientID) {
        while let next = waiting[id]?.first, cores[id]?.canSubmit == true {
            waiting[id]!.removeFirst()
            _ = trySubmitOnLoop(client: id, operation: next.operation, timeout: next.timeout, done: next.done)
        }
    }

    /// The window of client `id` (requests it may keep outstanding).
    public func window(of id: ClientID) -> Int { cores[id]?.window ?? 0 }

    /// Blocking convenience for command-line use: one request, waits for f+1 matching replies.
    public func call(client id: ClientID, operation: [UInt8], timeout: TimeAmount) -> RequestOutcome {
        let promise = loop.makePromise(of: RequestOutcome.self)
        let accepted = (try? submit(client: id, operation: operation, timeout: timeout) { promise.succeed($0) }.wait()) ?? false
        if !accepted { promise.succeed(.timedOut) }
        return (try? promise.futureResult.wait()) ?? .timedOut
    }

    public var loopForCallbacks: EventLoop { loop }
}
