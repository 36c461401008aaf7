//! The report document: the JSON that is the source of truth of a compliance report.
//!
//! HTML and Markdown are renderings of this document and nothing else: every word they show
//! is either a fixed label of the renderer or a value of this document, so that
//! `report verify` can render the embedded JSON again and compare. The document therefore
//! carries everything a renderer needs (rule descriptions in both languages, org names),
//! holds no floating-point number (RFC 8785 canonical bytes are signed) and no sensitive
//! member field (ID number, phone, income): values come from findings that mask them.
//!
//! This module only defines the shape; [`super::gather`] fills it, [`super::sign`] signs it.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// The `format` of every report this module describes.
pub const FORMAT: &str = "djaudit-report/1";

/// Version of the HTML and Markdown renderers. A renderer change that changes a single
/// output byte must increase it: `report verify` re-renders with the current renderers and
/// can only compare reports rendered by the same version.
pub const RENDERER: u32 = 1;

/// Language of the labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// Chinese (the default).
    #[default]
    Zh,
    /// English.
    En,
}

impl Lang {
    /// The label in this language.
    pub fn t(self, zh: &'static str, en: &'static str) -> &'static str {
        match self {
            Lang::Zh => zh,
            Lang::En => en,
        }
    }

    /// `zh` or `en`.
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::Zh => "zh",
            Lang::En => "en",
        }
    }
}

impl std::str::FromStr for Lang {
    type Err = String;

    fn from_str(s: &str) -> Result<Lang, String> {
        match s {
            "zh" | "zh-CN" | "cn" => Ok(Lang::Zh),
            "en" => Ok(Lang::En),
            _ => Err(format!("unknown language `{s}`: expected zh|en")),
        }
    }
}

/// A signed compliance report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// [`FORMAT`].
    pub format: String,
    /// [`RENDERER`] of the djaudit that made it.
    pub renderer: u32,
    /// Language of the rendered labels.
    pub lang: Lang,
    /// The ledger's origin (log name).
    pub origin: String,
    /// When the report was made (UTC, milliseconds).
    pub generated_at: String,
    /// The djaudit user who issued it.
    pub issued_by: String,
    /// The period reported on.
    pub period: PeriodInfo,
    /// The organisation subtree reported on; `None` for the whole ledger.
    pub org: Option<OrgRef>,
    /// Checkpoint, verification, consistency with the previous report.
    pub integrity: Integrity,
    /// Record changes recorded in the period.
    pub changes: Changes,
    /// Access decisions of the period and the access audit.
    pub access: Access,
    /// Consistency-check findings at the end of the period and the previous one.
    pub quality: Quality,
    /// Organisational life (三会一课) per branch and month.
    pub org_life: OrgLife,
    /// Members with unpaid months.
    pub dues: Dues,
    /// The signed checkpoint note (C2SP tlog-checkpoint) the report was computed at.
    pub checkpoint: String,
    /// The verifier key (C2SP vkey) of the signature and the checkpoint.
    pub signed_by: String,
    /// base64 Ed25519 signature over the RFC 8785 bytes of the report without this member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// The period: dates are days in Asia/Shanghai, both ends included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodInfo {
    /// `2026-Q3`, `2026-09`, `2026` or `2026-07-01..2026-09-30`.
    pub label: String,
    /// First day.
    pub from: String,
    /// Last day.
    pub to: String,
    /// The day the records are judged on: periods that ended before it are judged.
    pub as_of: String,
    /// The period before, for trends.
    pub previous: PreviousPeriod,
}

/// The period before the reported one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviousPeriod {
    pub label: String,
    pub from: String,
    pub to: String,
    pub as_of: String,
}

/// An organisation named in a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgRef {
    pub id: String,
    /// Its name in the projection, if it is there.
    pub name: Option<String>,
}

/// Integrity of the ledger the report was computed from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Integrity {
    /// Tree size of the checkpoint.
    pub size: u64,
    /// Root hash of the checkpoint (hex).
    pub root: String,
    /// Full verification of the ledger up to `size`.
    pub verify: VerifySummary,
    /// The previous report of the same scope and the consistency proof from its checkpoint.
    pub previous: Option<PreviousReport>,
    /// Ledger entries recorded in the period, of every kind.
    pub entries_in_period: u64,
}

/// The result of `djaudit verify` on the ledger, in short.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifySummary {
    pub ok: bool,
    /// Entries verified.
    pub size: u64,
    /// Stored checkpoints whose signature and root were checked.
    pub checkpoints_verified: u64,
    /// The first problem, if any.
    pub failure: Option<VerifyFailure>,
}

