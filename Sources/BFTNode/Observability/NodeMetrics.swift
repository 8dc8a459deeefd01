import BFTCore
import NIOCore
import Prometheus
import BFTApplications
import BFTConfig
import BFTFrameCodec
import BFTStorage
import BFTTransport

/// The replica's Prometheus metrics.
///
/// Why a registry per node and not `MetricsSystem.bootstrap`: the bootstrap is process-global
/// and may run once, so several replicas in one test process (or `bft-cluster`) would share
/// and clobber each other's series. Each `NodeMetrics` owns its own
/// `PrometheusCollectorRegistry`; `exposition()` renders only this node's series.
///
/// Every recording method is cheap and callable from any thread: counters and gauges are
/// single atomics, histograms take one short uncontended lock, and labelled drop counters
/// are looked up under a small lock (the lookup is the only work done while holding it).
/// Metric names follow the Prometheus conventions: `bft_` prefix, base units (seconds,
/// requests, sequence numbers), counters end in `_total`.
public final class NodeMetrics: @unchecked Sendable {
    /// The underlying registry. Exposed so the node can register further series; every
    /// name must be new (the registry traps on a type or help-text mismatch).
    public let registry: PrometheusCollectorRegistry

    /// Distinct `reason` label values kept for `bft_messages_dropped_total`; later new reasons
    /// are counted under `reason="other"`. Why: reasons can embed text derived from network
    /// input, and every distinct label value is a new time series in the scraper.
    public static let maxDropReasons = 64
    /// Longest `reason` label value kept (longer ones are truncated).
    public static let maxReasonLength = 64

    // MARK: Series

    let requestsReceived: Counter
    let requestsSessionAuthenticated: Counter
    let requestsOrdered: Counter
    let requestsExecuted: Counter
    let batches: Counter
    let batchSize: ValueHistogram
    let prePrepareToPrepared: ValueHistogram
    let prePrepareToCommitted: ValueHistogram
    let prePrepareToExecuted: ValueHistogram
    let view: Gauge
    let lastExecutedSequence: Gauge
    let stableCheckpointSequence: Gauge
    let lagSequences: Gauge
    let signatureVerifications: Counter
    let signatureVerifyQueueDepth: Gauge
    let peerConnectionsOpen: Gauge
    let clientConnectionsOpen: Gauge
    let equivocationProofs: Gauge
    let applicationFailed: Gauge
    let viewChangesStarted: Counter
    let viewChangesCompleted: Counter
    let walFsync: ValueHistogram
    let stateTransfers: Counter
    let checkpointsStable: Counter

    static let droppedName = "bft_messages_dropped_total"
    static let droppedHelp = "Messages dropped by this replica, by reason (bounded set of reasons; overflow is counted as \"other\")."
    private let droppedByReason = LockedBox([String: Counter]())
    /// Last cumulative totals seen by `recordDropTotals`, per (prefix + reason).
    private let cumulativeDrops = LockedBox([String: Int]())

    // MARK: Buckets

    /// Request counts per batch: powers of two up to the largest step batch.
    public static let batchSizeBuckets: [Double] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
    /// Protocol latencies in seconds: 0.5 ms to 10 s.
    public static let latencyBuckets: [Double] = [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
    ]
    /// fsync latencies in seconds: 50 µs to 2.5 s.
    public static let fsyncBuckets: [Double] = [
        0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
    ]

