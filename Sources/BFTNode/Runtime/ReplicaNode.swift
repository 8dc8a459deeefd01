import BFTCore
import BFTSession
import BFTCrypto
import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization
import BFTApplications
import BFTConfig
import BFTFrameCodec
import BFTStorage
import BFTTransport

/// Counters a running replica exposes (status file, logs, later metrics).
public struct NodeCounters: Sendable {
    public var framesIn = 0
    public var verified = 0
    public var droppedByReason: [String: Int] = [:]
    public var delivered = 0
    public var viewChanges = 0
}

/// The networked replica: it owns the transport, a single core thread that steps the pure
/// `Replica`, and the application. Signature verification runs on the transport's I/O threads,
/// one per core, before anything reaches the core thread, and each message is verified once.
public final class ReplicaNode: @unchecked Sendable {
    public let id: ReplicaID
    public let configuration: ClusterConfiguration
    let logger: Logger
    let verifier: MessageVerifier
    /// The decoders' limits, fixed at start: read on the I/O threads, which must never touch
    /// `driver` (copying the replica there raced with the core loop and crashed a replica).
    let limits: MessageLimits
    let transport: Transport
    let ioGroup: MultiThreadedEventLoopGroup
    let coreGroup: MultiThreadedEventLoopGroup
    var coreLoop: EventLoop { coreGroup.next() }
    let tickInterval: TimeAmount
    let dataDirectory: String
    let deliverLogPath: String?

    /// Touched only on the core loop.
    /// The core and its write-ahead log, driven through the one `ReplicaDriver` (persist, then
    /// deliver, then send). Touched only on the core loop.
    var driver: ReplicaDriver<NodePersistence>
    var replica: Replica { driver.replica }
    /// The node's clock in ticks (the core's time comes from here).
    var ticks: UInt64 = 0
    var deliverLog: DeliverLog?
    var clientConnections: [ClientID: ConnectionID] = [:]
    var lastStatusWrite = NIODeadline.now()
    var tickTask: RepeatedTask?
    /// Prometheus metrics, and the HTTP server for /metrics and /status (when `--metrics` is given).
    public let metrics = NodeMetrics()
    let statusSnapshot = StatusSnapshot()
    var metricsServer: StatusHTTPServer?
    var metricsGroup: MultiThreadedEventLoopGroup?
    /// When this replica first saw the pre-prepare of a sequence number (for the latency
    /// histograms); bounded by `maxTrackedSlots`.
    var prePrepareSeen: [SeqNum: NIODeadline] = [:]
    let maxTrackedSlots = 4096

    /// Test-only fault injection: when the environment names a file with
    /// `BFT_TEST_PARTITION_FILE`, the replica drops every message to and from the replica ids
    /// listed in it (comma-separated), re-read every tick. No netem qdisc exists on the test
    /// machines, so partitions of real processes are injected here.
    let partitionFile = ProcessInfo.processInfo.environment["BFT_TEST_PARTITION_FILE"]
    var partitioned: Set<ReplicaID> = []

    /// The write-ahead log (nil only in tests that run without durability).
    var durability: Durability? { driver.log.durability }

    /// Verified messages waiting for the core thread. Bounded by `maxInboxMessages`; above it,
    /// frames stay unreleased in the transport, which stops reading (backpressure).
    struct Inbox { var items: [(VerifiedMessage, ConnectionID, InboundFrame)] = []; var scheduled = false }
    let inbox = Mutex(Inbox())
    /// The application, when it can fail (`exec:`); checked after every core step.
    let failableApplication: (any FailableApplication)?
    /// Exit status of a replica stopped because its application failed (README, `bft-node --help`).
    public static let applicationFailureExitCode: Int32 = 4
    /// What to do once the application failed, after the critical log line and the metric;
    /// the default exits with `applicationFailureExitCode`. Tests replace it to observe the stop.
    public var onApplicationFailure: (String) -> Void = { _ in Foundation.exit(ReplicaNode.applicationFailureExitCode) }
    /// Set on the core loop once the application failed: nothing more is stepped or applied.
    var halted = false
    /// Most messages handed to the core in one step.
    public let maxStepBatch = 512
    let counters = Mutex(NodeCounters())
    /// Whether this replica is the primary of its view, as of its last step: read by the I/O
    /// threads to decide whether a request from its own client session still needs a signature check.
    let isPrimaryHint = Atomic<Bool>(false)

