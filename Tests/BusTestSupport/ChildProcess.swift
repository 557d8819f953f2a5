import Foundation
import Glibc
import Synchronization

/// A program the tests start: `posix_spawn`, then a blocking `waitpid` on a thread of its own.
///
/// Not Foundation's `Process`: on Linux its `waitUntilExit` can miss a child's exit and never
/// return, which parked whole test runs. `waitpid` on the child's own id cannot miss it.
public final class ChildProcess: Sendable {
    public let processIdentifier: pid_t
    private let state = Mutex(State.running(waiters: []))

    private enum State {
        case running(waiters: [CheckedContinuation<Int32, Never>])
        case exited(status: Int32)
    }

    /// Starts `executable` (a path) with `arguments`. Standard input, output and error come from
    /// and go to the files named (created or appended to), or /dev/null when nil. No other file
    /// descriptor of the test process reaches the child: an inherited broker socket would keep a
    /// closed connection open.
    public init(
        _ executable: String, _ arguments: [String], environment: [String: String],
        input: String? = nil, output: String? = nil, error: String? = nil
    ) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, input ?? "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output ?? "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, error ?? "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0o644)
        guard let addCloseFrom = Self.addCloseFrom else { throw TestFailure("posix_spawn needs glibc 2.34 or later here") }
        _ = addCloseFrom(&actions, 3)

        // The test process ignores SIGPIPE (and may block signals); a child starts with the defaults.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var all = sigset_t()
        sigfillset(&all)
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        guard result == 0 else {
            throw TestFailure("cannot start \(executable): \(String(cString: strerror(result)))")
        }
        processIdentifier = pid
        let thread = Thread { [self] in reap() }
        thread.name = "reap \(pid)"
        thread.start()
    }

    /// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34 and later; Debian 12 has 2.36),
    /// which Swift's Glibc module does not export: found at run time.
    private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    private static let addCloseFrom: AddCloseFrom? = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np").map {
        unsafeBitCast($0, to: AddCloseFrom.self)
    }

    /// Blocks its own thread until the child ends, then wakes every waiter.
    private func reap() {
        // Wait without reaping, then reap under the lock: `signal` never reaches a reused id.
        var info = siginfo_t()
        while waitid(P_PID, id_t(processIdentifier), &info, WEXITED | WNOWAIT) == -1 && errno == EINTR {}
        let (code, waiters) = state.withLock { state -> (Int32, [CheckedContinuation<Int32, Never>]) in
            var status: Int32 = 0
            while waitpid(processIdentifier, &status, 0) == -1 && errno == EINTR {}
            // The shell's convention: the exit code, or 128 + the signal that ended it.
            let code = status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + status & 0x7f
            guard case .running(let waiters) = state else { return (code, []) }
            state = .exited(status: code)
            return (code, waiters)
        }
        for waiter in waiters { waiter.resume(returning: code) }
    }

    public var isRunning: Bool {
        state.withLock { if case .running = $0 { true } else { false } }
    }

    public func signal(_ signal: Int32) {
        // Only while running: once reaped, the id may belong to another process.
        state.withLock { if case .running = $0 { _ = Glibc.kill(processIdentifier, signal) } }
    }

    /// Waits until the child ends and returns its exit status. A cancelled wait kills the child
    /// (SIGKILL), so that a test's time limit ends the test instead of waiting on for ever.
    @discardableResult
    public func waitForExit() async -> Int32 {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Int32, Never>) in
                let exited = state.withLock { state -> Int32? in
                    switch state {
                    case .exited(let status):
                        return status
                    case .running(var waiters):
                        waiters.append(continuation)
                        state = .running(waiters: waiters)
                        return nil
                    }
                }
                if let exited { continuation.resume(returning: exited) }
            }
        } onCancel: {
            signal(SIGKILL)
        }
    }

    /// Waits up to `timeout` for the child to end; nil if it still runs.
    public func waitForExit(within timeout: Duration) async -> Int32? {
        guard (try? await eventually(timeout: timeout) { !isRunning }) != nil else { return nil }
        return await waitForExit()
    }
}
