import BFTCore
import BFTCrypto
import Foundation
import NIOCore
import Testing

@testable import BFTNode
@testable import BFTFrameCodec
@testable import BFTTransport
@testable import BFTApplications
@testable import BFTConfig
@testable import BFTClient

/// A strict parser for the Prometheus text exposition format 0.0.4, enough to check what
/// `NodeMetrics.exposition()` produces. It rejects what a scraper might tolerate: unknown
/// comment lines, blank lines, duplicate HELP/TYPE, samples before their TYPE, interleaved
/// families, duplicate series, malformed names, labels or values.
enum PromText {
    struct Sample: Equatable {
        var name: String
        var labels: [String: String]
        var value: Double
    }

    struct Family {
        var name: String
        var type: String
        var help: String?
        var samples: [Sample] = []
    }

    struct ParseError: Error, CustomStringConvertible {
        var line: Int
        var message: String
        var description: String { "line \(line): \(message)" }
    }

    static func isMetricName(_ s: Substring) -> Bool {
        guard let first = s.unicodeScalars.first else { return false }
        func head(_ c: Unicode.Scalar) -> Bool { ("a"..."z").contains(c) || ("A"..."Z").contains(c) || c == "_" || c == ":" }
        return head(first) && s.unicodeScalars.dropFirst().allSatisfy { head($0) || ("0"..."9").contains($0) }
    }

    static func isLabelName(_ s: Substring) -> Bool {
        guard let first = s.unicodeScalars.first else { return false }
        func head(_ c: Unicode.Scalar) -> Bool { ("a"..."z").contains(c) || ("A"..."Z").contains(c) || c == "_" }
        return head(first) && s.unicodeScalars.dropFirst().allSatisfy { head($0) || ("0"..."9").contains($0) }
            && !s.hasPrefix("__")
    }

    /// Go `strconv.ParseFloat` syntax as Prometheus accepts it (plus its special values).
    static func parseValue(_ s: Substring) -> Double? {
        switch s {
        case "+Inf", "Inf": return .infinity
        case "-Inf": return -.infinity
        case "NaN": return .nan
        default: break
        }
        let allowed = Set("0123456789+-.eE")
        guard !s.isEmpty, s.allSatisfy({ allowed.contains($0) }) else { return nil }
        return Double(s)
    }

    /// The family a sample name belongs to, given the families declared so far.
    static func familyName(of sample: String, in families: [String: Family]) -> String? {
        if families[sample] != nil { return sample }
        for suffix in ["_bucket", "_sum", "_count"] where sample.hasSuffix(suffix) {
            let base = String(sample.dropLast(suffix.count))
            if families[base]?.type == "histogram" { return base }
        }
        return nil
    }

