//! Ledger entries, format v1: the JSON object every change, decision and scan becomes.
//!
//! An entry's hashed bytes are its RFC 8785 canonical form; its leaf hash is the RFC 6962
//! leaf hash of those bytes, and the next entry's `prev` is that hash. This module builds,
//! parses and checks the shape of single entries; it does not store or chain them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::canonical;
use super::merkle::{self, Hash};

/// The only entry format version this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// `prev` of entry 0.
pub const ZERO_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Kind of the first entry of every ledger.
pub const GENESIS_KIND: &str = "ledger.genesis";

/// Longest accepted `kind`, `subject` or actor name, in bytes.
const MAX_NAME_LEN: usize = 256;

/// Who caused an entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    /// The djaudit user the entry is attributed to (the end user when a service acts for one).
    pub user: String,
    /// The channel: `cli`, `api`, `import`, `scheduler`, `system`.
    pub via: String,
    /// The operating-system account that ran the CLI, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_user: Option<String>,
    /// The service account that submitted the entry on behalf of `user`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

impl Actor {
    /// An actor using the command line, with the operating-system user when it is known.
    pub fn cli(user: &str) -> Actor {
        Actor {
            user: user.to_owned(),
            via: "cli".to_owned(),
            os_user: std::env::var("USER").ok().filter(|u| valid_name(u)),
            service: None,
        }
    }

    /// djaudit itself (scheduled scans, genesis).
    pub fn system(via: &str) -> Actor {
        Actor {
            user: "system".to_owned(),
            via: via.to_owned(),
            os_user: None,
            service: None,
        }
    }
}

/// A stored entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub v: u32,
    pub seq: u64,
    pub ts: String,
    pub kind: String,
    pub actor: Actor,
    pub subject: String,
    pub data: Value,
    pub prev: String,
}

/// What a caller asks to append; the ledger adds `v`, `seq`, `ts` and `prev`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEntry {
    pub kind: String,
    pub subject: String,
    pub actor: Actor,
    pub data: Value,
}

/// Why an entry was refused before it reached the ledger.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EntryError {
    #[error("invalid kind `{0}`: expected dotted lowercase names such as `member.update`")]
    Kind(String),
    #[error("invalid subject `{0}`: expected 1 to 256 printable characters")]
    Subject(String),
    #[error("invalid actor `{0}`: expected 1 to 256 printable characters without spaces")]
    Actor(String),
    #[error("entry data must be a JSON object")]
    DataNotObject,
    #[error("entry data is not canonicalisable: {0}")]
    Canonical(#[from] canonical::CanonicalError),
}

impl NewEntry {
    /// Builds a new entry and checks its shape.
    pub fn new(
        kind: &str,
        subject: &str,
        actor: Actor,
        data: Value,
    ) -> Result<NewEntry, EntryError> {
        let e = NewEntry {
            kind: kind.to_owned(),
            subject: subject.to_owned(),
            actor,
            data,
        };
        e.validate()?;
        Ok(e)
    }

    /// Checks kind, subject, actor and data shape.
    pub fn validate(&self) -> Result<(), EntryError> {
        if !valid_kind(&self.kind) {
            return Err(EntryError::Kind(self.kind.clone()));
        }
        if !valid_subject(&self.subject) {
            return Err(EntryError::Subject(self.subject.clone()));
        }
        for name in [Some(&self.actor.user), Some(&self.actor.via)]
            .into_iter()
            .chain([self.actor.os_user.as_ref(), self.actor.service.as_ref()])
            .flatten()
        {
            if !valid_name(name) {
                return Err(EntryError::Actor(name.clone()));
            }
        }
        if !self.data.is_object() {
            return Err(EntryError::DataNotObject);
        }
        Ok(())
    }
}

impl Entry {
    /// The entry's canonical (RFC 8785) bytes: exactly what is hashed, stored and exported.
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, EntryError> {
        let value = serde_json::to_value(self).map_err(|_| EntryError::DataNotObject)?;
        Ok(canonical::to_canonical_vec(&value)?)
    }

