import BFTClusterHarness
import Foundation
import Synchronization

/// `--kill-primary-at` / `--restart-after`: what to do to a spawned cluster during the run.
struct FaultPlan {
    let killAt: Double
    let restartAfter: Double?

    func carryOut(on cluster: LocalCluster, measurements m: Measurements, outcome box: FaultOutcome.Box, until end: Date) {
        let start = Date()
        Thread.sleep(forTimeInterval: killAt)
        // The primary of the highest view an active replica reports.
        let statuses = cluster.statuses()
        guard let lead = statuses.filter(\.active).max(by: { $0.view < $1.view }) else {
            print("fault plan: no replica reported an active view; nothing killed")
            return
        }
        let victim = lead.primary
        let view = lead.view
        m.state.withLock { s in
            s.killedView = view
            s.killedAt = DispatchTime.now().uptimeNanoseconds
        }
        cluster.kill(victim)
        box.value.withLock { $0.killedReplica = victim; $0.killedView = view }
        print(String(format: "[fault %5.1fs] SIGKILL replica %d, the primary of view %d", Date().timeIntervalSince(start), victim, view))
        guard let restartAfter else { return }
        Thread.sleep(forTimeInterval: restartAfter)
        let target = cluster.statuses().filter { $0.replica != victim }.map(\.lastExecuted).max() ?? 0
        let restartedAt = DispatchTime.now().uptimeNanoseconds
        do { try cluster.restart(victim) } catch {
            print("fault plan: restart of replica \(victim) failed: \(error)")
            return
        }
        box.value.withLock { $0.catchUpTarget = target }
        print(String(format: "[fault %5.1fs] restarted replica %d; the others had executed up to seq %d", Date().timeIntervalSince(start), victim, target))
        while Date() < end.addingTimeInterval(30) {
            if let st = cluster.status(of: victim), st.lastExecuted >= target {
                let ms = Double(DispatchTime.now().uptimeNanoseconds - restartedAt) / 1e6
                box.value.withLock { $0.catchUpMs = ms }
                print(String(format: "[fault %5.1fs] replica %d reached seq %d (now at %d, view %d)", Date().timeIntervalSince(start), victim, target, st.lastExecuted, st.view))
                return
            }
            Thread.sleep(forTimeInterval: 0.02)
        }
    }
}

struct FaultOutcome {
    final class Box: Sendable { let value = Mutex(FaultOutcome()) }
    var killedReplica: Int?
    var killedView: UInt64?
    var catchUpTarget: UInt64?
    var catchUpMs: Double?
}