    static func parse(_ text: String) throws -> [String: Family] {
        guard text.isEmpty || text.hasSuffix("\n") else { throw ParseError(line: 0, message: "no final newline") }
        var families: [String: Family] = [:]
        var finished: Set<String> = []
        var current: String?
        var seenSeries: Set<String> = []
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        for (i, line) in lines.enumerated() {
            let n = i + 1
            func fail(_ m: String) -> ParseError { ParseError(line: n, message: "\(m): \(line)") }
            guard !line.isEmpty else { throw fail("blank line") }
            if line.hasPrefix("#") {
                let parts = line.split(separator: " ", maxSplits: 3, omittingEmptySubsequences: false)
                guard parts.count >= 3, parts[0] == "#", parts[1] == "HELP" || parts[1] == "TYPE" else {
                    throw fail("unexpected comment")
                }
                let name = String(parts[2])
                guard isMetricName(parts[2]) else { throw fail("bad metric name") }
                if current != name, let c = current { finished.insert(c) }
                guard !finished.contains(name) else { throw fail("family \(name) is not contiguous") }
                current = name
                if parts[1] == "HELP" {
                    guard parts.count == 4, !parts[3].isEmpty else { throw fail("empty HELP") }
                    if families[name]?.help != nil { throw fail("duplicate HELP") }
                    if let f = families[name], !f.samples.isEmpty { throw fail("HELP after samples") }
                    var f = families[name] ?? Family(name: name, type: "")
                    f.help = String(parts[3])
                    families[name] = f
                } else {
                    guard parts.count == 4, ["counter", "gauge", "histogram", "summary", "untyped"].contains(parts[3]) else {
                        throw fail("bad TYPE")
                    }
                    if let f = families[name], !f.type.isEmpty { throw fail("duplicate TYPE") }
                    if let f = families[name], !f.samples.isEmpty { throw fail("TYPE after samples") }
                    var f = families[name] ?? Family(name: name, type: "")
                    f.type = String(parts[3])
                    families[name] = f
                }
                continue
            }
            // name{labels} value [timestamp]
            var rest = line[...]
            let nameEnd = rest.firstIndex(where: { $0 == "{" || $0 == " " }) ?? rest.endIndex
            let name = rest[..<nameEnd]
            guard isMetricName(name) else { throw fail("bad sample name") }
            rest = rest[nameEnd...]
            var labels: [String: String] = [:]
            if rest.first == "{" {
                rest = rest.dropFirst()
                while rest.first != "}" {
                    guard let eq = rest.firstIndex(of: "=") else { throw fail("label without =") }
                    let lname = rest[..<eq]
                    guard isLabelName(lname) else { throw fail("bad label name") }
                    rest = rest[rest.index(after: eq)...]
                    guard rest.first == "\"" else { throw fail("label value not quoted") }
                    rest = rest.dropFirst()
                    var value = ""
                    var closed = false
                    while let c = rest.first {
                        rest = rest.dropFirst()
                        if c == "\\" {
                            guard let e = rest.first else { throw fail("dangling escape") }
                            rest = rest.dropFirst()
                            switch e {
                            case "\\": value.append("\\")
                            case "\"": value.append("\"")
                            case "n": value.append("\n")
                            default: throw fail("bad escape")
                            }
                        } else if c == "\"" {
                            closed = true
                            break
                        } else {
                            value.append(c)
                        }
                    }
                    guard closed else { throw fail("unterminated label value") }
                    guard labels[String(lname)] == nil else { throw fail("duplicate label") }
                    labels[String(lname)] = value
                    if rest.first == "," { rest = rest.dropFirst() } else if rest.first != "}" { throw fail("bad label separator") }
                }
                rest = rest.dropFirst()
            }
            guard rest.first == " " else { throw fail("no space before value") }
            let fields = rest.dropFirst().split(separator: " ", omittingEmptySubsequences: false)
            guard fields.count == 1 || fields.count == 2 else { throw fail("bad value/timestamp") }
            guard let value = parseValue(fields[0]) else { throw fail("bad value") }
            if fields.count == 2, Int64(fields[1]) == nil { throw fail("bad timestamp") }
            guard let fname = familyName(of: String(name), in: families), !families[fname]!.type.isEmpty else {
                throw fail("sample without TYPE")
            }
            guard fname == current else { throw fail("sample outside its family block") }
            let series = String(name) + "|" + labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
            guard seenSeries.insert(series).inserted else { throw fail("duplicate series") }
            families[fname]!.samples.append(Sample(name: String(name), labels: labels, value: value))
        }
        try validate(families)
        return families
    }

    /// Type-specific rules: counters end in `_total` and are non-negative; gauges and counters
    /// have only samples named like the family; histograms have cumulative `le` buckets ending
    /// in `+Inf`, whose count equals `_count`, plus `_sum`.
    static func validate(_ families: [String: Family]) throws {
        for (name, f) in families {
            func fail(_ m: String) -> ParseError { ParseError(line: 0, message: "\(name): \(m)") }
            guard !f.type.isEmpty else { throw fail("HELP without TYPE") }
            switch f.type {
            case "counter":
                guard name.hasSuffix("_total") else { throw fail("counter not ending in _total") }
                for s in f.samples {
                    guard s.name == name, s.value >= 0, s.value.isFinite else { throw fail("bad counter sample") }
                }
            case "gauge":
                guard !name.hasSuffix("_total") else { throw fail("gauge ending in _total") }
                for s in f.samples where s.name != name { throw fail("bad gauge sample") }
            case "histogram":
                // Group by the labels other than `le`.
                var groups: [String: (buckets: [(Double, Double)], sum: Double?, count: Double?)] = [:]
                for s in f.samples {
                    var key = s.labels
                    key["le"] = nil
                    let k = key.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
                    var g = groups[k] ?? ([], nil, nil)
                    if s.name == name + "_bucket" {
                        guard let le = s.labels["le"], let bound = parseValue(le[...]) else { throw fail("bucket without le") }
                        g.buckets.append((bound, s.value))
                    } else if s.name == name + "_sum" {
                        g.sum = s.value
                    } else if s.name == name + "_count" {
                        g.count = s.value
                    } else {
                        throw fail("bad histogram sample \(s.name)")
                    }
                    groups[k] = g
                }
                for (_, g) in groups {
                    guard let count = g.count, g.sum != nil else { throw fail("histogram without _sum/_count") }
                    guard let last = g.buckets.last, last.0 == .infinity, last.1 == count else { throw fail("+Inf bucket != count") }
                    for (a, b) in zip(g.buckets, g.buckets.dropFirst()) {
                        guard a.0 < b.0, a.1 <= b.1 else { throw fail("buckets not cumulative/increasing") }
                    }
                }
            default:
                break
            }
        }
    }

