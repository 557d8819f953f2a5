import BusCore

/// Everything the events logger needs: where the journal lives, what it prints and where, and
/// how long it remembers.
public struct EventsLoggerConfiguration: Sendable, Equatable {
    /// SQLite file of the journal (`:memory:` keeps it in memory only).
    public var journalPath: String
    /// Log records below this level are not printed (stdout or file).
    public var minimumOutputLevel: LogSeverity
    /// Log records below this level are not journaled. Events are always journaled.
    public var minimumJournalLevel: LogSeverity
    /// Print log records on standard output.
    public var writesToStandardOutput: Bool
    /// Also print log records to a file that rotates by size.
    public var logFile: LogFileOptions?
    public var lineFormat: LogLineFormat
    /// Journal entries older than this (by their `time`) are removed.
    public var maximumAge: Duration
    /// At most this many journal entries are kept; the oldest go first (at least 1).
    public var maximumEntries: Int
    /// How often the age and count limits are enforced (also once at start).
    public var retentionInterval: Duration
    /// Lines waiting for the output thread; beyond this, lines are dropped and counted, so a
    /// slow terminal or disk never holds up the bus.
    public var outputBufferCapacity: Int

    public init(
        journalPath: String = ".rackbus/events.sqlite", minimumOutputLevel: LogSeverity = .info, minimumJournalLevel: LogSeverity = .info,
        writesToStandardOutput: Bool = true, logFile: LogFileOptions? = nil, lineFormat: LogLineFormat = .readable,
        maximumAge: Duration = .seconds(7 * 86_400), maximumEntries: Int = 1_000_000, retentionInterval: Duration = .seconds(60),
        outputBufferCapacity: Int = 10_000
    ) {
        self.journalPath = journalPath
        self.minimumOutputLevel = minimumOutputLevel
        self.minimumJournalLevel = minimumJournalLevel
        self.writesToStandardOutput = writesToStandardOutput
        self.logFile = logFile
        self.lineFormat = lineFormat
        self.maximumAge = maximumAge
        self.maximumEntries = maximumEntries
        self.retentionInterval = retentionInterval
        self.outputBufferCapacity = outputBufferCapacity
    }

    var maximumAgeMilliseconds: Int64 {
        let components = maximumAge.components
        return components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    }
}

/// A log file that rotates by size: `events.log` is written; when the next line would take it
/// past `maximumBytes` it becomes `events.log.1` (older ones shift to `.2`, `.3`, …) and a new
/// `events.log` starts. `keptFiles` counts every file, the current one included.
public struct LogFileOptions: Sendable, Equatable {
    public var path: String
    /// At least 1 KiB.
    public var maximumBytes: Int
    /// At least 1 (then the file is simply started over).
    public var keptFiles: Int

    public init(path: String, maximumBytes: Int = 10 * 1024 * 1024, keptFiles: Int = 5) {
        self.path = path
        self.maximumBytes = maximumBytes
        self.keptFiles = keptFiles
    }
}

/// How a log record is printed.
public enum LogLineFormat: String, Sendable, Equatable, CaseIterable {
    /// `2026-11-21T18:00:00.123Z warning [service/module] subject: message {context}`
    case readable
    /// The record's JSON, one per line: as sent, or re-encoded compactly when it spans lines.
    case jsonLines
}

/// The conventions' eight log levels: BusCore's ``LogLevel``, under the name this module used.
public typealias LogSeverity = LogLevel

extension LogLevel {
    /// Reads a level as producers spell it (case-insensitive, with the usual aliases). RackHD's
    /// `crit`/`critical` count as `alert`, the nearest more severe level, so filtering never hides them.
    public init?(name: String) {
        let lowercased = name.lowercased()
        if let level = LogLevel(rawValue: lowercased) {
            self = level
            return
        }
        switch lowercased {
        case "emergency", "panic": self = .emerg
        case "crit", "critical", "fatal": self = .alert
        case "err": self = .error
        case "warn": self = .warning
        case "trace", "verbose": self = .silly
        default: return nil
        }
    }

    /// Higher is more severe: `silly` is 0, `emerg` 7.
    public var rank: Int { severity }
}
