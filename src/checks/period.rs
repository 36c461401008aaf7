//! Calendar arithmetic for the checks: months, quarters and years, the check window, and
//! the rule that decides whether a calendar period is judged (DESIGN §7, docs/RULES.md).
//!
//! It reads no data and knows no rules; it must stay free of any policy number.

use std::fmt;

use chrono::{Datelike, Months, NaiveDate};

/// A calendar month, stored as `year * 12 + month0` so that months compare and step as
/// integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Month(i32);

impl Month {
    /// The month `year-month`; `None` unless `month` is 1..=12 and the year has four digits.
    pub(crate) fn new(year: i32, month: u32) -> Option<Month> {
        if !(1..=12).contains(&month) || !(0..=9999).contains(&year) {
            return None;
        }
        // INVARIANT: month is 1..=12, so the cast and the subtraction cannot overflow.
        Some(Month(year * 12 + month as i32 - 1))
    }

    /// The month containing `date`.
    pub(crate) fn of(date: NaiveDate) -> Month {
        // INVARIANT: month0 is 0..=11.
        Month(date.year() * 12 + date.month0() as i32)
    }

    pub(crate) fn year(self) -> i32 {
        self.0.div_euclid(12)
    }

    /// 1..=12.
    pub(crate) fn month(self) -> u32 {
        // INVARIANT: rem_euclid(12) is 0..=11.
        self.0.rem_euclid(12) as u32 + 1
    }

    pub(crate) fn next(self) -> Month {
        Month(self.0.saturating_add(1))
    }

    pub(crate) fn prev(self) -> Month {
        Month(self.0.saturating_sub(1))
    }

    /// Number of months from `self` to `later` (negative when `later` is earlier).
    pub(crate) fn months_until(self, later: Month) -> i32 {
        later.0.saturating_sub(self.0)
    }

    /// First day of the month. Months are only built from real dates or four-digit years,
    /// which chrono always represents; the fallback is never taken.
    pub(crate) fn first_day(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year(), self.month(), 1).unwrap_or(NaiveDate::MIN)
    }

    /// Last day of the month.
    pub(crate) fn last_day(self) -> NaiveDate {
        self.first_day()
            .checked_add_months(Months::new(1))
            .and_then(|d| d.pred_opt())
            .unwrap_or(NaiveDate::MAX)
    }

    /// First month of the quarter containing this month.
    pub(crate) fn quarter_start(self) -> Month {
        Month(self.0 - self.0.rem_euclid(3))
    }

    /// January of this month's year.
    pub(crate) fn year_start(self) -> Month {
        Month(self.0 - self.0.rem_euclid(12))
    }

    /// Parse `YYYY-MM`.
    pub(crate) fn parse(text: &str) -> Option<Month> {
        let [y0, y1, y2, y3, b'-', m0, m1] = *text.as_bytes() else {
            return None;
        };
        let year = digits(&[y0, y1, y2, y3])?;
        let month = digits(&[m0, m1])?;
        Month::new(i32::try_from(year).ok()?, month)
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year(), self.month())
    }
}

fn digits(bytes: &[u8]) -> Option<u32> {
    bytes.iter().try_fold(0u32, |acc, b| {
        b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
    })
}

/// Parse a projection date `YYYY-MM-DD` (exactly that form); `None` for anything else.
pub(crate) fn parse_date(text: &str) -> Option<NaiveDate> {
    let [y0, y1, y2, y3, b'-', m0, m1, b'-', d0, d1] = *text.as_bytes() else {
        return None;
    };
    let year = i32::try_from(digits(&[y0, y1, y2, y3])?).ok()?;
    NaiveDate::from_ymd_opt(year, digits(&[m0, m1])?, digits(&[d0, d1])?)
}

/// The length of a calendar period a rule judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeriodKind {
    Month,
    Quarter,
    Year,
}

/// A calendar period: its first and last month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Period {
    pub(crate) kind: PeriodKind,
    pub(crate) first: Month,
    pub(crate) last: Month,
}

