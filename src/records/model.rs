//! Validated party records (organisations, members, dues, meetings, transfers, users) and
//! their flat canonical form.
//!
//! Every record converts to and from [`Fields`], a flat map of canonical English field names
//! to [`FieldValue`]s. That map is what ledger entries carry (`*.create` carries all present
//! fields, `*.update` carries [`Changes`], `{field: [old, new]}`) and what projection rows of
//! `schema.sql` are written from and read back into. Its value conventions are those of
//! `schema.sql`:
//!
//! - dates are text `YYYY-MM-DD`, months text `YYYY-MM`, enums their canonical English name;
//! - money is an integer number of fen (分), counts are integers, flags are booleans;
//! - `introducers` is one text value, member ids joined by `;` in file order (not a JSON
//!   array), exactly as the projection column stores it;
//! - an absent value is a missing key (JSON `null` in a change).
//!
//! The ids of dues, meetings and transfers are derived from their key fields (see
//! [`dues_id`], [`meeting_id`], [`transfer_id`]) and appear in the flat form as `dues_id`,
//! `meeting_id` and `transfer_id`, so a projection row maps to the flat form column by column.
//!
//! This module does no I/O and knows nothing of files, the ledger store or HTTP. It accepts
//! only canonical values; the lenient spellings of import files (aliases, Chinese dates, yuan)
//! are turned into canonical values by `parse`. No error message here carries a field value.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, NaiveDate};
use serde_json::{Map, Value as Json};
use thiserror::Error;

/// A record in flat canonical form: canonical field name → value. Absent fields are missing.
pub type Fields = BTreeMap<&'static str, FieldValue>;

/// The changes between two versions of a record: field → (old, new).
pub type Changes = BTreeMap<&'static str, Change>;

/// One changed field. `None` means absent (JSON `null`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The value before the change.
    pub old: Option<FieldValue>,
    /// The value after the change.
    pub new: Option<FieldValue>,
}

/// The fields whose values must be masked unless the reader may read sensitive data.
pub const SENSITIVE_FIELDS: [&str; 4] = ["id_number", "phone", "monthly_income", "base_income"];

/// Whether a field (by canonical name) holds sensitive personal data.
pub fn is_sensitive(field: &str) -> bool {
    SENSITIVE_FIELDS.contains(&field)
}

/// The longest id accepted, in characters.
pub const MAX_ID_CHARS: usize = 64;
/// The longest text value accepted, in characters.
pub const MAX_TEXT_CHARS: usize = 1000;
/// The largest amount of money accepted, in fen (10¹³ yuan minus one fen).
pub const MAX_FEN: i64 = 999_999_999_999_999;

// ---------------------------------------------------------------------------------------
// Flat values

/// A value in the flat canonical form. Serialises to a JSON string, integer or boolean.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FieldValue {
    /// Text: names, ids, dates (`YYYY-MM-DD`), months (`YYYY-MM`), enum names, id lists.
    Text(String),
    /// An integer: fen, counts.
    Int(i64),
    /// A flag.
    Bool(bool),
}

impl FieldValue {
    /// The text, if this is a text value.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            FieldValue::Text(s) => Some(s),
            _ => None,
        }
    }

    /// The JSON form: a string, an integer or a boolean.
    pub fn to_json(&self) -> Json {
        match self {
            FieldValue::Text(s) => Json::String(s.clone()),
            FieldValue::Int(i) => Json::from(*i),
            FieldValue::Bool(b) => Json::Bool(*b),
        }
    }

    /// Reads the JSON form; `null` is absent (`Ok(None)`). Fractions, arrays and objects
    /// are rejected.
    pub fn from_json(value: &Json) -> Result<Option<FieldValue>, &'static str> {
        match value {
            Json::Null => Ok(None),
            Json::String(s) => Ok(Some(FieldValue::Text(s.clone()))),
            Json::Bool(b) => Ok(Some(FieldValue::Bool(*b))),
            Json::Number(n) => n
                .as_i64()
                .map(|i| Some(FieldValue::Int(i)))
                .ok_or("expected an integer, a string or a boolean"),
            Json::Array(_) | Json::Object(_) => {
                Err("expected an integer, a string, a boolean or null")
            }
        }
    }
}

impl fmt::Display for FieldValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldValue::Text(s) => f.write_str(s),
            FieldValue::Int(i) => write!(f, "{i}"),
            FieldValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

impl serde::Serialize for FieldValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            FieldValue::Text(t) => s.serialize_str(t),
            FieldValue::Int(i) => s.serialize_i64(*i),
            FieldValue::Bool(b) => s.serialize_bool(*b),
        }
    }
}

/// Text as SQLite TEXT, integers as INTEGER, flags as INTEGER 0/1 (the `schema.sql` forms).
impl rusqlite::ToSql for FieldValue {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::ToSqlOutput;
        Ok(match self {
            FieldValue::Text(s) => ToSqlOutput::from(s.as_str()),
            FieldValue::Int(i) => ToSqlOutput::from(*i),
            FieldValue::Bool(b) => ToSqlOutput::from(i64::from(*b)),
        })
    }
}

// ---------------------------------------------------------------------------------------
// Scalar types

/// A record id (org, member, user ids and the references to them): 1 to 64 characters, no
/// whitespace or control characters, and none of `/ # ; , ； ， 、` (they separate parts of
/// subjects, derived ids and lists).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(String);

impl Id {
    /// Characters an id must not contain.
    pub const FORBIDDEN: [char; 7] = ['/', '#', ';', ',', '；', '，', '、'];

    /// Validates an id.
    pub fn new(s: &str) -> Result<Id, &'static str> {
        if s.is_empty() {
            return Err("an id must not be empty");
        }
        if s.chars().count() > MAX_ID_CHARS {
            return Err("an id must be at most 64 characters");
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("an id must not contain spaces or control characters");
        }
        if s.contains(Id::FORBIDDEN) {
            return Err("an id must not contain any of / # ; , ； ， 、");
        }
        Ok(Id(s.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Borrow<str> for Id {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl FromStr for Id {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Id, &'static str> {
        Id::new(s)
    }
}

/// Validates free text (names, topics, ID numbers, phones): not empty, at most
/// [`MAX_TEXT_CHARS`] characters, no line breaks or other control characters.
pub fn validate_text(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("text must not be empty");
    }
    if s.chars().any(char::is_control) {
        return Err("text must not contain line breaks or control characters");
    }
    if s.chars().count() > MAX_TEXT_CHARS {
        return Err("text must be at most 1000 characters");
    }
    Ok(())
}

/// Validates free text that may span lines: like [`validate_text`], but LF line ends and
/// tabs are allowed.
pub fn validate_note(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("text must not be empty");
    }
    if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err("text must not contain control characters");
    }
    if s.chars().count() > MAX_TEXT_CHARS {
        return Err("text must be at most 1000 characters");
    }
    Ok(())
}

/// Normalises the line ends of a note to LF.
pub fn normalize_note(s: &str) -> String {
    s.replace("\r\n", "\n").replace('\r', "\n")
}

/// An amount of money in fen (分, 1/100 yuan), never negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fen(i64);

impl Fen {
    /// Zero fen.
    pub const ZERO: Fen = Fen(0);

    /// An amount of `fen`, if it is between 0 and [`MAX_FEN`].
    pub fn new(fen: i64) -> Option<Fen> {
        (0..=MAX_FEN).contains(&fen).then_some(Fen(fen))
    }

    /// The amount in fen.
    pub fn get(self) -> i64 {
        self.0
    }
}

/// Yuan with two decimals: `4500.50`.
impl fmt::Display for Fen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

/// A calendar month, years 1000 to 9999. Orders chronologically; displays as `YYYY-MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct YearMonth {
    year: i32,
    month: u32,
}

impl YearMonth {
    /// The month `month` (1–12) of `year` (1000–9999).
    pub fn new(year: i32, month: u32) -> Option<YearMonth> {
        ((1000..=9999).contains(&year) && (1..=12).contains(&month))
            .then_some(YearMonth { year, month })
    }

    /// The month a date falls in (`None` outside years 1000–9999).
    pub fn of(date: NaiveDate) -> Option<YearMonth> {
        YearMonth::new(date.year(), date.month())
    }

    /// The year.
    pub fn year(self) -> i32 {
        self.year
    }

    /// The month, 1–12.
    pub fn month(self) -> u32 {
        self.month
    }

    /// A dense index: consecutive months have consecutive indexes.
    pub fn index(self) -> u32 {
        // INVARIANT: year is 1000..=9999, so the value is positive and small.
        self.year.unsigned_abs() * 12 + (self.month - 1)
    }

    /// The month with a given [`index`](YearMonth::index).
    pub fn from_index(index: u32) -> Option<YearMonth> {
        let year = i32::try_from(index / 12).ok()?;
        YearMonth::new(year, index % 12 + 1)
    }

    /// The first day of the month.
    pub fn first_day(self) -> NaiveDate {
        // INVARIANT: year and month were validated, and day 1 exists in every month.
        NaiveDate::from_ymd_opt(self.year, self.month, 1).unwrap_or(NaiveDate::MIN)
    }

    /// The next month (`None` after 9999-12).
    pub fn succ(self) -> Option<YearMonth> {
        YearMonth::from_index(self.index() + 1)
    }
}

