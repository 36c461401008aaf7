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

/// [`FORMAT_VERSION`] as it stands in canonical entry bytes.
const FORMAT_VERSION_TEXT: &str = "1";

/// `prev` of entry 0.
pub const ZERO_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Kind of the first entry of every ledger.
pub const GENESIS_KIND: &str = "ledger.genesis";

/// Kind of the entry that hands signing over to a new key (FORMAT.md §4.4).
pub const KEY_ROTATE_KIND: &str = "key.rotate";

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

/// The fields verification needs of a stored entry, borrowed from its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryView<'a> {
    pub seq: u64,
    pub ts: &'a str,
    pub kind: &'a str,
    pub subject: &'a str,
    pub prev: &'a str,
}

/// Reads an entry without building its data: `Some` only when `bytes` are canonical, have
/// exactly the members of a format-v1 entry with the right types, and their `ts`, `kind`,
/// `subject` and `prev` hold no escapes. `None` says nothing about what is wrong — the caller
/// then parses the entry in full ([`Entry::parse`]) to find out; so this may refuse more
/// than the full parse does, but never accepts what it would refuse.
pub fn view_canonical(bytes: &[u8]) -> Option<EntryView<'_>> {
    const NAMES: [&str; 8] = ["actor", "data", "kind", "prev", "seq", "subject", "ts", "v"];
    let text = std::str::from_utf8(bytes).ok()?;
    let mut values: [&str; 8] = [""; 8];
    let mut n = 0;
    let ok = canonical::check_canonical_object(text, |name, value| {
        // Canonical member order is fixed, so the members must come exactly in this order.
        let fits = NAMES.get(n) == Some(&name);
        if fits {
            values[n] = value;
            n += 1;
        }
        fits
    });
    if !ok || n != NAMES.len() || values[7] != FORMAT_VERSION_TEXT {
        return None;
    }
    let [actor, _data, kind, prev, seq, subject, ts, _v] = values;
    if !actor_shape(actor) {
        return None;
    }
    Some(EntryView {
        seq: plain_u64(seq)?,
        ts: plain_string(ts)?,
        kind: plain_string(kind)?,
        subject: plain_string(subject)?,
        prev: plain_string(prev)?,
    })
}

/// Whether a canonical value is an actor: `user` and `via`, optionally `os_user` and
/// `service`, all strings.
fn actor_shape(value: &str) -> bool {
    const NAMES: [&str; 4] = ["os_user", "service", "user", "via"];
    let mut seen = [false; 4];
    let ok = canonical::check_canonical_object(value, |name, v| {
        match NAMES.iter().position(|n| *n == name) {
            Some(i) if v.starts_with('"') => {
                seen[i] = true;
                true
            }
            _ => false,
        }
    });
    ok && seen[2] && seen[3]
}

/// The contents of a canonical string value without escapes.
fn plain_string(value: &str) -> Option<&str> {
    let inner = value.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains('\\')).then_some(inner)
}

/// A canonical non-negative integer value.
fn plain_u64(value: &str) -> Option<u64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
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
    ts_of(chrono::Utc::now())
}

/// A UTC time in entry form, `YYYY-MM-DDTHH:MM:SS.mmmZ` (written out directly: this runs for
/// every entry and every request, and a format string is parsed anew at each use).
fn ts_of(t: chrono::DateTime<chrono::Utc>) -> String {
    use chrono::{Datelike, Timelike};
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        // A leap second counts its nanoseconds past 10^9: kept within the second.
        (t.nanosecond() / 1_000_000).min(999)
    )
}

/// Lowercase hex of a hash.
pub fn hex_hash(h: &Hash) -> String {
    let mut out = [0u8; 64];
    hex_hash_into(h, &mut out);
    out.iter().copied().map(char::from).collect()
}

