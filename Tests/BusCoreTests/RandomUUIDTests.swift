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
}
