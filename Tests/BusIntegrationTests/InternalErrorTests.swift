import BusCore
import BusTestSupport
import Foundation
import Logging
import Synchronization
import Testing

/// Keeps every record logged through it, for tests that check what went to the log.
final class RecordingLogHandlerStore: Sendable {
    struct Record: Sendable {
        var level: Logger.Level
        var message: String
        var metadata: [String: String]
    }

    private let records = Mutex<[Record]>([])

    var all: [Record] { records.withLock { $0 } }

    func logger(label: String = "test.recording") -> Logger {
        Logger(label: label) { _ in Handler(store: self) }
    }

    fileprivate func append(_ record: Record) {
        records.withLock { $0.append(record) }
    }

    private struct Handler: LogHandler {
        let store: RecordingLogHandlerStore
        var logLevel: Logger.Level = .trace
        var metadata: Logger.Metadata = [:]

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: Logging.LogEvent) {
            let merged = metadata.merging(event.metadata ?? [:]) { _, new in new }
            store.append(Record(level: event.level, message: "\(event.message)", metadata: merged.mapValues { "\($0)" }))
        }
    }
}

/// An error whose description holds what a remote caller must never see.
private struct LeakyError: Error, CustomStringConvertible {
    var description: String { "SQLite error 13: disk full writing /var/lib/rackbus/secret.sqlite (token=hunter2)" }
}

@Suite("Internal errors on the real broker", .timeLimit(.minutes(2)))
struct InternalErrorTests {
    @Test("an unexpected error reaches the caller as a generic 500 with an error id; its details go only to the server's log")
    func internalErrorIsConcealedAndLogged() async throws {
        let log = RecordingLogHandlerStore()
        try await BrokerLock.shared.withShared {
            try await MessageBus.withBus(configuration: try TestBroker.configuration(), logger: log.logger()) { bus in
                try await bus.waitUntilConnected()
                let server = try await bus.server(for: Fails.self) { _, _ in throw LeakyError() }
                await withTaskGroup(of: Void.self) { group in
                    group.addTask { await server.run() }
                    defer { server.cancel() }
                    let error = await #expect(throws: BusError.self) { _ = try await bus.call(Fails(status: 0)) }
                    let remote = try? #require(error?.remote)
                    #expect(remote?.status == 500)
                    #expect(remote?.name == "InternalServerError")
                    for text in [remote?.message ?? "", remote?.stack ?? "", "\(remote?.context ?? .null)"] {
                        #expect(!text.contains("hunter2") && !text.contains("secret.sqlite"), "leaked: \(text)")
                    }
                    let errorID = remote?.context["errorId"]?.stringValue ?? ""
                    #expect(!errorID.isEmpty, "the reply carries an error id")
                    #expect(remote?.message.contains(errorID) == true, "the message names the error id")
                    // The server's log has the details under the same id.
                    let logged = log.all.filter { $0.metadata["error.id"] == errorID }
                    #expect(logged.count == 1)
                    #expect(logged.first?.level == .error)
                    #expect(logged.first?.metadata["error"]?.contains("hunter2") == true)
                    #expect(logged.first?.metadata["amqp.routing_key"] == Fails.method)
                }
            }
        }
    }

    @Test("ErrorEvents thrown on purpose, 500s included, reach the caller unchanged")
    func deliberateErrorEventsPassThrough() async throws {
        try await TestBroker.withBus { bus in
            let server = try await bus.server(for: Fails.self) { request, _ in
                switch request.status {
                case 400: throw ErrorEvent.badRequest("mac is not a MAC", context: ["mac": "zz"])
                case 404: throw ErrorEvent.notFound("no lease for 10.0.0.1")
                default: throw ErrorEvent.internalError("the pool is exhausted")
                }
            }
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await server.run() }
                defer { server.cancel() }
                for (status, message) in [(400, "mac is not a MAC"), (404, "no lease for 10.0.0.1"), (500, "the pool is exhausted")] {
                    let error = await #expect(throws: BusError.self) { _ = try await bus.call(Fails(status: status)) }
                    #expect(error?.remote?.status == status)
                    #expect(error?.remote?.message == message)
                }
            }
        }
    }
}
