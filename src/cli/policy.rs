//! Access policy commands: `policy validate|test`, `access check|import`, `audit access`.
//!
//! Exit codes (DESIGN §10): `policy validate` 0 valid, 2 invalid (each problem on stderr as
//! `file:line:column: message`); `policy test` 0 every case passes, 1 a case fails, 2 the set
//! or a test file is invalid; `access check` 0 allow, 1 deny (recorded either way), 2 an
//! unknown user, action or record; `access import` 0 recorded, 2 a malformed log (nothing
//! recorded); `audit access` 0 no finding at or above `--fail-on`, 1 findings.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::anyhow;
use clap::{Args, Subcommand};
use djaudit::audit::{self, AccessConfig, AuditError, AuditOptions, AuditReport, Severity};
use djaudit::ledger::{Actor, Ledger, NewEntry};
use djaudit::policy::record::{self, format_time, parse_time, AccessRequest, RecordError};
use djaudit::policy::{
    run_default_policy_tests, run_policy_tests, Action, Authorizer, Policies, PolicyError,
    Resource, TestReport,
};
use djaudit::records::projection;
use djaudit::records::RecordKind;
use serde_json::json;

use super::{print_json, read_input_file, CliError, CmdResult, EXIT_INPUT, EXIT_NO};

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy set (schema.cedarschema + *.cedar) in strict mode: exit 0 valid,
    /// 2 invalid with every problem as `file:line:column: message`.
    Validate(PolicyDirArgs),
    /// Run the test cases of a policy set (`DIR/tests/*.toml`): exit 0 all pass, 1 any fails.
    Test(PolicyDirArgs),
}

