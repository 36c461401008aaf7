//! Member defect injection. Each defective member gets exactly one defect class, chosen at
//! random among the classes that apply to it. A change is kept only if the branch-local
//! rules (organisation size, committee, secretary, introducers) change exactly as intended,
//! so that a defect yields the findings it declares and no other; the rules a change cannot
//! touch are argued per class below. It never writes files.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Datelike, NaiveDate};
use rand::seq::SliceRandom;

use super::cal::{add_days, add_months, add_years, Month};
use super::gen::{BranchCtx, County, Gen};
use super::ids;
use super::model::{Category, Member, MemberDefect, Status, Transfer};

/// Rules the local guard evaluates; a defect's intended findings of these rules must be
/// exactly what the guard sees change.
const LOCAL_RULES: [&str; 6] = [
    "org.branch_too_small",
    "org.branch_too_large",
    "org.committee_expected",
    "org.secretary_invalid",
    "development.introducers_count",
    "development.introducer_not_full",
];

type Finding = (&'static str, String);

fn subject(m: &Member) -> String {
    format!("member/{}", m.id)
}

impl Gen {
    pub(crate) fn inject_member_defects(
        &mut self,
        ms: &mut [Member],
        ctx: &BranchCtx,
        county: &mut County,
    ) {
        for k in 0..ms.len() {
            if ms.get(k).is_none_or(|m| m.founder) || !self.chance_defect() {
                continue;
            }
            let mut classes = MemberDefect::ALL.to_vec();
            classes.shuffle(&mut self.rng);
            // Few members are deceased or removed: give them the one class only they can
            // carry more often, so that it shows up in modest data sets.
            let exit_class = ms
                .get(k)
                .is_some_and(|m| matches!(m.status, Status::Deceased | Status::Removed));
            if exit_class && self.chance(0.5) {
                classes.retain(|c| *c != MemberDefect::ActivityAfterExit);
                classes.insert(0, MemberDefect::ActivityAfterExit);
            }
            let before = self.local_findings(ms, ctx);
            for class in classes {
                if let Some(found) = self.try_defect(class, ms, k, ctx, county, &before) {
                    if let Some(m) = ms.get_mut(k) {
                        m.defect = Some(class);
                    }
                    *self.defects.entry(class.name()).or_insert(0) += 1;
                    for (rule, subject) in found {
                        self.finding(rule, subject);
                    }
                    break;
                }
            }
        }
    }

    /// Applies `class` to member `k` if it applies and its local effects are exactly the
    /// intended ones; otherwise restores the branch and returns `None`. Only member `k` and
    /// the duplicate-source marks of others are ever changed, so only they are saved.
    fn try_defect(
        &mut self,
        class: MemberDefect,
        ms: &mut [Member],
        k: usize,
        ctx: &BranchCtx,
        county: &mut County,
        before: &BTreeSet<Finding>,
    ) -> Option<Vec<Finding>> {
        let saved = ms.get(k)?.clone();
        let saved_marks: Vec<bool> = ms.iter().map(|m| m.dup_source).collect();
        let saved_moved = county.moved_to_dissolved;
        let intended = self.apply(class, ms, k, ctx, county);
        let ok = match &intended {
            None => false,
            Some(found) => {
                let after = self.local_findings(ms, ctx);
                let expected_local: BTreeSet<Finding> = found
                    .iter()
                    .filter(|(r, _)| LOCAL_RULES.contains(r))
                    .cloned()
                    .collect();
                let added: BTreeSet<Finding> = after.difference(before).cloned().collect();
                before.is_subset(&after) && added == expected_local
            }
        };
        if ok {
            intended
        } else {
            if let Some(m) = ms.get_mut(k) {
                *m = saved;
            }
            for (m, mark) in ms.iter_mut().zip(saved_marks) {
                m.dup_source = mark;
            }
            county.moved_to_dissolved = saved_moved;
            None
        }
    }

    fn chance_defect(&mut self) -> bool {
        let p = self.defect_rate;
        self.chance(p)
    }

    /// Branch-local findings: organisation rules under both readings of "full member"
    /// (by category, and by docs/RULES.md's date definition) — a disagreement is reported
    /// as `ambiguous` — and the introducer rules of every member of the branch.
    pub(crate) fn local_findings(&self, ms: &[Member], ctx: &BranchCtx) -> BTreeSet<Finding> {
        let as_of = self.cal.as_of;
        let mut out = BTreeSet::new();
        let org_subject = format!("org/{}", ctx.org_id);
        let mut readings: Vec<BTreeSet<&'static str>> = Vec::new();
        for by_category in [true, false] {
            let full = |m: &Member| {
                if by_category {
                    m.category == Category::Full
                } else {
                    m.full_on(as_of)
                }
            };
            let active: Vec<&Member> = ms
                .iter()
                .filter(|m| m.org_id == ctx.org_id && m.status == Status::Active)
                .collect();
            let n_full = active.iter().filter(|m| full(m)).count();
            let mut set = BTreeSet::new();
            if n_full < 3 {
                set.insert("org.branch_too_small");
            }
            if active.len() > 50 {
                set.insert("org.branch_too_large");
            }
            if n_full >= 7 && !ctx.has_committee {
                set.insert("org.committee_expected");
            }
            if let Some(sec) = &ctx.secretary {
                if !active.iter().any(|m| &m.id == sec && full(m)) {
                    set.insert("org.secretary_invalid");
                }
            }
            readings.push(set);
        }
        if readings.first() != readings.get(1) {
            out.insert(("ambiguous", org_subject.clone()));
        }
        for set in readings {
            for rule in set {
                out.insert((rule, org_subject.clone()));
            }
        }
        let by_id: BTreeMap<&str, &Member> = ms.iter().map(|m| (m.id.as_str(), m)).collect();
        for m in ms {
            let intro = &m.introducers;
            let distinct: BTreeSet<&String> = intro.iter().collect();
            if intro.len() != 2 || distinct.len() != 2 || intro.contains(&m.id) {
                out.insert(("development.introducers_count", subject(m)));
            }
            let not_full = intro.iter().any(|id| {
                by_id
                    .get(id.as_str())
                    .is_some_and(|j| !j.full_on(m.admission))
            });
            if not_full {
                out.insert(("development.introducer_not_full", subject(m)));
            }
        }
        out
    }

    /// Months of `m` that are surely judged, expected and paid.
    fn safe_paid_months(&self, m: &Member) -> Vec<Month> {
        self.cal
            .safe_months
            .iter()
            .copied()
            .filter(|mo| m.dues_expected(*mo) && !m.dues.skip.contains(mo))
            .collect()
    }

    fn other_branches(county: &County, org_id: &str) -> Vec<String> {
        county
            .branch_ids
            .iter()
            .filter(|b| b.as_str() != org_id)
            .cloned()
            .collect()
    }

    /// Makes the change of `class` on member `k` and returns the findings it must produce,
    /// or `None` when the class does not apply to this member.
    fn apply(
        &mut self,
        class: MemberDefect,
        ms: &mut [Member],
        k: usize,
        ctx: &BranchCtx,
        county: &mut County,
    ) -> Option<Vec<Finding>> {
        let as_of = self.cal.as_of;
        let me = ms.get(k)?.clone();
        let subj = subject(&me);
        let mut upd = me.clone();
        let found: Vec<Finding> = match class {
            MemberDefect::IdChecksum => {
                if !me.id_clean {
                    return None;
                }
                let pick = self.range(0, 9) as usize;
                upd.id_number = Some(ids::id18_bad_check(me.area, me.birth, me.seq, pick));
                upd.id_clean = false;
                vec![("member.id_checksum", subj)]
            }
            MemberDefect::IdBirthMismatch => {
                if !me.id_clean {
                    return None;
                }
                let mut shown = None;
                for _ in 0..5 {
                    let shift = self.range(1, 40) * if self.chance(0.5) { 1 } else { -1 };
                    let b = add_days(me.birth, shift);
                    if b != me.birth && self.id_bodies.insert(ids::body(me.area, b, me.seq)) {
                        shown = Some(b);
                        break;
                    }
                }
                let b = shown?;
                upd.id_number = Some(ids::id18(me.area, b, me.seq));
                upd.id_clean = false;
                vec![("member.id_birth_mismatch", subj)]
            }
            MemberDefect::IdGenderMismatch => {
                if !me.id_clean {
                    return None;
                }
                let seq = me.seq ^ 1;
                if !self.id_bodies.insert(ids::body(me.area, me.birth, seq)) {
                    return None;
                }
                upd.id_number = Some(ids::id18(me.area, me.birth, seq));
                upd.id_clean = false;
                vec![("member.id_gender_mismatch", subj)]
            }
            MemberDefect::IdDuplicate => {
                // The same person entered twice: this record takes over another's identity.
                if !me.id_clean {
                    return None;
                }
                let sources: Vec<usize> = (0..k)
                    .filter(|&j| {
                        ms.get(j).is_some_and(|s| {
                            s.defect.is_none()
                                && !s.founder
                                && s.id_clean
                                && !s.dup_source
                                && me
                                    .application
                                    .is_none_or(|p| p >= add_days(add_years(s.birth, 18), 30))
                        })
                    })
                    .collect();
                let alike: Vec<usize> = sources
                    .iter()
                    .copied()
                    .filter(|&j| ms.get(j).is_some_and(|s| s.employment == me.employment))
                    .collect();
                let j = *if alike.is_empty() { &sources } else { &alike }.choose(&mut self.rng)?;
                let src = ms.get(j)?.clone();
                upd.name = src.name.clone();
                upd.gender = src.gender;
                upd.birth = src.birth;
                upd.area = src.area;
                upd.seq = src.seq;
                upd.id_number = src.id_number.clone();
                upd.phone = src.phone.clone();
                upd.ethnicity = src.ethnicity;
                upd.id_clean = false;
                if let Some(s) = ms.get_mut(j) {
                    s.dup_source = true;
                }
                vec![
                    ("member.id_duplicate", subj),
                    ("member.id_duplicate", subject(&src)),
                ]
            }
            MemberDefect::IdFormat => {
                // The check character lost: 17 digits.
                if !me.id_clean {
                    return None;
                }
                upd.id_number = me
                    .id_number
                    .as_ref()
                    .map(|id| id.chars().take(17).collect());
                upd.id_clean = false;
                vec![("member.id_format", subj)]
            }
            MemberDefect::IdLegacy => {
                if !me.id_clean || !(1900..=1999).contains(&me.birth.year()) {
                    return None;
                }
                upd.id_number = Some(ids::id15(me.area, me.birth, me.seq));
                upd.id_clean = false;
                vec![("member.id_legacy", subj)]
            }
            MemberDefect::PhoneFormat => {
                let prefix = ["138", "139", "186", "155"]
                    .choose(&mut self.rng)
                    .copied()
                    .unwrap_or("138");
                let n = self.range(0, 9_999_999);
                upd.phone = Some(match self.range(0, 3) {
                    0 => format!("{prefix}{n:07}"),                   // ten digits
                    1 => format!("12{n:07}{:02}", self.range(0, 99)), // no such prefix
                    2 => format!("{prefix} {:04} {:04}", n / 1000, n % 10_000), // spaces
                    _ => format!("551-6{n:07}"),                      // area code without 0
                });
                vec![("member.phone_format", subj)]
            }
            MemberDefect::MissingField => {
                if me.name.is_some() && (me.id_number.is_none() || self.chance(0.5)) {
                    upd.name = None;
                } else if me.id_number.is_some() {
                    upd.id_number = None;
                    upd.id_clean = false;
                } else {
                    return None;
                }
                vec![("member.required_fields", subj)]
            }
            MemberDefect::OrgDissolved => {
                let d = county.dissolved?;
                if me.status != Status::Active
                    || !me.transfers.is_empty()
                    || county.moved_to_dissolved >= 6
                {
                    return None;
                }
                upd.org_id = self.orgs.get(d)?.id.clone();
                county.moved_to_dissolved += 1;
                vec![("member.org_dissolved", subj)]
            }
            MemberDefect::OrgNotBranch => {
                if !me.transfers.is_empty() {
                    return None;
                }
                let mut targets = vec![county.committee];
                targets.extend(county.generals.iter().map(|(g, _)| *g));
                let t = *targets.choose(&mut self.rng)?;
                upd.org_id = self.orgs.get(t)?.id.clone();
                vec![("member.org_not_branch", subj)]
            }
            MemberDefect::OrgMissing => {
                if !me.transfers.is_empty() {
                    return None;
                }
                upd.org_id = self.missing_org_id();
                vec![("member.org_missing", subj)]
            }
            MemberDefect::FutureDate => {
                if me.status != Status::Active || me.status_date.is_some() {
                    return None;
                }
                upd.status_date = Some(add_days(as_of, self.range(1, 3650)));
                vec![("member.future_date", subj)]
            }
            MemberDefect::UnderageApplication => {
                let p = me.application?;
                let p18 = add_years(me.birth, 18);
                let np = add_days(p18, -self.range(30, 300));
                // The age rule applies to applications from the 1982 Constitution on.
                if np >= p || np <= me.birth || np < constitution_1982() {
                    return None;
                }
                upd.application = Some(np);
                vec![("development.age_at_application", subj)]
            }
            MemberDefect::DateOrder => {
                let (p, v, c) = (me.application?, me.activist?, me.candidate?);
                let nv = add_days(p, -self.range(1, 90));
                if nv >= v || add_months(nv, 12) >= c {
                    return None;
                }
                upd.activist = Some(nv);
                vec![("development.date_order", subj)]
            }
            MemberDefect::ActivistPeriod => {
                let (v, c) = (me.activist?, me.candidate?);
                let nc = add_days(add_months(v, 12), -self.range(0, 150));
                // The one-year activist period is judged for candidates from the 2014 rules on.
                if nc < add_days(v, 30)
                    || nc > c
                    || nc > me.admission
                    || nc > add_months(v, 12)
                    || nc < rules_2014()
                {
                    return None;
                }
                upd.candidate = Some(nc);
                vec![("development.activist_period", subj)]
            }
            MemberDefect::IntroducerCount => {
                let first = me.introducers.first()?.clone();
                // The introducer rules judge admissions from the 1982 Constitution on.
                if me.introducers.len() != 2 || me.admission < constitution_1982() {
                    return None;
                }
                upd.introducers = if self.chance(0.5) {
                    vec![first]
                } else {
                    vec![first.clone(), first]
                };
                vec![("development.introducers_count", subj)]
            }
            MemberDefect::IntroducerNotFull => {
                if me.introducers.len() != 2 || me.admission < constitution_1982() {
                    return None;
                }
                let keep = me.introducers.first()?.clone();
                let candidates: Vec<String> = ms
                    .iter()
                    .filter(|x| x.id != me.id && x.id != keep && !me.introducers.contains(&x.id))
                    .filter(|x| !x.full_on(me.admission))
                    .map(|x| x.id.clone())
                    .collect();
                let bad = candidates.choose(&mut self.rng)?.clone();
                upd.introducers = vec![keep, bad];
                vec![("development.introducer_not_full", subj)]
            }
            MemberDefect::IntroducerUnknown => {
                if me.introducers.len() != 2 || me.admission < constitution_1982() {
                    return None;
                }
                let keep = me.introducers.first()?.clone();
                upd.introducers = vec![keep, self.unknown_member_id()];
                vec![("development.introducer_unknown", subj)]
            }
            MemberDefect::ProbationExtension => {
                // The 6–12 month range holds for admissions from the 2014 rules on.
                if me.category != Category::Full
                    || me.full_date.is_none()
                    || me.admission < rules_2014()
                {
                    return None;
                }
                let ext = *[1u32, 2, 3, 4, 5, 13, 15, 18, 24].choose(&mut self.rng)?;
                let f = add_months(me.admission, 12 + ext as i32);
                if f > add_days(as_of, -30) {
                    return None;
                }
                upd.ext = Some(ext);
                upd.full_date = Some(f);
                vec![("development.probation_extension", subj)]
            }
            MemberDefect::FullDateMismatch => {
                let f = me.full_date?;
                // The probation rules judge admissions from the 1982 Constitution on.
                if me.category != Category::Full
                    || f != me.probation_end()
                    || me.admission < constitution_1982()
                {
                    return None;
                }
                let shift = self.range(1, 60) * if self.chance(0.5) { 1 } else { -1 };
                let nf = add_days(f, shift);
                if nf > add_days(as_of, -1) || nf <= me.admission {
                    return None;
                }
                upd.full_date = Some(nf);
                vec![("development.full_date_mismatch", subj)]
            }
            MemberDefect::ProbationOverdue => {
                if me.status != Status::Active
                    || me.category != Category::Full
                    || me.full_date.is_none()
                    || me.admission < constitution_1982()
                {
                    return None;
                }
                if me.probation_end() > add_days(as_of, -15) {
                    return None;
                }
                upd.full_date = None;
                upd.category = Category::Probationary;
                vec![("development.probation_overdue", subj)]
            }
            MemberDefect::CategoryMismatch => {
                if me.admission < constitution_1982() {
                    return None;
                }
                match (me.category, me.full_date) {
                    (Category::Probationary, None) if me.probation_end() > as_of => {
                        upd.category = Category::Full
                    }
                    (Category::Full, Some(f)) if f <= as_of => {
                        upd.category = Category::Probationary
                    }
                    _ => return None,
                }
                vec![("development.category_mismatch", subj)]
            }
            MemberDefect::DuesAmount => {
                let months = self.safe_paid_months(&me);
                if months.is_empty() {
                    return None;
                }
                let start = self.range(0, months.len() as i64 - 1) as usize;
                let len = if self.chance(0.5) {
                    months.len() - start
                } else {
                    self.range(1, 3) as usize
                };
                upd.dues.wrong = months.iter().skip(start).take(len).copied().collect();
                vec![("dues.amount_mismatch", subj)]
            }
            MemberDefect::SixMonthsUnpaid => {
                let months = self.safe_paid_months(&me);
                // Safe months are consecutive; a run needs six expected months in a row.
                if months.len() < 6
                    || months
                        .windows(2)
                        .any(|w| w.first().map(|a| a.add(1)) != w.get(1).copied())
                {
                    return None;
                }
                let len = self.range(6, months.len().min(9) as i64) as usize;
                let start = self.range(0, (months.len() - len) as i64) as usize;
                upd.dues.skip = months.iter().skip(start).take(len).copied().collect();
                vec![
                    ("dues.six_months_unpaid", subj.clone()),
                    ("dues.missing_months", subj),
                ]
            }
            MemberDefect::MissingMonths => {
                let mut months = self.safe_paid_months(&me);
                if months.is_empty() {
                    return None;
                }
                months.shuffle(&mut self.rng);
                let n = self.range(1, 3) as usize;
                upd.dues.skip = months.into_iter().take(n).collect();
                vec![("dues.missing_months", subj)]
            }
            MemberDefect::DuplicatePayment => {
                let months = self.safe_paid_months(&me);
                let m = *months.choose(&mut self.rng)?;
                upd.dues.dup = vec![m];
                vec![("dues.duplicate_payment", subj)]
            }
            MemberDefect::TransferChain => {
                let others = Self::other_branches(county, &ctx.org_id);
                if me.status != Status::Active || !me.transfers.is_empty() || others.len() < 2 {
                    return None;
                }
                let lo = add_days(me.admission, 30);
                let hi = add_days(as_of, -10);
                if add_days(lo, 30) >= hi {
                    return None;
                }
                let d2 = self.date_between(add_days(lo, 20), hi);
                let d1 = self.date_between(lo, add_days(d2, -10));
                let mut pair: Vec<String> =
                    others.choose_multiple(&mut self.rng, 2).cloned().collect();
                let z = pair.pop()?;
                let y = pair.pop()?;
                upd.transfers = vec![
                    Transfer {
                        from: None,
                        to: Some(y),
                        date: d1,
                    },
                    Transfer {
                        from: Some(z),
                        to: Some(ctx.org_id.clone()),
                        date: d2,
                    },
                ];
                vec![("status.transfer_chain", subj)]
            }
            MemberDefect::OrgMismatch => {
                let others = Self::other_branches(county, &ctx.org_id);
                if me.status != Status::Active || !me.transfers.is_empty() {
                    return None;
                }
                let y = others.choose(&mut self.rng)?.clone();
                let lo = add_days(me.admission, 30);
                let hi = add_days(as_of, -10);
                if lo >= hi {
                    return None;
                }
                let d = self.date_between(lo, hi);
                upd.transfers = vec![Transfer {
                    from: Some(ctx.org_id.clone()),
                    to: Some(y),
                    date: d,
                }];
                vec![("status.org_mismatch", subj)]
            }
            MemberDefect::ActivityAfterExit => {
                if !matches!(me.status, Status::Deceased | Status::Removed) {
                    return None;
                }
                let s = me.status_date?;
                let last_ok = add_days(as_of, -1);
                let exit_month = Month::of(s);
                let first = self.cal.first_month();
                if self.cal.in_span(exit_month) && add_days(s, 1) <= last_ok && self.chance(0.5) {
                    // The exit month's dues paid after the exit.
                    let latest = add_days(s, 5).min(last_ok);
                    let d = self.date_between(add_days(s, 1), latest);
                    upd.dues.paid_on = Some((exit_month, d));
                } else if exit_month < first {
                    // A row for a month after the member left, paid in that month.
                    let m = *self.cal.span.choose(&mut self.rng)?;
                    let d = m.day(self.range(1, 25) as u32);
                    upd.dues.extra = Some((m, d));
                } else {
                    // A transfer recorded after the exit.
                    if add_days(s, 1) > last_ok {
                        return None;
                    }
                    let d = self.date_between(add_days(s, 1), add_days(s, 30).min(last_ok));
                    let to = Self::other_branches(county, &ctx.org_id)
                        .choose(&mut self.rng)
                        .cloned();
                    upd.transfers.push(Transfer {
                        from: Some(me.org_id.clone()),
                        to,
                        date: d,
                    });
                }
                vec![("status.activity_after_exit", subj)]
            }
        };
        *ms.get_mut(k)? = upd;
        Some(found)
    }
}

/// From 1982-09-06 (the 1982 Constitution) the development and probation rules judge an
/// admission (their first parameter set in policies/checks.toml); earlier ones are left alone.
fn constitution_1982() -> NaiveDate {
    rule_date(1982, 9, 6)
}

/// From 2014-06-11 (the 2014 rules on developing members) the activist period of at least a
/// year and the 6–12 month probation extension apply.
fn rules_2014() -> NaiveDate {
    rule_date(2014, 6, 11)
}

/// The date from which a rule's parameters apply (policies/checks.toml).
fn rule_date(y: i32, m: u32, d: u32) -> NaiveDate {
    // INVARIANT: the arguments are literal valid dates.
    NaiveDate::from_ymd_opt(y, m, d).unwrap_or(NaiveDate::MIN)
}
