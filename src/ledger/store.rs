//! SQLite storage of one ledger: entries, Merkle nodes, checkpoints.
//!
//! One database file per ledger (`<data>/ledger.db`) beside its signing key
//! (`<data>/signing.key`). WAL, `synchronous=FULL`, writers take `BEGIN IMMEDIATE`, so any
//! number of processes append without forking the chain. Triggers abort every `UPDATE` and
//! `DELETE` on the ledger tables. Other modules write their projection rows through
//! [`WriteTx::conn`] in the same transaction as the entries that change them.
//!
//! This module never rewrites or deletes a ledger row.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde_json::json;

use super::checkpoint::Checkpoint;
use super::entry::{self, Actor, Entry, EntryError, NewEntry, GENESIS_KIND, ZERO_PREV};
use super::keys;
use super::merkle::{self, Hash, NodeSource};
use super::note::{Signer, VerifierKey};
use super::proof::{ConsistencyProof, InclusionProof};

/// File name of the ledger database inside the data directory.
pub const DB_FILE: &str = "ledger.db";
/// File name of the signing key inside the data directory.
pub const KEY_FILE: &str = "signing.key";

/// Levels of stored Merkle nodes are multiples of this (C2SP tlog-tiles height).
pub const TILE_HEIGHT: u32 = 8;

/// The schema migrations of the ledger tables, applied in order; `PRAGMA user_version`
/// holds how many have run.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE entry (
    seq       INTEGER PRIMARY KEY,
    body      TEXT    NOT NULL,
    leaf_hash BLOB    NOT NULL,
    kind      TEXT    NOT NULL,
    subject   TEXT    NOT NULL,
    actor     TEXT    NOT NULL
);
CREATE INDEX entry_subject ON entry(subject, seq);
CREATE TABLE merkle_node (
    level INTEGER NOT NULL,
    idx   INTEGER NOT NULL,
    hash  BLOB    NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
CREATE TABLE checkpoint (
    size    INTEGER PRIMARY KEY,
    root    BLOB    NOT NULL,
    note    TEXT    NOT NULL
);
CREATE TABLE ledger_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TRIGGER entry_no_update BEFORE UPDATE ON entry
    BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END;
CREATE TRIGGER entry_no_delete BEFORE DELETE ON entry
    BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END;
CREATE TRIGGER merkle_no_update BEFORE UPDATE ON merkle_node
    BEGIN SELECT RAISE(ABORT, 'ledger Merkle nodes are append-only'); END;
CREATE TRIGGER merkle_no_delete BEFORE DELETE ON merkle_node
    BEGIN SELECT RAISE(ABORT, 'ledger Merkle nodes are append-only'); END;
CREATE TRIGGER checkpoint_no_update BEFORE UPDATE ON checkpoint
    BEGIN SELECT RAISE(ABORT, 'ledger checkpoints are append-only'); END;
CREATE TRIGGER checkpoint_no_delete BEFORE DELETE ON checkpoint
    BEGIN SELECT RAISE(ABORT, 'ledger checkpoints are append-only'); END;
CREATE TRIGGER meta_no_update BEFORE UPDATE ON ledger_meta
    BEGIN SELECT RAISE(ABORT, 'ledger metadata is write-once'); END;
CREATE TRIGGER meta_no_delete BEFORE DELETE ON ledger_meta
    BEGIN SELECT RAISE(ABORT, 'ledger metadata is write-once'); END;
"#,
    r#"
-- Key rotations, found without walking every entry: a partial index (nothing for other kinds).
CREATE INDEX entry_key_rotate ON entry(seq) WHERE kind = 'key.rotate';
"#,
];

/// Errors of the ledger store.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("no ledger at `{0}`; create one with `djaudit init --origin NAME`")]
    NotFound(PathBuf),
    #[error("a ledger already exists at `{0}`")]
    AlreadyExists(PathBuf),
    #[error("invalid origin `{0}`: expected a name such as `example.com/party-ledger` (no spaces or `+`)")]
    BadOrigin(String),
    #[error("entry {seq} does not exist; the ledger has {size} entries")]
    UnknownSeq { seq: u64, size: u64 },
    #[error("tree size {size} is out of range; the ledger has {ledger_size} entries")]
    BadSize { size: u64, ledger_size: u64 },
    #[error(
        "ledger database was written by a newer djaudit (schema {found}, this build knows {known})"
    )]
    NewerSchema { found: i64, known: i64 },
    #[error("ledger is damaged: {0}; run `djaudit verify`")]
    Damaged(String),
    #[error("the signing key in use is not the ledger's current key (it was rotated with `djaudit key rotate`); load the key again")]
    KeyRotated,
    #[error(transparent)]
    Entry(#[from] EntryError),
    #[error(transparent)]
    Key(#[from] keys::KeyError),
    #[error("storage: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("i/o on `{path}`: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl LedgerError {
    /// Whether the error is the user's input (exit 2) rather than storage or internal (exit 3).
    pub fn is_input(&self) -> bool {
        matches!(
            self,
            LedgerError::NotFound(_)
                | LedgerError::AlreadyExists(_)
                | LedgerError::BadOrigin(_)
                | LedgerError::UnknownSeq { .. }
                | LedgerError::BadSize { .. }
                | LedgerError::Entry(_)
                | LedgerError::Key(_)
        )
    }
}

type Result<T, E = LedgerError> = std::result::Result<T, E>;

/// An open ledger.
pub struct Ledger {
    conn: Connection,
    dir: PathBuf,
    origin: String,
    /// The key named by the genesis entry: the root every rotation is verified from.
    genesis_vkey: VerifierKey,
    /// The key that signs new checkpoints: the genesis key, or the key of the latest
    /// `key.rotate` entry (as of opening or of the last rotation through this handle).
    vkey: VerifierKey,
}

/// File the next signing key is written to during a rotation, until it replaces the key.
pub const NEXT_KEY_FILE: &str = "signing.key.next";

/// The `key.rotate` entries below seq `?1`, newest first. The kind is a literal so that the
/// partial index `entry_key_rotate` serves; the body's own kind must agree with the column.
const ROTATIONS_SQL: &str = "SELECT body FROM entry WHERE kind = 'key.rotate' AND seq < ?1 \
     AND json_extract(body, '$.kind') = 'key.rotate' ORDER BY seq DESC";

/// The key a `key.rotate` entry's body names (`data.vkey`), if it names a well-formed one.
fn named_key(body: &str) -> Option<VerifierKey> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    VerifierKey::parse(value.pointer("/data/vkey")?.as_str()?).ok()
}

