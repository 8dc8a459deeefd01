#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Thin wrappers over the POSIX calls the log needs. Why not FileHandle/FileManager: the log
/// must control exactly when data reaches the disk (fdatasync, directory fsync), retry on
/// EINTR, loop on short writes and report the errno as a typed `WALError`.
enum POSIXFile {
    /// Files are created 0600: the log holds the replica's protocol state and client requests,
    /// which other local users have no reason to read.
    static func open(_ path: String, _ flags: Int32, mode: mode_t = 0o600) throws(WALError) -> Int32 {
        while true {
            let fd = path.withCString { cPath in
                #if canImport(Glibc)
                Glibc.open(cPath, flags | O_CLOEXEC, mode)
                #else
                Darwin.open(cPath, flags | O_CLOEXEC, mode)
                #endif
            }
            if fd >= 0 { return fd }
            let e = errno
            if e == EINTR { continue }
            throw .io("open \(path)", errno: e)
        }
    }

    /// Closes without retrying on EINTR (on Linux the descriptor is gone either way, and
    /// retrying could close a descriptor another thread just received).
    static func close(_ fd: Int32) {
        #if canImport(Glibc)
        _ = Glibc.close(fd)
        #else
        _ = Darwin.close(fd)
        #endif
    }

    /// Writes all of `buffer` at `offset`, looping on short writes and EINTR.
    static func pwriteAll(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, at offset: Int, path: String) throws(WALError) {
        var done = 0
        while done < buffer.count {
            let n = pwrite(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done))
            if n > 0 {
                done += n
                continue
            }
            let e = n < 0 ? errno : EIO
            if n < 0 && e == EINTR { continue }
            throw .io("write \(path)", errno: e)
        }
    }

    static func pwriteAll(_ fd: Int32, _ bytes: [UInt8], at offset: Int, path: String) throws(WALError) {
        let result: WALError? = bytes.withUnsafeBytes { raw in
            do throws(WALError) {
                try pwriteAll(fd, raw, at: offset, path: path)
                return nil
            } catch {
                return error
            }
        }
        if let result { throw result }
    }

    /// Fills `buffer` from `offset` on, looping on short reads and EINTR; returns how many
    /// bytes were read (fewer than `buffer.count` only at the end of the file).
    static func preadAll(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: Int, path: String) throws(WALError) -> Int {
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done))
            if n > 0 { done += n; continue }
            if n == 0 { break }
            let e = errno
            if e == EINTR { continue }
            throw .io("read \(path)", errno: e)
        }
        return done
    }

    /// Reads a whole file into memory. Segments are bounded by `segmentBytesLimit` (plus one
    /// record), so this is at most one segment's worth at a time.
    static func readAll(_ path: String) throws(WALError) -> [UInt8] {
        let fd = try open(path, O_RDONLY)
        defer { close(fd) }
        var st = stat()
        if fstat(fd, &st) != 0 { throw .io("fstat \(path)", errno: errno) }
        let size = Int(st.st_size)
        var bytes = [UInt8](repeating: 0, count: size)
        var done = 0
        var failure: Int32 = 0
        bytes.withUnsafeMutableBytes { raw in
            while done < size {
                let n = pread(fd, raw.baseAddress! + done, size - done, off_t(done))
                if n > 0 { done += n; continue }
                if n == 0 { break }  // the file shrank under us; keep what we have
                if errno == EINTR { continue }
                failure = errno
                break
            }
        }
        if failure != 0 { throw .io("read \(path)", errno: failure) }
        if done < size { bytes.removeSubrange(done...) }
        return bytes
    }

    static func fileSize(_ fd: Int32, path: String) throws(WALError) -> Int {
        var st = stat()
        if fstat(fd, &st) != 0 { throw .io("fstat \(path)", errno: errno) }
        return Int(st.st_size)
    }

    /// fdatasync: flushes the data and the metadata needed to read it back (the file size),
    /// skipping timestamps, which is all a log needs and saves a journal write.
    static func dataSync(_ fd: Int32, path: String) throws(WALError) {
        while true {
            #if os(Linux)
            let rc = fdatasync(fd)
            #else
            let rc = fsync(fd)
            #endif
            if rc == 0 { return }
            let e = errno
            if e == EINTR { continue }
            throw .io("fdatasync \(path)", errno: e)
        }
    }

    /// Makes creations, renames and deletions inside `directory` durable. Without it a new
    /// segment can vanish after a power loss even though its data was fdatasync'ed.
    static func syncDirectory(_ directory: String) throws(WALError) {
        let fd = try open(directory, O_RDONLY | O_DIRECTORY)
        defer { close(fd) }
        while true {
            if fsync(fd) == 0 { return }
            let e = errno
            if e == EINTR { continue }
            // Some filesystems refuse fsync on directories; nothing more can be done there.
            if e == EINVAL || e == EBADF { return }
            throw .io("fsync directory \(directory)", errno: e)
        }
    }

    static func truncate(_ fd: Int32, to length: Int, path: String) throws(WALError) {
        while ftruncate(fd, off_t(length)) != 0 {
            let e = errno
            if e == EINTR { continue }
            throw .io("ftruncate \(path)", errno: e)
        }
    }

    static func unlink(_ path: String) throws(WALError) {
        #if canImport(Glibc)
        let rc = Glibc.unlink(path)
        #else
        let rc = Darwin.unlink(path)
        #endif
        if rc != 0 && errno != ENOENT { throw .io("unlink \(path)", errno: errno) }
    }

    static func rename(_ from: String, _ to: String) throws(WALError) {
        #if canImport(Glibc)
        let rc = Glibc.rename(from, to)
        #else
        let rc = Darwin.rename(from, to)
        #endif
        if rc != 0 { throw .io("rename \(from) to \(to)", errno: errno) }
    }

    static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    /// `mkdir -p`; directories it creates are 0700 (private to the replica's user).
    static func makeDirectories(_ path: String) throws(WALError) {
        var prefix = path.hasPrefix("/") ? "/" : ""
        for component in path.split(separator: "/", omittingEmptySubsequences: true) {
            prefix += component
            if mkdir(prefix, 0o700) != 0 {
                let e = errno
                if e != EEXIST { throw .io("mkdir \(prefix)", errno: e) }
            }
            prefix += "/"
        }
        var st = stat()
        if stat(path, &st) != 0 { throw .io("stat \(path)", errno: errno) }
        if (st.st_mode & S_IFMT) != S_IFDIR { throw .io("mkdir \(path)", errno: ENOTDIR) }
    }

    /// Names (not paths) of the entries of `directory`.
    static func list(_ directory: String) throws(WALError) -> [String] {
        guard let dir = opendir(directory) else { throw .io("opendir \(directory)", errno: errno) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: &entry.pointee.d_name) {
                String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self))
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Monotonic nanoseconds, for sync latency.
    static func nowNanos() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}
