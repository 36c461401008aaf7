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

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{AppState, DaemonError};
use crate::ledger::verify::{self, VerifyOptions, VerifyReport};
use crate::ledger::{Actor, NewEntry};

/// The scans this build can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    Verify,
    Checkpoint,
}

impl Scan {
    fn name(self) -> &'static str {
        match self {
            Scan::Verify => "verify",
            Scan::Checkpoint => "checkpoint",
        }
    }
}

/// Refuses a configuration that schedules a scan this build cannot run.
pub fn check_supported(config: &super::Config) -> Result<(), DaemonError> {
    // PENDING-CHECKS, PENDING-RECORDS: checks and reconcile join when their modules land.
    if config.schedule.checks.is_some() {
        return Err(DaemonError::Config(
            "`schedule.checks` is not available in this build; set `every = \"off\"`".into(),
        ));
    }
    if config.schedule.reconcile.is_some() {
        return Err(DaemonError::Config(
            "`schedule.reconcile` is not available in this build; set `every = \"off\"`".into(),
        ));
    }
    Ok(())
}

/// Starts one task per scheduled scan; each ends when `stop` becomes `true`.
pub fn start(state: Arc<AppState>, stop: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    let sched = state.config.schedule.clone();
    for (scan, every) in [
        (Scan::Verify, sched.verify),
        (Scan::Checkpoint, sched.checkpoint),
    ] {
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
        let (ok, message) = match scan {
            Scan::Verify => run_verify(&state).await,
            Scan::Checkpoint => run_checkpoint(&state).await,
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
    let data = json!({
        "ok": report.ok,
        "size": report.size,
        "root": report.root,
        "checkpoints_verified": report.checkpoints_verified,
        "failure": report.failure,
    });
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

/// Signs and stores a checkpoint of the current tree.
pub async fn run_checkpoint(state: &AppState) -> (bool, String) {
    match state.writer.checkpoint().await {
        Ok(cp) => (true, format!("checkpoint at size {}", cp.size)),
        Err(e) => (false, format!("checkpoint failed: {e}")),
    }
}