/// The key named by the latest `key.rotate` entry below seq `before` (all when `None`).
fn rotated_key(conn: &Connection, before: Option<u64>) -> Result<Option<VerifierKey>> {
    let before = before.map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX));
    let mut stmt = conn.prepare_cached(ROTATIONS_SQL)?;
    let mut rows = stmt.query([before])?;
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    let body: String = row.get(0)?;
    named_key(&body).map(Some).ok_or_else(|| {
        LedgerError::Damaged("the latest key.rotate entry names no well-formed key".into())
    })
}

/// Every key the `key.rotate` entries name, newest first, unverified (verification checks
/// each rotation's signature where it meets it); malformed ones are left out.
pub(crate) fn rotation_keys(conn: &Connection) -> Result<Vec<VerifierKey>> {
    let mut stmt = conn.prepare_cached(ROTATIONS_SQL)?;
    let bodies = stmt.query_map([i64::MAX], |r| r.get::<_, String>(0))?;
    let mut keys = Vec::new();
    for body in bodies {
        keys.extend(named_key(&body?));
    }
    Ok(keys)
}

/// One appended entry, as the writer saw it.
#[derive(Debug, Clone)]
pub struct Appended {
    pub seq: u64,
    pub leaf_hash: Hash,
    pub ts: String,
}

/// A stored entry row as read back.
#[derive(Debug, Clone)]
pub struct StoredEntry {
    pub seq: u64,
    /// The canonical bytes, exactly as hashed.
    pub body: String,
    pub leaf_hash: Hash,
}

/// Filters of `log`.
#[derive(Debug, Default, Clone)]
pub struct LogFilter {
    pub since: Option<String>,
    pub until: Option<String>,
    pub kind: Option<String>,
    pub subject: Option<String>,
    pub actor: Option<String>,
    pub from_seq: Option<u64>,
    pub to_seq: Option<u64>,
}

/// A stored checkpoint.
#[derive(Debug, Clone)]
pub struct StoredCheckpoint {
    pub size: u64,
    pub root: Hash,
    /// The signed note text.
    pub note: String,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LedgerError + '_ {
    move |source| LedgerError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Opens a connection with the pragmas every ledger connection uses.
fn connect(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(60))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

/// Applies the migrations that have not run yet.
fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(LedgerError::NewerSchema {
            found: version,
            known,
        });
    }
    for sql in MIGRATIONS.iter().skip(version as usize) {
        tx.execute_batch(sql)?;
    }
    tx.pragma_update(None, "user_version", known)?;
    tx.commit()?;
    Ok(())
}

/// Checks that an origin is usable as a C2SP note and key name.
pub fn valid_origin(origin: &str) -> bool {
    entry::valid_name(origin) && !origin.contains('+')
}

impl Ledger {
    /// Creates a ledger in `dir`: signing key (mode 0600), database, genesis entry and a
    /// first checkpoint.
    pub fn init(dir: &Path, origin: &str, actor: Actor) -> Result<Ledger> {
        if !valid_origin(origin) {
            return Err(LedgerError::BadOrigin(origin.to_owned()));
        }
        let db = dir.join(DB_FILE);
        let key = dir.join(KEY_FILE);
        if db.exists() || key.exists() {
            return Err(LedgerError::AlreadyExists(dir.to_owned()));
        }
        create_private_dir(dir)?;
        keys::create_key_file(&key)?;
        let signer = keys::load_signer(&key, origin)?;
        let vkey = signer.verifier_key();
        let mut conn = connect(&db)?;
        migrate(&mut conn)?;
        let mut ledger = Ledger {
            conn,
            dir: dir.to_owned(),
            origin: origin.to_owned(),
            genesis_vkey: vkey.clone(),
            vkey: vkey.clone(),
        };
        {
            let mut w = ledger.write()?;
            w.tx.execute(
                "INSERT INTO ledger_meta(key, value) VALUES ('origin', ?1), ('vkey', ?2)",
                params![origin, vkey.to_string()],
            )?;
            w.append(NewEntry::new(
                GENESIS_KIND,
                "ledger",
                actor,
                json!({
                    "origin": origin,
                    "vkey": vkey.to_string(),
                    "format": entry::FORMAT_VERSION,
                    "hash": "sha256",
                    "signature": "ed25519",
                }),
            )?)?;
            w.commit()?;
        }
        ledger.checkpoint_with(&signer)?;
        Ok(ledger)
    }

