//! End-to-end tests of [`super::run_checks`] on an in-memory projection built from
//! src/records/schema.sql: a clean organisation has no finding, and each boundary the
//! regulations fix turns exactly one rule on or off.

use serde_json::json;

use super::testutil::{date, id_number, subjects, Db};
use super::{CheckConfig, CheckError, CheckOptions, Severity};

const AS_OF: &str = "2026-11-28";

fn only(db: &Db, rule: &str) -> Vec<String> {
    subjects(&db.run(AS_OF), rule)
}

#[test]
fn clean_organisation_has_no_findings() {
    let report = Db::clean().run(AS_OF);
    assert_eq!(report.findings, vec![], "{:#?}", report.findings);
    assert_eq!(report.window_start, date("2025-11-28"));
    assert_eq!(report.counts.len(), 41);
    assert!(report.counts.values().all(|c| *c == 0));
    assert_eq!(report.max_severity(), None);
}

#[test]
fn findings_are_sorted_and_counted() {
    let mut db = Db::clean();
    db.member("M0", "B1");
    db.set("member", "M0", "id_number", "11010519491231002Y");
    db.set("member", "M0", "phone", "12345");
    db.member("M9", "NOPE");
    let report = db.run(AS_OF);
    let keys: Vec<(&str, &str)> = report
        .findings
        .iter()
        .map(|f| (f.rule.as_str(), f.subject.as_str()))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(keys, sorted);
    assert_eq!(report.counts["member.id_format"], 1);
    assert_eq!(report.counts["member.phone_format"], 1);
    assert_eq!(report.counts["member.org_missing"], 1);
    assert_eq!(subjects(&report, "member.org_missing"), vec!["member/M9"]);
    let total: usize = report.counts.values().sum();
    assert_eq!(total, report.findings.len());
    assert!(
        report.count_at_or_above(Severity::Warning) >= report.count_at_or_above(Severity::Error)
    );
    for f in &report.findings {
        assert!(!f.message.contains("11010519491231002"), "{}", f.message);
        assert!(!f.values.to_string().contains("12345"), "{}", f.values);
    }
}

#[test]
fn age_exactly_18_on_application_passes_one_day_less_fails() {
    let mut db = Db::clean();
    db.member("M4", "B1");
    db.set("member", "M4", "birth_date", "2000-05-15");
    db.set("member", "M4", "id_number", id_number("2000-05-15", 5));
    db.set("member", "M4", "application_date", "2018-05-15");
    assert!(only(&db, "development.age_at_application").is_empty());
    db.set("member", "M4", "application_date", "2018-05-14");
    assert_eq!(
        only(&db, "development.age_at_application"),
        vec!["member/M4"]
    );
}

#[test]
fn activist_period_of_one_year_fails_one_year_and_a_day_passes() {
    let mut db = Db::clean();
    db.member("M4", "B1");
    db.set("member", "M4", "activist_date", "2019-03-01");
    db.set("member", "M4", "candidate_date", "2020-03-02");
    db.set("member", "M4", "admission_date", "2021-03-01");
    assert!(only(&db, "development.activist_period").is_empty());
    db.set("member", "M4", "candidate_date", "2020-03-01");
    assert_eq!(only(&db, "development.activist_period"), vec!["member/M4"]);
}

#[test]
fn income_3000_pays_half_percent_3000_01_pays_one_percent() {
    let db = Db::clean();
    db.set("member", "M3", "monthly_income", 300_000);
    db.exec("UPDATE dues SET amount = 1500 WHERE member_id = 'M3'");
    assert!(only(&db, "dues.amount_mismatch").is_empty());
    db.set("member", "M3", "monthly_income", 300_001);
    let report = db.run(AS_OF);
    assert_eq!(subjects(&report, "dues.amount_mismatch"), vec!["member/M3"]);
    let f = report
        .findings
        .iter()
        .find(|f| f.rule == "dues.amount_mismatch")
        .unwrap();
    assert_eq!(
        f.values["months"][0],
        json!({ "month": "2025-11", "expected": "30.00", "actual": "15.00" })
    );
    assert_eq!(f.values["months"].as_array().unwrap().len(), 12);
    db.exec("UPDATE dues SET amount = 3000 WHERE member_id = 'M3'");
    assert!(only(&db, "dues.amount_mismatch").is_empty());
    // The row's own base wins over the member's income.
    db.exec("UPDATE dues SET base_income = 300000 WHERE member_id = 'M3'");
    assert_eq!(only(&db, "dues.amount_mismatch"), vec!["member/M3"]);
}

