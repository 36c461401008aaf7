//! The projection of party records: one SQLite table per record kind (`schema.sql`), holding
//! the current state of every record as derived from the ledger.
//!
//! The public write functions ([`create`], [`update`], [`remove`]) take an open
//! [`WriteTx`]: each appends the entry that changes a record and writes the row in the same
//! transaction, so a projection row never changes without its entry (DESIGN §1). The row
//! writers themselves are crate-private; only [`replay`](super::replay) uses them, on its
//! own scratch database. Reads ([`get`], [`for_each`], [`export_csv`]) work on any
//! connection.
//!
//! Entry kinds and data (docs/FORMAT.md §6): `<kind>.create` (`dues.record`,
//! `meeting.record`, `transfer.record` for the kinds that record events) with
//! `{"record": {field: value…}}`, `<kind>.update` with `{"changes": {field: [old, new]}}`,
//! `<kind>.remove` with `{"record": {…}}` (the record as it was). Entries carry the real
//! values; whoever shows them to people masks them.
//!
//! This module never writes a projection row outside a ledger write and never prints.

use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

use rusqlite::{params_from_iter, Connection, ToSql};
use serde_json::Value;
use thiserror::Error;

use super::model::{
    apply, changes_to_json, fields_to_json, Changes, Fen, FieldType, FieldValue, Fields,
    ModelError, Record, RecordKind,
};
use super::parse::ImportError;
use crate::ledger::store::Appended;
use crate::ledger::{Actor, LedgerError, NewEntry, WriteTx};

/// The projection schema (the contract of src/records/schema.sql).
pub const SCHEMA_SQL: &str = include_str!("schema.sql");

/// Errors of record work on a ledger: import, reconcile, history, export, replay.
#[derive(Debug, Error)]
pub enum RecordError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    File(#[from] ImportError),
    #[error("projection storage: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("projection row `{subject}` is unreadable: {why}")]
    BadRow { subject: String, why: ModelError },
    #[error("entry {seq} about `{subject}` is unreadable: {why}")]
    BadEntry {
        seq: u64,
        subject: String,
        why: String,
    },
    #[error("record `{subject}`: {why}")]
    Invalid { subject: String, why: ModelError },
    #[error("record `{0}` already exists")]
    Exists(String),
    #[error("no record `{0}`")]
    NotFound(String),
    #[error("invalid record name `{0}`: expected <kind>/<id> such as `member/M000123`")]
    BadSubject(String),
    #[error("writing `{path}`: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("replay scratch database: {0}")]
    Scratch(std::io::Error),
}

impl RecordError {
    /// Whether the error is the user's input (exit 2) rather than storage or internal (exit 3).
    pub fn is_input(&self) -> bool {
        match self {
            RecordError::Ledger(e) => e.is_input(),
            RecordError::File(_)
            | RecordError::Invalid { .. }
            | RecordError::Exists(_)
            | RecordError::NotFound(_)
            | RecordError::BadSubject(_) => true,
            RecordError::Sqlite(_)
            | RecordError::BadRow { .. }
            | RecordError::BadEntry { .. }
            | RecordError::Write { .. }
            | RecordError::Scratch(_) => false,
        }
    }
}

/// What an entry does to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `<kind>.create`, or `<kind>.record` for dues, meetings and transfers.
    Create,
    /// `<kind>.update`.
    Update,
    /// `<kind>.remove`.
    Remove,
}

/// The entry kind of an action on a record kind: `member.create`, `dues.record`,
/// `org.update`, `user.remove`.
pub fn entry_kind(kind: RecordKind, action: Action) -> &'static str {
    use RecordKind as K;
    match (kind, action) {
        (K::Org, Action::Create) => "org.create",
        (K::Member, Action::Create) => "member.create",
        (K::User, Action::Create) => "user.create",
        (K::Dues, Action::Create) => "dues.record",
        (K::Meeting, Action::Create) => "meeting.record",
        (K::Transfer, Action::Create) => "transfer.record",
        (K::Org, Action::Update) => "org.update",
        (K::Member, Action::Update) => "member.update",
        (K::User, Action::Update) => "user.update",
        (K::Dues, Action::Update) => "dues.update",
        (K::Meeting, Action::Update) => "meeting.update",
        (K::Transfer, Action::Update) => "transfer.update",
        (K::Org, Action::Remove) => "org.remove",
        (K::Member, Action::Remove) => "member.remove",
        (K::User, Action::Remove) => "user.remove",
        (K::Dues, Action::Remove) => "dues.remove",
        (K::Meeting, Action::Remove) => "meeting.remove",
        (K::Transfer, Action::Remove) => "transfer.remove",
    }
}

