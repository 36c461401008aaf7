//! In-memory records of the generator (one branch of members at a time, all organisations)
//! and the defect catalogue. Plain data with the contract's value spellings; no I/O.

use chrono::NaiveDate;

use super::cal::{add_months, Month};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Gender {
    Male,
    Female,
}

impl Gender {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Gender::Male => "male",
            Gender::Female => "female",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Category {
    Full,
    Probationary,
}

impl Category {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Category::Full => "full",
            Category::Probationary => "probationary",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Active,
    TransferredOut,
    Deceased,
    Removed,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::TransferredOut => "transferred_out",
            Status::Deceased => "deceased",
            Status::Removed => "removed",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Employment {
    Employed,
    Retired,
    Student,
    Unemployed,
    Farmer,
}

impl Employment {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Employment::Employed => "employed",
            Employment::Retired => "retired",
            Employment::Student => "student",
            Employment::Unemployed => "unemployed",
            Employment::Farmer => "farmer",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OrgKind {
    Committee,
    GeneralBranch,
    Branch,
}

impl OrgKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            OrgKind::Committee => "committee",
            OrgKind::GeneralBranch => "general_branch",
            OrgKind::Branch => "branch",
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct OrgRec {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) kind: OrgKind,
    pub(crate) parent_id: Option<String>,
    pub(crate) established: NaiveDate,
    pub(crate) has_committee: Option<bool>,
    pub(crate) secretary_id: Option<String>,
    pub(crate) dissolved: Option<NaiveDate>,
}

#[derive(Clone, Debug)]
pub(crate) struct UserRec {
    pub(crate) name: String,
    pub(crate) role: &'static str,
    pub(crate) org_id: Option<String>,
    pub(crate) member_id: Option<String>,
    pub(crate) disabled: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Transfer {
    pub(crate) from: Option<String>,
    pub(crate) to: Option<String>,
    pub(crate) date: NaiveDate,
}

/// Changes to a member's otherwise complete and correct dues rows.
#[derive(Clone, Debug, Default)]
pub(crate) struct DuesMods {
    /// Months left without a row.
    pub(crate) skip: Vec<Month>,
    /// Months paid twice.
    pub(crate) dup: Vec<Month>,
    /// Months whose amount is wrong.
    pub(crate) wrong: Vec<Month>,
    /// A month whose row is paid on a different date.
    pub(crate) paid_on: Option<(Month, NaiveDate)>,
    /// An extra row (month, paid date) for a month not otherwise paid.
    pub(crate) extra: Option<(Month, NaiveDate)>,
}

#[derive(Clone, Debug)]
pub(crate) struct Member {
    pub(crate) id: String,
    pub(crate) name: Option<String>,
    pub(crate) gender: Gender,
    pub(crate) ethnicity: &'static str,
    pub(crate) birth: NaiveDate,
    pub(crate) area: u32,
    pub(crate) seq: u32,
    pub(crate) id_number: Option<String>,
    /// The ID number is the correct 18-character number of this member and unique.
    pub(crate) id_clean: bool,
    pub(crate) phone: Option<String>,
    pub(crate) education: &'static str,
    pub(crate) org_id: String,
    pub(crate) category: Category,
    pub(crate) status: Status,
    pub(crate) status_date: Option<NaiveDate>,
    pub(crate) application: Option<NaiveDate>,
    pub(crate) activist: Option<NaiveDate>,
    pub(crate) candidate: Option<NaiveDate>,
    pub(crate) admission: NaiveDate,
    pub(crate) full_date: Option<NaiveDate>,
    pub(crate) ext: Option<u32>,
    pub(crate) introducers: Vec<String>,
    pub(crate) employment: Employment,
    /// Current monthly income in fen (employed and retired members).
    pub(crate) income: Option<i64>,
    /// A raise: from this month the current income applies; before it, the old income.
    pub(crate) raise: Option<(Month, i64)>,
    /// Fixed monthly fee in fen for farmers (20..=100).
    pub(crate) farmer_fee: i64,
    /// Pays each quarter's dues in the quarter's last month.
    pub(crate) quarterly: bool,
    pub(crate) transfers: Vec<Transfer>,
    pub(crate) dues: DuesMods,
    pub(crate) defect: Option<MemberDefect>,
    pub(crate) founder: bool,
    /// Another member carries this member's ID number.
    pub(crate) dup_source: bool,
}

impl Member {
    /// Probation end: admission + (12 + extension) months, chrono clamping.
    pub(crate) fn probation_end(&self) -> NaiveDate {
        add_months(self.admission, 12 + self.ext.unwrap_or(0) as i32)
    }

