//! Access audit: the accesses in the ledger's `access.decision` entries that look like
//! leakage (信息泄漏), as findings a security officer reviews (DESIGN §7, Access).
//!
//! [`audit_access`] streams the decisions of a period from the ledger (an access happened at
//! its `data.at`, else at the entry's `ts`) and runs the access rules of
//! `policies/checks.toml` ([`AccessConfig`]): bulk reads, off-hours access, denial bursts,
//! sensitive exports and administrators reading member data per user in time order
//! ([`rules`]), then separation-of-duties (same user changed and approved a record) and
//! dormant accounts.
//!
//! Memory is bounded per user: a sliding window or a per-day total for each rule, not the
//! period's accesses. Accesses of one user normally reach the ledger in time order (live
//! decisions, and imports sorted by time); a user whose accesses do not (two overlapping
//! imports) is detected and re-read in a second pass that sorts only that user's accesses.
//!
//! It reads the ledger and the projection's `user` table and never writes; recording a
//! `scan.access` entry is the caller's choice. Findings name users and record ids, never a
//! sensitive value. [`sample`] makes synthetic access logs for demos and tests.

pub mod config;
pub mod rules;
pub mod sample;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use serde_json::json;

pub use config::{AccessConfig, ConfigError, WorkingHours};
pub use rules::Access;

use crate::ledger::entry::Entry;
use crate::ledger::store::{LedgerError, LogFilter};
use crate::ledger::Ledger;
use crate::policy::record::{format_time, parse_time, DecisionData, Verdict, DECISION_KIND};
use crate::policy::record::{AccessEvent, MAX_CLOCK_SKEW};
use rules::{Found, UserState, DORMANT_ACCOUNT, SELF_APPROVAL};

/// Kind of the entry that records an access audit run.
pub const SCAN_KIND: &str = "scan.access";

/// The record kinds whose entries change a record (for `access.self_approval`).
const CHANGE_KIND_PREFIXES: &[&str] = &["member.", "org.", "dues.", "meeting.", "transfer."];

/// Actions that change a record.
const CHANGE_ACTIONS: &[&str] = &["create", "update", "remove"];

/// How serious a finding is: the same scale as the consistency checks'.
pub use crate::checks::Severity;

/// One access pattern that looks like leakage, of one user. Same fields as the findings of
/// the consistency checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Rule id, e.g. `access.bulk_read`.
    pub rule: String,
    /// How serious.
    pub severity: Severity,
    /// The user: `user/<id>`.
    pub subject: String,
    /// English, one line; never a sensitive value.
    pub message: String,
    /// The numbers behind the finding (counts, times, example record ids).
    pub values: serde_json::Value,
}

/// What to audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditOptions {
    /// Accesses at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Accesses at or before this time; also the end of the dormant-account window.
    pub until: Option<DateTime<Utc>>,
    /// Only this user.
    pub user: Option<String>,
    /// The end of the dormant-account window when `until` is not given.
    pub now: DateTime<Utc>,
}

impl AuditOptions {
    /// Everything, as of now.
    pub fn all() -> AuditOptions {
        AuditOptions {
            since: None,
            until: None,
            user: None,
            now: Utc::now(),
        }
    }
}

/// The result of an access audit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditReport {
    /// Start of the period (RFC 3339 UTC), if bounded.
    pub since: Option<String>,
    /// End of the period, if bounded.
    pub until: Option<String>,
    /// `access.decision` entries in the period.
    pub decisions: u64,
    /// Of them allowed.
    pub allowed: u64,
    /// Distinct users in them.
    pub users: u64,
    /// `access.decision` entries that could not be read (skipped; `djaudit verify` says why).
    pub unreadable: u64,
    /// The findings, by user, rule and time.
    pub findings: Vec<Finding>,
}

impl AuditReport {
    /// Number of findings per rule.
    pub fn by_rule(&self) -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        for f in &self.findings {
            *m.entry(f.rule.clone()).or_insert(0) += 1;
        }
        m
    }

    /// Number of findings at or above `severity`.
    pub fn at_or_above(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity >= severity)
            .count()
    }
}

