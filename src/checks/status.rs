//! Transfer and status rules (`status.*`): the transfer chain is continuous, an active
//! member sits in the org the last transfer sent them to, and nothing happens after death
//! or removal.
//!
//! These rules judge all of a member's history, not only the window.

use serde_json::json;

use super::facts::{Status, StatusFacts};
use super::period::Month;
use super::{Ctx, Family, Rule, RuleDef, StatusRule, Violation};

pub(crate) static RULES: &[&StatusRule] = &[&TransferChain, &OrgMismatch, &ActivityAfterExit];

const fn def(
    id: &'static str,
    zh: &'static str,
    en: &'static str,
    source: &'static str,
) -> RuleDef {
    RuleDef {
        id,
        family: Family::Status,
        description_zh: zh,
        description_en: en,
        source,
        applies_on: "",
        params: &[],
        ordered: &[],
    }
}

pub(crate) struct TransferChain;
impl<'a> Rule<StatusFacts<'a>> for TransferChain {
    fn def(&self) -> &'static RuleDef {
        static D: RuleDef = def(
            "status.transfer_chain",
            "组织关系转接不连续：一次转出的组织不是上一次转入的组织",
            "Transfers do not chain: a transfer's from_org is not the previous transfer's to_org",
            "党章 第八条; 组织关系接转（数据连续性）",
        );
        &D
    }
    fn check(&self, f: &StatusFacts<'a>, _: &Ctx<'_>) -> Option<Violation> {
        let breaks: Vec<serde_json::Value> = f
            .transfers
            .windows(2)
            .filter_map(|w| match w {
                [prev, cur] => {
                    let (to, from) = (prev.to_org.as_deref()?, cur.from_org.as_deref()?);
                    (to != from).then(|| {
                        json!({
                            "date": cur.date.map(|d| d.to_string()),
                            "from_org": from,
                            "previous_to_org": to,
                        })
                    })
                }
                _ => None,
            })
            .collect();
        (!breaks.is_empty()).then(|| {
            Violation::new(
                format!(
                    "{} transfer(s) do not start where the previous one ended",
                    breaks.len()
                ),
                json!({ "breaks": breaks }),
            )
        })
    }
}

pub(crate) struct OrgMismatch;
impl<'a> Rule<StatusFacts<'a>> for OrgMismatch {
    fn def(&self) -> &'static RuleDef {
        static D: RuleDef = def(
            "status.org_mismatch",
            "正常党籍党员的所在组织不是最近一次组织关系转入的组织",
            "An active member's org is not the to_org of their latest transfer",
            "党章 第八条（党员编入一个支部）",
        );
        &D
    }
    fn check(&self, f: &StatusFacts<'a>, _: &Ctx<'_>) -> Option<Violation> {
        if !f.m.is_active() {
            return None;
        }
        let latest = f.transfers.last()?;
        let (to, org) = (latest.to_org.as_deref()?, f.m.org_id.as_deref()?);
        (to != org).then(|| {
            Violation::new(
                format!("member is in `{org}` but the latest transfer went to `{to}`"),
                json!({ "org_id": org, "latest_to_org": to, "date": latest.date.map(|d| d.to_string()) }),
            )
        })
    }
}

