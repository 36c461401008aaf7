//! Member-data rules (`member.*`): required fields, the citizen ID number (GB 11643-1999,
//! ISO 7064 MOD 11-2), the member's organisation, dates in the future, phone format.
//!
//! Rules here judge one member record at a time and must never put the ID number or phone
//! number in a message; values carry masked forms only.

use chrono::NaiveDate;
use serde_json::json;

use super::facts::{mask_id, mask_phone, Gender, MemberFacts, OrgKind};
use super::{Ctx, Family, MemberRule, Rule, RuleDef, Violation};

pub(crate) static RULES: &[&MemberRule] = &[
    &RequiredFields,
    &IdFormat,
    &IdLegacy,
    &IdChecksum,
    &IdBirthMismatch,
    &IdGenderMismatch,
    &IdDuplicate,
    &OrgMissing,
    &OrgDissolved,
    &OrgNotBranch,
    &FutureDate,
    &PhoneFormat,
];

const GB11643: &str = "GB 11643-1999 公民身份号码";

const fn def(
    id: &'static str,
    zh: &'static str,
    en: &'static str,
    source: &'static str,
) -> RuleDef {
    RuleDef {
        id,
        family: Family::Member,
        description_zh: zh,
        description_en: en,
        source,
        applies_on: "",
        params: &[],
        ordered: &[],
    }
}

/// ISO 7064 MOD 11-2 weights for the first 17 digits (GB 11643-1999).
const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
/// Check character for remainder 0..=10.
const CHECK: [char; 11] = ['1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'];

/// The check character of an 18-character ID number from its first 17 digits; `None` when
/// one of them is not a digit.
pub(crate) fn check_char(first17: &[u8]) -> Option<char> {
    if first17.len() != 17 {
        return None;
    }
    let mut sum = 0u32;
    for (b, w) in first17.iter().zip(WEIGHTS) {
        if !b.is_ascii_digit() {
            return None;
        }
        sum += u32::from(b - b'0') * w;
    }
    // INVARIANT: sum % 11 is 0..=10 and CHECK has 11 entries.
    CHECK.get((sum % 11) as usize).copied()
}

/// A well-formed ID number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IdInfo {
    pub(crate) legacy: bool,
    pub(crate) birth: NaiveDate,
    pub(crate) gender: Gender,
    /// For 18-character numbers: the check character computed from the first 17 digits.
    pub(crate) expected_check: Option<char>,
    pub(crate) found_check: Option<char>,
}

impl IdInfo {
    pub(crate) fn checksum_ok(&self) -> bool {
        self.expected_check == self.found_check
    }
}

fn num(bytes: &[u8]) -> Option<u32> {
    bytes.iter().try_fold(0u32, |acc, b| {
        b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
    })
}

/// Parse an ID number: 15 digits (GB 11643-1989, birth `19YYMMDD`) or 17 digits and a
/// digit or `X`; the embedded birth date must be a real date. `None` is a format error.
pub(crate) fn parse_id(s: &str) -> Option<IdInfo> {
    let b = s.as_bytes();
    let (legacy, year, md, seq_digit, found_check) = match b.len() {
        15 => {
            if !b.iter().all(u8::is_ascii_digit) {
                return None;
            }
            (
                true,
                1900 + num(b.get(6..8)?)?,
                b.get(8..12)?,
                *b.get(14)?,
                None,
            )
        }
        18 => {
            let (body, last) = (b.get(..17)?, *b.get(17)?);
            if !body.iter().all(u8::is_ascii_digit) || !(last.is_ascii_digit() || last == b'X') {
                return None;
            }
            (
                false,
                num(b.get(6..10)?)?,
                b.get(10..14)?,
                *b.get(16)?,
                Some(char::from(last)),
            )
        }
        _ => return None,
    };
    let birth = NaiveDate::from_ymd_opt(
        i32::try_from(year).ok()?,
        num(md.get(..2)?)?,
        num(md.get(2..)?)?,
    )?;
    let gender = if (seq_digit - b'0') % 2 == 1 {
        Gender::Male
    } else {
        Gender::Female
    };
    let expected_check = if legacy {
        None
    } else {
        check_char(b.get(..17)?)
    };
    Some(IdInfo {
        legacy,
        birth,
        gender,
        expected_check,
        found_check,
    })
}