    /// The value of the series `name` with exactly `labels`, if present.
    static func value(_ families: [String: Family], _ name: String, _ labels: [String: String] = [:]) -> Double? {
        for f in families.values {
            if let s = f.samples.first(where: { $0.name == name && $0.labels == labels }) { return s.value }
        }
        return nil
    }
}

struct ObservabilityMetricsTests {
    static let expected: [(String, String)] = [
        ("bft_requests_received_total", "counter"),
        ("bft_requests_session_authenticated_total", "counter"),
        ("bft_requests_ordered_total", "counter"),
        ("bft_requests_executed_total", "counter"),
        ("bft_batches_total", "counter"),
        ("bft_batch_size_requests", "histogram"),
        ("bft_preprepare_to_prepared_seconds", "histogram"),
        ("bft_preprepare_to_committed_seconds", "histogram"),
        ("bft_preprepare_to_executed_seconds", "histogram"),
        ("bft_view", "gauge"),
        ("bft_last_executed_sequence", "gauge"),
        ("bft_stable_checkpoint_sequence", "gauge"),
        ("bft_lag_sequences", "gauge"),
        ("bft_signature_verifications_total", "counter"),
        ("bft_signature_verify_queue_depth", "gauge"),
        ("bft_peer_connections_open", "gauge"),
        ("bft_client_connections_open", "gauge"),
        ("bft_equivocation_proofs", "gauge"),
        ("bft_application_failed", "gauge"),
        ("bft_view_changes_started_total", "counter"),
        ("bft_view_changes_completed_total", "counter"),
        ("bft_wal_fsync_seconds", "histogram"),
        ("bft_state_transfers_total", "counter"),
        ("bft_checkpoints_stable_total", "counter"),
    ]

    @Test func freshExpositionParsesAndDeclaresEveryMetricWithHelp() throws {
        let m = NodeMetrics()
        let families = try PromText.parse(m.exposition())
        for (name, type) in Self.expected {
            let f = try #require(families[name], "missing \(name)")
            #expect(f.type == type, "\(name)")
            #expect((f.help ?? "").count > 10, "\(name) has no useful HELP")
            #expect(!f.samples.isEmpty, "\(name) has no samples before first use")
        }
        #expect(families.count == Self.expected.count)
        #expect(PromText.value(families, "bft_requests_received_total") == 0)
        #expect(PromText.value(families, "bft_batch_size_requests_bucket", ["le": "+Inf"]) == 0)
        #expect(String(decoding: m.expositionBytes(), as: UTF8.self).count == m.exposition().count)
    }

