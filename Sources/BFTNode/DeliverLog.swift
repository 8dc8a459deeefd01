import BFTCore
import BFTConfig
import BFTStorage

/// Appends one line per delivered request, in delivery order, in the format of
/// `DeliverLogEntry` (which also reads it back).
///
/// Not thread-safe: the runtime touches it only from its core thread. Lines are buffered by
/// `append` and written with one write(2) per `flush()`, so a crash can lose only the lines
/// appended since the last flush, never produce half a line unless the disk fills.
public final class DeliverLog {
    public let path: String
    private var fd: Int32
    private var buffer: [UInt8] = []
    /// Bytes at which `append` flushes by itself, so a long burst cannot grow the buffer unbounded.
    public let autoFlushBytes: Int
    /// The last write error, if any (also thrown by `flush`, which stops the node).
    public private(set) var lastError: String?

    /// Opens `path` in append mode, creating it (mode 0600) if missing.
    public init(path: String, autoFlushBytes: Int = 1 << 20) throws(DeliverLogError) {
        self.path = path
        self.autoFlushBytes = autoFlushBytes
        do throws(BlockingIOError) {
            fd = try BlockingIO.openForAppend(path)
        } catch {
            throw .cannotOpen(path: path, reason: error.description)
        }
    }

    deinit {
        try? flush()
        BlockingIO.closeQuietly(fd)
    }

    /// Buffers one line per delivery, in the given order.
    public func append(_ deliveries: [Delivery]) throws(DeliverLogError) {
        for d in deliveries { buffer.append(contentsOf: DeliverLogEntry(d).line.utf8) }
        if buffer.count >= autoFlushBytes { try flush() }
    }

    /// Writes the buffered lines. On failure the lines are dropped (and `lastError` set) rather
    /// than kept — retrying later could interleave a partial line with newer ones — and the
    /// error is thrown: the node stops rather than go on with a deliver log that has a hole.
    public func flush() throws(DeliverLogError) {
        guard !buffer.isEmpty, fd >= 0 else { return }
        defer { buffer.removeAll(keepingCapacity: true) }
        do {
            try BlockingIO.writeAll(fd, buffer)
        } catch {
            lastError = "\(error)"
            throw .cannotWrite(path: path, reason: "\(error)")
        }
    }
}
