#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Tuning knobs for `WriteAheadLog`.
public struct WALOptions: Sendable {
    /// Start a new segment once the active one would grow past this many bytes. Segments are
    /// the unit of deletion after a checkpoint, so this bounds how much dead log lingers; a
    /// single record bigger than the limit still goes into a segment of its own.
    public var segmentBytesLimit = 64 * 1024 * 1024
    /// Largest payload `append` accepts. Replay treats a length field above this as damage,
    /// which is what stops a flipped high bit from being read as "the next 3 GiB are a record".
    /// Lowering it between runs makes previously valid larger records look corrupt.
    public var maxRecordBytes = 64 * 1024 * 1024
    /// `false` skips every fdatasync/fsync (files and directory). Only for benchmarks and
    /// tests: without it nothing is durable across a power loss.
    public var fsync = true

    public init(segmentBytesLimit: Int = 64 * 1024 * 1024, maxRecordBytes: Int = 64 * 1024 * 1024, fsync: Bool = true) {
        self.segmentBytesLimit = segmentBytesLimit
        self.maxRecordBytes = maxRecordBytes
        self.fsync = fsync
    }
}

/// Typed failures of the log. Every `description` is a single line, fit for a log message.
public enum WALError: Error, CustomStringConvertible, Equatable, Sendable {
    /// A system call failed; `operation` names the call and the file.
    case io(String, errno: Int32)
    /// `append`/`compact` got a payload larger than `WALOptions.maxRecordBytes` (byte count).
    case recordTooLarge(Int)
    /// The log was closed.
    case closed
    /// Another open `WriteAheadLog` (this or another process) holds the directory's lock.
    case locked(String)
    /// The API was used out of order (e.g. `append` before `replay`).
    case invalidState(String)
    /// An earlier write or fsync failed. After a failed fsync Linux may have dropped the dirty
    /// pages and a retried fsync can report success without the data ever reaching the disk,
    /// so the only safe continuation is to reopen the log (restart) and replay.
    case unusable(String)

    public var description: String {
        switch self {
        case let .io(operation, errno):
            let message = String(cString: strerror(errno))
            return "WAL I/O error: \(operation): \(message) (errno \(errno))"
        case let .recordTooLarge(bytes):
            return "WAL record of \(bytes) bytes exceeds the configured maxRecordBytes"
        case .closed:
            return "WAL is closed"
        case let .locked(directory):
            return "WAL directory \(directory) is in use by another open log"
        case let .invalidState(why):
            return "WAL used out of order: \(why)"
        case let .unusable(why):
            return "WAL unusable after an earlier I/O failure (reopen and replay): \(why)"
        }
    }
}

/// Why a record failed to parse during replay.
public enum WALBadRecord: Sendable, Equatable, CustomStringConvertible {
    /// Fewer than 8 bytes left for the header.
    case truncatedHeader(available: Int)
    /// The length field exceeds `maxRecordBytes`.
    case lengthTooLarge(UInt32)
    /// The length field points past the end of the segment.
    case pastEndOfSegment(length: UInt32, available: Int)
    /// The stored CRC32C does not match the length field and payload.
    case checksumMismatch(stored: UInt32, computed: UInt32)

    public var description: String {
        switch self {
        case let .truncatedHeader(available):
            return "partial header (\(available) of 8 bytes)"
        case let .lengthTooLarge(length):
            return "impossible length \(length)"
        case let .pastEndOfSegment(length, available):
            return "length \(length) runs past the end of the segment (\(available) payload bytes present)"
        case let .checksumMismatch(stored, computed):
            return "CRC32C mismatch (stored 0x\(String(stored, radix: 16)), computed 0x\(String(computed, radix: 16)))"
        }
    }
}

/// What replay found.
public struct WALReplay: Sendable {
    /// A damaged final record of the last segment, removed with ftruncate. Expected after a
    /// crash during a write: those records were never acknowledged as durable.
    public struct TornTail: Sendable, Equatable, CustomStringConvertible {
        /// Segment file name (not the full path).
        public var segment: String
        /// Byte offset of the damaged record's header; the segment now ends here.
        public var offset: Int
        /// How many bytes were cut off.
        public var bytesRemoved: Int
        public var reason: WALBadRecord

        public var description: String {
            "WAL torn tail in \(segment) at offset \(offset): \(reason); truncated \(bytesRemoved) bytes"
        }
    }

    /// A damaged record with intact data after it: real corruption of durable data.
    public struct Corruption: Sendable, Equatable, CustomStringConvertible {
        /// Segment file name (not the full path).
        public var segment: String
        /// Byte offset of the damaged record's header; the segment now ends here.
        public var offset: Int
        public var reason: WALBadRecord
        /// Files (names in the WAL directory, ending in `.corrupt`) now holding the bytes from
        /// `offset` on and every later segment, kept for forensics.
        public var quarantined: [String]
        /// Total bytes moved into `quarantined`.
        public var bytesQuarantined: Int

        public var description: String {
            "WAL corruption in \(segment) at offset \(offset): \(reason); \(bytesQuarantined) bytes moved aside to \(quarantined.joined(separator: ", ")); later records must be recovered from peers"
        }
    }

    /// Where a record was read from, so a caller that cannot use a record can name it.
    public struct Origin: Sendable, Equatable, CustomStringConvertible {
        /// Segment file name (not the full path).
        public var segment: String
        /// Byte offset of the record's header in the segment.
        public var offset: Int

        public init(segment: String, offset: Int) {
            self.segment = segment
            self.offset = offset
        }

        public var description: String { "\(segment) offset \(offset)" }
    }

    /// Every intact record, in append order, up to the first damaged one.
    public var records: [[UInt8]] = []
    /// `origins[i]` is where `records[i]` was read from.
    public var origins: [Origin] = []
    public var tornTail: TornTail?
    public var corruption: Corruption?
    /// One line per repair replay made (torn tail, corruption, finished or abandoned
    /// compaction), for the caller to log.
    public var notes: [String] = []

    public init(records: [[UInt8]] = [], tornTail: TornTail? = nil, corruption: Corruption? = nil, notes: [String] = [],
                origins: [Origin] = []) {
        self.records = records
        self.origins = origins
        self.tornTail = tornTail
        self.corruption = corruption
        self.notes = notes
    }
}

/// Counters since the log was opened.
public struct WALStats: Sendable, Equatable {
    /// Records accepted by `append` (plus compaction records).
    public var appends = 0
    /// `sync` calls that had something to make durable (no-op calls are not counted).
    public var syncs = 0
    /// Bytes written to segment files, headers included.
    public var bytesWritten = 0
    /// Wall time of the last counted sync (write of the buffer + fdatasync), nanoseconds.
    public var lastSyncNanos: UInt64 = 0
    /// Sum of all counted syncs' wall time, nanoseconds.
    public var totalSyncNanos: UInt64 = 0
    /// Segment files currently in the log.
    public var segments = 0

    public init() {}
}
