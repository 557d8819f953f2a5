import Foundation

/// A long-running request, as in the manager–agent design among the related designs: while it
/// runs, the server reports progress, the caller can cancel it and still get what was done so
/// far, and the server can ask the caller for more data.
///
/// On the wire a command is an ordinary RPC request, so a RackHD-style caller can call it and
/// gets only the final reply. A caller that uses ``MessageBus/perform(_:idleTimeout:file:line:onProgress:onQuestion:)``
/// sends the `x-command` header and then also receives, on its reply queue and with the
/// request's `correlation_id`, interim messages typed `CommandAccepted`, `CommandProgress` and
/// `CommandQuestion`. Each of them restarts the caller's timeout, which is therefore an idle
/// timeout: a command may run for hours as long as it reports progress.
///
/// ```swift
/// struct FlashFirmware: BusCommand {
///     typealias Reply = String            // the version now running
///     typealias Progress = Int            // percent written
///     static let exchange = Exchange.task
///     static let method = "methods.flashFirmware"
///     var image: String
/// }
/// ```
public protocol BusCommand: BusRequest {
    associatedtype Progress: Codable & Sendable
    /// What the server may ask its caller while it runs (`Never` for a command that never asks).
    associatedtype Question: Codable & Sendable = Never
    associatedtype Answer: Codable & Sendable = Never
}

/// The message types and headers of commands, beside the RPC envelope.
enum CommandWire {
    /// On a request: the caller receives interim messages (value 1).
    static let commandHeader = "x-command"
    /// On questions and their answers: which question of the command.
    static let questionHeader = "x-question"

    /// Server → caller, first: the handler started. `reply_to` names the server's control queue.
    static let acceptedType = "CommandAccepted"
    static let progressType = "CommandProgress"
    static let questionType = "CommandQuestion"
    /// Caller → server, to the control queue.
    static let cancelType = "CommandCancel"
    static let answerType = "CommandAnswer"

    static let acceptedStatus: Int64 = 202
    static let interimStatus: Int64 = 102
    /// The status of the final reply of a command its caller cancelled, when the handler stops
    /// without a result of its own (as nginx's "client closed request").
    static let cancelledStatus = 499

    static func isInterim(_ type: String?) -> Bool {
        type == acceptedType || type == progressType || type == questionType
    }
}

/// What a command's handler can do besides returning its reply.
public struct CommandContext<Command: BusCommand>: Sendable {
    let session: CommandSession

    /// The request's exchange, routing key and properties.
    public var request: RequestContext { session.request }

    /// Whether the caller follows the command (it sent `x-command`): only then do progress
    /// reports reach it and can it answer questions.
    public var callerFollows: Bool { session.callerFollows }

    /// Sends a progress report to the caller (and restarts its idle timeout). Does nothing for a
    /// caller that does not follow the command.
    public func report(_ progress: Command.Progress) {
        session.send(progress, type: CommandWire.progressType)
    }

    /// Asks the caller a question and waits for its answer, at most the caller's idle timeout.
    ///
    /// - Throws: ``BusError`` `remote` when the caller refused to answer, `timeout` when it did
    ///   not answer in time, `callerNotFollowing` when the caller does not follow the command;
    ///   `CancellationError` when the caller cancelled the command meanwhile. (That is why it is
    ///   not `throws(BusError)`: a handler rethrows the cancellation, and the server turns it
    ///   into the caller's 499.)
    public func ask(_ question: Command.Question) async throws -> Command.Answer {
        let answer = try await session.ask(try WireFormat.encode(question))
        if answer.properties.type == WireFormat.errorType {
            throw BusError.remote(WireFormat.decodeErrorEvent(answer.body))
        }
        return try WireFormat.decode(Command.Answer.self, from: answer.body)
    }
}
