//! Import, reconcile, record history and export through the real binary: the records reach
//! the ledger, replay rebuilds the projection, bad files change nothing.

mod util;

use std::fmt::Write as _;

use util::{stderr, stdout, TestDir};

const MEMBERS: &str = "\
member_id,name,gender,birth_date,id_number,phone,org_id,category,status,monthly_income
M1,张三,男,1990-01-01,230102199001011234,13900000001,B1,正式党员,正常,4500
M2,李四,女,1991/2/3,230102199102031246,13900000002,B1,预备党员,正常,3000.5
M3,王五,male,1985年7月1日,,13900000003,B1,full,active,
";

fn ledger_size(t: &TestDir) -> i64 {
    t.db()
        .query_row("SELECT count(*) FROM entry", [], |r| r.get(0))
        .expect("count entries")
}

fn import(t: &TestDir, kind: &str, file: &std::path::Path, extra: &[&str]) {
    let mut args = vec!["import", kind, file.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    let out = t.run(&args);
    assert!(
        out.status.success(),
        "import {kind}: {}{}",
        stdout(&out),
        stderr(&out)
    );
}

fn export(t: &TestDir, kind: &str) -> String {
    export_as(t, kind, &[])
}

fn export_as(t: &TestDir, kind: &str, extra: &[&str]) -> String {
    let mut args = vec!["record", "export", kind];
    args.extend_from_slice(extra);
    let out = t.run(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

/// Every row of every projection table, `last_seq` included, in id order.
fn projection_dump(t: &TestDir) -> String {
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

#[test]
fn import_then_replay_passes_and_a_direct_edit_is_named() {
    let t = TestDir::new();
    t.init();
    let m = t.write("members.csv", MEMBERS);
    import(&t, "members", &m, &["--actor", "u-org"]);
    let out = t.run(&["verify", "--replay"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).contains("replay: the projection matches the ledger"));

    // A change behind the ledger's back: one member's phone, one row gone, one row added.
    let db = t.db();
    db.execute(
        "UPDATE member SET phone = '13900000099' WHERE member_id = 'M2'",
        [],
    )
    .expect("update");
    db.execute("DELETE FROM member WHERE member_id = 'M3'", [])
        .expect("delete");
    db.execute(
        "INSERT INTO member (member_id, name, last_seq) VALUES ('M9', 'x', 1)",
        [],
    )
    .expect("insert");
    drop(db);
    let out = t.run(&["verify", "--replay", "--no-record"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(text.contains("member/M2: field phone differs"), "{text}");
    assert!(
        text.contains("member/M3: missing from the projection"),
        "{text}"
    );
    assert!(text.contains("member/M9: not in the ledger"), "{text}");
    assert!(!text.contains("member/M1"), "{text}");
    assert!(!text.contains("13900000099"), "{text}");

    let out = t.run(&["verify", "--replay", "--no-record", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["ok"], false);
    assert_eq!(v["replay"]["differences"].as_array().map(Vec::len), Some(3));
}

#[test]
fn fail_bad_row_in_a_large_file_changes_nothing() {
    let t = TestDir::new();
    t.init();
    let m = t.write("members.csv", MEMBERS);
    import(&t, "members", &m, &[]);
    let d = t.write(
        "dues_small.csv",
        "member_id,month,base_income,amount,paid_date\nM1,2026-01,4500,45,2026-01-05\n",
    );
    import(&t, "dues", &d, &[]);
    let size = ledger_size(&t);
    let dump = projection_dump(&t);
    let (members, dues) = (export(&t, "members"), export(&t, "dues"));
    let entries = stdout(&t.run(&["export"]));

    // 100 000 rows; line 50 001 (data row 50 000) has an amount that is not money.
    let mut text = String::from("member_id,month,base_income,amount,paid_date\n");
    for i in 0..100_000u32 {
        let (member, month) = (i / 12, i % 12 + 1);
        let amount = if i == 49_999 { "4x.00" } else { "45.00" };
        let _ = writeln!(
            text,
            "M{member:05},2025-{month:02},4500.00,{amount},2025-{month:02}-10"
        );
    }
    let big = t.write("dues.csv", &text);
    let out = t.run(&["import", "dues", big.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("dues.csv:50001: column `amount`: value `4x.00`"),
        "{err}"
    );
    assert!(err.contains("nothing imported"), "{err}");
    assert!(stdout(&out).is_empty());

    assert_eq!(ledger_size(&t), size);
    assert_eq!(projection_dump(&t), dump);
    assert_eq!(export(&t, "members"), members);
    assert_eq!(export(&t, "dues"), dues);
    assert_eq!(stdout(&t.run(&["export"])), entries);
}

#[test]
fn gbk_file_imports_to_the_same_projection_as_its_utf8_twin() {
    let text = "\
党员编号,姓名,性别,民族,出生日期,联系电话,所在党支部,人员类别,党籍状态,入党日期,入党介绍人,工作状态,月收入
M1,张三,男,汉族,1990年1月1日,13900000001,第一党支部,正式党员,正常,2014/7/1,M2；M3,在职,4500
M2,欧阳娜,女,回族,1991-02-03,010-12345678,第一党支部,预备党员,正常,2025.03.01,,离退休,3000.50
";
    let utf8 = TestDir::new();
    utf8.init();
    let u = utf8.write("members.csv", text);
    import(&utf8, "members", &u, &[]);

    let (bytes, _, unmappable) = encoding_rs::GBK.encode(text);
    assert!(!unmappable);
    assert!(
        std::str::from_utf8(&bytes).is_err(),
        "the twin must not be UTF-8"
    );
    let gbk = TestDir::new();
    gbk.init();
    let g = gbk.path().join("members.csv");
    std::fs::write(&g, &bytes).expect("write");
    import(&gbk, "members", &g, &[]);
    assert_eq!(projection_dump(&gbk), projection_dump(&utf8));
    assert_eq!(export(&gbk, "members"), export(&utf8, "members"));
    assert!(export(&gbk, "members").contains("M1,张三,male,汉族,1990-01-01,,13900000001,,第一党支部,full,active,,,,,2014-07-01,,,M2;M3,employed,4500.00"));

    // Explicitly named, the encoding gives the same result in a third ledger.
    let named = TestDir::new();
    named.init();
    let n = named.path().join("members.csv");
    std::fs::write(&n, &bytes).expect("write");
    import(&named, "members", &n, &["--encoding", "gb18030"]);
    assert_eq!(projection_dump(&named), projection_dump(&utf8));
    let out = gbk.run(&["log", "--kind", "import.batch", "--json"]);
    assert!(
        stdout(&out).contains("\"encoding\":\"GB18030\""),
        "{}",
        stdout(&out)
    );
}

#[test]
fn reimport_appends_nothing() {
    let t = TestDir::new();
    t.init();
    let m = t.write("members.csv", MEMBERS);
    import(&t, "members", &m, &[]);
    let size = ledger_size(&t);
    let dump = projection_dump(&t);
    let out = t.run(&["import", "members", m.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("no entries appended"),
        "{}",
        stdout(&out)
    );
    assert_eq!(ledger_size(&t), size);
    assert_eq!(projection_dump(&t), dump);
    // The same rows in another order and spelling change nothing either.
    let respelled = t.write(
        "again.jsonl",
        concat!(
            r#"{"member_id":"M3","name":"王五","gender":"男","birth_date":"1985-07-01","phone":"13900000003","org_id":"B1","category":"full","status":"active"}"#,
            "\n"
        ),
    );
    let out = t.run(&["import", "members", respelled.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(ledger_size(&t), size);
}

#[test]
fn reconcile_reports_added_missing_and_changed_masked() {
    let t = TestDir::new();
    t.init();
    let m = t.write("members.csv", MEMBERS);
    import(&t, "members", &m, &[]);
    let dump = projection_dump(&t);
    let size = ledger_size(&t);
    // M2's phone changed in the source system, M3 gone, M4 new.
    let snapshot = t.write(
        "snapshot.csv",
        "\
member_id,name,gender,birth_date,id_number,phone,org_id,category,status,monthly_income
M1,张三,男,1990-01-01,230102199001011234,13900000001,B1,正式党员,正常,4500
M2,李四,女,1991/2/3,230102199102031246,13700001234,B1,预备党员,正常,3000.5
M4,赵六,男,1980-01-01,,,B1,full,active,
",
    );
    let out = t.run(&["reconcile", "members", snapshot.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert_eq!(lines[0], "added    member/M4");
    assert_eq!(lines[1], "missing  member/M3");
    assert_eq!(
        lines[2],
        "changed  member/M2: phone: 139****0002 → 137****1234"
    );
    assert!(lines[3].starts_with("DIFFERS: members "), "{text}");
    assert!(!text.contains("13700001234") && !text.contains("13900000002"));

    let out = t.run(&[
        "reconcile",
        "members",
        snapshot.to_str().expect("path"),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["ok"], false);
    assert_eq!(v["added"], serde_json::json!(["M4"]));
    assert_eq!(v["missing"], serde_json::json!(["M3"]));
    assert_eq!(
        v["changed"][0]["changes"],
        serde_json::json!({"phone": ["139****0002", "137****1234"]})
    );
    assert_eq!(v["counts"]["unchanged"], 1);

    // Nothing changed but two scan.reconcile entries.
    assert_eq!(projection_dump(&t), dump);
    assert_eq!(ledger_size(&t), size + 2);
    let log = stdout(&t.run(&["log", "--kind", "scan.reconcile", "--json"]));
    assert!(
        log.contains("\"missing\":1") && !log.contains("1370000"),
        "{log}"
    );

    // A snapshot equal to the projection: exit 0.
    let out = t.run(&["reconcile", "members", m.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

#[test]
fn history_shows_each_change_with_its_actor_masked() {
    let t = TestDir::new();
    t.init();
    let m = t.write("members.csv", MEMBERS);
    import(&t, "members", &m, &["--actor", "u-org"]);
    for (actor, phone) in [
        ("u-a", "13900000011"),
        ("u-b", "13900000012"),
        ("u-c", "13900000013"),
    ] {
        let f = t.write("phone.csv", &format!("member_id,phone\nM1,{phone}\n"));
        import(&t, "members", &f, &["--actor", actor]);
    }
    let out = t.run(&["record", "history", "member/M1", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let items = v["history"].as_array().expect("history");
    assert_eq!(items.len(), 4);
    assert_eq!(items[0]["kind"], "member.create");
    assert_eq!(items[0]["actor"]["user"], "u-org");
    let updates: Vec<(&str, &serde_json::Value)> = items[1..]
        .iter()
        .map(|i| (i["actor"]["user"].as_str().unwrap_or(""), &i["changes"]))
        .collect();
    assert_eq!(
        updates,
        [
            (
                "u-a",
                &serde_json::json!({"phone": ["139****0001", "139****0011"]})
            ),
            (
                "u-b",
                &serde_json::json!({"phone": ["139****0011", "139****0012"]})
            ),
            (
                "u-c",
                &serde_json::json!({"phone": ["139****0012", "139****0013"]})
            ),
        ]
    );
    for i in &items[1..] {
        assert_eq!(i["kind"], "member.update");
        assert_eq!(i["actor"]["via"], "import");
    }
    assert_eq!(v["current"]["record"]["phone"], "139****0013");
    assert_eq!(v["current"]["record"]["id_number"], "2301**********1234");
    assert_eq!(v["current"]["record"]["monthly_income"], "***");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("13900000013") && !text.contains("230102199001011234"));

    let log = stdout(&t.run(&["log", "--subject", "member/M1", "--json"]));
    assert!(
        log.contains(r#""phone":["139****0012","139****0013"]"#),
        "{log}"
    );
    assert!(
        !log.contains("13900000013") && !log.contains("4500"),
        "{log}"
    );

    let human = stdout(&t.run(&["record", "history", "member/M1"]));
    assert!(human.contains("by u-b (import)"), "{human}");
    assert!(
        human.contains("phone: 139****0011 → 139****0012"),
        "{human}"
    );
    let out = t.run(&["record", "show", "member/M9"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no record `member/M9`"));
}

#[test]
fn synth_files_survive_import_and_export() {
    let t = TestDir::new();
    t.init();
    let dir = t.path().join("synth");
    let as_of = chrono::NaiveDate::from_ymd_opt(2026, 11, 1).expect("date");
    let mut opts = djaudit::synth::SynthOptions::new(40, 11, as_of);
    opts.defects = 0.2;
    djaudit::synth::generate(&opts, &dir).expect("synth");
    let sorted = |text: &str| {
        let mut lines: Vec<&str> = text.lines().collect();
        lines[1..].sort_unstable();
        lines.join("\n")
    };
    for kind in ["orgs", "members", "dues", "meetings", "transfers", "users"] {
        let file = dir.join(format!("{kind}.csv"));
        import(&t, kind, &file, &[]);
        let input = std::fs::read_to_string(&file).expect("read");
        // Once users exist, the policy decides: the first synthetic account is a system
        // administrator, who manages accounts.
        let who: &[&str] = if kind == "users" {
            &["--as", "U0001"]
        } else {
            &[]
        };
        assert_eq!(sorted(&export_as(&t, kind, who)), sorted(&input), "{kind}");
    }
    let out = t.run(&["verify", "--replay"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}
