//! Signing and verifying reports.
//!
//! The signature is Ed25519 (the ledger's key) over the RFC 8785 canonical bytes of the
//! report's JSON without its `signature` member; `signature` is its base64. HTML embeds the
//! signed JSON in `<script type="application/json" id="djaudit-report">` and Markdown in a
//! final fenced block, with `<`, `>`, `&` and `` ` `` written as JSON `\u` escapes so the
//! JSON can never close its container.
//!
//! [`verify_document`] checks (a) the signature over the embedded JSON, (b) that the
//! embedded checkpoint is signed by the same key and names the report's tree size and root,
//! and (c) that the whole document is byte for byte what rendering the embedded JSON gives:
//! a change of one character anywhere, visible or not, fails. It never needs the ledger.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::Value as Json;

use super::model::{Report, FORMAT, RENDERER};
use super::{html, markdown, ReportError};
use crate::ledger::canonical;
use crate::ledger::checkpoint::open_checkpoint;
use crate::ledger::entry::hex_hash;
use crate::ledger::note::{Signer, VerifierKey};

/// Largest report file `report verify` reads.
pub const MAX_DOCUMENT_BYTES: usize = 256 << 20;

/// Start of the element that holds the signed JSON in HTML.
pub const HTML_OPEN: &str = "<script type=\"application/json\" id=\"djaudit-report\">\n";
/// End of that element.
pub const HTML_CLOSE: &str = "</script>";
/// Start of the fenced block that holds the signed JSON in Markdown.
pub const MD_OPEN: &str = "\n```json\n";
/// End of that block.
pub const MD_CLOSE: &str = "```\n";

/// The rendering of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocFormat {
    Html,
    Markdown,
    Json,
}

impl DocFormat {
    /// `html`, `md` or `json`.
    pub fn as_str(self) -> &'static str {
        match self {
            DocFormat::Html => "html",
            DocFormat::Markdown => "md",
            DocFormat::Json => "json",
        }
    }

    /// The usual file extension.
    pub fn extension(self) -> &'static str {
        self.as_str()
    }
}

impl std::str::FromStr for DocFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<DocFormat, String> {
        match s {
            "html" | "htm" => Ok(DocFormat::Html),
            "md" | "markdown" => Ok(DocFormat::Markdown),
            "json" => Ok(DocFormat::Json),
            _ => Err(format!("unknown format `{s}`: expected html|md|json")),
        }
    }
}

/// The JSON value of a report without its `signature`.
fn unsigned_value(report: &Report) -> Result<Json, ReportError> {
    let mut v = serde_json::to_value(report)
        .map_err(|e| ReportError::Unreadable(format!("report does not serialise: {e}")))?;
    if let Some(o) = v.as_object_mut() {
        o.remove("signature");
    }
    Ok(v)
}

/// The bytes the signature covers: RFC 8785 of the report without `signature`.
pub fn signing_bytes(report: &Report) -> Result<Vec<u8>, ReportError> {
    Ok(canonical::to_canonical_vec(&unsigned_value(report)?)?)
}

/// RFC 8785 bytes of the whole signed report (what `report.issue` hashes).
pub fn canonical_bytes(report: &Report) -> Result<Vec<u8>, ReportError> {
    let v = serde_json::to_value(report)
        .map_err(|e| ReportError::Unreadable(format!("report does not serialise: {e}")))?;
    Ok(canonical::to_canonical_vec(&v)?)
}

/// Signs the report with `signer` (sets `signed_by` and `signature`).
pub fn sign(report: &mut Report, signer: &Signer) -> Result<(), ReportError> {
    report.signed_by = signer.verifier_key().to_string();
    report.signature = None;
    let bytes = signing_bytes(report)?;
    report.signature = Some(STANDARD.encode(signer.sign_bytes(&bytes)));
    Ok(())
}

/// The report as a JSON document: pretty, members in document order, a final newline.
pub fn render_json(report: &Report) -> Result<String, ReportError> {
    let mut s = serde_json::to_string_pretty(report)
        .map_err(|e| ReportError::Unreadable(format!("report does not serialise: {e}")))?;
    s.push('\n');
    Ok(s)
}

