//! How busy the CPU is, as LiveKit's workers measure it for their load: the share of the
//! CPU available to this process that is in use between two samples. In a container with
//! a CPU limit (cgroup v2 `cpu.max`) that is the container's use against its limit;
//! elsewhere, the whole machine's (`/proc/stat`), since a call is late whoever took the
//! cores.
//!
//! ```
//! use bella_vista::io::cpu::{CpuTimes, busy_share};
//!
//! let before = CpuTimes::from_proc_stat("cpu  100 0 100 700 100 0 0 0 0 0").unwrap();
//! let after = CpuTimes::from_proc_stat("cpu  150 0 130 720 100 0 0 0 0 0").unwrap();
//! assert_eq!(busy_share(&before, &after), Some(0.8));
//! ```

use std::path::PathBuf;
use std::time::Instant;

/// CPU time used and available, in seconds, since some fixed point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuTimes {
    /// Time the CPUs spent working.
    pub busy: f64,
    /// Time the CPUs could have spent working.
    pub total: f64,
}

impl CpuTimes {
    /// The machine's times from `/proc/stat`'s first (`cpu`) line, in jiffies: everything
    /// but idle and I/O wait is busy.
    pub fn from_proc_stat(text: &str) -> Option<Self> {
        let line = text.lines().find(|line| line.starts_with("cpu "))?;
        let fields: Vec<f64> = line
            .split_whitespace()
            .skip(1)
            .map(|field| field.parse().ok())
            .collect::<Option<_>>()?;
        // user nice system idle iowait irq softirq steal (guest time is inside user).
        let total: f64 = fields.iter().take(8).sum();
        let idle = fields.get(3)? + fields.get(4).unwrap_or(&0.0);
        Some(CpuTimes {
            busy: total - idle,
            total,
        })
    }
}

/// The CPUs a cgroup v2 `cpu.max` (`"QUOTA PERIOD"`) allows; `None` without a limit.
pub fn cgroup_cpus(cpu_max: &str) -> Option<f64> {
    let mut fields = cpu_max.split_whitespace();
    let quota: f64 = fields.next()?.parse().ok()?;
    let period: f64 = fields.next()?.parse().ok()?;
    (period > 0.0 && quota > 0.0).then_some(quota / period)
}

/// The cgroup's CPU time used, in seconds, from its `cpu.stat` (`usage_usec`).
pub fn cgroup_usage(cpu_stat: &str) -> Option<f64> {
    let line = cpu_stat
        .lines()
        .find(|line| line.starts_with("usage_usec "))?;
    let usec: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(usec / 1e6)
}

/// The share (0 to 1) of the available CPU time used between two samples.
pub fn busy_share(before: &CpuTimes, after: &CpuTimes) -> Option<f32> {
    let total = after.total - before.total;
    let busy = after.busy - before.busy;
    (total > 0.0).then(|| (busy / total).clamp(0.0, 1.0) as f32)
}

/// Where the times come from.
#[derive(Debug, Clone)]
enum Source {
    /// A cgroup with a CPU limit of this many CPUs.
    Cgroup { dir: PathBuf, cpus: f64 },
    /// The machine.
    Machine,
}

/// Samples the CPU use; each [`CpuMeter::sample`] gives the share since the one before.
#[derive(Debug)]
pub struct CpuMeter {
    source: Source,
    last: Option<CpuTimes>,
}

impl Default for CpuMeter {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuMeter {
    /// A meter for this process: its cgroup's limit when it has one, else the machine.
    pub fn new() -> Self {
        let dir = PathBuf::from("/sys/fs/cgroup");
        let source = std::fs::read_to_string(dir.join("cpu.max"))
            .ok()
            .and_then(|text| cgroup_cpus(&text))
            .map_or(Source::Machine, |cpus| Source::Cgroup { dir, cpus });
        CpuMeter { source, last: None }
    }

    /// The share of the CPU in use since the previous sample (`None` the first time, or when
    /// the system does not say).
    pub async fn sample(&mut self) -> Option<f32> {
        let now = self.read().await;
        let share = match (&self.last, &now) {
            (Some(before), Some(after)) => busy_share(before, after),
            _ => None,
        };
        self.last = now;
        share
    }

    async fn read(&self) -> Option<CpuTimes> {
        match &self.source {
            Source::Machine => {
                let text = tokio::fs::read_to_string("/proc/stat").await.ok()?;
                CpuTimes::from_proc_stat(&text)
            }
            Source::Cgroup { dir, cpus } => {
                let text = tokio::fs::read_to_string(dir.join("cpu.stat")).await.ok()?;
                let busy = cgroup_usage(&text)?;
                let total = process_start().elapsed().as_secs_f64() * cpus;
                Some(CpuTimes { busy, total })
            }
        }
    }
}

/// A fixed point in this process's life to measure wall time from.
fn process_start() -> Instant {
    static START: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);
    *START
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_busy_is_all_but_idle_and_iowait() {
        let times = CpuTimes::from_proc_stat(
            "cpu  10 2 3 80 5 0 0 0 0 0\ncpu0 5 1 1 40 2 0 0 0 0 0\nintr 1",
        )
        .unwrap();
        assert_eq!(times.total, 100.0);
        assert_eq!(times.busy, 15.0);
        assert!(CpuTimes::from_proc_stat("intr 1").is_none());
    }

    #[test]
    fn a_cgroup_limit_is_quota_over_period() {
        assert_eq!(cgroup_cpus("150000 100000\n"), Some(1.5));
        assert_eq!(cgroup_cpus("max 100000\n"), None);
        assert_eq!(cgroup_usage("usage_usec 2500000\nuser_usec 1\n"), Some(2.5));
    }

    #[test]
    fn no_time_passed_says_nothing() {
        let t = CpuTimes {
            busy: 1.0,
            total: 2.0,
        };
        assert_eq!(busy_share(&t, &t), None);
    }

    #[tokio::test]
    async fn this_machine_can_be_measured() {
        let mut meter = CpuMeter::new();
        assert_eq!(meter.sample().await, None);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let share = meter.sample().await.expect("a share on Linux");
        assert!((0.0..=1.0).contains(&share));
    }
}
