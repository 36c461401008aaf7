//! Importing a file of records into the ledger: one write transaction per file.
//!
//! The file is streamed row by row ([`RecordReader`]); each row is compared with the
//! projection, limited to the columns the file has, and every real change becomes one entry
//! (`<kind>.create`/`.record` or `<kind>.update`) written together with its projection row.
//! An `import.batch` entry with the file's SHA-256 and counts ends the transaction. A file
//! with any bad row appends nothing (the transaction is dropped, so SQLite rolls it back),
//! and a file that changes nothing appends nothing either, not even `import.batch`.
//!
//! [`import_guarded`] asks an [`ImportGuard`] about every row before it is written (the
//! access policy, in `policy::enforce`): one refused row and the whole file is refused,
//! nothing of it written; when every row is allowed the guard appends what it has to say
//! (the access decision) in the import's own transaction, so the changes and their
//! authorisation commit together.
//!
//! This module does not print, sign checkpoints or decide who may import; the caller (or
//! its guard) does.

use std::io::Read;
use std::path::Path;

use rusqlite::Connection;
use serde_json::json;

use super::model::{apply, diff, Changes, Fields, Record, RecordKind};
use super::parse::{FileSummary, ImportOptions, RecordReader};
use super::projection::{self, RecordError};
use crate::ledger::{Actor, Ledger, LedgerError, NewEntry, WriteTx};

/// Entry kind of the summary entry that ends every import that changed something.
pub const BATCH_KIND: &str = "import.batch";

/// SQLite page cache for an import, in KiB (`PRAGMA cache_size` takes negative KiB).
const IMPORT_CACHE_KIB: i64 = 256 * 1024;

/// How often (in rows) the progress callback is called.
const PROGRESS_EVERY: u64 = 4096;

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    pub kind: RecordKind,
    /// The file as read: name, SHA-256, rows, encoding, format.
    pub file: FileSummary,
    /// Records that did not exist and were created.
    pub created: u64,
    /// Records that existed and changed in at least one of the file's columns.
    pub updated: u64,
    /// Rows equal to their record in the file's columns.
    pub unchanged: u64,
    /// The seqs of the appended entries, first to last (the last is `import.batch`); `None`
    /// when nothing changed and nothing was appended.
    pub appended: Option<(u64, u64)>,
}

/// One row of an import file as its guard sees it, before anything of it is written.
#[derive(Debug, Clone, Copy)]
pub struct RowChange<'a> {
    /// The record as the file gives it (only the file's columns are meaningful for an
    /// existing record: see `changes`).
    pub record: &'a Record,
    /// The record's current fields in the projection; `None` for a new record.
    pub current: Option<&'a Fields>,
    /// What the row changes in an existing record (limited to the file's columns); empty
    /// for an unchanged row and for a new record.
    pub changes: &'a Changes,
}

impl RowChange<'_> {
    /// Whether the row creates a record.
    pub fn is_new(&self) -> bool {
        self.current.is_none()
    }
}

/// Decides, row by row, whether an import may go ahead ([`import_guarded`]).
pub trait ImportGuard {
    /// The guard's own errors; import errors convert into them.
    type Error: From<RecordError>;