/// Phone format: mobile `^1[3-9]\d{9}$` or fixed line `^0\d{2,3}-?\d{7,8}$`.
pub(crate) fn phone_ok(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |x: &[u8]| !x.is_empty() && x.iter().all(u8::is_ascii_digit);
    if let [b'1', second, rest @ ..] = b {
        if (b'3'..=b'9').contains(second) && rest.len() == 9 && digits(rest) {
            return true;
        }
    }
    if let [b'0', rest @ ..] = b {
        for area in [2usize, 3] {
            let (Some(code), Some(tail)) = (rest.get(..area), rest.get(area..)) else {
                continue;
            };
            let number = tail.strip_prefix(b"-").unwrap_or(tail);
            if digits(code) && (7..=8).contains(&number.len()) && digits(number) {
                return true;
            }
        }
    }
    false
}

pub(crate) struct RequiredFields;
impl<'a> Rule<MemberFacts<'a>> for RequiredFields {
    fn def(&self) -> &'static RuleDef {
        static D: RuleDef = def(
            "member.required_fields",
            "必填字段缺失：姓名、性别、出生日期、公民身份号码、所在党支部、人员类别、党籍状态、入党日期",
            "A required field is missing: name, gender, birth date, ID number, org, category, status or admission date",
            "党员信息采集基本项（DESIGN §5）",
        );
        &D
    }
    fn check(&self, f: &MemberFacts<'a>, _: &Ctx<'_>) -> Option<Violation> {
        let m = f.m;
        let missing: Vec<&str> = [
            ("name", m.name.is_none()),
            ("gender", m.gender.is_none()),
            ("birth_date", m.birth_date.is_none()),
            ("id_number", m.id_number.is_none()),
            ("org_id", m.org_id.is_none()),
            ("category", m.category.is_none()),
            ("status", m.status.is_none()),
            ("admission_date", m.admission_date.is_none()),
        ]
        .into_iter()
        .filter_map(|(name, absent)| absent.then_some(name))
        .collect();
        (!missing.is_empty()).then(|| {
            Violation::new(
                format!("required fields missing: {}", missing.join(", ")),
                json!({ "missing": missing }),
            )
        })
    }
}

pub(crate) struct IdFormat;
impl<'a> Rule<MemberFacts<'a>> for IdFormat {
    fn def(&self) -> &'static RuleDef {
        static D: RuleDef = def(
            "member.id_format",
            "公民身份号码格式错误：应为18位（17位数字加数字或X）或15位数字，且含真实出生日期",
            "ID number is neither 18 characters (17 digits and a digit or X) nor 15 digits, or its birth date is not a real date",
            GB11643,
        );
        &D
    }
    fn check(&self, f: &MemberFacts<'a>, _: &Ctx<'_>) -> Option<Violation> {
        let id = f.m.id_number.as_deref()?;
        parse_id(id).is_none().then(|| {
            Violation::new(
                "ID number is malformed",
                json!({ "id_number": mask_id(id), "length": id.chars().count() }),
            )
        })
    }
}

pub(crate) struct IdLegacy;
impl<'a> Rule<MemberFacts<'a>> for IdLegacy {
    fn def(&self) -> &'static RuleDef {
        static D: RuleDef = def(
            "member.id_legacy",
            "公民身份号码为15位旧号码，应升级为18位",
            "ID number is a legacy 15-digit number; it should be upgraded to 18 characters",
            "GB 11643-1989 (superseded by GB 11643-1999)",
        );
        &D
    }
    fn check(&self, f: &MemberFacts<'a>, _: &Ctx<'_>) -> Option<Violation> {
        let id = f.m.id_number.as_deref()?;
        parse_id(id).filter(|i| i.legacy).map(|_| {
            Violation::new(
                "ID number has the legacy 15-digit form",
                json!({ "id_number": mask_id(id) }),
            )
        })
    }
}