impl fmt::Display for YearMonth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// Parses the canonical form `YYYY-MM` only.
impl FromStr for YearMonth {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<YearMonth, &'static str> {
        const WHY: &str = "expected a month as YYYY-MM";
        let (y, m) = s.split_once('-').ok_or(WHY)?;
        let year = fixed_digits(y, 4).ok_or(WHY)?;
        let month = fixed_digits(m, 2).ok_or(WHY)?;
        YearMonth::new(year as i32, month).ok_or("not a real month")
    }
}

/// Formats a date as `YYYY-MM-DD`.
pub fn format_date(date: NaiveDate) -> String {
    format!("{:04}-{:02}-{:02}", date.year(), date.month(), date.day())
}

/// Parses the canonical date form `YYYY-MM-DD` only (years 1000–9999).
pub fn parse_canonical_date(s: &str) -> Result<NaiveDate, &'static str> {
    const WHY: &str = "expected a date as YYYY-MM-DD";
    let mut parts = s.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(WHY);
    };
    let (Some(y), Some(m), Some(d)) = (fixed_digits(y, 4), fixed_digits(m, 2), fixed_digits(d, 2))
    else {
        return Err(WHY);
    };
    make_date(y, m, d)
}

/// A date from year (1000–9999), month and day, if it is a real calendar date.
pub(crate) fn make_date(year: u32, month: u32, day: u32) -> Result<NaiveDate, &'static str> {
    if !(1000..=9999).contains(&year) {
        return Err("the year must have four digits");
    }
    NaiveDate::from_ymd_opt(year as i32, month, day).ok_or("not a real calendar date")
}

/// `s` as a number if it is exactly `len` ASCII digits.
fn fixed_digits(s: &str, len: usize) -> Option<u32> {
    (s.len() == len && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

// ---------------------------------------------------------------------------------------
// Enums

/// The spellings of an enum: each variant's canonical English name and its aliases
/// (the first alias is the Chinese name used in reports).
#[derive(Debug)]
pub struct EnumSpec {
    /// What the enum is, in words (`gender`).
    pub what: &'static str,
    /// (canonical name, aliases) for each variant, in declaration order.
    pub variants: &'static [(&'static str, &'static [&'static str])],
}

impl EnumSpec {
    /// The canonical name for a spelling: a canonical name (ASCII case ignored) or an alias.
    pub fn canonical(&self, s: &str) -> Option<&'static str> {
        self.variants
            .iter()
            .find(|(canon, aliases)| canon.eq_ignore_ascii_case(s) || aliases.contains(&s))
            .map(|(canon, _)| *canon)
    }

    /// The canonical names, joined by `|`.
    pub fn names(&self) -> String {
        let names: Vec<&str> = self.variants.iter().map(|(c, _)| *c).collect();
        names.join("|")
    }
}

macro_rules! record_enum {
    (
        $(#[$doc:meta])*
        $name:ident, $spec:ident, $what:literal {
            $( $(#[$vdoc:meta])* $var:ident = $canon:literal [$zh:literal $(, $alias:literal)*] ),+ $(,)?
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vdoc])* $var ),+
        }

        #[doc = concat!("The spellings of [`", stringify!($name), "`].")]
        pub static $spec: EnumSpec = EnumSpec {
            what: $what,
            variants: &[ $( ($canon, &[$zh $(, $alias)*]) ),+ ],
        };

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[ $( $name::$var ),+ ];

            /// The canonical English name.
            pub fn as_str(self) -> &'static str {
                match self { $( $name::$var => $canon ),+ }
            }

            /// The Chinese name.
            pub fn zh(self) -> &'static str {
                match self { $( $name::$var => $zh ),+ }
            }

            /// The variant with this canonical name (exact match).
            pub fn from_canonical(s: &str) -> Option<$name> {
                match s { $( $canon => Some($name::$var), )+ _ => None }
            }

            /// The variant for a canonical name (ASCII case ignored) or an alias.
            pub fn parse_alias(s: &str) -> Option<$name> {
                $spec.canonical(s).and_then($name::from_canonical)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        /// Accepts the canonical name (ASCII case ignored) or an alias.
        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<$name, String> {
                $name::parse_alias(s)
                    .ok_or_else(|| format!("expected a {}: {}", $what, $spec.names()))
            }
        }

        impl FromTyped for $name {
            const EXPECTED: &'static str = $what;
            fn from_typed(t: Typed) -> Option<$name> {
                match t { Typed::Enum(s) => $name::from_canonical(s), _ => None }
            }
        }

        impl ToValue for $name {
            fn to_value(&self) -> FieldValue {
                FieldValue::Text(self.as_str().to_owned())
            }
        }
    };
}

record_enum! {
    /// The kind of a party organisation (组织类别).
    OrgKind, ORG_KIND, "kind of organisation" {
        /// 党委 (a primary-level party committee).
        Committee = "committee" ["党委", "基层党委"],
        /// 党总支.
        GeneralBranch = "general_branch" ["党总支", "总支", "党总支部"],
        /// 党支部.
        Branch = "branch" ["党支部", "支部"],
    }
}

record_enum! {
    /// Gender (性别).
    Gender, GENDER, "gender" {
        /// 男.
        Male = "male" ["男", "男性"],
        /// 女.
        Female = "female" ["女", "女性"],
    }
}

record_enum! {
    /// Member category (人员类别).
    Category, CATEGORY, "member category" {
        /// 正式党员.
        Full = "full" ["正式党员", "正式"],
        /// 预备党员.
        Probationary = "probationary" ["预备党员", "预备"],
    }
}

record_enum! {
    /// Membership status (党籍状态).
    Status, STATUS, "membership status" {
        /// 正常.
        Active = "active" ["正常"],
        /// 转出 (relation transferred to an organisation outside this system).
        TransferredOut = "transferred_out" ["转出", "已转出"],
        /// 死亡.
        Deceased = "deceased" ["死亡", "去世", "已故"],
        /// 出党 (expelled, struck off or withdrawn).
        Removed = "removed" ["出党", "开除党籍", "除名", "退党"],
        /// 失联.
        LostContact = "lost_contact" ["失联", "失去联系"],
    }
}

record_enum! {
    /// Employment (工作状态), which decides the dues rate.
    Employment, EMPLOYMENT, "employment" {
        /// 在职.
        Employed = "employed" ["在职", "在岗"],
        /// 离退休.
        Retired = "retired" ["离退休", "退休", "离休"],
        /// 学生.
        Student = "student" ["学生", "在校学生"],
        /// 无固定收入.
        Unemployed = "unemployed" ["无固定收入"],
        /// 农民.
        Farmer = "farmer" ["农民"],
    }
}

record_enum! {
    /// The kind of an organisational-life meeting (组织生活).
    MeetingKind, MEETING_KIND, "kind of meeting" {
        /// 党员大会.
        MemberMeeting = "member_meeting" ["党员大会", "支部党员大会"],
        /// 支委会.
        CommitteeMeeting = "committee_meeting" ["支委会", "支部委员会", "支部委员会会议"],
        /// 党小组会.
        GroupMeeting = "group_meeting" ["党小组会"],
        /// 党课.
        Lecture = "lecture" ["党课"],
        /// 主题党日.
        ThemeDay = "theme_day" ["主题党日"],
        /// 组织生活会.
        OrgLife = "org_life" ["组织生活会"],
        /// 民主评议党员.
        Appraisal = "appraisal" ["民主评议党员", "民主评议"],
    }
}

record_enum! {
    /// The role of a system user (角色).
    Role, ROLE, "role" {
        /// 组织部门.
        OrgDept = "org_dept" ["组织部门", "组织部"],
        /// 信息资源提供者.
        Provider = "provider" ["信息资源提供者", "数据提供者"],
        /// 党员 (reads their own record).
        Member = "member" ["党员"],
        /// 系统管理员.
        Sysadmin = "sysadmin" ["系统管理员"],
        /// 安全管理员.
        SecurityAdmin = "security_admin" ["安全管理员", "安全保密管理员"],
        /// 安全审计员.
        Auditor = "auditor" ["安全审计员", "审计员"],
    }
}

/// The spellings of booleans: `true`/`false` (ASCII case ignored) and the aliases.
pub const BOOL_SPELLINGS: [(bool, &[&str]); 2] = [
    (true, &["true", "yes", "y", "1", "是", "有"]),
    (false, &["false", "no", "n", "0", "否", "无"]),
];

// ---------------------------------------------------------------------------------------
// Field table

/// The type of a field's value.
#[derive(Debug, Clone, Copy)]
pub enum FieldType {
    /// An [`Id`].
    Id,
    /// A derived id (`dues_id`, `meeting_id`, `transfer_id`); never read from import files.
    Key,
    /// Free text on one line.
    Text,
    /// Free text that may span lines (`topic`); line ends are stored as LF.
    Note,
    /// A date, `YYYY-MM-DD`.
    Date,
    /// A month, `YYYY-MM`.
    Month,
    /// Money: fen in the flat form, yuan in import files.
    Fen,
    /// A non-negative integer.
    Count,
    /// A flag.
    Bool,
    /// One of an enum's canonical names.
    Enum(&'static EnumSpec),
    /// Ids joined by `;`.
    Ids,
}

impl FieldType {
    /// The expected value, in words, for error messages.
    pub fn expected(self) -> &'static str {
        match self {
            FieldType::Id => "an id",
            FieldType::Key => "a derived id",
            FieldType::Text => "text",
            FieldType::Note => "text",
            FieldType::Date => "a date as YYYY-MM-DD",
            FieldType::Month => "a month as YYYY-MM",
            FieldType::Fen => "an integer number of fen",
            FieldType::Count => "a non-negative integer",
            FieldType::Bool => "true or false",
            FieldType::Enum(spec) => spec.what,
            FieldType::Ids => "ids joined by `;`",
        }
    }

