import BusCore

/// An echo RPC the tests serve and call.
struct Echo: BusRequest {
    typealias Reply = EchoReply
    static let exchange = Exchange.dhcp
    static let method = "methods.echo"
    static let payloadType = "EchoRequest"
    var text: String
    var number: Int
}

struct EchoReply: Codable, Sendable, Equatable {
    var text: String
    var number: Int
    var servedBy: String
}

/// A method whose handler always fails with a chosen ErrorEvent.
struct Fails: BusRequest {
    typealias Reply = String
    static let exchange = Exchange.dhcp
    static let method = "methods.fails"
    var status: Int
}

/// A method whose handler sleeps, to provoke timeouts.
struct Sleeps: BusRequest {
    typealias Reply = String
    static let exchange = Exchange.dhcp
    static let method = "methods.sleeps"
    var milliseconds: Int
}

/// A method that returns nothing (RackHD's `undefined`).
struct Nothing: BusRequest {
    typealias Reply = String?
    static let exchange = Exchange.dhcp
    static let method = "methods.nothing"
}

struct NodeEvent: Codable, Sendable, Equatable {
    var nodeId: String
    var sequence: Int
}
