//! Test helpers for the checks: dates, a rule context with the embedded parameters, and an
//! in-memory projection (src/records/schema.sql) with builders for clean records.

use std::sync::OnceLock;

use chrono::{Months, NaiveDate};
use rusqlite::{params, Connection, ToSql};

use super::period::{parse_date, Month, Window};
use super::{run_checks, CheckConfig, CheckError, CheckOptions, Ctx, Params, Report};

pub(crate) fn date(s: &str) -> NaiveDate {
    parse_date(s).unwrap_or_else(|| panic!("bad test date {s}"))
}

pub(crate) fn month(s: &str) -> Month {
    Month::parse(s).unwrap_or_else(|| panic!("bad test month {s}"))
}

/// Context with the embedded parameters and the default 12-month window.
pub(crate) fn ctx(as_of: &str) -> Ctx<'static> {
    static PARAMS: OnceLock<Params> = OnceLock::new();
    let params = PARAMS.get_or_init(|| Params::from_config(&CheckConfig::embedded()).unwrap());
    let as_of = date(as_of);
    Ctx {
        as_of,
        window: Window {
            as_of,
            start: as_of.checked_sub_months(Months::new(12)).unwrap(),
        },
        params,
    }
}

/// A valid 18-character ID number for a birth date and sequence number.
pub(crate) fn id_number(birth: &str, seq: u32) -> String {
    let first17 = format!("110105{}{seq:03}", birth.replace('-', ""));
    let check = super::member::check_char(first17.as_bytes()).unwrap();
    format!("{first17}{check}")
}

/// An in-memory projection.
pub(crate) struct Db {
    pub(crate) conn: Connection,
    next_seq: u32,
}

impl Db {
    pub(crate) fn new() -> Db {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(include_str!("../records/schema.sql"))
            .unwrap();
        Db { conn, next_seq: 1 }
    }

    pub(crate) fn exec(&self, sql: &str) {
        self.conn.execute_batch(sql).unwrap();
    }

    /// An org established 2000-01-01, without committee.
    pub(crate) fn org(&self, id: &str, kind: &str, parent: Option<&str>) {
        self.conn
            .execute(
                "INSERT INTO org (org_id, name, kind, parent_id, established_date, has_committee, last_seq) \
                 VALUES (?1, ?1, ?2, ?3, '2000-01-01', 0, 1)",
                params![id, kind, parent],
            )
            .unwrap();
    }

    /// A clean full, active, employed male member (born 1970, admitted 1992-10-01, full
    /// 1993-10-01, 4500.00 yuan a month) with no introducers.
    pub(crate) fn member(&mut self, id: &str, org: &str) {
        let seq = self.next_seq;
        self.next_seq += 2;
        self.conn
            .execute(
                "INSERT INTO member (member_id, name, gender, ethnicity, birth_date, id_number, phone, education, \
                   org_id, category, status, application_date, activist_date, candidate_date, admission_date, \
                   full_date, employment, monthly_income, last_seq) \
                 VALUES (?1, '张三', 'male', '汉族', '1970-01-01', ?2, '13800138000', '本科', ?3, 'full', 'active', \
                   '1990-03-01', '1990-09-01', '1991-10-01', '1992-10-01', '1993-10-01', 'employed', 450000, 1)",
                params![id, id_number("1970-01-01", seq), org],
            )
            .unwrap();
    }

    /// Set one field of a member or org row.
    pub(crate) fn set(&self, table: &str, id: &str, field: &str, value: impl ToSql) {
        let key = if table == "org" {
            "org_id"
        } else {
            "member_id"
        };
        let n = self
            .conn
            .execute(
                &format!("UPDATE {table} SET {field} = ?1 WHERE {key} = ?2"),
                params![value, id],
            )
            .unwrap();
        assert_eq!(n, 1, "no {table} {id}");
    }

