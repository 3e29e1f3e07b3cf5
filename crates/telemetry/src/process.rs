//! Resident memory and CPU time of this process, read from /proc, exposed in
//! the names Prometheus' own client libraries use so dashboards carry over.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Linux reports CPU time in clock ticks; USER_HZ is 100 on every platform
/// Linux supports for user space, so no libc call is needed to learn it.
const TICKS_PER_SECOND: f64 = 100.0;

/// One reading of this process's resource use.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStats {
    /// Resident set size now, in bytes.
    pub resident_bytes: u64,
    /// The highest resident set size so far (VmHWM), in bytes.
    pub peak_resident_bytes: u64,
    /// User plus system CPU time consumed, in seconds.
    pub cpu_seconds: f64,
    /// Open file descriptors (sockets included).
    pub open_fds: u64,
}

impl ProcessStats {
    /// Reads /proc/self; on a system without /proc every figure is zero
    /// rather than an error, because metrics must never take a server down.
    pub fn read() -> ProcessStats {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .map(|entries| entries.count() as u64)
            .unwrap_or(0);
        ProcessStats {
            resident_bytes: status_kib(&status, "VmRSS:") * 1024,
            peak_resident_bytes: status_kib(&status, "VmHWM:") * 1024,
            cpu_seconds: cpu_seconds(&stat),
            open_fds,
        }
    }
}

fn status_kib(status: &str, field: &str) -> u64 {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .unwrap_or(0)
}

/// utime and stime are fields 14 and 15 of /proc/self/stat; the command name
/// (field 2) may hold spaces, so count from the closing parenthesis.
fn cpu_seconds(stat: &str) -> f64 {
    let Some(after_name) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return 0.0;
    };
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // After the name, field 3 (state) is index 0, so utime (14) is index 11.
    (ticks(11) + ticks(12)) as f64 / TICKS_PER_SECOND
}

/// Registers as a collector so the figures are read at scrape time, never stale.
#[derive(Debug, Default)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = ProcessStats::read();
        let cpu = ConstCounter::new(stats.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "User and system CPU time spent, in seconds.",
            None,
            cpu.metric_type(),
        )?)?;
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                stats.resident_bytes,
            ),
            (
                "process_peak_resident_memory_bytes",
                "Highest resident memory size so far, in bytes.",
                stats.peak_resident_bytes,
            ),
            ("process_open_fds", "Open file descriptors.", stats.open_fds),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value as i64);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let stats = ProcessStats::read();
        assert!(stats.resident_bytes > 0, "{stats:?}");
        assert!(
            stats.peak_resident_bytes >= stats.resident_bytes,
            "{stats:?}"
        );
        assert!(stats.open_fds > 0, "{stats:?}");
    }

    #[test]
    fn parses_stat_with_spaces_in_the_name() {
        let stat = "42 (a b) S 1 1 1 0 -1 4194560 0 0 0 0 250 150 0 0 20 0 1 0";
        assert_eq!(cpu_seconds(stat), 4.0);
    }
}
