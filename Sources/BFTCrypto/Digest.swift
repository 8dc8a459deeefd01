/// A 32-byte SHA-256 digest.
///
/// Why four big-endian `UInt64` words instead of `[UInt8]`: digests are used as
/// dictionary keys and compared constantly by the protocol (request/batch ids,
/// checkpoints), so they should be allocation-free value types. Storing the words
/// big-endian makes word-wise tuple comparison identical to lexicographic byte
/// comparison, which is what `Comparable` promises.
public struct Digest: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// Size of a SHA-256 digest in bytes.
    public static let byteCount = 32

    /// The all-zero digest; a convenient sentinel (e.g. "no previous state").
    public static let zero = Digest(w0: 0, w1: 0, w2: 0, w3: 0)

    private let w0: UInt64
    private let w1: UInt64
    private let w2: UInt64
    private let w3: UInt64

    private init(w0: UInt64, w1: UInt64, w2: UInt64, w3: UInt64) {
        self.w0 = w0
        self.w1 = w1
        self.w2 = w2
        self.w3 = w3
    }

    /// Builds a digest from exactly 32 bytes (precondition); internal fast path for hashing.
    init(unsafeBytes p: UnsafeRawBufferPointer) {
        precondition(p.count == Digest.byteCount, "Digest needs exactly 32 bytes")
        w0 = UInt64(bigEndian: p.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        w1 = UInt64(bigEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        w2 = UInt64(bigEndian: p.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
        w3 = UInt64(bigEndian: p.loadUnaligned(fromByteOffset: 24, as: UInt64.self))
    }

    /// Returns nil unless `bytes` has exactly 32 elements, so untrusted wire data
    /// can be validated without crashing.
    public init?(bytes: [UInt8]) {
        guard bytes.count == Digest.byteCount else { return nil }
        self = bytes.withUnsafeBytes { Digest(unsafeBytes: $0) }
    }

    /// Parses 64 hex characters (either case); nil otherwise.
    public init?(hex: String) {
        guard let bytes = Hex.decode(hex) else { return nil }
        self.init(bytes: bytes)
    }

    /// The 32 digest bytes, in the order SHA-256 produced them.
    public var bytes: [UInt8] {
        withUnsafeBytes { Array($0) }
    }

    /// Gives temporary access to the 32 bytes without allocating; useful when
    /// feeding a digest into another hash or an encoder.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        var be = (w0.bigEndian, w1.bigEndian, w2.bigEndian, w3.bigEndian)
        return try Swift.withUnsafeBytes(of: &be) { try body($0) }
    }

    /// Full lowercase hex (64 characters).
    public var hex: String {
        withUnsafeBytes { Hex.encode($0) }
    }

    /// Short form (first 8 hex characters + "…") to keep logs readable; use `hex`
    /// when the full value is needed.
    public var description: String {
        String(hex.prefix(8)) + "…"
    }

    /// Lexicographic comparison of the bytes (big-endian words make this exact).
    public static func < (lhs: Digest, rhs: Digest) -> Bool {
        (lhs.w0, lhs.w1, lhs.w2, lhs.w3) < (rhs.w0, rhs.w1, rhs.w2, rhs.w3)
    }
}