pub(crate) struct ActivityAfterExit;
impl<'a> Rule<StatusFacts<'a>> for ActivityAfterExit {
    fn def(&self) -> &'static RuleDef {
        static D: RuleDef = def(
            "status.activity_after_exit",
            "党员死亡或出党后仍有党费缴纳或组织关系转接记录（含所属月份在死亡或出党当月之后的党费）",
            "Dues paid or a transfer dated after the member's death or removal, or dues for a later month",
            "党章 第九条; 关于中国共产党党费收缴、使用和管理的规定（2008）",
        );
        &D
    }
    fn check(&self, f: &StatusFacts<'a>, _: &Ctx<'_>) -> Option<Violation> {
        let status =
            f.m.status
                .filter(|s| matches!(s, Status::Deceased | Status::Removed))?;
        let exit = f.m.status_date?;
        // Paid after the exit, or paid for a month after the month of the exit (whenever
        // paid: dues are not paid in advance).
        let exit_month = Month::of(exit);
        let dues: Vec<String> = f
            .dues
            .iter()
            .filter(|r| {
                r.paid_date.is_some_and(|p| p > exit) || r.month.is_some_and(|m| m > exit_month)
            })
            .filter_map(|r| r.month.map(|m| m.to_string()))
            .collect();
        let transfers: Vec<String> = f
            .transfers
            .iter()
            .filter_map(|t| t.date.filter(|d| *d > exit).map(|d| d.to_string()))
            .collect();
        (!dues.is_empty() || !transfers.is_empty()).then(|| {
            Violation::new(
                format!(
                    "{} dues payment(s) and {} transfer(s) after the member was {} on {exit}",
                    dues.len(),
                    transfers.len(),
                    status.as_str()
                ),
                json!({
                    "status": status.as_str(),
                    "status_date": exit.to_string(),
                    "dues_months": dues,
                    "transfer_dates": transfers,
                }),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::facts::{DuesRow, MemberRec, TransferRow};
    use super::super::testutil::{ctx, date, month};
    use super::*;

    fn t(from: Option<&str>, to: Option<&str>, d: &str) -> TransferRow {
        TransferRow {
            from_org: from.map(Into::into),
            to_org: to.map(Into::into),
            date: Some(date(d)),
        }
    }

    fn active(org: &str) -> MemberRec {
        MemberRec {
            id: "M1".into(),
            org_id: Some(org.into()),
            status: Some(Status::Active),
            ..MemberRec::default()
        }
    }

    fn check(
        rule: &StatusRule,
        m: &MemberRec,
        transfers: &[TransferRow],
        dues: &[DuesRow],
    ) -> Option<Violation> {
        rule.check(&StatusFacts { m, transfers, dues }, &ctx("2026-11-28"))
    }

    #[test]
    fn transfer_chain() {
        let m = active("B3");
        let ok = [
            t(Some("B1"), Some("B2"), "2020-01-01"),
            t(Some("B2"), Some("B3"), "2021-01-01"),
        ];
        assert!(check(&TransferChain, &m, &ok, &[]).is_none());
        let broken = [
            t(Some("B1"), Some("B2"), "2020-01-01"),
            t(Some("B9"), Some("B3"), "2021-01-01"),
        ];
        let v = check(&TransferChain, &m, &broken, &[]).unwrap();
        assert_eq!(v.values["breaks"][0]["previous_to_org"], "B2");
        // An absent end is not a break.
        let open = [
            t(Some("B1"), None, "2020-01-01"),
            t(Some("B9"), Some("B3"), "2021-01-01"),
        ];
        assert!(check(&TransferChain, &m, &open, &[]).is_none());
    }

    #[test]
    fn active_member_in_latest_to_org() {
        let transfers = [
            t(Some("B1"), Some("B2"), "2020-01-01"),
            t(Some("B2"), Some("B3"), "2021-01-01"),
        ];
        assert!(check(&OrgMismatch, &active("B3"), &transfers, &[]).is_none());
        assert!(check(&OrgMismatch, &active("B2"), &transfers, &[]).is_some());
        let mut gone = active("B2");
        gone.status = Some(Status::TransferredOut);
        assert!(check(&OrgMismatch, &gone, &transfers, &[]).is_none());
        assert!(check(&OrgMismatch, &active("B2"), &[], &[]).is_none());
    }

    #[test]
    fn activity_after_death() {
        let mut m = active("B1");
        m.status = Some(Status::Deceased);
        m.status_date = Some(date("2026-03-10"));
        let paid = |mo: &str, d: &str| DuesRow {
            month: Some(month(mo)),
            base_income: None,
            amount: Some(100),
            paid_date: Some(date(d)),
        };
        assert!(check(
            &ActivityAfterExit,
            &m,
            &[],
            &[paid("2026-03", "2026-03-10")]
        )
        .is_none());
        let v = check(
            &ActivityAfterExit,
            &m,
            &[t(Some("B1"), Some("B2"), "2026-04-01")],
            &[paid("2026-03", "2026-03-11")],
        )
        .unwrap();
        assert_eq!(v.values["dues_months"], json!(["2026-03"]));
        assert_eq!(v.values["transfer_dates"], json!(["2026-04-01"]));
        // A row for a month after the month of death, whenever paid (or with no date).
        let unpaid_date = DuesRow {
            paid_date: None,
            ..paid("2026-05", "2026-01-01")
        };
        let v = check(
            &ActivityAfterExit,
            &m,
            &[],
            &[paid("2026-04", "2026-02-01"), unpaid_date],
        )
        .unwrap();
        assert_eq!(v.values["dues_months"], json!(["2026-04", "2026-05"]));
        m.status = Some(Status::LostContact);
        assert!(check(
            &ActivityAfterExit,
            &m,
            &[],
            &[paid("2026-03", "2026-05-01")]
        )
        .is_none());
    }
}
