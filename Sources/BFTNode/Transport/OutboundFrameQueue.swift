import NIOCore

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
        var closedReason: String?
    }

    private let maxFrames: Int
    private let maxBytes: Int
    private let stats: StatsRecorder
    private let state = LockedBox(State())

    init(limits: WireLimits, stats: StatsRecorder) {
        self.maxFrames = max(1, limits.maxOutboundQueuedFramesPerConnection)
        self.maxBytes = max(1, limits.maxOutboundQueuedBytesPerConnection)
        self.stats = stats
    }

    /// Queues one encoded frame. Callable from any thread. Returns `false` if the frame itself
    /// was dropped (queue closed or the frame alone exceeds the byte limit).
    @discardableResult
    func enqueue(_ frame: ByteBuffer) -> Bool {
        let size = frame.readableBytes
        var droppedOld = 0
        var rejection: String?
        let scheduleOn: Channel? = self.state.withLock { s in
            if let reason = s.closedReason {
                rejection = reason
                return nil
            }
            if size > self.maxBytes {
                rejection = "outboundTooLarge"
                return nil
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
                $0.droppedByReason["outboundQueueFull", default: 0] += droppedOld
            }
        }
        if let rejection {
            self.stats.drop(rejection)
        }
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
    func close(countingAs reason: String) {
        let discarded: Int = self.state.withLock { s in
            if s.closedReason != nil { return 0 }
            s.closedReason = reason
            s.channel = nil
            let n = s.frames.count
            s.frames.removeAll()
            s.bytes = 0
            return n
        }
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
                return (channel, frame)
            }
            guard let (channel, frame) = next else { break }
            channel.eventLoop.assertInEventLoop()
            frames += 1
            bytes += frame.readableBytes
            channel.write(frame, promise: nil)
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