    public init() {
        let r = PrometheusCollectorRegistry()
        self.registry = r

        func counter(_ name: String, _ help: String) -> Counter {
            r.makeCounter(descriptor: Self.descriptor(name, help))
        }
        func gauge(_ name: String, _ help: String) -> Gauge {
            r.makeGauge(descriptor: Self.descriptor(name, help))
        }
        func histogram(_ name: String, _ help: String, _ buckets: [Double]) -> ValueHistogram {
            r.makeValueHistogram(descriptor: Self.descriptor(name, help), buckets: buckets)
        }

        requestsReceived = counter(
            "bft_requests_received_total",
            "Client requests received and accepted (by signature verification or by their client's own session).")
        requestsSessionAuthenticated = counter(
            "bft_requests_session_authenticated_total",
            "Client requests accepted without a signature check because they arrived over their client's own authenticated session.")
        requestsOrdered = counter(
            "bft_requests_ordered_total",
            "Client requests whose sequence number was committed (ordered) at this replica.")
        requestsExecuted = counter(
            "bft_requests_executed_total",
            "Client requests executed by the application at this replica.")
        batches = counter(
            "bft_batches_total",
            "Request batches (one pre-prepare each) ordered at this replica.")
        batchSize = histogram(
            "bft_batch_size_requests",
            "Number of client requests per ordered batch.", Self.batchSizeBuckets)
        prePrepareToPrepared = histogram(
            "bft_preprepare_to_prepared_seconds",
            "Time from accepting a pre-prepare to the slot becoming prepared, in seconds.", Self.latencyBuckets)
        prePrepareToCommitted = histogram(
            "bft_preprepare_to_committed_seconds",
            "Time from accepting a pre-prepare to the slot becoming committed, in seconds.", Self.latencyBuckets)
        prePrepareToExecuted = histogram(
            "bft_preprepare_to_executed_seconds",
            "Time from accepting a pre-prepare to executing the batch, in seconds.", Self.latencyBuckets)
        view = gauge("bft_view", "Current view number of this replica.")
        lastExecutedSequence = gauge(
            "bft_last_executed_sequence", "Highest sequence number executed by this replica.")
        stableCheckpointSequence = gauge(
            "bft_stable_checkpoint_sequence", "Sequence number of this replica's latest stable checkpoint.")
        lagSequences = gauge(
            "bft_lag_sequences",
            "Highest sequence number seen from peers minus the last executed sequence number (0 when caught up).")
        signatureVerifications = counter(
            "bft_signature_verifications_total", "Signature verifications performed on inbound messages.")
        signatureVerifyQueueDepth = gauge(
            "bft_signature_verify_queue_depth",
            "Verified messages waiting for the core thread (inbox depth).")
        peerConnectionsOpen = gauge("bft_peer_connections_open", "Open connections to and from peer replicas.")
        clientConnectionsOpen = gauge("bft_client_connections_open", "Open connections from clients.")
        equivocationProofs = gauge(
            "bft_equivocation_proofs",
            "Equivocation proofs (two conflicting signed messages from one replica) detected by this replica.")
        applicationFailed = gauge(
            "bft_application_failed",
            "1 once the application failed (the replica then stops at once, so this is seen only briefly; the log keeps the reason).")
        viewChangesStarted = counter(
            "bft_view_changes_started_total", "View changes this replica started (sent a view-change for).")
        viewChangesCompleted = counter(
            "bft_view_changes_completed_total", "New views installed at this replica.")
        walFsync = histogram(
            "bft_wal_fsync_seconds", "Duration of write-ahead-log fsync calls, in seconds.", Self.fsyncBuckets)
        stateTransfers = counter(
            "bft_state_transfers_total", "State transfers (checkpoint fetches from peers) completed by this replica.")
        checkpointsStable = counter(
            "bft_checkpoints_stable_total", "Checkpoints that became stable at this replica.")
    }

