//! Consistency checks on the party-records projection (DESIGN §7, docs/RULES.md): the rule
//! catalogue, its settings, and the engine that streams the projection tables and returns
//! findings.
//!
//! Every rule has the same shape ([`RuleDef`]: id, family, description in Chinese and
//! English, source regulation, dated parameters) and lives in the file of its family
//! (`member.rs`, `development.rs`, `dues.rs`, `org.rs`, `meetings.rs`, `status.rs`).
//! Severities, enabled flags and parameters come from `policies/checks.toml`.
//!
//! The checks only read: they never write the projection or the ledger, never change a
//! member's status (a six-month dues gap is a flag for review), and never put an ID number,
//! phone number or income in a finding's message (values carry masked forms at most).

pub mod config;
mod development;
mod dues;
mod engine;
mod facts;
mod meetings;
mod member;
mod org;
mod period;
pub mod scan;
mod status;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::str::FromStr;

use chrono::{Months, NaiveDate};
use serde::{Deserialize, Serialize};

pub use config::{Bracket, CheckConfig, ConfigError, ParamSet, ParamValue, RuleConfig};

use facts::{DuesFacts, MeetingFacts, MemberFacts, OrgFacts, StatusFacts};
use period::Window;

/// How serious a finding is. Ordered: `Info < Warning < Error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

impl FromStr for Severity {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "info" => Ok(Severity::Info),
            "warning" => Ok(Severity::Warning),
            "error" => Ok(Severity::Error),
            _ => Err(()),
        }
    }
}

/// A family of rules; the first part of a rule id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Member,
    Development,
    Dues,
    Org,
    Meetings,
    Status,
}

impl Family {
    /// All families in catalogue order.
    pub const ALL: [Family; 6] = [
        Family::Member,
        Family::Development,
        Family::Dues,
        Family::Org,
        Family::Meetings,
        Family::Status,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Family::Member => "member",
            Family::Development => "development",
            Family::Dues => "dues",
            Family::Org => "org",
            Family::Meetings => "meetings",
            Family::Status => "status",
        }
    }

    /// Title in Chinese and English.
    pub fn title(self) -> (&'static str, &'static str) {
        match self {
            Family::Member => ("党员信息", "member data"),
            Family::Development => ("发展党员", "development process"),
            Family::Dues => ("党费", "dues"),
            Family::Org => ("组织设置", "organisation"),
            Family::Meetings => ("组织生活（三会一课）", "organisational life"),
            Family::Status => ("组织关系与党籍状态", "transfers and status"),
        }
    }
}

/// The type of a rule parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "type")]
pub enum ParamKind {
    /// An integer in `min..=max`.
    Int { min: i64, max: i64 },
    /// A dues rate table (see [`Bracket`]).
    Brackets,
}

/// A parameter a rule takes from `policies/checks.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ParamSpec {
    pub name: &'static str,
    pub kind: ParamKind,
    pub description: &'static str,
}

/// The fixed description of a rule: the same shape for every rule of every family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RuleDef {
    /// Stable id `family.name`; a public contract.
    pub id: &'static str,
    pub family: Family,
    pub description_zh: &'static str,
    pub description_en: &'static str,
    /// Regulation and article the rule comes from.
    pub source: &'static str,
    /// The date that picks the parameter set in force (empty for rules without parameters).
    pub applies_on: &'static str,
    pub params: &'static [ParamSpec],
    /// Pairs of integer parameters that must satisfy `first ≤ second`.
    #[serde(skip)]
    pub ordered: &'static [(&'static str, &'static str)],
}

/// A catalogue entry: a rule's description with its settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleInfo {
    pub id: &'static str,
    pub family: Family,
    pub severity: Severity,
    pub enabled: bool,
    pub description_zh: &'static str,
    pub description_en: &'static str,
    pub source: &'static str,
    pub applies_on: &'static str,
    pub params: &'static [ParamSpec],
    pub param_sets: Vec<ParamSet>,
}