impl Period {
    /// The period of `kind` that contains `month`.
    pub(crate) fn containing(kind: PeriodKind, month: Month) -> Period {
        let (first, len) = match kind {
            PeriodKind::Month => (month, 1),
            PeriodKind::Quarter => (month.quarter_start(), 3),
            PeriodKind::Year => (month.year_start(), 12),
        };
        Period {
            kind,
            first,
            last: Month(first.0 + len - 1),
        }
    }

    /// The period right after this one.
    pub(crate) fn following(self) -> Period {
        Period::containing(self.kind, self.last.next())
    }

    /// Label: `2026-03`, `2026-Q1`, `2026`.
    pub(crate) fn label(self) -> String {
        match self.kind {
            PeriodKind::Month => self.first.to_string(),
            PeriodKind::Quarter => format!(
                "{:04}-Q{}",
                self.first.year(),
                self.first.month().div_ceil(3)
            ),
            PeriodKind::Year => format!("{:04}", self.first.year()),
        }
    }
}

/// The check window: `[start, as_of]`. By default `start` is `as_of` minus 12 months.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    pub(crate) as_of: NaiveDate,
    pub(crate) start: NaiveDate,
}

impl Window {
    /// First month that overlaps the window.
    pub(crate) fn first_month(&self) -> Month {
        Month::of(self.start)
    }

    /// Month of the as-of date (it overlaps the window but has not ended).
    pub(crate) fn as_of_month(&self) -> Month {
        Month::of(self.as_of)
    }

    /// Last month whose last day is strictly before the as-of date.
    pub(crate) fn last_ended_month(&self) -> Month {
        self.as_of_month().prev()
    }

    /// A month that overlaps the window (it may not have ended).
    pub(crate) fn overlaps(&self, month: Month) -> bool {
        month >= self.first_month() && month <= self.as_of_month()
    }

    /// A period that has ended before the as-of date and overlaps the window.
    pub(crate) fn ended_in_window(&self, period: Period) -> bool {
        period.last <= self.last_ended_month() && period.last >= self.first_month()
    }
}

/// The months in which an organisation can be judged at all: from its data start (and its
/// establishment) to its dissolution. `None` when it has no data at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OrgSpan {
    pub(crate) first: Month,
    pub(crate) last: Option<Month>,
}

impl OrgSpan {
    /// `data_start`: first month with any dues or meeting row of the org. A month is inside the
    /// span when it is at or after the data start, its first day is on or after `established`
    /// and its last day is not after `dissolved`.
    pub(crate) fn new(
        data_start: Option<Month>,
        established: Option<NaiveDate>,
        dissolved: Option<NaiveDate>,
    ) -> Option<OrgSpan> {
        let mut first = data_start?;
        if let Some(e) = established {
            let m = if e.day() == 1 {
                Month::of(e)
            } else {
                Month::of(e).next()
            };
            first = first.max(m);
        }
        let last = dissolved.map(|d| {
            let m = Month::of(d);
            if d == m.last_day() {
                m
            } else {
                m.prev()
            }
        });
        Some(OrgSpan { first, last })
    }

    pub(crate) fn contains(&self, period: Period) -> bool {
        period.first >= self.first && self.last.is_none_or(|l| period.last <= l)
    }
}

