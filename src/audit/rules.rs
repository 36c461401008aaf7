//! The per-user access rules that look at a user's accesses in time order: bulk reads,
//! off-hours access, denial bursts, sensitive exports and administrators reading member
//! data. Each keeps only what its window needs: a sliding window of at most
//! `window_minutes` of one user's requests, or one running total per local day.
//!
//! The caller feeds one user's accesses in non-decreasing time ([`UserState::push`]) and
//! then calls [`UserState::finish`]. This module must not read the ledger.

use std::collections::{BTreeSet, HashMap, VecDeque};

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::json;

use super::config::{AccessConfig, WorkingHours};
use super::Finding;
use crate::policy::record::format_time;

/// Rule ids.
pub const BULK_READ: &str = "access.bulk_read";
/// Rule id.
pub const OFF_HOURS: &str = "access.off_hours";
/// Rule id.
pub const DENIAL_BURST: &str = "access.denial_burst";
/// Rule id.
pub const SENSITIVE_EXPORT: &str = "access.sensitive_export";
/// Rule id.
pub const SELF_APPROVAL: &str = "access.self_approval";
/// Rule id.
pub const ADMIN_MEMBER_READ: &str = "access.admin_member_read";
/// Rule id.
pub const DORMANT_ACCOUNT: &str = "access.dormant_account";

/// How many subjects a finding lists as examples.
const SAMPLE: usize = 5;

/// One access decision as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// When it happened (`data.at`, else the entry's `ts`).
    pub t: DateTime<Utc>,
    /// The entry's seq.
    pub seq: u64,
    /// The principal (`actor.user`).
    pub user: String,
    /// The action asked.
    pub action: String,
    /// The resource (`member/M1`, `org/B1`, `ledger`, …).
    pub subject: String,
    /// Whether it was allowed.
    pub allowed: bool,
    /// Sensitive fields shown.
    pub fields: Vec<String>,
    /// Records covered.
    pub count: Option<u64>,
}

impl Access {
    /// If this is a request for member data: how many member records it covers. Member
    /// data is a `read`, `read_sensitive` or `export` of `member/<id>`, or an `export` of
    /// `org/<id>` (its `count` members, or 1 when not given).
    pub fn member_records(&self) -> Option<u64> {
        let read_like = matches!(self.action.as_str(), "read" | "read_sensitive" | "export");
        let member = read_like && self.subject.starts_with("member/");
        let org_export = self.action == "export" && self.subject.starts_with("org/");
        (member || org_export).then(|| self.count.unwrap_or(1).max(1))
    }

    fn ms(&self) -> i64 {
        self.t.timestamp_millis()
    }
}

/// A finding and the time it is sorted by.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// Time of the first access the finding is about (ms since the epoch).
    pub t: i64,
    /// The finding.
    pub finding: Finding,
}

fn time_of(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|t| format_time(&t))
        .unwrap_or_default()
}

fn local(h: &WorkingHours, ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|t| {
            t.with_timezone(&h.offset)
                .format("%Y-%m-%d %H:%M:%S %:z")
                .to_string()
        })
        .unwrap_or_default()
}

fn user_subject(user: &str) -> String {
    format!("user/{user}")
}

/// The rule state of one user.
#[derive(Debug, Default)]
pub struct UserState {
    bulk: Bulk,
    denials: Burst,
    off_hours: Option<DayTotal>,
    sensitive: Option<SensitiveDay>,
    admin: Option<AdminTotal>,
}