/// The first bad entry found by verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyFailure {
    pub seq: u64,
    pub code: String,
    pub message: String,
}

/// The previous `report.issue` entry of the same scope and the proof that the ledger it saw
/// is a prefix of this one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviousReport {
    /// Seq of the `report.issue` entry.
    pub seq: u64,
    /// Its period label.
    pub period: String,
    /// When it was issued (the entry's `ts`).
    pub issued_at: String,
    /// Tree size of its checkpoint.
    pub size: u64,
    /// Root of its checkpoint, as recorded in the entry (hex).
    pub root: String,
    /// RFC 9162 consistency proof from `size` to this report's size (hex hashes).
    pub proof: Vec<String>,
    /// The proof verifies and its old root is the recorded one.
    pub consistent: bool,
}

/// A count under a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Count {
    pub key: String,
    pub count: u64,
}

/// A count for an organisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgCount {
    /// The org id; `None` when the record's org is not known.
    pub org_id: Option<String>,
    pub name: Option<String>,
    pub count: u64,
}

/// Record changes (entries of the record kinds) whose `ts` is in the period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Changes {
    pub total: u64,
    /// By entry kind (`member.update`, …), sorted by kind.
    pub by_kind: Vec<Count>,
    /// By organisation of the record, most first.
    pub by_org: Vec<OrgCount>,
    /// By month (`YYYY-MM`, Asia/Shanghai), every month of the period.
    pub by_month: Vec<Count>,
    /// By actor (`actor.user`), most first.
    pub by_actor: Vec<Count>,
    /// Import files recorded in the period (`import.batch` entries).
    pub imports: u64,
}

/// One finding of the consistency checks or the access audit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Finding {
    pub rule: String,
    /// `error`, `warning` or `info`.
    pub severity: String,
    pub subject: String,
    /// English, one line, no sensitive value.
    pub message: String,
    /// The values behind the finding, sensitive ones masked.
    pub values: Json,
}

/// Access decisions per day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DayCount {
    /// `YYYY-MM-DD`, Asia/Shanghai.
    pub day: String,
    pub allowed: u64,
    pub denied: u64,
}

/// Access decisions whose access time is in the period, and the access audit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Access {
    pub decisions: u64,
    pub allowed: u64,
    pub denied: u64,
    /// Distinct users.
    pub users: u64,
    /// Every day of the period that has a decision.
    pub by_day: Vec<DayCount>,
    /// By action, sorted by action.
    pub by_action: Vec<Count>,
    /// Users with denials, most first.
    pub denied_by_user: Vec<Count>,
    /// Whether the access audit ran (it needs the `user` table).
    pub audited: bool,
    /// Access audit findings.
    pub findings: Vec<Finding>,
    /// Access audit findings per rule.
    pub findings_by_rule: Vec<Count>,
}

/// Findings per severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Severities {
    pub error: u64,
    pub warning: u64,
    pub info: u64,
}

impl Severities {
    /// The total.
    pub fn total(&self) -> u64 {
        self.error + self.warning + self.info
    }

    /// Counts one finding of `severity`.
    pub fn add(&mut self, severity: &str) {
        match severity {
            "error" => self.error += 1,
            "warning" => self.warning += 1,
            _ => self.info += 1,
        }
    }
}

/// One rule's findings now and at the end of the previous period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleTrend {
    pub rule: String,
    pub severity: String,
    pub description_zh: String,
    pub description_en: String,
    pub count: u64,
    pub previous: u64,
}

/// One organisation's findings now and at the end of the previous period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgTrend {
    pub org_id: Option<String>,
    pub name: Option<String>,
    pub count: u64,
    pub previous: u64,
}

/// A record with at least one finding (the appendix).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailingRecord {
    /// `member/<id>` or `org/<id>`.
    pub subject: String,
    /// The member's or org's name.
    pub name: Option<String>,
    /// The org of the record (the member's branch, or the org itself).
    pub org_id: Option<String>,
    pub org_name: Option<String>,
    pub findings: Vec<RecordFinding>,
}

/// One finding of a failing record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordFinding {
    pub rule: String,
    pub severity: String,
    pub message: String,
    pub values: Json,
}

/// Data quality: the consistency checks at the end of the period and of the previous one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quality {
    /// The day the checks were judged on (the end of the period).
    pub as_of: String,
    /// The day the previous run was judged on (the end of the previous period).
    pub previous_as_of: String,
    /// The previous run judged the records as the ledger knew them on `previous_as_of`:
    /// rebuilt from this many entries (those appended before that day).
    pub previous_entries: u64,
    pub totals: Severities,
    pub previous_totals: Severities,
    /// Findings (rule, subject) present now and not at the end of the previous period.
    pub new: u64,
    /// Findings present at the end of the previous period and not now.
    pub resolved: u64,
    /// Every rule with a finding now or then, by rule id.
    pub by_rule: Vec<RuleTrend>,
    /// Every org with a finding now or then, most first.
    pub by_org: Vec<OrgTrend>,
    /// Every failing record, by subject.
    pub records: Vec<FailingRecord>,
}

