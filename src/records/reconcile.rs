//! Reconciling a snapshot file with the projection: what the source system holds that the
//! ledger does not know (DESIGN §5). A record changed in the source system without passing
//! through djaudit is exactly what a security officer must see.
//!
//! The file is read like an import file; each row is compared with the projection (only the
//! columns the file has). The result lists records *added* (in the file, not in the
//! projection), *missing* (in the projection, not in the file) and *changed* (with the
//! changed fields, sensitive values masked). One `scan.reconcile` entry with the counts and
//! the file's SHA-256 is appended; no record is changed.
//!
//! The projection is read in one read transaction; the ids seen in the file are kept in a
//! temporary table (a snapshot may hold millions of rows), which that transaction's rollback
//! discards. This module never writes a projection row.
//!
//! [`reconcile_guarded`] puts every projection record it compares (present in the file, or
//! missing from it) to a [`ReconcileGuard`] first (the access policy: comparing a record
//! reads it); one refused record and nothing is reported or appended.

use std::io::Read;
use std::path::Path;

use rusqlite::Connection;
use serde::Serialize;
use serde_json::{json, Value as Json};

use super::mask::mask_changes;
use super::model::{changes_to_json, diff, Changes, RecordKind};
use super::parse::{FileSummary, ImportOptions, RecordReader};
use super::projection::{self, RecordError};
use crate::ledger::{Actor, Ledger, LedgerError, NewEntry, WriteTx};

/// Decides whether a reconciliation may read the projection records it compares.
pub trait ReconcileGuard {
    /// The guard's own errors; reconcile errors convert into them.
    type Error: From<RecordError>;

    /// May the projection record `subject` (`member/M1`, `dues/M1/2026-03`) be compared?
    /// Called inside the reconciliation's read transaction; after the first `false` the
    /// guard is not called again.
    fn check(&mut self, conn: &Connection, subject: &str) -> Result<bool, Self::Error>;

    /// Every compared record was allowed: append what the guard records in the
    /// transaction that appends the `scan.reconcile` entry, before it. `compared` is the
    /// number of projection records compared.
    fn allowed(&mut self, w: &mut WriteTx<'_>, compared: u64) -> Result<(), Self::Error>;
}

/// The guard of an unguarded reconciliation.
struct Unguarded;

impl ReconcileGuard for Unguarded {
    type Error = RecordError;

    fn check(&mut self, _: &Connection, _: &str) -> Result<bool, RecordError> {
        Ok(true)
    }

    fn allowed(&mut self, _: &mut WriteTx<'_>, _: u64) -> Result<(), RecordError> {
        Ok(())
    }
}

/// Entry kind of the summary entry of a reconciliation.
pub const RECONCILE_KIND: &str = "scan.reconcile";

/// A record whose values in the file differ from the projection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedRecord {
    pub id: String,
    /// Field → (projection value, file value), sensitive values masked.
    pub changes: Changes,
}

/// The result of a reconciliation. Ids are sorted (byte order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciliation {
    pub kind: RecordKind,
    pub file: FileSummary,
    /// In the file, not in the projection.
    pub added: Vec<String>,
    /// In the projection, not in the file.
    pub missing: Vec<String>,
    /// In both, with different values in the file's columns.
    pub changed: Vec<ChangedRecord>,
    /// In both and equal in the file's columns.
    pub unchanged: u64,
    /// The ledger size the projection was read at.
    pub ledger_size: u64,
    /// The seq of the `scan.reconcile` entry.
    pub seq: u64,
}

impl Reconciliation {
    /// Whether the file and the projection differ.
    pub fn differs(&self) -> bool {
        !(self.added.is_empty() && self.missing.is_empty() && self.changed.is_empty())
    }

