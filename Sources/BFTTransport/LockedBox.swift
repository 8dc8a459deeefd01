#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A value guarded by a plain pthread mutex.
///
/// Why not `NIOLockedValueBox`: it lives in `NIOConcurrencyHelpers`, which is not a declared
/// dependency; importing a transitive module works by accident only. Why not
/// `Synchronization.Mutex`: it is `~Copyable` and unavailable before macOS 15 (the package
/// declares macOS 14), so a class that callers can share is simpler here; the Linux-only core
/// thread in `ReplicaNode` does use `Mutex`. Public because the node's observability shares it.
/// The critical sections guarded here are a few field updates, so an uncontended mutex is cheap.
///
/// Never call back into code that might take the same box while holding it: the mutex is not
/// recursive. Callers collect work (closures to run, channels to close) inside the lock and
/// run it afterwards.
public final class LockedBox<Value>: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: Value

    public init(_ value: Value) {
        self.value = value
        self.mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        self.mutex.initialize(to: pthread_mutex_t())
        let rc = pthread_mutex_init(self.mutex, nil)
        precondition(rc == 0, "pthread_mutex_init failed: \(rc)")
    }

    deinit {
        pthread_mutex_destroy(self.mutex)
        self.mutex.deinitialize(count: 1)
        self.mutex.deallocate()
    }

    @inline(__always)
    public func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        pthread_mutex_lock(self.mutex)
        defer { pthread_mutex_unlock(self.mutex) }
        return try body(&self.value)
    }
}
