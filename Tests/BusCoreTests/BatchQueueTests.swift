import BusTestSupport
import Foundation
import Synchronization
import Testing

@testable import BusCore

/// The batches a consumer thread took, shared with the test.
private final class ReceivedBatches: Sendable {
    private let batches = Mutex<[[Int]]>([])

    func append(_ batch: [Int]) { batches.withLock { $0.append(batch) } }
    var value: [[Int]] { batches.withLock { $0 } }
}

@Suite("BatchQueue", .timeLimit(.minutes(1)))
struct BatchQueueTests {
    @Test("beyond the capacity new elements are dropped; taking makes room again")
    func capacityDrops() async {
        let queue = BatchQueue<Int>(capacity: 3)
        #expect((1...5).map { queue.append($0) } == [true, true, true, false, false])
        #expect(queue.count == 3)
        #expect(queue.acceptedCount == 3)
        #expect(await queue.takeAll() == [1, 2, 3])
        #expect(queue.count == 0)
        #expect(queue.append(6))
    }

    @Test("with holdsTakenElements, taken elements keep their room until released")
    func heldElementsCount() async {
        let queue = BatchQueue<Int>(capacity: 2, holdsTakenElements: true)
        #expect(queue.append(1) && queue.append(2))
        #expect(await queue.takeAll() == [1, 2])
        #expect(queue.count == 2)
        #expect(!queue.append(3))
        queue.release(1)
        #expect(queue.append(4))
        #expect(!queue.append(5))
        #expect(await queue.takeAll() == [4])
    }

    @Test("the consumer waits while empty, wakes for the first element, and takes bursts at once")
    func takeAllBatches() async throws {
        let queue = BatchQueue<Int>(capacity: 100)
        let first = Task { await queue.takeAll() }
        try await eventually(pollingEvery: .milliseconds(5)) { queue.isConsumerWaiting }
        #expect(queue.append(1))
        #expect(await first.value == [1])
        for value in 2...4 { #expect(queue.append(value)) }
        #expect(await queue.takeAll() == [2, 3, 4])
    }

    @Test("close stops intake; the consumer drains what is left, then gets empty batches")
    func closeDrainsThenEmpty() async {
        let queue = BatchQueue<Int>(capacity: 100)
        #expect(queue.append(1) && queue.append(2))
        queue.close()
        queue.close()
        #expect(!queue.append(3))
        #expect(await queue.takeAll() == [1, 2])
        #expect(await queue.takeAll() == [])
        #expect(await queue.takeAll() == [])
    }

    @Test("close wakes a waiting consumer with an empty batch")
    func closeWakesConsumer() async throws {
        let queue = BatchQueue<Int>(capacity: 100)
        let consumer = Task { await queue.takeAll() }
        try await eventually(pollingEvery: .milliseconds(5)) { queue.isConsumerWaiting }
        queue.close()
        #expect(await consumer.value == [])
    }

    @Test("concurrent producers below the capacity lose nothing, and each one's order holds")
    func concurrentProducers() async {
        let producers = 8
        let perProducer = 2_000
        let queue = BatchQueue<(producer: Int, index: Int)>(capacity: producers * perProducer)
        let consumer = Task {
            var received: [(producer: Int, index: Int)] = []
            while true {
                let batch = await queue.takeAll()
                if batch.isEmpty { return received }
                received += batch
            }
        }
        let accepted = await withTaskGroup(of: Int.self) { group in
            for producer in 0..<producers {
                group.addTask {
                    var accepted = 0
                    for index in 0..<perProducer where queue.append((producer, index)) {
                        accepted += 1
                    }
                    return accepted
                }
            }
            return await group.reduce(0, +)
        }
        queue.close()
        let received = await consumer.value
        #expect(accepted == producers * perProducer)
        #expect(received.count == producers * perProducer)
        for producer in 0..<producers {
            #expect(received.filter { $0.producer == producer }.map(\.index) == Array(0..<perProducer))
        }
    }

    @Test("a consumer thread blocks in takeAllBlocking until elements come or the queue closes")
    func blockingConsumer() async throws {
        let queue = BatchQueue<Int>(capacity: 100)
        let received = ReceivedBatches()
        let finished = OneShotSignal()
        let thread = Thread {
            while true {
                let batch = queue.takeAllBlocking()
                received.append(batch)
                if batch.isEmpty { break }
            }
            finished.signal()
        }
        thread.start()
        try await eventually(pollingEvery: .milliseconds(5)) { queue.isConsumerWaiting }
        #expect(queue.append(1))
        try await eventually(pollingEvery: .milliseconds(5)) { received.value == [[1]] }
        try await eventually(pollingEvery: .milliseconds(5)) { queue.isConsumerWaiting }
        queue.close()
        await finished.wait()
        #expect(received.value == [[1], []])
    }
}
