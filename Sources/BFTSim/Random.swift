/// SplitMix64: the simulator's only source of randomness. One seed decides everything.
public struct SimRandom: RandomNumberGenerator {
    var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A probability draw.
    public mutating func chance(_ p: Double) -> Bool { p > 0 && Double(next() >> 11) / Double(1 << 53) < p }

    public mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &self) }

    public mutating func double(_ range: ClosedRange<Double>) -> Double { Double.random(in: range, using: &self) }

    /// An independent stream for a sub-component, so adding draws in one place does not shift another.
    public mutating func fork() -> SimRandom { SimRandom(seed: next()) }
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
