import Logging
import NIOCore
import NIOPosix
import Testing

@testable import BFTNode
@testable import BFTFrameCodec
@testable import BFTTransport
@testable import BFTApplications
@testable import BFTConfig
@testable import BFTClient

// MARK: - Helpers

private let clusterID: UInt32 = 77
private let replicaKinds: Set<UInt8> = [1, 2, 3, 10, 11]
private let clientKind: UInt8 = 10
private let replyKind: UInt8 = 11

/// Collects what a logger emits, so tests can check that rejections are logged.
final class LogCapture: @unchecked Sendable {
    private let entries = LockedBox<[(Logger.Level, String)]>([])

    func append(_ level: Logger.Level, _ text: String) {
        self.entries.withLock { $0.append((level, text)) }
    }

    func contains(level: Logger.Level, _ needle: String) -> Bool {
        self.entries.withLock { $0.contains { $0.0 == level && $0.1.contains(needle) } }
    }

    var logger: Logger {
        var logger = Logger(label: "transport-test") { _ in CapturingHandler(capture: self) }
        logger.logLevel = .debug
        return logger
    }

    struct CapturingHandler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .debug

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { self.metadata[key] }
            set { self.metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            self.capture.append(event.level, "\(event.message) \(event.metadata ?? [:])")
        }
    }
}

/// Thread-safe list of received frames.
final class Inbox<Element: Sendable>: @unchecked Sendable {
    private let items = LockedBox<[Element]>([])
    func append(_ e: Element) { self.items.withLock { $0.append(e) } }
    var all: [Element] { self.items.withLock { $0 } }
    var count: Int { self.items.withLock { $0.count } }
}

/// Polls `condition` every 5 ms until it holds or `timeout` passes. Why polling: real
/// sockets give no completion signal to wait on, and fixed sleeps are either slow or flaky.
func eventually(
    timeout: Duration = .seconds(3),
    _ condition: () -> Bool
) async -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: timeout)
    while clock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(5))
    }
    return condition()
}

/// Checks that `condition` keeps holding for `duration` (used to show something does *not*
/// happen, e.g. no further frames while reading is paused).
func stays(for duration: Duration, _ condition: () -> Bool) async -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: duration)
    while clock.now < deadline {
        if !condition() { return false }
        try? await Task.sleep(for: .milliseconds(5))
    }
    return condition()
}

/// A port that was free a moment ago. Needed where a peer's address must be known before the
/// peer listens (the reconnect tests); the tiny race with other processes is acceptable.
func freePort(group: EventLoopGroup) throws -> Int {
    let channel = try ServerBootstrap(group: group)
        .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
        .bind(host: "127.0.0.1", port: 0).wait()
    let port = channel.localAddress!.port!
    try channel.close().wait()
    return port
}

func body(_ bytes: [UInt8]) -> ByteBuffer { ByteBuffer(bytes: bytes) }

func bytes(_ frame: InboundFrame) -> [UInt8] { Array(frame.body.readableBytesView) }

/// A transport that collects (and by default immediately releases) what it receives.
final class Node: @unchecked Sendable {
    let transport: Transport
    let inbox = Inbox<InboundFrame>()

    init(
        port: Int,
        peers: [Int: PeerAddress],
        limits: WireLimits = .default,
        group: EventLoopGroup,
        logger: Logger = Logger(label: "transport-test", factory: { _ in SwiftLogNoOpLogHandler() }),
        autoRelease: Bool = true,
        onFrame: (@Sendable (Transport, InboundFrame) -> Void)? = nil
    ) {
        let inbox = self.inbox
        let box = LockedBox<Transport?>(nil)
        self.transport = Transport(
            clusterID: clusterID,
            listenHost: "127.0.0.1",
            listenPort: port,
            peers: peers,
            knownKinds: replicaKinds,
            clientKinds: [clientKind],
            limits: limits,
            group: group,
            logger: logger,
            onFrame: { frame in
                inbox.append(frame)
                let transport = box.withLock { $0 }!
                onFrame?(transport, frame)
                if autoRelease { transport.release(frame) }
            }
        )
        box.withLock { $0 = self.transport }
    }
}

