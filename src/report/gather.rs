//! Computes a report document from the ledger and its projection: integrity (verification
//! and the consistency proof since the previous report), record changes and access
//! decisions from the ledger entries, the access audit, the consistency checks at the end
//! of the period and of the previous one, organisational life and dues arrears.
//!
//! Reads only, and expects to run inside one read transaction (see [`super::issue`]) so
//! that every section sees the ledger at the same size. Every finding's values are masked
//! again before they enter the document.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use rusqlite::Connection;
use serde_json::Value as Json;

use super::checks_bridge::{self, CheckConfig};
use super::model::{
    Access, Arrear, BranchLife, Changes, Count, DayCount, Dues, FailingRecord, Finding, Integrity,
    Lang, MeetingCounts, OrgCount, OrgLife, OrgRef, OrgTrend, PeriodInfo, PreviousPeriod,
    PreviousReport, Quality, RecordFinding, Report, RuleTrend, Severities, VerifyFailure,
    VerifySummary, FORMAT, RENDERER,
};
use super::period::{self, format_ts, parse_utc, shanghai_day, Period};
use super::{ReportError, ISSUE_KIND};
use crate::audit::{self, AccessConfig, AuditOptions};
use crate::ledger::entry::{hex_hash, Entry};
use crate::ledger::store::{LedgerError, LogFilter};
use crate::ledger::verify::{self, VerifyOptions};
use crate::ledger::Ledger;
use crate::policy::record::{DECISION_KIND, MAX_CLOCK_SKEW};
use crate::records::mask::mask_json_in_place;
use crate::records::projection::record_family;
use crate::records::replay::Replay;

/// What to report on.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    pub period: Period,
    /// The period before (trends).
    pub previous: Period,
    /// The day the records are judged on (periods ending before it are judged).
    pub as_of: NaiveDate,
    /// The day the previous period is judged on.
    pub previous_as_of: NaiveDate,
    /// Only this organisation and everything below it.
    pub org: Option<String>,
    pub lang: Lang,
    /// The djaudit user issuing the report.
    pub issued_by: String,
    /// Settings of the consistency checks.
    pub checks: CheckConfig,
    /// Settings of the access audit.
    pub access: AccessConfig,
}

impl ReportOptions {
    /// Options for `period` with the embedded rule settings, judged at the day after the
    /// period (or `today` if the period has not ended); the previous period likewise.
    pub fn new(period: Period, today: NaiveDate) -> Result<ReportOptions, ReportError> {
        if period.from > today {
            return Err(ReportError::FuturePeriod {
                from: period.from.to_string(),
                today: today.to_string(),
            });
        }
        let previous = period
            .previous()
            .ok_or_else(|| ReportError::BadPeriod(period.label.clone()))?;
        let as_of = super::default_as_of(&period, today);
        let previous_as_of = super::default_as_of(&previous, today);
        Ok(ReportOptions {
            period,
            previous,
            as_of,
            previous_as_of,
            org: None,
            lang: Lang::Zh,
            issued_by: "system".to_owned(),
            checks: CheckConfig::embedded(),
            access: AccessConfig::embedded().map_err(|e| ReportError::Checks(e.to_string()))?,
        })
    }

    /// Sets the day the period is judged on; it must be in the period or the day after.
    pub fn with_as_of(mut self, as_of: NaiveDate) -> Result<ReportOptions, ReportError> {
        if as_of < self.period.from || as_of > self.period.end() {
            return Err(ReportError::BadAsOf {
                as_of: as_of.to_string(),
                from: self.period.from.to_string(),
                to: self.period.to.to_string(),
            });
        }
        self.as_of = as_of;
        Ok(self)
    }
}

/// Orgs, members and users of the projection, read once.
struct Index {
    orgs: HashMap<String, OrgRow>,
    members: HashMap<String, (Option<String>, Option<String>)>,
    users: HashMap<String, Option<String>>,
    /// The orgs in scope, `None` for all.
    scope: Option<HashSet<String>>,
}

