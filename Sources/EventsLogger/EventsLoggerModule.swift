// EventsLogger: prints log records from `on.logging`, journals events and records from `on.events` and
// `on.logging` in SQLite, and answers `methods.queryEvents` from the journal. See EventsLoggerService.
