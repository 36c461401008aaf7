//! Importing a file of records into the ledger: one write transaction per file.
//!
//! The file is streamed row by row ([`RecordReader`]); each row is compared with the
//! projection, limited to the columns the file has, and every real change becomes one entry
//! (`<kind>.create`/`.record` or `<kind>.update`) written together with its projection row.
//! An `import.batch` entry with the file's SHA-256 and counts ends the transaction. A file
//! with any bad row appends nothing (the transaction is dropped, so SQLite rolls it back),
//! and a file that changes nothing appends nothing either, not even `import.batch`.
//!
//! This module does not print, sign checkpoints or decide who may import; the caller does.

use std::io::Read;
use std::path::Path;

use serde_json::json;

use super::model::{apply, diff, RecordKind};
use super::parse::{FileSummary, ImportOptions, RecordReader};
use super::projection::{self, RecordError};
use crate::ledger::{Actor, Ledger, LedgerError, NewEntry};

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

/// The name recorded for a file: its last path component.
fn file_name(file: &str) -> String {
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
    mut reader: RecordReader<R>,
    actor: &Actor,
    progress: &mut dyn FnMut(u64),
) -> Result<ImportSummary, RecordError> {
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
    let result = import_in_tx(ledger, kind, &mut reader, actor, progress);
    if let Some(before) = before {
        let _ = ledger.conn().pragma_update(None, "cache_size", before);
    }
    result
}

fn import_in_tx<R: Read>(
    ledger: &mut Ledger,
    kind: RecordKind,
    reader: &mut RecordReader<R>,
    actor: &Actor,
    progress: &mut dyn FnMut(u64),
) -> Result<ImportSummary, RecordError> {
    let mut w = ledger.write()?;
    // Ids are unique within a file (the reader rejects repeats and numbers repeated keys),
    // so into an empty table every row is new and needs no lookup.
    let fresh = projection::is_empty(w.conn(), kind)?;
    let (mut created, mut updated, mut unchanged, mut rows) = (0u64, 0u64, 0u64, 0u64);
    let mut first_seq = None;
    while let Some(row) = reader.next_row()? {
        rows += 1;
        let id = row.record.id();
        let new = row.record.to_fields();
        let current = if fresh {
            None
        } else {
            projection::get(w.conn(), kind, &id)?
        };
        let appended = match current {
            None => {
                created += 1;
                Some(projection::create_unchecked(&mut w, kind, &id, new, actor)?)
            }
            Some(current) => {
                let mut changes = diff(&current.fields, &new);
                row.columns.restrict(&mut changes);
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
        };
        if let (None, Some(a)) = (first_seq, &appended) {
            first_seq = Some(a.seq);
        }
        if rows % PROGRESS_EVERY == 0 {
            progress(rows);
        }
    }
    progress(rows);
    let file = reader
        .summary()
        .cloned()
        .ok_or_else(|| LedgerError::Damaged("the import file was not read to its end".into()))?;
    let mut summary = ImportSummary {
        kind,
        file,
        created,
        updated,
        unchanged,
        appended: None,
    };
    if created + updated == 0 {
        // Dropping `w` rolls back: nothing was appended.
        return Ok(summary);
    }
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
    .map_err(LedgerError::from)?;
    let last = w.append(batch)?;
    w.commit()?;
    summary.appended = Some((first_seq.unwrap_or(last.seq), last.seq));
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Entry;
    use crate::records::model::FieldValue;
    use crate::records::parse::ImportError;

    fn setup() -> (tempfile::TempDir, Ledger) {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::init(
            &dir.path().join("d"),
            "test.example/ledger",
            Actor::cli("admin"),
        )
        .unwrap();
        (dir, l)
    }

    fn run(
        l: &mut Ledger,
        dir: &Path,
        name: &str,
        kind: RecordKind,
        text: &str,
    ) -> Result<ImportSummary, RecordError> {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        import(
            l,
            kind,
            &p,
            ImportOptions::default(),
            &Actor::cli("u1"),
            &mut |_| {},
        )
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
}
