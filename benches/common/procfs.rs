//! What the benchmarks read from `/proc`: a process's CPU time and memory (another one's,
//! or this one's and its threads'), the machine's CPU time.
#![allow(dead_code)] // each benchmark uses part of it

use std::collections::HashMap;

/// The name in a `/proc/.../stat` line, and its utime and stime in clock ticks.
pub fn stat_ticks(stat: &str) -> Option<(String, u64, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat[open + 1..close].to_string();
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // Fields 14 and 15 of proc(5); the first field after the name is field 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((name, utime, stime))
}

/// utime + stime of a process, in clock ticks (all its threads).
pub fn proc_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, user, system) = stat_ticks(&stat)?;
    Some(user + system)
}

/// A field of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`).
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| {
        l.strip_prefix(field)
            .is_some_and(|rest| rest.starts_with(':'))
    })?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// This process's resident memory now, in KiB.
pub fn rss_now() -> u64 {
    proc_status_kib(std::process::id(), "VmRSS").expect("VmRSS in /proc/self/status")
}

/// This process's peak resident memory (since start or [`reset_peak_rss`]), in KiB.
pub fn rss_peak() -> u64 {
    proc_status_kib(std::process::id(), "VmHWM").expect("VmHWM in /proc/self/status")
}

/// Resets this process's peak RSS (`VmHWM`) to its current RSS (Linux 4.0+).
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// User and system CPU time of this whole process so far (threads that ended included),
/// in clock ticks.
pub fn process_cpu_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let (_, user, system) = stat_ticks(&stat).expect("utime and stime in /proc/self/stat");
    (user, system)
}

/// CPU time of each live thread of this process, by thread id, with its name.
pub fn thread_cpu_ticks() -> HashMap<String, (String, u64)> {
    let mut threads = HashMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return threads;
    };
    for task in tasks.flatten() {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        if let Some((name, user, system)) = stat_ticks(&stat) {
            let tid = task.file_name().to_string_lossy().into_owned();
            threads.insert(tid, (name, user + system));
        }
    }
    threads
}

/// CPU time of the calling thread, from `/proc/thread-self/schedstat` (nanoseconds).
pub fn thread_cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

/// CPU time of all live threads of this process, in nanoseconds.
pub fn process_cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|task| {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
            stat.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum()
}

/// The machine's CPU time from `/proc/stat`: (all, idle + iowait), in ticks.
pub fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().next() else {
        return (0, 0);
    };
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let all = values.iter().take(8).sum();
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    (all, idle)
}

/// Clock ticks per second (`getconf CLK_TCK`, else 100).
pub fn clock_tick() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100.0)
}
