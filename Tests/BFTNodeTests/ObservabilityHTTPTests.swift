import Foundation
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

/// Helpers for the status server tests, namespaced so they cannot clash with other test files.
enum ObsHTTP {
    /// A raw TCP client that records every byte it receives and whether the server closed.
    final class Client: @unchecked Sendable {
        let received = LockedBox<[UInt8]>([])
        let closed = LockedBox(false)
        var channel: (any Channel)!

        static func connect(_ group: any EventLoopGroup, port: Int, from source: String? = nil, autoRead: Bool = true) async throws -> Client {
            let client = Client()
            var bootstrap = ClientBootstrap(group: group).channelOption(ChannelOptions.autoRead, value: autoRead)
            if let source { bootstrap = bootstrap.bind(to: try SocketAddress(ipAddress: source, port: 0)) }
            client.channel = try await bootstrap
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(Collector(client: client))
                    }
                }
                .connect(host: "127.0.0.1", port: port).get()
            return client
        }

        /// Sends bytes; false if the connection is already gone.
        @discardableResult
        func send(_ bytes: [UInt8]) async -> Bool {
            do {
                try await channel.writeAndFlush(ByteBuffer(bytes: bytes)).get()
                return true
            } catch {
                return false
            }
        }

        @discardableResult
        func send(_ text: String) async -> Bool { await send(Array(text.utf8)) }

        var isClosed: Bool { closed.withLock { $0 } }
        var bytes: [UInt8] { received.withLock { $0 } }
        var text: String { String(decoding: bytes, as: UTF8.self) }

        /// The responses received so far (complete ones only).
        var responses: [Response] { Response.parseAll(bytes) }

        func close() async { try? await channel.close().get() }
    }

    final class Collector: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        let client: Client
        init(client: Client) { self.client = client }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let buffer = unwrapInboundIn(data)
            client.received.withLock { $0.append(contentsOf: buffer.readableBytesView) }
        }
        func channelInactive(context: ChannelHandlerContext) {
            client.closed.withLock { $0 = true }
            context.fireChannelInactive()
        }
        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }

    struct Response {
        var status: Int
        var headers: [String: String]  // lower-cased names
        var body: [UInt8]
        var bodyText: String { String(decoding: body, as: UTF8.self) }

        /// Splits a byte stream into complete HTTP/1.1 responses framed by Content-Length.
        static func parseAll(_ bytes: [UInt8]) -> [Response] {
            var out: [Response] = []
            var rest = bytes[...]
            let crlf2: [UInt8] = [13, 10, 13, 10]
            while let end = rest.firstRange(of: crlf2) {
                let headText = String(decoding: rest[rest.startIndex..<end.lowerBound], as: UTF8.self)
                var lines = headText.components(separatedBy: "\r\n")
                let statusLine = lines.removeFirst().split(separator: " ")
                guard statusLine.count >= 2, statusLine[0].hasPrefix("HTTP/1."), let status = Int(statusLine[1]) else { break }
                var headers: [String: String] = [:]
                for l in lines {
                    guard let colon = l.firstIndex(of: ":") else { continue }
                    headers[l[..<colon].lowercased()] = l[l.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                }
                let length = Int(headers["content-length"] ?? "0") ?? 0
                let bodyStart = end.upperBound
                guard rest.endIndex - bodyStart >= length else { break }
                out.append(Response(status: status, headers: headers, body: Array(rest[bodyStart..<bodyStart + length])))
                rest = rest[(bodyStart + length)...]
            }
            return out
        }
    }

    static let logger = Logger(label: "obs-test", factory: { _ in SwiftLogNoOpLogHandler() })
    static let statusJSON = Array(#"{"replica":1,"view":7}"#.utf8)

    /// A started server on 127.0.0.1 port 0 with its own one-thread group.
    static func makeServer(
        limits: StatusHTTPServer.Limits = .init(), metrics: NodeMetrics = NodeMetrics()
    ) throws -> (StatusHTTPServer, MultiThreadedEventLoopGroup, Int) {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let server = StatusHTTPServer(
            host: "127.0.0.1", port: 0, group: group, metrics: metrics,
            status: { statusJSON }, logger: logger, limits: limits)
        try server.start()
        return (server, group, server.boundPort!)
    }

    static func stop(_ server: StatusHTTPServer, _ group: MultiThreadedEventLoopGroup) async throws {
        server.shutdown()
        try await group.shutdownGracefully()
    }

    /// Polls `condition` every 5 ms until it holds or `timeout` passes.
    static func within(_ timeout: Duration = .seconds(3), _ condition: () -> Bool) async -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while clock.now < deadline {
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return condition()
    }

    /// One request on a fresh connection; returns the first response.
    static func request(_ group: any EventLoopGroup, port: Int, _ raw: String) async throws -> Response {
        let c = try await Client.connect(group, port: port)
        await c.send(raw)
        let answered = await within { !c.responses.isEmpty }
        await c.close()
        #expect(answered, "no response to \(raw.prefix(40).debugDescription)")
        return try #require(c.responses.first)
    }
}

@Suite(.timeLimit(.minutes(1)))
struct ObservabilityHTTPTests {
    @Test func servesMetricsInPrometheusTextFormat() async throws {
        let metrics = NodeMetrics()
        metrics.requestReceived(count: 3)
        metrics.messageDropped(reason: "bad_signature")
        let (server, group, port) = try ObsHTTP.makeServer(metrics: metrics)
        let r = try await ObsHTTP.request(group, port: port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(r.status == 200)
        #expect(r.headers["content-type"]?.hasPrefix("text/plain; version=0.0.4") == true)
        let families = try PromText.parse(r.bodyText)
        #expect(PromText.value(families, "bft_requests_received_total") == 3)
        #expect(PromText.value(families, "bft_messages_dropped_total", ["reason": "bad_signature"]) == 1)
        // A query string does not change the route.
        let q = try await ObsHTTP.request(group, port: port, "GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(q.status == 200)
        try await ObsHTTP.stop(server, group)
    }

    @Test func servesStatusJSON() async throws {
        let (server, group, port) = try ObsHTTP.makeServer()
        let r = try await ObsHTTP.request(group, port: port, "GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(r.status == 200)
        #expect(r.headers["content-type"] == "application/json")
        #expect(r.body == ObsHTTP.statusJSON)
        try await ObsHTTP.stop(server, group)
    }

    @Test func statusSnapshotFeedsTheServer() async throws {
        let snapshot = StatusSnapshot()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let server = StatusHTTPServer(
            host: "127.0.0.1", port: 0, group: group, metrics: NodeMetrics(),
            status: snapshot.provider, logger: ObsHTTP.logger)
        try server.start()
        let port = try #require(server.boundPort)
        #expect(try await ObsHTTP.request(group, port: port, "GET /status HTTP/1.1\r\n\r\n").bodyText == "{}")
        snapshot.update(Array(#"{"view":2}"#.utf8))
        #expect(try await ObsHTTP.request(group, port: port, "GET /status HTTP/1.1\r\n\r\n").bodyText == #"{"view":2}"#)
        try await ObsHTTP.stop(server, group)
    }

    @Test func unknownPathIs404AndOtherMethodsAre405() async throws {
        let (server, group, port) = try ObsHTTP.makeServer()
        let notFound = try await ObsHTTP.request(group, port: port, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(notFound.status == 404)
        let post = try await ObsHTTP.request(
            group, port: port, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        #expect(post.status == 405)
        #expect(post.headers["allow"] == "GET")
        let delete = try await ObsHTTP.request(group, port: port, "DELETE /status HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(delete.status == 405)
        try await ObsHTTP.stop(server, group)
    }

    @Test func keepAliveServesSeveralRequestsOnOneConnection() async throws {
        let (server, group, port) = try ObsHTTP.makeServer()
        let c = try await ObsHTTP.Client.connect(group, port: port)
        await c.send("GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(await ObsHTTP.within { c.responses.count == 1 })
        await c.send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(await ObsHTTP.within { c.responses.count == 2 })
        #expect(c.responses.map(\.status) == [200, 200])
        #expect(!c.isClosed)
        await c.close()
        try await ObsHTTP.stop(server, group)
    }

    @Test func garbageBytesGet400AndAClosedConnection() async throws {
        let (server, group, port) = try ObsHTTP.makeServer()
        let c = try await ObsHTTP.Client.connect(group, port: port)
        await c.send([0x00, 0x01, 0xFF, 0xFE] + Array("\r\n\r\nnot http at all\r\n\r\n".utf8))
        #expect(await ObsHTTP.within { c.isClosed })
        // Either the 400 made it out before the close, or nothing was sent at all.
        if !c.bytes.isEmpty {
            #expect(c.text.hasPrefix("HTTP/1.1 400"))
        }
        #expect(await ObsHTTP.within { server.stats().badRequests == 1 })
        // The server still works afterwards.
        #expect(try await ObsHTTP.request(group, port: port, "GET /status HTTP/1.1\r\n\r\n").status == 200)
        try await ObsHTTP.stop(server, group)
    }

    @Test func oversizedRequestIsRefusedAndClosed() async throws {
        let (server, group, port) = try ObsHTTP.makeServer(limits: .init(maxRequestBytes: 1024))
        let c = try await ObsHTTP.Client.connect(group, port: port)
        await c.send("GET /metrics HTTP/1.1\r\nX-Big: " + String(repeating: "a", count: 4096) + "\r\n\r\n")
        #expect(await ObsHTTP.within { c.isClosed })
        if let r = c.responses.first { #expect(r.status == 431 || r.status == 400) }
        // A long URL is bounded too (the HTTP decoder itself does not limit it).
        let d = try await ObsHTTP.Client.connect(group, port: port)
        await d.send("GET /" + String(repeating: "u", count: 4096))
        #expect(await ObsHTTP.within { d.isClosed })
        #expect(server.stats().tooLarge >= 1)
        try await ObsHTTP.stop(server, group)
    }

    @Test func slowClientIsClosedAfterTheRequestTimeoutEvenWhileTrickling() async throws {
        let (server, group, port) = try ObsHTTP.makeServer(limits: .init(requestTimeout: .milliseconds(400)))
        // Silent client.
        let silent = try await ObsHTTP.Client.connect(group, port: port)
        // Slowloris: a byte every 50 ms keeps an idle timer happy but not the request deadline.
        let slow = try await ObsHTTP.Client.connect(group, port: port)
        let start = ContinuousClock.now
        await slow.send("GET /metrics HTTP/1.1\r\n")
        for _ in 0..<60 where !slow.isClosed {
            await slow.send("X")
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(slow.isClosed)
        #expect(ContinuousClock.now - start < .seconds(3))
        #expect(slow.responses.isEmpty)
        #expect(await ObsHTTP.within { silent.isClosed })
        #expect(server.stats().timedOut >= 2)
        try await ObsHTTP.stop(server, group)
    }

    @Test func idleKeepAliveConnectionIsClosedAfterTheRequestTimeout() async throws {
        // The deadline runs from the connection opening, so it must leave room for the request to
        // arrive on a loaded machine (the whole suite runs in parallel); 2 s does, and the
        // connection must still be gone well before the test's own patience runs out.
        let (server, group, port) = try ObsHTTP.makeServer(limits: .init(requestTimeout: .seconds(2)))
        let idle = try await ObsHTTP.Client.connect(group, port: port)
        await idle.send("GET /status HTTP/1.1\r\n\r\n")
        #expect(await ObsHTTP.within(.seconds(10)) { idle.responses.count == 1 })
        #expect(idle.responses.first?.status == 200)
        #expect(await ObsHTTP.within(.seconds(10)) { idle.isClosed })
        #expect(server.stats().idleClosed == 1)
        try await ObsHTTP.stop(server, group)
    }

    @Test func keepsAnsweringOthersWhileASlowClientHoldsAConnection() async throws {
        let (server, group, port) = try ObsHTTP.makeServer(limits: .init(requestTimeout: .seconds(10)))
        let slow = try await ObsHTTP.Client.connect(group, port: port)
        await slow.send("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        for i in 0..<5 {
            let r = try await ObsHTTP.request(group, port: port, "GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(r.status == 200, "request \(i)")
            await slow.send("y")
        }
        #expect(!slow.isClosed)
        // The slow client still gets its answer when it finally finishes.
        await slow.send("\r\n\r\n")
        #expect(await ObsHTTP.within { slow.responses.count == 1 })
        await slow.close()
        try await ObsHTTP.stop(server, group)
    }

    @Test func connectionsOverTheLimitAreClosedImmediately() async throws {
        let (server, group, port) = try ObsHTTP.makeServer(limits: .init(maxConnections: 2))
        let a = try await ObsHTTP.Client.connect(group, port: port)
        let b = try await ObsHTTP.Client.connect(group, port: port)
        #expect(await ObsHTTP.within { server.stats().open == 2 })
        let c = try await ObsHTTP.Client.connect(group, port: port)
        #expect(await ObsHTTP.within { c.isClosed })
        #expect(server.stats().rejected == 1)
        #expect(!a.isClosed && !b.isClosed)
        // Once one leaves, a new connection is served again.
        await a.close()
        #expect(await ObsHTTP.within { server.stats().open == 1 })
        let r = try await ObsHTTP.request(group, port: port, "GET /status HTTP/1.1\r\n\r\n")
        #expect(r.status == 200)
        await b.close()
        try await ObsHTTP.stop(server, group)
    }

    @Test func pipelinedRequestsToAClientThatDoesNotReadHoldAtMostOneResponse() async throws {
        // A status document larger than the loopback socket buffers, so a response to a client
        // that does not read can never be written completely.
        let big = [UInt8](repeating: UInt8(ascii: "x"), count: 16 * 1024 * 1024)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let server = StatusHTTPServer(
            host: "127.0.0.1", port: 0, group: group, metrics: NodeMetrics(), status: { big }, logger: ObsHTTP.logger,
            limits: .init(maxBytesPerConnection: 1 << 30))
        try server.start()
        let port = try #require(server.boundPort)
        let c = try await ObsHTTP.Client.connect(group, port: port, autoRead: false)
        await c.send(String(repeating: "GET /status HTTP/1.1\r\nHost: x\r\n\r\n", count: 8))
        #expect(await ObsHTTP.within { server.stats().responses >= 1 })
        try await Task.sleep(for: .milliseconds(500))
        // Only the response in flight exists; the seven others were not even produced.
        #expect(server.stats().responses == 1)
        #expect(!c.isClosed)
        await c.close()
        try await ObsHTTP.stop(server, group)
    }

    @Test func pipelinedRequestsAreAnsweredInOrderOneAfterAnother() async throws {
        let (server, group, port) = try ObsHTTP.makeServer()
        let c = try await ObsHTTP.Client.connect(group, port: port)
        await c.send("GET /status HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\n\r\n")
        #expect(await ObsHTTP.within { c.responses.count == 2 })
        #expect(c.responses.map(\.status) == [200, 404])
        await c.close()
        try await ObsHTTP.stop(server, group)
    }

    @Test func ninthConnectionFromOneAddressIsRefusedWhileAnotherAddressIsServed() async throws {
        let (server, group, port) = try ObsHTTP.makeServer()
        var held: [ObsHTTP.Client] = []
        for _ in 0..<8 { held.append(try await ObsHTTP.Client.connect(group, port: port, from: "127.0.0.1")) }
        #expect(await ObsHTTP.within { server.stats().open == 8 })
        let ninth = try await ObsHTTP.Client.connect(group, port: port, from: "127.0.0.1")
        #expect(await ObsHTTP.within { ninth.isClosed })
        #expect(server.stats().rejectedPerAddress == 1)
        // Another source address still gets its scrape.
        let other = try await ObsHTTP.Client.connect(group, port: port, from: "127.0.0.2")
        await other.send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(await ObsHTTP.within { other.responses.first?.status == 200 })
        #expect(held.allSatisfy { !$0.isClosed })
        for c in held { await c.close() }
        await other.close()
        try await ObsHTTP.stop(server, group)
    }

    @Test func idleKeepAliveConnectionIsClosedAfterTheIdleTimeout() async throws {
        let (server, group, port) = try ObsHTTP.makeServer(limits: .init(idleTimeout: .milliseconds(300)))
        let c = try await ObsHTTP.Client.connect(group, port: port)
        await c.send("GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(await ObsHTTP.within { c.responses.count == 1 })
        #expect(c.responses.first?.headers["connection"] == "keep-alive")
        // Before the 5 s request timeout could have closed it (the counter says which one did).
        #expect(await ObsHTTP.within(.seconds(4)) { c.isClosed })
        #expect(server.stats().idleClosed == 1)
        try await ObsHTTP.stop(server, group)
    }

    @Test func connectionIsClosedAtItsAbsoluteLifetimeEvenWhileBusy() async throws {
        // The lifetime leaves room for a first response even on a loaded 2-core machine.
        let (server, group, port) = try ObsHTTP.makeServer(limits: .init(connectionLifetime: .milliseconds(1200)))
        let c = try await ObsHTTP.Client.connect(group, port: port)
        let start = ContinuousClock.now
        // A well-behaved keep-alive client that never idles: a request every 50 ms.
        while !c.isClosed && ContinuousClock.now - start < .seconds(8) {
            await c.send("GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(c.isClosed)
        // The lifetime, not an idle or request timeout (the client never idles), closed it.
        #expect(ContinuousClock.now - start < .seconds(6))
        // The lifetime (not the idle timeout: the client never idles) closed it. Whether a
        // response arrived first depends on when this test's task gets a thread, which other
        // suites' blocking waits can delay past the lifetime, so it is not asserted.
        #expect(server.stats().lifetimeExpired == 1)
        #expect(server.stats().idleClosed == 0)
        try await ObsHTTP.stop(server, group)
    }

    @Test func connectionIsClosedOnceItsByteBudgetIsSpent() async throws {
        let (server, group, port) = try ObsHTTP.makeServer(limits: .init(maxBytesPerConnection: 1000))
        let c = try await ObsHTTP.Client.connect(group, port: port)
        for _ in 0..<40 where !c.isClosed {
            await c.send("GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(await ObsHTTP.within { c.isClosed })
        // Each exchange is ~150 bytes: the budget allows a handful, not 40.
        #expect(c.responses.count < 10)
        #expect(server.stats().budgetExceeded == 1)
        try await ObsHTTP.stop(server, group)
    }

    @Test func portInUseIsAClearErrorAndShutdownClosesEverything() async throws {
        let (server, group, port) = try ObsHTTP.makeServer()
        let other = StatusHTTPServer(
            host: "127.0.0.1", port: port, group: group, metrics: NodeMetrics(),
            status: { [] }, logger: ObsHTTP.logger)
        #expect(throws: ListenerError.addressInUse(.statusHTTP, host: "127.0.0.1", port: port)) { try other.start() }
        #expect("\(ListenerError.addressInUse(.statusHTTP, host: "127.0.0.1", port: port))".contains("address already in use"))
        #expect(throws: ListenerError.alreadyStarted(.statusHTTP)) { try server.start() }
        let c = try await ObsHTTP.Client.connect(group, port: port)
        #expect(await ObsHTTP.within { server.stats().open == 1 })
        server.shutdown()
        server.shutdown()  // idempotent
        #expect(await ObsHTTP.within { c.isClosed })
        #expect(server.boundPort == nil)
        #expect(throws: ListenerError.shutDown(.statusHTTP)) { try server.start() }
        try await group.shutdownGracefully()
    }
}
