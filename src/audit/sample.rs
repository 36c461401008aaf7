//! Synthetic platform access logs, for demos, tests and benchmarks: a plausible, ordinary
//! month of accesses by the users of a projection ([`normal_month`]) and the suspicious
//! case of one user reading many members fast ([`bulk_read`]).
//!
//! An ordinary month raises no finding with the default access rules of `policies/checks.toml`:
//! every access falls between 09:00 and 18:00 Asia/Shanghai time (UTC+8) on a weekday, no
//! user reads more than a few dozen members in ten minutes, denials are rare and spread
//! out, nobody exports or reads sensitive fields, the administrators never touch member
//! data, and every enabled user is active at least once. Deterministic: the same
//! projection, start and seed give the same events. This module reads the projection and
//! never writes.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Datelike, Duration, Months, NaiveDate, NaiveTime, Utc, Weekday};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rusqlite::Connection;

use crate::policy::{AccessEvent, Action, Resource};

/// Shanghai time, UTC+8.
const OFFSET_SECS: i32 = 8 * 3600;

/// First and last minute of the day at which a synthetic session may start (local).
const DAY_START_MIN: u32 = 9 * 60;
const DAY_END_MIN: u32 = 17 * 60;

#[derive(Debug, Clone)]
struct UserRow {
    id: String,
    role: String,
    org: Option<String>,
    member: Option<String>,
}

/// The projection's users, members by branch and org tree, read once.
struct Org {
    users: Vec<UserRow>,
    /// branch → members, sorted.
    members: BTreeMap<String, Vec<String>>,
    /// org → child orgs.
    children: HashMap<String, Vec<String>>,
}

impl Org {
    fn load(conn: &Connection) -> Result<Org, rusqlite::Error> {
        let mut users = Vec::new();
        let mut stmt = conn.prepare(
            "SELECT user_id, role, org_id, member_id FROM user WHERE disabled = 0 ORDER BY user_id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(UserRow {
                id: r.get(0)?,
                role: r.get(1)?,
                org: r.get(2)?,
                member: r.get(3)?,
            })
        })?;
        for row in rows {
            users.push(row?);
        }
        let mut members: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut stmt = conn.prepare(
            "SELECT member_id, org_id FROM member WHERE org_id IS NOT NULL ORDER BY member_id",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        for row in rows {
            let (m, o) = row?;
            members.entry(o).or_default().push(m);
        }
        let mut children: HashMap<String, Vec<String>> = HashMap::new();
        let mut stmt = conn.prepare(
            "SELECT org_id, parent_id FROM org WHERE parent_id IS NOT NULL ORDER BY org_id",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        for row in rows {
            let (o, p) = row?;
            children.entry(p).or_default().push(o);
        }
        Ok(Org {
            users,
            members,
            children,
        })
    }

    /// Members of `org` and every org below it (cycles are not followed twice).
    fn subtree_members(&self, org: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![org.to_string()];
        let mut seen = std::collections::HashSet::new();
        while let Some(o) = stack.pop() {
            if !seen.insert(o.clone()) {
                continue;
            }
            if let Some(ms) = self.members.get(&o) {
                out.extend(ms.iter().cloned());
            }
            if let Some(cs) = self.children.get(&o) {
                stack.extend(cs.iter().cloned());
            }
        }
        out.sort();
        out
    }

    /// Members of branches other than `org` (for the occasional refused read).
    fn members_elsewhere(&self, org: Option<&str>) -> Vec<String> {
        self.members
            .iter()
            .filter(|(o, _)| Some(o.as_str()) != org)
            .flat_map(|(_, ms)| ms.iter().cloned())
            .collect()
    }
}

/// `day` at `minute` after local midnight, plus `secs` seconds, in UTC.
fn local_time(day: NaiveDate, minute: u32, secs: i64) -> DateTime<Utc> {
    day.and_time(NaiveTime::MIN).and_utc() - Duration::seconds(i64::from(OFFSET_SECS))
        + Duration::minutes(i64::from(minute))
        + Duration::seconds(secs)
}

fn event(
    at: DateTime<Utc>,
    user: &str,
    action: Action,
    resource: Resource,
    request: String,
) -> AccessEvent {
    AccessEvent {
        at,
        user: user.to_string(),
        service: Some("platform".to_string()),
        action,
        resource,
        request,
        fields: Vec::new(),
        count: None,
    }
}

fn member_read(at: DateTime<Utc>, user: &str, member: &str) -> AccessEvent {
    event(
        at,
        user,
        Action::Read,
        Resource::Member(member.to_string()),
        format!("GET /v1/records/member/{member}"),
    )
}

