#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An append-only, checksummed, group-committed write-ahead log in one directory.
///
/// Files in the directory:
/// - `wal-<20-digit sequence>.log`: segments, replayed in sequence order. Record framing is
///   documented on `WALFrame` (`[u32 LE length][u32 LE CRC32C][payload]`).
/// - `wal.lock`: held with `flock` while the log is open, so two nodes (or two opens in one
///   process) can never interleave appends in the same directory.
/// - `wal-….log.compacting`: a compaction being written; `wal-….log.sealed`: one whose records
///   are all durable, about to replace the older segments (see `compact(startingWith:)`);
///   `wal-….log.compact`: a one-record compaction left by a version before sealing.
/// - `wal.quarantine`: a corruption repair in progress (see `replay()`).
/// - `*.corrupt`: damaged bytes moved aside by replay, kept for forensics, never read again.
/// Any other file is left alone, so a caller may keep its own files next to the segments
/// (e.g. `CheckpointFiles`), protected by the same lock.
///
/// Durability: `append` only buffers; `sync` writes everything appended since the previous
/// sync and covers it with one fdatasync (group commit). Invariant that recovery relies on:
/// a segment is fdatasync'ed completely before the next one is created, so only the last
/// segment can legitimately end in a half-written record.
///
/// Threading: meant to be driven from one thread or actor. A mutex serialises the public
/// methods anyway, which is what makes the `@unchecked Sendable` honest and costs nothing
/// next to an fdatasync.
public final class WriteAheadLog: @unchecked Sendable {
    public let directory: String
    public let options: WALOptions

    private enum State {
        case opened  // replay() not called yet
        case ready
        case closed
        case failed(String)
    }

    private struct Segment {
        var sequence: UInt64
        var name: String
    }

    private static let lockFileName = "wal.lock"
    private static let quarantineMarkerName = "wal.quarantine"
    /// A one-record compaction file as logs before sealing wrote it (still finished on replay).
    private static let compactSuffix = ".compact"
    /// A compaction file being written: discarded on replay (the older log is still whole).
    private static let compactingSuffix = ".compacting"
    /// A compaction file whose frames are all durable (renamed from `.compacting` after its sync).
    private static let sealedSuffix = ".sealed"
    /// Buffered appends are written out (without fsync) past this size so memory stays bounded
    /// when the caller appends a lot between syncs.
    private static let writeThroughBytes = 1 << 20

    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var state: State = .opened
    private var lockFD: Int32
    private var activeFD: Int32 = -1
    private var activeSequence: UInt64 = 0
    /// Bytes already written to the active segment (pending bytes come after).
    private var activeSize = 0
    private var pending: [UInt8] = []
    /// Written to the active segment but not yet covered by an fdatasync.
    private var unsynced = false
    private var counters = WALStats()

