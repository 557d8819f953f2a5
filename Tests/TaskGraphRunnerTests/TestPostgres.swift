import BusCore
import BusTestSupport
import Foundation
import Logging
import PostgresNIO
import Testing

@testable import TaskGraphRunner

/// Which store a workflow test runs on: each runs on both.
enum StoreKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite
    case postgres

    var testDescription: String { rawValue }
}

/// The PostgreSQL server that `scripts/test` starts (`scripts/postgres` for a developer), found
/// through the environment that script exports.
enum TestPostgres {
    static var url: String {
        ProcessInfo.processInfo.environment["RACKBUS_POSTGRES_URL"] ?? "postgres://rackbus@127.0.0.1:5433/rackbus"
    }

    /// Runs `body` with the URL of a new database of its own, dropped afterwards, so that tests
    /// running side by side never see each other's graphs.
    static func withDatabase<Result: Sendable>(_ body: @Sendable (String) async throws -> Result) async throws -> Result {
        guard case .postgres(var location) = try GraphStoreLocation(url) else {
            throw TestFailure("RACKBUS_POSTGRES_URL is not a postgres:// URL: \(url)")
        }
        let name = "t_\(UUID().uuidString.prefix(8).lowercased())"
        try await administer(location) { try await $0.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)")) }
        location.database = name
        let result: Result
        do {
            result = try await body("postgres://\(location.username)@\(location.host):\(location.port)/\(name)?sslmode=disable")
        } catch {
            try? await drop(name, location)
            throw error
        }
        try await drop(name, location)
        return result
    }

    private static func drop(_ name: String, _ location: GraphStoreLocation.PostgresLocation) async throws {
        // FORCE: a killed instance's connections may linger for a moment.
        try await administer(location) { try await $0.query(PostgresQuery(unsafeSQL: "DROP DATABASE IF EXISTS \(name) WITH (FORCE)")) }
    }

    /// Runs `body` with a client on the server's own database.
    private static func administer(
        _ location: GraphStoreLocation.PostgresLocation, _ body: @Sendable (PostgresClient) async throws -> Void
    ) async throws {
        let client = PostgresClient(
            configuration: .init(
                host: location.host, port: location.port, username: location.username, password: location.password, database: "postgres",
                tls: .disable),
            backgroundLogger: Logger(label: "rackbus.tests.postgres"))
        try await withThrowingTaskGroup(of: Void.self) { group in
            // Queries wait until the pool runs, rather than race it.
            let running = OneShotSignal()
            group.addTask {
                running.signal()
                await client.run()
            }
            defer { group.cancelAll() }
            await running.wait()
            try await body(client)
        }
    }
}
