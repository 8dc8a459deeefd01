import BFTCore
import BFTCrypto
import BFTNode
import Foundation
import Logging
import NIOCore
import NIOPosix
import Testing
import BFTFrameCodec
import BFTTransport
import BFTApplications
import BFTConfig
import BFTClient
import BFTSession

/// Four `ReplicaNode`s in one process over real TCP on 127.0.0.1, driven by `ClientRuntime` and by
/// a raw socket that replays and corrupts frames.
@Suite("Networked replicas", .serialized)
struct NodeIntegrationTests {
    final class LocalCluster {
        let dir: String
        let configuration: ClusterConfiguration
        let replicaKeys: [Ed25519PrivateKey]
        let clientKeys: [Ed25519PrivateKey]
        var nodes: [ReplicaNode?] = []
        let apps: [KVApplication]

        init(viewChangeTimeoutMs: Int = 1000) throws {
            dir = NSTemporaryDirectory() + "bft-node-test-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let rk = try (0..<4).map { _ in try Ed25519PrivateKey.generate() }
            let ck = try (0..<2).map { _ in try Ed25519PrivateKey.generate() }
            replicaKeys = rk
            clientKeys = ck
            let ports = try freePorts(4)
            let replicas = (0..<4).map { i in
                "{\"id\": \(i), \"host\": \"127.0.0.1\", \"port\": \(ports[i]), \"publicKey\": \"\(Hex.encode(rk[i].publicKey.rawRepresentation))\"}"
            }
            let clients = (0..<2).map { j in "{\"id\": \(j), \"publicKey\": \"\(Hex.encode(ck[j].publicKey.rawRepresentation))\"}" }
            let json = """
            {"clusterID": 5, "f": 1, "replicas": [\(replicas.joined(separator: ","))], "clients": [\(clients.joined(separator: ","))],
             "protocol": {"checkpointInterval": 8, "watermarkWindow": 32, "maxBatchRequests": 64, "maxInFlightBatches": 4,
                          "viewChangeTimeoutMs": \(viewChangeTimeoutMs), "tickMs": 10}}
            """
            try json.write(toFile: dir + "/cluster.json", atomically: true, encoding: .utf8)
            configuration = try ClusterConfiguration.load(path: dir + "/cluster.json")
            apps = (0..<4).map { _ in KVApplication() }
            var logger = Logger(label: "test")
            logger.logLevel = .critical
            for i in 0..<4 {
                let data = dir + "/replica-\(i)"
                try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
                let node = try ReplicaNode(configuration: configuration, id: i, key: replicaKeys[i], application: apps[i],
                                           dataDirectory: data, deliverLogPath: data + "/deliver.log", logger: logger)
                try node.start()
                nodes.append(node)
            }
        }

        func deliverLog(_ i: Int) -> [String] {
            let text = (try? String(contentsOfFile: dir + "/replica-\(i)/deliver.log", encoding: .utf8)) ?? ""
            return text.split(separator: "\n").map(String.init)
        }

        func stop(_ i: Int) { nodes[i]?.shutdown(); nodes[i] = nil }

        func shutdown() {
            for i in 0..<nodes.count { stop(i) }
            try? FileManager.default.removeItem(atPath: dir)
        }

        func client(_ j: Int) -> ClientRuntime {
            var logger = Logger(label: "client")
            logger.logLevel = .critical
            let rt = ClientRuntime(configuration: configuration, clients: [(ClientID(j), clientKeys[j])], window: 4, logger: logger)
            rt.start()
            return rt
        }
    }

