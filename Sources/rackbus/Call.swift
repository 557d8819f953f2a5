import ArgumentParser
import BusCore
import Foundation

struct Call: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Call an RPC and print its reply.",
        discussion: """
            Prints the reply's value as JSON. On an ErrorEvent prints its name, message and status to
            standard error. Exit status: 0 success, 1 remote error, 3 timeout, 4 broker unreachable
            or connection lost, 64 bad arguments.
            With --follow the call is a long command: progress reports go to standard error as
            they come, each question is printed there and answered with a line of JSON read
            from standard input, and --timeout is the longest silence between two messages.
            Example: rackbus call dhcp methods.lookupIpLease '{"value":"10.1.1.5"}' --type IpAddress
            """)

    @OptionGroup var bus: BusOptions

    @Argument(help: "Exchange (dhcp, task-graph-runner, on.dhcp, …)")
    var exchange: String

    @Argument(help: "Routing key, e.g. methods.peekLeaseTable")
    var routingKey: String

    @Argument(help: "JSON request body")
    var json: String = "{}"

    @Option(help: "AMQP type property of the request (IpAddress, MacAddress, Object, …)")
    var type: String = "Object"

    @Option(help: "Seconds to wait for the reply")
    var timeout: Double = 30

    @Flag(help: "Print the whole reply body (not just its value)")
    var raw = false

    @Flag(help: "Follow a long command: print its progress, answer its questions from standard input")
    var follow = false

    func validate() throws {
        guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
    }

    func run() async throws {
        bus.bootstrapLogging()
        let configuration = try bus.busConfiguration(connectionName: "rackbus-cli")
        let body = try jsonBody(json)
        let exchangeName = bus.exchangeName(exchange, configuration: configuration)
        let timeout = Duration.milliseconds(Int64(self.timeout * 1000))
        do {
            let reply = try await MessageBus.withBus(configuration: configuration) { messageBus in
                // The connection counts against the caller's patience too.
                try await messageBus.waitUntilConnected(timeout: timeout)
                guard follow else {
                    return try await messageBus.callRaw(
                        exchangeNamed: exchangeName, routingKey: routingKey, body: body, type: type, timeout: timeout)
                }
                return try await messageBus.performRaw(
                    exchangeNamed: exchangeName, routingKey: routingKey, body: body, type: type, idleTimeout: timeout
                ) { progress in
                    FileHandle.standardError.write(Data("progress: \(render(progress))\n".utf8))
                } onQuestion: { question in
                    FileHandle.standardError.write(Data("question: \(render(question))\n".utf8))
                    guard let line = await readLineOffThePool(), !line.isEmpty else {
                        throw ErrorEvent.badRequest("no answer on standard input")
                    }
                    guard let answer = try? jsonBody(line) else { throw ErrorEvent.badRequest("the answer is not JSON: \(line)") }
                    return answer
                }
            }
            if raw {
                print(render(reply.body, pretty: true))
            } else {
                let value = (try? JSONDecoder().decode(JSONValue.self, from: Data(reply.body)))?["value"]
                print(value.map { render(Array((try? JSONEncoder().encode($0)) ?? Data()), pretty: true) } ?? "null")
            }
        } catch let error as BusError {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            switch error.code {
            case .remote: throw ExitCode(1)
            case .timeout: throw ExitCode(3)
            default: throw ExitCode(4)
            }
        }
    }
}

/// One line of standard input, read on a thread of its own: a blocking read must not hold one of
/// the cooperative pool's threads, which the bus's tasks need meanwhile.
func readLineOffThePool() async -> String? {
    await withCheckedContinuation { continuation in
        Thread { continuation.resume(returning: readLine()) }.start()
    }
}
