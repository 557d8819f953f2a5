import Synchronization

/// A signal that tasks wait on: ``signal()`` lets every waiter go, and from then on ``wait()``
/// returns at once.
///
/// Cancelling a waiting task resumes that waiter alone; the others keep waiting. ``releaseWaiters()``
/// lets the current waiters go without signalling (a service that gave up starting, a bus that
/// shuts down before it connected).
///
/// The same type serves a condition that comes and goes, such as "connected": ``reset()`` takes
/// the signal back, so later waiters wait for the next ``signal()``. Waiters resumed by an earlier
/// signal have already left, so nothing else about waiting changes.
public final class OneShotSignal: Sendable {
    private struct State {
        var isSignalled = false
        var nextWaiterID: UInt64 = 0
        /// By id, so that a cancelled waiter can be found and resumed alone.
        var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]

        mutating func takeWaiters() -> [CheckedContinuation<Void, Never>] {
            defer { waiters.removeAll() }
            return Array(waiters.values)
        }
    }

    private let state = Mutex(State())

    public init() {}

    public var isSignalled: Bool { state.withLock { $0.isSignalled } }

    /// Tasks suspended in a wait (for tests).
    var waiterCount: Int { state.withLock { $0.waiters.count } }

    /// Lets every waiter go, and later waiters return at once. Signalling again does nothing more.
    public func signal() {
        let waiters = state.withLock { state in
            state.isSignalled = true
            return state.takeWaiters()
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Takes the signal back: later waiters wait for the next ``signal()``.
    public func reset() {
        state.withLock { $0.isSignalled = false }
    }

    /// Lets the current waiters go without signalling.
    public func releaseWaiters() {
        let waiters = state.withLock { $0.takeWaiters() }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns once signalled, when ``releaseWaiters()`` is called, or when the calling task is
    /// cancelled (which resumes this waiter only).
    public func wait() async {
        let id = newWaiterID()
        await withTaskCancellationHandler {
            await suspend(id: id, leavingOnCancellation: true)
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
        }
    }

    /// ``wait()`` that cancellation does not cut short, for a task that must not go on before the
    /// signal (for example until a thread it depends on has ended).
    public func waitIgnoringCancellation() async {
        let id = newWaiterID()
        await suspend(id: id, leavingOnCancellation: false)
    }

    private func newWaiterID() -> UInt64 {
        state.withLock { state in
            defer { state.nextWaiterID += 1 }
            return state.nextWaiterID
        }
    }

    private func suspend(id: UInt64, leavingOnCancellation: Bool) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { state -> Bool in
                // Checked under the lock that the cancellation handler takes: a cancellation that
                // came first found nothing to resume, so this waiter must not wait.
                if state.isSignalled || (leavingOnCancellation && Task.isCancelled) { return true }
                state.waiters[id] = continuation
                return false
            }
            if now { continuation.resume() }
        }
    }
}
