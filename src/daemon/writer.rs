//! The single writer: every write of the daemon goes through one thread that owns the
//! ledger's write connection, with group commit.
//!
//! Requests send jobs over a bounded channel. The writer takes the first waiting job, drains
//! up to `max_batch - 1` more, runs them all in ONE [`WriteTx`] (`BEGIN IMMEDIATE`),
//! commits once (one fsync) and only then answers each job: an acknowledgement always
//! means durable (DESIGN §1.3). While a commit is syncing, new jobs queue up and form the
//! next batch, so batches grow with load.
//!
//! A failing job must not poison the others. Each job runs inside a SQL `SAVEPOINT`; a job
//! that fails without having appended an entry is rolled back to its savepoint and the rest
//! of the batch goes on. A job that fails after appending (the [`WriteTx`] has already
//! advanced its chain tail, so a savepoint cannot undo it) aborts the whole transaction;
//! then every job of the batch is run again in a transaction of its own. Jobs therefore
//! validate before they append, and must give the same answer when run again.
//!
//! CLI processes may write the same ledger at the same time: `BEGIN IMMEDIATE` waits for
//! their lock (the connection's busy timeout) and the writer retries while the database
//! stays locked. Jobs whose requester has gone (timed out) before their batch starts are
//! dropped unrun. Checkpoints are signed on the same thread, between batches.
//!
//! Nothing here knows HTTP; the jobs are closures the API builds.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::metrics::Metrics;
use crate::ledger::note::Signer;
use crate::ledger::store::StoredCheckpoint;
use crate::ledger::{Ledger, LedgerError, WriteTx};
use crate::policy::Authorizer;

/// Why a job was refused without writing anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// The request is malformed or invalid (HTTP 400).
    #[error("{0}")]
    Input(String),
    /// What it names does not exist (HTTP 404).
    #[error("{0}")]
    NotFound(String),
    /// It conflicts with the current state (HTTP 409).
    #[error("{0}")]
    Conflict(String),
    /// Storage or internal error (HTTP 500).
    #[error("{0}")]
    Storage(String),
}

impl From<LedgerError> for JobError {
    fn from(e: LedgerError) -> JobError {
        if e.is_input() {
            JobError::Input(e.to_string())
        } else {
            JobError::Storage(e.to_string())
        }
    }
}

impl From<rusqlite::Error> for JobError {
    fn from(e: rusqlite::Error) -> JobError {
        JobError::Storage(format!("storage: {e}"))
    }
}

/// Why a submitted job got no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The job refused itself; nothing of it was written.
    #[error(transparent)]
    Job(#[from] JobError),
    /// The transaction could not be committed; nothing of it was written.
    #[error("storage: {0}")]
    Storage(String),
    /// The writer has stopped (shutdown).
    #[error("the writer has stopped")]
    Closed,
}

/// What a job sees besides the transaction.
pub struct JobCtx<'a> {
    /// The policy decision point, with the org hierarchy as of this batch.
    pub authorizer: &'a Authorizer,
    /// Set by a job that changed the `org` table: the hierarchy is reloaded after commit.
    pub orgs_changed: bool,
}

/// A job in the queue, its result type erased.
trait AnyJob: Send {
    /// Runs the job; `false` when it failed (its error is kept for the answer).
    fn run(&mut self, w: &mut WriteTx<'_>, ctx: &mut JobCtx<'_>) -> bool;
    /// Whether nobody waits for the answer any more.
    fn abandoned(&self) -> bool;
    /// Answers after the batch ended: the job's own result if the batch committed.
    fn finish(self: Box<Self>, committed: Result<(), WriteError>);
}

struct TypedJob<T, F> {
    f: F,
    result: Option<Result<T, JobError>>,
    reply: oneshot::Sender<Result<T, WriteError>>,
}

