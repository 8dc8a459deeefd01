import Foundation
import Testing
@testable import BFTStorage

/// A stand-in for SHA-256 (this module has no crypto): 8 CRC32Cs with different seeds.
private let toyHash: CheckpointFiles.Hash = { buffer in
    var out: [UInt8] = []
    for seed in 0..<8 as Range<UInt32> {
        let crc = CRC32C.update(seed &* 0x9E37_79B9, buffer)
        out += [UInt8(truncatingIfNeeded: crc), UInt8(truncatingIfNeeded: crc >> 8),
                UInt8(truncatingIfNeeded: crc >> 16), UInt8(truncatingIfNeeded: crc >> 24)]
    }
    return out
}

private func withDirectory(_ body: (String) throws -> Void) throws {
    let path = (NSTemporaryDirectory() as NSString).appendingPathComponent("bft-ckpt-test-\(UUID().uuidString)")
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: path) }
    try body(path)
}

private func bytes(_ path: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))) }

@Suite struct CheckpointFilesTests {
    /// The documented layout, 0600, no temporary left, and a checked read.
    @Test func writeProducesTheDocumentedFileAndReadsBack() throws {
        try withDirectory { dir in
            let files = CheckpointFiles(directory: dir, fsync: true, hash: toyHash)
            let state = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
            let digest = try files.write(seq: 0x0102_0304_0506, state: state)
            #expect(digest == state.withUnsafeBytes { toyHash($0) })
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["checkpoint-00000001108152157446.state"])
            let path = files.path(seq: 0x0102_0304_0506)
            let raw = try bytes(path)
            #expect(raw.count == CheckpointFiles.headerBytes + state.count)
            #expect(Array(raw[0..<8]) == Array("BFTSTATE".utf8))
            #expect(Array(raw[8..<16]) == [1, 0, 0, 0, 0, 0, 0, 0])
            #expect(Array(raw[16..<24]) == [6, 5, 4, 3, 2, 1, 0, 0])
            #expect(CheckpointFiles.readLE(raw, at: 24, bytes: 8) == UInt64(state.count))
            #expect(Array(raw[32..<64]) == digest)
            #expect(Array(raw[64...]) == state)
            let mode = (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber)?.intValue
            #expect(mode == 0o600)
            #expect(try files.read(seq: 0x0102_0304_0506, expectedLength: state.count, expectedDigest: digest) == state)
            // An empty state is a valid checkpoint too.
            let empty = try files.write(seq: 1, state: [])
            #expect(try files.read(seq: 1, expectedLength: 0, expectedDigest: empty) == [])
        }
    }

    /// Every disagreement with the caller's reference is `damaged`, a missing file `missing`.
    @Test func readChecksWhatTheLogSays() throws {
        try withDirectory { dir in
            let files = CheckpointFiles(directory: dir, fsync: false, hash: toyHash)
            let state = [UInt8](repeating: 7, count: 4096)
            let digest = try files.write(seq: 9, state: state)
            #expect(throws: CheckpointFileError.missing(file: CheckpointFiles.fileName(seq: 8))) {
                _ = try files.read(seq: 8, expectedLength: state.count, expectedDigest: digest)
            }
            var otherDigest = digest
            otherDigest[0] ^= 1
            for (length, expected) in [(state.count + 1, digest), (state.count, otherDigest)] {
                #expect {
                    _ = try files.read(seq: 9, expectedLength: length, expectedDigest: expected)
                } throws: { error in
                    guard case .damaged(let file, _)? = error as? CheckpointFileError else { return false }
                    return file == CheckpointFiles.fileName(seq: 9)
                }
            }
            // A file renamed to another sequence number is not accepted for it.
            try FileManager.default.copyItem(atPath: files.path(seq: 9), toPath: files.path(seq: 10))
            #expect(throws: CheckpointFileError.self) {
                _ = try files.read(seq: 10, expectedLength: state.count, expectedDigest: digest)
            }
        }
    }

    @Test func removeAllKeepsOnlyWhatIsReferenced() throws {
        try withDirectory { dir in
            let files = CheckpointFiles(directory: dir, fsync: false, hash: toyHash)
            for seq in [3, 5, 8] as [UInt64] { _ = try files.write(seq: seq, state: [UInt8(seq)]) }
            try Data([1]).write(to: URL(fileURLWithPath: files.path(seq: 9) + ".tmp"))
            try Data([1]).write(to: URL(fileURLWithPath: dir + "/wal-00000000000000000001.log"))
            try Data([1]).write(to: URL(fileURLWithPath: dir + "/checkpoint-notanumber.state"))
            #expect(try files.list() == [3, 5, 8])
            let removed = try files.removeAll(except: [5])
            #expect(Set(removed) == [CheckpointFiles.fileName(seq: 3), CheckpointFiles.fileName(seq: 8), CheckpointFiles.fileName(seq: 9) + ".tmp"])
            #expect(try files.list() == [5])
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
                == ["checkpoint-00000000000000000005.state", "checkpoint-notanumber.state", "wal-00000000000000000001.log"])
        }
    }
}
