import Foundation

/// CPU time (user and system) of this process and of others, for per-message cost figures.
enum CPUTime {
    /// Seconds of CPU this process has used (getrusage).
    static var ownSeconds: Double {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        func seconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }

    /// Seconds of CPU process `pid` and its reaped children have used (/proc/PID/stat: utime,
    /// stime, cutime, cstime), or nil when it cannot be read.
    static func seconds(ofProcess pid: Int32) -> Double? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else {
            return nil
        }
        // Fields after the command name: state is field 3; utime..cstime are fields 14–17.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 14 else { return nil }
        let ticks = fields[11...14].compactMap { Double($0) }.reduce(0, +)
        return ticks / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// The local broker's process (the beam), from the pid file `scripts/broker` keeps in
    /// `$RACKBUS_BROKER_DIR`.
    static var brokerPid: Int32? {
        guard let directory = ProcessInfo.processInfo.environment["RACKBUS_BROKER_DIR"],
            let text = try? String(contentsOfFile: directory + "/rabbit.pid", encoding: .utf8)
        else { return nil }
        return Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }
}
