import BFTCore
import BFTCrypto

/// Why a key-value snapshot was refused by `restore(from:)`.
public struct KVSnapshotError: Error, Equatable, CustomStringConvertible {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { "invalid key-value snapshot: \(reason)" }
}

/// A replicated in-memory key-value store with a text protocol:
///
/// | command | reply |
/// |---|---|
/// | `SET key value` | `OK` (value = everything after the key's single separating space; may contain spaces or be empty) |
/// | `GET key` | the value, or `(nil)` if absent |
/// | `DEL key` | `1` if the key existed, else `0` |
/// | anything else | `ERR <reason>` |
///
/// Keys and values are byte strings: commands are parsed byte-wise, so invalid UTF-8 is stored
/// and returned as is and can never crash the parser. Verbs are case-insensitive (like Redis).
/// Keys are separated by exactly one space and may not contain spaces. A stored value that
/// happens to be `(nil)` reads back as `(nil)`, as in `redis-cli`.
///
/// Every size a client controls is bounded (`Limits`), and the snapshot never grows past the
/// cluster's `maxApplicationStateBytes`: a SET that would push it past gets a deterministic
/// `ERR store full` on every replica, before the state grows (`Limits(budget:)`).
public final class KVApplication: ReplicatedApplication {
    /// Bounds on the store. A command that would exceed one gets `ERR` and changes nothing.
    public struct Limits: Sendable, Equatable {
        /// Most keys held at once.
        public var maxKeys: Int = 1_000_000
        /// Longest key, in bytes.
        public var maxKeyBytes: Int = 1024
        /// Longest value, in bytes; at most `MessageLimits.maxResultBytes` so GET replies fit.
        public var maxValueBytes: Int = 60 * 1024
        /// Most bytes of keys plus values in total. 16 MiB leaves the other half of the 32 MiB
        /// state-transfer limit for the client table and the snapshot's framing.
        public var maxTotalBytes: Int = 16 * 1024 * 1024
        /// Largest snapshot, in bytes (the application-state budget): version, count, and a
        /// 4-byte length before every key and value.
        public var maxSnapshotBytes: Int = Int.max

        public init() {}
        public static let `default` = Limits()

        /// The limits that fit the cluster's budget: a value fits a GET reply, the snapshot fits
        /// `maxApplicationStateBytes`.
        public init(budget: ProtocolConfig) {
            self.init()
            maxValueBytes = budget.maxResultBytes
            maxKeyBytes = min(maxKeyBytes, max(1, budget.maxOperationBytes - 5))
            maxSnapshotBytes = budget.maxApplicationStateBytes
            maxTotalBytes = budget.maxApplicationStateBytes  // the snapshot check below is the tighter one
        }
    }

    /// Size of `snapshot()` now: version and count, then a length-prefixed key and value per entry.
    public var snapshotBytes: Int { 9 + totalBytes + 8 * store.count }

    public let limits: Limits
    private var store: [[UInt8]: [UInt8]] = [:]
    /// Sum of key and value lengths, kept incrementally for the `maxTotalBytes` check.
    public private(set) var totalBytes = 0

    public init(limits: Limits = .default) {
        self.limits = limits
    }

    /// Number of keys stored.
    public var count: Int { store.count }

    /// Direct read access, for tests and tools (not part of the replicated interface).
    public func value(for key: [UInt8]) -> [UInt8]? { store[key] }

    // MARK: - Commands

    private static let space = UInt8(ascii: " ")

    public func execute(_ operation: [UInt8], context: ExecutionContext) -> [UInt8] {
        Array(reply(to: operation).utf8Bytes)
    }

    private enum Reply {
        case text(String)
        case bytes([UInt8])
        var utf8Bytes: [UInt8] {
            switch self {
            case .text(let s): return Array(s.utf8)
            case .bytes(let b): return b
            }
        }
    }

