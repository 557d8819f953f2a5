import Foundation
import Logging
import Synchronization

/// What tasks and the I/O thread share. Everything here is `Sendable` and thread-safe.
final class EngineShared: Sendable {
    let configuration: BusConfiguration
    let logger: Logger
    let inbox: EngineInbox
    /// Runs tasks that prefer it on the I/O thread.
    let executor: IOThreadExecutor
    let pending = PendingCalls()
    let correlation: CorrelationIDCodec
    let metrics: BusMetrics
    /// Signalled while the connection is up; reset when it drops, so that `waitUntilConnected`
    /// waits again.
    private let connection = OneShotSignal()
    /// The broker address of the current (or last) connection.
    private let endpoint = Mutex<BusConfiguration.Endpoint?>(nil)

    init(configuration: BusConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        self.inbox = EngineInbox(highWater: configuration.maxBufferedOperations)
        self.executor = IOThreadExecutor(inbox: inbox)
        var generator = SystemRandomNumberGenerator()
        // Six random characters keep ids short enough for Swift's inline small strings.
        self.correlation = CorrelationIDCodec(prefix: String(EngineLoop.randomSuffix(using: &generator).prefix(6)))
        self.metrics = BusMetrics()
    }

    var isConnected: Bool { connection.isSignalled }

    var connectedEndpoint: BusConfiguration.Endpoint? { endpoint.withLock { $0 } }

    func setConnected(to endpoint: BusConfiguration.Endpoint) {
        self.endpoint.withLock { $0 = endpoint }
        connection.signal()
        metrics.connected.record(1)
    }

    func setDisconnected() {
        connection.reset()
        metrics.connected.record(0)
    }

    /// Suspends until the connection is up, ``releaseWaiters()`` is called (shutdown), or the
    /// calling task is cancelled, which resumes this waiter only (used by
    /// `MessageBus.waitUntilConnected`).
    func waitUntilConnected() async {
        await connection.wait()
    }

    /// Resumes every waiter without a connection: the bus is shutting down.
    func releaseWaiters() {
        connection.releaseWaiters()
    }
}

/// Starts and stops the dedicated I/O thread. A dedicated thread (not the cooperative pool, which
/// has only as many threads as cores) is where every blocking rabbitmq-c call happens.
final class BusEngine: Sendable {
    let shared: EngineShared
    private let thread = Mutex<Thread?>(nil)
    private let finished = OneShotSignal()

    init(configuration: BusConfiguration, logger: Logger) {
        self.shared = EngineShared(configuration: configuration, logger: logger)
    }

    /// Starts the I/O thread once; later calls do nothing. Throws when the engine cannot run
    /// (no wake-up pipe: the process is out of file descriptors).
    func start() throws(BusError) {
        if let failure = shared.inbox.wakeFailure { throw failure }
        thread.withLock { thread in
            guard thread == nil else { return }
            // Captures what it uses, not `self`: the engine owns the thread, and a thread that
            // owned the engine would keep it (and its wake-up pipe) alive for ever.
            let (shared, finished) = (shared, finished)
            let newThread = Thread {
                Thread.nameCurrent("rackbus-io")
                EngineLoop(shared: shared).run()
                finished.signal()
            }
            newThread.start()
            thread = newThread
        }
    }

    var isStarted: Bool { thread.withLock { $0 != nil } }

    @discardableResult
    func submit(_ command: EngineCommand) -> Bool {
        shared.inbox.submit(command)
    }

    /// Submits the command that `command` makes around a continuation and awaits the engine's
    /// answer: a value, or a ``BusError`` (``BusError/Code/shutdown`` once the bus has stopped).
    func answer<T: Sendable>(_ command: (CheckedContinuation<T, any Error>) -> EngineCommand) async throws(BusError) -> T {
        do {
            return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
                if !submit(command(continuation)) {
                    continuation.resume(throwing: BusError(code: .shutdown, message: "the bus is shut down"))
                }
            }
        } catch {
            throw BusError.from(error)
        }
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

    /// Returns once the I/O thread has closed the connection and ended, cancelled or not: callers
    /// (`MessageBus.run()`) must not return while the connection is still open.
    func waitUntilFinished() async {
        await finished.waitIgnoringCancellation()
    }
}
