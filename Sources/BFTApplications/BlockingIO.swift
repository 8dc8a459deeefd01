#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

import BFTStorage

/// A buffered reader that returns one `\n`-terminated line at a time from a file descriptor.
///
/// Why not `FileHandle.availableData` or `readLine()`: the former returns whatever one read
/// produced (possibly half a line or two lines), the latter only reads standard input. This keeps
/// the bytes after a newline for the next call, bounds the line length (a child printing
/// without newlines must not exhaust memory), and can give up after a timeout using poll(2).
struct LineReader {
    let fd: Int32
    /// Longest accepted line, excluding the newline.
    let maxLineBytes: Int
    private var buffer: [UInt8] = []
    /// Bytes of `buffer` before this index were already searched for a newline.
    private var scanned = 0

    enum Failure: Error, Equatable, CustomStringConvertible {
        case endOfFile
        case lineTooLong(Int)
        case timedOut(milliseconds: Int)
        case io(BlockingIOError)

        var description: String {
            switch self {
            case .endOfFile: return "end of file"
            case .lineTooLong(let max): return "line longer than \(max) bytes"
            case .timedOut(let ms): return "no complete line within \(ms) ms"
            case .io(let e): return e.description
            }
        }
    }

    init(fd: Int32, maxLineBytes: Int) {
        self.fd = fd
        self.maxLineBytes = maxLineBytes
    }

    /// The next line without its `\n` (a trailing `\r` is kept; callers decide). Throws
    /// `.endOfFile` if the stream ends first — a partial last line counts as no line, since a
    /// protocol peer that dies mid-line has not answered. `timeoutMilliseconds` bounds the time
    /// for the whole line, measured from this call (nil: wait forever): a peer that trickles
    /// one byte at a time cannot stretch it, since every poll waits only for what is left.
    mutating func readLine(timeoutMilliseconds: Int? = nil) throws(Failure) -> [UInt8] {
        let deadline = timeoutMilliseconds.map { ContinuousClock.now.advanced(by: .milliseconds($0)) }
        while true {
            if let nl = buffer[scanned...].firstIndex(of: UInt8(ascii: "\n")) {
                let line = Array(buffer[..<nl])
                buffer.removeSubrange(...nl)
                scanned = 0
                return line
            }
            scanned = buffer.count
            if buffer.count > maxLineBytes { throw .lineTooLong(maxLineBytes) }
            if let timeout = timeoutMilliseconds, let deadline {
                let left = ContinuousClock.now.duration(to: deadline)
                let leftMs = max(0, Int(left.components.seconds) * 1000 + Int(left.components.attoseconds / 1_000_000_000_000_000))
                if left <= .zero { throw .timedOut(milliseconds: timeout) }
                var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                let ready = poll(&pfd, 1, Int32(clamping: max(1, leftMs)))
                if ready < 0 {
                    if errno == EINTR { continue }
                    throw .io(BlockingIOError("poll"))
                }
                if ready == 0 { throw .timedOut(milliseconds: timeout) }
            }
            var chunk = [UInt8](repeating: 0, count: 64 * 1024)
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw .io(BlockingIOError("read"))
            }
            if n == 0 { throw .endOfFile }
            buffer.append(contentsOf: chunk[..<n])
        }
    }
}
