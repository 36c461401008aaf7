//! Compliance reports through the binary: the JSON of a small organisation (snapshot),
//! verification and one-character edits, escaping of hostile names, consistency with the
//! previous report, authorisation, and the demo end to end.

mod util;

use serde_json::Value;
use util::{stderr, stdout, TestDir};

/// GB 11643 check character (ISO 7064 MOD 11-2) of the first 17 digits.
fn id_number(first17: &str) -> String {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = first17
        .chars()
        .zip(W)
        .map(|(c, w)| c.to_digit(10).unwrap() * w)
        .sum();
    let check = ['1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'][(sum % 11) as usize];
    format!("{first17}{check}")
}

const EVIL: &str = "<script>alert(1)</script>";

/// A committee with two branches, seven members (one named `<script>…`, with a wrong ID
/// check character and two unpaid months), dues from April to September 2026, meetings
/// (the second branch skips August's theme day), four users and an access log of September.
fn small_org(t: &TestDir) {
    t.init();
    t.write(
        "orgs.csv",
        "org_id,name,kind,parent_id,established_date,has_committee,secretary_id,dissolved_date\n\
         C1,长丰县供电公司党委,committee,,2010-01-01,true,,\n\
         B1,变电运维党支部,branch,C1,2010-01-01,false,M01,\n\
         B2,\"输电<b>运检</b>|党支部\",branch,C1,2010-01-01,false,M05,\n",
    );
    let mut members = String::from(
        "member_id,name,gender,ethnicity,birth_date,id_number,phone,education,org_id,category,status,status_date,application_date,activist_date,candidate_date,admission_date,full_date,probation_extension_months,introducers,employment,monthly_income\n",
    );
    let people = [
        ("M01", "张建国", "male", "1975-03-02", "B1", "M02;M03"),
        ("M02", "李秀英", "female", "1976-04-03", "B1", "M01;M03"),
        ("M03", "王志强", "male", "1977-05-04", "B1", "M01;M02"),
        ("M04", "刘芳", "female", "1978-06-05", "B1", "M01;M02"),
        ("M05", "陈伟", "male", "1979-07-06", "B2", "M06;M07"),
        ("M06", "杨丽", "female", "1980-08-07", "B2", "M05;M07"),
        ("M07", EVIL, "male", "1981-09-08", "B2", "M05;M06"),
    ];
    for (i, (id, name, gender, birth, org, intro)) in people.iter().enumerate() {
        let seq = if *gender == "male" {
            11 + 2 * i
        } else {
            12 + 2 * i
        };
        let mut idn = id_number(&format!("340121{}{seq:03}", birth.replace('-', "")));
        if *id == "M07" {
            // A wrong check character.
            let last = if idn.ends_with('0') { '1' } else { '0' };
            idn.pop();
            idn.push(last);
        }
        members.push_str(&format!(
            "{id},{},{gender},汉族,{birth},{idn},1390000{:04},大学本科,{org},full,active,,2000-03-01,2000-06-01,2001-09-01,2002-07-01,,,{intro},employed,4500\n",
            if name.contains(',') || name.contains('<') { format!("\"{name}\"") } else { (*name).to_owned() },
            i + 1
        ));
    }
    t.write("members.csv", &members);
    let mut dues = String::from("member_id,month,base_income,amount,paid_date\n");
    for (id, ..) in people {
        for m in 4..=9 {
            if id == "M07" && m >= 8 {
                continue;
            }
            dues.push_str(&format!("{id},2026-{m:02},4500,45.00,2026-{m:02}-10\n"));
        }
    }
    t.write("dues.csv", &dues);
    let mut meetings = String::from("org_id,kind,date,attendees,topic\n");
    for b in ["B1", "B2"] {
        for m in 4..=9 {
            if !(b == "B2" && m == 8) {
                meetings.push_str(&format!("{b},theme_day,2026-{m:02}-20,4,主题党日\n"));
            }
        }
        for m in [5, 8] {
            meetings.push_str(&format!("{b},member_meeting,2026-{m:02}-15,4,党员大会\n"));
            meetings.push_str(&format!(
                "{b},lecture,2026-{m:02}-16,4,\"党课：<i>学习</i>\"\n"
            ));
        }
    }
    t.write("meetings.csv", &meetings);
    t.write(
        "users.csv",
        "user_id,name,role,org_id,member_id,disabled\n\
         u-dept,组织部,org_dept,C1,,false\n\
         u-p1,数据员,provider,B1,,false\n\
         u-aud,审计员,auditor,C1,,false\n\
         u-m1,张建国,member,B1,M01,false\n",
    );
    for (kind, file) in [
        ("orgs", "orgs.csv"),
        ("members", "members.csv"),
        ("dues", "dues.csv"),
        ("meetings", "meetings.csv"),
        ("users", "users.csv"),
    ] {
        let p = t.path().join(file);
        t.cmd(&["import", kind, p.to_str().unwrap()])
            .assert()
            .success();
    }
    let log = [
        r#"{"at":"2026-09-10T10:00:00+08:00","user":"u-p1","action":"read","resource":"member/M01","request":"GET /v1/records/member/M01"}"#,
        r#"{"at":"2026-09-10T10:05:00+08:00","user":"u-p1","action":"read","resource":"member/M05","request":"GET /v1/records/member/M05"}"#,
        r#"{"at":"2026-09-11T09:30:00+08:00","user":"u-dept","action":"read","resource":"member/M07","request":"GET /v1/records/member/M07"}"#,
        r#"{"at":"2026-09-14T15:00:00+08:00","user":"u-aud","action":"verify","resource":"ledger","request":"GET /v1/ledger/verify"}"#,
        r#"{"at":"2026-09-15T11:00:00+08:00","user":"u-m1","action":"read","resource":"member/M01","request":"GET /v1/records/member/M01"}"#,
    ]
    .join("\n");
    let p = t.write("access.jsonl", &(log + "\n"));
    t.cmd(&["access", "import", p.to_str().unwrap()])
        .assert()
        .success();
}

