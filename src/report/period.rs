//! Report periods: a year (`2026`), a quarter (`2026-Q3`), a month (`2026-09`) or a range of
//! days, each with the period before it (for trends) and the instants that bound it.
//!
//! Days are days in Asia/Shanghai (UTC+8, no daylight saving since 1991); ledger times are
//! UTC, so a period's bounds are converted once here. This module only computes dates.

use chrono::{DateTime, Datelike, Duration, Months, NaiveDate, TimeZone, Utc};

use super::ReportError;

/// Shanghai's offset from UTC, in hours.
const SHANGHAI_HOURS: i64 = 8;

/// What a period is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeriodKind {
    Year,
    Quarter,
    Month,
    /// Any range of days.
    Range,
}

/// A period of whole days, both ends included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    pub kind: PeriodKind,
    pub label: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
}

fn bad(s: &str) -> ReportError {
    ReportError::BadPeriod(s.to_owned())
}

fn year_of(s: &str) -> Option<i32> {
    if s.len() != 4 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|y| (2000..=2200).contains(y))
}

/// The last day of the month of `d`.
fn month_end(d: NaiveDate) -> Option<NaiveDate> {
    d.with_day(1)?
        .checked_add_months(Months::new(1))?
        .pred_opt()
}

impl Period {
    /// Parses `2026`, `2026-Q3` (also `2026q3`) or `2026-09`.
    pub fn parse(s: &str) -> Result<Period, ReportError> {
        let t = s.trim();
        if let Some(year) = year_of(t) {
            return Period::year(year).ok_or_else(|| bad(s));
        }
        let (y, rest) = t.split_at_checked(4).ok_or_else(|| bad(s))?;
        let year = year_of(y).ok_or_else(|| bad(s))?;
        let rest = rest.strip_prefix('-').unwrap_or(rest);
        if let Some(q) = rest.strip_prefix(['Q', 'q']) {
            let q: u32 = match q {
                "1" => 1,
                "2" => 2,
                "3" => 3,
                "4" => 4,
                _ => return Err(bad(s)),
            };
            return Period::quarter(year, q).ok_or_else(|| bad(s));
        }
        if rest.len() == 2 && rest.bytes().all(|b| b.is_ascii_digit()) {
            let m: u32 = rest.parse().map_err(|_| bad(s))?;
            return Period::month(year, m).ok_or_else(|| bad(s));
        }
        Err(bad(s))
    }

    /// The calendar year.
    pub fn year(year: i32) -> Option<Period> {
        Some(Period {
            kind: PeriodKind::Year,
            label: format!("{year:04}"),
            from: NaiveDate::from_ymd_opt(year, 1, 1)?,
            to: NaiveDate::from_ymd_opt(year, 12, 31)?,
        })
    }

    /// Quarter `q` (1 to 4) of `year`.
    pub fn quarter(year: i32, q: u32) -> Option<Period> {
        if !(1..=4).contains(&q) {
            return None;
        }
        let from = NaiveDate::from_ymd_opt(year, (q - 1) * 3 + 1, 1)?;
        Some(Period {
            kind: PeriodKind::Quarter,
            label: format!("{year:04}-Q{q}"),
            from,
            to: month_end(from.checked_add_months(Months::new(2))?)?,
        })
    }

    /// Month `m` (1 to 12) of `year`.
    pub fn month(year: i32, m: u32) -> Option<Period> {
        let from = NaiveDate::from_ymd_opt(year, m, 1)?;
        Some(Period {
            kind: PeriodKind::Month,
            label: format!("{year:04}-{m:02}"),
            from,
            to: month_end(from)?,
        })
    }

    /// The days `from` to `to`, both included.
    pub fn range(from: NaiveDate, to: NaiveDate) -> Result<Period, ReportError> {
        if from > to {
            return Err(ReportError::BadRange {
                from: from.to_string(),
                to: to.to_string(),
            });
        }
        if !(2000..=2200).contains(&from.year()) || !(2000..=2200).contains(&to.year()) {
            return Err(bad(&format!("{from}..{to}")));
        }
        Ok(Period {
            kind: PeriodKind::Range,
            label: format!("{from}..{to}"),
            from,
            to,
        })
    }

    /// The period just before: the previous year, quarter or month, or for a range the
    /// same number of days ending the day before it starts.
    pub fn previous(&self) -> Option<Period> {
        match self.kind {
            PeriodKind::Year => Period::year(self.from.year() - 1),
            PeriodKind::Quarter => {
                let from = self.from.checked_sub_months(Months::new(3))?;
                Period::quarter(from.year(), (from.month() - 1) / 3 + 1)
            }
            PeriodKind::Month => {
                let from = self.from.checked_sub_months(Months::new(1))?;
                Period::month(from.year(), from.month())
            }
            PeriodKind::Range => {
                let days = (self.to - self.from).num_days();
                let to = self.from.pred_opt()?;
                let from = to.checked_sub_signed(Duration::days(days))?;
                Period::range(from, to).ok()
            }
        }
    }

