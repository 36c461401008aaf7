//! The access policy enforced on the record commands through the real binary: who may
//! read, change, export and reconcile which member records, what a refusal leaves in the
//! ledger (exactly one `access.decision` entry), and what a reader without
//! `read_sensitive` sees.

mod util;

use std::fmt::Write as _;
use std::path::Path;

use djaudit::ledger::entry::Entry;
use serde_json::{json, Value};
use util::{stderr, stdout, TestDir};

const ORGS: &str =
    "org_id,name,kind,parent_id\nC1,党委,committee,\nB1,一支部,branch,C1\nB2,二支部,branch,C1\n";

/// M1 and M2 in branch B1, M3 and M4 in B2. M1's ID number ends in X (the example of
/// DESIGN §1 invariant 5).
const MEMBERS: &str = "\
member_id,name,org_id,id_number,phone,monthly_income
M1,张三,B1,23010219900101123X,13900000001,4500
M2,李四,B1,230102199102031246,13900000002,3000
M3,王五,B2,230102198507011238,13900000003,5000
M4,赵六,B2,230102198001011230,13900000004,
";

/// The organisation department of C1, a provider per branch, a member (M1), the three
/// administrators and a disabled account.
const USERS: &str = "\
user_id,role,org_id,member_id,disabled
dept,org_dept,C1,,
p1,provider,B1,,
p2,provider,B2,,
m1,member,B1,M1,
sys,sysadmin,,,
sec,security_admin,,,
aud,auditor,,,
gone,provider,B1,,yes
";

const WARNING: &str =
    "warning: no users defined: access policy not enforced until users are imported";

/// A ledger with the orgs, members and users above, imported in bootstrap mode, and one
/// allowed read (so the policy set in use is already recorded).
fn org() -> TestDir {
    let t = bootstrap_org();
    ok(&t, &["record", "show", "member/M1", "--as", "dept"]);
    assert_eq!(entries(&t, "policy.load").len(), 1);
    t
}

/// A ledger with the orgs, members and users above, imported in bootstrap mode.
fn bootstrap_org() -> TestDir {
    let t = TestDir::new();
    t.init();
    for (kind, text) in [("orgs", ORGS), ("members", MEMBERS), ("users", USERS)] {
        let path = t.write(&format!("{kind}.csv"), text);
        let o = t.run(&["import", kind, &path.display().to_string()]);
        assert_eq!(o.status.code(), Some(0), "import {kind}: {}", stderr(&o));
        assert_eq!(stderr(&o).trim(), WARNING, "import {kind}");
    }
    t
}

fn size(t: &TestDir) -> i64 {
    t.db()
        .query_row("SELECT count(*) FROM entry", [], |r| r.get(0))
        .expect("count")
}

fn entry(t: &TestDir, seq: i64) -> Entry {
    let body: String = t
        .db()
        .query_row("SELECT body FROM entry WHERE seq = ?1", [seq], |r| r.get(0))
        .expect("entry");
    Entry::parse(body.as_bytes()).expect("parse")
}

fn last(t: &TestDir) -> Entry {
    entry(t, size(t) - 1)
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

/// Every row of every projection table, `last_seq` included.
fn projection(t: &TestDir) -> String {
    let db = t.db();
    let mut text = String::new();
    for table in ["org", "member", "dues", "meeting", "transfer", "user"] {
        let mut stmt = db
            .prepare(&format!("SELECT * FROM {table} ORDER BY 1"))
            .expect("prepare");
        let n = stmt.column_count();
        let mut rows = stmt.query([]).expect("query");
        while let Some(row) = rows.next().expect("row") {
            for i in 0..n {
                let v: rusqlite::types::Value = row.get(i).expect("value");
                let _ = write!(text, "{v:?}|");
            }
            text.push('\n');
        }
    }
    text
}

/// Runs a command that must be refused: exit 1, `access denied: …` naming `what` on
/// stderr, nothing on stdout, exactly one entry more (the recorded refusal), which it
/// returns.
fn refused(t: &TestDir, args: &[&str], what: &str) -> Entry {
    let before = size(t);
    let dump = projection(t);
    let o = t.run(args);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{args:?}: {}{}",
        stdout(&o),
        stderr(&o)
    );
    let err = stderr(&o);
    assert!(
        err.starts_with(&format!("djaudit: access denied: {what}")),
        "{args:?}: {err}"
    );
    assert!(stdout(&o).is_empty(), "{args:?}: {}", stdout(&o));
    assert_eq!(size(t), before + 1, "{args:?}: one entry, the refusal");
    assert_eq!(projection(t), dump, "{args:?}: projection unchanged");
    let e = last(t);
    assert_eq!(e.kind, "access.decision");
    assert_eq!(e.data["decision"], "deny");
    assert!(
        err.contains(&format!("recorded as entry {}", e.seq)),
        "{err}"
    );
    e
}

