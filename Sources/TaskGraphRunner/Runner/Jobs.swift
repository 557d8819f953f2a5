import BusCore
import Foundation
import Logging
import NodeProtocol

/// What a job gets: its task, the bus, a logger.
public struct JobContext: Sendable {
    public let task: TaskSpec
    public let bus: MessageBus
    public let logger: Logger

    public func option(_ name: String) -> JSONValue? { task.options[name] }

    /// A string option the job cannot do without.
    func requiredString(_ name: String) throws -> String {
        guard let value = option(name)?.stringValue, !value.isEmpty else { throw JobError("option \(name) is required") }
        return value
    }

    /// The exchange named by the `exchange` option (default `events`).
    var exchangeOption: Exchange {
        Exchange.named(option("exchange")?.stringValue ?? "events", prefix: bus.configuration.exchangePrefix) ?? .events
    }
}

/// A job: the code a base task's `runJob` names. Returning normally succeeds the task (the
/// returned values are merged into the graph's context); throwing fails it; cancellation
/// (including a timeout) cancels it.
public protocol Job: Sendable {
    static var name: String { get }
    func run(_ context: JobContext) async throws -> [String: JSONValue]
}

/// A job's failure, with a message for `task.finished`'s `error`.
public struct JobError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The jobs built into RackBus's task runner.
public enum BuiltInJobs {
    public static let all: [any Job] = [
        NoopJob(), WaitJob(), WaitForEventJob(), PublishEventJob(), EvaluateConditionJob(), LinuxCommandsJob(),
        WaitForCompletionURIJob(), AssignSKUJob(),
    ]
}

/// `Job.noop`: succeeds after `delay` milliseconds (0 by default).
struct NoopJob: Job {
    static let name = "Job.noop"
    func run(_ context: JobContext) async throws -> [String: JSONValue] {
        let delay = context.option("delay")?.intValue ?? 0
        if delay > 0 { try await Task.sleep(for: .milliseconds(delay)) }
        return [:]
    }
}

/// `Job.Wait`: sleeps `duration` milliseconds.
struct WaitJob: Job {
    static let name = "Job.Wait"
    func run(_ context: JobContext) async throws -> [String: JSONValue] {
        guard let duration = context.option("duration")?.intValue, duration >= 0 else {
            throw JobError("option duration must be a number of milliseconds")
        }
        try await Task.sleep(for: .milliseconds(duration))
        return [:]
    }
}

/// `Job.Wait.Event`: waits for an event whose routing key matches `routingKey` (topic patterns
/// allowed) on `exchange` (default `events`); fails after `timeout` milliseconds. The event's
/// body is put into the graph context under `event`.
struct WaitForEventJob: Job {
    static let name = "Job.Wait.Event"
    func run(_ context: JobContext) async throws -> [String: JSONValue] {
        let pattern = try context.requiredString("routingKey")
        let exchange = context.exchangeOption
        let timeout = context.option("timeout")?.intValue ?? 600_000
        let events = try await context.bus.subscribe(to: exchange, patterns: [pattern], as: JSONValue.self)
        context.logger.info("waiting for an event", metadata: ["task.id": "\(context.task.taskId)", "amqp.routing_key": "\(pattern)"])
        return try await context.firstDelivery(of: events, timeoutMs: timeout, orFail: "no event matching \(pattern) within \(timeout) ms") {
            event in ["event": event.message, "eventRoutingKey": .string(event.routingKey)]
        }
    }
}

extension JobContext {
    /// What `accept` makes of the first delivery it accepts, or a ``JobError`` saying `failure`
    /// once `timeoutMs` milliseconds have passed. Cancelling the job ends the wait.
    func firstDelivery<Message: Sendable>(
        of deliveries: Subscription<Message>, timeoutMs: Int, orFail failure: String,
        accept: @escaping @Sendable (Delivery<Message>) -> [String: JSONValue]?
    ) async throws -> [String: JSONValue] {
        try await withThrowingTaskGroup(of: [String: JSONValue]?.self) { group in
            group.addTask {
                for await delivery in deliveries {
                    if let result = accept(delivery) { return result }
                }
                return nil
            }
            group.addTask {
                try await Task.sleep(for: .milliseconds(timeoutMs))
                return nil
            }
            defer { group.cancelAll() }
            guard let result = try await group.next(), let found = result else {
                try Task.checkCancellation()
                throw JobError(failure)
            }
            return found
        }
    }
}

/// `Job.Event.Publish`: publishes `payload` on `exchange` (default `events`) with `routingKey`.
struct PublishEventJob: Job {
    static let name = "Job.Event.Publish"
    func run(_ context: JobContext) async throws -> [String: JSONValue] {
        let key = try context.requiredString("routingKey")
        let exchange = context.exchangeOption
        try await context.bus.publishConfirmed(context.option("payload") ?? .object([:]), to: exchange, routingKey: key)
        return [:]
    }
}

/// `Job.Evaluate.Condition`: succeeds when the rendered `when` is `true` or `"true"`, fails
/// otherwise, as RackHD's did.
struct EvaluateConditionJob: Job {
    static let name = "Job.Evaluate.Condition"
    func run(_ context: JobContext) async throws -> [String: JSONValue] {
        switch context.option("when") {
        case .bool(true), .string("true"): return [:]
        case let other: throw JobError("condition is \(other.map { "\($0)" } ?? "missing"), not true")
        }
    }
}

/// `Job.Linux.Commands`: the node fetches its `commands` with `methods.requestCommands.<node>`
/// (answered by the task runner while this task runs), runs them, and posts the results with
/// `methods.respondCommands.<node>`; the task succeeds when no command reports an error.
struct LinuxCommandsJob: Job {
    static let name = "Job.Linux.Commands"

    func run(_ context: JobContext) async throws -> [String: JSONValue] {
        guard let node = context.task.nodeId, !node.isEmpty else { throw JobError("Job.Linux.Commands needs a target node") }
        let responses = try await context.bus.subscribe(
            to: .task, patterns: [RespondCommands.routingKey(nodeId: node)], as: RespondCommands.Body.self)
        for await response in responses {
            let tasks: [JSONValue]
            if case .array(let list) = response.message.value["tasks"] ?? .null { tasks = list } else { tasks = [] }
            let failures = tasks.filter { task in
                if let error = task["error"], error != .null { return true }
                return false
            }
            guard failures.isEmpty else { throw JobError("\(failures.count) command(s) failed") }
            return ["commandResults": .array(tasks)]
        }
        throw CancellationError()
    }

    /// RackHD accepts `commands` as one string, a list of strings, or a list of `{command: …}`
    /// objects; the node gets `[{cmd: …}]`.
    static func commandList(_ commands: JSONValue) -> [JSONValue] {
        let items: [JSONValue]
        switch commands {
        case .string: items = [commands]
        case .array(let list): items = list
        default: items = []
        }
        return items.compactMap { item in
            switch item {
            case .string(let command): return ["cmd": .string(command)]
            case .object(var object):
                if object["cmd"] == nil, let command = object["command"] { object["cmd"] = command }
                return .object(object)
            default: return nil
            }
        }
    }
}

extension JSONValue {
    var intValue: Int? {
        switch self {
        case .number(let value): return Int(exactly: value.rounded())
        case .string(let text): return Int(text)
        default: return nil
        }
    }
}
