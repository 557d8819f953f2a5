import BusCore
import BusTestSupport
import Foundation
import Testing

@testable import TaskGraphRunner

/// The job the built-in task runner does not have: `Tests/Interop/pika_worker.py` runs it.
let externalEchoJob = "Job.External.Echo"

/// The shared queue of the pika worker for `job` (see docs/external-workers.md).
func externalWorkerQueue(_ bus: MessageBus, job: String = externalEchoJob) -> String {
    "\(bus.configuration.exchangePrefix).rackbus.jobs.\(job)"
}

/// Defines `Task.Base.External.Echo` (runJob `Job.External.Echo`) and `Task.External.Echo`,
/// then a graph: the external task, and a built-in `Task.noop` that waits for it to succeed.
func externalDefineEchoGraph(_ bus: MessageBus, name: String, overrides: [String: JSONValue] = [:]) async throws {
    let base = TaskDefinition(
        friendlyName: "base-external-echo", injectableName: "Task.Base.External.Echo", runJob: externalEchoJob,
        requiredOptions: ["message"],
        requiredProperties: [:], properties: [:])
    #expect(try await bus.call(DefineTask(definition: base)) == "Task.Base.External.Echo")
    let task = TaskDefinition(
        friendlyName: "External echo", injectableName: "Task.External.Echo", implementsTask: "Task.Base.External.Echo",
        options: ["message": "hello from RackBus"], properties: [:])
    #expect(try await bus.call(DefineTask(definition: task)) == "Task.External.Echo")
    let graph = GraphDefinition(
        friendlyName: "external echo then noop", injectableName: name,
        tasks: [
            GraphTask(label: "echo", taskName: "Task.External.Echo", optionOverrides: overrides),
            GraphTask(label: "after", taskName: "Task.noop", waitOn: WaitOn(all: ["echo": [.succeeded]])),
        ])
    #expect(try await bus.call(DefineTaskGraph(definition: graph)) == name)
}

/// Runs the pika worker for `Job.External.Echo` until it has finished `count` tasks and returns
/// the reports it printed (one JSON line each). It exits 1 (and this throws, with its output)
/// after 30 s without traffic, so a test never waits on it for longer.
func externalRunWorker(_ bus: MessageBus, count: Int) async throws -> [JSONValue] {
    let script = TestBroker.repositoryRoot.appendingPathComponent("Tests/Interop/pika_worker.py").path
    let output = try await TestBroker.run(
        "/usr/bin/env", ["python3", script, TestBroker.url, bus.configuration.exchangePrefix, externalEchoJob, "--count", "\(count)"])
    // stdout and stderr arrive together: keep the JSON lines.
    return output.split(separator: "\n").compactMap { line in
        guard line.hasPrefix("{") else { return nil }
        return try? JSONDecoder().decode(JSONValue.self, from: Data(line.utf8))
    }
}

/// Waits until the worker consumes its queue, so that no run is published before it is bound.
func externalWaitForWorker(_ bus: MessageBus, timeout: Duration = .seconds(20)) async throws {
    let deadline = ContinuousClock.now + timeout
    let queue = externalWorkerQueue(bus)
    while ContinuousClock.now < deadline {
        // Until the worker declares it, the passive declare fails (404): keep polling.
        if let status = try? await bus.inspectQueue(named: queue), status.consumers >= 1 { return }
        try await Task.sleep(for: .milliseconds(100))
    }
    throw TestFailure("the pika worker did not consume \(queue) within \(timeout)")
}

@Suite("External workers: a pika worker runs a job the built-in runner does not have", .timeLimit(.minutes(2)))
struct ExternalWorkerTests {
    @Test("an external task succeeds, its context reaches the graph, and the built-in task after it runs")
    func echoSucceeds() async throws {
        try await withWorkflowServices { bus in
            try await externalDefineEchoGraph(bus, name: "Graph.Test.External.Echo", overrides: ["message": "ping"])
            let finished = try await bus.subscribe(to: .events, patterns: ["graph.finished.*"], as: GraphEvent.self)
            async let worker = externalRunWorker(bus, count: 1)
            try await externalWaitForWorker(bus)

            let graph = try await bus.call(RunTaskGraph(name: "Graph.Test.External.Echo", target: "node-external-1"))
            // The worker first: it exits once it has reported, or fails with its output.
            let reports = try await worker
            #expect(try await finishedStatus(finished) == "succeeded")

            #expect(reports.count == 1)
            #expect(reports.first?["label"] == "echo")
            #expect(reports.first?["state"] == "succeeded")
            #expect(reports.first?["graphId"] == .string(graph.instanceId))
            let properties = try await bus.call(GetTaskGraphProperties(filter: GraphFilter(instanceId: graph.instanceId)))
            #expect(properties.status == "succeeded")
            #expect(properties.tasks["echo"]?.state == .succeeded)
            #expect(properties.tasks["echo"]?.job == externalEchoJob)
            #expect(properties.tasks["after"]?.state == .succeeded)
            #expect(properties.context["echoed"] == "ping")
            #expect(properties.context["worker"] == "pika")
            #expect(properties.context["target"] == "node-external-1")
            try? await bus.deleteQueue(named: externalWorkerQueue(bus))
        }
    }