fn read_json(path: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read report")).expect("json")
}

/// Replaces what differs from run to run (times, keys, signatures, hashes, sizes).
fn redact(mut v: Value) -> Value {
    for p in [
        "/generated_at",
        "/checkpoint",
        "/signed_by",
        "/signature",
        "/integrity/root",
        "/issued_by",
    ] {
        if let Some(x) = v.pointer_mut(p) {
            *x = Value::String("[redacted]".into());
        }
    }
    v
}

#[test]
fn json_report_of_a_small_organisation() {
    let t = TestDir::new();
    small_org(&t);
    let out = t.path().join("r.json");
    let o = t.run(&[
        "report",
        "--period",
        "2026-Q3",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("report 2026-Q3 (json, zh)"),
        "{}",
        stdout(&o)
    );
    let r = read_json(&out);
    // Sizes that depend only on the commands above.
    assert_eq!(r["integrity"]["verify"]["ok"], true);
    assert_eq!(r["integrity"]["size"], r["integrity"]["verify"]["size"]);
    insta::assert_json_snapshot!("small_org_2026_q3", redact(r));
}

#[test]
fn verify_passes_and_a_one_character_edit_fails_in_every_format() {
    let t = TestDir::new();
    small_org(&t);
    let vkey = stdout(&t.run(&["key", "show"])).trim().to_owned();
    for (fmt, lang) in [("html", "zh"), ("md", "en"), ("json", "zh")] {
        let out = t.path().join(format!("r.{fmt}"));
        let o = t.run(&[
            "report",
            "--period",
            "2026-09",
            "--format",
            fmt,
            "--lang",
            lang,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{fmt}: {}", stderr(&o));
        let text = std::fs::read_to_string(&out).unwrap();
        let ok = t.run(&["report", "verify", out.to_str().unwrap(), "--vkey", &vkey]);
        assert_eq!(
            ok.status.code(),
            Some(0),
            "{fmt}: {}{}",
            stdout(&ok),
            stderr(&ok)
        );
        assert!(
            stdout(&ok).starts_with("ok: report 2026-09"),
            "{}",
            stdout(&ok)
        );

        // One character in the visible text, one in the embedded JSON, one space.
        let visible = match fmt {
            "html" => text.replacen("<h1>党建", "<h1>党健", 1),
            "md" => text.replacen("# Party-building", "# Party-Building", 1),
            _ => text.replacen("\"issued_by\": \"tester\"", "\"issued_by\": \"testes\"", 1),
        };
        let embedded = match fmt {
            "json" => text.replacen("\"lang\": \"zh\"", "\"lang\": \"en\"", 1),
            _ => text.replacen("\"label\": \"2026-09\"", "\"label\": \"2026-08\"", 1),
        };
        let spaced = text.replacen("\n", " \n", 1);
        for (what, edited) in [
            ("visible", visible),
            ("embedded", embedded),
            ("space", spaced),
        ] {
            assert_ne!(edited, text, "{fmt} {what}: the edit must change the file");
            assert!(edited.len().abs_diff(text.len()) <= 3);
            let p = t.write(&format!("edited-{what}.{fmt}"), &edited);
            let o = t.run(&["report", "verify", p.to_str().unwrap(), "--vkey", &vkey]);
            assert_eq!(o.status.code(), Some(1), "{fmt} {what}: {}", stdout(&o));
            assert!(stdout(&o).starts_with("CHANGED:"), "{}", stdout(&o));
        }
    }
}

#[test]
fn fail_verify_of_what_is_not_a_report() {
    let t = TestDir::new();
    let p = t.write("notes.md", "# minutes\n\nnothing signed here\n");
    let o = t.run(&["report", "verify", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("not readable"), "{}", stderr(&o));
    let missing = t.path().join("missing.html");
    let o = t.run(&["report", "verify", missing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn hostile_names_are_text_in_html_and_markdown() {
    let t = TestDir::new();
    small_org(&t);
    let html = t.path().join("r.html");
    t.cmd(&[
        "report",
        "--period",
        "2026-Q3",
        "--out",
        html.to_str().unwrap(),
    ])
    .assert()
    .success();
    let text = std::fs::read_to_string(&html).unwrap();
    assert!(
        text.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "the member's name appears as text"
    );
    assert!(!text.contains("<script>alert"), "never as a tag");
    assert!(text.contains("输电&lt;b&gt;运检&lt;/b&gt;|党支部"));
    assert!(!text.contains("<b>运检"));
    assert_eq!(
        text.matches("<script").count(),
        1,
        "only the signed data block"
    );
    let md = t.path().join("r.md");
    t.cmd(&[
        "report",
        "--period",
        "2026-Q3",
        "--out",
        md.to_str().unwrap(),
    ])
    .assert()
    .success();
    let text = std::fs::read_to_string(&md).unwrap();
    assert!(text.contains("\\<script\\>alert(1)\\</script\\>"));
    assert!(text.contains("输电\\<b\\>运检\\</b\\>\\|党支部"));
    assert!(!text.contains("<script>"));
}

#[test]
fn second_report_proves_consistency_with_the_first() {
    let t = TestDir::new();
    small_org(&t);
    let a = t.path().join("a.json");
    let b = t.path().join("b.json");
    t.cmd(&[
        "report",
        "--period",
        "2026-08",
        "--out",
        a.to_str().unwrap(),
    ])
    .assert()
    .success();
    let first = read_json(&a);
    assert!(first["integrity"]["previous"].is_null());
    t.cmd(&[
        "report",
        "--period",
        "2026-09",
        "--out",
        b.to_str().unwrap(),
    ])
    .assert()
    .success();
    let second = read_json(&b);
    let prev = &second["integrity"]["previous"];
    assert_eq!(prev["period"], "2026-08");
    assert_eq!(prev["size"], first["integrity"]["size"]);
    assert_eq!(prev["root"], first["integrity"]["root"]);
    assert_eq!(prev["consistent"], true);
    assert!(
        second["integrity"]["size"].as_u64() > first["integrity"]["size"].as_u64(),
        "the first report's issue entry comes after its checkpoint"
    );
    // The issue entries are in the ledger.
    let log = stdout(&t.run(&["log", "--kind", "report.issue", "--json"]));
    assert_eq!(log.matches("\"report.issue\"").count(), 2, "{log}");
    // A report of another scope has its own chain of previous reports.
    let c = t.path().join("c.json");
    t.cmd(&[
        "report",
        "--period",
        "2026-09",
        "--org",
        "B1",
        "--out",
        c.to_str().unwrap(),
    ])
    .assert()
    .success();
    let scoped = read_json(&c);
    assert!(scoped["integrity"]["previous"].is_null());
    assert_eq!(scoped["org"]["id"], "B1");
    assert!(scoped["org_life"]["branches"]
        .as_array()
        .unwrap()
        .iter()
        .all(|b| b["org_id"] == "B1"));
}

#[test]
fn changes_are_counted_by_ledger_time() {
    let t = TestDir::new();
    small_org(&t);
    let today = chrono::Utc::now() + chrono::Duration::hours(8);
    let day = today.format("%Y-%m-%d").to_string();
    let out = t.path().join("today.json");
    t.cmd(&[
        "report",
        "--from",
        &day,
        "--to",
        &day,
        "--out",
        out.to_str().unwrap(),
    ])
    .assert()
    .success();
    let r = read_json(&out);
    let by_kind = r["changes"]["by_kind"].as_array().unwrap();
    let count = |k: &str| {
        by_kind
            .iter()
            .find(|c| c["key"] == k)
            .and_then(|c| c["count"].as_u64())
    };
    assert_eq!(count("member.create"), Some(7));
    assert_eq!(count("org.create"), Some(3));
    assert_eq!(count("user.create"), Some(4));
    assert_eq!(r["changes"]["imports"], 5);
}

#[test]
fn report_as_a_user_is_authorised_and_recorded() {
    let t = TestDir::new();
    small_org(&t);
    let out = t.path().join("r.json");
    let o = t.run(&[
        "report",
        "--period",
        "2026-09",
        "--as",
        "u-m1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a member may not read reports: {}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("deny"), "{}", stderr(&o));
    assert!(!out.exists(), "nothing written when denied");
    let o = t.run(&[
        "report",
        "--period",
        "2026-09",
        "--as",
        "u-aud",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "the auditor may: {}", stderr(&o));
    assert_eq!(read_json(&out)["issued_by"], "u-aud");
    let log = stdout(&t.run(&[
        "log",
        "--kind",
        "access.decision",
        "--subject",
        "report",
        "--json",
    ]));
    assert!(
        log.contains("\"deny\"") && log.contains("\"allow\""),
        "{log}"
    );
}

#[test]
fn fail_bad_arguments() {
    let t = TestDir::new();
    small_org(&t);
    for args in [
        vec!["report", "--period", "2026-Q5"],
        vec!["report", "--period", "2099-01"],
        vec!["report", "--from", "2026-09-30", "--to", "2026-09-01"],
        vec!["report", "--period", "2026-09", "--org", "NOPE"],
        vec!["report"],
    ] {
        let o = t.run(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stdout(&o).is_empty());
    }
}

#[test]
fn demo_runs_end_to_end() {
    let t = TestDir::new();
    let dir = t.path().join("demo");
    let o = t
        .cmd(&["demo", "--dir", dir.to_str().unwrap()])
        .env("DJAUDIT_DEMO_MEMBERS", "150")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let r = read_json(&dir.join("report.json"));
    // The bulk read is flagged, and named in the summary.
    let bulk: Vec<&Value> = r["access"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "access.bulk_read")
        .collect();
    assert_eq!(bulk.len(), 1, "{out}");
    let user = bulk[0]["subject"]
        .as_str()
        .unwrap()
        .trim_start_matches("user/");
    assert!(out.contains(&format!("by `{user}` (flagged)")), "{out}");
    assert!(bulk[0]["values"]["members"].as_u64() >= Some(100));
    assert!(r["integrity"]["verify"]["ok"].as_bool().unwrap());
    assert!(r["changes"]["total"].as_u64().unwrap() > 1000);
    // The report verifies, with the key the demo handed out.
    let html = dir.join("report.html");
    let vkey = dir.join("verifier.vkey");
    let v = t.run(&[
        "report",
        "verify",
        html.to_str().unwrap(),
        "--vkey",
        vkey.to_str().unwrap(),
    ]);
    assert_eq!(v.status.code(), Some(0), "{}", stdout(&v));
    // And the ledger against the checkpoint it handed out.
    let cp = dir.join("checkpoint.txt");
    let ledger = dir.join("ledger");
    let mut c = assert_cmd::Command::cargo_bin("djaudit").unwrap();
    c.args([
        "--data",
        ledger.to_str().unwrap(),
        "verify",
        "--checkpoint",
        cp.to_str().unwrap(),
    ])
    .assert()
    .success();
    // A second run into the same directory is refused and changes nothing.
    let again = t
        .cmd(&["demo", "--dir", dir.to_str().unwrap()])
        .env("DJAUDIT_DEMO_MEMBERS", "150")
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    assert!(stderr(&again).contains("not empty"));
}

#[test]
fn previous_period_is_judged_on_the_records_the_ledger_held_then() {
    use djaudit::report::{self, DocFormat, Period, ReportOptions};
    let t = TestDir::new();
    small_org(&t);
    let mut ledger = djaudit::ledger::Ledger::open(&t.data()).unwrap();
    let today = (chrono::Utc::now() + chrono::Duration::hours(8)).date_naive();
    let tomorrow = today.succ_opt().unwrap();
    let q3 = Period::parse("2026-Q3").unwrap();

    // Judged before any entry existed: nothing to judge then, everything is new now.
    let mut opts = ReportOptions::new(q3.clone(), today).unwrap();
    opts.previous = q3.clone();
    opts.previous_as_of = chrono::NaiveDate::from_ymd_opt(2026, 10, 1).unwrap();
    let r = report::issue(&mut ledger, &opts, DocFormat::Json)
        .unwrap()
        .report;
    assert_eq!(r.quality.previous_entries, 0);
    assert_eq!(r.quality.previous_totals.total(), 0);
    assert_eq!(r.quality.new, r.quality.totals.total());
    assert!(r.quality.totals.total() >= 3, "{:?}", r.quality.totals);

    // Both judged tomorrow, the previous on the replayed ledger: the same records, the
    // same findings.
    let range = Period::range(q3.from, today).unwrap();
    let mut opts = ReportOptions::new(range.clone(), today)
        .unwrap()
        .with_as_of(tomorrow)
        .unwrap();
    opts.previous = range;
    opts.previous_as_of = tomorrow;
    let r = report::issue(&mut ledger, &opts, DocFormat::Json)
        .unwrap()
        .report;
    assert_eq!(r.quality.previous_entries, r.integrity.size);
    assert_eq!(r.quality.previous_totals, r.quality.totals);
    assert_eq!((r.quality.new, r.quality.resolved), (0, 0));
    assert!(r.quality.by_rule.iter().all(|t| t.count == t.previous));
}

#[test]
fn report_after_a_key_rotation_is_signed_by_the_new_key() {
    let t = TestDir::new();
    small_org(&t);
    let o = t.run(&["key", "rotate"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let new = stdout(&o).trim().to_owned();
    let out = t.path().join("r.html");
    let o = t.run(&[
        "report",
        "--period",
        "2026-09",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ok = t.run(&["report", "verify", out.to_str().unwrap(), "--vkey", &new]);
    assert_eq!(ok.status.code(), Some(0), "{}{}", stdout(&ok), stderr(&ok));
    let genesis = stdout(&t.run(&["key", "show", "--genesis"]))
        .trim()
        .to_owned();
    let other = t.run(&[
        "report",
        "verify",
        out.to_str().unwrap(),
        "--vkey",
        &genesis,
    ]);
    assert_eq!(other.status.code(), Some(1), "{}", stdout(&other));
    // The ledger, checkpoints signed before and after the rotation, verifies.
    let v = t.run(&["verify", "--no-record"]);
    assert_eq!(v.status.code(), Some(0), "{}", stdout(&v));
}
