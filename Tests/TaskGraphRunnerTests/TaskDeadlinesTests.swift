import Testing

@testable import TaskGraphRunner

@Suite("Task deadlines (pure)")
struct TaskDeadlinesTests {
    let start = ContinuousClock.now

    @Test func firesOnceAtItsDeadline() {
        var deadlines = TaskDeadlines()
        deadlines.watch("t1", timeoutMs: 500, from: start)
        #expect(deadlines.takeExpired(now: start + .milliseconds(499)).isEmpty)
        #expect(deadlines.takeExpired(now: start + .milliseconds(500)) == ["t1"])
        #expect(deadlines.takeExpired(now: start + .seconds(10)).isEmpty, "a deadline fires once")
    }

    @Test func noLimitAndForgottenTasksNeverFire() {
        var deadlines = TaskDeadlines()
        deadlines.watch("unlimited", timeoutMs: 0, from: start)
        deadlines.watch("negative", timeoutMs: -1, from: start)
        deadlines.watch("ended", timeoutMs: 10, from: start)
        deadlines.forget("ended")
        #expect(deadlines.takeExpired(now: start + .seconds(3600)).isEmpty)
    }

    @Test func severalExpireOldestFirst() {
        var deadlines = TaskDeadlines()
        deadlines.watch("late", timeoutMs: 300, from: start)
        deadlines.watch("early", timeoutMs: 100, from: start)
        deadlines.watch("later", timeoutMs: 5000, from: start)
        #expect(deadlines.takeExpired(now: start + .seconds(1)) == ["early", "late"])
        #expect(deadlines.takeExpired(now: start + .seconds(5)) == ["later"])
    }
}
