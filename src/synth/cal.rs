//! Calendar arithmetic for the generator: months, quarters, day and month offsets, and the
//! periods that the checks are sure to judge ("safe" periods, clear of every window edge).
//! It must not read the clock: everything is relative to the caller's `as_of`.

use chrono::{Datelike, Days, Months, NaiveDate};

/// A calendar month, ordered, counted as `year * 12 + month0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Month(i32);

impl Month {
    pub(crate) fn of(d: NaiveDate) -> Month {
        Month(d.year() * 12 + d.month0() as i32)
    }

    pub(crate) fn year(self) -> i32 {
        self.0.div_euclid(12)
    }

    /// 1..=12
    pub(crate) fn month(self) -> u32 {
        self.0.rem_euclid(12) as u32 + 1
    }

    pub(crate) fn add(self, n: i32) -> Month {
        Month(self.0 + n)
    }

    pub(crate) fn first_day(self) -> NaiveDate {
        ymd(self.year(), self.month(), 1)
    }

    pub(crate) fn last_day(self) -> NaiveDate {
        add_days(self.add(1).first_day(), -1)
    }

    /// The first month of this month's quarter.
    pub(crate) fn quarter_start(self) -> Month {
        Month(self.0 - self.0.rem_euclid(12) % 3)
    }

    /// A day of this month, clamped to the month's length.
    pub(crate) fn day(self, day: u32) -> NaiveDate {
        ymd(self.year(), self.month(), day)
    }

    /// Number of months from `self` to `later` (negative when `later` is earlier).
    pub(crate) fn until(self, later: Month) -> i32 {
        later.0 - self.0
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year(), self.month())
    }
}

/// The date `y-m-d` with `d` clamped to the length of the month. Years handled by the
/// generator are validated to lie within 1800..=2300, where this never falls back.
pub(crate) fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
    let m = m.clamp(1, 12);
    let mut d = d.clamp(1, 31);
    loop {
        if let Some(date) = NaiveDate::from_ymd_opt(y, m, d) {
            return date;
        }
        if d <= 28 {
            // INVARIANT: unreachable for validated years; a fixed date keeps this total.
            return NaiveDate::MIN;
        }
        d -= 1;
    }
}

/// `d` plus `n` days (negative: minus). Saturates at the ends of the calendar.
pub(crate) fn add_days(d: NaiveDate, n: i64) -> NaiveDate {
    let r = if n >= 0 {
        d.checked_add_days(Days::new(n.unsigned_abs()))
    } else {
        d.checked_sub_days(Days::new(n.unsigned_abs()))
    };
    r.unwrap_or(if n >= 0 {
        NaiveDate::MAX
    } else {
        NaiveDate::MIN
    })
}

/// `d` plus `n` months with chrono's day clamping (the same arithmetic the checks use).
pub(crate) fn add_months(d: NaiveDate, n: i32) -> NaiveDate {
    let r = if n >= 0 {
        d.checked_add_months(Months::new(n.unsigned_abs()))
    } else {
        d.checked_sub_months(Months::new(n.unsigned_abs()))
    };
    r.unwrap_or(if n >= 0 {
        NaiveDate::MAX
    } else {
        NaiveDate::MIN
    })
}

/// `d` plus `n` years (as months, clamping 29 February).
pub(crate) fn add_years(d: NaiveDate, n: i32) -> NaiveDate {
    add_months(d, n * 12)
}

/// Days from `a` to `b` (negative when `b` is earlier).
pub(crate) fn days_between(a: NaiveDate, b: NaiveDate) -> i64 {
    (b - a).num_days()
}

/// Writes `d` as `YYYY-MM-DD` into `buf`.
pub(crate) fn push_date(buf: &mut String, d: NaiveDate) {
    use std::fmt::Write as _;
    // Writing to a String cannot fail.
    let _ = write!(buf, "{:04}-{:02}-{:02}", d.year(), d.month(), d.day());
}

