//! Deterministic generator of a realistic party organisation (a power-supply company's party
//! committee, its general branches and branches, members, dues, meetings, transfers and
//! users) written as the import files of docs/IMPORT.md, with an optional rate of injected
//! data defects and `expected_findings.json`: every finding the checks of docs/RULES.md
//! must report on the data at `as_of` (none when no defect is injected).
//!
//! The same options give byte-identical files: one ChaCha8 stream seeded from the seed, no
//! clock, no hash-map iteration order. Output streams to disk one branch at a time, so a
//! million members and twelve million dues rows need little memory. It must not read or
//! write anything but the files in the output directory, and never logs member data.

mod cal;
mod defects;
mod gen;
mod ids;
mod model;
mod out;
mod tables;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{Datelike, NaiveDate};

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthOptions {
    /// Number of member records (all statuses), at least 3.
    pub members: usize,
    /// Seed of the random stream; the same options give the same files.
    pub seed: u64,
    /// Probability in `0.0..=1.0` that a member or an organisation gets one defect.
    pub defects: f64,
    /// The date the expected findings are computed at.
    pub as_of: NaiveDate,
    /// Months of dues and meetings, ending at the last month that ended before `as_of`.
    pub months: u32,
}

impl SynthOptions {
    /// Options with no defects and twelve months of data.
    pub fn new(members: usize, seed: u64, as_of: NaiveDate) -> SynthOptions {
        SynthOptions {
            members,
            seed,
            defects: 0.0,
            as_of,
            months: 12,
        }
    }
}

/// Row counts of the files written, the number of expected findings and the number of
/// defects injected per class.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SynthSummary {
    pub orgs: u64,
    pub members: u64,
    pub dues: u64,
    pub meetings: u64,
    pub transfers: u64,
    pub users: u64,
    pub findings: u64,
    /// Defect class name → number of records it was injected into.
    pub defects: BTreeMap<String, u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("cannot write `{path}`")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid option: {0}")]
    InvalidOption(String),
}

impl SynthError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> SynthError {
        SynthError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Writes `orgs.csv`, `members.csv`, `dues.csv`, `meetings.csv`, `transfers.csv`,
/// `users.csv` and `expected_findings.json` into `out_dir` (created if missing).
pub fn generate(opts: &SynthOptions, out_dir: &Path) -> Result<SynthSummary, SynthError> {
    if opts.members < 3 {
        return Err(SynthError::InvalidOption(format!(
            "members must be at least 3, not `{}`",
            opts.members
        )));
    }
    if opts.members > 100_000_000 {
        return Err(SynthError::InvalidOption(format!(
            "members must be at most 100000000, not `{}`",
            opts.members
        )));
    }
    if !(0.0..=1.0).contains(&opts.defects) {
        return Err(SynthError::InvalidOption(format!(
            "defects must be a rate between 0 and 1, not `{}`",
            opts.defects
        )));
    }
    if !(1..=240).contains(&opts.months) {
        return Err(SynthError::InvalidOption(format!(
            "months must be between 1 and 240, not `{}`",
            opts.months
        )));
    }
    if !(2000..=2200).contains(&opts.as_of.year()) {
        return Err(SynthError::InvalidOption(format!(
            "as_of must be in the years 2000 to 2200, not `{}`",
            opts.as_of
        )));
    }
    std::fs::create_dir_all(out_dir).map_err(|e| SynthError::io(out_dir, e))?;
    let mut g = gen::Gen::new(opts, out_dir)?;
    g.run(opts.members)?;
    g.finish(out_dir)
}

#[cfg(test)]
mod oracle;

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::cal::Month;
    use super::oracle::{self, check_ok, phone_ok};
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    const FILES: [&str; 7] = [
        "orgs.csv",
        "members.csv",
        "dues.csv",
        "meetings.csv",
        "transfers.csv",
        "users.csv",
        "expected_findings.json",
    ];

    fn run(opts: &SynthOptions) -> (tempfile::TempDir, SynthSummary) {
        let dir = tempfile::tempdir().unwrap();
        let summary = generate(opts, dir.path()).unwrap();
        (dir, summary)
    }

    fn expected(dir: &Path) -> (String, Vec<(String, String, String)>) {
        let text = std::fs::read_to_string(dir.join("expected_findings.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let as_of = v["as_of"].as_str().unwrap().to_string();
        let list = v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                let s = |k: &str| f[k].as_str().unwrap().to_string();
                (s("rule"), s("family"), s("subject"))
            })
            .collect();
        (as_of, list)
    }

