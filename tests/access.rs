//! Access policy through the real binary: decisions recorded by `access check`, platform
//! access logs imported and audited (an ordinary month raises nothing; a bulk read at night
//! raises exactly that user's findings), and `policy validate|test` on shipped and broken
//! policy sets.

mod util;

use std::path::Path;

use chrono::{DateTime, NaiveDate, Utc};
use djaudit::audit::sample::{bulk_read, normal_month};
use djaudit::ledger::entry::Entry;
use serde_json::Value;
use util::{stderr, stdout, TestDir};

/// C1 > G1 > {B1, B2}, C1 > {B3, B4}; 80 members per branch (M<b>-<nn>); users: the
/// organisation department of C1, a provider per branch, a member, the three
/// administrators and a disabled account. Built with `djaudit import`, so the projection
/// is the ledger's.
fn org() -> TestDir {
    let t = TestDir::new();
    t.init();
    let orgs = "org_id,name,kind,parent_id\nC1,党委,committee,\nG1,党总支,general_branch,C1\n\
                B1,一支部,branch,G1\nB2,二支部,branch,G1\nB3,三支部,branch,C1\nB4,四支部,branch,C1\n";
    let mut members = String::from("member_id,name,org_id,category,status\n");
    for b in 1..=4 {
        for i in 0..80 {
            members.push_str(&format!("M{b}-{i:02},党员{b}{i:02},B{b},full,active\n"));
        }
    }
    let users = "user_id,role,org_id,member_id,disabled\n\
                 dept,org_dept,C1,,\np1,provider,B1,,\np2,provider,B2,,\np3,provider,B3,,\n\
                 p4,provider,B4,,\nm1,member,B1,M1-00,\nsys,sysadmin,,,\nsec,security_admin,,,\n\
                 aud,auditor,,,\ngone,org_dept,C1,,yes\n";
    for (kind, text) in [("orgs", orgs), ("members", &members), ("users", users)] {
        let path = t.write(&format!("{kind}.csv"), text);
        let o = t.run(&["import", kind, &path.display().to_string()]);
        assert_eq!(o.status.code(), Some(0), "import {kind}: {}", stderr(&o));
    }
    t
}

fn entries(t: &TestDir, kind: &str) -> Vec<Entry> {
    let c = t.db();
    let mut stmt = c
        .prepare("SELECT body FROM entry WHERE kind = ?1 ORDER BY seq")
        .expect("prepare");
    let rows = stmt
        .query_map([kind], |r| r.get::<_, String>(0))
        .expect("query");
    rows.map(|b| Entry::parse(b.expect("row").as_bytes()).expect("entry"))
        .collect()
}

fn size(t: &TestDir) -> i64 {
    t.db()
        .query_row("SELECT count(*) FROM entry", [], |r| r.get(0))
        .expect("count")
}

fn check(t: &TestDir, user: &str, action: &str, resource: &str) -> std::process::Output {
    t.run(&[
        "access",
        "check",
        "--as",
        user,
        "--action",
        action,
        "--resource",
        resource,
    ])
}

#[test]
fn provider_of_branch_a_is_denied_a_member_of_branch_b_and_it_is_recorded() {
    let t = org();
    let o = check(&t, "p1", "read", "member/M2-05");
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).starts_with("deny: `p1` read `member/M2-05`"),
        "{}",
        stdout(&o)
    );
    let d = entries(&t, "access.decision");
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].subject, "member/M2-05");
    assert_eq!(d[0].actor.user, "p1");
    assert_eq!(d[0].data["action"], "read");
    assert_eq!(d[0].data["decision"], "deny");
    assert_eq!(d[0].data["request"], "access check");
    // Their own branch: allowed, recorded too.
    let o = check(&t, "p1", "read", "member/M1-05");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let d = entries(&t, "access.decision");
    assert_eq!(d.len(), 2);
    assert_eq!(d[1].data["decision"], "allow");
    assert_eq!(
        d[1].data["policies"],
        serde_json::json!(["provider.own_branch_members"])
    );
}

