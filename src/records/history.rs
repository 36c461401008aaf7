//! The current state of one record and its history: every entry whose subject is the
//! record, with who made it and what it changed (`djaudit record show|history`), except the
//! access decisions about it: who read a record is audit data for those who may read the
//! ledger, not part of the record.
//!
//! [`show`] and [`history`] return everything masked (`139****0001`, `***`); the `_with`
//! variants take a [`Masking`] that the caller has decided (reading sensitive values
//! unmasked is a policy decision this module does not take). It only reads.

use serde_json::{json, Value as Json};

use super::mask::{mask_changes, mask_fields};
use super::model::{
    changes_from_json, changes_to_json, fields_from_json, fields_to_json, is_sensitive, Change,
    Changes, Fields, RecordKind,
};
use super::projection::{self, parse_entry_kind, parse_subject, Action, RecordError};
use crate::ledger::store::LogFilter;
use crate::ledger::{Actor, Entry, Ledger, LedgerError};

/// The prefix of the entry kinds that record accesses (`access.decision`), which a
/// record's history leaves out.
pub const ACCESS_KINDS: &str = "access.";

/// Whether sensitive values are masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Masking {
    /// Sensitive values masked (the default for every reader).
    Masked,
    /// Sensitive values as recorded (a reader the policy grants `read_sensitive`).
    Unmasked,
}

impl Masking {
    fn fields(self, fields: &Fields) -> Fields {
        match self {
            Masking::Masked => mask_fields(fields),
            Masking::Unmasked => fields.clone(),
        }
    }

    fn changes(self, changes: Changes) -> Changes {
        match self {
            Masking::Masked => mask_changes(&changes),
            Masking::Unmasked => changes,
        }
    }
}

/// The current state of a record (masked unless read with [`Masking::Unmasked`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordView {
    pub kind: RecordKind,
    pub id: String,
    /// The record's fields (sensitive values masked unless read unmasked).
    pub fields: Fields,
    /// The seq of the entry that last wrote the record.
    pub last_seq: u64,
}

impl RecordView {
    /// `member/M000123`.
    pub fn subject(&self) -> String {
        projection::subject(self.kind, &self.id)
    }

    /// The sensitive fields that have a value in the view (names only), sorted.
    pub fn sensitive_fields(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self
            .fields
            .keys()
            .copied()
            .filter(|f| is_sensitive(f))
            .collect();
        names.sort_unstable();
        names
    }

    /// `{"subject", "last_seq", "record": {…masked…}}`.
    pub fn to_json(&self) -> Json {
        json!({
            "subject": self.subject(),
            "last_seq": self.last_seq,
            "record": fields_to_json(&self.fields),
        })
    }
}

/// One entry about a record.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryItem {
    pub seq: u64,
    pub ts: String,
    pub kind: String,
    pub actor: Actor,
    /// What the entry changed (masked unless read unmasked): for a create every field from absent to its value,
    /// for a remove every field to absent; empty for entries that are not record changes.
    pub changes: Changes,
}

/// A record's current state (absent once removed) and every entry about it, in seq order.
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    pub kind: RecordKind,
    pub id: String,
    pub current: Option<RecordView>,
    pub items: Vec<HistoryItem>,
}

impl History {
    /// The sensitive fields that have a value anywhere in the history (the current state
    /// or any change), names only, sorted.
    pub fn sensitive_fields(&self) -> Vec<&'static str> {
        let mut names: std::collections::BTreeSet<&'static str> = self
            .current
            .iter()
            .flat_map(RecordView::sensitive_fields)
            .collect();
        for i in &self.items {
            for (name, c) in &i.changes {
                if is_sensitive(name) && (c.old.is_some() || c.new.is_some()) {
                    names.insert(name);
                }
            }
        }
        names.into_iter().collect()
    }

    /// `{"subject", "current": {…}|null, "history": [{"seq","ts","kind","actor","changes"}]}`.
    pub fn to_json(&self) -> Json {
        let items: Vec<Json> = self
            .items
            .iter()
            .map(|i| {
                json!({
                    "seq": i.seq,
                    "ts": i.ts,
                    "kind": i.kind,
                    "actor": i.actor,
                    "changes": changes_to_json(&i.changes),
                })
            })
            .collect();
        json!({
            "subject": projection::subject(self.kind, &self.id),
            "current": self.current.as_ref().map(RecordView::to_json),
            "history": items,
        })
    }
}

/// The current state of `name` (`member/M000123`), masked.
pub fn show(ledger: &Ledger, name: &str) -> Result<RecordView, RecordError> {
    show_with(ledger, name, Masking::Masked)
}

/// The current state of `name`, masked or not.
pub fn show_with(ledger: &Ledger, name: &str, masking: Masking) -> Result<RecordView, RecordError> {
    let (kind, id) = parse_subject(name)?;
    current(ledger, kind, &id, masking)?
        .ok_or_else(|| RecordError::NotFound(projection::subject(kind, &id)))
}

fn current(
    ledger: &Ledger,
    kind: RecordKind,
    id: &str,
    masking: Masking,
) -> Result<Option<RecordView>, RecordError> {
    Ok(
        projection::get(ledger.conn(), kind, id)?.map(|row| RecordView {
            kind,
            id: id.to_owned(),
            fields: masking.fields(&row.fields),
            last_seq: row.last_seq,
        }),
    )
}

/// The current state and history of `name`, masked. A record that neither exists nor has
/// any entry is [`RecordError::NotFound`].
pub fn history(ledger: &Ledger, name: &str) -> Result<History, RecordError> {
    history_with(ledger, name, Masking::Masked)
}