/// A plausible month of platform access from `start` (inclusive) to one month later: data
/// providers read the members of their own branch in working hours (and now and then a
/// member of another branch, which the policy refuses), the organisation department reads
/// across its subtree, members look at their own record, the auditor verifies and audits
/// the ledger, the system administrator manages accounts and the security administrator
/// the policy. Sorted by time.
pub fn normal_month(
    conn: &Connection,
    start: NaiveDate,
    seed: u64,
) -> Result<Vec<AccessEvent>, rusqlite::Error> {
    let org = Org::load(conn)?;
    let end = start.checked_add_months(Months::new(1)).unwrap_or(start);
    let days: Vec<NaiveDate> = start
        .iter_days()
        .take_while(|d| *d < end)
        .filter(|d| !matches!(d.weekday(), Weekday::Sat | Weekday::Sun))
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    if days.is_empty() {
        return Ok(out);
    }
    for u in &org.users {
        // Each user works on some days of the month, at least one.
        let share = match u.role.as_str() {
            "provider" | "org_dept" => 0.6,
            "auditor" => 0.3,
            _ => 0.1,
        };
        let mut active: Vec<NaiveDate> = days
            .iter()
            .copied()
            .filter(|_| rng.gen_bool(share))
            .collect();
        if active.is_empty() {
            if let Some(d) = days.choose(&mut rng) {
                active.push(*d);
            }
        }
        for day in active {
            let minute = rng.gen_range(DAY_START_MIN..DAY_END_MIN);
            session(&org, u, day, minute, &mut rng, &mut out);
        }
    }
    out.sort_by(|a, b| (a.at, &a.user).cmp(&(b.at, &b.user)));
    Ok(out)
}

/// One working session of `u` starting at `minute` of `day`: under an hour, before 18:00.
fn session(
    org: &Org,
    u: &UserRow,
    day: NaiveDate,
    minute: u32,
    rng: &mut ChaCha8Rng,
    out: &mut Vec<AccessEvent>,
) {
    let at = |secs: i64| local_time(day, minute, secs);
    match u.role.as_str() {
        "provider" => {
            let own = u
                .org
                .as_deref()
                .and_then(|o| org.members.get(o))
                .cloned()
                .unwrap_or_default();
            if own.is_empty() {
                if let Some(o) = &u.org {
                    out.push(event(
                        at(0),
                        &u.id,
                        Action::Read,
                        Resource::Org(o.clone()),
                        format!("GET /v1/records/org/{o}"),
                    ));
                }
                return;
            }
            let n = rng.gen_range(3..=15usize).min(own.len());
            let mut secs = 0i64;
            for m in own.choose_multiple(rng, n) {
                secs += rng.gen_range(30..=180);
                out.push(member_read(at(secs), &u.id, m));
            }
            if rng.gen_bool(0.1) {
                if let Some(m) = own.choose(rng) {
                    secs += rng.gen_range(60..=300);
                    out.push(event(
                        at(secs),
                        &u.id,
                        Action::Update,
                        Resource::Member(m.clone()),
                        format!("PUT /v1/records/member/{m}"),
                    ));
                }
            }
            // Now and then a member of another branch: refused by the policy.
            if rng.gen_bool(0.08) {
                if let Some(m) = org.members_elsewhere(u.org.as_deref()).choose(rng) {
                    secs += rng.gen_range(60..=300);
                    out.push(member_read(at(secs), &u.id, m));
                }
            }
        }
        "org_dept" => {
            let all = u
                .org
                .as_deref()
                .map(|o| org.subtree_members(o))
                .unwrap_or_default();
            if all.is_empty() {
                if let Some(o) = &u.org {
                    out.push(event(
                        at(0),
                        &u.id,
                        Action::Read,
                        Resource::Org(o.clone()),
                        format!("GET /v1/records/org/{o}"),
                    ));
                }
                return;
            }
            // At least 20 s apart: at most 30 requests in any ten minutes.
            let n = rng.gen_range(10..=40usize).min(all.len());
            let mut secs = 0i64;
            for m in all.choose_multiple(rng, n) {
                secs += rng.gen_range(20..=90);
                out.push(member_read(at(secs), &u.id, m));
            }
        }
        "member" => {
            if let Some(m) = &u.member {
                out.push(member_read(at(0), &u.id, m));
            }
        }
        "auditor" => {
            out.push(event(
                at(0),
                &u.id,
                Action::Verify,
                Resource::Ledger,
                "djaudit verify".to_string(),
            ));
            out.push(event(
                at(120),
                &u.id,
                Action::Audit,
                Resource::Ledger,
                "djaudit audit access".to_string(),
            ));
        }
        "sysadmin" => {
            out.push(event(
                at(0),
                &u.id,
                Action::ManageUsers,
                Resource::System,
                "djaudit user update".to_string(),
            ));
        }
        "security_admin" => {
            out.push(event(
                at(0),
                &u.id,
                Action::ManagePolicy,
                Resource::System,
                "djaudit policy validate".to_string(),
            ));
        }
        _ => {}
    }
}