    /// Full member on `d` as docs/RULES.md defines it.
    pub(crate) fn full_on(&self, d: NaiveDate) -> bool {
        match self.full_date {
            Some(f) => f <= d,
            None => self.category == Category::Full,
        }
    }

    /// The member's dues base for month `m` (fen), when the member has one.
    pub(crate) fn base_for(&self, m: Month) -> Option<i64> {
        match (self.income, self.raise) {
            (Some(_), Some((from, old))) if m < from => Some(old),
            (inc, _) => inc,
        }
    }

    /// Whether a dues row for month `m` is expected (admitted, not exited before `m`).
    pub(crate) fn dues_expected(&self, m: Month) -> bool {
        if m < Month::of(self.admission) {
            return false;
        }
        match (self.status, self.status_date) {
            (Status::Active, _) | (_, None) => true,
            (_, Some(s)) => m <= Month::of(s),
        }
    }

    pub(crate) fn exited(&self) -> bool {
        self.status != Status::Active
    }
}

/// Dues amount in fen for a base and employment (dues regulation 2008, docs/RULES.md).
pub(crate) fn dues_amount(employment: Employment, base: Option<i64>, farmer_fee: i64) -> i64 {
    let b = base.unwrap_or(0).max(0);
    let permille = match employment {
        Employment::Employed if b <= 300_000 => 5,
        Employment::Employed if b <= 500_000 => 10,
        Employment::Employed if b <= 1_000_000 => 15,
        Employment::Employed => 20,
        Employment::Retired if b <= 500_000 => 5,
        Employment::Retired => 10,
        Employment::Student | Employment::Unemployed => return 20,
        Employment::Farmer => return farmer_fee,
    };
    (b * permille + 500) / 1000
}

/// A wrong amount for the same base: the neighbouring rate bracket's amount, or a fee outside
/// the accepted one. Always more than one fen away from the right amount for bases ≥ 1000 yuan.
pub(crate) fn wrong_dues_amount(employment: Employment, base: Option<i64>, farmer_fee: i64) -> i64 {
    let b = base.unwrap_or(0).max(0);
    match employment {
        Employment::Employed | Employment::Retired => {
            let right = dues_amount(employment, base, farmer_fee);
            let low = (b * 5 + 500) / 1000;
            if right == low {
                (b * 10 + 500) / 1000
            } else {
                right - low
            }
        }
        Employment::Student | Employment::Unemployed => 100,
        Employment::Farmer => 200,
    }
}

/// Member defect classes (one per defective member).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum MemberDefect {
    IdFormat,
    IdChecksum,
    IdBirthMismatch,
    IdGenderMismatch,
    IdDuplicate,
    IdLegacy,
    PhoneFormat,
    MissingField,
    OrgDissolved,
    OrgNotBranch,
    OrgMissing,
    FutureDate,
    UnderageApplication,
    DateOrder,
    ActivistPeriod,
    IntroducerCount,
    IntroducerNotFull,
    IntroducerUnknown,
    ProbationExtension,
    FullDateMismatch,
    ProbationOverdue,
    CategoryMismatch,
    DuesAmount,
    SixMonthsUnpaid,
    MissingMonths,
    DuplicatePayment,
    TransferChain,
    OrgMismatch,
    ActivityAfterExit,
}

impl MemberDefect {
    pub(crate) const ALL: [MemberDefect; 29] = [
        MemberDefect::IdFormat,
        MemberDefect::IdChecksum,
        MemberDefect::IdBirthMismatch,
        MemberDefect::IdGenderMismatch,
        MemberDefect::IdDuplicate,
        MemberDefect::IdLegacy,
        MemberDefect::PhoneFormat,
        MemberDefect::MissingField,
        MemberDefect::OrgDissolved,
        MemberDefect::OrgNotBranch,
        MemberDefect::OrgMissing,
        MemberDefect::FutureDate,
        MemberDefect::UnderageApplication,
        MemberDefect::DateOrder,
        MemberDefect::ActivistPeriod,
        MemberDefect::IntroducerCount,
        MemberDefect::IntroducerNotFull,
        MemberDefect::IntroducerUnknown,
        MemberDefect::ProbationExtension,
        MemberDefect::FullDateMismatch,
        MemberDefect::ProbationOverdue,
        MemberDefect::CategoryMismatch,
        MemberDefect::DuesAmount,
        MemberDefect::SixMonthsUnpaid,
        MemberDefect::MissingMonths,
        MemberDefect::DuplicatePayment,
        MemberDefect::TransferChain,
        MemberDefect::OrgMismatch,
        MemberDefect::ActivityAfterExit,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            MemberDefect::IdFormat => "id_format",
            MemberDefect::IdChecksum => "id_checksum",
            MemberDefect::IdBirthMismatch => "id_birth_mismatch",
            MemberDefect::IdGenderMismatch => "id_gender_mismatch",
            MemberDefect::IdDuplicate => "id_duplicate",
            MemberDefect::IdLegacy => "id_legacy",
            MemberDefect::PhoneFormat => "phone_format",
            MemberDefect::MissingField => "missing_field",
            MemberDefect::OrgDissolved => "org_dissolved",
            MemberDefect::OrgNotBranch => "org_not_branch",
            MemberDefect::OrgMissing => "org_missing",
            MemberDefect::FutureDate => "future_date",
            MemberDefect::UnderageApplication => "underage_application",
            MemberDefect::DateOrder => "date_order",
            MemberDefect::ActivistPeriod => "activist_period",
            MemberDefect::IntroducerCount => "introducer_count",
            MemberDefect::IntroducerNotFull => "introducer_not_full",
            MemberDefect::IntroducerUnknown => "introducer_unknown",
            MemberDefect::ProbationExtension => "probation_extension",
            MemberDefect::FullDateMismatch => "full_date_mismatch",
            MemberDefect::ProbationOverdue => "probation_overdue",
            MemberDefect::CategoryMismatch => "category_mismatch",
            MemberDefect::DuesAmount => "dues_amount",
            MemberDefect::SixMonthsUnpaid => "six_months_unpaid",
            MemberDefect::MissingMonths => "missing_months",
            MemberDefect::DuplicatePayment => "duplicate_payment",
            MemberDefect::TransferChain => "transfer_chain",
            MemberDefect::OrgMismatch => "org_mismatch",
            MemberDefect::ActivityAfterExit => "activity_after_exit",
        }
    }
}

/// Organisation defect classes (one per defective organisation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum OrgDefect {
    BranchTooSmall,
    BranchTooLarge,
    CommitteeExpected,
    SecretaryInvalid,
    MissingMeetings,
    ParentMissing,
    Cycle,
}