    /// The JSON document of `djaudit reconcile --json` (values masked).
    pub fn to_json(&self) -> Json {
        #[derive(Serialize)]
        struct Changed<'a> {
            id: &'a str,
            subject: String,
            changes: Json,
        }
        let changed: Vec<Changed<'_>> = self
            .changed
            .iter()
            .map(|c| Changed {
                id: &c.id,
                subject: projection::subject(self.kind, &c.id),
                changes: changes_to_json(&c.changes),
            })
            .collect();
        json!({
            "ok": !self.differs(),
            "kind": self.kind.plural(),
            "file": self.file.file,
            "sha256": self.file.sha256_hex(),
            "rows": self.file.rows,
            "ledger_size": self.ledger_size,
            "seq": self.seq,
            "counts": {
                "added": self.added.len(),
                "missing": self.missing.len(),
                "changed": self.changed.len(),
                "unchanged": self.unchanged,
            },
            "added": self.added,
            "missing": self.missing,
            "changed": changed,
        })
    }
}

/// The subject of a `scan.reconcile` entry: `reconcile/members`.
pub fn reconcile_subject(kind: RecordKind) -> String {
    format!("reconcile/{}", kind.plural())
}

/// Reconciles a snapshot file of `kind` with the projection and records the summary.
pub fn reconcile(
    ledger: &mut Ledger,
    kind: RecordKind,
    path: &Path,
    options: ImportOptions,
    actor: &Actor,
    progress: &mut dyn FnMut(u64),
) -> Result<Reconciliation, RecordError> {
    let reader = RecordReader::open(path, kind, options)?;
    reconcile_reader(ledger, kind, reader, actor, progress)
}

/// Reconciles the rows of an open reader with the projection and records the summary.
pub fn reconcile_reader<R: Read>(
    ledger: &mut Ledger,
    kind: RecordKind,
    reader: RecordReader<R>,
    actor: &Actor,
    progress: &mut dyn FnMut(u64),
) -> Result<Reconciliation, RecordError> {
    reconcile_reader_guarded(ledger, kind, reader, actor, &mut Unguarded, progress)?
        .ok_or_else(|| LedgerError::Damaged("an unguarded reconciliation was refused".into()))
        .map_err(RecordError::from)
}

/// [`reconcile`] with every compared projection record put to `guard` first; `None` when
/// the guard refused one (nothing appended).
pub fn reconcile_guarded<G: ReconcileGuard>(
    ledger: &mut Ledger,
    kind: RecordKind,
    path: &Path,
    options: ImportOptions,
    actor: &Actor,
    guard: &mut G,
    progress: &mut dyn FnMut(u64),
) -> Result<Option<Reconciliation>, G::Error> {
    let reader = RecordReader::open(path, kind, options).map_err(RecordError::from)?;
    reconcile_reader_guarded(ledger, kind, reader, actor, guard, progress)
}

