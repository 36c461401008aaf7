//! Verification of a stored ledger in one streaming pass and constant memory.
//!
//! Checks, in seq order: contiguous `seq`, canonical bytes, stored leaf hash, `prev` links,
//! non-decreasing timestamps, the genesis entry, every stored Merkle node, every stored
//! checkpoint (signature and root), and optionally an external checkpoint that detects
//! truncation and rollback. Stops at the first problem and names its seq.
//!
//! Verification only reads; recording the result is the caller's choice.

use serde::Serialize;

use super::checkpoint;
use super::entry::{self, Entry, GENESIS_KIND, KEY_ROTATE_KIND, ZERO_PREV};
use super::keys;
use super::merkle::{self, Hash, RootBuilder};
use super::note::VerifierKey;
use super::store::{
    self, Ledger, LedgerError, StoredCheckpoint, KEY_FILE, NEXT_KEY_FILE, TILE_HEIGHT,
};

/// A callback that sees every entry that passed, in order; `Err` stops verification there.
pub type Observer<'a> = &'a mut dyn FnMut(&Entry) -> Result<(), String>;

/// A callback told how many entries have been checked so far (for a progress bar).
pub type Progress<'a> = &'a mut dyn FnMut(u64);

/// Entries between two calls of [`VerifyOptions::progress`].
pub const PROGRESS_EVERY: u64 = 4096;

/// What to verify besides the stored ledger.
#[derive(Default)]
pub struct VerifyOptions<'a> {
    /// A signed checkpoint held elsewhere (detects truncation and rollback).
    pub checkpoint: Option<&'a str>,
    /// The key to trust instead of the one the ledger names (from the party committee).
    pub vkey: Option<&'a VerifierKey>,
    /// Called with every entry that passed, in order (projection replay).
    pub observer: Option<Observer<'a>>,
    /// Called with the number of entries checked, every [`PROGRESS_EVERY`] entries and once
    /// at the end of the pass.
    pub progress: Option<Progress<'a>>,
}

/// The first problem found.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Failure {
    /// The first seq that is bad (for a range, its first seq).
    pub seq: u64,
    /// Last seq of the range the problem is confined to, when it cannot be narrowed further.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq_end: Option<u64>,
    /// A stable code: `missing`, `seq`, `parse`, `canonical`, `leaf_hash`, `prev`, `ts`,
    /// `genesis`, `merkle_node`, `checkpoint_signature`, `checkpoint_root`, `truncated`,
    /// `key`, `observer`.
    pub code: &'static str,
    pub message: String,
}

/// Result of a verification.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub ok: bool,
    pub origin: String,
    pub size: u64,
    /// Root of the whole tree as verified (hex), when the pass got to the end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    pub checkpoints_verified: u64,
    pub external_checkpoint: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
}

fn fail(seq: u64, code: &'static str, message: String) -> Failure {
    Failure {
        seq,
        seq_end: None,
        code,
        message,
    }
}

