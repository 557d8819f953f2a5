import BusCore
import BusTestSupport
import Foundation
import Testing

/// Asks which version to install, reports its steps, and installs it.
struct Install: BusCommand {
    typealias Reply = String
    typealias Progress = String
    typealias Question = String
    typealias Answer = String
    static let exchange = Exchange.task
    static let method = "methods.install"
}

@Suite("rackbus call --follow", .timeLimit(.minutes(2)))
struct CommandCLITests {
    @Test("prints a command's progress and question, and answers from standard input")
    func followsACommand() async throws {
        let configuration = try TestBroker.configuration()
        try await TestBroker.withBus(configuration) { bus in
            let server = try await bus.commandServer(for: Install.self) { _, context in
                let version = try await context.ask("which version?")
                context.report("downloading \(version)")
                context.report("installing \(version)")
                return "installed \(version)"
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await server.run() }
                defer { group.cancelAll() }
                let output = try await TestBroker.run(
                    ServiceProcess.executable.path,
                    [
                        "call", "task", Install.method, "{}", "--follow", "--timeout", "10", "--url", TestBroker.url, "--prefix",
                        configuration.exchangePrefix,
                    ],
                    input: "\"2.4.1\"\n")
                let lines = output.split(separator: "\n").map(String.init)
                #expect(lines.contains(#"question: "which version?""#), "\(output)")
                #expect(lines.contains(#"progress: "downloading 2.4.1""#), "\(output)")
                #expect(lines.contains(#"progress: "installing 2.4.1""#), "\(output)")
                #expect(lines.last == #""installed 2.4.1""#, "\(output)")
            }
        }
    }
}