    /// Creates `directory` (with parents) if needed and takes its lock. Nothing is read or
    /// repaired until `replay()`.
    public init(directory: String, options: WALOptions = .init()) throws(WALError) {
        try POSIXFile.makeDirectories(directory)
        let lockPath = directory + "/" + Self.lockFileName
        let fd = try POSIXFile.open(lockPath, O_RDWR | O_CREAT)
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let e = errno
            POSIXFile.close(fd)
            if e == EWOULDBLOCK { throw .locked(directory) }
            throw .io("flock \(lockPath)", errno: e)
        }
        let segments: [Segment]
        do throws(WALError) {
            segments = try Self.listSegments(directory)
        } catch {
            POSIXFile.close(fd)
            throw error
        }
        self.directory = directory
        var options = options
        options.maxRecordBytes = max(0, min(options.maxRecordBytes, Int(UInt32.max)))
        options.segmentBytesLimit = max(1, options.segmentBytesLimit)
        self.options = options
        self.lockFD = fd
        self.mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        counters.segments = segments.count
    }

    deinit {
        close()
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    // MARK: - Public API

    /// Reads every segment in order and repairs the log so appends can follow the last good
    /// record. Call exactly once, after `init` and before anything else.
    ///
    /// The rule for a record that fails to parse (partial header, length above
    /// `maxRecordBytes` or past the end of the file, or CRC mismatch):
    /// - **Torn tail**: it is in the last segment and no intact record starts anywhere after
    ///   it in that segment (see `WALFrame.intactRecordFollows`). That is what a crash during
    ///   the final write leaves, and those records were never acknowledged as durable. The
    ///   segment is truncated at the record's start and `tornTail` says so.
    /// - **Corruption**: anything else — the bad record is followed by an intact one, or it is
    ///   in an earlier segment (those were fully fdatasync'ed before the next one began, so
    ///   nothing there may be torn). Durable data was lost: `records` stops before it, and the
    ///   rest of that segment plus every later segment are moved aside into `*.corrupt` files
    ///   and the segment is truncated there, so the caller must recover the missing part from
    ///   its peers. The repair is journaled in `wal.quarantine` first, so a crash halfway
    ///   through is finished (and reported again) by the next replay.
    ///
    /// It also finishes an interrupted `compact` (the new segment's record is complete) or
    /// discards it (it is not), so a replay never mixes pre- and post-compaction records.
    public func replay() throws(WALError) -> WALReplay {
        try locked { () throws(WALError) -> WALReplay in
            switch state {
            case .opened: break
            case .ready: throw .invalidState("replay() may only be called once, before appending")
            case .closed: throw .closed
            case let .failed(why): throw .unusable(why)
            }
            let result = try guarded { () throws(WALError) -> WALReplay in try replayLocked() }
            state = .ready
            return result
        }
    }

    /// Buffers one record. Not durable until the next `sync()`.
    public func append(_ record: [UInt8]) throws(WALError) {
        try locked { () throws(WALError) in
            try requireReady()
            guard record.count <= options.maxRecordBytes else { throw .recordTooLarge(record.count) }
            let frameBytes = WALFrame.headerBytes + record.count
            let segmentBytes = activeSize + pending.count
            if segmentBytes > 0 && segmentBytes + frameBytes > options.segmentBytesLimit {
                try guarded { () throws(WALError) in try rollSegment() }
            }
            WALFrame.encode(record, into: &pending)
            counters.appends += 1
            if pending.count >= Self.writeThroughBytes {
                try guarded { () throws(WALError) in try writePending() }
            }
        }
    }

    /// Makes every record appended so far durable: writes the buffer and issues one
    /// fdatasync for all of them (group commit). A no-op, not counted in `stats`, when nothing
    /// was appended since the previous sync.
    public func sync() throws(WALError) {
        try locked { () throws(WALError) in
            try requireReady()
            guard !pending.isEmpty || unsynced else { return }
            let start = POSIXFile.nowNanos()
            try guarded { () throws(WALError) in
                try writePending()
                if options.fsync { try POSIXFile.dataSync(activeFD, path: activePath) }
            }
            unsynced = false
            let elapsed = POSIXFile.nowNanos() &- start
            counters.syncs += 1
            counters.lastSyncNanos = elapsed
            counters.totalSyncNanos &+= elapsed
        }
    }

    /// Starts a fresh segment whose first record is `record`, makes it durable, then deletes
    /// every older segment. Call after a stable checkpoint, with a `record` that by itself is
    /// enough to recover (e.g. the checkpoint state): everything appended before this call is
    /// dropped from the log, so replay afterwards returns `record` first.
    ///
    /// Crash safety: the new segment is first written as `wal-<n>.log.compacting`, fdatasync'ed
    /// and renamed to `wal-<n>.log.sealed`; old segments are deleted only then, and the rename
    /// to `wal-<n>.log` comes last. `replay()` finishes a `.sealed` file and discards a
    /// `.compacting` one, so a crash at any point leaves either the old log or the compacted
    /// one, never a mix and never part of the compaction.
    public func compact(startingWith record: [UInt8]) throws(WALError) {
        try compact(startingWith: [record])
    }

    /// `compact(startingWith:)` with several records that become durable together: after a
    /// crash the log is either the old one or exactly these records, never a prefix of them.
    /// A checkpoint needs this: the records that follow it (everything the replica signed or
    /// certified above it) must not be lost while the records they replace are already gone.
    public func compact(startingWith records: [[UInt8]]) throws(WALError) {
        try locked { () throws(WALError) in
            try requireReady()
            precondition(!records.isEmpty, "a compaction needs the record it starts with")
            for record in records where record.count > options.maxRecordBytes { throw .recordTooLarge(record.count) }
            try guarded { () throws(WALError) in try compactLocked(records) }
        }
    }

    /// Writes and syncs anything still buffered (best effort: errors cannot be reported here,
    /// so call `sync()` first when durability matters), then releases the files and the
    /// directory lock. Further calls throw `WALError.closed`. Idempotent.
    public func close() {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        if case .closed = state { return }
        if case .ready = state, !pending.isEmpty || unsynced {
            try? writePending()
            if options.fsync, activeFD >= 0 { try? POSIXFile.dataSync(activeFD, path: activePath) }
        }
        if activeFD >= 0 { POSIXFile.close(activeFD) }
        activeFD = -1
        if lockFD >= 0 { POSIXFile.close(lockFD) }
        lockFD = -1
        pending = []
        state = .closed
    }

    /// Counters since this log was opened.
    public var stats: WALStats {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return counters
    }

    // MARK: - Benchmark

    /// Measures what durability costs on the filesystem holding `directory`, for
    /// BENCHMARKS.md. Works in a fresh subdirectory of `directory`, removed afterwards, with
    /// fsync on.
    /// - `perSyncMicros`: mean wall time of one `sync()` that covers a single record of
    ///   `recordBytes` (write + fdatasync), over `records` append-then-sync rounds — the price of
    ///   one commit without batching.
    /// - `perRecordMicros`: mean wall time per record when all `records` are appended and made
    ///   durable by a single `sync()` — the amortised price under group commit.
    public static func measureSyncCost(directory: String, records: Int, recordBytes: Int) throws(WALError) -> (perSyncMicros: Double, perRecordMicros: Double) {
        guard records > 0 else { return (0, 0) }
        let benchDirectory = directory + "/wal-bench-\(getpid())-\(POSIXFile.nowNanos())"
        defer { removeTree(benchDirectory) }
        let log = try WriteAheadLog(directory: benchDirectory, options: WALOptions(
            segmentBytesLimit: Int.max, maxRecordBytes: max(recordBytes, 1), fsync: true))
        defer { log.close() }
        _ = try log.replay()
        let payload = [UInt8](repeating: 0xA5, count: recordBytes)
        // Warm-up: the first sync of a new file also allocates its first blocks.
        try log.append(payload)
        try log.sync()

        let before = log.stats
        for _ in 0..<records {
            try log.append(payload)
            try log.sync()
        }
        let perSync = Double(log.stats.totalSyncNanos - before.totalSyncNanos) / Double(records) / 1000

        let start = POSIXFile.nowNanos()
        for _ in 0..<records { try log.append(payload) }
        try log.sync()
        let perRecord = Double(POSIXFile.nowNanos() - start) / Double(records) / 1000
        return (perSync, perRecord)
    }

    // MARK: - Internals (called with the mutex held)

    private func locked<T>(_ body: () throws(WALError) -> T) throws(WALError) -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    /// Runs an I/O step; if it fails, the log refuses further work (see `WALError.unusable`).
    private func guarded<T>(_ body: () throws(WALError) -> T) throws(WALError) -> T {
        do {
            return try body()
        } catch {
            state = .failed(error.description)
            throw error
        }
    }

    private func requireReady() throws(WALError) {
        switch state {
        case .ready: return
        case .opened: throw .invalidState("call replay() before append, sync or compact")
        case .closed: throw .closed
        case let .failed(why): throw .unusable(why)
        }
    }

    private var activePath: String { path(Self.segmentName(activeSequence)) }

    private func path(_ name: String) -> String { directory + "/" + name }

    static func segmentName(_ sequence: UInt64) -> String {
        let digits = String(sequence)
        return "wal-" + String(repeating: "0", count: max(0, 20 - digits.count)) + digits + ".log"
    }

    /// The sequence number in a `wal-<20 digits>.log` name, else nil.
    static func segmentSequence(_ name: String, suffix: String = ".log") -> UInt64? {
        let utf8 = Array(name.utf8)
        let suffixBytes = Array(suffix.utf8)
        guard utf8.count == 4 + 20 + suffixBytes.count, name.hasPrefix("wal-"), name.hasSuffix(suffix) else { return nil }
        let digits = utf8[4..<24]
        guard digits.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else { return nil }
        return UInt64(String(decoding: digits, as: UTF8.self))
    }

    private static func listSegments(_ directory: String) throws(WALError) -> [Segment] {
        try POSIXFile.list(directory)
            .compactMap { name in segmentSequence(name).map { Segment(sequence: $0, name: name) } }
            .sorted { $0.sequence < $1.sequence }
    }

    private func syncDirectory() throws(WALError) {
        if options.fsync { try POSIXFile.syncDirectory(directory) }
    }

    private func writePending() throws(WALError) {
        guard !pending.isEmpty else { return }
        try POSIXFile.pwriteAll(activeFD, pending, at: activeSize, path: activePath)
        activeSize += pending.count
        counters.bytesWritten += pending.count
        unsynced = true
        // Keep a modest buffer for reuse, but do not pin the memory of one huge record.
        pending.removeAll(keepingCapacity: pending.capacity <= 4 * Self.writeThroughBytes)
    }

    /// Seals the active segment (written and fdatasync'ed, preserving the invariant that only
    /// the last segment can end torn) and starts the next one.
    private func rollSegment() throws(WALError) {
        try writePending()
        if options.fsync && unsynced { try POSIXFile.dataSync(activeFD, path: activePath) }
        unsynced = false
        POSIXFile.close(activeFD)
        activeFD = -1
        let next = activeSequence + 1
        activeFD = try POSIXFile.open(path(Self.segmentName(next)), O_RDWR | O_CREAT | O_EXCL)
        activeSequence = next
        activeSize = 0
        try syncDirectory()
        counters.segments += 1
    }

    private func compactLocked(_ records: [[UInt8]]) throws(WALError) {
        // Leave the old log consistent first, in case this compaction fails halfway.
        try writePending()
        if options.fsync && unsynced { try POSIXFile.dataSync(activeFD, path: activePath) }
        unsynced = false

        let next = activeSequence + 1
        let finalPath = path(Self.segmentName(next))
        let temporaryPath = finalPath + Self.compactingSuffix
        let sealedPath = finalPath + Self.sealedSuffix
        var frames: [UInt8] = []
        for record in records { frames += WALFrame.encode(record) }
        let fd = try POSIXFile.open(temporaryPath, O_RDWR | O_CREAT | O_TRUNC)
        do throws(WALError) {
            try POSIXFile.pwriteAll(fd, frames, at: 0, path: temporaryPath)
            if options.fsync { try POSIXFile.dataSync(fd, path: temporaryPath) }
            // Sealed: every frame is durable. Until this rename a crash keeps the old log.
            try POSIXFile.rename(temporaryPath, sealedPath)
            try syncDirectory()
        } catch {
            POSIXFile.close(fd)
            throw error
        }
        POSIXFile.close(activeFD)
        activeFD = fd
        activeSequence = next
        activeSize = frames.count
        for segment in try Self.listSegments(directory) where segment.sequence < next {
            try POSIXFile.unlink(path(segment.name))
        }
        try syncDirectory()
        try POSIXFile.rename(sealedPath, finalPath)
        try syncDirectory()
        counters.appends += records.count
        counters.syncs += 1
        counters.bytesWritten += frames.count
        counters.segments = 1
    }

    private func replayLocked() throws(WALError) -> WALReplay {
        var result = WALReplay()
        try finishInterruptedCompactions(&result)
        try finishInterruptedQuarantine(&result)

        var segments = try Self.listSegments(directory)
        scan: for index in segments.indices {
            let segment = segments[index]
            let segmentPath = path(segment.name)
            let data = try POSIXFile.readAll(segmentPath)
            var damage: (offset: Int, reason: WALBadRecord, torn: Bool)?
            data.withUnsafeBytes { raw in
                var offset = 0
                while offset < raw.count {
                    switch WALFrame.parse(raw, at: offset, maxRecordBytes: options.maxRecordBytes) {
                    case let .record(payload, next):
                        result.records.append(Array(raw[payload]))
                        result.origins.append(WALReplay.Origin(segment: segment.name, offset: offset))
                        offset = next
                    case let .bad(reason):
                        let isLast = index == segments.count - 1
                        let torn = isLast && !WALFrame.intactRecordFollows(
                            raw, badRecordAt: offset, maxRecordBytes: options.maxRecordBytes)
                        damage = (offset, reason, torn)
                        return
                    }
                }
            }
            guard let damage else { continue }
            if damage.torn {
                try truncateFile(segmentPath, to: damage.offset)
                let torn = WALReplay.TornTail(
                    segment: segment.name, offset: damage.offset,
                    bytesRemoved: data.count - damage.offset, reason: damage.reason)
                result.tornTail = torn
                result.notes.append(torn.description)
            } else {
                try writeQuarantineMarker(segment: segment.name, offset: damage.offset, reason: damage.reason)
                let corruption = try quarantine(segment: segment.name, offset: damage.offset, reason: damage.reason)
                segments.removeSubrange((index + 1)...)
                if result.corruption == nil { result.corruption = corruption }
                result.notes.append(corruption.description)
            }
            break scan
        }

        if let last = segments.last {
            activeSequence = last.sequence
            activeFD = try POSIXFile.open(path(last.name), O_RDWR)
            activeSize = try POSIXFile.fileSize(activeFD, path: path(last.name))
        } else {
            activeSequence = 1
            activeFD = try POSIXFile.open(path(Self.segmentName(1)), O_RDWR | O_CREAT)
            activeSize = try POSIXFile.fileSize(activeFD, path: path(Self.segmentName(1)))
            try syncDirectory()
            segments.append(Segment(sequence: 1, name: Self.segmentName(1)))
        }
        counters.segments = segments.count
        return result
    }

    /// Shortens a segment to `length` bytes and makes the new size durable.
    private func truncateFile(_ filePath: String, to length: Int) throws(WALError) {
        let fd = try POSIXFile.open(filePath, O_RDWR)
        defer { POSIXFile.close(fd) }
        try POSIXFile.truncate(fd, to: length, path: filePath)
        if options.fsync { try POSIXFile.dataSync(fd, path: filePath) }
    }

    /// Completes or abandons compactions a crash interrupted: a `.sealed` file is durable and
    /// becomes the log; a `.compacting` file may be a prefix of its records and is deleted (the
    /// older log is still whole); a `.compact` file (one record, from a version before sealing)
    /// is finished if that record is intact, else deleted.
    private func finishInterruptedCompactions(_ result: inout WALReplay) throws(WALError) {
        for (sequence, name) in try compactionFiles(suffix: Self.sealedSuffix) {
            try finishCompaction(name, sequence: sequence, &result)
        }
        for (_, name) in try compactionFiles(suffix: Self.compactingSuffix) {
            try discardCompaction(name, &result)
        }
        for (sequence, name) in try compactionFiles(suffix: Self.compactSuffix) {
            let data = try POSIXFile.readAll(path(name))
            let complete = data.withUnsafeBytes { raw in
                WALFrame.parse(raw, at: 0, maxRecordBytes: options.maxRecordBytes) == .record(
                    payload: WALFrame.headerBytes..<raw.count, next: raw.count)
            }
            if complete {
                try finishCompaction(name, sequence: sequence, &result)
            } else {
                try discardCompaction(name, &result)
            }
        }
    }

    /// Compaction files `wal-<n>.log<suffix>`, by sequence number.
    private func compactionFiles(suffix: String) throws(WALError) -> [(UInt64, String)] {
        try POSIXFile.list(directory)
            .compactMap { name in Self.segmentSequence(name, suffix: ".log" + suffix).map { ($0, name) } }
            .sorted { $0.0 < $1.0 }
    }

    /// Drops every other segment, then renames the compaction file into place.
    private func finishCompaction(_ name: String, sequence: UInt64, _ result: inout WALReplay) throws(WALError) {
        for segment in try Self.listSegments(directory) where segment.sequence != sequence {
            try POSIXFile.unlink(path(segment.name))
        }
        try syncDirectory()
        try POSIXFile.rename(path(name), path(Self.segmentName(sequence)))
        try syncDirectory()
        result.notes.append("WAL finished an interrupted compaction into \(Self.segmentName(sequence))")
    }

    private func discardCompaction(_ name: String, _ result: inout WALReplay) throws(WALError) {
        try POSIXFile.unlink(path(name))
        try syncDirectory()
        result.notes.append("WAL discarded an incomplete compaction file \(name); the previous log stays")
    }

    // MARK: Quarantine (mid-log corruption)

    /// Journals a quarantine before any file is touched, so that a crash in the middle of
    /// moving files cannot turn corruption into something that later looks like a torn tail
    /// or a silently skipped gap. Format: one line, `<segment> <offset> <kind> <a> <b>`.
    private func writeQuarantineMarker(segment: String, offset: Int, reason: WALBadRecord) throws(WALError) {
        let (kind, a, b): (Int, UInt64, UInt64)
        switch reason {
        case let .truncatedHeader(available): (kind, a, b) = (0, UInt64(available), 0)
        case let .lengthTooLarge(length): (kind, a, b) = (1, UInt64(length), 0)
        case let .pastEndOfSegment(length, available): (kind, a, b) = (2, UInt64(length), UInt64(available))
        case let .checksumMismatch(stored, computed): (kind, a, b) = (3, UInt64(stored), UInt64(computed))
        }
        let markerPath = path(Self.quarantineMarkerName)
        let line = Array("\(segment) \(offset) \(kind) \(a) \(b)\n".utf8)
        let fd = try POSIXFile.open(markerPath, O_WRONLY | O_CREAT | O_TRUNC)
        defer { POSIXFile.close(fd) }
        try POSIXFile.pwriteAll(fd, line, at: 0, path: markerPath)
        if options.fsync { try POSIXFile.dataSync(fd, path: markerPath) }
        try syncDirectory()
    }

    private func finishInterruptedQuarantine(_ result: inout WALReplay) throws(WALError) {
        let markerPath = path(Self.quarantineMarkerName)
        guard POSIXFile.exists(markerPath) else { return }
        let text = String(decoding: try POSIXFile.readAll(markerPath), as: UTF8.self)
        let fields = text.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init)
        guard fields.count == 5, Self.segmentSequence(fields[0]) != nil,
              let offset = Int(fields[1]), let kind = Int(fields[2]),
              let a = UInt64(fields[3]), let b = UInt64(fields[4]) else {
            // Written before any file was touched: if it is incomplete, nothing else happened,
            // and the scan that follows will find the damage again.
            try POSIXFile.unlink(markerPath)
            try syncDirectory()
            return
        }
        let reason: WALBadRecord
        switch kind {
        case 0: reason = .truncatedHeader(available: Int(a))
        case 1: reason = .lengthTooLarge(UInt32(truncatingIfNeeded: a))
        case 2: reason = .pastEndOfSegment(length: UInt32(truncatingIfNeeded: a), available: Int(b))
        default: reason = .checksumMismatch(stored: UInt32(truncatingIfNeeded: a), computed: UInt32(truncatingIfNeeded: b))
        }
        let corruption = try quarantine(segment: fields[0], offset: offset, reason: reason)
        result.corruption = corruption
        result.notes.append("WAL resumed an interrupted corruption repair: " + corruption.description)
    }

    /// Moves every later segment and the bytes of `segment` from `offset` on into `.corrupt`
    /// files, truncates `segment` at `offset`, then removes the marker. Idempotent, so an
    /// interrupted run can simply be repeated.
    private func quarantine(segment: String, offset: Int, reason: WALBadRecord) throws(WALError) -> WALReplay.Corruption {
        let sequence = Self.segmentSequence(segment) ?? 0
        var moved: [String] = []
        var bytes = 0
        for later in try Self.listSegments(directory).reversed() where later.sequence > sequence {
            let target = try uniqueCorruptName(later.name)
            let fd = try POSIXFile.open(path(later.name), O_RDONLY)
            let size = (try? POSIXFile.fileSize(fd, path: path(later.name))) ?? 0
            POSIXFile.close(fd)
            try POSIXFile.rename(path(later.name), path(target))
            moved.append(target)
            bytes += size
        }
        let segmentPath = path(segment)
        if POSIXFile.exists(segmentPath) {
            let data = try POSIXFile.readAll(segmentPath)
            if data.count > offset {
                let target = try uniqueCorruptName(segment)
                let fd = try POSIXFile.open(path(target), O_WRONLY | O_CREAT | O_EXCL)
                do throws(WALError) {
                    try POSIXFile.pwriteAll(fd, Array(data[offset...]), at: 0, path: path(target))
                    if options.fsync { try POSIXFile.dataSync(fd, path: path(target)) }
                } catch {
                    POSIXFile.close(fd)
                    throw error
                }
                POSIXFile.close(fd)
                try truncateFile(segmentPath, to: offset)
                moved.insert(target, at: 0)
                bytes += data.count - offset
            }
        }
        try syncDirectory()
        try POSIXFile.unlink(path(Self.quarantineMarkerName))
        try syncDirectory()
        return WALReplay.Corruption(
            segment: segment, offset: offset, reason: reason, quarantined: moved, bytesQuarantined: bytes)
    }

    /// `<name>.corrupt`, or `<name>.<k>.corrupt` if earlier incidents already used that.
    private func uniqueCorruptName(_ name: String) throws(WALError) -> String {
        var candidate = name + ".corrupt"
        var k = 1
        while POSIXFile.exists(path(candidate)) {
            candidate = "\(name).\(k).corrupt"
            k += 1
        }
        return candidate
    }

    private static func removeTree(_ directory: String) {
        if let names = try? POSIXFile.list(directory) {
            for name in names { try? POSIXFile.unlink(directory + "/" + name) }
        }
        _ = rmdir(directory)
    }
}
