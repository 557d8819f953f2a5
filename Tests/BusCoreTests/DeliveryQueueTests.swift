import Synchronization
import Testing

@testable import BusCore

@Suite("The hand-off from the I/O thread to consumers")
struct DeliveryQueueTests {
    func consumed(_ tag: UInt64) -> ConsumedDelivery {
        ConsumedDelivery(
            delivery: InboundDelivery(
                channel: 1, consumerTag: "c", deliveryTag: tag, redelivered: false, exchange: "", routingKey: "r",
                properties: MessageProperties(), body: []),
            generation: 1)
    }

    @Test func aSubscriberTakesEverythingBufferedAtOnce() async {
        let queue = DeliveryQueue {}
        for tag: UInt64 in 1...3 { #expect(queue.append(consumed(tag)) == false) }
        #expect(await queue.takeAll().map(\.delivery.deliveryTag) == [1, 2, 3])
    }

    @Test func waitingWorkersEachGetOneDelivery() async {
        let queue = DeliveryQueue {}
        async let first = queue.takeOne()
        async let second = queue.takeOne()
        await waitUntil { queue.waitingCount == 2 }
        #expect(queue.append(consumed(1)))
        _ = queue.append(consumed(2))
        _ = queue.append(consumed(3))
        queue.wake()
        let tags = Set([await first, await second].compactMap { $0?.delivery.deliveryTag })
        #expect(tags == [1, 2])
        #expect(await queue.takeOne()?.delivery.deliveryTag == 3)
    }

    @Test func finishingReleasesEveryWaiterAfterTheBufferIsDrained() async {
        let queue = DeliveryQueue {}
        _ = queue.append(consumed(1))
        queue.finish()
        #expect(queue.append(consumed(2)) == false, "nothing is buffered after the end")
        #expect(await queue.takeOne()?.delivery.deliveryTag == 1)
        #expect(await queue.takeOne() == nil)
        #expect(await queue.takeAll().isEmpty)
    }

    @Test func finishWakesWorkersThatWait() async {
        let queue = DeliveryQueue {}
        async let first = queue.takeOne()
        async let second = queue.takeOne()
        await waitUntil { queue.waitingCount == 2 }
        queue.finish()
        #expect(await first == nil)
        #expect(await second == nil)
    }

    @Test func theConsumerGoneCallbackRunsOnce() async {
        let calls = Mutex(0)
        let queue = DeliveryQueue { calls.withLock { $0 += 1 } }
        queue.consumerGone()
        queue.consumerGone()
        #expect(calls.withLock { $0 } == 1)
        #expect(await queue.takeAll().isEmpty)
    }

    private func waitUntil(_ condition: () -> Bool) async {
        while !condition() { await Task.yield() }
    }
}