    /// The day after the last day: the default day the period is judged on.
    pub fn end(&self) -> NaiveDate {
        self.to.succ_opt().unwrap_or(self.to)
    }

    /// Whether `day` is in the period.
    pub fn contains(&self, day: NaiveDate) -> bool {
        self.from <= day && day <= self.to
    }

    /// The months (`YYYY-MM`) the period touches, in order.
    pub fn months(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut m = self.from.with_day(1);
        while let Some(d) = m {
            if d > self.to {
                break;
            }
            out.push(format!("{:04}-{:02}", d.year(), d.month()));
            m = d.checked_add_months(Months::new(1));
        }
        out
    }

    /// The first instant of the period (UTC).
    pub fn start_utc(&self) -> DateTime<Utc> {
        day_start_utc(self.from)
    }

    /// The first instant after the period (UTC).
    pub fn end_utc(&self) -> DateTime<Utc> {
        day_start_utc(self.to) + Duration::days(1)
    }
}

/// Midnight at the start of `day` in Shanghai, in UTC.
pub fn day_start_utc(day: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0).unwrap_or_default())
        - Duration::hours(SHANGHAI_HOURS)
}

/// The Shanghai day of a UTC instant.
pub fn shanghai_day(t: DateTime<Utc>) -> NaiveDate {
    (t + Duration::hours(SHANGHAI_HOURS)).date_naive()
}

/// A ledger time (`2026-11-28T05:25:39.123Z`) or an RFC 3339 time, as UTC.
pub fn parse_utc(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A UTC instant in the ledger's `ts` form (milliseconds, `Z`).
pub fn format_ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Today in Shanghai.
pub fn today_shanghai() -> NaiveDate {
    shanghai_day(Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn parses_years_quarters_and_months() {
        let p = Period::parse("2026-Q3").unwrap();
        assert_eq!((p.from, p.to), (d("2026-07-01"), d("2026-09-30")));
        assert_eq!(p.label, "2026-Q3");
        let p = Period::parse("2026q1").unwrap();
        assert_eq!(
            (p.from, p.to, p.label.as_str()),
            (d("2026-01-01"), d("2026-03-31"), "2026-Q1")
        );
        let p = Period::parse("2024-02").unwrap();
        assert_eq!((p.from, p.to), (d("2024-02-01"), d("2024-02-29")));
        let p = Period::parse("2026").unwrap();
        assert_eq!((p.from, p.to), (d("2026-01-01"), d("2026-12-31")));
        assert_eq!(p.months().len(), 12);
    }

    #[test]
    fn fail_bad_periods() {
        for s in [
            "",
            "26",
            "2026-13",
            "2026-Q5",
            "2026-Q0",
            "1999",
            "2026-9",
            "2026-09-01",
            "abcd-Q1",
        ] {
            assert!(Period::parse(s).is_err(), "{s}");
        }
        assert!(Period::range(d("2026-02-01"), d("2026-01-31")).is_err());
    }

    #[test]
    fn previous_periods() {
        let q1 = Period::parse("2026-Q1").unwrap().previous().unwrap();
        assert_eq!(q1.label, "2025-Q4");
        assert_eq!((q1.from, q1.to), (d("2025-10-01"), d("2025-12-31")));
        let m = Period::parse("2026-03").unwrap().previous().unwrap();
        assert_eq!((m.from, m.to), (d("2026-02-01"), d("2026-02-28")));
        let y = Period::parse("2026").unwrap().previous().unwrap();
        assert_eq!(y.label, "2025");
        let r = Period::range(d("2026-10-01"), d("2026-10-10")).unwrap();
        let p = r.previous().unwrap();
        assert_eq!((p.from, p.to), (d("2026-09-21"), d("2026-09-30")));
    }

    #[test]
    fn bounds_are_shanghai_days_in_utc() {
        let p = Period::parse("2026-09").unwrap();
        assert_eq!(format_ts(p.start_utc()), "2026-08-31T16:00:00.000Z");
        assert_eq!(format_ts(p.end_utc()), "2026-09-30T16:00:00.000Z");
        let t = parse_utc("2026-09-30T15:59:59.999Z").unwrap();
        assert!(p.contains(shanghai_day(t)));
        let t = parse_utc("2026-09-30T16:00:00.000Z").unwrap();
        assert!(!p.contains(shanghai_day(t)));
        assert_eq!(p.end(), d("2026-10-01"));
        assert_eq!(
            Period::range(d("2026-10-20"), d("2026-12-02"))
                .unwrap()
                .months(),
            vec!["2026-10", "2026-11", "2026-12"]
        );
    }
}
