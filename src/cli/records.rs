//! Record commands: import, reconcile, record show|history|export.
//!
//! While the ledger has no user account they run without access policy (a new deployment
//! imports its orgs and users first), with a warning; once any account exists every one of
//! them needs `--as USER` and is decided and recorded by `policy::enforce`. A refusal exits
//! 1 (`access denied: …`), an unknown user 2.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::anyhow;
use clap::{Args, Subcommand};
use djaudit::ledger::{Actor, Ledger};
use djaudit::policy::enforce::{Denial, EnforceError, Enforced, Enforcer};
use djaudit::policy::record::ensure_policy_recorded;
use djaudit::policy::Authorizer;
use djaudit::records::history::{self, History, RecordView};
use djaudit::records::import::{self, ImportSummary};
use djaudit::records::model::{Change, Changes, Fields, RecordKind};
use djaudit::records::parse::{EncodingChoice, FormatChoice, ImportError, ImportOptions};
use djaudit::records::projection;
use djaudit::records::reconcile::{self, Reconciliation};
use djaudit::records::RecordError;

use super::{print_json, with_progress, CliError, CmdResult, EXIT_NO};

/// The warning of a ledger without user accounts.
const BOOTSTRAP_WARNING: &str =
    "warning: no users defined: access policy not enforced until users are imported";

impl From<EnforceError> for CliError {
    fn from(e: EnforceError) -> CliError {
        match e {
            EnforceError::Records(e) => e.into(),
            EnforceError::Access(e) => e.into(),
        }
    }
}

impl From<RecordError> for CliError {
    fn from(e: RecordError) -> CliError {
        if let RecordError::File(ImportError::BadRows(bad)) = &e {
            // The full report (at most 20 problems, file:line each) before the summary line.
            for line in bad.lines() {
                eprintln!("{line}");
            }
        }
        if e.is_input() {
            CliError::input(e)
        } else {
            CliError::storage(e)
        }
    }
}

fn parse_kind(s: &str) -> Result<RecordKind, String> {
    s.parse()
}

fn parse_encoding(s: &str) -> Result<EncodingChoice, String> {
    s.parse()
}

fn parse_format(s: &str) -> Result<FormatChoice, String> {
    match s.to_ascii_lowercase().as_str() {
        "csv" => Ok(FormatChoice::Csv),
        "jsonl" | "ndjson" | "json" => Ok(FormatChoice::JsonLines),
        "auto" => Ok(FormatChoice::Auto),
        _ => Err(format!("unknown format `{s}`: expected csv|jsonl")),
    }
}

/// How to read an input file (shared by import and reconcile).
#[derive(Debug, Args)]
pub struct FileArgs {
    /// Text encoding of the file (default: UTF-8 if the file is valid UTF-8, else GB18030).
    #[arg(long, value_parser = parse_encoding, value_name = "utf-8|gb18030")]
    pub encoding: Option<EncodingChoice>,
    /// File format (default: by extension, else by content).
    #[arg(long, value_parser = parse_format, value_name = "csv|jsonl")]
    pub format: Option<FormatChoice>,
}

impl FileArgs {
    fn options(&self) -> ImportOptions {
        ImportOptions {
            encoding: self.encoding.unwrap_or_default(),
            format: self.format.unwrap_or_default(),
        }
    }
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// What the file holds: orgs, members, dues, meetings, transfers or users.
    #[arg(value_parser = parse_kind, value_name = "orgs|members|dues|meetings|transfers|users")]
    pub kind: RecordKind,
    /// The CSV or JSON Lines file.
    pub file: PathBuf,
    #[command(flatten)]
    pub who: AsArgs,
    #[command(flatten)]
    pub read: FileArgs,
}

/// Who runs a record command, and the policies that decide it.
#[derive(Debug, Args)]
pub struct AsArgs {
    /// The djaudit user making the request: required once the ledger has user accounts
    /// (before that, the user the entries are attributed to; default: the operating-system
    /// user). `--actor` is an alias.
    #[arg(long = "as", alias = "actor", value_name = "USER")]
    pub as_user: Option<String>,
    /// A policy directory instead of the embedded policies.
    #[arg(long, env = "DJAUDIT_POLICIES", value_name = "DIR")]
    pub policies: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// What the snapshot holds: orgs, members, dues, meetings, transfers or users.
    #[arg(value_parser = parse_kind, value_name = "KIND")]
    pub kind: RecordKind,
    /// The snapshot file (CSV or JSON Lines, as for import).
    pub file: PathBuf,
    /// One JSON document on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub who: AsArgs,
    #[command(flatten)]
    pub read: FileArgs,
}

