import BusCore
import BusTestSupport
import Foundation
import Testing

@Suite("Interoperability with an ordinary AMQP client (Python pika)", .timeLimit(.minutes(2)))
struct InteropTests {
    @Test("pika calls a BusCore RPC server RackHD-style and receives a BusCore-published event")
    func pikaClient() async throws {
        try await TestBroker.withBus { bus in
            try await withEchoServer(bus, name: "buscore") {
                let script = TestBroker.repositoryRoot.appendingPathComponent("Tests/Interop/pika_client.py").path
                async let output = TestBroker.run("/usr/bin/env", ["python3", script, TestBroker.url, bus.configuration.exchangePrefix])
                // pika subscribes before it calls; publish until it has taken one event and exited.
                let publisher = Task {
                    var sequence = 0
                    while !Task.isCancelled {
                        try await bus.publish(NodeEvent(nodeId: "n7", sequence: sequence), to: .events, routingKey: "graph.finished.g7")
                        sequence += 1
                        try await Task.sleep(for: .milliseconds(200))
                    }
                }
                defer { publisher.cancel() }
                let text = try await output
                let result = try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))

                let rackhd = try #require(result["rackhd_style"])
                #expect(rackhd["type"] == "Result")
                #expect(rackhd["correlation_id"] == nil || rackhd["correlation_id"] == .null)
                #expect(rackhd["content_type"] == "application/json")
                #expect(rackhd["body"] == ["value": ["text": "from pika", "number": 42, "servedBy": "buscore"]])

                let correlated = try #require(result["with_correlation_id"])
                #expect(correlated["correlation_id"] == "pika-1")
                #expect(correlated["body"]?["value"]?["text"] == "correlated")

                let malformed = try #require(result["malformed"])
                #expect(malformed["type"] == "ErrorEvent")
                #expect(malformed["body"]?["status"] == 400)
                #expect(malformed["body"]?["name"] == "BadRequestError")

                let event = try #require(result["event"])
                #expect(event["routing_key"] == "graph.finished.g7")
                #expect(event["type"] == "Object")
                #expect(event["content_type"] == "application/json")
                #expect(event["body"]?["nodeId"] == "n7")
            }
        }
    }
}
