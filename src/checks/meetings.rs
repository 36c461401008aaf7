//! Organisational-life rules (`meetings.*`, 三会一课): member meeting each quarter,
//! committee meeting each month where a committee exists, theme party day each month,
//! organisational life meeting and democratic appraisal each year, and (local practice,
//! `info` only) a party lecture each quarter.
//!
//! Only branches that are not dissolved are judged, and only periods that are judged
//! (ended before the as-of date, overlapping the window, at or after the branch's first
//! month with data, inside its existence).

use serde_json::json;

use super::config::Dated;
use super::facts::{MeetingFacts, MeetingKind, OrgKind};
use super::period::{judged, Period, PeriodKind};
use super::{
    CheckConfig, CheckError, Ctx, Family, MeetingRule, ParamKind, ParamSpec, Rule, RuleDef,
    Violation,
};

pub(crate) static RULES: &[&MeetingRule] = &[
    &MemberMeetingQuarterly,
    &CommitteeMeetingMonthly,
    &ThemeDayMonthly,
    &OrgLifeYearly,
    &AppraisalYearly,
    &LectureQuarterly,
];

const MIN_PER_PERIOD: &[ParamSpec] = &[ParamSpec {
    name: "min_per_period",
    kind: ParamKind::Int { min: 1, max: 100 },
    description: "meetings of this kind required in each judged period",
}];
const BY_PERIOD: &str = "first day of the period";

const fn def(
    id: &'static str,
    zh: &'static str,
    en: &'static str,
    source: &'static str,
) -> RuleDef {
    RuleDef {
        id,
        family: Family::Meetings,
        description_zh: zh,
        description_en: en,
        source,
        applies_on: BY_PERIOD,
        params: MIN_PER_PERIOD,
        ordered: &[],
    }
}

/// Typed parameters of the meetings rules.
#[derive(Debug, Clone)]
pub(crate) struct Params {
    pub(crate) member_meeting: Dated<u32>,
    pub(crate) committee_meeting: Dated<u32>,
    pub(crate) theme_day: Dated<u32>,
    pub(crate) org_life: Dated<u32>,
    pub(crate) appraisal: Dated<u32>,
    pub(crate) lecture: Dated<u32>,
}

impl Params {
    pub(crate) fn from_config(cfg: &CheckConfig) -> Result<Params, CheckError> {
        let min = |id: &str| {
            cfg.dated(id, |s| {
                s.int("min_per_period").and_then(|v| u32::try_from(v).ok())
            })
        };
        Ok(Params {
            member_meeting: min("meetings.member_meeting_quarterly")?,
            committee_meeting: min("meetings.committee_meeting_monthly")?,
            theme_day: min("meetings.theme_day_monthly")?,
            org_life: min("meetings.org_life_yearly")?,
            appraisal: min("meetings.appraisal_yearly")?,
            lecture: min("meetings.lecture_quarterly")?,
        })
    }
}

/// The judged periods of `period_kind` with fewer than the required meetings of `kind`.
fn missed(
    f: &MeetingFacts<'_>,
    ctx: &Ctx<'_>,
    kind: MeetingKind,
    period_kind: PeriodKind,
    min: &Dated<u32>,
) -> Option<Violation> {
    if f.org.kind != Some(OrgKind::Branch) || f.org.dissolved_by(ctx.as_of) {
        return None;
    }
    let mut periods = Vec::new();
    let mut p = Period::containing(period_kind, ctx.window.first_month());
    while p.first <= ctx.window.last_ended_month() {
        if judged(&ctx.window, f.span, p) {
            if let Some(need) = min.at(p.first.first_day()) {
                let held = f
                    .held
                    .iter()
                    .filter(|(k, m)| *k == kind && *m >= p.first && *m <= p.last)
                    .count();
                if u64::try_from(held).unwrap_or(u64::MAX) < u64::from(*need) {
                    periods.push(p.label());
                }
            }
        }
        p = p.following();
    }
    (!periods.is_empty()).then(|| {
        Violation::new(
            format!(
                "no {} in {} judged period(s): {}",
                kind_text(kind),
                periods.len(),
                periods.join(", ")
            ),
            json!({ "periods": periods }),
        )
    })
}

fn kind_text(kind: MeetingKind) -> &'static str {
    match kind {
        MeetingKind::MemberMeeting => "member meeting",
        MeetingKind::CommitteeMeeting => "committee meeting",
        MeetingKind::GroupMeeting => "group meeting",
        MeetingKind::Lecture => "party lecture",
        MeetingKind::ThemeDay => "theme party day",
        MeetingKind::OrgLife => "organisational life meeting",
        MeetingKind::Appraisal => "democratic appraisal",
    }
}

