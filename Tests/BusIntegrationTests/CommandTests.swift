import BusCore
import BusTestSupport
import Foundation
import Synchronization
import Testing

/// Counts from 1 to `limit`, one number every `stepMilliseconds`, reporting each.
struct CountTo: BusCommand {
    typealias Reply = [Int]
    typealias Progress = Int
    static let exchange = Exchange.task
    static let method = "methods.countTo"
    var limit: Int
    var stepMilliseconds: Int
}

/// Asks its caller for a name and greets it.
struct Greet: BusCommand {
    typealias Reply = String
    typealias Progress = String
    typealias Question = String
    typealias Answer = String
    static let exchange = Exchange.task
    static let method = "methods.greet"
}

/// Counts until cancelled; on cancel it either returns what it counted or gives up.
let countingHandler: @Sendable (CountTo, CommandContext<CountTo>) async throws -> [Int] = { command, context in
    var counted: [Int] = []
    for number in 1...command.limit {
        do {
            try await Task.sleep(for: .milliseconds(command.stepMilliseconds))
        } catch {
            // Cancelled by the caller: odd limits return what they have, even limits give up.
            if command.limit % 2 == 0 { throw error }
            return counted
        }
        counted.append(number)
        context.report(number)
    }
    return counted
}

/// Runs a command server on `bus` while `body` runs.
func withCommandServer<Command: BusCommand, Result: Sendable>(
    _ bus: MessageBus, _ type: Command.Type,
    handler: @escaping @Sendable (Command, CommandContext<Command>) async throws -> Command.Reply,
    _ body: @Sendable () async throws -> Result
) async throws -> Result {
    let server = try await bus.commandServer(for: type, handler: handler)
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { await server.run() }
        defer { group.cancelAll() }
        return try await body()
    }
}

/// Starts counting to `limit` in a task of its own and returns it once the first number arrived.
func countingOnceItReports(_ bus: MessageBus, limit: Int) async -> Task<[Int], any Error> {
    let firstProgress = AsyncStream.makeStream(of: Int.self)
    let run = Task {
        try await bus.perform(CountTo(limit: limit, stepMilliseconds: 100), idleTimeout: .seconds(5)) { number in
            firstProgress.continuation.yield(number)
        }
    }
    for await _ in firstProgress.stream { break }
    return run
}

@Suite("Long commands over the real broker", .timeLimit(.minutes(2)))
struct CommandTests {
    @Test("progress arrives in order before the reply, and keeps an idle timeout alive")
    func progressAndReply() async throws {
        try await TestBroker.withBus { bus in
            try await withCommandServer(bus, CountTo.self, handler: countingHandler) {
                let seen = Mutex<[Int]>([])
                let started = ContinuousClock.now
                // Six steps of 150 ms take 900 ms, longer than the 500 ms idle timeout.
                let reply = try await bus.perform(CountTo(limit: 6, stepMilliseconds: 150), idleTimeout: .milliseconds(500)) {
                    number in seen.withLock { $0.append(number) }
                }
                #expect(reply == [1, 2, 3, 4, 5, 6])
                #expect(seen.withLock { $0 } == [1, 2, 3, 4, 5, 6])
                #expect(ContinuousClock.now - started >= .milliseconds(900))
            }
        }
    }

    @Test("cancelling the caller cancels the handler, and the caller gets what was done so far")
    func cancelReturnsPartialResult() async throws {
        try await TestBroker.withBus { bus in
            try await withCommandServer(bus, CountTo.self, handler: countingHandler) {
                let run = await countingOnceItReports(bus, limit: 999)
                let cancelledAt = ContinuousClock.now
                run.cancel()
                let counted = try await run.value
                #expect(!counted.isEmpty)
                #expect(counted.count < 50, "the handler kept counting after the cancel: \(counted.count)")
                #expect(counted == Array(1...counted.count))
                #expect(ContinuousClock.now - cancelledAt < .seconds(3))
            }
        }
    }

