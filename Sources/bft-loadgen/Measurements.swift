import Foundation
import Histogram
import Synchronization

/// Shared measurement state; touched from the client loop and read by the progress printer.
final class Measurements: @unchecked Sendable {
    struct State {
        var histogram = Histogram<UInt64>(highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: .three)
        var interval = Histogram<UInt64>(highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: .three)
        var completed = 0
        var intervalCompleted = 0
        var errors = 0
        var intervalErrors = 0
        var measuring = false
        /// Set by the fault plan: completions in a view above `killedView` end the failover.
        var killedView: UInt64?
        var killedAt: UInt64?
        var firstLaterViewReplyAt: UInt64?
    }
    let state = Mutex(State())

    func record(latencyMicros: UInt64, ok: Bool, view: UInt64? = nil) {
        state.withLock { s in
            if let v = view, let kv = s.killedView, v > kv, s.firstLaterViewReplyAt == nil {
                s.firstLaterViewReplyAt = DispatchTime.now().uptimeNanoseconds
            }
            guard s.measuring else { return }
            if ok {
                _ = s.histogram.record(max(latencyMicros, 1))
                _ = s.interval.record(max(latencyMicros, 1))
                s.completed += 1
                s.intervalCompleted += 1
            } else {
                s.errors += 1
                s.intervalErrors += 1
            }
        }
    }
}
