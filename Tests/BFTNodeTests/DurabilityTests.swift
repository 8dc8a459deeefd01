import BFTCore
import BFTCrypto
import BFTStorage
import Foundation
import Logging
import Testing
@testable import BFTNode
@testable import BFTFrameCodec
@testable import BFTTransport
@testable import BFTApplications
@testable import BFTConfig
@testable import BFTClient

// MARK: - Helpers

private let quietLogger = Logger(label: "durability-test", factory: { _ in SwiftLogNoOpLogHandler() })

private func withTemporaryDirectory(_ body: (String) throws -> Void) throws {
    let path = (NSTemporaryDirectory() as NSString).appendingPathComponent("bft-durability-test-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(atPath: path) }
    try body(path)
}

/// A distinguishable state of `count` bytes, filled a word at a time (debug builds are slow
/// byte by byte).
private func makeState(_ count: Int, seed: UInt64) -> [UInt8] {
    [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
        var x = seed | 1
        var offset = 0
        let raw = UnsafeMutableRawBufferPointer(buffer)
        while offset + 8 <= count {
            x = x &* 6364136223846793005 &+ 1442695040888963407
            raw.storeBytes(of: x, toByteOffset: offset, as: UInt64.self)
            offset += 8
        }
        while offset < count {
            raw[offset] = UInt8(truncatingIfNeeded: seed &+ UInt64(offset))
            offset += 1
        }
        initialized = count
    }
}

/// Byte equality via memcmp (Array == is a slow loop in a debug build at hundreds of MiB).
private func sameBytes(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    return a.withUnsafeBytes { pa in b.withUnsafeBytes { pb in a.isEmpty || memcmp(pa.baseAddress!, pb.baseAddress!, a.count) == 0 } }
}

private func proof(seq: SeqNum, digest: Digest) -> [Checkpoint] {
    (0..<3).map { replica in
        var cp = Checkpoint(seq: seq, digest: digest, replica: replica)
        cp.signature = [UInt8](repeating: UInt8(replica + 1), count: 64)
        return cp
    }
}

private func checkpoint(_ seq: SeqNum, state: [UInt8]) -> PersistRecord {
    let digest = SHA256.hash(state)
    return .checkpoint(seq: seq, digest: digest, proof: proof(seq: seq, digest: digest), state: state)
}

/// Compares replayed records with the expected ones, states by memcmp.
private func expectRecords(_ actual: [PersistRecord], _ expected: [PersistRecord], sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(actual.count == expected.count, sourceLocation: sourceLocation)
    for (a, e) in zip(actual, expected) {
        if case let .checkpoint(s1, d1, p1, st1) = a, case let .checkpoint(s2, d2, p2, st2) = e {
            #expect(s1 == s2 && d1 == d2 && p1 == p2, sourceLocation: sourceLocation)
            #expect(sameBytes(st1, st2), "checkpoint \(s1) state differs (\(st1.count) vs \(st2.count) bytes)", sourceLocation: sourceLocation)
        } else {
            #expect(a == e, sourceLocation: sourceLocation)
        }
    }
}

private func names(_ directory: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
}

private func segments(_ directory: String) -> [String] {
    names(directory).filter { $0.hasPrefix("wal-") && $0.hasSuffix(".log") }
}

private func checkpointFiles(_ directory: String) -> [String] {
    names(directory).filter { $0.hasPrefix("checkpoint-") }
}

private func fileSize(_ path: String) -> Int {
    ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.intValue ?? -1
}

private func open(_ directory: String, maxRecordBytes: Int = 1 << 20, fsync: Bool = false) throws -> Durability {
    try Durability(directory: directory, fsync: fsync, maxRecordBytes: maxRecordBytes, logger: quietLogger)
}

/// Opens, replays, persists `steps` (one `persist` call each), closes; returns the replay.
@discardableResult
private func run(_ directory: String, limits: MessageLimits = .default, _ steps: [[PersistRecord]]) throws -> [PersistRecord] {
    let durability = try open(directory)
    defer { durability.close() }
    let replayed = try durability.replay(limits: limits)
    for step in steps { try durability.persist(step) }
    return replayed
}

private func replayOnce(_ directory: String, limits: MessageLimits = .default) throws -> [PersistRecord] {
    try run(directory, limits: limits, [])
}

// MARK: - Tests

@Suite("DurabilityTests")
struct DurabilityTests {
    /// A checkpoint state three times the log's record limit goes to its own file; the log
    /// holds a small reference, replays intact with the records after it across re-opens, and
    /// the compaction leaves one segment and one checkpoint file.
    @Test func checkpointLargerThanAWALRecordRoundTrips() throws {
        try withTemporaryDirectory { dir in
            let first = checkpoint(10, state: makeState(2 << 20, seed: 1))
            let second = checkpoint(20, state: makeState(3 << 20, seed: 2))
            let after: [PersistRecord] = [.view(4, active: true), .view(5, active: false)]
            try run(dir, [
                [.view(1, active: true), first, .view(2, active: true)],
                [.view(3, active: true)],
                [second] + after,
            ])
            // Only what the last compaction needs is left; the state is not in the log.
            #expect(segments(dir).count == 1)
            #expect(checkpointFiles(dir) == [CheckpointFiles.fileName(seq: 20)])
            #expect(fileSize(dir + "/" + segments(dir)[0]) < 64 * 1024)
            let statePath = dir + "/" + CheckpointFiles.fileName(seq: 20)
            #expect(fileSize(statePath) == CheckpointFiles.headerBytes + (3 << 20))
            let mode = (try FileManager.default.attributesOfItem(atPath: statePath)[.posixPermissions] as? NSNumber)?.intValue
            #expect(mode == 0o600)

            let replayed = try run(dir, [[.view(6, active: true)]])
            expectRecords(replayed, [second] + after)
            expectRecords(try replayOnce(dir), [second] + after + [.view(6, active: true)])
            #expect(checkpointFiles(dir) == [CheckpointFiles.fileName(seq: 20)])
        }
    }

    /// Only checkpoint states bypass the record limit, and the limit is Durability's caller's.
    @Test func otherRecordsStayWithinMaxRecordBytes() throws {
        try withTemporaryDirectory { dir in
            let durability = try open(dir, maxRecordBytes: 4096)
            defer { durability.close() }
            #expect(durability.wal.options.maxRecordBytes == 4096)
            _ = try durability.replay(limits: .default)
            let bigRequest = Request(client: 0, timestamp: 1, sessionStart: false, operation: [UInt8](repeating: 9, count: 8192),
                                     signature: [UInt8](repeating: 2, count: 64))
            var big = PrePrepare(view: 0, seq: 1, replica: 0, requests: [bigRequest])
            big.signature = [UInt8](repeating: 1, count: 64)
            #expect(throws: WALError.recordTooLarge(PersistRecord.ownMessage(.prePrepare(big)).encoded().count)) {
                try durability.persist([.ownMessage(.prePrepare(big))])
            }
        }
        try withTemporaryDirectory { dir in
            let durability = try Durability(directory: dir, fsync: false, logger: quietLogger)
            defer { durability.close() }
            #expect(durability.wal.options.maxRecordBytes == WALOptions().maxRecordBytes)
        }
    }

    enum Damage: String, CaseIterable, Sendable {
        case truncated, flippedStateByte, flippedHeaderByte, extended, missing
    }

    /// A damaged or missing checkpoint file is a clear error, never an empty log, and nothing
    /// is deleted so the data can still be rescued.
    @Test(arguments: Damage.allCases)
    func damagedCheckpointFileStopsReplay(_ damage: Damage) throws {
        try withTemporaryDirectory { dir in
            let state = makeState(300_000, seed: 7)
            try run(dir, [[checkpoint(10, state: state), .view(2, active: true)]])
            let path = dir + "/" + CheckpointFiles.fileName(seq: 10)
            var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
            switch damage {
            case .truncated: bytes.removeLast(1000)
            case .flippedStateByte: bytes[CheckpointFiles.headerBytes + 123_456] ^= 0x10
            case .flippedHeaderByte: bytes[20] ^= 0x01  // inside the sequence number
            case .extended: bytes += [0, 0, 0, 0]
            case .missing: break
            }
            if damage == .missing {
                try FileManager.default.removeItem(atPath: path)
            } else {
                try Data(bytes).write(to: URL(fileURLWithPath: path))
            }
            let before = segments(dir).map { [UInt8]((try? Data(contentsOf: URL(fileURLWithPath: dir + "/" + $0))) ?? Data()) }

            let error = #expect(throws: DurabilityError.self) { _ = try replayOnce(dir) }
            guard case let .checkpointFile(index, seq, fileError)? = error else {
                Issue.record("expected a checkpoint file error, got \(String(describing: error))")
                return
            }
            #expect(index == 0 && seq == 10)
            switch (damage, fileError) {
            case (.missing, .missing), (.truncated, .damaged), (.flippedStateByte, .damaged),
                 (.flippedHeaderByte, .damaged), (.extended, .damaged): break
            default: Issue.record("\(damage): unexpected \(fileError)")
            }
            let text = error!.description
            #expect(text.contains(CheckpointFiles.fileName(seq: 10)))
            #expect(!text.contains("\n"))
            // The log and the (damaged) file are left as they were.
            #expect(segments(dir).map { [UInt8]((try? Data(contentsOf: URL(fileURLWithPath: dir + "/" + $0))) ?? Data()) } == before)
            #expect(FileManager.default.fileExists(atPath: path) == (damage != .missing))
            // And it keeps refusing: a second attempt does not quietly start empty.
            #expect(throws: DurabilityError.self) { _ = try replayOnce(dir) }
        }
    }

    /// A crash after the state file was written but before the log referred to it: replay
    /// returns the previous checkpoint and removes the orphan (and a half-written temporary
    /// file, and a file a finished compaction no longer needed).
    @Test func crashBeforeTheReferenceRecordReplaysThePreviousCheckpoint() throws {
        try withTemporaryDirectory { dir in
            let previous = checkpoint(10, state: makeState(1_500_000, seed: 3))
            try run(dir, [[previous, .view(2, active: true)], [.view(3, active: false)]])
            do {
                let durability = try open(dir)
                defer { durability.close() }
                _ = try durability.replay(limits: .default)
                // Step 1 of a checkpoint at 20 completed, the compaction never happened.
                _ = try durability.checkpoints.write(seq: 20, state: makeState(1_700_000, seed: 4))
                // Left over from other crashes: a torn temporary file, and an old state file
                // whose deletion after an earlier compaction was interrupted.
                try Data([1, 2, 3]).write(to: URL(fileURLWithPath: dir + "/" + CheckpointFiles.fileName(seq: 30) + ".tmp"))
                _ = try durability.checkpoints.write(seq: 5, state: makeState(1000, seed: 5))
            }
            #expect(checkpointFiles(dir).count == 4)
            expectRecords(try replayOnce(dir), [previous, .view(2, active: true), .view(3, active: false)])
            #expect(checkpointFiles(dir) == [CheckpointFiles.fileName(seq: 10)])
            // The log is usable afterwards: the next checkpoint compacts normally.
            let next = checkpoint(20, state: makeState(1_700_000, seed: 6))
            try run(dir, [[next]])
            expectRecords(try replayOnce(dir), [next])
            #expect(checkpointFiles(dir) == [CheckpointFiles.fileName(seq: 20)])
        }
    }

    /// A record with a good CRC that does not decode stops replay and names the record,
    /// instead of silently dropping it and everything after it; the log is not modified.
    @Test func undecodableRecordStopsReplay() throws {
        try withTemporaryDirectory { dir in
            try run(dir, [[checkpoint(10, state: makeState(5000, seed: 8)), .view(2, active: true)]])
            do {
                let durability = try open(dir)
                defer { durability.close() }
                _ = try durability.replay(limits: .default)
                try durability.wal.append([0xEE, 0x01, 0x02, 0x03])  // no such core tag
                try durability.wal.append(PersistRecord.view(3, active: true).encoded())
                try durability.wal.sync()
            }
            let before = segments(dir).map { fileSize(dir + "/" + $0) }
            let error = #expect(throws: DurabilityError.self) { _ = try replayOnce(dir) }
            guard case let .undecodableRecord(index, origin, _)? = error else {
                Issue.record("expected an undecodable-record error, got \(String(describing: error))")
                return
            }
            #expect(index == 2)
            #expect(origin.hasPrefix("wal-") && origin.contains("offset"))
            #expect(error!.description.contains("record 2") && !error!.description.contains("\n"))
            #expect(segments(dir).map { fileSize(dir + "/" + $0) } == before)
            #expect(checkpointFiles(dir) == [CheckpointFiles.fileName(seq: 10)])
        }
        // A record carrying Durability's reference tag but malformed is just as fatal.
        try withTemporaryDirectory { dir in
            do {
                let durability = try open(dir)
                defer { durability.close() }
                _ = try durability.replay(limits: .default)
                try durability.wal.append(PersistRecord.view(1, active: true).encoded())
                try durability.wal.append([CheckpointReference.tag, 1] + [UInt8](repeating: 0xAB, count: 60))
                try durability.wal.sync()
            }
            let error = #expect(throws: DurabilityError.self) { _ = try replayOnce(dir) }
            guard case let .undecodableRecord(index, _, reason)? = error else {
                Issue.record("expected an undecodable-record error, got \(String(describing: error))")
                return
            }
            #expect(index == 1 && reason.hasPrefix("checkpoint reference"))
        }
    }

    /// Replay decodes with the limits it is given: a state above the configured budget is
    /// refused by name, not dropped.
    @Test func replayUsesTheConfiguredLimits() throws {
        try withTemporaryDirectory { dir in
            let cp = checkpoint(10, state: makeState(3 << 20, seed: 9))
            try run(dir, [[cp]])
            var small = MessageLimits()
            small.maxStateBytes = 1 << 20
            let error = #expect(throws: DurabilityError.self) { _ = try replayOnce(dir, limits: small) }
            guard case let .checkpointTooLarge(seq, bytes, limit)? = error else {
                Issue.record("expected checkpointTooLarge, got \(String(describing: error))")
                return
            }
            #expect(seq == 10 && bytes == 3 << 20 && limit == 1 << 20)
            var large = MessageLimits()
            large.maxStateBytes = 4 << 20
            expectRecords(try replayOnce(dir, limits: large), [cp])
        }
    }

    /// Logs written before checkpoint files existed (the state inline in the core's record)
    /// still replay.
    @Test func inlineCheckpointRecordsFromEarlierVersionsStillReplay() throws {
        try withTemporaryDirectory { dir in
            let cp = checkpoint(10, state: makeState(4000, seed: 10))
            do {
                let durability = try open(dir)
                defer { durability.close() }
                _ = try durability.replay(limits: .default)
                try durability.wal.compact(startingWith: cp.encoded())
                try durability.wal.append(PersistRecord.view(2, active: true).encoded())
                try durability.wal.sync()
            }
            expectRecords(try replayOnce(dir), [cp, .view(2, active: true)])
        }
    }

    /// A 160 MiB state, fsync on, with the default record limit (64 MiB): persisted and
    /// replayed intact. Prints the times.
    @Test(.timeLimit(.minutes(2)))
    func hugeCheckpointRoundTrips() throws {
        try withTemporaryDirectory { dir in
            let bytes = 160 << 20
            let cp = checkpoint(1000, state: makeState(bytes, seed: 11))
            var limits = MessageLimits()
            limits.maxStateBytes = 256 << 20
            let clock = ContinuousClock()
            var persistTime: Duration = .zero
            do {
                let durability = try open(dir, maxRecordBytes: WALOptions().maxRecordBytes, fsync: true)
                defer { durability.close() }
                _ = try durability.replay(limits: limits)
                persistTime = try clock.measure { try durability.persist([cp, .view(1, active: true)]) }
            }
            var replayed: [PersistRecord] = []
            let replayTime = try clock.measure {
                let durability = try open(dir, maxRecordBytes: WALOptions().maxRecordBytes, fsync: true)
                defer { durability.close() }
                replayed = try durability.replay(limits: limits)
            }
            print("DurabilityTests.hugeCheckpointRoundTrips: \(bytes >> 20) MiB state, persist (fsync) \(persistTime), replay \(replayTime)")
            expectRecords(replayed, [cp, .view(1, active: true)])
            #expect(fileSize(dir + "/" + CheckpointFiles.fileName(seq: 1000)) == CheckpointFiles.headerBytes + bytes)
            #expect(fileSize(dir + "/" + segments(dir)[0]) < 64 * 1024)
        }
    }
}