impl UserState {
    /// Takes the user's next access (`a.t` not before the previous one's).
    pub fn push(
        &mut self,
        cfg: &AccessConfig,
        role: Option<&str>,
        a: &Access,
        out: &mut Vec<Found>,
    ) {
        let h = &cfg.hours;
        let member_records = a.member_records();
        if let Some(weight) = member_records {
            if cfg.bulk_read.rule.enabled {
                let window = i64::from(cfg.bulk_read.window_minutes) * 60_000;
                if let Some(ep) = self.bulk.push(a, weight, window, cfg.bulk_read.max_members) {
                    out.push(bulk_finding(cfg, &a.user, &ep));
                }
            }
            if cfg.off_hours.enabled && !h.is_working(&a.t) {
                let date = h.local_date(&a.t);
                if self.off_hours.as_ref().is_some_and(|d| d.date != date) {
                    if let Some(d) = self.off_hours.take() {
                        out.push(off_hours_finding(cfg, &a.user, &d));
                    }
                }
                self.off_hours
                    .get_or_insert_with(|| DayTotal::new(date, a.ms()))
                    .add(a, weight);
            }
            if cfg.admin_member_read.rule.enabled
                && role.is_some_and(|r| cfg.admin_member_read.roles.iter().any(|x| x == r))
            {
                self.admin
                    .get_or_insert_with(|| AdminTotal::new(a.ms()))
                    .add(a, weight);
            }
        }
        if !a.allowed && cfg.denial_burst.rule.enabled {
            let window = i64::from(cfg.denial_burst.window_minutes) * 60_000;
            if let Some(ep) = self
                .denials
                .push(a, window, cfg.denial_burst.min_denials as usize)
            {
                out.push(denial_finding(cfg, &a.user, &ep));
            }
        }
        let sensitive = a.allowed
            && (a.action == "export" || a.action == "read_sensitive" || !a.fields.is_empty());
        if sensitive && cfg.sensitive_export.enabled {
            let date = h.local_date(&a.t);
            if self.sensitive.as_ref().is_some_and(|d| d.date != date) {
                if let Some(d) = self.sensitive.take() {
                    out.push(sensitive_finding(cfg, &a.user, &d));
                }
            }
            self.sensitive
                .get_or_insert_with(|| SensitiveDay::new(date, a.ms()))
                .add(a, member_records.unwrap_or(a.count.unwrap_or(1)));
        }
    }

    /// Emits what is still open at the end of the period.
    pub fn finish(self, cfg: &AccessConfig, user: &str, out: &mut Vec<Found>) {
        if let Some(ep) = self.bulk.episode {
            out.push(bulk_finding(cfg, user, &ep));
        }
        if let Some(ep) = self.denials.episode {
            out.push(denial_finding(cfg, user, &ep));
        }
        if let Some(d) = self.off_hours {
            out.push(off_hours_finding(cfg, user, &d));
        }
        if let Some(d) = self.sensitive {
            out.push(sensitive_finding(cfg, user, &d));
        }
        if let Some(a) = self.admin {
            out.push(admin_finding(cfg, user, &a));
        }
    }
}

/// A stretch of time during which a window rule's limit was passed.
#[derive(Debug, Clone, Default)]
struct Episode {
    first: i64,
    last: i64,
    /// Largest number (distinct members, or denials) in one window.
    peak: u64,
    /// Requests in the episode.
    requests: u64,
    /// Of them allowed.
    allowed: u64,
    /// Example subjects.
    subjects: BTreeSet<String>,
}

impl Episode {
    fn sample(&mut self, subject: &str) {
        if self.subjects.len() < SAMPLE {
            self.subjects.insert(subject.to_string());
        }
    }
}

/// Distinct member records in a sliding window.
#[derive(Debug, Default)]
struct Bulk {
    /// (time, subject, allowed) of the requests in the window, oldest first.
    window: VecDeque<(i64, String, bool)>,
    /// subject → (requests in the window, records it covers).
    present: HashMap<String, (u32, u64)>,
    /// Records covered by the distinct subjects in the window.
    distinct: u64,
    episode: Option<Episode>,
}

