//! The daemon (`djaudit serve`): an HTTP/JSON API through which the party affairs platform
//! sends every change and every access as it happens, and a scheduler that verifies,
//! checks and checkpoints the ledger without anyone remembering to (DESIGN §9).
//!
//! Shape (after mini-redis `server.rs`): [`run`] takes a bound listener, a validated
//! [`Config`] and a shutdown future. Inside: one writer thread with group commit
//! ([`writer`]), a small pool of read connections used from `spawn_blocking`, the axum
//! router ([`api`]) behind a guard that caps concurrent requests, refuses oversized bodies
//! by `Content-Length`, applies the request timeout and answers 503 once shutdown has
//! begun, the interval scheduler ([`scheduler`]) and the counters of [`metrics`].
//!
//! Shutdown: stop taking new requests (503), let those in flight finish (up to
//! `shutdown_timeout`), stop the scheduler, close the listener, let the writer drain its
//! queue, and sign a final checkpoint.
//!
//! Logs name method, path, status, latency and user; never a request body, a token or a
//! record value.

pub mod api;
pub mod auth;
pub mod config;
pub mod metrics;
pub mod scheduler;
pub mod writer;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;

pub use config::{Config, ConfigError, LogFormat, EXAMPLE};

use crate::ledger::{Ledger, LedgerError};
use crate::policy::{Authorizer, Policies, PolicyError};
use metrics::Metrics;
use writer::WriterHandle;

/// Errors that stop the daemon from starting or end it.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("access policy: {0}")]
    Policy(#[from] PolicyError),
    #[error("storage: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Internal(String),
}

impl DaemonError {
    /// Whether the error is the operator's input (exit 2) rather than storage (exit 3).
    pub fn is_input(&self) -> bool {
        match self {
            DaemonError::Ledger(e) => e.is_input(),
            DaemonError::Policy(_) | DaemonError::Config(_) => true,
            _ => false,
        }
    }
}

/// A fixed set of read connections, opened at startup. Every read runs on the blocking
/// pool, never on the async workers. (Opening a ledger briefly takes the write lock, so
/// readers are never opened while serving: a CLI process holding the lock must not stall
/// reads.)
pub struct ReadPool {
    dir: PathBuf,
    idle: Mutex<Vec<Ledger>>,
    freed: std::sync::Condvar,
}

/// Read connections of the daemon.
const READERS: usize = 8;

impl ReadPool {
    fn open(dir: &Path, n: usize) -> Result<ReadPool, LedgerError> {
        let idle = (0..n.max(1))
            .map(|_| Ledger::open(dir))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ReadPool {
            dir: dir.to_owned(),
            idle: Mutex::new(idle),
            freed: std::sync::Condvar::new(),
        })
    }

    /// Waits for an idle connection.
    fn take(&self) -> Result<Ledger, LedgerError> {
        let poisoned = || LedgerError::Io {
            path: self.dir.clone(),
            source: std::io::Error::other("the read pool is poisoned"),
        };
        let mut idle = self.idle.lock().map_err(|_| poisoned())?;
        loop {
            if let Some(l) = idle.pop() {
                return Ok(l);
            }
            idle = self.freed.wait(idle).map_err(|_| poisoned())?;
        }
    }

    fn give_back(&self, l: Ledger) {
        if let Ok(mut v) = self.idle.lock() {
            v.push(l);
            self.freed.notify_one();
        }
    }

    /// Runs a short read (a point query) at once on the calling thread when a connection is
    /// idle, sparing the hand-off to the blocking pool; otherwise as [`ReadPool::read`].
    pub async fn read_short<R, F>(self: &Arc<Self>, f: F) -> Result<R, LedgerError>
    where
        R: Send + 'static,
        F: FnOnce(&Ledger) -> Result<R, LedgerError> + Send + 'static,
    {
        let idle = self.idle.lock().ok().and_then(|mut v| v.pop());
        match idle {
            Some(l) => {
                let r = f(&l);
                self.give_back(l);
                r
            }
            None => self.read(f).await,
        }
    }

    /// Runs `f` with a read connection on the blocking pool.
    pub async fn read<R, F>(self: &Arc<Self>, f: F) -> Result<R, LedgerError>
    where
        R: Send + 'static,
        F: FnOnce(&Ledger) -> Result<R, LedgerError> + Send + 'static,
    {
        let pool = self.clone();
        tokio::task::spawn_blocking(move || {
            let l = pool.take()?;
            let r = f(&l);
            pool.give_back(l);
            r
        })
        .await
        .map_err(|e| LedgerError::Io {
            path: self.dir.clone(),
            source: std::io::Error::other(format!("a read task failed: {e}")),
        })?
    }
}

