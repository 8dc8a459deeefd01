import BFTCrypto
import BFTSession
import Logging
import NIOCore
import NIOPosix
import Testing

@testable import BFTFrameCodec
@testable import BFTTransport

/// Authenticated sessions on real sockets: every connection proves a principal of the cluster
/// before it carries anything but the handshake, frames are handed inward with that principal,
/// and every way a stranger or a wrong key can try it closes the connection with a counted reason.
@Suite("Authenticated sessions over sockets")
struct SessionTransportTests {
    static let clusterID: UInt32 = 77
    static let kinds: Set<UInt8> = [1, 2, 3, 10, 11]
    static let requestKind: UInt8 = 10
    static let replyKind: UInt8 = 11

    /// Two replicas and two clients with fixed keys.
    struct Keys {
        let replicas = (0..<2).map { try! Ed25519PrivateKey(seed: [UInt8](repeating: UInt8($0 + 1), count: 32)) }
        let clients = (0..<2).map { try! Ed25519PrivateKey(seed: [UInt8](repeating: UInt8($0 + 101), count: 32)) }
        var keyring: @Sendable (SessionPrincipal) -> Ed25519PublicKey? {
            let r = replicas.map(\.publicKey), c = clients.map(\.publicKey)
            return { p in
                switch p {
                case .replica(let i): return Int(i) < r.count ? r[Int(i)] : nil
                case .client(let i): return Int(i) < c.count ? c[Int(i)] : nil
                }
            }
        }
        func setup(_ p: SessionPrincipal, key: Ed25519PrivateKey? = nil, cluster: UInt32 = clusterID,
                   handshakeTimeout: TimeAmount = .seconds(5)) -> SessionSetup {
            let own: Ed25519PrivateKey
            switch p {
            case .replica(let i): own = replicas[Int(i)]
            case .client(let i): own = clients[Int(i)]
            }
            return SessionSetup(clusterID: cluster, principal: p, signingKey: key ?? own, keyring: keyring,
                                handshakeTimeout: handshakeTimeout, maxSessionsPerClient: 2)
        }
    }

    final class Server: @unchecked Sendable {
        let transport: Transport
        let inbox = Inbox<InboundFrame>()
        init(port: Int, peers: [Int: PeerAddress] = [:], setup: SessionSetup, group: EventLoopGroup) {
            let inbox = self.inbox
            let box = LockedBox<Transport?>(nil)
            transport = Transport(clusterID: SessionTransportTests.clusterID, listenHost: "127.0.0.1", listenPort: port, peers: peers,
                                  knownKinds: SessionTransportTests.kinds, clientKinds: [SessionTransportTests.requestKind],
                                  session: setup, group: group,
                                  logger: Logger(label: "t", factory: { _ in SwiftLogNoOpLogHandler() })) { frame in
                inbox.append(frame)
                box.withLock { $0 }!.release(frame)
            }
            box.withLock { $0 = transport }
        }
    }

    func client(port: Int, setup: SessionSetup, group: EventLoopGroup, inbox: Inbox<InboundFrame>) -> ClientConnections {
        ClientConnections(clusterID: setup.clusterID, replicas: [0: (host: "127.0.0.1", port: port)], knownKinds: [Self.replyKind],
                          session: setup, group: group, logger: Logger(label: "c", factory: { _ in SwiftLogNoOpLogHandler() })) { _, f in
            inbox.append(f)
        }
    }

    @Test("replica sessions: frames arrive with the sender's proven principal, in both directions of a dialed link")
    func replicasTalkOverAuthenticatedSessions() async throws {
        let keys = Keys()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let ports = try (0..<2).map { _ in try freePort(group: group) }
        let nodes = (0..<2).map { me in
            Server(port: ports[me], peers: [1 - me: PeerAddress(host: "127.0.0.1", port: ports[1 - me])],
                   setup: keys.setup(.replica(UInt32(me))), group: group)
        }
        for n in nodes { try n.transport.start() }
        #expect(await eventually { nodes[0].transport.isConnected(toReplica: 1) && nodes[1].transport.isConnected(toReplica: 0) })
        nodes[0].transport.send(toReplica: 1, kind: 2, body: body([1, 2, 3]))
        nodes[1].transport.send(toReplica: 0, kind: 3, body: body([4]))
        #expect(await eventually { nodes[1].inbox.count == 1 && nodes[0].inbox.count == 1 })
        #expect(nodes[1].inbox.all.first?.principal == .replica(0))
        #expect(bytes(nodes[1].inbox.all.first!) == [1, 2, 3])
        #expect(nodes[0].inbox.all.first?.principal == .replica(1))
        try await shutdown(nodes.map(\.transport), group)
    }

    @Test("client sessions: requests arrive as the client's, replies go back over the same session")
    func clientRequestAndReplyOverItsSession() async throws {
        let keys = Keys()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let port = try freePort(group: group)
        let server = Server(port: port, setup: keys.setup(.replica(0)), group: group)
        try server.transport.start()
        let replies = Inbox<InboundFrame>()
        let c = client(port: port, setup: keys.setup(.client(1)), group: group, inbox: replies)
        c.start()
        #expect(await eventually { c.isConnected(toReplica: 0) })
        c.broadcast(kind: Self.requestKind, body: body([9, 9]))
        #expect(await eventually { server.inbox.count == 1 })
        let request = server.inbox.all[0]
        #expect(request.principal == .client(1) && request.kind == Self.requestKind && bytes(request) == [9, 9])
        server.transport.send(toConnection: request.connection, kind: Self.replyKind, body: body([7]))
        #expect(await eventually { replies.count == 1 })
        #expect(replies.all.first?.principal == .replica(0) && bytes(replies.all[0]) == [7])
        try await c.shutdown().get()
        try await shutdown([server.transport], group)
    }

