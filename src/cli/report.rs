//! `djaudit report`: issue a signed compliance report; `djaudit report verify FILE`.
//!
//! Exit codes: `report` 0 issued, 1 the `--as` user may not read the report (recorded), 2
//! bad arguments, 3 storage; `report verify` 0 intact, 1 changed, 2 not a readable report.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::anyhow;
use clap::{Args, Subcommand};
use djaudit::ledger::note::VerifierKey;
use djaudit::ledger::{Actor, Ledger};
use djaudit::policy::record::{self, AccessRequest};
use djaudit::policy::{Action, Authorizer, Policies, Resource};
use djaudit::records::projection;
use djaudit::records::RecordKind;
use djaudit::report::{self, DocFormat, Issued, Lang, Period, ReportError, ReportOptions};

use super::{
    parse_date, print_json, read_input_file, today_shanghai, CliError, CmdResult, EXIT_NO,
};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ReportArgs {
    #[command(subcommand)]
    pub command: Option<ReportCommand>,
    #[command(flatten)]
    pub make: MakeArgs,
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Check a report file: its signature, its checkpoint, and that the document is exactly
    /// what its signed JSON renders to. Exit 0 intact, 1 changed, 2 not a readable report.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct MakeArgs {
    /// The period: a year `2026`, a quarter `2026-Q3` or a month `2026-09`.
    #[arg(long, conflicts_with_all = ["from", "to"])]
    pub period: Option<String>,
    /// First day of the period (YYYY-MM-DD), with `--to`.
    #[arg(long, requires = "to")]
    pub from: Option<String>,
    /// Last day of the period (YYYY-MM-DD), with `--from`.
    #[arg(long, requires = "from")]
    pub to: Option<String>,
    /// Only this organisation and everything below it.
    #[arg(long)]
    pub org: Option<String>,
    /// html, md or json (default: from the extension of `--out`, else html).
    #[arg(long, value_parser = parse_format)]
    pub format: Option<DocFormat>,
    /// Language of the labels: zh (default) or en.
    #[arg(long, default_value = "zh", value_parser = parse_lang)]
    pub lang: Lang,
    /// Write the report to this file instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Decide `read` on the report for this user first, and record the decision.
    #[arg(long = "as", value_name = "USER")]
    pub as_user: Option<String>,
    /// The day the records are judged on (default: the day after the period, or today).
    #[arg(long, value_name = "DATE")]
    pub as_of: Option<String>,
    /// A policy directory instead of the embedded policies (with `--as`).
    #[arg(long, env = "DJAUDIT_POLICIES")]
    pub policies: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The report: HTML, Markdown or JSON as `djaudit report` wrote it.
    pub file: PathBuf,
    /// The verifier key to trust (vkey text or a file holding it); without it the key the
    /// report names is used, which proves integrity but not who signed.
    #[arg(long)]
    pub vkey: Option<String>,
    /// One JSON document on stdout.
    #[arg(long)]
    pub json: bool,
}

fn parse_format(s: &str) -> Result<DocFormat, String> {
    s.parse()
}

fn parse_lang(s: &str) -> Result<Lang, String> {
    s.parse()
}

impl From<ReportError> for CliError {
    fn from(e: ReportError) -> CliError {
        if e.is_input() {
            CliError::input(e)
        } else {
            CliError::storage(e)
        }
    }
}

pub fn report(data: &Path, a: ReportArgs) -> CmdResult {
    match a.command {
        Some(ReportCommand::Verify(v)) => verify(v),
        None => make(data, a.make),
    }
}

fn os_user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| djaudit::ledger::entry::valid_name(u))
        .unwrap_or_else(|| "unknown".into())
}

/// The period and the options from the arguments.
pub fn options(a: &MakeArgs, issued_by: &str) -> Result<ReportOptions, CliError> {
    let period = match (&a.period, &a.from, &a.to) {
        (Some(p), _, _) => Period::parse(p)?,
        (None, Some(f), Some(t)) => Period::range(parse_date(f)?, parse_date(t)?)?,
        _ => {
            return Err(CliError::input(anyhow!(
                "give the period: `--period 2026-Q3` (or 2026-09, 2026) or `--from DATE --to DATE`"
            )))
        }
    };
    let mut opts = ReportOptions::new(period, today_shanghai())?;
    if let Some(d) = &a.as_of {
        opts = opts.with_as_of(parse_date(d)?)?;
    }
    opts.org.clone_from(&a.org);
    opts.lang = a.lang;
    issued_by.clone_into(&mut opts.issued_by);
    Ok(opts)
}

/// The format: `--format`, else the extension of `--out`, else HTML.
fn format_of(a: &MakeArgs) -> DocFormat {
    a.format.unwrap_or_else(|| {
        a.out
            .as_ref()
            .and_then(|p| p.extension())
            .and_then(|e| e.to_str())
            .and_then(|e| e.parse().ok())
            .unwrap_or(DocFormat::Html)
    })
}