struct OrgRow {
    name: String,
    kind: String,
    parent: Option<String>,
    has_committee: bool,
    established: Option<String>,
    dissolved: Option<String>,
}

impl Index {
    fn load(conn: &Connection, org: Option<&str>) -> Result<Index, ReportError> {
        let mut orgs = HashMap::new();
        let mut stmt = conn.prepare(
            "SELECT org_id, name, kind, parent_id, has_committee, established_date, dissolved_date FROM org",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            orgs.insert(
                r.get::<_, String>(0)?,
                OrgRow {
                    name: r.get(1)?,
                    kind: r.get(2)?,
                    parent: r.get(3)?,
                    has_committee: r.get::<_, Option<i64>>(4)?.unwrap_or(0) != 0,
                    established: r.get(5)?,
                    dissolved: r.get(6)?,
                },
            );
        }
        let mut members = HashMap::new();
        let mut stmt = conn.prepare("SELECT member_id, name, org_id FROM member")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            members.insert(r.get::<_, String>(0)?, (r.get(1)?, r.get(2)?));
        }
        let mut users = HashMap::new();
        let mut stmt = conn.prepare("SELECT user_id, org_id FROM user")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            users.insert(r.get::<_, String>(0)?, r.get(1)?);
        }
        let scope = match org {
            None => None,
            Some(root) => {
                if !orgs.contains_key(root) {
                    return Err(ReportError::UnknownOrg(root.to_owned()));
                }
                let mut children: HashMap<&str, Vec<&str>> = HashMap::new();
                for (id, o) in &orgs {
                    if let Some(p) = &o.parent {
                        children.entry(p.as_str()).or_default().push(id.as_str());
                    }
                }
                let mut set = HashSet::new();
                let mut stack = vec![root];
                while let Some(o) = stack.pop() {
                    if set.insert(o.to_owned()) {
                        stack.extend(children.get(o).into_iter().flatten());
                    }
                }
                Some(set)
            }
        };
        Ok(Index {
            orgs,
            members,
            users,
            scope,
        })
    }

    fn org_name(&self, id: &str) -> Option<String> {
        self.orgs.get(id).map(|o| o.name.clone())
    }

    fn member_name(&self, id: &str) -> Option<String> {
        self.members.get(id).and_then(|m| m.0.clone())
    }

    fn member_org(&self, id: &str) -> Option<&str> {
        self.members.get(id).and_then(|m| m.1.as_deref())
    }

    /// The org a ledger subject belongs to: a member's branch, a meeting's org, a user's org.
    fn org_of_subject(&self, subject: &str) -> Option<String> {
        let mut parts = subject.split('/');
        let kind = parts.next()?;
        let id = parts.next()?;
        match kind {
            "member" | "dues" | "transfer" => self.member_org(id).map(str::to_owned),
            "org" | "meeting" | "report" => Some(id.to_owned()),
            "user" => self.users.get(id).cloned().flatten(),
            _ => None,
        }
    }

    /// Whether an org is in scope (everything is when no org was asked for; a record of no
    /// known org only then).
    fn in_scope(&self, org: Option<&str>) -> bool {
        match (&self.scope, org) {
            (None, _) => true,
            (Some(s), Some(o)) => s.contains(o),
            (Some(_), None) => false,
        }
    }
}