/// [`reconcile_guarded`] on the rows of an open reader.
pub fn reconcile_reader_guarded<R: Read, G: ReconcileGuard>(
    ledger: &mut Ledger,
    kind: RecordKind,
    mut reader: RecordReader<R>,
    actor: &Actor,
    guard: &mut G,
    progress: &mut dyn FnMut(u64),
) -> Result<Option<Reconciliation>, G::Error> {
    let sql = |e: rusqlite::Error| RecordError::from(e);
    projection::ensure_schema(ledger.conn())?;
    let mut added = Vec::new();
    let mut changed = Vec::new();
    let mut missing = Vec::new();
    let mut unchanged = 0u64;
    let ledger_size;
    {
        let tx = ledger.conn_mut().transaction().map_err(sql)?;
        let max: Option<i64> = tx
            .query_row("SELECT max(seq) FROM entry", [], |r| r.get(0))
            .map_err(sql)?;
        ledger_size = max.map_or(0, |m| u64::try_from(m).unwrap_or(0) + 1);
        tx.execute_batch("CREATE TEMP TABLE reconcile_seen (id TEXT PRIMARY KEY) WITHOUT ROWID")
            .map_err(sql)?;
        let mut rows = 0u64;
        {
            let mut seen = tx
                .prepare("INSERT OR IGNORE INTO temp.reconcile_seen (id) VALUES (?1)")
                .map_err(sql)?;
            while let Some(row) = reader.next_row().map_err(RecordError::from)? {
                rows += 1;
                let id = row.record.id();
                seen.execute([&id]).map_err(sql)?;
                match projection::get(&tx, kind, &id)? {
                    None => added.push(id),
                    Some(current) => {
                        if !guard.check(&tx, &projection::subject(kind, &id))? {
                            // Dropping the read transaction discards the temporary table.
                            return Ok(None);
                        }
                        let mut changes = diff(&current.fields, &row.record.to_fields());
                        row.columns.restrict(&mut changes);
                        if changes.is_empty() {
                            unchanged += 1;
                        } else {
                            changed.push(ChangedRecord {
                                id,
                                changes: mask_changes(&changes),
                            });
                        }
                    }
                }
                if rows % 4096 == 0 {
                    progress(rows);
                }
            }
            progress(rows);
        }
        if projection::has_table(&tx, kind)? {
            let query = format!(
                "SELECT {id} FROM {table} WHERE {id} NOT IN (SELECT id FROM temp.reconcile_seen) ORDER BY {id}",
                id = kind.id_field(),
                table = kind.table()
            );
            let mut stmt = tx.prepare(&query).map_err(sql)?;
            let ids = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(sql)?;
            for id in ids {
                let id = id.map_err(sql)?;
                if !guard.check(&tx, &projection::subject(kind, &id))? {
                    return Ok(None);
                }
                missing.push(id);
            }
        }
        // Dropping the read transaction rolls it back, and the temporary table with it.
        drop(tx);
    }
    added.sort_unstable();
    changed.sort_unstable_by(|a, b| a.id.cmp(&b.id));
    let file = reader
        .summary()
        .cloned()
        .ok_or_else(|| LedgerError::Damaged("the snapshot file was not read to its end".into()))
        .map_err(RecordError::from)?;
    let entry = NewEntry::new(
        RECONCILE_KIND,
        &reconcile_subject(kind),
        actor.clone(),
        json!({
            "kind": kind.plural(),
            "file": Path::new(&file.file)
                .file_name()
                .map_or_else(|| file.file.clone(), |n| n.to_string_lossy().into_owned()),
            "sha256": file.sha256_hex(),
            "rows": file.rows,
            "ledger_size": ledger_size,
            "added": added.len(),
            "missing": missing.len(),
            "changed": changed.len(),
            "unchanged": unchanged,
        }),
    )
    .map_err(|e| RecordError::from(LedgerError::from(e)))?;
    let compared = (missing.len() + changed.len()) as u64 + unchanged;
    let mut w = ledger.write().map_err(RecordError::from)?;
    guard.allowed(&mut w, compared)?;
    let appended = w.append(entry).map_err(RecordError::from)?;
    w.commit().map_err(RecordError::from)?;
    Ok(Some(Reconciliation {
        kind,
        file,
        added,
        missing,
        changed,
        unchanged,
        ledger_size,
        seq: appended.seq,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Entry;
    use crate::records::import::testing::{import_text, ledger};
    use crate::records::model::FieldValue;

    #[test]
    fn reconcile_lists_added_missing_changed_and_changes_nothing() {
        let (dir, mut l) = ledger();
        let text = "member_id,name,phone\nM1,张三,13900000001\nM2,李四,13900000002\nM3,王五,\n";
        import_text(&mut l, dir.path(), "m.csv", RecordKind::Member, text, "u").unwrap();
        let before = l.size().unwrap();
        let snap = dir.path().join("snap.csv");
        std::fs::write(
            &snap,
            "member_id,name,phone\nM1,张三,13900000009\nM3,王五,\nM4,赵六,\n",
        )
        .unwrap();
        let r = reconcile(
            &mut l,
            RecordKind::Member,
            &snap,
            ImportOptions::default(),
            &Actor::cli("auditor"),
            &mut |_| {},
        )
        .unwrap();
        assert!(r.differs());
        assert_eq!(r.added, ["M4"]);
        assert_eq!(r.missing, ["M2"]);
        assert_eq!(r.changed.len(), 1);
        assert_eq!(r.changed[0].id, "M1");
        let c = &r.changed[0].changes["phone"];
        assert_eq!(c.old, Some(FieldValue::Text("139****0001".into())));
        assert_eq!(c.new, Some(FieldValue::Text("139****0009".into())));
        assert_eq!(r.unchanged, 1);
        // Exactly one entry, with counts only.
        assert_eq!(l.size().unwrap(), before + 1);
        let e = Entry::parse(l.entry(r.seq).unwrap().body.as_bytes()).unwrap();
        assert_eq!(e.kind, "scan.reconcile");
        assert_eq!(e.data["added"], 1);
        assert_eq!(e.data["missing"], 1);
        assert_eq!(e.data["changed"], 1);
        assert!(!e.data.to_string().contains("1390000"));
        // No record changed, and the temporary table is gone.
        let row = projection::get(l.conn(), RecordKind::Member, "M1")
            .unwrap()
            .unwrap();
        assert_eq!(row.fields["phone"], FieldValue::Text("13900000001".into()));
        assert!(projection::get(l.conn(), RecordKind::Member, "M4")
            .unwrap()
            .is_none());
        let json = r.to_json().to_string();
        assert!(!json.contains("13900000009"), "{json}");
        // A second reconciliation works (the temporary table does not linger).
        let r2 = reconcile(
            &mut l,
            RecordKind::Member,
            &snap,
            ImportOptions::default(),
            &Actor::cli("auditor"),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(r2.missing, ["M2"]);
    }

    struct Only {
        refuse: &'static str,
        seen: Vec<String>,
        compared: Option<u64>,
    }

    impl ReconcileGuard for Only {
        type Error = RecordError;

        fn check(&mut self, _: &Connection, subject: &str) -> Result<bool, RecordError> {
            self.seen.push(subject.to_owned());
            Ok(subject != self.refuse)
        }

        fn allowed(&mut self, _: &mut WriteTx<'_>, compared: u64) -> Result<(), RecordError> {
            self.compared = Some(compared);
            Ok(())
        }
    }

    #[test]
    fn guarded_reconcile_asks_about_every_compared_record_and_refusal_appends_nothing() {
        let (dir, mut l) = ledger();
        let text = "member_id,name\nM1,a\nM2,b\nM3,c\n";
        import_text(&mut l, dir.path(), "m.csv", RecordKind::Member, text, "u").unwrap();
        let snap = dir.path().join("snap.csv");
        std::fs::write(&snap, "member_id,name\nM1,a\nM3,x\nM4,d\n").unwrap();
        let run = |l: &mut Ledger, g: &mut Only| {
            reconcile_guarded(
                l,
                RecordKind::Member,
                &snap,
                ImportOptions::default(),
                &Actor::cli("o"),
                g,
                &mut |_| {},
            )
        };
        let mut g = Only {
            refuse: "none",
            seen: Vec::new(),
            compared: None,
        };
        let r = run(&mut l, &mut g).unwrap().unwrap();
        // M4 is only in the file: nothing of the projection is read for it.
        assert_eq!(g.seen, ["member/M1", "member/M3", "member/M2"]);
        assert_eq!(g.compared, Some(3));
        assert_eq!((r.added.len(), r.missing.len(), r.changed.len()), (1, 1, 1));

        let size = l.size().unwrap();
        let mut g = Only {
            refuse: "member/M2",
            seen: Vec::new(),
            compared: None,
        };
        assert!(run(&mut l, &mut g).unwrap().is_none());
        assert_eq!(g.compared, None);
        assert_eq!(l.size().unwrap(), size);
        // The temporary table went with the refused read transaction.
        let mut g = Only {
            refuse: "none",
            seen: Vec::new(),
            compared: None,
        };
        assert!(run(&mut l, &mut g).unwrap().is_some());
    }
}
