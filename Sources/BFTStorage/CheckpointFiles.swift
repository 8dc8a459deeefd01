#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Checkpoint states kept as files of their own next to the write-ahead log, one per sequence
/// number, so that a state of hundreds of MiB never has to fit into one log record
/// (`WALOptions.maxRecordBytes`). The log holds a small record that refers to the file by
/// sequence number, length and digest; this type only stores and checks the bytes.
///
/// File `checkpoint-<20-digit seq>.state`, mode 0600:
///
/// ```
/// offset 0   8 bytes             magic "BFTSTATE"
/// offset 8   u32 little-endian   format version (1)
/// offset 12  u32 little-endian   reserved, 0
/// offset 16  u64 little-endian   checkpoint sequence number
/// offset 24  u64 little-endian   L = state length in bytes
/// offset 32  32 bytes            digest of the state (SHA-256, computed by the `hash` given)
/// offset 64  L bytes             the state
/// ```
///
/// Writing is crash-safe: the bytes go to `<name>.tmp`, are fdatasync'ed, renamed to `<name>`
/// and the directory is fsync'ed, so a file under its final name is always complete; a crash
/// leaves at most a `.tmp` file or an unreferenced complete file, both removed by
/// `removeAll(except:)`. Reading checks everything the header and the caller's reference say
/// (sequence, length, digest, file size) and allocates the state once.
///
/// Why the hash is a parameter: this module has no crypto dependency; the node passes
/// SHA-256 from BFTCrypto.
public struct CheckpointFiles: Sendable {
    public typealias Hash = @Sendable (UnsafeRawBufferPointer) -> [UInt8]

    public static let headerBytes = 64
    public static let formatVersion: UInt32 = 1
    public static let digestBytes = 32
    static let magic: [UInt8] = Array("BFTSTATE".utf8)
    static let prefix = "checkpoint-"
    static let suffix = ".state"
    static let temporarySuffix = ".tmp"

    public let directory: String
    /// `false` skips fdatasync/fsync (tests and benchmarks only), like `WALOptions.fsync`.
    public let fsync: Bool
    let hash: Hash

    /// `hash` must return `digestBytes` bytes.
    public init(directory: String, fsync: Bool, hash: @escaping Hash) {
        self.directory = directory
        self.fsync = fsync
        self.hash = hash
    }

    public static func fileName(seq: UInt64) -> String {
        let digits = String(seq)
        return prefix + String(repeating: "0", count: max(0, 20 - digits.count)) + digits + suffix
    }

    /// The sequence number in a `checkpoint-<20 digits>.state` name, else nil.
    static func sequence(ofFileName name: String) -> UInt64? {
        let utf8 = Array(name.utf8)
        let start = prefix.utf8.count
        guard utf8.count == start + 20 + suffix.utf8.count, name.hasPrefix(prefix), name.hasSuffix(suffix) else { return nil }
        let digits = utf8[start..<(start + 20)]
        guard digits.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else { return nil }
        return UInt64(String(decoding: digits, as: UTF8.self))
    }

    public func path(seq: UInt64) -> String { directory + "/" + Self.fileName(seq: seq) }