    /// Opens an existing ledger.
    pub fn open(dir: &Path) -> Result<Ledger> {
        let db = dir.join(DB_FILE);
        if !db.is_file() {
            return Err(LedgerError::NotFound(dir.to_owned()));
        }
        let mut conn = connect(&db)?;
        migrate(&mut conn)?;
        let meta = |key: &str| -> Result<String> {
            conn.query_row("SELECT value FROM ledger_meta WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?
            .ok_or_else(|| LedgerError::Damaged(format!("ledger metadata `{key}` is missing")))
        };
        let origin = meta("origin")?;
        let vkey_text = meta("vkey")?;
        let genesis_vkey = VerifierKey::parse(&vkey_text)
            .map_err(|e| LedgerError::Damaged(format!("stored verifier key: {e}")))?;
        let vkey = rotated_key(&conn, None)?.unwrap_or_else(|| genesis_vkey.clone());
        Ok(Ledger {
            conn,
            dir: dir.to_owned(),
            origin,
            genesis_vkey,
            vkey,
        })
    }

    /// The log's origin (its name in checkpoints and keys).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The verifier key of the key that signs new checkpoints: the one recorded when the
    /// ledger was created, or the one the latest `key.rotate` entry introduced.
    pub fn verifier_key(&self) -> &VerifierKey {
        &self.vkey
    }

    /// The verifier key named by the genesis entry, from which rotations are verified.
    pub fn genesis_key(&self) -> &VerifierKey {
        &self.genesis_vkey
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Read access to the database (projection queries, reports).
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Mutable access for callers that open their own read transactions.
    pub fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// Loads the signing key; refuses a key readable by others. The key must be the
    /// ledger's current one (read afresh: another process may have rotated it). A rotation
    /// cut short after its entry was committed left the new key in [`NEXT_KEY_FILE`]; it is
    /// put in place here.
    pub fn signer(&self) -> Result<Signer> {
        let current = rotated_key(&self.conn, None)?.unwrap_or_else(|| self.genesis_vkey.clone());
        let path = self.dir.join(KEY_FILE);
        let signer = keys::load_signer(&path, &self.origin)?;
        if signer.verifier_key() == current {
            return Ok(signer);
        }
        let next = self.dir.join(NEXT_KEY_FILE);
        if next.exists() {
            let pending = keys::load_signer(&next, &self.origin)?;
            if pending.verifier_key() == current {
                std::fs::rename(&next, &path).map_err(io_err(&path))?;
                return Ok(pending);
            }
        }
        Err(LedgerError::Damaged(
            "the signing key does not match the key recorded in the ledger".into(),
        ))
    }

    /// Hands signing over to a new key: writes it to [`NEXT_KEY_FILE`] (mode 0600), appends
    /// a `key.rotate` entry naming it, signed by the current key over
    /// [`keys::rotation_message`], puts the new key in place of the old one (which is gone
    /// afterwards) and signs a checkpoint with it. Returns the new verifier key and the
    /// checkpoint.
    pub fn rotate_key(&mut self, actor: Actor) -> Result<(VerifierKey, StoredCheckpoint)> {
        let old = self.signer()?;
        let next = self.dir.join(NEXT_KEY_FILE);
        let key_path = self.dir.join(KEY_FILE);
        let origin = self.origin.clone();
        let genesis = self.genesis_vkey.clone();
        let new = {
            // Everything from here to the commit holds the write lock, so that two rotations
            // cannot interleave: the second finds the key changed and stops.
            let mut w = self.write()?;
            let current = rotated_key(&w.tx, None)?.unwrap_or(genesis);
            if current != old.verifier_key() {
                return Err(LedgerError::KeyRotated);
            }
            if next.exists() {
                // Under the lock and with the key unchanged, a next key file is what a
                // rotation left that never committed its entry: not a key anyone uses.
                std::fs::remove_file(&next).map_err(io_err(&next))?;
            }
            keys::create_key_file(&next)?;
            let new = keys::load_signer(&next, &origin)?;
            let message = keys::rotation_message(
                &origin,
                w.next_seq(),
                &entry::hex_hash(&w.prev),
                &new.verifier_key().to_string(),
            );
            let signature = base64::engine::general_purpose::STANDARD
                .encode(old.sign_bytes(message.as_bytes()));
            w.append(NewEntry::new(
                entry::KEY_ROTATE_KIND,
                "ledger",
                actor,
                json!({
                    "vkey": new.verifier_key().to_string(),
                    "previous": old.verifier_key().to_string(),
                    "signature": signature,
                }),
            )?)?;
            w.commit()?;
            new
        };
        let new_vkey = new.verifier_key();
        if let Err(e) = std::fs::rename(&next, &key_path) {
            // Another process loading the key may have completed the move already.
            let moved = e.kind() == std::io::ErrorKind::NotFound
                && keys::load_signer(&key_path, &origin)
                    .is_ok_and(|k| k.verifier_key() == new_vkey);
            if !moved {
                return Err(io_err(&key_path)(e));
            }
        }
        self.vkey = new_vkey.clone();
        let cp = self.checkpoint_with(&new)?;
        Ok((new_vkey, cp))
    }

    /// Number of entries.
    pub fn size(&self) -> Result<u64> {
        tree_size(&self.conn)
    }

    /// Starts a write: takes the database write lock (`BEGIN IMMEDIATE`) and reads the tail.
    pub fn write(&mut self) -> Result<WriteTx<'_>> {
        WriteTx::begin(&mut self.conn)
    }

    /// Appends one entry in its own transaction.
    pub fn append(&mut self, e: NewEntry) -> Result<Appended> {
        let mut w = self.write()?;
        let a = w.append(e)?;
        w.commit()?;
        Ok(a)
    }

    /// Reads one entry.
    pub fn entry(&self, seq: u64) -> Result<StoredEntry> {
        let row = self
            .conn
            .query_row(
                "SELECT seq, body, leaf_hash FROM entry WHERE seq = ?1",
                [seq as i64],
                stored_row,
            )
            .optional()?;
        match row {
            Some(r) => r,
            None => Err(LedgerError::UnknownSeq {
                seq,
                size: self.size()?,
            }),
        }
    }

    /// Streams entries with `from <= seq < to`, in order, in constant memory.
    pub fn for_each_entry(
        &self,
        from: u64,
        to: Option<u64>,
        mut f: impl FnMut(StoredEntry) -> Result<()>,
    ) -> Result<()> {
        let to = to.unwrap_or(i64::MAX as u64).min(i64::MAX as u64);
        let mut stmt = self.conn.prepare(
            "SELECT seq, body, leaf_hash FROM entry WHERE seq >= ?1 AND seq < ?2 ORDER BY seq",
        )?;
        let mut rows = stmt.query(params![from.min(i64::MAX as u64) as i64, to as i64])?;
        while let Some(row) = rows.next()? {
            f(stored_row(row)??)?;
        }
        Ok(())
    }

    /// Streams the entries that pass `filter`, in seq order.
    pub fn query(&self, filter: &LogFilter, mut f: impl FnMut(Entry) -> Result<()>) -> Result<()> {
        let from = match &filter.since {
            Some(ts) => self.first_seq_at_or_after(ts)?,
            None => 0,
        }
        .max(filter.from_seq.unwrap_or(0));
        let to = match &filter.until {
            Some(ts) => self.first_seq_at_or_after_exclusive(ts)?,
            None => u64::MAX,
        }
        .min(filter.to_seq.map_or(u64::MAX, |t| t.saturating_add(1)));
        let mut sql =
            String::from("SELECT seq, body, leaf_hash FROM entry WHERE seq >= ?1 AND seq < ?2");
        let mut args: Vec<rusqlite::types::Value> = vec![
            (from.min(i64::MAX as u64) as i64).into(),
            (to.min(i64::MAX as u64) as i64).into(),
        ];
        if let Some(k) = &filter.kind {
            if let Some(prefix) = k.strip_suffix(".*") {
                sql.push_str(&format!(
                    " AND substr(kind, 1, {}) = ?{}",
                    prefix.len() + 1,
                    args.len() + 1
                ));
                args.push(format!("{prefix}.").into());
            } else {
                sql.push_str(&format!(" AND kind = ?{}", args.len() + 1));
                args.push(k.clone().into());
            }
        }
        if let Some(s) = &filter.subject {
            sql.push_str(&format!(" AND subject = ?{}", args.len() + 1));
            args.push(s.clone().into());
        }
        if let Some(a) = &filter.actor {
            sql.push_str(&format!(" AND actor = ?{}", args.len() + 1));
            args.push(a.clone().into());
        }
        sql.push_str(" ORDER BY seq");
        let mut stmt = self.conn.prepare(&sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
        while let Some(row) = rows.next()? {
            let stored = stored_row(row)??;
            let e = Entry::parse(stored.body.as_bytes()).map_err(|err| {
                LedgerError::Damaged(format!("entry {} does not parse: {err}", stored.seq))
            })?;
            f(e)?;
        }
        Ok(())
    }

    /// The first seq whose `ts` is `>= ts` (timestamps never decrease, so a binary search).
    fn first_seq_at_or_after(&self, ts: &str) -> Result<u64> {
        self.partition_point(|t| t < ts)
    }

    /// The first seq whose `ts` is `> ts`.
    fn first_seq_at_or_after_exclusive(&self, ts: &str) -> Result<u64> {
        self.partition_point(|t| t <= ts)
    }

    fn partition_point(&self, mut before: impl FnMut(&str) -> bool) -> Result<u64> {
        let (mut lo, mut hi) = (0u64, self.size()?);
        let mut stmt = self
            .conn
            .prepare("SELECT json_extract(body, '$.ts') FROM entry WHERE seq = ?1")?;
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let ts: Option<String> = stmt
                .query_row([mid as i64], |r| r.get(0))
                .optional()?
                .flatten();
            let ts =
                ts.ok_or_else(|| LedgerError::Damaged(format!("entry {mid} has no timestamp")))?;
            if before(&ts) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// Merkle root of the first `size` entries.
    pub fn root(&self, size: u64) -> Result<Hash> {
        self.snapshot(|conn| {
            let ledger_size = tree_size(conn)?;
            if size > ledger_size {
                return Err(LedgerError::BadSize { size, ledger_size });
            }
            merkle::root(&DbNodes(conn), size).map_err(merkle_err)
        })
    }

    /// Runs `read` in one read transaction, so that the size, the nodes and the entries it
    /// reads are of one state of the ledger (and the read lock is taken once, not once a
    /// statement). Inside a transaction the caller already holds, runs it in that one.
    fn snapshot<T>(&self, read: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        if !self.conn.is_autocommit() {
            return read(&self.conn);
        }
        let tx = self.conn.unchecked_transaction()?;
        let out = read(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// RFC 9162 inclusion proof of entry `index` in the tree of `size` entries.
    pub fn inclusion_proof(&self, index: u64, size: Option<u64>) -> Result<InclusionProof> {
        self.snapshot(|conn| {
            let ledger_size = tree_size(conn)?;
            let size = size.unwrap_or(ledger_size);
            if size > ledger_size || size == 0 {
                return Err(LedgerError::BadSize { size, ledger_size });
            }
            if index >= size {
                return Err(LedgerError::UnknownSeq { seq: index, size });
            }
            let src = merkle::Tiled::new(DbNodes(conn), size);
            let path = merkle::inclusion_proof(&src, index, size).map_err(merkle_err)?;
            let leaf = leaf_at(&src, index)?;
            // The path determines the root; no second walk over the tree is needed.
            let root = merkle::root_from_inclusion(&leaf, index, size, &path).ok_or_else(|| {
                LedgerError::Damaged(format!(
                    "inclusion path of entry {index} does not fit size {size}"
                ))
            })?;
            Ok(InclusionProof {
                leaf_index: index,
                tree_size: size,
                leaf_hash: leaf,
                root,
                path,
            })
        })
    }

    /// RFC 9162 consistency proof between tree sizes `old` and `new`.
    pub fn consistency_proof(&self, old: u64, new: Option<u64>) -> Result<ConsistencyProof> {
        self.snapshot(|conn| {
            let ledger_size = tree_size(conn)?;
            let new = new.unwrap_or(ledger_size);
            if new > ledger_size {
                return Err(LedgerError::BadSize {
                    size: new,
                    ledger_size,
                });
            }
            if old == 0 || old > new {
                return Err(LedgerError::BadSize {
                    size: old,
                    ledger_size: new,
                });
            }
            let src = merkle::Tiled::new(DbNodes(conn), new);
            let path = merkle::consistency_proof(&src, old, new).map_err(merkle_err)?;
            Ok(ConsistencyProof {
                old_size: old,
                new_size: new,
                old_root: merkle::root(&src, old).map_err(merkle_err)?,
                new_root: merkle::root(&src, new).map_err(merkle_err)?,
                path,
            })
        })
    }

    /// Signs and stores a checkpoint of the current tree; returns the signed note.
    pub fn checkpoint(&mut self) -> Result<StoredCheckpoint> {
        let signer = self.signer()?;
        self.checkpoint_with(&signer)
    }

    /// Signs and stores a checkpoint with a signer already loaded.
    pub fn checkpoint_with(&mut self, signer: &Signer) -> Result<StoredCheckpoint> {
        // Read size and root inside one read transaction so they agree.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let size = tree_size(&tx)?;
        let in_effect = rotated_key(&tx, Some(size))?.unwrap_or_else(|| self.genesis_vkey.clone());
        if signer.verifier_key() != in_effect {
            return Err(LedgerError::KeyRotated);
        }
        if let Some(existing) = tx
            .query_row(
                "SELECT size, root, note FROM checkpoint WHERE size = ?1",
                [size as i64],
                checkpoint_row,
            )
            .optional()?
        {
            return existing;
        }
        let root = merkle::root(&DbNodes(&tx), size).map_err(merkle_err)?;
        let cp = Checkpoint::new(&self.origin, size, root)
            .map_err(|e| LedgerError::Damaged(format!("checkpoint: {e}")))?;
        let note = cp
            .sign(signer)
            .map_err(|e| LedgerError::Damaged(format!("signing the checkpoint: {e}")))?;
        tx.execute(
            "INSERT INTO checkpoint(size, root, note) VALUES (?1, ?2, ?3)",
            params![size as i64, &root[..], note],
        )?;
        tx.commit()?;
        Ok(StoredCheckpoint { size, root, note })
    }

    /// The latest stored checkpoint.
    pub fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>> {
        self.conn
            .query_row(
                "SELECT size, root, note FROM checkpoint ORDER BY size DESC LIMIT 1",
                [],
                checkpoint_row,
            )
            .optional()?
            .transpose()
    }

    /// Streams stored checkpoints in size order.
    pub fn for_each_checkpoint(
        &self,
        mut f: impl FnMut(StoredCheckpoint) -> Result<()>,
    ) -> Result<()> {
        let mut stmt = self
            .conn
            .prepare("SELECT size, root, note FROM checkpoint ORDER BY size")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            f(checkpoint_row(row)??)?;
        }
        Ok(())
    }

    /// A stored Merkle node, if present.
    pub fn stored_node(&self, level: u32, idx: u64) -> Result<Option<Hash>> {
        stored_node(&self.conn, level, idx)
    }
}

fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(dir))
}

fn merkle_err<E: std::error::Error>(e: E) -> LedgerError {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    LedgerError::Damaged(format!("merkle tree: {msg}"))
}

fn stored_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<StoredEntry>> {
    let seq: i64 = row.get(0)?;
    let body: String = row.get(1)?;
    let leaf: Vec<u8> = row.get(2)?;
    Ok(match <[u8; 32]>::try_from(leaf.as_slice()) {
        Ok(leaf_hash) => Ok(StoredEntry {
            seq: seq as u64,
            body,
            leaf_hash,
        }),
        Err(_) => Err(LedgerError::Damaged(format!(
            "entry {seq} has a stored leaf hash of {} bytes",
            leaf.len()
        ))),
    })
}

fn checkpoint_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<StoredCheckpoint>> {
    let size: i64 = row.get(0)?;
    let root: Vec<u8> = row.get(1)?;
    let note: String = row.get(2)?;
    Ok(match <[u8; 32]>::try_from(root.as_slice()) {
        Ok(root) => Ok(StoredCheckpoint {
            size: size as u64,
            root,
            note,
        }),
        Err(_) => Err(LedgerError::Damaged(format!(
            "checkpoint at size {size} has a root of {} bytes",
            root.len()
        ))),
    })
}

/// The stored leaf hash of entry `index`, through `src` (which has it in its tile when a
/// proof for the entry was just made).
fn leaf_at(src: &impl NodeSource<Error = LedgerError>, index: u64) -> Result<Hash> {
    src.leaves(index, index + 1)?
        .first()
        .copied()
        .ok_or_else(|| LedgerError::Damaged(format!("the leaf hash of entry {index} is missing")))
}

fn tree_size(conn: &Connection) -> Result<u64> {
    let max: Option<i64> = conn.query_row("SELECT max(seq) FROM entry", [], |r| r.get(0))?;
    Ok(max.map_or(0, |m| m as u64 + 1))
}

fn stored_node(conn: &Connection, level: u32, idx: u64) -> Result<Option<Hash>> {
    let h: Option<Vec<u8>> = conn
        .query_row(
            "SELECT hash FROM merkle_node WHERE level = ?1 AND idx = ?2",
            params![level, idx as i64],
            |r| r.get(0),
        )
        .optional()?;
    h.map(|h| {
        <[u8; 32]>::try_from(h.as_slice())
            .map_err(|_| LedgerError::Damaged(format!("merkle node ({level}, {idx}) is malformed")))
    })
    .transpose()
}

/// Merkle nodes read from the database.
pub(crate) struct DbNodes<'c>(pub(crate) &'c Connection);

impl NodeSource for DbNodes<'_> {
    type Error = LedgerError;