/// Verifies the ledger. `Err` only for storage errors; tampering is a report with `ok: false`.
pub fn verify(ledger: &Ledger, mut opts: VerifyOptions<'_>) -> Result<VerifyReport, LedgerError> {
    let size = ledger.size()?;
    let trusted = opts
        .vkey
        .cloned()
        .unwrap_or_else(|| ledger.genesis_key().clone());
    let mut report = VerifyReport {
        ok: false,
        origin: ledger.origin().to_owned(),
        size,
        root: None,
        checkpoints_verified: 0,
        external_checkpoint: None,
        failure: None,
    };

    // The genesis key must be the trusted one, and the local signing key the current one
    // (which the rotations below must lead to).
    if ledger.genesis_key() != &trusted {
        report.failure = Some(fail(
            0,
            "key",
            "the ledger's genesis key is not the trusted key (verify trusts the key the ledger was created with, `djaudit key show --genesis`, and follows its rotations)".into(),
        ));
        return Ok(report);
    }

    // The external checkpoint first: it is the only defence against truncation. It may be
    // signed by a later key than the genesis one: it is opened with the keys the ledger's
    // `key.rotate` entries name, and the pass below checks that its key is the one in
    // effect at its size.
    let mut candidates = vec![trusted.clone()];
    candidates.extend(store::rotation_keys(ledger.conn())?);
    let mut external_key = None;
    let external = match opts.checkpoint {
        None => None,
        Some(text) => {
            // The first key that opens it; if none does, what the trusted key says.
            let mut first_error = None;
            let opened =
                candidates
                    .iter()
                    .find_map(|k| match checkpoint::open_checkpoint(text, k) {
                        Ok(cp) => Some((cp, k.clone())),
                        Err(e) => {
                            first_error.get_or_insert(e);
                            None
                        }
                    });
            match opened {
                None => {
                    let why = first_error.map(|e| e.to_string()).unwrap_or_default();
                    report.failure = Some(fail(
                        0,
                        "checkpoint_signature",
                        format!("the given checkpoint does not verify: {why}"),
                    ));
                    return Ok(report);
                }
                Some((cp, _)) if cp.origin() != ledger.origin() => {
                    report.failure = Some(fail(
                        0,
                        "checkpoint_signature",
                        format!(
                            "the given checkpoint is for `{}`, not `{}`",
                            cp.origin(),
                            ledger.origin()
                        ),
                    ));
                    return Ok(report);
                }
                Some((cp, k)) => {
                    external_key = Some(k);
                    Some(cp)
                }
            }
        }
    };
    if let Some(cp) = &external {
        report.external_checkpoint = Some(cp.size());
        if cp.size() > size {
            report.failure = Some(Failure {
                seq: size,
                seq_end: Some(cp.size() - 1),
                code: "truncated",
                message: format!(
                    "the ledger has {size} entries but the given checkpoint commits to {}: entries {size}..{} are missing",
                    cp.size(),
                    cp.size() - 1
                ),
            });
            return Ok(report);
        }
    }

    let mut checkpoints = Vec::new();
    ledger.for_each_checkpoint(|c| {
        checkpoints.push((c.size, c.root));
        Ok(())
    })?;
    // Only sizes and roots are kept; notes are checked one at a time below.
    let mut cp_iter = checkpoints.into_iter().peekable();
    let mut checked_external = false;

    let mut builder = RootBuilder::new();
    let mut expected_seq = 0u64;
    let mut prev_hash: Option<Hash> = None;
    let mut last_ts = String::new();
    let mut last_good_cp = 0u64;
    let mut failure: Option<Failure> = None;
    // The key that signs checkpoints of the tree as verified so far.
    let mut key = trusted.clone();
    let observer = &mut opts.observer;

    // Checks a tree size boundary: stored checkpoints and the external one at this size.
    let mut boundary = |size_now: u64,
                        key: &VerifierKey,
                        root: &Hash,
                        cp_iter: &mut std::iter::Peekable<std::vec::IntoIter<(u64, Hash)>>,
                        last_good_cp: &mut u64,
                        report: &mut VerifyReport|
     -> Result<Option<Failure>, LedgerError> {
        while let Some(&(cp_size, _)) = cp_iter.peek() {
            if cp_size != size_now {
                break;
            }
            cp_iter.next();
            let stored = stored_checkpoint(ledger, cp_size)?;
            match checkpoint::open_checkpoint(&stored.note, key) {
                Err(e) => {
                    return Ok(Some(fail(
                        cp_size.saturating_sub(1),
                        "checkpoint_signature",
                        format!("stored checkpoint at size {cp_size} does not verify: {e}"),
                    )))
                }
                Ok(cp) if cp.size() != cp_size || cp.origin() != ledger.origin() => {
                    return Ok(Some(fail(
                        cp_size.saturating_sub(1),
                        "checkpoint_signature",
                        format!("stored checkpoint at size {cp_size} is signed for another tree"),
                    )))
                }
                Ok(cp) if cp.root() != root => {
                    return Ok(Some(Failure {
                        seq: *last_good_cp,
                        seq_end: Some(cp_size - 1),
                        code: "checkpoint_root",
                        message: format!(
                            "entries {}..{} do not match the signed checkpoint at size {cp_size}: the tree was rewritten after that checkpoint was signed",
                            *last_good_cp,
                            cp_size - 1
                        ),
                    }))
                }
                Ok(_) => {
                    *last_good_cp = cp_size;
                    report.checkpoints_verified += 1;
                }
            }
        }
        if let Some(cp) = &external {
            if cp.size() == size_now {
                checked_external = true;
                if external_key.as_ref() != Some(key) {
                    return Ok(Some(fail(
                        size_now.saturating_sub(1),
                        "checkpoint_signature",
                        format!(
                            "the given checkpoint of size {size_now} is signed by a key that was not the ledger's key at that size"
                        ),
                    )));
                }
                if cp.root() != root {
                    return Ok(Some(Failure {
                        seq: *last_good_cp,
                        seq_end: Some(cp.size() - 1),
                        code: "checkpoint_root",
                        message: format!(
                            "entries {}..{} do not match the given checkpoint at size {}: the ledger was rewritten or rolled back",
                            *last_good_cp,
                            cp.size() - 1,
                            cp.size()
                        ),
                    }));
                }
            }
        }
        Ok(None)
    };

    let mut stmt = ledger
        .conn()
        .prepare("SELECT seq, body, leaf_hash FROM entry ORDER BY seq")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let seq: i64 = row.get(0)?;
        // Borrowed, not copied: a wrong type or non-UTF-8 text is a failure to report, not a
        // storage error.
        let body = bytes_of(row.get_ref(1)?);
        let stored_leaf = bytes_of(row.get_ref(2)?);
        let seq = seq as u64;
        if seq != expected_seq {
            failure = Some(fail(
                expected_seq,
                "missing",
                format!("entry {expected_seq} is missing (the next stored entry is {seq})"),
            ));
            break;
        }
        let leaf = merkle::leaf_hash(body);
        // The fast path reads the entry in place; anything it does not accept goes through
        // the full parse, which is the authority and names the problem.
        let fast = observer.is_none()
            && stored_leaf == leaf.as_slice()
            && entry::view_canonical(body).is_some_and(|v| {
                let ok = v.seq == seq
                    && seq != 0
                    && v.kind != GENESIS_KIND
                    && v.kind != KEY_ROTATE_KIND
                    && prev_hash.is_some_and(|p| {
                        let mut hex = [0u8; 64];
                        entry::hex_hash_into(&p, &mut hex);
                        v.prev.as_bytes() == hex
                    })
                    && (v.ts == last_ts || (v.ts > last_ts.as_str() && entry::valid_ts(v.ts)));
                if ok && v.ts != last_ts {
                    last_ts.clear();
                    last_ts.push_str(v.ts);
                }
                ok
            });
        if !fast {
            let Ok(body) = std::str::from_utf8(body) else {
                failure = Some(fail(
                    seq,
                    "parse",
                    format!("entry {seq} does not parse: it is not UTF-8 text"),
                ));
                break;
            };
            let parsed = match check_entry(
                seq,
                body,
                &leaf,
                stored_leaf,
                prev_hash.as_ref(),
                &last_ts,
                ledger,
            ) {
                Ok(p) => p,
                Err(f) => {
                    failure = Some(f);
                    break;
                }
            };
            if parsed.kind == KEY_ROTATE_KIND {
                match rotation(&parsed, &key, ledger.origin()) {
                    Ok(next) => key = next,
                    Err(why) => {
                        failure = Some(fail(seq, "key", format!("entry {seq}: {why}")));
                        break;
                    }
                }
            }
            if let Some(obs) = observer.as_mut() {
                if let Err(msg) = obs(&parsed) {
                    failure = Some(fail(seq, "observer", msg));
                    break;
                }
            }
            last_ts = parsed.ts;
        }
        prev_hash = Some(leaf);
        for node in builder.push(leaf) {
            let (level, idx, hash) = (node.level, node.index, node.hash);
            if level % TILE_HEIGHT != 0 {
                continue;
            }
            match ledger.stored_node(level, idx)? {
                Some(h) if h == hash => {}
                Some(_) => {
                    failure = Some(fail(
                        idx << level,
                        "merkle_node",
                        format!(
                            "stored Merkle node ({level}, {idx}) does not match entries {}..{}",
                            idx << level,
                            ((idx + 1) << level) - 1
                        ),
                    ));
                }
                None => {
                    failure = Some(fail(
                        idx << level,
                        "merkle_node",
                        format!("stored Merkle node ({level}, {idx}) is missing"),
                    ));
                }
            }
        }
        if failure.is_some() {
            break;
        }
        expected_seq = seq + 1;
        if expected_seq % PROGRESS_EVERY == 0 {
            if let Some(p) = opts.progress.as_mut() {
                p(expected_seq);
            }
        }
        // The root is needed only where a checkpoint commits to this size.
        let at_checkpoint = cp_iter.peek().is_some_and(|(s, _)| *s == expected_seq)
            || external
                .as_ref()
                .is_some_and(|cp| cp.size() == expected_seq);
        if at_checkpoint {
            let root = builder.root();
            if let Some(f) = boundary(
                expected_seq,
                &key,
                &root,
                &mut cp_iter,
                &mut last_good_cp,
                &mut report,
            )? {
                failure = Some(f);
                break;
            }
        }
    }
    drop(rows);
    drop(stmt);
    if let Some(p) = opts.progress.as_mut() {
        p(expected_seq);
    }

    if failure.is_none() {
        if let Some((cp_size, _)) = cp_iter.next() {
            failure = Some(Failure {
                seq: expected_seq,
                seq_end: Some(cp_size - 1),
                code: "truncated",
                message: format!(
                    "a stored checkpoint commits to {cp_size} entries but the ledger has {expected_seq}: entries {expected_seq}..{} are missing",
                    cp_size - 1
                ),
            });
        } else if let (Some(cp), false) = (&external, checked_external) {
            // Size 0 can never match a non-empty checkpoint; any other case was handled.
            failure = Some(fail(
                0,
                "checkpoint_root",
                format!("the given checkpoint of size {} was not reached", cp.size()),
            ));
        }
    }
    if failure.is_none() {
        failure = local_key_problem(ledger, &key).map(|why| fail(0, "key", why));
    }
    if failure.is_none() {
        report.root = Some(entry::hex_hash(&builder.root()));
    }
    report.ok = failure.is_none();
    report.failure = failure;
    Ok(report)
}

