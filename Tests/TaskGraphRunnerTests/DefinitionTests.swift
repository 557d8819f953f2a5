import BusCore
import Foundation
import Testing

@testable import TaskGraphRunner

@Suite("Task and graph definitions")
struct DefinitionTests {
    @Test func waitOnAcceptsStatesListsAndAnyOf() throws {
        let json = #"{"a":"finished","b":["succeeded","timeout"],"anyOf":{"c":"failed","d":["cancelled"]}}"#
        let waitOn = try JSONDecoder().decode(WaitOn.self, from: Data(json.utf8))
        #expect(waitOn.all == ["a": [.finished], "b": [.succeeded, .timeout]])
        #expect(waitOn.anyOf == ["c": [.failed], "d": [.cancelled]])
        #expect(waitOn.labels == ["a", "b", "c", "d"])
        let again = try JSONDecoder().decode(WaitOn.self, from: JSONEncoder().encode(waitOn))
        #expect(again == waitOn)
        #expect(throws: (any Error).self) { try JSONDecoder().decode(WaitOn.self, from: Data(#"{"a":"done"}"#.utf8)) }
    }

    @Test func rackHDNoopExampleDecodes() throws {
        let json = """
            { "injectableName": "Graph.noop-example", "friendlyName": "noop-graph",
              "tasks": [
                { "label": "noop-1", "taskName": "Task.noop" },
                { "label": "noop-2", "taskName": "Task.noop", "waitOn": { "noop-1": "finished" } },
                { "label": "parallel-noop-1", "taskName": "Task.noop", "waitOn": { "noop-2": "finished" } },
                { "label": "parallel-noop-2", "taskName": "/api/2.0/workflows/tasks/Task.noop", "waitOn": { "noop-2": "finished" } } ] }
            """
        let graph = try JSONDecoder().decode(GraphDefinition.self, from: Data(json.utf8))
        #expect(graph.tasks.count == 4)
        #expect(graph.tasks[3].resolvedTaskName == "Task.noop")
        #expect(graph.tasks[1].waitOn?.all == ["noop-1": [.finished]])
    }

    @Test func waitStates() {
        #expect(WaitState.finished.isSatisfied(by: .timeout))
        #expect(!WaitState.finished.isSatisfied(by: .running))
        #expect(WaitState.failed.isSatisfied(by: .failed))
        #expect(!WaitState.failed.isSatisfied(by: .cancelled))
        #expect(TaskState.timeout.isFailure)
        #expect(!TaskState.succeeded.isFailure)
    }
}