    fn leaves(&self, lo: u64, hi: u64) -> Result<Vec<Hash>> {
        let mut stmt = self.0.prepare_cached(
            "SELECT leaf_hash FROM entry WHERE seq >= ?1 AND seq < ?2 ORDER BY seq",
        )?;
        let rows = stmt.query_map(params![lo as i64, hi as i64], |r| r.get::<_, Vec<u8>>(0))?;
        collect_hashes(rows, hi - lo, || format!("leaves {lo}..{hi}"))
    }

    fn stored_nodes(&self, level: u32, lo: u64, hi: u64) -> Result<Vec<Hash>> {
        let mut stmt = self.0.prepare_cached(
            "SELECT hash FROM merkle_node WHERE level = ?1 AND idx >= ?2 AND idx < ?3 ORDER BY idx",
        )?;
        let rows = stmt.query_map(params![level, lo as i64, hi as i64], |r| {
            r.get::<_, Vec<u8>>(0)
        })?;
        collect_hashes(rows, hi - lo, || {
            format!("merkle nodes at level {level}, {lo}..{hi}")
        })
    }
}

fn collect_hashes(
    rows: impl Iterator<Item = rusqlite::Result<Vec<u8>>>,
    expected: u64,
    what: impl Fn() -> String,
) -> Result<Vec<Hash>> {
    let mut out = Vec::with_capacity(expected.min(1 << 16) as usize);
    for row in rows {
        let h = row?;
        out.push(
            <[u8; 32]>::try_from(h.as_slice())
                .map_err(|_| LedgerError::Damaged(format!("{} has a malformed hash", what())))?,
        );
    }
    if out.len() as u64 != expected {
        return Err(LedgerError::Damaged(format!("{} are missing", what())));
    }
    Ok(out)
}