    /// Checks a canonical flat value and types it.
    pub(crate) fn check_value(self, v: &FieldValue) -> Result<Typed, String> {
        let wrong = || format!("expected {}", self.expected());
        match (self, v) {
            (FieldType::Id, FieldValue::Text(s)) => {
                Id::new(s).map(Typed::Id).map_err(str::to_owned)
            }
            (FieldType::Key, FieldValue::Text(s)) if !s.is_empty() => Ok(Typed::Key(s.clone())),
            (FieldType::Text, FieldValue::Text(s)) => validate_text(s)
                .map(|()| Typed::Text(s.clone()))
                .map_err(str::to_owned),
            (FieldType::Note, FieldValue::Text(s)) if !s.contains('\r') => validate_note(s)
                .map(|()| Typed::Text(s.clone()))
                .map_err(str::to_owned),
            (FieldType::Date, FieldValue::Text(s)) => parse_canonical_date(s)
                .map(Typed::Date)
                .map_err(str::to_owned),
            (FieldType::Month, FieldValue::Text(s)) => s
                .parse::<YearMonth>()
                .map(Typed::Month)
                .map_err(str::to_owned),
            (FieldType::Fen, FieldValue::Int(i)) => Fen::new(*i)
                .map(Typed::Fen)
                .ok_or_else(|| "an amount must be between 0 and 999999999999999 fen".to_owned()),
            (FieldType::Count, FieldValue::Int(i)) => u32::try_from(*i)
                .map(Typed::Count)
                .map_err(|_| "expected a non-negative integer".to_owned()),
            (FieldType::Bool, FieldValue::Bool(b)) => Ok(Typed::Bool(*b)),
            (FieldType::Enum(spec), FieldValue::Text(s)) => spec
                .variants
                .iter()
                .find(|(canon, _)| canon == s)
                .map(|(canon, _)| Typed::Enum(canon))
                .ok_or_else(|| format!("expected a {}: {}", spec.what, spec.names())),
            (FieldType::Ids, FieldValue::Text(s)) => s
                .split(';')
                .map(Id::new)
                .collect::<Result<Vec<Id>, _>>()
                .map(Typed::Ids)
                .map_err(|why| format!("expected ids joined by `;`: {why}")),
            _ => Err(wrong()),
        }
    }

    /// Reads a projection column value (`schema.sql` conventions) into the flat form.
    pub fn read_sql(
        self,
        v: rusqlite::types::ValueRef<'_>,
    ) -> Result<Option<FieldValue>, &'static str> {
        use rusqlite::types::ValueRef;
        match (self, v) {
            (_, ValueRef::Null) => Ok(None),
            (FieldType::Bool, ValueRef::Integer(0)) => Ok(Some(FieldValue::Bool(false))),
            (FieldType::Bool, ValueRef::Integer(1)) => Ok(Some(FieldValue::Bool(true))),
            (FieldType::Bool, _) => Err("expected INTEGER 0 or 1"),
            (FieldType::Fen | FieldType::Count, ValueRef::Integer(i)) => {
                Ok(Some(FieldValue::Int(i)))
            }
            (FieldType::Fen | FieldType::Count, _) => Err("expected INTEGER"),
            (_, ValueRef::Text(bytes)) => std::str::from_utf8(bytes)
                .map(|s| Some(FieldValue::Text(s.to_owned())))
                .map_err(|_| "expected UTF-8 TEXT"),
            _ => Err("expected TEXT"),
        }
    }
}

/// A field of a record kind.
#[derive(Debug)]
pub struct FieldSpec {
    /// The canonical English name (import header, flat-form key and projection column).
    pub name: &'static str,
    /// The value type.
    pub ty: FieldType,
    /// Whether every record has a value.
    pub required: bool,
    /// Whether the value is derived from other fields (never an import column).
    pub derived: bool,
    /// The Chinese headers accepted by import; the first is the one used in reports.
    pub zh: &'static [&'static str],
}

impl FieldSpec {
    /// Whether the field holds sensitive personal data.
    pub fn sensitive(&self) -> bool {
        is_sensitive(self.name)
    }
}

const fn opt(name: &'static str, ty: FieldType, zh: &'static [&'static str]) -> FieldSpec {
    FieldSpec {
        name,
        ty,
        required: false,
        derived: false,
        zh,
    }
}

const fn req(name: &'static str, ty: FieldType, zh: &'static [&'static str]) -> FieldSpec {
    FieldSpec {
        name,
        ty,
        required: true,
        derived: false,
        zh,
    }
}

const fn key(name: &'static str) -> FieldSpec {
    FieldSpec {
        name,
        ty: FieldType::Key,
        required: true,
        derived: true,
        zh: &[],
    }
}

use FieldType as T;

static ORG_FIELDS: [FieldSpec; 8] = [
    req("org_id", T::Id, &["组织编号", "党组织编号"]),
    req("name", T::Text, &["名称", "组织名称", "党组织名称"]),
    req("kind", T::Enum(&ORG_KIND), &["类别", "组织类别"]),
    opt("parent_id", T::Id, &["上级组织", "上级组织编号"]),
    opt("established_date", T::Date, &["成立日期"]),
    opt("has_committee", T::Bool, &["是否设支委会"]),
    opt("secretary_id", T::Id, &["书记", "书记编号"]),
    opt("dissolved_date", T::Date, &["撤销日期"]),
];

static MEMBER_FIELDS: [FieldSpec; 21] = [
    req("member_id", T::Id, &["党员编号"]),
    opt("name", T::Text, &["姓名"]),
    opt("gender", T::Enum(&GENDER), &["性别"]),
    opt("ethnicity", T::Text, &["民族"]),
    opt("birth_date", T::Date, &["出生日期"]),
    opt(
        "id_number",
        T::Text,
        &["公民身份号码", "身份证号码", "身份证号"],
    ),
    opt("phone", T::Text, &["联系电话", "手机号码", "手机号"]),
    opt("education", T::Text, &["学历"]),
    opt("org_id", T::Id, &["所在党支部", "所在党组织", "组织编号"]),
    opt("category", T::Enum(&CATEGORY), &["人员类别"]),
    opt("status", T::Enum(&STATUS), &["党籍状态"]),
    opt("status_date", T::Date, &["状态变更日期"]),
    opt("application_date", T::Date, &["申请入党日期"]),
    opt(
        "activist_date",
        T::Date,
        &["确定入党积极分子日期", "确定积极分子日期"],
    ),
    opt("candidate_date", T::Date, &["确定发展对象日期"]),
    opt("admission_date", T::Date, &["入党日期"]),
    opt("full_date", T::Date, &["转正日期"]),
    opt(
        "probation_extension_months",
        T::Count,
        &["延长预备期月数", "延长预备期"],
    ),
    opt("introducers", T::Ids, &["入党介绍人"]),
    opt("employment", T::Enum(&EMPLOYMENT), &["工作状态"]),
    opt("monthly_income", T::Fen, &["月收入"]),
];

static DUES_FIELDS: [FieldSpec; 6] = [
    key("dues_id"),
    req("member_id", T::Id, &["党员编号"]),
    req("month", T::Month, &["月份", "缴费月份", "所属月份"]),
    opt("base_income", T::Fen, &["缴费基数"]),
    req(
        "amount",
        T::Fen,
        &["金额", "缴费金额", "党费金额", "缴纳金额"],
    ),
    opt("paid_date", T::Date, &["缴费日期", "缴纳日期"]),
];

static MEETING_FIELDS: [FieldSpec; 6] = [
    key("meeting_id"),
    req("org_id", T::Id, &["组织编号", "党组织编号", "所在党支部"]),
    req(
        "kind",
        T::Enum(&MEETING_KIND),
        &["类别", "会议类型", "活动类型"],
    ),
    req("date", T::Date, &["日期", "会议日期", "活动日期"]),
    opt("attendees", T::Count, &["参会人数", "出席人数", "实到人数"]),
    opt("topic", T::Note, &["主题", "议题"]),
];

static TRANSFER_FIELDS: [FieldSpec; 5] = [
    key("transfer_id"),
    req("member_id", T::Id, &["党员编号"]),
    opt("from_org", T::Id, &["转出组织", "原组织"]),
    opt("to_org", T::Id, &["转入组织", "接收组织"]),
    req("date", T::Date, &["日期", "转接日期"]),
];

static USER_FIELDS: [FieldSpec; 6] = [
    req("user_id", T::Id, &["用户编号", "账号"]),
    opt("name", T::Text, &["姓名"]),
    req("role", T::Enum(&ROLE), &["角色"]),
    opt("org_id", T::Id, &["所属组织", "组织编号"]),
    opt("member_id", T::Id, &["党员编号"]),
    opt("disabled", T::Bool, &["是否停用"]),
];

// ---------------------------------------------------------------------------------------
// Record kinds

/// The kinds of party records. Names match the projection tables of `schema.sql`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordKind {
    /// 党组织.
    Org,
    /// 党员.
    Member,
    /// 党费.
    Dues,
    /// 组织生活.
    Meeting,
    /// 组织关系转接.
    Transfer,
    /// System user.
    User,
}

impl RecordKind {
    /// Every kind.
    pub const ALL: [RecordKind; 6] = [
        RecordKind::Org,
        RecordKind::Member,
        RecordKind::Dues,
        RecordKind::Meeting,
        RecordKind::Transfer,
        RecordKind::User,
    ];

    /// The name used in subjects, entry kinds and as the projection table: `member`.
    pub fn name(self) -> &'static str {
        match self {
            RecordKind::Org => "org",
            RecordKind::Member => "member",
            RecordKind::Dues => "dues",
            RecordKind::Meeting => "meeting",
            RecordKind::Transfer => "transfer",
            RecordKind::User => "user",
        }
    }

    /// The plural used by `djaudit import <kind>`: `members`.
    pub fn plural(self) -> &'static str {
        match self {
            RecordKind::Org => "orgs",
            RecordKind::Member => "members",
            RecordKind::Dues => "dues",
            RecordKind::Meeting => "meetings",
            RecordKind::Transfer => "transfers",
            RecordKind::User => "users",
        }
    }

    /// The Chinese name.
    pub fn zh(self) -> &'static str {
        match self {
            RecordKind::Org => "党组织",
            RecordKind::Member => "党员",
            RecordKind::Dues => "党费",
            RecordKind::Meeting => "组织生活",
            RecordKind::Transfer => "组织关系转接",
            RecordKind::User => "用户",
        }
    }

    /// The projection table (`schema.sql`).
    pub fn table(self) -> &'static str {
        self.name()
    }

    /// The fields, in projection column order; the first is the id column.
    pub fn fields(self) -> &'static [FieldSpec] {
        match self {
            RecordKind::Org => &ORG_FIELDS,
            RecordKind::Member => &MEMBER_FIELDS,
            RecordKind::Dues => &DUES_FIELDS,
            RecordKind::Meeting => &MEETING_FIELDS,
            RecordKind::Transfer => &TRANSFER_FIELDS,
            RecordKind::User => &USER_FIELDS,
        }
    }

    /// The field with a canonical name, and its position in [`fields`](RecordKind::fields).
    pub fn field(self, name: &str) -> Option<(usize, &'static FieldSpec)> {
        self.fields()
            .iter()
            .enumerate()
            .find(|(_, f)| f.name == name)
    }

    /// The id column: `member_id`, `dues_id`, …
    pub fn id_field(self) -> &'static str {
        // INVARIANT: every field table is non-empty and starts with the id column.
        self.fields().first().map_or("", |f| f.name)
    }

    /// The projection columns in `schema.sql` order, without `last_seq`.
    pub fn columns(self) -> impl Iterator<Item = &'static str> {
        self.fields().iter().map(|f| f.name)
    }
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Accepts the singular (`member`) and the plural (`members`).
impl FromStr for RecordKind {
    type Err = String;
    fn from_str(s: &str) -> Result<RecordKind, String> {
        RecordKind::ALL
            .into_iter()
            .find(|k| k.name() == s || k.plural() == s)
            .ok_or_else(|| {
                format!("unknown record kind `{s}`: expected orgs|members|dues|meetings|transfers|users")
            })
    }
}

