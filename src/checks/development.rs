//! Development-process rules (`development.*`, 发展党员): age on application, order of the
//! stages, the activist period, introducers, probation and its extension, full-membership
//! date, overdue probation and the category the dates imply.
//!
//! Numbers are parameters dated from the regulation that set them (党章 1982 for age,
//! introducers and probation; 发展党员工作细则 2014-06-11 for the activist period and the
//! 6–12 month extension); a rule picks the set in force on the date it names.

use chrono::{Months, NaiveDate};
use serde_json::json;

use super::config::Dated;
use super::facts::{Category, MemberFacts, MemberRec, Status};
use super::{
    CheckConfig, CheckError, Ctx, Family, MemberRule, ParamKind, ParamSpec, Rule, RuleDef,
    Violation,
};

pub(crate) static RULES: &[&MemberRule] = &[
    &AgeAtApplication,
    &DateOrder,
    &ActivistPeriod,
    &IntroducersCount,
    &IntroducerNotFull,
    &IntroducerUnknown,
    &ProbationExtension,
    &FullDateMismatch,
    &ProbationOverdue,
    &CategoryMismatch,
];

const PROBATION_MONTHS: ParamSpec = ParamSpec {
    name: "probation_months",
    kind: ParamKind::Int { min: 1, max: 60 },
    description: "length of probation in months before any extension",
};
const BY_ADMISSION: &str = "admission date (as-of date when absent)";

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
        family: Family::Development,
        description_zh: zh,
        description_en: en,
        source,
        applies_on,
        params,
        ordered: &[],
    }
}

/// Typed parameters of the development rules.
#[derive(Debug, Clone)]
pub(crate) struct Params {
    pub(crate) min_age_years: Dated<u32>,
    pub(crate) activist_min_months: Dated<u32>,
    pub(crate) introducers: Dated<usize>,
    pub(crate) extension: Dated<(i64, i64)>,
    pub(crate) probation_full_date: Dated<u32>,
    pub(crate) probation_overdue: Dated<u32>,
    pub(crate) probation_category: Dated<u32>,
}

fn months_param(cfg: &CheckConfig, id: &str, name: &str) -> Result<Dated<u32>, CheckError> {
    cfg.dated(id, |s| s.int(name).and_then(|v| u32::try_from(v).ok()))
}

impl Params {
    pub(crate) fn from_config(cfg: &CheckConfig) -> Result<Params, CheckError> {
        Ok(Params {
            min_age_years: months_param(cfg, "development.age_at_application", "min_age_years")?,
            activist_min_months: months_param(cfg, "development.activist_period", "min_months")?,
            introducers: cfg.dated("development.introducers_count", |s| {
                s.int("count").and_then(|v| usize::try_from(v).ok())
            })?,
            extension: cfg.dated("development.probation_extension", |s| {
                Some((s.int("min_months")?, s.int("max_months")?))
            })?,
            probation_full_date: months_param(
                cfg,
                "development.full_date_mismatch",
                "probation_months",
            )?,
            probation_overdue: months_param(
                cfg,
                "development.probation_overdue",
                "probation_months",
            )?,
            probation_category: months_param(
                cfg,
                "development.category_mismatch",
                "probation_months",
            )?,
        })
    }
}

/// End of probation: admission date + (probation + extension) months, the day clamped to
/// the month's end (docs/RULES.md). `None` without an admission date or a set in force.
fn probation_end(m: &MemberRec, months: &Dated<u32>) -> Option<NaiveDate> {
    let admission = m.admission_date?;
    let base = *months.at(admission)?;
    let ext = u32::try_from(m.probation_extension_months.unwrap_or(0).clamp(0, 1200)).unwrap_or(0);
    admission.checked_add_months(Months::new(base.checked_add(ext)?))
}

