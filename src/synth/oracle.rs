//! Test-only reference reading of docs/RULES.md over the generated CSV files, written
//! independently of the generator's bookkeeping: the generator's `expected_findings.json`
//! must equal what this finds. Simple and slow on purpose; for small data sets only.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chrono::NaiveDate;

use super::cal::{add_months, Month};

pub(crate) type Findings = BTreeSet<(String, String)>;

#[derive(Debug, Clone)]
pub(crate) struct Org {
    pub(crate) id: String,
    pub(crate) kind: String,
    pub(crate) parent: Option<String>,
    pub(crate) established: Option<NaiveDate>,
    pub(crate) has_committee: Option<bool>,
    pub(crate) secretary: Option<String>,
    pub(crate) dissolved: Option<NaiveDate>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Mem {
    pub(crate) id: String,
    pub(crate) f: BTreeMap<String, String>,
}

impl Mem {
    pub(crate) fn get(&self, k: &str) -> Option<&str> {
        self.f.get(k).map(|s| s.as_str()).filter(|s| !s.is_empty())
    }
    pub(crate) fn date(&self, k: &str) -> Option<NaiveDate> {
        self.get(k)
            .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
    }
    pub(crate) fn full_on(&self, d: NaiveDate) -> bool {
        match self.date("full_date") {
            Some(f) => f <= d,
            None => self.get("category") == Some("full"),
        }
    }
    fn ext(&self) -> i32 {
        self.get("probation_extension_months")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }
    pub(crate) fn probation_end(&self) -> Option<NaiveDate> {
        self.date("admission_date")
            .map(|a| add_months(a, 12 + self.ext()))
    }
    fn active(&self) -> bool {
        self.get("status") == Some("active")
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Due {
    pub(crate) member: String,
    pub(crate) month: Month,
    pub(crate) base: Option<i64>,
    pub(crate) amount: i64,
    pub(crate) paid: Option<NaiveDate>,
}

#[derive(Debug, Clone)]
pub(crate) struct Meeting {
    pub(crate) org: String,
    pub(crate) kind: String,
    pub(crate) date: NaiveDate,
}

#[derive(Debug, Clone)]
pub(crate) struct Tr {
    pub(crate) member: String,
    pub(crate) from: Option<String>,
    pub(crate) to: Option<String>,
    pub(crate) date: NaiveDate,
}

pub(crate) struct Data {
    pub(crate) orgs: BTreeMap<String, Org>,
    pub(crate) members: Vec<Mem>,
    pub(crate) dues: Vec<Due>,
    pub(crate) meetings: Vec<Meeting>,
    pub(crate) transfers: Vec<Tr>,
    pub(crate) users: Vec<BTreeMap<String, String>>,
}

fn rows(path: &Path) -> Vec<BTreeMap<String, String>> {
    let mut r = csv::Reader::from_path(path).unwrap();
    let headers: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            headers
                .iter()
                .cloned()
                .zip(rec.iter().map(String::from))
                .collect()
        })
        .collect()
}

fn opt(m: &BTreeMap<String, String>, k: &str) -> Option<String> {
    m.get(k).filter(|s| !s.is_empty()).cloned()
}

fn date(s: Option<String>) -> Option<NaiveDate> {
    s.and_then(|s| NaiveDate::parse_from_str(&s, "%Y-%m-%d").ok())
}

pub(crate) fn fen(s: &str) -> i64 {
    let (y, f) = s.split_once('.').unwrap_or((s, "0"));
    let f = format!("{f:0<2}");
    y.parse::<i64>().unwrap() * 100 + f[..2].parse::<i64>().unwrap()
}

pub(crate) fn month(s: &str) -> Month {
    Month::of(NaiveDate::parse_from_str(&format!("{s}-01"), "%Y-%m-%d").unwrap())
}

pub(crate) fn load(dir: &Path) -> Data {
    let orgs = rows(&dir.join("orgs.csv"))
        .into_iter()
        .map(|r| {
            let id = r["org_id"].clone();
            let o = Org {
                id: id.clone(),
                kind: r["kind"].clone(),
                parent: opt(&r, "parent_id"),
                established: date(opt(&r, "established_date")),
                has_committee: opt(&r, "has_committee").map(|s| s == "true"),
                secretary: opt(&r, "secretary_id"),
                dissolved: date(opt(&r, "dissolved_date")),
            };
            (id, o)
        })
        .collect();
    let members = rows(&dir.join("members.csv"))
        .into_iter()
        .map(|r| Mem {
            id: r["member_id"].clone(),
            f: r,
        })
        .collect();
    let dues = rows(&dir.join("dues.csv"))
        .into_iter()
        .map(|r| Due {
            member: r["member_id"].clone(),
            month: month(&r["month"]),
            base: opt(&r, "base_income").map(|s| fen(&s)),
            amount: fen(&r["amount"]),
            paid: date(opt(&r, "paid_date")),
        })
        .collect();
    let meetings = rows(&dir.join("meetings.csv"))
        .into_iter()
        .map(|r| Meeting {
            org: r["org_id"].clone(),
            kind: r["kind"].clone(),
            date: date(opt(&r, "date")).unwrap(),
        })
        .collect();
    let transfers = rows(&dir.join("transfers.csv"))
        .into_iter()
        .map(|r| Tr {
            member: r["member_id"].clone(),
            from: opt(&r, "from_org"),
            to: opt(&r, "to_org"),
            date: date(opt(&r, "date")).unwrap(),
        })
        .collect();
    let users = rows(&dir.join("users.csv"));
    Data {
        orgs,
        members,
        dues,
        meetings,
        transfers,
        users,
    }
}

const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];