    @Test("a cancel from before the server accepted the command is sent once it has")
    func cancelBeforeAcceptance() async throws {
        try await TestBroker.withBus { bus in
            try await withCommandServer(bus, CountTo.self, handler: countingHandler) {
                let started = ContinuousClock.now
                let run = Task {
                    try await bus.perform(CountTo(limit: 999, stepMilliseconds: 100), idleTimeout: .seconds(5))
                }
                run.cancel()
                let counted = try await run.value
                #expect(counted.count < 50, "the handler kept counting after the cancel: \(counted.count)")
                #expect(ContinuousClock.now - started < .seconds(5))
            }
        }
    }

    @Test("a handler that gives up on cancel answers with status 499")
    func cancelWithoutResult() async throws {
        try await TestBroker.withBus { bus in
            try await withCommandServer(bus, CountTo.self, handler: countingHandler) {
                let run = await countingOnceItReports(bus, limit: 1000)
                run.cancel()
                let error = await #expect(throws: BusError.self) { _ = try await run.value }
                #expect(error?.code == .remote)
                #expect(error?.status == 499)
                #expect(error?.remote?.name == "CancelledError")
            }
        }
    }

    @Test("a command asks its caller a question and uses the answer; a refusal reaches it as an error")
    func questionAndAnswer() async throws {
        try await TestBroker.withBus { bus in
            let greeter: @Sendable (Greet, CommandContext<Greet>) async throws -> String = { _, context in
                context.report("asking")
                do {
                    return "hello \(try await context.ask("who are you?"))"
                } catch let error as BusError {
                    return "refused \(error.code) \(error.status ?? 0)"
                }
            }
            try await withCommandServer(bus, Greet.self, handler: greeter) {
                let questions = Mutex<[String]>([])
                let greeting = try await bus.perform(Greet()) { _ in
                } onQuestion: { question in
                    questions.withLock { $0.append(question) }
                    return "pika"
                }
                #expect(greeting == "hello pika")
                #expect(questions.withLock { $0 } == ["who are you?"])

                // The default answer refuses: NotImplementedError, 501.
                #expect(try await bus.perform(Greet()) == "refused remote 501")
            }
        }
    }

    @Test("a plain RPC caller gets only the final reply; the handler sees it cannot ask")
    func plainCallerGetsOnlyTheReply() async throws {
        try await TestBroker.withBus { bus in
            let greeter: @Sendable (Greet, CommandContext<Greet>) async throws -> String = { _, context in
                context.report("nobody hears this")
                do {
                    return try await context.ask("anyone?")
                } catch let error as BusError where error.code == .callerNotFollowing {
                    return "follows: \(context.callerFollows)"
                }
            }
            try await withCommandServer(bus, Greet.self, handler: greeter) {
                // Typed call and raw bytes, as a RackHD or pika caller sends them: no x-command.
                #expect(try await bus.call(Greet()) == "follows: false")
                let raw = try await bus.callRaw(exchangeNamed: bus.name(of: .task), routingKey: Greet.method, body: Array("{}".utf8))
                #expect(raw.type == "Result")
                #expect(String(decoding: raw.body, as: UTF8.self) == #"{"value":"follows: false"}"#)
            }
            try await withCommandServer(bus, CountTo.self, handler: countingHandler) {
                let counted = try await bus.call(CountTo(limit: 3, stepMilliseconds: 10))
                #expect(counted == [1, 2, 3])
            }
        }
    }

    @Test("a command that goes silent for longer than the idle timeout times out")
    func silenceTimesOut() async throws {
        try await TestBroker.withBus { bus in
            try await withCommandServer(bus, CountTo.self, handler: countingHandler) {
                let started = ContinuousClock.now
                let error = await #expect(throws: BusError.self) {
                    _ = try await bus.perform(CountTo(limit: 1, stepMilliseconds: 5_000), idleTimeout: .milliseconds(500))
                }
                #expect(error?.code == .timeout)
                #expect(ContinuousClock.now - started < .seconds(3))
            }
        }
    }
}