/// What every request handler and scheduled task shares.
pub struct AppState {
    pub config: Config,
    pub data: PathBuf,
    pub origin: String,
    pub writer: WriterHandle,
    pub reads: Arc<ReadPool>,
    pub metrics: Arc<Metrics>,
    /// Set when shutdown begins: new requests get 503.
    pub draining: AtomicBool,
    /// Requests being served.
    pub in_flight: AtomicUsize,
    /// Caps concurrent requests.
    pub limit: tokio::sync::Semaphore,
    /// Tokens found live a moment ago.
    pub tokens: auth::TokenCache,
}

impl AppState {
    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

/// Creates the tables the daemon needs besides the ledger's (projection, tokens), if they
/// do not exist yet.
fn prepare_database(ledger: &mut Ledger) -> Result<(), DaemonError> {
    let w = ledger.write()?;
    crate::records::projection::ensure_schema(w.conn())
        .map_err(|e| DaemonError::Internal(e.to_string()))?;
    auth::ensure_table(w.conn())?;
    w.commit()?;
    Ok(())
}

/// Pages of write-ahead log (4 KiB each: 16 MiB) past which the checkpoint thread asks the
/// writer to finish its checkpoint, so that the log restarts.
const WAL_RESTART_PAGES: i64 = 4_096;

/// Pages of write-ahead log (64 MiB) past which the writer checkpoints by itself.
const WAL_LIMIT_PAGES: i64 = 16_384;

/// How often the WAL checkpoint thread copies committed pages into the database.
const WAL_CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// Makes the writer's connection checkpoint the WAL itself once it holds more than
/// `pages` pages (SQLite's own checkpoint at commit), after which the log restarts from
/// its beginning: the bound should [`wal_checkpointer`]'s requests not be served.
fn checkpoint_past(conn: &rusqlite::Connection, pages: i64) -> Result<(), rusqlite::Error> {
    conn.pragma_update(None, "wal_autocheckpoint", pages)
}

/// Copies what it can of the WAL into the database (`PASSIVE`: never waits for the writer or
/// readers); returns the number of pages in the log.
fn checkpoint_wal(conn: &rusqlite::Connection) -> Result<i64, rusqlite::Error> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
}

/// Starts the thread that checkpoints the WAL (`PASSIVE`: never blocks the writer or
/// readers) on a connection of its own, until `stop` is set; a last checkpoint runs then.
/// When the log it has just copied holds more than `restart_pages` pages it asks the
/// writer (`catch_up`) to copy the rest, so that the log restarts.
fn wal_checkpointer(
    ledger: Ledger,
    restart_pages: i64,
    catch_up: impl Fn() + Send + 'static,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, DaemonError> {
    let checkpoint = move || match checkpoint_wal(ledger.conn()) {
        Ok(log) if log > restart_pages => catch_up(),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
    };
    std::thread::Builder::new()
        .name("djaudit-wal".into())
        .spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(WAL_CHECKPOINT_EVERY);
                checkpoint();
            }
            checkpoint();
        })
        .map_err(|source| DaemonError::Io {
            what: "starting the WAL checkpoint thread".into(),
            source,
        })
}