/// The record kind whose family an entry kind belongs to (`member.*` → member), if any.
pub fn record_family(entry_kind: &str) -> Option<RecordKind> {
    let family = entry_kind.split('.').next()?;
    RecordKind::ALL.into_iter().find(|k| k.name() == family)
}

/// The record kind and action of an entry kind, if it is one of the record entry kinds.
pub fn parse_entry_kind(kind: &str) -> Option<(RecordKind, Action)> {
    let record = record_family(kind)?;
    [Action::Create, Action::Update, Action::Remove]
        .into_iter()
        .find(|a| entry_kind(record, *a) == kind)
        .map(|a| (record, a))
}

/// The subject of a record: `member/M000123`.
pub fn subject(kind: RecordKind, id: &str) -> String {
    format!("{}/{id}", kind.name())
}

/// Splits a record name `<kind>/<id>` (kind singular or plural: `member/M1`, `dues/M1/2026-03`).
pub fn parse_subject(name: &str) -> Result<(RecordKind, String), RecordError> {
    let bad = || RecordError::BadSubject(name.to_owned());
    let (kind, id) = name.split_once('/').ok_or_else(bad)?;
    let kind: RecordKind = kind.parse().map_err(|_| bad())?;
    if id.is_empty() || id.chars().any(char::is_control) {
        return Err(bad());
    }
    Ok((kind, id.to_owned()))
}

// ---------------------------------------------------------------------------------------
// Schema

/// Whether the projection table of `kind` exists.
pub fn has_table(conn: &Connection, kind: RecordKind) -> Result<bool, RecordError> {
    let n: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [kind.table()],
        |r| r.get(0),
    )?;
    Ok(n > 0)
}

