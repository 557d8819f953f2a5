import BusCore
import BusTestSupport
import Foundation
import Testing

@Suite("Waiting for the connection", .timeLimit(.minutes(1)))
struct ConnectionWaitTests {
    @Test("concurrent waiters each time out on their own: a short timeout does not end a longer one")
    func waitersTimeOutOnTheirOwn() async throws {
        try await BrokerLock.shared.withShared {
            let bus = MessageBus(configuration: try TestBroker.configuration(), logger: TestBroker.logger)
            let patient = Task { try await bus.waitUntilConnected(timeout: .seconds(30)) }
            let impatient = Task { try await bus.waitUntilConnected(timeout: .milliseconds(200)) }
            // The bus does not run yet, so the impatient waiter gives up.
            let early = await #expect(throws: BusError.self) { try await impatient.value }
            #expect(early?.code == .timeout)
            try await Task.sleep(for: .milliseconds(300))
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await bus.run() }
                // The patient waiter is still waiting, and returns once the bus connects.
                try await patient.value
                #expect(bus.isConnected)
                bus.shutdown()
                try await group.waitForAll()
            }
        }
    }

    @Test("a cancelled waiter returns at once and leaves the others waiting")
    func cancelledWaiterLeavesOthers() async throws {
        try await BrokerLock.shared.withShared {
            let bus = MessageBus(configuration: try TestBroker.configuration(), logger: TestBroker.logger)
            let patient = Task { try await bus.waitUntilConnected(timeout: .seconds(30)) }
            let cancelled = Task { try await bus.waitUntilConnected(timeout: .seconds(30)) }
            try await Task.sleep(for: .milliseconds(100))
            cancelled.cancel()
            let started = ContinuousClock.now
            let error = await #expect(throws: BusError.self) { try await cancelled.value }
            #expect(error?.code == .cancelled)
            #expect(ContinuousClock.now - started < .seconds(5), "the cancelled waiter did not return promptly")
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await bus.run() }
                try await patient.value
                #expect(bus.isConnected)
                bus.shutdown()
                try await group.waitForAll()
            }
        }
    }
}
