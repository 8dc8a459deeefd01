import BFTByzantine
import BFTCore
import Foundation

/// A scenario as a small JSON file, so a failing seed (a Twins partition schedule, say) can be
/// kept as a regression test and replayed with `bft-sim --scenario FILE`. The seed stays in the
/// file: it drives the network randomness, so the file plus the seed replays the same trace.
/// Test-only knobs (careless clients and the like) are not part of the file.
extension Scenario {
    struct File: Codable {
        struct Partition: Codable { var start: UInt64; var end: UInt64; var isolated: [Int]; var oneWay: Bool }
        struct Crash: Codable { var replica: Int; var from: UInt64; var to: UInt64; var amnesia: Bool }
        struct Byzantine: Codable { var replica: Int; var mode: String }
        struct Deaf: Codable { var replica: Int; var start: UInt64; var end: UInt64 }
        var seed: UInt64
        var n: Int
        var clients: Int
        var requestsPerClient: Int
        var clientWindow: Int
        var faultTicks: UInt64
        var livenessTicks: UInt64
        var dropRate: Double
        var duplicateRate: Double
        var maxDelayTicks: Int
        var partitions: [Partition]
        var crashes: [Crash]
        var byzantine: [Byzantine]
        var useEd25519: Bool
        var payloadBytes: Int
        var twins: TwinsPlan?
        var byzantineClient: Int?
        var crashAtWorstMoment: Bool?
        var deaf: [Deaf]?
        /// Free text: why the file was kept.
        var note: String?
    }

    public enum FileError: Error, CustomStringConvertible {
        case unknownMode(String)
        case invalid(String)
        public var description: String {
            switch self {
            case .unknownMode(let m): return "unknown Byzantine mode \(m)"
            case .invalid(let why): return "invalid scenario: \(why)"
            }
        }
    }

    /// The scenario as pretty-printed JSON with sorted keys (stable bytes for a given scenario).
    public func jsonData(note: String? = nil) throws -> Data {
        let file = File(seed: seed, n: n, clients: clients, requestsPerClient: requestsPerClient, clientWindow: clientWindow,
                        faultTicks: faultTicks, livenessTicks: livenessTicks, dropRate: dropRate, duplicateRate: duplicateRate,
                        maxDelayTicks: maxDelayTicks,
                        partitions: partitions.map { .init(start: $0.start, end: $0.end, isolated: $0.isolated, oneWay: $0.oneWay) },
                        crashes: crashes.map { .init(replica: $0.replica, from: $0.from, to: $0.to, amnesia: $0.amnesia) },
                        byzantine: byzantine.map { .init(replica: $0.replica, mode: $0.mode.rawValue) },
                        useEd25519: useEd25519, payloadBytes: payloadBytes, twins: twins, byzantineClient: byzantineClient,
                        crashAtWorstMoment: crashAtWorstMoment ? true : nil,
                        deaf: deaf.isEmpty ? nil : deaf.map { .init(replica: $0.replica, start: $0.start, end: $0.end) }, note: note)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(file)
    }

    /// Reads a scenario written by `jsonData`, checking what the simulator relies on.
    public init(json: Data) throws {
        let f = try JSONDecoder().decode(File.self, from: json)
        guard f.n >= 4 && f.n <= 64 else { throw FileError.invalid("n = \(f.n)") }
        guard f.clients >= 1, f.clientWindow >= 1, f.maxDelayTicks >= 1 else { throw FileError.invalid("clients, window and delay must be positive") }
        let inRange = { (r: Int) in r >= 0 && r < f.n }
        guard f.partitions.allSatisfy({ $0.isolated.allSatisfy(inRange) }), f.crashes.allSatisfy({ inRange($0.replica) }),
              (f.deaf ?? []).allSatisfy({ inRange($0.replica) }),
              f.byzantine.allSatisfy({ inRange($0.replica) }) else { throw FileError.invalid("replica id out of range") }
        var byz: [(replica: ReplicaID, mode: ByzantineMode)] = []
        for b in f.byzantine {
            guard let mode = ByzantineMode(rawValue: b.mode) else { throw FileError.unknownMode(b.mode) }
            byz.append((b.replica, mode))
        }
        if let t = f.twins {
            guard inRange(t.replica), !byz.contains(where: { $0.replica == t.replica }) else { throw FileError.invalid("twinned replica") }
            guard t.windows.allSatisfy({ $0.groups.allSatisfy { $0.allSatisfy { $0 >= 0 && $0 <= f.n } } }) else {
                throw FileError.invalid("twins group node out of range")
            }
        }
        guard byz.count + (f.twins == nil ? 0 : 1) <= (f.n - 1) / 3 else { throw FileError.invalid("more than f faulty replicas") }
        self.init(seed: f.seed, n: f.n, clients: f.clients, requestsPerClient: f.requestsPerClient, clientWindow: f.clientWindow,
                  faultTicks: f.faultTicks, livenessTicks: f.livenessTicks, dropRate: f.dropRate, duplicateRate: f.duplicateRate,
                  maxDelayTicks: f.maxDelayTicks, partitions: f.partitions.map { ($0.start, $0.end, $0.isolated, $0.oneWay) },
                  crashes: f.crashes.map { ($0.replica, $0.from, $0.to, $0.amnesia) }, byzantine: byz, useEd25519: f.useEd25519)
        payloadBytes = f.payloadBytes
        twins = f.twins
        if let c = f.byzantineClient {
            guard c >= 0 && c < f.clients else { throw FileError.invalid("byzantine client out of range") }
            byzantineClient = c
        }
        crashAtWorstMoment = f.crashAtWorstMoment ?? false
        deaf = (f.deaf ?? []).map { ($0.replica, $0.start, $0.end) }
    }
}
