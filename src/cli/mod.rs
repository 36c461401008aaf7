//! Command-line interface: argument parsing and the one place that prints to users.
//!
//! Every command is a function returning `Result<ExitCode, CliError>`; library errors are
//! mapped to exit code 2 (the user's input) or 3 (storage, I/O, internal).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod check;
mod daemon;
mod demo;
mod ledger;
mod policy;
mod records;
mod report;
mod synth;
mod user;

/// Exit code of a negative answer (tampering found, proof invalid, findings, access denied).
pub const EXIT_NO: u8 = 1;
/// Exit code of a usage or input error.
pub const EXIT_INPUT: u8 = 2;
/// Exit code of a storage, I/O or internal error.
pub const EXIT_STORAGE: u8 = 3;

/// Tamper-evident audit ledger, access policy and data checks for party-building records.
#[derive(Debug, Parser)]
#[command(name = "djaudit", version, about, long_about = None)]
pub struct Cli {
    /// Data directory of the ledger.
    #[arg(long, env = "DJAUDIT_DATA", default_value = "djaudit-data")]
    pub data: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a ledger: genesis entry, signing key (mode 0600) and a first checkpoint.
    Init(ledger::InitArgs),
    /// Signing key operations.
    #[command(subcommand)]
    Key(ledger::KeyCommand),
    /// Append one entry of a free kind (record kinds are written by their own commands).
    Append(ledger::AppendArgs),
    /// List entries.
    Log(ledger::LogArgs),
    /// Export entries as JSON Lines: one canonical entry per line, the exact hashed bytes.
    Export(ledger::ExportArgs),
    /// Verify the whole ledger; exit 1 at the first bad entry.
    Verify(ledger::VerifyArgs),
    /// Sign, store and print a checkpoint (C2SP signed note) of the current tree.
    Checkpoint(ledger::CheckpointArgs),
    /// Produce inclusion and consistency proofs (RFC 9162).
    #[command(subcommand)]
    Prove(ledger::ProveCommand),
    /// Verify proofs offline, without a ledger.
    #[command(subcommand)]
    Proof(ledger::ProofCommand),
    /// Import a file of records: one entry per real change, all or nothing.
    Import(records::ImportArgs),
    /// Compare a snapshot file with the projection without changing it; exit 1 if they differ.
    Reconcile(records::ReconcileArgs),
    /// Show, trace or export party records.
    #[command(subcommand)]
    Record(records::RecordCommand),
    /// Write a deterministic synthetic organisation as import files.
    Synth(synth::SynthArgs),
    /// Run the consistency checks on the party records; exit 1 on findings at or above --fail-on.
    Check(check::CheckArgs),
    /// Access policy: validate a policy set, run its test cases.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Access decisions: ask the policy (recorded), import a platform access log.
    #[command(subcommand)]
    Access(policy::AccessCommand),
    /// Audits over the ledger: accesses that look like leakage.
    #[command(subcommand)]
    Audit(policy::AuditCommand),
    /// User accounts: add, update, disable (decided as `manage_users`).
    #[command(subcommand)]
    User(user::UserCommand),
    /// Run the HTTP/JSON API and the scheduled scans.
    Serve(daemon::ServeArgs),
    /// API bearer tokens.
    #[command(subcommand)]
    Token(daemon::TokenCommand),
    /// Daemon configuration.
    #[command(subcommand)]
    Config(daemon::ConfigCommand),
    /// Issue a signed compliance report of a period; `report verify FILE` checks one.
    Report(report::ReportArgs),
    /// The main job on a synthetic organisation: import, access log, checks, audit,
    /// verification and a signed report, in one command.
    Demo(demo::DemoArgs),
}

/// A failed command: what to print and the exit code.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub err: anyhow::Error,
}

impl CliError {
    pub fn input(err: impl Into<anyhow::Error>) -> CliError {
        CliError {
            code: EXIT_INPUT,
            err: err.into(),
        }
    }
    pub fn storage(err: impl Into<anyhow::Error>) -> CliError {
        CliError {
            code: EXIT_STORAGE,
            err: err.into(),
        }
    }
}

impl From<djaudit::ledger::store::LedgerError> for CliError {
    fn from(e: djaudit::ledger::store::LedgerError) -> CliError {
        if e.is_input() {
            CliError::input(e)
        } else {
            CliError::storage(e)
        }
    }
}

pub type CmdResult = Result<ExitCode, CliError>;