    public init(configuration: ClusterConfiguration, id: ReplicaID, key: Ed25519PrivateKey,
                application: any ReplicatedApplication, dataDirectory: String, deliverLogPath: String?,
                logger: Logger, listenHost: String? = nil, interceptor: (any OutboundInterceptor)? = nil,
                durable: Bool = true, fsync: Bool = true, metricsAddress: (host: String, port: Int)? = nil,
                statusInterval: TimeAmount = .seconds(1)) throws {
        self.id = id
        self.statusInterval = statusInterval
        self.configuration = configuration
        self.dataDirectory = dataDirectory
        self.deliverLogPath = deliverLogPath
        var logger = logger
        logger[metadataKey: "replica"] = "\(id)"
        self.logger = logger
        let proto = configuration.protocolConfig()
        self.limits = proto.limits
        self.tickInterval = .milliseconds(Int64(configuration.tickMilliseconds))
        self.verifier = MessageVerifier(checker: configuration.keyring(), clusterID: proto.clusterID,
                                        replicaCount: proto.n, clientCount: proto.clientCount)
        let replica = Replica(id: id, config: proto, signer: Ed25519MessageSigner(key: key), application: application)
        self.failableApplication = application as? any FailableApplication
        self.deliverLog = try deliverLogPath.map { try DeliverLog(path: $0) }
        // Log records other than checkpoint states (which go to files of their own) are bounded
        // by the budget: the largest own pre-prepare, VIEW-CHANGE, NEW-VIEW or certificate.
        let durability = durable ? try Durability(directory: dataDirectory + "/wal", fsync: fsync,
                                                   maxRecordBytes: max(proto.maxPersistRecordBytes, 1024 * 1024), logger: logger) : nil
        let metrics = self.metrics
        self.driver = ReplicaDriver(replica: replica,
                                    log: NodePersistence(durability: durability, limits: proto.limits) { metrics.walFsync($0) },
                                    interceptor: interceptor)
        self.ioGroup = MultiThreadedEventLoopGroup(numberOfThreads: max(System.coreCount, 1))
        self.coreGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var peers: [Int: (host: String, port: Int)] = [:]
        for r in configuration.replicas where r.id != id { peers[r.id] = (r.host, r.port) }
        let me = configuration.address(of: id)
        // Frame limits from the budget: replica kinds up to the largest message a correct replica
        // sends (a state chunk, a batch, a VIEW-CHANGE or NEW-VIEW with digests), client kinds up
        // to the largest request.
        var limits = WireLimits.default
        limits.maxFrameBodyBytes = proto.maxReplicaMessageBytes
        limits.maxClientFrameBodyBytes = proto.maxRequestBytes
        let sink = FrameSink()
        self.transport = Transport(
            clusterID: proto.clusterID, listenHost: listenHost ?? me.host, listenPort: me.port, peers: peers,
            knownKinds: Set(MessageKind.allCases.map(\.rawValue)), clientKinds: [MessageKind.request.rawValue],
            limits: limits,
            session: SessionSetup(clusterID: proto.clusterID, principal: .replica(UInt32(id)), signingKey: key,
                                  keyring: configuration.sessionKeyring()),
            group: ioGroup, logger: logger, onFrame: { sink.deliver($0) })
        sink.node = self
        if let metricsAddress {
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            metricsGroup = group
            metricsServer = StatusHTTPServer(host: metricsAddress.host, port: metricsAddress.port, group: group, metrics: metrics,
                                             status: statusSnapshot.provider, logger: logger)
        }
    }

