//! Ledger commands: init, key show, append, log, export, verify, checkpoint, prove, proof.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::anyhow;
use clap::{Args, Subcommand};
use djaudit::ledger::entry::{hex_hash, valid_ts};
use djaudit::ledger::note::VerifierKey;
use djaudit::ledger::proof::{self, Proof};
use djaudit::ledger::store::LogFilter;
use djaudit::ledger::verify::{self, VerifyOptions, VerifyReport};
use djaudit::ledger::{Actor, Entry, Ledger, NewEntry};
use djaudit::records::mask::mask_json_in_place;
use djaudit::records::replay::Replay;
use serde_json::json;

use super::{print_json, read_input_file, CliError, CmdResult, EXIT_NO};

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The ledger's origin: its name in checkpoints and in the verifier key.
    #[arg(long)]
    pub origin: String,
    /// The djaudit user recorded as creating the ledger.
    #[arg(long, default_value = "admin")]
    pub actor: String,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Print the verifier key (C2SP vkey) that signs new checkpoints.
    Show {
        /// Print the key named by the genesis entry instead: the one `verify` trusts and
        /// every rotation is verified from.
        #[arg(long)]
        genesis: bool,
    },
    /// Replace the signing key: a new key, introduced by a `key.rotate` entry signed by the
    /// current one; the old key file is gone afterwards. Prints the new verifier key.
    Rotate {
        /// The djaudit user recorded as rotating the key.
        #[arg(long, default_value = "admin")]
        actor: String,
    },
}

#[derive(Debug, Args)]
pub struct AppendArgs {
    /// Dotted kind, e.g. `note.added`.
    #[arg(long, required_unless_present = "batch", conflicts_with = "batch")]
    pub kind: Option<String>,
    /// What the entry is about, e.g. `case/2026-17`.
    #[arg(long, required_unless_present = "batch", conflicts_with = "batch")]
    pub subject: Option<String>,
    /// A JSON object, or `@FILE` to read it from a file.
    #[arg(
        long = "data",
        id = "entry_data",
        value_name = "JSON",
        required_unless_present = "batch",
        conflicts_with = "batch"
    )]
    pub data: Option<String>,
    /// Append many entries from a JSON Lines file of `{"kind","subject","data"}` objects,
    /// committed in chunks; each committed chunk is reported on stdout.
    #[arg(long)]
    pub batch: Option<PathBuf>,
    /// Entries per transaction with `--batch`.
    #[arg(long, default_value_t = 10_000)]
    pub chunk: usize,
    /// The djaudit user the entry is attributed to (default: the operating-system user).
    #[arg(long)]
    pub actor: Option<String>,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Entries at or after this time (`2026-11-01` or `2026-11-01T08:00:00Z`, UTC).
    #[arg(long)]
    pub since: Option<String>,
    /// Entries at or before this time (a date includes the whole day).
    #[arg(long)]
    pub until: Option<String>,
    /// Kind, or a family such as `member.*`.
    #[arg(long)]
    pub kind: Option<String>,
    #[arg(long)]
    pub subject: Option<String>,
    #[arg(long)]
    pub actor: Option<String>,
    /// One JSON document (an array of entries) on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// First seq to export.
    #[arg(long, default_value_t = 0)]
    pub from: u64,
    /// Last seq to export (inclusive).
    #[arg(long)]
    pub to: Option<u64>,
    /// Write to this file instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A signed checkpoint held elsewhere: detects truncation and rollback.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Trust this verifier key (text or file) instead of the one the ledger names.
    #[arg(long)]
    pub vkey: Option<String>,
    /// Also rebuild the projection of party records from the ledger and compare.
    #[arg(long)]
    pub replay: bool,
    /// One JSON document on stdout.
    #[arg(long)]
    pub json: bool,
    /// Do not record a `scan.verify` entry.
    #[arg(long)]
    pub no_record: bool,
}

