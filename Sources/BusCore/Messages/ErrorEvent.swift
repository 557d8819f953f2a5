import Logging

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

    /// RackHD's ForbiddenError (403).
    public static func forbidden(_ message: String, context: JSONValue = .object([:])) -> ErrorEvent {
        ErrorEvent(name: "ForbiddenError", message: message, context: context, status: 403)
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
    ///
    /// ErrorEvents (and ``ErrorEventConvertible`` errors, and a remote ErrorEvent that a nested
    /// call got) are replies chosen on purpose and pass unchanged. Anything else is unexpected
    /// and becomes a generic 500, as RackHD's InternalServerError, carrying `errorID` in its
    /// message and as `context.errorId`: an error's description can hold paths, SQL or
    /// addresses that are not the caller's business. A ``BusError`` keeps its code. Use
    /// ``reply(to:logger:metadata:)`` to also log the details under that id.
    public static func from(_ error: any Error, errorID: @autoclosure () -> String = ErrorEvent.makeErrorID()) -> ErrorEvent {
        concealing(error, errorID: errorID).event
    }

    /// The ErrorEvent to reply with when a handler throws `error` (see ``from(_:errorID:)``);
    /// when it conceals an unexpected error, the error is logged at `error` level with its
    /// `error.id`, so that the id a caller reports finds the details.
    public static func reply(to error: any Error, logger: Logger, metadata: Logger.Metadata = [:]) -> ErrorEvent {
        let (event, concealedID) = concealing(error, errorID: makeErrorID)
        if let concealedID {
            var details = metadata
            details["error.id"] = "\(concealedID)"
            details["error"] = "\(error)"
            logger.error("answered an internal error with a 500", metadata: details)
        }
        return event
    }

    /// A fresh id for one concealed error: short enough to read out, random enough not to repeat.
    public static func makeErrorID() -> String {
        var generator = SystemRandomNumberGenerator()
        return String(generator.next() as UInt64, radix: 16)
    }

    /// The reply, and the id when it conceals `error`.
    private static func concealing(_ error: any Error, errorID: () -> String) -> (event: ErrorEvent, concealedID: String?) {
        switch error {
        case let event as ErrorEvent:
            return (event, nil)
        case let convertible as any ErrorEventConvertible:
            return (convertible.errorEvent, nil)
        case let bus as BusError:
            if let remote = bus.remote { return (remote, nil) }
            let id = errorID()
            return (
                ErrorEvent(
                    name: "BusError", message: internalMessage(id), context: ["code": .string("\(bus.code)"), "errorId": .string(id)],
                    status: 500),
                id
            )
        default:
            let id = errorID()
            return (.internalError(internalMessage(id), context: ["errorId": .string(id)]), id)
        }
    }

    private static func internalMessage(_ id: String) -> String {
        "Internal server error; the service logged its details under error id \(id)."
    }
}

/// An error that knows which ErrorEvent it should become on the wire.
public protocol ErrorEventConvertible: Error {
    var errorEvent: ErrorEvent { get }
}