/// An open write transaction: entries appended here and projection rows written through
/// [`WriteTx::conn`] commit together or not at all. Dropping it without `commit` rolls back.
pub struct WriteTx<'c> {
    tx: rusqlite::Transaction<'c>,
    next_seq: u64,
    prev: Hash,
    last_ts: String,
    clock: Clock,
    buf: String,
    first: Option<u64>,
    count: u64,
    /// Leaf hashes of the current bottom tile appended in this transaction; when it holds
    /// the whole tile, its node is computed without reading the leaves back.
    tile: Vec<Hash>,
}

/// What a committed write appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Committed {
    /// Seq of the first entry appended, if any.
    pub first: Option<u64>,
    /// Number of entries appended.
    pub count: u64,
}

impl Committed {
    /// Seq of the last entry appended, if any.
    pub fn last(&self) -> Option<u64> {
        self.first.map(|f| f + self.count - 1)
    }
}

/// Entry timestamps, formatted at most once per millisecond.
struct Clock {
    millis: i64,
    text: String,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            millis: i64::MIN,
            text: String::new(),
        }
    }

    fn now(&mut self) -> &str {
        let now = chrono::Utc::now();
        let millis = now.timestamp_millis();
        if millis != self.millis {
            self.millis = millis;
            self.text = now.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
        }
        &self.text
    }
}