/// `user` reading each of `members` once, one second apart from `at` (300 members take
/// 299 seconds): the suspicious case the bulk-read rule is for.
pub fn bulk_read(user: &str, members: &[String], at: DateTime<Utc>) -> Vec<AccessEvent> {
    members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut e = member_read(at + Duration::seconds(i as i64), user, m);
            e.request = format!("GET /v1/records/member/{m}?export=page");
            e
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::rules::{Found, UserState};
    use crate::audit::{access_of_event, AccessConfig};

    /// C1 > G1 > {B1, B2}, C1 > B3, 20 members per branch, users of every role.
    fn projection() -> Connection {
        let conn = Connection::open_in_memory().expect("open");
        conn.execute_batch(include_str!("../records/schema.sql"))
            .expect("schema");
        conn.execute_batch(
            "INSERT INTO org (org_id, name, kind, parent_id, last_seq) VALUES
               ('C1','C1','committee',NULL,0), ('G1','G1','general_branch','C1',0),
               ('B1','B1','branch','G1',0), ('B2','B2','branch','G1',0), ('B3','B3','branch','C1',0);
             INSERT INTO user (user_id, role, org_id, member_id, disabled, last_seq) VALUES
               ('dept','org_dept','C1',NULL,0,0), ('p1','provider','B1',NULL,0,0),
               ('p2','provider','B2',NULL,0,0), ('m1','member','B1','M1-00',0,0),
               ('sys','sysadmin',NULL,NULL,0,0), ('aud','auditor',NULL,NULL,0,0),
               ('sec','security_admin',NULL,NULL,0,0), ('off','provider','B1',NULL,1,0);",
        )
        .expect("orgs");
        for b in ["B1", "B2", "B3"] {
            for i in 0..20 {
                conn.execute(
                    "INSERT INTO member (member_id, org_id, last_seq) VALUES (?1, ?2, 0)",
                    [format!("M{}-{i:02}", &b[1..]), b.to_string()],
                )
                .expect("member");
            }
        }
        conn
    }

    fn start() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 9, 1).expect("date")
    }

    #[test]
    fn normal_month_is_deterministic_and_in_working_hours() {
        let conn = projection();
        let a = normal_month(&conn, start(), 7).expect("month");
        let b = normal_month(&conn, start(), 7).expect("month");
        let c = normal_month(&conn, start(), 8).expect("month");
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.len() > 50, "{} events", a.len());
        let cfg = AccessConfig::embedded().expect("cfg");
        for e in &a {
            assert!(cfg.hours.is_working(&e.at), "{}", e.to_line());
            assert!(e.at >= local_time(start(), 0, 0));
            assert!(e.at < local_time(NaiveDate::from_ymd_opt(2026, 10, 1).expect("d"), 0, 0));
        }
        assert!(a.windows(2).all(|w| w[0].at <= w[1].at));
        // Every enabled user is active; the disabled one never.
        for u in ["dept", "p1", "p2", "m1", "sys", "aud", "sec"] {
            assert!(a.iter().any(|e| e.user == u), "{u}");
        }
        assert!(!a.iter().any(|e| e.user == "off"));
        // Providers read their own branch, except for rare reads elsewhere.
        let p1: Vec<_> = a.iter().filter(|e| e.user == "p1").collect();
        let own = p1
            .iter()
            .filter(|e| e.resource.to_string().starts_with("member/M1-"))
            .count();
        assert!(own * 10 >= p1.len() * 8, "{own} of {}", p1.len());
    }

    #[test]
    fn normal_month_raises_no_window_finding() {
        let conn = projection();
        let cfg = AccessConfig::embedded().expect("cfg");
        let events = normal_month(&conn, start(), 11).expect("month");
        let mut by_user: BTreeMap<&str, UserState> = BTreeMap::new();
        let mut out: Vec<Found> = Vec::new();
        for (i, e) in events.iter().enumerate() {
            // Treat every event as allowed: the rules here do not depend on it except the
            // denial burst, which allowed events cannot raise.
            let a = access_of_event(e, i as u64, true);
            by_user
                .entry(&e.user)
                .or_default()
                .push(&cfg, None, &a, &mut out);
        }
        for (u, s) in by_user {
            s.finish(&cfg, u, &mut out);
        }
        let rules: Vec<&str> = out.iter().map(|f| f.finding.rule.as_str()).collect();
        assert!(rules.is_empty(), "{rules:?}");
    }

    #[test]
    fn bulk_read_is_one_second_apart() {
        let members: Vec<String> = (0..300).map(|i| format!("M{i}")).collect();
        let at = local_time(start(), 23 * 60, 0);
        let b = bulk_read("dept", &members, at);
        assert_eq!(b.len(), 300);
        assert_eq!(b[0].at, at);
        assert_eq!(b[299].at - b[0].at, Duration::seconds(299));
        assert_eq!(b[5].resource, Resource::Member("M5".into()));
        assert!(b
            .iter()
            .all(|e| e.action == Action::Read && e.user == "dept"));
    }
}