#[derive(Debug, Args)]
pub struct PolicyDirArgs {
    /// The policy directory; the policies embedded in djaudit when omitted.
    pub dir: Option<PathBuf>,
    /// One JSON document on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum AccessCommand {
    /// Ask the policy whether a user may do something, and record the decision: exit 0
    /// allow, 1 deny.
    Check(CheckArgs),
    /// Decide and record a platform access log (JSON Lines of {"at","user","action",
    /// "resource","request"}), each access at its own time, all or nothing.
    Import(ImportArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The user asking.
    #[arg(long = "as", value_name = "USER")]
    pub user: String,
    /// The action: read, read_sensitive, export, create, update, remove, approve, verify,
    /// audit, manage_users, manage_policy, manage_keys.
    #[arg(long)]
    pub action: String,
    /// The resource: member/<id>, org/<id>, ledger, report, report/<org_id>, system, ….
    #[arg(long)]
    pub resource: String,
    /// For `approve`: the user who made the change being approved.
    #[arg(long, value_name = "USER")]
    pub change_actor: Option<String>,
    /// A policy directory instead of the embedded policies.
    #[arg(long, env = "DJAUDIT_POLICIES")]
    pub policies: Option<PathBuf>,
    /// One JSON document on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The access log, JSON Lines.
    pub file: PathBuf,
    /// The djaudit user recorded as importing it (default: the operating-system user).
    #[arg(long)]
    pub actor: Option<String>,
    /// A policy directory instead of the embedded policies.
    #[arg(long, env = "DJAUDIT_POLICIES")]
    pub policies: Option<PathBuf>,
    /// One JSON document on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Find accesses that look like leakage in the recorded access decisions: exit 1 when
    /// there are findings at or above `--fail-on`.
    Access(AuditAccessArgs),
}

#[derive(Debug, Args)]
pub struct AuditAccessArgs {
    /// Accesses at or after this time: `2026-11-01T08:00:00Z`, or a date, which is a local
    /// day in the offset of `working_hours.utc_offset` (Asia/Shanghai by default).
    #[arg(long)]
    pub since: Option<String>,
    /// Accesses at or before this time (a date includes the whole local day); also the end
    /// of the dormant-account window (default: now).
    #[arg(long)]
    pub until: Option<String>,
    /// Only this user's accesses and findings.
    #[arg(long)]
    pub user: Option<String>,
    /// A TOML file overlaid on the default rule settings (the access part of policies/checks.toml).
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// Exit 1 when there is a finding of this severity or above.
    #[arg(long, default_value = "info", value_parser = ["error", "warning", "info"])]
    pub fail_on: String,
    /// Decide `audit` on the ledger for this user first, and record the decision.
    #[arg(long = "as", value_name = "USER")]
    pub as_user: Option<String>,
    /// A policy directory instead of the embedded policies (with `--as`).
    #[arg(long, env = "DJAUDIT_POLICIES")]
    pub policies: Option<PathBuf>,
    /// Do not record a `scan.access` entry.
    #[arg(long)]
    pub no_record: bool,
    /// One JSON document on stdout.
    #[arg(long)]
    pub json: bool,
}

impl From<PolicyError> for CliError {
    fn from(e: PolicyError) -> CliError {
        RecordError::Policy(e).into()
    }
}

impl From<RecordError> for CliError {
    fn from(e: RecordError) -> CliError {
        if e.is_input() {
            CliError::input(e)
        } else {
            CliError::storage(e)
        }
    }
}

impl From<AuditError> for CliError {
    fn from(e: AuditError) -> CliError {
        match e {
            AuditError::Ledger(l) => l.into(),
            AuditError::Config(c) => CliError::input(c),
            AuditError::Projection(p) => CliError::storage(p),
        }
    }
}

/// The operating-system user, for entries djaudit writes on its own account.
fn os_user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

pub(super) fn load_policies(dir: Option<&Path>) -> Result<Policies, CliError> {
    match dir {
        Some(d) => Policies::from_dir(d).map_err(|e| invalid_set(d, e)),
        None => Ok(Policies::embedded()?),
    }
}

/// A policy set that does not load: every problem on stderr, the first as the error.
fn invalid_set(dir: &Path, e: PolicyError) -> CliError {
    if let PolicyError::Invalid(diags) = &e {
        if diags.len() > 1 {
            for d in diags.iter().skip(1) {
                eprintln!("{}", located(dir, &d.to_string()));
            }
        }
        if let Some(first) = diags.first() {
            return CliError::input(anyhow!("{}", located(dir, &first.to_string())));
        }
    }
    e.into()
}

/// `dir/file:line:col: message`.
fn located(dir: &Path, diag: &str) -> String {
    dir.join(diag).display().to_string()
}

/// Creates the projection tables if needed; refuses a ledger without any user account.
fn require_users(ledger: &Ledger) -> Result<(), CliError> {
    let conn = ledger.conn();
    projection::ensure_schema(conn).map_err(records_err)?;
    if projection::is_empty(conn, RecordKind::User).map_err(records_err)? {
        return Err(CliError::input(anyhow!(
            "the ledger has no user accounts yet; import them first (`djaudit import users FILE`)"
        )));
    }
    Ok(())
}

fn records_err(e: djaudit::records::projection::RecordError) -> CliError {
    if e.is_input() {
        CliError::input(e)
    } else {
        CliError::storage(e)
    }
}

/// Opens the ledger, loads and records the policy set, builds the authorizer.
fn authorizer(data: &Path, dir: Option<&Path>) -> Result<(Ledger, Authorizer), CliError> {
    let policies = load_policies(dir)?;
    let mut ledger = Ledger::open(data)?;
    require_users(&ledger)?;
    record::ensure_policy_recorded(&mut ledger, &policies, Actor::cli(&os_user()))?;
    let authorizer = Authorizer::new(policies, ledger.conn())?;
    Ok((ledger, authorizer))
}

pub fn policy(c: PolicyCommand) -> CmdResult {
    match c {
        PolicyCommand::Validate(a) => validate(a),
        PolicyCommand::Test(a) => test(a),
    }
}

fn validate(a: PolicyDirArgs) -> CmdResult {
    let result = match &a.dir {
        Some(d) => Policies::from_dir(d),
        None => Policies::embedded(),
    };
    let dir = a.dir.clone().unwrap_or_default();
    let p = match result {
        Ok(p) => p,
        Err(PolicyError::Invalid(diags)) if a.json => {
            print_json(&json!({"valid": false, "errors": diags}))?;
            return Ok(ExitCode::from(EXIT_INPUT));
        }
        Err(PolicyError::Invalid(diags)) => {
            for d in &diags {
                eprintln!("{}", located(&dir, &d.to_string()));
            }
            eprintln!("invalid: {} problems", diags.len());
            return Ok(ExitCode::from(EXIT_INPUT));
        }
        Err(e) => return Err(e.into()),
    };
    if a.json {
        let files: Vec<&str> = p.files().iter().map(|f| f.name.as_str()).collect();
        print_json(&json!({
            "valid": true,
            "sha256": p.sha256_hex(),
            "source": p.source(),
            "files": files,
            "policies": p.policy_ids(),
            "warnings": p.warnings(),
        }))?;
    } else {
        for w in p.warnings() {
            eprintln!("warning: {}", located(&dir, &w.to_string()));
        }
        println!(
            "valid: {} policies in {} files, sha256 {}",
            p.policy_ids().len(),
            p.files().len(),
            p.sha256_hex()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn test(a: PolicyDirArgs) -> CmdResult {
    let report: TestReport = match &a.dir {
        Some(d) => run_policy_tests(d).map_err(|e| invalid_set(d, e))?,
        None => run_default_policy_tests()?,
    };
    if a.json {
        print_json(&json!({
            "ok": report.all_passed(),
            "policy_sha256": report.policy_sha256,
            "passed": report.passed(),
            "failed": report.failed(),
            "cases": report.cases,
        }))?;
    } else {
        for c in report.failures() {
            println!(
                "FAIL {}: {}: {} {} {}: {}",
                c.file,
                c.name,
                c.user,
                c.action,
                c.resource,
                c.failure.as_deref().unwrap_or("failed")
            );
        }
        println!(
            "{} passed, {} failed (policy set {})",
            report.passed(),
            report.failed(),
            report.policy_sha256
        );
    }
    Ok(if report.all_passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_NO)
    })
}

pub fn access(data: &Path, c: AccessCommand) -> CmdResult {
    match c {
        AccessCommand::Check(a) => check(data, a),
        AccessCommand::Import(a) => import(data, a),
    }
}

fn check(data: &Path, a: CheckArgs) -> CmdResult {
    let action: Action = a.action.parse()?;
    let resource: Resource = a.resource.parse()?;
    let (mut ledger, authorizer) = authorizer(data, a.policies.as_deref())?;
    let mut req = AccessRequest::new(Actor::cli(&a.user), action, resource, "access check");
    req.change_actor = a.change_actor.clone();
    let (outcome, appended) = record::decide_and_record(&mut ledger, &authorizer, &req)?;
    ledger.checkpoint()?;
    let word = if outcome.allowed() { "allow" } else { "deny" };
    if a.json {
        print_json(&json!({
            "user": a.user,
            "action": action,
            "resource": req.resource.to_string(),
            "decision": word,
            "policies": outcome.decision.policy_ids,
            "reason": outcome.reason,
            "errors": outcome.decision.errors,
            "seq": appended.seq,
        }))?;
    } else {
        let why = match (outcome.reason, outcome.decision.policy_ids.is_empty()) {
            (Some(r), _) => r.as_str().to_string(),
            (None, true) => "no policy permits it".to_string(),
            (None, false) => format!("policies: {}", outcome.decision.policy_ids.join(", ")),
        };
        println!(
            "{word}: `{}` {} `{}` ({why}); recorded as entry {}",
            a.user, action, req.resource, appended.seq
        );
        for e in &outcome.decision.errors {
            eprintln!("policy error: {e}");
        }
    }
    Ok(if outcome.allowed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_NO)
    })
}