    /// Breaks the init-time reference cycle between the transport callback and the node.
    final class FrameSink: @unchecked Sendable {
        weak var node: ReplicaNode?
        func deliver(_ frame: InboundFrame) { node?.onFrame(frame) }
    }

    /// Rebuilds the replica from its write-ahead log and appends to the deliver log whatever the
    /// crash kept from reaching it.
    func recover() throws {
        if let path = deliverLogPath {
            // A missing log is a fresh start; an unreadable or malformed one stops the start:
            // guessing 0 would append every recovered delivery again.
            if FileManager.default.fileExists(atPath: path) {
                lastLoggedIndex = try DeliverLogEntry.read(path: path).last?.index ?? 0
            }
        }
        guard durability != nil else { return }
        let out = try driver.recover(now: ticks)
        if applicationFailed() { return }
        guard replica.lastExecuted > 0 || replica.view > 0 || !out.deliveries.isEmpty else { return }
        logDeliveries(out.deliveries)
        logger.notice("recovered from the write-ahead log", metadata: [
            "view": "\(replica.view)", "seq": "\(replica.lastExecuted)",
            "stableCheckpoint": "\(replica.stableSeq)", "delivered": "\(replica.executedCount)"])
    }

    public func start() throws {
        try recover()
        try metricsServer?.start()
        try transport.start()
        // status.json and /status exist from the start, not only after the first interval.
        try? coreLoop.submit { self.writeStatus() }.wait()
        tickTask = coreLoop.scheduleRepeatedTask(initialDelay: tickInterval, delay: tickInterval) { [weak self] _ in
            self?.onTick()
        }
        logger.notice("replica started", metadata: ["view": "\(replica.view)", "listen": "\(configuration.address(of: id).port)"])
    }

    public func shutdown() {
        tickTask?.cancel()
        metricsServer?.shutdown()
        try? metricsGroup?.syncShutdownGracefully()
        try? transport.shutdown().wait()
        try? coreLoop.submit { try? self.deliverLog?.flush() }.wait()
        try? coreGroup.syncShutdownGracefully()
        try? ioGroup.syncShutdownGracefully()
    }

    // MARK: - Edge: decode and verify on the I/O thread

    func onFrame(_ frame: InboundFrame) {
        var body = frame.body
        let bytes = body.readBytes(length: body.readableBytes) ?? []
        let message: Message
        do {
            message = try Message.decode(kind: frame.kind, body: bytes, limits: limits)
        } catch {
            count(drop: "decode_\(error.reason)")
            transport.penalize(frame.connection, reason: "undecodable \(frame.kind): \(error)")
            transport.release(frame)
            return
        }
        // The fast path: a request that arrived over its own client's authenticated session needs
        // no Ed25519 check — the session proves who sent it. The primary still checks it, since it
        // proposes it to backups that may not have received it directly (they check the client's
        // signature inside the pre-prepare) and a request with a bad signature would make a
        // correct primary look faulty.
        let result: Result<VerifiedMessage, VerificationFailure>
        if case .request(let r) = message, frame.principal == .client(r.client), !isPrimaryHint.load(ordering: .relaxed),
           let accepted = verifier.acceptFromOwnSession(r) {
            result = .success(accepted)
            metrics.requestAuthenticatedBySession()
        } else {
            result = verifier.verify(message)
            if case .success = result { metrics.signaturesVerified() }
        }
        switch result {
        case .failure(let why):
            count(drop: why.reason)
            transport.penalize(frame.connection, reason: why.description)
            transport.release(frame)
        case .success(let verified):
            if case .request = message { metrics.requestReceived() }
            let schedule = inbox.withLock { box -> Bool in
                box.items.append((verified, frame.connection, frame))
                if box.scheduled { return false }
                box.scheduled = true
                return true
            }
            if schedule { coreLoop.execute { self.drainInbox() } }
        }
    }

    func count(drop reason: String) {
        counters.withLock { $0.droppedByReason[reason, default: 0] += 1 }
        metrics.messageDropped(reason: reason)
    }

