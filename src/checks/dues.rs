//! Dues rules (`dues.*`, 党费): the amount for the base income and employment (2008 rates),
//! months without a payment, six consecutive unpaid months, and two payments for a month.
//!
//! A member's expected months start at the admission month and at the first month with any
//! data of the member's organisation, end at the last ended month (or the month of exit),
//! and never include months the organisation did not exist. The six-month rule flags a
//! member for review (党章 Art. 9); it changes nothing.

use serde_json::json;

use super::config::{Bracket, Dated};
use super::facts::{yuan, DuesFacts, DuesRow, Employment, Status};
use super::period::Month;
use super::{
    CheckConfig, CheckError, Ctx, DuesRule, Family, ParamKind, ParamSpec, Rule, RuleDef, Violation,
};

pub(crate) static RULES: &[&DuesRule] = &[
    &AmountMismatch,
    &MissingMonths,
    &SixMonthsUnpaid,
    &DuplicatePayment,
];

const fn def(
    id: &'static str,
    zh: &'static str,
    en: &'static str,
    source: &'static str,
    applies_on: &'static str,
    params: &'static [ParamSpec],
) -> RuleDef {
    RuleDef {
        id,
        family: Family::Dues,
        description_zh: zh,
        description_en: en,
        source,
        applies_on,
        params,
        ordered: &[],
    }
}

/// Dues rates in force from one date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rates {
    pub(crate) tolerance_fen: i64,
    pub(crate) employed: Vec<Bracket>,
    pub(crate) retired: Vec<Bracket>,
    pub(crate) flat_fen: i64,
    pub(crate) farmer_min_fen: i64,
    pub(crate) farmer_max_fen: i64,
}

/// What a member should pay for a month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expected {
    Exact(i64),
    Range(i64, i64),
}

impl Expected {
    fn accepts(self, amount: i64, tolerance: i64) -> bool {
        match self {
            Expected::Exact(e) => amount.abs_diff(e) <= tolerance.unsigned_abs(),
            Expected::Range(lo, hi) => {
                amount >= lo.saturating_sub(tolerance) && amount <= hi.saturating_add(tolerance)
            }
        }
    }

    fn text(self) -> String {
        match self {
            Expected::Exact(e) => yuan(e),
            Expected::Range(lo, hi) => format!("{}..{}", yuan(lo), yuan(hi)),
        }
    }
}

/// One flat rate on the whole base: the first step whose `up_to_fen` is at least the base,
/// rounded half-up to the fen.
pub(crate) fn rate_amount(base_fen: i64, steps: &[Bracket]) -> Option<i64> {
    if base_fen < 0 {
        return None;
    }
    let step = steps
        .iter()
        .find(|b| b.up_to_fen.is_none_or(|u| base_fen <= u))?;
    Some(base_fen.checked_mul(step.permille)?.checked_add(500)? / 1000)
}

impl Rates {
    /// Expected amount for an employment and base income (fen); `None` when it cannot be
    /// judged (no employment, or no base for employed and retired members).
    pub(crate) fn expected(
        &self,
        employment: Option<Employment>,
        base_fen: Option<i64>,
    ) -> Option<Expected> {
        match employment? {
            Employment::Employed => rate_amount(base_fen?, &self.employed).map(Expected::Exact),
            Employment::Retired => rate_amount(base_fen?, &self.retired).map(Expected::Exact),
            Employment::Student | Employment::Unemployed => Some(Expected::Exact(self.flat_fen)),
            Employment::Farmer => Some(Expected::Range(self.farmer_min_fen, self.farmer_max_fen)),
        }
    }
}

/// Typed parameters of the dues rules.
#[derive(Debug, Clone)]
pub(crate) struct Params {
    pub(crate) rates: Dated<Rates>,
    pub(crate) unpaid_months: Dated<u32>,
}

impl Params {
    pub(crate) fn from_config(cfg: &CheckConfig) -> Result<Params, CheckError> {
        Ok(Params {
            rates: cfg.dated("dues.amount_mismatch", |s| {
                Some(Rates {
                    tolerance_fen: s.int("tolerance_fen")?,
                    employed: s.brackets("employed")?.to_vec(),
                    retired: s.brackets("retired")?.to_vec(),
                    flat_fen: s.int("flat_fen")?,
                    farmer_min_fen: s.int("farmer_min_fen")?,
                    farmer_max_fen: s.int("farmer_max_fen")?,
                })
            })?,
            unpaid_months: cfg.dated("dues.six_months_unpaid", |s| {
                s.int("months").and_then(|v| u32::try_from(v).ok())
            })?,
        })
    }
}