/// Computes the unsigned report at tree size `size` (root `root`, checkpoint note `note`).
pub fn gather(
    ledger: &Ledger,
    opts: &ReportOptions,
    size: u64,
    root: &str,
    note: &str,
) -> Result<Report, ReportError> {
    let conn = ledger.conn();
    let index = Index::load(conn, opts.org.as_deref())?;
    let (changes, mut access, entries_in_period) = scan_entries(ledger, opts, &index, size)?;
    let integrity = integrity(ledger, opts, size, root, entries_in_period)?;
    audit_access(ledger, opts, &index, &mut access)?;
    let now = run_checks(conn, opts, opts.as_of, opts.period.from)?;
    let (before, previous_entries) = previous_findings(ledger, opts, size)?;
    let mut quality = quality(opts, &index, now.clone(), before);
    quality.previous_entries = previous_entries;
    let org_life = org_life(conn, opts, &index, &now)?;
    let dues = dues(&index, &now);
    Ok(Report {
        format: FORMAT.to_owned(),
        renderer: RENDERER,
        lang: opts.lang,
        origin: ledger.origin().to_owned(),
        generated_at: format_ts(Utc::now()),
        issued_by: opts.issued_by.clone(),
        period: PeriodInfo {
            label: opts.period.label.clone(),
            from: opts.period.from.to_string(),
            to: opts.period.to.to_string(),
            as_of: opts.as_of.to_string(),
            previous: PreviousPeriod {
                label: opts.previous.label.clone(),
                from: opts.previous.from.to_string(),
                to: opts.previous.to.to_string(),
                as_of: opts.previous_as_of.to_string(),
            },
        },
        org: opts.org.as_ref().map(|id| OrgRef {
            id: id.clone(),
            name: index.org_name(id),
        }),
        integrity,
        changes,
        access,
        quality,
        org_life,
        dues,
        checkpoint: note.to_owned(),
        signed_by: ledger.verifier_key().to_string(),
        signature: None,
    })
}

/// Counts sorted by key.
fn counts_by_key(m: BTreeMap<String, u64>) -> Vec<Count> {
    m.into_iter()
        .map(|(key, count)| Count { key, count })
        .collect()
}

/// Counts sorted most first, then by key.
fn counts_most_first(m: HashMap<String, u64>) -> Vec<Count> {
    let mut v: Vec<Count> = m
        .into_iter()
        .map(|(key, count)| Count { key, count })
        .collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    v
}

/// One pass over the entries that can be in the period: record changes by `ts`, access
/// decisions by their access time.
fn scan_entries(
    ledger: &Ledger,
    opts: &ReportOptions,
    index: &Index,
    size: u64,
) -> Result<(Changes, Access, u64), ReportError> {
    let start = opts.period.start_utc();
    let end = opts.period.end_utc();
    let start_ts = format_ts(start);
    let end_ts = format_ts(end);
    let filter = LogFilter {
        since: Some(format_ts(start - MAX_CLOCK_SKEW)),
        to_seq: size.checked_sub(1),
        ..Default::default()
    };
    let mut entries_in_period = 0u64;
    let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_org: HashMap<Option<String>, u64> = HashMap::new();
    let mut by_month: BTreeMap<String, u64> =
        opts.period.months().into_iter().map(|m| (m, 0)).collect();
    let mut by_actor: HashMap<String, u64> = HashMap::new();
    let (mut total, mut imports) = (0u64, 0u64);

    let mut acc = AccessCounts::default();
    ledger.query(&filter, |e: Entry| {
        let in_period = e.ts.as_str() >= start_ts.as_str() && e.ts.as_str() < end_ts.as_str();
        if e.kind == DECISION_KIND {
            if let Some(a) = audit::access_of(&e) {
                if a.t >= start
                    && a.t < end
                    && index.in_scope(index.org_of_subject(&a.subject).as_deref())
                {
                    acc.add(&a.user, &a.action, a.allowed, shanghai_day(a.t));
                }
            }
        }
        if !in_period || size == 0 {
            return Ok(());
        }
        entries_in_period += 1;
        if e.kind == crate::records::import::BATCH_KIND {
            imports += 1;
            return Ok(());
        }
        if record_family(&e.kind).is_none() {
            return Ok(());
        }
        let org = index.org_of_subject(&e.subject).or_else(|| record_org(&e));
        if !index.in_scope(org.as_deref()) {
            return Ok(());
        }
        total += 1;
        *by_kind.entry(e.kind.clone()).or_insert(0) += 1;
        *by_org.entry(org).or_insert(0) += 1;
        if let Some(t) = parse_utc(&e.ts) {
            let d = shanghai_day(t);
            *by_month.entry(d.format("%Y-%m").to_string()).or_insert(0) += 1;
        }
        *by_actor.entry(e.actor.user.clone()).or_insert(0) += 1;
        Ok(())
    })?;

    let mut orgs: Vec<OrgCount> = by_org
        .into_iter()
        .map(|(org_id, count)| OrgCount {
            name: org_id.as_deref().and_then(|o| index.org_name(o)),
            org_id,
            count,
        })
        .collect();
    orgs.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.org_id.cmp(&b.org_id)));
    let changes = Changes {
        total,
        by_kind: counts_by_key(by_kind),
        by_org: orgs,
        by_month: counts_by_key(by_month),
        by_actor: counts_most_first(by_actor),
        imports,
    };
    Ok((changes, acc.finish(), entries_in_period))
}

