import Foundation
import Logging
import Synchronization

/// What tasks and the I/O thread share. Everything here is `Sendable` and thread-safe.
final class EngineShared: Sendable {
    let configuration: BusConfiguration
    let logger: Logger
    let inbox: EngineInbox
    let pending = PendingCalls()
    let correlation: CorrelationIDCodec
    let metrics: BusMetrics
    private let status = Mutex<(connected: Bool, generation: UInt64)>((false, 0))
    /// The broker address of the current (or last) connection.
    private let endpoint = Mutex<BusConfiguration.Endpoint?>(nil)
    /// Tasks in `waitUntilConnected`, by id, so that each can leave on its own (timeout,
    /// cancellation) without waking the others.
    private let statusWaiters = Mutex<(nextID: UInt64, waiting: [UInt64: CheckedContinuation<Void, Never>])>((0, [:]))

    init(configuration: BusConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        self.inbox = EngineInbox(highWater: configuration.maxBufferedOperations)
        var generator = SystemRandomNumberGenerator()
        // Six random characters keep ids short enough for Swift's inline small strings.
        self.correlation = CorrelationIDCodec(prefix: String(EngineLoop.randomSuffix(using: &generator).prefix(6)))
        self.metrics = BusMetrics()
    }

    var isConnected: Bool { status.withLock { $0.connected } }

    var connectedEndpoint: BusConfiguration.Endpoint? { endpoint.withLock { $0 } }

    func setConnected(generation: UInt64, to endpoint: BusConfiguration.Endpoint) {
        self.endpoint.withLock { $0 = endpoint }
        status.withLock { $0 = (true, generation) }
        metrics.connected.record(1)
        releaseWaiters()
    }

    func setDisconnected() {
        status.withLock { $0.connected = false }
        metrics.connected.record(0)
    }

    /// Suspends until the connection is up, ``releaseWaiters()`` is called (shutdown), or the
    /// calling task is cancelled, which resumes this waiter only (used by
    /// `MessageBus.waitUntilConnected`).
    func waitUntilConnected() async {
        let id = statusWaiters.withLock { waiters in
            defer { waiters.nextID += 1 }
            return waiters.nextID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = status.withLock { state -> Bool in
                    if state.connected { return true }
                    return statusWaiters.withLock { waiters in
                        // Checked under the lock that `onCancel` takes: a cancel that came
                        // first finds nothing to resume, so this must not wait.
                        if Task.isCancelled { return true }
                        waiters.waiting[id] = continuation
                        return false
                    }
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            statusWaiters.withLock { $0.waiting.removeValue(forKey: id) }?.resume()
        }
    }

    /// Resumes every waiter: the connection is up, or the bus is shutting down.
    func releaseWaiters() {
        let waiters = statusWaiters.withLock { waiters in
            defer { waiters.waiting.removeAll() }
            return Array(waiters.waiting.values)
        }
        for waiter in waiters { waiter.resume() }
    }
}

/// Starts and stops the dedicated I/O thread. A dedicated thread (not the cooperative pool, which
/// has only as many threads as cores) is where every blocking rabbitmq-c call happens.
final class BusEngine: Sendable {
    let shared: EngineShared
    private let thread = Mutex<Thread?>(nil)
    private let finished = Mutex<(done: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    init(configuration: BusConfiguration, logger: Logger) {
        self.shared = EngineShared(configuration: configuration, logger: logger)
    }

    /// Starts the I/O thread once; later calls do nothing. Throws when the engine cannot run
    /// (no wake-up pipe: the process is out of file descriptors).
    func start() throws(BusError) {
        if let failure = shared.inbox.wakeFailure { throw failure }
        thread.withLock { thread in
            guard thread == nil else { return }
            let newThread = Thread { [self] in
                EngineLoop(shared: shared).run()
                let waiters = finished.withLock { state in
                    state.done = true
                    defer { state.waiters.removeAll() }
                    return state.waiters
                }
                for waiter in waiters { waiter.resume() }
            }
            newThread.name = "rackbus-io"
            newThread.start()
            thread = newThread
        }
    }

    var isStarted: Bool { thread.withLock { $0 != nil } }

    @discardableResult
    func submit(_ command: EngineCommand) -> Bool {
        shared.inbox.submit(command)
    }

    /// Stops intake, lets the thread close the connection, and waits until it has.
    func stop() async {
        shared.inbox.stop()
        shared.releaseWaiters()
        guard isStarted else {
            // Never started: fail whatever was queued so that nobody waits forever.
            EngineLoop(shared: shared).runShutdownOnly()
            return
        }
        await waitUntilFinished()
    }

    /// Returns once the I/O thread has closed the connection and ended.
    func waitUntilFinished() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = finished.withLock { state -> Bool in
                if state.done { return true }
                state.waiters.append(continuation)
                return false
            }
            if done { continuation.resume() }
        }
    }
}