    @Test("an external task that fails fails the graph, with the worker's error")
    func echoFails() async throws {
        try await withWorkflowServices { bus in
            try await externalDefineEchoGraph(bus, name: "Graph.Test.External.Fail", overrides: ["fail": true])
            let finished = try await bus.subscribe(to: .events, patterns: ["graph.finished.*"], as: GraphEvent.self)
            async let worker = externalRunWorker(bus, count: 1)
            try await externalWaitForWorker(bus)

            let graph = try await bus.call(RunTaskGraph(name: "Graph.Test.External.Fail", target: "node-external-2"))
            let reports = try await worker
            #expect(try await finishedStatus(finished) == "failed")

            #expect(reports.first?["state"] == "failed")
            let properties = try await bus.call(GetTaskGraphProperties(filter: GraphFilter(instanceId: graph.instanceId)))
            #expect(properties.status == "failed")
            #expect(properties.tasks["echo"]?.state == .failed)
            #expect(properties.tasks["echo"]?.error?.contains("options.fail") == true)
            #expect(properties.tasks["after"]?.state != .succeeded, "the task waiting on success never runs")
            #expect(properties.context["echoed"] == nil)
            try? await bus.deleteQueue(named: externalWorkerQueue(bus))
        }
    }

    @Test("an external task past its _taskTimeout hears the Scheduler's cancel and ends in timeout")
    func echoTimesOut() async throws {
        try await withWorkflowServices { bus in
            try await externalDefineEchoGraph(
                bus, name: "Graph.Test.External.Timeout", overrides: ["sleepMs": 20000, "_taskTimeout": 500])
            let finished = try await bus.subscribe(to: .events, patterns: ["graph.finished.*"], as: GraphEvent.self)
            async let worker = externalRunWorker(bus, count: 1)
            try await externalWaitForWorker(bus)

            let started = ContinuousClock.now
            let graph = try await bus.call(RunTaskGraph(name: "Graph.Test.External.Timeout"))
            let reports = try await worker
            #expect(try await finishedStatus(finished) == "failed")
            #expect(ContinuousClock.now - started < .seconds(15), "the cancel, not the end of the sleep, ended the task")

            #expect(reports.first?["state"] == "timeout")
            #expect(reports.first?["error"] == "TaskTimeoutError")
            let properties = try await bus.call(GetTaskGraphProperties(filter: GraphFilter(instanceId: graph.instanceId)))
            #expect(properties.tasks["echo"]?.state == .timeout)
            try? await bus.deleteQueue(named: externalWorkerQueue(bus))
        }
    }

    @Test("cancelling the graph cancels the running external task")
    func echoCancelled() async throws {
        try await withWorkflowServices { bus in
            try await externalDefineEchoGraph(bus, name: "Graph.Test.External.Cancel", overrides: ["sleepMs": 20000])
            let finished = try await bus.subscribe(to: .events, patterns: ["graph.finished.*"], as: GraphEvent.self)
            let running = try await bus.subscribe(to: .task, patterns: ["run.*"], as: TaskSpec.self)
            async let worker = externalRunWorker(bus, count: 1)
            try await externalWaitForWorker(bus)

            let graph = try await bus.call(RunTaskGraph(name: "Graph.Test.External.Cancel", target: "node-external-3"))
            // Once the run is out, the worker holds it (or will, as soon as it is delivered).
            #expect(try await collect(running, count: 1)[0].message.job == externalEchoJob)
            #expect(try await bus.call(CancelTaskGraph(filter: GraphFilter(instanceId: graph.instanceId))) == graph.instanceId)
            let reports = try await worker
            #expect(try await finishedStatus(finished) == "cancelled")

            #expect(reports.first?["label"] == "echo")
            #expect(reports.first?["state"] == "cancelled")
            let properties = try await bus.call(GetTaskGraphProperties(filter: GraphFilter(instanceId: graph.instanceId)))
            #expect(properties.tasks["after"]?.state == .cancelled)
            try? await bus.deleteQueue(named: externalWorkerQueue(bus))
        }
    }
}