pub(crate) struct IdChecksum;
impl<'a> Rule<MemberFacts<'a>> for IdChecksum {
    fn def(&self) -> &'static RuleDef {
        static D: RuleDef = def(
            "member.id_checksum",
            "公民身份号码校验码错误（ISO 7064 MOD 11-2）",
            "ID number check character is wrong (ISO 7064 MOD 11-2)",
            "GB 11643-1999 校验码; ISO 7064:1983 MOD 11-2",
        );
        &D
    }
    fn check(&self, f: &MemberFacts<'a>, _: &Ctx<'_>) -> Option<Violation> {
        let id = f.m.id_number.as_deref()?;
        let info = parse_id(id).filter(|i| !i.legacy)?;
        (!info.checksum_ok()).then(|| {
            Violation::new(
                "ID number check character is wrong",
                json!({
                    "id_number": mask_id(id),
                    "expected_check": info.expected_check.map(String::from),
                }),
            )
        })
    }
}

pub(crate) struct IdBirthMismatch;
impl<'a> Rule<MemberFacts<'a>> for IdBirthMismatch {
    fn def(&self) -> &'static RuleDef {
        static D: RuleDef = def(
            "member.id_birth_mismatch",
            "公民身份号码中的出生日期与出生日期字段不一致",
            "The birth date in the ID number differs from birth_date",
            "GB 11643-1999 出生日期码",
        );
        &D
    }
    fn check(&self, f: &MemberFacts<'a>, _: &Ctx<'_>) -> Option<Violation> {
        let id = f.m.id_number.as_deref()?;
        let birth = f.m.birth_date?;
        let info = parse_id(id)?;
        (info.birth != birth).then(|| {
            use chrono::Datelike;
            let differs: Vec<&str> = [
                ("year", info.birth.year() != birth.year()),
                ("month", info.birth.month() != birth.month()),
                ("day", info.birth.day() != birth.day()),
            ]
            .into_iter()
            .filter_map(|(k, d)| d.then_some(k))
            .collect();
            Violation::new(
                "birth date in the ID number differs from birth_date",
                json!({ "id_number": mask_id(id), "differs_in": differs }),
            )
        })
    }
}

pub(crate) struct IdGenderMismatch;
impl<'a> Rule<MemberFacts<'a>> for IdGenderMismatch {
    fn def(&self) -> &'static RuleDef {
        static D: RuleDef = def(
            "member.id_gender_mismatch",
            "公民身份号码顺序码的性别（奇数男、偶数女）与性别字段不一致",
            "The gender of the ID number's sequence code (odd male, even female) differs from gender",
            "GB 11643-1999 顺序码",
        );
        &D
    }
    fn check(&self, f: &MemberFacts<'a>, _: &Ctx<'_>) -> Option<Violation> {
        let id = f.m.id_number.as_deref()?;
        let gender = f.m.gender?;
        let info = parse_id(id)?;
        (info.gender != gender).then(|| {
            Violation::new(
                "gender of the ID number differs from gender",
                json!({ "gender": gender.as_str(), "id_gender": info.gender.as_str() }),
            )
        })
    }
}

pub(crate) struct IdDuplicate;
impl<'a> Rule<MemberFacts<'a>> for IdDuplicate {
    fn def(&self) -> &'static RuleDef {
        static D: RuleDef = def(
            "member.id_duplicate",
            "同一公民身份号码出现在两名及以上党员记录中",
            "The same ID number is on two or more members",
            "GB 11643-1999（公民身份号码唯一）",
        );
        &D
    }
    fn check(&self, f: &MemberFacts<'a>, _: &Ctx<'_>) -> Option<Violation> {
        let id = f.m.id_number.as_deref()?;
        (f.duplicate_total > 0).then(|| {
            Violation::new(
                format!("ID number is shared with {} other member(s)", f.duplicate_total),
                json!({ "id_number": mask_id(id), "other_members": f.duplicates, "others_total": f.duplicate_total }),
            )
        })
    }
}

const CONSTITUTION_ART8: &str = "党章 第八条（每个党员都必须编入党的一个支部）";