/// The org a record entry names in its data (a record no longer in the projection).
fn record_org(e: &Entry) -> Option<String> {
    e.data
        .get("record")
        .and_then(|r| r.get("org_id"))
        .and_then(Json::as_str)
        .map(str::to_owned)
}

#[derive(Default)]
struct AccessCounts {
    decisions: u64,
    allowed: u64,
    users: HashSet<String>,
    by_day: BTreeMap<NaiveDate, (u64, u64)>,
    by_action: BTreeMap<String, u64>,
    denied_by_user: HashMap<String, u64>,
}

impl AccessCounts {
    fn add(&mut self, user: &str, action: &str, allowed: bool, day: NaiveDate) {
        self.decisions += 1;
        if !self.users.contains(user) {
            self.users.insert(user.to_owned());
        }
        let d = self.by_day.entry(day).or_insert((0, 0));
        if allowed {
            self.allowed += 1;
            d.0 += 1;
        } else {
            d.1 += 1;
            *self.denied_by_user.entry(user.to_owned()).or_insert(0) += 1;
        }
        *self.by_action.entry(action.to_owned()).or_insert(0) += 1;
    }

    fn finish(self) -> Access {
        Access {
            decisions: self.decisions,
            allowed: self.allowed,
            denied: self.decisions - self.allowed,
            users: self.users.len() as u64,
            by_day: self
                .by_day
                .into_iter()
                .map(|(d, (allowed, denied))| DayCount {
                    day: d.to_string(),
                    allowed,
                    denied,
                })
                .collect(),
            by_action: counts_by_key(self.by_action),
            denied_by_user: counts_most_first(self.denied_by_user),
            audited: false,
            findings: Vec::new(),
            findings_by_rule: Vec::new(),
        }
    }
}

/// Verification, and the consistency proof from the previous report of the same scope.
fn integrity(
    ledger: &Ledger,
    opts: &ReportOptions,
    size: u64,
    root: &str,
    entries_in_period: u64,
) -> Result<Integrity, ReportError> {
    let v = verify::verify(ledger, VerifyOptions::default())?;
    let verify = VerifySummary {
        ok: v.ok,
        size: v.size,
        checkpoints_verified: v.checkpoints_verified,
        failure: v.failure.map(|f| VerifyFailure {
            seq: f.seq,
            code: f.code.to_owned(),
            message: f.message,
        }),
    };
    let filter = LogFilter {
        kind: Some(ISSUE_KIND.to_owned()),
        subject: Some(super::subject(opts.org.as_deref())),
        to_seq: size.checked_sub(1),
        ..Default::default()
    };
    let mut last: Option<Entry> = None;
    ledger.query(&filter, |e| {
        last = Some(e);
        Ok(())
    })?;
    let previous = match last {
        None => None,
        Some(e) => Some(previous_report(ledger, &e, size)?),
    };
    Ok(Integrity {
        size,
        root: root.to_owned(),
        verify,
        previous,
        entries_in_period,
    })
}