pub(crate) struct MemberMeetingQuarterly;
impl<'a> Rule<MeetingFacts<'a>> for MemberMeetingQuarterly {
    fn def(&self) -> &'static RuleDef {
        static D: RuleDef = def(
            "meetings.member_meeting_quarterly",
            "党支部一个季度内未召开党员大会",
            "A branch held no member meeting in a judged quarter",
            "中国共产党支部工作条例（试行）第十一条",
        );
        &D
    }
    fn check(&self, f: &MeetingFacts<'a>, ctx: &Ctx<'_>) -> Option<Violation> {
        missed(
            f,
            ctx,
            MeetingKind::MemberMeeting,
            PeriodKind::Quarter,
            &ctx.params.meetings.member_meeting,
        )
    }
}

pub(crate) struct CommitteeMeetingMonthly;
impl<'a> Rule<MeetingFacts<'a>> for CommitteeMeetingMonthly {
    fn def(&self) -> &'static RuleDef {
        static D: RuleDef = def(
            "meetings.committee_meeting_monthly",
            "设支委会的党支部一个月内未召开支委会",
            "A branch with a committee held no committee meeting in a judged month",
            "中国共产党支部工作条例（试行）第十二条",
        );
        &D
    }
    fn check(&self, f: &MeetingFacts<'a>, ctx: &Ctx<'_>) -> Option<Violation> {
        if f.org.has_committee != Some(true) {
            return None;
        }
        missed(
            f,
            ctx,
            MeetingKind::CommitteeMeeting,
            PeriodKind::Month,
            &ctx.params.meetings.committee_meeting,
        )
    }
}

pub(crate) struct ThemeDayMonthly;
impl<'a> Rule<MeetingFacts<'a>> for ThemeDayMonthly {
    fn def(&self) -> &'static RuleDef {
        static D: RuleDef = def(
            "meetings.theme_day_monthly",
            "党支部一个月内未开展主题党日",
            "A branch held no theme party day in a judged month",
            "中国共产党支部工作条例（试行）（主题党日每月一次）",
        );
        &D
    }
    fn check(&self, f: &MeetingFacts<'a>, ctx: &Ctx<'_>) -> Option<Violation> {
        missed(
            f,
            ctx,
            MeetingKind::ThemeDay,
            PeriodKind::Month,
            &ctx.params.meetings.theme_day,
        )
    }
}

pub(crate) struct OrgLifeYearly;
impl<'a> Rule<MeetingFacts<'a>> for OrgLifeYearly {
    fn def(&self) -> &'static RuleDef {
        static D: RuleDef = def(
            "meetings.org_life_yearly",
            "党支部一年内未召开组织生活会",
            "A branch held no organisational life meeting in a judged year",
            "中国共产党支部工作条例（试行）（组织生活会每年至少一次）",
        );
        &D
    }
    fn check(&self, f: &MeetingFacts<'a>, ctx: &Ctx<'_>) -> Option<Violation> {
        missed(
            f,
            ctx,
            MeetingKind::OrgLife,
            PeriodKind::Year,
            &ctx.params.meetings.org_life,
        )
    }
}

pub(crate) struct AppraisalYearly;
impl<'a> Rule<MeetingFacts<'a>> for AppraisalYearly {
    fn def(&self) -> &'static RuleDef {
        static D: RuleDef = def(
            "meetings.appraisal_yearly",
            "党支部一年内未开展民主评议党员",
            "A branch held no democratic appraisal of members in a judged year",
            "中国共产党支部工作条例（试行）（民主评议党员一般每年一次）",
        );
        &D
    }
    fn check(&self, f: &MeetingFacts<'a>, ctx: &Ctx<'_>) -> Option<Violation> {
        missed(
            f,
            ctx,
            MeetingKind::Appraisal,
            PeriodKind::Year,
            &ctx.params.meetings.appraisal,
        )
    }
}