    /// Parses stored or exported bytes. Does not check that they are canonical.
    pub fn parse(bytes: &[u8]) -> Result<Entry, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// Writes the canonical (RFC 8785) bytes of the entry with these members into `out`, without
/// building an intermediate JSON value: member names sorted by UTF-16 code units, which for
/// these ASCII names is `actor, data, kind, prev, seq, subject, ts, v` (and `os_user, service,
/// user, via` inside `actor`). Equal to [`Entry::canonical_bytes`]; the bulk-append path.
#[allow(clippy::too_many_arguments)]
pub fn write_canonical_entry(
    out: &mut String,
    seq: u64,
    ts: &str,
    kind: &str,
    actor: &Actor,
    subject: &str,
    data: &Value,
    prev: &str,
) -> Result<(), EntryError> {
    out.push_str("{\"actor\":{");
    if let Some(os_user) = &actor.os_user {
        out.push_str("\"os_user\":");
        canonical::write_string(os_user, out);
        out.push(',');
    }
    if let Some(service) = &actor.service {
        out.push_str("\"service\":");
        canonical::write_string(service, out);
        out.push(',');
    }
    out.push_str("\"user\":");
    canonical::write_string(&actor.user, out);
    out.push_str(",\"via\":");
    canonical::write_string(&actor.via, out);
    out.push_str("},\"data\":");
    canonical::write_canonical(data, out)?;
    out.push_str(",\"kind\":");
    canonical::write_string(kind, out);
    out.push_str(",\"prev\":");
    canonical::write_string(prev, out);
    out.push_str(",\"seq\":");
    out.push_str(&seq.to_string());
    out.push_str(",\"subject\":");
    canonical::write_string(subject, out);
    out.push_str(",\"ts\":");
    canonical::write_string(ts, out);
    out.push_str(",\"v\":");
    out.push_str(&FORMAT_VERSION.to_string());
    out.push('}');
    Ok(())
}

/// The RFC 6962 leaf hash of an entry's canonical bytes.
pub fn leaf_hash(canonical_bytes: &[u8]) -> Hash {
    merkle::leaf_hash(canonical_bytes)
}

/// Dotted lowercase names: `member.update`, `ledger.genesis`, `scan.checks`.
pub fn valid_kind(kind: &str) -> bool {
    kind.len() <= MAX_NAME_LEN
        && kind.contains('.')
        && kind.split('.').all(|part| {
            let mut chars = part.chars();
            matches!(chars.next(), Some('a'..='z'))
                && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        })
}

/// A subject names what an entry is about (`member/M000123`, `ledger`).
pub fn valid_subject(subject: &str) -> bool {
    !subject.is_empty() && subject.len() <= MAX_NAME_LEN && !subject.chars().any(char::is_control)
}

/// Prefixes of the kinds djaudit writes itself (records, decisions, scans, keys, tokens,
/// reports). `djaudit append` and `POST /v1/entries` refuse them, so the projection and the
/// scans stay derivable from the ledger and cannot be forged through a free entry.
pub const RESERVED_KIND_PREFIXES: &[&str] = &[
    "ledger.",
    "member.",
    "org.",
    "dues.",
    "meeting.",
    "transfer.",
    "user.",
    "access.",
    "policy.",
    "scan.",
    "key.",
    "import.",
    "token.",
    "report.",
];

/// Whether `kind` is written by djaudit itself and refused as a free entry.
pub fn is_reserved_kind(kind: &str) -> bool {
    RESERVED_KIND_PREFIXES.iter().any(|p| kind.starts_with(p))
}

/// User, channel and account names: printable, no whitespace.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.chars().any(|c| c.is_control() || c.is_whitespace())
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, the only timestamp form entries carry.
pub fn valid_ts(ts: &str) -> bool {
    ts.len() == 24
        && ts.ends_with('Z')
        && chrono::NaiveDateTime::parse_from_str(&ts[..23], "%Y-%m-%dT%H:%M:%S%.3f").is_ok()
        && ts.as_bytes().get(19) == Some(&b'.')
}

/// The current UTC time in entry form.
pub fn now_ts() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// Lowercase hex of a hash.
pub fn hex_hash(h: &Hash) -> String {
    hex::encode(h)
}

/// Parses 64 lowercase hex digits.
pub fn parse_hex_hash(s: &str) -> Option<Hash> {
    if s.len() != 64 || s.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Entry {
        Entry {
            v: 1,
            seq: 42,
            ts: "2026-11-28T05:25:39.123Z".into(),
            kind: "member.update".into(),
            actor: Actor {
                user: "u-zhang".into(),
                via: "cli".into(),
                os_user: Some("zhang".into()),
                service: None,
            },
            subject: "member/M000123".into(),
            data: json!({"changes": {"phone": ["13900000001", "13900000002"]}}),
            prev: ZERO_PREV.into(),
        }
    }

    #[test]
    fn canonical_bytes_sort_keys_and_omit_absent_fields() {
        let bytes = sample().canonical_bytes().unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert_eq!(
            text,
            concat!(
                r#"{"actor":{"os_user":"zhang","user":"u-zhang","via":"cli"},"#,
                r#""data":{"changes":{"phone":["13900000001","13900000002"]}},"#,
                r#""kind":"member.update","prev":"0000000000000000000000000000000000000000000000000000000000000000","#,
                r#""seq":42,"subject":"member/M000123","ts":"2026-11-28T05:25:39.123Z","v":1}"#
            )
        );
    }

    #[test]
    fn direct_canonical_writer_equals_the_generic_path() {
        let mut e = sample();
        e.data = json!({"z": 1, "\u{1F600}": "😀", "\u{E000}": [1, {"b": null, "a": "\u{1}"}], "a/b": "x\"y"});
        for actor in [
            Actor {
                user: "u".into(),
                via: "api".into(),
                os_user: None,
                service: None,
            },
            Actor {
                user: "u".into(),
                via: "api".into(),
                os_user: Some("o".into()),
                service: Some("svc".into()),
            },
        ] {
            e.actor = actor;
            let mut out = String::new();
            write_canonical_entry(
                &mut out, e.seq, &e.ts, &e.kind, &e.actor, &e.subject, &e.data, &e.prev,
            )
            .unwrap();
            assert_eq!(out.as_bytes(), e.canonical_bytes().unwrap().as_slice());
        }
    }

    #[test]
    fn parse_round_trips_canonical_bytes() {
        let e = sample();
        let bytes = e.canonical_bytes().unwrap();
        assert_eq!(Entry::parse(&bytes).unwrap(), e);
    }

    #[test]
    fn fail_parse_rejects_unknown_fields() {
        let text = r#"{"v":1,"seq":0,"ts":"2026-11-28T05:25:39.123Z","kind":"a.b","actor":{"user":"u","via":"cli"},"subject":"s","data":{},"prev":"00","extra":1}"#;
        assert!(Entry::parse(text.as_bytes()).is_err());
    }

    #[test]
    fn kinds_subjects_and_names() {
        assert!(valid_kind("member.update"));
        assert!(valid_kind("scan.verify"));
        assert!(valid_kind("a1.b_2.c"));
        assert!(!valid_kind("member"));
        assert!(!valid_kind("Member.update"));
        assert!(!valid_kind("member..update"));
        assert!(!valid_kind(".update"));
        assert!(!valid_kind("member.1update"));
        assert!(valid_subject("member/M000123"));
        assert!(!valid_subject(""));
        assert!(!valid_subject("a\nb"));
        assert!(valid_name("u-zhang"));
        assert!(!valid_name("u zhang"));
    }

    #[test]
    fn fail_new_entry_rejects_non_object_data() {
        let err = NewEntry::new("a.b", "s", Actor::cli("u"), json!([1])).unwrap_err();
        assert_eq!(err, EntryError::DataNotObject);
        let err = NewEntry::new("ab", "s", Actor::cli("u"), json!({})).unwrap_err();
        assert!(matches!(err, EntryError::Kind(_)));
    }

    #[test]
    fn reserved_kinds() {
        for k in [
            "member.update",
            "access.decision",
            "token.create",
            "scan.verify",
            "ledger.genesis",
        ] {
            assert!(is_reserved_kind(k), "{k}");
        }
        for k in ["note.added", "case.opened", "members.note", "tokens.x"] {
            assert!(!is_reserved_kind(k), "{k}");
        }
    }

    #[test]
    fn timestamps() {
        assert!(valid_ts("2026-11-28T05:25:39.123Z"));
        assert!(valid_ts(&now_ts()));
        assert!(!valid_ts("2026-11-28T05:25:39Z"));
        assert!(!valid_ts("2026-11-28T05:25:39.123+08"));
        assert!(!valid_ts("2026-13-28T05:25:39.123Z"));
        assert!(!valid_ts("2026-11-28 05:25:39.123Z"));
    }

    #[test]
    fn hex_hashes() {
        let h = [0xabu8; 32];
        assert_eq!(parse_hex_hash(&hex_hash(&h)), Some(h));
        assert_eq!(parse_hex_hash(&hex_hash(&h).to_uppercase()), None);
        assert_eq!(parse_hex_hash("ab"), None);
    }
}