pub(crate) fn check_ok(id: &str) -> bool {
    let b = id.as_bytes();
    let s: u32 = b
        .iter()
        .take(17)
        .zip(W)
        .map(|(c, w)| (c - b'0') as u32 * w)
        .sum();
    b.get(17).copied() == Some(b"10X98765432"[(s % 11) as usize])
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())
}

pub(crate) fn phone_ok(p: &str) -> bool {
    let b = p.as_bytes();
    let mobile = b.len() == 11 && b[0] == b'1' && (b'3'..=b'9').contains(&b[1]) && all_digits(p);
    let landline = {
        // ^0\d{2,3}-?\d{7,8}$
        let (code, rest) = match p.split_once('-') {
            Some((c, r)) => (c.to_string(), r.to_string()),
            None => (String::new(), String::new()),
        };
        let dashed = code.starts_with('0')
            && (3..=4).contains(&code.len())
            && all_digits(&code)
            && (7..=8).contains(&rest.len())
            && all_digits(&rest);
        let plain = p.starts_with('0') && all_digits(p) && (10..=12).contains(&p.len());
        dashed || plain
    };
    mobile || landline
}

fn embedded_birth(id: &str) -> Option<NaiveDate> {
    let s = if id.len() == 18 {
        id[6..14].to_string()
    } else if id.len() == 15 {
        format!("19{}", &id[6..12])
    } else {
        return None;
    };
    NaiveDate::parse_from_str(&s, "%Y%m%d").ok()
}

fn expected_amount(employment: &str, base: i64) -> Option<(i64, i64)> {
    let pm = match employment {
        "employed" if base <= 300_000 => 5,
        "employed" if base <= 500_000 => 10,
        "employed" if base <= 1_000_000 => 15,
        "employed" => 20,
        "retired" if base <= 500_000 => 5,
        "retired" => 10,
        "student" | "unemployed" => return Some((20, 20)),
        "farmer" => return Some((20, 100)),
        _ => return None,
    };
    let a = (base * pm + 500) / 1000;
    Some((a, a))
}

