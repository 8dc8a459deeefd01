/// CRC-32C (Castagnoli): reflected polynomial 0x82F63B78, initial value 0xFFFFFFFF,
/// final XOR 0xFFFFFFFF. Check value: `checksum("123456789") == 0xE3069283`.
///
/// Why Castagnoli rather than the zlib CRC-32: it has a better Hamming distance at the
/// record sizes a WAL writes, and it is the checksum other logs use (ext4/btrfs metadata,
/// iSCSI, LevelDB/RocksDB), so a segment can be checked with standard tools.
///
/// Why slicing-by-8 in plain Swift: it needs no C shim or CPU-specific intrinsics, keeps the
/// module free of dependencies, and runs at roughly 1–2 GB/s in release builds, which is far
/// above the speed of an fdatasync-bound log.
public enum CRC32C {
    /// Eight 256-entry tables laid out back to back (`tables[k * 256 + i]`).
    /// `tables[0...255]` is the classic byte-at-a-time table; table `k` advances a byte
    /// through `k` further zero bytes, which lets the loop consume 8 bytes per step.
    static let tables: [UInt32] = {
        var t = [UInt32](repeating: 0, count: 8 * 256)
        for i in 0..<256 {
            var c = UInt32(i)
            for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
            t[i] = c
        }
        for k in 1..<8 {
            for i in 0..<256 {
                let prev = t[(k - 1) * 256 + i]
                t[k * 256 + i] = (prev >> 8) ^ t[Int(prev & 0xFF)]
            }
        }
        return t
    }()

    /// The CRC-32C of `bytes`.
    public static func checksum(_ bytes: some Sequence<UInt8>) -> UInt32 {
        update(0, bytes)
    }

    /// Continues a checksum: `update(checksum(a), b) == checksum(a + b)`.
    public static func update(_ crc: UInt32, _ bytes: some Sequence<UInt8>) -> UInt32 {
        if let fast = bytes.withContiguousStorageIfAvailable({ update(crc, UnsafeRawBufferPointer($0)) }) {
            return fast
        }
        return update(crc, Array(bytes))
    }

    /// Continues a checksum over raw memory (the hot path used by the log).
    public static func update(_ crc: UInt32, _ buffer: UnsafeRawBufferPointer) -> UInt32 {
        var c = ~crc
        guard var p = buffer.baseAddress else { return crc }
        var n = buffer.count
        tables.withUnsafeBufferPointer { t in
            while n >= 8 {
                let lo = UInt32(littleEndian: p.loadUnaligned(as: UInt32.self)) ^ c
                let hi = UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
                c = t[7 * 256 + Int(lo & 0xFF)] ^ t[6 * 256 + Int((lo >> 8) & 0xFF)]
                    ^ t[5 * 256 + Int((lo >> 16) & 0xFF)] ^ t[4 * 256 + Int(lo >> 24)]
                    ^ t[3 * 256 + Int(hi & 0xFF)] ^ t[2 * 256 + Int((hi >> 8) & 0xFF)]
                    ^ t[1 * 256 + Int((hi >> 16) & 0xFF)] ^ t[Int(hi >> 24)]
                p += 8
                n -= 8
            }
            while n > 0 {
                c = (c >> 8) ^ t[Int((c ^ UInt32(p.load(as: UInt8.self))) & 0xFF)]
                p += 1
                n -= 1
            }
        }
        return ~c
    }
}