/// Parses arguments, runs the command and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("djaudit: {:#}", e.err);
            ExitCode::from(e.code)
        }
    }
}

fn run(cli: Cli) -> CmdResult {
    let data = cli.data;
    match cli.command {
        Command::Init(a) => ledger::init(&data, a),
        Command::Key(a) => ledger::key(&data, a),
        Command::Append(a) => ledger::append(&data, a),
        Command::Log(a) => ledger::log(&data, a),
        Command::Export(a) => ledger::export(&data, a),
        Command::Verify(a) => ledger::verify(&data, a),
        Command::Checkpoint(a) => ledger::checkpoint(&data, a),
        Command::Prove(a) => ledger::prove(&data, a),
        Command::Proof(a) => ledger::proof(a),
        Command::Import(a) => records::import(&data, a),
        Command::Reconcile(a) => records::reconcile(&data, a),
        Command::Record(c) => records::record(&data, c),
        Command::Synth(a) => synth::synth(a),
        Command::Check(a) => check::check(&data, a),
        Command::Policy(a) => policy::policy(a),
        Command::Access(a) => policy::access(&data, a),
        Command::Audit(a) => policy::audit(&data, a),
        Command::User(c) => user::user(&data, c),
        Command::Serve(a) => daemon::serve(&data, a),
        Command::Token(c) => daemon::token(&data, c),
        Command::Config(c) => daemon::config(c),
        Command::Report(a) => report::report(&data, a),
        Command::Demo(a) => demo::demo(a),
    }
}

/// Writes a JSON document to stdout.
/// A progress display on stderr when it is a terminal; nothing otherwise: a counter of `unit`
/// (rows, entries) with its rate, or a bar when the `total` is known.
fn progress_bar(what: &str, unit: &str, total: Option<u64>) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let (bar, template) = match total {
        Some(n) => (
            indicatif::ProgressBar::new(n),
            format!(
                "{{msg}} [{{bar:30}}] {{human_pos}}/{{human_len}} {unit} ({{rate}}, {{eta}} left)"
            ),
        ),
        None => (
            indicatif::ProgressBar::new_spinner(),
            format!("{{spinner}} {{msg}}: {{human_pos}} {unit} ({{rate}}) {{elapsed}}"),
        ),
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
        // Whole units a second: `{per_sec}` prints four decimals.
        let style = style.with_key(
            "rate",
            |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0}/s", s.per_sec());
            },
        );
        bar.set_style(style);
    }
    bar.set_message(what.to_owned());
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    Some(bar)
}

/// Runs `f` with a progress callback that drives a display on a terminal (see
/// [`progress_bar`]), then clears it.
pub fn with_progress<T>(
    what: &str,
    unit: &str,
    total: Option<u64>,
    f: impl FnOnce(&mut dyn FnMut(u64)) -> T,
) -> T {
    let bar = progress_bar(what, unit, total);
    let mut progress = |done: u64| {
        if let Some(b) = &bar {
            b.set_position(done);
        }
    };
    let out = f(&mut progress);
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    out
}

pub fn print_json(v: &impl serde::Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(v).map_err(CliError::storage)?;
    println!("{text}");
    Ok(())
}

/// Reads a file given on the command line; errors name the path.
pub fn read_input_file(path: &std::path::Path) -> Result<String, CliError> {
    const LIMIT: u64 = 64 << 20;
    let meta = std::fs::metadata(path)
        .map_err(|e| CliError::input(anyhow::anyhow!("cannot read `{}`: {e}", path.display())))?;
    if meta.len() > LIMIT {
        return Err(CliError::input(anyhow::anyhow!(
            "`{}` is larger than {} MiB",
            path.display(),
            LIMIT >> 20
        )));
    }
    let bytes = std::fs::read(path)
        .map_err(|e| CliError::input(anyhow::anyhow!("cannot read `{}`: {e}", path.display())))?;
    String::from_utf8(bytes)
        .map_err(|_| CliError::input(anyhow::anyhow!("`{}` is not UTF-8 text", path.display())))
}

/// Parses a `YYYY-MM-DD` date given on the command line.
pub fn parse_date(s: &str) -> Result<chrono::NaiveDate, CliError> {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| CliError::input(anyhow::anyhow!("invalid date `{s}`: expected YYYY-MM-DD")))
}

/// Today's date in Asia/Shanghai (UTC+8, no daylight saving since 1991).
pub fn today_shanghai() -> chrono::NaiveDate {
    (chrono::Utc::now() + chrono::Duration::hours(8)).date_naive()
}