#[test]
fn sysadmin_reading_a_member_is_denied_and_auditor_verifies_the_ledger() {
    let t = org();
    let o = t.run(&[
        "access",
        "check",
        "--as",
        "sys",
        "--action",
        "read",
        "--resource",
        "member/M1-01",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["decision"], "deny");
    assert_eq!(
        v["policies"],
        serde_json::json!(["separation.admins_no_member_data"])
    );
    let o = check(&t, "aud", "verify", "ledger");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let d = entries(&t, "access.decision");
    assert_eq!(d.len(), 2);
    assert_eq!(d[0].data["decision"], "deny");
    assert_eq!(
        d[0].data["policies"],
        serde_json::json!(["separation.admins_no_member_data"])
    );
    assert_eq!(
        (d[1].subject.as_str(), &d[1].data["decision"]),
        ("ledger", &Value::from("allow"))
    );
    // The policy set in use was recorded once, before the first decision.
    let loads = entries(&t, "policy.load");
    assert_eq!(loads.len(), 1);
    assert!(loads[0].seq < d[0].seq);
    assert_eq!(loads[0].data["source"], "embedded");
}

#[test]
fn fail_disabled_user_is_refused_and_unknown_user_is_an_input_error() {
    let t = org();
    let o = check(&t, "gone", "read", "member/M1-01");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let d = entries(&t, "access.decision");
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].data["decision"], "deny");
    assert_eq!(d[0].data["reason"], "disabled");
    let before = size(&t);
    let o = check(&t, "nobody", "read", "member/M1-01");
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stderr(&o).trim(), "djaudit: unknown user `nobody`");
    let o = check(&t, "dept", "read", "member/NOPE");
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stderr(&o).trim(), "djaudit: no such record `member/NOPE`");
    let o = check(&t, "dept", "peek", "member/M1-01");
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(size(&t), before, "nothing recorded for refused input");
}

#[test]
fn fail_access_check_without_user_accounts() {
    let t = TestDir::new();
    t.init();
    let o = check(&t, "dept", "read", "member/M1");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no user accounts yet"),
        "{}",
        stderr(&o)
    );
}

/// 2026-10-01 (a Thursday) to 2026-10-31, Shanghai time.
fn month() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 10, 1).expect("date")
}

fn write_log(t: &TestDir, name: &str, events: &[djaudit::policy::AccessEvent]) -> String {
    let text: String = events.iter().map(|e| e.to_line() + "\n").collect();
    t.write(name, &text).display().to_string()
}

fn audit(t: &TestDir) -> (i32, Value) {
    let o = t.run(&[
        "audit",
        "access",
        "--since",
        "2026-10-01",
        "--until",
        "2026-10-31",
        "--json",
    ]);
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&o), stderr(&o)));
    (o.status.code().unwrap_or(-1), v)
}