    /// May this row be imported? Called for every row, changed or not (an unchanged row
    /// would otherwise tell its importer that the ledger holds exactly those values), inside
    /// the import's transaction and after the rows before it were written. After the first
    /// `false` the guard is not called again.
    fn check(&mut self, conn: &Connection, row: &RowChange<'_>) -> Result<bool, Self::Error>;

    /// Every row was allowed and something changed: append what the guard records, in the
    /// import's transaction, before its `import.batch` entry. `summary.appended` is `None`.
    fn allowed(&mut self, w: &mut WriteTx<'_>, summary: &ImportSummary) -> Result<(), Self::Error>;
}

/// The guard of an unguarded import: everything is allowed, nothing recorded.
struct Unguarded;

impl ImportGuard for Unguarded {
    type Error = RecordError;

    fn check(&mut self, _: &Connection, _: &RowChange<'_>) -> Result<bool, RecordError> {
        Ok(true)
    }

    fn allowed(&mut self, _: &mut WriteTx<'_>, _: &ImportSummary) -> Result<(), RecordError> {
        Ok(())
    }
}

/// What a guarded import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guarded {
    /// Every row was allowed; the file is imported as [`import`] would have.
    Imported(ImportSummary),
    /// The guard refused a row: nothing was written (`appended` is `None`). The counts are
    /// those the whole file would have had.
    Refused(ImportSummary),
}

/// The name recorded for a file: its last path component.
pub fn file_name(file: &str) -> String {
    Path::new(file)
        .file_name()
        .map_or_else(|| file.to_owned(), |n| n.to_string_lossy().into_owned())
}

/// The subject of an import's `import.batch` entry: `import/members`.
pub fn batch_subject(kind: RecordKind) -> String {
    format!("import/{}", kind.plural())
}

/// Imports a file of `kind` records. `progress` is called with the number of rows read so
/// far, every few thousand rows and once at the end.
pub fn import(
    ledger: &mut Ledger,
    kind: RecordKind,
    path: &Path,
    options: ImportOptions,
    actor: &Actor,
    progress: &mut dyn FnMut(u64),
) -> Result<ImportSummary, RecordError> {
    let reader = RecordReader::open(path, kind, options)?;
    import_reader(ledger, kind, reader, actor, progress)
}

/// Imports the rows of an open reader (a file, a request body).
pub fn import_reader<R: Read>(
    ledger: &mut Ledger,
    kind: RecordKind,
    reader: RecordReader<R>,
    actor: &Actor,
    progress: &mut dyn FnMut(u64),
) -> Result<ImportSummary, RecordError> {
    match import_reader_guarded(ledger, kind, reader, actor, &mut Unguarded, progress)? {
        Guarded::Imported(s) | Guarded::Refused(s) => Ok(s),
    }
}

/// [`import`] with every row put to `guard` first: one refused row and nothing of the file
/// is written ([`Guarded::Refused`]). A file with a bad row is an error as for [`import`],
/// whatever the guard said about the rows before it.
pub fn import_guarded<G: ImportGuard>(
    ledger: &mut Ledger,
    kind: RecordKind,
    path: &Path,
    options: ImportOptions,
    actor: &Actor,
    guard: &mut G,
    progress: &mut dyn FnMut(u64),
) -> Result<Guarded, G::Error> {
    let reader = RecordReader::open(path, kind, options).map_err(RecordError::from)?;
    import_reader_guarded(ledger, kind, reader, actor, guard, progress)
}

/// [`import_guarded`] on the rows of an open reader.
pub fn import_reader_guarded<R: Read, G: ImportGuard>(
    ledger: &mut Ledger,
    kind: RecordKind,
    mut reader: RecordReader<R>,
    actor: &Actor,
    guard: &mut G,
    progress: &mut dyn FnMut(u64),
) -> Result<Guarded, G::Error> {
    projection::ensure_schema(ledger.conn())?;
    // A larger page cache for the bulk write, restored afterwards. Failing to set it only
    // makes the import slower, so those errors are ignored.
    let before: Option<i64> = ledger
        .conn()
        .pragma_query_value(None, "cache_size", |r| r.get(0))
        .ok();
    let _ = ledger
        .conn()
        .pragma_update(None, "cache_size", -IMPORT_CACHE_KIB);
    let result = import_in_tx(ledger, kind, &mut reader, actor, guard, progress);
    if let Some(before) = before {
        let _ = ledger.conn().pragma_update(None, "cache_size", before);
    }
    result
}

fn import_in_tx<R: Read, G: ImportGuard>(
    ledger: &mut Ledger,
    kind: RecordKind,
    reader: &mut RecordReader<R>,
    actor: &Actor,
    guard: &mut G,
    progress: &mut dyn FnMut(u64),
) -> Result<Guarded, G::Error> {
    let mut w = ledger.write().map_err(RecordError::from)?;
    // Ids are unique within a file (the reader rejects repeats and numbers repeated keys),
    // so into an empty table every row is new and needs no lookup, and a row's difference
    // with the projection does not depend on the rows before it.
    let fresh = projection::is_empty(w.conn(), kind)?;
    let (mut created, mut updated, mut unchanged, mut rows) = (0u64, 0u64, 0u64, 0u64);
    let mut first_seq = None;
    let mut refused = false;
    let no_changes = Changes::new();
    while let Some(row) = reader.next_row().map_err(RecordError::from)? {
        rows += 1;
        let id = row.record.id();
        let new = row.record.to_fields();
        let current = if fresh {
            None
        } else {
            projection::get(w.conn(), kind, &id)?
        };
        let changes = match &current {
            None => None,
            Some(current) => {
                let mut changes = diff(&current.fields, &new);
                row.columns.restrict(&mut changes);
                Some(changes)
            }
        };
        if !refused {
            let change = RowChange {
                record: &row.record,
                current: current.as_ref().map(|c| &c.fields),
                changes: changes.as_ref().unwrap_or(&no_changes),
            };
            refused = !guard.check(w.conn(), &change)?;
        }
        if rows % PROGRESS_EVERY == 0 {
            progress(rows);
        }
        if refused {
            // Only counted from here on: nothing of the file will be written.
            match &changes {
                None => created += 1,
                Some(c) if c.is_empty() => unchanged += 1,
                Some(_) => updated += 1,
            }
            continue;
        }
        let appended = match (current, changes) {
            (Some(current), Some(changes)) => {
                if changes.is_empty() {
                    unchanged += 1;
                    None
                } else {
                    let mut after = current.fields;
                    apply(&mut after, &changes).map_err(|why| RecordError::Invalid {
                        subject: projection::subject(kind, &id),
                        why,
                    })?;
                    updated += 1;
                    Some(projection::update_unchecked(
                        &mut w, kind, &id, &after, &changes, actor,
                    )?)
                }
            }
            _ => {
                created += 1;
                Some(projection::create_unchecked(&mut w, kind, &id, new, actor)?)
            }
        };
        if let (None, Some(a)) = (first_seq, &appended) {
            first_seq = Some(a.seq);
        }
    }
    progress(rows);
    let file = reader
        .summary()
        .cloned()
        .ok_or_else(|| LedgerError::Damaged("the import file was not read to its end".into()))
        .map_err(RecordError::from)?;
    let mut summary = ImportSummary {
        kind,
        file,
        created,
        updated,
        unchanged,
        appended: None,
    };
    if refused {
        // Dropping `w` rolls back everything the rows before the refused one wrote.
        return Ok(Guarded::Refused(summary));
    }
    if created + updated == 0 {
        // Dropping `w` rolls back: nothing was appended.
        return Ok(Guarded::Imported(summary));
    }
    guard.allowed(&mut w, &summary)?;
    let batch = NewEntry::new(
        BATCH_KIND,
        &batch_subject(kind),
        actor.clone(),
        json!({
            "kind": kind.plural(),
            "file": file_name(&summary.file.file),
            "sha256": summary.file.sha256_hex(),
            "rows": summary.file.rows,
            "created": created,
            "updated": updated,
            "unchanged": unchanged,
            "encoding": summary.file.encoding.name(),
        }),
    )
    .map_err(|e| RecordError::from(LedgerError::from(e)))?;
    let last = w.append(batch).map_err(RecordError::from)?;
    w.commit().map_err(RecordError::from)?;
    summary.appended = Some((first_seq.unwrap_or(last.seq), last.seq));
    Ok(Guarded::Imported(summary))
}

/// What the record modules' tests share: a fresh ledger, and importing a text as a file.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// An empty ledger in a temporary directory.
    pub(crate) fn ledger() -> (tempfile::TempDir, Ledger) {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::init(
            &dir.path().join("d"),
            "test.example/ledger",
            Actor::cli("admin"),
        )
        .unwrap();
        (dir, l)
    }