/// Errors of an access audit.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Reading the ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// Reading the projection failed.
    #[error("cannot read the projection: {0}")]
    Projection(#[from] rusqlite::Error),
    /// The rule settings are invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// A user of the projection.
#[derive(Debug, Clone, PartialEq, Eq)]
struct UserInfo {
    role: String,
    disabled: bool,
}

/// The users of the projection (none when it has no `user` table yet).
fn load_users(conn: &Connection) -> Result<HashMap<String, UserInfo>, rusqlite::Error> {
    let exists: bool = conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'user')",
        [],
        |r| r.get(0),
    )?;
    let mut users = HashMap::new();
    if !exists {
        return Ok(users);
    }
    let mut stmt = conn.prepare("SELECT user_id, role, disabled FROM user")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            UserInfo {
                role: r.get(1)?,
                disabled: r.get::<_, i64>(2)? != 0,
            },
        ))
    })?;
    for row in rows {
        let (id, info) = row?;
        users.insert(id, info);
    }
    Ok(users)
}

/// The access an `access.decision` entry records, or `None` when its data do not parse.
pub fn access_of(e: &Entry) -> Option<Access> {
    let data = DecisionData::deserialize(&e.data).ok()?;
    let t = match &data.at {
        Some(at) => parse_time(at)?,
        None => parse_time(&e.ts)?,
    };
    Some(Access {
        t,
        seq: e.seq,
        user: e.actor.user.clone(),
        action: data.action,
        subject: e.subject.clone(),
        allowed: data.decision == Verdict::Allow,
        fields: data.fields,
        count: data.count,
    })
}

/// The access an [`AccessEvent`] would be recorded as, if allowed is `allowed` (for tests
/// and for auditing a log before importing it).
pub fn access_of_event(e: &AccessEvent, seq: u64, allowed: bool) -> Access {
    Access {
        t: e.at,
        seq,
        user: e.user.clone(),
        action: e.action.as_str().to_string(),
        subject: e.resource.to_string(),
        allowed,
        fields: e.fields.clone(),
        count: e.count,
    }
}

/// An allowed `approve` in the period.
#[derive(Debug, Clone)]
struct Approval {
    user: String,
    subject: String,
    t: DateTime<Utc>,
}

/// The state of the first pass.
struct Pass<'a> {
    cfg: &'a AccessConfig,
    users: &'a HashMap<String, UserInfo>,
    states: HashMap<String, UserState>,
    /// Time of the last access of each user (to see who is out of order).
    last: HashMap<String, DateTime<Utc>>,
    /// Users whose accesses are not in time order: handled by the second pass.
    unordered: HashSet<String>,
    found: Vec<Found>,
    approvals: Vec<Approval>,
    /// Records each user changed through an allowed change decision in the period.
    changed: HashMap<String, HashSet<String>>,
}

impl Pass<'_> {
    fn role(&self, user: &str) -> Option<&str> {
        self.users.get(user).map(|u| u.role.as_str())
    }

    fn push(&mut self, a: Access) {
        if a.allowed && a.action == "approve" {
            self.approvals.push(Approval {
                user: a.user.clone(),
                subject: a.subject.clone(),
                t: a.t,
            });
        }
        if a.allowed && CHANGE_ACTIONS.contains(&a.action.as_str()) {
            self.changed
                .entry(a.user.clone())
                .or_default()
                .insert(a.subject.clone());
        }
        if self.unordered.contains(&a.user) {
            return;
        }
        if self.last.get(&a.user).is_some_and(|prev| a.t < *prev) {
            self.states.remove(&a.user);
            self.unordered.insert(a.user.clone());
            return;
        }
        self.last.insert(a.user.clone(), a.t);
        let role = self.role(&a.user).map(str::to_string);
        let state = self.states.entry(a.user.clone()).or_default();
        state.push(self.cfg, role.as_deref(), &a, &mut self.found);
    }
}

