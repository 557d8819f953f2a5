import Testing

@testable import BusCore

@Suite("The engine's state machine")
struct EngineStateMachineTests {
    typealias Machine = EngineStateMachine
    typealias Failure = EngineStateMachine.Failure

    let policy = ReconnectPolicy(initialDelay: .milliseconds(100), maximumDelay: .seconds(5), multiplier: 2, jitter: 0.5)
    let start = ContinuousClock.now

    func machine(endpoints: Int = 1, maxDeferred: Int = 100) -> Machine {
        Machine(policy: policy, endpointCount: endpoints, firstEndpoint: 0, maxDeferred: maxDeferred, now: start)
    }

    func spec(_ base: String, prefetch: UInt16? = nil) -> ConsumerSpec {
        ConsumerSpec(
            queue: .exclusive(base: base), bindings: [Binding(exchange: "on.events", pattern: "#")],
            acknowledgement: prefetch.map { .byConsumer(prefetch: $0) } ?? .automatic)
    }

    /// Connects and establishes the reply queue; returns the actions of `connectSucceeded`.
    @discardableResult
    func connect(_ machine: inout Machine, now: ContinuousClock.Instant) -> [Machine.Action] {
        guard case .connect = machine.tick(now: now) else {
            Issue.record("expected a connect attempt")
            return []
        }
        #expect(machine.transportOpened().contains(.enableConfirms))
        let actions = machine.connectSucceeded()
        machine.replyQueueEstablished(queue: "rackbus.reply.x", consumerTag: "r")
        return actions
    }

    /// Connected, with subscription 1 consuming as `c1` from `a:1`.
    func consuming() -> Machine {
        var machine = machine()
        connect(&machine, now: start)
        _ = machine.subscribe(id: 1, spec: spec("a"))
        _ = machine.consumerEstablished(id: 1, consumerTag: "c1", queue: "a:1", channel: .broadcast)
        return machine
    }

    // MARK: Reconnecting

    @Test("backoff only after every address failed; then the first address again")
    func backoffAfterAllAddresses() {
        var machine = machine(endpoints: 3)
        #expect(machine.tick(now: start) == .connect(attempt: 1, endpoint: 0))
        machine.connectFailed(now: start, random: 0)
        #expect(machine.tick(now: start) == .connect(attempt: 2, endpoint: 1), "the next address, at once")
        machine.connectFailed(now: start, random: 0)
        #expect(machine.tick(now: start) == .connect(attempt: 3, endpoint: 2))
        machine.connectFailed(now: start, random: 0)
        #expect(machine.tick(now: start) == nil, "all three failed: now it waits")
        #expect(machine.nextAttemptAt == start + .milliseconds(100))
        #expect(machine.tick(now: start + .milliseconds(100)) == .connect(attempt: 4, endpoint: 0))
        #expect(!machine.isConnected)
    }

    @Test("a lost connection drops what was tied to it and retries the next address at once")
    func lossRetriesNextAddressAtOnce() {
        var machine = machine(endpoints: 2)
        #expect(machine.subscribe(id: 7, spec: spec("a")) == nil, "no connection: established later")
        let first = connect(&machine, now: start)
        #expect(first == [.reportConnected(generation: 1, isReconnect: false), .establishReplyQueue, .establishConsumer(id: 7)])
        #expect(
            machine.consumerEstablished(id: 7, consumerTag: "c7", queue: "a:1", channel: .broadcast) == [
                .consumerReady(id: 7, queue: "a:1")
            ])
        #expect(machine.consumerID(forTag: "c7") == 7)
        #expect(machine.replyConsumerTag == "r")