    /// Writes `text` to `dir/name` and imports it as `kind`, attributed to `user`.
    pub(crate) fn import_text(
        l: &mut Ledger,
        dir: &Path,
        name: &str,
        kind: RecordKind,
        text: &str,
        user: &str,
    ) -> Result<ImportSummary, RecordError> {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        import(
            l,
            kind,
            &p,
            ImportOptions::default(),
            &Actor::cli(user),
            &mut |_| {},
        )
    }
}

#[cfg(test)]
mod tests {
    use super::testing::ledger as setup;
    use super::*;
    use crate::ledger::Entry;
    use crate::records::model::FieldValue;
    use crate::records::parse::ImportError;

    fn run(
        l: &mut Ledger,
        dir: &Path,
        name: &str,
        kind: RecordKind,
        text: &str,
    ) -> Result<ImportSummary, RecordError> {
        testing::import_text(l, dir, name, kind, text, "u1")
    }

    #[test]
    fn import_creates_updates_and_records_a_batch() {
        let (d, mut l) = setup();
        let s = run(
            &mut l,
            d.path(),
            "m.csv",
            RecordKind::Member,
            "member_id,name,phone\nM1,张三,13900000001\nM2,李四,\n",
        )
        .unwrap();
        assert_eq!((s.created, s.updated, s.unchanged), (2, 0, 0));
        assert_eq!(s.appended, Some((1, 3)));
        let batch = Entry::parse(l.entry(3).unwrap().body.as_bytes()).unwrap();
        assert_eq!(batch.kind, "import.batch");
        assert_eq!(batch.subject, "import/members");
        assert_eq!(batch.data["file"], "m.csv");
        assert_eq!(batch.data["rows"], 2);
        assert_eq!(batch.data["created"], 2);
        assert_eq!(batch.data["encoding"], "UTF-8");
        assert_eq!(batch.data["sha256"].as_str().unwrap().len(), 64);

        // Only the file's columns are compared: `name` is absent here and stays.
        let s = run(
            &mut l,
            d.path(),
            "m2.csv",
            RecordKind::Member,
            "member_id,phone\nM1,13900000002\nM2,\n",
        )
        .unwrap();
        assert_eq!((s.created, s.updated, s.unchanged), (0, 1, 1));
        let row = projection::get(l.conn(), RecordKind::Member, "M1")
            .unwrap()
            .unwrap();
        assert_eq!(row.fields["name"], FieldValue::Text("张三".into()));
        assert_eq!(row.fields["phone"], FieldValue::Text("13900000002".into()));
        assert_eq!(row.last_seq, 4);
        let update = Entry::parse(l.entry(4).unwrap().body.as_bytes()).unwrap();
        assert_eq!(update.kind, "member.update");
        assert_eq!(
            update.data,
            json!({"changes": {"phone": ["13900000001", "13900000002"]}})
        );
        assert_eq!(update.actor.user, "u1");
    }

