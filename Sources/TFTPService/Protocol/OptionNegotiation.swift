/// RFC 2347 option negotiation for a read request, as a pure function.
///
/// How invalid values are answered: RFC 2347 lets a server leave out of its OACK any option it
/// does not accept, and the transfer then runs with that option's default. RackBus does that for
/// every unknown option and every out-of-range value (`blksize` below 8, `windowsize` 0,
/// `timeout` outside 1–255, a non-numeric value), as tftpd-hpa does, instead of refusing the whole
/// request with error 8: a client that asked for something odd still boots. Values above what the
/// server takes are lowered, which RFC 2348 (blksize) and RFC 7440 (windowsize) allow: `blksize`
/// to 65464, `windowsize` to the configured maximum. `timeout` is echoed unchanged or left out
/// (RFC 2349 does not let the server change it). `tsize` is answered with the size to be sent.
/// The server never sends error 8 itself; a client that sends error 8 after the OACK ends the
/// transfer.
public enum OptionNegotiation {
    public static let defaultBlockSize = 512
    public static let minimumBlockSize = 8
    public static let maximumBlockSize = 65464
    public static let maximumWindowSize = 64

    public struct Result: Sendable, Equatable {
        public var blockSize = OptionNegotiation.defaultBlockSize
        public var windowSize = 1
        /// The client's `timeout` in seconds, when it asked for a valid one.
        public var timeoutSeconds: Int?
        /// What goes into the OACK, in the client's order; empty means no OACK (data starts at once).
        public var acknowledged: [TFTPOption] = []

        public init() {}
    }

    /// - Parameters:
    ///   - requested: the request's options.
    ///   - transferSize: the bytes that will be sent (for `tsize`); nil leaves `tsize` out.
    ///   - maximumWindowSize: the server's cap on `windowsize` (1–64).
    public static func negotiate(_ requested: [TFTPOption], transferSize: Int?, maximumWindowSize: Int) -> Result {
        var result = Result()
        var seen = Set<String>()
        for option in requested {
            let name = option.name.lowercased()
            // The first occurrence counts; repeats are ignored.
            guard seen.insert(name).inserted else { continue }
            let number = Int(option.value.trimmingASCIISpaces)
            switch name {
            case "blksize":
                guard let number, number >= minimumBlockSize else { continue }
                result.blockSize = min(number, maximumBlockSize)
                result.acknowledged.append(TFTPOption(option.name, String(result.blockSize)))
            case "windowsize":
                guard let number, number >= 1 else { continue }
                result.windowSize = min(number, max(1, min(maximumWindowSize, Self.maximumWindowSize)))
                result.acknowledged.append(TFTPOption(option.name, String(result.windowSize)))
            case "timeout":
                guard let number, (1...255).contains(number) else { continue }
                result.timeoutSeconds = number
                result.acknowledged.append(TFTPOption(option.name, String(number)))
            case "tsize":
                // A read request carries tsize 0; any numeric value asks for the size.
                guard number != nil, let transferSize else { continue }
                result.acknowledged.append(TFTPOption(option.name, String(transferSize)))
            default:
                continue
            }
        }
        return result
    }
}

extension String {
    fileprivate var trimmingASCIISpaces: Substring {
        var text = Substring(self)
        while text.first == " " { text.removeFirst() }
        while text.last == " " { text.removeLast() }
        return text
    }
}
