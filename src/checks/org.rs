//! Organisation rules (`org.*`, 组织设置): the parent exists and there is no cycle, a branch
//! has enough full members and not too many members, a committee where seven or more full
//! members, and a secretary who is an active full member of the organisation.
//!
//! Counts are of members whose `org_id` is the organisation, judged on the as-of date.

use serde_json::json;

use super::config::Dated;
use super::facts::{OrgFacts, OrgKind};
use super::{
    CheckConfig, CheckError, Ctx, Family, OrgRule, ParamKind, ParamSpec, Rule, RuleDef, Violation,
};

pub(crate) static RULES: &[&OrgRule] = &[
    &ParentMissing,
    &Cycle,
    &BranchTooSmall,
    &BranchTooLarge,
    &CommitteeExpected,
    &SecretaryInvalid,
];

const BRANCH_RULES_2018: &str = "中国共产党支部工作条例（试行）（2018）";

const fn def(
    id: &'static str,
    zh: &'static str,
    en: &'static str,
    source: &'static str,
    params: &'static [ParamSpec],
) -> RuleDef {
    RuleDef {
        id,
        family: Family::Org,
        description_zh: zh,
        description_en: en,
        source,
        applies_on: if params.is_empty() { "" } else { "as-of date" },
        params,
        ordered: &[],
    }
}

/// Typed parameters of the org rules.
#[derive(Debug, Clone)]
pub(crate) struct Params {
    pub(crate) min_full: Dated<u32>,
    pub(crate) max_members: Dated<u32>,
    pub(crate) committee_from: Dated<u32>,
}

fn count(cfg: &CheckConfig, id: &str, name: &str) -> Result<Dated<u32>, CheckError> {
    cfg.dated(id, |s| s.int(name).and_then(|v| u32::try_from(v).ok()))
}

impl Params {
    pub(crate) fn from_config(cfg: &CheckConfig) -> Result<Params, CheckError> {
        Ok(Params {
            min_full: count(cfg, "org.branch_too_small", "min_full_members")?,
            max_members: count(cfg, "org.branch_too_large", "max_members")?,
            committee_from: count(cfg, "org.committee_expected", "min_full_members")?,
        })
    }
}

fn is_branch(f: &OrgFacts<'_>) -> bool {
    f.org.kind == Some(OrgKind::Branch)
}

pub(crate) struct ParentMissing;
impl<'a> Rule<OrgFacts<'a>> for ParentMissing {
    fn def(&self) -> &'static RuleDef {
        static D: RuleDef = def(
            "org.parent_missing",
            "上级党组织不存在",
            "The parent org does not exist",
            "党章 第十条（下级组织服从上级组织）",
            &[],
        );
        &D
    }
    fn check(&self, f: &OrgFacts<'a>, _: &Ctx<'_>) -> Option<Violation> {
        let parent = f.org.parent_id.as_deref()?;
        (!f.parent_exists).then(|| {
            Violation::new(
                format!("parent org `{parent}` does not exist"),
                json!({ "parent_id": parent }),
            )
        })
    }
}

pub(crate) struct Cycle;
impl<'a> Rule<OrgFacts<'a>> for Cycle {
    fn def(&self) -> &'static RuleDef {
        static D: RuleDef = def(
            "org.cycle",
            "党组织的上级关系构成循环",
            "The org is part of a cycle of parents",
            "党章 第十条（组织体系为层级结构）",
            &[],
        );
        &D
    }
    fn check(&self, f: &OrgFacts<'a>, _: &Ctx<'_>) -> Option<Violation> {
        f.in_cycle.then(|| {
            Violation::new(
                "org is its own ancestor",
                json!({ "parent_id": f.org.parent_id }),
            )
        })
    }
}

pub(crate) struct BranchTooSmall;
impl<'a> Rule<OrgFacts<'a>> for BranchTooSmall {
    fn def(&self) -> &'static RuleDef {
        static D: RuleDef = def(
            "org.branch_too_small",
            "党支部（未撤销）正式党员不足3人",
            "A branch that is not dissolved has fewer than 3 active full members",
            "党章 第三十条; 中国共产党支部工作条例（试行）第四条",
            &[ParamSpec {
                name: "min_full_members",
                kind: ParamKind::Int { min: 1, max: 1000 },
                description: "fewest active full members of a branch",
            }],
        );
        &D
    }
    fn check(&self, f: &OrgFacts<'a>, ctx: &Ctx<'_>) -> Option<Violation> {
        if !is_branch(f) || f.org.dissolved_by(ctx.as_of) {
            return None;
        }
        let min = *ctx.params.org.min_full.at(ctx.as_of)?;
        (f.active_full < min).then(|| {
            Violation::new(
                format!(
                    "branch has {} active full member(s), at least {min} required",
                    f.active_full
                ),
                json!({ "active_full_members": f.active_full, "min": min }),
            )
        })
    }
}

pub(crate) struct BranchTooLarge;
impl<'a> Rule<OrgFacts<'a>> for BranchTooLarge {
    fn def(&self) -> &'static RuleDef {
        static D: RuleDef = def(
            "org.branch_too_large",
            "党支部党员人数（正式和预备）超过50人",
            "A branch has more than 50 active members (full and probationary)",
            "中国共产党支部工作条例（试行）第四条",
            &[ParamSpec {
                name: "max_members",
                kind: ParamKind::Int {
                    min: 1,
                    max: 100_000,
                },
                description: "most active members (full and probationary) of a branch",
            }],
        );
        &D
    }
    fn check(&self, f: &OrgFacts<'a>, ctx: &Ctx<'_>) -> Option<Violation> {
        if !is_branch(f) {
            return None;
        }
        let max = *ctx.params.org.max_members.at(ctx.as_of)?;
        (f.active > max).then(|| {
            Violation::new(
                format!(
                    "branch has {} active members, generally at most {max}",
                    f.active
                ),
                json!({ "active_members": f.active, "max": max }),
            )
        })
    }
}

