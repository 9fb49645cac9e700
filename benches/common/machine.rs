//! What every benchmark records about the machine it ran on, and where reports go.
#![allow(dead_code)] // each benchmark uses part of it

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

/// The first line of a command's output, if it runs.
pub fn command_line(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    output
        .status
        .success()
        .then(|| text.lines().next().unwrap_or_default().trim().to_string())
}

/// The CPU model from /proc/cpuinfo.
pub fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("model name"))?;
    Some(line.split_once(':')?.1.trim().to_string())
}

/// Total memory in KiB.
pub fn memory_total_kib() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The 1, 5 and 15 minute load averages: other work on the machine skews every figure.
pub fn loadavg() -> Option<Vec<f64>> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace()
        .take(3)
        .map(|x| x.parse().ok())
        .collect()
}

/// The machine and the commit, for the JSON report.
pub fn machine() -> Value {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let manifest = env!("CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| {
        let mut all = vec!["-C", manifest];
        all.extend_from_slice(args);
        command_line("git", &all)
    };
    json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "cpu_model": cpu_model(),
        "memory_mib": memory_total_kib().map(|k| k / 1024),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|s| s.trim().to_string()),
        "rustc": command_line(&rustc, &["-V"]),
        "git_commit": git(&["rev-parse", "HEAD"]),
        "git_dirty": git(&["status", "--porcelain"]).map(|s| !s.is_empty()),
        "loadavg_at_start": loadavg(),
    })
}

/// Where a JSON report goes: `target/NAME` (or under `CARGO_TARGET_DIR`).
pub fn report_path(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join(name)
}