    // MARK: - Core thread

    func drainInbox() {
        var batch = inbox.withLock { box -> [(VerifiedMessage, ConnectionID, InboundFrame)] in
            let take = Array(box.items.prefix(maxStepBatch))
            box.items.removeFirst(take.count)
            if box.items.isEmpty { box.scheduled = false }
            return take
        }
        if batch.isEmpty { return }
        if !partitioned.isEmpty {
            batch = batch.filter { item in
                guard case .replica(let r) = item.0.message.signer, partitioned.contains(r) || partitioned.contains(id) else { return true }
                transport.release(item.2)
                return false
            }
        }
        metrics.setSignatureVerifyQueueDepth(inbox.withLock { $0.items.count })
        let now = NIODeadline.now()
        for (m, conn, frame) in batch {
            if case .prePrepare(let pp) = m.message, prePrepareSeen[pp.seq] == nil, prePrepareSeen.count < maxTrackedSlots {
                prePrepareSeen[pp.seq] = now
            }
            // Replies go where the client's own authenticated session is: a request relayed by a
            // replica (or by anyone else) never moves the route.
            if case .request(let r) = m.message, frame.principal == .client(r.client) || frame.principal == nil {
                clientConnections[r.client] = conn
            }
        }
        if halted { for (_, _, frame) in batch { transport.release(frame) }; return }
        let out = driver.stepOnly(batch.map(\.0))
        isPrimaryHint.store(replica.isPrimary, ordering: .relaxed)
        for (_, _, frame) in batch { transport.release(frame) }
        if applicationFailed() { return }
        apply(out)
        let more = inbox.withLock { box -> Bool in
            if box.items.isEmpty { box.scheduled = false; return false }
            return true
        }
        if more { coreLoop.execute { self.drainInbox() } }
    }

    func onTick() {
        if let partitionFile {
            let text = (try? String(contentsOfFile: partitionFile, encoding: .utf8)) ?? ""
            partitioned = Set(text.split(whereSeparator: { $0 == "," || $0.isWhitespace }).compactMap { Int($0) })
        }
        if halted { return }
        ticks += 1
        let ticked = driver.tickOnly(now: ticks)
        isPrimaryHint.store(replica.isPrimary, ordering: .relaxed)
        if applicationFailed() { return }
        apply(ticked)
        let now = NIODeadline.now()
        metrics.setProgress(view: replica.view, lastExecuted: replica.lastExecuted, stableCheckpoint: replica.stableSeq,
                            highestSeenFromPeers: replica.highestSeqSeen)
        if now - lastStatusWrite >= statusInterval {
            let t = transport.stats()
            metrics.setPeerConnectionsOpen(t.outboundConnectionsOpen)
            metrics.setClientConnectionsOpen(max(0, t.inboundConnectionsOpen - (configuration.n - 1)))
            metrics.recordDropTotals(t.droppedByReason, labelPrefix: "transport_")
            metrics.setEquivocationProofs(replica.equivocationProofs.count)
            lastStatusWrite = now
            writeStatus()
        }
    }

    /// True (and the node stopped) when the application failed during the last core step: then
    /// nothing that step produced may be persisted or sent (see `FailableApplication`).
    func applicationFailed() -> Bool {
        if halted { return true }
        guard let reason = failableApplication?.applicationFailure else { return false }
        halted = true
        metrics.setApplicationFailed()
        logger.critical("application failed; stopping this replica before it persists or sends anything from this step",
                        metadata: ["reason": "\(reason)", "exitCode": "\(Self.applicationFailureExitCode)"])
        onApplicationFailure(reason)
        return true
    }