// ---------------------------------------------------------------------------------------
// Typed slots: the bridge between flat values / import cells and record structs

/// A value after validation, before it is placed in a record struct.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Typed {
    Id(Id),
    Key(String),
    Text(String),
    Date(NaiveDate),
    Month(YearMonth),
    Fen(Fen),
    Count(u32),
    Bool(bool),
    Enum(&'static str),
    Ids(Vec<Id>),
}

/// A record struct field type built from a [`Typed`] value.
pub(crate) trait FromTyped: Sized {
    const EXPECTED: &'static str;
    fn from_typed(t: Typed) -> Option<Self>;
}

/// A record struct field type written to the flat form.
pub(crate) trait ToValue {
    fn to_value(&self) -> FieldValue;
}

macro_rules! typed_scalar {
    ($ty:ty, $variant:ident, $expected:literal, |$v:ident| $to:expr) => {
        impl FromTyped for $ty {
            const EXPECTED: &'static str = $expected;
            fn from_typed(t: Typed) -> Option<$ty> {
                match t {
                    Typed::$variant(x) => Some(x),
                    _ => None,
                }
            }
        }
        impl ToValue for $ty {
            fn to_value(&self) -> FieldValue {
                let $v = self;
                $to
            }
        }
    };
}

typed_scalar!(Id, Id, "an id", |v| FieldValue::Text(v.0.clone()));
typed_scalar!(NaiveDate, Date, "a date", |v| FieldValue::Text(
    format_date(*v)
));
typed_scalar!(YearMonth, Month, "a month", |v| FieldValue::Text(
    v.to_string()
));
typed_scalar!(Fen, Fen, "an amount", |v| FieldValue::Int(v.0));
typed_scalar!(u32, Count, "a count", |v| FieldValue::Int(i64::from(*v)));
typed_scalar!(bool, Bool, "a flag", |v| FieldValue::Bool(*v));
typed_scalar!(Vec<Id>, Ids, "a list of ids", |v| {
    let ids: Vec<&str> = v.iter().map(Id::as_str).collect();
    FieldValue::Text(ids.join(";"))
});

impl FromTyped for String {
    const EXPECTED: &'static str = "text";
    fn from_typed(t: Typed) -> Option<String> {
        match t {
            Typed::Text(s) | Typed::Key(s) => Some(s),
            _ => None,
        }
    }
}

impl ToValue for String {
    fn to_value(&self) -> FieldValue {
        FieldValue::Text(self.clone())
    }
}

/// Validated values of one record, by position in the kind's field table.
pub(crate) struct Slots {
    kind: RecordKind,
    values: Vec<Option<Typed>>,
    /// Where the next [`take`](Slots::take) is expected: record builders take fields in
    /// table order, so the name search is usually one comparison.
    next: usize,
}

impl Slots {
    pub(crate) fn new(kind: RecordKind) -> Slots {
        Slots {
            kind,
            values: kind.fields().iter().map(|_| None).collect(),
            next: 0,
        }
    }

    /// Sets the value of the field at `index` (ignored if out of range).
    pub(crate) fn set(&mut self, index: usize, value: Typed) {
        if let Some(slot) = self.values.get_mut(index) {
            *slot = Some(value);
        }
    }

    pub(crate) fn is_set(&self, index: usize) -> bool {
        matches!(self.values.get(index), Some(Some(_)))
    }

    fn take(&mut self, name: &'static str) -> Option<Typed> {
        let fields = self.kind.fields();
        let index = match fields.get(self.next) {
            Some(spec) if spec.name == name => self.next,
            _ => self.kind.field(name)?.0,
        };
        self.next = index + 1;
        self.values.get_mut(index)?.take()
    }

    fn opt<V: FromTyped>(&mut self, name: &'static str) -> Result<Option<V>, ModelError> {
        match self.take(name) {
            None => Ok(None),
            Some(t) => V::from_typed(t).map(Some).ok_or(ModelError::WrongType {
                field: name,
                expected: V::EXPECTED,
            }),
        }
    }

    fn req<V: FromTyped>(&mut self, name: &'static str) -> Result<V, ModelError> {
        self.opt(name)?
            .ok_or(ModelError::MissingField { field: name })
    }
}

fn put<V: ToValue>(f: &mut Fields, name: &'static str, v: &V) {
    f.insert(name, v.to_value());
}

fn put_opt<V: ToValue>(f: &mut Fields, name: &'static str, v: &Option<V>) {
    if let Some(v) = v {
        f.insert(name, v.to_value());
    }
}

// ---------------------------------------------------------------------------------------
// Records

/// A party organisation (党组织).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Org {
    pub org_id: Id,
    pub name: String,
    pub kind: OrgKind,
    pub parent_id: Option<Id>,
    pub established_date: Option<NaiveDate>,
    pub has_committee: Option<bool>,
    pub secretary_id: Option<Id>,
    pub dissolved_date: Option<NaiveDate>,
}

/// A party member (党员). Only `member_id` is required: missing data is for the checks to
/// report, not a reason to refuse the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub member_id: Id,
    pub name: Option<String>,
    pub gender: Option<Gender>,
    pub ethnicity: Option<String>,
    pub birth_date: Option<NaiveDate>,
    /// 公民身份号码 as recorded (sensitive; its format is judged by the checks).
    pub id_number: Option<String>,
    /// 联系电话 as recorded (sensitive).
    pub phone: Option<String>,
    pub education: Option<String>,
    pub org_id: Option<Id>,
    pub category: Option<Category>,
    pub status: Option<Status>,
    pub status_date: Option<NaiveDate>,
    pub application_date: Option<NaiveDate>,
    pub activist_date: Option<NaiveDate>,
    pub candidate_date: Option<NaiveDate>,
    pub admission_date: Option<NaiveDate>,
    pub full_date: Option<NaiveDate>,
    pub probation_extension_months: Option<u32>,
    /// 入党介绍人 in file order; empty when absent.
    pub introducers: Vec<Id>,
    pub employment: Option<Employment>,
    /// 月收入 (sensitive).
    pub monthly_income: Option<Fen>,
}

/// A dues payment (党费) for one month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dues {
    pub member_id: Id,
    pub month: YearMonth,
    /// 缴费基数 (sensitive).
    pub base_income: Option<Fen>,
    pub amount: Fen,
    pub paid_date: Option<NaiveDate>,
    /// 1 for the first row of this member and month in its file, 2 for the next, …
    pub occurrence: u32,
}

