import Foundation
import Subprocess
import Synchronization
#if canImport(System)
import System
#else
import SystemPackage
#endif

/// One running `bft-node` (or any) process, started with swift-subprocess and watched until it
/// exits. Its standard output and error are appended to a log file.
///
/// Why a task per process: `Subprocess.run` is async and returns only once the process ended,
/// while the tools that use this (bft-cluster's timer, bft-loadgen's threads) are synchronous.
/// The task records the pid when the process is up and the termination status when it ends;
/// signals go to that pid only while it is still recorded as running.
public final class ReplicaProcess: Sendable {
    public enum Phase: Sendable, Equatable {
        case starting
        case running(pid: pid_t)
        case exited(TerminationStatus)
        case failedToStart(String)
    }

    private let phaseBox = Mutex(Phase.starting)
    /// Left once the process runs or could not be started; `ended` once it exited or could not
    /// be started. Waiters wake when that happens instead of polling: a test that kills four
    /// replicas one after the other must not give the survivors extra milliseconds per kill.
    private let started = DispatchGroup()
    private let ended = DispatchGroup()

    public var phase: Phase { phaseBox.withLock { $0 } }

    public var isRunning: Bool {
        if case .running = phase { return true }
        return false
    }

    /// The process id while the process runs (stopped by SIGSTOP counts as running).
    public var pid: pid_t? {
        if case .running(let pid) = phase { return pid }
        return nil
    }

    /// "up", "exited 3", "killed by signal 9" or "failed to start: …".
    public var stateDescription: String {
        switch phase {
        case .starting: return "starting"
        case .running: return "up"
        case .exited(.exited(let code)): return "exited \(code)"
        case .exited(.signaled(let signal)): return "killed by signal \(signal)"
        case .failedToStart(let why): return "failed to start: \(why)"
        }
    }

    private init() {
        started.enter()
        ended.enter()
    }

    /// Moves to `new`, leaving each group the first time its condition holds.
    private func enter(_ new: Phase) {
        let old = phaseBox.withLock { phase in
            let old = phase
            phase = new
            return old
        }
        if case .starting = old { started.leave() }
        switch (old, new) {
        case (.exited, _), (.failedToStart, _): break
        case (_, .exited), (_, .failedToStart): ended.leave()
        default: break
        }
    }

    /// Starts `executable` and returns once it runs (or throws if it could not be started).
    public static func launch(executable: String, arguments: [String], extraEnvironment: [String: String] = [:],
                              logPath: String) throws(HarnessError) -> ReplicaProcess {
        let out = open(logPath, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        let err = open(logPath, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard out >= 0, err >= 0 else {
            let reason = String(cString: strerror(errno))
            if out >= 0 { close(out) }
            if err >= 0 { close(err) }
            throw HarnessError("cannot open \(logPath): \(reason)")
        }
        var updates: [Environment.Key: String?] = [:]
        for (k, v) in extraEnvironment { if let key = Environment.Key(rawValue: k) { updates[key] = v } }
        let environment = Environment.inherit.updating(updates)
        let process = ReplicaProcess()
        Task.detached {
            do {
                let result = try await Subprocess.run(
                    .path(FilePath(executable)), arguments: Arguments(arguments), environment: environment,
                    input: .none,
                    output: .fileDescriptor(FileDescriptor(rawValue: out), closeAfterSpawningProcess: true),
                    error: .fileDescriptor(FileDescriptor(rawValue: err), closeAfterSpawningProcess: true)
                ) { execution in
                    let pid = execution.processIdentifier.value
                    process.enter(.running(pid: pid))
                }
                process.enter(.exited(result.terminationStatus))
            } catch {
                process.enter(.failedToStart("\(error)"))
            }
        }
        process.started.wait()
        if case .failedToStart(let why) = process.phase { throw HarnessError("cannot start \(executable): \(why)") }
        return process
    }

    /// Sends `signal` if the process is still running; returns whether it was sent.
    @discardableResult
    public func send(_ signal: Int32) -> Bool {
        phaseBox.withLock { phase in
            guard case .running(let pid) = phase else { return false }
            return Foundation.kill(pid, signal) == 0
        }
    }

    /// Waits until the process has exited; false when `timeout` seconds passed first.
    @discardableResult
    public func waitUntilExit(timeout: Double = .infinity) -> Bool {
        guard timeout.isFinite, timeout < 1e9 else {
            ended.wait()
            return true
        }
        return ended.wait(timeout: .now() + max(0, timeout)) == .success
    }
}

/// A one-line error from the harness (a missing binary, a file that cannot be opened, …).
public struct HarnessError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