/// Every finding of docs/RULES.md on `d` at `as_of` (window: 12 months).
pub(crate) fn check(d: &Data, as_of: NaiveDate) -> Findings {
    let mut out = Findings::new();
    let mut add = |rule: &str, subject: String| {
        out.insert((rule.to_string(), subject));
    };
    let window_start = add_months(as_of, -12);
    let by_id: BTreeMap<&str, &Mem> = d.members.iter().map(|m| (m.id.as_str(), m)).collect();

    // Data start per org.
    let mut start: BTreeMap<String, Month> = BTreeMap::new();
    let mut note = |org: &str, m: Month| {
        let e = start.entry(org.to_string()).or_insert(m);
        if m < *e {
            *e = m;
        }
    };
    for du in &d.dues {
        if let Some(org) = by_id.get(du.member.as_str()).and_then(|m| m.get("org_id")) {
            note(org, du.month);
        }
    }
    for mt in &d.meetings {
        note(&mt.org, Month::of(mt.date));
    }
    let judged = |org: &str, first: Month, last: Month| -> bool {
        let Some(ds) = start.get(org) else {
            return false;
        };
        let Some(o) = d.orgs.get(org) else {
            return false;
        };
        last.last_day() < as_of
            && last.last_day() >= window_start
            && first.first_day() <= as_of
            && first >= *ds
            && o.established.is_none_or(|e| e <= first.first_day())
            && o.dissolved.is_none_or(|x| x >= last.last_day())
    };
    let in_window = |m: Month| m.last_day() >= window_start && m.first_day() <= as_of;

    // member family
    let mut id_count: BTreeMap<&str, usize> = BTreeMap::new();
    for m in &d.members {
        if let Some(id) = m.get("id_number") {
            *id_count.entry(id).or_insert(0) += 1;
        }
    }
    for m in &d.members {
        let s = format!("member/{}", m.id);
        let missing: Vec<&str> = [
            "name",
            "gender",
            "birth_date",
            "id_number",
            "org_id",
            "category",
            "status",
            "admission_date",
        ]
        .into_iter()
        .filter(|k| m.get(k).is_none())
        .collect();
        if !missing.is_empty() {
            add("member.required_fields", s.clone());
        }
        if let Some(id) = m.get("id_number") {
            let b = id.as_bytes();
            let fmt18 =
                b.len() == 18 && all_digits(&id[..17]) && (b[17].is_ascii_digit() || b[17] == b'X');
            let fmt15 = b.len() == 15 && all_digits(id);
            let eb = embedded_birth(id);
            if (!fmt18 && !fmt15) || eb.is_none() {
                add("member.id_format", s.clone());
            } else {
                if fmt15 {
                    add("member.id_legacy", s.clone());
                }
                if fmt18 && !check_ok(id) {
                    add("member.id_checksum", s.clone());
                }
                if let (Some(e), Some(bd)) = (eb, m.date("birth_date")) {
                    if e != bd {
                        add("member.id_birth_mismatch", s.clone());
                    }
                }
                let seq = if fmt18 { b[16] } else { b[14] };
                let odd = (seq - b'0') % 2 == 1;
                if let Some(g) = m.get("gender") {
                    if (g == "male") != odd {
                        add("member.id_gender_mismatch", s.clone());
                    }
                }
            }
            if id_count.get(id).copied().unwrap_or(0) >= 2 {
                add("member.id_duplicate", s.clone());
            }
        }
        if let Some(org) = m.get("org_id") {
            match d.orgs.get(org) {
                None => add("member.org_missing", s.clone()),
                Some(o) => {
                    if m.active() && o.dissolved.is_some_and(|x| x <= as_of) {
                        add("member.org_dissolved", s.clone());
                    }
                    if o.kind != "branch" {
                        add("member.org_not_branch", s.clone());
                    }
                }
            }
        }
        for k in [
            "birth_date",
            "status_date",
            "application_date",
            "activist_date",
            "candidate_date",
            "admission_date",
            "full_date",
        ] {
            if m.date(k).is_some_and(|x| x > as_of) {
                add("member.future_date", s.clone());
            }
        }
        if let Some(p) = m.get("phone") {
            if !phone_ok(p) {
                add("member.phone_format", s.clone());
            }
        }

        // development family
        if let (Some(app), Some(b)) = (m.date("application_date"), m.date("birth_date")) {
            if app < add_months(b, 18 * 12) {
                add("development.age_at_application", s.clone());
            }
        }
        let seq: Vec<NaiveDate> = [
            "application_date",
            "activist_date",
            "candidate_date",
            "admission_date",
            "full_date",
        ]
        .into_iter()
        .filter_map(|k| m.date(k))
        .collect();
        if seq.windows(2).any(|w| w[0] > w[1]) {
            add("development.date_order", s.clone());
        }
        if let (Some(v), Some(c)) = (m.date("activist_date"), m.date("candidate_date")) {
            if c <= add_months(v, 12) {
                add("development.activist_period", s.clone());
            }
        }
        let intro: Vec<&str> = m
            .get("introducers")
            .map(|s| s.split(';').collect())
            .unwrap_or_default();
        let distinct: BTreeSet<&str> = intro.iter().copied().collect();
        if intro.len() != 2 || distinct.len() != 2 || intro.contains(&m.id.as_str()) {
            add("development.introducers_count", s.clone());
        }
        if let Some(a) = m.date("admission_date") {
            if intro
                .iter()
                .any(|i| by_id.get(i).is_some_and(|x| !x.full_on(a)))
            {
                add("development.introducer_not_full", s.clone());
            }
        }
        if intro.iter().any(|i| !by_id.contains_key(i)) {
            add("development.introducer_unknown", s.clone());
        }
        if let Some(e) = m.get("probation_extension_months") {
            let e: i64 = e.parse().unwrap_or(-1);
            if e != 0 && !(6..=12).contains(&e) {
                add("development.probation_extension", s.clone());
            }
        }
        let end = m.probation_end();
        if let (Some(f), Some(end)) = (m.date("full_date"), end) {
            if f != end {
                add("development.full_date_mismatch", s.clone());
            }
        }
        if m.get("category") == Some("probationary")
            && m.active()
            && m.date("full_date").is_none()
            && end.is_some_and(|e| as_of > e)
        {
            add("development.probation_overdue", s.clone());
        }
        let cat_bad = match (m.get("category"), m.date("full_date")) {
            (Some("full"), None) => end.is_some_and(|e| e > as_of),
            (Some("full"), Some(f)) => f > as_of,
            (Some("probationary"), Some(f)) => f <= as_of,
            _ => false,
        };
        if cat_bad {
            add("development.category_mismatch", s.clone());
        }
    }

    // dues family
    let mut dues_of: BTreeMap<&str, Vec<&Due>> = BTreeMap::new();
    for du in &d.dues {
        dues_of.entry(du.member.as_str()).or_default().push(du);
    }
    for m in &d.members {
        let s = format!("member/{}", m.id);
        let rows = dues_of.get(m.id.as_str()).cloned().unwrap_or_default();
        let employment = m.get("employment").unwrap_or("");
        let income = m.get("monthly_income").map(fen);
        for du in &rows {
            if !in_window(du.month) {
                continue;
            }
            let base = du.base.or(income).unwrap_or(0);
            if let Some((lo, hi)) = expected_amount(employment, base) {
                if du.amount < lo - 1 || du.amount > hi + 1 {
                    add("dues.amount_mismatch", s.clone());
                }
            }
        }
        let mut per_month: BTreeMap<Month, usize> = BTreeMap::new();
        for du in &rows {
            *per_month.entry(du.month).or_insert(0) += 1;
        }
        if per_month.iter().any(|(mo, n)| *n >= 2 && in_window(*mo)) {
            add("dues.duplicate_payment", s.clone());
        }
        let (Some(org), Some(adm)) = (m.get("org_id"), m.date("admission_date")) else {
            continue;
        };
        let exit = match (m.get("status"), m.date("status_date")) {
            (Some("deceased" | "removed" | "transferred_out"), Some(sd)) => Some(Month::of(sd)),
            _ => None,
        };
        let last = Month::of(as_of).add(-1);
        let mut expected: Vec<Month> = Vec::new();
        let mut mo = Month::of(window_start);
        while mo <= last {
            if mo >= Month::of(adm) && exit.is_none_or(|x| mo <= x) && judged(org, mo, mo) {
                expected.push(mo);
            }
            mo = mo.add(1);
        }
        let missing: Vec<Month> = expected
            .iter()
            .copied()
            .filter(|mo| !per_month.contains_key(mo))
            .collect();
        if !missing.is_empty() {
            add("dues.missing_months", s.clone());
        }
        let mut run = 0;
        let mut prev: Option<Month> = None;
        for mo in &missing {
            run = if prev.map(|p| p.add(1)) == Some(*mo) {
                run + 1
            } else {
                1
            };
            prev = Some(*mo);
            if run >= 6 {
                add("dues.six_months_unpaid", s.clone());
            }
        }
    }

    // org family
    for o in d.orgs.values() {
        let s = format!("org/{}", o.id);
        if let Some(p) = &o.parent {
            if !d.orgs.contains_key(p) {
                add("org.parent_missing", s.clone());
            }
        }
        // Cycle: walking up from o returns to o.
        let mut cur = o.parent.clone();
        let mut steps = 0;
        while let Some(c) = cur {
            if c == o.id {
                add("org.cycle", s.clone());
                break;
            }
            steps += 1;
            if steps > d.orgs.len() {
                break;
            }
            cur = d.orgs.get(&c).and_then(|x| x.parent.clone());
        }
        let active: Vec<&Mem> = d
            .members
            .iter()
            .filter(|m| m.get("org_id") == Some(o.id.as_str()) && m.active())
            .collect();
        let n_full = active.iter().filter(|m| m.full_on(as_of)).count();
        if o.kind == "branch" {
            let dissolved = o.dissolved.is_some_and(|x| x <= as_of);
            if !dissolved && n_full < 3 {
                add("org.branch_too_small", s.clone());
            }
            if active.len() > 50 {
                add("org.branch_too_large", s.clone());
            }
            if n_full >= 7 && o.has_committee != Some(true) {
                add("org.committee_expected", s.clone());
            }
        }
        if let Some(sec) = &o.secretary {
            if !active.iter().any(|m| &m.id == sec && m.full_on(as_of)) {
                add("org.secretary_invalid", s.clone());
            }
        }
    }

    // meetings family
    for o in d
        .orgs
        .values()
        .filter(|o| o.kind == "branch" && o.dissolved.is_none_or(|x| x > as_of))
    {
        let s = format!("org/{}", o.id);
        let kinds: BTreeSet<(String, Month)> = d
            .meetings
            .iter()
            .filter(|m| m.org == o.id)
            .map(|m| (m.kind.clone(), Month::of(m.date)))
            .collect();
        let has = |kind: &str, first: Month, n: i32| {
            (0..n).any(|i| kinds.contains(&(kind.to_string(), first.add(i))))
        };
        let mut mo = Month::of(window_start).add(-12);
        let last = Month::of(as_of);
        while mo <= last {
            if judged(&o.id, mo, mo) {
                if !has("theme_day", mo, 1) {
                    add("meetings.theme_day_monthly", s.clone());
                }
                if o.has_committee == Some(true) && !has("committee_meeting", mo, 1) {
                    add("meetings.committee_meeting_monthly", s.clone());
                }
            }
            if mo.quarter_start() == mo && judged(&o.id, mo, mo.add(2)) {
                if !has("member_meeting", mo, 3) {
                    add("meetings.member_meeting_quarterly", s.clone());
                }
                if !has("lecture", mo, 3) {
                    add("meetings.lecture_quarterly", s.clone());
                }
            }
            if mo.month() == 1 && judged(&o.id, mo, mo.add(11)) {
                if !has("org_life", mo, 12) {
                    add("meetings.org_life_yearly", s.clone());
                }
                if !has("appraisal", mo, 12) {
                    add("meetings.appraisal_yearly", s.clone());
                }
            }
            mo = mo.add(1);
        }
    }

    // status family
    let mut tr_of: BTreeMap<&str, Vec<&Tr>> = BTreeMap::new();
    for t in &d.transfers {
        tr_of.entry(t.member.as_str()).or_default().push(t);
    }
    for m in &d.members {
        let s = format!("member/{}", m.id);
        let mut ts = tr_of.get(m.id.as_str()).cloned().unwrap_or_default();
        ts.sort_by_key(|t| t.date);
        if ts
            .windows(2)
            .any(|w| matches!((&w[0].to, &w[1].from), (Some(a), Some(b)) if a != b))
        {
            add("status.transfer_chain", s.clone());
        }
        if m.active() {
            if let Some(last) = ts.last() {
                if last.to.as_deref() != m.get("org_id") {
                    add("status.org_mismatch", s.clone());
                }
            }
        }
        if let (Some("deceased" | "removed"), Some(sd)) = (m.get("status"), m.date("status_date")) {
            let dues_after = dues_of
                .get(m.id.as_str())
                .is_some_and(|rs| rs.iter().any(|r| r.paid.is_some_and(|p| p > sd)));
            if dues_after || ts.iter().any(|t| t.date > sd) {
                add("status.activity_after_exit", s.clone());
            }
        }
    }
    out
}
