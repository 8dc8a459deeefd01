import BFTConfig
import BFTCore
import BFTCrypto
import Logging
import NIOCore

/// Why a request did not complete.
public enum ClientError: Error, Equatable, Sendable, CustomStringConvertible {
    /// No f+1 matching replies within the timeout (the replicas may still execute it: a later
    /// retry with the same client id gets the cached reply only for requests still outstanding).
    case timedOut(seconds: Double)
    /// The operation is larger than the cluster's `maxOperationBytes`.
    case operationTooLarge(bytes: Int, limit: Int)
    /// `shutdown()` was called.
    case shutDown

    public var description: String {
        switch self {
        case .timedOut(let s): return "no f+1 matching replies within \(s) s"
        case .operationTooLarge(let b, let l): return "operation of \(b) bytes exceeds maxOperationBytes \(l)"
        case .shutDown: return "the client was shut down"
        }
    }
}

/// The result of one request: what f+1 replicas answered.
public struct ClientReply: Sendable, Equatable {
    public let result: [UInt8]
    /// The lowest view among the f+1 matching replies.
    public let view: ViewNum
    /// How often the request was retransmitted.
    public let retries: Int
}

/// A PBFT client to embed in an application:
///
/// ```swift
/// let client = try Client(configuration: try .load(path: "cluster.json"),
///                         key: try ClusterConfiguration.loadPrivateKey(path: "client-0.pem"))
/// let reply = try await client.submit(Array("SET a 1".utf8))
/// ```
///
/// Each request is signed, sent to every replica and completes once f+1 replicas sent the same
/// result (their signatures checked, and only theirs). Up to `window` requests are outstanding
/// at once; more wait their turn in submission order, so the cluster delivers them in that order.
/// One `Client` per client key at a time: timestamps start from the clock at start-up.
public final class Client: Sendable {
    public let id: ClientID
    public let configuration: ClusterConfiguration
    let runtime: ClientRuntime

    public init(configuration: ClusterConfiguration, key: Ed25519PrivateKey, window: Int = 1,
                logger: Logger = Logger(label: "bft.client")) throws(ConfigError) {
        self.id = try configuration.clientID(for: key)
        self.configuration = configuration
        self.runtime = ClientRuntime(configuration: configuration, clients: [(id, key)], window: window, logger: logger)
        runtime.start()
    }

    /// Orders `operation` and returns the result f+1 replicas agree on.
    public func submit(_ operation: [UInt8], timeout: Duration = .seconds(10)) async throws(ClientError) -> ClientReply {
        let limit = configuration.protocolConfig().maxOperationBytes
        guard operation.count <= limit else { throw .operationTooLarge(bytes: operation.count, limit: limit) }
        let nanos = timeout.components.seconds * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000
        let outcome: RequestOutcome = await withCheckedContinuation { continuation in
            runtime.submitInOrder(client: id, operation: operation, timeout: .nanoseconds(max(nanos, 1))) { continuation.resume(returning: $0) }
        }
        switch outcome {
        case .completed(let result, let retries, let view): return ClientReply(result: result, view: view, retries: retries)
        case .timedOut: throw .timedOut(seconds: Double(nanos) / 1e9)
        case .shutDown: throw .shutDown
        }
    }

    /// Stops the client; requests still waiting end with `ClientError.shutDown`.
    public func shutdown() { runtime.shutdown() }
}
