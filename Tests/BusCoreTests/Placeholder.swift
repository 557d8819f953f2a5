import Testing
@testable import BusCore
@Test func placeholder() { #expect(TopicPattern("a.#").matches("a.b.c")) }
