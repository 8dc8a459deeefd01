import BFTCore
import BFTCrypto
import Foundation

/// Writes the seed corpus of every fuzz target (run from `Fuzz/`):
///
///     swift run --package-path MakeCorpus --scratch-path .build-corpus MakeCorpus corpus
///
/// (OUTPUT_DIR defaults to `corpus`, relative to the current directory). Deterministic: the same sources
/// give the same files, so re-running it shows up in `git diff` only when the wire format
/// changed. Messages are signed with the simulator's stand-in signatures (seed 1, 4 replicas,
/// 2 clients, cluster 3), the keys `FuzzSupport.MessageChecks` verifies with.
let outputDir = CommandLine.arguments.count > 1 ? CommandLine.arguments[1] : "corpus"
let clusterID: UInt32 = 3
let keys = StandInSignatures(seed: 1, replicas: 4, clients: 2)

func s<M: SignedMessage>(_ m: M) -> M { m.signed(with: keys.signer(for: m.signer), clusterID: clusterID) }

// MARK: Sample messages (at least one per kind; variants where a field has several shapes)

let req = s(Request(client: 1, timestamp: 77, sessionStart: true, operation: Array("SET a 1".utf8)))
let req2 = s(Request(client: 0, timestamp: 78, sessionStart: false, operation: []))
let req3 = s(Request(client: 1, timestamp: 1 << 40, sessionStart: false, operation: [0x00, 0xFF, 0x20, 0x0A, 0x80]))
let pp = s(PrePrepare(view: 2, seq: 9, replica: 2, requests: [req, req2]))
let ppEmpty = s(PrePrepare(view: 3, seq: 10, replica: 3, requests: []))
let prep = s(Prepare(view: 2, seq: 9, digest: pp.digest, replica: 1))
let prep2 = s(Prepare(view: 2, seq: 9, digest: pp.digest, replica: 3))
let cm = s(Commit(view: 2, seq: 9, digest: pp.digest, replica: 3))
let cm2 = s(Commit(view: 2, seq: 9, digest: pp.digest, replica: 0))
let cp = s(Checkpoint(seq: 8, digest: SHA256.hash([1]), replica: 0))
let cp2 = s(Checkpoint(seq: 8, digest: SHA256.hash([1]), replica: 1))
let vc = s(ViewChange(newView: 3, stableSeq: 8, stableDigest: cp.digest, checkpointProof: [cp, cp2],
                      prepared: [PreparedCertificate(prePrepare: pp.header, prepares: [prep, prep2])], replica: 1))
let vcGenesis = s(ViewChange(newView: 1, stableSeq: 0, stableDigest: .zero, checkpointProof: [], prepared: [], replica: 2))
let nv = s(NewView(view: 3, viewChanges: [vc, vcGenesis], prePrepares: [ppEmpty.header], replica: 3))
let stateBytes: [UInt8] = [1, 0, 0, 0, 0, 0, 0, 0, 0]
let manifest = StateManifest(state: stateBytes, chunkBytes: 4096)
let reply = s(Reply(view: 2, timestamp: 77, client: 1, replica: 0, result: Array("OK".utf8), seq: 9))
let replyBatch = s(Reply(view: 2, timestamp: 78, client: 0, replica: 2, result: [], seq: 9,
                         entries: [Reply.entryDigest(client: 1, timestamp: 77, result: Array("OK".utf8)),
                                   Reply.entryDigest(client: 0, timestamp: 78, result: [])]))

let messages: [(String, Message)] = [
    ("request", .request(req)),
    ("request-empty-op", .request(req2)),
    ("request-binary-op", .request(req3)),
    ("reply", .reply(reply)),
    ("reply-batch", .reply(replyBatch)),
    ("pre-prepare", .prePrepare(pp)),
    ("pre-prepare-null", .prePrepare(ppEmpty)),
    ("prepare", .prepare(prep)),
    ("commit", .commit(cm)),
    ("checkpoint", .checkpoint(cp)),
    ("view-change", .viewChange(vc)),
    ("view-change-genesis", .viewChange(vcGenesis)),
    ("new-view", .newView(nv)),
    ("status", .status(s(Status(view: 2, lastExecuted: 9, stableSeq: 8, replica: 2)))),
    ("fetch", .fetch(s(Fetch(view: 2, lastExecuted: 3, replica: 1)))),
    ("fetch-state-and-batches", .fetch(s(Fetch(view: 2, lastExecuted: 3, replica: 1, stateSeq: 8, nextChunk: 2, batches: [pp.digest])))),
    ("catch-up", .catchUp(s(CatchUp(entries: [CatchUpEntry(certificate: CommittedCertificate(prePrepare: pp.header, commits: [cm, cm2]),
                                                          requests: pp.requests)], newView: nv, replica: 0)))),
    ("catch-up-no-new-view", .catchUp(s(CatchUp(entries: [], newView: nil, replica: 1)))),
    ("state-transfer", .stateTransfer(s(StateTransfer(seq: 8, proof: [cp, cp2], manifest: manifest, index: 0, chunk: stateBytes, replica: 0)))),
    ("batch", .batch(s(BatchBody(replica: 2, requests: [req, req2])))),
]

/// Every sample must round-trip, or the seeds would teach the fuzzer nothing.
func checkSamples() {
    for (name, m) in messages {
        let body = m.encoded()
        guard let back = try? Message.decode(kind: m.kind.rawValue, body: body), back.encoded() == body else {
            fatalError("sample \(name) does not round-trip")
        }
    }
    precondition(Set(messages.map { $0.1.kind }) == Set(MessageKind.allCases), "a message kind has no sample")
}

// MARK: Frames