/// Creates the projection tables and indexes that do not exist yet. Idempotent; call it
/// when a ledger is opened for record work. Inside an open transaction the tables are
/// created in it; otherwise in a transaction of their own.
pub fn ensure_schema(conn: &Connection) -> Result<(), RecordError> {
    let mut missing = false;
    for kind in RecordKind::ALL {
        missing |= !has_table(conn, kind)?;
    }
    if !missing {
        return Ok(());
    }
    if !conn.is_autocommit() {
        conn.execute_batch(SCHEMA_SQL)?;
        return Ok(());
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    match conn.execute_batch(SCHEMA_SQL) {
        Ok(()) => conn.execute_batch("COMMIT")?,
        Err(e) => {
            // The error that matters is the one that made the schema fail.
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e.into());
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// SQL of each kind, built once

struct KindSql {
    select: String,
    insert: String,
    update: String,
    delete: String,
    scan: String,
    count: String,
}

fn kind_sql(kind: RecordKind) -> &'static KindSql {
    static SQL: OnceLock<Vec<KindSql>> = OnceLock::new();
    let all = SQL.get_or_init(|| {
        RecordKind::ALL
            .iter()
            .map(|&k| {
                let cols: Vec<&str> = k.columns().collect();
                let table = k.table();
                let id = k.id_field();
                let list = cols.join(", ");
                let marks: Vec<String> = (1..=cols.len() + 1).map(|i| format!("?{i}")).collect();
                let sets: Vec<String> = cols
                    .iter()
                    .enumerate()
                    .skip(1)
                    .map(|(i, c)| format!("{c} = ?{}", i + 1))
                    .collect();
                KindSql {
                    select: format!("SELECT {list}, last_seq FROM {table} WHERE {id} = ?1"),
                    insert: format!(
                        "INSERT INTO {table} ({list}, last_seq) VALUES ({})",
                        marks.join(", ")
                    ),
                    update: format!(
                        "UPDATE {table} SET {}, last_seq = ?{} WHERE {id} = ?1",
                        sets.join(", "),
                        cols.len() + 1
                    ),
                    delete: format!("DELETE FROM {table} WHERE {id} = ?1"),
                    scan: format!("SELECT {list}, last_seq FROM {table} ORDER BY {id}"),
                    count: format!("SELECT EXISTS (SELECT 1 FROM {table})"),
                }
            })
            .collect()
    });
    let index = RecordKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
    // INVARIANT: `all` has one entry per kind of RecordKind::ALL, in that order.
    &all[index]
}

// ---------------------------------------------------------------------------------------
// Reads

/// A projection row: the record's flat form and the seq of the entry that last wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub fields: Fields,
    pub last_seq: u64,
}

/// Reads a row selected as `<kind columns>, last_seq` by position.
fn read_row(kind: RecordKind, row: &rusqlite::Row<'_>) -> Result<Row, RecordError> {
    let specs = kind.fields();
    let mut fields = Fields::new();
    for (i, spec) in specs.iter().enumerate() {
        let value = row.get_ref(i)?;
        let value = spec.ty.read_sql(value).map_err(|why| RecordError::BadRow {
            subject: row_subject(kind, row),
            why: ModelError::Column {
                column: spec.name,
                why: why.to_owned(),
            },
        })?;
        if let Some(v) = value {
            fields.insert(spec.name, v);
        }
    }
    let last_seq: i64 = row.get(specs.len())?;
    Ok(Row {
        fields,
        last_seq: u64::try_from(last_seq).unwrap_or(0),
    })
}

fn row_subject(kind: RecordKind, row: &rusqlite::Row<'_>) -> String {
    let id: String = row.get(0).unwrap_or_default();
    subject(kind, &id)
}

/// The current row of a record, if it exists (a missing table reads as empty).
pub fn get(conn: &Connection, kind: RecordKind, id: &str) -> Result<Option<Row>, RecordError> {
    let mut stmt = match conn.prepare_cached(&kind_sql(kind).select) {
        Ok(s) => s,
        Err(_) if !has_table(conn, kind)? => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut rows = stmt.query([id])?;
    match rows.next()? {
        Some(row) => read_row(kind, row).map(Some),
        None => Ok(None),
    }
}

/// The current record (validated), if it exists.
pub fn get_record(
    conn: &Connection,
    kind: RecordKind,
    id: &str,
) -> Result<Option<Record>, RecordError> {
    get(conn, kind, id)?
        .map(|row| {
            Record::from_fields(kind, &row.fields).map_err(|why| RecordError::BadRow {
                subject: subject(kind, id),
                why,
            })
        })
        .transpose()
}

/// Whether the projection of `kind` has no rows (a missing table is empty).
pub fn is_empty(conn: &Connection, kind: RecordKind) -> Result<bool, RecordError> {
    if !has_table(conn, kind)? {
        return Ok(true);
    }
    let any: bool = conn.query_row(&kind_sql(kind).count, [], |r| r.get(0))?;
    Ok(!any)
}

/// Calls `f` with every row of `kind` in id order (SQLite BINARY order, i.e. byte order).
pub fn for_each(
    conn: &Connection,
    kind: RecordKind,
    f: impl FnMut(Row) -> Result<(), RecordError>,
) -> Result<(), RecordError> {
    try_for_each(conn, kind, f)
}

/// [`for_each`] with a callback of another error type (the first error stops the scan).
pub fn try_for_each<E: From<RecordError>>(
    conn: &Connection,
    kind: RecordKind,
    mut f: impl FnMut(Row) -> Result<(), E>,
) -> Result<(), E> {
    if !has_table(conn, kind)? {
        return Ok(());
    }
    let mut stmt = conn
        .prepare(&kind_sql(kind).scan)
        .map_err(RecordError::from)?;
    let mut rows = stmt.query([]).map_err(RecordError::from)?;
    while let Some(row) = rows.next().map_err(RecordError::from)? {
        f(read_row(kind, row)?)?;
    }
    Ok(())
}

/// `SELECT <columns>, last_seq FROM <table> ORDER BY <id>`.
pub(crate) fn scan_sql(kind: RecordKind) -> &'static str {
    &kind_sql(kind).scan
}

// ---------------------------------------------------------------------------------------
// Row writes (crate-private: only together with an entry, or on a replay scratch database)

/// One parameter of a row write: a column value (NULL when absent) or `last_seq`.
enum Param<'a> {
    Field(Option<&'a FieldValue>),
    Seq(i64),
}

impl ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Param::Field(v) => v.to_sql(),
            Param::Seq(s) => s.to_sql(),
        }
    }
}

