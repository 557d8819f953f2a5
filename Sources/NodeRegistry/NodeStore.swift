import BusCore
import Foundation
import GRDB
import NodeProtocol
import StoreSupport

/// Nodes, their MACs and catalogs, and SKU definitions in SQLite (GRDB).
///
/// Every call runs on GRDB's own serial queue; callers suspend, they never block the cooperative
/// pool. Because writes are serialized there, a registration's "find, else create" is atomic:
/// concurrent registrations of one MAC create one node.
final class NodeStore: Sendable {
    private let database: DatabaseQueue
    /// The file, for errors about its contents: a NULL or wrongly typed column throws a
    /// ``DamagedDatabaseError`` naming it.
    private let path: String

    private init(database: DatabaseQueue, path: String) {
        self.database = database
        self.path = path
    }

    /// Opens (creating if needed) the store at `path`; `:memory:` gives a private in-memory store.
    static func open(path: String) async throws -> NodeStore {
        NodeStore(database: try await DatabaseQueue.open(path: path, migrator: migrator), path: path)
    }

    private static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: nodes, identifiers, catalogs, skus") { db in
            try db.create(table: "node") { table in
                table.primaryKey("id", .text)
                table.column("name", .text).notNull()
                table.column("type", .text).notNull()
                table.column("bootSettings", .blob)
                table.column("sku", .text)
                table.column("createdAt", .integer).notNull()
                table.column("updatedAt", .integer).notNull()
            }
            // The primary key is the unique MAC index: a MAC belongs to one node at most.
            try db.create(table: "identifier") { table in
                table.primaryKey("mac", .text)
                table.column("nodeId", .text).notNull().indexed().references("node", onDelete: .cascade)
            }
            try db.create(table: "catalog") { table in
                table.column("nodeId", .text).notNull().references("node", onDelete: .cascade)
                table.column("source", .text).notNull()
                table.column("data", .blob).notNull()
                table.column("createdAt", .integer).notNull()
                table.primaryKey(["nodeId", "source"])
            }
            try db.create(table: "sku") { table in
                table.primaryKey("name", .text)
                table.column("rules", .blob).notNull()
                table.column("updatedAt", .integer).notNull()
            }
        }
        return migrator
    }

    // MARK: Nodes

    /// The node that has any of `macs` (normalized), with the ones it lacked added; else a new
    /// node named after the first MAC. Throws a 409 when the MACs belong to different nodes.
    func register(macs: [String], name: String?, type: String?, now: Int64) async throws -> (node: Node, created: Bool) {
        try await database.write { db in
            let owners = try String.fetchAll(
                db, sql: "SELECT DISTINCT nodeId FROM identifier WHERE mac IN (\(Self.placeholders(macs.count)))",
                arguments: StatementArguments(macs))
            let nodeId: String
            let created: Bool
            switch owners.count {
            case 0:
                // Normalized MACs always give an id.
                nodeId = NodeIdentity.nodeId(forMAC: macs[0]) ?? macs[0]
                if try Self.nodeExists(db, id: nodeId) {
                    throw ErrorEvent.conflict(
                        "Node \(nodeId) exists but does not have \(macs[0]).",
                        context: ["nodeId": .string(nodeId), "mac": .string(macs[0])])
                }
                try db.execute(
                    sql: "INSERT INTO node (id, name, type, createdAt, updatedAt) VALUES (?, ?, ?, ?, ?)",
                    arguments: [nodeId, name ?? macs[0], type ?? "compute", now, now])
                created = true
            case 1:
                nodeId = owners[0]
                created = false
            default:
                throw ErrorEvent.conflict(
                    "These MACs belong to different nodes (\(owners.sorted().joined(separator: ", "))).",
                    context: ["nodes": .array(owners.sorted().map { .string($0) })])
            }
            var added = 0
            for mac in macs {
                try db.execute(sql: "INSERT OR IGNORE INTO identifier (mac, nodeId) VALUES (?, ?)", arguments: [mac, nodeId])
                added += db.changesCount
            }
            if !created, added > 0 {
                try db.execute(sql: "UPDATE node SET updatedAt = ? WHERE id = ?", arguments: [now, nodeId])
            }
            guard let node = try Self.fetchNode(db, id: nodeId, in: self.path) else {
                throw ErrorEvent.internalError("Node \(nodeId) vanished while it was registered.")
            }
            return (node, created)
        }
    }

    /// The node with this id, else the node that has this MAC.
    func node(idOrMAC value: String) async throws -> Node? {
        let path = self.path
        return try await database.read { db in try Self.fetchNode(db, idOrMAC: value, in: path) }
    }

    /// The node with this id, else the node that has this MAC (any spelling).
    private static func fetchNode(_ db: Database, idOrMAC value: String, in path: String) throws -> Node? {
        if let node = try fetchNode(db, id: value, in: path) { return node }
        guard let mac = NodeIdentity.normalizedMAC(value),
            let row = try Row.fetchOne(db, sql: "SELECT nodeId FROM identifier WHERE mac = ?", arguments: [mac])
        else { return nil }
        return try fetchNode(db, id: try row.decode(String.self, "nodeId", in: path), in: path)
    }

    /// Removes the node with this id, else the node that has this MAC, with its MACs and
    /// catalogs; returns it, or nil when there is none.
    func remove(idOrMAC value: String) async throws -> Node? {
        let path = self.path
        return try await database.write { db in
            guard let node = try Self.fetchNode(db, idOrMAC: value, in: path) else { return nil }
            // Identifiers and catalogs go with it (ON DELETE CASCADE).
            try db.execute(sql: "DELETE FROM node WHERE id = ?", arguments: [node.id])
            return node
        }
    }

    /// Every node, oldest first.
    func nodes() async throws -> [Node] {
        let path = self.path
        return try await database.read { db in
            var identifiers: [String: [String]] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT mac, nodeId FROM identifier ORDER BY rowid") {
                let nodeId = try row.decode(String.self, "nodeId", in: path)
                identifiers[nodeId, default: []].append(try row.decode(String.self, "mac", in: path))
            }
            var catalogs: [String: [Catalog]] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT nodeId, source, data, createdAt FROM catalog ORDER BY rowid") {
                if let catalog = try Self.catalog(row, in: path) {
                    catalogs[try row.decode(String.self, "nodeId", in: path), default: []].append(catalog)
                }
            }
            return try Row.fetchAll(db, sql: "SELECT * FROM node ORDER BY createdAt, rowid").map { row in
                let id = try row.decode(String.self, "id", in: path)
                return try Self.node(row, identifiers: identifiers[id] ?? [], catalogs: catalogs[id] ?? [], in: path)
            }
        }
    }

    /// Replaces a node's boot settings; nil when there is no such node.
    func setBootSettings(nodeId: String, _ settings: BootSettings?, now: Int64) async throws -> Node? {
        let encoded = try settings.map { try JSONEncoder().encode($0) }
        return try await database.write { db in
            try db.execute(
                sql: "UPDATE node SET bootSettings = ?, updatedAt = ? WHERE id = ?", arguments: [encoded, now, nodeId])
            guard db.changesCount > 0 else { return nil }
            return try Self.fetchNode(db, id: nodeId, in: self.path)
        }
    }

    /// Stores a catalog, replacing the node's previous one from the same source (which keeps its
    /// place in the node's list); false when there is no such node.
    func addCatalog(nodeId: String, _ catalog: Catalog) async throws -> Bool {
        let data = try JSONEncoder().encode(catalog.data)
        return try await database.write { db in
            guard try Self.nodeExists(db, id: nodeId) else { return false }
            try db.execute(
                sql: """
                    INSERT INTO catalog (nodeId, source, data, createdAt) VALUES (?, ?, ?, ?)
                    ON CONFLICT(nodeId, source) DO UPDATE SET data = excluded.data, createdAt = excluded.createdAt
                    """,
                arguments: [nodeId, catalog.source, data, catalog.createdAt])
            try db.execute(sql: "UPDATE node SET updatedAt = ? WHERE id = ?", arguments: [catalog.createdAt, nodeId])
            return true
        }
    }

    // MARK: SKUs

    /// Creates or replaces the SKU named `definition.name`.
    func defineSKU(_ definition: SKUDefinition, now: Int64) async throws {
        let rules = try JSONEncoder().encode(definition.rules)
        try await database.write { db in
            try db.execute(
                sql: "INSERT OR REPLACE INTO sku (name, rules, updatedAt) VALUES (?, ?, ?)", arguments: [definition.name, rules, now])
        }
    }

    /// Every SKU definition, by name.
    func skus() async throws -> [SKUDefinition] {
        let path = self.path
        return try await database.read { db in try Self.fetchSKUs(db, in: path) }
    }

    /// Matches the SKUs against the node's catalogs and stores the result on the node (nil
    /// clears it). Returns the outcome, or nil when there is no such node.
    func assignSKU(nodeId: String, now: Int64) async throws -> AssignSKU.Assigned? {
        try await database.write { db in
            guard let node = try Self.fetchNode(db, id: nodeId, in: self.path) else { return nil }
            let sku = SKUMatcher.bestMatch(try Self.fetchSKUs(db, in: self.path), catalogs: node.catalogs)?.name
            try db.execute(sql: "UPDATE node SET sku = ?, updatedAt = ? WHERE id = ?", arguments: [sku, now, nodeId])
            return AssignSKU.Assigned(sku: sku)
        }
    }

    // MARK: Rows

    private static func placeholders(_ count: Int) -> String {
        Array(repeating: "?", count: count).joined(separator: ", ")
    }

    private static func nodeExists(_ db: Database, id: String) throws -> Bool {
        try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM node WHERE id = ?)", arguments: [id]) ?? false
    }

    private static func fetchNode(_ db: Database, id: String, in path: String) throws -> Node? {
        guard let row = try Row.fetchOne(db, sql: "SELECT * FROM node WHERE id = ?", arguments: [id]) else { return nil }
        let identifiers = try Row.fetchAll(db, sql: "SELECT mac FROM identifier WHERE nodeId = ? ORDER BY rowid", arguments: [id]).map {
            try $0.decode(String.self, "mac", in: path)
        }
        let catalogs = try Row.fetchAll(
            db, sql: "SELECT source, data, createdAt FROM catalog WHERE nodeId = ? ORDER BY rowid", arguments: [id]
        ).compactMap { try catalog($0, in: path) }
        return try node(row, identifiers: identifiers, catalogs: catalogs, in: path)
    }

    private static func node(_ row: Row, identifiers: [String], catalogs: [Catalog], in path: String) throws -> Node {
        // Settings this version cannot parse count as none rather than hiding the node.
        let settings = try row.decode(Data?.self, "bootSettings", in: path).flatMap {
            try? JSONDecoder().decode(BootSettings.self, from: $0)
        }
        return Node(
            id: try row.decode(String.self, "id", in: path), identifiers: identifiers, type: try row.decode(String.self, "type", in: path),
            name: try row.decode(String.self, "name", in: path), bootSettings: settings, catalogs: catalogs,
            sku: try row.decode(String?.self, "sku", in: path), createdAt: try row.decode(Int64.self, "createdAt", in: path),
            updatedAt: try row.decode(Int64.self, "updatedAt", in: path))
    }

    /// A catalog, or nil when its data is not JSON (skipped, as unparsable settings are).
    private static func catalog(_ row: Row, in path: String) throws -> Catalog? {
        let body = try row.decode(Data.self, "data", in: path)
        guard let data = try? JSONDecoder().decode(JSONValue.self, from: body) else { return nil }
        return Catalog(
            source: try row.decode(String.self, "source", in: path), data: data,
            createdAt: try row.decode(Int64.self, "createdAt", in: path))
    }

    private static func fetchSKUs(_ db: Database, in path: String) throws -> [SKUDefinition] {
        try Row.fetchAll(db, sql: "SELECT name, rules FROM sku ORDER BY name").compactMap { row in
            let body = try row.decode(Data.self, "rules", in: path)
            guard let rules = try? JSONDecoder().decode([SKURule].self, from: body) else { return nil }
            return SKUDefinition(name: try row.decode(String.self, "name", in: path), rules: rules)
        }
    }
}