/// One broken rule on one record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Rule id, e.g. `member.id_checksum`.
    pub rule: String,
    pub severity: Severity,
    /// The record: `member/<id>` or `org/<id>`.
    pub subject: String,
    /// English, one line; never contains an ID number, phone number or income.
    pub message: String,
    /// The values that break the rule; sensitive values only masked.
    pub values: serde_json::Value,
}

/// Options of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOptions {
    /// The day the checks are judged on; periods must end strictly before it.
    pub as_of: NaiveDate,
    /// Window start; default `as_of` minus 12 months.
    pub since: Option<NaiveDate>,
    /// Only this organisation and its descendants (members by their `org_id`).
    pub org: Option<String>,
}

impl CheckOptions {
    pub fn new(as_of: NaiveDate) -> CheckOptions {
        CheckOptions {
            as_of,
            since: None,
            org: None,
        }
    }
}

/// The result of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    #[serde(with = "serde_date")]
    pub as_of: NaiveDate,
    #[serde(with = "serde_date")]
    pub window_start: NaiveDate,
    pub org: Option<String>,
    /// Sorted by (rule, subject); at most one finding per (rule, subject).
    pub findings: Vec<Finding>,
    /// Number of findings per rule, with a zero for every enabled rule that found nothing.
    pub counts: BTreeMap<String, usize>,
}

impl Report {
    /// Number of findings whose severity is `min` or higher.
    pub fn count_at_or_above(&self, min: Severity) -> usize {
        self.findings.iter().filter(|f| f.severity >= min).count()
    }

    /// The highest severity found, if any finding.
    pub fn max_severity(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }
}

/// Why a run could not complete.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("reading the projection failed: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("unknown organisation `{0}`")]
    UnknownOrg(String),
    #[error("window start {since} is after the as-of date {as_of}")]
    WindowAfterAsOf { since: NaiveDate, as_of: NaiveDate },
    #[error("as-of date {0} is out of range")]
    AsOfOutOfRange(NaiveDate),
    #[error("internal error: {0}")]
    Internal(String),
}

/// What a rule reports when it is broken; the engine adds rule id, severity and subject.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Violation {
    pub(crate) message: String,
    pub(crate) values: serde_json::Value,
}

impl Violation {
    pub(crate) fn new(message: impl Into<String>, values: serde_json::Value) -> Violation {
        Violation {
            message: message.into(),
            values,
        }
    }
}

/// Typed parameters of every rule, converted once from a [`CheckConfig`].
#[derive(Debug, Clone)]
pub(crate) struct Params {
    pub(crate) development: development::Params,
    pub(crate) dues: dues::Params,
    pub(crate) org: org::Params,
    pub(crate) meetings: meetings::Params,
}

impl Params {
    pub(crate) fn from_config(cfg: &CheckConfig) -> Result<Params, CheckError> {
        Ok(Params {
            development: development::Params::from_config(cfg)?,
            dues: dues::Params::from_config(cfg)?,
            org: org::Params::from_config(cfg)?,
            meetings: meetings::Params::from_config(cfg)?,
        })
    }
}

/// What every rule sees besides its subject.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub(crate) as_of: NaiveDate,
    pub(crate) window: Window,
    pub(crate) params: &'a Params,
}

/// A rule: its description and its check of one subject. `S` is the family's subject
/// (a member, its dues, an organisation, a branch's meetings).
pub(crate) trait Rule<S: ?Sized>: Sync {
    fn def(&self) -> &'static RuleDef;
    fn check(&self, subject: &S, ctx: &Ctx<'_>) -> Option<Violation>;
}

pub(crate) type MemberRule = dyn for<'a> Rule<MemberFacts<'a>>;
pub(crate) type DuesRule = dyn for<'a> Rule<DuesFacts<'a>>;
pub(crate) type StatusRule = dyn for<'a> Rule<StatusFacts<'a>>;
pub(crate) type OrgRule = dyn for<'a> Rule<OrgFacts<'a>>;
pub(crate) type MeetingRule = dyn for<'a> Rule<MeetingFacts<'a>>;

/// Every rule definition in catalogue order.
pub(crate) fn all_defs() -> Vec<&'static RuleDef> {
    let mut defs: Vec<&'static RuleDef> = Vec::new();
    defs.extend(member::RULES.iter().map(|r| r.def()));
    defs.extend(development::RULES.iter().map(|r| r.def()));
    defs.extend(dues::RULES.iter().map(|r| r.def()));
    defs.extend(org::RULES.iter().map(|r| r.def()));
    defs.extend(meetings::RULES.iter().map(|r| r.def()));
    defs.extend(status::RULES.iter().map(|r| r.def()));
    defs
}

