//! API bearer tokens: created and revoked by the CLI, checked by the daemon.
//!
//! A token is 32 random bytes (ring's system random), base64url without padding; it is
//! shown once and only its SHA-256 is stored, in the table `api_token` of the ledger's
//! database. That table is the daemon's, not a ledger table: a token's row may be updated
//! (revoked). Creating and revoking a token append a `token.create` / `token.revoke` entry
//! in the same transaction; the entries name the token by its id, never carry the token or
//! its hash.
//!
//! A service token may act for an end user (`X-On-Behalf-Of`); the API layer decides what
//! that means. This module never logs or returns a stored hash.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use ring::rand::SecureRandom;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::ledger::entry::{now_ts, valid_name};
use crate::ledger::{Actor, Ledger, LedgerError, NewEntry};

/// The token table (created on demand; not part of the ledger schema).
const TABLE_SQL: &str = "
CREATE TABLE IF NOT EXISTS api_token (
    id      INTEGER PRIMARY KEY,
    hash    BLOB    NOT NULL UNIQUE,
    user    TEXT    NOT NULL,
    service INTEGER NOT NULL,
    created TEXT    NOT NULL,
    expires TEXT,
    revoked TEXT
);";

/// Longest token lifetime accepted, in days.
pub const MAX_EXPIRES_DAYS: u32 = 3650;

/// Errors of token management.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("invalid user `{0}`: expected 1 to 256 printable characters without spaces")]
    BadUser(String),
    #[error("invalid expiry: expected 1 to {MAX_EXPIRES_DAYS} days")]
    BadExpiry,
    #[error("no token with id {0}")]
    Unknown(i64),
    #[error("token {0} is already revoked")]
    AlreadyRevoked(i64),
    #[error("cannot draw random bytes for a token")]
    Random,
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("token storage: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

impl TokenError {
    /// Whether the error is the user's input (exit 2) rather than storage (exit 3).
    pub fn is_input(&self) -> bool {
        match self {
            TokenError::BadUser(_)
            | TokenError::BadExpiry
            | TokenError::Unknown(_)
            | TokenError::AlreadyRevoked(_) => true,
            TokenError::Ledger(e) => e.is_input(),
            TokenError::Random | TokenError::Sqlite(_) => false,
        }
    }
}

/// Why a presented token was not accepted (HTTP 401).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthFailure {
    #[error("missing bearer token")]
    Missing,
    #[error("unknown token")]
    Unknown,
    #[error("token {0} is revoked")]
    Revoked(i64),
    #[error("token {0} has expired")]
    Expired(i64),
}

/// A stored token, without its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    pub id: i64,
    pub user: String,
    pub service: bool,
    pub created: String,
    pub expires: Option<String>,
    pub revoked: Option<String>,
}

/// A token just created: the secret is here and nowhere else.
#[derive(Debug)]
pub struct NewToken {
    pub info: TokenInfo,
    /// The bearer token; show it once.
    pub token: String,
    /// Whether the user is in the projection's `user` table (a token for an unknown user
    /// authenticates, but every policy decision for it is a denial).
    pub known_user: bool,
}

/// Creates the token table if it does not exist.
pub fn ensure_table(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.execute_batch(TABLE_SQL)
}

/// SHA-256 of a presented token's text.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn random_token() -> Result<String, TokenError> {
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| TokenError::Random)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenInfo> {
    Ok(TokenInfo {
        id: r.get(0)?,
        user: r.get(1)?,
        service: r.get::<_, i64>(2)? != 0,
        created: r.get(3)?,
        expires: r.get(4)?,
        revoked: r.get(5)?,
    })
}

const COLUMNS: &str = "id, user, service, created, expires, revoked";

fn user_known(conn: &Connection, user: &str) -> Result<bool, rusqlite::Error> {
    let has_table: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'user'",
        [],
        |r| r.get(0),
    )?;
    if !has_table {
        return Ok(false);
    }
    conn.query_row(
        "SELECT count(*) > 0 FROM user WHERE user_id = ?1",
        [user],
        |r| r.get(0),
    )
}

