//! Rebuilding the projection from the ledger and comparing it with the stored one
//! (`djaudit verify --replay`, DESIGN §1 invariant 1).
//!
//! [`Replay`] applies the record entries of a ledger, in seq order, to a scratch projection
//! in a temporary SQLite file (not memory: a ledger may hold 13M records), checking each
//! entry as a verifier must: a create of a new id, an update whose old values are the
//! current ones and that leaves a valid record, a remove of an existing record with its
//! exact values. [`Replay::compare`] then walks both projections table by table in id order
//! and names every record that differs. Values never appear in its messages, only field
//! names.
//!
//! Replay reads entries and writes only its scratch file; it never touches the ledger.

use std::cmp::Ordering;
use std::path::Path;

use rusqlite::types::Value;
use rusqlite::Connection;
use thiserror::Error;

use super::model::{
    apply, changes_from_json, fields_from_json, Fields, ModelError, Record, RecordKind,
};
use super::projection::{self, parse_entry_kind, record_family, Action, RecordError};
use crate::ledger::Entry;

/// Why a record entry cannot be replayed (the ledger and its projection rules disagree).
#[derive(Debug, Error)]
pub enum ReplayError {
    #[error("unknown record entry kind `{0}`")]
    UnknownKind(String),
    #[error("`{kind}` data: {why}")]
    Data { kind: String, why: String },
    #[error("subject `{subject}` does not name the record the entry carries")]
    Subject { subject: String },
    #[error("`{0}` is created but already exists")]
    Exists(String),
    #[error("`{0}` does not exist")]
    Missing(String),
    #[error("`{subject}`: {why}")]
    Apply { subject: String, why: ModelError },
    #[error("`{0}` is removed with values that are not its current ones")]
    RemoveMismatch(String),
    #[error(transparent)]
    Storage(#[from] RecordError),
}

impl From<rusqlite::Error> for ReplayError {
    fn from(e: rusqlite::Error) -> ReplayError {
        ReplayError::Storage(e.into())
    }
}

/// A projection being rebuilt from ledger entries in a scratch database.
pub struct Replay {
    conn: Connection,
    // Dropped after `conn` (fields drop in order), so the file is closed before removal.
    _dir: tempfile::TempDir,
    applied: u64,
}

impl Replay {
    /// A scratch projection in the system's temporary directory.
    pub fn new() -> Result<Replay, RecordError> {
        Replay::with_dir(tempfile::tempdir().map_err(RecordError::Scratch)?)
    }

    /// A scratch projection in a private directory created inside `parent` (use the
    /// ledger's data directory: it has room for a copy of the projection and is private).
    pub fn new_in(parent: &Path) -> Result<Replay, RecordError> {
        Replay::with_dir(
            tempfile::Builder::new()
                .prefix(".replay-")
                .tempdir_in(parent)
                .map_err(RecordError::Scratch)?,
        )
    }

    fn with_dir(dir: tempfile::TempDir) -> Result<Replay, RecordError> {
        let conn = Connection::open(dir.path().join("replay.db"))?;
        // A scratch file: no journal, no syncing; one transaction for the whole replay.
        conn.execute_batch(
            "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; \
             PRAGMA locking_mode = EXCLUSIVE; PRAGMA cache_size = -262144;",
        )?;
        conn.execute_batch(projection::SCHEMA_SQL)?;
        conn.execute_batch("BEGIN")?;
        Ok(Replay {
            conn,
            _dir: dir,
            applied: 0,
        })
    }

