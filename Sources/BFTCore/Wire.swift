import BFTCrypto

/// Canonical big-endian encoding. A signature covers exact bytes, so every value has exactly one
/// encoding and decoding rejects anything that would not re-encode to the same bytes
/// (trailing bytes, non-0/1 booleans, lengths over their named limit).
public enum DecodeError: Error, Equatable, CustomStringConvertible {
    case truncated
    case trailingBytes(Int)
    case tooLarge(field: String, size: Int, limit: Int)
    case invalidValue(String)
    case unknownKind(UInt8)

    public var description: String {
        switch self {
        case .truncated: return "truncated"
        case .trailingBytes(let n): return "\(n) trailing bytes"
        case .tooLarge(let field, let size, let limit): return "\(field) of \(size) exceeds limit \(limit)"
        case .invalidValue(let s): return "invalid value: \(s)"
        case .unknownKind(let k): return "unknown kind \(k)"
        }
    }

    /// Short stable reason used as a counter label.
    public var reason: String {
        switch self {
        case .truncated: return "truncated"
        case .trailingBytes: return "trailing_bytes"
        case .tooLarge: return "too_large"
        case .invalidValue: return "invalid_value"
        case .unknownKind: return "unknown_kind"
        }
    }
}

public struct WireWriter {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 128) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    public mutating func u8(_ v: UInt8) { bytes.append(v) }
    public mutating func u16(_ v: UInt16) { bytes.append(UInt8(v >> 8)); bytes.append(UInt8(truncatingIfNeeded: v)) }
    public mutating func u32(_ v: UInt32) {
        for shift in stride(from: 24, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: v >> UInt32(shift))) }
    }
    public mutating func u64(_ v: UInt64) {
        for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: v >> UInt64(shift))) }
    }
    public mutating func bool(_ v: Bool) { bytes.append(v ? 1 : 0) }
    public mutating func raw(_ v: [UInt8]) { bytes.append(contentsOf: v) }
    /// Length-prefixed (u32) byte string.
    public mutating func blob(_ v: [UInt8]) { u32(UInt32(v.count)); bytes.append(contentsOf: v) }
    public mutating func digest(_ d: Digest) { bytes.append(contentsOf: d.bytes) }
}

public struct WireReader {
    let bytes: [UInt8]
    public private(set) var offset: Int

    public init(_ bytes: [UInt8]) { self.bytes = bytes; self.offset = 0 }

    public var remaining: Int { bytes.count - offset }

    mutating func need(_ n: Int) throws(DecodeError) {
        if n < 0 || remaining < n { throw .truncated }
    }
    public mutating func u8() throws(DecodeError) -> UInt8 {
        try need(1); defer { offset += 1 }; return bytes[offset]
    }
    public mutating func u16() throws(DecodeError) -> UInt16 {
        try need(2); defer { offset += 2 }
        return UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
    }
    public mutating func u32() throws(DecodeError) -> UInt32 {
        try need(4); var v: UInt32 = 0
        for i in 0..<4 { v = v << 8 | UInt32(bytes[offset + i]) }
        offset += 4; return v
    }
    public mutating func u64() throws(DecodeError) -> UInt64 {
        try need(8); var v: UInt64 = 0
        for i in 0..<8 { v = v << 8 | UInt64(bytes[offset + i]) }
        offset += 8; return v
    }
    public mutating func bool() throws(DecodeError) -> Bool {
        switch try u8() {
        case 0: return false
        case 1: return true
        case let b: throw .invalidValue("boolean byte \(b)")
        }
    }
    public mutating func raw(_ n: Int) throws(DecodeError) -> [UInt8] {
        try need(n); defer { offset += n }
        return Array(bytes[offset..<offset + n])
    }
    /// Reads a u32-prefixed byte string, checking `limit` before copying.
    public mutating func blob(field: String, limit: Int) throws(DecodeError) -> [UInt8] {
        let n = Int(try u32())
        if n > limit { throw .tooLarge(field: field, size: n, limit: limit) }
        return try raw(n)
    }
    /// Reads a u32 element count, checking it against `limit` and against the bytes left
    /// (each element takes at least `minElementBytes`), so a forged count cannot force a big allocation.
    public mutating func count(field: String, limit: Int, minElementBytes: Int = 1) throws(DecodeError) -> Int {
        let n = Int(try u32())
        if n > limit { throw .tooLarge(field: field, size: n, limit: limit) }
        if n * max(minElementBytes, 1) > remaining { throw .truncated }
        return n
    }
    public mutating func digest() throws(DecodeError) -> Digest {
        let b = try raw(Digest.byteCount)
        return Digest(bytes: b)!
    }
    public func finish() throws(DecodeError) {
        if remaining != 0 { throw .trailingBytes(remaining) }
    }
}