/// An organisational-life meeting (组织生活).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meeting {
    pub org_id: Id,
    pub kind: MeetingKind,
    pub date: NaiveDate,
    pub attendees: Option<u32>,
    pub topic: Option<String>,
    /// 1 for the first row with this org, date and kind in its file, 2 for the next, …
    pub occurrence: u32,
}

/// A transfer of a member's organisational relation (组织关系转接).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub member_id: Id,
    pub from_org: Option<Id>,
    pub to_org: Option<Id>,
    pub date: NaiveDate,
    /// 1 for the first row with this member and date in its file, 2 for the next, …
    pub occurrence: u32,
}

/// A system user account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub user_id: Id,
    pub name: Option<String>,
    pub role: Role,
    pub org_id: Option<Id>,
    /// For role `member`: the member record that is theirs.
    pub member_id: Option<Id>,
    /// Absent in an import file or a flat map means `false`.
    pub disabled: bool,
}

fn occurrence_suffix(occurrence: u32) -> String {
    if occurrence > 1 {
        format!("#{occurrence}")
    } else {
        String::new()
    }
}

/// `<member_id>/<month>`, plus `#n` for the n-th row (n ≥ 2) of that member and month.
pub fn dues_id(member_id: &Id, month: YearMonth, occurrence: u32) -> String {
    format!("{member_id}/{month}{}", occurrence_suffix(occurrence))
}

/// `<org_id>/<date>/<kind>`, plus `#n` for the n-th row (n ≥ 2) with that key.
pub fn meeting_id(org_id: &Id, date: NaiveDate, kind: MeetingKind, occurrence: u32) -> String {
    format!(
        "{org_id}/{}/{kind}{}",
        format_date(date),
        occurrence_suffix(occurrence)
    )
}

/// `<member_id>/<date>`, plus `#n` for the n-th row (n ≥ 2) with that key.
pub fn transfer_id(member_id: &Id, date: NaiveDate, occurrence: u32) -> String {
    format!(
        "{member_id}/{}{}",
        format_date(date),
        occurrence_suffix(occurrence)
    )
}

/// Splits a derived id into its key part and occurrence (`M1/2026-03#2` → (`M1/2026-03`, 2)).
pub fn split_occurrence(id: &str) -> Option<(&str, u32)> {
    match id.split_once('#') {
        None => Some((id, 1)),
        Some((base, n)) => {
            let valid = !n.is_empty()
                && !n.starts_with('0')
                && n.len() <= 9
                && n.bytes().all(|b| b.is_ascii_digit());
            let n: u32 = if valid { n.parse().ok()? } else { return None };
            (n >= 2).then_some((base, n))
        }
    }
}

/// Sets the occurrence from a flat derived id after checking it matches the key fields.
fn check_key(
    field: &'static str,
    key: Option<String>,
    derive: impl Fn(u32) -> String,
) -> Result<u32, ModelError> {
    let Some(key) = key else {
        return Ok(1);
    };
    let (_, occurrence) = split_occurrence(&key).ok_or(ModelError::KeyMismatch { field })?;
    if derive(occurrence) == key {
        Ok(occurrence)
    } else {
        Err(ModelError::KeyMismatch { field })
    }
}

/// A party record of any kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Org(Org),
    Member(Member),
    Dues(Dues),
    Meeting(Meeting),
    Transfer(Transfer),
    User(User),
}

impl Record {
    /// The record's kind.
    pub fn kind(&self) -> RecordKind {
        match self {
            Record::Org(_) => RecordKind::Org,
            Record::Member(_) => RecordKind::Member,
            Record::Dues(_) => RecordKind::Dues,
            Record::Meeting(_) => RecordKind::Meeting,
            Record::Transfer(_) => RecordKind::Transfer,
            Record::User(_) => RecordKind::User,
        }
    }

    /// The record's id (the value of its kind's id column).
    pub fn id(&self) -> String {
        match self {
            Record::Org(o) => o.org_id.to_string(),
            Record::Member(m) => m.member_id.to_string(),
            Record::Dues(d) => dues_id(&d.member_id, d.month, d.occurrence),
            Record::Meeting(m) => meeting_id(&m.org_id, m.date, m.kind, m.occurrence),
            Record::Transfer(t) => transfer_id(&t.member_id, t.date, t.occurrence),
            Record::User(u) => u.user_id.to_string(),
        }
    }

    /// The ledger subject: `member/M000123`, `dues/M000123/2026-03#2`, …
    pub fn subject(&self) -> String {
        format!("{}/{}", self.kind().name(), self.id())
    }

    /// The flat canonical form (every present field, including the derived id).
    pub fn to_fields(&self) -> Fields {
        let mut f = Fields::new();
        match self {
            Record::Org(o) => {
                put(&mut f, "org_id", &o.org_id);
                put(&mut f, "name", &o.name);
                put(&mut f, "kind", &o.kind);
                put_opt(&mut f, "parent_id", &o.parent_id);
                put_opt(&mut f, "established_date", &o.established_date);
                put_opt(&mut f, "has_committee", &o.has_committee);
                put_opt(&mut f, "secretary_id", &o.secretary_id);
                put_opt(&mut f, "dissolved_date", &o.dissolved_date);
            }
            Record::Member(m) => {
                put(&mut f, "member_id", &m.member_id);
                put_opt(&mut f, "name", &m.name);
                put_opt(&mut f, "gender", &m.gender);
                put_opt(&mut f, "ethnicity", &m.ethnicity);
                put_opt(&mut f, "birth_date", &m.birth_date);
                put_opt(&mut f, "id_number", &m.id_number);
                put_opt(&mut f, "phone", &m.phone);
                put_opt(&mut f, "education", &m.education);
                put_opt(&mut f, "org_id", &m.org_id);
                put_opt(&mut f, "category", &m.category);
                put_opt(&mut f, "status", &m.status);
                put_opt(&mut f, "status_date", &m.status_date);
                put_opt(&mut f, "application_date", &m.application_date);
                put_opt(&mut f, "activist_date", &m.activist_date);
                put_opt(&mut f, "candidate_date", &m.candidate_date);
                put_opt(&mut f, "admission_date", &m.admission_date);
                put_opt(&mut f, "full_date", &m.full_date);
                put_opt(
                    &mut f,
                    "probation_extension_months",
                    &m.probation_extension_months,
                );
                if !m.introducers.is_empty() {
                    put(&mut f, "introducers", &m.introducers);
                }
                put_opt(&mut f, "employment", &m.employment);
                put_opt(&mut f, "monthly_income", &m.monthly_income);
            }
            Record::Dues(d) => {
                f.insert("dues_id", FieldValue::Text(self.id()));
                put(&mut f, "member_id", &d.member_id);
                put(&mut f, "month", &d.month);
                put_opt(&mut f, "base_income", &d.base_income);
                put(&mut f, "amount", &d.amount);
                put_opt(&mut f, "paid_date", &d.paid_date);
            }
            Record::Meeting(m) => {
                f.insert("meeting_id", FieldValue::Text(self.id()));
                put(&mut f, "org_id", &m.org_id);
                put(&mut f, "kind", &m.kind);
                put(&mut f, "date", &m.date);
                put_opt(&mut f, "attendees", &m.attendees);
                put_opt(&mut f, "topic", &m.topic);
            }
            Record::Transfer(t) => {
                f.insert("transfer_id", FieldValue::Text(self.id()));
                put(&mut f, "member_id", &t.member_id);
                put_opt(&mut f, "from_org", &t.from_org);
                put_opt(&mut f, "to_org", &t.to_org);
                put(&mut f, "date", &t.date);
            }
            Record::User(u) => {
                put(&mut f, "user_id", &u.user_id);
                put_opt(&mut f, "name", &u.name);
                put(&mut f, "role", &u.role);
                put_opt(&mut f, "org_id", &u.org_id);
                put_opt(&mut f, "member_id", &u.member_id);
                put(&mut f, "disabled", &u.disabled);
            }
        }
        f
    }

    /// Builds a record from its flat canonical form. Every key must be a field of `kind`,
    /// every value canonical, every required field present, and a derived id must match the
    /// key fields (its `#n` suffix sets the occurrence).
    pub fn from_fields(kind: RecordKind, fields: &Fields) -> Result<Record, ModelError> {
        let mut slots = Slots::new(kind);
        for (name, value) in fields {
            let (index, spec) = kind.field(name).ok_or_else(|| ModelError::UnknownField {
                kind: kind.name(),
                field: (*name).to_owned(),
            })?;
            let typed = spec
                .ty
                .check_value(value)
                .map_err(|why| ModelError::InvalidValue {
                    field: spec.name,
                    why,
                })?;
            slots.set(index, typed);
        }
        for (index, spec) in kind.fields().iter().enumerate() {
            if spec.required && !slots.is_set(index) {
                return Err(ModelError::MissingField { field: spec.name });
            }
        }
        Record::from_slots(kind, slots)
    }

