import BFTCore
import BFTCrypto
import BFTStorage
import Foundation
import Logging
import NIOCore
import BFTApplications
import BFTConfig
import BFTFrameCodec
import BFTTransport

/// The replica's durable memory: its `PersistRecord`s in a write-ahead log under `DATA/wal`.
///
/// Ordering contract (from `ReplicaOutput`): a step's records are appended and synced with one
/// fdatasync before any of the step's messages leave, so the replica never sends something it
/// could forget in a crash. A checkpoint record starts a new segment and lets older ones go: the
/// core re-emits everything still needed above a checkpoint right after it.
///
/// Checkpoints: the state (application snapshot and client table) can be far larger than one
/// log record may be, so it goes to a file of its own, `checkpoint-<seq>.state` in the log's
/// directory (see `CheckpointFiles`), and the log is compacted with a small reference record
/// instead (`CheckpointReference`). Order, each step durable before the next:
/// 1. the state file (written under a temporary name, fdatasync'ed, renamed, directory fsync'ed);
/// 2. the compaction, whose first record refers to that file by sequence, length and SHA-256;
/// 3. deletion of every other checkpoint file.
/// A crash after 1 leaves an unreferenced file (the log still starts at the previous checkpoint,
/// whose file is still there); a crash after 2 leaves old files. `replay` deletes both, so the
/// log never refers to a missing file.
///
/// Recovery never discards silently: a record with a good checksum that does not decode, or a
/// checkpoint file that is missing or damaged, makes `replay` throw `DurabilityError` and the
/// replica stops with that one-line reason instead of starting from less than it promised.
final class Durability {
    let wal: WriteAheadLog
    let checkpoints: CheckpointFiles
    let logger: Logger

    /// `maxRecordBytes` bounds every log record (checkpoint states are not log records).
    init(directory: String, fsync: Bool, maxRecordBytes: Int = WALOptions().maxRecordBytes, logger: Logger) throws {
        self.logger = logger
        wal = try WriteAheadLog(directory: directory, options: WALOptions(maxRecordBytes: maxRecordBytes, fsync: fsync))
        checkpoints = CheckpointFiles(directory: directory, fsync: fsync) { SHA256.hash($0).bytes }
    }

    /// Replays the log into records for `Replica.recover(from:)`, decoding with `limits` (the
    /// replica's configured ones), resolving checkpoint references into full `.checkpoint`
    /// records, and saying clearly what was lost. Throws rather than return a shorter log when a
    /// record it must trust cannot be used.
    func replay(limits: MessageLimits) throws(DurabilityError) -> [PersistRecord] {
        let replay: WALReplay
        do {
            replay = try wal.replay()
        } catch {
            throw .log(error)
        }
        if let torn = replay.tornTail {
            logger.notice("write-ahead log: torn tail truncated (a crash during a write)", metadata: ["detail": "\(torn)"])
        }
        if let corruption = replay.corruption {
            logger.error("write-ahead log corrupt: records after the damage are not trusted and will be recovered from peers",
                         metadata: ["detail": "\(corruption)"])
        }
        for note in replay.notes { logger.info("write-ahead log: \(note)") }
        var records: [PersistRecord] = []
        records.reserveCapacity(replay.records.count)
        var referenced: Set<UInt64> = []
        for (i, bytes) in replay.records.enumerated() {
            let origin = i < replay.origins.count ? replay.origins[i].description : "unknown position"
            if bytes.first == CheckpointReference.tag {
                let reference: CheckpointReference
                do {
                    reference = try CheckpointReference.decode(bytes, limits: limits)
                } catch {
                    throw .undecodableRecord(index: i, origin: origin, reason: "checkpoint reference: \(error)")
                }
                guard reference.stateLength <= UInt64(limits.maxStateBytes) else {
                    throw .checkpointTooLarge(seq: reference.seq, bytes: reference.stateLength, limit: limits.maxStateBytes)
                }
                let state: [UInt8]
                do {
                    state = try checkpoints.read(seq: reference.seq, expectedLength: Int(reference.stateLength),
                                                 expectedDigest: reference.sha256)
                } catch {
                    throw .checkpointFile(index: i, seq: reference.seq, error)
                }
                referenced.insert(reference.seq)
                records.append(.checkpoint(seq: reference.seq, digest: reference.digest, proof: reference.proof, state: state))
            } else {
                do {
                    records.append(try PersistRecord.decode(bytes, limits: limits))
                } catch {
                    // The checksum was good, so this is not a torn write: a bug or a record from an
                    // incompatible version. Dropping it and everything after would forget durable
                    // promises, so stop instead.
                    throw .undecodableRecord(index: i, origin: origin, reason: "\(error)")
                }
            }
        }
        if replay.corruption == nil {
            // Files no record refers to: a checkpoint whose compaction never happened, or ones a
            // later compaction superseded before the crash let them be deleted.
            do {
                let removed = try checkpoints.removeAll(except: referenced)
                if !removed.isEmpty {
                    logger.notice("write-ahead log: removed unreferenced checkpoint files", metadata: ["files": "\(removed.joined(separator: ", "))"])
                }
            } catch {
                logger.warning("write-ahead log: cannot remove unreferenced checkpoint files", metadata: ["error": "\(error)"])
            }
        } else {
            logger.notice("write-ahead log: checkpoint files are kept because the log was damaged")
        }
        return records
    }

