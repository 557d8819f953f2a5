import BusCore
import Foundation
import NodeProtocol

/// What the registry accepts from the wire. Pure functions; each error is the 400 reply that
/// names the problem.
public enum NodeValidation {
    /// The MACs in lowercase colon form, in order, without repeats.
    public static func normalizedMACs(_ macs: [String]) throws(ErrorEvent) -> [String] {
        guard !macs.isEmpty else {
            throw .badRequest("A node needs at least one MAC address.", context: ["macs": .array([])])
        }
        var normalized: [String] = []
        for mac in macs {
            guard let value = NodeIdentity.normalizedMAC(mac) else {
                throw .badRequest(
                    "Invalid MAC address '\(mac)': expected six bytes of hex such as 52:54:00:12:34:56.", context: ["value": .string(mac)])
            }
            if !normalized.contains(value) { normalized.append(value) }
        }
        return normalized
    }

    /// A profile must be a plain file name: templates are looked up by it, so it must not reach
    /// outside their directory.
    public static func validate(_ settings: BootSettings?) throws(ErrorEvent) {
        guard let profile = settings?.profile else { return }
        let isPlainFileName =
            !profile.isEmpty && profile.utf8.count <= 255 && !profile.contains("/") && !profile.contains("\\")
            && !profile.contains("..") && !profile.unicodeScalars.contains { $0.properties.generalCategory == .control }
        guard isPlainFileName else {
            throw .badRequest(
                "Invalid boot profile '\(profile)': use a plain file name such as install-debian.ipxe (no '/' or '..').",
                context: ["profile": .string(profile)])
        }
    }

    /// A catalog source is one word of letters, digits, `_`, `.` and `-` (`smbios`, `dmi`, `ohai`).
    public static func validateCatalogSource(_ source: String) throws(ErrorEvent) {
        let allowed = source.unicodeScalars.allSatisfy { scalar in
            scalar.isASCII && (CharacterSet.alphanumerics.contains(scalar) || "_.-".unicodeScalars.contains(scalar))
        }
        guard !source.isEmpty, source.count <= 128, allowed else {
            throw .badRequest(
                "Invalid catalog source '\(source)': use one word of letters, digits, '_', '.' or '-', such as smbios.",
                context: ["source": .string(source)])
        }
    }

    /// A SKU needs a name and at least one rule; each rule a path and exactly one of `equals`,
    /// `contains` and `matches`, whose pattern must compile.
    public static func validate(_ sku: SKUDefinition) throws(ErrorEvent) {
        guard !sku.name.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw .badRequest("Invalid SKU: the name is empty.")
        }
        guard !sku.rules.isEmpty else {
            throw .badRequest("Invalid SKU '\(sku.name)': it needs at least one rule.", context: ["sku": .string(sku.name)])
        }
        for (index, rule) in sku.rules.enumerated() {
            let which = "Invalid SKU '\(sku.name)': rule \(index + 1)"
            let context: JSONValue = ["sku": .string(sku.name), "rule": .number(Double(index + 1))]
            guard !rule.path.isEmpty else { throw .badRequest("\(which) has no path.", context: context) }
            let tests = [rule.equals != nil, rule.contains != nil, rule.matches != nil].filter { $0 }.count
            guard tests == 1 else {
                throw .badRequest(
                    "\(which) (\(rule.path)) must have exactly one of equals, contains and matches, not \(tests).", context: context)
            }
            if let pattern = rule.matches {
                do {
                    _ = try NSRegularExpression(pattern: pattern)
                } catch {
                    throw .badRequest("\(which) (\(rule.path)): '\(pattern)' is not a regular expression.", context: context)
                }
            }
        }
    }
}