pub(crate) struct AgeAtApplication;
impl<'a> Rule<MemberFacts<'a>> for AgeAtApplication {
    fn def(&self) -> &'static RuleDef {
        static D: RuleDef = def(
            "development.age_at_application",
            "申请入党时未满18周岁（满18周岁当日申请合格）",
            "Applicant was under 18 on the application date (the 18th birthday itself passes)",
            "党章 第一条; 发展党员工作细则 第五条",
            "application date",
            &[ParamSpec {
                name: "min_age_years",
                kind: ParamKind::Int { min: 1, max: 100 },
                description: "minimum age in whole years on the application date",
            }],
        );
        &D
    }
    fn check(&self, f: &MemberFacts<'a>, ctx: &Ctx<'_>) -> Option<Violation> {
        let (birth, applied) = (f.m.birth_date?, f.m.application_date?);
        let years = *ctx.params.development.min_age_years.at(applied)?;
        let of_age = birth.checked_add_months(Months::new(years.checked_mul(12)?))?;
        (applied < of_age).then(|| {
            Violation::new(
                format!("applied on {applied}, before turning {years} on {of_age}"),
                json!({
                    "application_date": applied.to_string(),
                    "birth_date": birth.to_string(),
                    "of_age_date": of_age.to_string(),
                }),
            )
        })
    }
}

pub(crate) struct DateOrder;
impl<'a> Rule<MemberFacts<'a>> for DateOrder {
    fn def(&self) -> &'static RuleDef {
        static D: RuleDef = def(
            "development.date_order",
            "发展日期顺序错误：应为申请入党 ≤ 确定积极分子 ≤ 确定发展对象 ≤ 入党 ≤ 转正",
            "Development dates out of order: application ≤ activist ≤ candidate ≤ admission ≤ full",
            "发展党员工作细则 第二章至第五章（发展程序）",
            "",
            &[],
        );
        &D
    }
    fn check(&self, f: &MemberFacts<'a>, _: &Ctx<'_>) -> Option<Violation> {
        let m = f.m;
        let present: Vec<(&str, NaiveDate)> = [
            ("application_date", m.application_date),
            ("activist_date", m.activist_date),
            ("candidate_date", m.candidate_date),
            ("admission_date", m.admission_date),
            ("full_date", m.full_date),
        ]
        .into_iter()
        .filter_map(|(n, d)| d.map(|d| (n, d)))
        .collect();
        let broken: Vec<[&str; 2]> = present
            .windows(2)
            .filter_map(|w| match w {
                [(a, da), (b, db)] if db < da => Some([*a, *b]),
                _ => None,
            })
            .collect();
        (!broken.is_empty()).then(|| {
            let text: Vec<String> = broken
                .iter()
                .map(|[a, b]| format!("{b} before {a}"))
                .collect();
            Violation::new(
                format!("development dates out of order: {}", text.join(", ")),
                json!({ "out_of_order": broken }),
            )
        })
    }
}

pub(crate) struct ActivistPeriod;
impl<'a> Rule<MemberFacts<'a>> for ActivistPeriod {
    fn def(&self) -> &'static RuleDef {
        static D: RuleDef = def(
            "development.activist_period",
            "入党积极分子培养考察不满一年以上即确定为发展对象（须超过一年）",
            "Became a development candidate without more than one year as an activist",
            "发展党员工作细则 第十三条",
            "candidate date",
            &[ParamSpec {
                name: "min_months",
                kind: ParamKind::Int { min: 0, max: 120 },
                description: "the candidate date must be strictly later than the activist date plus this many months",
            }],
        );
        &D
    }
    fn check(&self, f: &MemberFacts<'a>, ctx: &Ctx<'_>) -> Option<Violation> {
        let (activist, candidate) = (f.m.activist_date?, f.m.candidate_date?);
        let months = *ctx.params.development.activist_min_months.at(candidate)?;
        let earliest_not_allowed = activist.checked_add_months(Months::new(months))?;
        (candidate <= earliest_not_allowed).then(|| {
            Violation::new(
                format!("candidate on {candidate}, not more than {months} months after becoming an activist on {activist}"),
                json!({
                    "activist_date": activist.to_string(),
                    "candidate_date": candidate.to_string(),
                    "min_months": months,
                }),
            )
        })
    }
}