#[test]
fn six_unpaid_months_flag_five_do_not() {
    let db = Db::clean();
    db.exec("DELETE FROM dues WHERE member_id = 'M3' AND month BETWEEN '2026-01' AND '2026-05'");
    assert!(only(&db, "dues.six_months_unpaid").is_empty());
    assert_eq!(only(&db, "dues.missing_months"), vec!["member/M3"]);
    db.exec("DELETE FROM dues WHERE member_id = 'M3' AND month = '2026-06'");
    let report = db.run(AS_OF);
    assert_eq!(
        subjects(&report, "dues.six_months_unpaid"),
        vec!["member/M3"]
    );
    let f = report
        .findings
        .iter()
        .find(|f| f.rule == "dues.six_months_unpaid")
        .unwrap();
    assert_eq!(
        f.values["runs"],
        json!([{ "from": "2026-01", "to": "2026-06", "months": 6 }])
    );
    assert_eq!(f.severity, Severity::Error);
}

#[test]
fn branch_of_three_full_members_passes_two_fails() {
    let db = Db::clean();
    assert!(only(&db, "org.branch_too_small").is_empty());
    db.set("member", "M3", "category", "probationary");
    db.set("member", "M3", "full_date", None::<String>);
    db.set("member", "M3", "admission_date", "2026-06-01");
    assert_eq!(only(&db, "org.branch_too_small"), vec!["org/B1"]);
    db.set("member", "M3", "category", "full");
    db.set("member", "M3", "admission_date", "1992-10-01");
    db.set("member", "M3", "full_date", "1993-10-01");
    db.set("member", "M2", "status", "deceased");
    db.set("member", "M2", "status_date", "2026-10-31");
    assert_eq!(
        only(&db, "org.branch_too_small"),
        vec!["org/B1"],
        "a deceased member does not count"
    );
}

#[test]
fn probation_extension_6_and_12_pass_13_fails() {
    let db = Db::clean();
    db.set("member", "M3", "admission_date", "2020-01-01");
    db.set("member", "M3", "full_date", None::<String>);
    db.set("member", "M3", "category", "probationary");
    for (ext, fails) in [(6, false), (12, false), (13, true)] {
        db.set("member", "M3", "probation_extension_months", ext);
        let got = only(&db, "development.probation_extension");
        assert_eq!(!got.is_empty(), fails, "extension {ext}: {got:?}");
    }
}

#[test]
fn id_numbers_pass_the_check_digit_and_any_changed_digit_fails() {
    // Valid examples from GB 11643-1999 as quoted in REGULATIONS.md.
    for (id, birth, gender) in [
        ("11010519491231002X", "1949-12-31", "female"),
        ("440524188001010014", "1880-01-01", "male"),
        ("34052419800101001X", "1980-01-01", "male"),
    ] {
        let mut db = Db::clean();
        db.member("M4", "B1");
        db.set("member", "M4", "id_number", id);
        db.set("member", "M4", "birth_date", birth);
        db.set("member", "M4", "gender", gender);
        let report = db.run(AS_OF);
        for rule in [
            "member.id_format",
            "member.id_checksum",
            "member.id_birth_mismatch",
            "member.id_gender_mismatch",
        ] {
            assert!(subjects(&report, rule).is_empty(), "{id} {rule}");
        }
        for pos in 0..18 {
            let mut chars: Vec<char> = id.chars().collect();
            chars[pos] = if chars[pos] == '1' { '2' } else { '1' };
            let changed: String = chars.into_iter().collect();
            db.set("member", "M4", "id_number", changed.as_str());
            let report = db.run(AS_OF);
            let failed = subjects(&report, "member.id_checksum").len()
                + subjects(&report, "member.id_format").len();
            assert_eq!(
                failed, 1,
                "{changed} must fail exactly one of checksum/format"
            );
        }
    }
}