    /// Writes `state` as the file for `seq` (replacing one that exists) and makes it durable,
    /// name included, before returning its digest. The state is written straight from its
    /// buffer: no copy of it is made.
    public func write(seq: UInt64, state: [UInt8]) throws(CheckpointFileError) -> [UInt8] {
        let finalPath = path(seq: seq)
        let temporaryPath = finalPath + Self.temporarySuffix
        do throws(WALError) {
            let digest = state.withUnsafeBytes { hash($0) }
            precondition(digest.count == Self.digestBytes, "CheckpointFiles: hash must return \(Self.digestBytes) bytes")
            var header: [UInt8] = Self.magic
            header.reserveCapacity(Self.headerBytes)
            Self.appendLE(UInt64(Self.formatVersion), bytes: 4, to: &header)
            Self.appendLE(0, bytes: 4, to: &header)
            Self.appendLE(seq, bytes: 8, to: &header)
            Self.appendLE(UInt64(state.count), bytes: 8, to: &header)
            header += digest

            // A stale .tmp from a crash may have other permissions; start from a new inode.
            try POSIXFile.unlink(temporaryPath)
            let fd = try POSIXFile.open(temporaryPath, O_WRONLY | O_CREAT | O_EXCL, mode: 0o600)
            do throws(WALError) {
                try POSIXFile.pwriteAll(fd, header, at: 0, path: temporaryPath)
                let failure: WALError? = state.withUnsafeBytes { raw in
                    do throws(WALError) {
                        if raw.count > 0 { try POSIXFile.pwriteAll(fd, raw, at: Self.headerBytes, path: temporaryPath) }
                        return nil
                    } catch { return error }
                }
                if let failure { throw failure }
                if fsync { try POSIXFile.dataSync(fd, path: temporaryPath) }
            } catch {
                POSIXFile.close(fd)
                try? POSIXFile.unlink(temporaryPath)
                throw error
            }
            POSIXFile.close(fd)
            try POSIXFile.rename(temporaryPath, finalPath)
            if fsync { try POSIXFile.syncDirectory(directory) }
            return digest
        } catch {
            throw .io(error)
        }
    }

    /// Reads the state of checkpoint `seq`, checking it against the header and against what
    /// the caller's reference says (`expectedLength`, `expectedDigest`). The caller bounds
    /// `expectedLength`; the file must be exactly that long plus the header, so nothing larger
    /// is ever allocated.
    public func read(seq: UInt64, expectedLength: Int, expectedDigest: [UInt8]) throws(CheckpointFileError) -> [UInt8] {
        let name = Self.fileName(seq: seq)
        let filePath = path(seq: seq)
        guard expectedLength >= 0 else { throw .damaged(file: name, reason: "negative expected length") }
        let fd: Int32
        do throws(WALError) {
            fd = try POSIXFile.open(filePath, O_RDONLY)
        } catch {
            if case let .io(_, e) = error, e == ENOENT { throw .missing(file: name) }
            throw .io(error)
        }
        defer { POSIXFile.close(fd) }
        do {
            let size = try POSIXFile.fileSize(fd, path: filePath)
            guard size >= Self.headerBytes else {
                throw CheckpointFileError.damaged(file: name, reason: "\(size) bytes, shorter than the \(Self.headerBytes)-byte header")
            }
            var header = [UInt8](repeating: 0, count: Self.headerBytes)
            let got = try header.withUnsafeMutableBytes { raw in try POSIXFile.preadAll(fd, into: raw, at: 0, path: filePath) }
            guard got == Self.headerBytes else {
                throw CheckpointFileError.damaged(file: name, reason: "header cut short (\(got) bytes)")
            }
            guard Array(header[0..<8]) == Self.magic else { throw CheckpointFileError.damaged(file: name, reason: "bad magic") }
            let version = Self.readLE(header, at: 8, bytes: 4)
            guard version == UInt64(Self.formatVersion) else {
                throw CheckpointFileError.damaged(file: name, reason: "unsupported format version \(version)")
            }
            let fileSeq = Self.readLE(header, at: 16, bytes: 8)
            guard fileSeq == seq else {
                throw CheckpointFileError.damaged(file: name, reason: "header says sequence \(fileSeq), expected \(seq)")
            }
            let length = Self.readLE(header, at: 24, bytes: 8)
            guard length == UInt64(expectedLength) else {
                throw CheckpointFileError.damaged(file: name, reason: "header says \(length) state bytes, the log says \(expectedLength)")
            }
            guard Array(header[32..<64]) == expectedDigest else {
                throw CheckpointFileError.damaged(file: name, reason: "header digest differs from the one in the log")
            }
            guard size == Self.headerBytes + expectedLength else {
                throw CheckpointFileError.damaged(
                    file: name, reason: "file is \(size) bytes, expected \(Self.headerBytes + expectedLength) (truncated or extended)")
            }
            var readFailure: WALError?
            var readCount = 0
            let state = [UInt8](unsafeUninitializedCapacity: expectedLength) { buffer, initialized in
                do throws(WALError) {
                    readCount = try POSIXFile.preadAll(fd, into: UnsafeMutableRawBufferPointer(buffer), at: Self.headerBytes, path: filePath)
                } catch {
                    readFailure = error
                }
                // Bytes never read are zeroed so the array is fully initialized either way.
                if readCount < expectedLength { (buffer.baseAddress! + readCount).initialize(repeating: 0, count: expectedLength - readCount) }
                initialized = expectedLength
            }
            if let readFailure { throw readFailure }
            guard readCount == expectedLength else {
                throw CheckpointFileError.damaged(file: name, reason: "file shrank while being read (\(readCount) of \(expectedLength) state bytes)")
            }
            guard state.withUnsafeBytes({ hash($0) }) == expectedDigest else {
                throw CheckpointFileError.damaged(file: name, reason: "state digest mismatch (the state bytes are damaged)")
            }
            return state
        } catch let error as CheckpointFileError {
            throw error
        } catch let error as WALError {
            throw .io(error)
        } catch {
            throw .damaged(file: name, reason: "\(error)")
        }
    }

