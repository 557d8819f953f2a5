import BusCore

/// Why a graph definition cannot be defined or run, with RackHD's user-visible text.
public struct GraphDefinitionError: Error, Sendable, Equatable, ErrorEventConvertible, CustomStringConvertible {
    /// RackHD's text, shown to API users unchanged.
    public let message: String
    /// 400 for an invalid definition, 404 for a task or base task missing from the library.
    public let status: Int

    public init(message: String, status: Int) {
        self.message = message
        self.status = status
    }

    /// RackHD's BadRequestError or NotFoundError, as the API replies with it.
    public var errorEvent: ErrorEvent {
        status == 404 ? .notFound(message) : .badRequest(message)
    }

    public var description: String { message }

    static func invalid(_ message: String) -> GraphDefinitionError {
        GraphDefinitionError(message: message, status: 400)
    }

    static func notFound(_ message: String) -> GraphDefinitionError {
        GraphDefinitionError(message: message, status: 404)
    }

    // RackHD's texts, in one place so that tests and callers can match them.

    static func duplicateLabel(_ label: String) -> GraphDefinitionError {
        .invalid("The task label '\(label)' is used more than once in the graph definition.")
    }

    static let reservedAnyOfLabel = GraphDefinitionError.invalid("Label anyOf is reserved, please use another label.")

    static func missingWaitOnTask(_ label: String) -> GraphDefinitionError {
        .invalid("Task to wait on does not exist: \(label)")
    }

    static let taskNameOrDefinition = GraphDefinitionError.invalid(
        "All TaskGraph tasks should have either a taskName or taskDefinition property.")

    static func cycle(_ upstream: String, _ downstream: String) -> GraphDefinitionError {
        .invalid("Detected a cyclic graph with tasks \(upstream) and \(downstream)")
    }

    static func missingRequiredOption(_ option: String, task: String, graph: String) -> GraphDefinitionError {
        .invalid("required option \(option) for task \(task) in graph \(graph)")
    }

    static func unknownTask(_ injectableName: String) -> GraphDefinitionError {
        .notFound("Could not find task definition with injectableName \(injectableName)")
    }

    static func unknownBaseTask(_ injectableName: String) -> GraphDefinitionError {
        .notFound("Base task definition for \(injectableName) should exist")
    }

    /// RackHD's assert-plus text for a missing string field (`implementsTask`, `runJob`).
    static func missingField(_ field: String) -> GraphDefinitionError {
        .invalid("\(field) (string) is required")
    }
}
