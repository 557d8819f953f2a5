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

/// scripts/with-time-limit, which scripts/test runs `swift test` under.
@Suite("A test run that stops making progress ends with a report")
struct TimeLimitScriptTests {
    static let script = TestBroker.repositoryRoot.appendingPathComponent("scripts/with-time-limit").path

    /// A stand-in for `swift test`: two tests start, one ends, then its test process (a
    /// `*.xctest` in a process group of its own, as swift test runs it) hangs.
    static func fakeRun(in folder: URL) throws -> URL {
        let testProcess = folder.appendingPathComponent("Fake.xctest")
        try FileManager.default.createSymbolicLink(atPath: testProcess.path, withDestinationPath: "/bin/sleep")
        let url = folder.appendingPathComponent("fake-swift-test.sh")
        try """
        #!/bin/sh
        echo '◇ Test "hangs for ever" started.'
        echo '◇ Test "ends" started.'
        echo '✔ Test "ends" passed after 0.1 seconds.'
        echo '◇ Test "parameterized" started.'
        echo '✔ Test "parameterized" with 2 test cases passed after 0.2 seconds.'
        setsid \(testProcess.path) 600 &
        wait
        """.write(to: url, atomically: true, encoding: .utf8)
        chmod(url.path, 0o755)
        return url
    }

    @Test("past its limit the run and its test process end, with status 124, naming the tests that never ended")
    func stuckRunIsEnded() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("rackbus-fake-run-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let fake = try Self.fakeRun(in: folder)
        let started = ContinuousClock.now
        let failure = await #expect(throws: TestFailure.self) { try await TestBroker.run(Self.script, ["6", fake.path]) }
        #expect(ContinuousClock.now - started < .seconds(30))
        let output = failure?.description ?? ""
        #expect(output.contains("exited 124"), "\(output)")
        let report = try #require(output.components(separatedBy: "tests started and not ended:").last)
        let unfinished = report.split(separator: "\n").filter { $0.hasPrefix("\"") }
        #expect(unfinished == ["\"hangs for ever\""], "\(output)")
        #expect(output.contains("did not end within 6 s"), "\(output)")
    }

    @Test("a run that ends in time keeps its output and exit status, with no report")
    func finishedRunKeepsItsStatus() async throws {
        let failure = await #expect(throws: TestFailure.self) {
            try await TestBroker.run(Self.script, ["60", "/bin/sh", "-c", "echo ran; exit 3"])
        }
        let output = failure?.description ?? ""
        #expect(output.contains("exited 3") && output.contains("ran"), "\(output)")
        #expect(!output.contains("still running"), "\(output)")
        #expect(try await TestBroker.run(Self.script, ["60", "/bin/echo", "fine"]).contains("fine"))
    }
}