impl<T, F> AnyJob for TypedJob<T, F>
where
    T: Send + 'static,
    F: FnMut(&mut WriteTx<'_>, &mut JobCtx<'_>) -> Result<T, JobError> + Send + 'static,
{
    fn run(&mut self, w: &mut WriteTx<'_>, ctx: &mut JobCtx<'_>) -> bool {
        let r = (self.f)(w, ctx);
        let ok = r.is_ok();
        self.result = Some(r);
        ok
    }

    fn abandoned(&self) -> bool {
        self.reply.is_closed()
    }

    fn finish(self: Box<Self>, committed: Result<(), WriteError>) {
        let answer = match (self.result, committed) {
            (Some(Err(e)), _) => Err(WriteError::Job(e)),
            (Some(Ok(t)), Ok(())) => Ok(t),
            (_, Err(e)) => Err(e),
            (None, Ok(())) => Err(WriteError::Storage("the job did not run".into())),
        };
        // The requester may have gone (timeout); the answer is then dropped.
        let _ = self.reply.send(answer);
    }
}

enum Msg {
    Job(Box<dyn AnyJob>),
    Checkpoint(oneshot::Sender<Result<StoredCheckpoint, String>>),
    /// Sign a final checkpoint and stop; jobs queued after it get [`WriteError::Closed`].
    Stop(oneshot::Sender<Result<StoredCheckpoint, String>>),
    /// Copy the rest of the WAL into the database between batches, so that the log
    /// restarts (see [`WriterHandle::catch_up_wal`]).
    CatchUpWal,
}

/// The requests' side of the writer. Cloning it is cheap; the writer stops when every
/// handle is dropped and the queue is empty.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<Msg>,
}

impl WriterHandle {
    /// Queues a job and waits until its batch has committed. The job runs inside the
    /// batch's transaction; it must check everything before its first append, and may be
    /// run a second time in a transaction of its own.
    pub async fn submit<T, F>(&self, f: F) -> Result<T, WriteError>
    where
        T: Send + 'static,
        F: FnMut(&mut WriteTx<'_>, &mut JobCtx<'_>) -> Result<T, JobError> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job = Box::new(TypedJob {
            f,
            result: None,
            reply,
        });
        self.tx
            .send(Msg::Job(job))
            .await
            .map_err(|_| WriteError::Closed)?;
        rx.await.map_err(|_| WriteError::Closed)?
    }

    /// Signs and stores a checkpoint of the tree as it is after the jobs queued before.
    pub async fn checkpoint(&self) -> Result<StoredCheckpoint, WriteError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Checkpoint(reply))
            .await
            .map_err(|_| WriteError::Closed)?;
        rx.await
            .map_err(|_| WriteError::Closed)?
            .map_err(WriteError::Storage)
    }

    /// Commits the jobs queued so far, signs a final checkpoint and stops the writer.
    pub async fn stop(&self) -> Result<StoredCheckpoint, WriteError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Stop(reply))
            .await
            .map_err(|_| WriteError::Closed)?;
        rx.await
            .map_err(|_| WriteError::Closed)?
            .map_err(WriteError::Storage)
    }

    /// Asks the writer to checkpoint the WAL between two batches, without waiting. The
    /// checkpoint thread calls this right after copying most of a long log: the writer,
    /// the only one appending, then copies the little that is left, and SQLite restarts
    /// the log at the next write. (Only a checkpoint that reaches the log's end lets it
    /// restart, which one running beside the writer never does under steady load.)
    /// `false` when the queue is full or the writer has stopped.
    pub fn catch_up_wal(&self) -> bool {
        self.tx.try_send(Msg::CatchUpWal).is_ok()
    }

    /// Jobs waiting in the queue.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

/// Starts the writer thread. It owns `ledger` (its write connection), `authorizer` and
/// `signer`, and runs until every [`WriterHandle`] is dropped.
pub fn spawn(
    ledger: Ledger,
    authorizer: Authorizer,
    signer: Signer,
    max_batch: usize,
    queue: usize,
    metrics: Arc<Metrics>,
) -> std::io::Result<(WriterHandle, std::thread::JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel(queue.max(1));
    let mut w = Writer {
        ledger,
        authorizer,
        signer,
        max_batch: max_batch.max(1),
        metrics,
        org_signature: None,
    };
    let join = std::thread::Builder::new()
        .name("djaudit-writer".into())
        .spawn(move || w.run(rx))?;
    Ok((WriterHandle { tx }, join))
}