        let later = start + .seconds(30)
        let lost = Failure(.connectionLost, "socket closed")
        #expect(
            machine.connectionLost(lost, now: later) == [
                .closeConnection, .resetAcks, .reportDisconnected(lost), .failCallsSentOn(generation: 1), .failConfirms(.inDoubt),
            ])
        #expect(machine.connectionLost(lost, now: later) == [], "a second report of the same loss changes nothing")
        #expect(machine.consumerID(forTag: "c7") == nil, "tags of the lost connection are gone")
        #expect(machine.replyQueue == nil && machine.replyConsumerTag == nil)
        #expect(machine.consumerTag(of: 7) == nil)
        #expect(machine.tick(now: later) == .connect(attempt: 1, endpoint: 1), "no backoff after a loss: the other node, now")
    }

    @Test("subscriptions are re-established on the new generation, and kept commands run after them in order")
    func consumersReestablishedOnNewGeneration() {
        var machine = machine()
        connect(&machine, now: start)
        _ = machine.subscribe(id: 2, spec: spec("b"))
        #expect(machine.subscribe(id: 1, spec: spec("a")) == .establishConsumer(id: 1), "connected: established at once")
        _ = machine.consumerEstablished(id: 1, consumerTag: "c1", queue: "a:1", channel: .broadcast)
        _ = machine.consumerEstablished(id: 2, consumerTag: "c2", queue: "b:1", channel: .broadcast)
        _ = machine.connectionLost(Failure(.connectionLost, "gone"), now: start)
        #expect(machine.deferCommand(id: 10, kind: .send) == .kept)
        #expect(machine.deferCommand(id: 11, kind: .request) == .kept)
        #expect(machine.deferCommand(id: 12, kind: .settle) == .dropped, "an ack is meaningless on the next connection")
        #expect(machine.deferCommand(id: 13, kind: .transient) == .dropped)
        #expect(machine.currentGeneration == 1)

        let actions = connect(&machine, now: start)
        #expect(
            actions == [
                .reportConnected(generation: 2, isReconnect: true), .establishReplyQueue, .establishConsumer(id: 1),
                .establishConsumer(id: 2), .runCommands([10, 11]),
            ])
        #expect(machine.currentGeneration == 2)
        #expect(machine.deferredCount == 0)
        _ = machine.consumerEstablished(id: 1, consumerTag: "c1", queue: "a:2", channel: .broadcast)
        #expect(machine.consumerID(forTag: "c1") == 1)
        #expect(machine.consumerID(forTag: "c2") == nil, "not consuming until its establishment is reported")
    }

    @Test("too many kept commands: the next one is refused")
    func deferralIsBounded() {
        var machine = machine(maxDeferred: 2)
        #expect(machine.deferCommand(id: 1, kind: .send) == .kept)
        #expect(machine.deferCommand(id: 2, kind: .request) == .kept)
        #expect(machine.deferCommand(id: 3, kind: .send) == .refused(.backpressure))
        #expect(machine.deferredCount == 2)
    }

    // MARK: Channels

    @Test("a closed publishing or scratch channel is reopened, nothing else")
    func publishAndScratchReopen() {
        var machine = machine()
        connect(&machine, now: start)
        #expect(machine.channelClosed(2, code: 404, text: "NOT_FOUND", now: start) == [.openChannel(.publish)])
        #expect(machine.channelClosed(4, code: 406, text: "PRECONDITION_FAILED", now: start) == [.openChannel(.scratch)])
        #expect(machine.isConnected)
        #expect(machine.currentGeneration == 1)
    }

    @Test("a closed confirm channel fails the confirms in flight, then reopens in confirm mode")
    func confirmChannel() {
        var machine = machine()
        connect(&machine, now: start)
        #expect(
            machine.channelClosed(3, code: 406, text: "PRECONDITION_FAILED", now: start) == [
                .failConfirms(Failure(.channelClosed, "PRECONDITION_FAILED", replyCode: 406)), .openChannel(.confirm), .enableConfirms,
            ])
        #expect(machine.isConnected)
    }

    @Test("a closed consuming channel counts as a lost connection", arguments: [UInt16(1), 9])
    func consumeChannel(channel: UInt16) {
        var machine = consuming()
        let failure = Failure(.channelClosed, "NOT_FOUND", replyCode: 404)
        #expect(
            machine.channelClosed(channel, code: 404, text: "NOT_FOUND", now: start) == [
                .closeConnection, .resetAcks, .reportDisconnected(failure), .failCallsSentOn(generation: 1), .failConfirms(.inDoubt),
            ])
        #expect(!machine.isConnected)
        #expect(machine.consumerID(forTag: "c1") == nil)
        #expect(machine.subscriptionIDs == [1], "the subscription itself survives, for the reconnect")
    }

    @Test("a refused consume rebuilds the connection; a queue gone missing (404) is established again, any other refusal ends it")
    func consumeRefused() {
        var machine = machine()
        connect(&machine, now: start)
        _ = machine.subscribe(id: 1, spec: spec("a"))
        _ = machine.subscribe(id: 2, spec: spec("b"))
        let missing = Failure(.channelClosed, "NOT_FOUND - no queue 'a'", replyCode: 404)
        let actions = machine.consumeRefused(id: 1, missing, now: start)
        #expect(actions.first == .closeConnection, "\(actions)")
        #expect(!actions.contains(.openChannel(.scratch)), "the scratch channel is still open")
        #expect(!machine.isConnected)
        #expect(machine.subscriptionIDs == [1, 2], "kept, to be declared and consumed again after the reconnect")

        connect(&machine, now: start)
        let forbidden = Failure(.channelClosed, "ACCESS_REFUSED", replyCode: 403)
        let refused = machine.consumeRefused(id: 2, forbidden, now: start)
        #expect(refused.first == .finishConsumer(id: 2, forbidden))
        #expect(refused.contains(.closeConnection))
        #expect(machine.subscriptionIDs == [1])
    }

    @Test("a channel close reported without a connection changes nothing")
    func channelClosedWhileDisconnected() {
        var machine = machine()
        #expect(machine.channelClosed(3, code: 320, text: "x", now: start) == [])
        #expect(machine.channelClosed(1, code: 320, text: "x", now: start) == [])
    }

    // MARK: Subscriptions

    @Test("a refused subscription ends; the broker cancelling one re-establishes it; unsubscribing cancels only when connected")
    func subscriptionLifecycle() {
        var machine = machine()
        connect(&machine, now: start)
        _ = machine.subscribe(id: 1, spec: spec("a"))
        let refused = Failure(.channelClosed, "RESOURCE_LOCKED", replyCode: 405)
        #expect(machine.consumerRefused(id: 1, refused) == [.openChannel(.scratch), .finishConsumer(id: 1, refused)])
        #expect(machine.subscriptionIDs == [])

        _ = machine.subscribe(id: 2, spec: spec("b"))
        _ = machine.consumerEstablished(id: 2, consumerTag: "c2", queue: "b:1", channel: .broadcast)
        #expect(machine.consumerCancelledByBroker(tag: "c2") == .establishConsumer(id: 2))
        #expect(machine.consumerID(forTag: "c2") == nil)
        #expect(machine.consumerCancelledByBroker(tag: "r") == .establishReplyQueue)
        #expect(machine.consumerCancelledByBroker(tag: "unknown") == nil)

        _ = machine.consumerEstablished(id: 2, consumerTag: "c2", queue: "b:2", channel: .broadcast)
        #expect(machine.unsubscribe(id: 2) == [.finishConsumer(id: 2, .cancelled), .cancelConsumer(tag: "c2", channel: .broadcast)])
        #expect(machine.unsubscribe(id: 2) == [])

        _ = machine.subscribe(id: 3, spec: spec("c"))
        _ = machine.consumerEstablished(id: 3, consumerTag: "c3", queue: "c:1", channel: .broadcast)
        _ = machine.connectionLost(Failure(.connectionLost, "gone"), now: start)
        #expect(machine.unsubscribe(id: 3) == [.finishConsumer(id: 3, .cancelled)], "no connection: nothing to cancel")
    }

    @Test("work consumers and broadcast ones consume on channels of their own; losing either rebuilds the connection")
    func consumingChannels() {
        #expect(spec("w", prefetch: 16).channel == .consume)
        #expect(spec("b").channel == .broadcast)
        let windowed = ConsumerSpec(queue: .exclusive(base: "b"), bindings: [], acknowledgement: .onTake(window: 64))
        #expect(windowed.channel == .broadcast)
        var machine = machine()
        connect(&machine, now: start)
        #expect(machine.transportOpened().contains(.openChannel(.broadcast)))
        _ = machine.subscribe(id: 1, spec: spec("w", prefetch: 16))
        _ = machine.consumerEstablished(id: 1, consumerTag: "c1", queue: "w", channel: .consume)
        _ = machine.subscribe(id: 2, spec: windowed)
        _ = machine.consumerEstablished(id: 2, consumerTag: "c2", queue: "b:1", channel: .broadcast)
        #expect(machine.unsubscribe(id: 1).last == .cancelConsumer(tag: "c1", channel: .consume))
        #expect(machine.unsubscribe(id: 2).last == .cancelConsumer(tag: "c2", channel: .broadcast))
        // Unsubscribed while its consume was under way: cancelled where it was made.
        #expect(
            machine.consumerEstablished(id: 2, consumerTag: "c3", queue: "b:2", channel: .broadcast) == [
                .cancelConsumer(tag: "c3", channel: .broadcast)
            ])
        let closed = machine.channelClosed(Machine.Channel.broadcast.rawValue, code: 406, text: "PRECONDITION_FAILED", now: start)
        #expect(closed.first == .closeConnection)
        #expect(closed.contains(.resetAcks))
    }

    @Test("bindings are counted per holder; without a connection only the spec changes; a refusal restores it")
    func bindingChanges() {
        var machine = machine()
        let node = Binding(exchange: "on.events", pattern: "node.1")
        _ = machine.subscribe(id: 1, spec: spec("a"))
        #expect(machine.changeBindings(of: 1, add: [node], remove: []) == .recorded)
        #expect(machine.changeBindings(of: 9, add: [node], remove: []) == .noSuchSubscription)
        connect(&machine, now: start)
        _ = machine.consumerEstablished(id: 1, consumerTag: "c1", queue: "a:1", channel: .broadcast)
        let before = machine.spec(of: 1)!.bindings
        #expect(
            machine.changeBindings(of: 1, add: [node], remove: []) == .apply(queue: "a:1", bind: [], unbind: [], previous: before),
            "a second holder binds nothing new")
        #expect(machine.changeBindings(of: 1, add: [], remove: [node]).isApply(unbinding: []), "one holder is left")
        #expect(machine.changeBindings(of: 1, add: [], remove: [node]).isApply(unbinding: [node]), "the last holder left")
        let extra = Binding(exchange: "missing", pattern: "#")
        guard case .apply(_, let bind, _, let previous) = machine.changeBindings(of: 1, add: [extra], remove: []) else {
            Issue.record("expected a change to apply")
            return
        }
        #expect(bind == [extra])
        #expect(machine.bindingsRefused(of: 1, restoring: previous) == [.openChannel(.scratch)])
        #expect(machine.spec(of: 1)!.bindings == previous, "a refused binding is not replayed on reconnect")
    }

    // MARK: Shutdown

    @Test("connected: sends what was handed over, then fails the rest and closes, once")
    func shutdownWhileConnected() {
        var machine = consuming()
        _ = machine.subscribe(id: 2, spec: spec("b"))
        let incoming: [(id: UInt64, kind: Machine.CommandKind)] = [(1, .send), (2, .request), (3, .settle), (4, .transient)]
        #expect(
            machine.shutdownRequested(incoming: incoming) == [.runCommands([1, 3]), .flushAcks, .awaitConfirms(patience: .seconds(2))])
        #expect(machine.shutdownRequested(incoming: []) == [], "a second request changes nothing")
        #expect(
            machine.drained() == [
                .failCommands([2, 4], .shutdown), .failConfirms(.shutdown), .finishConsumer(id: 1, .shutdown),
                .finishConsumer(id: 2, .shutdown), .cancelConsumer(tag: "c1", channel: .broadcast), .closeConnection,
                .reportDisconnected(.shutdown),
                .failAllCalls(.shutdown),
            ])
        #expect(machine.drained() == [], "closes once")
        #expect(machine.tick(now: start + .seconds(60)) == nil, "never reconnects")
        #expect(machine.connectSucceeded() == [])
    }

    @Test("disconnected: every kept and handed-over command fails, nothing is sent or cancelled")
    func shutdownWhileDisconnected() {
        var machine = machine()
        _ = machine.subscribe(id: 5, spec: spec("a"))
        #expect(machine.deferCommand(id: 1, kind: .send) == .kept)
        #expect(machine.deferCommand(id: 2, kind: .request) == .kept)
        #expect(machine.shutdownRequested(incoming: [(3, .send), (4, .settle)]) == [])
        #expect(
            machine.drained() == [
                .failCommands([1, 2, 3, 4], .shutdown), .failConfirms(.shutdown), .finishConsumer(id: 5, .shutdown), .closeConnection,
                .reportDisconnected(.shutdown), .failAllCalls(.shutdown),
            ])
        #expect(machine.nextAttemptAt == nil)
    }

    @Test("a connection lost while draining is torn down; the close that follows cancels nothing on it")
    func lossWhileDraining() {
        var machine = consuming()
        _ = machine.shutdownRequested(incoming: [(1, .send)])
        let lost = Failure(.connectionLost, "gone")
        #expect(machine.connectionLost(lost, now: start).first == .closeConnection)
        // The loop keeps a send that failed while draining; the close fails it.
        #expect(machine.deferCommand(id: 1, kind: .send) == .kept)
        let actions = machine.drained()
        #expect(actions.first == .failCommands([1], .shutdown))
        #expect(!actions.contains(.cancelConsumer(tag: "c1", channel: .broadcast)))
        #expect(machine.tick(now: start + .seconds(5)) == nil)
    }
}

extension EngineStateMachine.BindingChange {
    fileprivate func isApply(unbinding expected: [Binding]) -> Bool {
        guard case .apply(_, let bind, let unbind, _) = self else { return false }
        return bind.isEmpty && unbind == expected
    }
}