/// The JSON document made safe to embed in HTML and Markdown.
pub fn embedded_json(report: &Report) -> Result<String, ReportError> {
    let json = render_json(report)?;
    let mut out = String::with_capacity(json.len() + 64);
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '`' => out.push_str("\\u0060"),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Renders the report in `format`.
pub fn render(report: &Report, format: DocFormat) -> Result<String, ReportError> {
    match format {
        DocFormat::Html => html::render(report),
        DocFormat::Markdown => markdown::render(report),
        DocFormat::Json => render_json(report),
    }
}

/// The format of a document and its embedded JSON text.
pub fn extract(text: &str) -> Result<(DocFormat, &str), ReportError> {
    let unreadable = |why: &str| ReportError::Unreadable(why.to_owned());
    if text.starts_with('{') {
        return Ok((DocFormat::Json, text));
    }
    if text.starts_with("<!DOCTYPE html>") {
        let start = text.find(HTML_OPEN).ok_or_else(|| {
            unreadable("the HTML holds no signed report (djaudit-report element)")
        })? + HTML_OPEN.len();
        let rest = text.get(start..).unwrap_or_default();
        let end = rest
            .find(HTML_CLOSE)
            .ok_or_else(|| unreadable("the signed report element is not closed"))?;
        return Ok((DocFormat::Html, rest.get(..end).unwrap_or_default()));
    }
    let start = text
        .rfind(MD_OPEN)
        .ok_or_else(|| unreadable("neither JSON, HTML nor Markdown with a signed report block"))?
        + MD_OPEN.len();
    let rest = text.get(start..).unwrap_or_default();
    let end = rest
        .rfind(MD_CLOSE)
        .ok_or_else(|| unreadable("the signed report block is not closed"))?;
    Ok((DocFormat::Markdown, rest.get(..end).unwrap_or_default()))
}

/// The result of verifying a report document.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verification {
    /// `html`, `md` or `json`.
    pub format: &'static str,
    /// Nothing is wrong.
    pub ok: bool,
    /// What is wrong, one line each.
    pub problems: Vec<String>,
    /// The key the signature was checked with.
    pub key: String,
    /// The key was given by the verifier (`--vkey`), not taken from the report itself.
    pub pinned: bool,
    /// The report's period, org, tree size and root, when the JSON could be read.
    pub period: Option<String>,
    pub org: Option<String>,
    pub size: Option<u64>,
    pub root: Option<String>,
}

fn str_member<'a>(v: &'a Json, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Json::as_str)
}

/// Verifies a report document (see the module docs). `Err` only when the document is not
/// a report at all (exit 2); a changed report is `Ok` with `ok: false`.
pub fn verify_document(
    text: &str,
    vkey: Option<&VerifierKey>,
) -> Result<Verification, ReportError> {
    let (format, json_text) = extract(text)?;
    let value: Json = serde_json::from_str(json_text)
        .map_err(|e| ReportError::Unreadable(format!("the embedded report is not JSON: {e}")))?;
    if !value.is_object() {
        return Err(ReportError::Unreadable(
            "the embedded report is not a JSON object".into(),
        ));
    }
    let mut problems = Vec::new();
    let named = str_member(&value, "signed_by").map(VerifierKey::parse);
    let key = match (vkey, named) {
        (Some(k), Some(Ok(n))) => {
            if &n != k {
                problems.push("the report names another signing key than the one given".into());
            }
            Some(k.clone())
        }
        (Some(k), _) => Some(k.clone()),
        (None, Some(Ok(n))) => Some(n),
        (None, Some(Err(e))) => {
            problems.push(format!("`signed_by` is not a verifier key: {e}"));
            None
        }
        (None, None) => {
            problems.push("the report has no `signed_by` key".into());
            None
        }
    };
    if let Some(k) = &key {
        check_signature(&value, k, &mut problems);
        check_checkpoint(&value, k, &mut problems);
    }
    let info = |k: &str| value.pointer(k).and_then(Json::as_str).map(str::to_owned);
    let mut out = Verification {
        format: format.as_str(),
        ok: false,
        problems,
        key: key.map(|k| k.to_string()).unwrap_or_default(),
        pinned: vkey.is_some(),
        period: info("/period/label"),
        org: info("/org/id"),
        size: value.pointer("/integrity/size").and_then(Json::as_u64),
        root: info("/integrity/root"),
    };
    let signature_ok = out.problems.is_empty();
    match serde_json::from_value::<Report>(value.clone()) {
        Ok(report) if report.format != FORMAT || report.renderer != RENDERER => {
            // A signed report of another version is unreadable here; an unsigned or
            // changed one is simply changed.
            if signature_ok {
                return Err(ReportError::Unreadable(format!(
                    "the report is `{}` rendered by renderer {}; this djaudit reads `{FORMAT}` renderer {RENDERER}",
                    report.format, report.renderer
                )));
            }
        }
        Ok(report) => {
            let again = render(&report, format)?;
            if again != text {
                out.problems.push(format!(
                    "the document differs from what its signed JSON renders to, first at line {}",
                    first_difference(text, &again)
                ));
            }
        }
        Err(e) if signature_ok => {
            return Err(ReportError::Unreadable(format!(
                "the signed report is not a report this djaudit reads: {e}"
            )))
        }
        Err(_) => out
            .problems
            .push("the embedded JSON is not a well-formed report".into()),
    }
    out.ok = out.problems.is_empty();
    Ok(out)
}