pub(crate) struct IntroducersCount;
impl<'a> Rule<MemberFacts<'a>> for IntroducersCount {
    fn def(&self) -> &'static RuleDef {
        static D: RuleDef = def(
            "development.introducers_count",
            "入党介绍人不是两名不同的党员，或本人是自己的介绍人",
            "Introducers are not exactly two distinct members, or the member introduces themself",
            "党章 第五条; 发展党员工作细则 第十四条",
            BY_ADMISSION,
            &[ParamSpec {
                name: "count",
                kind: ParamKind::Int { min: 1, max: 10 },
                description: "number of distinct introducers required",
            }],
        );
        &D
    }
    fn check(&self, f: &MemberFacts<'a>, ctx: &Ctx<'_>) -> Option<Violation> {
        let on = f.m.admission_date.unwrap_or(ctx.as_of);
        let need = *ctx.params.development.introducers.at(on)?;
        let ids = f.m.introducer_ids();
        let mut distinct = ids.clone();
        distinct.sort_unstable();
        distinct.dedup();
        let self_named = distinct.contains(&f.m.id.as_str());
        (distinct.len() != need || self_named).then(|| {
            let message = if self_named {
                "member is named as their own introducer".to_string()
            } else {
                format!("{} distinct introducer(s), {need} required", distinct.len())
            };
            Violation::new(
                message,
                json!({ "introducers": ids, "distinct": distinct.len(), "required": need, "self_named": self_named }),
            )
        })
    }
}

pub(crate) struct IntroducerNotFull;
impl<'a> Rule<MemberFacts<'a>> for IntroducerNotFull {
    fn def(&self) -> &'static RuleDef {
        static D: RuleDef = def(
            "development.introducer_not_full",
            "入党介绍人在入党日期时不是正式党员",
            "An introducer was not a full member on the admission date",
            "党章 第五条; 发展党员工作细则 第十四条（预备党员不能作入党介绍人）",
            "",
            &[],
        );
        &D
    }
    fn check(&self, f: &MemberFacts<'a>, _: &Ctx<'_>) -> Option<Violation> {
        let admission = f.m.admission_date?;
        let not_full: Vec<&str> = f
            .introducers
            .iter()
            .filter(|i| i.id != f.m.id)
            .filter_map(|i| {
                let r = i.record?;
                (!super::facts::full_on(r.full_date, r.category, admission))
                    .then_some(i.id.as_str())
            })
            .collect();
        (!not_full.is_empty()).then(|| {
            Violation::new(
                format!(
                    "introducer(s) not full members on {admission}: {}",
                    not_full.join(", ")
                ),
                json!({ "introducers": not_full, "admission_date": admission.to_string() }),
            )
        })
    }
}

pub(crate) struct IntroducerUnknown;
impl<'a> Rule<MemberFacts<'a>> for IntroducerUnknown {
    fn def(&self) -> &'static RuleDef {
        static D: RuleDef = def(
            "development.introducer_unknown",
            "入党介绍人编号在党员库中不存在",
            "An introducer id matches no member",
            "发展党员工作细则 第十四条",
            "",
            &[],
        );
        &D
    }
    fn check(&self, f: &MemberFacts<'a>, _: &Ctx<'_>) -> Option<Violation> {
        let unknown: Vec<&str> = f
            .introducers
            .iter()
            .filter(|i| i.id != f.m.id && i.record.is_none())
            .map(|i| i.id.as_str())
            .collect();
        (!unknown.is_empty()).then(|| {
            Violation::new(
                format!("introducer(s) not found: {}", unknown.join(", ")),
                json!({ "introducers": unknown }),
            )
        })
    }
}