    /// Carries out one step's outputs through the driver: persisted (one sync), then delivered
    /// to the deliver log (flushed before any reply leaves), then each message encoded once and
    /// handed to the transport for its recipients.
    func apply(_ out: ReplicaOutput) {
        applyOne(out)
        // Requests taken unchecked from their clients' sessions that the core now needs checked
        // (it would suspect the primary over them): verified here, then stepped as checked ones.
        guard !out.verifyRequests.isEmpty else { return }
        var checked: [VerifiedMessage] = []
        for r in out.verifyRequests {
            switch verifier.verify(.request(r)) {
            case .success(let v):
                metrics.signaturesVerified()
                checked.append(v)
            case .failure(let why):
                count(drop: why.reason)
                driver.discardUnverifiable(r)
            }
        }
        if !checked.isEmpty {
            let next = driver.stepOnly(checked)
            if applicationFailed() { return }
            apply(next)
        }
    }

    func applyOne(_ out: ReplicaOutput) {
        observeLatency(out)
        do {
            try driver.apply(out, deliver: { deliveries in
                logDeliveries(deliveries)
                counters.withLock { $0.delivered += deliveries.count }
                metrics.requestsExecuted(count: deliveries.count)
                var start = 0
                while start < deliveries.count {
                    let seq = deliveries[start].seq
                    var end = start
                    while end < deliveries.count && deliveries[end].seq == seq { end += 1 }
                    metrics.batchOrdered(requests: end - start)
                    start = end
                }
            }, send: send)
        } catch {
            // Without durable records the replica must not send anything more: stop.
            logger.critical("write-ahead log failed; stopping this replica", metadata: ["error": "\(error)"])
            Foundation.exit(3)
        }
        for e in out.events { log(e) }
    }

    /// Hands one message to the transport for each recipient (one shared frame for all peers),
    /// less the links the test-only partition file cuts.
    func send(_ message: Message, to recipients: [Principal]) {
        let kind = message.kind.rawValue
        var buf = ByteBufferAllocator().buffer(capacity: 0)
        buf.writeBytes(message.encoded())
        if partitioned.isEmpty && recipients.count == configuration.n - 1, case .replica = recipients.first {
            transport.broadcast(kind: kind, body: buf)
            return
        }
        for to in recipients {
            switch to {
            case .replica(let r):
                if partitioned.contains(r) || partitioned.contains(id) { continue }
                transport.send(toReplica: r, kind: kind, body: buf)
            case .client(let c):
                if let conn = clientConnections[c] { transport.send(toConnection: conn, kind: kind, body: buf) }
            }
        }
    }

    /// Highest index in the deliver log. After a crash the replica may deliver again what its log
    /// already holds (its WAL lost a tail, or it re-executes from a checkpoint): those are skipped,
    /// so the file never holds an index twice.
    var lastLoggedIndex: UInt64 = 0

    func logDeliveries(_ deliveries: [Delivery]) {
        guard let deliverLog else { return }
        let fresh = deliveries.filter { $0.index > lastLoggedIndex }
        guard let last = fresh.last else { return }
        do {
            try deliverLog.append(fresh)
            try deliverLog.flush()
        } catch {
            // The deliver log is what the application's operators read: a hole in it is a lost
            // delivery for them. A failing disk stops the replica, as for the write-ahead log.
            logger.critical("deliver log write failed; stopping this replica", metadata: ["error": "\(error)"])
            Foundation.exit(3)
        }
        lastLoggedIndex = last.index
    }

    /// Pre-prepare → prepared / committed / executed, observed from the step's outputs: our own
    /// pre-prepare (as primary), the prepared and committed certificates we persist, and deliveries.
    func observeLatency(_ out: ReplicaOutput) {
        let now = NIODeadline.now()
        for o in out.messages {
            if case .prePrepare(let pp) = o.message, pp.replica == id, prePrepareSeen[pp.seq] == nil, prePrepareSeen.count < maxTrackedSlots {
                prePrepareSeen[pp.seq] = now
            }
        }
        for record in out.persist {
            switch record {
            case .prepared(let cert):
                if let t = prePrepareSeen[cert.prePrepare.seq] { metrics.prePrepareToPrepared(now - t) }
            case .committed(let cert):
                if let t = prePrepareSeen[cert.prePrepare.seq] { metrics.prePrepareToCommitted(now - t) }
            default: break
            }
        }
        var executed = Set<SeqNum>()
        for d in out.deliveries where executed.insert(d.seq).inserted {
            if let t = prePrepareSeen.removeValue(forKey: d.seq) { metrics.prePrepareToExecuted(now - t) }
        }
        if !executed.isEmpty || prePrepareSeen.count >= maxTrackedSlots {
            let floor = replica.lastExecuted
            prePrepareSeen = prePrepareSeen.filter { $0.key > floor }
        }
    }