    private static func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
        // The full name goes into `metricName`; `unitName` stays empty so it is not appended twice.
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }

    // MARK: - Requests and batches

    /// Client requests that passed verification at the edge.
    public func requestReceived(count: Int = 1) {
        Self.add(requestsReceived, count)
    }

    /// A request accepted on the session fast path (no signature check).
    public func requestAuthenticatedBySession(count: Int = 1) {
        Self.add(requestsSessionAuthenticated, count)
    }

    /// A batch was committed (ordered): counts one batch, `requests` ordered requests, and
    /// records the batch size.
    public func batchOrdered(requests: Int) {
        batches.increment()
        Self.add(requestsOrdered, requests)
        batchSize.record(Double(max(requests, 0)))
    }

    /// Client requests executed by the application (e.g. `out.deliveries.count`).
    public func requestsExecuted(count: Int) {
        Self.add(requestsExecuted, count)
    }

    // MARK: - Latencies

    public func prePrepareToPrepared(_ d: Duration) { prePrepareToPrepared.record(Self.seconds(d)) }
    public func prePrepareToCommitted(_ d: Duration) { prePrepareToCommitted.record(Self.seconds(d)) }
    public func prePrepareToExecuted(_ d: Duration) { prePrepareToExecuted.record(Self.seconds(d)) }
    public func prePrepareToPrepared(_ t: TimeAmount) { prePrepareToPrepared.record(Self.seconds(t)) }
    public func prePrepareToCommitted(_ t: TimeAmount) { prePrepareToCommitted.record(Self.seconds(t)) }
    public func prePrepareToExecuted(_ t: TimeAmount) { prePrepareToExecuted.record(Self.seconds(t)) }

    /// One write-ahead-log fsync took `d`.
    public func walFsync(_ d: Duration) { walFsync.record(Self.seconds(d)) }
    public func walFsync(_ t: TimeAmount) { walFsync.record(Self.seconds(t)) }

    // MARK: - Progress gauges

    public func setView(_ v: UInt64) { view.set(to: Double(v)) }
    public func setLastExecuted(_ seq: UInt64) { lastExecutedSequence.set(to: Double(seq)) }
    public func setStableCheckpoint(_ seq: UInt64) { stableCheckpointSequence.set(to: Double(seq)) }
    /// Sets `bft_lag_sequences` to `highestSeenFromPeers - lastExecuted`, floored at 0.
    public func setLag(highestSeenFromPeers: UInt64, lastExecuted: UInt64) {
        lagSequences.set(to: highestSeenFromPeers > lastExecuted ? Double(highestSeenFromPeers - lastExecuted) : 0)
    }

    /// All progress gauges at once (call once per tick from the core thread).
    public func setProgress(view v: UInt64, lastExecuted: UInt64, stableCheckpoint: UInt64, highestSeenFromPeers: UInt64) {
        setView(v)
        setLastExecuted(lastExecuted)
        setStableCheckpoint(stableCheckpoint)
        setLag(highestSeenFromPeers: highestSeenFromPeers, lastExecuted: lastExecuted)
    }

    // MARK: - Verification and connections

    public func signaturesVerified(count: Int = 1) { Self.add(signatureVerifications, count) }
    public func setSignatureVerifyQueueDepth(_ depth: Int) { signatureVerifyQueueDepth.set(to: Double(max(depth, 0))) }
    public func setPeerConnectionsOpen(_ n: Int) { peerConnectionsOpen.set(to: Double(max(n, 0))) }
    public func setClientConnectionsOpen(_ n: Int) { clientConnectionsOpen.set(to: Double(max(n, 0))) }

    // MARK: - Protocol events

    public func viewChangeStarted() { viewChangesStarted.increment() }
    public func viewChangeCompleted() { viewChangesCompleted.increment() }
    public func stateTransferred() { stateTransfers.increment() }
    public func checkpointStable() { checkpointsStable.increment() }
    /// The application failed (`FailableApplication`); the node is about to stop.
    public func setApplicationFailed() { applicationFailed.set(to: 1) }

    /// One more equivocation proof detected.
    public func equivocationDetected() { equivocationProofs.increment(by: 1) }
    /// Sets the number of equivocation proofs held (if the node keeps and prunes them).
    public func setEquivocationProofs(_ n: Int) { equivocationProofs.set(to: Double(max(n, 0))) }

    /// Records what a core event means for the metrics: view changes started/completed,
    /// stable checkpoints (counter and gauge), state transfers, drops and equivocations.
    /// `checkpointMismatch` is not counted (it is logged as an error by the node).
    public func record(_ event: ReplicaEvent) {
        switch event {
        case .viewChangeStarted:
            viewChangeStarted()
        case .newViewInstalled(let v):
            viewChangeCompleted()
            setView(v)
        case .checkpointStable(let seq, _):
            checkpointStable()
            setStableCheckpoint(seq)
        case .stateTransferred:
            stateTransferred()
        case .checkpointMismatch, .prePrepareDeadlineMissed:
            break
        case .dropped(_, _, let reason):
            messageDropped(reason: reason.rawValue)
        case .equivocation:
            equivocationDetected()
        }
    }

    // MARK: - Drops

    /// Counts `count` dropped messages under `reason` (sanitised, at most `maxDropReasons`
    /// distinct values; the rest go to `"other"`).
    public func messageDropped(reason: String, count: Int = 1) {
        guard count > 0 else { return }
        Self.add(droppedCounter(for: reason), count)
    }

    /// Folds cumulative drop totals (for example `TransportStats.droppedByReason`, which only
    /// ever grows) into `bft_messages_dropped_total`, adding only what grew since the last call.
    /// `labelPrefix` keeps sources apart (e.g. `"transport_"`). A total that went down (its
    /// source was reset) is taken as the new baseline. Call it from one thread at a time per
    /// prefix (e.g. the core thread's tick).
    public func recordDropTotals(_ totals: [String: Int], labelPrefix: String = "") {
        let deltas: [(String, Int)] = cumulativeDrops.withLock { seen in
            var out: [(String, Int)] = []
            var untracked = 0
            for (reason, total) in totals {
                let key = labelPrefix + reason
                guard let before = seen[key] else {
                    if seen.count >= Self.maxTrackedTotals {
                        // Past the cap, keys are summed into one baseline instead of remembered.
                        untracked += max(total, 0)
                        continue
                    }
                    seen[key] = total
                    if total > 0 { out.append((key, total)) }
                    continue
                }
                seen[key] = total
                if total > before { out.append((key, total - before)) }
            }
            let overflowKey = "\u{0}overflow:" + labelPrefix
            if untracked > 0 || seen[overflowKey] != nil {
                let before = seen[overflowKey] ?? 0
                seen[overflowKey] = untracked
                if untracked > before { out.append(("other", untracked - before)) }
            }
            return out
        }
        for (key, delta) in deltas { messageDropped(reason: key, count: delta) }
    }

    /// Keys remembered by `recordDropTotals` before further ones are summed.
    static let maxTrackedTotals = 1024

    private func droppedCounter(for reason: String) -> Counter {
        let label = Self.labelValue(reason)
        // Lock order is always ours, then the registry's; the registry never calls back.
        return droppedByReason.withLock { map in
            if let c = map[label] { return c }
            let key = map.count >= Self.maxDropReasons ? "other" : label
            if let c = map[key] { return c }
            let c = registry.makeCounter(
                descriptor: Self.descriptor(Self.droppedName, Self.droppedHelp), labels: [("reason", key)])
            map[key] = c
            return c
        }
    }

    /// A reason reduced to a label value: characters outside `[A-Za-z0-9_.:-]` become `_`,
    /// at most `maxReasonLength` characters, empty becomes `"unspecified"`.
    static func labelValue(_ reason: String) -> String {
        var out = ""
        out.reserveCapacity(min(reason.utf8.count, Self.maxReasonLength))
        for byte in reason.utf8.prefix(Self.maxReasonLength) {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "."),
                UInt8(ascii: ":"), UInt8(ascii: "-"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                out.append("_")
            }
        }
        return out.isEmpty ? "unspecified" : out
    }

    // MARK: - Exposition

    /// All of this node's series in the Prometheus text exposition format (version 0.0.4).
    public func exposition() -> String {
        registry.emitToString()
    }

    /// Same as `exposition()`, as UTF-8 bytes (what the HTTP server sends).
    public func expositionBytes() -> [UInt8] {
        var buffer: [UInt8] = []
        buffer.reserveCapacity(8 * 1024)
        registry.emit(into: &buffer)
        return buffer
    }

    // MARK: - Helpers

    private static func add(_ c: Counter, _ n: Int) {
        if n > 0 { c.increment(by: Int64(n)) }
    }

    static func seconds(_ d: Duration) -> Double {
        let (s, atto) = d.components
        let v = Double(s) + Double(atto) * 1e-18
        return v > 0 ? v : 0
    }

    static func seconds(_ t: TimeAmount) -> Double {
        t.nanoseconds > 0 ? Double(t.nanoseconds) / 1e9 : 0
    }
}
