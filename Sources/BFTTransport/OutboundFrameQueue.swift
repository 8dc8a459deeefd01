import NIOCore
import BFTFrameCodec

/// A byte budget shared by several queues (all client connections of a transport): bytes are
/// reserved when a frame is queued and released when it has been written to the socket (or
/// discarded), so it bounds what the queues and NIO's buffers hold together.
final class OutboundBudget: @unchecked Sendable {
    let limit: Int
    private let used = LockedBox(0)

    init(limit: Int) { self.limit = max(1, limit) }

    /// Reserves `bytes` if they fit; false (nothing reserved) otherwise.
    func reserve(_ bytes: Int) -> Bool {
        used.withLock { u in
            guard u + bytes <= limit else { return false }
            u += bytes
            return true
        }
    }

    func release(_ bytes: Int) {
        guard bytes > 0 else { return }
        used.withLock { $0 = max(0, $0 - bytes) }
    }

    var bytes: Int { used.withLock { $0 } }
}

/// A bounded queue of encoded frames for one destination, drained onto whichever channel is
/// currently attached.
///
/// Why it exists rather than writing straight to the channel:
/// - **Bounded**: NIO's own outbound buffer grows without limit if you keep writing. We only
///   move frames into the channel while it is writable (below its high watermark), so the
///   memory per destination is this queue's limits plus one watermark.
/// - **Survives reconnects**: a dialed peer keeps one queue across connections, so frames sent
///   while it is unreachable go out once it is back (oldest dropped first when full).
/// - **Coalesced flushes**: `enqueue` from any thread only appends; the first append after a
///   drain schedules a single `drain()` on the channel's event loop, which writes everything
///   queued and flushes once. A burst of sends within one loop turn costs one syscall.
final class OutboundFrameQueue: @unchecked Sendable {
    private struct State {
        var frames = CircularBuffer<ByteBuffer>(initialCapacity: 16)
        var bytes = 0
        var channel: Channel?
        var drainScheduled = false
        /// Set once by `close`; later frames are dropped under this reason.
        var closedReason: TransportDropReason?
        /// Client queues: bytes handed to the channel whose write has not completed.
        var writing = 0
    }

    private let maxFrames: Int
    private let maxBytes: Int
    private let stats: StatsRecorder
    private let state = LockedBox(State())
    /// Set for a client connection's queue: the shared budget of all client queues.
    private let clientBudget: OutboundBudget?
    /// Client queues: called (once) when a frame does not fit the connection's own limit.
    private let onOverflow: (@Sendable () -> Void)?

    /// A peer queue (the default) keeps `maxOutboundQueuedBytesPerConnection` and drops its
    /// oldest frames when full. A client queue (`clientBudget` given) keeps
    /// `maxOutboundQueuedBytesPerClientConnection` counting bytes not yet written to the
    /// socket, reserves every byte from `clientBudget` (dropping the frame as
    /// `client_outbound_budget` when it is spent) and calls `onOverflow` when a frame does not fit
    /// its own limit: that client is not reading, so the caller closes it.
    init(limits: WireLimits, stats: StatsRecorder, clientBudget: OutboundBudget? = nil,
         onOverflow: (@Sendable () -> Void)? = nil) {
        self.maxFrames = max(1, limits.maxOutboundQueuedFramesPerConnection)
        self.maxBytes = max(1, clientBudget == nil ? limits.maxOutboundQueuedBytesPerConnection
                                                   : limits.maxOutboundQueuedBytesPerClientConnection)
        self.stats = stats
        self.clientBudget = clientBudget
        self.onOverflow = onOverflow
    }

