//! The main job in one call, on synthetic data: a county power-supply company's party
//! committee (synth, fixed seed and date, about 2% of records with a defect) imported into a
//! new ledger, a month of platform access with one suspicious bulk read at night, the
//! ledger verified and checkpointed, and a signed compliance report written.
//!
//! Reproducible: the organisation, the access log and so the findings depend only on
//! [`DemoOptions`]; only ledger timestamps, keys and signatures differ between runs. It
//! writes only inside the demo directory, which must be new or empty, and never prints.

use std::path::{Path, PathBuf};

use chrono::{NaiveDate, TimeZone, Utc};
use rusqlite::OptionalExtension;
use serde_json::json;

use crate::audit::sample;
use crate::ledger::store::LedgerError;
use crate::ledger::verify::{self, VerifyOptions};
use crate::ledger::{Actor, Ledger, NewEntry};
use crate::policy::record::{self, AccessEvent};
use crate::policy::{Authorizer, Policies};
use crate::records::import;
use crate::records::parse::ImportOptions;
use crate::records::RecordKind;
use crate::report::period::Period;
use crate::report::sign::{render, DocFormat};
use crate::report::{self, Lang, Report, ReportOptions};
use crate::synth::{self, SynthOptions};

/// The ledger's origin.
pub const ORIGIN: &str = "demo.djaudit.example/county-power-party-committee";
/// Seed of the synthetic organisation and access log.
pub const SEED: u64 = 20_261_101;
/// The date the synthetic records describe: data up to the end of October 2026.
pub const AS_OF: (i32, u32, u32) = (2026, 11, 1);
/// The month of platform access: October 2026.
pub const ACCESS_MONTH: (i32, u32) = (2026, 10);
/// The night of the bulk read: Wednesday 21 October 2026, 23:00 Asia/Shanghai.
pub const BULK_READ_AT: (i32, u32, u32, u32) = (2026, 10, 21, 23);
/// Members read in the bulk read (at most all members).
pub const BULK_READ_MEMBERS: usize = 300;
/// Members of the default demo organisation.
pub const DEFAULT_MEMBERS: usize = 500;

/// What the demo does.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The demo directory (new or empty).
    pub dir: PathBuf,
    /// Members of the synthetic organisation.
    pub members: usize,
    /// Share of records with an injected defect.
    pub defects: f64,
    /// Language of the report.
    pub lang: Lang,
    /// Today (Asia/Shanghai): the report covers the access month up to today.
    pub today: NaiveDate,
}