/// Log lines dropped because the log thread fell behind (see [`init_logging`]).
static LOG_DROPPED: std::sync::OnceLock<tracing_appender::non_blocking::ErrorCounter> =
    std::sync::OnceLock::new();

/// Log lines dropped so far because stderr could not take them as fast as they came.
pub fn log_lines_dropped() -> u64 {
    LOG_DROPPED
        .get()
        .map_or(0, |c| u64::try_from(c.dropped_lines()).unwrap_or(u64::MAX))
}

/// Lines of log held for the log thread before further lines are dropped (and counted).
const LOG_QUEUE_LINES: usize = 128_000;

/// Installs the global tracing subscriber on stderr: human-readable or JSON lines, filtered
/// by `RUST_LOG` (default `info`). Lines are formatted on the thread that logs and written by
/// a thread of their own, many lines a write: a request never waits for stderr. Should
/// stderr stall, lines beyond [`LOG_QUEUE_LINES`] are dropped and counted
/// ([`log_lines_dropped`], `djaudit_log_lines_dropped_total`). Keep the returned guard
/// until exit: dropping it writes out the lines still queued. A second call does nothing
/// and returns `None`.
pub fn init_logging(format: LogFormat) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::stderr().is_terminal();
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .lossy(true)
        .thread_name("djaudit-log")
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        ));
    let dropped = writer.error_counter();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    let installed = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    installed.ok()?;
    let _ = LOG_DROPPED.set(dropped);
    Some(guard)
}