pub(crate) struct LectureQuarterly;
impl<'a> Rule<MeetingFacts<'a>> for LectureQuarterly {
    fn def(&self) -> &'static RuleDef {
        static D: RuleDef = def(
            "meetings.lecture_quarterly",
            "党支部一个季度内未上党课（地方做法，仅提示）",
            "A branch held no party lecture in a judged quarter (local practice only)",
            "地方做法；支部工作条例未规定党课频次（未经确认，仅作提示）",
        );
        &D
    }
    fn check(&self, f: &MeetingFacts<'a>, ctx: &Ctx<'_>) -> Option<Violation> {
        missed(
            f,
            ctx,
            MeetingKind::Lecture,
            PeriodKind::Quarter,
            &ctx.params.meetings.lecture,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::facts::OrgRec;
    use super::super::period::{Month, OrgSpan};
    use super::super::testutil::{ctx, date, month};
    use super::*;

    fn branch(has_committee: bool) -> OrgRec {
        OrgRec {
            id: "B1".into(),
            kind: Some(OrgKind::Branch),
            parent_id: None,
            established: None,
            has_committee: Some(has_committee),
            secretary_id: None,
            dissolved: None,
        }
    }

    fn every_month(kind: MeetingKind, from: &str, to: &str) -> Vec<(MeetingKind, Month)> {
        let mut out = Vec::new();
        let mut m = month(from);
        while m <= month(to) {
            out.push((kind, m));
            m = m.next();
        }
        out
    }

    fn check(
        rule: &MeetingRule,
        org: &OrgRec,
        start: &str,
        held: &[(MeetingKind, Month)],
        as_of: &str,
    ) -> Option<Violation> {
        let f = MeetingFacts {
            org,
            span: OrgSpan::new(Some(month(start)), org.established, org.dissolved),
            held,
        };
        rule.check(&f, &ctx(as_of))
    }

    #[test]
    fn monthly_theme_day_judges_only_ended_months() {
        let b = branch(false);
        let held = every_month(MeetingKind::ThemeDay, "2025-11", "2026-10");
        assert!(check(&ThemeDayMonthly, &b, "2020-01", &held, "2026-11-28").is_none());
        assert!(check(&ThemeDayMonthly, &b, "2020-01", &held, "2026-11-30").is_none());
        let v = check(&ThemeDayMonthly, &b, "2020-01", &held, "2026-12-01").unwrap();
        assert_eq!(v.values["periods"], json!(["2026-11"]));
    }

    #[test]
    fn no_findings_before_the_data_start() {
        let b = branch(false);
        let held = every_month(MeetingKind::ThemeDay, "2026-05", "2026-10");
        assert!(check(&ThemeDayMonthly, &b, "2026-05", &held, "2026-11-28").is_none());
        let v = check(&ThemeDayMonthly, &b, "2026-04", &held, "2026-11-28").unwrap();
        assert_eq!(v.values["periods"], json!(["2026-04"]));
    }

    #[test]
    fn quarterly_member_meeting() {
        let b = branch(false);
        let held = vec![
            (MeetingKind::MemberMeeting, month("2025-12")),
            (MeetingKind::MemberMeeting, month("2026-02")),
            (MeetingKind::MemberMeeting, month("2026-09")),
        ];
        let v = check(&MemberMeetingQuarterly, &b, "2020-01", &held, "2026-11-28").unwrap();
        assert_eq!(v.values["periods"], json!(["2026-Q2"]));
        // Data starting 2025-11 leaves Q4 2025 unjudged (it starts in October).
        let v = check(
            &MemberMeetingQuarterly,
            &b,
            "2025-11",
            &held[1..],
            "2026-11-28",
        )
        .unwrap();
        assert_eq!(v.values["periods"], json!(["2026-Q2"]));
    }

    #[test]
    fn committee_meetings_only_where_a_committee_exists() {
        let held = every_month(MeetingKind::CommitteeMeeting, "2025-11", "2026-09");
        assert!(check(
            &CommitteeMeetingMonthly,
            &branch(false),
            "2020-01",
            &[],
            "2026-11-28"
        )
        .is_none());
        let v = check(
            &CommitteeMeetingMonthly,
            &branch(true),
            "2020-01",
            &held,
            "2026-11-28",
        )
        .unwrap();
        assert_eq!(v.values["periods"], json!(["2026-10"]));
    }

    #[test]
    fn yearly_rules_judge_the_last_ended_year() {
        let b = branch(false);
        let v = check(&OrgLifeYearly, &b, "2020-01", &[], "2026-11-28").unwrap();
        assert_eq!(v.values["periods"], json!(["2025"]));
        let held = [(MeetingKind::Appraisal, month("2025-12"))];
        assert!(check(&AppraisalYearly, &b, "2020-01", &held, "2026-11-28").is_none());
        // Data from 2025-03: 2025 is not judged.
        assert!(check(&OrgLifeYearly, &b, "2025-03", &[], "2026-11-28").is_none());
    }

    #[test]
    fn fail_dissolved_and_non_branch_orgs_are_not_judged() {
        let mut b = branch(false);
        b.dissolved = Some(date("2026-11-01"));
        assert!(check(&ThemeDayMonthly, &b, "2020-01", &[], "2026-11-28").is_none());
        let mut c = branch(false);
        c.kind = Some(OrgKind::Committee);
        assert!(check(&ThemeDayMonthly, &c, "2020-01", &[], "2026-11-28").is_none());
        // Established mid-window: months before are not judged.
        let mut late = branch(false);
        late.established = Some(date("2026-09-15"));
        let v = check(&ThemeDayMonthly, &late, "2020-01", &[], "2026-11-28").unwrap();
        assert_eq!(v.values["periods"], json!(["2026-10"]));
    }

    #[test]
    fn lecture_is_its_own_rule() {
        let held = [
            (MeetingKind::Lecture, month("2025-11")),
            (MeetingKind::Lecture, month("2026-01")),
            (MeetingKind::Lecture, month("2026-04")),
            (MeetingKind::MemberMeeting, month("2026-07")),
        ];
        let v = check(
            &LectureQuarterly,
            &branch(false),
            "2020-01",
            &held,
            "2026-11-28",
        )
        .unwrap();
        assert_eq!(v.values["periods"], json!(["2026-Q3"]));
    }
}
