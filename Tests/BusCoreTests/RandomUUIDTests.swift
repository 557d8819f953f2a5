import Foundation
import Testing

@testable import BusCore

@Suite("Random UUIDs")
struct RandomUUIDTests {
    /// A thousand ids of `make`: all distinct, lowercase, of `version` and the RFC 4122 variant, and
    /// Foundation reads them.
    static func thousand(_ make: () -> String, version: UInt8) throws -> [String] {
        let ids = (0..<1_000).map { _ in make() }
        for text in ids {
            let uuid = try #require(UUID(uuidString: text))
            #expect(uuid.uuidString.lowercased() == text)
            #expect(uuid.uuid.6 >> 4 == version)
            #expect(uuid.uuid.8 >> 6 == 0b10)
        }
        #expect(Set(ids).count == ids.count)
        return ids
    }

    @Test("version 4, RFC 4122 variant, lowercase, and Foundation reads them")
    func form() throws {
        _ = try Self.thousand(RandomUUID.make, version: 4)
    }

    @Test("version 7: RFC 9562 variant, the time in milliseconds first, so that later ids sort after earlier ones")
    func timeOrdered() async throws {
        let before = UInt64(Date().timeIntervalSince1970 * 1000)
        let first = RandomUUID.timeOrdered()
        try await Task.sleep(for: .milliseconds(3))
        let later = try Self.thousand(RandomUUID.timeOrdered, version: 7)
        #expect(later.allSatisfy { $0 > first }, "made at least 3 ms later")
        let milliseconds = try #require(UInt64(first.replacingOccurrences(of: "-", with: "").prefix(12), radix: 16))
        let after = UInt64(Date().timeIntervalSince1970 * 1000)
        #expect(milliseconds >= before && milliseconds <= after)
    }

    @Test("the first version 7 UUID of a millisecond sorts after every one made before it, and before every one made then or later")
    func firstOfMillisecond() async throws {
        let earlier = RandomUUID.timeOrdered()
        try await Task.sleep(for: .milliseconds(3))
        let now = UInt64(Date().timeIntervalSince1970 * 1000)
        let first = RandomUUID.firstTimeOrdered(atMillisecond: now)
        let later = RandomUUID.timeOrdered()
        #expect(earlier < first && first <= later)
        #expect(first.hasSuffix("-7000-8000-000000000000"))
        #expect(UUID(uuidString: first) != nil)
        #expect(UInt64(first.replacingOccurrences(of: "-", with: "").prefix(12), radix: 16) == now)
    }
}