/// A raw TCP client that writes whatever bytes a test wants.
func rawConnect(group: EventLoopGroup, port: Int) throws -> Channel {
    try ClientBootstrap(group: group).connect(host: "127.0.0.1", port: port).wait()
}

func shutdown(_ transports: [Transport], _ group: MultiThreadedEventLoopGroup) async throws {
    for t in transports { try await t.shutdown().get() }
    try await group.shutdownGracefully()
}

// MARK: - Tests

@Suite("Transport over sockets")
struct TransportNetworkTests {
    @Test func threeReplicasExchangeFramesInAllDirections() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let ports = try (0..<3).map { _ in try freePort(group: group) }
        let nodes = (0..<3).map { me in
            Node(
                port: ports[me],
                peers: Dictionary(uniqueKeysWithValues: (0..<3).filter { $0 != me }.map { ($0, PeerAddress(host: "127.0.0.1", port: ports[$0])) }),
                group: group
            )
        }
        for n in nodes { try n.transport.start() }
        for (i, n) in nodes.enumerated() {
            #expect(n.transport.boundPort == ports[i])
            n.transport.broadcast(kind: 1, body: body([UInt8(i), 0]))
            for j in 0..<3 where j != i {
                n.transport.send(toReplica: j, kind: 2, body: body([UInt8(i), UInt8(j), 1]))
            }
        }
        for (i, n) in nodes.enumerated() {
            #expect(await eventually { n.inbox.count == 4 })
            let received = Set(n.inbox.all.map { [$0.kind] + bytes($0) })
            var expected = Set<[UInt8]>()
            for j in 0..<3 where j != i {
                expected.insert([1, UInt8(j), 0])
                expected.insert([2, UInt8(j), UInt8(i), 1])
            }
            #expect(received == expected)
        }
        // Per-sender order is preserved (one TCP stream per direction).
        for k in 0..<50 { nodes[0].transport.send(toReplica: 1, kind: 3, body: body([UInt8(k)])) }
        #expect(await eventually { nodes[1].inbox.all.filter { $0.kind == 3 }.count == 50 })
        #expect(nodes[1].inbox.all.filter { $0.kind == 3 }.map { bytes($0)[0] } == (0..<50).map { UInt8($0) })

