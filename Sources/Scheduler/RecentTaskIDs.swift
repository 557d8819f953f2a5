import DequeModule

/// The task ids the Scheduler handed on most recently, at most `capacity` of them: enough to
/// drop the duplicate `schedule` requests a restarted TaskGraphRunner sends, without growing
/// forever. An older duplicate that slips past it is still caught by the runners' durable
/// finished-task journal.
struct RecentTaskIDs {
    let capacity: Int
    private var members: Set<String> = []
    private var order: Deque<String> = []

    init(capacity: Int) {
        self.capacity = max(1, capacity)
    }

    var count: Int { members.count }

    func contains(_ id: String) -> Bool { members.contains(id) }

    /// Remembers `id`, forgetting the oldest one when full.
    mutating func insert(_ id: String) {
        guard members.insert(id).inserted else { return }
        order.append(id)
        if order.count > capacity, let oldest = order.popFirst() {
            members.remove(oldest)
        }
    }

    /// Forgets `id` (its hand-over failed and it will come again).
    mutating func remove(_ id: String) {
        guard members.remove(id) != nil else { return }
        if let index = order.lastIndex(of: id) { order.remove(at: index) }
    }
}
