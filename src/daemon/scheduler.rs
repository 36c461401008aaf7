//! Scheduled scans: verify, checkpoint, checks and reconcile, each on its own interval
//! from the configuration.
//!
//! A run records its result: `scan.verify` (success or the first failure) through the
//! writer, a checkpoint as the stored signed note itself. Every run updates
//! [`super::metrics::Metrics`] (so `/metrics` and `/v1/health` show it); a failure is also
//! logged at error level. The first run of a scan comes one interval after start. Scans
//! stop when the daemon's stop signal is raised.
//!
//! This module does not decide what is wrong with a ledger; `ledger::verify` does.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{AppState, DaemonError};
use crate::ledger::verify::{self, VerifyOptions, VerifyReport};
use crate::ledger::{Actor, Ledger, NewEntry};
use crate::records::parse::{ImportError, ImportOptions};
use crate::records::{reconcile, RecordError, RecordKind};

/// The scans this build can run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scan {
    Verify,
    Checkpoint,
    /// Reconcile every snapshot file dropped in this folder.
    Reconcile(PathBuf),
    /// Run the consistency checks as of today (Asia/Shanghai) and record `scan.checks`.
    Checks,
}

impl Scan {
    fn name(&self) -> &'static str {
        match self {
            Scan::Verify => "verify",
            Scan::Checkpoint => "checkpoint",
            Scan::Reconcile(_) => "reconcile",
            Scan::Checks => "checks",
        }
    }
}

/// Refuses a configuration that schedules a scan this build cannot run.
pub fn check_supported(config: &super::Config) -> Result<(), DaemonError> {
    if let Some((_, dir)) = &config.schedule.reconcile {
        if !dir.is_dir() {
            return Err(DaemonError::Config(format!(
                "`schedule.reconcile.dir`: `{}` is not a directory",
                dir.display()
            )));
        }
    }
    Ok(())
}

/// Starts one task per scheduled scan; each ends when `stop` becomes `true`.
pub fn start(state: Arc<AppState>, stop: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    let sched = state.config.schedule.clone();
    let reconcile = sched
        .reconcile
        .map(|(every, dir)| (Scan::Reconcile(dir), Some(every)));
    for (scan, every) in [
        (Scan::Verify, sched.verify),
        (Scan::Checkpoint, sched.checkpoint),
        (Scan::Checks, sched.checks),
    ]
    .into_iter()
    .chain(reconcile)
    {
        if let Some(every) = every {
            tasks.push(tokio::spawn(every_interval(
                state.clone(),
                stop.clone(),
                scan,
                every,
            )));
        }
    }
    tasks
}

async fn every_interval(
    state: Arc<AppState>,
    mut stop: watch::Receiver<bool>,
    scan: Scan,
    every: Duration,
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = ticks.tick() => {}
        }
        let (ok, message) = match &scan {
            Scan::Verify => run_verify(&state).await,
            Scan::Checkpoint => run_checkpoint(&state).await,
            Scan::Reconcile(dir) => run_reconcile(&state, dir).await,
            Scan::Checks => run_checks(&state).await,
        };
        if ok {
            tracing::info!(scan = scan.name(), result = %message, "scan done");
        } else {
            tracing::error!(scan = scan.name(), result = %message, "scan failed");
        }
        state.metrics.scan(scan.name(), ok, message);
    }
}

/// Verifies the ledger in one read snapshot and records `scan.verify`.
pub async fn run_verify(state: &AppState) -> (bool, String) {
    let report = state
        .reads
        .read(|l| {
            // One read transaction: appends made meanwhile are not half seen.
            l.conn().execute_batch("BEGIN")?;
            let r = verify::verify(l, VerifyOptions::default());
            let _ = l.conn().execute_batch("ROLLBACK");
            r
        })
        .await;
    let report: VerifyReport = match report {
        Ok(r) => r,
        Err(e) => return (false, format!("verify could not run: {e}")),
    };
    let message = match &report.failure {
        None => format!("{} entries verified", report.size),
        Some(f) => format!("FAILED at seq {}: {} ({})", f.seq, f.message, f.code),
    };
    let mut data = json!({
        "ok": report.ok,
        "size": report.size,
        "root": report.root,
        "checkpoints_verified": report.checkpoints_verified,
        "external_checkpoint": null,
        "replay": false,
    });
    if let Some(f) = &report.failure {
        data["failure"] = json!(f);
    }
    let recorded = state
        .writer
        .submit(move |w, _| {
            let e = NewEntry::new(
                "scan.verify",
                "ledger",
                Actor::system("scheduler"),
                data.clone(),
            )
            .map_err(|e| super::writer::JobError::Storage(e.to_string()))?;
            Ok(w.append(e)?.seq)
        })
        .await;
    match recorded {
        Ok(seq) => (report.ok, format!("{message}; recorded as entry {seq}")),
        Err(e) => (false, format!("{message}; recording it failed: {e}")),
    }
}