pub(crate) struct OrgMissing;
impl<'a> Rule<MemberFacts<'a>> for OrgMissing {
    fn def(&self) -> &'static RuleDef {
        static D: RuleDef = def(
            "member.org_missing",
            "所在党组织不存在",
            "The member's org does not exist",
            CONSTITUTION_ART8,
        );
        &D
    }
    fn check(&self, f: &MemberFacts<'a>, _: &Ctx<'_>) -> Option<Violation> {
        let org = f.m.org_id.as_deref()?;
        f.org.is_none().then(|| {
            Violation::new(
                format!("org `{org}` does not exist"),
                json!({ "org_id": org }),
            )
        })
    }
}

pub(crate) struct OrgDissolved;
impl<'a> Rule<MemberFacts<'a>> for OrgDissolved {
    fn def(&self) -> &'static RuleDef {
        static D: RuleDef = def(
            "member.org_dissolved",
            "正常党籍的党员所在党组织已撤销",
            "An active member's org has been dissolved",
            CONSTITUTION_ART8,
        );
        &D
    }
    fn check(&self, f: &MemberFacts<'a>, ctx: &Ctx<'_>) -> Option<Violation> {
        let org = f.org?;
        let dissolved = org.dissolved.filter(|d| *d <= ctx.as_of)?;
        f.m.is_active().then(|| {
            Violation::new(
                format!(
                    "active member's org `{}` was dissolved on {dissolved}",
                    org.id
                ),
                json!({ "org_id": org.id, "dissolved_date": dissolved.to_string() }),
            )
        })
    }
}

pub(crate) struct OrgNotBranch;
impl<'a> Rule<MemberFacts<'a>> for OrgNotBranch {
    fn def(&self) -> &'static RuleDef {
        static D: RuleDef = def(
            "member.org_not_branch",
            "党员所在组织不是党支部",
            "The member's org is not a branch",
            CONSTITUTION_ART8,
        );
        &D
    }
    fn check(&self, f: &MemberFacts<'a>, _: &Ctx<'_>) -> Option<Violation> {
        let org = f.org?;
        (org.kind != Some(OrgKind::Branch)).then(|| {
            let kind = org.kind.map_or("unknown", OrgKind::as_str);
            Violation::new(
                format!("member's org `{}` is a {kind}, not a branch", org.id),
                json!({ "org_id": org.id, "kind": kind }),
            )
        })
    }
}

pub(crate) struct FutureDate;
impl<'a> Rule<MemberFacts<'a>> for FutureDate {
    fn def(&self) -> &'static RuleDef {
        static D: RuleDef = def(
            "member.future_date",
            "日期晚于检查基准日",
            "A date field is after the as-of date",
            "数据一致性",
        );
        &D
    }
    fn check(&self, f: &MemberFacts<'a>, ctx: &Ctx<'_>) -> Option<Violation> {
        let m = f.m;
        let future: Vec<&str> = [
            ("birth_date", m.birth_date),
            ("status_date", m.status_date),
            ("application_date", m.application_date),
            ("activist_date", m.activist_date),
            ("candidate_date", m.candidate_date),
            ("admission_date", m.admission_date),
            ("full_date", m.full_date),
        ]
        .into_iter()
        .filter_map(|(name, d)| d.is_some_and(|d| d > ctx.as_of).then_some(name))
        .collect();
        (!future.is_empty()).then(|| {
            Violation::new(
                format!("dates after {}: {}", ctx.as_of, future.join(", ")),
                json!({ "fields": future }),
            )
        })
    }
}

