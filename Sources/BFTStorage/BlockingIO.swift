#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An `errno` failure of a blocking system call, with the call's name for the message.
public struct BlockingIOError: Error, Equatable, CustomStringConvertible {
    public let call: String
    public let code: Int32

    public init(_ call: String, _ code: Int32 = errno) { self.call = call; self.code = code }

    public var description: String { "\(call): \(String(cString: strerror(code)))" }
}

/// Small blocking helpers over raw file descriptors, shared by the deliver log and the
/// applications. Why raw descriptors instead of `FileHandle`: `FileHandle`'s non-throwing
/// write/read APIs trap on EPIPE or EIO, which would crash the replica when a child process
/// dies or a disk fills; here every failure is a thrown value the caller can report.
public enum BlockingIO {
    /// Writes all of `bytes`, retrying on partial writes and EINTR.
    public static func writeAll(_ fd: Int32, _ bytes: [UInt8]) throws(BlockingIOError) {
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
    public static func openForAppend(_ path: String, mode: mode_t = 0o600) throws(BlockingIOError) -> Int32 {
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, mode)
        guard fd >= 0 else { throw BlockingIOError("open \(path)") }
        return fd
    }

    public static func closeQuietly(_ fd: Int32) {
        if fd >= 0 { _ = close(fd) }
    }

    /// Ignores SIGPIPE for the whole process, once. Why: writing to a pipe whose reader has
    /// exited raises SIGPIPE, whose default action kills the process; with it ignored the write
    /// fails with EPIPE instead, which `ExecApplication` reports as a failed application.
    public static let ignoreSIGPIPE: Void = {
        _ = signal(SIGPIPE, SIG_IGN)
    }()
}
