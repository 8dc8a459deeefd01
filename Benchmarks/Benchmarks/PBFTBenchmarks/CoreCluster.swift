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
    var replicas: [Replica]
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
        replicas = (0..<cfg.n).map {
            Replica(id: $0, config: cfg, signer: sigs.signer(for: .replica($0)), application: HashChainApplication())
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
        let target = replicas[0].executedCount + UInt64(requests.count)
        var next = 0
        var rounds = 0
        while replicas.contains(where: { $0.executedCount < target }) {
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
                route(from: r, replicas[r].step(verified))
            }
        }
        return rounds
    }

    private func route(from r: ReplicaID, _ out: ReplicaOutput) {
        for o in out.messages {
            if case .prePrepare(let pp) = o.message, case .allReplicas = o.destination {
                batchesProposed += 1
                requestsProposed += pp.requests.count
            }
            switch o.destination {
            case .replica(let to): inbox[to].append(o.message)
            case .allReplicas:
                for to in 0..<config.n where to != r { inbox[to].append(o.message) }
            case .client: break  // replies leave the cluster
            }
        }
    }
}
