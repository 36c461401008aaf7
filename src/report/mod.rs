//! Compliance reports for the higher-level party committee (DESIGN §8): what changed, who
//! accessed what, what is wrong with the data, whether the branches hold their meetings and
//! pay their dues — computed from the ledger at a named, signed checkpoint and signed.
//!
//! - [`model`]: the JSON document, the source of truth.
//! - [`gather`]: computes a document from the ledger, the projection, the consistency checks
//!   and the access audit, in one read snapshot.
//! - [`html`], [`markdown`]: renderings of a document (and nothing else), each embedding the
//!   signed JSON; the tables they share are built once in `table`.
//! - [`sign`]: the Ed25519 signature over RFC 8785 bytes, and `report verify`: signature,
//!   checkpoint and "the visible text is exactly what the signed JSON renders to".
//! - [`period`]: years, quarters, months and day ranges in Asia/Shanghai.
//!
//! Issuing a report ([`issue`], then [`record_issue`] once the file is written) signs a
//! fresh checkpoint and appends a `report.issue` entry. A report never holds a sensitive
//! member field: findings carry masked values only, and every value is masked again here.
//! This module never prints and never writes files.

mod checks_bridge;
pub mod gather;
pub mod html;
pub mod markdown;
pub mod model;
pub mod period;
pub mod sign;
mod svg;
mod table;

use std::path::PathBuf;

use chrono::NaiveDate;
use serde_json::json;
use sha2::{Digest as _, Sha256};

pub use checks_bridge::CheckConfig;
pub use gather::ReportOptions;
pub use model::{Lang, Report};
pub use period::Period;
pub use sign::{verify_document, DocFormat, Verification};

use crate::ledger::checkpoint::Checkpoint;
use crate::ledger::entry::hex_hash;
use crate::ledger::store::{Appended, LedgerError};
use crate::ledger::{Actor, Ledger, NewEntry};

/// Kind of the entry that records an issued report.
pub const ISSUE_KIND: &str = "report.issue";

/// Why a report could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("invalid period `{0}`: expected 2026, 2026-Q3 or 2026-09")]
    BadPeriod(String),
    #[error("invalid range: `{from}` is after `{to}`")]
    BadRange { from: String, to: String },
    #[error("the period starts on {from}, after today ({today})")]
    FuturePeriod { from: String, today: String },
    #[error("the as-of date {as_of} is outside {from} to the day after {to}")]
    BadAsOf {
        as_of: String,
        from: String,
        to: String,
    },
    #[error("unknown organisation `{0}`")]
    UnknownOrg(String),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("projection: {0}")]
    Projection(#[from] rusqlite::Error),
    #[error(transparent)]
    Records(#[from] crate::records::RecordError),
    #[error("access audit: {0}")]
    Audit(#[from] crate::audit::AuditError),
    #[error("consistency checks: {0}")]
    Checks(String),
    #[error("the report has no canonical form: {0}")]
    Canonical(#[from] crate::ledger::canonical::CanonicalError),
    #[error("signing the checkpoint: {0}")]
    Checkpoint(#[from] crate::ledger::checkpoint::CheckpointError),
    #[error("the report is not readable: {0}")]
    Unreadable(String),
    #[error("i/o on `{path}`: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl ReportError {
    /// Whether the error is the user's input (exit 2) rather than storage or internal (exit 3).
    pub fn is_input(&self) -> bool {
        match self {
            ReportError::BadPeriod(_)
            | ReportError::BadRange { .. }
            | ReportError::FuturePeriod { .. }
            | ReportError::BadAsOf { .. }
            | ReportError::UnknownOrg(_)
            | ReportError::Unreadable(_) => true,
            ReportError::Ledger(e) => e.is_input(),
            ReportError::Records(e) => e.is_input(),
            _ => false,
        }
    }
}

/// A signed report and its rendering.
#[derive(Debug, Clone)]
pub struct Issued {
    pub report: Report,
    pub format: DocFormat,
    /// The rendered document (HTML, Markdown or JSON).
    pub text: String,
    /// SHA-256 (hex) of the RFC 8785 bytes of the signed JSON report.
    pub sha256: String,
}

/// The subject of a report's entries: `report/<org_id>` or `report`.
pub fn subject(org: Option<&str>) -> String {
    match org {
        Some(o) => format!("report/{o}"),
        None => "report".to_owned(),
    }
}

/// Computes, signs and renders a report. Signs and stores a fresh checkpoint first and
/// computes every section from one read snapshot of the ledger at that checkpoint (if a
/// writer appended in between, a checkpoint of the snapshot is signed instead). Appends
/// nothing: call [`record_issue`] when the document is delivered.
pub fn issue(
    ledger: &mut Ledger,
    opts: &ReportOptions,
    format: DocFormat,
) -> Result<Issued, ReportError> {
    crate::records::projection::ensure_schema(ledger.conn())?;
    let signer = ledger.signer()?;
    let stored = ledger.checkpoint_with(&signer)?;
    let report = {
        let tx = ledger.conn().unchecked_transaction()?;
        let size = ledger.size()?;
        let note = if size == stored.size {
            stored.note.clone()
        } else {
            let root = ledger.root(size)?;
            Checkpoint::new(ledger.origin(), size, root)?.sign(&signer)?
        };
        let root = ledger.root(size)?;
        let report = gather::gather(ledger, opts, size, &hex_hash(&root), &note)?;
        tx.commit()?;
        report
    };
    let mut report = report;
    // The key that signs, whatever key this handle saw when it was opened (a rotation by
    // another process in between).
    report.signed_by = signer.verifier_key().to_string();
    sign::sign(&mut report, &signer)?;
    let text = sign::render(&report, format)?;
    let sha256 = hex::encode(Sha256::digest(sign::canonical_bytes(&report)?));
    Ok(Issued {
        report,
        format,
        text,
        sha256,
    })
}

/// Appends the `report.issue` entry of an issued report (docs/FORMAT.md §6) and signs a
/// checkpoint that covers it. `file` is the name the document was written to, if any.
pub fn record_issue(
    ledger: &mut Ledger,
    issued: &Issued,
    actor: Actor,
    file: Option<&str>,
) -> Result<Appended, ReportError> {
    let r = &issued.report;
    let e = NewEntry::new(
        ISSUE_KIND,
        &subject(r.org.as_ref().map(|o| o.id.as_str())),
        actor,
        json!({
            "period": r.period.label,
            "from": r.period.from,
            "to": r.period.to,
            "as_of": r.period.as_of,
            "org": r.org.as_ref().map(|o| o.id.clone()),
            "format": issued.format.as_str(),
            "lang": r.lang.as_str(),
            "file": file,
            "sha256": issued.sha256,
            "checkpoint_size": r.integrity.size,
            "checkpoint_root": r.integrity.root,
        }),
    )
    .map_err(LedgerError::from)?;
    let appended = ledger.append(e)?;
    ledger.checkpoint()?;
    Ok(appended)
}

/// The default day a period is judged on: the day after it ends, or today if it has not.
pub fn default_as_of(period: &Period, today: NaiveDate) -> NaiveDate {
    period.end().min(today)
}