/// Run every enabled rule on the projection in `conn` and return the findings sorted by
/// (rule, subject) with counts per rule.
///
/// Reads stream in the order of the indexes of `src/records/schema.sql`; memory holds the
/// organisations, the current member's rows and per-organisation counters, never all dues.
/// When `conn` is not inside a transaction, the run reads one snapshot in a read transaction.
pub fn run_checks(
    conn: &rusqlite::Connection,
    cfg: &CheckConfig,
    opts: &CheckOptions,
) -> Result<Report, CheckError> {
    run_checks_with(conn, cfg, opts, &mut |_| {})
}

/// [`run_checks`], telling `progress` how many members in scope have been read, every 512
/// and once when all are (organisations and meetings are judged after that).
pub fn run_checks_with(
    conn: &rusqlite::Connection,
    cfg: &CheckConfig,
    opts: &CheckOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<Report, CheckError> {
    let start = match opts.since {
        Some(since) if since > opts.as_of => {
            return Err(CheckError::WindowAfterAsOf {
                since,
                as_of: opts.as_of,
            })
        }
        Some(since) => since,
        None => opts
            .as_of
            .checked_sub_months(Months::new(12))
            .ok_or(CheckError::AsOfOutOfRange(opts.as_of))?,
    };
    let window = Window {
        as_of: opts.as_of,
        start,
    };
    let params = Params::from_config(cfg)?;
    let ctx = Ctx {
        as_of: opts.as_of,
        window,
        params: &params,
    };
    let _snapshot = if conn.is_autocommit() {
        Some(conn.unchecked_transaction()?)
    } else {
        None
    };
    let mut findings = engine::run(conn, cfg, &ctx, opts.org.as_deref(), progress)?;
    findings.sort_by(|a, b| {
        (a.rule.as_str(), a.subject.as_str()).cmp(&(b.rule.as_str(), b.subject.as_str()))
    });
    let mut counts: BTreeMap<String, usize> = all_defs()
        .into_iter()
        .filter(|d| cfg.rule(d.id).is_some_and(|r| r.enabled))
        .map(|d| (d.id.to_string(), 0))
        .collect();
    for f in &findings {
        *counts.entry(f.rule.clone()).or_insert(0) += 1;
    }
    Ok(Report {
        as_of: opts.as_of,
        window_start: start,
        org: opts.org.clone(),
        findings,
        counts,
    })
}

/// The catalogue with the embedded settings.
pub fn catalogue() -> Vec<RuleInfo> {
    catalogue_with(&CheckConfig::embedded())
}

/// The catalogue with the settings of `cfg`.
pub fn catalogue_with(cfg: &CheckConfig) -> Vec<RuleInfo> {
    all_defs()
        .into_iter()
        .filter_map(|d| {
            let rc = cfg.rule(d.id)?;
            Some(RuleInfo {
                id: d.id,
                family: d.family,
                severity: rc.severity,
                enabled: rc.enabled,
                description_zh: d.description_zh,
                description_en: d.description_en,
                source: d.source,
                applies_on: d.applies_on,
                params: d.params,
                param_sets: rc.params.clone(),
            })
        })
        .collect()
}

/// The catalogue with the embedded settings as Markdown (`docs/RULES.md`).
pub fn catalogue_markdown() -> String {
    render_markdown(&catalogue())
}

fn permille_text(p: i64) -> String {
    if p % 10 == 0 {
        format!("{}%", p / 10)
    } else {
        format!("{}.{}%", p / 10, (p % 10).abs())
    }
}

fn param_value_text(value: &ParamValue) -> String {
    match value {
        ParamValue::Int(i) => i.to_string(),
        ParamValue::Brackets(steps) => steps
            .iter()
            .map(|b| match b.up_to_fen {
                Some(u) => format!("≤ {} yuan: {}", facts::yuan(u), permille_text(b.permille)),
                None => format!("above: {}", permille_text(b.permille)),
            })
            .collect::<Vec<_>>()
            .join("; "),
    }
}

fn render_markdown(rules: &[RuleInfo]) -> String {
    let mut out = String::new();
    out.push_str("# Consistency check rules\n\n");
    out.push_str(
        "<!-- Generated from the rule catalogue in src/checks and the embedded policies/checks.toml\n\
         by `djaudit check --list-rules --format md`. Do not edit by hand: a test compares this file\n\
         with the code. -->\n\n",
    );
    out.push_str(
        "Every rule has a stable id, a severity (`error`, `warning`, `info`), a description in Chinese\n\
         and English, the regulation it comes from and, where it has numbers, parameter sets that\n\
         apply from a date. A rule uses the set in force on the date named under *parameters chosen\n\
         by*; on dates before the first set the rule does not judge. Severities, enabled flags and\n\
         parameters are the defaults of `policies/checks.toml`; `check --rules FILE` overrides them.\n\n\
         Period rules (dues, meetings) judge a month, quarter or year only when its last day is before\n\
         the as-of date, it overlaps the window (default: the 12 months ending at the as-of date), it\n\
         starts at or after the first month with any dues or meeting data of the organisation, and the\n\
         organisation existed for the whole period. Findings are one per rule and record\n\
         (`member/<id>`, `org/<id>`); messages never contain ID numbers, phone numbers or incomes.\n\n",
    );
    out.push_str("| id | severity | enabled | description |\n|---|---|---|---|\n");
    for r in rules {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} |",
            r.id,
            r.severity.as_str(),
            if r.enabled { "yes" } else { "no" },
            r.description_en
        );
    }
    for family in Family::ALL {
        let (zh, en) = family.title();
        let _ = write!(out, "\n## {} — {zh} / {en}\n", family.as_str());
        for r in rules.iter().filter(|r| r.family == family) {
            let _ = write!(
                out,
                "\n### `{}`\n\n- Severity: {}{}\n- 说明：{}\n- Description: {}\n- Source: {}\n",
                r.id,
                r.severity.as_str(),
                if r.enabled { "" } else { " (disabled)" },
                r.description_zh,
                r.description_en,
                r.source
            );
            if r.params.is_empty() {
                out.push_str("- Parameters: none\n");
                continue;
            }
            let _ = writeln!(out, "- Parameters chosen by: {}\n", r.applies_on);
            for p in r.params {
                let _ = writeln!(out, "  - `{}`: {}", p.name, p.description);
            }
            out.push_str("\n  | from |");
            for p in r.params {
                let _ = write!(out, " `{}` |", p.name);
            }
            out.push_str("\n  |---|");
            for _ in r.params {
                out.push_str("---|");
            }
            out.push('\n');
            for set in &r.param_sets {
                let _ = write!(out, "  | {} |", set.from);
                for p in r.params {
                    let v = set
                        .values
                        .get(p.name)
                        .map(param_value_text)
                        .unwrap_or_default();
                    let _ = write!(out, " {v} |");
                }
                out.push('\n');
            }
        }
    }
    out
}

