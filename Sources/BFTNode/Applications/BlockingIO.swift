#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An `errno` failure of a blocking system call, with the call's name for the message.
struct BlockingIOError: Error, Equatable, CustomStringConvertible {
    let call: String
    let code: Int32

    init(_ call: String, _ code: Int32 = errno) { self.call = call; self.code = code }

    var description: String { "\(call): \(String(cString: strerror(code)))" }
}

/// Small blocking helpers over raw file descriptors, shared by the deliver log and the
/// applications. Why raw descriptors instead of `FileHandle`: `FileHandle`'s non-throwing
/// write/read APIs trap on EPIPE or EIO, which would crash the replica when a child process
/// dies or a disk fills; here every failure is a thrown value the caller can report.
enum BlockingIO {
    /// Writes all of `bytes`, retrying on partial writes and EINTR.
    static func writeAll(_ fd: Int32, _ bytes: [UInt8]) throws(BlockingIOError) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { buf in
                write(fd, buf.baseAddress! + offset, buf.count - offset)
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw BlockingIOError("write")
            }
            offset += n
        }
    }

    /// Opens `path` for appending, creating it with `mode` if missing.
    /// Created 0600 when missing (deliver log, `app.log`: replica data, private to its user).
    static func openForAppend(_ path: String, mode: mode_t = 0o600) throws(BlockingIOError) -> Int32 {
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, mode)
        guard fd >= 0 else { throw BlockingIOError("open \(path)") }
        return fd
    }

    static func closeQuietly(_ fd: Int32) {
        if fd >= 0 { _ = close(fd) }
    }

    /// Ignores SIGPIPE for the whole process, once. Why: writing to a pipe whose reader has
    /// exited raises SIGPIPE, whose default action kills the process; with it ignored the write
    /// fails with EPIPE instead, which `ExecApplication` reports as a failed application.
    static let ignoreSIGPIPE: Void = {
        _ = signal(SIGPIPE, SIG_IGN)
    }()
}

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