impl<'c> WriteTx<'c> {
    fn begin(conn: &'c mut Connection) -> Result<WriteTx<'c>> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let tail: Option<(i64, Vec<u8>, String)> = tx
            .prepare_cached(
                "SELECT seq, leaf_hash, json_extract(body, '$.ts') FROM entry ORDER BY seq DESC LIMIT 1",
            )?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        let (next_seq, prev, last_ts) = match tail {
            None => (0, [0u8; 32], String::new()),
            Some((seq, leaf, ts)) => {
                let leaf = <[u8; 32]>::try_from(leaf.as_slice()).map_err(|_| {
                    LedgerError::Damaged(format!("entry {seq} has a malformed leaf hash"))
                })?;
                (seq as u64 + 1, leaf, ts)
            }
        };
        Ok(WriteTx {
            tx,
            next_seq,
            prev,
            last_ts,
            clock: Clock::new(),
            buf: String::with_capacity(1024),
            first: None,
            count: 0,
            tile: Vec::with_capacity(1 << TILE_HEIGHT),
        })
    }

    /// The connection inside the transaction, for projection reads and writes.
    pub fn conn(&self) -> &Connection {
        &self.tx
    }

    /// The seq the next appended entry will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Number of entries appended so far in this transaction.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Appends one entry (seq, ts and prev are assigned here) and returns it.
    pub fn append(&mut self, e: NewEntry) -> Result<Appended> {
        self.append_ref(&e)
    }