/// Runs the daemon on `listener` until `shutdown` completes, then shuts down gracefully.
/// `data` is the ledger's data directory (the config's `data_dir` already applied).
pub async fn run(
    listener: TcpListener,
    config: Config,
    data: PathBuf,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    scheduler::check_supported(&config)?;
    let policy_dir = config.policy_dir.clone();
    let dir = data.clone();
    let (ledger, authorizer, signer, reads, wal) = tokio::task::spawn_blocking(move || {
        let mut ledger = Ledger::open(&dir)?;
        let signer = ledger.signer()?;
        prepare_database(&mut ledger)?;
        let policies = match &policy_dir {
            Some(d) => Policies::from_dir(d)?,
            None => Policies::embedded()?,
        };
        crate::policy::record::ensure_policy_recorded(
            &mut ledger,
            &policies,
            crate::ledger::Actor::system("daemon"),
        )
        .map_err(|e| DaemonError::Internal(format!("recording the policy set: {e}")))?;
        let authorizer = Authorizer::new(policies, ledger.conn())?;
        let reads = ReadPool::open(&dir, READERS)?;
        let wal = Ledger::open(&dir)?;
        Ok::<_, DaemonError>((ledger, authorizer, signer, reads, wal))
    })
    .await
    .map_err(|e| DaemonError::Internal(format!("startup task failed: {e}")))??;
    let origin = ledger.origin().to_owned();
    // WAL checkpoints run on their own thread and connection, so that the writer seldom
    // stalls on copying the log into the database (and its fsync) between batches. Under
    // a steady stream of appends that thread never reaches the log's end, and SQLite
    // restarts the log only once all of it is copied: so past WAL_RESTART_PAGES the thread
    // asks the writer to copy the little it left, and should that not happen the writer
    // checkpoints by itself past WAL_LIMIT_PAGES. Either way the log starts again.
    if let Err(e) = checkpoint_past(ledger.conn(), WAL_LIMIT_PAGES) {
        tracing::warn!(error = %e, "could not set the writer's WAL checkpoint limit");
    }
    let metrics = Arc::new(Metrics::default());
    let (writer, writer_thread) = writer::spawn(
        ledger,
        authorizer,
        signer,
        config.writer.max_batch,
        config.writer.queue,
        metrics.clone(),
    )
    .map_err(|source| DaemonError::Io {
        what: "starting the writer thread".into(),
        source,
    })?;
    let wal_stop = Arc::new(AtomicBool::new(false));
    let wal_writer = writer.clone();
    let wal_thread = match wal_checkpointer(
        wal,
        WAL_RESTART_PAGES,
        move || {
            wal_writer.catch_up_wal();
        },
        wal_stop.clone(),
    ) {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::warn!(error = %e, "no WAL checkpoint thread; the writer checkpoints itself");
            None
        }
    };
    let state = Arc::new(AppState {
        limit: tokio::sync::Semaphore::new(config.max_concurrent_requests),
        tokens: auth::TokenCache::new(config.token_cache),
        config,
        reads: Arc::new(reads),
        data,
        origin,
        writer: writer.clone(),
        metrics,
        draining: AtomicBool::new(false),
        in_flight: AtomicUsize::new(0),
    });

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let scheduler = scheduler::start(state.clone(), stop_rx.clone());
    let addr = listener.local_addr().map_err(|source| DaemonError::Io {
        what: "reading the listening address".into(),
        source,
    })?;
    let app = api::router(state.clone());
    let mut server_stop = stop_rx.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            // Answers are small and sent whole: no waiting to coalesce them (Nagle).
            .tcp_nodelay(true)
            .with_graceful_shutdown(async move {
                let _ = server_stop.wait_for(|s| *s).await;
            })
            .await
    });
    tracing::info!(origin = %state.origin, "listening on {addr}");

    shutdown.await;
    tracing::info!("shutting down: refusing new requests, finishing those in flight");
    state.draining.store(true, Ordering::SeqCst);
    let grace = state.config.shutdown_timeout;
    let deadline = tokio::time::Instant::now() + grace;
    while state.in_flight.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop_tx.send(true);
    for task in scheduler {
        let _ = tokio::time::timeout_at(
            deadline.max(tokio::time::Instant::now() + Duration::from_secs(1)),
            task,
        )
        .await;
    }
    match tokio::time::timeout_at(
        deadline.max(tokio::time::Instant::now() + Duration::from_millis(100)),
        server,
    )
    .await
    {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::error!(error = %e, "server error"),
        Ok(Err(e)) => tracing::error!(error = %e, "server task failed"),
        Err(_) => tracing::warn!("requests still running at the end of the shutdown timeout"),
    }
    let result = match writer.stop().await {
        Ok(cp) => {
            tracing::info!(size = cp.size, "final checkpoint signed");
            Ok(())
        }
        Err(e) => {
            tracing::error!(error = %e, "final checkpoint failed");
            Err(DaemonError::Internal(format!(
                "final checkpoint failed: {e}"
            )))
        }
    };
    let _ = tokio::task::spawn_blocking(move || writer_thread.join()).await;
    wal_stop.store(true, Ordering::SeqCst);
    if let Some(t) = wal_thread {
        let _ = tokio::task::spawn_blocking(move || t.join()).await;
    }
    tracing::info!("stopped");
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Actor, NewEntry};

    fn entry(b: u64, i: u64) -> NewEntry {
        NewEntry::new(
            "test.event",
            &format!("thing/{b}/{i}"),
            Actor::cli("u1"),
            serde_json::json!({"text": "x".repeat(200)}),
        )
        .unwrap()
    }

    fn ledger() -> (tempfile::TempDir, PathBuf, Ledger) {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("d");
        let l = Ledger::init(&data, "test.example/ledger", Actor::cli("a")).unwrap();
        (dir, data, l)
    }

    /// Appends `batches` transactions of 20 entries, as the daemon's writer commits them.
    fn append_batches(l: &mut Ledger, batches: u64) {
        for b in 0..batches {
            let mut w = l.write().unwrap();
            for i in 0..20 {
                w.append(entry(b, i)).unwrap();
            }
            w.commit().unwrap();
        }
    }

    fn wal_len(data: &Path) -> u64 {
        std::fs::metadata(data.join("ledger.db-wal")).map_or(0, |m| m.len())
    }

    /// How often the log restarted: its header's checkpoint sequence number.
    fn wal_restarts(data: &Path) -> u32 {
        let head = std::fs::read(data.join("ledger.db-wal")).unwrap_or_default();
        head.get(12..16)
            .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Bytes of WAL that `pages` pages and the batch that crossed them take.
    fn bound(pages: i64) -> u64 {
        (pages as u64 + 64) * (4096 + 24)
    }

    /// Under appends without a pause the checkpoint thread alone never lets the log
    /// restart (it grows past 30 MiB here without a limit); the writer's own checkpoint
    /// past the limit keeps it bounded.
    #[test]
    fn wal_stays_bounded_under_appends_without_a_pause() {
        let (_dir, data, mut l) = ledger();
        let limit = 64;
        checkpoint_past(l.conn(), limit).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let thread =
            wal_checkpointer(Ledger::open(&data).unwrap(), i64::MAX, || {}, stop.clone()).unwrap();
        let mut largest = 0;
        // About 8 MiB of log.
        for _ in 0..1000 {
            append_batches(&mut l, 1);
            largest = largest.max(wal_len(&data));
        }
        stop.store(true, Ordering::SeqCst);
        thread.join().unwrap();
        assert!(largest <= bound(limit), "WAL grew to {largest} bytes");
        assert!(
            wal_restarts(&data) >= 2,
            "restarts: {}",
            wal_restarts(&data)
        );
        assert_eq!(l.size().unwrap(), 20_001);
    }

    /// The checkpoint thread asks for the rest to be copied once the log it has copied is
    /// longer than the given number of pages, and not before.
    #[test]
    fn checkpoint_thread_asks_past_the_restart_length() {
        let (_dir, data, mut l) = ledger();
        checkpoint_past(l.conn(), 0).unwrap();
        let asked = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let count = asked.clone();
        let thread = wal_checkpointer(
            Ledger::open(&data).unwrap(),
            256,
            move || {
                count.fetch_add(1, Ordering::SeqCst);
            },
            stop.clone(),
        )
        .unwrap();
        append_batches(&mut l, 2); // a few pages
        std::thread::sleep(WAL_CHECKPOINT_EVERY * 2);
        assert_eq!(asked.load(Ordering::SeqCst), 0);
        append_batches(&mut l, 100); // past 256 pages
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while asked.load(Ordering::SeqCst) == 0 {
            assert!(std::time::Instant::now() < deadline, "never asked");
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::SeqCst);
        thread.join().unwrap();
    }

    /// Asked to catch up, the writer copies the rest of the log between batches and the
    /// log restarts at its next write; unasked (and without a limit) it does not.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writer_asked_to_catch_up_restarts_the_log() {
        let (_dir, data, l) = ledger();
        l.conn()
            .execute_batch(include_str!("../records/schema.sql"))
            .unwrap();
        checkpoint_past(l.conn(), 0).unwrap();
        let authorizer = Authorizer::new(Policies::embedded().unwrap(), l.conn()).unwrap();
        let signer = l.signer().unwrap();
        let (h, join) = writer::spawn(
            l,
            authorizer,
            signer,
            64,
            1024,
            Arc::new(Metrics::default()),
        )
        .unwrap();
        let append = |b: u64| {
            let h = h.clone();
            async move {
                for i in 0..20 {
                    let e = entry(b, i);
                    h.submit(move |w, _| Ok(w.append_ref(&e)?.seq))
                        .await
                        .unwrap();
                }
            }
        };
        for b in 0..5 {
            append(b).await;
        }
        assert_eq!(wal_restarts(&data), 0);
        assert!(h.catch_up_wal());
        append(6).await;
        assert_eq!(wal_restarts(&data), 1);
        h.stop().await.unwrap();
        drop(h);
        tokio::task::spawn_blocking(move || join.join().unwrap())
            .await
            .unwrap();
    }
}
