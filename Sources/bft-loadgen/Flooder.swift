import BFTConfig
import BFTCore
import BFTCrypto
import BFTTransport
import Foundation
import Logging
import NIOCore
import NIOPosix

/// A hostile client for the under-attack benchmark: it sends, to every replica and without
/// waiting for replies, a cycle over a pool of pre-signed requests with consecutive timestamps
/// (new ones on the first pass, replays after), one in `forgedEvery` with a corrupted signature,
/// `framesPerMillisecond` frames each millisecond. The replicas must hold it to its window,
/// answer replays from their reply cache, penalise and disconnect it for forgeries, and keep
/// serving the honest clients.
final class Flooder: @unchecked Sendable {
    static let framesPerMillisecond = 20
    static let forgedEvery = 16
    let poolSize = 8192
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let connections: ClientConnections
    var pool: [ByteBuffer] = []
    var next = 0
    var task: RepeatedTask?

    init(configuration: ClusterConfiguration, identity: (id: ClientID, key: Ed25519PrivateKey)) {
        let proto = configuration.protocolConfig()
        var addresses: [Int: (host: String, port: Int)] = [:]
        for r in configuration.replicas { addresses[r.id] = (r.host, r.port) }
        connections = ClientConnections(clusterID: proto.clusterID, replicas: addresses, knownKinds: [MessageKind.reply.rawValue],
                                        group: group, logger: Logger(label: "bft-loadgen.flooder"), onFrame: { _, _ in })
        let signer = Ed25519MessageSigner(key: identity.key)
        let t0 = UInt64(Date().timeIntervalSince1970 * 1_000_000) + 1_000_000
        for k in 0..<poolSize {
            var r = Request(client: identity.id, timestamp: t0 + UInt64(k), sessionStart: k == 0, operation: Array("SET flood \(k)".utf8))
                .signed(with: signer, clusterID: proto.clusterID)
            if k % Flooder.forgedEvery == Flooder.forgedEvery - 1 { r.signature[0] ^= 0x55 }
            var buf = ByteBufferAllocator().buffer(capacity: 0)
            buf.writeBytes(r.encoded)
            pool.append(buf)
        }
    }

    func start() {
        connections.start()
        task = group.next().scheduleRepeatedTask(initialDelay: .zero, delay: .milliseconds(1)) { [self] _ in
            for _ in 0..<Flooder.framesPerMillisecond {
                connections.broadcast(kind: MessageKind.request.rawValue, body: pool[next])
                next = (next + 1) % pool.count
            }
        }
    }

    func stop() {
        task?.cancel()
        try? connections.shutdown().wait()
        try? group.syncShutdownGracefully()
    }
}
