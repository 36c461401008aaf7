//! Counters of the running daemon and their Prometheus text exposition (`GET /metrics`).
//!
//! Requests by status, latency, durable appends, group-commit batch sizes, writer retries
//! on a busy database, and the last result of every scheduled scan. Labels carry only
//! status codes and scan names: never a user, a path or a record value.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Upper bounds of the batch-size histogram.
const BATCH_BUCKETS: [u64; 12] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096];
/// Upper bounds of the latency histogram, in seconds.
const LATENCY_BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// The names of the scheduled scans.
pub const SCANS: [&str; 4] = ["verify", "checkpoint", "checks", "reconcile"];

/// A cumulative histogram.
struct Histogram<const N: usize> {
    counts: [AtomicU64; N],
    over: AtomicU64,
    sum_micros: AtomicU64,
}

impl<const N: usize> Histogram<N> {
    fn new() -> Self {
        Histogram {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            over: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    fn observe(&self, bucket: Option<usize>, sum_micros: u64) {
        match bucket.and_then(|i| self.counts.get(i)) {
            Some(c) => c.fetch_add(1, Ordering::Relaxed),
            None => self.over.fetch_add(1, Ordering::Relaxed),
        };
        self.sum_micros.fetch_add(sum_micros, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, bounds: &[String], sum: f64) {
        let mut cum = 0u64;
        for (b, c) in bounds.iter().zip(self.counts.iter()) {
            cum += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cum}");
        }
        cum += self.over.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cum}");
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {cum}");
    }
}

/// The last run of one scan.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ScanStatus {
    pub runs: u64,
    pub failures: u64,
    /// Entry-format time of the last run.
    pub last_run: Option<String>,
    pub last_ok: Option<bool>,
    /// One line about the last run (no record values).
    pub last_message: Option<String>,
}