pub(crate) struct ProbationExtension;
impl<'a> Rule<MemberFacts<'a>> for ProbationExtension {
    fn def(&self) -> &'static RuleDef {
        static D: RuleDef = RuleDef {
            ordered: &[("min_months", "max_months")],
            ..def(
                "development.probation_extension",
                "延长预备期不在规定范围内（2014年起为6至12个月）",
                "Probation extension outside the allowed range (6 to 12 months from 2014)",
                "党章 第七条; 发展党员工作细则 第三十二条",
                BY_ADMISSION,
                &[
                    ParamSpec {
                        name: "min_months",
                        kind: ParamKind::Int { min: 1, max: 60 },
                        description: "shortest allowed extension in months",
                    },
                    ParamSpec {
                        name: "max_months",
                        kind: ParamKind::Int { min: 1, max: 60 },
                        description: "longest allowed extension in months",
                    },
                ],
            )
        };
        &D
    }
    fn check(&self, f: &MemberFacts<'a>, ctx: &Ctx<'_>) -> Option<Violation> {
        let ext = f.m.probation_extension_months.filter(|e| *e != 0)?;
        let on = f.m.admission_date.unwrap_or(ctx.as_of);
        let (min, max) = *ctx.params.development.extension.at(on)?;
        (!(min..=max).contains(&ext)).then(|| {
            Violation::new(
                format!("probation extended by {ext} months, allowed {min} to {max}"),
                json!({ "extension_months": ext, "min_months": min, "max_months": max }),
            )
        })
    }
}

pub(crate) struct FullDateMismatch;
impl<'a> Rule<MemberFacts<'a>> for FullDateMismatch {
    fn def(&self) -> &'static RuleDef {
        static D: RuleDef = def(
            "development.full_date_mismatch",
            "转正日期不是预备期（含延长期）届满之日",
            "Full-membership date is not the end of probation (including any extension)",
            "党章 第七条; 发展党员工作细则 第三十二条",
            "admission date",
            &[PROBATION_MONTHS],
        );
        &D
    }
    fn check(&self, f: &MemberFacts<'a>, ctx: &Ctx<'_>) -> Option<Violation> {
        let full = f.m.full_date?;
        let end = probation_end(f.m, &ctx.params.development.probation_full_date)?;
        (full != end).then(|| {
            Violation::new(
                format!("full date {full} is not the end of probation {end}"),
                json!({ "full_date": full.to_string(), "probation_end": end.to_string() }),
            )
        })
    }
}

pub(crate) struct ProbationOverdue;
impl<'a> Rule<MemberFacts<'a>> for ProbationOverdue {
    fn def(&self) -> &'static RuleDef {
        static D: RuleDef = def(
            "development.probation_overdue",
            "预备期已满仍为预备党员且无转正记录",
            "Probationary member past the end of probation without a decision",
            "党章 第七条; 发展党员工作细则 第三十二条",
            "admission date",
            &[PROBATION_MONTHS],
        );
        &D
    }
    fn check(&self, f: &MemberFacts<'a>, ctx: &Ctx<'_>) -> Option<Violation> {
        let m = f.m;
        if m.category != Some(Category::Probationary)
            || m.status != Some(Status::Active)
            || m.full_date.is_some()
        {
            return None;
        }
        let end = probation_end(m, &ctx.params.development.probation_overdue)?;
        (ctx.as_of > end).then(|| {
            Violation::new(
                format!("probation ended on {end} and there is no full date"),
                json!({ "probation_end": end.to_string() }),
            )
        })
    }
}