fn previous_report(ledger: &Ledger, e: &Entry, size: u64) -> Result<PreviousReport, ReportError> {
    let d = &e.data;
    let old = d.get("checkpoint_size").and_then(Json::as_u64).unwrap_or(0);
    let recorded = d
        .get("checkpoint_root")
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_owned();
    let (proof, consistent) = if old == 0 || old > size {
        (Vec::new(), false)
    } else {
        let p = ledger.consistency_proof(old, Some(size))?;
        let ok = p.verify() && hex_hash(&p.old_root) == recorded;
        (p.path.iter().map(hex_hash).collect(), ok)
    };
    Ok(PreviousReport {
        seq: e.seq,
        period: d
            .get("period")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_owned(),
        issued_at: e.ts.clone(),
        size: old,
        root: recorded,
        proof,
        consistent,
    })
}

/// Severity as text (the checks and the audit have their own enums of the same spelling).
fn finding(
    rule: String,
    severity: &str,
    subject: String,
    message: String,
    mut values: Json,
) -> Finding {
    mask_json_in_place(&mut values);
    Finding {
        rule,
        severity: severity.to_owned(),
        subject,
        message,
        values,
    }
}

/// The access audit of the period's decisions, scoped to the users of the orgs in scope.
fn audit_access(
    ledger: &Ledger,
    opts: &ReportOptions,
    index: &Index,
    access: &mut Access,
) -> Result<(), ReportError> {
    let end = opts.period.end_utc();
    let until: DateTime<Utc> = end - Duration::milliseconds(1);
    let r = audit::audit_access(
        ledger,
        &opts.access,
        &AuditOptions {
            since: Some(opts.period.start_utc()),
            until: Some(until),
            user: None,
            now: until,
        },
    )?;
    let mut by_rule: BTreeMap<String, u64> = BTreeMap::new();
    for f in r.findings {
        let org = index.org_of_subject(&f.subject);
        if !index.in_scope(org.as_deref()) {
            continue;
        }
        *by_rule.entry(f.rule.clone()).or_insert(0) += 1;
        access.findings.push(finding(
            f.rule,
            f.severity.as_str(),
            f.subject,
            f.message,
            f.values,
        ));
    }
    access.findings_by_rule = counts_by_key(by_rule);
    access.audited = true;
    Ok(())
}

/// The consistency checks judged on `as_of` over the window from `since`.
fn run_checks(
    conn: &Connection,
    opts: &ReportOptions,
    as_of: NaiveDate,
    since: NaiveDate,
) -> Result<Vec<Finding>, ReportError> {
    let found = checks_bridge::run(
        conn,
        &opts.checks,
        as_of,
        since.min(as_of),
        opts.org.as_deref(),
    )
    .map_err(ReportError::Checks)?;
    Ok(found
        .into_iter()
        .map(|(rule, severity, subject, message, values)| {
            finding(rule, severity, subject, message, values)
        })
        .collect())
}

/// The checks at the end of the previous period on the records as the ledger knew them
/// then: the record entries appended before `previous_as_of` (Asia/Shanghai), replayed into
/// a scratch projection. Returns the findings and the number of entries replayed.
fn previous_findings(
    ledger: &Ledger,
    opts: &ReportOptions,
    size: u64,
) -> Result<(Vec<Finding>, u64), ReportError> {
    let cutoff = period::day_start_utc(opts.previous_as_of) - Duration::milliseconds(1);
    let filter = LogFilter {
        until: Some(format_ts(cutoff)),
        to_seq: size.checked_sub(1),
        ..Default::default()
    };
    let mut replay = Replay::new_in(ledger.dir())?;
    let mut entries = 0u64;
    ledger.query(&filter, |e| {
        entries += 1;
        replay
            .apply(&e)
            .map_err(|err| LedgerError::Damaged(format!("entry {} does not replay: {err}", e.seq)))
    })?;
    if let Some(org) = &opts.org {
        // The org did not exist yet: nothing of it to judge.
        let known: bool = replay.conn().query_row(
            "SELECT EXISTS(SELECT 1 FROM org WHERE org_id = ?1)",
            [org],
            |r| r.get(0),
        )?;
        if !known {
            return Ok((Vec::new(), entries));
        }
    }
    let found = run_checks(replay.conn(), opts, opts.previous_as_of, opts.previous.from)?;
    Ok((found, entries))
}

