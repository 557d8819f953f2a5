/// Turns the acknowledgements of one loop turn into as few `basic.ack` frames as possible, as a
/// pure value. Delivery tags on a channel increase; when every delivery up to tag T has been
/// acknowledged, one `ack(T, multiple: true)` covers them all. Acks that would leave an
/// unacknowledged delivery below them go out one by one, so no delivery is ever acknowledged
/// before its consumer said so.
struct AckCoalescer {
    /// Manually acknowledged deliveries in tag order, from `head` on.
    private var outstanding: [UInt64] = []
    private var head = 0
    /// Tags below the front that were already settled one by one (acked singly or rejected).
    private var settled: Set<UInt64> = []

    var outstandingCount: Int { outstanding.count - head - settled.count }

    mutating func delivered(_ tag: UInt64) {
        outstanding.append(tag)
    }

    /// A delivery rejected (or otherwise settled) by its own frame.
    mutating func settledIndividually(_ tag: UInt64) {
        settled.insert(tag)
        advance()
    }

    /// The frames that acknowledge `tags`: at most one `multiple` ack plus single acks.
    mutating func acknowledge(_ tags: [UInt64]) -> [(tag: UInt64, multiple: Bool)] {
        var pending = Set(tags)
        var covered: UInt64?
        while head < outstanding.count {
            let tag = outstanding[head]
            if pending.remove(tag) != nil {
                covered = tag
            } else if settled.remove(tag) == nil {
                break
            }
            head += 1
        }
        var frames: [(tag: UInt64, multiple: Bool)] = []
        if let covered {
            frames.append((covered, true))
        }
        for tag in pending.sorted() {
            frames.append((tag, false))
            settled.insert(tag)
        }
        compact()
        return frames
    }

    /// A new channel numbers its deliveries from 1 again.
    mutating func reset() {
        self = AckCoalescer()
    }

    private mutating func advance() {
        while head < outstanding.count, settled.remove(outstanding[head]) != nil {
            head += 1
        }
        compact()
    }

    private mutating func compact() {
        if head > 4096, head * 2 > outstanding.count {
            outstanding.removeFirst(head)
            head = 0
        }
    }
}

/// The acks of the two consuming channels, whose delivery tags count separately: a coalescer
/// and this turn's acks for each. Pure, like ``AckCoalescer``.
struct ChannelAcks {
    private typealias Channel = EngineStateMachine.Channel

    private var work = AckCoalescer()
    private var broadcast = AckCoalescer()
    private var pendingWork: [UInt64] = []
    private var pendingBroadcast: [UInt64] = []

    var hasPending: Bool { !pendingWork.isEmpty || !pendingBroadcast.isEmpty }

    /// Unacknowledged deliveries on `channel`.
    func outstandingCount(on channel: UInt16) -> Int {
        channel == Channel.broadcast.rawValue ? broadcast.outstandingCount : work.outstandingCount
    }

    mutating func delivered(_ tag: UInt64, on channel: UInt16) {
        if channel == Channel.broadcast.rawValue { broadcast.delivered(tag) } else { work.delivered(tag) }
    }

    /// Acknowledges `tag` with this turn's other acks.
    mutating func acknowledge(_ tag: UInt64, on channel: UInt16) {
        if channel == Channel.broadcast.rawValue { pendingBroadcast.append(tag) } else { pendingWork.append(tag) }
    }

    mutating func settledIndividually(_ tag: UInt64, on channel: UInt16) {
        if channel == Channel.broadcast.rawValue { broadcast.settledIndividually(tag) } else { work.settledIndividually(tag) }
    }

    /// This turn's ack frames, channel by channel; none is left pending.
    mutating func takeFrames() -> [(channel: UInt16, tag: UInt64, multiple: Bool)] {
        var frames: [(channel: UInt16, tag: UInt64, multiple: Bool)] = []
        if !pendingWork.isEmpty {
            frames += work.acknowledge(pendingWork).map { (Channel.consume.rawValue, $0.tag, $0.multiple) }
            pendingWork.removeAll(keepingCapacity: true)
        }
        if !pendingBroadcast.isEmpty {
            frames += broadcast.acknowledge(pendingBroadcast).map { (Channel.broadcast.rawValue, $0.tag, $0.multiple) }
            pendingBroadcast.removeAll(keepingCapacity: true)
        }
        return frames
    }

    /// New channels number their deliveries from 1 again, and this turn's acks mean nothing there.
    mutating func reset() {
        self = ChannelAcks()
    }
}
