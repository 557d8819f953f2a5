import ArgumentParser
import BusCore
import Foundation
import Synchronization

struct DeadLetters: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dead-letters",
        abstract: "List or requeue the poison messages of a quorum work queue (RACKBUS_QUEUE_TYPE=quorum).",
        discussion: """
            QUEUE is a work queue, with or without the exchange prefix: rackbus.scheduler, rackbus.task-runner,
            rackbus.task-graph-runner.finished. Its dead-letter queue is QUEUE.dead-letter.
            requeue publishes each again to the exchange and routing key it was first published with
            (the broker's x-death header), so every queue bound to that key gets it again, as the first
            time; a work queue refuses what comes by name. One that cannot be published stays, and the
            exit status is 1.
            """)

    @OptionGroup var bus: BusOptions

    @Argument(help: "list or requeue") var action: Action
    @Argument(help: "The work queue") var queue: String

    @Option(help: "The most messages to list or requeue") var limit = 1000

    enum Action: String, ExpressibleByArgument, CaseIterable {
        case list, requeue
    }

    func run() async throws {
        bus.bootstrapLogging()
        let configuration = try bus.busConfiguration(connectionName: "rackbus-cli")
        let prefix = configuration.exchangePrefix
        let queue = self.queue.hasPrefix("\(prefix).") ? self.queue : "\(prefix).\(self.queue)"
        let (action, limit) = (self.action, max(1, min(limit, 65_535)))
        // How many dead letters could not be requeued.
        let left = try await MessageBus.withBus(configuration: configuration) { messageBus -> Int in
            try await messageBus.waitUntilConnected(timeout: .seconds(10))
            let waiting: Int
            do {
                waiting = try await messageBus.inspectQueue(named: BusConfiguration.deadLetterQueue(of: queue)).messages
            } catch let error as BusError where error.replyCode == 404 {
                throw ValidationError("\(queue) has no dead-letter queue (is it a quorum work queue?)")
            }
            let wanted = min(waiting, limit)
            guard wanted > 0 else {
                print("no dead letters in \(BusConfiguration.deadLetterQueue(of: queue))")
                return 0
            }
            // A prefetch of all the wanted ones: each arrives once, so listing can hand them all back.
            let letters = try await messageBus.deadLetters(of: queue, prefetch: wanted)
            let taken = await Self.take(wanted, from: letters, within: .seconds(5))
            var left = 0
            switch action {
            case .list:
                for letter in taken {
                    let body = String(decoding: letter.body, as: UTF8.self)
                    print("\(letter.properties.messageID ?? "-")  \(letter.type ?? "-")  \(body)")
                    letter.reject(requeue: true)
                }
                print("\(taken.count) of \(waiting) dead letters in \(BusConfiguration.deadLetterQueue(of: queue))")
            case .requeue:
                // Published again where it was first published (the work queue refuses what comes
                // by name), confirmed and routed, then taken off; one that cannot be stays.
                for letter in taken {
                    let id = letter.properties.messageID ?? "-"
                    guard let origin = DeadLetterOrigin(headers: letter.properties.headers, queue: queue) else {
                        FileHandle.standardError.write(
                            Data("\(id): the broker recorded no exchange it came through into \(queue); left in place\n".utf8))
                        letter.reject(requeue: true)
                        left += 1
                        continue
                    }
                    do {
                        try await messageBus.publishRawConfirmed(
                            body: letter.body, toExchangeNamed: origin.exchange, routingKey: origin.routingKey,
                            type: letter.type ?? "Object", persistent: true, mandatory: true)
                        letter.ack()
                    } catch {
                        FileHandle.standardError.write(
                            Data(
                                "\(id): could not publish it to \(origin.exchange) with \(origin.routingKey): \(error); left in place\n"
                                    .utf8))
                        letter.reject(requeue: true)
                        left += 1
                    }
                }
                print("requeued \(taken.count - left) dead letters into \(queue) through their exchanges")
            }
            // Let the acks and rejects go out before the connection closes.
            try await Task.sleep(for: .milliseconds(200))
            return left
        }
        if left > 0 { throw ExitCode(1) }
    }

    /// Up to `count` deliveries, as many as arrive within `timeout`.
    private static func take(
        _ count: Int, from letters: Subscription<[UInt8]>, within timeout: Duration
    ) async -> [Delivery<[UInt8]>] {
        let taken = Taken()
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await letter in letters {
                    if taken.letters.withLock({
                        $0.append(letter); return $0.count
                    }) >= count {
                        break
                    }
                }
            }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            group.cancelAll()
        }
        return taken.letters.withLock { $0 }
    }

    private final class Taken: Sendable {
        let letters = Mutex<[Delivery<[UInt8]>]>([])
    }
}
