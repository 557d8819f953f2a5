import BusCore
import HTTPService
import Testing

@Suite("Boot query strings (pure)")
struct BootQueryTests {
    @Test("MACs come comma-separated, repeated or percent-encoded as iPXE sends them, normalized and without repeats")
    func macs() throws {
        let query = try QueryParameters(
            "macs=52%3A54%3A00%3A12%3A34%3A56,52-54-00-aa-bb-cc&macs=525400ABCDEF&macs=52:54:00:12:34:56&ips=10.0.0.5")
        #expect(try query.requiredMACs() == ["52:54:00:12:34:56", "52:54:00:aa:bb:cc", "52:54:00:ab:cd:ef"])
        #expect(query.list("ips") == ["10.0.0.5"])
    }

    @Test("IPs are optional; given, each must be an address")
    func ips() throws {
        #expect(try QueryParameters("macs=52:54:00:12:34:56").optionalIPs() == [])
        #expect(try QueryParameters("ips=10.0.0.5,fe80::1&ips=10.0.0.5").optionalIPs() == ["10.0.0.5", "fe80::1"])
        #expect(throws: BootRequestError.self) { try QueryParameters("ips=10.0.0.300").optionalIPs() }
        #expect(throws: BootRequestError.self) { try QueryParameters("ips=host").optionalIPs() }
    }

    @Test("A malformed percent escape is refused, not passed on")
    func malformed() {
        #expect(throws: QueryParameters.Malformed.self) { try QueryParameters("macs=%zz") }
        #expect(throws: QueryParameters.Malformed.self) { try QueryParameters("macs=52%3") }
    }

    @Test(
        "No MAC, or one that is not a MAC, is refused with a message",
        arguments: ["", "ips=10.0.0.1", "macs=", "macs=notamac", "macs=52:54:00:12:34"])
    func invalidMACs(raw: String) throws {
        let query = try QueryParameters(raw)
        #expect(throws: BootRequestError.self) { try query.requiredMACs() }
    }

    @Test("+ is a space and a name without = has an empty value")
    func plusAndBareNames() throws {
        let query = try QueryParameters("product=Virtual+Machine&flag&serial=")
        #expect(query.first("product") == "Virtual Machine")
        #expect(query.first("flag") == nil)
        #expect(query.first("serial") == nil)
        #expect(query.pairs.count == 3)
    }

    @Test("An http.response event names the node by MAC, else nodeId, else the client's address")
    func eventSubject() {
        #expect(ResponseEventSubject.from(rawQuery: "macs=notamac,52%3A54%3A00%3A00%3A00%3A09") == .mac("52:54:00:00:00:09"))
        #expect(ResponseEventSubject.from(rawQuery: "nodeId=525400000009") == .nodeId("525400000009"))
        #expect(ResponseEventSubject.from(rawQuery: "nodeId=a.b#c") == .clientAddress, "not one routing-key word")
        #expect(ResponseEventSubject.from(rawQuery: "macs=%zz") == .clientAddress)
        #expect(ResponseEventSubject.from(rawQuery: nil) == .clientAddress)
    }
}
