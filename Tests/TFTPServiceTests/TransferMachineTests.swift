import Testing

@testable import TFTPService

@Suite("The transfer state machine (pure)")
struct TransferMachineTests {
    @Test("block count: a short last block, and an empty one when the size is a multiple of blksize")
    func blockCount() {
        #expect(TransferMachine(size: 0, blockSize: 512, windowSize: 1, retryLimit: 5, optionAcknowledgement: false).totalBlocks == 1)
        #expect(TransferMachine(size: 511, blockSize: 512, windowSize: 1, retryLimit: 5, optionAcknowledgement: false).totalBlocks == 1)
        #expect(TransferMachine(size: 512, blockSize: 512, windowSize: 1, retryLimit: 5, optionAcknowledgement: false).totalBlocks == 2)
        #expect(TransferMachine(size: 1025, blockSize: 512, windowSize: 1, retryLimit: 5, optionAcknowledgement: false).totalBlocks == 3)
    }

    @Test("lock-step: each ACK sends the next block; the last ACK finishes")
    func lockStep() {
        var machine = TransferMachine(size: 1024, blockSize: 512, windowSize: 1, retryLimit: 5, optionAcknowledgement: false)
        #expect(machine.handle(.start) == [.sendBlocks(1...1, retransmitted: 0)])
        #expect(machine.handle(.acknowledgement(block: 1)) == [.sendBlocks(2...2, retransmitted: 0)])
        #expect(machine.handle(.acknowledgement(block: 2)) == [.sendBlocks(3...3, retransmitted: 0)])
        #expect(machine.handle(.acknowledgement(block: 3)) == [.finish])
        #expect(machine.isFinished)
        #expect(machine.handle(.acknowledgement(block: 3)) == [])
    }

    @Test("an OACK goes first and data waits for ACK 0; a stray ACK does not start it")
    func optionAcknowledgement() {
        var machine = TransferMachine(size: 100, blockSize: 512, windowSize: 1, retryLimit: 5, optionAcknowledgement: true)
        #expect(machine.handle(.start) == [.sendOptionAcknowledgement])
        #expect(machine.handle(.acknowledgement(block: 1)) == [])
        #expect(machine.handle(.timeout) == [.sendOptionAcknowledgement])
        #expect(machine.handle(.acknowledgement(block: 0)) == [.sendBlocks(1...1, retransmitted: 0)])
        #expect(machine.handle(.acknowledgement(block: 1)) == [.finish])
    }

    @Test("windows: a whole window's ACK sends the next; a partial ACK resends from the block after it")
    func windows() {
        var machine = TransferMachine(size: 512 * 20, blockSize: 512, windowSize: 8, retryLimit: 5, optionAcknowledgement: false)
        #expect(machine.handle(.start) == [.sendBlocks(1...8, retransmitted: 0)])
        #expect(machine.handle(.acknowledgement(block: 8)) == [.sendBlocks(9...16, retransmitted: 0)])
        // Blocks 12–16 were lost: the client acknowledges 11.
        #expect(machine.handle(.acknowledgement(block: 11)) == [.sendBlocks(12...19, retransmitted: 5)])
        #expect(machine.handle(.acknowledgement(block: 19)) == [.sendBlocks(20...21, retransmitted: 0)])
        #expect(machine.handle(.acknowledgement(block: 21)) == [.finish])
    }

    @Test("duplicate and stale ACKs send nothing (no Sorcerer's Apprentice)")
    func duplicates() {
        var machine = TransferMachine(size: 512 * 10, blockSize: 512, windowSize: 1, retryLimit: 5, optionAcknowledgement: false)
        _ = machine.handle(.start)
        #expect(machine.handle(.acknowledgement(block: 1)) == [.sendBlocks(2...2, retransmitted: 0)])
        #expect(machine.handle(.acknowledgement(block: 1)) == [])
        #expect(machine.handle(.acknowledgement(block: 0)) == [])
        // An ACK of a block not sent yet is ignored too.
        #expect(machine.handle(.acknowledgement(block: 5)) == [])
        #expect(machine.handle(.acknowledgement(block: 2)) == [.sendBlocks(3...3, retransmitted: 0)])
    }

    @Test("timeouts resend the unacknowledged window, up to the retry limit, then fail")
    func timeouts() {
        var machine = TransferMachine(size: 512 * 10, blockSize: 512, windowSize: 4, retryLimit: 2, optionAcknowledgement: false)
        _ = machine.handle(.start)
        #expect(machine.handle(.acknowledgement(block: 2)) == [.sendBlocks(3...6, retransmitted: 2)])
        #expect(machine.handle(.timeout) == [.sendBlocks(3...6, retransmitted: 4)])
        #expect(machine.handle(.timeout) == [.sendBlocks(3...6, retransmitted: 4)])
        #expect(machine.handle(.timeout) == [.fail(.timedOut(retries: 2))])
        #expect(machine.handle(.acknowledgement(block: 6)) == [])
    }

    @Test("progress restores the retries")
    func retriesReset() {
        var machine = TransferMachine(size: 512 * 10, blockSize: 512, windowSize: 1, retryLimit: 1, optionAcknowledgement: false)
        _ = machine.handle(.start)
        #expect(machine.handle(.timeout) == [.sendBlocks(1...1, retransmitted: 1)])
        #expect(machine.handle(.acknowledgement(block: 1)) == [.sendBlocks(2...2, retransmitted: 0)])
        #expect(machine.handle(.timeout) == [.sendBlocks(2...2, retransmitted: 1)])
    }

    @Test("an error from the client ends the transfer")
    func clientError() {
        var machine = TransferMachine(size: 100, blockSize: 512, windowSize: 1, retryLimit: 5, optionAcknowledgement: true)
        _ = machine.handle(.start)
        #expect(machine.handle(.clientError(code: 8, message: "no")) == [.fail(.clientError(code: 8, message: "no"))])
        #expect(machine.handle(.timeout) == [])
    }

    @Test("block numbers wrap past 65535 to 0, and ACKs across the wrap are understood")
    func wrapAround() {
        var machine = TransferMachine(size: 512 * 70_000, blockSize: 512, windowSize: 4, retryLimit: 5, optionAcknowledgement: false)
        var actions = machine.handle(.start)
        var sentWire: [UInt16] = []
        while case .sendBlocks(let blocks, _) = actions.first {
            sentWire += blocks.map(TransferMachine.wireBlock)
            actions = machine.handle(.acknowledgement(block: TransferMachine.wireBlock(blocks.upperBound)))
        }
        #expect(actions == [.finish])
        #expect(sentWire.count == 70_001)
        #expect(sentWire[65_534] == 65_535)
        #expect(sentWire[65_535] == 0)
        #expect(sentWire[65_536] == 1)
        #expect(machine.acknowledged == 70_001)
    }
}