/// Decides and records `read` on the report for `user` when the ledger has user accounts;
/// `Ok(false)` when denied.
fn authorise(ledger: &mut Ledger, a: &MakeArgs, user: &str) -> Result<bool, CliError> {
    projection::ensure_schema(ledger.conn())?;
    if projection::is_empty(ledger.conn(), RecordKind::User)? {
        eprintln!("note: the ledger has no user accounts; `--as {user}` is not checked");
        return Ok(true);
    }
    let policies = match &a.policies {
        Some(d) => Policies::from_dir(d)?,
        None => Policies::embedded()?,
    };
    record::ensure_policy_recorded(ledger, &policies, Actor::cli(&os_user()))?;
    let authorizer = Authorizer::new(policies, ledger.conn())?;
    let req = AccessRequest::new(
        Actor::cli(user),
        Action::Read,
        Resource::Report(a.org.clone()),
        "report",
    );
    let (outcome, appended) = record::decide_and_record(ledger, &authorizer, &req)?;
    if !outcome.allowed() {
        ledger.checkpoint()?;
        eprintln!(
            "deny: `{user}` may not read the report of `{}`; recorded as entry {}",
            a.org.as_deref().unwrap_or("everything"),
            appended.seq
        );
    }
    Ok(outcome.allowed())
}

/// Writes `text` to `path` through a temporary file in the same directory.
pub fn write_atomic(path: &Path, text: &str) -> Result<(), CliError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let fail =
        |e: std::io::Error| CliError::input(anyhow!("cannot write `{}`: {e}", path.display()));
    let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(fail)?;
    tmp.write_all(text.as_bytes()).map_err(fail)?;
    tmp.as_file().sync_all().map_err(fail)?;
    tmp.persist(path).map_err(|e| fail(e.error))?;
    Ok(())
}

fn make(data: &Path, a: MakeArgs) -> CmdResult {
    let issued_by = a.as_user.clone().unwrap_or_else(os_user);
    let opts = options(&a, &issued_by)?;
    let format = format_of(&a);
    let mut ledger = Ledger::open(data)?;
    if let Some(user) = &a.as_user {
        if !authorise(&mut ledger, &a, user)? {
            return Ok(ExitCode::from(EXIT_NO));
        }
    }
    let issued = report::issue(&mut ledger, &opts, format)?;
    let file_name = a
        .out
        .as_ref()
        .and_then(|p| p.file_name())
        .map(|f| f.to_string_lossy().into_owned());
    match &a.out {
        Some(path) => write_atomic(path, &issued.text)?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(issued.text.as_bytes())
                .and_then(|()| out.flush())
                .map_err(CliError::storage)?;
        }
    }
    let appended = report::record_issue(
        &mut ledger,
        &issued,
        Actor::cli(&issued_by),
        file_name.as_deref(),
    )?;
    let line = summary_line(&issued, a.out.as_deref(), appended.seq);
    if a.out.is_some() {
        println!("{line}");
    } else {
        eprintln!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// One line about an issued report.
pub fn summary_line(issued: &Issued, out: Option<&Path>, seq: u64) -> String {
    let r = &issued.report;
    format!(
        "report {} ({}, {}){} at checkpoint size {}: {} changes, {} access decisions ({} findings), {} data findings; sha256 {}; recorded as entry {seq}",
        r.period.label,
        issued.format.as_str(),
        r.lang.as_str(),
        out.map(|p| format!(" written to {}", p.display()))
            .unwrap_or_default(),
        r.integrity.size,
        r.changes.total,
        r.access.decisions,
        r.access.findings.len(),
        r.quality.totals.total(),
        issued.sha256
    )
}

fn read_vkey(arg: &str) -> Result<VerifierKey, CliError> {
    let text = if Path::new(arg).is_file() {
        read_input_file(Path::new(arg))?
    } else {
        arg.to_owned()
    };
    VerifierKey::parse(text.trim())
        .map_err(|e| CliError::input(anyhow!("invalid verifier key: {e}")))
}

fn verify(a: VerifyArgs) -> CmdResult {
    let vkey = a.vkey.as_deref().map(read_vkey).transpose()?;
    let text = read_input_file(&a.file)?;
    let v = report::verify_document(&text, vkey.as_ref())
        .map_err(|e| CliError::input(anyhow!("`{}`: {e}", a.file.display())))?;
    if a.json {
        print_json(&v)?;
    } else if v.ok {
        println!(
            "ok: report {} ({}) is intact: signed by {}{}; computed at checkpoint size {}",
            v.period.as_deref().unwrap_or("?"),
            v.format,
            v.key,
            if v.pinned {
                ""
            } else {
                " (the key the report names; pin it with --vkey)"
            },
            v.size.map_or_else(|| "?".to_owned(), |s| s.to_string())
        );
    } else {
        println!(
            "CHANGED: {} is not the report that was signed:",
            a.file.display()
        );
        for p in &v.problems {
            println!("  {p}");
        }
    }
    Ok(if v.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_NO)
    })
}