fn check_signature(value: &Json, key: &VerifierKey, problems: &mut Vec<String>) {
    let Some(sig_b64) = str_member(value, "signature") else {
        problems.push("the report is not signed".into());
        return;
    };
    let Ok(sig) = STANDARD.decode(sig_b64) else {
        problems.push("the signature is not base64".into());
        return;
    };
    let mut unsigned = value.clone();
    if let Some(o) = unsigned.as_object_mut() {
        o.remove("signature");
    }
    match canonical::to_canonical_vec(&unsigned) {
        Ok(bytes) if key.verifies(&bytes, &sig) => {}
        Ok(_) => problems.push("the signature does not match the report's content".into()),
        Err(e) => problems.push(format!("the report has no canonical form: {e}")),
    }
}

fn check_checkpoint(value: &Json, key: &VerifierKey, problems: &mut Vec<String>) {
    let Some(note) = str_member(value, "checkpoint") else {
        problems.push("the report names no checkpoint".into());
        return;
    };
    match open_checkpoint(note, key) {
        Err(e) => problems.push(format!("the checkpoint does not verify: {e}")),
        Ok(cp) => {
            let size = value.pointer("/integrity/size").and_then(Json::as_u64);
            let root = value.pointer("/integrity/root").and_then(Json::as_str);
            if size != Some(cp.size()) || root != Some(hex_hash(cp.root()).as_str()) {
                problems.push(format!(
                    "the checkpoint (size {}) is not the tree the report says it was computed at",
                    cp.size()
                ));
            }
            if str_member(value, "origin") != Some(cp.origin()) {
                problems.push("the checkpoint is of another ledger than the report names".into());
            }
        }
    }
}

/// The 1-based number of the first line where `a` and `b` differ.
fn first_difference(a: &str, b: &str) -> usize {
    let mut line = 1;
    for (x, y) in a.bytes().zip(b.bytes()) {
        if x != y {
            return line;
        }
        if x == b'\n' {
            line += 1;
        }
    }
    line
}

#[cfg(test)]
pub(crate) mod tests {
    use ring::rand::SystemRandom;
    use ring::signature::Ed25519KeyPair;
    use serde_json::json;

    use super::*;
    use crate::ledger::checkpoint::Checkpoint;
    use crate::report::model::*;

    pub(crate) fn signer(name: &str) -> Signer {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Signer::from_pkcs8(name, pkcs8.as_ref()).unwrap()
    }