fn findings(v: &Value) -> Vec<(String, String)> {
    v["findings"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| {
                    (
                        f["subject"].as_str().unwrap_or("").to_string(),
                        f["rule"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn an_ordinary_month_raises_nothing_and_a_bulk_read_at_night_raises_exactly_its_findings() {
    // The ordinary month alone.
    let t = org();
    let normal = normal_month(&t.db(), month(), 42).expect("month");
    assert!(normal.len() > 300, "{} events", normal.len());
    let log = write_log(&t, "month.jsonl", &normal);
    let o = t.run(&["access", "import", &log]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let (code, v) = audit(&t);
    assert_eq!(v["decisions"], normal.len());
    assert!(
        v["decisions"].as_u64() > v["allowed"].as_u64(),
        "a few denials"
    );
    assert_eq!(findings(&v), Vec::<(String, String)>::new(), "{v:#}");
    assert_eq!(code, 0);

    // The same month plus `dept` reading 300 members in ten minutes from 23:00.
    let t = org();
    let mut events = normal_month(&t.db(), month(), 42).expect("month");
    assert_eq!(events, normal, "deterministic by seed");
    let members: Vec<String> = (0..300)
        .map(|i| format!("M{}-{:02}", i / 80 + 1, i % 80))
        .collect();
    let at: DateTime<Utc> = DateTime::parse_from_rfc3339("2026-10-14T23:00:00+08:00")
        .expect("time")
        .with_timezone(&Utc);
    events.extend(bulk_read("dept", &members, at));
    let log = write_log(&t, "month-bulk.jsonl", &events);
    let o = t.run(&["access", "import", &log]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let (code, v) = audit(&t);
    assert_eq!(code, 1);
    assert_eq!(
        findings(&v),
        [
            ("user/dept".to_string(), "access.bulk_read".to_string()),
            ("user/dept".to_string(), "access.off_hours".to_string()),
        ],
        "{v:#}"
    );
    let f = &v["findings"];
    assert_eq!(f[0]["values"]["members"], 300);
    assert_eq!(f[0]["values"]["first"], "2026-10-14T15:00:00.000Z");
    assert_eq!(f[1]["values"]["date"], "2026-10-14");
    assert_eq!(f[1]["values"]["requests"], 300);
    // The run itself is recorded.
    let scans = entries(&t, "scan.access");
    assert_eq!(scans.len(), 1);
    assert_eq!(scans[0].data["findings"], 2);
    assert_eq!(scans[0].data["by_rule"]["access.bulk_read"], 1);
    // Thousands of decisions later the ledger verifies and replays to the same projection.
    let o = t.run(&["verify", "--replay", "--no-record"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
}

#[test]
fn fail_malformed_access_log_records_nothing() {
    let t = org();
    let good = r#"{"at":"2026-10-14T10:00:00+08:00","user":"dept","action":"read","resource":"member/M1-01","request":"GET /m"}"#;
    let bad = r#"{"at":"2026-10-14T10:00:00+08:00","user":"dept","action":"read"}"#;
    let log = t.write("bad.jsonl", &format!("{good}\n{good}\n{bad}\n"));
    let before = size(&t);
    let o = t.run(&["access", "import", &log.display().to_string()]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("bad.jsonl:3: missing field `resource`"),
        "{err}"
    );
    assert!(err.contains("nothing recorded"), "{err}");
    // The policy set may have been recorded before the log was read; no decision was.
    assert!(entries(&t, "access.decision").is_empty());
    assert!(size(&t) <= before + 1);
}

fn shipped_policies() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

/// A copy of the shipped policy directory (with its tests) in `dest`.
fn copy_policies(dest: &Path) {
    let src = shipped_policies();
    std::fs::create_dir_all(dest.join("tests")).expect("mkdir");
    for sub in ["", "tests"] {
        for e in std::fs::read_dir(src.join(sub)).expect("read dir") {
            let e = e.expect("entry");
            if e.path().is_file() {
                std::fs::copy(e.path(), dest.join(sub).join(e.file_name())).expect("copy");
            }
        }
    }
}

#[test]
fn policy_test_passes_on_the_shipped_cases_and_fails_without_the_admin_forbid() {
    let t = TestDir::new();
    let shipped = shipped_policies();
    let o = t.run(&["policy", "test", &shipped.display().to_string()]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains(" passed, 0 failed"), "{}", stdout(&o));
    let o = t.run(&["policy", "test"]);
    assert_eq!(o.status.code(), Some(0), "embedded: {}", stdout(&o));

    let copy = t.path().join("policies");
    copy_policies(&copy);
    let path = copy.join("separation.cedar");
    let text = std::fs::read_to_string(&path).expect("read");
    let forbid = "@id(\"separation.admins_no_member_data\")\nforbid (principal is User, action, resource is Member)\nwhen { [\"sysadmin\", \"security_admin\", \"auditor\"].contains(principal.role) };\n";
    assert!(text.contains(forbid), "the shipped forbid changed");
    std::fs::write(&path, text.replace(forbid, "")).expect("write");
    let o = t.run(&["policy", "test", &copy.display().to_string()]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("FAIL admins.toml: sysadmin cannot read member data: sys read member/M1: expected policies [separation.admins_no_member_data], got []"),
        "{out}"
    );
    assert!(!out.contains(" 0 failed"), "{out}");
}

#[test]
fn fail_policy_validate_names_file_line_and_column() {
    let t = TestDir::new();
    let o = t.run(&[
        "policy",
        "validate",
        &shipped_policies().display().to_string(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("valid: "), "{}", stdout(&o));

    let copy = t.path().join("policies");
    copy_policies(&copy);
    std::fs::write(
        copy.join("extra.cedar"),
        "@id(\"extra.typo\")\npermit (principal is User, action == Action::\"read\", resource is Member)\nwhen { principal.rolle == \"provider\" };\n",
    )
    .expect("write");
    let o = t.run(&["policy", "validate", &copy.display().to_string()]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    let want = format!("{}:3:", copy.join("extra.cedar").display());
    assert!(err.contains(&want), "{err}");
    assert!(err.contains("rolle"), "{err}");

    let o = t.run(&[
        "policy",
        "validate",
        &t.path().join("nothing").display().to_string(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("djaudit: cannot read `"),
        "{}",
        stderr(&o)
    );
}