impl Bulk {
    /// Adds a request; returns an episode that ended before it.
    fn push(&mut self, a: &Access, weight: u64, window: i64, max: u64) -> Option<Episode> {
        let t = a.ms();
        while let Some((front, _, _)) = self.window.front() {
            if t - *front < window {
                break;
            }
            if let Some((_, subject, _)) = self.window.pop_front() {
                if let Some(p) = self.present.get_mut(&subject) {
                    p.0 -= 1;
                    if p.0 == 0 {
                        self.distinct -= p.1;
                        self.present.remove(&subject);
                    }
                }
            }
        }
        let ended = if self.distinct <= max {
            self.episode.take()
        } else {
            None
        };
        self.window.push_back((t, a.subject.clone(), a.allowed));
        let p = self.present.entry(a.subject.clone()).or_insert((0, 0));
        p.0 += 1;
        if weight > p.1 {
            self.distinct += weight - p.1;
            p.1 = weight;
        }
        if self.distinct > max {
            match &mut self.episode {
                Some(ep) => {
                    ep.last = t;
                    ep.peak = ep.peak.max(self.distinct);
                    ep.requests += 1;
                    ep.allowed += u64::from(a.allowed);
                    ep.sample(&a.subject);
                }
                None => {
                    let mut ep = Episode {
                        first: self.window.front().map_or(t, |w| w.0),
                        last: t,
                        peak: self.distinct,
                        requests: self.window.len() as u64,
                        allowed: self.window.iter().filter(|w| w.2).count() as u64,
                        subjects: BTreeSet::new(),
                    };
                    for (_, s, _) in &self.window {
                        ep.sample(s);
                    }
                    self.episode = Some(ep);
                }
            }
        }
        ended
    }
}

/// Denials in a sliding window.
#[derive(Debug, Default)]
struct Burst {
    window: VecDeque<(i64, String)>,
    episode: Option<Episode>,
}

impl Burst {
    /// Adds a denial; returns a burst that ended before it.
    fn push(&mut self, a: &Access, window: i64, min: usize) -> Option<Episode> {
        let t = a.ms();
        while self.window.front().is_some_and(|(f, _)| t - *f >= window) {
            self.window.pop_front();
        }
        let ended = if self.window.len() < min {
            self.episode.take()
        } else {
            None
        };
        self.window.push_back((t, a.subject.clone()));
        if self.window.len() >= min {
            let n = self.window.len() as u64;
            match &mut self.episode {
                Some(ep) => {
                    ep.last = t;
                    ep.peak = ep.peak.max(n);
                    ep.requests += 1;
                    ep.sample(&a.subject);
                }
                None => {
                    let mut ep = Episode {
                        first: self.window.front().map_or(t, |w| w.0),
                        last: t,
                        peak: n,
                        requests: n,
                        allowed: 0,
                        subjects: BTreeSet::new(),
                    };
                    for (_, s) in &self.window {
                        ep.sample(s);
                    }
                    self.episode = Some(ep);
                }
            }
        }
        ended
    }
}

/// Member data requests of one user on one local day.
#[derive(Debug)]
struct DayTotal {
    date: NaiveDate,
    first: i64,
    last: i64,
    requests: u64,
    records: u64,
    allowed: u64,
}

impl DayTotal {
    fn new(date: NaiveDate, first: i64) -> DayTotal {
        DayTotal {
            date,
            first,
            last: first,
            requests: 0,
            records: 0,
            allowed: 0,
        }
    }

    fn add(&mut self, a: &Access, weight: u64) {
        self.last = a.ms();
        self.requests += 1;
        self.records += weight;
        self.allowed += u64::from(a.allowed);
    }
}

/// Allowed exports and sensitive reads of one user on one local day.
#[derive(Debug)]
struct SensitiveDay {
    date: NaiveDate,
    first: i64,
    last: i64,
    exports: u64,
    sensitive_reads: u64,
    records: u64,
    fields: BTreeSet<String>,
    subjects: BTreeSet<String>,
}