    /// A small report with values that need escaping everywhere, signed by `s`.
    pub(crate) fn sample(s: &Signer, lang: Lang) -> Report {
        let root = [7u8; 32];
        let note = Checkpoint::new("test.example/ledger", 42, root)
            .unwrap()
            .sign(s)
            .unwrap();
        let evil = "<script>alert(1)</script> | *x* `y` & \"z\"";
        let mut r = Report {
            format: FORMAT.into(),
            renderer: RENDERER,
            lang,
            origin: "test.example/ledger".into(),
            generated_at: "2026-11-28T00:00:00.000Z".into(),
            issued_by: "auditor".into(),
            period: PeriodInfo {
                label: "2026-Q3".into(),
                from: "2026-07-01".into(),
                to: "2026-09-30".into(),
                as_of: "2026-10-01".into(),
                previous: PreviousPeriod {
                    label: "2026-Q2".into(),
                    from: "2026-04-01".into(),
                    to: "2026-06-30".into(),
                    as_of: "2026-07-01".into(),
                },
            },
            org: Some(OrgRef {
                id: "C1".into(),
                name: Some(evil.into()),
            }),
            integrity: Integrity {
                size: 42,
                root: hex_hash(&root),
                verify: VerifySummary {
                    ok: true,
                    size: 42,
                    checkpoints_verified: 3,
                    failure: None,
                },
                previous: Some(PreviousReport {
                    seq: 20,
                    period: "2026-Q2".into(),
                    issued_at: "2026-07-02T01:00:00.000Z".into(),
                    size: 21,
                    root: hex_hash(&[1u8; 32]),
                    proof: vec![hex_hash(&[2u8; 32])],
                    consistent: true,
                }),
                entries_in_period: 17,
            },
            changes: Changes {
                total: 3,
                by_kind: vec![Count {
                    key: "member.update".into(),
                    count: 3,
                }],
                by_org: vec![OrgCount {
                    org_id: Some("B1".into()),
                    name: Some(evil.into()),
                    count: 3,
                }],
                by_month: vec![
                    Count {
                        key: "2026-07".into(),
                        count: 1,
                    },
                    Count {
                        key: "2026-08".into(),
                        count: 2,
                    },
                ],
                by_actor: vec![Count {
                    key: "u-li".into(),
                    count: 3,
                }],
                imports: 1,
            },
            access: Access {
                decisions: 5,
                allowed: 4,
                denied: 1,
                users: 2,
                by_day: vec![DayCount {
                    day: "2026-07-03".into(),
                    allowed: 4,
                    denied: 1,
                }],
                by_action: vec![Count {
                    key: "read".into(),
                    count: 5,
                }],
                denied_by_user: vec![Count {
                    key: "u-wang".into(),
                    count: 1,
                }],
                audited: true,
                findings: vec![Finding {
                    rule: "access.bulk_read".into(),
                    severity: "warning".into(),
                    subject: "user/u-wang".into(),
                    message: "many reads".into(),
                    values: json!({"members": 300, "note": evil}),
                }],
                findings_by_rule: vec![Count {
                    key: "access.bulk_read".into(),
                    count: 1,
                }],
            },
            quality: Quality {
                as_of: "2026-10-01".into(),
                previous_as_of: "2026-07-01".into(),
                previous_entries: 9,
                totals: Severities {
                    error: 1,
                    warning: 0,
                    info: 0,
                },
                previous_totals: Severities::default(),
                new: 1,
                resolved: 0,
                by_rule: vec![RuleTrend {
                    rule: "member.id_checksum".into(),
                    severity: "error".into(),
                    description_zh: "校验码错误".into(),
                    description_en: "wrong check character".into(),
                    count: 1,
                    previous: 0,
                }],
                by_org: vec![OrgTrend {
                    org_id: Some("B1".into()),
                    name: Some(evil.into()),
                    count: 1,
                    previous: 0,
                }],
                records: vec![FailingRecord {
                    subject: "member/M1".into(),
                    name: Some(evil.into()),
                    org_id: Some("B1".into()),
                    org_name: Some(evil.into()),
                    findings: vec![RecordFinding {
                        rule: "member.id_checksum".into(),
                        severity: "error".into(),
                        message: "check character".into(),
                        values: json!({"id_number": "2301**********123X"}),
                    }],
                }],
            },
            org_life: OrgLife {
                months: vec!["2026-07".into()],
                branches: vec![BranchLife {
                    org_id: "B1".into(),
                    name: evil.into(),
                    has_committee: true,
                    months: vec![MeetingCounts {
                        month: "2026-07".into(),
                        member_meeting: 1,
                        ..Default::default()
                    }],
                    issues: vec!["meetings.theme_day_monthly".into()],
                }],
                totals: MeetingCounts {
                    month: String::new(),
                    member_meeting: 1,
                    ..Default::default()
                },
            },
            dues: Dues {
                members: 1,
                missing_months: 2,
                six_months_unpaid: 0,
                arrears: vec![Arrear {
                    member_id: "M1".into(),
                    name: Some(evil.into()),
                    org_id: Some("B1".into()),
                    org_name: Some(evil.into()),
                    months: vec!["2026-07".into(), "2026-08".into()],
                    six_months: false,
                }],
            },
            checkpoint: note,
            signed_by: String::new(),
            signature: None,
        };
        sign(&mut r, s).unwrap();
        r
    }

    const FORMATS: [DocFormat; 3] = [DocFormat::Html, DocFormat::Markdown, DocFormat::Json];

