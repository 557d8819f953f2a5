import Testing

@testable import Scheduler

@Suite("The Scheduler's memory of handed-on tasks")
struct RecentTaskIDsTests {
    @Test("remembers up to its capacity and forgets the oldest first")
    func bounded() {
        var recent = RecentTaskIDs(capacity: 3)
        for id in ["a", "b", "c"] { recent.insert(id) }
        #expect(recent.count == 3 && recent.contains("a"))
        recent.insert("d")
        #expect(recent.count == 3)
        #expect(!recent.contains("a"))
        #expect(recent.contains("b") && recent.contains("c") && recent.contains("d"))
        for index in 0..<10_000 { recent.insert("task-\(index)") }
        #expect(recent.count == 3)
        #expect(recent.contains("task-9999") && !recent.contains("d"))
    }

    @Test("a repeated id takes no extra room; a removed one can come again")
    func repeatsAndRemovals() {
        var recent = RecentTaskIDs(capacity: 2)
        recent.insert("a")
        recent.insert("a")
        recent.insert("b")
        #expect(recent.contains("a") && recent.contains("b"))
        recent.remove("a")
        #expect(!recent.contains("a") && recent.count == 1)
        recent.insert("c")
        recent.insert("a")
        // "b" is now the oldest and gives way.
        #expect(!recent.contains("b") && recent.contains("c") && recent.contains("a"))
        recent.remove("missing")
        #expect(recent.count == 2)
    }
}