/// The months a member is expected to pay, before clipping to the window: from the later
/// of the admission month and the org's span start, to the earlier of the last ended
/// month, the org's span end and the month of exit (none for a member who left on an
/// unknown date).
fn expected_bounds(f: &DuesFacts<'_>, ctx: &Ctx<'_>) -> Option<(Month, Month)> {
    let span = f.span?;
    let lo = span.first.max(Month::of(f.m.admission_date?));
    let mut hi = ctx.window.last_ended_month();
    if let Some(last) = span.last {
        hi = hi.min(last);
    }
    let exited = matches!(
        f.m.status,
        Some(Status::Deceased | Status::Removed | Status::TransferredOut)
    );
    if exited {
        // Without the date of leaving, which months were due is unknown: not judged (the
        // missing date is the record's problem, not its dues').
        hi = hi.min(Month::of(f.m.status_date?));
    }
    (lo <= hi).then_some((lo, hi))
}

/// Distinct months with at least one row, ascending (rows are ordered by month).
fn paid_months(rows: &[DuesRow]) -> Vec<Month> {
    let mut months: Vec<Month> = rows.iter().filter_map(|r| r.month).collect();
    months.sort_unstable();
    months.dedup();
    months
}

/// Maximal runs of consecutive unpaid months inside `lo..=hi`.
fn unpaid_runs(paid: &[Month], lo: Month, hi: Month) -> Vec<(Month, Month)> {
    let mut runs = Vec::new();
    let mut cursor = lo;
    for &p in paid.iter().filter(|p| **p >= lo && **p <= hi) {
        if p > cursor {
            runs.push((cursor, p.prev()));
        }
        cursor = p.next();
    }
    if cursor <= hi {
        runs.push((cursor, hi));
    }
    runs
}

pub(crate) struct AmountMismatch;
impl<'a> Rule<DuesFacts<'a>> for AmountMismatch {
    fn def(&self) -> &'static RuleDef {
        static D: RuleDef = def(
            "dues.amount_mismatch",
            "党费金额与按月工资收入和比例计算的应交金额不符（在职≤3000元0.5%、≤5000元1%、≤10000元1.5%、以上2%；离退休≤5000元0.5%、以上1%；学生、无固定收入0.2元；农民0.2–1元）",
            "Dues amount differs from the amount due for the base income and employment (employed ≤3000 0.5%, ≤5000 1%, ≤10000 1.5%, above 2%; retired ≤5000 0.5%, above 1%; students and unemployed 0.20 yuan; farmers 0.20–1.00 yuan)",
            "关于中国共产党党费收缴、使用和管理的规定（2008）第三条至第六条",
            "month of the dues row",
            &[
                ParamSpec {
                    name: "tolerance_fen",
                    kind: ParamKind::Int { min: 0, max: 100_000 },
                    description: "largest accepted difference from the amount due, in fen",
                },
                ParamSpec {
                    name: "employed",
                    kind: ParamKind::Brackets,
                    description: "rate steps for employed members: monthly base up to `up_to_fen` (inclusive) pays `permille` ‰ of the whole base",
                },
                ParamSpec {
                    name: "retired",
                    kind: ParamKind::Brackets,
                    description: "rate steps for retired members",
                },
                ParamSpec {
                    name: "flat_fen",
                    kind: ParamKind::Int { min: 0, max: 100_000 },
                    description: "monthly amount for students and members without fixed income, in fen",
                },
                ParamSpec {
                    name: "farmer_min_fen",
                    kind: ParamKind::Int { min: 0, max: 100_000 },
                    description: "lowest monthly amount for farmers, in fen",
                },
                ParamSpec {
                    name: "farmer_max_fen",
                    kind: ParamKind::Int { min: 0, max: 100_000 },
                    description: "highest monthly amount for farmers, in fen",
                },
            ],
        );
        &D
    }
    fn check(&self, f: &DuesFacts<'a>, ctx: &Ctx<'_>) -> Option<Violation> {
        let rates = &ctx.params.dues.rates;
        let wrong: Vec<serde_json::Value> = f
            .rows
            .iter()
            .filter_map(|row| {
                let month = row.month.filter(|m| ctx.window.overlaps(*m))?;
                let r = rates.at(month.first_day())?;
                let expected = r.expected(f.m.employment, row.base_income.or(f.m.monthly_income))?;
                let amount = row.amount?;
                (!expected.accepts(amount, r.tolerance_fen)).then(|| {
                    json!({ "month": month.to_string(), "expected": expected.text(), "actual": yuan(amount) })
                })
            })
            .collect();
        (!wrong.is_empty()).then(|| {
            Violation::new(
                format!(
                    "dues amount differs from the amount due in {} month(s)",
                    wrong.len()
                ),
                json!({ "months": wrong }),
            )
        })
    }
}