/// Meetings of one kind per month, for one branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MeetingCounts {
    /// `YYYY-MM`.
    pub month: String,
    pub member_meeting: u64,
    pub committee_meeting: u64,
    pub group_meeting: u64,
    pub lecture: u64,
    pub theme_day: u64,
    pub org_life: u64,
    pub appraisal: u64,
}

/// Meeting kinds in report order, with their labels.
pub const MEETING_KINDS: [(&str, &str, &str); 7] = [
    ("member_meeting", "党员大会", "Member meeting"),
    ("committee_meeting", "支委会", "Committee meeting"),
    ("group_meeting", "党小组会", "Group meeting"),
    ("lecture", "党课", "Party lecture"),
    ("theme_day", "主题党日", "Theme party day"),
    ("org_life", "组织生活会", "Org. life meeting"),
    ("appraisal", "民主评议党员", "Member appraisal"),
];

impl MeetingCounts {
    /// The count of a meeting kind (one of [`MEETING_KINDS`]).
    pub fn get(&self, kind: &str) -> u64 {
        match kind {
            "member_meeting" => self.member_meeting,
            "committee_meeting" => self.committee_meeting,
            "group_meeting" => self.group_meeting,
            "lecture" => self.lecture,
            "theme_day" => self.theme_day,
            "org_life" => self.org_life,
            "appraisal" => self.appraisal,
            _ => 0,
        }
    }

    /// Adds one meeting of `kind`; unknown kinds are ignored.
    pub fn add(&mut self, kind: &str) {
        let slot = match kind {
            "member_meeting" => &mut self.member_meeting,
            "committee_meeting" => &mut self.committee_meeting,
            "group_meeting" => &mut self.group_meeting,
            "lecture" => &mut self.lecture,
            "theme_day" => &mut self.theme_day,
            "org_life" => &mut self.org_life,
            "appraisal" => &mut self.appraisal,
            _ => return,
        };
        *slot += 1;
    }
}

/// One branch's organisational life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BranchLife {
    pub org_id: String,
    pub name: String,
    /// The branch has a committee (a committee meeting is due every month).
    pub has_committee: bool,
    /// One row per month of the period judged by `as_of`.
    pub months: Vec<MeetingCounts>,
    /// The meeting rules it breaks (ids of `meetings.*` findings).
    pub issues: Vec<String>,
}

/// Organisational life (三会一课) of the branches in scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgLife {
    /// The months shown: the months of the period that began before `as_of`.
    pub months: Vec<String>,
    pub branches: Vec<BranchLife>,
    /// Meetings of each kind over all branches and months.
    pub totals: MeetingCounts,
}

/// A member with unpaid months.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arrear {
    pub member_id: String,
    pub name: Option<String>,
    pub org_id: Option<String>,
    pub org_name: Option<String>,
    /// Months without a dues payment (`YYYY-MM`).
    pub months: Vec<String>,
    /// Six or more consecutive months unpaid: flagged for review (党章 Art. 9).
    pub six_months: bool,
}

/// Dues arrears: members with months the checks expect a payment for and find none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dues {
    pub members: u64,
    pub missing_months: u64,
    pub six_months_unpaid: u64,
    pub arrears: Vec<Arrear>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lang_parses_and_labels() {
        assert_eq!("zh".parse::<Lang>(), Ok(Lang::Zh));
        assert_eq!("en".parse::<Lang>(), Ok(Lang::En));
        assert_eq!(Lang::En.t("完整性", "Integrity"), "Integrity");
        assert_eq!(Lang::Zh.t("完整性", "Integrity"), "完整性");
    }

    #[test]
    fn fail_unknown_lang() {
        assert!("fr".parse::<Lang>().is_err());
    }

    #[test]
    fn meeting_counts_add_and_get_every_kind() {
        let mut m = MeetingCounts::default();
        for (i, (k, _, _)) in MEETING_KINDS.iter().enumerate() {
            for _ in 0..=i {
                m.add(k);
            }
        }
        m.add("unknown");
        for (i, (k, _, _)) in MEETING_KINDS.iter().enumerate() {
            assert_eq!(m.get(k), i as u64 + 1, "{k}");
        }
    }
}