        let s = nodes[0].transport.stats()
        #expect(s.framesOut == 2 + 2 + 50)
        #expect(s.outboundConnectionsOpen == 2)
        #expect(s.inboundConnectionsOpen == 2)
        #expect(s.inboundUnreleased == 0)
        try await shutdown(nodes.map(\.transport), group)
    }

    @Test func peerThatStartsLaterIsReachedAfterReconnect() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let portB = try freePort(group: group)
        let a = Node(port: 0, peers: [1: PeerAddress(host: "127.0.0.1", port: portB)], group: group)
        try a.transport.start()
        for k in 0..<3 { a.transport.send(toReplica: 1, kind: 1, body: body([UInt8(k)])) }
        // Let a couple of dials fail first.
        #expect(await eventually { a.transport.stats().connectFailures >= 2 })
        #expect(!a.transport.isConnected(toReplica: 1))

        let b = Node(port: portB, peers: [:], group: group)
        try b.transport.start()
        #expect(await eventually { b.inbox.count == 3 })
        #expect(b.inbox.all.map { bytes($0)[0] } == [0, 1, 2])
        #expect(a.transport.isConnected(toReplica: 1))
        #expect(a.transport.stats().reconnects >= 2)
        try await shutdown([a.transport, b.transport], group)
    }

    @Test func reconnectsAfterPeerRestart() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let portB = try freePort(group: group)
        let a = Node(port: 0, peers: [1: PeerAddress(host: "127.0.0.1", port: portB)], group: group)
        var b = Node(port: portB, peers: [:], group: group)
        try b.transport.start()
        try a.transport.start()
        a.transport.send(toReplica: 1, kind: 1, body: body([1]))
        #expect(await eventually { b.inbox.count == 1 })
        try await b.transport.shutdown().get()
        #expect(await eventually { !a.transport.isConnected(toReplica: 1) })

        b = Node(port: portB, peers: [:], group: group)
        try b.transport.start()
        #expect(await eventually { a.transport.isConnected(toReplica: 1) })
        a.transport.send(toReplica: 1, kind: 1, body: body([2]))
        #expect(await eventually { b.inbox.count == 1 })
        try await shutdown([a.transport, b.transport], group)
    }

    @Test func outboundQueueDropsOldestFramesWhenFull() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let portB = try freePort(group: group)
        var limits = WireLimits.default
        limits.maxOutboundQueuedFramesPerConnection = 5
        let a = Node(port: 0, peers: [1: PeerAddress(host: "127.0.0.1", port: portB)], limits: limits, group: group)
        try a.transport.start()
        for k in 0..<12 { a.transport.send(toReplica: 1, kind: 1, body: body([UInt8(k)])) }
        a.transport.send(toReplica: 9, kind: 1, body: body([0]))  // no such replica
        a.transport.send(toReplica: 1, kind: 99, body: body([0]))  // peers would reject the kind
        var s = a.transport.stats()
        #expect(s.droppedOutbound == 7)
        #expect(s.droppedByReason["outbound_queue_full"] == 7)
        #expect(s.droppedByReason["unknown_replica"] == 1)
        #expect(s.droppedByReason["unknown_kind"] == 1)

        let b = Node(port: portB, peers: [:], group: group)
        try b.transport.start()
        #expect(await eventually { b.inbox.count == 5 })
        #expect(b.inbox.all.map { bytes($0)[0] } == [7, 8, 9, 10, 11])
        s = a.transport.stats()
        #expect(s.framesOut == 5)
        try await shutdown([a.transport, b.transport], group)
    }

    @Test func outboundQueueByteLimitAndTooLargeFrames() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var limits = WireLimits.default
        limits.maxOutboundQueuedBytesPerConnection = 100  // two 50-byte frames
        limits.maxFrameBodyBytes = 200
        limits.maxClientFrameBodyBytes = 10
        let a = Node(port: 0, peers: [1: PeerAddress(host: "127.0.0.1", port: 1)], limits: limits, group: group)
        // Not started: frames queue up for a peer we have not dialled yet.
        for _ in 0..<5 { a.transport.send(toReplica: 1, kind: 1, body: body(Array(repeating: 0, count: 34))) }
        a.transport.send(toReplica: 1, kind: 1, body: body(Array(repeating: 0, count: 201)))
        a.transport.send(toReplica: 1, kind: clientKind, body: body(Array(repeating: 0, count: 11)))
        let s = a.transport.stats()
        #expect(s.droppedOutbound == 3)
        #expect(s.droppedByReason["outbound_too_large"] == 2)
        try await shutdown([a.transport], group)
        a.transport.send(toReplica: 1, kind: 1, body: body([1]))
        #expect(a.transport.stats().droppedByReason["shutdown"] == 1 + 2)  // 2 still queued at shutdown
    }

    @Test func burstOfSendsInOneLoopTurnIsFlushedOnce() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let b = Node(port: 0, peers: [:], group: group)
        try b.transport.start()
        let a = Node(port: 0, peers: [1: PeerAddress(host: "127.0.0.1", port: b.transport.boundPort)], group: group)
        try a.transport.start()
        #expect(await eventually { a.transport.isConnected(toReplica: 1) })
        let transport = a.transport
        try await group.next().submit {
            for k in 0..<100 { transport.send(toReplica: 1, kind: 1, body: body([UInt8(k)])) }
        }.get()
        #expect(await eventually { b.inbox.count == 100 })
        let s = a.transport.stats()
        #expect(s.framesOut == 100)
        #expect(s.flushes == 1)
        try await shutdown([a.transport, b.transport], group)
    }

    /// Each malformed input is sent by a raw socket while a well-behaved peer keeps sending;
    /// only the raw connection is closed, with a counted and logged reason.
    @Test(arguments: [
        ("bad_magic", [UInt8]("GET / HTTP/1.1\r\n\r\n".utf8), false),
        ("oversized", Array(Frame.encoded(kind: 1, clusterID: clusterID, body: ByteBuffer()).readableBytesView.prefix(12)) + [0x00, 0x10, 0x00, 0x01], false),
        ("wrong_cluster", Array(Frame.encoded(kind: 1, clusterID: clusterID + 1, body: ByteBuffer(bytes: [1])).readableBytesView), false),
        ("unknown_kind", Array(Frame.encoded(kind: 99, clusterID: clusterID, body: ByteBuffer(bytes: [1])).readableBytesView), false),
        ("unsupported_version", [0x50, 0x42, 0x46, 0x54, 0x02], false),
        ("non_zero_flags", [0x50, 0x42, 0x46, 0x54, 0x01, 0x01, 0x80], false),
        ("truncated", Array(Frame.encoded(kind: 1, clusterID: clusterID, body: ByteBuffer(bytes: Array(repeating: 7, count: 100))).readableBytesView.prefix(60)), true),
    ])
    func malformedInputClosesOnlyThatConnection(reason: String, payload: [UInt8], clientCloses: Bool) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let capture = LogCapture()
        var limits = WireLimits.default
        limits.maxFrameBodyBytes = 1024 * 1024
        let server = Node(port: 0, peers: [:], limits: limits, group: group, logger: capture.logger)
        try server.transport.start()
        let peer = Node(port: 0, peers: [0: PeerAddress(host: "127.0.0.1", port: server.transport.boundPort)], group: group)
        try peer.transport.start()
        peer.transport.send(toReplica: 0, kind: 1, body: body([1]))
        #expect(await eventually { server.inbox.count == 1 })

        let raw = try rawConnect(group: group, port: server.transport.boundPort)
        // A valid frame first: the bad input must not be confused with a never-working client.
        try await raw.writeAndFlush(Frame.encoded(kind: 2, clusterID: clusterID, body: body([42]))).get()
        #expect(await eventually { server.inbox.count == 2 })
        try await raw.writeAndFlush(ByteBuffer(bytes: payload)).get()
        if clientCloses {
            try await raw.close().get()
        } else {
            // The server closes the raw connection.
            #expect(await eventually { !raw.isActive })
        }
        #expect(await eventually { server.transport.stats().closedByReason[reason] == 1 })
        #expect(await eventually { capture.contains(level: .notice, "closing inbound connection") })
        #expect(capture.contains(level: .notice, reason))

        // The well-behaved peer is undisturbed.
        peer.transport.send(toReplica: 0, kind: 1, body: body([2]))
        #expect(await eventually { server.inbox.count == 3 })
        #expect(bytes(server.inbox.all[2]) == [2])
        let s = server.transport.stats()
        #expect(s.inboundConnectionsOpen == 1)
        #expect(s.closedByReason.values.reduce(0, +) == 1)
        #expect(peer.transport.isConnected(toReplica: 0))
        try await shutdown([server.transport, peer.transport], group)
    }

    @Test func penaltiesCloseTheConnectionAfterTheLimit() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        var limits = WireLimits.default
        limits.maxMalformedFramesPerConnection = 3
        let server = Node(port: 0, peers: [:], limits: limits, group: group)
        try server.transport.start()
        let raw = try rawConnect(group: group, port: server.transport.boundPort)
        try await raw.writeAndFlush(Frame.encoded(kind: 1, clusterID: clusterID, body: body([1]))).get()
        #expect(await eventually { server.inbox.count == 1 })
        let id = server.inbox.all[0].connection
        server.transport.penalize(id, reason: "bad_signature")
        server.transport.penalize(id, reason: "bad_signature")
        #expect(await stays(for: .milliseconds(50)) { raw.isActive })
        server.transport.penalize(id, reason: "undecodable 3: length 9 exceeds 4")
        #expect(await eventually { !raw.isActive })
        let s = server.transport.stats()
        #expect(s.closedByReason["penalties"] == 1)
        #expect(s.penaltiesByReason == ["bad_signature": 2, "undecodable": 1])
        #expect(await eventually { server.transport.inboundConnections.isEmpty })
        server.transport.send(toConnection: id, kind: 1, body: body([1]))
        #expect(server.transport.stats().droppedByReason["unknown_connection"] == 1)

        let raw2 = try rawConnect(group: group, port: server.transport.boundPort)
        try await raw2.writeAndFlush(Frame.encoded(kind: 1, clusterID: clusterID, body: body([2]))).get()
        #expect(await eventually { server.inbox.count == 2 })
        server.transport.disconnect(server.inbox.all[1].connection, reason: "test (operator request)")
        #expect(await eventually { !raw2.isActive })
        #expect(server.transport.stats().closedByReason["disconnect_test"] == 1)
        try await shutdown([server.transport], group)
    }

    @Test func perConnectionInboundLimitPausesOnlyTheFlooder() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        var limits = WireLimits.default
        limits.maxInboundQueuedFrames = 16  // 4 per connection
        let server = Node(port: 0, peers: [:], limits: limits, group: group, autoRelease: false)
        try server.transport.start()
        let flooder = try rawConnect(group: group, port: server.transport.boundPort)
        var burst = ByteBuffer()
        for k in 0..<40 { Frame.encode(kind: 1, clusterID: clusterID, body: body([0, UInt8(k)]), into: &burst) }
        try await flooder.writeAndFlush(burst).get()
        #expect(await eventually { server.inbox.count == 4 })
        #expect(await stays(for: .milliseconds(100)) { server.inbox.count == 4 })
        #expect(server.transport.stats().readPauses >= 1)
        #expect(server.transport.stats().inboundUnreleased == 4)

        // Another connection still gets through.
        let other = try rawConnect(group: group, port: server.transport.boundPort)
        try await other.writeAndFlush(Frame.encoded(kind: 1, clusterID: clusterID, body: body([1, 0]))).get()
        #expect(await eventually { server.inbox.all.contains { bytes($0) == [1, 0] } })

        // Releasing lets the flooder continue, in order, until everything has arrived.
        var released = 0
        let ok = await eventually(timeout: .seconds(5)) {
            let all = server.inbox.all
            for frame in all[released...] { server.transport.release(frame) }
            released = all.count
            return all.count == 41
        }
        #expect(ok)
        let flooded = server.inbox.all.filter { bytes($0)[0] == 0 }.map { bytes($0)[1] }
        #expect(flooded == (0..<40).map { UInt8($0) })
        #expect(server.transport.stats().inboundUnreleased == 0)
        try await shutdown([server.transport], group)
    }

    @Test func globalInboundLimitPausesAllConnections() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        var limits = WireLimits.default
        limits.maxInboundQueuedFrames = 8  // 2 per connection
        let server = Node(port: 0, peers: [:], limits: limits, group: group, autoRelease: false)
        try server.transport.start()
        var clients: [Channel] = []
        for c in 0..<5 {
            let ch = try rawConnect(group: group, port: server.transport.boundPort)
            var burst = ByteBuffer()
            for k in 0..<3 { Frame.encode(kind: 1, clusterID: clusterID, body: body([UInt8(c), UInt8(k)]), into: &burst) }
            try await ch.writeAndFlush(burst).get()
            clients.append(ch)
        }
        #expect(await eventually { server.inbox.count == 8 })
        #expect(await stays(for: .milliseconds(100)) { server.inbox.count == 8 })
        #expect(server.transport.stats().inboundUnreleased == 8)

        // Releasing one frame is not enough (resume only below half) ...
        server.transport.release(server.inbox.all[0])
        #expect(await stays(for: .milliseconds(50)) { server.inbox.count == 8 })
        // ... releasing down to half is.
        for frame in server.inbox.all[1..<4] { server.transport.release(frame) }
        #expect(await eventually { server.inbox.count > 8 })

        var released = 4
        #expect(
            await eventually {
                let all = server.inbox.all
                for frame in all[released...] { server.transport.release(frame) }
                released = all.count
                return all.count == 15
            }
        )
        for c in clients { try await c.close().get() }
        try await shutdown([server.transport], group)
    }

    @Test func clientsGetRepliesOnTheirConnection() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let replicas = (0..<2).map { index in
            Node(port: 0, peers: [:], group: group) { transport, frame in
                guard frame.kind == clientKind else { return }
                transport.send(toConnection: frame.connection, kind: replyKind, body: body([UInt8(index)] + bytes(frame)))
            }
        }
        for r in replicas { try r.transport.start() }
        let replies = Inbox<(Int, [UInt8])>()
        let client = ClientConnections(
            clusterID: clusterID,
            replicas: replicas.map { PeerAddress(host: "127.0.0.1", port: $0.transport.boundPort) },
            knownKinds: [replyKind],
            group: group,
            logger: Logger(label: "client", factory: { _ in SwiftLogNoOpLogHandler() })
        ) { replica, frame in
            replies.append((replica, bytes(frame)))
        }
        // Queued before the connections exist.
        client.broadcast(kind: clientKind, body: body([9]))
        client.start()
        #expect(await eventually { replies.count == 2 })
        #expect(Set(replies.all.map { $0.0 }) == [0, 1])
        #expect(replies.all.allSatisfy { $0.1 == [UInt8($0.0), 9] })

        client.send(toReplica: 1, kind: clientKind, body: body([5]))
        #expect(await eventually { replies.count == 3 })
        #expect(replies.all[2].0 == 1 && replies.all[2].1 == [1, 5])
        #expect(client.connectedCount == 2)
        client.send(toReplica: 0, kind: clientKind, body: body(Array(repeating: 0, count: 64 * 1024 + 1)))
        #expect(client.stats().droppedByReason["outbound_too_large"] == 1)

        try await client.shutdown().get()
        try await shutdown(replicas.map(\.transport), group)
    }

    /// A server answering a client request [k] with 8·k replies of 32 KiB on its connection,
    /// and a way to open clients that send one request and never read.
    private func replyFlood(_ limits: WireLimits, _ group: EventLoopGroup) throws -> (Node, (UInt8) async throws -> Channel) {
        let reply = body(Array(repeating: 7, count: 32 * 1024))
        let server = Node(port: 0, peers: [1: PeerAddress(host: "127.0.0.1", port: 1)], limits: limits, group: group) { transport, frame in
            guard frame.kind == clientKind else { return }
            for _ in 0..<(8 * Int(bytes(frame)[0])) { transport.send(toConnection: frame.connection, kind: replyKind, body: reply) }
        }
        try server.transport.start()
        let port = server.transport.boundPort
        return (server, { k in
            let c = try await ClientBootstrap(group: group)
                .channelOption(ChannelOptions.autoRead, value: false)
                .channelOption(ChannelOptions.socketOption(.so_rcvbuf), value: 4096)
                .connect(host: "127.0.0.1", port: port).get()
            try await c.writeAndFlush(Frame.encoded(kind: clientKind, clusterID: clusterID, body: body([k]))).get()
            return c
        })
    }

    @Test func clientsThatDoNotReadCannotQueueMoreThanTheSharedBudget() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        var limits = WireLimits.default
        // Only the shared budget stands between these clients and the replica's memory.
        limits.maxOutboundQueuedBytesPerClientConnection = 64 * 1024 * 1024
        limits.maxOutboundQueuedBytesAllClients = 3 * 1024 * 1024
        let (server, silentClient) = try replyFlood(limits, group)
        // Twelve clients asking for 8 MiB each (more than the kernel's buffers absorb).
        var clients: [Channel] = []
        var peak = 0
        for _ in 0..<12 {
            clients.append(try await silentClient(32))
            peak = max(peak, server.transport.stats().clientOutboundBytes)
        }
        #expect(await eventually { server.inbox.count == 12 })
        _ = await stays(for: .milliseconds(300)) {
            peak = max(peak, server.transport.stats().clientOutboundBytes)
            return true
        }
        let s = server.transport.stats()
        #expect(peak <= limits.maxOutboundQueuedBytesAllClients)
        #expect(peak > limits.maxOutboundQueuedBytesAllClients / 2)
        // What did not fit was dropped and counted by reason.
        #expect((s.droppedByReason["client_outbound_budget"] ?? 0) > 12 * 256 / 2)

        // Peer queues do not draw on the client budget: 3 MiB for an unreachable peer stay queued.
        for _ in 0..<96 { server.transport.send(toReplica: 1, kind: 1, body: body(Array(repeating: 1, count: 32 * 1024))) }
        let after = server.transport.stats()
        #expect(after.droppedByReason["outbound_queue_full"] == nil)
        #expect(after.droppedOutbound == s.droppedOutbound)
        for c in clients { try? await c.close().get() }
        #expect(await eventually { server.transport.stats().clientOutboundBytes == 0 })
        try await shutdown([server.transport], group)
    }

    @Test func clientWhoseOwnReplyQueueOverflowsIsClosedAndCounted() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        var limits = WireLimits.default
        limits.maxOutboundQueuedBytesPerClientConnection = 1024 * 1024
        let (server, silentClient) = try replyFlood(limits, group)
        let greedy = try await silentClient(32)  // 8 MiB of replies, never read
        #expect(await eventually { server.transport.stats().closedByReason["client_outbound_queue_full"] == 1 })
        #expect(server.transport.stats().droppedByReason["client_outbound_queue_full"] == 1)
        #expect(await eventually { server.transport.stats().clientOutboundBytes == 0 })
        // A well-behaved client on the same server is unaffected.
        let polite = try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: server.transport.boundPort).get()
        try await polite.writeAndFlush(Frame.encoded(kind: clientKind, clusterID: clusterID, body: body([1]))).get()
        #expect(await eventually { server.transport.stats().framesOut >= 8 })
        #expect(server.transport.stats().closedByReason["client_outbound_queue_full"] == 1)
        try? await greedy.close().get()
        try? await polite.close().get()
        try await shutdown([server.transport], group)
    }

    @Test func portInUseIsAClearError() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let a = Node(port: 0, peers: [:], group: group)
        try a.transport.start()
        let b = Node(port: a.transport.boundPort, peers: [:], group: group)
        #expect(throws: ListenerError.addressInUse(.transport, host: "127.0.0.1", port: a.transport.boundPort)) {
            try b.transport.start()
        }
        #expect(throws: ListenerError.alreadyStarted(.transport)) { try a.transport.start() }
        try await shutdown([a.transport, b.transport], group)
    }

    @Test func shutdownIsIdempotentAndClosesEverything() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let b = Node(port: 0, peers: [:], group: group)
        try b.transport.start()
        let a = Node(port: 0, peers: [1: PeerAddress(host: "127.0.0.1", port: b.transport.boundPort)], group: group)
        try a.transport.start()
        #expect(await eventually { a.transport.isConnected(toReplica: 1) && b.transport.stats().inboundConnectionsOpen == 1 })
        a.transport.shutdown()
        try await a.transport.shutdown().get()
        #expect(await eventually { b.transport.stats().inboundConnectionsOpen == 0 })
        #expect(a.transport.stats().connectionsOpen == 0)
        #expect(throws: ListenerError.shutDown(.transport)) { try a.transport.start() }
        try await shutdown([a.transport, b.transport], group)
    }

    @Test func largeFramesPassThroughWritabilityBackpressure() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let b = Node(port: 0, peers: [:], group: group)
        try b.transport.start()
        let a = Node(port: 0, peers: [1: PeerAddress(host: "127.0.0.1", port: b.transport.boundPort)], group: group)
        try a.transport.start()
        // Each big frame exceeds the channel's high watermark, so draining must resume on
        // writability changes rather than in the loop turn that queued it.
        // Bodies built with bulk operations: per-byte loops are very slow in debug builds.
        func bigBody(_ k: UInt8) -> ByteBuffer {
            var buffer = ByteBuffer(repeating: k, count: 1536 * 1024)
            buffer.setBytes([0xAB, k, 0xCD], at: 777)
            return buffer
        }
        for k in 0..<3 {
            a.transport.send(toReplica: 1, kind: 1, body: bigBody(UInt8(k)))
            a.transport.send(toReplica: 1, kind: 2, body: body([UInt8(k)]))
        }
        #expect(await eventually(timeout: .seconds(5)) { b.inbox.count == 6 })
        let got = b.inbox.all
        #expect(got.map(\.kind) == [1, 2, 1, 2, 1, 2])
        for (i, frame) in got.enumerated() where frame.kind == 1 {
            #expect(frame.body == bigBody(UInt8(i / 2)))
        }
        try await shutdown([a.transport, b.transport], group)
    }

    @Test func inboundConnectionLimitRefusesExtraConnections() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        var limits = WireLimits.default
        limits.maxInboundConnections = 2
        let server = Node(port: 0, peers: [:], limits: limits, group: group)
        try server.transport.start()
        let first = try rawConnect(group: group, port: server.transport.boundPort)
        let second = try rawConnect(group: group, port: server.transport.boundPort)
        #expect(await eventually { server.transport.stats().inboundConnectionsOpen == 2 })
        let third = try rawConnect(group: group, port: server.transport.boundPort)
        #expect(await eventually { !third.isActive })
        #expect(server.transport.stats().connectionsRejected == 1)
        #expect(first.isActive && second.isActive)
        try await first.close().get()
        #expect(await eventually { server.transport.stats().inboundConnectionsOpen == 1 })
        let fourth = try rawConnect(group: group, port: server.transport.boundPort)
        try await fourth.writeAndFlush(Frame.encoded(kind: 1, clusterID: clusterID, body: body([4]))).get()
        #expect(await eventually { server.inbox.count == 1 })
        try await shutdown([server.transport], group)
    }

    @Test func initializersAcceptTupleAndEmptyPeerTables() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let logger = Logger(label: "t", factory: { _ in SwiftLogNoOpLogHandler() })
        // `[:]` must not be ambiguous between the two initializers.
        let empty = Transport(
            clusterID: 1, listenHost: "127.0.0.1", listenPort: 0, peers: [:], knownKinds: [1],
            group: group, logger: logger, onFrame: { _ in }
        )
        let tuples: [Int: (host: String, port: Int)] = [2: (host: "127.0.0.1", port: 9)]
        let fromTuples = Transport(
            clusterID: 1, listenHost: "127.0.0.1", listenPort: 0, peers: tuples, knownKinds: [1],
            group: group, logger: logger, onFrame: { _ in }
        )
        let client = ClientConnections(
            clusterID: 1, replicas: tuples, knownKinds: [1], group: group, logger: logger, onFrame: { _, _ in }
        )
        fromTuples.send(toReplica: 2, kind: 1, body: body([1]))
        #expect(fromTuples.stats().droppedTotal == 0)
        #expect(client.replicaIndices == [2])
        try await empty.shutdown().get()
        try await fromTuples.shutdown().get()
        try await client.shutdown().get()
        try await group.shutdownGracefully()
    }

    @Test func statisticsReasonLabelsStayBounded() {
        #expect(StatsRecorder.label("undecodable 3: bad length") == "undecodable")
        #expect(StatsRecorder.label("bad_signature") == "bad_signature")
        #expect(StatsRecorder.label(": weird") == "unspecified")
        let recorder = StatsRecorder()
        for i in 0..<200 { recorder.penalty("reason\(i) detail") }
        let s = recorder.snapshot()
        #expect(s.penaltiesByReason.count == StatsRecorder.maxDistinctReasons + 1)
        #expect(s.penaltiesByReason["other"] == 200 - StatsRecorder.maxDistinctReasons)
    }
}
