import BFTFrameCodec
/// Accounting for frames delivered to the consumer but not yet released.
///
/// Why: the consumer (the replica's protocol loop) may be slower than the network. Rather
/// than queueing without bound, each delivered frame is counted until the consumer releases
/// it; above the limits the affected connections stop reading (TCP backpressure then slows
/// the sender). Two limits:
/// - node-wide `globalLimit` (`maxInboundQueuedFrames`): above it *all* connections hold
///   until the count falls to half;
/// - per connection `perConnectionLimit` (`globalLimit / 4`): a single flooder holds alone
///   (until it falls to half of its own limit) and cannot starve the others.
///
/// Thread-safe: admission happens on event loops, release on any thread.
final class InboundFlowControl: @unchecked Sendable {
    private struct Connection {
        var unreleased = 0
        var selfPaused = false
        /// A frame was refused; the connection must be woken when allowed again.
        var waiting = false
        let wake: @Sendable () -> Void
    }

    private struct State {
        var total = 0
        var globalPaused = false
        var connections: [ConnectionID: Connection] = [:]
    }

    let globalLimit: Int
    let perConnectionLimit: Int
    private let stats: StatsRecorder
    private let state = LockedBox(State())

    init(maxInboundQueuedFrames: Int, stats: StatsRecorder) {
        self.globalLimit = max(1, maxInboundQueuedFrames)
        self.perConnectionLimit = max(1, maxInboundQueuedFrames / 4)
        self.stats = stats
    }

    /// `wake` is called (from any thread, outside the lock) when a held connection may read
    /// again; it must hop to the connection's event loop itself.
    func register(_ id: ConnectionID, wake: @escaping @Sendable () -> Void) {
        self.state.withLock { $0.connections[id] = Connection(wake: wake) }
    }

    /// Forgets the connection. Its unreleased frames still count towards the global total
    /// until the consumer releases them.
    func unregister(_ id: ConnectionID) {
        _ = self.state.withLock { $0.connections.removeValue(forKey: id) }
    }

    /// Counts one frame as delivered if the limits allow; otherwise marks the connection as
    /// waiting and returns `false`.
    func tryAdmit(_ id: ConnectionID) -> Bool {
        let (admitted, newlyPaused): (Bool, Bool) = self.state.withLock { s in
            guard var c = s.connections[id] else { return (false, false) }
            if !s.globalPaused && s.total >= self.globalLimit { s.globalPaused = true }
            if !c.selfPaused && c.unreleased >= self.perConnectionLimit { c.selfPaused = true }
            if s.globalPaused || c.selfPaused {
                let newly = !c.waiting
                c.waiting = true
                s.connections[id] = c
                return (false, newly)
            }
            s.total += 1
            c.unreleased += 1
            s.connections[id] = c
            return (true, false)
        }
        if newlyPaused { self.stats.update { $0.readPauses += 1 } }
        return admitted
    }

    /// The consumer is done with `count` frames that arrived on `id`.
    func release(_ id: ConnectionID, count: Int = 1) {
        guard count > 0 else { return }
        let wakes: [@Sendable () -> Void] = self.state.withLock { s in
            var wakes: [@Sendable () -> Void] = []
            // Clamp: a consumer bug (double release) must not drive the counters negative and
            // so disable backpressure for good.
            s.total = max(0, s.total - count)
            var globalResumed = false
            if s.globalPaused && s.total <= self.globalLimit / 2 {
                s.globalPaused = false
                globalResumed = true
            }
            if var c = s.connections[id] {
                c.unreleased = max(0, c.unreleased - count)
                if c.selfPaused && c.unreleased <= self.perConnectionLimit / 2 { c.selfPaused = false }
                if !s.globalPaused && !c.selfPaused && c.waiting {
                    c.waiting = false
                    wakes.append(c.wake)
                }
                s.connections[id] = c
            }
            if globalResumed {
                // Invariant: a waiting connection that is not self-paused waits only for the
                // global pause, so this scan is needed only when that pause ends.
                for key in Array(s.connections.keys) {
                    guard var c = s.connections[key], c.waiting, !c.selfPaused else { continue }
                    c.waiting = false
                    s.connections[key] = c
                    wakes.append(c.wake)
                }
            }
            return wakes
        }
        for wake in wakes { wake() }
    }

    var unreleased: Int { self.state.withLock { $0.total } }
}