    /// Sequence numbers of the checkpoint files present (complete ones, not `.tmp`), ascending.
    public func list() throws(CheckpointFileError) -> [UInt64] {
        do throws(WALError) {
            return try POSIXFile.list(directory).compactMap(Self.sequence(ofFileName:)).sorted()
        } catch {
            throw .io(error)
        }
    }

    /// Deletes every checkpoint file whose sequence is not in `keep`, and every leftover
    /// `.tmp`, then fsyncs the directory. Returns the names removed.
    @discardableResult
    public func removeAll(except keep: Set<UInt64>) throws(CheckpointFileError) -> [String] {
        do throws(WALError) {
            var removed: [String] = []
            for name in try POSIXFile.list(directory).sorted() {
                let isTemporary = name.hasPrefix(Self.prefix) && name.hasSuffix(Self.suffix + Self.temporarySuffix)
                let stale = Self.sequence(ofFileName: name).map { !keep.contains($0) } ?? false
                guard isTemporary || stale else { continue }
                try POSIXFile.unlink(directory + "/" + name)
                removed.append(name)
            }
            if fsync && !removed.isEmpty { try POSIXFile.syncDirectory(directory) }
            return removed
        } catch {
            throw .io(error)
        }
    }

    static func appendLE(_ value: UInt64, bytes: Int, to buffer: inout [UInt8]) {
        for i in 0..<bytes { buffer.append(UInt8(truncatingIfNeeded: value >> (8 * UInt64(i)))) }
    }

    static func readLE(_ buffer: [UInt8], at offset: Int, bytes: Int) -> UInt64 {
        var value: UInt64 = 0
        for i in 0..<bytes { value |= UInt64(buffer[offset + i]) << (8 * UInt64(i)) }
        return value
    }
}

/// Why a checkpoint file could not be written or used. Every `description` is one line.
public enum CheckpointFileError: Error, CustomStringConvertible, Equatable, Sendable {
    /// A system call failed.
    case io(WALError)
    /// The file the log refers to does not exist.
    case missing(file: String)
    /// The file exists but does not hold what the log says it should.
    case damaged(file: String, reason: String)

    public var description: String {
        switch self {
        case let .io(error): return "checkpoint file: \(error)"
        case let .missing(file): return "checkpoint file \(file) is missing"
        case let .damaged(file, reason): return "checkpoint file \(file) is damaged: \(reason)"
        }
    }
}