    /// Makes a step's records durable (one sync for all of them; a checkpoint adds its own).
    func persist(_ records: [PersistRecord]) throws {
        guard !records.isEmpty else { return }
        var i = 0
        while i < records.count {
            if case let .checkpoint(seq, digest, proof, state) = records[i] {
                // The records the core writes after a checkpoint (the view, the NEW-VIEW, what it
                // signed and certified above the checkpoint) go into the compaction itself: a
                // crash must not leave the checkpoint without them, the older log already gone.
                var j = i + 1
                while j < records.count, !records[j].compactsLog { j += 1 }
                try persistCheckpoint(seq: seq, digest: digest, proof: proof, state: state,
                                      following: records[(i + 1)..<j].map { $0.encoded() })
                i = j
            } else {
                try wal.append(records[i].encoded())
                i += 1
            }
        }
        try wal.sync()
    }

    /// Writes the state file, compacts the log with a reference to it and `following`, then
    /// drops older files (the order is what makes a crash anywhere recoverable; see the type's
    /// documentation).
    private func persistCheckpoint(seq: SeqNum, digest: Digest, proof: [Checkpoint], state: [UInt8], following: [[UInt8]] = []) throws {
        let sha256 = try checkpoints.write(seq: seq, state: state)
        let reference = CheckpointReference(
            seq: seq, digest: digest, proof: proof, stateLength: UInt64(state.count), sha256: sha256)
        try wal.compact(startingWith: [reference.encoded()] + following)
        do {
            try checkpoints.removeAll(except: [seq])
        } catch {
            // Not a durability problem: the log no longer refers to them, and replay retries.
            logger.warning("write-ahead log: cannot remove old checkpoint files", metadata: ["error": "\(error)"])
        }
    }

    /// Releases the log and its directory lock (tests reopen the same directory).
    func close() {
        wal.close()
    }
}

/// Durability's own log record for a checkpoint whose state lives in a `CheckpointFiles` file:
///
/// ```
/// u8        tag 0xC5 (PersistRecord's tags are 1...8, so old and new records can share a log)
/// u8        version (1)
/// u64 LE    state length in bytes
/// 32 bytes  SHA-256 of the state
/// rest      PersistRecord.checkpoint(seq:digest:proof:state: []).encoded(), the core's encoding
/// ```
struct CheckpointReference: Equatable {
    static let tag: UInt8 = 0xC5
    static let version: UInt8 = 1
    static let fixedBytes = 2 + 8 + 32

    var seq: SeqNum
    var digest: Digest
    var proof: [Checkpoint]
    var stateLength: UInt64
    var sha256: [UInt8]