    #[test]
    fn reimport_appends_nothing() {
        let (d, mut l) = setup();
        let text = "member_id,month,amount\nM1,2026-01,10\nM1,2026-01,10\nM1,2026-02,10\n";
        let s = run(&mut l, d.path(), "d.csv", RecordKind::Dues, text).unwrap();
        assert_eq!(s.created, 3);
        let size = l.size().unwrap();
        let s = run(&mut l, d.path(), "d.csv", RecordKind::Dues, text).unwrap();
        assert_eq!(
            (s.created, s.updated, s.unchanged, s.appended),
            (0, 0, 3, None)
        );
        assert_eq!(l.size().unwrap(), size);
    }

    #[test]
    fn fail_bad_row_appends_nothing() {
        let (d, mut l) = setup();
        run(
            &mut l,
            d.path(),
            "a.csv",
            RecordKind::Member,
            "member_id,name\nM1,a\n",
        )
        .unwrap();
        let size = l.size().unwrap();
        let err = run(
            &mut l,
            d.path(),
            "b.csv",
            RecordKind::Member,
            "member_id,name,birth_date\nM1,b,\nM2,c,1990-13-01\nM3,d,\n",
        )
        .unwrap_err();
        let RecordError::File(ImportError::BadRows(bad)) = &err else {
            panic!("{err}")
        };
        assert_eq!(bad.listed[0].line, 3);
        assert!(err.is_input());
        assert_eq!(l.size().unwrap(), size);
        let row = projection::get(l.conn(), RecordKind::Member, "M1")
            .unwrap()
            .unwrap();
        assert_eq!(row.fields["name"], FieldValue::Text("a".into()));
        assert!(projection::get(l.conn(), RecordKind::Member, "M2")
            .unwrap()
            .is_none());
    }

    /// Refuses the row of one id; counts its calls; on `allowed` appends a note entry.
    struct Refuse {
        id: &'static str,
        checked: Vec<(String, bool, usize)>,
        allowed_at: Option<u64>,
    }

