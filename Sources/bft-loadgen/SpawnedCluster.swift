import BFTByzantine
import BFTClusterHarness
import BFTConfig
import Foundation
import Synchronization

/// A local cluster started by `--spawn`: the configuration's replicas with the kv application in
/// a fresh temporary data directory, run by the shared cluster harness. bft-node must sit next to
/// this executable; it is not built here (a one-line error says how to build it).
enum SpawnedCluster {
    static let runs = Atomic<Int>(0)

    static func start(configPath: String, cluster: ClusterConfiguration, fsync: String, byzantine: (id: Int, mode: ByzantineMode)?,
                      statusIntervalMs: Int) throws(HarnessError) -> LocalCluster {
        let node = try NodeBinary.locate(tool: "bft-loadgen")
        let run = runs.add(1, ordering: .relaxed).newValue
        let data = NSTemporaryDirectory() + "bft-loadgen-\(getpid())-\(run)"
        let specs = cluster.replicas.map { r in
            var extra = ["--fsync", fsync, "--status-interval-ms", "\(statusIntervalMs)"]
            var env: [String: String] = [:]
            if let byzantine, byzantine.id == r.id {
                let options = LocalCluster.byzantineOptions(mode: byzantine.mode.rawValue)
                extra += options.arguments
                env = options.environment
            }
            return LocalCluster.ReplicaSpec(id: r.id, arguments: LocalCluster.nodeArguments(
                configPath: configPath, id: r.id, dataDirectory: "\(data)/replica-\(r.id)", app: "kv", extra: extra),
                extraEnvironment: env)
        }
        let local = LocalCluster(node: node, dataDirectory: data, specs: specs)
        do { try local.startAll() } catch {
            local.stop()
            throw error
        }
        Thread.sleep(forTimeInterval: 1.0)
        if let dead = local.replicaIDs.first(where: { !local.isRunning($0) }) {
            local.stop()
            throw HarnessError("replica \(dead) exited at start; see \(local.directory(of: dead))/node.log")
        }
        return local
    }
}