/// The bytes of a text or blob column; nothing for other types (which then fail to parse).
fn bytes_of(value: rusqlite::types::ValueRef<'_>) -> &[u8] {
    match value {
        rusqlite::types::ValueRef::Text(b) | rusqlite::types::ValueRef::Blob(b) => b,
        _ => &[],
    }
}

fn stored_checkpoint(ledger: &Ledger, size: u64) -> Result<StoredCheckpoint, LedgerError> {
    ledger
        .conn()
        .query_row(
            "SELECT note FROM checkpoint WHERE size = ?1",
            [size as i64],
            |r| r.get::<_, String>(0),
        )
        .map(|note| StoredCheckpoint {
            size,
            root: [0; 32],
            note,
        })
        .map_err(LedgerError::from)
}

/// The checks on one entry that need only it, its predecessor's hash and timestamp.
fn check_entry(
    seq: u64,
    body: &str,
    leaf: &Hash,
    stored_leaf: &[u8],
    prev_hash: Option<&Hash>,
    last_ts: &str,
    ledger: &Ledger,
) -> Result<Entry, Failure> {
    if stored_leaf != leaf.as_slice() {
        return Err(fail(
            seq,
            "leaf_hash",
            format!("entry {seq} was changed: its bytes no longer match its recorded hash"),
        ));
    }
    let parsed = match Entry::parse(body.as_bytes()) {
        Ok(p) => p,
        Err(e) => {
            return Err(fail(
                seq,
                "parse",
                format!("entry {seq} does not parse: {e}"),
            ))
        }
    };
    if parsed.seq != seq {
        return Err(fail(
            seq,
            "seq",
            format!(
                "entry at position {seq} says it is entry {}: entries were reordered",
                parsed.seq
            ),
        ));
    }
    let mut canonical = String::with_capacity(body.len());
    let canonical_ok = entry::write_canonical_entry(
        &mut canonical,
        parsed.seq,
        &parsed.ts,
        &parsed.kind,
        &parsed.actor,
        &parsed.subject,
        &parsed.data,
        &parsed.prev,
    )
    .is_ok()
        && parsed.v == entry::FORMAT_VERSION
        && canonical == body;
    if !canonical_ok && parsed.v == entry::FORMAT_VERSION {
        return Err(fail(
            seq,
            "canonical",
            format!("entry {seq} is not in RFC 8785 canonical form"),
        ));
    }
    if parsed.v != entry::FORMAT_VERSION {
        return Err(fail(
            seq,
            "parse",
            format!("entry {seq} has unknown format version {}", parsed.v),
        ));
    }
    let expected_prev = match prev_hash {
        None => ZERO_PREV.to_owned(),
        Some(h) => entry::hex_hash(h),
    };
    if parsed.prev != expected_prev {
        return Err(fail(
            seq.saturating_sub(1),
            "prev",
            format!(
                "entry {seq} does not link to entry {}: `prev` differs from that entry's hash",
                seq.saturating_sub(1)
            ),
        ));
    }
    if !entry::valid_ts(&parsed.ts) {
        return Err(fail(
            seq,
            "ts",
            format!("entry {seq} has a malformed timestamp"),
        ));
    }
    if parsed.ts.as_str() < last_ts {
        return Err(fail(
            seq,
            "ts",
            format!(
                "entry {seq} is dated {} before entry {} ({last_ts})",
                parsed.ts,
                seq - 1
            ),
        ));
    }
    if (seq == 0) != (parsed.kind == GENESIS_KIND) {
        return Err(fail(
            seq,
            "genesis",
            format!("entry {seq}: only entry 0 is, and must be, `{GENESIS_KIND}`"),
        ));
    }
    if seq == 0
        && (parsed.data.get("origin").and_then(|v| v.as_str()) != Some(ledger.origin())
            || parsed.data.get("vkey").and_then(|v| v.as_str())
                != Some(ledger.genesis_key().to_string().as_str()))
    {
        return Err(fail(
            0,
            "genesis",
            "the genesis entry does not name this ledger's origin and key".into(),
        ));
    }
    Ok(parsed)
}