/// Audits the accesses of a period (see the module docs).
pub fn audit_access(
    ledger: &Ledger,
    cfg: &AccessConfig,
    opts: &AuditOptions,
) -> Result<AuditReport, AuditError> {
    let users = load_users(ledger.conn())?;
    let in_period = |t: &DateTime<Utc>| {
        opts.since.is_none_or(|s| *t >= s) && opts.until.is_none_or(|u| *t <= u)
    };
    // An access at `at` is appended at `ts >= at - MAX_CLOCK_SKEW`: entries appended before
    // `since - skew` cannot hold an access of the period.
    let filter = LogFilter {
        kind: Some(DECISION_KIND.to_string()),
        since: opts.since.map(|s| format_time(&(s - MAX_CLOCK_SKEW))),
        actor: opts.user.clone(),
        ..Default::default()
    };

    let mut pass = Pass {
        cfg,
        users: &users,
        states: HashMap::new(),
        last: HashMap::new(),
        unordered: HashSet::new(),
        found: Vec::new(),
        approvals: Vec::new(),
        changed: HashMap::new(),
    };
    let (mut decisions, mut allowed, mut unreadable) = (0u64, 0u64, 0u64);
    let mut seen_users: HashSet<String> = HashSet::new();
    ledger.query(&filter, |e| {
        let Some(a) = access_of(&e) else {
            unreadable += 1;
            return Ok(());
        };
        if !in_period(&a.t) {
            return Ok(());
        }
        decisions += 1;
        allowed += u64::from(a.allowed);
        if !seen_users.contains(&a.user) {
            seen_users.insert(a.user.clone());
        }
        pass.push(a);
        Ok(())
    })?;
    let Pass {
        states,
        unordered,
        mut found,
        approvals,
        changed,
        ..
    } = pass;
    for (user, state) in states {
        state.finish(cfg, &user, &mut found);
    }

    // Second pass: the users whose accesses were out of time order, sorted.
    if !unordered.is_empty() {
        let mut late: HashMap<String, Vec<Access>> = HashMap::new();
        ledger.query(&filter, |e| {
            if !unordered.contains(&e.actor.user) {
                return Ok(());
            }
            if let Some(a) = access_of(&e).filter(|a| in_period(&a.t)) {
                late.entry(a.user.clone()).or_default().push(a);
            }
            Ok(())
        })?;
        for (user, mut list) in late {
            list.sort_by_key(|a| (a.t, a.seq));
            let role = users.get(&user).map(|u| u.role.as_str());
            let mut state = UserState::default();
            for a in &list {
                state.push(cfg, role, a, &mut found);
            }
            state.finish(cfg, &user, &mut found);
        }
    }

    if cfg.self_approval.enabled {
        self_approvals(ledger, cfg, &approvals, &changed, &mut found)?;
    }
    if cfg.dormant_account.rule.enabled {
        dormant_accounts(ledger, cfg, opts, &users, &mut found)?;
    }

    found.sort_by(|a, b| {
        (&a.finding.subject, &a.finding.rule, a.t).cmp(&(&b.finding.subject, &b.finding.rule, b.t))
    });
    Ok(AuditReport {
        since: opts.since.map(|t| format_time(&t)),
        until: opts.until.map(|t| format_time(&t)),
        decisions,
        allowed,
        users: seen_users.len() as u64,
        unreadable,
        findings: found.into_iter().map(|f| f.finding).collect(),
    })
}

/// `access.self_approval`: one finding per (user, record) approved by someone who also
/// changed it.
fn self_approvals(
    ledger: &Ledger,
    cfg: &AccessConfig,
    approvals: &[Approval],
    changed: &HashMap<String, HashSet<String>>,
    found: &mut Vec<Found>,
) -> Result<(), AuditError> {
    // (user, record) → (approvals, first approval)
    let mut pairs: BTreeMap<(String, String), (u64, DateTime<Utc>)> = BTreeMap::new();
    for a in approvals {
        let e = pairs
            .entry((a.user.clone(), a.subject.clone()))
            .or_insert((0, a.t));
        e.0 += 1;
        e.1 = e.1.min(a.t);
    }
    for ((user, subject), (count, first)) in pairs {
        let mut how = BTreeSet::new();
        if changed.get(&user).is_some_and(|s| s.contains(&subject)) {
            how.insert("access.decision".to_string());
        }
        let filter = LogFilter {
            subject: Some(subject.clone()),
            actor: Some(user.clone()),
            ..Default::default()
        };
        ledger.query(&filter, |e| {
            if CHANGE_KIND_PREFIXES.iter().any(|p| e.kind.starts_with(p)) {
                how.insert(e.kind);
            }
            Ok(())
        })?;
        if how.is_empty() {
            continue;
        }
        found.push(Found {
            t: first.timestamp_millis(),
            finding: Finding {
                rule: SELF_APPROVAL.to_string(),
                severity: cfg.self_approval.severity,
                subject: format!("user/{user}"),
                message: format!("user `{user}` approved `{subject}`, which they also changed"),
                values: json!({
                    "record": subject,
                    "approvals": count,
                    "first_approval": format_time(&first),
                    "changes": how,
                }),
            },
        });
    }
    Ok(())
}

