import BFTCore
import BFTCrypto

/// Realistic message values for the codec benchmarks, built through BFTCore's public API and
/// signed with the stand-in signer (encoding and decoding never look inside a signature).
///
/// Sizes follow a 4-replica cluster at its measured peak: batches of about 32 requests with
/// 0-byte operations, quorums of 2f+1 = 3, and up to `maxInFlightBatches` = 4 prepared
/// certificates carried by a view change.
enum Fixtures {
    static let n = 4
    static let clusterID: UInt32 = 1
    static let clientCount = 32
    static let batchSize = 32
    static let signatures = StandInSignatures(seed: 7, replicas: n, clients: clientCount)

    static func sign<M: SignedMessage>(_ m: M, as p: Principal) -> M {
        m.signed(with: signatures.signer(for: p), clusterID: clusterID)
    }

    static func request(client: ClientID, timestamp: UInt64, payload: Int) -> Request {
        sign(Request(client: client, timestamp: timestamp, sessionStart: timestamp == 1,
                     operation: [UInt8](repeating: 0x61, count: payload)),
             as: .client(client))
    }

    static let request0 = request(client: 3, timestamp: 1_000, payload: 0)
    static let request1K = request(client: 3, timestamp: 1_000, payload: 1024)

    static func batch(seq: SeqNum) -> [Request] {
        (0..<batchSize).map { i in
            request(client: ClientID(i % clientCount), timestamp: seq * 1_000 + UInt64(i), payload: 0)
        }
    }

    static func prePrepare(view: ViewNum = 0, seq: SeqNum) -> PrePrepare {
        sign(PrePrepare(view: view, seq: seq, replica: Int(view % UInt64(n)), requests: batch(seq: seq)),
             as: .replica(Int(view % UInt64(n))))
    }

    static let prePrepare32 = prePrepare(seq: 17)

    static func prepare(seq: SeqNum, digest: Digest, replica: ReplicaID) -> Prepare {
        sign(Prepare(view: 0, seq: seq, digest: digest, replica: replica), as: .replica(replica))
    }

    static func commit(seq: SeqNum, digest: Digest, replica: ReplicaID) -> Commit {
        sign(Commit(view: 0, seq: seq, digest: digest, replica: replica), as: .replica(replica))
    }

    static let prepare = prepare(seq: 17, digest: prePrepare32.digest, replica: 2)
    static let commit = commit(seq: 17, digest: prePrepare32.digest, replica: 2)

    /// One result per request of the batch, signed once for the batch.
    static let reply: Reply = {
        let results = (0..<batchSize).map { i in (ClientID(i % clientCount), UInt64(17_000 + i), [UInt8](repeating: 0x42, count: 32)) }
        let entries = results.map { Reply.entryDigest(client: $0.0, timestamp: $0.1, result: $0.2) }
        let mine = results[5]
        return sign(Reply(view: 0, timestamp: mine.1, client: mine.0, replica: 1, result: mine.2, seq: 17, entries: entries),
                    as: .replica(1))
    }()

    static let stableDigest = SHA256.hash(Array("checkpoint state at 64".utf8))

    static func checkpoint(replica: ReplicaID) -> Checkpoint {
        sign(Checkpoint(seq: 64, digest: stableDigest, replica: replica), as: .replica(replica))
    }

    static let checkpoint = checkpoint(replica: 2)
    static let checkpointProof = (0..<3).map { checkpoint(replica: $0) }

    /// A view change from replica `replica` with a stable checkpoint proof of 2f+1 checkpoints and
    /// 4 prepared certificates (a pre-prepare of 32 requests and 2f prepares each).
    static func viewChange(replica: ReplicaID) -> ViewChange {
        let certs = (65...68).map { seq -> PreparedCertificate in
            let pp = prePrepare(seq: SeqNum(seq))
            let prepares = [1, 2].map { prepare(seq: SeqNum(seq), digest: pp.digest, replica: $0) }
            return PreparedCertificate(prePrepare: pp.header, prepares: prepares)
        }
        return sign(ViewChange(newView: 1, stableSeq: 64, stableDigest: stableDigest, checkpointProof: checkpointProof,
                               prepared: certs, replica: replica), as: .replica(replica))
    }

    static let viewChange = viewChange(replica: 2)

    /// 2f+1 view changes and the re-proposals that follow from them.
    static let newView: NewView = {
        let vcs = [1, 2, 3].map { viewChange(replica: $0) }
        var config = ProtocolConfig(n: n, clusterID: clusterID, clientCount: clientCount)
        config.checkpointInterval = 64
        let pps = Replica.reproposals(view: 1, viewChanges: vcs, config: config).map { sign($0, as: .replica(1)) }
        return sign(NewView(view: 1, viewChanges: vcs, prePrepares: pps, replica: 1), as: .replica(1))
    }()

    static let status = sign(Status(view: 0, lastExecuted: 70, stableSeq: 64, replica: 2), as: .replica(2))
    static let fetch = sign(Fetch(view: 0, lastExecuted: 64, replica: 3), as: .replica(3))

    /// Answer to a FETCH: 4 committed certificates (a pre-prepare of 32 requests and 2f+1 commits each).
    static let catchUp: CatchUp = {
        let entries = (65...68).map { seq -> CatchUpEntry in
            let pp = prePrepare(seq: SeqNum(seq))
            let cert = CommittedCertificate(prePrepare: pp.header, commits: (0..<3).map { commit(seq: SeqNum(seq), digest: pp.digest, replica: $0) })
            return CatchUpEntry(certificate: cert, requests: pp.requests)
        }
        return sign(CatchUp(entries: entries, newView: nil, replica: 2), as: .replica(2))
    }()

    /// One 4 KiB chunk of checkpoint state with its manifest and proof of 2f+1 checkpoints.
    static let stateTransfer: StateTransfer = {
        let state = [UInt8](repeating: 0x5a, count: 4096)
        return sign(StateTransfer(seq: 64, proof: checkpointProof, manifest: StateManifest(state: state, chunkBytes: 1024 * 1024),
                                  index: 0, chunk: state, replica: 2), as: .replica(2))
    }()

    /// Every message kind once, with a short label for benchmark names.
    static let messages: [(label: String, message: Message)] = [
        ("Request 0 B", .request(request0)),
        ("Request 1 KiB", .request(request1K)),
        ("Reply (32 entries)", .reply(reply)),
        ("PrePrepare (32 requests)", .prePrepare(prePrepare32)),
        ("Prepare", .prepare(prepare)),
        ("Commit", .commit(commit)),
        ("Checkpoint", .checkpoint(checkpoint)),
        ("ViewChange (3 checkpoints, 4 certificates)", .viewChange(viewChange)),
        ("NewView (3 view changes, \(newView.prePrepares.count) pre-prepares)", .newView(newView)),
        ("Status", .status(status)),
        ("Fetch", .fetch(fetch)),
        ("CatchUp (4 certificates)", .catchUp(catchUp)),
        ("StateTransfer (4 KiB chunk)", .stateTransfer(stateTransfer)),
        ("Batch (32 requests)", .batch(sign(BatchBody(replica: 2, requests: prePrepare32.requests), as: .replica(2)))),
    ]
}
