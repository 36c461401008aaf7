//! The hand-made organisation in `fixtures/` through the real binary: every file imports with
//! its Chinese headers and value aliases (the GBK members file detected without being told),
//! the checks report exactly the defects listed in `fixtures/expected_findings.json`, the GBK
//! file yields the same projection as its UTF-8 re-encoding, and the ledger replays.

mod util;

use std::collections::BTreeSet;
use std::path::PathBuf;

use util::{stderr, stdout, TestDir};

/// Import order: orgs first (members are placed in them), users last (once an account
/// exists, the access policy is in force).
const KINDS: [&str; 6] = ["orgs", "members", "dues", "meetings", "transfers", "users"];
const AS_OF: &str = "2026-11-28";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures")).join(name)
}

fn pairs(v: &serde_json::Value) -> BTreeSet<(String, String)> {
    v["findings"]
        .as_array()
        .expect("findings array")
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().expect("rule").to_owned(),
                f["subject"].as_str().expect("subject").to_owned(),
            )
        })
        .collect()
}

/// Imports one file and returns the summary line.
fn import(t: &TestDir, kind: &str, file: &std::path::Path) -> String {
    let o = t.run(&["import", kind, file.to_str().expect("utf-8 path")]);
    assert!(
        o.status.success(),
        "import {kind} {}: {}",
        file.display(),
        stderr(&o)
    );
    stdout(&o)
}

#[test]
fn fixture_checks_report_exactly_the_injected_defects() {
    let t = TestDir::new();
    t.init();
    for kind in KINDS {
        let summary = import(&t, kind, &fixture(&format!("{kind}.csv")));
        let encoding = if kind == "members" {
            "(GB18030)"
        } else {
            "(UTF-8)"
        };
        assert!(
            summary.contains(encoding),
            "{kind}: expected {encoding}: {summary}"
        );
        assert!(
            summary.contains(" 0 updated, 0 unchanged"),
            "{kind}: every row is new: {summary}"
        );
    }
    // Nothing of the fixture was dropped: row counts as the README describes them.
    let db = t.db();
    for (table, n) in [
        ("org", 4),
        ("member", 30),
        ("dues", 344),
        ("meeting", 94),
        ("transfer", 3),
        ("user", 9),
    ] {
        let got: i64 = db
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .expect("count");
        assert_eq!(got, n, "rows in {table}");
    }

    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("expected_findings.json")).expect("expected findings"),
    )
    .expect("expected findings json");
    assert_eq!(expected["as_of"], AS_OF);
    let o = t.run(&["check", "--as-of", AS_OF, "--json", "--no-record"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "error findings exit 1: {}",
        stderr(&o)
    );
    let got: serde_json::Value = serde_json::from_slice(&o.stdout).expect("check json");
    let (g, e) = (pairs(&got), pairs(&expected));
    assert_eq!(e.len(), 10, "the README lists ten defects");
    let missed: Vec<_> = e.difference(&g).collect();
    let extra: Vec<_> = g.difference(&e).collect();
    assert!(
        missed.is_empty() && extra.is_empty(),
        "missed {missed:?}\nextra {extra:?}"
    );
    // Findings are one per rule and record: no duplicates hidden by the set.
    assert_eq!(got["findings"].as_array().map(Vec::len), Some(e.len()));
    // Findings never carry the sensitive values of the fixture.
    let text = String::from_utf8_lossy(&o.stdout);
    for secret in ["1825607120", "340104198312012573", "340102198804121194"] {
        assert!(!text.contains(secret), "finding shows `{secret}`");
    }

    let o = t.run(&["verify", "--replay", "--no-record"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("replay: the projection matches the ledger"),
        "{}",
        stdout(&o)
    );
}

/// Every member column except the ledger position of the last change.
fn member_rows(t: &TestDir) -> Vec<Vec<Option<String>>> {
    let db = t.db();
    let mut st = db
        .prepare(
            "SELECT member_id, name, gender, ethnicity, birth_date, id_number, phone, education, \
             org_id, category, status, status_date, application_date, activist_date, \
             candidate_date, admission_date, full_date, \
             CAST(probation_extension_months AS TEXT), introducers, employment, \
             CAST(monthly_income AS TEXT) FROM member ORDER BY member_id",
        )
        .expect("prepare");
    let rows = st
        .query_map([], |r| {
            (0..21)
                .map(|i| r.get::<_, Option<String>>(i))
                .collect::<Result<Vec<_>, _>>()
        })
        .expect("query");
    rows.collect::<Result<Vec<_>, _>>().expect("rows")
}

#[test]
fn gbk_members_file_imports_like_its_utf8_reencoding() {
    let raw = std::fs::read(fixture("members.csv")).expect("members.csv");
    assert!(
        std::str::from_utf8(&raw).is_err(),
        "members.csv must stay GBK, not UTF-8"
    );
    let (text, _, had_errors) = encoding_rs::GBK.decode(&raw);
    assert!(!had_errors, "members.csv is valid GBK");
    assert!(text.starts_with("党员编号,姓名,性别"), "Chinese header");

    let gbk = TestDir::new();
    let utf8 = TestDir::new();
    let reencoded = utf8.write("members-utf8.csv", &text);
    let mut exports = Vec::new();
    for (t, file, encoding) in [
        (&gbk, fixture("members.csv"), "(GB18030)"),
        (&utf8, reencoded, "(UTF-8)"),
    ] {
        t.init();
        import(t, "orgs", &fixture("orgs.csv"));
        let summary = import(t, "members", &file);
        assert!(summary.contains(encoding), "{summary}");
        assert!(summary.contains("30 rows: 30 created"), "{summary}");
        let out = t.path().join("members-export.csv");
        let o = t.run(&[
            "record",
            "export",
            "members",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        exports.push((
            member_rows(t),
            std::fs::read_to_string(&out).expect("export"),
        ));
    }
    let (gbk_rows, gbk_export) = &exports[0];
    let (utf8_rows, utf8_export) = &exports[1];
    assert_eq!(gbk_rows.len(), 30);
    assert_eq!(gbk_rows, utf8_rows);
    assert_eq!(gbk_export, utf8_export);
    // The aliases were normalised and the Chinese text decoded, not passed through.
    let first = &gbk_rows[0];
    assert_eq!(first[0].as_deref(), Some("M1001"));
    assert_eq!(first[1].as_deref(), Some("刘志强"));
    assert_eq!(first[2].as_deref(), Some("male"));
    assert_eq!(first[9].as_deref(), Some("full"));
    assert_eq!(first[10].as_deref(), Some("active"));
    assert_eq!(first[19].as_deref(), Some("employed"));
    assert_eq!(first[20].as_deref(), Some("1260000"));
    assert!(gbk_export.contains("M2008,邓凯,male,"), "{gbk_export}");
}
