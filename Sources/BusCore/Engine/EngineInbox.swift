import Glibc
import Synchronization

/// The queue of commands from tasks to the I/O thread, and of the jobs of tasks that run on it
/// (``IOThreadExecutor``), plus the pipe that wakes the thread out of `poll()`. Writers only pay
/// for the wake-up syscall when the thread is actually asleep.
final class EngineInbox: Sendable {
    private struct State {
        var commands: [EngineCommand] = []
        var jobs: [UnownedJob] = []
        var sleeping = false
        var stopping = false
        /// Publishers waiting for room while the queue is above its bound.
        var roomWaiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())
    /// A non-blocking pipe: the write end wakes the thread, the read end is what it polls.
    /// Both are -1 when the pipe could not be made.
    private let wakeReader: Int32
    private let wakeWriter: Int32
    /// Why there is no pipe (the process is out of file descriptors): the engine must not start.
    let wakeFailure: BusError?
    /// Above this many queued commands, `waitForRoom` suspends publishers.
    let highWater: Int

    init(highWater: Int) {
        self.highWater = highWater
        // A failure is kept, not trapped on: `MessageBus.init` cannot throw, `run()` throws it.
        switch Self.makeWakePipe() {
        case .success(let pipe):
            (wakeReader, wakeWriter, wakeFailure) = (pipe.reader, pipe.writer, nil)
        case .failure(let error):
            (wakeReader, wakeWriter, wakeFailure) = (-1, -1, error)
        }
    }

    private static func makeWakePipe() -> Result<(reader: Int32, writer: Int32), BusError> {
        var descriptors: [Int32] = [-1, -1]
        guard pipe(&descriptors) == 0 else {
            let code = errno
            return .failure(
                BusError(
                    code: .resourceExhausted,
                    message: "no file descriptor for the bus's wake-up pipe: \(String(cString: strerror(code))) (errno \(code))"))
        }
        for descriptor in descriptors {
            _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) | O_NONBLOCK)
            _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC)
        }
        return .success((descriptors[0], descriptors[1]))
    }

    deinit {
        if wakeReader >= 0 { close(wakeReader) }
        if wakeWriter >= 0 { close(wakeWriter) }
    }

    /// The descriptor the I/O thread polls for wake-ups.
    var pollDescriptor: Int32 { wakeReader }

    /// Queues a command; returns `false` if the engine has stopped.
    @discardableResult
    func submit(_ command: EngineCommand) -> Bool {
        enqueue { $0.commands.append(command) }
    }

    /// Queues a task's job for the I/O thread; returns `false` once the engine is stopping, when
    /// the thread may never run it.
    func submit(job: UnownedJob) -> Bool {
        enqueue { $0.jobs.append(job) }
    }

    /// Adds work unless the engine is stopping, and wakes the thread if it sleeps.
    private func enqueue(_ add: (inout State) -> Void) -> Bool {
        let (accepted, wake) = state.withLock { state -> (Bool, Bool) in
            guard !state.stopping else { return (false, false) }
            add(&state)
            let wake = state.sleeping
            state.sleeping = false
            return (true, wake)
        }
        if wake { signal() }
        return accepted
    }

    /// Takes the queued jobs (I/O thread only; and at shutdown, to hand them on).
    func takeJobs() -> [UnownedJob] {
        state.withLock { state in
            guard !state.jobs.isEmpty else { return [] }
            defer { state.jobs.removeAll(keepingCapacity: true) }
            return state.jobs
        }
    }

    var isStopping: Bool { state.withLock { $0.stopping } }

    /// Suspends while the queue is over its bound (publish backpressure).
    func waitForRoom() async {
        let full = state.withLock { $0.commands.count >= highWater && !$0.stopping }
        guard full else { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let stillFull = state.withLock { state -> Bool in
                guard state.commands.count >= highWater, !state.stopping else { return false }
                state.roomWaiters.append(continuation)
                return true
            }
            if !stillFull { continuation.resume() }
        }
    }

    /// Takes every queued command (I/O thread only).
    func drain() -> (commands: [EngineCommand], stopping: Bool) {
        let (commands, stopping, waiters) = state.withLock { state in
            let taken = state.commands
            state.commands.removeAll(keepingCapacity: true)
            let waiters = state.roomWaiters
            state.roomWaiters.removeAll()
            return (taken, state.stopping, waiters)
        }
        for waiter in waiters { waiter.resume() }
        return (commands, stopping)
    }

    /// Marks the thread as about to sleep. Returns `false` if work arrived meanwhile.
    func prepareToSleep() -> Bool {
        state.withLock { state in
            guard state.commands.isEmpty, state.jobs.isEmpty, !state.stopping else { return false }
            state.sleeping = true
            return true
        }
    }

    /// Called after `poll()`; `woken` says whether the pipe was readable.
    func finishedSleeping(woken: Bool) {
        state.withLock { $0.sleeping = false }
        guard woken else { return }
        var scratch: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        while read(wakeReader, &scratch, MemoryLayout.size(ofValue: scratch)) > 0 {}
    }

    /// Stops intake and wakes the thread so that it shuts down. Commands still queued are
    /// returned by the final `drain()` so the loop can fail them.
    func stop() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.stopping = true
            let waiters = state.roomWaiters
            state.roomWaiters.removeAll()
            return waiters
        }
        for waiter in waiters { waiter.resume() }
        signal()
    }

    private func signal() {
        guard wakeWriter >= 0 else { return }
        var one: UInt8 = 1
        _ = write(wakeWriter, &one, 1)
    }
}
