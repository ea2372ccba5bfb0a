//! CPU time and memory of processes, from /proc, for the benchmarks and the tests: servers and clients are
//! measured apart, since they share the machine.

use std::time::Duration;

/// User plus system CPU time a process has used so far (clock ticks of 1/100 s).
pub fn cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (in parentheses, may hold spaces): utime is the 12th, stime the 13th.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let fields: Vec<u64> = after
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// CPU time of several processes together.
pub fn cpu_of(pids: &[u32]) -> Duration {
    pids.iter().map(|p| cpu(*p)).sum()
}

/// Resident memory in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> u64 {
    field_kib(&format!("/proc/{pid}/status"), "VmRSS:")
}

/// Proportional set size in KiB (`Pss` of smaps_rollup): shared pages split between their users.
pub fn pss_kib(pid: u32) -> u64 {
    field_kib(&format!("/proc/{pid}/smaps_rollup"), "Pss:")
}

fn field_kib(path: &str, name: &str) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// CPU time of the processes between two readings.
#[derive(Debug)]
pub struct CpuMeter {
    pids: Vec<u32>,
    start: Duration,
}

impl CpuMeter {
    pub fn start(pids: Vec<u32>) -> Self {
        let start = cpu_of(&pids);
        CpuMeter { pids, start }
    }

    pub fn used(&self) -> Duration {
        cpu_of(&self.pids).saturating_sub(self.start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_time_and_memory() {
        let me = std::process::id();
        let spin = std::time::Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_add(1);
        }
        assert!(x > 0);
        assert!(cpu(me) > Duration::ZERO);
        assert!(rss_kib(me) > 0);
        assert!(pss_kib(me) > 0);
    }
}
