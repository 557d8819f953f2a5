import Foundation
import Testing

@testable import BusCore

/// `JSONWriter` and `JSONParser` against Foundation's coders, which stay the reference.
@Suite("JSON without Foundation's coders")
struct DirectJSONTests {
    static let values: [JSONValue] = [
        .null, true, false, 0, 3, -17, 1e15, -1e15, 1.5, 0.1, -2.25, 1e-7, 1e300, 123_456_789_012_345_678, 4_503_599_627_370_497,
        "", "plain", "quote \" and backslash \\ and slash /", "controls \n \r \t \u{8} \u{c} \u{1} \u{1f}", "é ü 中文 😀 \u{10FFFF}",
        [], [1, "two", [3], ["four": 4]], [:],
        ["graphId": "g1", "nested": ["deeper": ["deepest": [true, .null, 2.5]]], "empty": [:], "list": []],
    ]

    @Test("what the writer writes, Foundation reads back the same", arguments: values)
    func writerMatchesFoundation(value: JSONValue) throws {
        var writer = JSONWriter()
        try writer.value(value)
        #expect(try JSONDecoder().decode(JSONValue.self, from: Data(writer.bytes)) == value)
    }

    @Test("what Foundation writes, the parser reads back the same", arguments: values)
    func parserMatchesFoundation(value: JSONValue) throws {
        #expect(JSONParser.parse(Array(try JSONEncoder().encode(value))) == value)
    }

    @Test("whole numbers go out without a fraction, as JSONValue's Encodable writes them")
    func wholeNumbers() throws {
        var writer = JSONWriter()
        try writer.value([3, -17, 0, 2.5])
        #expect(String(decoding: writer.bytes, as: UTF8.self) == "[3,-17,0,2.5]")
    }

    @Test("escapes, surrogate pairs and whitespace are read as Foundation reads them")
    func escapes() throws {
        let text = #" { "a" : "\u00e9\ud83d\ude00\/\"\\\n\t" , "b" : [ 1 , -0.5e1 , 2E+2 ] } "#
        let parsed = try #require(JSONParser.parse(Array(text.utf8)))
        #expect(parsed == (try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))))
        #expect(parsed["a"] == .string("é😀/\"\\\n\t"))
    }

    @Test(
        "what the parser does not take for certain it leaves to Foundation",
        arguments: [
            "", " ", "{", "[1,]", "{\"a\":1,}", "01", "1.", "-", ".5", "1e", "tru", "nul", "\"open", "\"\\x\"", "\"\\ud800\"",
            "\"\\udc00\"", "\"\\ud800\\u0041\"", "\"tab\tinside\"", "{\"a\":1}x", "{\"a\":1,\"a\":2}", "1e400", "NaN", "[1 2]",
            "{1:2}", "{\"a\" 1}", String(repeating: "[", count: 300) + String(repeating: "]", count: 300),
        ])
    func declines(text: String) {
        #expect(JSONParser.parse(Array(text.utf8)) == nil)
    }

    @Test("bytes that are not UTF-8 are declined")
    func invalidUTF8() {
        #expect(JSONParser.parse([UInt8(ascii: "\""), 0xFF, 0xFE, UInt8(ascii: "\"")]) == nil)
        #expect(JSONParser.parse([UInt8(ascii: "\""), 0xC3, UInt8(ascii: "\"")]) == nil)
    }

    @Test("a number JSON cannot hold is refused by the writer, and WireFormat says so as JSONEncoder does")
    func unrepresentable() throws {
        var writer = JSONWriter()
        #expect(throws: JSONWriter.Unrepresentable.self) { try writer.value([.number(.nan)]) }
        let error = #expect(throws: BusError.self) { try WireFormat.encode(Probe(value: .number(.infinity))) }
        #expect(error?.code == .encoding)
    }

    @Test("WireFormat takes the direct way when it can, and Foundation's otherwise")
    func wireFormatPaths() throws {
        let probe = Probe(value: ["a": [1, "b"]])
        #expect(try WireFormat.decode(Probe.self, from: WireFormat.encode(probe)) == probe)
        // Declined by the direct reader (a duplicate key), decided by JSONDecoder.
        let duplicate = Array(#"{"value":1,"value":2}"#.utf8)
        #expect(JSONParser.parse(duplicate) == nil)
        #expect(try WireFormat.decode(Probe.self, from: duplicate) == (try JSONDecoder().decode(Probe.self, from: Data(duplicate))))
        // Refused by both: the error is Foundation's.
        let error = #expect(throws: BusError.self) { try WireFormat.decode(Probe.self, from: Array(#"{"other":1}"#.utf8)) }
        #expect(error?.code == .decoding)
        #expect(error?.message.contains("missing key 'value'") == true)
    }

    @Test("a reply whose value is written and read directly is boxed and unboxed directly, as Foundation does it")
    func directReplies() throws {
        let probe = Probe(value: ["a": [1, "b"]])
        #expect(ResultEnvelope(value: probe) as Any is any DirectJSONEncodable)
        let (body, hasValue) = try WireFormat.encodeResult(probe)
        #expect(hasValue)
        #expect(
            try JSONDecoder().decode(JSONValue.self, from: Data(body))
                == (try JSONDecoder().decode(JSONValue.self, from: JSONEncoder().encode(ResultEnvelope(value: probe)))))
        #expect(ResultValue<Probe>(json: try #require(JSONParser.parse(body)))?.value == probe)
        #expect(try WireFormat.decodeReply(Probe.self, messageType: nil, body: body) == probe)
        // No value: declined by the direct reader, refused by Foundation's with its reason.
        #expect(ResultValue<Probe>(json: ["other": 1]) == nil)
        let error = #expect(throws: BusError.self) { try WireFormat.decodeReply(Probe.self, messageType: nil, body: Array("{}".utf8)) }
        #expect(error?.message.contains("value") == true)
    }

    @Test("JSONMembers reads optionals as synthesized Decodable does: missing or null is nil, another kind is a mismatch")
    func members() throws {
        let members = try JSONMembers(["s": "x", "n": .null, "i": 5, "f": 5.5, "o": ["k": "v"]])
        #expect(try members.optionalString("missing") == nil)
        #expect(try members.optionalString("n") == nil)
        #expect(throws: JSONMembers.Mismatch.self) { try members.optionalString("i") }
        #expect(try members.int("i") == 5)
        #expect(throws: JSONMembers.Mismatch.self) { try members.int("f") }
        #expect(throws: JSONMembers.Mismatch.self) { try members.string("missing") }
        #expect(try members.strings("o") == ["k": "v"])
        #expect(throws: JSONMembers.Mismatch.self) { try JSONMembers([1]) }
    }
}

/// A message with both ways.
private struct Probe: Codable, Equatable, DirectJSONEncodable, DirectJSONDecodable {
    var value: JSONValue

    func writeJSON(into writer: inout JSONWriter) throws(JSONWriter.Unrepresentable) {
        writer.beginObject()
        try writer.member("value", value)
        writer.endObject()
    }

    init(value: JSONValue) {
        self.value = value
    }

    init?(json: JSONValue) {
        guard let value = json["value"] else { return nil }
        self.value = value
    }
}