/// Why the demo stopped.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("`{0}` is not empty; give a new or empty directory with --dir")]
    NotEmpty(PathBuf),
    #[error("i/o on `{path}`: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("synthetic data: {0}")]
    Synth(#[from] synth::SynthError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Records(#[from] crate::records::RecordError),
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    #[error("access log: {0}")]
    Access(#[from] record::RecordError),
    #[error("projection: {0}")]
    Projection(#[from] rusqlite::Error),
    #[error(transparent)]
    Report(#[from] report::ReportError),
    #[error("the demo's fixed dates are invalid")]
    Dates,
    #[error("the organisation has no organisation-department user to stage the bulk read")]
    NoUser,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DemoError + '_ {
    move |source| DemoError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What the demo made.
#[derive(Debug, Clone)]
pub struct DemoSummary {
    /// The ledger's data directory.
    pub ledger: PathBuf,
    /// The HTML report.
    pub report_html: PathBuf,
    /// The same report as JSON.
    pub report_json: PathBuf,
    /// The verifier key file (C2SP vkey).
    pub vkey_file: PathBuf,
    /// The checkpoint file.
    pub checkpoint_file: PathBuf,
    /// The verifier key.
    pub vkey: String,
    /// The report.
    pub report: Report,
    /// Synthetic records generated.
    pub synth: synth::SynthSummary,
    /// Platform accesses recorded.
    pub accesses: u64,
    /// The user who did the bulk read.
    pub bulk_reader: String,
    /// Members read in the bulk read.
    pub bulk_read_members: usize,
    /// Ledger entries at the end.
    pub entries: u64,
}

impl DemoOptions {
    /// The default demo in `dir`.
    pub fn new(dir: &Path, today: NaiveDate) -> DemoOptions {
        DemoOptions {
            dir: dir.to_owned(),
            members: DEFAULT_MEMBERS,
            defects: 0.02,
            lang: Lang::Zh,
            today,
        }
    }
}

fn date(y: i32, m: u32, d: u32) -> Result<NaiveDate, DemoError> {
    NaiveDate::from_ymd_opt(y, m, d).ok_or(DemoError::Dates)
}

/// Refuses a directory that exists and is not empty; creates it otherwise.
fn prepare_dir(dir: &Path) -> Result<(), DemoError> {
    if dir.exists() {
        let mut it = std::fs::read_dir(dir).map_err(io(dir))?;
        if it.next().is_some() {
            return Err(DemoError::NotEmpty(dir.to_owned()));
        }
    }
    std::fs::create_dir_all(dir).map_err(io(dir))
}

/// Runs the demo (see the module docs).
pub fn run(opts: &DemoOptions) -> Result<DemoSummary, DemoError> {
    let dir = &opts.dir;
    prepare_dir(dir)?;
    let as_of = date(AS_OF.0, AS_OF.1, AS_OF.2)?;
    let actor = Actor {
        user: "demo".to_owned(),
        via: "cli".to_owned(),
        os_user: None,
        service: None,
    };

    // 1. The organisation, as the import files of the party affairs platform.
    let data = dir.join("data");
    let mut so = SynthOptions::new(opts.members, SEED, as_of);
    so.defects = opts.defects;
    let synth = synth::generate(&so, &data)?;

    // 2. A ledger, and the files imported into it.
    let ledger_dir = dir.join("ledger");
    let mut ledger = Ledger::init(&ledger_dir, ORIGIN, actor.clone())?;
    for (kind, file) in [
        (RecordKind::Org, "orgs.csv"),
        (RecordKind::Member, "members.csv"),
        (RecordKind::User, "users.csv"),
        (RecordKind::Dues, "dues.csv"),
        (RecordKind::Meeting, "meetings.csv"),
        (RecordKind::Transfer, "transfers.csv"),
    ] {
        let mut progress = |_: u64| {};
        import::import(
            &mut ledger,
            kind,
            &data.join(file),
            ImportOptions::default(),
            &actor,
            &mut progress,
        )?;
    }

    // 3. A month of platform access and one bulk read at night, decided and recorded.
    let policies = Policies::embedded()?;
    record::ensure_policy_recorded(&mut ledger, &policies, actor.clone())?;
    let authorizer = Authorizer::new(policies, ledger.conn())?;
    let month = date(ACCESS_MONTH.0, ACCESS_MONTH.1, 1)?;
    let mut events: Vec<AccessEvent> = sample::normal_month(ledger.conn(), month, SEED)?;
    let (reader, members) = bulk_read_target(ledger.conn())?;
    let (y, m, d, h) = BULK_READ_AT;
    let at = Utc
        .with_ymd_and_hms(y, m, d, h, 0, 0)
        .single()
        .ok_or(DemoError::Dates)?
        - chrono::Duration::hours(8);
    let bulk = sample::bulk_read(&reader, &members, at);
    let bulk_read_members = bulk.len();
    events.extend(bulk);
    events.sort_by(|a, b| (a.at, &a.user).cmp(&(b.at, &b.user)));
    let log: String = events.iter().map(|e| e.to_line() + "\n").collect();
    let log_path = dir.join("access.jsonl");
    std::fs::write(&log_path, &log).map_err(io(&log_path))?;
    let imported = record::import_access_log(&mut ledger, &authorizer, &log, actor.clone())?;

    // 4. Verify the whole ledger and record it; sign a checkpoint and hand it out.
    let v = verify::verify(&ledger, VerifyOptions::default())?;
    if v.ok {
        ledger.append(
            NewEntry::new(
                "scan.verify",
                "ledger",
                actor.clone(),
                json!({
                    "ok": true,
                    "size": v.size,
                    "root": v.root,
                    "checkpoints_verified": v.checkpoints_verified,
                    "external_checkpoint": null,
                    "replay": false,
                }),
            )
            .map_err(LedgerError::from)?,
        )?;
    }
    let cp = ledger.checkpoint()?;
    let checkpoint_file = dir.join("checkpoint.txt");
    std::fs::write(&checkpoint_file, &cp.note).map_err(io(&checkpoint_file))?;
    let vkey = ledger.verifier_key().to_string();
    let vkey_file = dir.join("verifier.vkey");
    std::fs::write(&vkey_file, format!("{vkey}\n")).map_err(io(&vkey_file))?;

    // 5. The report: the twelve months of synthetic records (the checks' window) up to
    //    today, so that it holds the access month and the import; records judged at the
    //    synthetic date, the previous twelve months at their end.
    let months = chrono::Months::new(12);
    let start = as_of.checked_sub_months(months).ok_or(DemoError::Dates)?;
    let month_end = Period::month(ACCESS_MONTH.0, ACCESS_MONTH.1)
        .ok_or(DemoError::Dates)?
        .to;
    let to = opts.today.max(month_end);
    let period = Period::range(start, to)?;
    let mut ro = ReportOptions::new(period, to)?.with_as_of(as_of)?;
    let before = start.checked_sub_months(months).ok_or(DemoError::Dates)?;
    ro.previous = Period::range(before, start.pred_opt().ok_or(DemoError::Dates)?)?;
    ro.previous_as_of = start;
    ro.lang = opts.lang;
    ro.issued_by = actor.user.clone();
    let issued = report::issue(&mut ledger, &ro, DocFormat::Html)?;
    let report_html = dir.join("report.html");
    std::fs::write(&report_html, &issued.text).map_err(io(&report_html))?;
    let report_json = dir.join("report.json");
    let json_text = render(&issued.report, DocFormat::Json)?;
    std::fs::write(&report_json, json_text).map_err(io(&report_json))?;
    report::record_issue(&mut ledger, &issued, actor, Some("report.html"))?;

    Ok(DemoSummary {
        entries: ledger.size()?,
        ledger: ledger_dir,
        report_html,
        report_json,
        vkey_file,
        checkpoint_file,
        vkey,
        report: issued.report,
        synth,
        accesses: imported.events,
        bulk_reader: reader,
        bulk_read_members,
    })
}

/// The user of the bulk read (an organisation-department user, at the top of the
/// organisation if there is one) and the members they read: the first
/// [`BULK_READ_MEMBERS`] members by id.
fn bulk_read_target(conn: &rusqlite::Connection) -> Result<(String, Vec<String>), DemoError> {
    let user: Option<String> = conn
        .query_row(
            "SELECT u.user_id FROM user u LEFT JOIN org o ON o.org_id = u.org_id
             WHERE u.role = 'org_dept' AND u.disabled = 0
             ORDER BY (o.parent_id IS NULL AND o.org_id IS NOT NULL) DESC, u.user_id LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    let user = user.ok_or(DemoError::NoUser)?;
    let mut stmt = conn.prepare("SELECT member_id FROM member ORDER BY member_id LIMIT ?1")?;
    let members = stmt
        .query_map([BULK_READ_MEMBERS as i64], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok((user, members))
}