/// Whether a period is judged for an organisation: ended, in the window, and inside the
/// organisation's span.
pub(crate) fn judged(window: &Window, span: Option<OrgSpan>, period: Period) -> bool {
    window.ended_in_window(period) && span.is_some_and(|s| s.contains(period))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        parse_date(s).unwrap()
    }

    fn m(s: &str) -> Month {
        Month::parse(s).unwrap()
    }

    fn window(as_of: &str) -> Window {
        let as_of = d(as_of);
        Window {
            as_of,
            start: as_of.checked_sub_months(Months::new(12)).unwrap(),
        }
    }

    #[test]
    fn month_arithmetic_and_display() {
        assert_eq!(m("2026-01").prev().to_string(), "2025-12");
        assert_eq!(m("2025-12").next().to_string(), "2026-01");
        assert_eq!(m("2024-02").last_day(), d("2024-02-29"));
        assert_eq!(m("2026-05").quarter_start(), m("2026-04"));
        assert_eq!(m("2026-05").year_start(), m("2026-01"));
        assert_eq!(m("2025-11").months_until(m("2026-02")), 3);
        assert_eq!(
            Period::containing(PeriodKind::Quarter, m("2026-12")).label(),
            "2026-Q4"
        );
        assert_eq!(
            Period::containing(PeriodKind::Year, m("2026-12")).label(),
            "2026"
        );
    }

    #[test]
    fn fail_bad_dates_and_months() {
        for bad in ["2026-13", "2026-1", "26-01", "2026/01", "2026-0a"] {
            assert_eq!(Month::parse(bad), None, "{bad}");
        }
        for bad in [
            "2026-02-30",
            "2026-2-1",
            "2026-02-01T00",
            "２０２６-01-01",
            "",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn period_is_judged_only_when_ended() {
        // as_of 2026-11-28: November has not ended, October has.
        let w = window("2026-11-28");
        let span = OrgSpan::new(Some(m("2020-01")), None, None);
        let nov = Period::containing(PeriodKind::Month, m("2026-11"));
        let oct = Period::containing(PeriodKind::Month, m("2026-10"));
        assert!(!judged(&w, span, nov));
        assert!(judged(&w, span, oct));
        // On the last day of November it still has not ended (last day < as_of is required).
        assert!(!judged(&window("2026-11-30"), span, nov));
        assert!(judged(&window("2026-12-01"), span, nov));
    }

    #[test]
    fn window_covers_twelve_judged_months() {
        let w = window("2026-11-28");
        let span = OrgSpan::new(Some(m("2000-01")), None, None);
        let judged_months: Vec<String> = (0..40)
            .map(|i| Period::containing(PeriodKind::Month, Month(m("2024-01").0 + i)))
            .filter(|p| judged(&w, span, *p))
            .map(|p| p.label())
            .collect();
        assert_eq!(judged_months.len(), 12);
        assert_eq!(judged_months.first().map(String::as_str), Some("2025-11"));
        assert_eq!(judged_months.last().map(String::as_str), Some("2026-10"));
    }

    #[test]
    fn fail_period_before_data_start_or_establishment_is_not_judged() {
        let w = window("2026-11-28");
        let p = Period::containing(PeriodKind::Month, m("2026-04"));
        assert!(!judged(&w, OrgSpan::new(Some(m("2026-05")), None, None), p));
        assert!(judged(&w, OrgSpan::new(Some(m("2026-04")), None, None), p));
        assert!(!judged(&w, None, p), "no data at all: nothing judged");
        // Established on 2026-04-02: April is not judged, established 2026-04-01: it is.
        assert!(!judged(
            &w,
            OrgSpan::new(Some(m("2020-01")), Some(d("2026-04-02")), None),
            p
        ));
        assert!(judged(
            &w,
            OrgSpan::new(Some(m("2020-01")), Some(d("2026-04-01")), None),
            p
        ));
        // Dissolved on the last day of April: April is judged; on April 29 it is not.
        assert!(judged(
            &w,
            OrgSpan::new(Some(m("2020-01")), None, Some(d("2026-04-30"))),
            p
        ));
        assert!(!judged(
            &w,
            OrgSpan::new(Some(m("2020-01")), None, Some(d("2026-04-29"))),
            p
        ));
    }

    #[test]
    fn quarter_overlapping_window_start_is_judged() {
        // Window starts 2025-11-28: Q4 2025 overlaps it and has ended.
        let w = window("2026-11-28");
        let span = OrgSpan::new(Some(m("2025-01")), None, None);
        assert!(judged(
            &w,
            span,
            Period::containing(PeriodKind::Quarter, m("2025-10"))
        ));
        assert!(!judged(
            &w,
            span,
            Period::containing(PeriodKind::Quarter, m("2025-07"))
        ));
        assert!(!judged(
            &w,
            span,
            Period::containing(PeriodKind::Quarter, m("2026-10"))
        ));
    }
}