    @Test func parserRejectsMalformedExposition() {
        let bad = [
            "# TYPE x counter\nx 1\n",  // counter without _total
            "x_total 1\n",  // no TYPE
            "# TYPE a_total counter\na_total{l=\"v} 1\n",  // unterminated label
            "# TYPE a_total counter\na_total{1l=\"v\"} 1\n",  // bad label name
            "# TYPE a_total counter\na_total one\n",  // bad value
            "# TYPE 9a gauge\n",  // bad name
            "# TYPE g gauge\ng 1\ng 2\n",  // duplicate series
            "# TYPE g gauge\ng 1",  // no final newline
            "# TYPE g gauge\n\ng 1\n",  // blank line
            "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",  // not cumulative
            "# TYPE g gauge\n# TYPE f gauge\ng 1\n",  // sample outside its block
            "# random comment\n",
        ]
        for text in bad {
            #expect(throws: PromText.ParseError.self, "\(text.debugDescription)") { try PromText.parse(text) }
        }
        #expect(throws: Never.self) {
            try PromText.parse("# HELP a_total A.\n# TYPE a_total counter\na_total{r=\"x\\\"y\\\\z\\n\"} 3 1700000000000\n")
        }
    }

    @Test func countersAndGaugesMoveWhenCalled() throws {
        let m = NodeMetrics()
        m.requestReceived()
        m.requestReceived(count: 4)
        m.batchOrdered(requests: 3)
        m.batchOrdered(requests: 100)
        m.requestsExecuted(count: 103)
        m.signaturesVerified(count: 7)
        m.setSignatureVerifyQueueDepth(12)
        m.setPeerConnectionsOpen(6)
        m.setClientConnectionsOpen(2)
        m.setProgress(view: 3, lastExecuted: 90, stableCheckpoint: 64, highestSeenFromPeers: 95)
        m.viewChangeStarted()
        m.viewChangeCompleted()
        m.stateTransferred()
        m.checkpointStable()
        m.equivocationDetected()
        m.messageDropped(reason: "bad_signature")
        m.messageDropped(reason: "bad_signature", count: 2)
        m.messageDropped(reason: "stale", count: 0)  // ignored
        m.prePrepareToPrepared(.milliseconds(3))
        m.prePrepareToCommitted(TimeAmount.milliseconds(20))
        m.prePrepareToExecuted(.seconds(30))  // above the last bucket: only +Inf
        m.walFsync(.microseconds(700))

        let f = try PromText.parse(m.exposition())
        func v(_ n: String, _ l: [String: String] = [:]) -> Double? { PromText.value(f, n, l) }
        #expect(v("bft_requests_received_total") == 5)
        #expect(v("bft_requests_ordered_total") == 103)
        #expect(v("bft_batches_total") == 2)
        #expect(v("bft_requests_executed_total") == 103)
        #expect(v("bft_batch_size_requests_bucket", ["le": "2.0"]) == 0)
        #expect(v("bft_batch_size_requests_bucket", ["le": "4.0"]) == 1)
        #expect(v("bft_batch_size_requests_bucket", ["le": "128.0"]) == 2)
        #expect(v("bft_batch_size_requests_sum") == 103)
        #expect(v("bft_batch_size_requests_count") == 2)
        #expect(v("bft_signature_verifications_total") == 7)
        #expect(v("bft_signature_verify_queue_depth") == 12)
        #expect(v("bft_peer_connections_open") == 6)
        #expect(v("bft_client_connections_open") == 2)
        #expect(v("bft_view") == 3)
        #expect(v("bft_last_executed_sequence") == 90)
        #expect(v("bft_stable_checkpoint_sequence") == 64)
        #expect(v("bft_lag_sequences") == 5)
        #expect(v("bft_view_changes_started_total") == 1)
        #expect(v("bft_view_changes_completed_total") == 1)
        #expect(v("bft_state_transfers_total") == 1)
        #expect(v("bft_checkpoints_stable_total") == 1)
        #expect(v("bft_equivocation_proofs") == 1)
        #expect(v("bft_messages_dropped_total", ["reason": "bad_signature"]) == 3)
        #expect(v("bft_messages_dropped_total", ["reason": "stale"]) == nil)
        #expect(v("bft_preprepare_to_prepared_seconds_bucket", ["le": "0.0025"]) == 0)
        #expect(v("bft_preprepare_to_prepared_seconds_bucket", ["le": "0.005"]) == 1)
        let sum = try #require(v("bft_preprepare_to_prepared_seconds_sum"))
        #expect(abs(sum - 0.003) < 1e-9)
        #expect(v("bft_preprepare_to_committed_seconds_bucket", ["le": "0.025"]) == 1)
        #expect(v("bft_preprepare_to_executed_seconds_bucket", ["le": "10.0"]) == 0)
        #expect(v("bft_preprepare_to_executed_seconds_bucket", ["le": "+Inf"]) == 1)
        #expect(v("bft_wal_fsync_seconds_bucket", ["le": "0.001"]) == 1)
        #expect(v("bft_wal_fsync_seconds_bucket", ["le": "0.0005"]) == 0)

        // Lag never goes negative; negative durations count as zero.
        m.setLag(highestSeenFromPeers: 10, lastExecuted: 20)
        m.prePrepareToPrepared(.milliseconds(-5))
        let g = try PromText.parse(m.exposition())
        #expect(PromText.value(g, "bft_lag_sequences") == 0)
        #expect(PromText.value(g, "bft_preprepare_to_prepared_seconds_count") == 2)
    }

    @Test func replicaEventsMapToMetrics() throws {
        let m = NodeMetrics()
        let d = Digest.zero
        m.record(.viewChangeStarted(view: 1))
        m.record(.newViewInstalled(view: 1))
        m.record(.checkpointStable(seq: 128, digest: d))
        m.record(.stateTransferred(seq: 128))
        m.record(.checkpointMismatch(seq: 128))
        m.record(.dropped(kind: .prepare, from: .replica(2), reason: .staleView))
        let f = try PromText.parse(m.exposition())
        #expect(PromText.value(f, "bft_view_changes_started_total") == 1)
        #expect(PromText.value(f, "bft_view_changes_completed_total") == 1)
        #expect(PromText.value(f, "bft_view") == 1)
        #expect(PromText.value(f, "bft_checkpoints_stable_total") == 1)
        #expect(PromText.value(f, "bft_stable_checkpoint_sequence") == 128)
        #expect(PromText.value(f, "bft_state_transfers_total") == 1)
        #expect(PromText.value(f, "bft_messages_dropped_total", ["reason": "stale_view"]) == 1)
    }

    @Test func dropReasonsAreSanitisedAndCapped() throws {
        let m = NodeMetrics()
        m.messageDropped(reason: "evil\"} 1\n# TYPE x gauge\nx")
        m.messageDropped(reason: "")
        m.messageDropped(reason: String(repeating: "a", count: 500))
        for i in 0..<100 { m.messageDropped(reason: "r\(i)") }
        m.messageDropped(reason: "r0")  // an early reason keeps its own series
        m.messageDropped(reason: "r99")  // a late one stays in "other"
        let f = try PromText.parse(m.exposition())
        let dropped = try #require(f["bft_messages_dropped_total"])
        #expect(dropped.type == "counter")
        #expect(dropped.samples.count == NodeMetrics.maxDropReasons + 1)
        #expect(dropped.samples.reduce(0) { $0 + $1.value } == 105)
        #expect(PromText.value(f, "bft_messages_dropped_total", ["reason": "r0"]) == 2)
        #expect(PromText.value(f, "bft_messages_dropped_total", ["reason": "r99"]) == nil)
        #expect(PromText.value(f, "bft_messages_dropped_total", ["reason": "unspecified"]) == 1)
        #expect(PromText.value(f, "bft_messages_dropped_total", ["reason": "evil___1___TYPE_x_gauge_x"]) == 1)
        #expect(PromText.value(f, "bft_messages_dropped_total", ["reason": String(repeating: "a", count: 64)]) == 1)
        let other = try #require(PromText.value(f, "bft_messages_dropped_total", ["reason": "other"]))
        #expect(other == 105 - 1 - 1 - 1 - 61 - 1)  // r0 twice, r1...r60 once each
        #expect(f["x"] == nil)
    }

    @Test func cumulativeDropTotalsAddOnlyTheGrowth() throws {
        let m = NodeMetrics()
        m.recordDropTotals(["outbound_queue_full": 3, "shutdown": 0], labelPrefix: "transport_")
        m.recordDropTotals(["outbound_queue_full": 5, "shutdown": 1], labelPrefix: "transport_")
        m.recordDropTotals(["outbound_queue_full": 5, "shutdown": 1], labelPrefix: "transport_")
        m.recordDropTotals(["outbound_queue_full": 2], labelPrefix: "transport_")  // source reset: new baseline
        m.recordDropTotals(["outbound_queue_full": 4], labelPrefix: "transport_")
        m.recordDropTotals(["outbound_queue_full": 1])  // different prefix, different series
        let f = try PromText.parse(m.exposition())
        #expect(PromText.value(f, "bft_messages_dropped_total", ["reason": "transport_outbound_queue_full"]) == 7)
        #expect(PromText.value(f, "bft_messages_dropped_total", ["reason": "transport_shutdown"]) == 1)
        #expect(PromText.value(f, "bft_messages_dropped_total", ["reason": "outbound_queue_full"]) == 1)
    }

    @Test func nodesInOneProcessDoNotShareSeries() throws {
        let a = NodeMetrics()
        let b = NodeMetrics()
        a.requestReceived(count: 2)
        b.requestReceived(count: 9)
        b.messageDropped(reason: "x")
        let fa = try PromText.parse(a.exposition())
        let fb = try PromText.parse(b.exposition())
        #expect(PromText.value(fa, "bft_requests_received_total") == 2)
        #expect(PromText.value(fb, "bft_requests_received_total") == 9)
        #expect(fa["bft_messages_dropped_total"] == nil)
    }

    @Test func recordingFromManyThreadsLosesNothing() throws {
        let m = NodeMetrics()
        DispatchQueue.concurrentPerform(iterations: 8) { i in
            for j in 0..<1000 {
                m.requestReceived()
                m.messageDropped(reason: "t\(j % 10)")
                m.prePrepareToCommitted(.microseconds(Int64(100 + j)))
                if j % 100 == 0 { _ = m.exposition() }
            }
            m.setView(UInt64(i))
        }
        let f = try PromText.parse(m.exposition())
        #expect(PromText.value(f, "bft_requests_received_total") == 8000)
        #expect(PromText.value(f, "bft_preprepare_to_committed_seconds_count") == 8000)
        let dropped = try #require(f["bft_messages_dropped_total"])
        #expect(dropped.samples.count == 10)
        #expect(dropped.samples.allSatisfy { $0.value == 800 })
    }
}
