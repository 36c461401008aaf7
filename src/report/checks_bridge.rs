//! The one place the report calls the consistency checks: runs them and reads the rule
//! catalogue, in the report's own finding shape. Reads only.

use std::collections::HashMap;

use chrono::NaiveDate;
use rusqlite::Connection;

pub use crate::checks::CheckConfig;
use crate::checks::{self, CheckOptions};

/// A finding of the checks: rule, severity, subject, message, values.
pub type RawFinding = (String, &'static str, String, String, serde_json::Value);

/// Runs the checks judged on `as_of` over the window from `since`, for `org` and below.
pub fn run(
    conn: &Connection,
    cfg: &CheckConfig,
    as_of: NaiveDate,
    since: NaiveDate,
    org: Option<&str>,
) -> Result<Vec<RawFinding>, String> {
    let mut o = CheckOptions::new(as_of);
    o.since = Some(since);
    o.org = org.map(str::to_owned);
    let r = checks::run_checks(conn, cfg, &o).map_err(|e| e.to_string())?;
    Ok(r.findings
        .into_iter()
        .map(|f| (f.rule, f.severity.as_str(), f.subject, f.message, f.values))
        .collect())
}

/// Rule id → (Chinese, English) description, from the catalogue of `cfg`.
pub fn descriptions(cfg: &CheckConfig) -> HashMap<String, (String, String)> {
    checks::catalogue_with(cfg)
        .into_iter()
        .map(|r| {
            (
                r.id.to_owned(),
                (r.description_zh.to_owned(), r.description_en.to_owned()),
            )
        })
        .collect()
}
