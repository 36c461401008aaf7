//! `djaudit demo`: the main job on a synthetic organisation, in one command.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::anyhow;
use clap::Args;
use djaudit::demo::{self, DemoError, DemoOptions};
use djaudit::report::Lang;

use super::{today_shanghai, CliError, CmdResult};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The demo directory: new or empty.
    #[arg(long, default_value = "djaudit-demo")]
    pub dir: PathBuf,
    /// Language of the report: zh (default) or en.
    #[arg(long, default_value = "zh", value_parser = parse_lang)]
    pub lang: Lang,
    /// Members of the synthetic organisation.
    #[arg(long, env = "DJAUDIT_DEMO_MEMBERS", default_value_t = demo::DEFAULT_MEMBERS, hide = true)]
    pub members: usize,
}

fn parse_lang(s: &str) -> Result<Lang, String> {
    s.parse()
}

pub fn demo(a: DemoArgs) -> CmdResult {
    let mut opts = DemoOptions::new(&a.dir, today_shanghai());
    opts.members = a.members;
    opts.lang = a.lang;
    let started = std::time::Instant::now();
    eprintln!(
        "djaudit demo: a county power-supply company's party committee, {} members, in {}",
        opts.members,
        a.dir.display()
    );
    let s = demo::run(&opts).map_err(|e| match e {
        DemoError::NotEmpty(_) | DemoError::Synth(djaudit::synth::SynthError::InvalidOption(_)) => {
            CliError::input(anyhow!("{e}"))
        }
        e => CliError::storage(anyhow!("{e}")),
    })?;
    let r = &s.report;
    let q = &r.quality.totals;
    let bulk: Vec<&str> = r
        .access
        .findings
        .iter()
        .filter(|f| f.rule == "access.bulk_read")
        .map(|f| f.subject.as_str())
        .collect();
    println!(
        "organisation: {} orgs, {} members, {} dues payments, {} meetings, {} users ({} injected defects)",
        s.synth.orgs,
        s.synth.members,
        s.synth.dues,
        s.synth.meetings,
        s.synth.users,
        s.synth.defects.values().sum::<u64>()
    );
    println!(
        "ledger: {} entries in {}, verified {}",
        s.entries,
        s.ledger.display(),
        if r.integrity.verify.ok {
            "ok"
        } else {
            "FAILED"
        }
    );
    println!(
        "data findings: {} errors, {} warnings, {} info",
        q.error, q.warning, q.info
    );
    println!(
        "access: {} decisions recorded ({} denied); {} findings; bulk read of {} members at 23:00 by `{}`{}",
        r.access.decisions,
        r.access.denied,
        r.access.findings.len(),
        s.bulk_read_members,
        s.bulk_reader,
        if bulk.iter().any(|u| u.strip_prefix("user/") == Some(s.bulk_reader.as_str())) {
            " (flagged)"
        } else {
            " (NOT flagged)"
        }
    );
    println!(
        "meetings: {} of {} branches with gaps; dues: {} members in arrears",
        r.org_life
            .branches
            .iter()
            .filter(|b| !b.issues.is_empty())
            .count(),
        r.org_life.branches.len(),
        r.dues.members
    );
    println!(
        "report: {} (and {})",
        s.report_html.display(),
        s.report_json.display()
    );
    println!(
        "verify it: djaudit report verify {} --vkey {}",
        s.report_html.display(),
        s.vkey_file.display()
    );
    println!(
        "verify the ledger: djaudit --data {} verify --checkpoint {}",
        s.ledger.display(),
        s.checkpoint_file.display()
    );
    eprintln!("done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}
