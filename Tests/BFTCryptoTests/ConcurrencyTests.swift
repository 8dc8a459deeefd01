import BFTCrypto
import Dispatch
import Foundation
import Testing

/// Collects failures from worker threads (NSLock rather than Mutex so the test
/// does not need a newer macOS deployment target).
private final class FailureLog: @unchecked Sendable {
    private let lock = NSLock()
    private var failures: [String] = []
    private var checks = 0
    func record(_ ok: Bool, _ what: @autoclosure () -> String) {
        lock.lock(); defer { lock.unlock() }
        checks += 1
        if !ok { failures.append(what()) }
    }
    var snapshot: (checks: Int, failures: [String]) {
        lock.lock(); defer { lock.unlock() }
        return (checks, failures)
    }
}

@Suite("Thread safety")
struct ConcurrencyTests {
    @Test("one shared key object signs and verifies correctly from many threads")
    func sharedKeyManyThreads() throws {
        let key = try Ed25519PrivateKey.generate()
        let pub = key.publicKey
        let messages = (0..<64).map { Array("msg-\($0)-".utf8) + SecureRandom.bytes(count: $0) }
        // Reference signatures computed on one thread (Ed25519 is deterministic).
        let expected = messages.map { key.signature(for: $0) }
        let log = FailureLog()
        let threads = 8
        let rounds = 25

        DispatchQueue.concurrentPerform(iterations: threads) { t in
            for r in 0..<rounds {
                let i = (t * 7 + r) % messages.count
                let sig = key.signature(for: messages[i])
                log.record(sig == expected[i], "thread \(t) round \(r): signature mismatch")
                log.record(pub.isValidSignature(sig, for: messages[i]), "thread \(t): valid rejected")
                var bad = sig
                bad[r % 64] ^= 1
                log.record(!pub.isValidSignature(bad, for: messages[i]), "thread \(t): forgery accepted")
                let j = (i + 1) % messages.count
                log.record(!pub.isValidSignature(sig, for: messages[j]), "thread \(t): wrong message accepted")
                log.record(!pub.isValidSignature(Array(sig.prefix(10)), for: messages[i]),
                           "thread \(t): short signature accepted")
                log.record(SHA256.hash(messages[i]) == SHA256.hash(parts: [messages[i]]),
                           "thread \(t): hash mismatch")
            }
        }
        let result = log.snapshot
        #expect(result.checks == threads * rounds * 6)
        #expect(result.failures.isEmpty, "\(result.failures.prefix(5))")
    }

    @Test("shared keys across a task group")
    func sharedKeyTaskGroup() async throws {
        let key = try Ed25519PrivateKey.generate()
        let pub = try Ed25519PublicKey(rawRepresentation: key.publicKey.rawRepresentation)
        let ok = await withTaskGroup(of: Bool.self) { group in
            for t in 0..<16 {
                group.addTask {
                    var allGood = true
                    for r in 0..<20 {
                        let m = Array("task \(t) round \(r)".utf8)
                        let s = key.signature(for: m)
                        allGood = allGood && pub.isValidSignature(s, for: m)
                            && !pub.isValidSignature(s, for: m + [1])
                    }
                    return allGood
                }
            }
            var all = true
            for await r in group { all = all && r }
            return all
        }
        #expect(ok)
    }

    /// Not an assertion: prints rough per-operation costs for the record.
    @Test("timing (informational)")
    func timing() throws {
        let key = try Ed25519PrivateKey.generate()
        let pub = key.publicKey
        let message = [UInt8](repeating: 0x42, count: 256)
        let n = 2000
        let clock = ContinuousClock()
        var sig: [UInt8] = []
        let signTime = clock.measure {
            for _ in 0..<n { sig = key.signature(for: message) }
        }
        var valid = true
        let verifyTime = clock.measure {
            for _ in 0..<n { valid = pub.isValidSignature(sig, for: message) && valid }
        }
        var d = Digest.zero
        let hashTime = clock.measure {
            for _ in 0..<n { d = SHA256.hash(message) }
        }
        #expect(valid)
        #expect(d != Digest.zero)
        func us(_ t: Duration) -> Double {
            let c = t.components
            return (Double(c.seconds) * 1e6 + Double(c.attoseconds) / 1e12) / Double(n)
        }
        print("BFTCrypto timing: sign \(us(signTime)) µs/op, verify \(us(verifyTime)) µs/op, sha256(256 B) \(us(hashTime)) µs/op")
    }
}