    /// A client whose handshake must fail: nothing it sends reaches the consumer, and the server
    /// counts the close under `reason`.
    func refused(clientSetup: SessionSetup, reason: String) async throws {
        let keys = Keys()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let port = try freePort(group: group)
        let server = Server(port: port, setup: keys.setup(.replica(0)), group: group)
        try server.transport.start()
        let c = client(port: port, setup: clientSetup, group: group, inbox: Inbox<InboundFrame>())
        c.start()
        c.broadcast(kind: Self.requestKind, body: body([1]))
        #expect(await eventually { (server.transport.stats().closedByReason[reason] ?? 0) >= 1 }, "\(server.transport.stats().closedByReason)")
        #expect(await stays(for: .milliseconds(200)) { server.inbox.count == 0 })
        try await c.shutdown().get()
        try await shutdown([server.transport], group)
    }

    @Test("a wrong identity key (a client signing with a key not its own) closes the connection")
    func wrongKeyIsRefused() async throws {
        let keys = Keys()
        try await refused(clientSetup: keys.setup(.client(0), key: keys.clients[1]), reason: "session_identity_signature_invalid")
    }

    @Test("a wrong cluster id closes the connection (the frame header carries it, and the handshake prologue binds it)")
    func wrongClusterIsRefused() async throws {
        let keys = Keys()
        try await refused(clientSetup: keys.setup(.client(0), cluster: Self.clusterID + 1), reason: "wrong_cluster")
    }

    @Test("a principal not in the cluster closes the connection")
    func unknownPrincipalIsRefused() async throws {
        let keys = Keys()
        var setup = keys.setup(.client(0))
        setup.principal = .client(9)
        try await refused(clientSetup: setup, reason: "session_unknown_principal")
    }

    /// Writes raw bytes on a fresh TCP connection and waits for the server to close it.
    func rawAttack(_ bytes: [UInt8], reason: String, handshakeTimeout: TimeAmount = .seconds(5)) async throws {
        let keys = Keys()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let port = try freePort(group: group)
        let server = Server(port: port, setup: keys.setup(.replica(0), handshakeTimeout: handshakeTimeout), group: group)
        try server.transport.start()
        let raw = try rawConnect(group: group, port: port)
        if !bytes.isEmpty { try await raw.writeAndFlush(ByteBuffer(bytes: bytes)).get() }
        #expect(await eventually { !raw.isActive })
        #expect((server.transport.stats().closedByReason[reason] ?? 0) >= 1, "\(server.transport.stats().closedByReason)")
        #expect(server.inbox.count == 0)
        try await shutdown([server.transport], group)
    }

    static func header(_ kind: UInt8, _ length: Int) -> [UInt8] {
        var b = ByteBuffer()
        FrameHeader(kind: kind, clusterID: clusterID, bodyLength: UInt32(length)).encode(into: &b)
        return Array(b.readableBytesView)
    }

    @Test("before authentication only small handshake frames are read: a replica-kind frame, a sealed record and an oversized handshake frame each close the connection")
    func strangersCannotSendFramesBeforeTheHandshake() async throws {
        try await rawAttack(Self.header(2, 10) + [UInt8](repeating: 0, count: 10), reason: "unknown_kind")
        try await rawAttack(Self.header(SessionFrameKind.sealed, 100), reason: "unknown_kind")
        // A 15 MiB frame announced before authentication is refused on its header, before any body byte is buffered.
        try await rawAttack(Self.header(SessionFrameKind.handshake, 15 * 1024 * 1024), reason: "oversized")
    }

    @Test("a connection that does not finish its handshake in time is closed")
    func handshakeDeadline() async throws {
        try await rawAttack([], reason: "session_handshake_timeout", handshakeTimeout: .milliseconds(200))
    }

    @Test("a client session may carry only client kinds: a replica message from a client closes it")
    func clientCannotSendReplicaKinds() async throws {
        let keys = Keys()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let port = try freePort(group: group)
        let server = Server(port: port, setup: keys.setup(.replica(0)), group: group)
        try server.transport.start()
        let c = client(port: port, setup: keys.setup(.client(0)), group: group, inbox: Inbox<InboundFrame>())
        c.start()
        #expect(await eventually { c.isConnected(toReplica: 0) })
        c.send(toReplica: 0, kind: 2, body: body([1]))
        #expect(await eventually { (server.transport.stats().closedByReason["session_client_sent_replica_kind"] ?? 0) == 1 })
        #expect(server.inbox.count == 0)
        try await c.shutdown().get()
        try await shutdown([server.transport], group)
    }

    @Test("sessions per principal are capped: a third session of one client is refused while another client is served")
    func sessionsPerPrincipalAreCapped() async throws {
        let keys = Keys()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let port = try freePort(group: group)
        let server = Server(port: port, setup: keys.setup(.replica(0)), group: group)
        try server.transport.start()
        let same = (0..<3).map { _ in client(port: port, setup: keys.setup(.client(0)), group: group, inbox: Inbox<InboundFrame>()) }
        for c in same { c.start() }
        #expect(await eventually { (server.transport.stats().closedByReason["session_too_many_sessions_for_principal"] ?? 0) >= 1 })
        let other = client(port: port, setup: keys.setup(.client(1)), group: group, inbox: Inbox<InboundFrame>())
        other.start()
        #expect(await eventually { other.isConnected(toReplica: 0) })
        other.broadcast(kind: Self.requestKind, body: body([5]))
        #expect(await eventually { server.inbox.all.contains { $0.principal == .client(1) } })
        for c in same { try await c.shutdown().get() }
        try await other.shutdown().get()
        try await shutdown([server.transport], group)
    }
}
