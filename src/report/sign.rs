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
        Ok(report) => {
            if report.format != FORMAT || report.renderer != RENDERER {
                return Err(ReportError::Unreadable(format!(
                    "the report is `{}` rendered by renderer {}; this djaudit reads `{FORMAT}` renderer {RENDERER}",
                    report.format, report.renderer
                )));
            }
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
