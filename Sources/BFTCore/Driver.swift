/// Where a driver makes a step's records durable before it sends anything (persist before send).
/// The node's write-ahead log is one; `InMemoryLog` serves the simulator, the test cluster and
/// the micro-benchmarks.
public protocol PersistencePort {
    /// Makes `records` durable, in order, with one sync. Throws when it cannot: the caller must
    /// then stop the replica rather than send what it could forget.
    mutating func persist(_ records: [PersistRecord]) throws
    /// What a restarted replica recovers from (oldest first).
    func recoverableRecords() throws -> [PersistRecord]
}

extension PersistRecord {
    /// A checkpoint record starts the log afresh: the core writes everything still needed above
    /// a checkpoint right after it (`Replica.persistCheckpoint`), so every earlier record can go.
    public var compactsLog: Bool {
        if case .checkpoint = self { return true }
        return false
    }
}

/// Persisted records kept in memory, compacted by the same rule as the node's write-ahead log.
/// Records go through their codec, as they would on disk, so a record that does not round-trip
/// shows up here too.
public struct InMemoryLog: PersistencePort {
    public private(set) var encoded: [[UInt8]] = []
    let limits: MessageLimits

    public init(limits: MessageLimits = .default) { self.limits = limits }

    public mutating func persist(_ records: [PersistRecord]) {
        for record in records {
            if record.compactsLog { encoded.removeAll() }
            encoded.append(record.encoded())
        }
    }

    public func recoverableRecords() throws -> [PersistRecord] {
        try encoded.map { bytes throws(DecodeError) in try PersistRecord.decode(bytes, limits: limits) }
    }

    public var records: [PersistRecord] { (try? recoverableRecords()) ?? [] }
}

/// Drives one `Replica`, in the manner of etcd raft's `RawNode`: the caller feeds it verified
/// messages and the time; the driver steps the core and carries out its output in the order the
/// output's contract requires — persist (through the `PersistencePort`), then deliver (the
/// caller's application log), then send (with `Destination`s resolved to principals and the
/// optional `OutboundInterceptor` applied). The node, the simulator, the rule tests' cluster and
/// the micro-benchmarks all drive the core through it, so the contract is written once.
public struct ReplicaDriver<Log: PersistencePort> {
    /// Settable inside the module (and by `@testable` rule tests that put a replica into a state).
    public internal(set) var replica: Replica
    public var log: Log
    /// Fault injection (test-only Byzantine behaviour): a decorator on send.
    public var interceptor: (any OutboundInterceptor)?
    /// Run `Replica.invariantViolations()` after every step and trap on a violation. On in
    /// debug builds by default, and always in the simulator.
    public var checkInvariants: Bool
    /// With `checkInvariants`: keep the violations in `invariantViolations` instead of trapping,
    /// so the simulator can report them as its seed's failure (with the seed that replays them)
    /// rather than end the whole run.
    public var recordInvariantViolations = false
    /// Violations found by the checks after each step (only with `recordInvariantViolations`).
    public private(set) var invariantViolations: [String] = []

    public init(replica: Replica, log: Log, interceptor: (any OutboundInterceptor)? = nil, checkInvariants: Bool = _isDebugAssertConfiguration()) {
        self.replica = replica
        self.log = log
        self.interceptor = interceptor
        self.checkInvariants = checkInvariants
    }

    /// Where one message goes after fan-out: every principal in `recipients`.
    public typealias Send = (_ message: Message, _ recipients: [Principal]) -> Void

    /// Steps on a group of verified inputs (the primary cuts one batch for all of them) and
    /// carries out the output. Returns the output for the caller's metrics and logs.
    @discardableResult
    public mutating func step(_ inputs: [VerifiedMessage], deliver: ([Delivery]) -> Void = { _ in }, send: Send) throws -> ReplicaOutput {
        let out = stepOnly(inputs)
        try apply(out, deliver: deliver, send: send)
        return out
    }

    /// Advances the replica's clock to `now` (ticks, from outside) and carries out the output.
    @discardableResult
    public mutating func tick(now: UInt64, deliver: ([Delivery]) -> Void = { _ in }, send: Send) throws -> ReplicaOutput {
        let out = tickOnly(now: now)
        try apply(out, deliver: deliver, send: send)
        return out
    }

    /// The first half of `step`: feeds the inputs and returns the output without carrying it
    /// out, for a caller that must look at it first (the node stops when its application failed
    /// during the step, before anything is persisted or sent). Follow with `apply`.
    public mutating func stepOnly(_ inputs: [VerifiedMessage]) -> ReplicaOutput {
        for input in inputs { interceptor?.observe(input.message) }
        let out = replica.step(inputs)
        verifyInvariants()
        return out
    }

    /// The first half of `tick`; follow with `apply`.
    public mutating func tickOnly(now: UInt64) -> ReplicaOutput {
        let out = replica.tick(now: now)
        verifyInvariants()
        return out
    }

    /// Carries out an output: persist, then deliver, then send.
    public mutating func apply(_ out: ReplicaOutput, deliver: ([Delivery]) -> Void = { _ in }, send: Send) throws {
        if !out.persist.isEmpty { try log.persist(out.persist) }
        if !out.deliveries.isEmpty { deliver(out.deliveries) }
        var messages = out.messages
        if var i = interceptor {
            messages = i.transform(messages, replica: replica)
            interceptor = i
        }
        for o in messages { send(o.message, recipients(of: o.destination)) }
    }

    /// Forgets an unchecked request whose signature failed (see `ReplicaOutput.verifyRequests`).
    public mutating func discardUnverifiable(_ request: Request) { replica.discardUnverifiable(request) }

    /// Rebuilds a fresh replica from the log (after a crash) at time `now`. Returns the
    /// re-executed deliveries; nothing is sent.
    public mutating func recover(now: UInt64) throws -> ReplicaOutput {
        let records = try log.recoverableRecords()
        let out = replica.recover(from: records, now: now)
        verifyInvariants()
        return out
    }

    /// The principals a destination stands for (every replica but this one, for `.allReplicas`).
    public func recipients(of destination: Destination) -> [Principal] {
        switch destination {
        case .replica(let r): return [.replica(r)]
        case .client(let c): return [.client(c)]
        case .allReplicas: return (0..<replica.config.n).filter { $0 != replica.id }.map { .replica($0) }
        }
    }

    mutating func verifyInvariants() {
        guard checkInvariants else { return }
        let violations = replica.invariantViolations()
        if recordInvariantViolations {
            if invariantViolations.isEmpty { invariantViolations = violations }
            return
        }
        // fatalError, not precondition: release builds keep its message (the simulator runs in release).
        if !violations.isEmpty { fatalError("replica \(replica.id) broke its invariants: \(violations.joined(separator: "; "))") }
    }
}
