import NIOCore
import NIOPosix

/// What a listener serves, as its error messages name it.
public struct ListenerRole: Sendable, Hashable {
    /// The verb in "cannot … on host:port" ("listen", "serve metrics").
    public var serving: String
    /// The subject of "… already started" ("transport", "status HTTP server").
    public var name: String

    public init(serving: String, name: String) {
        self.serving = serving
        self.name = name
    }

    /// The transport's listener for replicas and clients.
    public static let transport = ListenerRole(serving: "listen", name: "transport")
}

/// Why a listener's `start()` failed: the transport's, or the node's status HTTP endpoint.
/// One type so "could not bind host:port because …" is decided and worded in one place.
public enum ListenerError: Error, Equatable, Sendable, CustomStringConvertible {
    case addressInUse(ListenerRole, host: String, port: Int)
    case bindFailed(ListenerRole, host: String, port: Int, reason: String)
    case alreadyStarted(ListenerRole)
    case shutDown(ListenerRole)

    /// The error for a bind of `host:port` that threw `error`: `addressInUse` when the port is
    /// taken, `bindFailed` with the error's text otherwise.
    public static func binding(_ role: ListenerRole, host: String, port: Int, failedWith error: any Error) -> ListenerError {
        if let io = error as? IOError, io.errnoCode == EADDRINUSE {
            return .addressInUse(role, host: host, port: port)
        }
        return .bindFailed(role, host: host, port: port, reason: "\(error)")
    }

    public var description: String {
        switch self {
        case .addressInUse(let role, let host, let port):
            return "cannot \(role.serving) on \(host):\(port): address already in use (is another replica running?)"
        case .bindFailed(let role, let host, let port, let reason):
            return "cannot \(role.serving) on \(host):\(port): \(reason)"
        case .alreadyStarted(let role):
            return "\(role.name) already started"
        case .shutDown(let role):
            return "\(role.name) was shut down"
        }
    }
}
