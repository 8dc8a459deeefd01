import BFTCore

/// The simulator's only source of randomness (SplitMix64, shared with the Byzantine wrappers).
/// One seed decides everything.
public typealias SimRandom = SplitMix64

extension SplitMix64 {
    public mutating func double(_ range: ClosedRange<Double>) -> Double { Double.random(in: range, using: &self) }

    /// An independent stream for a sub-component, so adding draws in one place does not shift another.
    public mutating func fork() -> SplitMix64 { SplitMix64(seed: next()) }
}

/// FNV-1a 64: a cheap running hash of the trace, printed so a replay can be compared.
public struct TraceHash {
    public private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    public mutating func mix(_ v: UInt64) {
        var x = v
        for _ in 0..<8 {
            value ^= x & 0xff
            value = value &* 0x100_0000_01b3
            x >>= 8
        }
    }

    public mutating func mix(bytes: [UInt8]) { for b in bytes { value ^= UInt64(b); value = value &* 0x100_0000_01b3 } }
}
