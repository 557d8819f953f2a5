import BusCore
import BusTestSupport
import Foundation
import NodeProtocol
import Testing

@testable import TaskGraphRunner

@Suite("Graph.Discovery: the completion-URI wait and the SKU job", .timeLimit(.minutes(2)))
struct DiscoveryGraphTests {
    @Test("A completion needs a 2xx answer to a URL that contains the completion URI")
    func completionRule() {
        func response(_ status: Int, _ url: String) -> HTTPResponseEvent {
            HTTPResponseEvent(address: "10.0.0.5", method: "GET", url: url, statusCode: status, time: 3)
        }
        #expect(WaitForCompletionURIJob.completes(response(200, "/api/current/catalogs/smbios?macs=x"), completionURI: "catalogs/smbios"))
        #expect(WaitForCompletionURIJob.completes(response(204, "/catalogs/smbios"), completionURI: "catalogs/smbios"))
        #expect(!WaitForCompletionURIJob.completes(response(404, "/api/current/catalogs/smbios"), completionURI: "catalogs/smbios"))
        #expect(!WaitForCompletionURIJob.completes(response(200, "/api/current/profiles"), completionURI: "catalogs/smbios"))
    }

    @Test("The node boots discovery.ipxe until it calls back; then its SKU is assigned and the graph succeeds")
    func discoveryRunsToSuccess() async throws {
        try await withWorkflowServices { bus in
            let node = "525400aa0001"
            // The node registry's side of `methods.assignSku`, as the SKU job sees it.
            let asked = Counter()
            let registry = try await bus.server(for: AssignSKU.self) { request, _ in
                await asked.add(request.nodeId)
                return AssignSKU.Assigned(sku: "rack-a")
            }
            let finished = try await bus.subscribe(to: .events, patterns: ["graph.finished.*"], as: GraphEvent.self)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await registry.run() }
                defer { group.cancelAll() }
                let graph = try await bus.call(RunTaskGraph(name: "Graph.Discovery", target: node))
                let profile = try await retryingUntilAnswered(within: .seconds(30)) {
                    try await bus.call(RequestProfile(nodeId: node), timeout: .milliseconds(500))
                }
                #expect(profile == "discovery.ipxe")
                // Answers that do not complete it: an error status, another URL, another node.
                try await bus.publish(
                    HTTPResponseEvent(address: "10.0.0.5", method: "GET", url: "/api/current/catalogs/smbios", statusCode: 404, time: 1),
                    to: .events, routingKey: HTTPResponseEvent.routingKey(nodeId: node))
                try await bus.publish(
                    HTTPResponseEvent(address: "10.0.0.5", method: "GET", url: "/api/current/profiles", statusCode: 200, time: 1),
                    to: .events, routingKey: HTTPResponseEvent.routingKey(nodeId: node))
                try await bus.publish(
                    HTTPResponseEvent(address: "10.0.0.6", method: "GET", url: "/api/current/catalogs/smbios", statusCode: 200, time: 1),
                    to: .events, routingKey: HTTPResponseEvent.routingKey(nodeId: "525400aa0002"))
                try await Task.sleep(for: .milliseconds(500))
                let waiting = try await bus.call(GetTaskGraphProperties(filter: GraphFilter(instanceId: graph.instanceId)))
                #expect(waiting.tasks["discover-smbios"]?.state == .running)
                // The node calls back.
                try await bus.publish(
                    HTTPResponseEvent(
                        address: "10.0.0.5", method: "GET", url: "/api/current/catalogs/smbios?macs=52%3A54", statusCode: 200, time: 1),
                    to: .events, routingKey: HTTPResponseEvent.routingKey(nodeId: node))
                #expect(try await finishedStatus(finished) == "succeeded")
                #expect(await asked.values == [node])
                let properties = try await bus.call(GetTaskGraphProperties(filter: GraphFilter(instanceId: graph.instanceId)))
                #expect(properties.context["sku"] == "rack-a")
                #expect(properties.context["completionUrl"] == "/api/current/catalogs/smbios?macs=52%3A54")
            }
        }
    }
}

private actor Counter {
    var values: [String] = []
    func add(_ value: String) { values.append(value) }
}