/// Runs a command that must succeed and returns its stdout.
fn ok(t: &TestDir, args: &[&str]) -> String {
    let o = t.run(args);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{args:?}: {}{}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn bootstrap_runs_without_policy_until_users_exist_then_as_is_required() {
    let t = bootstrap_org();
    // Bootstrap imports were attributed to the operating-system user, undecided.
    assert!(entries(&t, "access.decision").is_empty());
    assert!(entries(&t, "policy.load").is_empty());
    assert_eq!(entries(&t, "member.create")[0].actor.user, "tester");

    let before = size(&t);
    let o = t.run(&["record", "show", "member/M1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("`--as USER` is required"),
        "{}",
        stderr(&o)
    );
    let o = t.run(&["record", "show", "member/M1", "--as", "nobody"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stderr(&o).trim(), "djaudit: unknown user `nobody`");
    let file = t.write("new.csv", "member_id,name,org_id\nM5,钱七,B1\n");
    let o = t.run(&["import", "members", &path(&file), "--as", "nobody"]);
    assert_eq!(o.status.code(), Some(2));
    let o = t.run(&[
        "user", "add", "--id", "x", "--name", "x", "--role", "auditor",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        size(&t),
        before,
        "nothing recorded for a missing or unknown user"
    );

    // `--actor` is still accepted for `--as`.
    let out = ok(&t, &["import", "members", &path(&file), "--actor", "p1"]);
    assert!(out.contains("1 created"), "{out}");
    assert_eq!(
        entries(&t, "member.create")
            .last()
            .map(|e| e.actor.user.clone())
            .as_deref(),
        Some("p1")
    );
    assert_eq!(entries(&t, "policy.load").len(), 1);
}

#[test]
fn provider_of_branch_a_cannot_read_or_change_a_member_of_branch_b() {
    let t = org();
    ok(&t, &["record", "show", "member/M1", "--as", "p1"]);

    let e = refused(
        &t,
        &["record", "show", "member/M3", "--as", "p1"],
        "`p1` may not read `member/M3`",
    );
    assert_eq!(
        (e.subject.as_str(), e.actor.user.as_str()),
        ("member/M3", "p1")
    );
    assert_eq!(
        e.data,
        json!({"action": "read", "decision": "deny", "policies": [],
               "request": "record show member/M3"})
    );
    refused(
        &t,
        &["record", "history", "member/M4", "--as", "p1"],
        "`p1` may not read `member/M4`",
    );

    // An import touching M1 (theirs) and M3 (not theirs) is refused as a whole.
    let change = t.write(
        "change.csv",
        "member_id,phone\nM1,13900000011\nM3,13900000033\n",
    );
    let e = refused(
        &t,
        &["import", "members", &path(&change), "--as", "p1"],
        "`p1` may not update `member/M3`",
    );
    assert_eq!(e.subject, "member/M3");
    assert_eq!(
        e.data,
        json!({"action": "update", "decision": "deny", "policies": [],
               "request": "import members change.csv", "count": 2})
    );
    assert!(entries(&t, "member.update").is_empty());
    assert_eq!(
        entries(&t, "import.batch").len(),
        3,
        "only the bootstrap imports"
    );
    refused(
        &t,
        &["reconcile", "members", &path(&change), "--as", "p1"],
        "`p1` may not read `member/M3`",
    );

    // B2's provider may change M3: the change and one allow decision commit together.
    let m3 = t.write("m3.csv", "member_id,phone\nM3,13900000033\n");
    let before = size(&t);
    let out = ok(&t, &["import", "members", &path(&m3), "--as", "p2"]);
    assert!(out.contains("1 updated"), "{out}");
    assert_eq!(size(&t), before + 3);
    let (update, decision, batch) = (
        entry(&t, before),
        entry(&t, before + 1),
        entry(&t, before + 2),
    );
    assert_eq!(
        (update.kind.as_str(), update.actor.user.as_str()),
        ("member.update", "p2")
    );
    assert_eq!(decision.subject, "org/B2");
    assert_eq!(
        decision.data,
        json!({"action": "update", "decision": "allow",
               "policies": ["provider.own_branch_members"],
               "request": "import members m3.csv", "count": 1})
    );
    assert_eq!(batch.kind, "import.batch");
    let o = t.run(&["verify", "--replay", "--no-record"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
}

#[test]
fn sysadmin_cannot_read_any_member_record() {
    let t = org();
    for m in ["M1", "M2", "M3", "M4"] {
        let name = format!("member/{m}");
        for cmd in ["show", "history"] {
            let e = refused(
                &t,
                &["record", cmd, &name, "--as", "sys"],
                &format!(
                    "`sys` may not read `{name}` (forbidden by separation.admins_no_member_data)"
                ),
            );
            assert_eq!(
                e.data["policies"],
                json!(["separation.admins_no_member_data"])
            );
        }
    }
    let e = refused(
        &t,
        &["record", "export", "members", "--as", "sys"],
        "`sys` may not export `member/M1`",
    );
    assert_eq!(e.data["request"], "record export members");
    let dues = t.write("dues.csv", "member_id,month,amount\nM1,2026-01,45\n");
    ok(&t, &["import", "dues", &path(&dues), "--as", "dept"]);
    refused(
        &t,
        &["record", "show", "dues/M1/2026-01", "--as", "sys"],
        "`sys` may not read `member/M1`",
    );
    // What a system administrator is for: accounts.
    let out = ok(
        &t,
        &[
            "user", "add", "--id", "p9", "--name", "新人", "--role", "provider", "--org", "B2",
            "--as", "sys",
        ],
    );
    assert!(out.starts_with("user add `p9`: entry "), "{out}");
    let d = &entries(&t, "access.decision");
    let d = d.last().expect("decision");
    assert_eq!(
        (d.subject.as_str(), &d.data["policies"]),
        ("system", &json!(["sysadmin.manage_users"]))
    );
    assert_eq!(
        entries(&t, "user.create")
            .last()
            .map(|e| e.subject.clone())
            .as_deref(),
        Some("user/p9")
    );
}

#[test]
fn auditor_can_read_the_ledger_but_cannot_import() {
    let t = org();
    let before_decisions = entries(&t, "access.decision").len();
    ok(
        &t,
        &[
            "access",
            "check",
            "--as",
            "aud",
            "--action",
            "read",
            "--resource",
            "ledger",
        ],
    );
    ok(&t, &["verify"]);
    let log = ok(&t, &["log", "--kind", "member.create", "--json"]);
    assert!(
        log.contains("2301**********123X") && !log.contains("23010219900101123X"),
        "{log}"
    );
    let o = t.run(&["audit", "access", "--as", "aud", "--no-record", "--json"]);
    assert_ne!(o.status.code(), Some(2), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("audit json");
    assert!(v["decisions"].as_u64().is_some(), "{v}");
    let d = entries(&t, "access.decision");
    assert_eq!(d.len(), before_decisions + 2);
    assert!(d[before_decisions..]
        .iter()
        .all(|e| e.data["decision"] == "allow" && e.actor.user == "aud"));

    let change = t.write("change.csv", "member_id,phone\nM1,13900000011\n");
    let e = refused(
        &t,
        &["import", "members", &path(&change), "--as", "aud"],
        "`aud` may not update `member/M1`",
    );
    assert_eq!(
        e.data["policies"],
        json!([
            "separation.admins_no_member_data",
            "separation.admins_no_record_changes"
        ])
    );
    let users = t.write("users2.csv", "user_id,role\nx1,auditor\n");
    refused(
        &t,
        &["import", "users", &path(&users), "--as", "aud"],
        "`aud` may not manage_users `system`",
    );
    let orgs = t.write(
        "orgs2.csv",
        "org_id,name,kind,parent_id\nB3,三支部,branch,C1\n",
    );
    refused(
        &t,
        &["import", "orgs", &path(&orgs), "--as", "aud"],
        "`aud` may not create `org/B3`",
    );
}

#[test]
fn member_sees_only_their_own_record() {
    let t = org();
    let out = ok(&t, &["record", "show", "member/M1", "--as", "m1", "--json"]);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["record"]["id_number"], "23010219900101123X");
    assert_eq!(v["record"]["phone"], "13900000001");
    let d = last(&t);
    assert_eq!(
        d.data,
        json!({"action": "read", "decision": "allow",
               "policies": ["member.own_record"],
               "fields": ["id_number", "monthly_income", "phone"],
               "request": "record show member/M1"})
    );
    for m in ["M2", "M3"] {
        let name = format!("member/{m}");
        for cmd in ["show", "history"] {
            let e = refused(
                &t,
                &["record", cmd, &name, "--as", "m1"],
                &format!("`m1` may not read `{name}`"),
            );
            assert_eq!(e.data["policies"], json!(["member.only_own_record"]));
        }
    }
    // No export either: not even their own record's neighbours leak through a bulk read.
    refused(
        &t,
        &["record", "export", "members", "--as", "m1"],
        "`m1` may not export `member/M1`",
    );
    // Nothing of another member was ever printed to them.
    for secret in ["230102199102031246", "13900000002", "李四"] {
        for e in entries(&t, "access.decision") {
            assert!(!e.data.to_string().contains(secret));
        }
    }
}

#[test]
fn reader_without_read_sensitive_sees_masked_values() {
    let t = org();
    let out = ok(&t, &["record", "show", "member/M1", "--as", "p1"]);
    assert!(out.contains("  id_number: 2301**********123X\n"), "{out}");
    assert!(out.contains("  phone: 139****0001\n"), "{out}");
    assert!(out.contains("  monthly_income: ***\n"), "{out}");
    assert!(
        !out.contains("23010219900101123X") && !out.contains("13900000001"),
        "{out}"
    );
    let d = last(&t);
    assert_eq!(d.data["policies"], json!(["provider.own_branch_members"]));
    assert!(
        d.data.get("fields").is_none(),
        "nothing shown unmasked: {}",
        d.data
    );
    let out = ok(
        &t,
        &["record", "history", "member/M1", "--as", "p1", "--json"],
    );
    assert!(
        out.contains("2301**********123X") && !out.contains("23010219900101123X"),
        "{out}"
    );
    // The reads of M1 so far are in the ledger, not in the record's history.
    let v: Value = serde_json::from_str(&out).expect("json");
    let kinds: Vec<&str> = v["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|i| i["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["member.create"]);

    // The organisation department has read_sensitive on its subtree: unmasked, and the
    // decision names the fields it showed.
    let out = ok(&t, &["record", "show", "member/M3", "--as", "dept"]);
    assert!(out.contains("  id_number: 230102198507011238\n"), "{out}");
    assert_eq!(
        last(&t).data["fields"],
        json!(["id_number", "monthly_income", "phone"])
    );
}

/// A copy of the shipped policy set (without its tests) plus a permit that lets
/// providers export their own branch's members.
fn policies_with_provider_export(t: &TestDir) -> std::path::PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let dest = t.path().join("policies");
    std::fs::create_dir_all(&dest).expect("mkdir");
    for e in std::fs::read_dir(&src).expect("read dir") {
        let e = e.expect("entry");
        if e.path().is_file() {
            std::fs::copy(e.path(), dest.join(e.file_name())).expect("copy");
        }
    }
    std::fs::write(
        dest.join("export.cedar"),
        "@id(\"provider.export_own_branch\")\npermit (principal is User, action == Action::\"export\", resource is Member)\nwhen { principal.role == \"provider\" && principal has org && resource has org && resource.org == principal.org };\n",
    )
    .expect("write");
    dest
}

#[test]
fn export_leaves_out_records_outside_the_readers_scope_and_masks_the_rest() {
    let t = org();
    // With the shipped policies a provider may not export at all.
    refused(
        &t,
        &["record", "export", "members", "--as", "p1"],
        "`p1` may not export `member/M1`",
    );
    let dir = policies_with_provider_export(&t);
    let o = t.run(&[
        "record",
        "export",
        "members",
        "--as",
        "p1",
        "--policies",
        &path(&dir),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[1].starts_with("M1,张三,,,,2301**********123X,139****0001,"),
        "{text}"
    );
    assert!(lines[1].ends_with(",***"), "{text}");
    assert!(lines[2].starts_with("M2,李四,"), "{text}");
    assert!(!text.contains("M3") && !text.contains("M4"), "{text}");
    assert!(stderr(&o).contains("2 members left out"), "{}", stderr(&o));
    let d = last(&t);
    assert_eq!(d.subject, "org/B1");
    assert_eq!(
        d.data,
        json!({"action": "export", "decision": "allow",
               "policies": ["provider.export_own_branch"],
               "request": "record export members", "count": 2})
    );
    // The policy set from the directory was recorded before it decided.
    let loads = entries(&t, "policy.load");
    assert_eq!(
        loads.last().map(|e| e.data["source"].clone()),
        Some(json!(path(&dir)))
    );

    // The organisation department exports every member unmasked, which re-imports as is.
    let out = t.path().join("all.csv");
    ok(
        &t,
        &[
            "record",
            "export",
            "members",
            "--as",
            "dept",
            "--out",
            &path(&out),
        ],
    );
    let all = std::fs::read_to_string(&out).expect("read");
    assert_eq!(all.lines().count(), 5);
    assert!(all.contains("230102198507011238"), "{all}");
    assert_eq!(last(&t).data["count"], 4);
    let o = ok(&t, &["import", "members", &path(&out), "--as", "dept"]);
    assert!(o.contains("no entries appended"), "{o}");

    // A refused export to a file leaves no file behind.
    let none = t.path().join("none.csv");
    refused(
        &t,
        &[
            "record",
            "export",
            "members",
            "--as",
            "sys",
            "--out",
            &path(&none),
        ],
        "`sys` may not export",
    );
    assert!(!none.exists());
}

#[test]
fn reconcile_needs_read_on_every_compared_record() {
    let t = org();
    let snap = t.write("snap.csv", MEMBERS);
    let out = ok(&t, &["reconcile", "members", &path(&snap), "--as", "dept"]);
    assert!(out.starts_with("ok: members "), "{out}");
    let (d, scan) = (entry(&t, size(&t) - 2), last(&t));
    assert_eq!(scan.kind, "scan.reconcile");
    assert_eq!(
        (d.subject.as_str(), &d.data["count"], &d.data["decision"]),
        ("org/C1", &json!(4), &json!("allow"))
    );
    // A snapshot of B1 only still compares B2's members (they would be "missing").
    let b1 = t.write("b1.csv", "member_id,name\nM1,张三\nM2,李四\n");
    refused(
        &t,
        &["reconcile", "members", &path(&b1), "--as", "p1"],
        "`p1` may not read `member/M3`",
    );
}

#[test]
fn disabled_accounts_are_refused_and_recorded() {
    let t = org();
    let e = refused(
        &t,
        &["record", "show", "member/M1", "--as", "gone"],
        "`gone` may not read `member/M1` (the account is disabled)",
    );
    assert_eq!(e.data["reason"], "disabled");
    let change = t.write("change.csv", "member_id,phone\nM1,13900000011\n");
    let e = refused(
        &t,
        &["import", "members", &path(&change), "--as", "gone"],
        "`gone` may not create `org/B1` (the account is disabled)",
    );
    assert_eq!(e.data["request"], "import members change.csv");

    // Disabling takes effect at once; the account management is recorded.
    ok(&t, &["record", "show", "member/M1", "--as", "p1"]);
    ok(&t, &["user", "disable", "--id", "p1", "--as", "sys"]);
    let u = entries(&t, "user.update");
    assert_eq!(
        u.last().map(|e| e.data.clone()),
        Some(json!({"changes": {"disabled": [false, true]}}))
    );
    refused(
        &t,
        &["record", "show", "member/M1", "--as", "p1"],
        "`p1` may not read `member/M1` (the account is disabled)",
    );
    // Only the system administrator manages accounts.
    refused(
        &t,
        &[
            "user", "update", "--id", "p2", "--org", "B1", "--as", "dept",
        ],
        "`dept` may not manage_users `system`",
    );
    let o = t.run(&[
        "user", "update", "--id", "nobody", "--name", "x", "--as", "sys",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no record `user/nobody`"),
        "{}",
        stderr(&o)
    );
}
