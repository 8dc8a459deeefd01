import BFTCore
import Logging

/// Why `ApplicationFactory.make` refused a specification.
public enum ApplicationFactoryError: Error, Equatable, CustomStringConvertible {
    case unknownSpec(String)
    case emptyCommand

    public var description: String {
        switch self {
        case .unknownSpec(let spec):
            return "unknown application '\(spec)' (expected kv, log or exec:COMMAND)"
        case .emptyCommand:
            return "exec: needs a command, e.g. exec:'python3 docs/examples/counter.py'"
        }
    }
}

/// Builds the application named on the command line (`bft-node --app SPEC`):
///
/// - `kv`: `KVApplication` (SET/GET/DEL).
/// - `log`: `LogApplication` appending to `<dataDirectory>/app.log`.
/// - `exec:COMMAND`: `ExecApplication` running `/bin/sh -c COMMAND`.
///
/// Why a string spec: it keeps the node's flags to one (`--app`) and lets scripts and
/// docker-compose files choose the application without code.
public enum ApplicationFactory {
    /// `budget` (the cluster's protocol configuration) sizes the kv store to the state budget.
    public static func make(spec: String, dataDirectory: String, budget: ProtocolConfig? = nil,
                            logger: Logger = Logger(label: "bft.app")) throws -> any ReplicatedApplication {
        if spec == "kv" { return KVApplication(limits: budget.map { KVApplication.Limits(budget: $0) } ?? .default) }
        if spec == "log" {
            let dir = dataDirectory.hasSuffix("/") ? String(dataDirectory.dropLast()) : dataDirectory
            return try LogApplication(path: (dir.isEmpty ? "." : dir) + "/app.log", logger: logger)
        }
        if spec.hasPrefix("exec:") {
            let command = String(spec.dropFirst("exec:".count))
            guard !command.allSatisfy(\.isWhitespace) else { throw ApplicationFactoryError.emptyCommand }
            if let budget {
                return try ExecApplication(command: command, maxResultBytes: budget.maxResultBytes,
                                           maxStateBytes: budget.maxApplicationStateBytes, logger: logger)
            }
            return try ExecApplication(command: command, logger: logger)
        }
        throw ApplicationFactoryError.unknownSpec(spec)
    }
}
