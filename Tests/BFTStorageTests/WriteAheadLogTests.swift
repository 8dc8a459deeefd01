import Foundation
import Testing
@testable import BFTStorage

// MARK: - Helpers

/// Runs `body` with a fresh directory path under NSTemporaryDirectory() (not yet created, so
/// the log's own mkdir is exercised) and removes it afterwards.
private func withTemporaryDirectory(_ body: (String) throws -> Void) throws {
    let path = (NSTemporaryDirectory() as NSString).appendingPathComponent("bft-wal-test-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(atPath: path) }
    try body(path)
}

/// Deterministic, distinguishable payloads of varying size.
private func payload(_ index: Int, bytes: Int? = nil) -> [UInt8] {
    let count = bytes ?? (index % 37) + 1
    return (0..<count).map { UInt8(truncatingIfNeeded: index &* 131 &+ $0 &* 7 &+ 1) }
}

private func frameBytes(_ record: [UInt8]) -> Int { 8 + record.count }

private func names(in directory: String, suffix: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
        .filter { $0.hasSuffix(suffix) }
        .sorted()
}

private func segmentNames(_ directory: String) -> [String] {
    names(in: directory, suffix: ".log").filter { $0.hasPrefix("wal-") }
}

private func fileBytes(_ path: String) throws -> [UInt8] {
    [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
}

private func writeBytes(_ bytes: [UInt8], to path: String) throws {
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

private func flipByte(in path: String, at offset: Int) throws {
    var bytes = try fileBytes(path)
    bytes[offset] ^= 0x5A
    try writeBytes(bytes, to: path)
}

/// Opens, replays, appends `records`, syncs and closes; returns the replay.
@discardableResult
private func populate(_ directory: String, _ records: [[UInt8]], options: WALOptions = WALOptions(fsync: false)) throws -> WALReplay {
    let log = try WriteAheadLog(directory: directory, options: options)
    defer { log.close() }
    let replay = try log.replay()
    for record in records { try log.append(record) }
    try log.sync()
    return replay
}

private func reopen(_ directory: String, options: WALOptions = WALOptions(fsync: false)) throws -> (WriteAheadLog, WALReplay) {
    let log = try WriteAheadLog(directory: directory, options: options)
    return (log, try log.replay())
}

private let fast = WALOptions(fsync: false)

// MARK: - Round trips

@Suite struct WriteAheadLogRoundTripTests {
    @Test func appendSyncReopenReplay() throws {
        try withTemporaryDirectory { dir in
            let records = (0..<20).map { payload($0) }
            let first = try populate(dir, records, options: WALOptions())  // real fsync here
            #expect(first.records.isEmpty)
            #expect(segmentNames(dir) == ["wal-00000000000000000001.log"])

            let (log, replay) = try reopen(dir)
            defer { log.close() }
            #expect(replay.records == records)
            #expect(replay.tornTail == nil)
            #expect(replay.corruption == nil)
            #expect(replay.notes.isEmpty)
        }
    }

    @Test func zeroLengthRecords() throws {
        try withTemporaryDirectory { dir in
            let records: [[UInt8]] = [[], [1, 2, 3], [], []]
            try populate(dir, records)
            let (log, replay) = try reopen(dir)
            defer { log.close() }
            #expect(replay.records == records)
            #expect(replay.tornTail == nil)
            let size = try fileBytes(dir + "/" + segmentNames(dir)[0]).count
            #expect(size == records.map(frameBytes).reduce(0, +))
        }
    }

    @Test func reopenAfterCloseWithNoRecords() throws {
        try withTemporaryDirectory { dir in
            let nested = dir + "/a/b/wal"
            for _ in 0..<2 {
                let (log, replay) = try reopen(nested)
                #expect(replay.records.isEmpty)
                #expect(replay.tornTail == nil && replay.corruption == nil)
                try log.sync()  // nothing pending: no-op
                #expect(log.stats.syncs == 0)
                log.close()
            }
            #expect(segmentNames(nested) == ["wal-00000000000000000001.log"])
        }
    }

    @Test func recordTooLargeIsRejectedAndLogStaysUsable() throws {
        try withTemporaryDirectory { dir in
            let (log, _) = try reopen(dir, options: WALOptions(maxRecordBytes: 16, fsync: false))
            #expect(throws: WALError.recordTooLarge(17)) { try log.append(payload(0, bytes: 17)) }
            #expect(throws: WALError.recordTooLarge(17)) { try log.compact(startingWith: payload(0, bytes: 17)) }
            try log.append(payload(1, bytes: 16))
            try log.sync()
            log.close()
            let (again, replay) = try reopen(dir, options: WALOptions(maxRecordBytes: 16, fsync: false))
            defer { again.close() }
            #expect(replay.records == [payload(1, bytes: 16)])
        }
    }

    @Test func manyRecordsAcrossSegments() throws {
        try withTemporaryDirectory { dir in
            let options = WALOptions(segmentBytesLimit: 256, fsync: false)
            let records = (0..<300).map { payload($0) }
            let log = try WriteAheadLog(directory: dir, options: options)
            _ = try log.replay()
            for (i, record) in records.enumerated() {
                try log.append(record)
                if i % 7 == 0 { try log.sync() }
            }
            try log.sync()
            let segments = segmentNames(dir)
            #expect(segments.count > 10)
            #expect(log.stats.segments == segments.count)
            log.close()
            for name in segments {
                // A segment only exceeds the limit when it holds a single oversized record.
                #expect(try fileBytes(dir + "/" + name).count <= 256)
            }

            let (again, replay) = try reopen(dir, options: options)
            defer { again.close() }
            #expect(replay.records == records)
            #expect(replay.tornTail == nil && replay.corruption == nil)
        }
    }

    @Test func oversizedRecordGetsItsOwnSegment() throws {
        try withTemporaryDirectory { dir in
            let options = WALOptions(segmentBytesLimit: 64, fsync: false)
            let records = [payload(0, bytes: 10), payload(1, bytes: 200), payload(2, bytes: 10)]
            try populate(dir, records, options: options)
            #expect(segmentNames(dir).count == 3)
            let (log, replay) = try reopen(dir, options: options)
            defer { log.close() }
            #expect(replay.records == records)
        }
    }

    @Test func groupCommitCountsOneSyncPerBatch() throws {
        try withTemporaryDirectory { dir in
            let (log, _) = try reopen(dir, options: WALOptions())
            defer { log.close() }
            let records = (0..<10).map { payload($0) }
            for record in records { try log.append(record) }
            #expect(log.stats.appends == 10)
            #expect(log.stats.syncs == 0)
            try log.sync()
            try log.sync()  // nothing new: not counted
            let stats = log.stats
            #expect(stats.syncs == 1)
            #expect(stats.bytesWritten == records.map(frameBytes).reduce(0, +))
            #expect(stats.lastSyncNanos > 0)
            #expect(stats.totalSyncNanos == stats.lastSyncNanos)
            #expect(stats.segments == 1)
        }
    }

    @Test func closeFlushesBufferedAppends() throws {
        try withTemporaryDirectory { dir in
            let (log, _) = try reopen(dir)
            try log.append(payload(1))
            log.close()
            let (again, replay) = try reopen(dir)
            defer { again.close() }
            #expect(replay.records == [payload(1)])
        }
    }
}

// MARK: - API misuse

@Suite struct WriteAheadLogStateTests {
    @Test func appendBeforeReplayAndDoubleReplayAreRejected() throws {
        try withTemporaryDirectory { dir in
            let log = try WriteAheadLog(directory: dir, options: fast)
            defer { log.close() }
            #expect(throws: WALError.self) { try log.append([1]) }
            #expect(throws: WALError.self) { try log.sync() }
            _ = try log.replay()
            #expect(throws: WALError.self) { _ = try log.replay() }
        }
    }

    @Test func closedLogThrowsClosed() throws {
        try withTemporaryDirectory { dir in
            let (log, _) = try reopen(dir)
            log.close()
            log.close()  // idempotent
            #expect(throws: WALError.closed) { try log.append([1]) }
            #expect(throws: WALError.closed) { try log.sync() }
            #expect(throws: WALError.closed) { try log.compact(startingWith: [1]) }
        }
    }

    @Test func secondOpenOfSameDirectoryIsLocked() throws {
        try withTemporaryDirectory { dir in
            let (log, _) = try reopen(dir)
            #expect(throws: WALError.locked(dir)) { _ = try WriteAheadLog(directory: dir, options: fast) }
            log.close()
            let (again, _) = try reopen(dir)
            again.close()
        }
    }

    @Test func errorDescriptionsAreSingleLines() {
        let errors: [WALError] = [
            .io("write /x", errno: EIO), .recordTooLarge(5), .closed, .locked("/d"),
            .invalidState("why"), .unusable("because"),
        ]
        for error in errors {
            #expect(!error.description.isEmpty)
            #expect(!error.description.contains("\n"))
        }
        #expect(WALError.io("write /x", errno: EIO).description.contains("errno \(EIO)"))
    }

    @Test func directoryPathThatIsAFileFails() throws {
        try withTemporaryDirectory { dir in
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let file = dir + "/plain"
            try writeBytes([1], to: file)
            #expect(throws: WALError.self) { _ = try WriteAheadLog(directory: file + "/wal") }
        }
    }
}

// MARK: - Compaction

/// Twenty records over several small segments: the options, the segment names and the name the
/// next segment (a compaction's) gets.
private func severalSegments(_ dir: String) throws -> (WALOptions, [String], String) {
    let options = WALOptions(segmentBytesLimit: 100, fsync: false)
    try populate(dir, (0..<20).map { payload($0) }, options: options)
    let segments = segmentNames(dir)
    let last = WriteAheadLog.segmentSequence(segments.last!)!
    return (options, segments, WriteAheadLog.segmentName(last + 1))
}

@Suite struct WriteAheadLogCompactionTests {
    @Test func compactRemovesOldSegmentsAndReplayStartsWithCheckpoint() throws {
        try withTemporaryDirectory { dir in
            let options = WALOptions(segmentBytesLimit: 200, fsync: true)
            let before = (0..<40).map { payload($0) }
            let checkpoint = Array("checkpoint state".utf8)
            let after = (100..<105).map { payload($0) }

            let (log, _) = try reopen(dir, options: options)
            for record in before { try log.append(record) }
            try log.sync()
            let oldSegments = segmentNames(dir)
            #expect(oldSegments.count > 3)
            try log.compact(startingWith: checkpoint)
            #expect(log.stats.segments == 1)
            let compacted = segmentNames(dir)
            #expect(compacted.count == 1)
            #expect(!oldSegments.contains(compacted[0]))
            #expect(names(in: dir, suffix: ".compact").isEmpty)
            for record in after { try log.append(record) }
            try log.sync()
            log.close()

            let (again, replay) = try reopen(dir, options: options)
            defer { again.close() }
            #expect(replay.records == [checkpoint] + after)
            #expect(replay.tornTail == nil && replay.corruption == nil)
        }
    }

    @Test func interruptedCompactionWithCompleteRecordIsFinished() throws {
        try withTemporaryDirectory { dir in
            let (options, segments, next) = try severalSegments(dir)
            // State after a crash between writing the .compact file and deleting old segments.
            try writeBytes(WALFrame.encode(Array("cp".utf8)), to: dir + "/" + next + ".compact")
            // Deleting some old segments already happened, too.
            try FileManager.default.removeItem(atPath: dir + "/" + segments[0])

            let (log, replay) = try reopen(dir, options: options)
            defer { log.close() }
            #expect(replay.records == [Array("cp".utf8)])
            #expect(segmentNames(dir) == [next])
            #expect(names(in: dir, suffix: ".compact").isEmpty)
            #expect(replay.notes.count == 1)
        }
    }

    @Test func compactionWithSeveralRecordsReplaysThemAllBeforeLaterAppends() throws {
        try withTemporaryDirectory { dir in
            let options = WALOptions(segmentBytesLimit: 200, fsync: true)
            let (log, _) = try reopen(dir, options: options)
            for record in (0..<30).map({ payload($0) }) { try log.append(record) }
            try log.sync()
            let compaction = [Array("checkpoint".utf8)] + (200..<205).map { payload($0) }
            try log.compact(startingWith: compaction)
            #expect(segmentNames(dir).count == 1)
            #expect(names(in: dir, suffix: ".sealed").isEmpty && names(in: dir, suffix: ".compacting").isEmpty)
            try log.append(payload(300))
            try log.sync()
            log.close()
            let (again, replay) = try reopen(dir, options: options)
            defer { again.close() }
            #expect(replay.records == compaction + [payload(300)])
        }
    }

    /// A crash while the compaction file is written leaves a prefix of its frames — possibly
    /// exactly the first, whole. The records after the checkpoint must not be lost with the
    /// older log: the unsealed file is discarded and the older log replays whole.
    @Test(arguments: [1, 2])
    func unsealedCompactionIsDiscardedEvenWhenItsFirstFramesAreWhole(frames: Int) throws {
        try withTemporaryDirectory { dir in
            let records = (0..<10).map { payload($0) }
            try populate(dir, records)
            let compaction = [Array("checkpoint".utf8), payload(50), payload(51)]
            let prefix = compaction.prefix(frames).flatMap { WALFrame.encode($0) }
            try writeBytes(prefix, to: dir + "/" + WriteAheadLog.segmentName(2) + ".compacting")
            let (log, replay) = try reopen(dir)
            defer { log.close() }
            #expect(replay.records == records)
            #expect(names(in: dir, suffix: ".compacting").isEmpty)
            #expect(segmentNames(dir) == [WriteAheadLog.segmentName(1)])
        }
    }

    @Test func sealedCompactionIsFinishedAfterACrashWhileOlderSegmentsWereDeleted() throws {
        try withTemporaryDirectory { dir in
            let (options, segments, next) = try severalSegments(dir)
            let compaction = [Array("cp".utf8), payload(60), payload(61)]
            try writeBytes(compaction.flatMap { WALFrame.encode($0) }, to: dir + "/" + next + ".sealed")
            try FileManager.default.removeItem(atPath: dir + "/" + segments[0])
            let (log, replay) = try reopen(dir, options: options)
            defer { log.close() }
            #expect(replay.records == compaction)
            #expect(segmentNames(dir) == [next])
            #expect(names(in: dir, suffix: ".sealed").isEmpty)
        }
    }

    @Test func interruptedCompactionWithPartialRecordIsDiscarded() throws {
        try withTemporaryDirectory { dir in
            let records = (0..<10).map { payload($0) }
            try populate(dir, records)
            let frame = WALFrame.encode(Array("checkpoint".utf8))
            try writeBytes(Array(frame.prefix(frame.count - 3)),
                           to: dir + "/" + WriteAheadLog.segmentName(2) + ".compact")

            let (log, replay) = try reopen(dir)
            defer { log.close() }
            #expect(replay.records == records)
            #expect(names(in: dir, suffix: ".compact").isEmpty)
            #expect(segmentNames(dir) == [WriteAheadLog.segmentName(1)])
            #expect(replay.notes.count == 1)
        }
    }
}

// MARK: - Torn tails and corruption

@Suite struct WriteAheadLogDamageTests {
    /// Ten records in one segment; returns them and each record's offset.
    private func singleSegment(_ dir: String) throws -> (records: [[UInt8]], offsets: [Int], path: String) {
        let records = (0..<10).map { payload($0, bytes: 20 + $0) }
        try populate(dir, records)
        var offsets: [Int] = []
        var offset = 0
        for record in records {
            offsets.append(offset)
            offset += frameBytes(record)
        }
        let name = segmentNames(dir)
        #expect(name.count == 1)
        return (records, offsets, dir + "/" + name[0])
    }

    /// After a repair, new appends must land right after the last good record.
    private func expectLogContinues(_ dir: String, expected: [[UInt8]]) throws {
        let (log, _) = try reopen(dir)
        try log.append(Array("after repair".utf8))
        try log.sync()
        log.close()
        let (again, replay) = try reopen(dir)
        defer { again.close() }
        #expect(replay.records == expected + [Array("after repair".utf8)])
        #expect(replay.tornTail == nil)
        #expect(replay.corruption == nil)
    }

    @Test func tornTailCutMidRecord() throws {
        try withTemporaryDirectory { dir in
            let (records, offsets, path) = try singleSegment(dir)
            let full = try fileBytes(path)
            try writeBytes(Array(full.prefix(offsets[9] + 13)), to: path)  // half of the last record

            let (log, replay) = try reopen(dir)
            #expect(replay.records == Array(records.prefix(9)))
            #expect(replay.corruption == nil)
            let torn = try #require(replay.tornTail)
            #expect(torn.segment == WriteAheadLog.segmentName(1))
            #expect(torn.offset == offsets[9])
            #expect(torn.bytesRemoved == 13)
            #expect(torn.reason == .pastEndOfSegment(length: 29, available: 5))
            #expect(replay.notes == [torn.description])
            #expect(try fileBytes(path).count == offsets[9])
            log.close()
            try expectLogContinues(dir, expected: Array(records.prefix(9)))
        }
    }

    @Test func tornTailPartialHeaderGarbage() throws {
        try withTemporaryDirectory { dir in
            let (records, _, path) = try singleSegment(dir)
            let full = try fileBytes(path)
            try writeBytes(full + [0xDE, 0xAD, 0xBE, 0xEF, 0x01], to: path)

            let (log, replay) = try reopen(dir)
            #expect(replay.records == records)
            let torn = try #require(replay.tornTail)
            #expect(torn.offset == full.count)
            #expect(torn.bytesRemoved == 5)
            #expect(torn.reason == .truncatedHeader(available: 5))
            #expect(replay.corruption == nil)
            log.close()
            try expectLogContinues(dir, expected: records)
        }
    }

    @Test func zeroFilledTailIsTornNotPhantomRecords() throws {
        try withTemporaryDirectory { dir in
            let (records, _, path) = try singleSegment(dir)
            let full = try fileBytes(path)
            try writeBytes(full + [UInt8](repeating: 0, count: 4096), to: path)

            let (log, replay) = try reopen(dir)
            #expect(replay.records == records)
            #expect(replay.tornTail?.bytesRemoved == 4096)
            #expect(replay.corruption == nil)
            log.close()
            try expectLogContinues(dir, expected: records)
        }
    }

    /// The documented rule: a bad last record with nothing intact after it is a torn tail.
    @Test func flippedByteInLastRecordPayloadIsTornTail() throws {
        try withTemporaryDirectory { dir in
            let (records, offsets, path) = try singleSegment(dir)
            let size = try fileBytes(path).count
            try flipByte(in: path, at: offsets[9] + 8 + 5)

            let (log, replay) = try reopen(dir)
            #expect(replay.records == Array(records.prefix(9)))
            #expect(replay.corruption == nil)
            let torn = try #require(replay.tornTail)
            #expect(torn.offset == offsets[9])
            #expect(torn.bytesRemoved == size - offsets[9])
            if case .checksumMismatch = torn.reason {} else { Issue.record("unexpected reason \(torn.reason)") }
            #expect(names(in: dir, suffix: ".corrupt").isEmpty)
            log.close()
            try expectLogContinues(dir, expected: Array(records.prefix(9)))
        }
    }

    @Test func flippedByteInMiddlePayloadIsCorruption() throws {
        try withTemporaryDirectory { dir in
            let (records, offsets, path) = try singleSegment(dir)
            let full = try fileBytes(path)
            try flipByte(in: path, at: offsets[4] + 8 + 3)

            let (log, replay) = try reopen(dir)
            #expect(replay.records == Array(records.prefix(4)))
            #expect(replay.tornTail == nil)
            let corruption = try #require(replay.corruption)
            #expect(corruption.segment == WriteAheadLog.segmentName(1))
            #expect(corruption.offset == offsets[4])
            if case .checksumMismatch = corruption.reason {} else { Issue.record("unexpected reason \(corruption.reason)") }
            let corruptName = WriteAheadLog.segmentName(1) + ".corrupt"
            #expect(corruption.quarantined == [corruptName])
            #expect(corruption.bytesQuarantined == full.count - offsets[4])
            #expect(!corruption.description.contains("\n"))
            #expect(replay.notes == [corruption.description])
            // The damaged remainder is kept for forensics, byte for byte.
            var expectedAside = Array(full[offsets[4]...])
            expectedAside[8 + 3] ^= 0x5A
            #expect(try fileBytes(dir + "/" + corruptName) == expectedAside)
            #expect(try fileBytes(path).count == offsets[4])
            #expect(!FileManager.default.fileExists(atPath: dir + "/wal.quarantine"))
            // The log keeps accepting appends in the same open instance.
            try log.append(Array("after repair".utf8))
            try log.sync()
            log.close()

            let (again, second) = try reopen(dir)
            #expect(second.records == Array(records.prefix(4)) + [Array("after repair".utf8)])
            #expect(second.corruption == nil && second.tornTail == nil)
            again.close()
        }
    }

    /// A damaged length field hides where the next record starts; the forward scan still
    /// finds the intact records after it, so this must not be mistaken for a torn tail.
    @Test func flippedLengthFieldInMiddleIsCorruption() throws {
        try withTemporaryDirectory { dir in
            let (records, offsets, path) = try singleSegment(dir)
            try flipByte(in: path, at: offsets[3] + 3)  // high byte of the length: impossible length

            let (log, replay) = try reopen(dir)
            #expect(replay.records == Array(records.prefix(3)))
            #expect(replay.tornTail == nil)
            let corruption = try #require(replay.corruption)
            #expect(corruption.offset == offsets[3])
            #expect(corruption.reason == .lengthTooLarge(UInt32(20 + 3) | 0x5A00_0000))
            log.close()
            try expectLogContinues(dir, expected: Array(records.prefix(3)))
        }
    }

    @Test func corruptionInEarlierSegmentQuarantinesLaterSegments() throws {
        try withTemporaryDirectory { dir in
            let options = WALOptions(segmentBytesLimit: 100, fsync: false)
            let records = (0..<30).map { payload($0, bytes: 20) }  // 28-byte frames, 3 per segment
            try populate(dir, records, options: options)
            let segments = segmentNames(dir)
            #expect(segments.count == 10)
            // Last record of segment 2 (records 3, 4, 5): nothing follows it in its own file,
            // but a non-last segment was fully synced before the next began, so it is corruption.
            try flipByte(in: dir + "/" + segments[1], at: 2 * 28 + 8 + 1)

            let (log, replay) = try reopen(dir, options: options)
            #expect(replay.records == Array(records.prefix(5)))
            #expect(replay.tornTail == nil)
            let corruption = try #require(replay.corruption)
            #expect(corruption.segment == segments[1])
            #expect(corruption.offset == 56)
            #expect(corruption.quarantined.count == 9)
            #expect(corruption.bytesQuarantined == 28 + 8 * 3 * 28)
            #expect(segmentNames(dir) == Array(segments.prefix(2)))
            #expect(names(in: dir, suffix: ".corrupt").count == 9)
            #expect(log.stats.segments == 2)
            try log.append(payload(99, bytes: 20))
            try log.sync()
            log.close()

            let (again, second) = try reopen(dir, options: options)
            defer { again.close() }
            #expect(second.records == Array(records.prefix(5)) + [payload(99, bytes: 20)])
            #expect(second.corruption == nil && second.tornTail == nil)
        }
    }

    @Test func repeatedCorruptionKeepsEarlierForensicFiles() throws {
        try withTemporaryDirectory { dir in
            let (records, offsets, path) = try singleSegment(dir)
            try flipByte(in: path, at: offsets[6] + 8)
            _ = try reopen(dir).0.close()
            try flipByte(in: path, at: offsets[2] + 8)
            let (log, replay) = try reopen(dir)
            defer { log.close() }
            #expect(replay.records == Array(records.prefix(2)))
            let name = WriteAheadLog.segmentName(1)
            #expect(replay.corruption?.quarantined == [name + ".1.corrupt"])
            #expect(names(in: dir, suffix: ".corrupt") == [name + ".1.corrupt", name + ".corrupt"])
        }
    }

    /// A crash in the middle of moving corrupt data aside is finished by the next replay and
    /// reported as corruption again (never as a silent gap or a torn tail).
    @Test func interruptedQuarantineIsResumed() throws {
        try withTemporaryDirectory { dir in
            let options = WALOptions(segmentBytesLimit: 100, fsync: false)
            let records = (0..<9).map { payload($0, bytes: 20) }
            try populate(dir, records, options: options)
            let segments = segmentNames(dir)
            #expect(segments.count == 3)
            // Marker written, last segment already moved aside, the damaged one not yet cut.
            try writeBytes(Array("\(segments[1]) 28 3 1 2\n".utf8), to: dir + "/wal.quarantine")
            try FileManager.default.moveItem(atPath: dir + "/" + segments[2], toPath: dir + "/" + segments[2] + ".corrupt")

            let (log, replay) = try reopen(dir, options: options)
            defer { log.close() }
            #expect(replay.records == Array(records.prefix(4)))
            let corruption = try #require(replay.corruption)
            #expect(corruption.segment == segments[1])
            #expect(corruption.offset == 28)
            #expect(corruption.reason == .checksumMismatch(stored: 1, computed: 2))
            #expect(corruption.quarantined == [segments[1] + ".corrupt"])
            #expect(segmentNames(dir) == Array(segments.prefix(2)))
            #expect(!FileManager.default.fileExists(atPath: dir + "/wal.quarantine"))
        }
    }
}

// MARK: - Benchmark helper

@Suite struct WriteAheadLogBenchmarkTests {
    @Test func measureSyncCostReturnsPositiveTimesAndCleansUp() throws {
        try withTemporaryDirectory { dir in
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let cost = try WriteAheadLog.measureSyncCost(directory: dir, records: 5, recordBytes: 512)
            #expect(cost.perSyncMicros > 0)
            #expect(cost.perRecordMicros > 0)
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty)
        }
    }
}

// MARK: - Torn-tail/corruption classifier

@Suite struct WALFrameClassifierTests {
    private func classify(_ data: [UInt8], at offset: Int, budget: Int = 64 << 20) -> Bool {
        data.withUnsafeBytes { WALFrame.intactRecordFollows($0, badRecordAt: offset, maxRecordBytes: 1 << 20, crcBudgetBytes: budget) }
    }

    @Test func garbageAfterBadRecordIsNotAnIntactRecord() {
        var generator = SystemRandomNumberGenerator()
        let garbage = (0..<2000).map { _ in UInt8.random(in: 0...255, using: &generator) }
        #expect(classify(garbage, at: 0) == false)
    }

    @Test func intactRecordAtAnyOffsetIsFound() {
        let good = WALFrame.encode([1, 2, 3, 4, 5])
        for junk in 1..<12 {
            let data = [UInt8](repeating: 0xEE, count: junk) + good
            #expect(classify(data, at: 0))
        }
    }

    /// Out of hashing budget the classifier answers "corruption": wrongly calling durable data
    /// a torn tail would forget it silently, the other mistake only costs a peer fetch.
    @Test func exhaustedBudgetMeansCorruption() {
        // Length fields of 16 at every offset: each candidate costs a 20-byte CRC.
        let data = [UInt8]((0..<400).flatMap { _ in [16, 0, 0, 0] as [UInt8] })
        #expect(classify(data, at: 0, budget: 64 << 20) == false)
        #expect(classify(data, at: 0, budget: 100) == true)
    }
}