fn quality(
    opts: &ReportOptions,
    index: &Index,
    now: Vec<Finding>,
    before: Vec<Finding>,
) -> Quality {
    let catalogue = checks_bridge::descriptions(&opts.checks);
    let mut totals = Severities::default();
    let mut previous_totals = Severities::default();
    let mut rules: BTreeMap<String, (String, u64, u64)> = BTreeMap::new();
    let mut orgs: HashMap<Option<String>, (u64, u64)> = HashMap::new();
    let keys_now: HashSet<(String, String)> = now
        .iter()
        .map(|f| (f.rule.clone(), f.subject.clone()))
        .collect();
    let keys_before: HashSet<(String, String)> = before
        .iter()
        .map(|f| (f.rule.clone(), f.subject.clone()))
        .collect();
    for f in &before {
        previous_totals.add(&f.severity);
        rules
            .entry(f.rule.clone())
            .or_insert((f.severity.clone(), 0, 0))
            .2 += 1;
        orgs.entry(index.org_of_subject(&f.subject))
            .or_insert((0, 0))
            .1 += 1;
    }
    let mut records: BTreeMap<String, Vec<RecordFinding>> = BTreeMap::new();
    for f in now {
        totals.add(&f.severity);
        let r = rules
            .entry(f.rule.clone())
            .or_insert((f.severity.clone(), 0, 0));
        r.0.clone_from(&f.severity);
        r.1 += 1;
        orgs.entry(index.org_of_subject(&f.subject))
            .or_insert((0, 0))
            .0 += 1;
        records.entry(f.subject).or_default().push(RecordFinding {
            rule: f.rule,
            severity: f.severity,
            message: f.message,
            values: f.values,
        });
    }
    let by_rule = rules
        .into_iter()
        .map(|(rule, (severity, count, previous))| {
            let (zh, en) = catalogue.get(&rule).cloned().unwrap_or_default();
            RuleTrend {
                description_zh: zh,
                description_en: en,
                rule,
                severity,
                count,
                previous,
            }
        })
        .collect();
    let mut by_org: Vec<OrgTrend> = orgs
        .into_iter()
        .map(|(org_id, (count, previous))| OrgTrend {
            name: org_id.as_deref().and_then(|o| index.org_name(o)),
            org_id,
            count,
            previous,
        })
        .collect();
    by_org.sort_by(|a, b| {
        (b.count, b.previous)
            .cmp(&(a.count, a.previous))
            .then_with(|| a.org_id.cmp(&b.org_id))
    });
    let records = records
        .into_iter()
        .map(|(subject, findings)| {
            let (kind, id) = subject.split_once('/').unwrap_or(("", subject.as_str()));
            let (name, org_id) = match kind {
                "member" => (
                    index.member_name(id),
                    index.member_org(id).map(str::to_owned),
                ),
                "org" => (index.org_name(id), Some(id.to_owned())),
                _ => (None, index.org_of_subject(&subject)),
            };
            FailingRecord {
                org_name: org_id.as_deref().and_then(|o| index.org_name(o)),
                org_id,
                name,
                subject,
                findings,
            }
        })
        .collect();
    Quality {
        as_of: opts.as_of.to_string(),
        previous_as_of: opts.previous_as_of.to_string(),
        previous_entries: 0,
        totals,
        previous_totals,
        new: keys_now.difference(&keys_before).count() as u64,
        resolved: keys_before.difference(&keys_now).count() as u64,
        by_rule,
        by_org,
        records,
    }
}