/// Dates as `YYYY-MM-DD` strings in serde.
pub(crate) mod serde_date {
    use chrono::NaiveDate;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(d: &NaiveDate, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&d.format("%Y-%m-%d"))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveDate, D::Error> {
        let text = String::deserialize(d)?;
        super::period::parse_date(&text)
            .ok_or_else(|| serde::de::Error::custom("expected a date YYYY-MM-DD"))
    }
}

#[cfg(test)]
mod scenarios;
#[cfg(test)]
pub(crate) mod testutil;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_ids_are_unique_and_prefixed_by_family() {
        let defs = all_defs();
        let mut ids: Vec<&str> = defs.iter().map(|d| d.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), defs.len());
        for d in &defs {
            assert!(
                d.id.starts_with(&format!("{}.", d.family.as_str())),
                "{}",
                d.id
            );
            assert!(
                !d.description_zh.is_empty()
                    && !d.description_en.is_empty()
                    && !d.source.is_empty()
            );
            assert_eq!(d.params.is_empty(), d.applies_on.is_empty(), "{}", d.id);
        }
    }

    /// The contract's catalogue (docs/RULES.md) with default severities: ids are shared with the
    /// synthetic data generator and must not change.
    #[test]
    fn catalogue_matches_contract_ids_and_severities() {
        let expected = [
            ("member.required_fields", "error"),
            ("member.id_format", "error"),
            ("member.id_legacy", "warning"),
            ("member.id_checksum", "error"),
            ("member.id_birth_mismatch", "error"),
            ("member.id_gender_mismatch", "error"),
            ("member.id_duplicate", "error"),
            ("member.org_missing", "error"),
            ("member.org_dissolved", "error"),
            ("member.org_not_branch", "error"),
            ("member.future_date", "error"),
            ("member.phone_format", "warning"),
            ("development.age_at_application", "error"),
            ("development.date_order", "error"),
            ("development.activist_period", "error"),
            ("development.introducers_count", "error"),
            ("development.introducer_not_full", "error"),
            ("development.introducer_unknown", "warning"),
            ("development.probation_extension", "error"),
            ("development.full_date_mismatch", "error"),
            ("development.probation_overdue", "warning"),
            ("development.category_mismatch", "error"),
            ("dues.amount_mismatch", "error"),
            ("dues.missing_months", "warning"),
            ("dues.six_months_unpaid", "error"),
            ("dues.duplicate_payment", "warning"),
            ("org.parent_missing", "error"),
            ("org.cycle", "error"),
            ("org.branch_too_small", "error"),
            ("org.branch_too_large", "warning"),
            ("org.committee_expected", "warning"),
            ("org.secretary_invalid", "error"),
            ("meetings.member_meeting_quarterly", "error"),
            ("meetings.committee_meeting_monthly", "error"),
            ("meetings.theme_day_monthly", "warning"),
            ("meetings.org_life_yearly", "warning"),
            ("meetings.appraisal_yearly", "warning"),
            ("meetings.lecture_quarterly", "info"),
            ("status.transfer_chain", "error"),
            ("status.org_mismatch", "error"),
            ("status.activity_after_exit", "error"),
        ];
        let got: Vec<(&str, &str)> = catalogue()
            .iter()
            .map(|r| (r.id, r.severity.as_str()))
            .collect();
        assert_eq!(got, expected);
        assert!(catalogue().iter().all(|r| r.enabled));
    }

    #[test]
    fn docs_rules_md_matches_catalogue() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/RULES.md");
        let generated = catalogue_markdown();
        if std::env::var_os("DJAUDIT_UPDATE_RULES_MD").is_some() {
            std::fs::write(path, &generated).unwrap();
        }
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            on_disk == generated,
            "docs/RULES.md differs from catalogue_markdown(); regenerate it with \
             `DJAUDIT_UPDATE_RULES_MD=1 cargo test --lib checks::tests::docs_rules_md_matches_catalogue`"
        );
    }

    #[test]
    fn markdown_names_every_rule_and_its_parameters() {
        let md = catalogue_markdown();
        for r in catalogue() {
            assert!(md.contains(&format!("### `{}`", r.id)), "{}", r.id);
            for p in r.params {
                assert!(md.contains(&format!("`{}`", p.name)), "{}", p.name);
            }
        }
        assert!(md.contains(
            "≤ 3000.00 yuan: 0.5%; ≤ 5000.00 yuan: 1%; ≤ 10000.00 yuan: 1.5%; above: 2%"
        ));
    }

    #[test]
    fn severity_orders_and_parses() {
        assert!(Severity::Info < Severity::Warning && Severity::Warning < Severity::Error);
        assert_eq!("warning".parse::<Severity>(), Ok(Severity::Warning));
        assert_eq!("Warning".parse::<Severity>(), Err(()));
    }
}