    /// Appends one entry without taking ownership of it (bulk paths reuse their values).
    pub fn append_ref(&mut self, e: &NewEntry) -> Result<Appended> {
        e.validate()?;
        let now = self.clock.now();
        if now > self.last_ts.as_str() {
            self.last_ts.clear();
            self.last_ts.push_str(now);
        }
        let seq = self.next_seq;
        let mut prev_hex = [0u8; 64];
        entry::hex_hash_into(&self.prev, &mut prev_hex);
        let prev = if seq == 0 {
            ZERO_PREV
        } else {
            // Hex digits are ASCII.
            std::str::from_utf8(&prev_hex)
                .map_err(|_| LedgerError::Damaged("hex of the chain tail is not text".into()))?
        };
        self.buf.clear();
        entry::write_canonical_entry(
            &mut self.buf,
            seq,
            &self.last_ts,
            &e.kind,
            &e.actor,
            &e.subject,
            &e.data,
            prev,
        )?;
        let leaf = entry::leaf_hash(self.buf.as_bytes());
        {
            let mut stmt = self.tx.prepare_cached(
                "INSERT INTO entry(seq, body, leaf_hash, kind, subject, actor) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            stmt.execute(params![
                seq as i64,
                self.buf,
                &leaf[..],
                e.kind,
                e.subject,
                e.actor.user
            ])?;
        }
        self.next_seq = seq + 1;
        self.prev = leaf;
        self.tile.push(leaf);
        if self.next_seq % (1u64 << TILE_HEIGHT) == 0 {
            self.store_completed_nodes(self.next_seq)?;
            self.tile.clear();
        }
        self.count += 1;
        self.first.get_or_insert(seq);
        Ok(Appended {
            seq,
            leaf_hash: leaf,
            ts: self.last_ts.clone(),
        })
    }

    /// After the tree reached `size`, stores every complete subtree that just completed at a
    /// level that is a multiple of [`TILE_HEIGHT`].
    fn store_completed_nodes(&self, size: u64) -> Result<()> {
        let mut level = TILE_HEIGHT;
        while level < 64 && size % (1u64 << level) == 0 {
            let width = 1u64 << level;
            let idx = size / width - 1;
            // The node's children are the 256 leaves or stored nodes one tile level down.
            let src = DbNodes(&self.tx);
            let below = level - TILE_HEIGHT;
            let children = if below == 0 && self.tile.len() as u64 == width {
                // The whole tile was appended in this transaction.
                self.tile.clone()
            } else if below == 0 {
                src.leaves(idx * width, size)?
            } else {
                let w = 1u64 << below;
                src.stored_nodes(below, idx * width / w, size / w)?
            };
            let h = merkle::MemTree::from_leaves(children).root();
            let mut stmt = self
                .tx
                .prepare_cached("INSERT INTO merkle_node(level, idx, hash) VALUES (?1, ?2, ?3)")?;
            stmt.execute(params![level, idx as i64, &h[..]])?;
            level += TILE_HEIGHT;
        }
        Ok(())
    }

    /// Commits entries and projection writes together (durable on return: WAL with
    /// `synchronous=FULL`).
    pub fn commit(self) -> Result<Committed> {
        self.tx.commit()?;
        Ok(Committed {
            first: self.first,
            count: self.count,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn new_ledger() -> (tempfile::TempDir, Ledger) {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::init(
            &dir.path().join("d"),
            "test.example/ledger",
            Actor::cli("admin"),
        )
        .unwrap();
        (dir, l)
    }

    fn e(i: u64) -> NewEntry {
        NewEntry::new(
            "test.event",
            &format!("thing/{i}"),
            Actor::cli("u1"),
            json!({"i": i}),
        )
        .unwrap()
    }

    fn verified(l: &Ledger) -> crate::ledger::verify::VerifyReport {
        crate::ledger::verify::verify(l, Default::default()).unwrap()
    }

    #[test]
    fn key_rotation_hands_signing_to_the_new_key() {
        let (d, mut l) = new_ledger();
        let dir = d.path().join("d");
        l.append(e(1)).unwrap();
        let genesis = l.verifier_key().clone();
        let old_key_file = std::fs::read(dir.join(KEY_FILE)).unwrap();
        let (new, cp) = l.rotate_key(Actor::cli("admin")).unwrap();
        assert_ne!(new, genesis);
        assert_eq!(l.verifier_key(), &new);
        assert_eq!(l.genesis_key(), &genesis);
        // The rotation entry is the last one, the new checkpoint covers it, signed by the new
        // key only.
        let rot = Entry::parse(l.entry(cp.size - 1).unwrap().body.as_bytes()).unwrap();
        assert_eq!(rot.kind, entry::KEY_ROTATE_KIND);
        assert_eq!(rot.data["vkey"], json!(new.to_string()));
        assert!(crate::ledger::checkpoint::open_checkpoint(&cp.note, &new).is_ok());
        assert!(crate::ledger::checkpoint::open_checkpoint(&cp.note, &genesis).is_err());
        // The old key is gone; the file holds the new one; a reopened ledger knows it.
        assert_ne!(std::fs::read(dir.join(KEY_FILE)).unwrap(), old_key_file);
        assert!(!dir.join(NEXT_KEY_FILE).exists());
        let mut again = Ledger::open(&dir).unwrap();
        assert_eq!(again.verifier_key(), &new);
        assert_eq!(again.signer().unwrap().verifier_key(), new);
        again.append(e(2)).unwrap();
        again.checkpoint().unwrap();
        // Verify trusts the genesis key and follows the rotation.
        let r = verified(&again);
        assert!(r.ok, "{:?}", r.failure);
        assert_eq!(r.checkpoints_verified, 3);
        // A signer of the old key may no longer sign.
        let old_path = d.path().join("old.key");
        std::fs::write(&old_path, &old_key_file).unwrap();
        std::fs::set_permissions(
            &old_path,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        let old = keys::load_signer(&old_path, "test.example/ledger").unwrap();
        assert!(matches!(
            again.checkpoint_with(&old),
            Err(LedgerError::KeyRotated)
        ));
    }

    #[test]
    fn two_rotations_and_a_stale_handle() {
        let (d, mut l) = new_ledger();
        let dir = d.path().join("d");
        let mut stale = Ledger::open(&dir).unwrap();
        let first = stale.signer().unwrap();
        let (k2, _) = l.rotate_key(Actor::cli("admin")).unwrap();
        // The handle opened before rotates from the key now in effect, not from the first.
        let (k3, _) = stale.rotate_key(Actor::cli("admin")).unwrap();
        assert!(k2 != k3 && k3 != first.verifier_key());
        // A signer of a key rotated out may not sign.
        assert!(matches!(
            l.checkpoint_with(&first),
            Err(LedgerError::KeyRotated)
        ));
        let r = verified(&l);
        assert!(r.ok, "{:?}", r.failure);
        assert_eq!(r.checkpoints_verified, 3);
        // A `kind` column that says key.rotate on an entry that is not one is passed over.
        drop_triggers_for_test(l.conn());
        l.conn()
            .execute("UPDATE entry SET kind = 'key.rotate' WHERE seq = 0", [])
            .unwrap();
        assert_eq!(l.signer().unwrap().verifier_key(), k3);
    }

    fn drop_triggers_for_test(c: &Connection) {
        c.execute_batch("DROP TRIGGER entry_no_update").unwrap();
    }

    #[test]
    fn fail_rotation_naming_another_previous_key() {
        let (_d, mut l) = new_ledger();
        let old = l.signer().unwrap();
        let dir = tempfile::tempdir().unwrap();
        keys::create_key_file(&dir.path().join("k")).unwrap();
        let new = keys::load_signer(&dir.path().join("k"), "test.example/ledger").unwrap();
        let mut w = l.write().unwrap();
        let seq = w.next_seq();
        let message = keys::rotation_message(
            "test.example/ledger",
            seq,
            &entry::hex_hash(&w.prev),
            &new.verifier_key().to_string(),
        );
        let signature =
            base64::engine::general_purpose::STANDARD.encode(old.sign_bytes(message.as_bytes()));
        // Correctly signed, but `previous` names the new key instead of the one in effect.
        w.append(
            NewEntry::new(
                entry::KEY_ROTATE_KIND,
                "ledger",
                Actor::cli("admin"),
                json!({"vkey": new.verifier_key().to_string(),
                       "previous": new.verifier_key().to_string(),
                       "signature": signature}),
            )
            .unwrap(),
        )
        .unwrap();
        w.commit().unwrap();
        let f = verified(&l).failure.expect("found");
        assert_eq!((f.seq, f.code), (seq, "key"), "{}", f.message);
        assert!(f.message.contains("`previous`"), "{}", f.message);
    }

    #[test]
    fn fail_given_checkpoint_signed_by_a_key_not_yet_in_effect() {
        let (d, mut l) = new_ledger();
        l.append(e(1)).unwrap();
        let (_, _) = l.rotate_key(Actor::cli("admin")).unwrap();
        // The new key signs a checkpoint of a size from before the rotation: the root is
        // right, the key is not the one in effect at that size.
        let new =
            keys::load_signer(&d.path().join("d").join(KEY_FILE), "test.example/ledger").unwrap();
        let note = crate::ledger::checkpoint::Checkpoint::new(l.origin(), 2, l.root(2).unwrap())
            .unwrap()
            .sign(&new)
            .unwrap();
        let r = crate::ledger::verify::verify(
            &l,
            crate::ledger::verify::VerifyOptions {
                checkpoint: Some(&note),
                ..Default::default()
            },
        )
        .unwrap();
        let f = r.failure.expect("refused");
        assert_eq!(f.code, "checkpoint_signature", "{}", f.message);
        assert!(
            f.message.contains("not the ledger's key at that size"),
            "{}",
            f.message
        );
    }

    #[test]
    fn cut_short_rotation_puts_the_new_key_in_place() {
        let (d, mut l) = new_ledger();
        let dir = d.path().join("d");
        let old_key_file = std::fs::read(dir.join(KEY_FILE)).unwrap();
        let (new, _) = l.rotate_key(Actor::cli("admin")).unwrap();
        // As if the process died after committing the entry, before moving the key file.
        std::fs::rename(dir.join(KEY_FILE), dir.join(NEXT_KEY_FILE)).unwrap();
        std::fs::write(dir.join(KEY_FILE), &old_key_file).unwrap();
        std::fs::set_permissions(
            dir.join(KEY_FILE),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        let l = Ledger::open(&dir).unwrap();
        assert_eq!(l.signer().unwrap().verifier_key(), new);
        assert!(!dir.join(NEXT_KEY_FILE).exists());
    }

    #[test]
    fn fail_forged_key_rotation_is_found_at_its_seq() {
        let (_d, mut l) = new_ledger();
        l.append(e(1)).unwrap();
        // A key.rotate entry written without the current key's signature (as anyone with
        // write access to the database, but not the key, could).
        let dir = tempfile::tempdir().unwrap();
        keys::create_key_file(&dir.path().join("k")).unwrap();
        let forger = keys::load_signer(&dir.path().join("k"), "test.example/ledger").unwrap();
        let forged = forger.verifier_key().to_string();
        let a = l
            .append(
                NewEntry::new(
                    entry::KEY_ROTATE_KIND,
                    "ledger",
                    Actor::cli("mallory"),
                    json!({"vkey": forged, "previous": l.verifier_key().to_string(), "signature": "AAAA"}),
                )
                .unwrap(),
            )
            .unwrap();
        let r = verified(&l);
        let f = r.failure.expect("the forged rotation is found");
        assert_eq!((f.seq, f.code), (a.seq, "key"), "{}", f.message);
        assert!(
            f.message.contains("not signed by the key in effect"),
            "{}",
            f.message
        );
    }

    #[test]
    fn init_writes_genesis_and_checkpoint() {
        let (_d, l) = new_ledger();
        assert_eq!(l.size().unwrap(), 1);
        let g = Entry::parse(l.entry(0).unwrap().body.as_bytes()).unwrap();
        assert_eq!(g.kind, GENESIS_KIND);
        assert_eq!(g.prev, ZERO_PREV);
        assert_eq!(g.data["vkey"], json!(l.verifier_key().to_string()));
        let cp = l.latest_checkpoint().unwrap().unwrap();
        assert_eq!(cp.size, 1);
        assert_eq!(
            cp.root,
            merkle::leaf_hash(l.entry(0).unwrap().body.as_bytes())
        );
    }

    #[test]
    fn fail_init_twice_and_open_missing() {
        let (d, _l) = new_ledger();
        let err = Ledger::init(&d.path().join("d"), "x", Actor::cli("a"))
            .err()
            .unwrap();
        assert!(matches!(err, LedgerError::AlreadyExists(_)));
        let err = Ledger::open(&d.path().join("nothing")).err().unwrap();
        assert!(matches!(err, LedgerError::NotFound(_)));
        assert!(err.is_input());
    }

    #[test]
    fn chain_links_and_stored_nodes_match_naive_root() {
        let (_d, mut l) = new_ledger();
        let mut w = l.write().unwrap();
        for i in 0..700 {
            w.append(e(i)).unwrap();
        }
        w.commit().unwrap();
        assert_eq!(l.size().unwrap(), 701);
        let mut leaves = Vec::new();
        let mut prev = ZERO_PREV.to_owned();
        l.for_each_entry(0, None, |s| {
            let parsed = Entry::parse(s.body.as_bytes()).unwrap();
            assert_eq!(parsed.prev, prev);
            assert_eq!(s.leaf_hash, merkle::leaf_hash(s.body.as_bytes()));
            prev = entry::hex_hash(&s.leaf_hash);
            leaves.push(s.leaf_hash);
            Ok(())
        })
        .unwrap();
        // Two level-8 nodes completed (256 and 512 leaves).
        assert!(l.stored_node(8, 0).unwrap().is_some());
        assert!(l.stored_node(8, 1).unwrap().is_some());
        assert!(l.stored_node(8, 2).unwrap().is_none());
        let mem = merkle::MemTree::from_leaves(leaves.clone());
        for size in [1u64, 255, 256, 257, 512, 600, 701] {
            assert_eq!(l.root(size).unwrap(), merkle::root(&mem, size).unwrap());
        }
        let p = l.inclusion_proof(300, None).unwrap();
        assert!(merkle::verify_inclusion(
            &p.leaf_hash,
            300,
            701,
            &p.path,
            &p.root
        ));
        let c = l.consistency_proof(257, Some(701)).unwrap();
        assert!(merkle::verify_consistency(
            257,
            701,
            &c.old_root,
            &c.new_root,
            &c.path
        ));
    }

    #[test]
    fn level_16_nodes_are_stored_and_used() {
        let (_d, mut l) = new_ledger();
        let mut w = l.write().unwrap();
        for i in 0..(65_536 + 300) {
            w.append(e(i)).unwrap();
        }
        w.commit().unwrap();
        assert!(l.stored_node(16, 0).unwrap().is_some());
        let mut leaves = Vec::new();
        l.for_each_entry(0, None, |s| {
            leaves.push(s.leaf_hash);
            Ok(())
        })
        .unwrap();
        let mem = merkle::MemTree::from_leaves(leaves);
        assert_eq!(
            l.stored_node(16, 0).unwrap(),
            mem.stored_level(16).first().copied()
        );
        let size = l.size().unwrap();
        assert_eq!(l.root(size).unwrap(), mem.root());
        let p = l.inclusion_proof(40_000, None).unwrap();
        assert!(merkle::verify_inclusion(
            &p.leaf_hash,
            40_000,
            size,
            &p.path,
            &p.root
        ));
    }

    #[test]
    fn fail_triggers_refuse_update_and_delete() {
        let (_d, l) = new_ledger();
        for sql in [
            "UPDATE entry SET body = 'x' WHERE seq = 0",
            "DELETE FROM entry WHERE seq = 0",
            "DELETE FROM checkpoint",
            "UPDATE ledger_meta SET value = 'x'",
        ] {
            let err = l.conn().execute(sql, []).unwrap_err();
            assert!(
                err.to_string().contains("append-only") || err.to_string().contains("write-once"),
                "{sql}: {err}"
            );
        }
        assert_eq!(l.size().unwrap(), 1);
    }

    #[test]
    fn dropped_write_rolls_back() {
        let (_d, mut l) = new_ledger();
        {
            let mut w = l.write().unwrap();
            w.append(e(1)).unwrap();
        }
        assert_eq!(l.size().unwrap(), 1);
    }

    #[test]
    fn query_filters_by_kind_subject_actor_and_time() {
        let (_d, mut l) = new_ledger();
        l.append(e(1)).unwrap();
        l.append(NewEntry::new("other.event", "thing/1", Actor::cli("u2"), json!({})).unwrap())
            .unwrap();
        let collect = |f: LogFilter| {
            let mut v = Vec::new();
            l.query(&f, |e| {
                v.push(e.seq);
                Ok(())
            })
            .unwrap();
            v
        };
        assert_eq!(
            collect(LogFilter {
                kind: Some("test.event".into()),
                ..Default::default()
            }),
            vec![1]
        );
        assert_eq!(
            collect(LogFilter {
                kind: Some("other.*".into()),
                ..Default::default()
            }),
            vec![2]
        );
        assert_eq!(
            collect(LogFilter {
                subject: Some("thing/1".into()),
                ..Default::default()
            }),
            vec![1, 2]
        );
        assert_eq!(
            collect(LogFilter {
                actor: Some("u2".into()),
                ..Default::default()
            }),
            vec![2]
        );
        assert_eq!(
            collect(LogFilter {
                since: Some("2999-01-01T00:00:00.000Z".into()),
                ..Default::default()
            }),
            Vec::<u64>::new()
        );
        assert_eq!(
            collect(LogFilter {
                until: Some("2000-01-01T00:00:00.000Z".into()),
                ..Default::default()
            }),
            Vec::<u64>::new()
        );
        assert_eq!(
            collect(LogFilter {
                since: Some("2000-01-01T00:00:00.000Z".into()),
                ..Default::default()
            }),
            vec![0, 1, 2]
        );
    }
}
