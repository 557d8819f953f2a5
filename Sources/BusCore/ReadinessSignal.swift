import Synchronization

/// "Ready" for a service that others wait on: `signal()` once it serves, `wait()` returns from
/// then on (and also when the waiting task is cancelled, so nobody waits on a service that
/// failed to start).
public final class ReadinessSignal: Sendable {
    private let state = Mutex<(ready: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    public init() {}

    public var isReady: Bool { state.withLock { $0.ready } }

    public func signal() {
        state.withLock { $0.ready = true }
        releaseWaiters()
    }

    public func wait() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { state -> Bool in
                    if state.ready || Task.isCancelled { return true }
                    state.waiters.append(continuation)
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            self.releaseWaiters()
        }
    }

    /// Lets current waiters go without marking ready (a service that gave up starting).
    public func releaseWaiters() {
        let waiters = state.withLock { state in
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }
}