impl SensitiveDay {
    fn new(date: NaiveDate, first: i64) -> SensitiveDay {
        SensitiveDay {
            date,
            first,
            last: first,
            exports: 0,
            sensitive_reads: 0,
            records: 0,
            fields: BTreeSet::new(),
            subjects: BTreeSet::new(),
        }
    }

    fn add(&mut self, a: &Access, records: u64) {
        self.last = a.ms();
        if a.action == "export" {
            self.exports += 1;
        } else {
            self.sensitive_reads += 1;
        }
        self.records += records;
        self.fields.extend(a.fields.iter().cloned());
        if self.subjects.len() < SAMPLE {
            self.subjects.insert(a.subject.clone());
        }
    }
}

/// Member data requests of an administrator in the period.
#[derive(Debug)]
struct AdminTotal {
    first: i64,
    last: i64,
    requests: u64,
    allowed: u64,
    records: u64,
    subjects: BTreeSet<String>,
}

impl AdminTotal {
    fn new(first: i64) -> AdminTotal {
        AdminTotal {
            first,
            last: first,
            requests: 0,
            allowed: 0,
            records: 0,
            subjects: BTreeSet::new(),
        }
    }

    fn add(&mut self, a: &Access, weight: u64) {
        self.last = a.ms();
        self.requests += 1;
        self.allowed += u64::from(a.allowed);
        self.records += weight;
        if self.subjects.len() < SAMPLE {
            self.subjects.insert(a.subject.clone());
        }
    }
}

fn bulk_finding(cfg: &AccessConfig, user: &str, ep: &Episode) -> Found {
    let b = &cfg.bulk_read;
    Found {
        t: ep.first,
        finding: Finding {
            rule: BULK_READ.to_string(),
            severity: b.rule.severity,
            subject: user_subject(user),
            message: format!(
                "user `{user}` asked for {} distinct member records within {} minutes (limit {}), from {} to {}",
                ep.peak,
                b.window_minutes,
                b.max_members,
                local(&cfg.hours, ep.first),
                local(&cfg.hours, ep.last)
            ),
            values: json!({
                "members": ep.peak,
                "max_members": b.max_members,
                "window_minutes": b.window_minutes,
                "requests": ep.requests,
                "allowed": ep.allowed,
                "first": time_of(ep.first),
                "last": time_of(ep.last),
                "examples": ep.subjects,
            }),
        },
    }
}

fn denial_finding(cfg: &AccessConfig, user: &str, ep: &Episode) -> Found {
    let d = &cfg.denial_burst;
    Found {
        t: ep.first,
        finding: Finding {
            rule: DENIAL_BURST.to_string(),
            severity: d.rule.severity,
            subject: user_subject(user),
            message: format!(
                "user `{user}` had {} requests denied within {} minutes ({} denials from {} to {})",
                ep.peak,
                d.window_minutes,
                ep.requests,
                local(&cfg.hours, ep.first),
                local(&cfg.hours, ep.last)
            ),
            values: json!({
                "denials": ep.peak,
                "min_denials": d.min_denials,
                "window_minutes": d.window_minutes,
                "total": ep.requests,
                "first": time_of(ep.first),
                "last": time_of(ep.last),
                "examples": ep.subjects,
            }),
        },
    }
}

fn off_hours_finding(cfg: &AccessConfig, user: &str, d: &DayTotal) -> Found {
    let h = &cfg.hours;
    Found {
        t: d.first,
        finding: Finding {
            rule: OFF_HOURS.to_string(),
            severity: cfg.off_hours.severity,
            subject: user_subject(user),
            message: format!(
                "user `{user}` made {} requests for member data outside working hours on {} (from {} to {})",
                d.requests,
                d.date,
                local(h, d.first),
                local(h, d.last)
            ),
            values: json!({
                "date": d.date.to_string(),
                "requests": d.requests,
                "records": d.records,
                "allowed": d.allowed,
                "denied": d.requests - d.allowed,
                "first": time_of(d.first),
                "last": time_of(d.last),
                "working_hours": format!("{}-{} {}", h.start.format("%H:%M"), h.end.format("%H:%M"), h.offset),
            }),
        },
    }
}

