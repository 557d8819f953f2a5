/// RackHD's error payload on the wire (AMQP type `ErrorEvent`):
/// `{name, message, stack, context, status?}` with HTTP-like status codes.
///
/// Handlers may throw an `ErrorEvent` directly to choose the name and status of the reply.
public struct ErrorEvent: Error, Codable, Sendable, Equatable, CustomStringConvertible {
    public var name: String
    public var message: String
    public var stack: String
    public var context: JSONValue
    public var status: Int?

    public init(name: String, message: String, stack: String? = nil, context: JSONValue = .object([:]), status: Int? = nil) {
        self.name = name
        self.message = message
        // RackHD's schema requires a string stack; a reply without one is never delivered.
        self.stack = stack ?? "\(name): \(message)"
        self.context = context
        self.status = status
    }

    public var description: String {
        "\(name): \(message)" + (status.map { " (status \($0))" } ?? "")
    }

    /// RackHD's BadRequestError (400).
    public static func badRequest(_ message: String, context: JSONValue = .object([:])) -> ErrorEvent {
        ErrorEvent(name: "BadRequestError", message: message, context: context, status: 400)
    }

    /// RackHD's NotFoundError (404).
    public static func notFound(_ message: String, context: JSONValue = .object([:])) -> ErrorEvent {
        ErrorEvent(name: "NotFoundError", message: message, context: context, status: 404)
    }

    /// RackHD's ConflictError (409).
    public static func conflict(_ message: String, context: JSONValue = .object([:])) -> ErrorEvent {
        ErrorEvent(name: "ConflictError", message: message, context: context, status: 409)
    }

    /// RackHD's InternalServerError (500).
    public static func internalError(_ message: String, context: JSONValue = .object([:])) -> ErrorEvent {
        ErrorEvent(name: "InternalServerError", message: message, context: context, status: 500)
    }

    /// RackHD's NotImplementedError (501).
    public static func notImplemented(_ message: String) -> ErrorEvent {
        ErrorEvent(name: "NotImplementedError", message: message, status: 501)
    }

    /// The ErrorEvent a server replies with when a handler throws `error`.
    /// Errors that do not describe themselves become a 500, as RackHD's InternalServerError.
    public static func from(_ error: any Error) -> ErrorEvent {
        switch error {
        case let event as ErrorEvent:
            return event
        case let convertible as any ErrorEventConvertible:
            return convertible.errorEvent
        case let bus as BusError:
            if let remote = bus.remote { return remote }
            return ErrorEvent(name: "BusError", message: bus.message, context: .object(["code": .string("\(bus.code)")]), status: 500)
        default:
            return .internalError(String(describing: error))
        }
    }
}

/// An error that knows which ErrorEvent it should become on the wire.
public protocol ErrorEventConvertible: Error {
    var errorEvent: ErrorEvent { get }
}