    /// The scratch projection as rebuilt so far (inside the replay's open transaction), for
    /// reading it: the projection as it was at an earlier point of the ledger.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Record entries applied so far.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Applies one entry. Entries outside the record families are ignored; a record entry
    /// that does not apply is an error.
    pub fn apply(&mut self, e: &Entry) -> Result<(), ReplayError> {
        let Some(family) = record_family(&e.kind) else {
            return Ok(());
        };
        let Some((kind, action)) = parse_entry_kind(&e.kind) else {
            return Err(ReplayError::UnknownKind(e.kind.clone()));
        };
        debug_assert_eq!(family, kind);
        let data = |why: String| ReplayError::Data {
            kind: e.kind.clone(),
            why,
        };
        let id = e
            .subject
            .strip_prefix(kind.name())
            .and_then(|rest| rest.strip_prefix('/'))
            .filter(|id| !id.is_empty())
            .ok_or_else(|| ReplayError::Subject {
                subject: e.subject.clone(),
            })?;
        let object = e
            .data
            .as_object()
            .ok_or_else(|| data("not an object".into()))?;
        let expect_key = match action {
            Action::Create | Action::Remove => "record",
            Action::Update => "changes",
        };
        if object.len() != 1 || !object.contains_key(expect_key) {
            return Err(data(format!("expected exactly the member `{expect_key}`")));
        }
        let payload = &object[expect_key];
        let conn = &self.conn;
        match action {
            Action::Create => {
                let fields = record_fields(kind, payload).map_err(|why| data(why.to_string()))?;
                if fields_id(kind, &fields).as_deref() != Some(id) {
                    return Err(ReplayError::Subject {
                        subject: e.subject.clone(),
                    });
                }
                if projection::get(conn, kind, id)?.is_some() {
                    return Err(ReplayError::Exists(e.subject.clone()));
                }
                projection::insert_row(conn, kind, &fields, e.seq)?;
            }
            Action::Update => {
                let changes =
                    changes_from_json(kind, payload).map_err(|why| data(why.to_string()))?;
                if changes.is_empty() {
                    return Err(data("an update must change at least one field".into()));
                }
                let current = projection::get(conn, kind, id)?
                    .ok_or_else(|| ReplayError::Missing(e.subject.clone()))?;
                let mut fields = current.fields;
                let failed = |why| ReplayError::Apply {
                    subject: e.subject.clone(),
                    why,
                };
                apply(&mut fields, &changes).map_err(failed)?;
                let after = Record::from_fields(kind, &fields).map_err(failed)?;
                if after.id() != id {
                    return Err(ReplayError::Subject {
                        subject: e.subject.clone(),
                    });
                }
                projection::update_row(conn, kind, &fields, e.seq)?;
            }
            Action::Remove => {
                let fields = record_fields(kind, payload).map_err(|why| data(why.to_string()))?;
                let current = projection::get(conn, kind, id)?
                    .ok_or_else(|| ReplayError::Missing(e.subject.clone()))?;
                if current.fields != fields {
                    return Err(ReplayError::RemoveMismatch(e.subject.clone()));
                }
                projection::delete_row(conn, kind, id)?;
            }
        }
        self.applied += 1;
        Ok(())
    }

    /// Compares the rebuilt projection with `projection` (the ledger's connection), table
    /// by table in id order, and lists every record that differs:
    /// `member/M000123: field phone differs`, `… missing from the projection` (the ledger
    /// has it, the projection not), `… not in the ledger` (the other way round). Columns
    /// include `last_seq`. Tables the projection lacks count as empty.
    pub fn compare(self, projection: &Connection) -> Result<Vec<String>, RecordError> {
        self.conn.execute_batch("COMMIT")?;
        let mut out = Vec::new();
        for kind in RecordKind::ALL {
            compare_table(kind, &self.conn, projection, &mut out)?;
        }
        Ok(out)
    }
}

/// The flat record of a create or remove entry, validated.
fn record_fields(kind: RecordKind, payload: &serde_json::Value) -> Result<Fields, ModelError> {
    let fields = fields_from_json(kind, payload)?;
    // Validates values and that a derived id matches its key fields.
    let record = Record::from_fields(kind, &fields)?;
    // The flat form of the record must be exactly what the entry carried (no defaults
    // filled in, no non-canonical spellings).
    if record.to_fields() != fields {
        return Err(ModelError::Json(
            "the record is not in its canonical flat form",
        ));
    }
    Ok(fields)
}

fn fields_id(kind: RecordKind, fields: &Fields) -> Option<String> {
    fields
        .get(kind.id_field())
        .and_then(|v| v.as_text())
        .map(str::to_owned)
}

/// Merges the rows of `kind` of both databases in id order and lists the differences.
fn compare_table(
    kind: RecordKind,
    replayed: &Connection,
    stored: &Connection,
    out: &mut Vec<String>,
) -> Result<(), RecordError> {
    let names: Vec<&str> = kind.columns().chain(["last_seq"]).collect();
    let sql = projection::scan_sql(kind);
    let mut left_stmt = replayed.prepare(sql)?;
    let mut left_rows = left_stmt.query([])?;
    let mut right_stmt = if projection::has_table(stored, kind)? {
        Some(stored.prepare(sql)?)
    } else {
        None
    };
    let mut right_rows = match right_stmt.as_mut() {
        Some(s) => Some(s.query([])?),
        None => None,
    };
    let n = names.len();
    let mut left = next_raw(&mut left_rows, n)?;
    let mut right = match right_rows.as_mut() {
        Some(r) => next_raw(r, n)?,
        None => None,
    };
    loop {
        let order = match (&left, &right) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            // String order is byte order, which is SQLite's BINARY collation of the id.
            (Some(l), Some(r)) => text_id(l).cmp(&text_id(r)),
        };
        match (order, &left, &right) {
            (Ordering::Less, Some(l), _) => {
                out.push(format!(
                    "{}: missing from the projection",
                    projection::subject(kind, &text_id(l))
                ));
                left = next_raw(&mut left_rows, n)?;
            }
            (Ordering::Greater, _, Some(r)) => {
                out.push(format!(
                    "{}: not in the ledger",
                    projection::subject(kind, &text_id(r))
                ));
                right = match right_rows.as_mut() {
                    Some(rows) => next_raw(rows, n)?,
                    None => None,
                };
            }
            (_, Some(l), Some(r)) => {
                let differing: Vec<&str> = names
                    .iter()
                    .zip(l.iter().zip(r.iter()))
                    .filter(|(_, (a, b))| a != b)
                    .map(|(name, _)| *name)
                    .collect();
                let who = projection::subject(kind, &text_id(r));
                match differing.as_slice() {
                    [] => {}
                    [one] => out.push(format!("{who}: field {one} differs")),
                    many => out.push(format!("{who}: fields {} differ", many.join(", "))),
                }
                left = next_raw(&mut left_rows, n)?;
                right = match right_rows.as_mut() {
                    Some(rows) => next_raw(rows, n)?,
                    None => None,
                };
            }
            // INVARIANT: the order was computed from the same two options.
            _ => break,
        }
    }
    Ok(())
}

