import BusCore
import BusTestSupport
import Foundation
import Synchronization
import Testing

/// The kernel's name of the thread the caller runs on (the bus names its I/O thread `rackbus-io`).
private func currentThreadName() -> String {
    ((try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
}

@Suite("Tasks on the bus's I/O thread", .timeLimit(.minutes(2)))
struct IOThreadExecutorTests {
    @Test("RPC handlers run on the server bus's I/O thread, and a handler may call through the same bus")
    func handlersRunOnTheIOThread() async throws {
        try await TestBroker.withBus { bus in
            let threads = Mutex<Set<String>>([])
            let server = try await bus.server(for: Echo.self) { request, _ in
                threads.withLock { _ = $0.insert(currentThreadName()) }
                return EchoReply(text: request.text, number: request.number, servedBy: "io")
            }
            // A handler that awaits another call through its own bus: the I/O thread keeps
            // turning while the handler waits.
            let relay = try await bus.server(for: Nothing.self) { _, _ in
                _ = try await bus.call(Echo(text: "nested", number: 1))
                return nil
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await server.run() }
                group.addTask { await relay.run() }
                defer { group.cancelAll() }
                for number in 0..<20 {
                    #expect(try await bus.call(Echo(text: "t", number: number)).number == number)
                }
                _ = try await bus.call(Nothing())
            }
            #expect(threads.withLock { $0 } == ["rackbus-io"])
        }
    }

    @Test("A caller that prefers the I/O thread runs there before and after each call")
    func callersOnTheIOThread() async throws {
        try await TestBroker.withBus { bus in
            try await withEchoServer(bus) {
                let names = try await withTaskExecutorPreference(bus.ioThreadExecutor) {
                    var names: Set<String> = [currentThreadName()]
                    for number in 0..<50 {
                        let reply = try await bus.call(Echo(text: "x", number: number))
                        #expect(reply.number == number)
                        names.insert(currentThreadName())
                    }
                    return names
                }
                #expect(names == ["rackbus-io"])
            }
        }
    }

    @Test("A subscriber on the I/O thread gets every event, in order")
    func subscriberOnTheIOThread() async throws {
        try await TestBroker.withBus { bus in
            let events = try await bus.subscribe(to: .events, patterns: ["io-thread.#"], as: EchoReply.self)
            let reader = Task(executorPreference: bus.ioThreadExecutor) {
                var numbers: [Int] = []
                var names: Set<String> = []
                for await event in events {
                    numbers.append(event.message.number)
                    names.insert(currentThreadName())
                    if numbers.count == 500 { break }
                }
                return (numbers, names)
            }
            for number in 0..<500 {
                try await bus.publish(EchoReply(text: "e", number: number, servedBy: "p"), to: .events, routingKey: "io-thread.\(number)")
            }
            let (numbers, names) = await reader.value
            #expect(numbers == Array(0..<500))
            #expect(names == ["rackbus-io"])
        }
    }

    @Test("A task that prefers a stopped bus's thread still runs to its end")
    func outlivesItsBus() async throws {
        let configuration = try TestBroker.configuration()
        let bus = MessageBus(configuration: configuration, logger: TestBroker.logger)
        let running = Task { try await bus.run() }
        try await bus.waitUntilConnected(timeout: .seconds(30))
        let executor = bus.ioThreadExecutor
        bus.shutdown()
        _ = await running.result
        // The bus has stopped: its thread is gone, and the work still runs, step after step.
        let (steps, names) = await Task(executorPreference: executor) {
            var steps = 0
            var names: Set<String> = []
            for _ in 0..<10 {
                await Task.yield()
                names.insert(currentThreadName())
                steps += 1
            }
            return (steps, names)
        }.value
        #expect(steps == 10)
        #expect(names == ["rackbus-spare"])
    }
}
