import Testing
@testable import BusCore
@Test func placeholder2() { #expect(true) }