/// The next row's first `n` raw values.
fn next_raw(rows: &mut rusqlite::Rows<'_>, n: usize) -> Result<Option<Vec<Value>>, RecordError> {
    match rows.next()? {
        None => Ok(None),
        Some(row) => Ok(Some(
            (0..n)
                .map(|i| row.get::<_, Value>(i))
                .collect::<Result<Vec<_>, _>>()?,
        )),
    }
}

/// The id column of a raw row as text (ids are TEXT; anything else is shown as stored).
fn text_id(row: &[Value]) -> String {
    match row.first() {
        Some(Value::Text(s)) => s.clone(),
        Some(Value::Integer(i)) => i.to_string(),
        Some(Value::Real(r)) => r.to_string(),
        Some(Value::Blob(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(Value::Null) | None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Actor, Ledger};
    use crate::records::import::testing::{import_text, ledger};
    use serde_json::json;

    fn entry(seq: u64, kind: &str, subject: &str, data: serde_json::Value) -> Entry {
        Entry {
            v: 1,
            seq,
            ts: "2026-11-28T05:25:39.123Z".into(),
            kind: kind.into(),
            actor: Actor::cli("u"),
            subject: subject.into(),
            data,
            prev: crate::ledger::entry::ZERO_PREV.into(),
        }
    }

    /// A ledger with imported members and dues, replayed from its stored entries.
    fn imported() -> (tempfile::TempDir, Ledger, Replay) {
        let (dir, mut l) = ledger();
        let files = [
            (
                RecordKind::Member,
                "m.csv",
                "member_id,name,phone\nM1,张三,13900000001\nM2,李四,\n",
            ),
            (
                RecordKind::Member,
                "m2.csv",
                "member_id,phone\nM2,13900000002\n",
            ),
            (
                RecordKind::Dues,
                "d.csv",
                "member_id,month,amount\nM1,2026-01,10\nM1,2026-01,12.5\n",
            ),
        ];
        for (kind, name, text) in files {
            import_text(&mut l, dir.path(), name, kind, text, "u").unwrap();
        }
        let mut r = Replay::new().unwrap();
        l.for_each_entry(0, None, |s| {
            r.apply(&Entry::parse(s.body.as_bytes()).unwrap()).unwrap();
            Ok(())
        })
        .unwrap();
        (dir, l, r)
    }

    #[test]
    fn replay_of_imports_matches_the_projection() {
        let (_d, l, r) = imported();
        // 2 member creates, 1 update, 2 dues records (the batches are not record entries).
        assert_eq!(r.applied(), 5);
        assert_eq!(r.compare(l.conn()).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn fail_compare_names_every_differing_record() {
        let (_d, l, r) = imported();
        let c = l.conn();
        c.execute(
            "UPDATE member SET name = 'x', last_seq = 99 WHERE member_id = 'M1'",
            [],
        )
        .unwrap();
        c.execute(
            "UPDATE dues SET amount = 11 WHERE dues_id = 'M1/2026-01#2'",
            [],
        )
        .unwrap();
        c.execute("DELETE FROM member WHERE member_id = 'M2'", [])
            .unwrap();
        c.execute(
            "INSERT INTO user (user_id, role, disabled, last_seq) VALUES ('u9', 'auditor', 0, 3)",
            [],
        )
        .unwrap();
        assert_eq!(
            r.compare(c).unwrap(),
            [
                "member/M1: fields name, last_seq differ",
                "member/M2: missing from the projection",
                "dues/M1/2026-01#2: field amount differs",
                "user/u9: not in the ledger",
            ]
        );
    }

    #[test]
    fn missing_projection_tables_count_as_empty() {
        let r = Replay::new().unwrap();
        let other = Connection::open_in_memory().unwrap();
        assert!(r.compare(&other).unwrap().is_empty());
        let mut r = Replay::new().unwrap();
        r.apply(&entry(
            1,
            "org.create",
            "org/B1",
            json!({"record": {"org_id": "B1", "name": "一支部", "kind": "branch"}}),
        ))
        .unwrap();
        assert_eq!(
            r.compare(&other).unwrap(),
            ["org/B1: missing from the projection"]
        );
    }

    #[test]
    fn create_update_remove_replay() {
        let mut r = Replay::new().unwrap();
        r.apply(&entry(
            1,
            "user.create",
            "user/u1",
            json!({"record": {"user_id": "u1", "role": "auditor", "disabled": false}}),
        ))
        .unwrap();
        r.apply(&entry(
            2,
            "user.update",
            "user/u1",
            json!({"changes": {"disabled": [false, true]}}),
        ))
        .unwrap();
        r.apply(&entry(3, "note.test", "user/u1", json!({"anything": 1})))
            .unwrap();
        r.apply(&entry(
            4,
            "user.remove",
            "user/u1",
            json!({"record": {"user_id": "u1", "role": "auditor", "disabled": true}}),
        ))
        .unwrap();
        assert_eq!(r.applied(), 3);
        assert!(projection::get(&r.conn, RecordKind::User, "u1")
            .unwrap()
            .is_none());
    }

    #[test]
    fn fail_entries_that_do_not_apply() {
        let org = json!({"record": {"org_id": "B1", "name": "一支部", "kind": "branch"}});
        let cases: Vec<(Entry, &str)> = vec![
            (
                entry(2, "org.dissolve", "org/B1", json!({})),
                "unknown record entry kind",
            ),
            (
                entry(2, "org.create", "org/B1", org.clone()),
                "already exists",
            ),
            (
                entry(2, "org.create", "org/B2", org.clone()),
                "does not name the record",
            ),
            (
                entry(
                    2,
                    "org.update",
                    "org/B1",
                    json!({"changes": {"name": ["二支部", "三支部"]}}),
                ),
                "not its old value",
            ),
            (
                entry(
                    2,
                    "org.update",
                    "org/B1",
                    json!({"changes": {"kind": ["branch", "支部"]}}),
                ),
                "field `kind`",
            ),
            (
                entry(
                    2,
                    "org.update",
                    "org/B9",
                    json!({"changes": {"name": ["a", "b"]}}),
                ),
                "does not exist",
            ),
            (
                entry(2, "org.update", "org/B1", json!({"changes": {}})),
                "at least one field",
            ),
            (
                entry(2, "org.update", "org/B1", json!({"record": {}})),
                "exactly the member `changes`",
            ),
            (
                entry(
                    2,
                    "org.remove",
                    "org/B1",
                    json!({"record": {"org_id": "B1", "name": "x", "kind": "branch"}}),
                ),
                "not its current ones",
            ),
            (
                entry(
                    2,
                    "user.create",
                    "user/u1",
                    json!({"record": {"user_id": "u1", "role": "auditor"}}),
                ),
                "canonical flat form",
            ),
            (
                entry(
                    2,
                    "dues.record",
                    "dues/M1/2026-01",
                    json!({"record": {"dues_id": "M1/2026-02", "member_id": "M1", "month": "2026-01", "amount": 1}}),
                ),
                "key fields",
            ),
        ];
        for (e, why) in cases {
            let mut r = Replay::new().unwrap();
            r.apply(&entry(1, "org.create", "org/B1", org.clone()))
                .unwrap();
            let err = r.apply(&e).unwrap_err().to_string();
            assert!(err.contains(why), "{} {}: {err}", e.kind, e.data);
            assert_eq!(r.applied(), 1);
        }
    }
}