#[derive(Debug, Args)]
pub struct CheckpointArgs {
    /// Also write the signed checkpoint to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ProveCommand {
    /// Inclusion proof of entry `--seq` in the tree of `--size` entries.
    Inclusion {
        #[arg(long)]
        seq: u64,
        #[arg(long)]
        size: Option<u64>,
    },
    /// Consistency proof between tree sizes `--old` and `--new`.
    Consistency {
        #[arg(long)]
        old: u64,
        #[arg(long)]
        new: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProofCommand {
    /// Verify a proof file offline: exit 0 valid, 1 invalid.
    Verify {
        /// The proof JSON (as printed by `djaudit prove`).
        file: PathBuf,
        /// A signed checkpoint the proof must end in (needs `--vkey`).
        #[arg(long, requires = "vkey")]
        checkpoint: Option<PathBuf>,
        /// The verifier key of the checkpoint (text or file).
        #[arg(long)]
        vkey: Option<String>,
        /// For an inclusion proof: the exported entry line the proof is about.
        #[arg(long)]
        entry: Option<PathBuf>,
    },
}

pub fn init(data: &Path, a: InitArgs) -> CmdResult {
    let ledger = Ledger::init(data, &a.origin, Actor::cli(&a.actor))?;
    println!("created ledger `{}` in {}", ledger.origin(), data.display());
    println!("verifier key: {}", ledger.verifier_key());
    Ok(ExitCode::SUCCESS)
}

pub fn key(data: &Path, c: KeyCommand) -> CmdResult {
    match c {
        KeyCommand::Show { genesis } => {
            let ledger = Ledger::open(data)?;
            if genesis {
                println!("{}", ledger.genesis_key());
            } else {
                println!("{}", ledger.verifier_key());
            }
            Ok(ExitCode::SUCCESS)
        }
        KeyCommand::Rotate { actor } => {
            let mut ledger = Ledger::open(data)?;
            let (vkey, cp) = ledger.rotate_key(Actor::cli(&actor))?;
            eprintln!(
                "signing key rotated; checkpoint at size {} signed with the new key",
                cp.size
            );
            println!("{vkey}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn check_free_kind(kind: &str) -> Result<(), CliError> {
    if djaudit::ledger::entry::is_reserved_kind(kind) {
        return Err(CliError::input(anyhow!(
            "kind `{kind}` is written by djaudit itself; use the command for it (import, user, check, …)"
        )));
    }
    Ok(())
}

pub fn append(data: &Path, a: AppendArgs) -> CmdResult {
    let actor = match &a.actor {
        Some(u) => Actor::cli(u),
        None => Actor::cli(&std::env::var("USER").unwrap_or_else(|_| "unknown".into())),
    };
    if let Some(batch) = &a.batch {
        return append_batch(data, batch, a.chunk.max(1), actor);
    }
    let (Some(kind), Some(subject), Some(raw)) = (&a.kind, &a.subject, &a.data) else {
        return Err(CliError::input(anyhow!(
            "--kind, --subject and --data are required"
        )));
    };
    check_free_kind(kind)?;
    let text = match raw.strip_prefix('@') {
        Some(path) => read_input_file(Path::new(path))?,
        None => raw.clone(),
    };
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| CliError::input(anyhow!("invalid JSON in --data: {e}")))?;
    let entry =
        NewEntry::new(kind, subject, actor, value).map_err(|e| CliError::input(anyhow!("{e}")))?;
    let mut ledger = Ledger::open(data)?;
    let appended = ledger.append(entry)?;
    ledger.checkpoint()?;
    println!(
        "appended entry {} ({})",
        appended.seq,
        hex_hash(&appended.leaf_hash)
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchLine {
    kind: String,
    subject: String,
    data: serde_json::Value,
}

/// Appends a JSON Lines file: every line is checked before anything is written.
fn append_batch(data: &Path, path: &Path, chunk: usize, actor: Actor) -> CmdResult {
    use std::io::BufRead;
    let file = std::fs::File::open(path)
        .map_err(|e| CliError::input(anyhow!("cannot read `{}`: {e}", path.display())))?;
    let mut entries = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line =
            line.map_err(|e| CliError::input(anyhow!("{}:{}: {e}", path.display(), i + 1)))?;
        if line.trim().is_empty() {
            continue;
        }
        let b: BatchLine = serde_json::from_str(&line)
            .map_err(|e| CliError::input(anyhow!("{}:{}: {e}", path.display(), i + 1)))?;
        check_free_kind(&b.kind)
            .map_err(|e| CliError::input(anyhow!("{}:{}: {:#}", path.display(), i + 1, e.err)))?;
        let e = NewEntry::new(&b.kind, &b.subject, actor.clone(), b.data)
            .map_err(|e| CliError::input(anyhow!("{}:{}: {e}", path.display(), i + 1)))?;
        entries.push(e);
    }
    let mut ledger = Ledger::open(data)?;
    let stdout = std::io::stdout();
    for part in entries.chunks(chunk) {
        let mut w = ledger.write()?;
        for e in part {
            w.append_ref(e)?;
        }
        let done = w.commit()?;
        if let (Some(first), Some(last)) = (done.first, done.last()) {
            let mut out = stdout.lock();
            let _ = writeln!(out, "committed entries {first}..{last}");
            let _ = out.flush();
        }
    }
    let cp = ledger.checkpoint()?;
    println!(
        "appended {} entries; ledger size {}",
        entries.len(),
        cp.size
    );
    Ok(ExitCode::SUCCESS)
}

/// Normalises a `--since`/`--until` value to a comparable entry timestamp prefix.
fn time_bound(value: &str, end_of_day: bool) -> Result<String, CliError> {
    if chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d").is_ok() {
        return Ok(if end_of_day {
            format!("{value}T23:59:59.999Z")
        } else {
            format!("{value}T00:00:00.000Z")
        });
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(value) {
        return Ok(t
            .with_timezone(&chrono::Utc)
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string());
    }
    if valid_ts(value) {
        return Ok(value.to_owned());
    }
    Err(CliError::input(anyhow!(
        "invalid time `{value}`: expected a date `2026-11-01` or a time `2026-11-01T08:00:00Z`"
    )))
}

pub fn log(data: &Path, a: LogArgs) -> CmdResult {
    let ledger = Ledger::open(data)?;
    let filter = LogFilter {
        since: a
            .since
            .as_deref()
            .map(|s| time_bound(s, false))
            .transpose()?,
        until: a
            .until
            .as_deref()
            .map(|s| time_bound(s, true))
            .transpose()?,
        kind: a.kind,
        subject: a.subject,
        actor: a.actor,
        ..Default::default()
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let io =
        |e: std::io::Error| djaudit::ledger::LedgerError::Damaged(format!("writing output: {e}"));
    if a.json {
        write!(out, "[").map_err(|e| CliError::storage(io(e)))?;
        let mut first = true;
        ledger.query(&filter, |e| {
            let v = masked_entry(&e);
            let sep = if first { "\n" } else { ",\n" };
            first = false;
            write!(out, "{sep}{v}").map_err(io)
        })?;
        writeln!(out, "\n]").map_err(|e| CliError::storage(io(e)))?;
    } else {
        ledger.query(&filter, |e| {
            writeln!(
                out,
                "{:>8}  {}  {:<18} {:<28} {}",
                e.seq, e.ts, e.kind, e.subject, e.actor.user
            )
            .map_err(io)
        })?;
    }
    out.flush().map_err(|e| CliError::storage(io(e)))?;
    Ok(ExitCode::SUCCESS)
}

/// An entry for display: sensitive member fields are masked wherever they occur in `data`.
fn masked_entry(e: &Entry) -> serde_json::Value {
    let mut v = serde_json::to_value(e).unwrap_or_default();
    if let Some(d) = v.get_mut("data") {
        mask_json_in_place(d);
    }
    v
}

pub fn export(data: &Path, a: ExportArgs) -> CmdResult {
    let ledger = Ledger::open(data)?;
    let size = ledger.size()?;
    if a.from >= size && size > 0 {
        return Err(djaudit::ledger::LedgerError::UnknownSeq { seq: a.from, size }.into());
    }
    let to = a.to.map(|t| t.saturating_add(1));
    let mut out: Box<dyn Write> = match &a.out {
        Some(p) => Box::new(std::io::BufWriter::new(std::fs::File::create(p).map_err(
            |e| CliError::input(anyhow!("cannot write `{}`: {e}", p.display())),
        )?)),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let io =
        |e: std::io::Error| djaudit::ledger::LedgerError::Damaged(format!("writing output: {e}"));
    ledger.for_each_entry(a.from, to, |s| {
        out.write_all(s.body.as_bytes()).map_err(io)?;
        out.write_all(b"\n").map_err(io)
    })?;
    out.flush().map_err(|e| CliError::storage(io(e)))?;
    Ok(ExitCode::SUCCESS)
}

/// Reads a verifier key given as text or as a file holding it.
fn read_vkey(arg: &str) -> Result<VerifierKey, CliError> {
    let text = if Path::new(arg).is_file() {
        read_input_file(Path::new(arg))?
    } else {
        arg.to_owned()
    };
    VerifierKey::parse(text.trim())
        .map_err(|e| CliError::input(anyhow!("invalid verifier key: {e}")))
}

pub fn verify(data: &Path, a: VerifyArgs) -> CmdResult {
    let mut ledger = Ledger::open(data)?;
    let checkpoint = a.checkpoint.as_deref().map(read_input_file).transpose()?;
    let vkey = a.vkey.as_deref().map(read_vkey).transpose()?;
    let mut replay: Option<Replay> = if a.replay {
        Some(Replay::new_in(ledger.dir())?)
    } else {
        None
    };
    let mut observer = |e: &Entry| match replay.as_mut() {
        Some(r) => r.apply(e).map_err(|err| err.to_string()),
        None => Ok(()),
    };
    // Without replay no observer: verification then reads entries in place (its fast path).
    let size = ledger.size()?;
    let report = super::with_progress("verifying", "entries", Some(size), |progress| {
        verify::verify(
            &ledger,
            VerifyOptions {
                checkpoint: checkpoint.as_deref(),
                vkey: vkey.as_ref(),
                observer: if a.replay { Some(&mut observer) } else { None },
                progress: Some(progress),
            },
        )
    })?;
    let mut replay_diff = None;
    if report.ok {
        if let Some(r) = replay.take() {
            let diffs = r.compare(ledger.conn())?;
            replay_diff = Some(diffs);
        }
    }
    let replay_ok = replay_diff.as_ref().is_none_or(|d| d.is_empty());
    let ok = report.ok && replay_ok;
    if ok && !a.no_record {
        record_verify(&mut ledger, &report, a.replay)?;
    }
    if a.json {
        let mut v = serde_json::to_value(&report).map_err(CliError::storage)?;
        if let Some(d) = &replay_diff {
            v["replay"] = json!({"ok": d.is_empty(), "differences": d});
        }
        v["ok"] = json!(ok);
        print_json(&v)?;
    } else {
        print_report(&report);
        if let Some(d) = &replay_diff {
            if d.is_empty() {
                println!("replay: the projection matches the ledger");
            } else {
                println!(
                    "replay: the projection differs from the ledger in {} records:",
                    d.len()
                );
                for diff in d.iter().take(50) {
                    println!("  {diff}");
                }
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_NO)
    })
}

fn print_report(r: &VerifyReport) {
    match &r.failure {
        None => {
            println!(
                "ok: ledger `{}` verified: {} entries, {} signed checkpoints{}",
                r.origin,
                r.size,
                r.checkpoints_verified,
                r.external_checkpoint
                    .map(|s| format!(", consistent with the given checkpoint of size {s}"))
                    .unwrap_or_default()
            );
            if let Some(root) = &r.root {
                println!("root: {root}");
            }
        }
        Some(f) => {
            println!("FAILED at seq {}: {} ({})", f.seq, f.message, f.code);
        }
    }
}

fn record_verify(ledger: &mut Ledger, r: &VerifyReport, replay: bool) -> Result<(), CliError> {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let e = NewEntry::new(
        "scan.verify",
        "ledger",
        Actor::cli(&user),
        json!({
            "ok": true,
            "size": r.size,
            "root": r.root,
            "checkpoints_verified": r.checkpoints_verified,
            "external_checkpoint": r.external_checkpoint,
            "replay": replay,
        }),
    )
    .map_err(CliError::storage)?;
    ledger.append(e)?;
    ledger.checkpoint()?;
    Ok(())
}

pub fn checkpoint(data: &Path, a: CheckpointArgs) -> CmdResult {
    let mut ledger = Ledger::open(data)?;
    let cp = ledger.checkpoint()?;
    if let Some(path) = &a.out {
        std::fs::write(path, &cp.note)
            .map_err(|e| CliError::input(anyhow!("cannot write `{}`: {e}", path.display())))?;
    }
    print!("{}", cp.note);
    Ok(ExitCode::SUCCESS)
}

pub fn prove(data: &Path, c: ProveCommand) -> CmdResult {
    let ledger = Ledger::open(data)?;
    let v = match c {
        ProveCommand::Inclusion { seq, size } => ledger.inclusion_proof(seq, size)?.to_json(),
        ProveCommand::Consistency { old, new } => ledger.consistency_proof(old, new)?.to_json(),
    };
    print_json(&v)?;
    Ok(ExitCode::SUCCESS)
}

pub fn proof(c: ProofCommand) -> CmdResult {
    let ProofCommand::Verify {
        file,
        checkpoint,
        vkey,
        entry,
    } = c;
    let text = read_input_file(&file)?;
    let p =
        Proof::parse(&text).map_err(|e| CliError::input(anyhow!("`{}`: {e}", file.display())))?;
    if !p.verify() {
        println!("invalid: the proof does not verify");
        return Ok(ExitCode::from(EXIT_NO));
    }
    if let Some(entry_path) = &entry {
        let Proof::Inclusion(ip) = &p else {
            return Err(CliError::input(anyhow!(
                "--entry goes with an inclusion proof"
            )));
        };
        let line = read_input_file(entry_path)?;
        let line = line.strip_suffix('\n').unwrap_or(&line);
        if djaudit::ledger::merkle::leaf_hash(line.as_bytes()) != ip.leaf_hash {
            println!("invalid: the entry does not hash to the proof's leaf hash");
            return Ok(ExitCode::from(EXIT_NO));
        }
    }
    match (&checkpoint, &vkey) {
        (Some(cp_path), Some(k)) => {
            let note = read_input_file(cp_path)?;
            let key = read_vkey(k)?;
            if let Err(e) = proof::check_against_checkpoint(&p, &note, &key) {
                println!("invalid: {e}");
                return Ok(ExitCode::from(EXIT_NO));
            }
            let (size, root) = p.tree();
            println!(
                "valid: proof verifies and ends in the signed checkpoint of size {size} ({})",
                hex_hash(&root)
            );
        }
        (None, Some(_)) => {
            return Err(CliError::input(anyhow!("--vkey goes with --checkpoint")));
        }
        _ => {
            let (size, root) = p.tree();
            println!(
                "valid: proof verifies against root {} of tree size {size}",
                hex_hash(&root)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