/// Meetings per branch and month, for the months of the period that began before `as_of`.
fn org_life(
    conn: &Connection,
    opts: &ReportOptions,
    index: &Index,
    now: &[Finding],
) -> Result<OrgLife, ReportError> {
    let as_of = opts.as_of;
    let months: Vec<String> = opts
        .period
        .months()
        .into_iter()
        .filter(|m| format!("{m}-01") < as_of.to_string())
        .collect();
    let from = opts.period.from.to_string();
    let last = opts
        .period
        .to
        .min(as_of.pred_opt().unwrap_or(as_of))
        .to_string();
    let mut branches: BTreeMap<&str, BranchLife> = BTreeMap::new();
    for (id, o) in &index.orgs {
        let gone = o.dissolved.as_deref().is_some_and(|d| d < from.as_str());
        let later = o.established.as_deref().is_some_and(|d| d > last.as_str());
        if o.kind != "branch" || gone || later || !index.in_scope(Some(id)) {
            continue;
        }
        branches.insert(
            id.as_str(),
            BranchLife {
                org_id: id.clone(),
                name: o.name.clone(),
                has_committee: o.has_committee,
                months: months
                    .iter()
                    .map(|m| MeetingCounts {
                        month: m.clone(),
                        ..Default::default()
                    })
                    .collect(),
                issues: Vec::new(),
            },
        );
    }
    let mut totals = MeetingCounts::default();
    if from <= last {
        let mut stmt =
            conn.prepare("SELECT org_id, kind, date FROM meeting WHERE date >= ?1 AND date <= ?2")?;
        let mut rows = stmt.query([&from, &last])?;
        while let Some(r) = rows.next()? {
            let org: String = r.get(0)?;
            let kind: String = r.get(1)?;
            let date: String = r.get(2)?;
            let Some(b) = branches.get_mut(org.as_str()) else {
                continue;
            };
            let month = date.get(..7).unwrap_or_default();
            if let Some(m) = b.months.iter_mut().find(|m| m.month == month) {
                m.add(&kind);
                totals.add(&kind);
            }
        }
    }
    for f in now.iter().filter(|f| f.rule.starts_with("meetings.")) {
        if let Some(b) = f
            .subject
            .strip_prefix("org/")
            .and_then(|o| branches.get_mut(o))
        {
            if !b.issues.contains(&f.rule) {
                b.issues.push(f.rule.clone());
            }
        }
    }
    Ok(OrgLife {
        months,
        branches: branches.into_values().collect(),
        totals,
    })
}

/// Members with months the checks expect dues for and find none.
fn dues(index: &Index, now: &[Finding]) -> Dues {
    let mut by_member: BTreeMap<&str, (BTreeSet<String>, bool)> = BTreeMap::new();
    for f in now {
        let Some(id) = f.subject.strip_prefix("member/") else {
            continue;
        };
        match f.rule.as_str() {
            "dues.missing_months" => {
                let months = f.values.get("months").and_then(Json::as_array);
                let e = by_member.entry(id).or_default();
                for m in months.into_iter().flatten().filter_map(Json::as_str) {
                    e.0.insert(m.to_owned());
                }
            }
            "dues.six_months_unpaid" => by_member.entry(id).or_default().1 = true,
            _ => {}
        }
    }
    let mut arrears: Vec<Arrear> = by_member
        .into_iter()
        .map(|(id, (months, six))| {
            let org_id = index.member_org(id).map(str::to_owned);
            Arrear {
                member_id: id.to_owned(),
                name: index.member_name(id),
                org_name: org_id.as_deref().and_then(|o| index.org_name(o)),
                org_id,
                months: months.into_iter().collect(),
                six_months: six,
            }
        })
        .collect();
    arrears.sort_by(|a, b| (&a.org_id, &a.member_id).cmp(&(&b.org_id, &b.member_id)));
    Dues {
        members: arrears.len() as u64,
        missing_months: arrears.iter().map(|a| a.months.len() as u64).sum(),
        six_months_unpaid: arrears.iter().filter(|a| a.six_months).count() as u64,
        arrears,
    }
}