/// Whether the local signing key, when this process can read it, is other than `current`,
/// the key the verified rotations lead to (a key waiting in the next-key file of a rotation
/// cut short counts as in place). A verifier without access to the key checks nothing here.
fn local_key_problem(ledger: &Ledger, current: &VerifierKey) -> Option<String> {
    let load = |file: &str| keys::load_signer(&ledger.dir().join(file), ledger.origin()).ok();
    let signer = load(KEY_FILE)?;
    if signer.verifier_key() == *current
        || load(NEXT_KEY_FILE).is_some_and(|n| n.verifier_key() == *current)
    {
        return None;
    }
    Some(format!(
        "the signing key in `{KEY_FILE}` is not the ledger's current key `{current}`"
    ))
}

/// Checks a `key.rotate` entry against the key in effect (`current`): it names a new key
/// for the same origin and carries `current`'s signature over the rotation message
/// (FORMAT.md §4.4). Returns the new key.
fn rotation(e: &Entry, current: &VerifierKey, origin: &str) -> Result<VerifierKey, String> {
    use base64::Engine as _;
    let text = |k: &str| e.data.get(k).and_then(|v| v.as_str());
    let named = text("vkey").ok_or("the key rotation names no `vkey`")?;
    let next =
        VerifierKey::parse(named).map_err(|err| format!("the new key is malformed: {err}"))?;
    if next.name() != origin {
        return Err(format!(
            "the new key is named `{}`, not `{origin}`",
            next.name()
        ));
    }
    if e.subject != "ledger" {
        return Err(format!(
            "the key rotation is about `{}`, not `ledger`",
            e.subject
        ));
    }
    if text("previous") != Some(current.to_string().as_str()) {
        return Err("the key rotation does not name the key in effect as `previous`".into());
    }
    let signature = text("signature")
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .ok_or("the key rotation has no base64 `signature`")?;
    let message = keys::rotation_message(origin, e.seq, &e.prev, named);
    if !current.verifies(message.as_bytes(), &signature) {
        return Err("the key rotation is not signed by the key in effect".into());
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Actor, NewEntry};
    use serde_json::json;

    fn ledger(n: u64) -> (tempfile::TempDir, Ledger) {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut l =
            Ledger::init(&dir.path().join("l"), "test.example/l", Actor::cli("a")).expect("init");
        let mut w = l.write().expect("write");
        for i in 0..n {
            let e = NewEntry::new("note.test", "case/1", Actor::cli("a"), json!({ "i": i }))
                .expect("entry");
            w.append(e).expect("append");
        }
        w.commit().expect("commit");
        (dir, l)
    }

    #[test]
    fn progress_counts_up_to_the_entries_checked() {
        let (_dir, l) = ledger(10_000);
        let mut seen = Vec::new();
        let mut progress = |n: u64| seen.push(n);
        let report = verify(
            &l,
            VerifyOptions {
                progress: Some(&mut progress),
                ..Default::default()
            },
        )
        .expect("verify");
        assert!(report.ok, "{:?}", report.failure);
        assert_eq!(seen, [4096, 8192, report.size]);

        // A pass that stops early ends its progress where it stopped.
        let mut seen = Vec::new();
        let mut progress = |n: u64| seen.push(n);
        let mut observer = |e: &Entry| {
            if e.seq == 5000 {
                Err("stop here".to_string())
            } else {
                Ok(())
            }
        };
        let report = verify(
            &l,
            VerifyOptions {
                progress: Some(&mut progress),
                observer: Some(&mut observer),
                ..Default::default()
            },
        )
        .expect("verify");
        assert_eq!(report.failure.map(|f| f.seq), Some(5000));
        assert_eq!(seen, [4096, 5000]);
    }
}
