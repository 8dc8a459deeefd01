import BFTClusterHarness
import BFTClient
import BFTCore
import BFTCrypto
import Foundation
import NIOCore
import Synchronization

struct Driver {
    let runtime: ClientRuntime
    let identities: [(id: ClientID, key: Ed25519PrivateKey)]
    let payload: Int
    let rate: Double
    let timeout: Double

    func run(warmup: Double, duration: Double, label: String, fault: FaultPlan? = nil, cluster: LocalCluster? = nil) -> RunResult {
        let m = Measurements()
        let op = Array(repeating: UInt8(ascii: "x"), count: payload)
        let stop = Atomic<Bool>(false)
        let loop = runtime.loopForCallbacks
        let timeoutAmount = TimeAmount.milliseconds(Int64(timeout * 1000))
        let retransmitsBefore = (try? loop.submit { runtime.retransmissions }.wait()) ?? 0

        if rate <= 0 {
            // Closed loop: keep every client's window full. A request that times out keeps its
            // slot until it completes (the client retransmits; abandoning it would leave a gap in
            // the client's timestamps that replicas never fill).
            @Sendable func fill() {
                guard !stop.load(ordering: .relaxed) else { return }
                for (id, _) in identities {
                    while true {
                        let start = DispatchTime.now().uptimeNanoseconds
                        let ok = runtime.trySubmitOnLoop(client: id, operation: op, timeout: timeoutAmount) { outcome in
                            let micros = (DispatchTime.now().uptimeNanoseconds - start) / 1000
                            if case .completed(_, _, let view) = outcome { m.record(latencyMicros: micros, ok: true, view: view) } else { m.record(latencyMicros: micros, ok: false) }
                            fill()
                        }
                        if !ok { break }
                    }
                }
            }
            let task = loop.scheduleRepeatedTask(initialDelay: .zero, delay: .milliseconds(5)) { _ in fill() }
            _ = task
        } else {
            // Open loop: a due-time schedule; latency counts from the intended send time.
            let interval = 1.0 / rate
            let begin = DispatchTime.now().uptimeNanoseconds
            let queued = Mutex<[UInt64]>([])
            let sentCount = Mutex<Int>(0)
            let task = loop.scheduleRepeatedTask(initialDelay: .zero, delay: .milliseconds(1)) { _ in
                guard !stop.load(ordering: .relaxed) else { return }
                let now = DispatchTime.now().uptimeNanoseconds
                // Requests 0 ..< due have intended send times at or before now (request k at
                // begin + k × interval; counting only completed intervals sent each one an
                // interval late and added that much to every latency).
                let due = Int(Double(now - begin) / 1e9 / interval) + 1
                var intended = queued.withLock { q -> [UInt64] in let x = q; q.removeAll(); return x }
                let already = sentCount.withLock { $0 }
                for k in already..<max(already, due) { intended.append(begin + UInt64(Double(k) * interval * 1e9)) }
                sentCount.withLock { $0 = max($0, due) }
                var leftover: [UInt64] = []
                var idx = 0
                for t in intended {
                    var sent = false
                    for _ in 0..<identities.count {
                        let id = identities[idx % identities.count].id
                        idx += 1
                        if runtime.trySubmitOnLoop(client: id, operation: op, timeout: timeoutAmount, done: { outcome in
                            let micros = (DispatchTime.now().uptimeNanoseconds - t) / 1000
                            if case .completed(_, _, let view) = outcome { m.record(latencyMicros: micros, ok: true, view: view) } else { m.record(latencyMicros: micros, ok: false) }
                        }) { sent = true; break }
                    }
                    if !sent { leftover.append(t) }
                }
                // Windows full: requests wait (and their latency grows) instead of being dropped.
                if leftover.count > 100_000 { leftover.removeFirst(leftover.count - 100_000) }
                queued.withLock { $0 = leftover + $0 }
            }
            _ = task
        }

        Thread.sleep(forTimeInterval: warmup)
        m.state.withLock { $0.measuring = true }
        let start = Date()
        let faultOutcome = FaultOutcome.Box()
        let faultDone = DispatchSemaphore(value: 0)
        if let fault, let cluster {
            Thread.detachNewThread {
                fault.carryOut(on: cluster, measurements: m, outcome: faultOutcome, until: start.addingTimeInterval(duration))
                faultDone.signal()
            }
        } else {
            faultDone.signal()
        }
        var lastPrint = start
        while Date().timeIntervalSince(start) < duration {
            Thread.sleep(forTimeInterval: min(1.0, max(0.01, duration - Date().timeIntervalSince(start))))
            let now = Date()
            let (n, e, p50, p99) = m.state.withLock { s -> (Int, Int, UInt64, UInt64) in
                let r = (s.intervalCompleted, s.intervalErrors, s.interval.valueAtPercentile(50), s.interval.valueAtPercentile(99))
                s.intervalCompleted = 0; s.intervalErrors = 0; s.interval.reset()
                return r
            }
            let dt = now.timeIntervalSince(lastPrint)
            lastPrint = now
            print(String(format: "[%@ %5.1fs] %7.0f req/s  p50 %7.2f ms  p99 %7.2f ms  errors %d", label, now.timeIntervalSince(start),
                         Double(n) / max(dt, 0.001), Double(p50) / 1000, Double(p99) / 1000, e))
            fflush(nil)
        }
        let seconds = Date().timeIntervalSince(start)
        let final = m.state.withLock { s -> Measurements.State in s.measuring = false; return s }
        faultDone.wait()
        let fo = faultOutcome.value.withLock { $0 }
        stop.store(true, ordering: .relaxed)
        // Let outstanding requests drain so the next step starts clean.
        Thread.sleep(forTimeInterval: 0.5)
        let retransmits = ((try? loop.submit { runtime.retransmissions }.wait()) ?? 0) - retransmitsBefore
        let h = final.histogram
        func ms(_ v: UInt64) -> Double { Double(v) / 1000 }
        return RunResult(label: label, offered: rate, seconds: seconds, completed: final.completed, errors: final.errors,
                         retransmissions: retransmits, throughput: Double(final.completed) / seconds,
                         p50ms: ms(h.valueAtPercentile(50)), p90ms: ms(h.valueAtPercentile(90)), p99ms: ms(h.valueAtPercentile(99)),
                         p999ms: ms(h.valueAtPercentile(99.9)), maxms: ms(h.max),
                         killedReplica: fo.killedReplica, killedView: fo.killedView,
                         failoverMs: final.firstLaterViewReplyAt.flatMap { t in final.killedAt.map { Double(t - $0) / 1e6 } },
                         catchUpMs: fo.catchUpMs, catchUpTarget: fo.catchUpTarget)
    }
}