    /// Builds a record from validated slots. A derived id, if set, must match the key
    /// fields; if unset the occurrence is 1.
    pub(crate) fn from_slots(kind: RecordKind, mut s: Slots) -> Result<Record, ModelError> {
        Ok(match kind {
            RecordKind::Org => Record::Org(Org {
                org_id: s.req("org_id")?,
                name: s.req("name")?,
                kind: s.req("kind")?,
                parent_id: s.opt("parent_id")?,
                established_date: s.opt("established_date")?,
                has_committee: s.opt("has_committee")?,
                secretary_id: s.opt("secretary_id")?,
                dissolved_date: s.opt("dissolved_date")?,
            }),
            RecordKind::Member => Record::Member(Member {
                member_id: s.req("member_id")?,
                name: s.opt("name")?,
                gender: s.opt("gender")?,
                ethnicity: s.opt("ethnicity")?,
                birth_date: s.opt("birth_date")?,
                id_number: s.opt("id_number")?,
                phone: s.opt("phone")?,
                education: s.opt("education")?,
                org_id: s.opt("org_id")?,
                category: s.opt("category")?,
                status: s.opt("status")?,
                status_date: s.opt("status_date")?,
                application_date: s.opt("application_date")?,
                activist_date: s.opt("activist_date")?,
                candidate_date: s.opt("candidate_date")?,
                admission_date: s.opt("admission_date")?,
                full_date: s.opt("full_date")?,
                probation_extension_months: s.opt("probation_extension_months")?,
                introducers: s.opt("introducers")?.unwrap_or_default(),
                employment: s.opt("employment")?,
                monthly_income: s.opt("monthly_income")?,
            }),
            RecordKind::Dues => {
                let key: Option<String> = s.opt("dues_id")?;
                let mut d = Dues {
                    member_id: s.req("member_id")?,
                    month: s.req("month")?,
                    base_income: s.opt("base_income")?,
                    amount: s.req("amount")?,
                    paid_date: s.opt("paid_date")?,
                    occurrence: 1,
                };
                d.occurrence = check_key("dues_id", key, |n| dues_id(&d.member_id, d.month, n))?;
                Record::Dues(d)
            }
            RecordKind::Meeting => {
                let key: Option<String> = s.opt("meeting_id")?;
                let mut m = Meeting {
                    org_id: s.req("org_id")?,
                    kind: s.req("kind")?,
                    date: s.req("date")?,
                    attendees: s.opt("attendees")?,
                    topic: s.opt("topic")?,
                    occurrence: 1,
                };
                m.occurrence = check_key("meeting_id", key, |n| {
                    meeting_id(&m.org_id, m.date, m.kind, n)
                })?;
                Record::Meeting(m)
            }
            RecordKind::Transfer => {
                let key: Option<String> = s.opt("transfer_id")?;
                let mut t = Transfer {
                    member_id: s.req("member_id")?,
                    from_org: s.opt("from_org")?,
                    to_org: s.opt("to_org")?,
                    date: s.req("date")?,
                    occurrence: 1,
                };
                t.occurrence =
                    check_key("transfer_id", key, |n| transfer_id(&t.member_id, t.date, n))?;
                Record::Transfer(t)
            }
            RecordKind::User => Record::User(User {
                user_id: s.req("user_id")?,
                name: s.opt("name")?,
                role: s.req("role")?,
                org_id: s.opt("org_id")?,
                member_id: s.opt("member_id")?,
                disabled: s.opt("disabled")?.unwrap_or(false),
            }),
        })
    }

    /// Reads a projection row (`SELECT <kind.columns()> FROM <kind.table()>`, any column
    /// order, extra columns such as `last_seq` ignored) into a record.
    pub fn from_row(kind: RecordKind, row: &rusqlite::Row<'_>) -> Result<Record, ModelError> {
        Record::from_fields(kind, &fields_from_row(kind, row)?)
    }

    /// The changes that turn `self` into `new`. Both must be the same record (same subject).
    pub fn diff(&self, new: &Record) -> Result<Changes, ModelError> {
        let (left, right) = (self.subject(), new.subject());
        if left != right {
            return Err(ModelError::SubjectMismatch { left, right });
        }
        Ok(diff(&self.to_fields(), &new.to_fields()))
    }

    /// The record after `changes` (checked as [`apply`] does, then validated).
    pub fn apply(&self, changes: &Changes) -> Result<Record, ModelError> {
        let mut fields = self.to_fields();
        apply(&mut fields, changes)?;
        let after = Record::from_fields(self.kind(), &fields)?;
        if after.subject() != self.subject() {
            return Err(ModelError::SubjectMismatch {
                left: self.subject(),
                right: after.subject(),
            });
        }
        Ok(after)
    }

    /// For dues, meetings and transfers: the key that repeats within a file (id prefix and a
    /// number standing for the rest of the key), used to number repeated rows.
    pub(crate) fn repeat_key(&self) -> Option<(&str, u32)> {
        match self {
            Record::Dues(d) => Some((d.member_id.as_str(), d.month.index())),
            Record::Meeting(m) => {
                let kind = MeetingKind::ALL
                    .iter()
                    .position(|k| *k == m.kind)
                    .unwrap_or(0);
                let days = m.date.num_days_from_ce().unsigned_abs();
                // INVARIANT: years are at most 9999, so days·8 + 7 < 2³².
                Some((m.org_id.as_str(), days * 8 + kind as u32))
            }
            Record::Transfer(t) => Some((
                t.member_id.as_str(),
                t.date.num_days_from_ce().unsigned_abs(),
            )),
            _ => None,
        }
    }

    /// Sets the occurrence of a dues, meeting or transfer record (no effect on others).
    pub(crate) fn set_occurrence(&mut self, n: u32) {
        match self {
            Record::Dues(d) => d.occurrence = n,
            Record::Meeting(m) => m.occurrence = n,
            Record::Transfer(t) => t.occurrence = n,
            _ => {}
        }
    }
}

/// Reads the columns of `kind` from a projection row into the flat form.
pub fn fields_from_row(kind: RecordKind, row: &rusqlite::Row<'_>) -> Result<Fields, ModelError> {
    let mut fields = Fields::new();
    for spec in kind.fields() {
        let value = row.get_ref(spec.name).map_err(|e| ModelError::Column {
            column: spec.name,
            why: e.to_string(),
        })?;
        let value = spec.ty.read_sql(value).map_err(|why| ModelError::Column {
            column: spec.name,
            why: why.to_owned(),
        })?;
        if let Some(value) = value {
            fields.insert(spec.name, value);
        }
    }
    Ok(fields)
}

// ---------------------------------------------------------------------------------------
// Diff and apply

/// The changes that turn `old` into `new`: every field whose value differs, with `None`
/// for an absent side. Equal maps give no changes.
pub fn diff(old: &Fields, new: &Fields) -> Changes {
    let mut changes = Changes::new();
    for (name, before) in old {
        let after = new.get(name);
        if after != Some(before) {
            changes.insert(
                name,
                Change {
                    old: Some(before.clone()),
                    new: after.cloned(),
                },
            );
        }
    }
    for (name, after) in new {
        if !old.contains_key(name) {
            changes.insert(
                name,
                Change {
                    old: None,
                    new: Some(after.clone()),
                },
            );
        }
    }
    changes
}

/// Applies `changes` to `fields`: all or nothing. Each change's `old` must be the current
/// value (absent for `None`), otherwise nothing is changed and the field is named.
pub fn apply(fields: &mut Fields, changes: &Changes) -> Result<(), ModelError> {
    for (name, change) in changes {
        if fields.get(name) != change.old.as_ref() {
            return Err(ModelError::Conflict { field: name });
        }
    }
    for (name, change) in changes {
        match &change.new {
            Some(v) => fields.insert(name, v.clone()),
            None => fields.remove(name),
        };
    }
    Ok(())
}

/// The JSON object of a flat record: `{"member_id": "M1", "monthly_income": 450000, …}`.
pub fn fields_to_json(fields: &Fields) -> Json {
    Json::Object(
        fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.to_json()))
            .collect(),
    )
}

/// Reads a flat record from a JSON object. Keys must be fields of `kind`; `null` values
/// are absent. Values are not checked here ([`Record::from_fields`] does that).
pub fn fields_from_json(kind: RecordKind, json: &Json) -> Result<Fields, ModelError> {
    let object = json
        .as_object()
        .ok_or(ModelError::Json("expected a JSON object"))?;
    let mut fields = Fields::new();
    for (key, value) in object {
        let name = field_name(kind, key)?;
        let value = FieldValue::from_json(value).map_err(|why| ModelError::InvalidValue {
            field: name,
            why: why.to_owned(),
        })?;
        if let Some(value) = value {
            fields.insert(name, value);
        }
    }
    Ok(fields)
}

/// The JSON object of changes: `{"phone": ["13900000001", "13900000002"], "name": [null, "x"]}`.
pub fn changes_to_json(changes: &Changes) -> Json {
    let side = |v: &Option<FieldValue>| v.as_ref().map_or(Json::Null, FieldValue::to_json);
    Json::Object(
        changes
            .iter()
            .map(|(k, c)| {
                (
                    (*k).to_owned(),
                    Json::Array(vec![side(&c.old), side(&c.new)]),
                )
            })
            .collect::<Map<String, Json>>(),
    )
}

/// Reads changes from their JSON object. Each value must be a pair `[old, new]` of
/// distinct values (`null` = absent) and each key a field of `kind`.
pub fn changes_from_json(kind: RecordKind, json: &Json) -> Result<Changes, ModelError> {
    let object = json
        .as_object()
        .ok_or(ModelError::Json("expected a JSON object"))?;
    let mut changes = Changes::new();
    for (key, value) in object {
        let name = field_name(kind, key)?;
        let bad = |why: &str| ModelError::InvalidValue {
            field: name,
            why: why.to_owned(),
        };
        let pair = match value.as_array().map(Vec::as_slice) {
            Some([old, new]) => (old, new),
            _ => return Err(bad("a change must be a pair [old, new]")),
        };
        let old = FieldValue::from_json(pair.0).map_err(bad)?;
        let new = FieldValue::from_json(pair.1).map_err(bad)?;
        if old == new {
            return Err(bad("a change must have different old and new values"));
        }
        changes.insert(name, Change { old, new });
    }
    Ok(changes)
}

