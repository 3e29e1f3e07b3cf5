//! Host figures from /proc: CPU usage between two readings, load average
//! per core, memory available and total.

/// CPU time counters from /proc/stat: (busy, total) jiffies.
pub(crate) fn cpu_times() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().take(8).sum();
    // idle + iowait are not busy.
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// Share of CPU busy between two `cpu_times` readings, 0 to 1.
pub(crate) fn cpu_usage(before: (u64, u64), after: (u64, u64)) -> f64 {
    let busy = after.0.saturating_sub(before.0) as f64;
    let total = after.1.saturating_sub(before.1) as f64;
    if total == 0.0 {
        0.0
    } else {
        (busy / total).clamp(0.0, 1.0)
    }
}

/// One-minute load average divided by the number of CPUs.
pub(crate) fn load_per_core() -> Option<f64> {
    let load: f64 = std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    Some(load / cores)
}

/// (available, total) memory in bytes.
pub(crate) fn memory() -> Option<(f64, f64)> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib = |key: &str| -> Option<f64> {
        let line = info.lines().find(|l| l.starts_with(key))?;
        line.split_whitespace()
            .nth(1)?
            .parse::<f64>()
            .ok()
            .map(|k| k * 1024.0)
    };
    Some((kib("MemAvailable:")?, kib("MemTotal:")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_host() {
        let (available, total) = memory().expect("meminfo");
        assert!(available > 0.0 && available <= total, "{available} {total}");
        assert!(load_per_core().expect("loadavg") >= 0.0);
        let before = cpu_times().expect("stat");
        let mut spin = 0u64;
        for i in 0..5_000_000u64 {
            spin = spin.wrapping_add(i * i);
        }
        assert!(spin > 0);
        let usage = cpu_usage(before, cpu_times().expect("stat"));
        assert!((0.0..=1.0).contains(&usage), "{usage}");
    }
}
