/// An application that can fail in a way that makes its replica unable to follow the others
/// deterministically (e.g. an external process that died mid-request).
///
/// `ReplicaNode` checks `applicationFailure` after every step of the core, before it persists
/// or sends anything that step produced; when it is set, the node logs it and stops (exit code
/// `ReplicaNode.applicationFailureExitCode`). Why stop rather than answer an error: the request
/// may or may not have taken effect in the failed application, so any result, reply or
/// checkpoint derived from that step could differ from the correct replicas' and must never be
/// signed. Restarting the node replays the log into a fresh application.
public protocol FailableApplication: AnyObject {
    /// Why the application can no longer be used, or nil while it is healthy. Once set it stays set.
    var applicationFailure: String? { get }
}