    /// Queues one encoded frame. Callable from any thread. Returns `false` if the frame itself
    /// was dropped (queue closed or the frame alone exceeds the byte limit).
    @discardableResult
    func enqueue(_ frame: ByteBuffer) -> Bool {
        let size = frame.readableBytes
        var droppedOld = 0
        var rejection: TransportDropReason?
        var overflow = false
        let scheduleOn: Channel? = self.state.withLock { s in
            if let reason = s.closedReason {
                rejection = reason
                return nil
            }
            if size > self.maxBytes {
                rejection = .outboundTooLarge
                return nil
            }
            if let budget = self.clientBudget {
                if s.frames.count >= self.maxFrames || s.bytes + s.writing + size > self.maxBytes {
                    rejection = .clientOutboundQueueFull
                    overflow = true
                    return nil
                }
                if !budget.reserve(size) {
                    rejection = .clientOutboundBudget
                    return nil
                }
            }
            while !s.frames.isEmpty && (s.frames.count >= self.maxFrames || s.bytes + size > self.maxBytes) {
                let old = s.frames.removeFirst()
                s.bytes -= old.readableBytes
                droppedOld += 1
            }
            s.frames.append(frame)
            s.bytes += size
            if let channel = s.channel, !s.drainScheduled {
                s.drainScheduled = true
                return channel
            }
            return nil
        }
        if droppedOld > 0 {
            self.stats.update {
                $0.droppedOutbound += droppedOld
                $0.droppedByReason[TransportDropReason.outboundQueueFull.label, default: 0] += droppedOld
            }
        }
        if let rejection {
            self.stats.drop(rejection)
        }
        if overflow { self.onOverflow?() }
        if let channel = scheduleOn {
            channel.eventLoop.execute { self.drain() }
        }
        return rejection == nil
    }

    /// Makes `channel` the destination and starts draining. Called on its event loop.
    func attach(_ channel: Channel) {
        let schedule: Bool = self.state.withLock { s in
            s.channel = channel
            if !s.frames.isEmpty && !s.drainScheduled {
                s.drainScheduled = true
                return true
            }
            return false
        }
        if schedule {
            channel.eventLoop.execute { self.drain() }
        }
    }

    /// Forgets `channel` (if still attached); queued frames stay for the next attach.
    func detach(_ channel: Channel) {
        self.state.withLock { s in
            if s.channel === channel {
                s.channel = nil
                s.drainScheduled = false
            }
        }
    }

    /// Discards everything and refuses further frames; the discarded frames are counted under
    /// `reason`.
    func close(countingAs reason: TransportDropReason) {
        let (discarded, freed): (Int, Int) = self.state.withLock { s in
            if s.closedReason != nil { return (0, 0) }
            s.closedReason = reason
            s.channel = nil
            let n = s.frames.count
            let freed = s.bytes
            s.frames.removeAll()
            s.bytes = 0
            return (n, freed)
        }
        self.clientBudget?.release(freed)
        self.stats.drop(reason, count: discarded)
    }

    var count: Int { self.state.withLock { $0.frames.count } }

    /// Writes queued frames while the channel is writable, then flushes once.
    /// Must run on the attached channel's event loop. The lock is not held while writing:
    /// a write can synchronously fire `channelWritabilityChanged`, which calls `drain()` again.
    func drain() {
        var channelWritten: Channel?
        var frames = 0
        var bytes = 0
        while true {
            let next: (Channel, ByteBuffer)? = self.state.withLock { s in
                guard let channel = s.channel, channel.isWritable, !s.frames.isEmpty else {
                    s.drainScheduled = false
                    return nil
                }
                let frame = s.frames.removeFirst()
                s.bytes -= frame.readableBytes
                if self.clientBudget != nil { s.writing += frame.readableBytes }
                return (channel, frame)
            }
            guard let (channel, frame) = next else { break }
            channel.eventLoop.assertInEventLoop()
            frames += 1
            bytes += frame.readableBytes
            if let budget = self.clientBudget {
                // The bytes stay reserved until the socket took them (or the write failed).
                let size = frame.readableBytes
                let promise = channel.eventLoop.makePromise(of: Void.self)
                promise.futureResult.whenComplete { _ in
                    self.state.withLock { $0.writing -= size }
                    budget.release(size)
                }
                channel.write(frame, promise: promise)
            } else {
                channel.write(frame, promise: nil)
            }
            channelWritten = channel
        }
        if let channel = channelWritten {
            channel.flush()
            self.stats.update {
                $0.framesOut += frames
                $0.bytesOut += bytes
                $0.flushes += 1
            }
        }
    }
}