    func encoded() -> [UInt8] {
        var bytes: [UInt8] = [Self.tag, Self.version]
        for i in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: stateLength >> (8 * UInt64(i)))) }
        bytes += sha256
        bytes += PersistRecord.checkpoint(seq: seq, digest: digest, proof: proof, state: []).encoded()
        return bytes
    }

    enum Malformed: Error, CustomStringConvertible {
        case tooShort(Int)
        case version(UInt8)
        case core(DecodeError)
        case notACheckpoint
        case stateInline

        var description: String {
            switch self {
            case let .tooShort(n): return "\(n) bytes, too short"
            case let .version(v): return "unsupported version \(v)"
            case let .core(error): return "\(error)"
            case .notACheckpoint: return "does not hold a checkpoint"
            case .stateInline: return "holds a state inline"
            }
        }
    }

    static func decode(_ bytes: [UInt8], limits: MessageLimits) throws(Malformed) -> CheckpointReference {
        guard bytes.count > fixedBytes, bytes[0] == tag else { throw .tooShort(bytes.count) }
        guard bytes[1] == version else { throw .version(bytes[1]) }
        var length: UInt64 = 0
        for i in 0..<8 { length |= UInt64(bytes[2 + i]) << (8 * UInt64(i)) }
        let sha256 = Array(bytes[10..<42])
        let core: PersistRecord
        do {
            core = try PersistRecord.decode(Array(bytes[fixedBytes...]), limits: limits)
        } catch {
            throw .core(error)
        }
        guard case let .checkpoint(seq, digest, proof, state) = core else { throw .notACheckpoint }
        guard state.isEmpty else { throw .stateInline }
        return CheckpointReference(seq: seq, digest: digest, proof: proof, stateLength: length, sha256: sha256)
    }
}

/// Why the write-ahead log cannot be used to recover. Every `description` is one line; the
/// replica stops on any of these (bft-node exits 3) rather than start from less than it wrote.
public enum DurabilityError: Error, CustomStringConvertible, Sendable {
    /// The log itself could not be read or repaired.
    case log(WALError)
    /// A record with a good checksum does not decode: a bug or an incompatible version.
    case undecodableRecord(index: Int, origin: String, reason: String)
    /// The checkpoint file a record refers to is missing or damaged.
    case checkpointFile(index: Int, seq: UInt64, CheckpointFileError)
    /// A checkpoint state is larger than the configured `maxStateBytes`.
    case checkpointTooLarge(seq: UInt64, bytes: UInt64, limit: Int)

    public var description: String {
        let text: String
        switch self {
        case let .log(error):
            text = "write-ahead log unreadable: \(error)"
        case let .undecodableRecord(index, origin, reason):
            text = "write-ahead log record \(index) (\(origin)) has a good checksum but does not decode: \(reason); "
                + "refusing to start (a bug or a log written by an incompatible version)"
        case let .checkpointFile(index, seq, error):
            text = "write-ahead log record \(index) refers to checkpoint \(seq), which cannot be used: \(error); "
                + "refusing to start without it (restore the file, or move the data directory aside to rejoin from peers)"
        case let .checkpointTooLarge(seq, bytes, limit):
            text = "checkpoint \(seq) has a state of \(bytes) bytes, above the configured maxStateBytes \(limit); refusing to start"
        }
        return text.split(whereSeparator: \.isNewline).joined(separator: " ")
    }
}

/// The node's persistence port for its `ReplicaDriver`: the write-ahead log (or nothing, for
/// tests that run without durability), with each sync timed for the metrics.
struct NodePersistence: PersistencePort {
    let durability: Durability?
    let limits: MessageLimits
    let onSync: (TimeAmount) -> Void

    init(durability: Durability?, limits: MessageLimits, onSync: @escaping (TimeAmount) -> Void) {
        self.durability = durability; self.limits = limits; self.onSync = onSync
    }

    mutating func persist(_ records: [PersistRecord]) throws {
        guard let durability else { return }
        let started = NIODeadline.now()
        try durability.persist(records)
        onSync(NIODeadline.now() - started)
    }

    func recoverableRecords() throws -> [PersistRecord] {
        try durability?.replay(limits: limits) ?? []
    }
}