/// Creates a token for `user` (a service account when `service`), valid for
/// `expires_days` days or until revoked, and records `token.create`.
pub fn create(
    ledger: &mut Ledger,
    user: &str,
    expires_days: Option<u32>,
    service: bool,
    actor: Actor,
) -> Result<NewToken, TokenError> {
    if !valid_name(user) {
        return Err(TokenError::BadUser(user.to_owned()));
    }
    let now = chrono::Utc::now();
    let expires = match expires_days {
        None => None,
        Some(d) if d == 0 || d > MAX_EXPIRES_DAYS => return Err(TokenError::BadExpiry),
        Some(d) => Some(
            (now + chrono::Duration::days(i64::from(d)))
                .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                .to_string(),
        ),
    };
    let token = random_token()?;
    let created = now_ts();
    let mut w = ledger.write()?;
    ensure_table(w.conn())?;
    w.conn().execute(
        "INSERT INTO api_token(hash, user, service, created, expires) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            &hash_token(&token)[..],
            user,
            service as i64,
            created,
            expires
        ],
    )?;
    let id = w.conn().last_insert_rowid();
    let known_user = user_known(w.conn(), user)?;
    w.append(
        NewEntry::new(
            "token.create",
            &format!("token/{id}"),
            actor,
            json!({"id": id, "user": user, "service": service, "expires": expires}),
        )
        .map_err(LedgerError::from)?,
    )?;
    w.commit()?;
    Ok(NewToken {
        info: TokenInfo {
            id,
            user: user.to_owned(),
            service,
            created,
            expires,
            revoked: None,
        },
        token,
        known_user,
    })
}