/// The months and periods of one generation run.
#[derive(Debug, Clone)]
pub(crate) struct Calendar {
    pub(crate) as_of: NaiveDate,
    /// The generated months, oldest first: `months` months ending at the last month that
    /// ended before `as_of` (the month before `as_of`'s month).
    pub(crate) span: Vec<Month>,
    /// Months surely judged by every reading of the window rules: in the span but not its
    /// first month, starting strictly after `window_start`, ended before `as_of`.
    pub(crate) safe_months: Vec<Month>,
    /// First months of quarters wholly inside the span and surely judged.
    pub(crate) safe_quarters: Vec<Month>,
    /// Years surely judged: January in the span, December strictly inside the window, ended.
    pub(crate) safe_years: Vec<i32>,
}

impl Calendar {
    pub(crate) fn new(as_of: NaiveDate, months: u32) -> Calendar {
        let last = Month::of(as_of).add(-1);
        let n = months.max(1) as i32;
        let span: Vec<Month> = (0..n).map(|i| last.add(i - n + 1)).collect();
        // `as_of` minus 12 months: the earliest possible start of the checks' default window.
        let window_start = add_months(as_of, -12);
        let first = span.first().copied().unwrap_or(last);
        let in_span = |m: Month| m >= first && m <= last;
        let safe = |m: Month| in_span(m) && m != first && m.first_day() > window_start;
        let safe_months: Vec<Month> = span.iter().copied().filter(|m| safe(*m)).collect();
        let safe_quarters: Vec<Month> = span
            .iter()
            .copied()
            .filter(|m| m.quarter_start() == *m)
            .filter(|q| in_span(*q) && in_span(q.add(2)) && q.first_day() > window_start)
            .filter(|q| q.add(2).last_day() < as_of && *q != first)
            .collect();
        let safe_years: Vec<i32> = span
            .iter()
            .copied()
            .filter(|m| m.month() == 12)
            .filter(|dec| {
                let jan = dec.add(-11);
                in_span(jan) && dec.last_day() < as_of && dec.first_day() > window_start
            })
            .map(|dec| dec.year())
            .collect();
        Calendar {
            as_of,
            span,
            safe_months,
            safe_quarters,
            safe_years,
        }
    }

    pub(crate) fn first_month(&self) -> Month {
        self.span
            .first()
            .copied()
            .unwrap_or_else(|| Month::of(self.as_of).add(-1))
    }

    pub(crate) fn last_month(&self) -> Month {
        self.span
            .last()
            .copied()
            .unwrap_or_else(|| Month::of(self.as_of).add(-1))
    }

    pub(crate) fn in_span(&self, m: Month) -> bool {
        m >= self.first_month() && m <= self.last_month()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn span_ends_at_the_month_before_as_of() {
        let c = Calendar::new(d("2026-07-01"), 12);
        assert_eq!(c.first_month().to_string(), "2025-07");
        assert_eq!(c.last_month().to_string(), "2026-06");
        // 2025-07-01 is not after as_of - 12 months, so July is not safe; the rest are.
        assert_eq!(
            c.safe_months.first().map(|m| m.to_string()).as_deref(),
            Some("2025-08")
        );
        assert_eq!(c.safe_months.len(), 11);
        let qs: Vec<String> = c.safe_quarters.iter().map(|m| m.to_string()).collect();
        assert_eq!(qs, ["2025-10", "2026-01", "2026-04"]);
        assert!(c.safe_years.is_empty());
    }

    #[test]
    fn january_as_of_gives_a_safe_year() {
        let c = Calendar::new(d("2026-01-15"), 12);
        assert_eq!(c.first_month().to_string(), "2025-01");
        assert_eq!(c.safe_years, vec![2025]);
        let c = Calendar::new(d("2026-03-15"), 12);
        assert!(c.safe_years.is_empty(), "January 2025 is not in the span");
    }

    #[test]
    fn month_helpers() {
        let m = Month::of(d("2024-02-10"));
        assert_eq!(m.last_day(), d("2024-02-29"));
        assert_eq!(m.quarter_start().to_string(), "2024-01");
        assert_eq!(m.day(31), d("2024-02-29"));
        assert_eq!(add_months(d("2024-01-31"), 1), d("2024-02-29"));
        assert_eq!(add_months(d("2024-03-31"), -1), d("2024-02-29"));
        assert_eq!(Month::of(d("2023-12-01")).add(1).to_string(), "2024-01");
    }
}