/// Every counter of one daemon.
pub struct Metrics {
    requests: Mutex<BTreeMap<u16, u64>>,
    latency: Histogram<10>,
    appends: AtomicU64,
    batches: AtomicU64,
    batch_sizes: Histogram<12>,
    busy_retries: AtomicU64,
    scans: Mutex<BTreeMap<&'static str, ScanStatus>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Mutex::new(BTreeMap::new()),
            latency: Histogram::new(),
            appends: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            batch_sizes: Histogram::new(),
            busy_retries: AtomicU64::new(0),
            scans: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Metrics {
    /// One answered request.
    pub fn request(&self, status: u16, seconds: f64) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry(status).or_default() += 1;
        }
        let bucket = LATENCY_BUCKETS.iter().position(|b| seconds <= *b);
        self.latency.observe(bucket, (seconds * 1e6) as u64);
    }

    /// One committed batch of `jobs` write jobs that appended `entries` entries.
    pub fn batch(&self, jobs: usize, entries: usize) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.appends.fetch_add(entries as u64, Ordering::Relaxed);
        let bucket = BATCH_BUCKETS.iter().position(|b| jobs as u64 <= *b);
        self.batch_sizes.observe(bucket, jobs as u64);
    }

    /// The writer found the database locked by another process and waits.
    pub fn busy_retry(&self) {
        self.busy_retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Entries appended by this daemon.
    pub fn appends(&self) -> u64 {
        self.appends.load(Ordering::Relaxed)
    }

    /// Records the result of a scan run.
    pub fn scan(&self, name: &'static str, ok: bool, message: String) {
        if let Ok(mut m) = self.scans.lock() {
            let s = m.entry(name).or_default();
            s.runs += 1;
            if !ok {
                s.failures += 1;
            }
            s.last_run = Some(crate::ledger::entry::now_ts());
            s.last_ok = Some(ok);
            s.last_message = Some(message);
        }
    }

    /// The status of every scan that has run.
    pub fn scans(&self) -> BTreeMap<&'static str, ScanStatus> {
        self.scans.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Whether the last run of any scan failed.
    pub fn any_scan_failing(&self) -> bool {
        self.scans().values().any(|s| s.last_ok == Some(false))
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP djaudit_http_requests_total HTTP requests answered, by status.\n");
        out.push_str("# TYPE djaudit_http_requests_total counter\n");
        if let Ok(m) = self.requests.lock() {
            for (status, n) in m.iter() {
                let _ = writeln!(
                    out,
                    "djaudit_http_requests_total{{status=\"{status}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP djaudit_http_request_duration_seconds Time to answer a request.\n");
        out.push_str("# TYPE djaudit_http_request_duration_seconds histogram\n");
        let bounds: Vec<String> = LATENCY_BUCKETS.iter().map(|b| b.to_string()).collect();
        let sum = self.latency.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        self.latency.render(
            &mut out,
            "djaudit_http_request_duration_seconds",
            &bounds,
            sum,
        );
        out.push_str(
            "# HELP djaudit_ledger_appends_total Entries appended durably by the daemon.\n",
        );
        out.push_str("# TYPE djaudit_ledger_appends_total counter\n");
        let _ = writeln!(out, "djaudit_ledger_appends_total {}", self.appends());
        out.push_str("# HELP djaudit_writer_batches_total Transactions committed by the writer.\n");
        out.push_str("# TYPE djaudit_writer_batches_total counter\n");
        let _ = writeln!(
            out,
            "djaudit_writer_batches_total {}",
            self.batches.load(Ordering::Relaxed)
        );
        out.push_str("# HELP djaudit_writer_batch_size Write jobs per committed transaction.\n");
        out.push_str("# TYPE djaudit_writer_batch_size histogram\n");
        let bounds: Vec<String> = BATCH_BUCKETS.iter().map(|b| b.to_string()).collect();
        let sum = self.batch_sizes.sum_micros.load(Ordering::Relaxed) as f64;
        self.batch_sizes
            .render(&mut out, "djaudit_writer_batch_size", &bounds, sum);
        out.push_str(
            "# HELP djaudit_writer_busy_retries_total Waits for another process's write lock.\n",
        );
        out.push_str("# TYPE djaudit_writer_busy_retries_total counter\n");
        let _ = writeln!(
            out,
            "djaudit_writer_busy_retries_total {}",
            self.busy_retries.load(Ordering::Relaxed)
        );
        out.push_str(
            "# HELP djaudit_log_lines_dropped_total Log lines dropped because stderr fell behind.\n",
        );
        out.push_str("# TYPE djaudit_log_lines_dropped_total counter\n");
        let _ = writeln!(
            out,
            "djaudit_log_lines_dropped_total {}",
            super::log_lines_dropped()
        );
        let scans = self.scans();
        out.push_str("# HELP djaudit_scan_runs_total Scheduled scan runs.\n");
        out.push_str("# TYPE djaudit_scan_runs_total counter\n");
        for name in SCANS {
            let n = scans.get(name).map_or(0, |s| s.runs);
            let _ = writeln!(out, "djaudit_scan_runs_total{{scan=\"{name}\"}} {n}");
        }
        out.push_str("# HELP djaudit_scan_failures_total Scheduled scan runs that failed.\n");
        out.push_str("# TYPE djaudit_scan_failures_total counter\n");
        for name in SCANS {
            let n = scans.get(name).map_or(0, |s| s.failures);
            let _ = writeln!(out, "djaudit_scan_failures_total{{scan=\"{name}\"}} {n}");
        }
        out.push_str(
            "# HELP djaudit_scan_last_ok Whether the last run of a scan succeeded (absent: never ran).\n",
        );
        out.push_str("# TYPE djaudit_scan_last_ok gauge\n");
        for (name, s) in &scans {
            if let Some(ok) = s.last_ok {
                let _ = writeln!(out, "djaudit_scan_last_ok{{scan=\"{name}\"}} {}", ok as u8);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_counts_requests_batches_and_scans() {
        let m = Metrics::default();
        m.request(200, 0.002);
        m.request(200, 0.5);
        m.request(403, 10.0);
        m.batch(3, 5);
        m.batch(100, 100);
        m.scan("verify", false, "entry 7: prev".into());
        let text = m.render();
        assert!(
            text.contains("djaudit_http_requests_total{status=\"200\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("djaudit_http_requests_total{status=\"403\"} 1\n"));
        assert!(text.contains("djaudit_http_request_duration_seconds_bucket{le=\"0.0025\"} 1\n"));
        assert!(text.contains("djaudit_http_request_duration_seconds_bucket{le=\"5\"} 2\n"));
        assert!(text.contains("djaudit_http_request_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("djaudit_ledger_appends_total 105\n"));
        assert!(text.contains("djaudit_writer_batches_total 2\n"));
        assert!(text.contains("djaudit_writer_batch_size_bucket{le=\"4\"} 1\n"));
        assert!(text.contains("djaudit_writer_batch_size_bucket{le=\"128\"} 2\n"));
        assert!(text.contains("djaudit_writer_batch_size_sum 103\n"));
        assert!(text.contains("djaudit_scan_failures_total{scan=\"verify\"} 1\n"));
        assert!(text.contains("djaudit_log_lines_dropped_total 0\n"));
        assert!(text.contains("djaudit_scan_last_ok{scan=\"verify\"} 0\n"));
        assert!(!text.contains("djaudit_scan_last_ok{scan=\"checkpoint\"}"));
        assert!(m.any_scan_failing());
        m.scan("verify", true, "ok".into());
        assert!(!m.any_scan_failing());
    }
}