#[test]
fn duplicate_id_numbers_flag_each_member() {
    let db = Db::clean();
    let id: String = db
        .conn
        .query_row(
            "SELECT id_number FROM member WHERE member_id = 'M1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    db.set("member", "M3", "id_number", id.as_str());
    let report = db.run(AS_OF);
    assert_eq!(
        subjects(&report, "member.id_duplicate"),
        vec!["member/M1", "member/M3"]
    );
    let f = report
        .findings
        .iter()
        .find(|f| f.rule == "member.id_duplicate")
        .unwrap();
    assert_eq!(f.values["other_members"], json!(["M3"]));
    assert!(!f.values.to_string().contains(&id));
}

#[test]
fn no_findings_for_months_before_the_orgs_first_data() {
    let mut db = Db::clean();
    db.org("B2", "branch", Some("C1"));
    for id in ["N1", "N2", "N3"] {
        db.member(id, "B2");
        db.set("member", id, "introducers", "M1;M2");
        // This branch's data starts in 2026-05.
        db.dues_range(id, "2026-05", "2026-10", 4_500, &[]);
    }
    let mut m = super::testutil::month("2026-05");
    while m <= super::testutil::month("2026-10") {
        db.meeting("B2", "theme_day", &format!("{m}-10"));
        m = m.next();
    }
    db.meeting("B2", "member_meeting", "2026-05-20");
    db.meeting("B2", "member_meeting", "2026-08-20");
    db.meeting("B2", "lecture", "2026-05-20");
    db.meeting("B2", "lecture", "2026-08-20");
    let report = db.run(AS_OF);
    assert_eq!(report.findings, vec![], "{:#?}", report.findings);
    // A meeting row in 2026-03 moves the data start: March and April are now judged.
    db.meeting("B2", "group_meeting", "2026-03-05");
    let report = db.run(AS_OF);
    assert_eq!(
        subjects(&report, "dues.missing_months"),
        vec!["member/N1", "member/N2", "member/N3"]
    );
    let f = report
        .findings
        .iter()
        .find(|f| f.rule == "dues.missing_months")
        .unwrap();
    assert_eq!(f.values["months"], json!(["2026-03", "2026-04"]));
    assert_eq!(
        subjects(&report, "meetings.theme_day_monthly"),
        vec!["org/B2"]
    );
}

#[test]
fn period_is_judged_only_when_ended() {
    let db = Db::clean();
    // No November theme day, no November dues: nothing until November has ended.
    for as_of in ["2026-11-28", "2026-11-30"] {
        let report = db.run(as_of);
        assert!(
            subjects(&report, "meetings.theme_day_monthly").is_empty(),
            "{as_of}"
        );
        assert!(
            subjects(&report, "dues.missing_months").is_empty(),
            "{as_of}"
        );
    }
    let report = db.run("2026-12-01");
    assert_eq!(
        subjects(&report, "meetings.theme_day_monthly"),
        vec!["org/B1"]
    );
    let f = report
        .findings
        .iter()
        .find(|f| f.rule == "meetings.theme_day_monthly")
        .unwrap();
    assert_eq!(f.values["periods"], json!(["2026-11"]));
    assert_eq!(
        subjects(&report, "dues.missing_months"),
        vec!["member/M1", "member/M2", "member/M3"]
    );
}

#[test]
fn org_filter_covers_the_subtree() {
    let mut db = Db::clean();
    db.org("G1", "general_branch", Some("C1"));
    db.org("B2", "branch", Some("G1"));
    db.org("B3", "branch", Some("C1"));
    db.member("N1", "B2");
    db.member("N2", "B3");
    let all = db.run(AS_OF);
    assert_eq!(
        subjects(&all, "org.branch_too_small"),
        vec!["org/B2", "org/B3"]
    );
    let opts = CheckOptions {
        org: Some("G1".into()),
        ..CheckOptions::new(date(AS_OF))
    };
    let sub = db.run_opts(&opts).unwrap();
    assert_eq!(sub.org.as_deref(), Some("G1"));
    assert_eq!(subjects(&sub, "org.branch_too_small"), vec!["org/B2"]);
    assert!(
        sub.findings
            .iter()
            .all(|f| f.subject == "org/B2" || f.subject == "member/N1" || f.subject == "org/G1"),
        "{:#?}",
        sub.findings
    );
    assert!(!subjects(&sub, "development.introducers_count").is_empty());
    assert!(sub.findings.len() < all.findings.len());
    let opts = CheckOptions {
        org: Some("NOPE".into()),
        ..CheckOptions::new(date(AS_OF))
    };
    assert!(matches!(db.run_opts(&opts), Err(CheckError::UnknownOrg(o)) if o == "NOPE"));
}

#[test]
fn since_moves_the_window_start() {
    let db = Db::clean();
    db.exec("DELETE FROM dues WHERE member_id = 'M3' AND month = '2026-01'");
    let opts = CheckOptions {
        since: Some(date("2026-02-01")),
        ..CheckOptions::new(date(AS_OF))
    };
    let report = db.run_opts(&opts).unwrap();
    assert_eq!(report.window_start, date("2026-02-01"));
    assert!(subjects(&report, "dues.missing_months").is_empty());
    assert_eq!(only(&db, "dues.missing_months"), vec!["member/M3"]);
    let opts = CheckOptions {
        since: Some(date("2026-11-29")),
        ..CheckOptions::new(date(AS_OF))
    };
    assert!(matches!(
        db.run_opts(&opts),
        Err(CheckError::WindowAfterAsOf { .. })
    ));
}

#[test]
fn transfers_and_status() {
    let db = Db::clean();
    db.org("B0", "branch", Some("C1"));
    db.transfer("M3", "B0", "B1", "2020-01-01");
    assert!(only(&db, "status.org_mismatch").is_empty());
    db.transfer("M3", "B5", "B0", "2021-01-01");
    assert_eq!(only(&db, "status.transfer_chain"), vec!["member/M3"]);
    assert_eq!(only(&db, "status.org_mismatch"), vec!["member/M3"]);
    db.set("member", "M2", "status", "deceased");
    db.set("member", "M2", "status_date", "2026-09-01");
    // Dues paid on the 15th: October is after the death; September was expected, October not.
    let report = db.run(AS_OF);
    assert_eq!(
        subjects(&report, "status.activity_after_exit"),
        vec!["member/M2"]
    );
    let f = report
        .findings
        .iter()
        .find(|f| f.rule == "status.activity_after_exit")
        .unwrap();
    assert_eq!(f.values["dues_months"], json!(["2026-09", "2026-10"]));
}

#[test]
fn introducers_resolved_beyond_the_first_two() {
    let mut db = Db::clean();
    db.member("M4", "B1");
    db.set("member", "M4", "admission_date", "2020-01-01");
    db.set("member", "M4", "full_date", "2021-01-01");
    db.set("member", "M4", "introducers", " ; M1 ; M3;M4;GHOST;M2");
    let report = db.run(AS_OF);
    assert_eq!(
        subjects(&report, "development.introducers_count"),
        vec!["member/M4"]
    );
    assert_eq!(
        subjects(&report, "development.introducer_unknown"),
        vec!["member/M4"]
    );
    let f = report
        .findings
        .iter()
        .find(|f| f.rule == "development.introducer_unknown")
        .unwrap();
    assert_eq!(f.values["introducers"], json!(["GHOST"]));
    assert!(subjects(&report, "development.introducer_not_full").is_empty());
    db.set("member", "M4", "admission_date", "1993-01-01");
    db.set("member", "M4", "full_date", "1994-01-01");
    let report = db.run(AS_OF);
    let f = report
        .findings
        .iter()
        .find(|f| f.rule == "development.introducer_not_full")
        .unwrap();
    assert_eq!(
        f.values["introducers"],
        json!(["M3"]),
        "M3 was full only from 1993-10-01"
    );
}

#[test]
fn overrides_disable_rules_and_change_severity() {
    let db = Db::clean();
    db.exec("DELETE FROM meeting WHERE kind = 'lecture'");
    let base = super::CheckConfig::embedded();
    let report = super::run_checks(&db.conn, &base, &CheckOptions::new(date(AS_OF))).unwrap();
    assert_eq!(
        subjects(&report, "meetings.lecture_quarterly"),
        vec!["org/B1"]
    );
    assert_eq!(report.max_severity(), Some(Severity::Info));
    let cfg = base
        .with_overrides("[meetings.lecture_quarterly]\nseverity = \"error\"\n")
        .unwrap();
    let report = super::run_checks(&db.conn, &cfg, &CheckOptions::new(date(AS_OF))).unwrap();
    assert_eq!(report.max_severity(), Some(Severity::Error));
    let cfg = base
        .with_overrides("[meetings.lecture_quarterly]\nenabled = false\n")
        .unwrap();
    let report = super::run_checks(&db.conn, &cfg, &CheckOptions::new(date(AS_OF))).unwrap();
    assert!(report.findings.is_empty());
    assert!(!report.counts.contains_key("meetings.lecture_quarterly"));
}

#[test]
fn fail_missing_tables_is_an_error_not_a_panic() {
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    let e = super::run_checks(
        &conn,
        &super::CheckConfig::embedded(),
        &CheckOptions::new(date(AS_OF)),
    )
    .unwrap_err();
    assert!(matches!(e, CheckError::Db(_)), "{e}");
    assert!(e.to_string().starts_with("reading the projection failed"));
}

#[test]
fn member_ids_that_sort_differently_with_a_slash_give_the_same_findings() {
    // 'M1-2/…' sorts before 'M1/…' in the dues primary key, while 'M1' < 'M1-2': the engine
    // reads dues per member instead of in one scan. Same data, same findings.
    let build = |ids: [&str; 3]| {
        let mut db = Db::new();
        db.org("C1", "committee", None);
        db.org("B1", "branch", Some("C1"));
        for id in ids {
            db.member(id, "B1");
            db.set(
                "member",
                id,
                "introducers",
                format!("{};{}", ids[0], ids[1]),
            );
            db.dues_range(id, "2025-11", "2026-10", 4_500, &["2026-03"]);
        }
        db
    };
    let plain = build(["MA", "MB", "MC"]);
    let odd = build(["M1", "M1-2", "M1.3"]);
    let rename = |s: &str| {
        s.replace("M1-2", "MB")
            .replace("M1.3", "MC")
            .replace("M1", "MA")
    };
    let a: Vec<(String, String, serde_json::Value)> = plain
        .run(AS_OF)
        .findings
        .into_iter()
        .map(|f| (f.rule, f.subject, f.values))
        .collect();
    let mut b: Vec<(String, String, serde_json::Value)> = odd
        .run(AS_OF)
        .findings
        .into_iter()
        .map(|f| {
            (
                f.rule,
                rename(&f.subject),
                serde_json::from_str(&rename(&f.values.to_string())).unwrap(),
            )
        })
        .collect();
    b.sort_by(|x, y| (&x.0, &x.1).cmp(&(&y.0, &y.1)));
    assert_eq!(subjects(&plain.run(AS_OF), "dues.missing_months").len(), 3);
    assert_eq!(a, b);
}

#[test]
fn dues_ids_that_do_not_start_with_the_member_id_are_still_read() {
    let db = Db::clean();
    // A row of M3 whose id sorts among M1's rows: the scan sees members out of order and
    // the engine rereads dues per member.
    db.exec("DELETE FROM dues WHERE member_id = 'M3' AND month = '2026-04'");
    db.exec("INSERT INTO dues (dues_id, member_id, month, amount, paid_date, last_seq) VALUES ('M1/2026-04#9', 'M3', '2026-04', 4500, '2026-04-15', 1)");
    let report = db.run(AS_OF);
    assert_eq!(report.findings, vec![], "{:#?}", report.findings);
}

#[test]
fn all_rules_disabled_reads_nothing_and_finds_nothing() {
    let mut db = Db::clean();
    db.member("M9", "NOPE");
    db.set("member", "M9", "id_number", "bad");
    let off: String = super::catalogue()
        .iter()
        .map(|r| {
            let (family, name) = r.id.split_once('.').unwrap();
            format!("[{family}.{name}]\nenabled = false\n")
        })
        .collect();
    let cfg = super::CheckConfig::embedded().with_overrides(&off).unwrap();
    let report = super::run_checks(&db.conn, &cfg, &CheckOptions::new(date(AS_OF))).unwrap();
    assert!(report.findings.is_empty());
    assert!(report.counts.is_empty());
    // The same data with the defaults has findings for M9.
    assert!(!subjects(&db.run(AS_OF), "member.id_format").is_empty());
}

#[test]
fn progress_counts_the_members_in_scope() {
    let db = Db::clean();
    db.org("B2", "branch", Some("C1"));
    db.exec(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 599) \
         INSERT INTO member (member_id, org_id, last_seq) SELECT printf('N%03d', i), 'B2', 1 FROM n",
    );
    let run = |org: Option<&str>| {
        let mut seen = Vec::new();
        let opts = CheckOptions {
            org: org.map(str::to_owned),
            ..CheckOptions::new(date(AS_OF))
        };
        super::run_checks_with(&db.conn, &CheckConfig::embedded(), &opts, &mut |n| {
            seen.push(n)
        })
        .unwrap();
        seen
    };
    // 603 members: one full batch of 512, then the rest at the end.
    assert_eq!(run(None), [512, 603]);
    // Only the 3 members of B1 are in its scope.
    assert_eq!(run(Some("B1")), [3]);
}
