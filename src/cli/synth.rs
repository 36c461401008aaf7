//! `djaudit synth`: write a deterministic synthetic organisation as import files.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::anyhow;
use clap::Args;
use djaudit::synth::{self, SynthError, SynthOptions};

use super::{parse_date, today_shanghai, CliError, CmdResult};

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Number of members.
    #[arg(long)]
    pub members: usize,
    /// Seed: the same seed and options give byte-identical files.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output directory (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Probability that a member or organisation gets an injected defect (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    pub defects: f64,
    /// The date the data describes (default: today in Asia/Shanghai).
    #[arg(long)]
    pub as_of: Option<String>,
    /// Months of dues and meetings before `--as-of`.
    #[arg(long, default_value_t = 12)]
    pub months: u32,
}

pub fn synth(a: SynthArgs) -> CmdResult {
    let as_of = match &a.as_of {
        Some(d) => parse_date(d)?,
        None => today_shanghai(),
    };
    let mut opts = SynthOptions::new(a.members, a.seed, as_of);
    opts.defects = a.defects;
    opts.months = a.months;
    let summary = synth::generate(&opts, &a.out).map_err(|e| match e {
        SynthError::InvalidOption(_) => CliError::input(anyhow!("{e}")),
        SynthError::Io { .. } => CliError::storage(anyhow!("{e}")),
    })?;
    println!(
        "wrote {} orgs, {} members, {} dues rows, {} meetings, {} transfers, {} users to {} (as of {as_of}); {} expected findings",
        summary.orgs,
        summary.members,
        summary.dues,
        summary.meetings,
        summary.transfers,
        summary.users,
        a.out.display(),
        summary.findings
    );
    Ok(ExitCode::SUCCESS)
}
