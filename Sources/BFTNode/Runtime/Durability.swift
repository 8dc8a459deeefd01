import BFTCore
import BFTStorage
import Foundation
import Logging

/// The replica's durable memory: its `PersistRecord`s in a write-ahead log under `DATA/wal`.
///
/// Ordering contract (from `ReplicaOutput`): a step's records are appended and synced with one
/// fdatasync before any of the step's messages leave, so the replica never sends something it
/// could forget in a crash. A checkpoint record starts a new segment and lets older ones go: the
/// core re-emits everything still needed above a checkpoint right after it.
final class Durability {
    let wal: WriteAheadLog
    let logger: Logger

    init(directory: String, fsync: Bool, logger: Logger) throws {
        self.logger = logger
        wal = try WriteAheadLog(directory: directory, options: WALOptions(fsync: fsync))
    }

    /// Replays the log into records for `Replica.recover(from:)`, saying clearly what was lost.
    func replay() throws -> [PersistRecord] {
        let replay = try wal.replay()
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
        for (i, bytes) in replay.records.enumerated() {
            do {
                records.append(try PersistRecord.decode(bytes))
            } catch {
                // A record with a good checksum that does not decode: written by another version.
                logger.error("write-ahead log corrupt: record \(i) does not decode (\(error)); using the records before it")
                break
            }
        }
        return records
    }

    /// Makes a step's records durable (one sync for all of them).
    func persist(_ records: [PersistRecord]) throws {
        guard !records.isEmpty else { return }
        for record in records {
            if case .checkpoint = record {
                try wal.compact(startingWith: record.encoded())
            } else {
                try wal.append(record.encoded())
            }
        }
        try wal.sync()
    }
}