    func log(_ e: ReplicaEvent) {
        if case .dropped = e {} else { metrics.record(e) }
        var meta: Logger.Metadata = ["view": "\(replica.view)", "seq": "\(replica.lastExecuted)"]
        switch e {
        case .viewChangeStarted(let v):
            counters.withLock { $0.viewChanges += 1 }
            logger.notice("view change started", metadata: meta.merging(["to": "\(v)"]) { $1 })
        case .prePrepareDeadlineMissed(let primary, let waited):
            logger.warning("primary sent no pre-prepare while a request waited; suspecting it", metadata: meta.merging([
                "primary": "\(primary)", "waitedMs": "\(waited * UInt64(configuration.tickMilliseconds))"]) { $1 })
        case .newViewInstalled(let v):
            logger.notice("new view installed", metadata: meta.merging(["newView": "\(v)", "primary": "\(replica.config.primary(of: v))"]) { $1 })
        case .checkpointStable(let seq, let d):
            logger.info("checkpoint stable", metadata: meta.merging(["checkpoint": "\(seq)", "digest": "\(d)"]) { $1 })
        case .stateTransferred(let seq):
            logger.notice("state transferred", metadata: meta.merging(["checkpoint": "\(seq)"]) { $1 })
        case .checkpointMismatch(let seq):
            logger.error("own checkpoint digest differs from the stable one", metadata: meta.merging(["checkpoint": "\(seq)"]) { $1 })
        case .dropped(let kind, let from, let reason):
            count(drop: reason.rawValue)
            meta["from"] = "\(from)"
            logger.debug("dropped \(kind)", metadata: meta.merging(["reason": "\(reason.rawValue)"]) { $1 })
        case .equivocation(let proof):
            logger.warning("equivocation proof", metadata: meta.merging(["culprit": "\(proof.replica)", "proofView": "\(proof.view)", "proofSeq": "\(proof.seq)"]) { $1 })
        }
    }

    /// How often `DATA/status.json` (and the `/status` endpoint) is refreshed.
    public let statusInterval: TimeAmount

    /// Snapshot of the replica's progress, written to `DATA/status.json` every `statusInterval`
    /// (the document type is shared with the tools that read it).
    public typealias StatusReport = ReplicaStatus

    func statusReport() -> StatusReport {
        let c = counters.withLock { $0 }
        return StatusReport(replica: id, view: replica.view, primary: replica.primary, active: replica.active,
                            lastExecuted: replica.lastExecuted, stableCheckpoint: replica.stableSeq,
                            delivered: replica.executedCount, pendingRequests: replica.pendingRequestCount,
                            viewChanges: c.viewChanges, dropped: c.droppedByReason)
    }

    func writeStatus() {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        guard let data = try? enc.encode(statusReport()) else { return }
        statusSnapshot.update(Array(data))
        let path = dataDirectory + "/status.json"
        let tmp = path + ".tmp"
        if FileManager.default.createFile(atPath: tmp, contents: data, attributes: [.posixPermissions: 0o600]) {
            _ = rename(tmp, path)
        }
    }

    /// The transport's counters (frames, drops and closes by reason, connections).
    public func transportStats() -> TransportStats { transport.stats() }

    /// Drops counted by reason at the edge and by the core.
    public func dropCounts() -> [String: Int] { counters.withLock { $0.droppedByReason } }

    /// Current status, read on the core thread.
    public func status() -> StatusReport {
        (try? coreLoop.submit { self.statusReport() }.wait()) ?? statusReport()
    }
}