struct Writer {
    ledger: Ledger,
    authorizer: Authorizer,
    signer: Signer,
    max_batch: usize,
    metrics: Arc<Metrics>,
    /// (count, max last_seq) of the `org` table when the hierarchy was last loaded.
    org_signature: Option<(i64, i64)>,
}

/// Whether a storage error is another process holding the write lock.
fn is_busy(e: &LedgerError) -> bool {
    matches!(
        e,
        LedgerError::Sqlite(rusqlite::Error::SqliteFailure(f, _))
            if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// Runs a statement without parameters through the statement cache.
fn exec_cached(conn: &rusqlite::Connection, sql: &str) -> Result<(), String> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.execute([]))
        .map(|_| ())
        .map_err(|e| format!("storage: {e}"))
}

impl Writer {
    fn run(&mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut batch: Vec<Box<dyn AnyJob>> = Vec::with_capacity(self.max_batch);
        while let Some(first) = rx.blocking_recv() {
            let (mut checkpoint, mut stop, mut catch_up) = (None, false, false);
            // The first message, then whatever else waits, up to a checkpoint or a full batch.
            let mut next = Some(first);
            while let Some(m) = next {
                match m {
                    Msg::Job(j) => batch.push(j),
                    Msg::Checkpoint(reply) => checkpoint = Some(reply),
                    Msg::Stop(reply) => (checkpoint, stop) = (Some(reply), true),
                    Msg::CatchUpWal => catch_up = true,
                }
                next = if checkpoint.is_none() && batch.len() < self.max_batch {
                    rx.try_recv().ok()
                } else {
                    None
                };
            }
            // Jobs whose requester gave up are not written at all.
            batch.retain(|j| !j.abandoned());
            if !batch.is_empty() {
                self.run_batch(std::mem::take(&mut batch));
            }
            if catch_up {
                if let Err(e) = super::checkpoint_wal(self.ledger.conn()) {
                    tracing::warn!(error = %e, "WAL checkpoint failed");
                }
            }
            if let Some(reply) = checkpoint {
                let r = self.checkpoint().map_err(|e| e.to_string());
                if let Err(e) = &r {
                    tracing::error!(error = %e, "checkpoint failed");
                }
                let _ = reply.send(r);
            }
            if stop {
                rx.close();
                // Jobs that were already queued behind the stop are refused, not lost
                // silently: their requesters get `Closed`.
                while let Ok(m) = rx.try_recv() {
                    match m {
                        Msg::Job(j) => j.finish(Err(WriteError::Closed)),
                        Msg::Checkpoint(r) | Msg::Stop(r) => {
                            let _ = r.send(Err("the writer has stopped".into()));
                        }
                        Msg::CatchUpWal => {}
                    }
                }
                return;
            }
        }
    }

    /// Signs and stores a checkpoint. After `djaudit key rotate` in another process the
    /// key loaded at start is no longer the ledger's: the new one is loaded and used.
    fn checkpoint(&mut self) -> Result<StoredCheckpoint, LedgerError> {
        match self.ledger.checkpoint_with(&self.signer) {
            Err(LedgerError::KeyRotated) => {
                tracing::info!("the signing key was rotated; loading the new key");
                self.signer = self.ledger.signer()?;
                self.ledger.checkpoint_with(&self.signer)
            }
            r => r,
        }
    }

