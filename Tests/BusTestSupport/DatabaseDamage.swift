/// SQL that rebuilds `table` with the same rows but none of its constraints (NOT NULL, keys), as
/// another program or a hand edit might leave it, so that a test can then store a NULL where
/// the schema rules it out.
public func sqlRebuildingWithoutConstraints(_ table: String) -> String {
    "CREATE TABLE loose AS SELECT * FROM \(table); DROP TABLE \(table); ALTER TABLE loose RENAME TO \(table);"
}
