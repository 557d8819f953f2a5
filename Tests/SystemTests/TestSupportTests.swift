import BusTestSupport
import Foundation
import Glibc
import Testing

/// The test support's own waits: a stuck test must fail by its time limit, never park the run.
@Suite("Test support: programs and the broker lock end their waits")
struct TestSupportTests {
    @Test("a program's output and exit status come back; a failing one throws with its output")
    func runsPrograms() async throws {
        let output = try await TestBroker.run("/bin/sh", ["-c", "read line; echo \"got $line\"; echo err >&2"], input: "hello\n")
        #expect(output.contains("got hello") && output.contains("err"), "\(output)")
        await #expect(throws: TestFailure.self) { try await TestBroker.run("/bin/sh", ["-c", "echo why; exit 3"]) }
        let child = try ChildProcess("/bin/sh", ["-c", "kill -TERM $$"], environment: [:])
        #expect(await child.waitForExit() == 128 + SIGTERM)
        #expect(!child.isRunning)
    }

    @Test("a cancelled wait for a program kills it")
    func cancelledRunKillsTheProgram() async throws {
        let child = try ChildProcess("/bin/sleep", ["600"], environment: [:])
        let waiting = Task { await child.waitForExit() }
        try await Task.sleep(for: .milliseconds(100))
        waiting.cancel()
        #expect(await waiting.value == 128 + SIGKILL)
        #expect(!child.isRunning)
    }

    @Test("a program that outlives its timeout is reported as still running")
    func timedWait() async throws {
        let child = try ChildProcess("/bin/sleep", ["600"], environment: [:])
        #expect(await child.waitForExit(within: .milliseconds(200)) == nil)
        child.signal(SIGKILL)
        #expect(await child.waitForExit(within: .seconds(10)) == 128 + SIGKILL)
    }

    @Test("a cancelled wait for the broker lock ends with CancellationError, and the lock still works")
    func cancelledLockWait() async throws {
        let lock = BrokerLock()
        let holding = AsyncStream<Void>.makeStream()
        let release = AsyncStream<Void>.makeStream()
        let holder = Task {
            try await lock.withExclusive {
                holding.continuation.yield()
                for await _ in release.stream { break }
            }
        }
        for await _ in holding.stream { break }
        let waiter = Task { try await lock.withShared { "got it" } }
        try await Task.sleep(for: .milliseconds(100))
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.value }
        // A waiter cancelled before it queued never gets in either.
        let early = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await lock.withExclusive { "got it" }
        }
        await #expect(throws: CancellationError.self) { try await early.value }
        release.continuation.yield()
        try await holder.value
        #expect(try await lock.withExclusive { "free" } == "free")
        #expect(try await lock.withShared { try await lock.withShared { "nested" } } == "nested")
    }
}