fn sensitive_finding(cfg: &AccessConfig, user: &str, d: &SensitiveDay) -> Found {
    Found {
        t: d.first,
        finding: Finding {
            rule: SENSITIVE_EXPORT.to_string(),
            severity: cfg.sensitive_export.severity,
            subject: user_subject(user),
            message: format!(
                "user `{user}` was allowed {} exports and {} reads of sensitive fields on {}",
                d.exports, d.sensitive_reads, d.date
            ),
            values: json!({
                "date": d.date.to_string(),
                "exports": d.exports,
                "sensitive_reads": d.sensitive_reads,
                "records": d.records,
                "fields": d.fields,
                "first": time_of(d.first),
                "last": time_of(d.last),
                "examples": d.subjects,
            }),
        },
    }
}

fn admin_finding(cfg: &AccessConfig, user: &str, a: &AdminTotal) -> Found {
    Found {
        t: a.first,
        finding: Finding {
            rule: ADMIN_MEMBER_READ.to_string(),
            severity: cfg.admin_member_read.rule.severity,
            subject: user_subject(user),
            message: format!(
                "administrator `{user}` made {} requests for member data ({} allowed)",
                a.requests, a.allowed
            ),
            values: json!({
                "requests": a.requests,
                "allowed": a.allowed,
                "denied": a.requests - a.allowed,
                "records": a.records,
                "first": time_of(a.first),
                "last": time_of(a.last),
                "examples": a.subjects,
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Severity;

    fn cfg() -> AccessConfig {
        AccessConfig::embedded().expect("defaults")
    }

    /// 2026-11-02 (a Monday) at `hh:mm:ss` Shanghai time, plus `ms` milliseconds.
    fn at(hms: &str, ms: i64) -> DateTime<Utc> {
        let t = DateTime::parse_from_rfc3339(&format!("2026-11-02T{hms}+08:00"))
            .expect("time")
            .with_timezone(&Utc);
        t + chrono::Duration::milliseconds(ms)
    }

    fn read(user: &str, member: usize, t: DateTime<Utc>) -> Access {
        Access {
            t,
            seq: 0,
            user: user.into(),
            action: "read".into(),
            subject: format!("member/M{member}"),
            allowed: true,
            fields: Vec::new(),
            count: None,
        }
    }

    fn run(cfg: &AccessConfig, role: Option<&str>, accesses: &[Access]) -> Vec<Finding> {
        let mut state = UserState::default();
        let mut out = Vec::new();
        for a in accesses {
            state.push(cfg, role, a, &mut out);
        }
        state.finish(cfg, "u1", &mut out);
        out.into_iter().map(|f| f.finding).collect()
    }

    fn rules(findings: &[Finding]) -> Vec<&str> {
        findings.iter().map(|f| f.rule.as_str()).collect()
    }

    /// `n` distinct members read one second apart from 10:00.
    fn reads(n: usize, step_ms: i64) -> Vec<Access> {
        (0..n)
            .map(|i| read("u1", i, at("10:00:00", i as i64 * step_ms)))
            .collect()
    }

    #[test]
    fn bulk_read_n_is_fine_and_n_plus_one_is_a_finding() {
        let c = cfg();
        assert!(run(&c, Some("org_dept"), &reads(100, 1000)).is_empty());
        let f = run(&c, Some("org_dept"), &reads(101, 1000));
        assert_eq!(rules(&f), [BULK_READ]);
        assert_eq!(f[0].subject, "user/u1");
        assert_eq!(f[0].severity, Severity::Warning);
        assert_eq!(f[0].values["members"], 101);
        assert_eq!(f[0].values["requests"], 101);
        assert_eq!(f[0].values["first"], "2026-11-02T02:00:00.000Z");
    }

    #[test]
    fn bulk_read_window_is_strictly_shorter_than_t() {
        let c = cfg();
        // 101 members, the last exactly 10 minutes after the first: never 101 in a window.
        let step = 600_000 / 100;
        assert!(run(&c, None, &reads(101, step)).is_empty());
        // One millisecond less and it is a finding.
        let mut r = reads(100, step);
        r.push(read("u1", 100, at("10:00:00", 600_000 - 1)));
        assert_eq!(rules(&run(&c, None, &r)), [BULK_READ]);
    }

    #[test]
    fn bulk_read_counts_distinct_members_and_denials() {
        let c = cfg();
        // The same 50 members read 10 times each: 500 requests, 50 distinct.
        let same: Vec<Access> = (0..500)
            .map(|i| read("u1", i % 50, at("10:00:00", i as i64 * 100)))
            .collect();
        assert!(run(&c, None, &same).is_empty());
        // 150 distinct, the last 60 denied: all count.
        let mut mixed = reads(150, 1000);
        for a in mixed.iter_mut().skip(90) {
            a.allowed = false;
        }
        let f = run(&c, None, &mixed);
        let bulk: Vec<&Finding> = f.iter().filter(|f| f.rule == BULK_READ).collect();
        assert_eq!(bulk.len(), 1);
        assert_eq!(bulk[0].values["members"], 150);
        assert_eq!(bulk[0].values["allowed"], 90);
    }

    #[test]
    fn bulk_read_two_episodes_are_two_findings() {
        let c = cfg();
        let mut r = reads(120, 1000);
        // An hour later, another 120 members.
        r.extend((0..120).map(|i| read("u1", 1000 + i, at("11:00:00", i as i64 * 1000))));
        let f = run(&c, None, &r);
        assert_eq!(rules(&f), [BULK_READ, BULK_READ]);
        assert_eq!(f[1].values["first"], "2026-11-02T03:00:00.000Z");
    }

    #[test]
    fn bulk_read_counts_org_exports_by_their_count() {
        let c = cfg();
        let mut e = read("u1", 0, at("10:00:00", 0));
        e.action = "export".into();
        e.subject = "org/B1".into();
        e.count = Some(80);
        let mut r = vec![e.clone()];
        r.extend((0..20).map(|i| read("u1", i, at("10:01:00", i as i64 * 1000))));
        // 80 + 20 = 100: at the limit.
        assert!(!rules(&run(&c, None, &r)).contains(&BULK_READ));
        r.push(read("u1", 999, at("10:02:00", 0)));
        assert!(rules(&run(&c, None, &r)).contains(&BULK_READ));
    }

    #[test]
    fn off_hours_boundary_0759_vs_0800() {
        let c = cfg();
        let f = run(&c, None, &[read("u1", 1, at("07:59:00", 0))]);
        assert_eq!(rules(&f), [OFF_HOURS]);
        assert_eq!(f[0].values["date"], "2026-11-02");
        assert_eq!(f[0].values["requests"], 1);
        assert!(run(&c, None, &[read("u1", 1, at("08:00:00", 0))]).is_empty());
        assert!(run(&c, None, &[read("u1", 1, at("19:59:59", 999))]).is_empty());
        assert_eq!(
            rules(&run(&c, None, &[read("u1", 1, at("20:00:00", 0))])),
            [OFF_HOURS]
        );
    }

    #[test]
    fn off_hours_one_finding_per_local_day() {
        let c = cfg();
        let mut r: Vec<Access> = (0..3)
            .map(|i| read("u1", i, at("06:00:00", i as i64 * 1000)))
            .collect();
        // 23:30 the same local day, then 00:30 the next local day (still 2026-11-02 UTC).
        r.push(read("u1", 9, at("23:30:00", 0)));
        r.push(read("u1", 9, at("23:30:00", 3_600_000)));
        let f = run(&c, None, &r);
        assert_eq!(rules(&f), [OFF_HOURS, OFF_HOURS]);
        assert_eq!(f[0].values["requests"], 4);
        assert_eq!(f[1].values["date"], "2026-11-03");
        assert_eq!(f[1].values["requests"], 1);
    }

    #[test]
    fn off_hours_ignores_non_member_data() {
        let c = cfg();
        let mut a = read("u1", 1, at("23:00:00", 0));
        a.action = "verify".into();
        a.subject = "ledger".into();
        let mut b = read("u1", 1, at("23:00:00", 0));
        b.subject = "org/B1".into(); // reading an org record is not member data
        assert!(run(&c, None, &[a, b]).is_empty());
    }

    fn denied(i: i64) -> Access {
        let mut a = read("u1", 7, at("10:00:00", i));
        a.allowed = false;
        a
    }

    #[test]
    fn denial_burst_k_minus_one_vs_k() {
        let c = cfg();
        let four: Vec<Access> = (0..4).map(|i| denied(i * 60_000)).collect();
        assert!(run(&c, None, &four).is_empty());
        let five: Vec<Access> = (0..5).map(|i| denied(i * 60_000)).collect();
        let f = run(&c, None, &five);
        assert_eq!(rules(&f), [DENIAL_BURST]);
        assert_eq!(f[0].values["denials"], 5);
        // Five denials spanning exactly 10 minutes are not a burst.
        let spread: Vec<Access> = (0..5).map(|i| denied(i * 150_000)).collect();
        assert!(run(&c, None, &spread).is_empty());
    }

    #[test]
    fn sensitive_exports_and_reads_per_day() {
        let c = cfg();
        let mut e = read("u1", 1, at("10:00:00", 0));
        e.action = "export".into();
        e.subject = "org/B1".into();
        e.count = Some(30);
        let mut s = read("u1", 2, at("11:00:00", 0));
        s.fields = vec!["phone".into()];
        let mut refused = read("u1", 3, at("11:00:00", 1));
        refused.action = "export".into();
        refused.allowed = false;
        let plain = read("u1", 4, at("12:00:00", 0));
        let f = run(&c, None, &[e, s, refused, plain]);
        assert_eq!(rules(&f), [SENSITIVE_EXPORT]);
        assert_eq!(f[0].values["exports"], 1);
        assert_eq!(f[0].values["sensitive_reads"], 1);
        assert_eq!(f[0].values["records"], 31);
        assert_eq!(f[0].values["fields"], json!(["phone"]));
        assert_eq!(f[0].severity, Severity::Info);
    }

    #[test]
    fn admin_member_read_allowed_or_not() {
        let c = cfg();
        let mut a = read("u1", 1, at("10:00:00", 0));
        a.allowed = false;
        let b = read("u1", 2, at("10:05:00", 0));
        let f = run(&c, Some("sysadmin"), &[a.clone(), b.clone()]);
        assert_eq!(rules(&f), [ADMIN_MEMBER_READ]);
        assert_eq!(f[0].values["requests"], 2);
        assert_eq!(f[0].values["denied"], 1);
        assert_eq!(f[0].severity, Severity::Error);
        assert!(run(&c, Some("org_dept"), &[b]).is_empty());
        let mut ledger = read("u1", 0, at("10:00:00", 0));
        ledger.subject = "ledger".into();
        assert!(run(&c, Some("auditor"), &[ledger]).is_empty());
    }

    #[test]
    fn disabled_rules_stay_silent() {
        let mut c = cfg();
        c.bulk_read.rule.enabled = false;
        c.off_hours.enabled = false;
        let r: Vec<Access> = (0..300)
            .map(|i| read("u1", i, at("23:00:00", i as i64 * 1000)))
            .collect();
        assert!(run(&c, None, &r).is_empty());
    }
}