#[derive(Debug, Subcommand)]
pub enum RecordCommand {
    /// Show the current state of a record (sensitive values masked unless the policy
    /// grants `read_sensitive`); exit 1 if the user may not read it.
    Show {
        /// `<kind>/<id>`, e.g. `member/M000123` or `dues/M000123/2026-03`.
        name: String,
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        who: AsArgs,
    },
    /// Show a record's current state and every entry about it (sensitive values masked
    /// unless the policy grants `read_sensitive`); exit 1 if the user may not read it.
    History {
        /// `<kind>/<id>`, e.g. `member/M000123`.
        name: String,
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        who: AsArgs,
    },
    /// Write the projection of one kind as CSV with the canonical headers, sorted by id:
    /// the records the user may export, sensitive values masked unless the policy grants
    /// `read_sensitive` (masked values do not import back).
    Export {
        #[arg(value_parser = parse_kind, value_name = "KIND")]
        kind: RecordKind,
        /// Write to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        who: AsArgs,
    },
}

fn os_user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| djaudit::ledger::entry::valid_name(u))
        .unwrap_or_else(|| "unknown".into())
}

/// The actor of a command: `--as` or the operating-system user, on channel `via`.
fn actor(user: Option<&str>, via: &str) -> Actor {
    let mut a = Actor::cli(user.unwrap_or(&os_user()));
    a.via = via.to_owned();
    a
}

/// How a record command runs.
pub(super) enum Access {
    /// No user account exists yet: no policy, the entries attributed to this actor.
    Bootstrap(Actor),
    /// Decided for this actor (a known user) by this authorizer.
    Enforced(Box<Authorizer>, Actor),
}

impl Access {
    /// The enforcer of an enforced command.
    pub(super) fn enforcer(&self, ledger: &Ledger) -> Result<Option<Enforcer<'_>>, CliError> {
        match self {
            Access::Bootstrap(_) => Ok(None),
            Access::Enforced(authorizer, actor) => Ok(Some(Enforcer::new(
                authorizer,
                ledger.conn(),
                actor.clone(),
            )?)),
        }
    }

    /// The actor of a bootstrap command.
    pub(super) fn actor(&self) -> &Actor {
        match self {
            Access::Bootstrap(a) | Access::Enforced(_, a) => a,
        }
    }
}

/// Decides how a record command runs on `ledger`: without policy (and a warning) while the
/// projection has no user account; else for `--as` (required; an unknown user is an input
/// error and nothing is recorded), after recording the policy set in use.
pub(super) fn access(ledger: &mut Ledger, who: &AsArgs, via: &str) -> Result<Access, CliError> {
    projection::ensure_schema(ledger.conn())?;
    if projection::is_empty(ledger.conn(), RecordKind::User)? {
        eprintln!("{BOOTSTRAP_WARNING}");
        return Ok(Access::Bootstrap(actor(who.as_user.as_deref(), via)));
    }
    let user = who.as_user.as_deref().ok_or_else(|| {
        CliError::input(anyhow!(
            "`--as USER` is required: the ledger has user accounts, so the access policy decides every record command"
        ))
    })?;
    let policies = super::policy::load_policies(who.policies.as_deref())?;
    let authorizer = Authorizer::new(policies, ledger.conn())?;
    let who = actor(Some(user), via);
    // An unknown user is refused before anything is recorded.
    Enforcer::new(&authorizer, ledger.conn(), who.clone())?;
    ensure_policy_recorded(ledger, authorizer.policies(), Actor::cli(&os_user()))?;
    Ok(Access::Enforced(Box::new(authorizer), who))
}

/// A recorded refusal: a checkpoint over it, then `access denied: …` and exit 1.
pub(super) fn denied(ledger: &mut Ledger, d: &Denial, what: &str) -> CmdResult {
    ledger.checkpoint()?;
    Err(CliError {
        code: EXIT_NO,
        err: anyhow!("access denied: {d}; {what}; recorded as entry {}", d.seq),
    })
}