pub(crate) struct PhoneFormat;
impl<'a> Rule<MemberFacts<'a>> for PhoneFormat {
    fn def(&self) -> &'static RuleDef {
        static D: RuleDef = def(
            "member.phone_format",
            "联系电话格式不符（手机1[3-9]开头11位，或0开头的固定电话）",
            "Phone number is neither a mobile number (11 digits, 1[3-9]…) nor a fixed line (0…)",
            "数据质量",
        );
        &D
    }
    fn check(&self, f: &MemberFacts<'a>, _: &Ctx<'_>) -> Option<Violation> {
        let phone = f.m.phone.as_deref()?;
        (!phone_ok(phone)).then(|| {
            Violation::new(
                "phone number is malformed",
                json!({ "phone": mask_phone(phone) }),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::facts::{MemberRec, OrgRec, Status};
    use super::super::testutil::{ctx, date};
    use super::*;

    // Valid examples from GB 11643-1999 as quoted in REGULATIONS.md.
    const VALID: [&str; 3] = [
        "11010519491231002X",
        "440524188001010014",
        "34052419800101001X",
    ];

    fn facts<'a>(m: &'a MemberRec) -> MemberFacts<'a> {
        MemberFacts {
            m,
            org: None,
            duplicates: &[],
            duplicate_total: 0,
            introducers: &[],
        }
    }

    fn with_id(id: &str) -> MemberRec {
        MemberRec {
            id_number: Some(id.into()),
            ..MemberRec::default()
        }
    }

    fn fires(rule: &MemberRule, m: &MemberRec) -> bool {
        rule.check(&facts(m), &ctx("2026-11-28")).is_some()
    }

    #[test]
    fn known_valid_ids_pass_the_check_character() {
        for id in VALID {
            let info = parse_id(id).unwrap();
            assert!(info.checksum_ok(), "{id}");
            assert!(!fires(&IdChecksum, &with_id(id)), "{id}");
            assert!(!fires(&IdFormat, &with_id(id)), "{id}");
        }
        assert_eq!(parse_id(VALID[0]).unwrap().gender, Gender::Female);
        assert_eq!(parse_id(VALID[1]).unwrap().birth, date("1880-01-01"));
        assert_eq!(parse_id(VALID[2]).unwrap().gender, Gender::Male);
    }

    #[test]
    fn fail_every_single_character_change_breaks_the_check() {
        for id in VALID {
            for pos in 0..18 {
                for c in "0123456789X".chars() {
                    let mut chars: Vec<char> = id.chars().collect();
                    if chars[pos] == c || (pos < 17 && c == 'X') {
                        continue;
                    }
                    chars[pos] = c;
                    let changed: String = chars.into_iter().collect();
                    let m = with_id(&changed);
                    // A changed digit either breaks the birth date (format) or the check character.
                    assert!(
                        fires(&IdChecksum, &m) || fires(&IdFormat, &m),
                        "{changed} should fail"
                    );
                    if let Some(info) = parse_id(&changed) {
                        assert!(!info.checksum_ok(), "{changed}");
                    }
                }
            }
        }
    }

    #[test]
    fn fail_malformed_ids() {
        for bad in [
            "1101051949123100",                     // 16 chars
            "11010519491231002x",                   // lower-case x
            "1101051949123100X2",                   // X not last
            "110105194902300021",                   // 1949-02-30
            "110105490230002",                      // legacy, 1949-02-30
            "１１０１０５１９４９１２３１００２Ｘ", // full-width digits
        ] {
            assert!(fires(&IdFormat, &with_id(bad)), "{bad}");
            assert!(!fires(&IdChecksum, &with_id(bad)), "{bad}");
        }
    }

    #[test]
    fn legacy_ids_are_flagged_but_not_malformed() {
        let m = with_id("110105491231002");
        assert!(fires(&IdLegacy, &m));
        assert!(!fires(&IdFormat, &m));
        assert!(!fires(&IdChecksum, &m));
        assert_eq!(
            parse_id("110105491231002").unwrap().birth,
            date("1949-12-31")
        );
        assert!(!fires(&IdLegacy, &with_id(VALID[0])));
    }

    #[test]
    fn birth_and_gender_mismatch() {
        let mut m = with_id(VALID[0]);
        m.birth_date = Some(date("1949-12-31"));
        m.gender = Some(Gender::Female);
        assert!(!fires(&IdBirthMismatch, &m));
        assert!(!fires(&IdGenderMismatch, &m));
        m.birth_date = Some(date("1949-12-30"));
        m.gender = Some(Gender::Male);
        let v = IdBirthMismatch
            .check(&facts(&m), &ctx("2026-11-28"))
            .unwrap();
        assert_eq!(v.values["differs_in"], json!(["day"]));
        assert!(fires(&IdGenderMismatch, &m));
        // Legacy: 15th digit is the sequence digit; 2 → female.
        let mut legacy = with_id("110105491231002");
        legacy.gender = Some(Gender::Female);
        legacy.birth_date = Some(date("1949-12-31"));
        assert!(!fires(&IdGenderMismatch, &legacy));
        assert!(!fires(&IdBirthMismatch, &legacy));
    }

    #[test]
    fn findings_never_show_the_id_number_or_phone() {
        let mut m = with_id("11010519491231002Y");
        m.phone = Some("1380013800".into());
        let ctx = ctx("2026-11-28");
        let dups = vec!["M2".to_string()];
        let f = MemberFacts {
            duplicates: &dups,
            duplicate_total: 1,
            ..facts(&m)
        };
        for rule in RULES {
            if let Some(v) = rule.check(&f, &ctx) {
                let text = format!("{} {}", v.message, v.values);
                assert!(
                    !text.contains("11010519491231002"),
                    "{}: {text}",
                    rule.def().id
                );
                assert!(!text.contains("1380013800"), "{}: {text}", rule.def().id);
            }
        }
    }

    #[test]
    fn duplicates_are_reported_with_the_other_members() {
        let m = with_id(VALID[0]);
        let dups = vec!["M2".to_string(), "M3".to_string()];
        let f = MemberFacts {
            duplicates: &dups,
            duplicate_total: 2,
            ..facts(&m)
        };
        let v = IdDuplicate.check(&f, &ctx("2026-11-28")).unwrap();
        assert_eq!(v.values["other_members"], json!(["M2", "M3"]));
        assert!(IdDuplicate.check(&facts(&m), &ctx("2026-11-28")).is_none());
    }

    #[test]
    fn required_fields_lists_what_is_missing() {
        let m = MemberRec {
            name: Some("张三".into()),
            ..MemberRec::default()
        };
        let v = RequiredFields
            .check(&facts(&m), &ctx("2026-11-28"))
            .unwrap();
        assert_eq!(
            v.values["missing"],
            json!([
                "gender",
                "birth_date",
                "id_number",
                "org_id",
                "category",
                "status",
                "admission_date"
            ])
        );
    }

    fn org(kind: OrgKind, dissolved: Option<&str>) -> OrgRec {
        OrgRec {
            id: "B1".into(),
            kind: Some(kind),
            parent_id: None,
            established: None,
            has_committee: None,
            secretary_id: None,
            dissolved: dissolved.map(date),
        }
    }

    #[test]
    fn org_rules() {
        let m = MemberRec {
            org_id: Some("B1".into()),
            status: Some(Status::Active),
            ..MemberRec::default()
        };
        let c = ctx("2026-11-28");
        assert!(OrgMissing.check(&facts(&m), &c).is_some());
        let branch = org(OrgKind::Branch, None);
        let f = MemberFacts {
            org: Some(&branch),
            ..facts(&m)
        };
        assert!(OrgMissing.check(&f, &c).is_none());
        assert!(OrgNotBranch.check(&f, &c).is_none());
        assert!(OrgDissolved.check(&f, &c).is_none());
        let committee = org(OrgKind::Committee, Some("2026-11-28"));
        let f = MemberFacts {
            org: Some(&committee),
            ..facts(&m)
        };
        assert!(OrgNotBranch.check(&f, &c).is_some());
        assert!(
            OrgDissolved.check(&f, &c).is_some(),
            "dissolved on the as-of date"
        );
        let later = org(OrgKind::Branch, Some("2026-11-29"));
        let f = MemberFacts {
            org: Some(&later),
            ..facts(&m)
        };
        assert!(OrgDissolved.check(&f, &c).is_none());
    }

    #[test]
    fn future_dates() {
        let m = MemberRec {
            birth_date: Some(date("2026-11-28")),
            full_date: Some(date("2026-11-29")),
            ..MemberRec::default()
        };
        let v = FutureDate.check(&facts(&m), &ctx("2026-11-28")).unwrap();
        assert_eq!(v.values["fields"], json!(["full_date"]));
    }

    #[test]
    fn phone_formats() {
        for ok in [
            "13800138000",
            "19912345678",
            "010-12345678",
            "01012345678",
            "0755-1234567",
            "0571-87654321",
        ] {
            assert!(phone_ok(ok), "{ok}");
        }
        for bad in [
            "12800138000",
            "1380013800",
            "138001380001",
            "10-12345678",
            "010-123456",
            "0755-123456789",
            "+8613800138000",
            "",
        ] {
            assert!(!phone_ok(bad), "{bad}");
        }
    }
}