/// Every token, oldest first (an empty list when none was ever created).
pub fn list(conn: &Connection) -> Result<Vec<TokenInfo>, TokenError> {
    let exists: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'api_token'",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM api_token ORDER BY id"))?;
    let rows = stmt.query_map([], token_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Revokes a token at once and records `token.revoke`.
pub fn revoke(ledger: &mut Ledger, id: i64, actor: Actor) -> Result<TokenInfo, TokenError> {
    let mut w = ledger.write()?;
    ensure_table(w.conn())?;
    let info = w
        .conn()
        .query_row(
            &format!("SELECT {COLUMNS} FROM api_token WHERE id = ?1"),
            [id],
            token_row,
        )
        .optional()?
        .ok_or(TokenError::Unknown(id))?;
    if info.revoked.is_some() {
        return Err(TokenError::AlreadyRevoked(id));
    }
    let now = now_ts();
    w.conn().execute(
        "UPDATE api_token SET revoked = ?1 WHERE id = ?2",
        params![now, id],
    )?;
    w.append(
        NewEntry::new(
            "token.revoke",
            &format!("token/{id}"),
            actor,
            json!({"id": id, "user": info.user}),
        )
        .map_err(LedgerError::from)?,
    )?;
    w.commit()?;
    Ok(TokenInfo {
        revoked: Some(now),
        ..info
    })
}

/// Finds the token a request presents and checks that it is live at `now` (an entry
/// timestamp).
pub fn authenticate(
    conn: &Connection,
    presented: &str,
    now: &str,
) -> Result<Result<TokenInfo, AuthFailure>, rusqlite::Error> {
    authenticate_hash(conn, &hash_token(presented), now)
}

/// [`authenticate`] given the SHA-256 of the presented token.
pub fn authenticate_hash(
    conn: &Connection,
    hash: &[u8; 32],
    now: &str,
) -> Result<Result<TokenInfo, AuthFailure>, rusqlite::Error> {
    let mut stmt =
        match conn.prepare_cached(&format!("SELECT {COLUMNS} FROM api_token WHERE hash = ?1")) {
            Ok(s) => s,
            // No token was ever created: the table does not exist yet.
            Err(rusqlite::Error::SqliteFailure(_, Some(msg))) if msg.contains("no such table") => {
                return Ok(Err(AuthFailure::Unknown))
            }
            Err(e) => return Err(e),
        };
    let info = match stmt.query_row([&hash[..]], token_row).optional()? {
        Some(info) => info,
        None => return Ok(Err(AuthFailure::Unknown)),
    };
    if info.revoked.is_some() {
        return Ok(Err(AuthFailure::Revoked(info.id)));
    }
    if info.expires.as_deref().is_some_and(|e| e <= now) {
        return Ok(Err(AuthFailure::Expired(info.id)));
    }
    Ok(Ok(info))
}

/// Tokens found live a moment ago, by hash, so that a client's every request does not read
/// the token table. An entry is trusted until a deadline: the cache's lifetime after the
/// read, and never past the token's expiry. A token revoked (in any process) is therefore
/// refused at the latest one lifetime later. Only live tokens are kept (a stream of wrong
/// tokens cannot fill it), at most [`TokenCache::CAPACITY`] of them.
pub struct TokenCache {
    lifetime: Option<Duration>,
    live: Mutex<HashMap<[u8; 32], (Instant, TokenInfo)>>,
}

impl TokenCache {
    /// Most tokens remembered; past it the cache starts afresh.
    pub const CAPACITY: usize = 4096;

    /// A cache keeping tokens for `lifetime`; `None` keeps nothing.
    pub fn new(lifetime: Option<Duration>) -> TokenCache {
        TokenCache {
            lifetime,
            live: Mutex::new(HashMap::new()),
        }
    }

    /// The token with this hash, if it was found live less than a lifetime ago and has not
    /// expired since.
    pub fn get(&self, hash: &[u8; 32]) -> Option<TokenInfo> {
        self.lifetime?;
        let mut live = self.live.lock().ok()?;
        match live.get(hash) {
            Some((until, info)) if Instant::now() < *until => Some(info.clone()),
            Some(_) => {
                live.remove(hash);
                None
            }
            None => None,
        }
    }

    /// Remembers a token just found live at `now` (an entry timestamp).
    pub fn put(&self, hash: [u8; 32], info: &TokenInfo, now: &str) {
        let Some(lifetime) = self.lifetime else {
            return;
        };
        let keep = match info.expires.as_deref() {
            None => lifetime,
            // Trusted no longer than the token lives (an unreadable expiry: not at all).
            Some(expires) => match (ts_millis(expires), ts_millis(now)) {
                (Some(e), Some(n)) if e > n => {
                    lifetime.min(Duration::from_millis(u64::try_from(e - n).unwrap_or(0)))
                }
                _ => return,
            },
        };
        if let Ok(mut live) = self.live.lock() {
            if live.len() >= Self::CAPACITY {
                live.clear();
            }
            live.insert(hash, (Instant::now() + keep, info.clone()));
        }
    }
}

/// Milliseconds since the epoch of an entry timestamp.
fn ts_millis(ts: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(ts)
        .ok()
        .map(|t| t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Entry;

    fn ledger() -> (tempfile::TempDir, Ledger) {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::init(
            &dir.path().join("d"),
            "test.example/ledger",
            Actor::cli("a"),
        )
        .unwrap();
        (dir, l)
    }

    #[test]
    fn create_stores_only_the_hash_and_records_an_entry_without_the_token() {
        let (_d, mut l) = ledger();
        let t = create(&mut l, "svc-portal", Some(30), true, Actor::cli("ops")).unwrap();
        assert_eq!(t.token.len(), 43);
        assert!(t
            .token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert!(!t.known_user);
        // The database holds the hash, not the token.
        let stored: Vec<u8> = l
            .conn()
            .query_row(
                "SELECT hash FROM api_token WHERE id = ?1",
                [t.info.id],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(stored, hash_token(&t.token).to_vec());
        let e = Entry::parse(l.entry(1).unwrap().body.as_bytes()).unwrap();
        assert_eq!(e.kind, "token.create");
        assert_eq!(e.subject, format!("token/{}", t.info.id));
        let body = l.entry(1).unwrap().body;
        assert!(!body.contains(&t.token));
        assert!(!body.contains(&hex::encode(hash_token(&t.token))));
        let now = now_ts();
        assert_eq!(
            authenticate(l.conn(), &t.token, &now).unwrap(),
            Ok(t.info.clone())
        );
    }

    #[test]
    fn fail_unknown_revoked_and_expired_tokens() {
        let (_d, mut l) = ledger();
        let now = now_ts();
        assert_eq!(
            authenticate(l.conn(), "nothing", &now).unwrap(),
            Err(AuthFailure::Unknown)
        );
        let t = create(&mut l, "u1", Some(1), false, Actor::cli("ops")).unwrap();
        assert_eq!(
            authenticate(l.conn(), &t.token, "2999-01-01T00:00:00.000Z").unwrap(),
            Err(AuthFailure::Expired(t.info.id))
        );
        let r = revoke(&mut l, t.info.id, Actor::cli("ops")).unwrap();
        assert!(r.revoked.is_some());
        assert_eq!(
            authenticate(l.conn(), &t.token, &now).unwrap(),
            Err(AuthFailure::Revoked(t.info.id))
        );
        assert!(matches!(
            revoke(&mut l, t.info.id, Actor::cli("ops")),
            Err(TokenError::AlreadyRevoked(_))
        ));
        assert!(matches!(
            revoke(&mut l, 99, Actor::cli("ops")),
            Err(TokenError::Unknown(99))
        ));
        assert!(matches!(
            create(&mut l, "a b", None, false, Actor::cli("ops")),
            Err(TokenError::BadUser(_))
        ));
        assert!(matches!(
            create(&mut l, "u", Some(0), false, Actor::cli("ops")),
            Err(TokenError::BadExpiry)
        ));
        // token.create and token.revoke, nothing for the refused calls.
        assert_eq!(l.size().unwrap(), 3);
        assert_eq!(list(l.conn()).unwrap().len(), 1);
    }

    fn info(expires: Option<&str>) -> TokenInfo {
        TokenInfo {
            id: 7,
            user: "u".into(),
            service: false,
            created: "2026-01-01T00:00:00.000Z".into(),
            expires: expires.map(str::to_owned),
            revoked: None,
        }
    }

    #[test]
    fn cache_keeps_a_live_token_for_its_lifetime_only() {
        let now = "2026-11-28T10:00:00.000Z";
        let c = TokenCache::new(Some(Duration::from_millis(200)));
        let (h, other) = ([1u8; 32], [2u8; 32]);
        assert_eq!(c.get(&h), None);
        c.put(h, &info(None), now);
        assert_eq!(c.get(&h), Some(info(None)));
        assert_eq!(c.get(&other), None);
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(c.get(&h), None, "kept past its lifetime");
        // Never past the token's own expiry: 300 ms left here, with a lifetime of a minute.
        let long = TokenCache::new(Some(Duration::from_secs(60)));
        let soon = info(Some("2026-11-28T10:00:00.300Z"));
        long.put(h, &soon, now);
        assert_eq!(long.get(&h), Some(soon));
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(long.get(&h), None, "kept past the token's expiry");
        // Expired or unreadable expiry: not kept at all.
        c.put(h, &info(Some("2026-11-28T09:59:59.999Z")), now);
        assert_eq!(c.get(&h), None);
        c.put(h, &info(Some("someday")), now);
        assert_eq!(c.get(&h), None);
        // Switched off: nothing is kept.
        let off = TokenCache::new(None);
        off.put(h, &info(None), now);
        assert_eq!(off.get(&h), None);
    }

    #[test]
    fn cache_is_bounded() {
        let c = TokenCache::new(Some(Duration::from_secs(60)));
        for i in 0..=TokenCache::CAPACITY {
            let mut h = [0u8; 32];
            h[..8].copy_from_slice(&(i as u64).to_le_bytes());
            c.put(h, &info(None), "2026-11-28T10:00:00.000Z");
        }
        assert!(c.live.lock().unwrap().len() <= TokenCache::CAPACITY);
    }
}