pub fn import(data: &Path, a: ImportArgs) -> CmdResult {
    let mut ledger = Ledger::open(data)?;
    let access = access(&mut ledger, &a.who, "import")?;
    let enforcer = access.enforcer(&ledger)?;
    let result = with_progress(
        &format!("importing {}", a.kind.plural()),
        "rows",
        None,
        |progress| match enforcer {
            None => import::import(
                &mut ledger,
                a.kind,
                &a.file,
                a.read.options(),
                access.actor(),
                progress,
            )
            .map(|value| Enforced::Allowed { value, seq: None })
            .map_err(EnforceError::from),
            Some(e) => e.import(&mut ledger, a.kind, &a.file, a.read.options(), progress),
        },
    );
    let summary = match result? {
        Enforced::Allowed { value, .. } => value,
        Enforced::Denied(d) => return denied(&mut ledger, &d, "nothing imported"),
    };
    let checkpoint = match summary.appended {
        Some(_) => Some(ledger.checkpoint()?),
        None => None,
    };
    println!("{}", import_line(&summary, checkpoint.map(|c| c.size)));
    Ok(ExitCode::SUCCESS)
}

fn import_line(s: &ImportSummary, checkpoint: Option<u64>) -> String {
    let counts = format!(
        "{} {}: {} created, {} updated, {} unchanged",
        s.file.rows,
        if s.file.rows == 1 { "row" } else { "rows" },
        s.created,
        s.updated,
        s.unchanged
    );
    match s.appended {
        Some((first, last)) => format!(
            "imported {} from {} ({}): {counts}; entries {first}..{last}{}",
            s.kind.plural(),
            s.file.file,
            s.file.encoding.name(),
            checkpoint.map_or_else(String::new, |size| format!("; checkpoint at size {size}"))
        ),
        None => format!(
            "nothing to import from {}: {counts}; no entries appended",
            s.file.file
        ),
    }
}

pub fn reconcile(data: &Path, a: ReconcileArgs) -> CmdResult {
    let mut ledger = Ledger::open(data)?;
    let access = access(&mut ledger, &a.who, "cli")?;
    let enforcer = access.enforcer(&ledger)?;
    let result = with_progress(
        &format!("reconciling {}", a.kind.plural()),
        "rows",
        None,
        |progress| match enforcer {
            None => reconcile::reconcile(
                &mut ledger,
                a.kind,
                &a.file,
                a.read.options(),
                access.actor(),
                progress,
            )
            .map(|value| Enforced::Allowed { value, seq: None })
            .map_err(EnforceError::from),
            Some(e) => e.reconcile(&mut ledger, a.kind, &a.file, a.read.options(), progress),
        },
    );
    let r = match result? {
        Enforced::Allowed { value, .. } => value,
        Enforced::Denied(d) => return denied(&mut ledger, &d, "nothing compared"),
    };
    ledger.checkpoint()?;
    if a.json {
        print_json(&r.to_json())?;
    } else {
        print_reconciliation(&r).map_err(CliError::storage)?;
    }
    Ok(if r.differs() {
        ExitCode::from(EXIT_NO)
    } else {
        ExitCode::SUCCESS
    })
}

fn value_text(v: &Option<djaudit::records::FieldValue>) -> String {
    v.as_ref()
        .map_or_else(|| "(absent)".to_owned(), ToString::to_string)
}

fn change_text(name: &str, c: &Change) -> String {
    format!("{name}: {} → {}", value_text(&c.old), value_text(&c.new))
}

fn print_reconciliation(r: &Reconciliation) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let kind = r.kind;
    for id in &r.added {
        writeln!(out, "added    {}", projection::subject(kind, id))?;
    }
    for id in &r.missing {
        writeln!(out, "missing  {}", projection::subject(kind, id))?;
    }
    for c in &r.changed {
        let fields: Vec<String> = c.changes.iter().map(|(n, ch)| change_text(n, ch)).collect();
        writeln!(
            out,
            "changed  {}: {}",
            projection::subject(kind, &c.id),
            fields.join("; ")
        )?;
    }
    writeln!(
        out,
        "{} {} {}: {} added, {} missing, {} changed, {} unchanged (file sha256 {}, entry {})",
        if r.differs() { "DIFFERS:" } else { "ok:" },
        kind.plural(),
        r.file.file,
        r.added.len(),
        r.missing.len(),
        r.changed.len(),
        r.unchanged,
        r.file.sha256_hex(),
        r.seq
    )?;
    out.flush()
}

