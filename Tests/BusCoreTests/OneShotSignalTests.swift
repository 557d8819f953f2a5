import BusTestSupport
import Foundation
import Testing

@testable import BusCore

@Suite("OneShotSignal", .timeLimit(.minutes(1)))
struct OneShotSignalTests {
    /// Starts `count` tasks that wait on `signal` and counts those that returned.
    private func waiters(
        _ count: Int, on signal: OneShotSignal, returned: Counter
    ) -> [Task<Void, Never>] {
        (0..<count).map { _ in
            Task {
                await signal.wait()
                returned.increment()
            }
        }
    }

    @Test("once signalled, waits return at once, and signalling again changes nothing")
    func signalThenWait() async {
        let signal = OneShotSignal()
        #expect(!signal.isSignalled)
        signal.signal()
        signal.signal()
        #expect(signal.isSignalled)
        await signal.wait()
        await signal.wait()
        #expect(signal.waiterCount == 0)
    }

    @Test("waiters suspend until the signal, then all return")
    func waitThenSignal() async throws {
        let signal = OneShotSignal()
        let returned = Counter()
        let tasks = waiters(3, on: signal, returned: returned)
        try await eventually(pollingEvery: .milliseconds(5)) { signal.waiterCount == 3 }
        #expect(returned.value == 0)
        signal.signal()
        for task in tasks { await task.value }
        #expect(returned.value == 3)
        #expect(signal.waiterCount == 0)
    }

    @Test("a cancelled waiter is resumed alone; the others keep waiting for the signal")
    func cancellationResumesOnlyTheCancelledWaiter() async throws {
        let signal = OneShotSignal()
        // Lets every waiter go should the test fail, so that the run does not hang.
        defer { signal.signal() }
        let returned = Counter()
        let tasks = waiters(3, on: signal, returned: returned)
        try await eventually(pollingEvery: .milliseconds(5)) { signal.waiterCount == 3 }
        tasks[1].cancel()
        try await eventually(pollingEvery: .milliseconds(5)) { returned.value >= 1 }
        try await Task.sleep(for: .milliseconds(50))
        #expect(returned.value == 1)
        #expect(signal.waiterCount == 2)
        #expect(!signal.isSignalled)
        signal.signal()
        for task in tasks { await task.value }
        #expect(returned.value == 3)
    }

    @Test("a task cancelled before it waits does not wait")
    func cancelledBeforeWaiting() async throws {
        let signal = OneShotSignal()
        defer { signal.signal() }
        let returned = Counter()
        Task {
            // Cancelled before the wait registers: the handler runs first and finds nothing.
            withUnsafeCurrentTask { $0?.cancel() }
            await signal.wait()
            returned.increment()
        }
        try await eventually(timeout: .seconds(5), pollingEvery: .milliseconds(5)) { returned.value == 1 }
        #expect(signal.waiterCount == 0)
        #expect(!signal.isSignalled)
    }

    @Test("releaseWaiters lets current waiters go without signalling; later ones wait")
    func releaseWithoutSignal() async throws {
        let signal = OneShotSignal()
        let returned = Counter()
        let first = waiters(2, on: signal, returned: returned)
        try await eventually(pollingEvery: .milliseconds(5)) { signal.waiterCount == 2 }
        signal.releaseWaiters()
        for task in first { await task.value }
        #expect(!signal.isSignalled)
        let later = waiters(1, on: signal, returned: returned)
        try await eventually(pollingEvery: .milliseconds(5)) { signal.waiterCount == 1 }
        #expect(returned.value == 2)
        signal.signal()
        for task in later { await task.value }
        #expect(returned.value == 3)
    }

    @Test("reset takes the signal back: later waiters wait for the next signal")
    func resetRearms() async throws {
        let signal = OneShotSignal()
        signal.signal()
        signal.reset()
        #expect(!signal.isSignalled)
        let returned = Counter()
        let tasks = waiters(1, on: signal, returned: returned)
        try await eventually(pollingEvery: .milliseconds(5)) { signal.waiterCount == 1 }
        #expect(returned.value == 0)
        signal.signal()
        for task in tasks { await task.value }
        #expect(returned.value == 1)
    }

    @Test("waitIgnoringCancellation keeps waiting when its task is cancelled")
    func waitIgnoringCancellation() async throws {
        let signal = OneShotSignal()
        let returned = Counter()
        let task = Task {
            await signal.waitIgnoringCancellation()
            returned.increment()
        }
        try await eventually(pollingEvery: .milliseconds(5)) { signal.waiterCount == 1 }
        task.cancel()
        try await Task.sleep(for: .milliseconds(50))
        #expect(returned.value == 0)
        #expect(signal.waiterCount == 1)
        signal.signal()
        await task.value
        #expect(returned.value == 1)
    }
}