/// Runs the consistency checks in one read snapshot and records `scan.checks`.
pub async fn run_checks(state: &AppState) -> (bool, String) {
    let as_of = (chrono::Utc::now() + chrono::Duration::hours(8)).date_naive();
    let prepared = state
        .reads
        .read(move |l| {
            Ok((|| {
                let cfg = crate::checks::CheckConfig::embedded();
                let report = crate::checks::run_checks(
                    l.conn(),
                    &cfg,
                    &crate::checks::CheckOptions::new(as_of),
                )
                .map_err(|e| e.to_string())?;
                let scan = crate::checks::scan::Scan::prepare(l.conn(), &report)
                    .map_err(|e| e.to_string())?;
                let entry = scan
                    .entry(&report, Actor::system("scheduler"))
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>((
                    report.findings.len(),
                    scan.new.len(),
                    scan.resolved.len(),
                    entry,
                ))
            })())
        })
        .await;
    let (total, new, resolved, entry) = match prepared {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return (false, format!("checks could not run: {e}")),
        Err(e) => return (false, format!("checks could not run: {e}")),
    };
    let recorded = state
        .writer
        .submit(move |w, _| Ok(w.append(entry.clone())?.seq))
        .await;
    let message = format!("{total} findings as of {as_of}, {new} new, {resolved} resolved");
    match recorded {
        Ok(seq) => (true, format!("{message}; recorded as entry {seq}")),
        Err(e) => (false, format!("{message}; recording it failed: {e}")),
    }
}

/// Signs and stores a checkpoint of the current tree.
pub async fn run_checkpoint(state: &AppState) -> (bool, String) {
    match state.writer.checkpoint().await {
        Ok(cp) => (true, format!("checkpoint at size {}", cp.size)),
        Err(e) => (false, format!("checkpoint failed: {e}")),
    }
}

/// The snapshot files waiting in a drop folder: `<kind>.csv` or `<kind>.jsonl` (kind
/// singular or plural, e.g. `members.csv`), in name order. Anything else is left alone.
pub fn snapshot_files(dir: &Path) -> std::io::Result<Vec<(RecordKind, PathBuf)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let path = e?.path();
        if !path.is_file() {
            continue;
        }
        let ext = path.extension().and_then(|x| x.to_str()).unwrap_or("");
        if !matches!(ext, "csv" | "jsonl") {
            continue;
        }
        let stem = path.file_stem().and_then(|x| x.to_str()).unwrap_or("");
        if let Ok(kind) = stem.parse::<RecordKind>() {
            out.push((kind, path));
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

/// Moves a processed file to `<dir>/done/` (or `<dir>/failed/`), prefixed with the time.
fn file_away(dir: &Path, file: &Path, sub: &str) -> std::io::Result<()> {
    let target = dir.join(sub);
    std::fs::create_dir_all(&target)?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%3fZ");
    std::fs::rename(file, target.join(format!("{stamp}-{name}")))
}

/// What went wrong with a snapshot file, without any value from it: the result goes to the
/// log, the metrics and the unauthenticated health endpoint. Bad rows are counted, not
/// listed; `djaudit reconcile` on the file (moved to `failed/`) lists them, masked.
fn without_values(e: &RecordError) -> String {
    match e {
        RecordError::File(ImportError::BadRows(b)) => format!(
            "{} bad rows ({} problems); run `djaudit reconcile` on the file in failed/ for the list",
            b.rows, b.problems
        ),
        e => e.to_string(),
    }
}

/// Reconciles every snapshot file in the drop folder with the projection (each appends a
/// `scan.reconcile` entry), then moves it to `done/` (`failed/` if it could not be read).
/// The run fails when a file differs from the projection or could not be reconciled.
pub async fn run_reconcile(state: &AppState, dir: &Path) -> (bool, String) {
    let data = state.data.clone();
    let dir = dir.to_owned();
    let r = tokio::task::spawn_blocking(move || -> Result<(bool, String), String> {
        let files =
            snapshot_files(&dir).map_err(|e| format!("reading `{}`: {e}", dir.display()))?;
        if files.is_empty() {
            return Ok((true, "no snapshot files".into()));
        }
        let mut ledger = Ledger::open(&data).map_err(|e| e.to_string())?;
        let actor = Actor::system("scheduler");
        let (mut ok, mut lines) = (true, Vec::new());
        for (kind, file) in files {
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            match reconcile::reconcile(
                &mut ledger,
                kind,
                &file,
                ImportOptions::default(),
                &actor,
                &mut |_| {},
            ) {
                Ok(rec) => {
                    if rec.differs() {
                        ok = false;
                    }
                    lines.push(format!(
                        "{name}: {} added, {} missing, {} changed (entry {})",
                        rec.added.len(),
                        rec.missing.len(),
                        rec.changed.len(),
                        rec.seq
                    ));
                    if let Err(e) = file_away(&dir, &file, "done") {
                        lines.push(format!("{name}: cannot move it to done/: {e}"));
                        ok = false;
                    }
                }
                Err(e) => {
                    ok = false;
                    lines.push(format!("{name}: {}", without_values(&e)));
                    let _ = file_away(&dir, &file, "failed");
                }
            }
        }
        Ok((ok, lines.join("; ")))
    })
    .await;
    match r {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => (false, e),
        Err(e) => (false, format!("reconcile task failed: {e}")),
    }
}
