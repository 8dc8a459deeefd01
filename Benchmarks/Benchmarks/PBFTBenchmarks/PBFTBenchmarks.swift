import BFTCore
import BFTCrypto
import Benchmark

/// Micro-benchmarks of swift-pbft: Ed25519, SHA-256, the wire codec of every message kind,
/// edge verification, and the throughput of the pure protocol core.
///
/// Each benchmark runs for at most a few seconds, so the suite finishes in a few minutes on a
/// 2-core machine. Operations well under 10 µs run 1,000 times per measured iteration
/// (`scalingFactor: .kilo`) so the clock's own cost stays out of the figures; the tool reports
/// every figure per operation either way.
let benchmarks: @Sendable () -> Void = {
    let timed: [BenchmarkMetric] = [.wallClock, .throughput, .mallocCountTotal]

    func slow(_ seconds: Int = 3) -> Benchmark.Configuration {
        .init(metrics: timed, warmupIterations: 10, scalingFactor: .one, maxDuration: .seconds(seconds), maxIterations: 100_000)
    }
    func fast(_ seconds: Int = 1) -> Benchmark.Configuration {
        .init(metrics: timed, warmupIterations: 3, scalingFactor: .kilo, maxDuration: .seconds(seconds), maxIterations: 100_000)
    }
    /// Encoding and decoding: messages of a few KiB and more take several µs or far more, so
    /// they are timed one at a time.
    func codec(bytes: Int) -> Benchmark.Configuration {
        bytes < 2_048 ? fast()
            : .init(metrics: timed, warmupIterations: 10, scalingFactor: .one, maxDuration: .seconds(1), maxIterations: 100_000)
    }

    // MARK: Ed25519 (OpenSSL, cached key objects)

    let key = try! Ed25519PrivateKey(seed: [UInt8](repeating: 9, count: 32))
    let prepareBytes = Fixtures.prepare.signingBytes(clusterID: Fixtures.clusterID)
    let prepareSignature = key.signature(for: prepareBytes)

    Benchmark("Ed25519 sign (Prepare signing bytes, \(prepareBytes.count) B)", configuration: slow()) { benchmark in
        for _ in benchmark.scaledIterations { blackHole(key.signature(for: prepareBytes)) }
    }
    Benchmark("Ed25519 verify (Prepare signing bytes, \(prepareBytes.count) B)", configuration: slow()) { benchmark in
        for _ in benchmark.scaledIterations {
            precondition(key.publicKey.isValidSignature(prepareSignature, for: prepareBytes))
        }
    }

    // MARK: SHA-256 of a request

    let zeroRequest = Fixtures.request0.encoded
    let kibRequest = Fixtures.request1K.encoded
    Benchmark("SHA-256 of a 0 B request (\(zeroRequest.count) B encoded)", configuration: fast()) { benchmark in
        for _ in benchmark.scaledIterations { blackHole(SHA256.hash(zeroRequest)) }
    }
    Benchmark("SHA-256 of a 1 KiB request (\(kibRequest.count) B encoded)", configuration: fast()) { benchmark in
        for _ in benchmark.scaledIterations { blackHole(SHA256.hash(kibRequest)) }
    }

    // MARK: Wire codec, every message kind

    for (label, message) in Fixtures.messages {
        let body = message.encoded()
        let kind = message.kind.rawValue
        precondition((try? Message.decode(kind: kind, body: body)) == message, "fixture does not round-trip: \(label)")
        Benchmark("Encode \(label), \(body.count) B", configuration: codec(bytes: body.count)) { benchmark in
            for _ in benchmark.scaledIterations { blackHole(message.encoded()) }
        }
        Benchmark("Decode \(label), \(body.count) B", configuration: codec(bytes: body.count)) { benchmark in
            for _ in benchmark.scaledIterations { blackHole(try! Message.decode(kind: kind, body: body)) }
        }
    }

    // MARK: Edge verification with real keys

    let replicaKeys = (0..<Fixtures.n).map { i in try! Ed25519PrivateKey(seed: [UInt8](repeating: UInt8(i + 1), count: 32)) }
    let clientKeys = (0..<Fixtures.clientCount).map { i in try! Ed25519PrivateKey(seed: [UInt8](repeating: UInt8(100 + i), count: 32)) }
    let keyring = Ed25519Keyring(
        replicaKeys: replicaKeys.map(\.publicKey),
        clientKeys: Dictionary(uniqueKeysWithValues: clientKeys.enumerated().map { (ClientID($0.offset), $0.element.publicKey) }))
    let verifier = MessageVerifier(checker: keyring, clusterID: Fixtures.clusterID, replicaCount: Fixtures.n,
                                   clientCount: Fixtures.clientCount)
    // The verifier remembers messages it verified (a resend costs a hash), so to time a first
    // verification each iteration takes the next of more distinct messages than it remembers.
    let poolSize = MessageVerifier.verifiedMessageCacheLimit + 1024
    let replicaSigner = Ed25519MessageSigner(key: replicaKeys[2])
    let prepares = (0..<poolSize).map { k in
        Message.prepare(Fixtures.prepare(seq: SeqNum(17 + k), digest: Fixtures.prePrepare32.digest, replica: 2)
            .signed(with: replicaSigner, clusterID: Fixtures.clusterID))
    }
    var nextPrepare = 0
    Benchmark("MessageVerifier: Prepare, Ed25519", configuration: slow()) { benchmark in
        for _ in benchmark.scaledIterations {
            let m = prepares[nextPrepare]
            nextPrepare = (nextPrepare + 1) % prepares.count
            guard case .success(let v) = verifier.verify(m) else { fatalError("Prepare did not verify") }
            blackHole(v)
        }
    }
    Benchmark("MessageVerifier: Prepare resent byte for byte (remembered)", configuration: slow()) { benchmark in
        let m = prepares[0]
        _ = verifier.verify(m)
        for _ in benchmark.scaledIterations {
            guard case .success(let v) = verifier.verify(m) else { fatalError("Prepare did not verify") }
            blackHole(v)
        }
    }
    // The pre-prepare's 32 requests were verified when they arrived from their clients, so only
    // the primary's signature is checked; the requests hit the verified-request cache.
    let batch = Fixtures.prePrepare32.requests.map { r in
        r.signed(with: Ed25519MessageSigner(key: clientKeys[Int(r.client)]), clusterID: Fixtures.clusterID)
    }
    for r in batch { guard case .success = verifier.verify(.request(r)) else { fatalError("request did not verify") } }
    let primarySigner = Ed25519MessageSigner(key: replicaKeys[0])
    let prePrepares = (0..<poolSize).map { k in
        Message.prePrepare(PrePrepare(view: 0, seq: SeqNum(17 + k), replica: 0, requests: batch)
            .signed(with: primarySigner, clusterID: Fixtures.clusterID))
    }
    var nextPrePrepare = 0
    Benchmark("MessageVerifier: PrePrepare of 32 cached requests, Ed25519", configuration: slow()) { benchmark in
        for _ in benchmark.scaledIterations {
            let m = prePrepares[nextPrePrepare]
            nextPrePrepare = (nextPrePrepare + 1) % prePrepares.count
            guard case .success(let v) = verifier.verify(m) else { fatalError("PrePrepare did not verify") }
            blackHole(v)
        }
    }

    // MARK: Core throughput: 4 replicas in memory, stand-in signatures

    // 20 clients x 50 requests = 1,000 requests ordered per iteration, so the tool's per-operation
    // figures (scaling factor 1,000) are per request: throughput is requests ordered per second.
    for verify in [true, false] {
        let cluster = CoreCluster(clients: 20, verify: verify)
        let name = verify ? "Core: 4 replicas order 1,000 requests, stand-in signatures checked"
                          : "Core: 4 replicas order 1,000 requests, messages trusted (no checks)"
        let batchSize = BenchmarkMetric.custom("Requests per batch", polarity: .prefersLarger, useScalingFactor: false)
        Benchmark(name, configuration: .init(
            metrics: timed + [.peakMemoryResident, batchSize], warmupIterations: 2, scalingFactor: .kilo,
            maxDuration: .seconds(4), maxIterations: 10_000)) { benchmark in
            let requests = cluster.nextRequests(perClient: 50)
            let (batches, proposed) = (cluster.batchesProposed, cluster.requestsProposed)
            benchmark.startMeasurement()
            blackHole(cluster.order(requests, arrivalsPerRound: 32))
            benchmark.stopMeasurement()
            let b = cluster.batchesProposed - batches
            benchmark.measurement(batchSize, b == 0 ? 0 : (cluster.requestsProposed - proposed) / b)
        }
    }
}