    impl ImportGuard for Refuse {
        type Error = RecordError;

        fn check(&mut self, _: &Connection, row: &RowChange<'_>) -> Result<bool, RecordError> {
            let id = row.record.id();
            self.checked
                .push((id.clone(), row.is_new(), row.changes.len()));
            Ok(id != self.id)
        }

        fn allowed(
            &mut self,
            w: &mut WriteTx<'_>,
            summary: &ImportSummary,
        ) -> Result<(), RecordError> {
            assert_eq!(summary.appended, None);
            let e = NewEntry::new(
                "note.allowed",
                "import/members",
                Actor::cli("guard"),
                json!({"changed": summary.created + summary.updated}),
            )
            .map_err(LedgerError::from)?;
            self.allowed_at = Some(w.append(e)?.seq);
            Ok(())
        }
    }

    fn guarded(
        l: &mut Ledger,
        dir: &Path,
        text: &str,
        guard: &mut Refuse,
    ) -> Result<Guarded, RecordError> {
        let p = dir.join("g.csv");
        std::fs::write(&p, text).unwrap();
        import_guarded(
            l,
            RecordKind::Member,
            &p,
            ImportOptions::default(),
            &Actor::cli("u1"),
            guard,
            &mut |_| {},
        )
    }

    #[test]
    fn guarded_import_records_the_guard_entry_before_the_batch() {
        let (d, mut l) = setup();
        run(
            &mut l,
            d.path(),
            "a.csv",
            RecordKind::Member,
            "member_id,name\nM1,a\n",
        )
        .unwrap();
        let mut g = Refuse {
            id: "none",
            checked: Vec::new(),
            allowed_at: None,
        };
        let r = guarded(
            &mut l,
            d.path(),
            "member_id,name\nM1,a\nM2,b\nM3,c\n",
            &mut g,
        )
        .unwrap();
        let Guarded::Imported(s) = r else {
            panic!("{r:?}")
        };
        // Every row is put to the guard, the unchanged one too.
        assert_eq!(
            g.checked,
            [
                ("M1".to_string(), false, 0),
                ("M2".to_string(), true, 0),
                ("M3".to_string(), true, 0)
            ]
        );
        assert_eq!((s.created, s.updated, s.unchanged), (2, 0, 1));
        // M2, M3, the guard's entry, then import.batch.
        assert_eq!(s.appended, Some((3, 6)));
        assert_eq!(g.allowed_at, Some(5));
        let e = Entry::parse(l.entry(5).unwrap().body.as_bytes()).unwrap();
        assert_eq!(
            (e.kind.as_str(), &e.data),
            ("note.allowed", &json!({"changed": 2}))
        );
    }

    #[test]
    fn fail_guard_refusal_writes_nothing_and_counts_the_whole_file() {
        let (d, mut l) = setup();
        run(
            &mut l,
            d.path(),
            "a.csv",
            RecordKind::Member,
            "member_id,name\nM1,a\nM2,b\n",
        )
        .unwrap();
        let size = l.size().unwrap();
        let mut g = Refuse {
            id: "M2",
            checked: Vec::new(),
            allowed_at: None,
        };
        let text = "member_id,name\nM0,z\nM1,x\nM2,y\nM3,c\nM4,d\n";
        let r = guarded(&mut l, d.path(), text, &mut g).unwrap();
        let Guarded::Refused(s) = r else {
            panic!("{r:?}")
        };
        // The guard is not asked again after the refusal; the counts are the file's.
        let ids: Vec<&str> = g.checked.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(ids, ["M0", "M1", "M2"]);
        assert_eq!(g.checked[1], ("M1".to_string(), false, 1));
        assert_eq!(
            (s.created, s.updated, s.unchanged, s.appended),
            (3, 2, 0, None)
        );
        assert_eq!(g.allowed_at, None);
        // The rows written before the refusal (M0 created, M1 updated) are rolled back.
        assert_eq!(l.size().unwrap(), size);
        assert!(projection::get(l.conn(), RecordKind::Member, "M0")
            .unwrap()
            .is_none());
        let row = projection::get(l.conn(), RecordKind::Member, "M1")
            .unwrap()
            .unwrap();
        assert_eq!(row.fields["name"], FieldValue::Text("a".into()));
    }
}
