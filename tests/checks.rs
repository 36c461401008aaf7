//! The consistency checks through the real binary against the synthetic generator's own list
//! of injected defects: every injected defect found, nothing else found.

mod util;

use std::collections::BTreeSet;

use util::{stdout, TestDir};

fn pairs(v: &serde_json::Value) -> BTreeSet<(String, String)> {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap().to_owned(),
                f["subject"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// synth → import (users last: the import runs before policy is in force) → check.
fn synth_and_check(
    t: &TestDir,
    members: &str,
    defects: &str,
    seed: &str,
) -> (serde_json::Value, serde_json::Value) {
    let out = t.path().join("synth");
    let out_s = out.to_str().unwrap();
    t.cmd(&[
        "synth",
        "--members",
        members,
        "--seed",
        seed,
        "--defects",
        defects,
        "--as-of",
        "2026-11-28",
        "--out",
        out_s,
    ])
    .assert()
    .success();
    t.init();
    for kind in ["orgs", "members", "dues", "meetings", "transfers", "users"] {
        let file = out.join(format!("{kind}.csv"));
        t.cmd(&["import", kind, file.to_str().unwrap()])
            .assert()
            .success();
    }
    let o = t.run(&["check", "--as-of", "2026-11-28", "--json"]);
    let got: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("expected_findings.json")).unwrap())
            .unwrap();
    (got, expected)
}

#[test]
fn every_injected_defect_is_found_and_nothing_else_on_10k_members() {
    let t = TestDir::new();
    let (got, expected) = synth_and_check(&t, "10000", "0.05", "42");
    let (g, e) = (pairs(&got), pairs(&expected));
    assert!(
        e.len() > 300,
        "too few defects injected to mean anything: {}",
        e.len()
    );
    let missed: Vec<_> = e.difference(&g).collect();
    let extra: Vec<_> = g.difference(&e).collect();
    assert!(
        missed.is_empty() && extra.is_empty(),
        "missed {missed:?}\nextra {extra:?}"
    );
    // Every rule family of the catalogue is exercised.
    for family in [
        "member.",
        "development.",
        "dues.",
        "org.",
        "meetings.",
        "status.",
    ] {
        assert!(
            e.iter().any(|(r, _)| r.starts_with(family)),
            "no {family} defect injected"
        );
    }
}

#[test]
fn clean_organisation_has_no_findings_and_scans_are_compared() {
    let t = TestDir::new();
    let (got, expected) = synth_and_check(&t, "600", "0", "3");
    assert_eq!(pairs(&expected).len(), 0);
    assert_eq!(pairs(&got).len(), 0, "{got}");
    // A second scan of the same data: nothing new, nothing resolved; both scans recorded.
    let o = t.run(&["check", "--as-of", "2026-11-28"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("0 new, 0 resolved"), "{}", stdout(&o));
    let log = stdout(&t.run(&["log", "--kind", "scan.checks"]));
    assert_eq!(log.lines().count(), 2, "{log}");
}

#[test]
fn new_and_resolved_findings_between_scans() {
    let t = TestDir::new();
    let (_, _) = synth_and_check(&t, "300", "0", "5");
    // Break one phone number through an import: the next scan reports it as new.
    let members = t.path().join("synth/members.csv");
    let text = std::fs::read_to_string(&members).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let header: Vec<&str> = lines[0].split(',').collect();
    let phone = header.iter().position(|h| *h == "phone").unwrap();
    let mut cells: Vec<String> = lines[1].split(',').map(str::to_owned).collect();
    let id = cells[0].clone();
    cells[phone] = "12345".into();
    lines[1] = cells.join(",");
    let changed = t.write("members-changed.csv", &(lines.join("\n") + "\n"));
    // Users exist now, so the change needs someone allowed to make it: the committee's org_dept.
    let users = std::fs::read_to_string(t.path().join("synth/users.csv")).unwrap();
    let dept = users
        .lines()
        .find(|l| l.contains(",org_dept,"))
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .to_owned();
    t.cmd(&[
        "import",
        "members",
        changed.to_str().unwrap(),
        "--as",
        &dept,
    ])
    .assert()
    .success();
    let o = t.run(&["check", "--as-of", "2026-11-28", "--json"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "a warning is below the default --fail-on error"
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["new"],
        serde_json::json!([{"rule": "member.phone_format", "subject": format!("member/{id}")}])
    );
    assert_eq!(v["resolved"], serde_json::json!([]));
    // --fail-on warning turns the same finding into exit 1; the message never shows the phone.
    let o = t.run(&[
        "check",
        "--as-of",
        "2026-11-28",
        "--fail-on",
        "warning",
        "--no-record",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(!stdout(&o).contains("12345"));
}

#[test]
fn fail_bad_options_are_input_errors() {
    let t = TestDir::new();
    t.init();
    assert_eq!(
        t.run(&["check", "--as-of", "2026-13-01"]).status.code(),
        Some(2)
    );
    assert_eq!(
        t.run(&["check", "--fail-on", "fatal"]).status.code(),
        Some(2)
    );
    assert_eq!(t.run(&["check", "--org", "NOPE"]).status.code(), Some(2));
    let rules = t.write(
        "rules.toml",
        "[rules.\"member.no_such_rule\"]\nenabled = false\n",
    );
    let o = t.run(&["check", "--rules", rules.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", util::stderr(&o));
    // The catalogue in Markdown is docs/RULES.md.
    let o = t.run(&["check", "--list-rules", "--format", "md"]);
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/RULES.md")).unwrap();
    assert_eq!(stdout(&o), doc);
}