/// The current state and history of `name`, masked or not.
pub fn history_with(ledger: &Ledger, name: &str, masking: Masking) -> Result<History, RecordError> {
    let (kind, id) = parse_subject(name)?;
    let subject = projection::subject(kind, &id);
    let current = current(ledger, kind, &id, masking)?;
    let mut items = Vec::new();
    let filter = LogFilter {
        subject: Some(subject.clone()),
        ..Default::default()
    };
    let mut bad: Option<RecordError> = None;
    ledger.query(&filter, |e| {
        if e.kind.starts_with(ACCESS_KINDS) {
            // Who read the record is audit data, not its history: `log --subject` shows it
            // to those who may read the ledger.
            return Ok(());
        }
        match item(&e, masking) {
            Ok(i) => items.push(i),
            Err(err) => {
                bad.get_or_insert(err);
            }
        }
        Ok::<(), LedgerError>(())
    })?;
    if let Some(err) = bad {
        return Err(err);
    }
    if current.is_none() && items.is_empty() {
        return Err(RecordError::NotFound(subject));
    }
    Ok(History {
        kind,
        id,
        current,
        items,
    })
}

/// One entry as a history item, its values masked or not.
fn item(e: &Entry, masking: Masking) -> Result<HistoryItem, RecordError> {
    let bad = |why: String| RecordError::BadEntry {
        seq: e.seq,
        subject: e.subject.clone(),
        why,
    };
    let changes = match parse_entry_kind(&e.kind) {
        None => Changes::new(),
        Some((kind, Action::Update)) => {
            changes_from_json(kind, &e.data["changes"]).map_err(|w| bad(w.to_string()))?
        }
        Some((kind, action)) => {
            let fields =
                fields_from_json(kind, &e.data["record"]).map_err(|w| bad(w.to_string()))?;
            fields
                .into_iter()
                .map(|(name, v)| {
                    let change = if action == Action::Create {
                        Change {
                            old: None,
                            new: Some(v),
                        }
                    } else {
                        Change {
                            old: Some(v),
                            new: None,
                        }
                    };
                    (name, change)
                })
                .collect()
        }
    };
    Ok(HistoryItem {
        seq: e.seq,
        ts: e.ts.clone(),
        kind: e.kind.clone(),
        actor: e.actor.clone(),
        changes: masking.changes(changes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::import::testing::{import_text, ledger};
    use crate::records::model::FieldValue;

    #[test]
    fn history_lists_every_change_masked_with_actors() {
        let (dir, mut l) = ledger();
        for (who, phone) in [("u-a", "13900000001"), ("u-b", "13900000002")] {
            let text = format!("member_id,name,phone\nM1,张三,{phone}\n");
            import_text(&mut l, dir.path(), "m.csv", RecordKind::Member, &text, who).unwrap();
        }
        let h = history(&l, "member/M1").unwrap();
        assert_eq!(h.items.len(), 2);
        assert_eq!(h.items[0].kind, "member.create");
        assert_eq!(h.items[0].actor.user, "u-a");
        assert_eq!(
            h.items[0].changes["phone"].new,
            Some(FieldValue::Text("139****0001".into()))
        );
        assert_eq!(h.items[1].kind, "member.update");
        assert_eq!(h.items[1].actor.user, "u-b");
        assert_eq!(h.items[1].changes.len(), 1);
        assert_eq!(
            h.items[1].changes["phone"].old,
            Some(FieldValue::Text("139****0001".into()))
        );
        let current = h.current.as_ref().unwrap();
        assert_eq!(
            current.fields["phone"],
            FieldValue::Text("139****0002".into())
        );
        assert_eq!(current.last_seq, h.items[1].seq);
        assert!(!h.to_json().to_string().contains("13900000002"));
        assert_eq!(show(&l, "member/M1").unwrap(), *current);
        assert_eq!(h.sensitive_fields(), ["phone"]);

        // Read unmasked (a reader the policy grants read_sensitive), values as recorded.
        let u = history_with(&l, "member/M1", Masking::Unmasked).unwrap();
        assert_eq!(
            u.items[1].changes["phone"].new,
            Some(FieldValue::Text("13900000002".into()))
        );
        let v = show_with(&l, "member/M1", Masking::Unmasked).unwrap();
        assert_eq!(v.fields["phone"], FieldValue::Text("13900000002".into()));
        assert_eq!(v.sensitive_fields(), ["phone"]);
    }

    #[test]
    fn history_leaves_out_access_decisions_but_keeps_other_entries() {
        let (dir, mut l) = ledger();
        let text = "member_id,name\nM1,张三\n";
        import_text(&mut l, dir.path(), "m.csv", RecordKind::Member, text, "u").unwrap();
        for kind in ["access.decision", "note.check"] {
            let e = crate::ledger::NewEntry::new(kind, "member/M1", Actor::cli("r"), json!({}))
                .unwrap();
            l.append(e).unwrap();
        }
        let h = history(&l, "member/M1").unwrap();
        let kinds: Vec<&str> = h.items.iter().map(|i| i.kind.as_str()).collect();
        assert_eq!(kinds, ["member.create", "note.check"]);
    }

    #[test]
    fn fail_unknown_record_and_bad_names() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::init(
            &dir.path().join("d"),
            "test.example/ledger",
            Actor::cli("a"),
        )
        .unwrap();
        assert!(matches!(
            history(&l, "member/M9"),
            Err(RecordError::NotFound(_))
        ));
        assert!(matches!(
            show(&l, "member/M9"),
            Err(RecordError::NotFound(_))
        ));
        assert!(matches!(show(&l, "M9"), Err(RecordError::BadSubject(_))));
    }
}
