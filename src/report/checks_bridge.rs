//! The one place the report calls the consistency checks: runs them and reads the rule
//! catalogue, in the report's own finding shape. Reads only.

use std::collections::HashMap;

use chrono::NaiveDate;
use rusqlite::Connection;

/// Settings of the consistency checks (stand-in until `crate::checks` is available).
#[derive(Debug, Clone, Default)]
pub struct CheckConfig;

impl CheckConfig {
    /// The embedded settings.
    pub fn embedded() -> CheckConfig {
        CheckConfig
    }
}

/// A finding of the checks: rule, severity, subject, message, values.
pub type RawFinding = (String, &'static str, String, String, serde_json::Value);

/// Runs the checks judged on `as_of` over the window from `since`, for `org` and below.
pub fn run(
    _conn: &Connection,
    _cfg: &CheckConfig,
    _as_of: NaiveDate,
    _since: NaiveDate,
    _org: Option<&str>,
) -> Result<Vec<RawFinding>, String> {
    Ok(Vec::new())
}

/// Rule id → (Chinese, English) description.
pub fn descriptions() -> HashMap<String, (String, String)> {
    HashMap::new()
}
