import BusCore
import Foundation
import TaskGraphRunner
import Testing

@testable import Scheduler

@Suite("What the Scheduler reads of a schedule request")
struct ScheduleRequestTests {
    let spec = TaskSpec(
        taskId: "t1", graphId: "g1", graphName: "Graph.x", label: "first", taskName: "Task.noop", job: "Job.noop",
        options: ["delay": .number(5)], context: ["graphId": .string("g1")], nodeId: nil, timeoutMs: 2500)

    @Test("a TaskSpec gives its task id and time limit")
    func readsTaskSpec() throws {
        let request = try JSONDecoder().decode(ScheduleRequest.self, from: JSONEncoder().encode(spec))
        #expect(request.taskId == "t1")
        #expect(request.timeoutMs == 2500)
    }

    @Test(
        "a request the runners could not run is refused",
        arguments: ["options", "context", "job", "taskId", "timeoutMs", "graphId"])
    func refusesIncomplete(missing field: String) throws {
        var object = try #require(JSONSerialization.jsonObject(with: JSONEncoder().encode(spec)) as? [String: Any])
        object[field] = nil
        let body = try JSONSerialization.data(withJSONObject: object)
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(ScheduleRequest.self, from: body) }
    }

    @Test("a field of the wrong type is refused")
    func refusesWrongType() throws {
        var object = try #require(JSONSerialization.jsonObject(with: JSONEncoder().encode(spec)) as? [String: Any])
        object["job"] = 7
        let body = try JSONSerialization.data(withJSONObject: object)
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(ScheduleRequest.self, from: body) }
    }
}
