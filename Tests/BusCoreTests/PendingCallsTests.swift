import BusTestSupport
import Testing

@testable import BusCore

@Suite("The RPC correlation map")
struct PendingCallsTests {
    func delivery(_ text: String) -> InboundDelivery {
        InboundDelivery(
            channel: 1, consumerTag: "c", deliveryTag: 1, redelivered: false, exchange: "", routingKey: "r",
            properties: MessageProperties(), body: Array(text.utf8))
    }

    @Test func resolvesTheRightCall() async throws {
        let pending = PendingCalls()
        let first = pending.makeID()
        let second = pending.makeID()
        async let a = withCheckedThrowingContinuation { continuation in
            #expect(
                pending.register(
                    id: first, deadline: .now + .seconds(10), timeout: .seconds(10), description: "a", continuation: continuation))
        }
        async let b = withCheckedThrowingContinuation { continuation in
            #expect(
                pending.register(
                    id: second, deadline: .now + .seconds(10), timeout: .seconds(10), description: "b", continuation: continuation))
        }
        while pending.count < 2 { await Task.yield() }
        #expect(pending.resolve(second, with: delivery("two")))
        #expect(pending.resolve(first, with: delivery("one")))
        #expect(!pending.resolve(first, with: delivery("late")), "a late reply finds nobody")
        #expect(try await a.body == Array("one".utf8))
        #expect(try await b.body == Array("two".utf8))
    }

    @Test func cancellationBeforeRegistrationLeavesATombstone() async {
        let pending = PendingCalls()
        let id = pending.makeID()
        pending.cancel(id)
        do {
            _ = try await withCheckedThrowingContinuation { continuation in
                #expect(
                    !pending.register(
                        id: id, deadline: .now + .seconds(10), timeout: .seconds(10), description: "x", continuation: continuation))
            }
            Issue.record("expected cancellation")
        } catch let error as BusError {
            #expect(error.code == .cancelled)
        } catch {
            Issue.record("unexpected \(error)")
        }
        #expect(pending.count == 0)
    }

    @Test func expiryFailsOnlyOverdueCalls() async throws {
        let pending = PendingCalls()
        let now = ContinuousClock.now
        let overdue = pending.makeID()
        let current = pending.makeID()
        async let late = Result(catching: {
            try await withCheckedThrowingContinuation { continuation in
                _ = pending.register(id: overdue, deadline: now, timeout: .milliseconds(5), description: "late", continuation: continuation)
            }
        })
        async let fine = withCheckedThrowingContinuation { continuation in
            _ = pending.register(
                id: current, deadline: now + .seconds(60), timeout: .seconds(60), description: "fine", continuation: continuation)
        }
        while pending.count < 2 { await Task.yield() }
        #expect(pending.expire(now: now - .milliseconds(1)) == now, "nothing is due yet")
        #expect(pending.count == 2)
        let earliest = pending.expire(now: now + .milliseconds(1))
        #expect(earliest == now + .seconds(60))
        let failure = await late
        #expect((failure.failure as? BusError)?.code == .timeout)
        #expect((failure.failure as? BusError)?.message == "Request Timed Out (late). 5 ms")
        #expect(pending.expire(now: now + .seconds(59)) == now + .seconds(60), "the next deadline is remembered")
        pending.resolve(current, with: delivery("ok"))
        #expect(try await fine.body == Array("ok".utf8))
    }

    @Test func connectionLossFailsOnlySentCalls() async throws {
        let pending = PendingCalls()
        let sent = pending.makeID()
        let queued = pending.makeID()
        async let sentResult = Result(catching: {
            try await withCheckedThrowingContinuation { continuation in
                _ = pending.register(
                    id: sent, deadline: .now + .seconds(60), timeout: .seconds(60), description: "sent", continuation: continuation)
            }
        })
        async let queuedResult = withCheckedThrowingContinuation { continuation in
            _ = pending.register(
                id: queued, deadline: .now + .seconds(60), timeout: .seconds(60), description: "queued", continuation: continuation)
        }
        while pending.count < 2 { await Task.yield() }
        #expect(pending.markSent(sent, generation: 3))
        pending.failSent(upTo: 3) { _ in BusError(code: .connectionLost, message: "lost") }
        #expect(((await sentResult).failure as? BusError)?.code == .connectionLost)
        #expect(pending.isWaiting(queued), "a call not sent yet waits for the next connection")
        pending.resolve(queued, with: delivery("later"))
        #expect(try await queuedResult.body == Array("later".utf8))
    }
}