fn row_params(kind: RecordKind, fields: &Fields, seq: u64) -> Vec<Param<'_>> {
    let mut params: Vec<Param<'_>> = kind
        .fields()
        .iter()
        .map(|spec| Param::Field(fields.get(spec.name)))
        .collect();
    params.push(Param::Seq(seq_param(seq)));
    params
}

fn seq_param(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

/// Inserts a new row; fails if the id exists.
pub(crate) fn insert_row(
    conn: &Connection,
    kind: RecordKind,
    fields: &Fields,
    seq: u64,
) -> Result<(), RecordError> {
    let mut stmt = conn.prepare_cached(&kind_sql(kind).insert)?;
    stmt.execute(params_from_iter(row_params(kind, fields, seq)))?;
    Ok(())
}

/// Replaces every column of an existing row; `Ok(false)` if there is no row with the id.
pub(crate) fn update_row(
    conn: &Connection,
    kind: RecordKind,
    fields: &Fields,
    seq: u64,
) -> Result<bool, RecordError> {
    let mut stmt = conn.prepare_cached(&kind_sql(kind).update)?;
    let n = stmt.execute(params_from_iter(row_params(kind, fields, seq)))?;
    Ok(n == 1)
}

/// Deletes a row; `Ok(false)` if there was none.
pub(crate) fn delete_row(
    conn: &Connection,
    kind: RecordKind,
    id: &str,
) -> Result<bool, RecordError> {
    let mut stmt = conn.prepare_cached(&kind_sql(kind).delete)?;
    Ok(stmt.execute([id])? == 1)
}

// ---------------------------------------------------------------------------------------
// Entry + row writes

fn id_of(kind: RecordKind, fields: &Fields) -> Option<&str> {
    fields.get(kind.id_field()).and_then(FieldValue::as_text)
}

/// Appends the create entry of a new record and inserts its row, in `w`'s transaction.
/// Fails if a record with the same id exists.
pub fn create(
    w: &mut WriteTx<'_>,
    record: &Record,
    actor: &Actor,
) -> Result<Appended, RecordError> {
    let kind = record.kind();
    let id = record.id();
    if get(w.conn(), kind, &id)?.is_some() {
        return Err(RecordError::Exists(subject(kind, &id)));
    }
    create_unchecked(w, kind, &id, record.to_fields(), actor)
}

/// `{name: value}` without copying `value` (`json!` would serialise it into a new value).
fn wrap(name: &str, value: Value) -> Value {
    let mut map = serde_json::Map::with_capacity(1);
    map.insert(name.to_owned(), value);
    Value::Object(map)
}

/// [`create`] without the existence check, for callers that know the id is new (import of
/// a file into an empty table) and fields that come from a validated record.
pub(crate) fn create_unchecked(
    w: &mut WriteTx<'_>,
    kind: RecordKind,
    id: &str,
    fields: Fields,
    actor: &Actor,
) -> Result<Appended, RecordError> {
    let e = NewEntry::new(
        entry_kind(kind, Action::Create),
        &subject(kind, id),
        actor.clone(),
        wrap("record", fields_to_json(&fields)),
    )
    .map_err(LedgerError::from)?;
    let appended = w.append(e)?;
    insert_row(w.conn(), kind, &fields, appended.seq)?;
    Ok(appended)
}

/// Appends the update entry of a record and rewrites its row, in `w`'s transaction.
/// `changes` must apply to the current row (each `old` is the current value) and leave a
/// valid record with the same id. No changes append nothing (`Ok(None)`).
pub fn update(
    w: &mut WriteTx<'_>,
    kind: RecordKind,
    id: &str,
    changes: &Changes,
    actor: &Actor,
) -> Result<Option<Appended>, RecordError> {
    if changes.is_empty() {
        return Ok(None);
    }
    let current =
        get(w.conn(), kind, id)?.ok_or_else(|| RecordError::NotFound(subject(kind, id)))?;
    let mut fields = current.fields;
    let invalid = |why| RecordError::Invalid {
        subject: subject(kind, id),
        why,
    };
    apply(&mut fields, changes).map_err(invalid)?;
    let after = Record::from_fields(kind, &fields).map_err(invalid)?;
    if after.id() != id {
        return Err(invalid(ModelError::KeyMismatch {
            field: kind.id_field(),
        }));
    }
    update_unchecked(w, kind, id, &fields, changes, actor).map(Some)
}

/// [`update`] for callers that computed `fields` (the record after `changes`) themselves
/// from the current row and a validated record.
pub(crate) fn update_unchecked(
    w: &mut WriteTx<'_>,
    kind: RecordKind,
    id: &str,
    fields: &Fields,
    changes: &Changes,
    actor: &Actor,
) -> Result<Appended, RecordError> {
    let e = NewEntry::new(
        entry_kind(kind, Action::Update),
        &subject(kind, id),
        actor.clone(),
        wrap("changes", changes_to_json(changes)),
    )
    .map_err(LedgerError::from)?;
    let appended = w.append(e)?;
    if !update_row(w.conn(), kind, fields, appended.seq)? {
        return Err(RecordError::NotFound(subject(kind, id)));
    }
    Ok(appended)
}

/// Appends the remove entry of a record (carrying the record as it was) and deletes its
/// row, in `w`'s transaction.
pub fn remove(
    w: &mut WriteTx<'_>,
    kind: RecordKind,
    id: &str,
    actor: &Actor,
) -> Result<Appended, RecordError> {
    let current =
        get(w.conn(), kind, id)?.ok_or_else(|| RecordError::NotFound(subject(kind, id)))?;
    debug_assert_eq!(id_of(kind, &current.fields), Some(id));
    let e = NewEntry::new(
        entry_kind(kind, Action::Remove),
        &subject(kind, id),
        actor.clone(),
        wrap("record", fields_to_json(&current.fields)),
    )
    .map_err(LedgerError::from)?;
    let appended = w.append(e)?;
    delete_row(w.conn(), kind, id)?;
    Ok(appended)
}

// ---------------------------------------------------------------------------------------
// Export

/// The CSV header of `kind`: its canonical English import columns (docs/IMPORT.md).
pub fn csv_header(kind: RecordKind) -> String {
    let names: Vec<&str> = kind
        .fields()
        .iter()
        .filter(|f| !f.derived)
        .map(|f| f.name)
        .collect();
    names.join(",")
}

/// Appends one CSV cell: quoted when it holds a comma, a quote or a line break.
fn push_cell(line: &mut String, text: &str) {
    if text.contains([',', '"', '\n', '\r']) {
        line.push('"');
        line.push_str(&text.replace('"', "\"\""));
        line.push('"');
    } else {
        line.push_str(text);
    }
}

/// A value as an import file writes it: money as yuan with two decimals, flags as
/// `true`/`false`, everything else as its canonical text.
fn cell_text(ty: FieldType, value: &FieldValue) -> String {
    match (ty, value) {
        (FieldType::Fen, FieldValue::Int(fen)) => match Fen::new(*fen) {
            Some(f) => f.to_string(),
            None => fen.to_string(),
        },
        (_, v) => v.to_string(),
    }
}

/// Appends one record as a line of an export (without the line end), in the columns of
/// [`csv_header`]. A masked money value (`***`) is written as it is: masked values are for
/// display and do not import back.
pub fn push_csv_line(line: &mut String, kind: RecordKind, fields: &Fields) {
    let specs = kind.fields().iter().filter(|f| !f.derived);
    for (i, spec) in specs.enumerate() {
        if i > 0 {
            line.push(',');
        }
        if let Some(v) = fields.get(spec.name) {
            push_cell(line, &cell_text(spec.ty, v));
        }
    }
}

/// Writes the projection of `kind` as CSV (UTF-8, LF, canonical English header, rows in id
/// order, one row per record) to `out`; returns the number of rows. The file imports back
/// to the same projection (docs/IMPORT.md, "Export").
pub fn export_csv(
    conn: &Connection,
    kind: RecordKind,
    out: &mut dyn Write,
    path: &std::path::Path,
) -> Result<u64, RecordError> {
    let io = |source| RecordError::Write {
        path: path.to_owned(),
        source,
    };
    let mut line = csv_header(kind);
    line.push('\n');
    out.write_all(line.as_bytes()).map_err(io)?;
    let mut n = 0u64;
    for_each(conn, kind, |row| {
        line.clear();
        push_csv_line(&mut line, kind, &row.fields);
        line.push('\n');
        n += 1;
        out.write_all(line.as_bytes()).map_err(io)
    })?;
    out.flush().map_err(io)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Ledger;
    use crate::records::model::{fields_from_json, Change};
    use serde_json::json;

    fn ledger() -> (tempfile::TempDir, Ledger) {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::init(
            &dir.path().join("d"),
            "test.example/ledger",
            Actor::cli("admin"),
        )
        .unwrap();
        (dir, l)
    }

    fn member(id: &str, phone: &str) -> Record {
        let json =
            json!({"member_id": id, "name": "张三", "phone": phone, "monthly_income": 450000});
        Record::from_fields(
            RecordKind::Member,
            &fields_from_json(RecordKind::Member, &json).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn entry_kinds_round_trip() {
        for kind in RecordKind::ALL {
            for action in [Action::Create, Action::Update, Action::Remove] {
                let name = entry_kind(kind, action);
                assert!(crate::ledger::entry::valid_kind(name), "{name}");
                assert_eq!(parse_entry_kind(name), Some((kind, action)));
            }
        }
        assert_eq!(entry_kind(RecordKind::Dues, Action::Create), "dues.record");
        assert_eq!(parse_entry_kind("dues.create"), None);
        assert_eq!(parse_entry_kind("member.frobnicate"), None);
        assert_eq!(record_family("member.frobnicate"), Some(RecordKind::Member));
        assert_eq!(record_family("import.batch"), None);
    }

    #[test]
    fn subjects_parse() {
        assert_eq!(
            parse_subject("dues/M1/2026-03#2").unwrap(),
            (RecordKind::Dues, "M1/2026-03#2".to_owned())
        );
        assert_eq!(
            parse_subject("members/M1").unwrap(),
            (RecordKind::Member, "M1".to_owned())
        );
        for bad in ["member", "member/", "people/M1", "/M1"] {
            assert!(
                matches!(parse_subject(bad), Err(RecordError::BadSubject(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn ensure_schema_is_idempotent_inside_and_outside_transactions() {
        let conn = Connection::open_in_memory().unwrap();
        ensure_schema(&conn).unwrap();
        ensure_schema(&conn).unwrap();
        for kind in RecordKind::ALL {
            assert!(has_table(&conn, kind).unwrap());
        }
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("BEGIN").unwrap();
        ensure_schema(&conn).unwrap();
        conn.execute_batch("ROLLBACK").unwrap();
        assert!(!has_table(&conn, RecordKind::Member).unwrap());
    }

    #[test]
    fn create_update_remove_write_entry_and_row_together() {
        let (_d, mut l) = ledger();
        let actor = Actor::cli("u1");
        let rec = member("M1", "13900000001");
        let mut w = l.write().unwrap();
        ensure_schema(w.conn()).unwrap();
        let a = create(&mut w, &rec, &actor).unwrap();
        assert!(matches!(
            create(&mut w, &rec, &actor),
            Err(RecordError::Exists(_))
        ));
        let mut changes = Changes::new();
        changes.insert(
            "phone",
            Change {
                old: Some(FieldValue::Text("13900000001".into())),
                new: Some(FieldValue::Text("13900000002".into())),
            },
        );
        let u = update(&mut w, RecordKind::Member, "M1", &changes, &actor)
            .unwrap()
            .unwrap();
        assert_eq!(u.seq, a.seq + 1);
        // The same change again no longer applies: its old value is stale.
        assert!(matches!(
            update(&mut w, RecordKind::Member, "M1", &changes, &actor),
            Err(RecordError::Invalid { .. })
        ));
        assert!(
            update(&mut w, RecordKind::Member, "M1", &Changes::new(), &actor)
                .unwrap()
                .is_none()
        );
        w.commit().unwrap();

        let row = get(l.conn(), RecordKind::Member, "M1").unwrap().unwrap();
        assert_eq!(row.last_seq, u.seq);
        assert_eq!(row.fields["phone"], FieldValue::Text("13900000002".into()));
        let e = l.entry(u.seq).unwrap();
        assert!(
            e.body
                .contains(r#""changes":{"phone":["13900000001","13900000002"]}"#),
            "{}",
            e.body
        );
        assert!(e.body.contains(r#""kind":"member.update""#));
        let e = l.entry(a.seq).unwrap();
        assert!(
            e.body
                .contains(r#""record":{"member_id":"M1","monthly_income":450000"#),
            "{}",
            e.body
        );

        let mut w = l.write().unwrap();
        let r = remove(&mut w, RecordKind::Member, "M1", &actor).unwrap();
        w.commit().unwrap();
        assert!(get(l.conn(), RecordKind::Member, "M1").unwrap().is_none());
        assert!(l
            .entry(r.seq)
            .unwrap()
            .body
            .contains(r#""kind":"member.remove""#));
    }

    #[test]
    fn fail_dropped_write_leaves_no_row() {
        let (_d, mut l) = ledger();
        ensure_schema(l.conn()).unwrap();
        {
            let mut w = l.write().unwrap();
            create(&mut w, &member("M1", "13900000001"), &Actor::cli("u")).unwrap();
        }
        assert!(get(l.conn(), RecordKind::Member, "M1").unwrap().is_none());
        assert_eq!(l.size().unwrap(), 1);
    }

    #[test]
    fn fail_update_that_changes_the_id_or_is_invalid() {
        let (_d, mut l) = ledger();
        let actor = Actor::cli("u");
        let mut w = l.write().unwrap();
        ensure_schema(w.conn()).unwrap();
        create(&mut w, &member("M1", "13900000001"), &actor).unwrap();
        let mut changes = Changes::new();
        changes.insert(
            "member_id",
            Change {
                old: Some(FieldValue::Text("M1".into())),
                new: Some(FieldValue::Text("M2".into())),
            },
        );
        assert!(update(&mut w, RecordKind::Member, "M1", &changes, &actor).is_err());
        let mut changes = Changes::new();
        changes.insert(
            "gender",
            Change {
                old: None,
                new: Some(FieldValue::Text("男".into())),
            },
        );
        assert!(matches!(
            update(&mut w, RecordKind::Member, "M1", &changes, &actor),
            Err(RecordError::Invalid { .. })
        ));
        assert!(matches!(
            update(&mut w, RecordKind::Member, "M9", &changes, &actor),
            Err(RecordError::NotFound(_))
        ));
    }

    #[test]
    fn export_writes_canonical_csv_in_id_order() {
        let conn = Connection::open_in_memory().unwrap();
        ensure_schema(&conn).unwrap();
        let mut f = member("M2", "13900000002").to_fields();
        f.insert("name", FieldValue::Text("a,\"b\"".into()));
        insert_row(&conn, RecordKind::Member, &f, 3).unwrap();
        insert_row(
            &conn,
            RecordKind::Member,
            &member("M1", "13900000001").to_fields(),
            2,
        )
        .unwrap();
        let mut out = Vec::new();
        let n = export_csv(
            &conn,
            RecordKind::Member,
            &mut out,
            std::path::Path::new("-"),
        )
        .unwrap();
        assert_eq!(n, 2);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], csv_header(RecordKind::Member));
        assert!(lines[0].starts_with("member_id,name,gender,"));
        assert_eq!(lines[1], "M1,张三,,,,,13900000001,,,,,,,,,,,,,,4500.00");
        assert_eq!(
            lines[2],
            "M2,\"a,\"\"b\"\"\",,,,,13900000002,,,,,,,,,,,,,,4500.00"
        );
        assert_eq!(
            csv_header(RecordKind::Dues),
            "member_id,month,base_income,amount,paid_date"
        );
    }
}
