import BFTCrypto
import Foundation

struct Fingerprint: Codable {
    var n: Int, f: Int, batchLimit: Int, window: Int, clients: Int, payload: Int
    var mode: String, authentication: String, fsync: String, build: String, cores: Int
    var line: String {
        "n=\(n) f=\(f) batch<=\(batchLimit) clients=\(clients) window=\(window) payload=\(payload)B mode=\(mode) auth=\(authentication) fsync=\(fsync) build=\(build) cores=\(cores)"
    }
}

/// What Ed25519 alone allows on this machine when every replica and the load generator share it.
/// With authenticated sessions a request costs one client signature and one verification (the
/// primary's; backups accept it from the client's own session), so the bound is
/// cores / (sign + verify). `verifiesPerCore` is the number of Ed25519 verifications one core does
/// per second: a run above it shows no per-request verification is left on every replica.
struct SignatureBound: Codable {
    var signMicros: Double
    var verifyMicros: Double
    var cores: Int
    var replicas: Int
    /// Ed25519 verifications per request on the replicas (1 with sessions: the primary's).
    var verificationsPerRequest: Int
    /// cores / (sign + verificationsPerRequest × verify)
    var requestsPerSecond: Double
    /// 1 / verify: what one core verifies per second.
    var verifiesPerCore: Double

    static func measure(replicas: Int) -> SignatureBound {
        let key = try! Ed25519PrivateKey(seed: Array(repeating: 7, count: 32))
        let msg = Array(repeating: UInt8(1), count: 64)
        var sig: [UInt8] = []
        let iterations = 2000
        var t0 = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<iterations { sig = key.signature(for: msg) }
        let sign = Double(DispatchTime.now().uptimeNanoseconds - t0) / Double(iterations) / 1000
        t0 = DispatchTime.now().uptimeNanoseconds
        var ok = true
        for _ in 0..<iterations { ok = ok && key.publicKey.isValidSignature(sig, for: msg) }
        let verify = Double(DispatchTime.now().uptimeNanoseconds - t0) / Double(iterations) / 1000
        precondition(ok)
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let verifications = 1
        let perRequest = sign + Double(verifications) * verify
        return SignatureBound(signMicros: sign, verifyMicros: verify, cores: cores, replicas: replicas,
                              verificationsPerRequest: verifications,
                              requestsPerSecond: Double(cores) * 1_000_000 / perRequest,
                              verifiesPerCore: 1_000_000 / verify)
    }
}

struct RunResult: Codable {
    var label: String
    var offered: Double
    var seconds: Double
    var completed: Int
    var errors: Int
    var retransmissions: Int
    var throughput: Double
    var p50ms: Double, p90ms: Double, p99ms: Double, p999ms: Double, maxms: Double
    /// "R:MODE" when a replica ran a Byzantine mode.
    var byzantine: String?
    var flooding = false
    /// Highest view any replica reported at the end (spawned clusters only).
    var views: UInt64?
    /// With --kill-primary-at: the replica killed, the view it led, and the time from the kill to
    /// the first reply committed in a later view.
    var killedReplica: Int?
    var killedView: UInt64?
    var failoverMs: Double?
    /// With --restart-after: time from the restart until the restarted replica had executed
    /// everything the others had executed when it came back.
    var catchUpMs: Double?
    var catchUpTarget: UInt64?

    var summaryLine: String {
        String(format: "%@: %.0f req/s, p50 %.2f ms, p99 %.2f ms, errors %d", label, throughput, p50ms, p99ms, errors)
    }

    func printTable(bound: SignatureBound) {
        print("")
        print("  completed     \(completed) in \(String(format: "%.1f", seconds)) s")
        print(String(format: "  throughput    %.0f requests/s", throughput))
        print(String(format: "  latency ms    p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f", p50ms, p90ms, p99ms, p999ms, maxms))
        print("  errors        \(errors) (timeouts)   retransmissions \(retransmissions)")
        print(String(format: "  bound         %.0f requests/s (signatures alone)", bound.requestsPerSecond))
        print(String(format: "  efficiency    %.1f%% of the bound", 100 * throughput / bound.requestsPerSecond))
        if let killedReplica, let killedView {
            if let failoverMs {
                print(String(format: "  failover      %.0f ms from SIGKILL of primary %d (view %d) to the first reply committed in a later view", failoverMs, killedReplica, killedView))
            } else {
                print("  failover      no reply committed in a view after \(killedView) before the run ended")
            }
            if let catchUpTarget {
                if let catchUpMs {
                    print(String(format: "  catch-up      %.0f ms from restart until replica %d executed seq %d (the others' position at its restart)", catchUpMs, killedReplica, catchUpTarget))
                } else {
                    print("  catch-up      replica \(killedReplica) did not reach seq \(catchUpTarget) before the run ended")
                }
            }
        }
    }
}

struct Report: Codable {
    var fingerprint: Fingerprint
    var bound: SignatureBound
    var results: [RunResult]
}