pub(crate) struct MissingMonths;
impl<'a> Rule<DuesFacts<'a>> for MissingMonths {
    fn def(&self) -> &'static RuleDef {
        static D: RuleDef = def(
            "dues.missing_months",
            "应交党费的月份没有缴纳记录（自入党当月起按月交纳）",
            "Months in which dues were due have no dues row (dues are paid monthly from the admission month)",
            "关于中国共产党党费收缴、使用和管理的规定（2008）第八条、第十二条",
            "",
            &[],
        );
        &D
    }
    fn check(&self, f: &DuesFacts<'a>, ctx: &Ctx<'_>) -> Option<Violation> {
        let (lo, hi) = expected_bounds(f, ctx)?;
        let lo = lo.max(ctx.window.first_month());
        let paid = paid_months(f.rows);
        let missing: Vec<String> = unpaid_runs(&paid, lo, hi)
            .into_iter()
            .flat_map(|(a, b)| {
                let mut out = Vec::new();
                let mut m = a;
                while m <= b {
                    out.push(m.to_string());
                    m = m.next();
                }
                out
            })
            .collect();
        (!missing.is_empty()).then(|| {
            Violation::new(
                format!(
                    "no dues row for {} month(s) in which dues were due",
                    missing.len()
                ),
                json!({ "months": missing }),
            )
        })
    }
}

pub(crate) struct SixMonthsUnpaid;
impl<'a> Rule<DuesFacts<'a>> for SixMonthsUnpaid {
    fn def(&self) -> &'static RuleDef {
        static D: RuleDef = def(
            "dues.six_months_unpaid",
            "连续六个月及以上未交纳党费（提请支部审查，不自动改变党籍状态）",
            "Six or more consecutive months without dues, the run ending in the window (flag for review, no status change)",
            "党章 第九条; 关于中国共产党党费收缴、使用和管理的规定（2008）第十三条",
            "first day of the run's last month",
            &[ParamSpec {
                name: "months",
                kind: ParamKind::Int { min: 1, max: 120 },
                description: "number of consecutive unpaid months that flags a member",
            }],
        );
        &D
    }
    fn check(&self, f: &DuesFacts<'a>, ctx: &Ctx<'_>) -> Option<Violation> {
        let (lo, hi) = expected_bounds(f, ctx)?;
        let paid = paid_months(f.rows);
        let first_in_window = ctx.window.first_month();
        let runs: Vec<serde_json::Value> = unpaid_runs(&paid, lo, hi)
            .into_iter()
            .filter(|(a, b)| {
                let len = a.months_until(*b) + 1;
                *b >= first_in_window
                    && ctx
                        .params
                        .dues
                        .unpaid_months
                        .at(b.first_day())
                        .is_some_and(|need| i64::from(len) >= i64::from(*need))
            })
            .map(|(a, b)| json!({ "from": a.to_string(), "to": b.to_string(), "months": a.months_until(b) + 1 }))
            .collect();
        (!runs.is_empty()).then(|| {
            let longest = runs
                .iter()
                .filter_map(|r| r["months"].as_i64())
                .max()
                .unwrap_or(0);
            Violation::new(
                format!("{longest} consecutive months without dues: flag for review"),
                json!({ "runs": runs }),
            )
        })
    }
}