fn field_name(kind: RecordKind, key: &str) -> Result<&'static str, ModelError> {
    kind.field(key)
        .map(|(_, spec)| spec.name)
        .ok_or_else(|| ModelError::UnknownField {
            kind: kind.name(),
            field: key.to_owned(),
        })
}

/// A set of fields of one record kind (at most 32 fields per kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSet {
    kind: RecordKind,
    bits: u32,
}

impl FieldSet {
    /// No fields.
    pub fn empty(kind: RecordKind) -> FieldSet {
        FieldSet { kind, bits: 0 }
    }

    /// Every field of `kind`.
    pub fn all(kind: RecordKind) -> FieldSet {
        let n = kind.fields().len();
        FieldSet {
            kind,
            bits: if n >= 32 { u32::MAX } else { (1u32 << n) - 1 },
        }
    }

    /// The kind the set belongs to.
    pub fn kind(self) -> RecordKind {
        self.kind
    }

    /// Adds the field at `index` of the kind's field table.
    pub fn insert_index(&mut self, index: usize) {
        if index < 32 {
            self.bits |= 1 << index;
        }
    }

    /// Whether the field at `index` is in the set.
    pub fn contains_index(self, index: usize) -> bool {
        index < 32 && self.bits & (1 << index) != 0
    }

    /// Whether the named field is in the set.
    pub fn contains(self, name: &str) -> bool {
        self.kind
            .field(name)
            .is_some_and(|(i, _)| self.contains_index(i))
    }

    /// The names of the fields in the set, in field-table order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        self.kind
            .fields()
            .iter()
            .enumerate()
            .filter(move |(i, _)| self.contains_index(*i))
            .map(|(_, f)| f.name)
    }

    /// Drops the changes of fields not in the set.
    pub fn restrict(self, changes: &mut Changes) {
        changes.retain(|name, _| self.contains(name));
    }
}

