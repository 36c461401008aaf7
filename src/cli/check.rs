//! `djaudit check`: run the consistency checks on the projection, record the scan on the
//! ledger and show what is new and what was resolved since the previous scan.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::anyhow;
use clap::Args;
use djaudit::checks::{self, CheckConfig, CheckOptions, Report, Severity};
use djaudit::ledger::canonical::to_canonical_vec;
use djaudit::ledger::{Actor, Entry, Ledger, NewEntry};
use djaudit::records::projection;
use rusqlite::OptionalExtension;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{parse_date, print_json, today_shanghai, CliError, CmdResult, EXIT_NO};

/// Kind of the entry each scan appends.
const SCAN_KIND: &str = "scan.checks";

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The day the checks judge (default: today in Asia/Shanghai).
    #[arg(long)]
    pub as_of: Option<String>,
    /// Start of the window of period rules (default: 12 months before --as-of).
    #[arg(long)]
    pub since: Option<String>,
    /// A TOML file overriding severities, enabled flags and parameters of policies/checks.toml.
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// Only this organisation and everything below it.
    #[arg(long)]
    pub org: Option<String>,
    /// One JSON document with every finding on stdout.
    #[arg(long)]
    pub json: bool,
    /// Exit 1 when a finding at or above this severity exists.
    #[arg(long, default_value = "error", value_parser = parse_severity)]
    pub fail_on: Severity,
    /// Print the rule catalogue instead of checking.
    #[arg(long)]
    pub list_rules: bool,
    /// Format of --list-rules: text or md.
    #[arg(long, default_value = "text")]
    pub format: String,
    /// Do not record a `scan.checks` entry.
    #[arg(long)]
    pub no_record: bool,
    /// The djaudit user the scan is attributed to (default: the operating-system user).
    #[arg(long = "as")]
    pub as_user: Option<String>,
}

fn parse_severity(s: &str) -> Result<Severity, String> {
    s.parse()
        .map_err(|()| format!("unknown severity `{s}`: expected error, warning or info"))
}

pub fn check(data: &std::path::Path, a: CheckArgs) -> CmdResult {
    let cfg = match &a.rules {
        Some(path) => CheckConfig::embedded()
            .with_overrides_file(path)
            .map_err(|e| CliError::input(anyhow!("{e}")))?,
        None => CheckConfig::embedded(),
    };
    if a.list_rules {
        return list_rules(&cfg, &a.format);
    }
    let as_of = match &a.as_of {
        Some(d) => parse_date(d)?,
        None => today_shanghai(),
    };
    let mut opts = CheckOptions::new(as_of);
    opts.since = a.since.as_deref().map(parse_date).transpose()?;
    opts.org = a.org.clone();

    let mut ledger = Ledger::open(data)?;
    projection::ensure_schema(ledger.conn())?;
    let report = checks::run_checks(ledger.conn(), &cfg, &opts).map_err(|e| match e {
        checks::CheckError::Db(_) | checks::CheckError::Internal(_) => CliError::storage(e),
        _ => CliError::input(e),
    })?;

    let scope = format!("checks/{}", a.org.as_deref().unwrap_or("all"));
    let previous = previous_scan(&ledger, &scope)?;
    let current = subjects_by_rule(&report);
    let (new, resolved) = match &previous {
        Some(prev) => diff(prev, &current),
        None => (Vec::new(), Vec::new()),
    };
    let document = findings_document(&report);
    let sha = hex::encode(Sha256::digest(
        to_canonical_vec(&document).map_err(CliError::storage)?,
    ));
    let mut seq = None;
    if !a.no_record {
        let user = a
            .as_user
            .clone()
            .unwrap_or_else(|| std::env::var("USER").unwrap_or_else(|_| "unknown".into()));
        let entry = NewEntry::new(
            SCAN_KIND,
            &scope,
            Actor::cli(&user),
            json!({
                "as_of": report.as_of.to_string(),
                "window_start": report.window_start.to_string(),
                "org": report.org,
                "total": report.findings.len(),
                "by_severity": by_severity(&report),
                "counts": report.counts,
                "findings_sha256": sha,
                "subjects": current,
                "new": new.len(),
                "resolved": resolved.len(),
            }),
        )
        .map_err(|e| CliError::input(anyhow!("{e}")))?;
        let appended = ledger.append(entry)?;
        ledger.checkpoint()?;
        seq = Some(appended.seq);
    }

    let failing = report.count_at_or_above(a.fail_on);
    if a.json {
        let mut doc = document;
        doc["findings_sha256"] = json!(sha);
        doc["scan_seq"] = json!(seq);
        doc["previous_scan"] = json!(previous.is_some());
        doc["new"] = json!(new);
        doc["resolved"] = json!(resolved);
        print_json(&doc)?;
    } else {
        print_summary(&report, &new, &resolved, previous.is_some(), seq);
    }
    Ok(if failing > 0 {
        ExitCode::from(EXIT_NO)
    } else {
        ExitCode::SUCCESS
    })
}