    /// Runs a batch in one transaction, or each job alone if one poisons the batch.
    fn run_batch(&mut self, mut jobs: Vec<Box<dyn AnyJob>>) {
        match self.try_batch(&mut jobs) {
            Ok(true) => {
                for j in jobs {
                    j.finish(Ok(()));
                }
            }
            Ok(false) => {
                // A job failed after appending: run every job alone.
                tracing::warn!(
                    jobs = jobs.len(),
                    "a write job failed mid-way; retrying each job alone"
                );
                for j in jobs {
                    let mut one = vec![j];
                    match self.try_batch(&mut one) {
                        Ok(_) => one.into_iter().for_each(|j| j.finish(Ok(()))),
                        Err(e) => one
                            .into_iter()
                            .for_each(|j| j.finish(Err(WriteError::Storage(e.clone())))),
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, jobs = jobs.len(), "write transaction failed");
                for j in jobs {
                    j.finish(Err(WriteError::Storage(e.clone())));
                }
            }
        }
    }

    /// One transaction over `jobs`. `Ok(true)`: committed (each job's own result stands);
    /// `Ok(false)`: rolled back because a job failed after appending (a single job that
    /// does so keeps its own error and nothing is written); `Err`: storage failure.
    fn try_batch(&mut self, jobs: &mut [Box<dyn AnyJob>]) -> Result<bool, String> {
        let mut backoff = Duration::from_millis(5);
        let mut w = loop {
            match self.ledger.write() {
                Ok(w) => break w,
                Err(e) if is_busy(&e) => {
                    self.metrics.busy_retry();
                    tracing::warn!("the ledger is locked by another writer; waiting");
                    if jobs.iter().all(|j| j.abandoned()) {
                        return Err("the ledger stayed locked by another writer".into());
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Err(e) => return Err(e.to_string()),
            }
        };
        // Reload the org hierarchy when the org table changed (here or in another process).
        let sig: (i64, i64) = w
            .conn()
            .prepare_cached("SELECT count(*), coalesce(max(last_seq), -1) FROM org")
            .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?))))
            .map_err(|e| format!("storage: {e}"))?;
        if self.org_signature != Some(sig) {
            self.authorizer
                .reload_orgs(w.conn())
                .map_err(|e| e.to_string())?;
            self.org_signature = Some(sig);
        }
        let mut ctx = JobCtx {
            authorizer: &self.authorizer,
            orgs_changed: false,
        };
        let single = jobs.len() == 1;
        for job in jobs.iter_mut() {
            let before = w.next_seq();
            exec_cached(w.conn(), "SAVEPOINT job")?;
            if job.run(&mut w, &mut ctx) {
                exec_cached(w.conn(), "RELEASE job")?;
            } else if w.next_seq() == before {
                w.conn()
                    .execute_batch("ROLLBACK TO job; RELEASE job")
                    .map_err(|e| format!("storage: {e}"))?;
            } else if single {
                // Its own transaction: dropping it undoes everything; its error stands.
                return Ok(true);
            } else {
                return Ok(false);
            }
        }
        let orgs_changed = ctx.orgs_changed;
        let committed = w.commit().map_err(|e| e.to_string())?;
        self.metrics.batch(
            jobs.len(),
            usize::try_from(committed.count).unwrap_or(usize::MAX),
        );
        if orgs_changed {
            self.org_signature = None;
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Actor, NewEntry};
    use crate::policy::Policies;
    use serde_json::json;

    fn setup() -> (
        tempfile::TempDir,
        WriterHandle,
        std::thread::JoinHandle<()>,
        Arc<Metrics>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("d");
        let l = Ledger::init(&data, "test.example/ledger", Actor::cli("a")).unwrap();
        l.conn()
            .execute_batch(include_str!("../records/schema.sql"))
            .unwrap();
        let authorizer = Authorizer::new(Policies::embedded().unwrap(), l.conn()).unwrap();
        let signer = l.signer().unwrap();
        let metrics = Arc::new(Metrics::default());
        let (h, j) = spawn(l, authorizer, signer, 64, 1024, metrics.clone()).unwrap();
        (dir, h, j, metrics)
    }

