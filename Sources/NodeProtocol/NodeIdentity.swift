/// Node ids and MAC spellings. Pure functions.
public enum NodeIdentity {
    /// The word used in node-keyed routing keys for a client RackBus does not know (RackHD's).
    public static let external = "external"

    /// `52:54:00:12:34:56`, `52-54-00-12-34-56` or `525400123456` (any case) in lowercase colon
    /// form; nil when it is not six bytes of hex.
    public static func normalizedMAC(_ text: String) -> String? {
        let hex = text.lowercased().filter { $0 != ":" && $0 != "-" }
        guard hex.count == 12, hex.allSatisfy({ $0.isHexDigit }) else { return nil }
        var pairs: [String] = []
        var index = hex.startIndex
        for _ in 0..<6 {
            let next = hex.index(index, offsetBy: 2)
            pairs.append(String(hex[index..<next]))
            index = next
        }
        return pairs.joined(separator: ":")
    }

    /// The node id of a MAC: its lowercase hex without separators (`525400123456`), as
    /// DHCPService announces it. Nil when `mac` is not a MAC.
    public static func nodeId(forMAC mac: String) -> String? {
        normalizedMAC(mac).map { $0.filter { $0 != ":" } }
    }
}