/// Writes the lowercase hex of a hash into `out` (no allocation; the verify path).
pub fn hex_hash_into(h: &Hash, out: &mut [u8; 64]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, byte) in h.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(byte >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(byte & 0x0f)];
    }
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
    fn hex_of_hashes_is_lowercase_and_round_trips() {
        let mut h = [0u8; 32];
        for (i, b) in h.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37).wrapping_add(0xa5);
        }
        assert_eq!(hex_hash(&h), hex::encode(h));
        assert_eq!(parse_hex_hash(&hex_hash(&h)), Some(h));
    }

    #[test]
    fn format_version_text_is_the_version() {
        assert_eq!(FORMAT_VERSION_TEXT, FORMAT_VERSION.to_string());
    }

    #[test]
    fn view_reads_the_fields_of_canonical_entries() {
        let e = sample();
        let bytes = e.canonical_bytes().unwrap();
        let view = view_canonical(&bytes).unwrap();
        assert_eq!(
            view,
            EntryView {
                seq: 42,
                ts: &e.ts,
                kind: &e.kind,
                subject: &e.subject,
                prev: &e.prev
            }
        );
    }

    /// Every way an entry can be other than a plain canonical v1 entry gives `None`, so that
    /// verification falls back to the full parse.
    #[test]
    fn fail_view_refuses_what_is_not_a_plain_canonical_entry() {
        let good = String::from_utf8(sample().canonical_bytes().unwrap()).unwrap();
        let cases = [
            good.replace(r#""v":1"#, r#""v":2"#),
            good.replace(r#""seq":42"#, r#""seq":042"#),
            good.replace(r#""seq":42"#, r#""seq":-42"#),
            good.replace(r#""seq":42"#, r#""seq":"42""#),
            good.replace(r#""kind":"member.update","#, ""),
            good.replace(r#","v":1}"#, r#","v":1,"w":1}"#),
            good.replace(
                r#""subject":"member/M000123""#,
                r#""subject":"member\nM000123""#,
            ),
            good.replace(r#""ts":"#, r#""ts" :"#),
            good.replace(r#""os_user":"zhang","#, r#""os_user":null,"#),
            good.replace(r#""os_user":"zhang","#, r#""extra":"zhang","#),
            good.replace(r#","via":"cli""#, ""),
            good.replace(
                r#""kind":"member.update","prev""#,
                r#""prev":"0","kind":"member.update","prev""#,
            ),
            good.replace('{', "[").replace('}', "]"),
        ];
        for text in cases {
            assert_ne!(text, good);
            assert_eq!(view_canonical(text.as_bytes()), None, "{text}");
        }
    }

    proptest::proptest! {
        /// Whatever the view accepts, the full parse accepts too and re-encodes to the same
        /// bytes: the fast path of verification never passes an entry the slow path fails.
        #[test]
        fn view_accepts_only_what_the_full_parse_accepts(at in proptest::prelude::any::<proptest::sample::Index>(), byte in proptest::prelude::any::<u8>(), op in 0u8..3) {
            let mut bytes = sample().canonical_bytes().unwrap();
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ => { bytes.remove(i); }
            }
            if let Some(view) = view_canonical(&bytes) {
                let parsed = Entry::parse(&bytes).unwrap();
                proptest::prop_assert_eq!(parsed.canonical_bytes().unwrap(), bytes.clone());
                proptest::prop_assert_eq!(view.seq, parsed.seq);
                proptest::prop_assert_eq!(view.ts, parsed.ts.as_str());
                proptest::prop_assert_eq!(view.kind, parsed.kind.as_str());
                proptest::prop_assert_eq!(view.subject, parsed.subject.as_str());
                proptest::prop_assert_eq!(view.prev, parsed.prev.as_str());
            }
        }
    }

    #[test]
    fn timestamps_are_written_as_the_entry_format_says() {
        use chrono::TimeZone;
        for (secs, nanos) in [
            (0, 0),
            (1_764_000_000, 5_000_000),
            (1_795_823_999, 999_999_999),
            (253_402_300_799, 123_456_789),
        ] {
            let t = chrono::Utc.timestamp_opt(secs, nanos).unwrap();
            let ts = ts_of(t);
            assert_eq!(ts, t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string());
            assert!(valid_ts(&ts), "{ts}");
        }
        // A leap second stays a valid timestamp within its second.
        let leap = chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
            .and_then(|d| d.and_hms_nano_opt(23, 59, 59, 1_500_000_000))
            .unwrap()
            .and_utc();
        assert_eq!(ts_of(leap), "2016-12-31T23:59:59.999Z");
        assert!(valid_ts(&now_ts()));
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