pub(crate) struct DuplicatePayment;
impl<'a> Rule<DuesFacts<'a>> for DuplicatePayment {
    fn def(&self) -> &'static RuleDef {
        static D: RuleDef = def(
            "dues.duplicate_payment",
            "同一党员同一月份有两条及以上党费记录",
            "Two or more dues rows for the same member and month",
            "关于中国共产党党费收缴、使用和管理的规定（2008）第十二条",
            "",
            &[],
        );
        &D
    }
    fn check(&self, f: &DuesFacts<'a>, ctx: &Ctx<'_>) -> Option<Violation> {
        let mut months: Vec<Month> = f
            .rows
            .iter()
            .filter_map(|r| r.month)
            .filter(|m| ctx.window.overlaps(*m))
            .collect();
        months.sort_unstable();
        let mut dup: Vec<String> = months
            .windows(2)
            .filter_map(|w| match w {
                [a, b] if a == b => Some(a.to_string()),
                _ => None,
            })
            .collect();
        dup.dedup();
        (!dup.is_empty()).then(|| {
            Violation::new(
                format!("more than one dues row for {} month(s)", dup.len()),
                json!({ "months": dup }),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::facts::MemberRec;
    use super::super::period::OrgSpan;
    use super::super::testutil::{ctx, date, month};
    use super::*;

    fn rates() -> Rates {
        ctx("2026-11-28")
            .params
            .dues
            .rates
            .at(date("2026-01-01"))
            .unwrap()
            .clone()
    }

    #[test]
    fn employed_rates_at_the_bracket_edges() {
        // 党费规定 2008: ≤3000 0.5%, 3000–5000 1%, 5000–10000 1.5%, >10000 2%, upper bounds inclusive.
        let r = rates();
        let e = |yuan_fen| r.expected(Some(Employment::Employed), Some(yuan_fen));
        assert_eq!(e(300_000), Some(Expected::Exact(1_500)));
        assert_eq!(e(300_001), Some(Expected::Exact(3_000)));
        assert_eq!(e(500_000), Some(Expected::Exact(5_000)));
        assert_eq!(e(500_001), Some(Expected::Exact(7_500)));
        assert_eq!(e(1_000_000), Some(Expected::Exact(15_000)));
        assert_eq!(e(1_000_001), Some(Expected::Exact(20_000)));
        // Rounded half-up to the fen: 0.5% of 4321.50 yuan = 43.215 → 43.22 (1% bracket).
        assert_eq!(e(432_150), Some(Expected::Exact(4_322)));
        assert_eq!(
            e(100),
            Some(Expected::Exact(1)),
            "0.5% of 1.00 yuan = 0.005 → 0.01"
        );
    }

    #[test]
    fn other_employments() {
        let r = rates();
        assert_eq!(
            r.expected(Some(Employment::Retired), Some(500_000)),
            Some(Expected::Exact(2_500))
        );
        assert_eq!(
            r.expected(Some(Employment::Retired), Some(500_001)),
            Some(Expected::Exact(5_000))
        );
        assert_eq!(
            r.expected(Some(Employment::Student), None),
            Some(Expected::Exact(20))
        );
        assert_eq!(
            r.expected(Some(Employment::Unemployed), Some(900_000)),
            Some(Expected::Exact(20))
        );
        assert_eq!(
            r.expected(Some(Employment::Farmer), None),
            Some(Expected::Range(20, 100))
        );
        assert_eq!(r.expected(Some(Employment::Employed), None), None);
        assert_eq!(r.expected(None, Some(1)), None);
    }

    fn member(income: i64) -> MemberRec {
        MemberRec {
            id: "M1".into(),
            admission_date: Some(date("2010-01-01")),
            employment: Some(Employment::Employed),
            monthly_income: Some(income),
            ..MemberRec::default()
        }
    }

    fn row(m: &str, amount: i64) -> DuesRow {
        DuesRow {
            month: Some(month(m)),
            base_income: None,
            amount: Some(amount),
            paid_date: None,
        }
    }

    fn span() -> Option<OrgSpan> {
        OrgSpan::new(Some(month("2020-01")), None, None)
    }

    fn check(rule: &DuesRule, m: &MemberRec, rows: &[DuesRow]) -> Option<Violation> {
        let f = DuesFacts {
            m,
            span: span(),
            rows,
        };
        rule.check(&f, &ctx("2026-11-28"))
    }

    #[test]
    fn amount_3000_is_half_percent_3000_01_is_one_percent() {
        assert!(check(&AmountMismatch, &member(300_000), &[row("2026-03", 1_500)]).is_none());
        assert!(check(&AmountMismatch, &member(300_000), &[row("2026-03", 3_000)]).is_some());
        assert!(check(&AmountMismatch, &member(300_001), &[row("2026-03", 3_000)]).is_none());
        let v = check(&AmountMismatch, &member(300_001), &[row("2026-03", 1_500)]).unwrap();
        assert_eq!(
            v.values["months"],
            json!([{ "month": "2026-03", "expected": "30.00", "actual": "15.00" }])
        );
        // Tolerance 1 fen.
        assert!(check(&AmountMismatch, &member(300_000), &[row("2026-03", 1_501)]).is_none());
        assert!(check(&AmountMismatch, &member(300_000), &[row("2026-03", 1_502)]).is_some());
    }

    #[test]
    fn amount_uses_row_base_first_and_only_window_rows() {
        let mut r = row("2026-03", 1_500);
        r.base_income = Some(300_000);
        assert!(check(&AmountMismatch, &member(900_000), &[r]).is_none());
        // Outside the window (window starts 2025-11-28): not judged.
        assert!(check(&AmountMismatch, &member(300_000), &[row("2025-10", 1)]).is_none());
        assert!(check(&AmountMismatch, &member(300_000), &[row("2025-11", 1)]).is_some());
    }

    fn paid_except(missing: &[&str]) -> Vec<DuesRow> {
        let mut rows = Vec::new();
        let mut m = month("2020-01");
        while m <= month("2026-10") {
            if !missing.contains(&m.to_string().as_str()) {
                rows.push(row(&m.to_string(), 4_500));
            }
            m = m.next();
        }
        rows
    }

    #[test]
    fn six_unpaid_months_flag_five_do_not() {
        let m = member(450_000);
        let six = paid_except(&[
            "2026-01", "2026-02", "2026-03", "2026-04", "2026-05", "2026-06",
        ]);
        let v = check(&SixMonthsUnpaid, &m, &six).unwrap();
        assert_eq!(
            v.values["runs"],
            json!([{ "from": "2026-01", "to": "2026-06", "months": 6 }])
        );
        let five = paid_except(&["2026-01", "2026-02", "2026-03", "2026-04", "2026-05"]);
        assert!(check(&SixMonthsUnpaid, &m, &five).is_none());
        assert!(check(&MissingMonths, &m, &five).is_some());
    }

    #[test]
    fn six_month_run_may_start_before_the_window_but_must_end_in_it() {
        let m = member(450_000);
        // 2025-07..2025-12 unpaid: six months, the run ends in the window (which starts 2025-11).
        let rows = paid_except(&[
            "2025-07", "2025-08", "2025-09", "2025-10", "2025-11", "2025-12",
        ]);
        assert!(check(&SixMonthsUnpaid, &m, &rows).is_some());
        // Six months ending 2025-10: the run ends before the window.
        let rows = paid_except(&[
            "2025-05", "2025-06", "2025-07", "2025-08", "2025-09", "2025-10",
        ]);
        assert!(check(&SixMonthsUnpaid, &m, &rows).is_none());
    }

    #[test]
    fn missing_months_respect_admission_exit_and_data_start() {
        let mut m = member(450_000);
        assert!(check(&MissingMonths, &m, &paid_except(&[])).is_none());
        let v = check(
            &MissingMonths,
            &m,
            &paid_except(&["2026-10", "2025-11", "2025-10"]),
        )
        .unwrap();
        assert_eq!(
            v.values["months"],
            json!(["2025-11", "2026-10"]),
            "2025-10 is before the window"
        );
        // Admitted 2026-09-30: only September and October 2026 are due.
        m.admission_date = Some(date("2026-09-30"));
        let v = check(&MissingMonths, &m, &[]).unwrap();
        assert_eq!(v.values["months"], json!(["2026-09", "2026-10"]));
        // Died in September: October is not due.
        m.status = Some(Status::Deceased);
        m.status_date = Some(date("2026-09-15"));
        let v = check(&MissingMonths, &m, &[]).unwrap();
        assert_eq!(v.values["months"], json!(["2026-09"]));
        // Died on an unknown date: which months were due is unknown, none is asked for.
        m.status_date = None;
        assert!(check(&MissingMonths, &m, &[]).is_none());
        // The org's data starts 2026-11: nothing judged.
        let f = DuesFacts {
            m: &member(450_000),
            span: OrgSpan::new(Some(month("2026-11")), None, None),
            rows: &[],
        };
        assert!(MissingMonths.check(&f, &ctx("2026-11-28")).is_none());
        let f = DuesFacts { span: None, ..f };
        assert!(SixMonthsUnpaid.check(&f, &ctx("2026-11-28")).is_none());
    }

    #[test]
    fn duplicate_payments_in_window() {
        let m = member(450_000);
        let rows = [
            row("2025-10", 4_500),
            row("2025-10", 4_500),
            row("2026-02", 4_500),
            row("2026-02", 4_500),
        ];
        let v = check(&DuplicatePayment, &m, &rows).unwrap();
        assert_eq!(v.values["months"], json!(["2026-02"]));
        assert!(check(&DuplicatePayment, &m, &rows[..3]).is_none());
    }

    #[test]
    fn unpaid_runs_are_maximal() {
        let paid = [month("2026-02"), month("2026-03"), month("2026-06")];
        let runs = unpaid_runs(&paid, month("2026-01"), month("2026-08"));
        assert_eq!(
            runs,
            vec![
                (month("2026-01"), month("2026-01")),
                (month("2026-04"), month("2026-05")),
                (month("2026-07"), month("2026-08")),
            ]
        );
        assert!(unpaid_runs(&paid, month("2026-02"), month("2026-03")).is_empty());
    }
}
