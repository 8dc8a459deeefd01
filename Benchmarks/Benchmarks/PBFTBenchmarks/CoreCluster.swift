import BFTCore
import BFTCrypto

/// Four pure `Replica`s wired together in memory, driven the way the node drives its core:
/// each round every replica takes its whole inbox, has it checked by its own `MessageVerifier`
/// and feeds it to `step(_:[VerifiedMessage])` as one group. No sockets, threads, clocks or
/// disks: what is measured is the protocol core, the codec-free message handling and the
/// stand-in signatures (SHA-256 based) that replace Ed25519 here.
///
/// The cluster lives across benchmark iterations (checkpoints garbage-collect the log), and each
/// iteration orders `requestsPerRound × rounds` new requests: clients' requests arrive
/// `arrivalsPerRound` at a time to every replica, as clients multicast them.
final class CoreCluster {
    let config: ProtocolConfig
    let signatures: StandInSignatures
    /// Each replica driven as the node drives it (persist to memory, then send); invariant
    /// checks are off so the figure is the core's own cost.
    var drivers: [ReplicaDriver<InMemoryLog>]
    var replicas: [Replica] { drivers.map(\.replica) }
    let verifiers: [MessageVerifier]
    let verify: Bool
    var inbox: [[Message]]
    let clients: Int
    var nextTimestamp: [UInt64]
    /// Batches the primary proposed, and the requests in them (to report the batch size).
    private(set) var batchesProposed = 0
    private(set) var requestsProposed = 0

    /// `verify: false` hands every message to the core as trusted, leaving out the edge checks.
    init(clients: Int = 20, verify: Bool = true) {
        var cfg = ProtocolConfig(n: 4, clusterID: 5, clientCount: clients)
        cfg.maxPendingPerClient = 64
        config = cfg
        let sigs = StandInSignatures(seed: 11, replicas: cfg.n, clients: clients)
        signatures = sigs
        drivers = (0..<cfg.n).map {
            ReplicaDriver(replica: Replica(id: $0, config: cfg, signer: sigs.signer(for: .replica($0)), application: HashChainApplication()),
                          log: InMemoryLog(limits: cfg.limits), checkInvariants: false)
        }
        verifiers = (0..<cfg.n).map { _ in
            MessageVerifier(checker: sigs, clusterID: cfg.clusterID, replicaCount: cfg.n, clientCount: clients)
        }
        self.verify = verify
        inbox = Array(repeating: [], count: cfg.n)
        self.clients = clients
        nextTimestamp = Array(repeating: 1, count: clients)
    }

    /// The next `perClient` requests of every client, interleaved across clients, signed by
    /// their clients (done outside the measured region: signing is the client's work).
    func nextRequests(perClient: Int) -> [Request] {
        var out: [Request] = []
        out.reserveCapacity(perClient * clients)
        for _ in 0..<perClient {
            for c in 0..<clients {
                let t = nextTimestamp[c]
                nextTimestamp[c] += 1
                let r = Request(client: ClientID(c), timestamp: t, sessionStart: t == 1, operation: [])
                out.append(r.signed(with: signatures.signer(for: .client(ClientID(c))), clusterID: config.clusterID))
            }
        }
        return out
    }

    /// Delivers `requests` to every replica, `arrivalsPerRound` per round, and runs rounds until
    /// every replica has executed all of them. Returns the number of rounds.
    @discardableResult
    func order(_ requests: [Request], arrivalsPerRound: Int) -> Int {
        let target = drivers[0].replica.executedCount + UInt64(requests.count)
        var next = 0
        var rounds = 0
        while drivers.contains(where: { $0.replica.executedCount < target }) {
            rounds += 1
            precondition(rounds < 1_000_000, "core benchmark made no progress")
            if next < requests.count {
                let end = min(next + arrivalsPerRound, requests.count)
                for r in 0..<config.n {
                    for i in next..<end { inbox[r].append(.request(requests[i])) }
                }
                next = end
            }
            for r in 0..<config.n where !inbox[r].isEmpty {
                let messages = inbox[r]
                inbox[r].removeAll(keepingCapacity: true)
                var verified: [VerifiedMessage] = []
                verified.reserveCapacity(messages.count)
                for m in messages {
                    if verify {
                        guard case .success(let v) = verifiers[r].verify(m) else { fatalError("verification failed: \(m.kind)") }
                        verified.append(v)
                    } else {
                        verified.append(verifiers[r].trusted(m))
                    }
                }
                try! drivers[r].step(verified) { m, recipients in self.route(m, to: recipients) }
            }
        }
        return rounds
    }

    private func route(_ m: Message, to recipients: [Principal]) {
        if case .prePrepare(let pp) = m, recipients.count == config.n - 1 {
            batchesProposed += 1
            requestsProposed += pp.requests.count
        }
        for to in recipients {
            if case .replica(let r) = to { inbox[r].append(m) }  // replies leave the cluster
        }
    }
}
