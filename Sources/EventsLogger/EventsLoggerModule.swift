// EventsLogger: per-node event fan-out, log routing by level, and the event journal.