impl OrgDefect {
    pub(crate) fn name(self) -> &'static str {
        match self {
            OrgDefect::BranchTooSmall => "branch_too_small",
            OrgDefect::BranchTooLarge => "branch_too_large",
            OrgDefect::CommitteeExpected => "committee_expected",
            OrgDefect::SecretaryInvalid => "secretary_invalid",
            OrgDefect::MissingMeetings => "missing_meetings",
            OrgDefect::ParentMissing => "parent_missing",
            OrgDefect::Cycle => "cycle",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dues_rates_at_bracket_bounds() {
        // Upper bounds are inclusive (dues regulation 2008, REGULATIONS.md).
        assert_eq!(dues_amount(Employment::Employed, Some(300_000), 0), 1_500);
        assert_eq!(dues_amount(Employment::Employed, Some(300_001), 0), 3_000);
        assert_eq!(dues_amount(Employment::Employed, Some(500_000), 0), 5_000);
        assert_eq!(
            dues_amount(Employment::Employed, Some(1_000_000), 0),
            15_000
        );
        assert_eq!(
            dues_amount(Employment::Employed, Some(1_000_001), 0),
            20_000
        );
        assert_eq!(dues_amount(Employment::Retired, Some(500_000), 0), 2_500);
        assert_eq!(dues_amount(Employment::Retired, Some(500_100), 0), 5_001);
        assert_eq!(dues_amount(Employment::Student, None, 0), 20);
        // Half-up: 4321.10 yuan × 1% = 43.211 → 43.21; 4321.50 × 1% = 43.215 → 43.22.
        assert_eq!(dues_amount(Employment::Employed, Some(432_110), 0), 4_321);
        assert_eq!(dues_amount(Employment::Employed, Some(432_150), 0), 4_322);
    }

    #[test]
    fn fail_wrong_amount_is_more_than_a_fen_off() {
        for base in [
            100_000i64, 300_000, 300_050, 450_000, 500_000, 800_000, 1_200_000,
        ] {
            for e in [Employment::Employed, Employment::Retired] {
                let right = dues_amount(e, Some(base), 0);
                let wrong = wrong_dues_amount(e, Some(base), 0);
                assert!(
                    (right - wrong).abs() > 1,
                    "{e:?} {base}: {right} vs {wrong}"
                );
            }
        }
        assert_eq!(wrong_dues_amount(Employment::Farmer, None, 50), 200);
    }
}