/// Errors in the flat form of a record. Messages never contain field values.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ModelError {
    #[error("unknown field `{field}` for {kind}")]
    UnknownField { kind: &'static str, field: String },
    #[error("missing required field `{field}`")]
    MissingField { field: &'static str },
    #[error("field `{field}` must be {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    #[error("field `{field}`: {why}")]
    InvalidValue { field: &'static str, why: String },
    #[error("field `{field}` does not match the record's key fields")]
    KeyMismatch { field: &'static str },
    #[error("`{left}` and `{right}` are not the same record")]
    SubjectMismatch { left: String, right: String },
    #[error("change to `{field}` does not apply: the current value is not its old value")]
    Conflict { field: &'static str },
    #[error("{0}")]
    Json(&'static str),
    #[error("cannot read column `{column}`: {why}")]
    Column { column: &'static str, why: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> NaiveDate {
        parse_canonical_date(s).unwrap()
    }

    fn id(s: &str) -> Id {
        Id::new(s).unwrap()
    }

    fn sample_member() -> Member {
        Member {
            member_id: id("M000123"),
            name: Some("张三".into()),
            gender: Some(Gender::Male),
            ethnicity: Some("汉族".into()),
            birth_date: Some(date("1990-01-01")),
            id_number: Some("230102199001011234".into()),
            phone: Some("13900000001".into()),
            education: Some("本科".into()),
            org_id: Some(id("B001")),
            category: Some(Category::Full),
            status: Some(Status::Active),
            status_date: None,
            application_date: Some(date("2012-03-01")),
            activist_date: Some(date("2012-06-01")),
            candidate_date: Some(date("2013-07-01")),
            admission_date: Some(date("2014-07-01")),
            full_date: Some(date("2015-07-01")),
            probation_extension_months: Some(0),
            introducers: vec![id("M000001"), id("M000002")],
            employment: Some(Employment::Employed),
            monthly_income: Some(Fen::new(450_050).unwrap()),
        }
    }

    fn samples() -> Vec<Record> {
        vec![
            Record::Org(Org {
                org_id: id("B001"),
                name: "第一党支部".into(),
                kind: OrgKind::Branch,
                parent_id: Some(id("C001")),
                established_date: Some(date("2001-07-01")),
                has_committee: Some(true),
                secretary_id: Some(id("M000001")),
                dissolved_date: None,
            }),
            Record::Member(sample_member()),
            Record::Dues(Dues {
                member_id: id("M000123"),
                month: YearMonth::new(2026, 3).unwrap(),
                base_income: Some(Fen::new(450_000).unwrap()),
                amount: Fen::new(4_500).unwrap(),
                paid_date: Some(date("2026-03-15")),
                occurrence: 2,
            }),
            Record::Meeting(Meeting {
                org_id: id("B001"),
                kind: MeetingKind::ThemeDay,
                date: date("2026-03-05"),
                attendees: Some(12),
                topic: Some("学习党章".into()),
                occurrence: 1,
            }),
            Record::Transfer(Transfer {
                member_id: id("M000123"),
                from_org: Some(id("B001")),
                to_org: None,
                date: date("2026-04-01"),
                occurrence: 3,
            }),
            Record::User(User {
                user_id: id("u-zhang"),
                name: Some("张".into()),
                role: Role::Auditor,
                org_id: None,
                member_id: None,
                disabled: true,
            }),
        ]
    }

    #[test]
    fn subjects_and_derived_ids() {
        let subjects: Vec<String> = samples().iter().map(Record::subject).collect();
        assert_eq!(
            subjects,
            [
                "org/B001",
                "member/M000123",
                "dues/M000123/2026-03#2",
                "meeting/B001/2026-03-05/theme_day",
                "transfer/M000123/2026-04-01#3",
                "user/u-zhang",
            ]
        );
    }

    #[test]
    fn flat_form_round_trips_for_every_kind() {
        for record in samples() {
            let fields = record.to_fields();
            assert_eq!(Record::from_fields(record.kind(), &fields).unwrap(), record);
            let json = fields_to_json(&fields);
            let back = fields_from_json(record.kind(), &json).unwrap();
            assert_eq!(back, fields, "{}", record.subject());
        }
    }

    #[test]
    fn flat_form_uses_documented_value_conventions() {
        let f = Record::Member(sample_member()).to_fields();
        assert_eq!(f["introducers"], FieldValue::Text("M000001;M000002".into()));
        assert_eq!(f["monthly_income"], FieldValue::Int(450_050));
        assert_eq!(f["birth_date"], FieldValue::Text("1990-01-01".into()));
        assert_eq!(f["gender"], FieldValue::Text("male".into()));
        assert!(!f.contains_key("status_date"));
        let json = fields_to_json(&f).to_string();
        assert!(json.contains(r#""monthly_income":450050"#), "{json}");
        let dues = &samples()[2];
        assert_eq!(
            dues.to_fields()["dues_id"],
            FieldValue::Text("M000123/2026-03#2".into())
        );
    }

    #[test]
    fn field_tables_are_consistent() {
        let mut sensitive = Vec::new();
        for kind in RecordKind::ALL {
            let fields = kind.fields();
            assert!(fields.len() <= 32);
            assert_eq!(fields[0].name, kind.id_field());
            assert!(fields[0].required);
            for (i, f) in fields.iter().enumerate() {
                assert_eq!(kind.field(f.name).unwrap().0, i);
                assert_eq!(f.derived, f.zh.is_empty(), "{kind}.{}", f.name);
                if f.sensitive() {
                    sensitive.push(f.name);
                }
            }
            assert_eq!(kind.name().parse::<RecordKind>().unwrap(), kind);
            assert_eq!(kind.plural().parse::<RecordKind>().unwrap(), kind);
        }
        sensitive.sort_unstable();
        assert_eq!(
            sensitive,
            ["base_income", "id_number", "monthly_income", "phone"]
        );
    }

    #[test]
    fn columns_match_schema_sql() {
        let db = rusqlite::Connection::open_in_memory().unwrap();
        db.execute_batch(include_str!("schema.sql")).unwrap();
        for kind in RecordKind::ALL {
            let mut stmt = db
                .prepare(&format!("PRAGMA table_info({})", kind.table()))
                .unwrap();
            let cols: Vec<String> = stmt
                .query_map([], |r| r.get::<_, String>(1))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let mut ours: Vec<&str> = kind.columns().collect();
            ours.push("last_seq");
            assert_eq!(cols, ours, "{kind}");
        }
    }

    #[test]
    fn projection_rows_round_trip() {
        let db = rusqlite::Connection::open_in_memory().unwrap();
        db.execute_batch(include_str!("schema.sql")).unwrap();
        for record in samples() {
            let kind = record.kind();
            let fields = record.to_fields();
            let cols: Vec<&str> = kind.columns().collect();
            let params: Vec<Option<&FieldValue>> = cols.iter().map(|c| fields.get(c)).collect();
            let sql = format!(
                "INSERT INTO {} ({}, last_seq) VALUES ({}, 7)",
                kind.table(),
                cols.join(","),
                vec!["?"; cols.len()].join(",")
            );
            db.execute(&sql, rusqlite::params_from_iter(params))
                .unwrap();
            let sql = format!(
                "SELECT * FROM {} WHERE {} = ?1",
                kind.table(),
                kind.id_field()
            );
            let back = db
                .query_row(&sql, [record.id()], |row| Ok(Record::from_row(kind, row)))
                .unwrap()
                .unwrap();
            assert_eq!(back, record);
        }
    }

    #[test]
    fn diff_and_apply_round_trip() {
        let old = sample_member();
        let mut new = old.clone();
        new.phone = Some("13900000002".into());
        new.status_date = Some(date("2026-01-01"));
        new.ethnicity = None;
        new.introducers = vec![id("M000002"), id("M000009")];
        let (old, new) = (Record::Member(old), Record::Member(new));
        let changes = old.diff(&new).unwrap();
        assert_eq!(
            changes.keys().copied().collect::<Vec<_>>(),
            ["ethnicity", "introducers", "phone", "status_date"]
        );
        assert_eq!(changes["ethnicity"].new, None);
        assert_eq!(changes["status_date"].old, None);
        assert_eq!(old.apply(&changes).unwrap(), new);
        // JSON round trip of the changes
        let json = changes_to_json(&changes);
        assert_eq!(
            json["phone"],
            serde_json::json!(["13900000001", "13900000002"])
        );
        assert_eq!(json["ethnicity"], serde_json::json!(["汉族", null]));
        assert_eq!(
            changes_from_json(RecordKind::Member, &json).unwrap(),
            changes
        );
        // no change, no entries
        assert!(old.diff(&old).unwrap().is_empty());
    }

    #[test]
    fn fail_apply_on_stale_old_value_changes_nothing() {
        let record = Record::Member(sample_member());
        let mut fields = record.to_fields();
        let before = fields.clone();
        let mut changes = Changes::new();
        changes.insert(
            "name",
            Change {
                old: None,
                new: Some(FieldValue::Text("李四".into())),
            },
        );
        changes.insert(
            "phone",
            Change {
                old: Some(FieldValue::Text("13900000009".into())),
                new: Some(FieldValue::Text("13900000002".into())),
            },
        );
        assert_eq!(
            apply(&mut fields, &changes),
            Err(ModelError::Conflict { field: "name" })
        );
        assert_eq!(fields, before);
        assert!(matches!(
            record.apply(&changes),
            Err(ModelError::Conflict { .. })
        ));
    }

    #[test]
    fn fail_apply_to_invalid_value_or_other_subject() {
        let record = Record::Member(sample_member());
        let mut changes = Changes::new();
        changes.insert(
            "gender",
            Change {
                old: Some(FieldValue::Text("male".into())),
                new: Some(FieldValue::Text("男".into())),
            },
        );
        assert!(matches!(
            record.apply(&changes),
            Err(ModelError::InvalidValue {
                field: "gender",
                ..
            })
        ));
        let mut changes = Changes::new();
        changes.insert(
            "member_id",
            Change {
                old: Some(FieldValue::Text("M000123".into())),
                new: Some(FieldValue::Text("M000124".into())),
            },
        );
        assert!(matches!(
            record.apply(&changes),
            Err(ModelError::SubjectMismatch { .. })
        ));
        let other = Record::Org(match &samples()[0] {
            Record::Org(o) => o.clone(),
            _ => unreachable!(),
        });
        assert!(record.diff(&other).is_err());
    }

    #[test]
    fn fail_from_fields_rejects_non_canonical_values() {
        let base = Record::Member(sample_member()).to_fields();
        let cases: [(&str, FieldValue); 7] = [
            ("birth_date", FieldValue::Text("1990/1/1".into())),
            ("gender", FieldValue::Text("男".into())),
            ("monthly_income", FieldValue::Int(-1)),
            ("monthly_income", FieldValue::Text("4500".into())),
            ("introducers", FieldValue::Text("M1;;M2".into())),
            ("name", FieldValue::Text("a\nb".into())),
            ("probation_extension_months", FieldValue::Int(-6)),
        ];
        for (field, value) in cases {
            let mut f = base.clone();
            f.insert(field, value);
            let err = Record::from_fields(RecordKind::Member, &f).unwrap_err();
            assert!(
                matches!(err, ModelError::InvalidValue { field: got, .. } if got == field),
                "{field}: {err}"
            );
        }
        let mut f = base.clone();
        f.remove("member_id");
        assert_eq!(
            Record::from_fields(RecordKind::Member, &f),
            Err(ModelError::MissingField { field: "member_id" })
        );
        let mut f = base;
        f.insert("month", FieldValue::Text("2026-03".into()));
        assert!(matches!(
            Record::from_fields(RecordKind::Member, &f),
            Err(ModelError::UnknownField { .. })
        ));
    }

    #[test]
    fn fail_derived_id_must_match_key_fields() {
        let dues = samples()[2].clone();
        for bad in [
            "M000123/2026-04",
            "M000123/2026-03#1",
            "M000123/2026-03#02",
            "x#2",
        ] {
            let mut f = dues.to_fields();
            f.insert("dues_id", FieldValue::Text(bad.into()));
            assert_eq!(
                Record::from_fields(RecordKind::Dues, &f),
                Err(ModelError::KeyMismatch { field: "dues_id" }),
                "{bad}"
            );
        }
        let mut f = dues.to_fields();
        f.insert("dues_id", FieldValue::Text("M000123/2026-03".into()));
        let Record::Dues(d) = Record::from_fields(RecordKind::Dues, &f).unwrap() else {
            unreachable!()
        };
        assert_eq!(d.occurrence, 1);
    }

    #[test]
    fn fail_changes_json_shapes() {
        let k = RecordKind::Member;
        for bad in [
            serde_json::json!({"phone": ["1"]}),
            serde_json::json!({"phone": ["1", "1"]}),
            serde_json::json!({"phone": [null, null]}),
            serde_json::json!({"phone": "1"}),
            serde_json::json!({"monthly_income": [1.5, 2]}),
            serde_json::json!({"nope": [null, "x"]}),
            serde_json::json!([1]),
        ] {
            assert!(changes_from_json(k, &bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn enums_have_canonical_names_and_aliases() {
        assert_eq!(Gender::parse_alias("女"), Some(Gender::Female));
        assert_eq!(Gender::parse_alias("Male"), Some(Gender::Male));
        assert_eq!(OrgKind::parse_alias("党总支"), Some(OrgKind::GeneralBranch));
        assert_eq!(Status::parse_alias("失联"), Some(Status::LostContact));
        assert_eq!(
            MeetingKind::parse_alias("民主评议党员"),
            Some(MeetingKind::Appraisal)
        );
        assert_eq!(Role::parse_alias("安全审计员"), Some(Role::Auditor));
        assert_eq!(Status::Removed.zh(), "出党");
        assert_eq!(Gender::parse_alias("m"), None);
        let err = "x".parse::<Category>().unwrap_err();
        assert_eq!(err, "expected a member category: full|probationary");
        // No alias is claimed by two variants of one enum.
        for spec in [
            &ORG_KIND,
            &GENDER,
            &CATEGORY,
            &STATUS,
            &EMPLOYMENT,
            &MEETING_KIND,
            &ROLE,
        ] {
            let mut all: Vec<String> = Vec::new();
            for (canon, aliases) in spec.variants {
                all.push(canon.to_ascii_lowercase());
                all.extend(aliases.iter().map(|a| a.to_ascii_lowercase()));
            }
            let n = all.len();
            all.sort();
            all.dedup();
            assert_eq!(all.len(), n, "{}", spec.what);
        }
    }

    #[test]
    fn year_month_orders_and_indexes() {
        let a = YearMonth::new(2025, 12).unwrap();
        let b = a.succ().unwrap();
        assert_eq!(b.to_string(), "2026-01");
        assert!(a < b);
        assert_eq!(b.index(), a.index() + 1);
        assert_eq!("2026-01".parse::<YearMonth>(), Ok(b));
        assert_eq!(b.first_day(), date("2026-01-01"));
        for bad in ["2026-1", "2026-13", "26-01", "2026/01", "0999-01"] {
            assert!(bad.parse::<YearMonth>().is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_and_text_are_validated() {
        assert!(Id::new("M000123").is_ok());
        assert!(Id::new("第一支部").is_ok());
        for bad in ["", "a b", "a/b", "a#b", "a;b", "a、b", &"x".repeat(65)] {
            assert!(Id::new(bad).is_err(), "{bad}");
        }
        assert!(validate_text("a\tb").is_err());
        assert_eq!(Fen::new(450_050).unwrap().to_string(), "4500.50");
        assert_eq!(Fen::new(-1), None);
        assert_eq!(split_occurrence("a/b#12"), Some(("a/b", 12)));
        assert_eq!(split_occurrence("a/b#1"), None);
        assert_eq!(split_occurrence("a/b"), Some(("a/b", 1)));
    }

    #[test]
    fn field_set_restricts_changes() {
        let kind = RecordKind::Member;
        let mut set = FieldSet::empty(kind);
        set.insert_index(kind.field("phone").unwrap().0);
        assert!(set.contains("phone") && !set.contains("name"));
        let old = Record::Member(sample_member());
        let mut m = sample_member();
        m.phone = None;
        m.name = None;
        let mut changes = old.diff(&Record::Member(m)).unwrap();
        assert_eq!(changes.len(), 2);
        set.restrict(&mut changes);
        assert_eq!(changes.keys().copied().collect::<Vec<_>>(), ["phone"]);
        assert_eq!(FieldSet::all(kind).names().count(), 21);
    }
}