    fn note(i: u64) -> NewEntry {
        NewEntry::new(
            "test.note",
            &format!("n/{i}"),
            Actor::cli("u"),
            json!({"i": i}),
        )
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn checkpoint_after_a_rotation_elsewhere_uses_the_new_key() {
        let (dir, h, join, _m) = setup();
        // `djaudit key rotate` in another process, while the writer holds the old key.
        let mut other = Ledger::open(&dir.path().join("d")).unwrap();
        let (new, _) = other.rotate_key(Actor::cli("admin")).unwrap();
        h.submit(|w, _| {
            Ok(w.append(NewEntry::new("test.event", "t/1", Actor::cli("a"), json!({})).unwrap())?)
        })
        .await
        .unwrap();
        let cp = h.checkpoint().await.expect("checkpoint with the new key");
        assert!(crate::ledger::checkpoint::open_checkpoint(&cp.note, &new).is_ok());
        drop(h);
        join.join().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_jobs_are_grouped_and_all_acknowledged() {
        let (dir, h, join, metrics) = setup();
        let mut tasks = Vec::new();
        for i in 0..200u64 {
            let h = h.clone();
            tasks.push(tokio::spawn(async move {
                h.submit(move |w, _| Ok(w.append(note(i))?.seq)).await
            }));
        }
        let mut seqs = Vec::new();
        for t in tasks {
            seqs.push(t.await.unwrap().unwrap());
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=200).collect::<Vec<u64>>());
        let cp = h.checkpoint().await.unwrap();
        assert_eq!(cp.size, 201);
        drop(h);
        join.join().unwrap();
        assert_eq!(metrics.appends(), 200);
        // Fewer transactions than jobs: group commit happened.
        let text = metrics.render();
        let batches: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("djaudit_writer_batches_total "))
            .unwrap()
            .parse()
            .unwrap();
        assert!(batches < 200, "{batches} batches");
        let l = Ledger::open(&dir.path().join("d")).unwrap();
        let report = crate::ledger::verify::verify(&l, Default::default()).unwrap();
        assert!(report.ok, "{:?}", report.failure);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fail_one_job_does_not_poison_the_batch() {
        let (dir, h, join, _m) = setup();
        let mut tasks = Vec::new();
        for i in 0..50u64 {
            let h = h.clone();
            tasks.push(tokio::spawn(async move {
                h.submit(move |w, _| {
                    if i % 10 == 3 {
                        // Fails before appending, after a write a savepoint must undo.
                        w.conn()
                            .execute("CREATE TABLE IF NOT EXISTS scratch(x)", [])?;
                        w.conn()
                            .execute("INSERT INTO scratch VALUES (?1)", [i as i64])?;
                        return Err(JobError::Input(format!("job {i} refused")));
                    }
                    if i % 10 == 7 {
                        // Fails after appending: the batch is rerun job by job.
                        w.append(note(1000 + i))?;
                        return Err(JobError::Conflict(format!("job {i} conflicts")));
                    }
                    Ok(w.append(note(i))?.seq)
                })
                .await
            }));
        }
        let mut ok = 0;
        for (i, t) in tasks.into_iter().enumerate() {
            match t.await.unwrap() {
                Ok(_) => ok += 1,
                Err(WriteError::Job(JobError::Input(m))) => {
                    assert_eq!(i % 10, 3);
                    assert_eq!(m, format!("job {i} refused"));
                }
                Err(WriteError::Job(JobError::Conflict(_))) => assert_eq!(i % 10, 7),
                Err(e) => panic!("job {i}: {e}"),
            }
        }
        assert_eq!(ok, 40);
        drop(h);
        join.join().unwrap();
        let l = Ledger::open(&dir.path().join("d")).unwrap();
        assert_eq!(l.size().unwrap(), 41);
        let scratch: i64 = l
            .conn()
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'scratch'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        if scratch > 0 {
            let rows: i64 = l
                .conn()
                .query_row("SELECT count(*) FROM scratch", [], |r| r.get(0))
                .unwrap();
            assert_eq!(rows, 0);
        }
        let mut bad = 0;
        l.for_each_entry(1, None, |s| {
            let e = crate::ledger::Entry::parse(s.body.as_bytes()).unwrap();
            if e.data["i"].as_u64().unwrap() >= 1000 {
                bad += 1;
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(bad, 0, "an entry of a failed job was committed");
        assert!(
            crate::ledger::verify::verify(&l, Default::default())
                .unwrap()
                .ok
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waits_for_a_cli_writer_holding_the_lock() {
        let (dir, h, join, metrics) = setup();
        let mut other = Ledger::open(&dir.path().join("d")).unwrap();
        let w = other.write().unwrap();
        let h2 = h.clone();
        let pending =
            tokio::spawn(async move { h2.submit(|w, _| Ok(w.append(note(1))?.seq)).await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !pending.is_finished(),
            "appended while another process held the lock"
        );
        drop(w);
        assert_eq!(pending.await.unwrap().unwrap(), 1);
        drop(h);
        join.join().unwrap();
        let _ = metrics;
    }
}