pub(crate) struct CategoryMismatch;
impl<'a> Rule<MemberFacts<'a>> for CategoryMismatch {
    fn def(&self) -> &'static RuleDef {
        static D: RuleDef = def(
            "development.category_mismatch",
            "人员类别与日期不符（正式党员无转正日期且预备期未满，或转正日期在未来；预备党员已有转正日期）",
            "Category disagrees with the dates (full without full date before probation ends, or full date in the future; probationary with a past full date)",
            "党章 第七条",
            "admission date",
            &[PROBATION_MONTHS],
        );
        &D
    }
    fn check(&self, f: &MemberFacts<'a>, ctx: &Ctx<'_>) -> Option<Violation> {
        let m = f.m;
        let reason = match (m.category?, m.full_date) {
            (Category::Full, Some(full)) if full > ctx.as_of => Some(format!(
                "category full but full date {full} is after {}",
                ctx.as_of
            )),
            (Category::Full, None) => probation_end(m, &ctx.params.development.probation_category)
                .filter(|end| *end > ctx.as_of)
                .map(|end| format!("category full but probation ends on {end}")),
            (Category::Probationary, Some(full)) if full <= ctx.as_of => {
                Some(format!("category probationary but full date is {full}"))
            }
            _ => None,
        }?;
        Some(Violation::new(
            reason,
            json!({
                "category": if m.category == Some(Category::Full) { "full" } else { "probationary" },
                "full_date": m.full_date.map(|d| d.to_string()),
            }),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::facts::{Introducer, IntroducerRec};
    use super::super::testutil::{ctx, date};
    use super::*;

    fn facts(m: &MemberRec) -> MemberFacts<'_> {
        MemberFacts {
            m,
            org: None,
            duplicates: &[],
            duplicate_total: 0,
            introducers: &[],
        }
    }

    fn fires(rule: &MemberRule, m: &MemberRec) -> bool {
        rule.check(&facts(m), &ctx("2026-11-28")).is_some()
    }

    #[test]
    fn age_exactly_18_passes_one_day_less_fails() {
        let mut m = MemberRec {
            birth_date: Some(date("2000-05-15")),
            application_date: Some(date("2018-05-15")),
            ..MemberRec::default()
        };
        assert!(!fires(&AgeAtApplication, &m));
        m.application_date = Some(date("2018-05-14"));
        assert!(fires(&AgeAtApplication, &m));
        // Born on 29 February: of age on 28 February of the 18th year (day clamped).
        m.birth_date = Some(date("2000-02-29"));
        m.application_date = Some(date("2018-02-28"));
        assert!(!fires(&AgeAtApplication, &m));
        m.application_date = Some(date("2018-02-27"));
        assert!(fires(&AgeAtApplication, &m));
    }

    #[test]
    fn activist_period_of_exactly_one_year_fails_a_day_more_passes() {
        let mut m = MemberRec {
            activist_date: Some(date("2020-03-01")),
            candidate_date: Some(date("2021-03-01")),
            ..MemberRec::default()
        };
        assert!(fires(&ActivistPeriod, &m));
        m.candidate_date = Some(date("2021-03-02"));
        assert!(!fires(&ActivistPeriod, &m));
    }

    #[test]
    fn fail_activist_rule_not_in_force_before_2014() {
        // 细则 2014-06-11: a candidate date before it is not judged by this rule.
        let m = MemberRec {
            activist_date: Some(date("2010-03-01")),
            candidate_date: Some(date("2010-04-01")),
            ..MemberRec::default()
        };
        assert!(!fires(&ActivistPeriod, &m));
    }

    #[test]
    fn date_order_names_the_broken_pairs() {
        let mut m = MemberRec {
            application_date: Some(date("2020-01-01")),
            candidate_date: Some(date("2019-01-01")),
            admission_date: Some(date("2022-01-01")),
            ..MemberRec::default()
        };
        let v = DateOrder.check(&facts(&m), &ctx("2026-11-28")).unwrap();
        assert_eq!(
            v.values["out_of_order"],
            json!([["application_date", "candidate_date"]])
        );
        m.candidate_date = Some(date("2020-01-01"));
        assert!(!fires(&DateOrder, &m), "equal dates are in order");
    }

    #[test]
    fn introducers_count() {
        let mut m = MemberRec {
            id: "M9".into(),
            admission_date: Some(date("2020-01-01")),
            introducers: Some("M1;M2".into()),
            ..MemberRec::default()
        };
        assert!(!fires(&IntroducersCount, &m));
        for bad in ["M1", "M1;M1", "M1;M2;M3", "M1;M9", ""] {
            m.introducers = Some(bad.into());
            assert!(fires(&IntroducersCount, &m), "{bad}");
        }
        m.introducers = None;
        assert!(fires(&IntroducersCount, &m));
    }

    #[test]
    fn introducer_full_and_known() {
        let m = MemberRec {
            id: "M9".into(),
            admission_date: Some(date("2020-01-01")),
            ..MemberRec::default()
        };
        let intro = |id: &str, full: Option<&str>, cat| Introducer {
            id: id.into(),
            record: Some(IntroducerRec {
                full_date: full.map(date),
                category: Some(cat),
            }),
        };
        let list = vec![
            intro("M1", Some("2020-01-01"), Category::Full),
            intro("M2", None, Category::Full),
            intro("M3", Some("2020-01-02"), Category::Full),
            intro("M4", None, Category::Probationary),
            Introducer {
                id: "M5".into(),
                record: None,
            },
        ];
        let f = MemberFacts {
            introducers: &list,
            ..facts(&m)
        };
        let c = ctx("2026-11-28");
        let v = IntroducerNotFull.check(&f, &c).unwrap();
        assert_eq!(v.values["introducers"], json!(["M3", "M4"]));
        let v = IntroducerUnknown.check(&f, &c).unwrap();
        assert_eq!(v.values["introducers"], json!(["M5"]));
        let ok = vec![list[0].clone(), list[1].clone()];
        let f = MemberFacts {
            introducers: &ok,
            ..facts(&m)
        };
        assert!(IntroducerNotFull.check(&f, &c).is_none());
        assert!(IntroducerUnknown.check(&f, &c).is_none());
    }

    #[test]
    fn probation_extension_6_and_12_pass_13_fails() {
        let mut m = MemberRec {
            admission_date: Some(date("2020-01-01")),
            ..MemberRec::default()
        };
        for (ext, bad) in [(6, false), (12, false), (13, true), (5, true), (0, false)] {
            m.probation_extension_months = Some(ext);
            assert_eq!(fires(&ProbationExtension, &m), bad, "{ext}");
        }
    }

    #[test]
    fn full_date_is_probation_end() {
        let mut m = MemberRec {
            admission_date: Some(date("2020-01-31")),
            full_date: Some(date("2021-01-31")),
            ..MemberRec::default()
        };
        assert!(!fires(&FullDateMismatch, &m));
        m.probation_extension_months = Some(1);
        assert!(fires(&FullDateMismatch, &m));
        // 2021-01-31 + 13 months → 2021-02-28 (day clamped).
        m.full_date = Some(date("2021-02-28"));
        assert!(!fires(&FullDateMismatch, &m));
    }

    #[test]
    fn overdue_probation() {
        let mut m = MemberRec {
            category: Some(Category::Probationary),
            status: Some(Status::Active),
            admission_date: Some(date("2025-11-27")),
            ..MemberRec::default()
        };
        // Probation ends 2026-11-27, as_of 2026-11-28 is after it.
        assert!(fires(&ProbationOverdue, &m));
        m.admission_date = Some(date("2025-11-28"));
        assert!(
            !fires(&ProbationOverdue, &m),
            "ends on the as-of date: not yet overdue"
        );
        m.admission_date = Some(date("2025-11-27"));
        m.probation_extension_months = Some(6);
        assert!(!fires(&ProbationOverdue, &m));
    }

    #[test]
    fn category_agrees_with_dates() {
        let mut m = MemberRec {
            category: Some(Category::Full),
            admission_date: Some(date("2026-01-01")),
            ..MemberRec::default()
        };
        assert!(fires(&CategoryMismatch, &m), "full while probation runs");
        m.admission_date = Some(date("2025-01-01"));
        assert!(!fires(&CategoryMismatch, &m));
        m.full_date = Some(date("2026-12-01"));
        assert!(fires(&CategoryMismatch, &m), "full date in the future");
        m.category = Some(Category::Probationary);
        assert!(!fires(&CategoryMismatch, &m));
        m.full_date = Some(date("2026-01-01"));
        assert!(
            fires(&CategoryMismatch, &m),
            "probationary with a past full date"
        );
    }
}
