/// On-disk framing of one record. A segment is nothing but frames back to back (no file
/// header), so a segment's size is exactly the sum of its frames:
///
/// ```
/// offset 0   u32 little-endian   N = payload length in bytes (0 allowed)
/// offset 4   u32 little-endian   CRC32C over bytes [0, 4) (the length field) followed by
///                                the N payload bytes
/// offset 8   N bytes             payload (opaque to this module)
/// ```
///
/// Why the CRC also covers the length field: `crc32c([]) == 0`, so with a payload-only CRC an
/// all-zero header would be a valid empty record, and the zero-filled tails some filesystems
/// leave after a crash would replay as phantom records. Covering the length makes an all-zero
/// header invalid (`crc32c([0, 0, 0, 0]) == 0x48674BC7`) and catches a damaged length directly.
enum WALFrame {
    static let headerBytes = 8

    /// Appends the frame for `payload` to `buffer`. The caller has checked the size.
    static func encode(_ payload: [UInt8], into buffer: inout [UInt8]) {
        let length = UInt32(payload.count)
        let lengthBytes: [UInt8] = [
            UInt8(truncatingIfNeeded: length), UInt8(truncatingIfNeeded: length >> 8),
            UInt8(truncatingIfNeeded: length >> 16), UInt8(truncatingIfNeeded: length >> 24),
        ]
        let crc = CRC32C.update(CRC32C.update(0, lengthBytes), payload)
        buffer.reserveCapacity(buffer.count + headerBytes + payload.count)
        buffer.append(contentsOf: lengthBytes)
        buffer.append(UInt8(truncatingIfNeeded: crc))
        buffer.append(UInt8(truncatingIfNeeded: crc >> 8))
        buffer.append(UInt8(truncatingIfNeeded: crc >> 16))
        buffer.append(UInt8(truncatingIfNeeded: crc >> 24))
        buffer.append(contentsOf: payload)
    }

    static func encode(_ payload: [UInt8]) -> [UInt8] {
        var buffer: [UInt8] = []
        encode(payload, into: &buffer)
        return buffer
    }

    enum Parsed: Equatable {
        /// An intact record: its payload's byte range and the offset of the next frame.
        case record(payload: Range<Int>, next: Int)
        case bad(WALBadRecord)
    }

    static func parse(_ data: UnsafeRawBufferPointer, at offset: Int, maxRecordBytes: Int) -> Parsed {
        let available = data.count - offset
        if available < headerBytes { return .bad(.truncatedHeader(available: available)) }
        let length = UInt32(littleEndian: data.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
        let stored = UInt32(littleEndian: data.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self))
        if UInt64(length) > UInt64(maxRecordBytes) { return .bad(.lengthTooLarge(length)) }
        let payloadStart = offset + headerBytes
        let payloadEnd = payloadStart + Int(length)
        if payloadEnd > data.count {
            return .bad(.pastEndOfSegment(length: length, available: data.count - payloadStart))
        }
        let computed = CRC32C.update(
            CRC32C.update(0, UnsafeRawBufferPointer(rebasing: data[offset..<(offset + 4)])),
            UnsafeRawBufferPointer(rebasing: data[payloadStart..<payloadEnd]))
        if computed != stored { return .bad(.checksumMismatch(stored: stored, computed: computed)) }
        return .record(payload: payloadStart..<payloadEnd, next: payloadEnd)
    }

    /// Whether an intact record starts anywhere after the bad record at `offset` — the test
    /// that separates mid-log corruption (durable records follow) from a torn tail (only the
    /// remains of the interrupted last write follow).
    ///
    /// First the cheap exact case: if the length field is plausible, the next frame should
    /// start right after the claimed payload (a flipped payload or CRC byte). Otherwise the
    /// length itself may be damaged, so every later byte offset is tried as a frame start.
    /// Hashing candidate payloads is bounded by `crcBudgetBytes`; when the budget runs out
    /// the answer is `true` (corruption), because misreading corruption as a torn tail would
    /// silently forget durable records, while the opposite mistake only costs recovering that
    /// part from peers.
    static func intactRecordFollows(
        _ data: UnsafeRawBufferPointer, badRecordAt offset: Int, maxRecordBytes: Int,
        crcBudgetBytes: Int = 64 * 1024 * 1024
    ) -> Bool {
        if data.count - offset >= headerBytes {
            let length = Int(UInt32(littleEndian: data.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
            let next = offset + headerBytes + length
            if length <= maxRecordBytes && next < data.count,
               case .record = parse(data, at: next, maxRecordBytes: maxRecordBytes) {
                return true
            }
        }
        var budget = crcBudgetBytes
        var candidate = offset + 1
        while candidate + headerBytes <= data.count {
            let length = Int(UInt32(littleEndian: data.loadUnaligned(fromByteOffset: candidate, as: UInt32.self)))
            if length <= maxRecordBytes && candidate + headerBytes + length <= data.count {
                budget -= length + 4
                if budget < 0 { return true }
                if case .record = parse(data, at: candidate, maxRecordBytes: maxRecordBytes) { return true }
            }
            candidate += 1
        }
        return false
    }
}