    static func freePorts(_ n: Int) throws -> [Int] {
        var sockets: [Int32] = []
        var ports: [Int] = []
        defer { for s in sockets { close(s) } }
        for _ in 0..<n {
            let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            addr.sin_port = 0
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, len) } }
            _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &len) } }
            ports.append(Int(UInt16(bigEndian: addr.sin_port)))
            sockets.append(s)
        }
        return ports
    }

    /// Polls `condition` every 50 ms until it holds or `seconds` pass. It suspends rather than
    /// blocks: a blocked thread is one of the two cooperative threads a 2-core machine has, and
    /// starving them made other suites' timing assertions flaky.
    static func waitUntil(_ seconds: Double, _ condition: () -> Bool) async -> Bool {
        let deadline = ContinuousClock.now.advanced(by: .milliseconds(Int(seconds * 1000)))
        while ContinuousClock.now < deadline {
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return condition()
    }

    /// One request as client `id`, awaited without blocking a thread.
    static func call(_ rt: ClientRuntime, client id: ClientID, _ operation: String, timeout: TimeAmount = .seconds(10)) async -> RequestOutcome {
        await withCheckedContinuation { continuation in
            rt.submitInOrder(client: id, operation: Array(operation.utf8), timeout: timeout) { continuation.resume(returning: $0) }
        }
    }

    @Test("requests over TCP are ordered identically on four replicas and the client gets the agreed reply")
    func orderedOverTCP() async throws {
        let c = try LocalCluster()
        defer { c.shutdown() }
        let rt = c.client(0)
        defer { rt.shutdown() }
        for k in 0..<20 {
            guard case .completed(let result, _, _) = await Self.call(rt, client: 0, "SET k\(k) v\(k)", timeout: .seconds(10)) else {
                Issue.record("request \(k) timed out"); return
            }
            #expect(String(decoding: result, as: UTF8.self) == "OK")
        }
        guard case .completed(let got, _, _) = await Self.call(rt, client: 0, "GET k7", timeout: .seconds(10)) else {
            Issue.record("GET timed out"); return
        }
        #expect(String(decoding: got, as: UTF8.self) == "v7")
        #expect(await Self.waitUntil(5) { (0..<4).allSatisfy { c.deliverLog($0).count == 21 } })
        let logs = (0..<4).map { c.deliverLog($0) }
        #expect(logs.allSatisfy { $0 == logs[0] })
    }

    /// Connections of one client identity with its authenticated sessions to every replica, for
    /// sending hand-made request frames (replays, forgeries, floods) as that client.
    static func sessionSender(_ c: LocalCluster, client: ClientID) async -> ClientConnections {
        let proto = c.configuration.protocolConfig()
        var addresses: [Int: (host: String, port: Int)] = [:]
        for r in c.configuration.replicas { addresses[r.id] = (r.host, r.port) }
        let setup = SessionSetup(clusterID: proto.clusterID, principal: .client(client), signingKey: c.clientKeys[Int(client)],
                                 keyring: c.configuration.sessionKeyring())
        let conns = ClientConnections(clusterID: proto.clusterID, replicas: addresses, knownKinds: [MessageKind.reply.rawValue],
                                      session: setup, group: MultiThreadedEventLoopGroup.singleton,
                                      logger: Logger(label: "hostile", factory: { _ in SwiftLogNoOpLogHandler() })) { _, _ in }
        conns.start()
        _ = await waitUntil(5) { (0..<4).allSatisfy { conns.isConnected(toReplica: $0) } }
        return conns
    }

    static func body(_ r: Request) -> ByteBuffer {
        var b = ByteBufferAllocator().buffer(capacity: 0)
        b.writeBytes(r.encoded)
        return b
    }

    @Test("a replayed request frame is answered from the reply cache and never executed twice; garbage closes only its connection")
    func replayAndGarbage() async throws {
        let c = try LocalCluster()
        defer { c.shutdown() }
        let request = Request(client: 1, timestamp: 1000, sessionStart: true, operation: Array("SET r 1".utf8))
            .signed(with: Ed25519MessageSigner(key: c.clientKeys[1]), clusterID: 5)
        let port = c.configuration.address(of: 2).port
        // Send the same signed request to every replica three times (a replay) over the client's
        // own sessions, plus garbage to replica 2 on a connection of its own.
        let sender = await Self.sessionSender(c, client: 1)
        defer { try? sender.shutdown().wait() }
        for _ in 0..<3 { sender.broadcast(kind: MessageKind.request.rawValue, body: Self.body(request)) }
        try RawSocket.send(port: port, bytes: Array(repeating: 0xEE, count: 512))
        #expect(await Self.waitUntil(10) { (0..<4).allSatisfy { c.deliverLog($0).count == 1 } })
        try await Task.sleep(for: .milliseconds(300))
        #expect((0..<4).allSatisfy { c.deliverLog($0).count == 1 })

        // The cluster still serves a normal client, and replica 2 kept its other connections.
        let rt = c.client(0)
        defer { rt.shutdown() }
        guard case .completed = await Self.call(rt, client: 0, "SET after garbage", timeout: .seconds(10)) else {
            Issue.record("cluster stopped serving"); return
        }
        #expect(await Self.waitUntil(5) { c.deliverLog(2).count == 2 })
    }

    @Test("a client sending forged signatures is disconnected; one flooding requests is held to its window; honest clients are served")
    func hostileClients() async throws {
        let c = try LocalCluster()
        defer { c.shutdown() }
        // Forged: sent over client 0's own session, signed by client 0's key but claiming to be
        // client 1 — not the session's principal, so its signature is checked and fails.
        let forger = await Self.sessionSender(c, client: 0)
        defer { try? forger.shutdown().wait() }
        for t in 0..<20 {
            forger.send(toReplica: 1, kind: MessageKind.request.rawValue,
                        body: Self.body(Request(client: 1, timestamp: UInt64(5000 + t), sessionStart: true, operation: [1])
                            .signed(with: Ed25519MessageSigner(key: c.clientKeys[0]), clusterID: 5)))
        }
        // Flood: 500 validly signed requests over client 1's session that all wait behind a missing timestamp.
        let flooder = await Self.sessionSender(c, client: 1)
        defer { try? flooder.shutdown().wait() }
        for t in 0..<500 {
            flooder.send(toReplica: 2, kind: MessageKind.request.rawValue,
                         body: Self.body(Request(client: 1, timestamp: UInt64(10_000 + t), sessionStart: false, operation: [2])
                            .signed(with: Ed25519MessageSigner(key: c.clientKeys[1]), clusterID: 5)))
        }

        let rt = c.client(0)
        defer { rt.shutdown() }
        for k in 0..<5 {
            guard case .completed = await Self.call(rt, client: 0, "SET h\(k) 1", timeout: .seconds(10)) else {
                Issue.record("honest client not served"); return
            }
        }
        #expect(await Self.waitUntil(5) { (c.nodes[1]?.transportStats().closedByReason.values.reduce(0, +) ?? 0) >= 1 })
        #expect((c.nodes[1]?.dropCounts()["bad_signature"] ?? 0) >= 8)
        #expect(await Self.waitUntil(5) { (c.nodes[2]?.dropCounts()["client_window_full"] ?? 0) >= 400 })
        // The client finished with f+1 replies; replica 1 may still be executing the last request.
        _ = await Self.waitUntil(5) { c.deliverLog(1).count >= 5 }
        #expect(c.deliverLog(1).count == 5)
    }

    @Test("§4.4 on the network: stopping the primary leads to a view change and further commits")
    func primaryStopViewChange() async throws {
        let c = try LocalCluster(viewChangeTimeoutMs: 500)
        defer { c.shutdown() }
        let rt = c.client(0)
        defer { rt.shutdown() }
        guard case .completed = await Self.call(rt, client: 0, "SET a 1", timeout: .seconds(10)) else {
            Issue.record("first request timed out"); return
        }
        c.stop(0)
        guard case .completed(let r, _, _) = await Self.call(rt, client: 0, "SET b 2", timeout: .seconds(20)) else {
            Issue.record("no progress after the primary stopped"); return
        }
        #expect(String(decoding: r, as: UTF8.self) == "OK")
        let views = (1..<4).compactMap { c.nodes[$0]?.status().view }
        #expect(views.allSatisfy { $0 >= 1 })
        #expect(await Self.waitUntil(5) { (1..<4).allSatisfy { c.deliverLog($0).count == 2 } })
    }
}

/// A blocking TCP client for feeding raw bytes to a replica.
enum RawSocket {
    static func send(port: Int, bytes: [UInt8]) throws {
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(s) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = UInt16(port).bigEndian
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0 else { throw POSIXError(.ECONNREFUSED) }
        _ = bytes.withUnsafeBytes { Glibc.send(s, $0.baseAddress, $0.count, 0) }
        Thread.sleep(forTimeInterval: 0.1)
    }
}