    #[test]
    fn signed_reports_verify_in_every_format_and_language() {
        let s = signer("test.example/ledger");
        for lang in [Lang::Zh, Lang::En] {
            let r = sample(&s, lang);
            for f in FORMATS {
                let text = render(&r, f).unwrap();
                let v = verify_document(&text, Some(&s.verifier_key())).unwrap();
                assert!(v.ok, "{f:?} {lang:?}: {:?}", v.problems);
                assert!(v.pinned);
                assert_eq!(v.format, f.as_str());
                assert_eq!(v.size, Some(42));
                let v = verify_document(&text, None).unwrap();
                assert!(v.ok && !v.pinned);
            }
        }
    }

    #[test]
    fn embedded_json_cannot_close_its_container() {
        let s = signer("test.example/ledger");
        let r = sample(&s, Lang::Zh);
        let e = embedded_json(&r).unwrap();
        assert!(!e.contains('<') && !e.contains('>') && !e.contains('&') && !e.contains('`'));
        assert!(e.contains("\\u003cscript\\u003e"));
        let back: Report = serde_json::from_str(&e).unwrap();
        assert_eq!(back, r, "the escaped JSON reads back as the same report");
    }

    /// Replaces the ASCII character at byte `i` with another one; `None` if it is not ASCII.
    fn edit(text: &str, i: usize) -> Option<String> {
        let b = *text.as_bytes().get(i)?;
        if !b.is_ascii() {
            return None;
        }
        let c = match b {
            b'0'..=b'8' => b + 1,
            b'9' => b'0',
            b'a' => b'b',
            b' ' => b'_',
            b'\n' => b' ',
            _ => b'a',
        };
        let mut bytes = text.as_bytes().to_vec();
        bytes[i] = c;
        String::from_utf8(bytes).ok()
    }

    #[test]
    fn fail_every_one_character_edit() {
        let s = signer("test.example/ledger");
        let key = s.verifier_key();
        let r = sample(&s, Lang::En);
        for f in FORMATS {
            let text = render(&r, f).unwrap();
            // About 1500 positions spread over the whole document.
            let step = (text.len() / 1500).max(1);
            let mut tried = 0;
            for i in (0..text.len()).step_by(step) {
                let Some(changed) = edit(&text, i) else {
                    continue;
                };
                tried += 1;
                match verify_document(&changed, Some(&key)) {
                    Ok(v) => assert!(!v.ok, "{f:?}: edit at byte {i} not detected"),
                    Err(ReportError::Unreadable(_)) => {}
                    Err(e) => panic!("{f:?}: edit at byte {i}: {e}"),
                }
            }
            assert!(tried > 500, "{f:?}: only {tried} edits tried");
        }
    }

    #[test]
    fn fail_another_key() {
        let s = signer("test.example/ledger");
        let other = signer("test.example/ledger");
        let r = sample(&s, Lang::Zh);
        let text = render(&r, DocFormat::Html).unwrap();
        let v = verify_document(&text, Some(&other.verifier_key())).unwrap();
        assert!(!v.ok);
        assert!(v.problems.iter().any(|p| p.contains("another signing key")));
        // A report re-signed by another key that names that key verifies only unpinned.
        let mut forged = r.clone();
        sign(&mut forged, &other).unwrap();
        let text = render(&forged, DocFormat::Json).unwrap();
        let v = verify_document(&text, Some(&s.verifier_key())).unwrap();
        assert!(
            !v.ok,
            "a report signed by another key must not pass the pinned key"
        );
    }

    #[test]
    fn fail_not_a_report() {
        for text in [
            "",
            "hello",
            "<!DOCTYPE html><p>x</p>",
            "{not json",
            "[1]",
            "# x\n\n```json\n{}\n```\n",
        ] {
            match verify_document(text, None) {
                Err(ReportError::Unreadable(_)) => {}
                Ok(v) => assert!(!v.ok, "{text:?}"),
                Err(e) => panic!("{text:?}: {e}"),
            }
        }
    }

    #[test]
    fn signature_covers_canonical_bytes_without_signature() {
        let s = signer("test.example/ledger");
        let r = sample(&s, Lang::Zh);
        let bytes = signing_bytes(&r).unwrap();
        let sig = STANDARD.decode(r.signature.as_deref().unwrap()).unwrap();
        assert!(s.verifier_key().verifies(&bytes, &sig));
        assert!(!String::from_utf8_lossy(&bytes).contains("\"signature\""));
        assert!(canonical::is_canonical(&bytes));
        assert_eq!(r.signed_by, s.verifier_key().to_string());
    }
}
