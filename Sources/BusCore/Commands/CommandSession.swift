import Foundation
import Synchronization

/// One running command on the server: where its interim messages go, its caller's cancel, and
/// the questions it waits on.
final class CommandSession: Sendable {
    let request: RequestContext
    /// The caller's reply queue and correlation id, when it follows the command.
    private let caller: (replyTo: String, correlationID: String)?
    private let controlQueue: String
    private let bus: MessageBus
    /// How long the caller waits between two messages (the request's `expiration`).
    let idleTimeout: Duration

    private struct State {
        var cancelledByCaller = false
        var cancelHandler: (@Sendable () -> Void)?
        var questions: [String: CheckedContinuation<InboundDelivery, any Error>] = [:]
        var nextQuestion = 0
    }
    private let state = Mutex(State())

    init(
        request: RequestContext, controlQueue: String, bus: MessageBus
    ) {
        self.request = request
        self.controlQueue = controlQueue
        self.bus = bus
        let properties = request.properties
        if properties.headers[CommandWire.commandHeader] != nil, let replyTo = properties.replyTo, !replyTo.isEmpty,
            let correlationID = properties.correlationID
        {
            caller = (replyTo, correlationID)
        } else {
            caller = nil
        }
        idleTimeout = properties.expiration.flatMap(Int64.init).map { .milliseconds($0) } ?? bus.configuration.defaultCallTimeout
    }

    var callerFollows: Bool { caller != nil }
    var correlationID: String? { caller?.correlationID }
    var wasCancelledByCaller: Bool { state.withLock { $0.cancelledByCaller } }

    /// Sends an interim message to a following caller; `reply_to` names the control queue.
    func send<Value: Encodable>(_ value: Value, type: String) {
        guard let caller, let body = try? WireFormat.encode(value) else { return }
        send(body: body, type: type, to: caller, headers: [:])
    }

    private func send(body: [UInt8], type: String, to caller: (replyTo: String, correlationID: String), headers: [String: HeaderValue]) {
        var headers = headers
        headers[EnvelopeHeader.status] = .int(type == CommandWire.acceptedType ? CommandWire.acceptedStatus : CommandWire.interimStatus)
        bus.sendDirect(
            to: caller.replyTo, type: type, correlationID: caller.correlationID, replyTo: controlQueue, headers: headers, body: body)
    }

    /// Runs the handler as a task of its own, so that the caller's cancel can reach it.
    func run<T: Sendable>(_ handler: @escaping @Sendable () async throws -> T) async throws -> T {
        let task = Task { try await handler() }
        let cancelledAlready = state.withLock { state -> Bool in
            state.cancelHandler = { task.cancel() }
            return state.cancelledByCaller
        }
        if cancelledAlready { task.cancel() }
        return try await withTaskCancellationHandler {
            try await task.value
        } onCancel: {
            task.cancel()
        }
    }

    /// The caller sent `CommandCancel`.
    func cancelByCaller() {
        let (handler, questions) = state.withLock { state in
            state.cancelledByCaller = true
            defer { state.questions.removeAll() }
            return (state.cancelHandler, Array(state.questions.values))
        }
        handler?()
        for question in questions { question.resume(throwing: CancellationError()) }
    }

    /// Sends a question and waits for the caller's answer, at most the idle timeout.
    func ask(_ body: [UInt8]) async throws -> InboundDelivery {
        guard let caller else {
            throw BusError(code: .callerNotFollowing, message: "the caller of \(request.routingKey) does not follow the command")
        }
        let id = state.withLock { state in
            state.nextQuestion += 1
            return String(state.nextQuestion)
        }
        let timeout = idleTimeout
        return try await withThrowingTaskGroup(of: InboundDelivery.self) { group in
            group.addTask {
                try await withTaskCancellationHandler {
                    try await withCheckedThrowingContinuation { continuation in
                        let cancelled = self.state.withLock { state -> Bool in
                            if state.cancelledByCaller || Task.isCancelled { return true }
                            state.questions[id] = continuation
                            return false
                        }
                        if cancelled {
                            continuation.resume(throwing: CancellationError())
                        } else {
                            self.send(
                                body: body, type: CommandWire.questionType, to: caller,
                                headers: [CommandWire.questionHeader: .string(id)])
                        }
                    }
                } onCancel: {
                    self.state.withLock { $0.questions.removeValue(forKey: id) }?.resume(throwing: CancellationError())
                }
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                throw BusError(code: .timeout, message: "no answer to question \(id) of \(self.request.routingKey) within \(timeout)")
            }
            defer { group.cancelAll() }
            return try await group.next()!
        }
    }

    /// The caller answered question `id` (a `CommandAnswer`, or an ErrorEvent refusing it).
    func answer(_ id: String, with delivery: InboundDelivery) {
        state.withLock { $0.questions.removeValue(forKey: id) }?.resume(returning: delivery)
    }
}

/// The commands a server runs, by correlation id, for its control queue's messages.
final class CommandSessions: Sendable {
    private let sessions = Mutex<[String: CommandSession]>([:])

    func add(_ session: CommandSession) {
        guard let id = session.correlationID else { return }
        sessions.withLock { $0[id] = session }
    }

    func remove(_ session: CommandSession) {
        guard let id = session.correlationID else { return }
        sessions.withLock { _ = $0.removeValue(forKey: id) }
    }

    /// A cancel or an answer from a caller; anything else, or for a finished command, is dropped.
    func dispatch(_ delivery: InboundDelivery) {
        guard let id = delivery.properties.correlationID, let session = sessions.withLock({ $0[id] }) else { return }
        switch delivery.properties.type {
        case CommandWire.cancelType:
            session.cancelByCaller()
        case CommandWire.answerType, WireFormat.errorType:
            if let question = delivery.properties.headers[CommandWire.questionHeader]?.stringValue {
                session.answer(question, with: delivery)
            }
        default:
            break
        }
    }
}