pub(crate) struct CommitteeExpected;
impl<'a> Rule<OrgFacts<'a>> for CommitteeExpected {
    fn def(&self) -> &'static RuleDef {
        static D: RuleDef = def(
            "org.committee_expected",
            "正式党员7人以上的党支部未设支部委员会",
            "A branch with 7 or more active full members has no branch committee",
            "中国共产党支部工作条例（试行）第六章",
            &[ParamSpec {
                name: "min_full_members",
                kind: ParamKind::Int { min: 1, max: 1000 },
                description: "active full members from which a branch committee is expected",
            }],
        );
        &D
    }
    fn check(&self, f: &OrgFacts<'a>, ctx: &Ctx<'_>) -> Option<Violation> {
        if !is_branch(f) || f.org.has_committee == Some(true) {
            return None;
        }
        let min = *ctx.params.org.committee_from.at(ctx.as_of)?;
        (f.active_full >= min).then(|| {
            Violation::new(
                format!("branch has {} active full members and no committee", f.active_full),
                json!({ "active_full_members": f.active_full, "min": min, "has_committee": f.org.has_committee }),
            )
        })
    }
}

pub(crate) struct SecretaryInvalid;
impl<'a> Rule<OrgFacts<'a>> for SecretaryInvalid {
    fn def(&self) -> &'static RuleDef {
        static D: RuleDef = def(
            "org.secretary_invalid",
            "书记不是本组织的正常党籍正式党员",
            "The secretary is not an active full member of the org",
            BRANCH_RULES_2018,
            &[],
        );
        &D
    }
    fn check(&self, f: &OrgFacts<'a>, _: &Ctx<'_>) -> Option<Violation> {
        let id = f.org.secretary_id.as_deref()?;
        let reason = match f.secretary {
            None => "is not a member",
            Some(s) if s.org_id.as_deref() != Some(f.org.id.as_str()) => {
                "is not a member of this org"
            }
            Some(s) if !s.active => "is not an active member",
            Some(s) if !s.full => "is not a full member",
            Some(_) => return None,
        };
        Some(Violation::new(
            format!("secretary `{id}` {reason}"),
            json!({ "secretary_id": id, "reason": reason }),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::facts::{OrgRec, SecretaryRec};
    use super::super::testutil::{ctx, date};
    use super::*;

    fn branch() -> OrgRec {
        OrgRec {
            id: "B1".into(),
            kind: Some(OrgKind::Branch),
            parent_id: Some("C1".into()),
            established: None,
            has_committee: Some(false),
            secretary_id: None,
            dissolved: None,
        }
    }

    fn facts(org: &OrgRec, active: u32, active_full: u32) -> OrgFacts<'_> {
        OrgFacts {
            org,
            parent_exists: true,
            in_cycle: false,
            active,
            active_full,
            secretary: None,
        }
    }

    fn fires(rule: &OrgRule, f: &OrgFacts<'_>) -> bool {
        rule.check(f, &ctx("2026-11-28")).is_some()
    }

    #[test]
    fn branch_of_3_full_members_passes_2_fails() {
        let b = branch();
        assert!(!fires(&BranchTooSmall, &facts(&b, 3, 3)));
        assert!(fires(&BranchTooSmall, &facts(&b, 5, 2)));
        let mut dissolved = branch();
        dissolved.dissolved = Some(date("2026-01-01"));
        assert!(!fires(&BranchTooSmall, &facts(&dissolved, 0, 0)));
        let mut committee = branch();
        committee.kind = Some(OrgKind::Committee);
        assert!(!fires(&BranchTooSmall, &facts(&committee, 0, 0)));
    }

    #[test]
    fn branch_size_and_committee() {
        let b = branch();
        assert!(!fires(&BranchTooLarge, &facts(&b, 50, 50)));
        assert!(fires(&BranchTooLarge, &facts(&b, 51, 3)));
        assert!(!fires(&CommitteeExpected, &facts(&b, 9, 6)));
        assert!(fires(&CommitteeExpected, &facts(&b, 9, 7)));
        let mut with = branch();
        with.has_committee = Some(true);
        assert!(!fires(&CommitteeExpected, &facts(&with, 9, 7)));
    }

    #[test]
    fn parent_and_cycle() {
        let b = branch();
        let mut f = facts(&b, 3, 3);
        assert!(!fires(&ParentMissing, &f));
        f.parent_exists = false;
        assert!(fires(&ParentMissing, &f));
        assert!(!fires(&Cycle, &f));
        f.in_cycle = true;
        assert!(fires(&Cycle, &f));
    }

    #[test]
    fn secretary_must_be_active_full_member_of_the_org() {
        let mut b = branch();
        b.secretary_id = Some("M1".into());
        let ok = SecretaryRec {
            org_id: Some("B1".into()),
            active: true,
            full: true,
        };
        let mut f = facts(&b, 3, 3);
        assert!(fires(&SecretaryInvalid, &f), "unknown secretary");
        f.secretary = Some(&ok);
        assert!(!fires(&SecretaryInvalid, &f));
        let bad = [
            SecretaryRec {
                org_id: Some("B2".into()),
                ..ok.clone()
            },
            SecretaryRec {
                active: false,
                ..ok.clone()
            },
            SecretaryRec {
                full: false,
                ..ok.clone()
            },
        ];
        for b in &bad {
            f.secretary = Some(b);
            assert!(fires(&SecretaryInvalid, &f), "{b:?}");
        }
    }
}
