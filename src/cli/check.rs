//! `djaudit check`: run the consistency checks on the projection, record the scan on the
//! ledger and show what is new and what was resolved since the previous scan.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::anyhow;
use clap::Args;
use djaudit::checks::scan::Scan;
use djaudit::checks::{self, CheckConfig, CheckOptions, Report, Severity};
use djaudit::ledger::{Actor, Ledger};
use djaudit::records::projection;
use serde_json::json;

use super::{parse_date, print_json, today_shanghai, CliError, CmdResult, EXIT_NO};

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
    let report = super::with_progress("checking", "members", None, |progress| {
        checks::run_checks_with(ledger.conn(), &cfg, &opts, progress)
    })
    .map_err(|e| match e {
        checks::CheckError::Db(_) | checks::CheckError::Internal(_) => CliError::storage(e),
        _ => CliError::input(e),
    })?;

    let scan = Scan::prepare(ledger.conn(), &report).map_err(CliError::storage)?;
    let mut seq = None;
    if !a.no_record {
        let user = a
            .as_user
            .clone()
            .unwrap_or_else(|| std::env::var("USER").unwrap_or_else(|_| "unknown".into()));
        let entry = scan
            .entry(&report, Actor::cli(&user))
            .map_err(|e| CliError::input(anyhow!("{e}")))?;
        let appended = ledger.append(entry)?;
        ledger.checkpoint()?;
        seq = Some(appended.seq);
    }

    let failing = report.count_at_or_above(a.fail_on);
    if a.json {
        let mut doc = scan.document.clone();
        doc["findings_sha256"] = json!(scan.sha256);
        doc["scan_seq"] = json!(seq);
        doc["previous_scan"] = json!(scan.had_previous);
        doc["new"] = json!(scan.new);
        doc["resolved"] = json!(scan.resolved);
        print_json(&doc)?;
    } else {
        print_summary(&report, &scan, seq);
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

fn print_summary(r: &Report, scan: &Scan, seq: Option<u64>) {
    let (new, resolved, had_previous) = (&scan.new, &scan.resolved, scan.had_previous);
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
        let by_rule = scan.subjects();
        for (rule, subjects) in by_rule {
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