fn list_rules(cfg: &CheckConfig, format: &str) -> CmdResult {
    match format {
        "md" | "markdown" => print!("{}", checks::catalogue_markdown()),
        "text" => {
            for r in checks::catalogue_with(cfg) {
                println!(
                    "{:<38} {:<8} {:<4} {}",
                    r.id,
                    r.severity.as_str(),
                    if r.enabled { "on" } else { "off" },
                    r.description_en
                );
            }
        }
        other => {
            return Err(CliError::input(anyhow!(
                "unknown format `{other}`: expected text or md"
            )))
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The findings document whose SHA-256 the scan entry records.
fn findings_document(r: &Report) -> Value {
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

fn subjects_by_rule(r: &Report) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in &r.findings {
        m.entry(f.rule.clone()).or_default().push(f.subject.clone());
    }
    m
}

/// The `(rule, subject)` pairs of the latest earlier scan of the same scope.
fn previous_scan(
    ledger: &Ledger,
    scope: &str,
) -> Result<Option<BTreeMap<String, Vec<String>>>, CliError> {
    let body: Option<String> = ledger
        .conn()
        .query_row(
            "SELECT body FROM entry WHERE subject = ?1 AND kind = ?2 ORDER BY seq DESC LIMIT 1",
            [scope, SCAN_KIND],
            |r| r.get(0),
        )
        .optional()
        .map_err(CliError::storage)?;
    let Some(body) = body else { return Ok(None) };
    let e = Entry::parse(body.as_bytes())
        .map_err(|err| CliError::storage(anyhow!("previous scan entry does not parse: {err}")))?;
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

fn print_summary(
    r: &Report,
    new: &[Value],
    resolved: &[Value],
    had_previous: bool,
    seq: Option<u64>,
) {
    println!(
        "checks as of {} (window from {}{}): {} findings",
        r.as_of,
        r.window_start,
        r.org
            .as_deref()
            .map(|o| format!(", org {o}"))
            .unwrap_or_default(),
        r.findings.len()
    );
    if !r.findings.is_empty() {
        println!();
        println!("{:<38} {:<8} {:>7}  examples", "rule", "severity", "count");
        let by_rule = subjects_by_rule(r);
        for (rule, subjects) in &by_rule {
            let severity = r
                .findings
                .iter()
                .find(|f| &f.rule == rule)
                .map_or("", |f| f.severity.as_str());
            let examples: Vec<&str> = subjects.iter().take(3).map(String::as_str).collect();
            println!(
                "{:<38} {:<8} {:>7}  {}{}",
                rule,
                severity,
                subjects.len(),
                examples.join(", "),
                if subjects.len() > 3 { ", …" } else { "" }
            );
        }
    }
    println!();
    if had_previous {
        println!(
            "since the previous scan: {} new, {} resolved",
            new.len(),
            resolved.len()
        );
    } else {
        println!("no previous scan of this scope to compare with");
    }
    if let Some(seq) = seq {
        println!("recorded as entry {seq} (scan.checks); `--json` lists every finding");
    }
}
