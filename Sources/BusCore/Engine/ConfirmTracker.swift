/// Publisher-confirm bookkeeping for one confirm-mode channel, as a pure value: sequence numbers
/// in, outcomes out. The broker numbers confirmed publishes 1, 2, 3… per channel and may
/// acknowledge several at once (`multiple`); a mandatory publish that matched no queue is
/// returned (`basic.return`) before its ack.
struct ConfirmTracker<Token> {
    enum Outcome {
        case confirmed
        case unroutable
        case nacked
    }

    private var nextSequence: UInt64 = 1
    private var order: [UInt64] = []
    private var head = 0
    private var tokens: [UInt64: Token] = [:]
    private var sequenceByMessageID: [String: UInt64] = [:]
    private var returned: Set<UInt64> = []

    var count: Int { tokens.count }

    /// Records a publish about to be sent; returns its sequence number.
    @discardableResult
    mutating func add(_ token: Token, messageID: String?) -> UInt64 {
        let sequence = nextSequence
        nextSequence += 1
        order.append(sequence)
        tokens[sequence] = token
        if let messageID { sequenceByMessageID[messageID] = sequence }
        return sequence
    }

    /// A `basic.return` for the publish carrying `messageID`.
    mutating func markReturned(messageID: String?) {
        guard let messageID, let sequence = sequenceByMessageID[messageID] else { return }
        returned.insert(sequence)
    }

    mutating func ack(_ tag: UInt64, multiple: Bool) -> [(Token, Outcome)] {
        let returned = self.returned
        return settle(tag, multiple: multiple) { returned.contains($0) ? .unroutable : .confirmed }
    }

    mutating func nack(_ tag: UInt64, multiple: Bool) -> [(Token, Outcome)] {
        settle(tag, multiple: multiple) { _ in .nacked }
    }

    /// The channel or connection went away: every outstanding publish is in doubt.
    mutating func reset() -> [Token] {
        let remaining = order[head...].compactMap { tokens[$0] }
        self = ConfirmTracker()
        return remaining
    }

    private mutating func settle(_ tag: UInt64, multiple: Bool, outcome: (UInt64) -> Outcome) -> [(Token, Outcome)] {
        var settled: [(Token, Outcome)] = []
        if multiple {
            while head < order.count, order[head] <= tag {
                let sequence = order[head]
                head += 1
                if let token = tokens.removeValue(forKey: sequence) {
                    settled.append((token, outcome(sequence)))
                }
                returned.remove(sequence)
            }
        } else if let token = tokens.removeValue(forKey: tag) {
            settled.append((token, outcome(tag)))
            returned.remove(tag)
        }
        // Skip over singly-acked entries at the front, and compact now and then.
        while head < order.count, tokens[order[head]] == nil { head += 1 }
        if head > 1024, head * 2 > order.count {
            order.removeFirst(head)
            head = 0
        }
        if tokens.isEmpty { sequenceByMessageID.removeAll(keepingCapacity: true) }
        return settled
    }
}
