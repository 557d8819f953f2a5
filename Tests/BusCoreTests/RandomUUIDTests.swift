import Foundation
import Testing

@testable import BusCore

@Suite("Random UUIDs")
struct RandomUUIDTests {
    @Test("version 4, RFC 4122 variant, lowercase, and Foundation reads them")
    func form() throws {
        var seen = Set<String>()
        for _ in 0..<1_000 {
            let text = RandomUUID.make()
            let uuid = try #require(UUID(uuidString: text))
            #expect(uuid.uuidString.lowercased() == text)
            #expect(uuid.uuid.6 >> 4 == 4)
            #expect(uuid.uuid.8 >> 6 == 0b10)
            seen.insert(text)
        }
        #expect(seen.count == 1_000)
    }

    @Test("version 7: RFC 9562 variant, the time in milliseconds first, so that later ids sort after earlier ones")
    func timeOrdered() async throws {
        let before = UInt64(Date().timeIntervalSince1970 * 1000)
        let first = RandomUUID.timeOrdered()
        try await Task.sleep(for: .milliseconds(3))
        var seen = Set<String>()
        for _ in 0..<1_000 {
            let text = RandomUUID.timeOrdered()
            let uuid = try #require(UUID(uuidString: text))
            #expect(uuid.uuidString.lowercased() == text)
            #expect(uuid.uuid.6 >> 4 == 7)
            #expect(uuid.uuid.8 >> 6 == 0b10)
            #expect(text > first, "made at least 3 ms later")
            seen.insert(text)
        }
        #expect(seen.count == 1_000)
        let milliseconds = try #require(UInt64(first.replacingOccurrences(of: "-", with: "").prefix(12), radix: 16))
        let after = UInt64(Date().timeIntervalSince1970 * 1000)
        #expect(milliseconds >= before && milliseconds <= after)
    }
}