/// `access.dormant_account`: enabled users with no entry as actor in the last `days` days
/// up to the end of the period (an access at its `data.at`), not created in that time.
fn dormant_accounts(
    ledger: &Ledger,
    cfg: &AccessConfig,
    opts: &AuditOptions,
    users: &HashMap<String, UserInfo>,
    found: &mut Vec<Found>,
) -> Result<(), AuditError> {
    let days = cfg.dormant_account.days;
    let end = opts.until.unwrap_or(opts.now);
    let start = end - chrono::Duration::days(i64::from(days));
    let mut candidates: HashSet<&str> = users
        .iter()
        .filter(|(id, u)| !u.disabled && opts.user.as_ref().is_none_or(|w| w == *id))
        .map(|(id, _)| id.as_str())
        .collect();
    if candidates.is_empty() {
        return Ok(());
    }
    let filter = LogFilter {
        since: Some(format_time(&(start - MAX_CLOCK_SKEW))),
        ..Default::default()
    };
    ledger.query(&filter, |e| {
        let t = if e.kind == DECISION_KIND {
            access_of(&e).map(|a| a.t)
        } else {
            parse_time(&e.ts)
        };
        let Some(t) = t else { return Ok(()) };
        if t < start || t > end {
            return Ok(());
        }
        candidates.remove(e.actor.user.as_str());
        if e.kind == "user.create" {
            if let Some(id) = e.subject.strip_prefix("user/") {
                candidates.remove(id);
            }
        }
        Ok(())
    })?;
    for user in candidates {
        found.push(Found {
            t: start.timestamp_millis(),
            finding: Finding {
                rule: DORMANT_ACCOUNT.to_string(),
                severity: cfg.dormant_account.rule.severity,
                subject: format!("user/{user}"),
                message: format!(
                    "enabled account `{user}` has not been used in the {days} days up to {}",
                    end.with_timezone(&cfg.hours.offset).format("%Y-%m-%d")
                ),
                values: json!({
                    "days": days,
                    "since": format_time(&start),
                    "until": format_time(&end),
                }),
            },
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Actor, NewEntry};
    use crate::policy::record::import_access_log;
    use crate::policy::{Authorizer, Policies};
    use rules::{BULK_READ, OFF_HOURS};

    /// A ledger with C1 > B1, B2; members M0..M299 in B1, N0..N9 in B2; users of each role.
    fn ledger() -> (tempfile::TempDir, Ledger) {
        let dir = tempfile::tempdir().expect("tmp");
        let l = Ledger::init(
            &dir.path().join("d"),
            "test.example/ledger",
            Actor::cli("admin"),
        )
        .expect("init");
        let c = l.conn();
        c.execute_batch(include_str!("../records/schema.sql"))
            .expect("schema");
        c.execute_batch(
            "INSERT INTO org (org_id, name, kind, parent_id, last_seq) VALUES
               ('C1','C1','committee',NULL,0), ('B1','B1','branch','C1',0),
               ('B2','B2','branch','C1',0);
             INSERT INTO user (user_id, role, org_id, member_id, disabled, last_seq) VALUES
               ('dept','org_dept','C1',NULL,0,0), ('p1','provider','B1',NULL,0,0),
               ('sys','sysadmin',NULL,NULL,0,0), ('idle','provider','B2',NULL,0,0),
               ('off','provider','B1',NULL,1,0);",
        )
        .expect("rows");
        for i in 0..300 {
            c.execute(
                "INSERT INTO member (member_id, org_id, last_seq) VALUES (?1, 'B1', 0)",
                [format!("M{i}")],
            )
            .expect("member");
        }
        for i in 0..10 {
            c.execute(
                "INSERT INTO member (member_id, org_id, last_seq) VALUES (?1, 'B2', 0)",
                [format!("N{i}")],
            )
            .expect("member");
        }
        (dir, l)
    }

    fn import(l: &mut Ledger, lines: &[String]) {
        let a = Authorizer::new(Policies::embedded().expect("p"), l.conn()).expect("a");
        let text = lines.join("\n");
        import_access_log(l, &a, &text, Actor::cli("officer")).expect("import");
    }

    /// A read by `user` of `resource` at `hh:mm:ss` Shanghai time on 2026-10-`day`.
    fn line(user: &str, action: &str, resource: &str, day: u32, hms: &str) -> String {
        format!(
            r#"{{"at":"2026-10-{day:02}T{hms}+08:00","user":"{user}","action":"{action}","resource":"{resource}"}}"#
        )
    }

    fn opts() -> AuditOptions {
        AuditOptions {
            since: parse_time("2026-10-01T00:00:00+08:00"),
            until: parse_time("2026-10-31T23:59:59+08:00"),
            user: None,
            now: Utc::now(),
        }
    }

    fn quiet() -> AccessConfig {
        let mut c = AccessConfig::embedded().expect("cfg");
        c.dormant_account.rule.enabled = false;
        c
    }

    fn pairs(r: &AuditReport) -> Vec<(String, String)> {
        r.findings
            .iter()
            .map(|f| (f.subject.clone(), f.rule.clone()))
            .collect()
    }

    #[test]
    fn bulk_read_found_across_two_imports_out_of_order() {
        let (_d, mut l) = ledger();
        // Second half imported first: the user's accesses reach the ledger out of order.
        let mins = |range: std::ops::Range<usize>| -> Vec<String> {
            range
                .map(|i| {
                    line(
                        "dept",
                        "read",
                        &format!("member/M{i}"),
                        14,
                        &format!("10:0{}:{:02}", i / 60, i % 60),
                    )
                })
                .collect()
        };
        import(&mut l, &mins(60..120));
        import(&mut l, &mins(0..60));
        let r = audit_access(&l, &quiet(), &opts()).expect("audit");
        assert_eq!(r.decisions, 120);
        assert_eq!(
            pairs(&r),
            [("user/dept".to_string(), BULK_READ.to_string())]
        );
        assert_eq!(r.findings[0].values["members"], 120);
        assert_eq!(r.findings[0].values["first"], "2026-10-14T02:00:00.000Z");
    }

    #[test]
    fn period_is_judged_by_event_time_and_user_filter() {
        let (_d, mut l) = ledger();
        import(
            &mut l,
            &[
                line("p1", "read", "member/M1", 14, "23:00:00"),
                line("p1", "read", "member/M2", 1, "07:00:00"),
                line("dept", "read", "member/M3", 14, "22:00:00"),
            ],
        );
        let mut o = opts();
        o.since = parse_time("2026-10-02T00:00:00+08:00");
        let r = audit_access(&l, &quiet(), &o).expect("audit");
        assert_eq!(r.decisions, 2);
        assert_eq!(
            pairs(&r),
            [
                ("user/dept".to_string(), OFF_HOURS.to_string()),
                ("user/p1".to_string(), OFF_HOURS.to_string())
            ]
        );
        o.user = Some("p1".into());
        let r = audit_access(&l, &quiet(), &o).expect("audit");
        assert_eq!(r.decisions, 1);
        assert_eq!(r.users, 1);
        assert_eq!(pairs(&r), [("user/p1".to_string(), OFF_HOURS.to_string())]);
    }

    #[test]
    fn self_approval_needs_change_and_approval_by_the_same_user() {
        let (_d, mut l) = ledger();
        let change = |user: &str, subject: &str| {
            NewEntry::new(
                "member.update",
                subject,
                Actor::cli(user),
                json!({"changes": {"education": ["a", "b"]}}),
            )
            .expect("entry")
        };
        l.append(change("dept", "member/M1")).expect("append");
        l.append(change("p1", "member/M2")).expect("append");
        import(
            &mut l,
            &[
                // dept changed M1 and approves it: a finding.
                line("dept", "approve", "member/M1", 14, "10:00:00"),
                line("dept", "approve", "member/M1", 14, "10:30:00"),
                // p1 changed M2, dept approves it: fine.
                line("dept", "approve", "member/M2", 14, "11:00:00"),
                // dept updates M3 through the platform, then approves it: a finding.
                line("dept", "update", "member/M3", 15, "10:00:00"),
                line("dept", "approve", "member/M3", 15, "11:00:00"),
                // p1 is not allowed to approve: a denied approval is no finding.
                line("p1", "approve", "member/M2", 15, "11:00:00"),
            ],
        );
        let r = audit_access(&l, &quiet(), &opts()).expect("audit");
        let sa: Vec<&Finding> = r
            .findings
            .iter()
            .filter(|f| f.rule == SELF_APPROVAL)
            .collect();
        assert_eq!(sa.len(), 2, "{:?}", r.findings);
        assert_eq!(sa[0].subject, "user/dept");
        assert_eq!(sa[0].values["record"], "member/M1");
        assert_eq!(sa[0].values["approvals"], 2);
        assert_eq!(sa[0].values["changes"], json!(["member.update"]));
        assert_eq!(sa[1].values["record"], "member/M3");
        assert_eq!(sa[1].values["changes"], json!(["access.decision"]));
        assert_eq!(sa[0].severity, Severity::Error);
    }

    #[test]
    fn dormant_accounts_are_enabled_users_without_activity() {
        let (_d, mut l) = ledger();
        import(
            &mut l,
            &[
                line("dept", "read", "member/M1", 14, "10:00:00"),
                line("p1", "read", "member/M1", 14, "10:00:00"),
                // sys was active, but before the 90 days up to 2026-10-31.
                r#"{"at":"2026-07-01T10:00:00+08:00","user":"sys","action":"manage_users","resource":"system"}"#
                    .to_string(),
            ],
        );
        let mut c = AccessConfig::embedded().expect("cfg");
        c.sensitive_export.enabled = false;
        let r = audit_access(&l, &c, &opts()).expect("audit");
        assert_eq!(
            pairs(&r),
            [
                ("user/idle".to_string(), DORMANT_ACCOUNT.to_string()),
                ("user/sys".to_string(), DORMANT_ACCOUNT.to_string())
            ]
        );
        assert_eq!(r.findings[0].values["days"], 90);
        // A longer window sees sys's access.
        c.dormant_account.days = 200;
        let r = audit_access(&l, &c, &opts()).expect("audit");
        assert_eq!(
            pairs(&r),
            [("user/idle".to_string(), DORMANT_ACCOUNT.to_string())]
        );
        // An account created in the window is not dormant.
        l.append(
            NewEntry::new("user.create", "user/idle", Actor::cli("sys"), json!({})).expect("entry"),
        )
        .expect("append");
        let mut o = opts();
        o.until = None;
        o.now = Utc::now();
        o.since = None;
        let r = audit_access(&l, &c, &o).expect("audit");
        assert!(
            !pairs(&r).contains(&("user/idle".to_string(), DORMANT_ACCOUNT.to_string())),
            "{:?}",
            r.findings
        );
    }

    #[test]
    fn fail_unreadable_decisions_are_counted_not_fatal() {
        let (_d, mut l) = ledger();
        l.append(
            NewEntry::new(
                DECISION_KIND,
                "member/M1",
                Actor::cli("dept"),
                json!({"x": 1}),
            )
            .expect("entry"),
        )
        .expect("append");
        let r = audit_access(&l, &quiet(), &AuditOptions::all()).expect("audit");
        assert_eq!((r.decisions, r.unreadable), (0, 1));
    }
}
