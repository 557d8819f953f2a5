import Testing

@testable import Scheduler

@Suite("What a Scheduler decides (SchedulingState)")
struct SchedulingStateTests {
    typealias State = SchedulingState<String>
    let now = ContinuousClock.now

    @Test("a spare counts the hand-overs it watched: once active, the limit holds until they end")
    func spareTakesOverKnowingWhatRuns() {
        var state = State(concurrency: 1, remembered: 100)
        state.observedHandOver(taskId: "a", timeoutMs: 0, now: now)
        #expect(state.role == .standingBy && state.running == ["a"])
        let activated = state.received("request b", taskId: "b", timeoutMs: 0)
        #expect(activated, "its first request makes it active")
        let again = state.received("request c", taskId: "c", timeoutMs: 0)
        #expect(!again, "only once")
        let blocked = state.takeNext(now: now)
        #expect(blocked == nil, "a runs: no slot")
        let freed = state.taskEnded("a")
        #expect(freed)
        let next = state.takeNext(now: now)
        #expect(next?.request == "request b" && next?.counts == true)
        #expect(state.running == ["b"])
    }

    @Test("a request for a task it watched (the old active one's, redelivered) goes on without a slot")
    func redeliveredRequestOfAWatchedTask() {
        var state = State(concurrency: 1, remembered: 100)
        state.observedHandOver(taskId: "a", timeoutMs: 0, now: now)
        _ = state.received("request a again", taskId: "a", timeoutMs: 0)
        // The slot is a's own: taken, so even the duplicate waits; once a ends it goes on uncounted.
        let blocked = state.takeNext(now: now)
        #expect(blocked == nil)
        let freed = state.taskEnded("a")
        #expect(freed)
        let next = state.takeNext(now: now)
        #expect(next?.request == "request a again" && next?.counts == false)
        #expect(state.running.isEmpty)
    }

    @Test("a hand-over heard after its task's end is not counted; once active, hand-overs are its own")
    func lateAndOwnHandOvers() {
        var state = State(concurrency: 2, remembered: 100)
        let freed = state.taskEnded("a")
        #expect(!freed)
        state.observedHandOver(taskId: "a", timeoutMs: 0, now: now)
        #expect(state.running.isEmpty)
        _ = state.received("request b", taskId: "b", timeoutMs: 0)
        state.observedHandOver(taskId: "x", timeoutMs: 0, now: now)
        #expect(state.running.isEmpty, "the active one counts what it hands on, not what it hears")
        let own = state.takeNext(now: now)
        #expect(own?.counts == true)
        state.observedHandOver(taskId: "b", timeoutMs: 0, now: now)
        #expect(state.running == ["b"])
    }

    @Test("deadlines: a spare keeps them and cancels nothing; active, it cancels each once")
    func deadlinesWaitForTheActiveRole() {
        var state = State(concurrency: 1, remembered: 100)
        state.observedHandOver(taskId: "a", timeoutMs: 100, now: now)
        let later = now + .seconds(1)
        let standingBy = state.takeExpired(now: later)
        #expect(standingBy.isEmpty)
        _ = state.received("request b", taskId: "b", timeoutMs: 0)
        let active = state.takeExpired(now: later)
        #expect(active == ["a"])
        let again = state.takeExpired(now: later)
        #expect(again.isEmpty)
    }

    @Test("a failed hand-over frees its slot and is forgotten, so its redelivery counts again")
    func failedHandOver() {
        var state = State(concurrency: 1, remembered: 100)
        _ = state.received("request a", taskId: "a", timeoutMs: 0)
        let first = state.takeNext(now: now)
        #expect(first?.counts == true)
        state.handOverFailed("a")
        #expect(state.running.isEmpty && state.knownCount == 0)
        _ = state.received("request a", taskId: "a", timeoutMs: 0)
        let retried = state.takeNext(now: now)
        #expect(retried?.counts == true)
    }
}
