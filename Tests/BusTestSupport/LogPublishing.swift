import BusCore

/// Runs `publisher` while `body` runs, then shuts it down gracefully (which flushes it).
public func whilePublishing<Result: Sendable>(
    _ publisher: BusLogPublisher, _ body: @Sendable () async throws -> Result
) async throws -> Result {
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await publisher.run() }
        defer { publisher.shutdown() }
        return try await body()
    }
}