    /// Compares the declared findings with the reference reading and names the differences.
    fn assert_findings_match(opts: &SynthOptions) -> SynthSummary {
        let (dir, summary) = run(opts);
        let (_, list) = expected(dir.path());
        let declared: BTreeSet<(String, String)> =
            list.into_iter().map(|(r, _, s)| (r, s)).collect();
        let found = oracle::check(&oracle::load(dir.path()), opts.as_of);
        let missing: Vec<_> = declared.difference(&found).collect();
        let extra: Vec<_> = found.difference(&declared).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{opts:?}\ndeclared but not found: {missing:?}\nfound but not declared: {extra:?}"
        );
        summary
    }

    #[test]
    fn same_options_give_identical_bytes() {
        let mut opts = SynthOptions::new(900, 7, d("2026-07-01"));
        opts.defects = 0.1;
        let (a, _) = run(&opts);
        let (b, _) = run(&opts);
        for f in FILES {
            let x = std::fs::read(a.path().join(f)).unwrap();
            let y = std::fs::read(b.path().join(f)).unwrap();
            assert!(x == y, "{f} differs between two runs");
            assert!(!x.is_empty());
        }
        opts.seed = 8;
        let (c, _) = run(&opts);
        let x = std::fs::read(a.path().join("members.csv")).unwrap();
        let z = std::fs::read(c.path().join("members.csv")).unwrap();
        assert_ne!(x, z, "another seed must give other data");
    }

    #[test]
    fn clean_data_holds_every_invariant() {
        let as_of = d("2026-07-01");
        let opts = SynthOptions::new(3000, 42, as_of);
        let (dir, summary) = run(&opts);
        assert_eq!(summary.members, 3000);
        assert!(summary.defects.is_empty());
        let (json_as_of, list) = expected(dir.path());
        assert_eq!(json_as_of, "2026-07-01");
        assert!(list.is_empty(), "no defects, no findings: {list:?}");
        let data = oracle::load(dir.path());
        let found = oracle::check(&data, as_of);
        assert!(found.is_empty(), "reference reading finds {found:?}");

        // Headers are the canonical ones, files end with LF only.
        let members_text = std::fs::read_to_string(dir.path().join("members.csv")).unwrap();
        assert!(members_text.starts_with(out::MEMBERS_HEADER));
        assert!(!members_text.contains('\r'));

        let by_id: BTreeMap<&str, &oracle::Mem> =
            data.members.iter().map(|m| (m.id.as_str(), m)).collect();
        let mut ids = BTreeSet::new();
        let mut probationary = 0;
        let mut employment: BTreeMap<String, usize> = BTreeMap::new();
        for m in &data.members {
            // ID number: 18 characters, check character, birth date, sequence parity.
            let id = m.get("id_number").unwrap();
            assert_eq!(id.len(), 18);
            assert!(check_ok(id), "check character of {}", m.id);
            assert_eq!(&id[6..14], m.get("birth_date").unwrap().replace('-', ""));
            let odd = (id.as_bytes()[16] - b'0') % 2 == 1;
            assert_eq!(odd, m.get("gender") == Some("male"));
            assert!(ids.insert(id.to_string()), "duplicate ID number");
            assert!(super::tables::AREA_CODES.contains(&id[..6].parse::<u32>().unwrap()));
            if let Some(p) = m.get("phone") {
                assert!(phone_ok(p));
            }
            // Development dates in order, 18 at application, more than a year as activist.
            let birth = m.date("birth_date").unwrap();
            let app = m.date("application_date").unwrap();
            let act = m.date("activist_date").unwrap();
            let cand = m.date("candidate_date").unwrap();
            let adm = m.date("admission_date").unwrap();
            assert!(app >= cal::add_years(birth, 18));
            assert!(app <= act && act <= cand && cand <= adm);
            assert!(cand > cal::add_months(act, 12));
            if let Some(f) = m.date("full_date") {
                assert_eq!(Some(f), m.probation_end());
                assert!(f <= as_of);
            }
            if m.get("category") == Some("probationary") {
                probationary += 1;
                assert!(m.probation_end().unwrap() > as_of);
            }
            // Two introducers who were full members on the admission date.
            let intro: Vec<&str> = m.get("introducers").unwrap().split(';').collect();
            assert_eq!(intro.len(), 2);
            assert_ne!(intro[0], intro[1]);
            for i in intro {
                assert!(
                    by_id[i].full_on(adm),
                    "{} introduced {} before being full",
                    i,
                    m.id
                );
            }
            *employment
                .entry(m.get("employment").unwrap().to_string())
                .or_insert(0) += 1;
        }
        assert!(probationary > 0, "some members are still probationary");
        for e in ["employed", "retired", "student", "unemployed", "farmer"] {
            assert!(employment.get(e).copied().unwrap_or(0) > 0, "no {e} member");
        }
        assert!(employment["employed"] > data.members.len() / 2);

        // Dues: exact rates, one row per expected month.
        let last = Month::of(as_of).add(-1);
        let first = last.add(-11);
        let mut rows_of: BTreeMap<&str, usize> = BTreeMap::new();
        for du in &data.dues {
            let m = by_id[du.member.as_str()];
            let e = m.get("employment").unwrap();
            let right = match e {
                "student" | "unemployed" => 20,
                "farmer" => du.amount,
                _ => model::dues_amount(
                    if e == "retired" {
                        model::Employment::Retired
                    } else {
                        model::Employment::Employed
                    },
                    du.base,
                    0,
                ),
            };
            assert_eq!(du.amount, right, "dues of {}", du.member);
            assert!(du.month >= first && du.month <= last);
            assert!(du.paid.unwrap() < as_of);
            *rows_of.entry(du.member.as_str()).or_insert(0) += 1;
        }
        let old_active = data
            .members
            .iter()
            .filter(|m| {
                m.get("status") == Some("active")
                    && Month::of(m.date("admission_date").unwrap()) < first
            })
            .collect::<Vec<_>>();
        assert!(old_active
            .iter()
            .all(|m| rows_of.get(m.id.as_str()) == Some(&12)));

        // Branches: at least 3 active full members, at most 50 active, committee from 7.
        let mut sizes = Vec::new();
        for o in data
            .orgs
            .values()
            .filter(|o| o.kind == "branch" && o.dissolved.is_none())
        {
            let active: Vec<_> = data
                .members
                .iter()
                .filter(|m| {
                    m.get("org_id") == Some(o.id.as_str()) && m.get("status") == Some("active")
                })
                .collect();
            let full = active.iter().filter(|m| m.full_on(as_of)).count();
            assert!(
                full >= 3 && active.len() <= 50,
                "branch {} has {full} full of {}",
                o.id,
                active.len()
            );
            assert_eq!(o.has_committee, Some(full >= 7), "committee of {}", o.id);
            let sec = o.secretary.as_deref().unwrap();
            assert!(active.iter().any(|m| m.id == sec && m.full_on(as_of)));
            sizes.push(active.len());
        }
        let typical = sizes.iter().filter(|s| (8..=40).contains(*s)).count();
        assert!(
            typical * 10 >= sizes.len() * 6,
            "most branches have 8 to 40 members: {sizes:?}"
        );
        assert!(data.orgs.values().any(|o| o.kind == "general_branch"));
        assert!(data.orgs.values().any(|o| o.kind == "committee"));

        // Users of every role; member users point at members.
        let roles: BTreeSet<&str> = data.users.iter().map(|u| u["role"].as_str()).collect();
        for r in [
            "org_dept",
            "provider",
            "member",
            "sysadmin",
            "security_admin",
            "auditor",
        ] {
            assert!(roles.contains(r), "no {r} user");
        }
        for u in data.users.iter().filter(|u| u["role"] == "member") {
            assert!(by_id.contains_key(u["member_id"].as_str()));
        }
        assert!(!data.transfers.is_empty());
    }

    #[test]
    fn declared_findings_are_exactly_the_reference_findings() {
        for (seed, as_of, months, members, defects) in [
            (1, "2026-07-01", 12, 2500, 0.25),
            (2, "2026-01-15", 12, 2000, 0.25),
            (3, "2025-11-20", 24, 1500, 0.25),
            (4, "2026-03-31", 6, 1500, 0.25),
            (5, "2026-02-28", 12, 4000, 0.25),
            (6, "2024-02-29", 1, 400, 1.0),
            (7, "2026-12-31", 36, 800, 0.6),
        ] {
            let mut opts = SynthOptions::new(members, seed, d(as_of));
            opts.months = months;
            opts.defects = defects;
            let summary = assert_findings_match(&opts);
            assert!(summary.findings > 0);
        }
    }

    #[test]
    fn every_defect_class_is_injected() {
        let mut opts = SynthOptions::new(6000, 11, d("2026-01-20"));
        opts.defects = 0.3;
        let summary = assert_findings_match(&opts);
        for class in model::MemberDefect::ALL {
            assert!(
                summary.defects.get(class.name()).copied().unwrap_or(0) > 0,
                "{} never injected",
                class.name()
            );
        }
        for class in [
            "branch_too_small",
            "branch_too_large",
            "committee_expected",
            "secretary_invalid",
            "missing_meetings",
            "parent_missing",
            "cycle",
        ] {
            assert!(
                summary.defects.get(class).copied().unwrap_or(0) > 0,
                "{class} never injected"
            );
        }
    }

    #[test]
    fn defect_rate_gives_the_expected_number_of_defects() {
        let mut opts = SynthOptions::new(5000, 3, d("2026-07-01"));
        opts.defects = 0.05;
        let (dir, summary) = run(&opts);
        let data = oracle::load(dir.path());
        let candidates = (data.members.len()
            + data.orgs.values().filter(|o| o.kind != "committee").count())
            as f64;
        let injected: u64 = summary.defects.values().sum();
        let want = candidates * opts.defects;
        assert!(
            (injected as f64) > want * 0.75 && (injected as f64) < want * 1.25,
            "{injected} defects, expected about {want}"
        );
    }

    #[test]
    fn expected_findings_file_is_sorted_and_well_formed() {
        let mut opts = SynthOptions::new(1200, 5, d("2026-07-01"));
        opts.defects = 0.2;
        let (dir, summary) = run(&opts);
        let (as_of, list) = expected(dir.path());
        assert_eq!(as_of, "2026-07-01");
        assert_eq!(list.len() as u64, summary.findings);
        assert!(!list.is_empty());
        let keys: Vec<(String, String)> = list
            .iter()
            .map(|(r, _, s)| (r.clone(), s.clone()))
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(keys, sorted);
        for (rule, family, subject) in &list {
            assert_eq!(rule.split('.').next(), Some(family.as_str()));
            let prefix = if matches!(family.as_str(), "org" | "meetings") {
                "org/"
            } else {
                "member/"
            };
            assert!(subject.starts_with(prefix), "{rule} {subject}");
        }
    }

    #[test]
    fn fail_invalid_options_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let base = SynthOptions::new(100, 1, d("2026-07-01"));
        let cases = [
            SynthOptions {
                members: 2,
                ..base.clone()
            },
            SynthOptions {
                defects: 1.5,
                ..base.clone()
            },
            SynthOptions {
                defects: f64::NAN,
                ..base.clone()
            },
            SynthOptions {
                months: 0,
                ..base.clone()
            },
            SynthOptions {
                as_of: d("1999-12-31"),
                ..base.clone()
            },
        ];
        for opts in cases {
            let err = generate(&opts, dir.path()).unwrap_err();
            assert!(matches!(err, SynthError::InvalidOption(_)), "{opts:?}");
        }
        assert!(!dir.path().join("members.csv").exists());
    }

    /// Scale check; run optimised: `cargo test --release --lib synth::tests::scale -- --ignored`.
    #[test]
    #[ignore = "writes about 800 MB; meant for an optimised build"]
    fn scale_one_million_members_in_under_a_minute() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = SynthOptions::new(1_000_000, 1, d("2026-07-01"));
        opts.defects = 0.01;
        let start = std::time::Instant::now();
        let summary = generate(&opts, dir.path()).unwrap();
        let took = start.elapsed();
        assert_eq!(summary.members, 1_000_000);
        assert!(summary.dues > 11_000_000, "{} dues rows", summary.dues);
        assert!(took < std::time::Duration::from_secs(60), "took {took:?}");
    }

    #[test]
    fn tiny_organisation_is_still_valid() {
        for members in [3, 4, 10, 59, 61] {
            let opts = SynthOptions::new(members, 9, d("2026-07-01"));
            let (dir, summary) = run(&opts);
            assert_eq!(summary.members, members as u64);
            let found = oracle::check(&oracle::load(dir.path()), opts.as_of);
            assert!(found.is_empty(), "{members}: {found:?}");
        }
    }
}