pub fn record(data: &Path, c: RecordCommand) -> CmdResult {
    match c {
        RecordCommand::Show { name, json, who } => {
            let mut ledger = Ledger::open(data)?;
            let access = access(&mut ledger, &who, "cli")?;
            let view = match access.enforcer(&ledger)? {
                None => history::show(&ledger, &name)?,
                Some(e) => match e.show(&mut ledger, &name)? {
                    Enforced::Allowed { value, .. } => value,
                    Enforced::Denied(d) => return denied(&mut ledger, &d, "nothing shown"),
                },
            };
            if let Access::Enforced(..) = access {
                ledger.checkpoint()?;
            }
            if json {
                print_json(&view.to_json())?;
            } else {
                print_view(&view);
            }
        }
        RecordCommand::History { name, json, who } => {
            let mut ledger = Ledger::open(data)?;
            let access = access(&mut ledger, &who, "cli")?;
            let h = match access.enforcer(&ledger)? {
                None => history::history(&ledger, &name)?,
                Some(e) => match e.history(&mut ledger, &name)? {
                    Enforced::Allowed { value, .. } => value,
                    Enforced::Denied(d) => return denied(&mut ledger, &d, "nothing shown"),
                },
            };
            if let Access::Enforced(..) = access {
                ledger.checkpoint()?;
            }
            if json {
                print_json(&h.to_json())?;
            } else {
                print_history(&h);
            }
        }
        RecordCommand::Export { kind, out, who } => {
            let mut ledger = Ledger::open(data)?;
            let access = access(&mut ledger, &who, "cli")?;
            let (mut w, path): (Box<dyn Write>, PathBuf) = match &out {
                Some(p) => (
                    Box::new(std::io::BufWriter::new(std::fs::File::create(p).map_err(
                        |e| CliError::input(anyhow!("cannot write `{}`: {e}", p.display())),
                    )?)),
                    p.clone(),
                ),
                None => (
                    Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
                    PathBuf::from("-"),
                ),
            };
            let (n, withheld) = match access.enforcer(&ledger)? {
                None => (
                    projection::export_csv(ledger.conn(), kind, &mut w, &path)?,
                    0,
                ),
                Some(e) => match e.export(&mut ledger, kind, &mut w, &path)? {
                    Enforced::Allowed { value, .. } => (value.exported, value.withheld),
                    Enforced::Denied(d) => {
                        drop(w);
                        if let Some(p) = &out {
                            // Nothing was written to it; do not leave an empty file behind.
                            let _ = std::fs::remove_file(p);
                        }
                        return denied(&mut ledger, &d, "nothing exported");
                    }
                },
            };
            drop(w);
            if out.is_some() {
                eprintln!("exported {n} {} to {}", kind.plural(), path.display());
            }
            if withheld > 0 {
                eprintln!(
                    "{withheld} {} left out: not permitted to `{}`",
                    kind.plural(),
                    access.actor().user
                );
            }
            if let Access::Enforced(..) = access {
                ledger.checkpoint()?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the present fields in the kind's field order.
fn print_fields(kind: RecordKind, fields: &Fields, indent: &str) {
    for spec in kind.fields() {
        if let Some(v) = fields.get(spec.name) {
            println!("{indent}{}: {v}", spec.name);
        }
    }
}

fn print_view(v: &RecordView) {
    println!("{} (last written by entry {})", v.subject(), v.last_seq);
    print_fields(v.kind, &v.fields, "  ");
}

fn print_changes(changes: &Changes, indent: &str) {
    for (name, c) in changes {
        match (&c.old, &c.new) {
            (None, Some(new)) => println!("{indent}{name}: {new}"),
            _ => println!("{indent}{}", change_text(name, c)),
        }
    }
}

fn print_history(h: &History) {
    match &h.current {
        Some(v) => print_view(v),
        None => println!(
            "{} (no longer in the projection)",
            projection::subject(h.kind, &h.id)
        ),
    }
    println!("history:");
    for i in &h.items {
        println!(
            "  {:>8}  {}  {:<16} by {} ({})",
            i.seq, i.ts, i.kind, i.actor.user, i.actor.via
        );
        print_changes(&i.changes, "            ");
    }
}
