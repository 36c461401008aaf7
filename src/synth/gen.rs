//! The generation run: organisation tree, members branch by branch (oldest first, so that
//! introducers exist), their dues, meetings and transfers, users, and the expected findings.
//! Everything is drawn from one ChaCha8 stream in a fixed order; no clock, no hash-map
//! iteration. Only one branch of members is held in memory at a time.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;

use chrono::{Datelike, NaiveDate};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::cal::{add_days, add_months, add_years, days_between, ymd, Calendar, Month};
use super::ids;
use super::model::{
    dues_amount, wrong_dues_amount, Category, DuesMods, Employment, Gender, Member, OrgDefect,
    OrgKind, OrgRec, Status, Transfer, UserRec,
};
use super::out::{self, Csv};
use super::tables as t;
use super::{SynthError, SynthOptions, SynthSummary};

/// What kind of unit a branch serves; decides the employment mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BranchType {
    Department,
    Station,
    Retirees,
}

/// What a member record is generated to be before defects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plan {
    Founder,
    Full,
    Probationary,
    Exited(Status),
}

#[derive(Clone, Debug)]
pub(crate) struct BranchPlan {
    pub(crate) org: usize,
    pub(crate) size: usize,
    pub(crate) btype: BranchType,
    pub(crate) defect: Option<OrgDefect>,
}

/// One county company: its committee, general branches and branches.
pub(crate) struct County {
    pub(crate) committee: usize,
    /// General branches with the defect injected into each, if any.
    pub(crate) generals: Vec<(usize, Option<OrgDefect>)>,
    pub(crate) branches: Vec<BranchPlan>,
    pub(crate) dissolved: Option<usize>,
    pub(crate) moved_to_dissolved: usize,
    /// Ids of the county's live branches (transfer partners).
    pub(crate) branch_ids: Vec<String>,
}

/// The branch being generated, as the defect guard sees it.
pub(crate) struct BranchCtx {
    pub(crate) org_id: String,
    pub(crate) has_committee: bool,
    pub(crate) secretary: Option<String>,
}

/// Removal of the meetings of one kind inside `[from, to]` (a missing-meetings defect).
#[derive(Clone, Debug)]
struct MeetingGap {
    kind: &'static str,
    from: NaiveDate,
    to: NaiveDate,
}

struct Outs {
    members: Csv,
    dues: Csv,
    meetings: Csv,
    transfers: Csv,
}

pub(crate) struct Gen {
    pub(crate) rng: ChaCha8Rng,
    pub(crate) cal: Calendar,
    pub(crate) defect_rate: f64,
    outs: Outs,
    pub(crate) orgs: Vec<OrgRec>,
    users: Vec<UserRec>,
    /// 17-digit bodies of every ID number in use (uniqueness; never iterated).
    pub(crate) id_bodies: HashSet<u64>,
    /// Members of finished branches who can introduce others: (id, full from).
    pool: Vec<(String, NaiveDate)>,
    founders: Vec<String>,
    next_member: u64,
    member_width: usize,
    /// Number of member records; ids above it name nobody.
    members_total: u64,
    unknown_next: u64,
    next_org: u64,
    org_width: usize,
    missing_next: u64,
    pub(crate) findings: Vec<(String, String)>,
    pub(crate) defects: BTreeMap<&'static str, u64>,
    /// An active full member of an earlier branch (an invalid secretary for another branch).
    last_branch_full: Option<String>,
}

/// Chinese numeral for 1..=99 (一, 二, …, 十, 十一, …).
fn ordinal(n: usize) -> String {
    const D: [&str; 10] = ["", "一", "二", "三", "四", "五", "六", "七", "八", "九"];
    let (tens, ones) = (n / 10 % 10, n % 10);
    let ten = match tens {
        0 => String::new(),
        1 => "十".to_string(),
        t => format!("{}十", D.get(t).copied().unwrap_or("")),
    };
    format!("{ten}{}", D.get(ones).copied().unwrap_or(""))
}

fn digits(n: u64) -> usize {
    n.max(1).to_string().len()
}

impl Gen {
    pub(crate) fn new(opts: &SynthOptions, dir: &Path) -> Result<Gen, SynthError> {
        let n = opts.members as u64;
        Ok(Gen {
            rng: ChaCha8Rng::seed_from_u64(opts.seed),
            cal: Calendar::new(opts.as_of, opts.months),
            defect_rate: opts.defects,
            outs: Outs {
                members: Csv::create(dir, "members.csv", out::MEMBERS_HEADER)?,
                dues: Csv::create(dir, "dues.csv", out::DUES_HEADER)?,
                meetings: Csv::create(dir, "meetings.csv", out::MEETINGS_HEADER)?,
                transfers: Csv::create(dir, "transfers.csv", out::TRANSFERS_HEADER)?,
            },
            orgs: Vec::new(),
            users: Vec::new(),
            id_bodies: HashSet::with_capacity(opts.members + opts.members / 16),
            pool: Vec::new(),
            founders: Vec::new(),
            next_member: 1,
            member_width: digits(n).max(6),
            members_total: n,
            unknown_next: 0,
            next_org: 1,
            org_width: digits(4 * n + 1000).max(5),
            missing_next: 0,
            findings: Vec::new(),
            defects: BTreeMap::new(),
            last_branch_full: None,
        })
    }

    // ---------------------------------------------------------------- random helpers

