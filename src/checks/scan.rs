//! The record of a checks scan on the ledger: the `scan.checks` entry (counts per rule, the
//! SHA-256 of the findings document, the `(rule, subject)` pairs) and the comparison with the
//! previous scan of the same scope. Used by `djaudit check` and the daemon's scheduler.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::{Connection, OptionalExtension};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{Report, Severity};
use crate::ledger::canonical::{to_canonical_vec, CanonicalError};
use crate::ledger::entry::EntryError;
use crate::ledger::{Actor, Entry, NewEntry};

/// Kind of the entry each scan appends.
pub const SCAN_KIND: &str = "scan.checks";

/// The subject of the scans of one scope: `checks/all` or `checks/<org>`.
pub fn scope(org: Option<&str>) -> String {
    format!("checks/{}", org.unwrap_or("all"))
}

/// A scan ready to be recorded, with its comparison to the previous one.
pub struct Scan {
    pub scope: String,
    pub document: Value,
    pub sha256: String,
    pub had_previous: bool,
    pub new: Vec<Value>,
    pub resolved: Vec<Value>,
    subjects: BTreeMap<String, Vec<String>>,
}

/// Why a scan could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("reading the previous scan failed: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("the previous scan entry does not parse: {0}")]
    Previous(String),
    #[error(transparent)]
    Canonical(#[from] CanonicalError),
    #[error(transparent)]
    Entry(#[from] EntryError),
}

impl Scan {
    /// Compares `report` with the latest earlier scan of its scope in `conn`.
    pub fn prepare(conn: &Connection, report: &Report) -> Result<Scan, ScanError> {
        let scope = scope(report.org.as_deref());
        let previous = previous_scan(conn, &scope)?;
        let subjects = subjects_by_rule(report);
        let (new, resolved) = match &previous {
            Some(prev) => diff(prev, &subjects),
            None => (Vec::new(), Vec::new()),
        };
        let document = findings_document(report);
        let sha256 = hex::encode(Sha256::digest(to_canonical_vec(&document)?));
        Ok(Scan {
            scope,
            document,
            sha256,
            had_previous: previous.is_some(),
            new,
            resolved,
            subjects,
        })
    }

    /// The `scan.checks` entry.
    pub fn entry(&self, report: &Report, actor: Actor) -> Result<NewEntry, ScanError> {
        Ok(NewEntry::new(
            SCAN_KIND,
            &self.scope,
            actor,
            json!({
                "as_of": report.as_of.to_string(),
                "window_start": report.window_start.to_string(),
                "org": report.org,
                "total": report.findings.len(),
                "by_severity": by_severity(report),
                "counts": report.counts,
                "findings_sha256": self.sha256,
                "subjects": self.subjects,
                "new": self.new.len(),
                "resolved": self.resolved.len(),
            }),
        )?)
    }

    /// Findings per rule as `rule → [subject…]`.
    pub fn subjects(&self) -> &BTreeMap<String, Vec<String>> {
        &self.subjects
    }
}

/// The findings document whose SHA-256 the scan entry records.
pub fn findings_document(r: &Report) -> Value {
    json!({
        "as_of": r.as_of.to_string(),
        "window_start": r.window_start.to_string(),
        "org": r.org,
        "counts": r.counts,
        "findings": r.findings,
    })
}

fn by_severity(r: &Report) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for s in [Severity::Error, Severity::Warning, Severity::Info] {
        m.insert(
            s.as_str(),
            r.findings.iter().filter(|f| f.severity == s).count(),
        );
    }
    m
}

pub fn subjects_by_rule(r: &Report) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in &r.findings {
        m.entry(f.rule.clone()).or_default().push(f.subject.clone());
    }
    m
}

/// The `(rule, subject)` pairs of the latest earlier scan of the same scope.
fn previous_scan(
    conn: &Connection,
    scope: &str,
) -> Result<Option<BTreeMap<String, Vec<String>>>, ScanError> {
    let body: Option<String> = conn
        .query_row(
            "SELECT body FROM entry WHERE subject = ?1 AND kind = ?2 ORDER BY seq DESC LIMIT 1",
            [scope, SCAN_KIND],
            |r| r.get(0),
        )
        .optional()?;
    let Some(body) = body else { return Ok(None) };
    let e = Entry::parse(body.as_bytes()).map_err(|err| ScanError::Previous(err.to_string()))?;
    let subjects = serde_json::from_value(e.data.get("subjects").cloned().unwrap_or_default())
        .unwrap_or_default();
    Ok(Some(subjects))
}

/// Findings new in `current` and resolved since `previous`, as `rule subject` pairs.
fn diff(
    previous: &BTreeMap<String, Vec<String>>,
    current: &BTreeMap<String, Vec<String>>,
) -> (Vec<Value>, Vec<Value>) {
    let pairs = |m: &BTreeMap<String, Vec<String>>| -> BTreeSet<(String, String)> {
        m.iter()
            .flat_map(|(rule, subjects)| subjects.iter().map(move |s| (rule.clone(), s.clone())))
            .collect()
    };
    let (p, c) = (pairs(previous), pairs(current));
    let as_json = |set: BTreeSet<&(String, String)>| -> Vec<Value> {
        set.into_iter()
            .map(|(rule, subject)| json!({"rule": rule, "subject": subject}))
            .collect()
    };
    (
        as_json(c.difference(&p).collect()),
        as_json(p.difference(&c).collect()),
    )
}