    private func reply(to op: [UInt8]) -> Reply {
        if op.isEmpty { return .text("ERR empty command") }
        let verbEnd = op.firstIndex(of: Self.space) ?? op.endIndex
        let verb = Self.uppercased(op[..<verbEnd])
        let rest = verbEnd < op.endIndex ? op[(verbEnd + 1)...] : op[op.endIndex...]
        switch verb {
        case "SET":
            guard verbEnd < op.endIndex, let keyEnd = rest.firstIndex(of: Self.space) else {
                return .text("ERR usage: SET key value")
            }
            let key = Array(rest[..<keyEnd])
            let value = Array(rest[(keyEnd + 1)...])
            if let err = checkKey(key) { return .text(err) }
            if value.count > limits.maxValueBytes { return .text("ERR value too long (max \(limits.maxValueBytes) bytes)") }
            let old = store[key]
            if old == nil && store.count >= limits.maxKeys { return .text("ERR too many keys (max \(limits.maxKeys))") }
            let newTotal = totalBytes - (old.map { $0.count + key.count } ?? 0) + key.count + value.count
            let newSnapshot = 9 + newTotal + 8 * (store.count + (old == nil ? 1 : 0))
            if newSnapshot > limits.maxSnapshotBytes {
                return .text("ERR store full (state budget \(limits.maxSnapshotBytes) bytes)")
            }
            if newTotal > limits.maxTotalBytes { return .text("ERR store full (max \(limits.maxTotalBytes) bytes)") }
            store[key] = value
            totalBytes = newTotal
            return .text("OK")
        case "GET", "DEL":
            guard verbEnd < op.endIndex, !rest.contains(Self.space) else { return .text("ERR usage: \(verb) key") }
            let key = Array(rest)
            if let err = checkKey(key) { return .text(err) }
            if verb == "GET" { return store[key].map { .bytes($0) } ?? .text("(nil)") }
            guard let old = store.removeValue(forKey: key) else { return .text("0") }
            totalBytes -= key.count + old.count
            return .text("1")
        default:
            return .text("ERR unknown command (expected SET, GET or DEL)")
        }
    }

    private func checkKey(_ key: [UInt8]) -> String? {
        if key.isEmpty { return "ERR empty key" }
        if key.count > limits.maxKeyBytes { return "ERR key too long (max \(limits.maxKeyBytes) bytes)" }
        return nil
    }

    /// ASCII upper-casing of a short verb; anything longer than 3 bytes or non-ASCII can never
    /// match, so it is mapped to a fixed non-verb without decoding it.
    private static func uppercased(_ bytes: ArraySlice<UInt8>) -> String {
        guard bytes.count == 3 else { return "" }
        var out = ""
        for b in bytes {
            guard b < 0x80 else { return "" }
            let u = (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z")) ? b - 32 : b
            out.unicodeScalars.append(Unicode.Scalar(u))
        }
        return out
    }

    // MARK: - Snapshots

    /// Format version byte, so a future format can be told apart instead of misparsed.
    private static let snapshotVersion: UInt8 = 1

    /// `version (u8) ‖ count (u64) ‖ (keyLen u32 ‖ key ‖ valueLen u32 ‖ value)*` with keys in
    /// ascending byte order, all integers big-endian. Sorting makes the bytes a function of the
    /// contents alone (dictionary order differs between processes because of hash seeding).
    public func snapshot() -> [UInt8] {
        let keys = store.keys.sorted { $0.lexicographicallyPrecedes($1) }
        var w = WireWriter(capacity: 9 + totalBytes + 8 * keys.count)
        w.u8(Self.snapshotVersion)
        w.u64(UInt64(keys.count))
        for k in keys {
            w.blob(k)
            w.blob(store[k]!)
        }
        return w.bytes
    }

    /// Replaces the store with a snapshot's contents. Everything is checked before anything
    /// changes — the version, lengths against `limits`, strictly ascending keys (which also
    /// rules out duplicates) and no trailing bytes — so a malformed snapshot leaves the
    /// store untouched.
    public func restore(from snapshot: [UInt8]) throws {
        var r = WireReader(snapshot)
        var newStore: [[UInt8]: [UInt8]] = [:]
        var newTotal = 0
        do {
            let version = try r.u8()
            guard version == Self.snapshotVersion else { throw KVSnapshotError("unknown version \(version)") }
            let count = try r.u64()
            // Each entry needs at least 9 bytes (two lengths and a non-empty key).
            guard count <= UInt64(limits.maxKeys), count <= UInt64(r.remaining / 9) else {
                throw KVSnapshotError("entry count \(count) exceeds the limit or the data")
            }
            newStore.reserveCapacity(Int(count))
            var previous: [UInt8]? = nil
            for _ in 0..<count {
                let key = try r.blob(field: "key", limit: limits.maxKeyBytes)
                let value = try r.blob(field: "value", limit: limits.maxValueBytes)
                guard !key.isEmpty else { throw KVSnapshotError("empty key") }
                guard !key.contains(Self.space) else { throw KVSnapshotError("key contains a space") }
                if let p = previous, !p.lexicographicallyPrecedes(key) {
                    throw KVSnapshotError("keys are not strictly ascending")
                }
                newTotal += key.count + value.count
                guard newTotal <= limits.maxTotalBytes else { throw KVSnapshotError("more than \(limits.maxTotalBytes) bytes") }
                newStore[key] = value
                previous = key
            }
            try r.finish()
        } catch let e as KVSnapshotError {
            throw e
        } catch {
            throw KVSnapshotError("\(error)")
        }
        store = newStore
        totalBytes = newTotal
    }
}