func frame(kind: UInt8, body: [UInt8], cluster: UInt32 = clusterID) -> [UInt8] {
    var w = WireWriter()
    w.raw([0x50, 0x42, 0x46, 0x54]); w.u8(1); w.u8(kind); w.u16(0); w.u32(cluster); w.u32(UInt32(body.count))
    w.raw(body)
    return w.bytes
}
func frame(_ m: Message) -> [UInt8] { frame(kind: m.kind.rawValue, body: m.encoded()) }

// MARK: Key-value commands and snapshots

func kvSnapshot(_ entries: [(String, [UInt8])]) -> [UInt8] {
    var w = WireWriter()
    w.u8(1); w.u64(UInt64(entries.count))
    for (k, v) in entries.sorted(by: { Array($0.0.utf8).lexicographicallyPrecedes(Array($1.0.utf8)) }) {
        w.blob(Array(k.utf8)); w.blob(v)
    }
    return w.bytes
}

let kvScripts: [(String, [UInt8])] = [
    ("set-get-del", Array("SET a 1\nGET a\nDEL a\nGET a\nDEL a".utf8)),
    ("value-with-spaces", Array("SET k hello world \nGET k\nset k \nget k".utf8)),
    ("mixed-case-and-nil", Array("sEt x (nil)\nGeT x\ndel x\nDel missing".utf8)),
    ("errors", Array("\nSET\nSET a\nGET\nGET a b\nDEL  \nFOO bar\nSETX a b\nSET  v".utf8)),
    ("binary-key", [0x53, 0x45, 0x54, 0x20, 0xFF, 0xFE, 0x00, 0x20, 0x80, 0x0A, 0x47, 0x45, 0x54, 0x20, 0xFF, 0xFE, 0x00]),
    ("limits-tiny", Array("SET k1 0123456789abcdef\nSET k2 0123456789abcdefX\nSET 123456789 v\nSET a 1\nSET b 2\nSET c 3\nSET d 4\nSET e 5\nSET f 6\nSET g 7\nSET h 8\nSET i 9\nDEL a\nSET i 9".utf8)),
    ("overwrite", Array("SET a 1\nSET a 22\nSET a \nGET a\nDEL a".utf8)),
    ("snapshot-empty", kvSnapshot([])),
    ("snapshot-two-keys", kvSnapshot([("a", Array("1".utf8)), ("b", [])])),
    ("snapshot-binary", kvSnapshot([("\u{1}", [0, 255]), ("k", Array("(nil)".utf8)), ("zz", Array("x y".utf8))])),
]

// MARK: Writing

func write(_ target: String, _ name: String, _ bytes: [UInt8]) {
    let dir = URL(fileURLWithPath: outputDir).appendingPathComponent(target)
    try! FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    try! Data(bytes).write(to: dir.appendingPathComponent(name))
}

@main
enum MakeCorpus {
    static func main() {
        checkSamples()
        var counts: [String: (files: Int, bytes: Int)] = [:]
        func emit(_ target: String, _ name: String, _ bytes: [UInt8]) {
            write(target, name, bytes)
            let c = counts[target, default: (0, 0)]
            counts[target] = (c.files + 1, c.bytes + bytes.count)
        }

        for (name, m) in messages {
            emit("FuzzMessage", name, [m.kind.rawValue] + m.encoded())
        }
        emit("FuzzMessage", "unknown-kind", [0] + req.encoded)
        for (name, m) in messages where m.kind == .request {
            emit("FuzzRequest", name, m.encoded())
        }
        emit("FuzzRequest", "request-long-op", s(Request(client: 1, timestamp: 5, sessionStart: false,
                                                          operation: Array(repeating: 0x61, count: 300))).encoded)

        // FuzzFrame: byte 0 chooses the read sizes (0: one read, 1: byte by byte, other: random sizes).
        // The decoder never looks inside a body, so most seeds have short bodies: small inputs run
        // faster and keep the fuzzer on the headers. A few carry real messages.
        for kind in MessageKind.allCases {
            let k = kind.rawValue
            emit("FuzzFrame", "kind-\(k)", [0] + frame(kind: k, body: Array(repeating: k, count: Int(k) * 3)))
        }
        let everyKind = MessageKind.allCases.flatMap { frame(kind: $0.rawValue, body: [$0.rawValue, 0xAA]) }
        emit("FuzzFrame", "stream-all-kinds-one-read", [0] + everyKind)
        emit("FuzzFrame", "stream-all-kinds-byte-by-byte", [1] + everyKind)
        emit("FuzzFrame", "stream-all-kinds-random-reads", [7] + everyKind)
        let real = frame(messages[0].1) + frame(messages[7].1) + frame(messages[13].1)
        emit("FuzzFrame", "stream-messages-random-reads", [42] + real)
        emit("FuzzFrame", "one-pre-prepare", [5] + frame(messages[5].1))
        emit("FuzzFrame", "empty-bodies", [3] + frame(kind: 9, body: []) + frame(kind: 1, body: []) + frame(kind: 12, body: []))
        emit("FuzzFrame", "truncated-body", [0] + Array(frame(messages[8].1).dropLast(5)))
        emit("FuzzFrame", "truncated-header", [1] + Array(frame(messages[8].1).prefix(11)))
        emit("FuzzFrame", "wrong-cluster-after-frame", [0] + frame(messages[8].1) + frame(kind: 4, body: [], cluster: 4))
        emit("FuzzFrame", "client-kind-oversized", [0] + Array(frame(kind: 1, body: Array(repeating: 0, count: 4097)).prefix(16)))

        for (name, bytes) in kvScripts { emit("FuzzKVCommand", name, bytes) }

        for (target, c) in counts.sorted(by: { $0.key < $1.key }) {
            print("\(outputDir)/\(target): \(c.files) files, \(c.bytes) bytes")
        }
    }
}