    pub(crate) fn dues(&self, member: &str, month: &str, amount_fen: i64) {
        let n: i64 = self
            .conn
            .query_row(
                "SELECT COUNT(*) FROM dues WHERE member_id = ?1 AND month = ?2",
                params![member, month],
                |r| r.get(0),
            )
            .unwrap();
        let id = if n == 0 {
            format!("{member}/{month}")
        } else {
            format!("{member}/{month}#{}", n + 1)
        };
        self.conn
            .execute(
                "INSERT INTO dues (dues_id, member_id, month, amount, paid_date, last_seq) \
                 VALUES (?1, ?2, ?3, ?4, ?3 || '-15', 1)",
                params![id, member, month, amount_fen],
            )
            .unwrap();
    }

    /// One dues row a month from `from` to `to` inclusive, skipping `except`.
    pub(crate) fn dues_range(
        &self,
        member: &str,
        from: &str,
        to: &str,
        amount_fen: i64,
        except: &[&str],
    ) {
        let mut m = month(from);
        while m <= month(to) {
            let label = m.to_string();
            if !except.contains(&label.as_str()) {
                self.dues(member, &label, amount_fen);
            }
            m = m.next();
        }
    }

    pub(crate) fn meeting(&self, org: &str, kind: &str, date: &str) {
        self.conn
            .execute(
                "INSERT INTO meeting (meeting_id, org_id, kind, date, attendees, last_seq) \
                 VALUES (?1 || '/' || ?3 || '/' || ?2, ?1, ?2, ?3, 3, 1)",
                params![org, kind, date],
            )
            .unwrap();
    }

    pub(crate) fn transfer(&self, member: &str, from: &str, to: &str, date: &str) {
        self.conn
            .execute(
                "INSERT INTO transfer (transfer_id, member_id, from_org, to_org, date, last_seq) \
                 VALUES (?1 || '/' || ?4, ?1, ?2, ?3, ?4, 1)",
                params![member, from, to, date],
            )
            .unwrap();
    }

    pub(crate) fn run_opts(&self, opts: &CheckOptions) -> Result<Report, CheckError> {
        run_checks(&self.conn, &CheckConfig::embedded(), opts)
    }

    pub(crate) fn run(&self, as_of: &str) -> Report {
        self.run_opts(&CheckOptions::new(date(as_of))).unwrap()
    }

    /// A clean committee C1 with branch B1 (secretary M1) and members M1, M2 (admitted
    /// 1975, before any dated parameter set, no introducers) and M3 (introduced by M1 and
    /// M2), dues and meetings from 2025-11 to 2026-10. For as-of 2026-11-28 it has no
    /// finding at all.
    pub(crate) fn clean() -> Db {
        let mut db = Db::new();
        db.org("C1", "committee", None);
        db.org("B1", "branch", Some("C1"));
        db.set("org", "B1", "secretary_id", "M1");
        for id in ["M1", "M2", "M3"] {
            db.member(id, "B1");
        }
        for id in ["M1", "M2"] {
            db.set("member", id, "birth_date", "1950-01-01");
            db.set(
                "member",
                id,
                "id_number",
                id_number("1950-01-01", if id == "M1" { 901 } else { 903 }),
            );
            db.set("member", id, "application_date", "1974-03-01");
            db.set("member", id, "activist_date", "1974-06-01");
            db.set("member", id, "candidate_date", "1975-01-01");
            db.set("member", id, "admission_date", "1975-07-01");
            db.set("member", id, "full_date", None::<String>);
            db.set("member", id, "employment", "retired");
            db.dues_range(id, "2025-11", "2026-10", 2_250, &[]);
        }
        db.set("member", "M3", "introducers", "M1;M2");
        db.dues_range("M3", "2025-11", "2026-10", 4_500, &[]);
        let mut m = month("2025-11");
        while m <= month("2026-10") {
            db.meeting("B1", "theme_day", &format!("{m}-10"));
            m = m.next();
        }
        for d in ["2026-02-20", "2026-05-20", "2026-08-20"] {
            db.meeting("B1", "member_meeting", d);
            db.meeting("B1", "lecture", d);
        }
        db
    }
}

/// Subjects of the findings of `rule`.
pub(crate) fn subjects(report: &Report, rule: &str) -> Vec<String> {
    report
        .findings
        .iter()
        .filter(|f| f.rule == rule)
        .map(|f| f.subject.clone())
        .collect()
}
