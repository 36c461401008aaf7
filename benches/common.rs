//! Shared helpers of the benchmarks: timing, peak memory, output.
#![allow(dead_code)]

use std::time::{Duration, Instant};

/// The allocator the `djaudit` binary uses, so that benchmarks measure what it runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs `f` once and returns its result and wall time.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

/// Resets the kernel's peak-RSS counter of this process (Linux ≥ 4.0).
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak resident set size of this process since start or the last reset, in KiB.
pub fn peak_rss_kib() -> u64 {
    status_field("VmHWM:")
}

/// Current resident set size in KiB.
pub fn rss_kib() -> u64 {
    status_field("VmRSS:")
}

fn status_field(name: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// `n` per second over `d`.
pub fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// A size from the environment, for quicker runs (`DJAUDIT_BENCH_N=100000 cargo bench`).
pub fn env_n(default: u64) -> u64 {
    std::env::var("DJAUDIT_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
