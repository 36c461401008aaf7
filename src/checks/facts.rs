//! The facts rules judge: records read from the projection, parsed once into typed values,
//! and the per-subject bundles (a member with its dues and transfers, an organisation with
//! its counts, a branch with its meetings) the engine hands to each rule family.
//!
//! Nothing here runs SQL or decides a finding; masking helpers keep sensitive values out of
//! findings.

use chrono::NaiveDate;

use super::period::{Month, OrgSpan};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gender {
    Male,
    Female,
}

impl Gender {
    pub(crate) fn parse(s: &str) -> Option<Gender> {
        match s {
            "male" => Some(Gender::Male),
            "female" => Some(Gender::Female),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Gender::Male => "male",
            Gender::Female => "female",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Category {
    Full,
    Probationary,
}

impl Category {
    pub(crate) fn parse(s: &str) -> Option<Category> {
        match s {
            "full" => Some(Category::Full),
            "probationary" => Some(Category::Probationary),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Active,
    TransferredOut,
    Deceased,
    Removed,
    LostContact,
}

impl Status {
    pub(crate) fn parse(s: &str) -> Option<Status> {
        match s {
            "active" => Some(Status::Active),
            "transferred_out" => Some(Status::TransferredOut),
            "deceased" => Some(Status::Deceased),
            "removed" => Some(Status::Removed),
            "lost_contact" => Some(Status::LostContact),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::TransferredOut => "transferred_out",
            Status::Deceased => "deceased",
            Status::Removed => "removed",
            Status::LostContact => "lost_contact",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Employment {
    Employed,
    Retired,
    Student,
    Unemployed,
    Farmer,
}

impl Employment {
    pub(crate) fn parse(s: &str) -> Option<Employment> {
        match s {
            "employed" => Some(Employment::Employed),
            "retired" => Some(Employment::Retired),
            "student" => Some(Employment::Student),
            "unemployed" => Some(Employment::Unemployed),
            "farmer" => Some(Employment::Farmer),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OrgKind {
    Committee,
    GeneralBranch,
    Branch,
}

impl OrgKind {
    pub(crate) fn parse(s: &str) -> Option<OrgKind> {
        match s {
            "committee" => Some(OrgKind::Committee),
            "general_branch" => Some(OrgKind::GeneralBranch),
            "branch" => Some(OrgKind::Branch),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            OrgKind::Committee => "committee",
            OrgKind::GeneralBranch => "general_branch",
            OrgKind::Branch => "branch",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum MeetingKind {
    MemberMeeting,
    CommitteeMeeting,
    GroupMeeting,
    Lecture,
    ThemeDay,
    OrgLife,
    Appraisal,
}

impl MeetingKind {
    pub(crate) fn parse(s: &str) -> Option<MeetingKind> {
        match s {
            "member_meeting" => Some(MeetingKind::MemberMeeting),
            "committee_meeting" => Some(MeetingKind::CommitteeMeeting),
            "group_meeting" => Some(MeetingKind::GroupMeeting),
            "lecture" => Some(MeetingKind::Lecture),
            "theme_day" => Some(MeetingKind::ThemeDay),
            "org_life" => Some(MeetingKind::OrgLife),
            "appraisal" => Some(MeetingKind::Appraisal),
            _ => None,
        }
    }
}

/// A member row. Text fields are `None` when NULL or empty; a date that does not parse as
/// `YYYY-MM-DD` counts as absent (import only writes valid dates).
#[derive(Debug, Clone, Default)]
pub(crate) struct MemberRec {
    pub(crate) id: String,
    pub(crate) name: Option<String>,
    pub(crate) gender: Option<Gender>,
    pub(crate) birth_date: Option<NaiveDate>,
    pub(crate) id_number: Option<String>,
    pub(crate) phone: Option<String>,
    pub(crate) org_id: Option<String>,
    pub(crate) category: Option<Category>,
    pub(crate) status: Option<Status>,
    pub(crate) status_date: Option<NaiveDate>,
    pub(crate) application_date: Option<NaiveDate>,
    pub(crate) activist_date: Option<NaiveDate>,
    pub(crate) candidate_date: Option<NaiveDate>,
    pub(crate) admission_date: Option<NaiveDate>,
    pub(crate) full_date: Option<NaiveDate>,
    pub(crate) probation_extension_months: Option<i64>,
    pub(crate) introducers: Option<String>,
    pub(crate) employment: Option<Employment>,
    pub(crate) monthly_income: Option<i64>,
}

/// Whether someone with this full date and category was a full member on `date`
/// (docs/RULES.md: full_date present and ≤ date, or full_date absent and category full).
pub(crate) fn full_on(
    full_date: Option<NaiveDate>,
    category: Option<Category>,
    date: NaiveDate,
) -> bool {
    match full_date {
        Some(f) => f <= date,
        None => category == Some(Category::Full),
    }
}

impl MemberRec {
    pub(crate) fn full_on(&self, date: NaiveDate) -> bool {
        full_on(self.full_date, self.category, date)
    }

    pub(crate) fn is_active(&self) -> bool {
        self.status == Some(Status::Active)
    }

    /// Introducer ids in file order: split on `;`, trimmed, empty pieces dropped.
    pub(crate) fn introducer_ids(&self) -> Vec<&str> {
        self.introducers
            .as_deref()
            .map(|s| {
                s.split(';')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// An organisation row.
#[derive(Debug, Clone)]
pub(crate) struct OrgRec {
    pub(crate) id: String,
    pub(crate) kind: Option<OrgKind>,
    pub(crate) parent_id: Option<String>,
    pub(crate) established: Option<NaiveDate>,
    pub(crate) has_committee: Option<bool>,
    pub(crate) secretary_id: Option<String>,
    pub(crate) dissolved: Option<NaiveDate>,
}

impl OrgRec {
    pub(crate) fn dissolved_by(&self, date: NaiveDate) -> bool {
        self.dissolved.is_some_and(|d| d <= date)
    }
}

/// One dues row of a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DuesRow {
    pub(crate) month: Option<Month>,
    pub(crate) base_income: Option<i64>,
    /// `None` when the stored amount is not an integer.
    pub(crate) amount: Option<i64>,
    pub(crate) paid_date: Option<NaiveDate>,
}

/// One transfer of a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TransferRow {
    pub(crate) from_org: Option<String>,
    pub(crate) to_org: Option<String>,
    pub(crate) date: Option<NaiveDate>,
}

/// An introducer named by a member, and that introducer's record if it exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Introducer {
    pub(crate) id: String,
    pub(crate) record: Option<IntroducerRec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IntroducerRec {
    pub(crate) full_date: Option<NaiveDate>,
    pub(crate) category: Option<Category>,
}

/// Subject of the member and development families.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MemberFacts<'a> {
    pub(crate) m: &'a MemberRec,
    /// The member's organisation, when `org_id` names one that exists.
    pub(crate) org: Option<&'a OrgRec>,
    /// Other members with the same ID number (at most the first few, by member id).
    pub(crate) duplicates: &'a [String],
    /// How many other members share the ID number.
    pub(crate) duplicate_total: usize,
    /// Distinct introducer ids in file order, with their records.
    pub(crate) introducers: &'a [Introducer],
}

/// Subject of the dues family.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DuesFacts<'a> {
    pub(crate) m: &'a MemberRec,
    /// Months in which the member's organisation can be judged; `None` when the org does not
    /// exist or has no data.
    pub(crate) span: Option<OrgSpan>,
    /// All dues rows of the member, ordered by month.
    pub(crate) rows: &'a [DuesRow],
}

/// Subject of the status family.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StatusFacts<'a> {
    pub(crate) m: &'a MemberRec,
    /// Transfers ordered by date.
    pub(crate) transfers: &'a [TransferRow],
    pub(crate) dues: &'a [DuesRow],
}

/// The secretary named by an organisation, as found in the member table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SecretaryRec {
    pub(crate) org_id: Option<String>,
    pub(crate) active: bool,
    pub(crate) full: bool,
}

/// Subject of the org family.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OrgFacts<'a> {
    pub(crate) org: &'a OrgRec,
    pub(crate) parent_exists: bool,
    pub(crate) in_cycle: bool,
    /// Active members whose org is this one.
    pub(crate) active: u32,
    /// Active members of this org who are full members on the as-of date.
    pub(crate) active_full: u32,
    /// `None` when `secretary_id` is absent or names no member.
    pub(crate) secretary: Option<&'a SecretaryRec>,
}

/// Subject of the meetings family: a branch that is not dissolved.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MeetingFacts<'a> {
    pub(crate) org: &'a OrgRec,
    pub(crate) span: Option<OrgSpan>,
    /// Meetings held, by kind and month.
    pub(crate) held: &'a [(MeetingKind, Month)],
}

/// Mask an ID number: first 4 and last 4 characters kept (`2301**********123X`).
pub(crate) fn mask_id(s: &str) -> String {
    mask(s, 4, 4)
}

/// Mask a phone number: first 3 and last 4 characters kept (`138****8000`).
pub(crate) fn mask_phone(s: &str) -> String {
    mask(s, 3, 4)
}

fn mask(s: &str, head: usize, tail: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    let n = chars.len();
    if n <= head + tail {
        return "*".repeat(n);
    }
    chars
        .iter()
        .enumerate()
        .map(|(i, c)| if i < head || i >= n - tail { *c } else { '*' })
        .collect()
}

/// Fen as a yuan string with two decimals: 1500 → `15.00`, -5 → `-0.05`.
pub(crate) fn yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let a = fen.unsigned_abs();
    format!("{sign}{}.{:02}", a / 100, a % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keep_only_the_ends() {
        assert_eq!(mask_id("11010519491231002X"), "1101**********002X");
        assert_eq!(mask_id("110105491231002"), "1101*******1002");
        assert_eq!(mask_phone("13800138000"), "138****8000");
        assert_eq!(mask_id("1234567"), "*******");
    }

    #[test]
    fn yuan_formats_fen() {
        assert_eq!(yuan(1500), "15.00");
        assert_eq!(yuan(20), "0.20");
        assert_eq!(yuan(-5), "-0.05");
    }

    #[test]
    fn introducer_ids_split_and_trim() {
        let m = MemberRec {
            introducers: Some(" M1 ;;M2; ".into()),
            ..MemberRec::default()
        };
        assert_eq!(m.introducer_ids(), vec!["M1", "M2"]);
        assert!(MemberRec::default().introducer_ids().is_empty());
    }

    #[test]
    fn full_member_definition() {
        let d = |s| super::super::period::parse_date(s).unwrap();
        assert!(full_on(
            Some(d("2020-01-01")),
            Some(Category::Probationary),
            d("2020-01-01")
        ));
        assert!(!full_on(
            Some(d("2020-01-02")),
            Some(Category::Full),
            d("2020-01-01")
        ));
        assert!(full_on(None, Some(Category::Full), d("1990-01-01")));
        assert!(!full_on(
            None,
            Some(Category::Probationary),
            d("2030-01-01")
        ));
    }
}