fn import(data: &Path, a: ImportArgs) -> CmdResult {
    let text = read_input_file(&a.file)?;
    let (mut ledger, authorizer) = authorizer(data, a.policies.as_deref())?;
    let importer = Actor::cli(a.actor.as_deref().unwrap_or(&os_user()));
    let s =
        record::import_access_log(&mut ledger, &authorizer, &text, importer).map_err(
            |e| match e {
                RecordError::Line { line, message } => CliError::input(anyhow!(
                    "{}:{line}: {message}; nothing recorded",
                    a.file.display()
                )),
                e => e.into(),
            },
        )?;
    ledger.checkpoint()?;
    if a.json {
        print_json(&s)?;
    } else {
        println!(
            "recorded {} accesses ({} allowed, {} denied, {} by unknown users or of unknown records) as entries {}..{}",
            s.events, s.allowed, s.denied, s.unknown, s.first_seq, s.last_seq
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A `--since`/`--until` value: an RFC 3339 time, or a date meaning the local day.
fn time_arg(
    value: &str,
    end_of_day: bool,
    cfg: &AccessConfig,
) -> Result<chrono::DateTime<chrono::Utc>, CliError> {
    if let Some(t) = parse_time(value) {
        return Ok(t);
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        let time = if end_of_day {
            chrono::NaiveTime::from_hms_milli_opt(23, 59, 59, 999)
        } else {
            chrono::NaiveTime::from_hms_opt(0, 0, 0)
        };
        let local = time.map(|t| d.and_time(t));
        let utc = local.and_then(|l| {
            l.and_local_timezone(cfg.hours.offset)
                .single()
                .map(|t| t.with_timezone(&chrono::Utc))
        });
        if let Some(t) = utc {
            return Ok(t);
        }
    }
    Err(CliError::input(anyhow!(
        "invalid time `{value}`: expected a date `2026-11-01` or a time `2026-11-01T08:00:00Z`"
    )))
}

pub fn audit(data: &Path, c: AuditCommand) -> CmdResult {
    let AuditCommand::Access(a) = c;
    let cfg = match &a.rules {
        Some(path) => {
            let text = read_input_file(path)?;
            AccessConfig::load(Some((&path.display().to_string(), &text)))
        }
        None => AccessConfig::embedded(),
    }
    .map_err(CliError::input)?;
    let opts = AuditOptions {
        since: a
            .since
            .as_deref()
            .map(|s| time_arg(s, false, &cfg))
            .transpose()?,
        until: a
            .until
            .as_deref()
            .map(|s| time_arg(s, true, &cfg))
            .transpose()?,
        user: a.user.clone(),
        now: chrono::Utc::now(),
    };
    if let (Some(s), Some(u)) = (opts.since, opts.until) {
        if s > u {
            return Err(CliError::input(anyhow!("--since is after --until")));
        }
    }
    let fail_on: Severity = a
        .fail_on
        .parse()
        .map_err(|_| CliError::input(anyhow!("invalid severity `{}`", a.fail_on)))?;

    let mut ledger = match &a.as_user {
        Some(u) => {
            let (mut ledger, authorizer) = authorizer(data, a.policies.as_deref())?;
            let req = AccessRequest::new(
                Actor::cli(u),
                Action::Audit,
                Resource::Ledger,
                "audit access",
            );
            let (outcome, appended) = record::decide_and_record(&mut ledger, &authorizer, &req)?;
            if !outcome.allowed() {
                ledger.checkpoint()?;
                eprintln!(
                    "deny: `{u}` may not audit the ledger; recorded as entry {}",
                    appended.seq
                );
                return Ok(ExitCode::from(EXIT_NO));
            }
            ledger
        }
        None => Ledger::open(data)?,
    };

    let report = audit::audit_access(&ledger, &cfg, &opts)?;
    if !a.no_record {
        record_scan(&mut ledger, &report, &opts, a.as_user.as_deref())?;
    }
    if a.json {
        print_json(&report)?;
    } else {
        print_audit(&report);
    }
    Ok(if report.at_or_above(fail_on) > 0 {
        ExitCode::from(EXIT_NO)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_audit(r: &AuditReport) {
    for f in &r.findings {
        println!(
            "{:<7}  {:<26} {:<20} {}",
            f.severity.as_str(),
            f.rule,
            f.subject,
            f.message
        );
    }
    let period = match (&r.since, &r.until) {
        (Some(s), Some(u)) => format!(" from {s} to {u}"),
        (Some(s), None) => format!(" since {s}"),
        (None, Some(u)) => format!(" until {u}"),
        (None, None) => String::new(),
    };
    let rules: Vec<String> = r
        .by_rule()
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    println!(
        "{} access decisions ({} allowed) by {} users{period}: {} findings{}",
        r.decisions,
        r.allowed,
        r.users,
        r.findings.len(),
        if rules.is_empty() {
            String::new()
        } else {
            format!(" ({})", rules.join(", "))
        }
    );
    if r.unreadable > 0 {
        eprintln!(
            "warning: {} access decisions could not be read; run `djaudit verify`",
            r.unreadable
        );
    }
}

/// Appends the `scan.access` entry of a run and signs a checkpoint.
fn record_scan(
    ledger: &mut Ledger,
    r: &AuditReport,
    opts: &AuditOptions,
    as_user: Option<&str>,
) -> Result<(), CliError> {
    let user = as_user.map_or_else(os_user, str::to_string);
    let e = NewEntry::new(
        audit::SCAN_KIND,
        "ledger",
        Actor::cli(&user),
        json!({
            "since": r.since,
            "until": r.until.clone().unwrap_or_else(|| format_time(&opts.now)),
            "user": opts.user,
            "decisions": r.decisions,
            "findings": r.findings.len(),
            "by_rule": r.by_rule(),
        }),
    )
    .map_err(|e| CliError::input(anyhow!("{e}")))?;
    ledger.append(e)?;
    ledger.checkpoint()?;
    Ok(())
}