    pub(crate) fn range(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            lo
        } else {
            self.rng.gen_range(lo..=hi)
        }
    }

    pub(crate) fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.gen_bool(p.min(1.0))
    }

    pub(crate) fn date_between(&mut self, lo: NaiveDate, hi: NaiveDate) -> NaiveDate {
        let span = days_between(lo, hi);
        if span <= 0 {
            lo
        } else {
            add_days(lo, self.range(0, span))
        }
    }

    fn pick_str(&mut self, table: &[&'static str]) -> &'static str {
        table.choose(&mut self.rng).copied().unwrap_or("")
    }

    fn weighted(&mut self, table: &[(&'static str, u32)]) -> &'static str {
        let total: u32 = table.iter().map(|(_, w)| *w).sum();
        let mut r = self.rng.gen_range(0..total.max(1));
        for (v, w) in table {
            if r < *w {
                return v;
            }
            r -= *w;
        }
        table.first().map(|(v, _)| *v).unwrap_or("")
    }

    pub(crate) fn person_name(&mut self, g: Gender) -> String {
        let surname = if self.chance(0.35) {
            let top = &t::SURNAMES[..10.min(t::SURNAMES.len())];
            self.pick_str(top)
        } else {
            self.pick_str(t::SURNAMES)
        };
        let chars = match g {
            Gender::Male => t::MALE_CHARS,
            Gender::Female => t::FEMALE_CHARS,
        };
        let mut name = String::from(surname);
        name.push_str(self.pick_str(chars));
        if self.chance(0.65) {
            name.push_str(self.pick_str(chars));
        }
        name
    }

    // ---------------------------------------------------------------- ids

    fn new_org_id(&mut self) -> String {
        let id = format!("O{:0w$}", self.next_org, w = self.org_width);
        self.next_org += 1;
        id
    }

    /// An org id that no organisation has (top of the id range, counting down).
    pub(crate) fn missing_org_id(&mut self) -> String {
        let top = 10u64.pow(self.org_width as u32) - 1;
        let id = format!("O{:0w$}", top - self.missing_next, w = self.org_width);
        self.missing_next += 1;
        id
    }

    fn new_member_id(&mut self) -> String {
        let id = format!("M{:0w$}", self.next_member, w = self.member_width);
        self.next_member += 1;
        id
    }

    /// A member id that no member has (numbers above the member count).
    pub(crate) fn unknown_member_id(&mut self) -> String {
        self.unknown_next += 1;
        format!(
            "M{:0w$}",
            self.members_total + self.unknown_next,
            w = self.member_width
        )
    }

    fn push_org(&mut self, org: OrgRec) -> usize {
        self.orgs.push(org);
        self.orgs.len() - 1
    }

    pub(crate) fn finding(&mut self, rule: &str, subject: String) {
        self.findings.push((rule.to_string(), subject));
    }

    // ---------------------------------------------------------------- the run

    pub(crate) fn run(&mut self, members: usize) -> Result<(), SynthError> {
        let first = self.cal.first_month().first_day();
        // County sizes: one county up to 2500 members, else counties of about 1600.
        let counties = if members <= 2500 {
            1
        } else {
            members.div_ceil(1600)
        };
        let base = members / counties;
        let extra = members % counties;
        let sizes: Vec<usize> = (0..counties)
            .map(|i| base + usize::from(i < extra))
            .collect();

        // Upper levels: a provincial company over city companies over county companies.
        let mut county_parents: Vec<Option<String>> = vec![None; counties];
        if counties > 1 {
            let cities = counties.div_ceil(10);
            let mut city_ids: Vec<String> = Vec::new();
            let root_parent = if cities > 1 {
                let id = self.new_org_id();
                let province = self.pick_str(t::PROVINCES);
                let est = add_years(first, -(self.range(30, 40) as i32));
                let est = self.date_between(est, add_days(est, 300));
                self.push_org(OrgRec {
                    id: id.clone(),
                    name: format!("国网{province}省电力有限公司党委"),
                    kind: OrgKind::Committee,
                    parent_id: None,
                    established: est,
                    has_committee: Some(true),
                    secretary_id: None,
                    dissolved: None,
                });
                Some(id)
            } else {
                None
            };
            for c in 0..cities {
                let id = self.new_org_id();
                let city = t::CITIES
                    .get(c % t::CITIES.len())
                    .copied()
                    .unwrap_or("合肥");
                let suffix = if c >= t::CITIES.len() {
                    format!("{}", c / t::CITIES.len() + 1)
                } else {
                    String::new()
                };
                let est = add_years(first, -(self.range(25, 35) as i32));
                self.push_org(OrgRec {
                    id: id.clone(),
                    name: format!("国网{city}{suffix}供电公司党委"),
                    kind: OrgKind::Committee,
                    parent_id: root_parent.clone(),
                    established: est,
                    has_committee: Some(true),
                    secretary_id: None,
                    dissolved: None,
                });
                city_ids.push(id);
            }
            for (i, p) in county_parents.iter_mut().enumerate() {
                *p = city_ids.get(i / 10).cloned();
            }
        }
        for (i, (n, parent)) in sizes.iter().zip(county_parents).enumerate() {
            let mut county = self.plan_county(i, *n, parent);
            self.write_upper_meetings(&county)?;
            for b in 0..county.branches.len() {
                self.gen_branch(&mut county, b)?;
            }
            let dissolved = county.dissolved;
            if let Some(d) = dissolved {
                let name = self.person_name(Gender::Female);
                let org_id = self.orgs.get(d).map(|o| o.id.clone());
                self.users.push(UserRec {
                    name,
                    role: "provider",
                    org_id,
                    member_id: None,
                    disabled: true,
                });
            }
        }
        Ok(())
    }

    /// Draws a branch size in `[lo, hi]` that leaves either nothing or at least four members.
    fn fit(&mut self, rem: usize, lo: usize, hi: usize) -> Option<usize> {
        let ok: Vec<usize> = (lo..=hi.min(rem))
            .filter(|s| rem - s == 0 || rem - s >= 4)
            .collect();
        ok.choose(&mut self.rng).copied()
    }

    fn normal_size(&mut self, rem: usize) -> usize {
        let r = self.range(0, 99);
        let (lo, hi) = if r < 10 {
            (4, 7)
        } else if r < 85 {
            (8, 40)
        } else {
            (41, 48)
        };
        self.fit(rem, lo, hi)
            .or_else(|| self.fit(rem, 4, 48))
            .unwrap_or(rem)
    }

    fn branch_defect(&mut self, rem: usize, founders_branch: bool) -> Option<(OrgDefect, usize)> {
        if !self.chance(self.defect_rate) {
            return None;
        }
        let mut options = vec![OrgDefect::SecretaryInvalid, OrgDefect::ParentMissing];
        if !self.cal.safe_months.is_empty() {
            options.push(OrgDefect::MissingMeetings);
        }
        if !founders_branch {
            options.push(OrgDefect::BranchTooSmall);
            options.push(OrgDefect::BranchTooLarge);
        }
        options.push(OrgDefect::CommitteeExpected);
        options.shuffle(&mut self.rng);
        for d in options {
            let size = match d {
                OrgDefect::BranchTooSmall => self.fit(rem, 2, 4),
                OrgDefect::BranchTooLarge => self.fit(rem, 52, 56),
                OrgDefect::CommitteeExpected => self.fit(rem, 10, 30),
                _ => Some(self.normal_size(rem)),
            };
            if let Some(s) = size {
                if !(founders_branch && s < 3) {
                    return Some((d, s));
                }
            }
        }
        None
    }

    fn plan_county(&mut self, index: usize, n: usize, parent: Option<String>) -> County {
        let first = self.cal.first_month().first_day();
        let county_name = {
            let c = t::COUNTIES
                .get(index % t::COUNTIES.len())
                .copied()
                .unwrap_or("长丰县");
            if index >= t::COUNTIES.len() {
                format!("{c}{}", index / t::COUNTIES.len() + 1)
            } else {
                c.to_string()
            }
        };
        let prefix = format!("国网{county_name}供电公司");
        let committee_id = self.new_org_id();
        let est = add_years(first, -(self.range(20, 35) as i32));
        let est = self.date_between(est, add_days(est, 360));
        let committee = self.push_org(OrgRec {
            id: committee_id.clone(),
            name: format!("{prefix}党委"),
            kind: OrgKind::Committee,
            parent_id: parent,
            established: est,
            has_committee: Some(true),
            secretary_id: None,
            dissolved: None,
        });
        let name = self.person_name(Gender::Male);
        self.users.push(UserRec {
            name,
            role: "org_dept",
            org_id: Some(committee_id.clone()),
            member_id: None,
            disabled: false,
        });

        // Branch sizes; the founders' branch (the very first) holds at least three.
        let founders_county = self.founders.is_empty() && index == 0;
        let mut rem = n;
        let mut planned: Vec<(usize, BranchType, Option<OrgDefect>)> = Vec::new();
        if n >= 60 {
            let s = self
                .fit(rem, 15, (n / 8).clamp(15, 40))
                .unwrap_or(rem.min(40));
            planned.push((s, BranchType::Retirees, None));
            rem -= s;
        }
        while rem > 0 {
            let founders_branch = founders_county && planned.is_empty();
            let (size, defect) = match self.branch_defect(rem, founders_branch) {
                Some((d, s)) => (s, Some(d)),
                None => (self.normal_size(rem), None),
            };
            let size = size.min(rem).max(1);
            let btype = if self.chance(0.4) {
                BranchType::Station
            } else {
                BranchType::Department
            };
            planned.push((size, btype, defect));
            rem -= size;
        }

        // Group departmental branches into general branches (党总支) now and then.
        let mut county = County {
            committee,
            generals: Vec::new(),
            branches: Vec::new(),
            dissolved: None,
            moved_to_dissolved: 0,
            branch_ids: Vec::new(),
        };
        let mut i = 0;
        let mut dept_cursor = self.range(0, t::DEPARTMENTS.len() as i64 - 1) as usize;
        let mut town_cursor = self.range(0, t::TOWNS.len() as i64 - 1) as usize;
        let dept_name = |k: &mut usize| {
            let d = t::DEPARTMENTS
                .get(*k % t::DEPARTMENTS.len())
                .copied()
                .unwrap_or("办公室");
            let round = *k / t::DEPARTMENTS.len();
            *k += 1;
            if round > 0 {
                format!("{d}（{}）", ordinal(round + 1))
            } else {
                d.to_string()
            }
        };
        while i < planned.len() {
            let group = if planned.len() - i >= 3
                && planned.get(i).map(|p| p.1) != Some(BranchType::Retirees)
                && self.chance(0.3)
            {
                (self.range(3, 6) as usize).min(planned.len() - i)
            } else {
                0
            };
            if group >= 3 {
                let dept = dept_name(&mut dept_cursor);
                let gid = self.new_org_id();
                let est = self.date_between(add_years(first, -25), add_years(first, -8));
                let g_defect = if self.chance(self.defect_rate) {
                    Some(if self.chance(0.5) {
                        OrgDefect::ParentMissing
                    } else {
                        OrgDefect::Cycle
                    })
                } else {
                    None
                };
                let parent_id = match g_defect {
                    Some(OrgDefect::ParentMissing) => Some(self.missing_org_id()),
                    _ => Some(committee_id.clone()),
                };
                let g = self.push_org(OrgRec {
                    id: gid.clone(),
                    name: format!("{prefix}{dept}党总支"),
                    kind: OrgKind::GeneralBranch,
                    parent_id,
                    established: est,
                    has_committee: Some(true),
                    secretary_id: None,
                    dissolved: None,
                });
                county.generals.push((g, g_defect));
                if let Some(d) = g_defect {
                    *self.defects.entry(d.name()).or_insert(0) += 1;
                    if d == OrgDefect::ParentMissing {
                        self.finding("org.parent_missing", format!("org/{gid}"));
                    }
                }
                for k in 0..group {
                    if let Some((size, _, defect)) = planned.get(i + k).cloned() {
                        let name = format!("{prefix}{dept}第{}党支部", ordinal(k + 1));
                        let org = self.new_branch_org(name, &gid, defect);
                        county
                            .branch_ids
                            .push(self.orgs.get(org).map(|o| o.id.clone()).unwrap_or_default());
                        county.branches.push(BranchPlan {
                            org,
                            size,
                            btype: BranchType::Department,
                            defect,
                        });
                    }
                }
                i += group;
            } else if let Some((size, btype, defect)) = planned.get(i).cloned() {
                let name = match btype {
                    BranchType::Retirees => format!("{prefix}离退休党支部"),
                    BranchType::Station => {
                        let town = t::TOWNS
                            .get(town_cursor % t::TOWNS.len())
                            .copied()
                            .unwrap_or("城关");
                        let round = town_cursor / t::TOWNS.len();
                        town_cursor += 1;
                        if round > 0 {
                            format!("{prefix}{town}供电所第{}党支部", ordinal(round + 1))
                        } else {
                            format!("{prefix}{town}供电所党支部")
                        }
                    }
                    BranchType::Department => {
                        format!("{prefix}{}党支部", dept_name(&mut dept_cursor))
                    }
                };
                let org = self.new_branch_org(name, &committee_id, defect);
                county
                    .branch_ids
                    .push(self.orgs.get(org).map(|o| o.id.clone()).unwrap_or_default());
                county.branches.push(BranchPlan {
                    org,
                    size,
                    btype,
                    defect,
                });
                i += 1;
            } else {
                break;
            }
        }

        // Cycles among general branches: pair with a later sound general branch, else itself.
        let generals = county.generals.clone();
        let mut paired: BTreeSet<usize> = BTreeSet::new();
        for (gi, &(g, defect)) in generals.iter().enumerate() {
            if paired.contains(&g) || defect != Some(OrgDefect::Cycle) {
                continue;
            }
            let partner = generals
                .iter()
                .skip(gi + 1)
                .find(|(h, d)| !paired.contains(h) && d.is_none())
                .map(|(h, _)| *h);
            let gid = self.orgs.get(g).map(|o| o.id.clone()).unwrap_or_default();
            let mut cycle = vec![gid.clone()];
            if let Some(h) = partner {
                let hid = self.orgs.get(h).map(|o| o.id.clone()).unwrap_or_default();
                if let Some(o) = self.orgs.get_mut(h) {
                    o.parent_id = Some(gid.clone());
                }
                paired.insert(h);
                cycle.push(hid);
            }
            let parent = cycle.last().cloned();
            if let Some(o) = self.orgs.get_mut(g) {
                o.parent_id = parent;
            }
            paired.insert(g);
            for id in cycle {
                self.finding("org.cycle", format!("org/{id}"));
            }
        }

        // A branch dissolved before the span (merged into others); it keeps no members.
        if n >= 60 {
            let id = self.new_org_id();
            let town = self.pick_str(t::TOWNS);
            let est = self.date_between(add_years(first, -25), add_years(first, -15));
            let dissolved = self.date_between(add_days(first, -1500), add_days(first, -200));
            let d = self.push_org(OrgRec {
                id,
                name: format!("{prefix}原{town}供电所党支部"),
                kind: OrgKind::Branch,
                parent_id: Some(committee_id.clone()),
                established: est,
                has_committee: Some(false),
                secretary_id: None,
                dissolved: Some(dissolved),
            });
            county.dissolved = Some(d);
        }
        county
    }
}

impl Gen {
    fn new_branch_org(&mut self, name: String, parent: &str, defect: Option<OrgDefect>) -> usize {
        let first = self.cal.first_month().first_day();
        let id = self.new_org_id();
        let est = self.date_between(add_years(first, -25), add_years(first, -2));
        let parent_id = if defect == Some(OrgDefect::ParentMissing) {
            self.finding("org.parent_missing", format!("org/{id}"));
            self.missing_org_id()
        } else {
            parent.to_string()
        };
        if let Some(d) = defect {
            *self.defects.entry(d.name()).or_insert(0) += 1;
        }
        self.push_org(OrgRec {
            id,
            name,
            kind: OrgKind::Branch,
            parent_id: Some(parent_id),
            established: est,
            has_committee: None,
            secretary_id: None,
            dissolved: None,
        })
    }

    /// Committee meetings (and the committee's quarterly study lecture) of the county's
    /// committee and general branches. No rule judges them; they are realistic data.
    fn write_upper_meetings(&mut self, county: &County) -> Result<(), SynthError> {
        let mut orgs = vec![county.committee];
        orgs.extend(county.generals.iter().map(|(g, _)| *g));
        for (i, org) in orgs.into_iter().enumerate() {
            let id = match self.orgs.get(org) {
                Some(o) => o.id.clone(),
                None => continue,
            };
            let span = self.cal.span.clone();
            for m in span {
                let d = m.day(self.range(1, 10) as u32);
                let n = self.range(5, 9) as u64;
                let topic = self.pick_str(t::TOPICS_COMMITTEE_MEETING);
                self.meeting_row(&id, "committee_meeting", d, n, topic)?;
                if i == 0 && m.quarter_start() == m {
                    let d = m.day(self.range(11, 28) as u32);
                    let n = self.range(12, 30) as u64;
                    let topic = self.pick_str(t::TOPICS_LECTURE);
                    self.meeting_row(&id, "lecture", d, n, topic)?;
                }
            }
        }
        Ok(())
    }

    fn meeting_row(
        &mut self,
        org: &str,
        kind: &str,
        d: NaiveDate,
        n: u64,
        topic: &str,
    ) -> Result<(), SynthError> {
        self.outs
            .meetings
            .s(org)
            .s(kind)
            .date(d)
            .num(n)
            .s(topic)
            .end()
    }

    // ---------------------------------------------------------------- one branch

    fn compose(
        &mut self,
        size: usize,
        btype: BranchType,
        defect: Option<OrgDefect>,
        founders: usize,
    ) -> Vec<Plan> {
        let mut plans: Vec<Plan> = Vec::with_capacity(size);
        for _ in 0..founders.min(size) {
            plans.push(Plan::Founder);
        }
        while plans.len() < size {
            let p = match defect {
                Some(OrgDefect::BranchTooSmall) => {
                    if plans.len() < 2 {
                        Plan::Full
                    } else {
                        Plan::Probationary
                    }
                }
                Some(OrgDefect::BranchTooLarge) => {
                    if self.chance(0.06) {
                        Plan::Probationary
                    } else {
                        Plan::Full
                    }
                }
                _ => {
                    let exit_p = if btype == BranchType::Retirees {
                        0.06
                    } else {
                        0.03
                    };
                    if self.chance(exit_p) {
                        let r = self.range(0, 99);
                        let deceased_share = if btype == BranchType::Retirees {
                            80
                        } else {
                            30
                        };
                        Plan::Exited(if r < deceased_share {
                            Status::Deceased
                        } else if r < 92 {
                            Status::TransferredOut
                        } else {
                            Status::Removed
                        })
                    } else if btype != BranchType::Retirees && self.chance(0.05) {
                        Plan::Probationary
                    } else {
                        Plan::Full
                    }
                }
            };
            plans.push(p);
        }
        // At least three (seven for a committee-expected branch) active full members.
        let need = match defect {
            Some(OrgDefect::BranchTooSmall) => 0,
            Some(OrgDefect::CommitteeExpected) | Some(OrgDefect::BranchTooLarge) => 7,
            _ => 3,
        };
        let mut full = plans
            .iter()
            .filter(|p| matches!(p, Plan::Full | Plan::Founder))
            .count();
        for p in plans.iter_mut() {
            if full >= need {
                break;
            }
            if !matches!(p, Plan::Full | Plan::Founder) {
                *p = Plan::Full;
                full += 1;
            }
        }
        plans
    }

    fn gen_branch(&mut self, county: &mut County, bi: usize) -> Result<(), SynthError> {
        let Some(bp) = county.branches.get(bi).cloned() else {
            return Ok(());
        };
        let org_id = self
            .orgs
            .get(bp.org)
            .map(|o| o.id.clone())
            .unwrap_or_default();
        let founders = if self.founders.is_empty() { 3 } else { 0 };
        let plans = self.compose(bp.size, bp.btype, bp.defect, founders);
        let mut ms: Vec<Member> = Vec::with_capacity(plans.len());
        for p in plans {
            let m = self.gen_member(bp.btype, p, &org_id);
            ms.push(m);
        }
        // Oldest first (founders lead); ids in that order.
        ms.sort_by(|a, b| {
            b.founder
                .cmp(&a.founder)
                .then(a.admission.cmp(&b.admission))
        });
        for m in ms.iter_mut() {
            m.id = self.new_member_id();
        }
        if founders > 0 {
            self.founders = ms
                .iter()
                .filter(|m| m.founder)
                .map(|m| m.id.clone())
                .collect();
        }
        self.choose_introducers(&mut ms);

        let dissolved = county
            .dissolved
            .and_then(|d| self.orgs.get(d))
            .map(|o| (o.id.clone(), o.dissolved.unwrap_or(o.established)));
        for k in 0..ms.len() {
            self.clean_transfers(&mut ms, k, &org_id, &county.branch_ids, dissolved.as_ref());
        }

        // Committee and secretary follow the active full members.
        let active_full: Vec<usize> = (0..ms.len())
            .filter(|&k| {
                ms.get(k).is_some_and(|m| {
                    !m.exited() && m.full_on(self.cal.as_of) && m.category == Category::Full
                })
            })
            .collect();
        let has_committee =
            active_full.len() >= 7 && bp.defect != Some(OrgDefect::CommitteeExpected);
        let preferred: Vec<usize> = active_full
            .iter()
            .copied()
            .filter(|&k| {
                ms.get(k).is_some_and(|m| {
                    m.employment == Employment::Employed || m.employment == Employment::Retired
                })
            })
            .collect();
        let pool_sec = if preferred.is_empty() {
            &active_full
        } else {
            &preferred
        };
        let mut secretary = pool_sec
            .choose(&mut self.rng)
            .and_then(|&k| ms.get(k))
            .map(|m| m.id.clone());

        let mut gaps: Vec<MeetingGap> = Vec::new();
        match bp.defect {
            Some(OrgDefect::SecretaryInvalid) => {
                secretary = Some(self.invalid_secretary(&ms));
            }
            Some(OrgDefect::MissingMeetings) => {
                gaps = self.meeting_gaps(has_committee);
                for g in &gaps {
                    let rule = match g.kind {
                        "member_meeting" => "meetings.member_meeting_quarterly",
                        "committee_meeting" => "meetings.committee_meeting_monthly",
                        "theme_day" => "meetings.theme_day_monthly",
                        "org_life" => "meetings.org_life_yearly",
                        "appraisal" => "meetings.appraisal_yearly",
                        _ => "meetings.lecture_quarterly",
                    };
                    self.finding(rule, format!("org/{org_id}"));
                }
            }
            _ => {}
        }
        let ctx = BranchCtx {
            org_id: org_id.clone(),
            has_committee,
            secretary: secretary.clone(),
        };

        self.inject_member_defects(&mut ms, &ctx, county);

        // Branch-local organisation and introducer findings, read from the final records.
        let local = self.local_findings(&ms, &ctx);
        // (`ambiguous` is the guard's internal mark; the guard never lets it stand.)
        for (rule, subject) in local.into_iter().filter(|(r, _)| *r != "ambiguous") {
            self.finding(rule, subject);
        }

        if let Some(o) = self.orgs.get_mut(bp.org) {
            o.has_committee = Some(has_committee);
            o.secretary_id = secretary;
        }
        let active = ms
            .iter()
            .filter(|m| !m.exited() && m.org_id == org_id)
            .count() as u64;
        for k in 0..ms.len() {
            self.write_member(&ms, k)?;
        }
        self.write_branch_meetings(&org_id, has_committee, active, &gaps)?;
        self.finish_branch(&ms, &org_id);
        Ok(())
    }

    fn invalid_secretary(&mut self, ms: &[Member]) -> String {
        let probationary: Vec<&Member> = ms
            .iter()
            .filter(|m| {
                !m.exited() && m.category == Category::Probationary && m.full_date.is_none()
            })
            .collect();
        if let Some(m) = probationary.choose(&mut self.rng) {
            return m.id.clone();
        }
        let exited: Vec<&Member> = ms.iter().filter(|m| m.exited()).collect();
        if let Some(m) = exited.choose(&mut self.rng) {
            return m.id.clone();
        }
        if let Some(id) = self.last_branch_full.clone() {
            return id;
        }
        self.unknown_member_id()
    }

    fn meeting_gaps(&mut self, has_committee: bool) -> Vec<MeetingGap> {
        let mut options: Vec<&'static str> = Vec::new();
        if !self.cal.safe_quarters.is_empty() {
            options.extend(["member_meeting", "lecture"]);
        }
        if !self.cal.safe_months.is_empty() {
            options.push("theme_day");
            if has_committee {
                options.push("committee_meeting");
            }
        }
        if !self.cal.safe_years.is_empty() {
            options.extend(["org_life", "appraisal"]);
        }
        let Some(kind) = options.choose(&mut self.rng).copied() else {
            return Vec::new();
        };
        let (from, to) = match kind {
            "member_meeting" | "lecture" => {
                let q = self
                    .cal
                    .safe_quarters
                    .choose(&mut self.rng)
                    .copied()
                    .unwrap_or(self.cal.last_month());
                (q.first_day(), q.add(2).last_day())
            }
            "org_life" | "appraisal" => {
                let y = self
                    .cal
                    .safe_years
                    .choose(&mut self.rng)
                    .copied()
                    .unwrap_or(self.cal.as_of.year() - 1);
                (ymd(y, 1, 1), ymd(y, 12, 31))
            }
            _ => {
                let m = self
                    .cal
                    .safe_months
                    .choose(&mut self.rng)
                    .copied()
                    .unwrap_or(self.cal.last_month());
                (m.first_day(), m.last_day())
            }
        };
        vec![MeetingGap { kind, from, to }]
    }

    fn write_branch_meetings(
        &mut self,
        org_id: &str,
        has_committee: bool,
        active: u64,
        gaps: &[MeetingGap],
    ) -> Result<(), SynthError> {
        let mut list: Vec<(NaiveDate, &'static str, u64, &'static str)> = Vec::new();
        let span = self.cal.span.clone();
        let present = |rng: &mut ChaCha8Rng| -> u64 {
            let share: f64 = rng.gen_range(0.75..=1.0);
            ((active as f64 * share).ceil() as u64).max(1)
        };
        for &m in &span {
            let d = m.day(self.range(5, 28) as u32);
            let n = present(&mut self.rng);
            list.push((d, "theme_day", n, self.pick_str(t::TOPICS_THEME_DAY)));
            if has_committee {
                let d = m.day(self.range(1, 10) as u32);
                let n = self.range(3, 5) as u64;
                list.push((
                    d,
                    "committee_meeting",
                    n,
                    self.pick_str(t::TOPICS_COMMITTEE_MEETING),
                ));
            }
            if active >= 15 {
                let d = m.day(self.range(11, 26) as u32);
                let n = self.range(4, 10) as u64;
                list.push((
                    d,
                    "group_meeting",
                    n,
                    self.pick_str(t::TOPICS_GROUP_MEETING),
                ));
            }
            // Quarterly meetings in the quarter's last month inside the span.
            let q_last = m.quarter_start().add(2);
            if m == q_last || m == self.cal.last_month() {
                let d = m.day(self.range(10, 28) as u32);
                let n = present(&mut self.rng);
                list.push((
                    d,
                    "member_meeting",
                    n,
                    self.pick_str(t::TOPICS_MEMBER_MEETING),
                ));
                let first_in_q = if self.cal.in_span(m.quarter_start()) {
                    m.quarter_start()
                } else {
                    self.cal.first_month()
                };
                let lm = first_in_q.add(self.range(0, first_in_q.until(m) as i64) as i32);
                let d = lm.day(self.range(5, 28) as u32);
                let n = present(&mut self.rng);
                list.push((d, "lecture", n, self.pick_str(t::TOPICS_LECTURE)));
            }
            if m.month() == 12 {
                let d = m.day(self.range(15, 28) as u32);
                let n = present(&mut self.rng);
                list.push((d, "org_life", n, self.pick_str(t::TOPICS_ORG_LIFE)));
                let d = m.day(self.range(15, 28) as u32);
                let n = present(&mut self.rng);
                list.push((d, "appraisal", n, self.pick_str(t::TOPICS_APPRAISAL)));
            }
        }
        list.retain(|(d, kind, _, _)| {
            !gaps
                .iter()
                .any(|g| g.kind == *kind && *d >= g.from && *d <= g.to)
        });
        list.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(b.1)));
        for (d, kind, n, topic) in list {
            self.meeting_row(org_id, kind, d, n, topic)?;
        }
        Ok(())
    }

    fn finish_branch(&mut self, ms: &[Member], org_id: &str) {
        // Introducers for later branches: sound full members of this one.
        let sound: Vec<&Member> = ms
            .iter()
            .filter(|m| {
                m.defect.is_none()
                    && !m.founder
                    && m.category == Category::Full
                    && m.org_id == org_id
            })
            .collect();
        for m in sound.iter().take(3) {
            let from = m.full_date.unwrap_or(NaiveDate::MIN);
            if self.pool.len() < 2048 {
                self.pool.push((m.id.clone(), from));
            } else {
                let slot = self.range(0, self.pool.len() as i64 - 1) as usize;
                if let Some(e) = self.pool.get_mut(slot) {
                    *e = (m.id.clone(), from);
                }
            }
        }
        if let Some(m) = sound
            .iter()
            .find(|m| !m.exited() && m.full_on(self.cal.as_of))
        {
            self.last_branch_full = Some(m.id.clone());
        }
        // Users: the branch's data provider and some members.
        let name = self.person_name(Gender::Female);
        self.users.push(UserRec {
            name,
            role: "provider",
            org_id: Some(org_id.to_string()),
            member_id: None,
            disabled: false,
        });
        let first_branch = self.users.iter().all(|u| u.role != "member");
        for (i, m) in ms.iter().enumerate() {
            if m.exited() {
                continue;
            }
            if (first_branch && i == 0) || self.chance(0.05) {
                let disabled = self.chance(0.02);
                self.users.push(UserRec {
                    name: m.name.clone().unwrap_or_else(|| "未署名".to_string()),
                    role: "member",
                    org_id: Some(m.org_id.clone()),
                    member_id: Some(m.id.clone()),
                    disabled,
                });
            }
        }
    }
}

impl Gen {
    // ---------------------------------------------------------------- one member

    fn employment_for(&mut self, btype: BranchType, plan: Plan) -> Employment {
        if plan == Plan::Founder {
            return Employment::Retired;
        }
        if plan == Plan::Exited(Status::Deceased) && self.chance(0.85) {
            return Employment::Retired;
        }
        let r = self.range(0, 999);
        let e = match btype {
            BranchType::Retirees => {
                if r < 970 {
                    Employment::Retired
                } else {
                    Employment::Unemployed
                }
            }
            BranchType::Station => {
                if r < 800 {
                    Employment::Employed
                } else if r < 950 {
                    Employment::Farmer
                } else if r < 980 {
                    Employment::Retired
                } else {
                    Employment::Unemployed
                }
            }
            BranchType::Department => {
                if r < 950 {
                    Employment::Employed
                } else if r < 970 {
                    Employment::Retired
                } else if r < 985 {
                    Employment::Student
                } else {
                    Employment::Unemployed
                }
            }
        };
        if plan == Plan::Probationary && e == Employment::Retired {
            Employment::Employed
        } else {
            e
        }
    }

    fn age_for(&mut self, e: Employment, plan: Plan) -> i32 {
        let (lo, hi) = match (plan, e) {
            (Plan::Founder, _) => (82, 88),
            (Plan::Probationary, Employment::Student) => (23, 26),
            (Plan::Probationary, _) => (23, 40),
            (_, Employment::Employed) => (24, 59),
            (_, Employment::Retired) => (60, 88),
            (_, Employment::Student) => (24, 28),
            (_, Employment::Unemployed) => (25, 58),
            (_, Employment::Farmer) => (26, 59),
        };
        self.range(lo, hi) as i32
    }

    fn income_for(&mut self, e: Employment) -> Option<i64> {
        let yuan = match e {
            Employment::Employed => {
                let r = self.range(0, 99);
                match r {
                    0..=5 => self.range(2_500, 3_000),
                    6..=7 => 3_000,
                    8..=34 => self.range(3_001, 5_000),
                    35..=36 => 5_000,
                    37..=84 => self.range(5_001, 10_000),
                    85..=86 => 10_000,
                    _ => self.range(10_001, 18_000),
                }
            }
            Employment::Retired => {
                let r = self.range(0, 99);
                match r {
                    0..=44 => self.range(2_200, 5_000),
                    45..=49 => 5_000,
                    _ => self.range(5_001, 9_000),
                }
            }
            _ => return None,
        };
        let cents = if self.chance(0.15) { 50 } else { 0 };
        let exact = matches!(yuan, 3_000 | 5_000 | 10_000);
        Some(yuan * 100 + if exact { 0 } else { cents })
    }

    fn phone_for(&mut self, e: Employment) -> Option<String> {
        let r = self.range(0, 99);
        if r < 3 {
            return None;
        }
        if e == Employment::Retired && r < 28 {
            let code = self.pick_str(t::LANDLINE_CODES);
            let n = self.range(6_000_000, 6_999_999);
            return Some(format!("{code}-{n}{}", self.range(0, 9)));
        }
        let prefix = self.pick_str(t::MOBILE_PREFIXES);
        let rest = self.range(0, 99_999_999) as u32;
        Some(ids::mobile(prefix, rest))
    }

    /// Application, activist and candidate dates before admission `a` that satisfy every rule:
    /// 18 (plus 30 days) at application, more than a year as activist, all in order.
    pub(crate) fn dev_dates(
        &mut self,
        birth: NaiveDate,
        a: NaiveDate,
    ) -> (NaiveDate, NaiveDate, NaiveDate) {
        let c = add_days(a, -self.range(30, 240));
        let mut v = add_days(add_months(c, -12), -self.range(5, 200));
        while add_months(v, 12) >= c {
            v = add_days(v, -3);
        }
        let p_min = add_days(add_years(birth, 18), 30);
        let mut p = add_days(v, -self.range(14, 240));
        if p < p_min {
            p = add_days(p_min, self.range(0, 20)).min(v);
        }
        (p, v, c)
    }

    fn gen_member(&mut self, btype: BranchType, plan: Plan, org_id: &str) -> Member {
        let as_of = self.cal.as_of;
        let employment = self.employment_for(btype, plan);
        let age = self.age_for(employment, plan);
        let birth = self.date_between(
            add_days(add_years(as_of, -(age + 1)), 1),
            add_years(as_of, -age),
        );
        let male_share = match (btype, employment) {
            (_, Employment::Farmer) => 0.85,
            (BranchType::Station, _) => 0.8,
            (BranchType::Retirees, _) => 0.65,
            _ => 0.68,
        };
        let gender = if self.chance(male_share) {
            Gender::Male
        } else {
            Gender::Female
        };
        let name = self.person_name(gender);
        let ethnicity = self.weighted(t::ETHNICITIES);
        let education = if employment == Employment::Retired {
            self.weighted(t::EDUCATION_RETIRED)
        } else {
            self.weighted(t::EDUCATION_WORKING)
        };

        // Admission, probation and full membership.
        let earliest = add_days(add_years(birth, 21), self.range(1, 200));
        let mut ext: Option<u32> = None;
        let admission;
        let mut category = Category::Full;
        let mut full_date = None;
        match plan {
            Plan::Founder => {
                admission = add_days(add_years(birth, 22), self.range(0, 1500));
            }
            Plan::Probationary => {
                category = Category::Probationary;
                let lo;
                let hi;
                if self.chance(0.1) {
                    let e = self.range(6, 12) as i32;
                    ext = Some(e as u32);
                    lo = add_months(add_days(as_of, 10), -(12 + e));
                    hi = add_months(add_days(as_of, -10), -12);
                } else {
                    lo = add_months(add_days(as_of, 10), -12);
                    hi = add_days(as_of, -10);
                }
                let mut a = self.date_between(lo.max(earliest), hi);
                while add_months(a, 12 + ext.unwrap_or(0) as i32) <= add_days(as_of, 3) {
                    a = add_days(a, 5);
                }
                admission = a;
            }
            Plan::Full | Plan::Exited(_) => {
                let r = self.range(0, 99);
                if r < 2 {
                    ext = Some(self.range(6, 12) as u32);
                } else if r < 12 {
                    ext = Some(0);
                }
                let n = 12 + ext.unwrap_or(0) as i32;
                let latest = add_months(add_days(as_of, -10), -n).min(add_years(birth, 55));
                let latest = latest.max(earliest);
                let a = if self.chance(0.2) {
                    let lo = add_years(latest, -4).max(earliest);
                    self.date_between(lo, latest)
                } else {
                    let u: f64 = self.rng.gen_range(0.0..1.0);
                    let span = days_between(earliest, latest).max(0) as f64;
                    add_days(earliest, (span * u.powf(1.5)) as i64)
                };
                admission = a;
                let f = add_months(a, n);
                full_date = Some(f);
            }
        }
        let legacy_cutoff = ymd(1985, 1, 1);
        if plan == Plan::Founder
            || (full_date.is_some() && admission < legacy_cutoff && self.chance(0.4))
        {
            full_date = None; // full since long ago, date not on record
        }
        let (application, activist, candidate) = self.dev_dates(birth, admission);

        // Exit.
        let mut status = Status::Active;
        let mut status_date = None;
        if let Plan::Exited(s) = plan {
            let became_full = full_date.unwrap_or(admission).max(admission);
            let lower = add_months(became_full, 1);
            let upper = add_days(as_of, -3);
            if lower < upper {
                let span_start = self.cal.first_month().first_day();
                let d = if self.chance(0.5) && span_start.max(lower) < upper {
                    self.date_between(span_start.max(lower), upper)
                } else {
                    self.date_between(lower, upper)
                };
                status = s;
                status_date = Some(d);
            }
        }

        // ID number: unique 17-digit body, sequence parity by gender.
        let (area, seq) = loop {
            let area = t::AREA_CODES
                .choose(&mut self.rng)
                .copied()
                .unwrap_or(110101);
            let half = self.range(1, 499) as u32;
            let seq = if gender == Gender::Male {
                half * 2 + 1
            } else {
                half * 2
            };
            if self.id_bodies.insert(ids::body(area, birth, seq)) {
                break (area, seq);
            }
        };
        let id_number = Some(ids::id18(area, birth, seq));
        let phone = self.phone_for(employment);
        let income = self.income_for(employment);
        let raise = match income {
            Some(inc)
                if employment == Employment::Employed
                    && self.cal.span.len() > 1
                    && self.chance(0.25) =>
            {
                let i = self.range(1, self.cal.span.len() as i64 - 1) as usize;
                let from = self.cal.span.get(i).copied();
                let old = (inc - self.range(100, 1_500) * 100).max(200_000);
                from.filter(|_| old < inc).map(|f| (f, old))
            }
            _ => None,
        };
        let farmer_fee = *[20i64, 50, 100].choose(&mut self.rng).unwrap_or(&20);
        let quarterly = status == Status::Active
            && matches!(employment, Employment::Employed | Employment::Retired)
            && self.chance(0.08);
        Member {
            id: String::new(),
            name: Some(name),
            gender,
            ethnicity,
            birth,
            area,
            seq,
            id_number,
            id_clean: true,
            phone,
            education,
            org_id: org_id.to_string(),
            category,
            status,
            status_date,
            application: Some(application),
            activist: Some(activist),
            candidate: Some(candidate),
            admission,
            full_date,
            ext,
            introducers: Vec::new(),
            employment,
            income,
            raise,
            farmer_fee,
            quarterly,
            transfers: Vec::new(),
            dues: DuesMods::default(),
            defect: None,
            founder: plan == Plan::Founder,
            dup_source: false,
        }
    }

    /// Two distinct introducers who were full members before the admission date: earlier
    /// members of the branch first, then members of finished branches, then the founders.
    fn choose_introducers(&mut self, ms: &mut [Member]) {
        let founders = self.founders.clone();
        for k in 0..ms.len() {
            let Some(me) = ms.get(k) else { continue };
            let (a, my_id) = (me.admission, me.id.clone());
            if me.founder {
                let intro: Vec<String> = founders
                    .iter()
                    .filter(|f| **f != my_id)
                    .take(2)
                    .cloned()
                    .collect();
                if let Some(m) = ms.get_mut(k) {
                    m.introducers = intro;
                }
                continue;
            }
            let mut local: Vec<String> = ms
                .iter()
                .take(k)
                .filter(|j| match j.full_date {
                    Some(f) => f < a,
                    None => j.category == Category::Full,
                })
                .map(|j| j.id.clone())
                .collect();
            local.shuffle(&mut self.rng);
            let mut chosen: Vec<String> = local.into_iter().take(2).collect();
            let mut tries = 0;
            while chosen.len() < 2 && tries < 40 && !self.pool.is_empty() {
                tries += 1;
                let slot = self.range(0, self.pool.len() as i64 - 1) as usize;
                if let Some((id, from)) = self.pool.get(slot) {
                    if *from < a && !chosen.contains(id) {
                        chosen.push(id.clone());
                    }
                }
            }
            let mut fs = founders.clone();
            fs.shuffle(&mut self.rng);
            for f in fs {
                if chosen.len() >= 2 {
                    break;
                }
                if !chosen.contains(&f) {
                    chosen.push(f);
                }
            }
            if let Some(m) = ms.get_mut(k) {
                m.introducers = chosen;
            }
        }
    }

    /// Transfers consistent with the member's org: a few moved in from another branch (some
    /// in two steps), members of the dissolved branch moved at its dissolution, and one
    /// transfer out for each transferred-out member.
    fn clean_transfers(
        &mut self,
        ms: &mut [Member],
        k: usize,
        org_id: &str,
        branches: &[String],
        dissolved: Option<&(String, NaiveDate)>,
    ) {
        let Some(m) = ms.get(k) else { return };
        let (a, status, s) = (m.admission, m.status, m.status_date);
        let end = match (status, s) {
            (Status::Active, _) | (_, None) => add_days(self.cal.as_of, -10),
            (_, Some(s)) => add_days(s, -10),
        };
        let lo = add_days(a, 30);
        let others: Vec<&String> = branches.iter().filter(|b| b.as_str() != org_id).collect();
        let mut list: Vec<Transfer> = Vec::new();
        let other = |g: &mut Gen| -> Option<String> {
            if others.is_empty() || g.chance(0.3) {
                None
            } else {
                others.choose(&mut g.rng).map(|s| (*s).clone())
            }
        };
        if let Some((did, dd)) = dissolved {
            if *dd > lo && *dd < end && status == Status::Active && self.chance(0.05) {
                list.push(Transfer {
                    from: Some(did.clone()),
                    to: Some(org_id.to_string()),
                    date: *dd,
                });
            }
        }
        if list.is_empty() && lo < end && self.chance(0.03) {
            let d2 = self.date_between(lo, end);
            if self.chance(0.2) && add_days(lo, 2) < d2 {
                let d1 = self.date_between(lo, add_days(d2, -1));
                let via =
                    other(self).unwrap_or_else(|| branches.first().cloned().unwrap_or_default());
                if via != org_id {
                    let from = other(self).filter(|f| *f != via);
                    list.push(Transfer {
                        from,
                        to: Some(via.clone()),
                        date: d1,
                    });
                    list.push(Transfer {
                        from: Some(via),
                        to: Some(org_id.to_string()),
                        date: d2,
                    });
                }
            } else {
                let from = other(self);
                list.push(Transfer {
                    from,
                    to: Some(org_id.to_string()),
                    date: d2,
                });
            }
        }
        if let (Status::TransferredOut, Some(s)) = (status, s) {
            list.retain(|t| t.date < s);
            list.push(Transfer {
                from: Some(org_id.to_string()),
                to: None,
                date: s,
            });
        }
        if let Some(m) = ms.get_mut(k) {
            m.transfers = list;
        }
    }

    // ---------------------------------------------------------------- writing one member

    fn paid_date(&mut self, m: &Member, month: Month) -> NaiveDate {
        let as_of = self.cal.as_of;
        let mut d = if m.quarterly {
            let q = month.quarter_start().add(2).day(20);
            if q < as_of {
                q
            } else {
                month.day(self.range(1, 25) as u32)
            }
        } else {
            month.day(self.range(1, 25) as u32)
        };
        if Month::of(m.admission) == month && d < m.admission {
            d = m.admission;
        }
        if let (true, Some(s)) = (m.exited(), m.status_date) {
            if Month::of(s) == month && d > s {
                d = s.max(month.first_day());
            }
        }
        d
    }

    fn write_member(&mut self, ms: &[Member], k: usize) -> Result<(), SynthError> {
        let Some(m) = ms.get(k) else { return Ok(()) };
        let w = &mut self.outs.members;
        w.s(&m.id)
            .opt(m.name.as_deref())
            .s(m.gender.as_str())
            .s(m.ethnicity)
            .date(m.birth)
            .opt(m.id_number.as_deref())
            .opt(m.phone.as_deref())
            .s(m.education)
            .s(&m.org_id)
            .s(m.category.as_str())
            .s(m.status.as_str())
            .opt_date(m.status_date)
            .opt_date(m.application)
            .opt_date(m.activist)
            .opt_date(m.candidate)
            .date(m.admission)
            .opt_date(m.full_date);
        match m.ext {
            Some(e) => w.num(e as u64),
            None => w.s(""),
        };
        w.s(&m.introducers.join(";"))
            .s(m.employment.as_str())
            .opt_money(m.income)
            .end()?;

        for t in &m.transfers {
            self.outs
                .transfers
                .s(&m.id)
                .opt(t.from.as_deref())
                .opt(t.to.as_deref())
                .date(t.date)
                .end()?;
        }

        let with_base = matches!(m.employment, Employment::Employed | Employment::Retired);
        let span = self.cal.span.clone();
        for month in span {
            if !m.dues_expected(month) || m.dues.skip.contains(&month) {
                continue;
            }
            let base = if with_base { m.base_for(month) } else { None };
            let amount = if m.dues.wrong.contains(&month) {
                wrong_dues_amount(m.employment, base, m.farmer_fee)
            } else {
                dues_amount(m.employment, base, m.farmer_fee)
            };
            let mut paid = self.paid_date(m, month);
            if let Some((pm, pd)) = m.dues.paid_on {
                if pm == month {
                    paid = pd;
                }
            }
            let times = if m.dues.dup.contains(&month) { 2 } else { 1 };
            for _ in 0..times {
                self.dues_row(&m.id, month, base, amount, paid)?;
            }
        }
        if let Some((month, paid)) = m.dues.extra {
            let base = if with_base { m.base_for(month) } else { None };
            let amount = dues_amount(m.employment, base, m.farmer_fee);
            self.dues_row(&m.id, month, base, amount, paid)?;
        }
        Ok(())
    }

    fn dues_row(
        &mut self,
        id: &str,
        month: Month,
        base: Option<i64>,
        amount: i64,
        paid: NaiveDate,
    ) -> Result<(), SynthError> {
        use std::fmt::Write as _;
        let mut ms = String::with_capacity(7);
        let _ = write!(ms, "{month}");
        self.outs
            .dues
            .s(id)
            .s(&ms)
            .opt_money(base)
            .money(amount)
            .date(paid)
            .end()
    }

    // ---------------------------------------------------------------- finishing

    /// Writes orgs.csv, users.csv and expected_findings.json and returns the counts.
    pub(crate) fn finish(mut self, dir: &Path) -> Result<SynthSummary, SynthError> {
        let mut orgs = Csv::create(dir, "orgs.csv", out::ORGS_HEADER)?;
        for o in &self.orgs {
            orgs.s(&o.id)
                .s(&o.name)
                .s(o.kind.as_str())
                .opt(o.parent_id.as_deref())
                .date(o.established);
            match o.has_committee {
                Some(b) => orgs.boolean(b),
                None => orgs.s(""),
            };
            orgs.opt(o.secretary_id.as_deref())
                .opt_date(o.dissolved)
                .end()?;
        }

        // Administrators at the top organisation, then everyone else in creation order.
        let root = self.orgs.first().map(|o| o.id.clone());
        let mut users: Vec<UserRec> = Vec::new();
        for role in [
            "sysadmin",
            "sysadmin",
            "security_admin",
            "auditor",
            "auditor",
        ] {
            let g = if self.chance(0.5) {
                Gender::Male
            } else {
                Gender::Female
            };
            let name = self.person_name(g);
            users.push(UserRec {
                name,
                role,
                org_id: root.clone(),
                member_id: None,
                disabled: false,
            });
        }
        users.append(&mut self.users);
        let width = digits(users.len() as u64).max(4);
        let mut uw = Csv::create(dir, "users.csv", out::USERS_HEADER)?;
        for (i, u) in users.iter().enumerate() {
            uw.s(&format!("U{:0width$}", i + 1))
                .s(&u.name)
                .s(u.role)
                .opt(u.org_id.as_deref())
                .opt(u.member_id.as_deref())
                .boolean(u.disabled)
                .end()?;
        }

        let mut findings = std::mem::take(&mut self.findings);
        findings.sort();
        findings.dedup();
        out::write_findings(dir, self.cal.as_of, &findings)?;

        let members = self.outs.members.rows();
        let summary = SynthSummary {
            orgs: orgs.finish()?,
            members,
            dues: self.outs.dues.rows(),
            meetings: self.outs.meetings.rows(),
            transfers: self.outs.transfers.rows(),
            users: uw.finish()?,
            findings: findings.len() as u64,
            defects: self
                .defects
                .iter()
                .map(|(k, v)| ((*k).to_string(), *v))
                .collect(),
        };
        self.outs.members.finish()?;
        self.outs.dues.finish()?;
        self.outs.meetings.finish()?;
        self.outs.transfers.finish()?;
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::ordinal;

    #[test]
    fn chinese_ordinals() {
        assert_eq!(ordinal(1), "一");
        assert_eq!(ordinal(10), "十");
        assert_eq!(ordinal(12), "十二");
        assert_eq!(ordinal(20), "二十");
        assert_eq!(ordinal(47), "四十七");
    }
}
