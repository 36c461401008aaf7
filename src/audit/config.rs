//! Settings of the access anomaly rules: the `[working_hours]` table and the `access` family
//! of `policies/checks.toml`, embedded in the binary and overlaid by a file of the same shape
//! (`audit access --rules FILE`). The other tables of that file are the consistency checks'
//! (`crate::checks::config`); they are left to the checks, so that one file can hold the
//! settings of both.
//!
//! The raw TOML is merged (the overlay's tables and keys replace the defaults'), then parsed
//! once into [`AccessConfig`], whose values are checked: code that holds an
//! [`AccessConfig`] never re-checks it. This module must not read the ledger.

use std::collections::HashSet;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveTime, Utc, Weekday};
use serde::Deserialize;

use super::Severity;

use crate::checks::config::{ACCESS_SECTIONS, EMBEDDED_TOML};
use crate::checks::Family;

/// Name of the embedded settings file in messages.
const EMBEDDED_NAME: &str = "checks.toml";

/// A settings file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not TOML, or a key of the wrong type, or a key or table that does not exist.
    #[error("`{file}`: {message}")]
    Parse {
        /// The file (`checks.toml` for the embedded default).
        file: String,
        /// What is wrong.
        message: String,
    },
    /// A value out of range.
    #[error("`{file}`: `{key}`: {message}")]
    Value {
        /// The file.
        file: String,
        /// The dotted key.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// Local working time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkingHours {
    /// Offset of local time from UTC.
    pub offset: FixedOffset,
    /// Start of the working day, inclusive.
    pub start: NaiveTime,
    /// End of the working day, exclusive.
    pub end: NaiveTime,
    /// Working days of the week.
    pub days: Vec<Weekday>,
    /// Local dates that are not working days.
    pub holidays: HashSet<NaiveDate>,
    /// Local weekend dates that are working days.
    pub workdays: HashSet<NaiveDate>,
}

impl WorkingHours {
    /// The local date of `t`.
    pub fn local_date(&self, t: &DateTime<Utc>) -> NaiveDate {
        t.with_timezone(&self.offset).date_naive()
    }

    /// Whether `t` is inside working hours.
    pub fn is_working(&self, t: &DateTime<Utc>) -> bool {
        let local = t.with_timezone(&self.offset);
        let date = local.date_naive();
        let working_day = if self.holidays.contains(&date) {
            false
        } else {
            self.workdays.contains(&date) || self.days.contains(&date.weekday())
        };
        let time = local.time();
        working_day && time >= self.start && time < self.end
    }
}

/// Severity and switch of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSwitch {
    /// Severity of its findings.
    pub severity: Severity,
    /// Whether the rule runs.
    pub enabled: bool,
}

/// `access.bulk_read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkRead {
    /// Severity and switch.
    pub rule: RuleSwitch,
    /// More distinct members than this within the window is a finding.
    pub max_members: u64,
    /// The window, in minutes.
    pub window_minutes: u32,
}

/// `access.denial_burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DenialBurst {
    /// Severity and switch.
    pub rule: RuleSwitch,
    /// This many denials or more within the window is a finding.
    pub min_denials: u32,
    /// The window, in minutes.
    pub window_minutes: u32,
}

/// `access.admin_member_read`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminMemberRead {
    /// Severity and switch.
    pub rule: RuleSwitch,
    /// Roles watched.
    pub roles: Vec<String>,
}

/// `access.dormant_account`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DormantAccount {
    /// Severity and switch.
    pub rule: RuleSwitch,
    /// No activity for this many days is a finding.
    pub days: u32,
}

/// Validated settings of every access rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessConfig {
    /// Working hours (`access.off_hours`, and the local day of per-day findings).
    pub hours: WorkingHours,
    /// `access.bulk_read`.
    pub bulk_read: BulkRead,
    /// `access.off_hours`.
    pub off_hours: RuleSwitch,
    /// `access.denial_burst`.
    pub denial_burst: DenialBurst,
    /// `access.sensitive_export`.
    pub sensitive_export: RuleSwitch,
    /// `access.self_approval`.
    pub self_approval: RuleSwitch,
    /// `access.admin_member_read`.
    pub admin_member_read: AdminMemberRead,
    /// `access.dormant_account`.
    pub dormant_account: DormantAccount,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    working_hours: RawHours,
    access: RawRules,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHours {
    utc_offset: String,
    start: String,
    end: String,
    days: Vec<String>,
    holidays: Vec<String>,
    workdays: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    bulk_read: RawBulkRead,
    off_hours: RuleSwitch,
    denial_burst: RawDenialBurst,
    sensitive_export: RuleSwitch,
    self_approval: RuleSwitch,
    admin_member_read: RawAdmin,
    dormant_account: RawDormant,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBulkRead {
    severity: Severity,
    enabled: bool,
    max_members: u64,
    window_minutes: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDenialBurst {
    severity: Severity,
    enabled: bool,
    min_denials: u32,
    window_minutes: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    severity: Severity,
    enabled: bool,
    roles: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDormant {
    severity: Severity,
    enabled: bool,
    days: u32,
}

/// The roles of the projection's `user.role`.
const ROLES: &[&str] = &[
    "org_dept",
    "provider",
    "member",
    "sysadmin",
    "security_admin",
    "auditor",
];

impl AccessConfig {
    /// The embedded defaults.
    pub fn embedded() -> Result<AccessConfig, ConfigError> {
        Self::load(None)
    }

    /// The embedded defaults overlaid by `(file name, TOML text)`.
    pub fn load(overlay: Option<(&str, &str)>) -> Result<AccessConfig, ConfigError> {
        let mut base = parse_table(EMBEDDED_NAME, EMBEDDED_TOML)?;
        let file = match overlay {
            Some((name, text)) => {
                let over = parse_table(name, text)?;
                merge(&mut base, over);
                name
            }
            None => EMBEDDED_NAME,
        };
        let raw: RawConfig =
            toml::Value::Table(base)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    file: file.to_string(),
                    message: e.message().to_string(),
                })?;
        raw.validate(file)
    }
}

/// The access audit's part of a settings file: its own tables, and any table that is
/// neither its own nor a consistency-check family (so that a misspelt table is reported as
/// unknown rather than passed over).
fn parse_table(file: &str, text: &str) -> Result<toml::Table, ConfigError> {
    let mut table = text
        .parse::<toml::Table>()
        .map_err(|e| ConfigError::Parse {
            file: file.to_string(),
            message: e.message().to_string(),
        })?;
    table.retain(|key, _| {
        ACCESS_SECTIONS.contains(&key) || !Family::ALL.iter().any(|f| f.as_str() == key)
    });
    Ok(table)
}

/// Overlays `over` onto `base`: tables merge key by key, any other value replaces.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

impl RawConfig {
    fn validate(self, file: &str) -> Result<AccessConfig, ConfigError> {
        let bad = |key: &str, message: String| ConfigError::Value {
            file: file.to_string(),
            key: key.to_string(),
            message,
        };
        let h = &self.working_hours;
        let offset = parse_offset(&h.utc_offset).ok_or_else(|| {
            bad(
                "working_hours.utc_offset",
                format!("`{}` is not an offset such as `+08:00`", h.utc_offset),
            )
        })?;
        let time = |key: &str, s: &str| {
            NaiveTime::parse_from_str(s, "%H:%M")
                .map_err(|_| bad(key, format!("`{s}` is not a time `HH:MM`")))
        };
        let start = time("working_hours.start", &h.start)?;
        let end = time("working_hours.end", &h.end)?;
        if start >= end {
            return Err(bad(
                "working_hours.end",
                format!("`{}` is not after the start `{}`", h.end, h.start),
            ));
        }
        let mut days = Vec::new();
        for d in &h.days {
            let day = parse_weekday(d).ok_or_else(|| {
                bad(
                    "working_hours.days",
                    format!("`{d}` is not a day (`mon` … `sun`)"),
                )
            })?;
            days.push(day);
        }
        let dates = |key: &str, list: &[String]| -> Result<HashSet<NaiveDate>, ConfigError> {
            list.iter()
                .map(|s| {
                    NaiveDate::parse_from_str(s, "%Y-%m-%d")
                        .map_err(|_| bad(key, format!("`{s}` is not a date `YYYY-MM-DD`")))
                })
                .collect()
        };
        let holidays = dates("working_hours.holidays", &h.holidays)?;
        let workdays = dates("working_hours.workdays", &h.workdays)?;

        let r = self.access;
        let window = |key: &str, minutes: u32| {
            if minutes == 0 || minutes > 7 * 24 * 60 {
                Err(bad(
                    key,
                    format!("{minutes} is out of range (1 to 10080 minutes)"),
                ))
            } else {
                Ok(minutes)
            }
        };
        let bulk_read = BulkRead {
            rule: RuleSwitch {
                severity: r.bulk_read.severity,
                enabled: r.bulk_read.enabled,
            },
            max_members: r.bulk_read.max_members,
            window_minutes: window(
                "access.bulk_read.window_minutes",
                r.bulk_read.window_minutes,
            )?,
        };
        if r.denial_burst.min_denials == 0 {
            return Err(bad(
                "access.denial_burst.min_denials",
                "must be at least 1".into(),
            ));
        }
        let denial_burst = DenialBurst {
            rule: RuleSwitch {
                severity: r.denial_burst.severity,
                enabled: r.denial_burst.enabled,
            },
            min_denials: r.denial_burst.min_denials,
            window_minutes: window(
                "access.denial_burst.window_minutes",
                r.denial_burst.window_minutes,
            )?,
        };
        for role in &r.admin_member_read.roles {
            if !ROLES.contains(&role.as_str()) {
                return Err(bad(
                    "access.admin_member_read.roles",
                    format!("unknown role `{role}`"),
                ));
            }
        }
        if r.dormant_account.days == 0 || r.dormant_account.days > 3660 {
            return Err(bad(
                "access.dormant_account.days",
                format!(
                    "{} is out of range (1 to 3660 days)",
                    r.dormant_account.days
                ),
            ));
        }
        Ok(AccessConfig {
            hours: WorkingHours {
                offset,
                start,
                end,
                days,
                holidays,
                workdays,
            },
            bulk_read,
            off_hours: r.off_hours,
            denial_burst,
            sensitive_export: r.sensitive_export,
            self_approval: r.self_approval,
            admin_member_read: AdminMemberRead {
                rule: RuleSwitch {
                    severity: r.admin_member_read.severity,
                    enabled: r.admin_member_read.enabled,
                },
                roles: r.admin_member_read.roles,
            },
            dormant_account: DormantAccount {
                rule: RuleSwitch {
                    severity: r.dormant_account.severity,
                    enabled: r.dormant_account.enabled,
                },
                days: r.dormant_account.days,
            },
        })
    }
}

/// `+08:00`, `-05:30`, `+00:00`.
fn parse_offset(s: &str) -> Option<FixedOffset> {
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, s.get(1..)?),
        b'-' => (-1, s.get(1..)?),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let h: i32 = h.parse().ok()?;
    let m: i32 = m.parse().ok()?;
    if h > 14 || m > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60))
}

fn parse_weekday(s: &str) -> Option<Weekday> {
    Some(match s {
        "mon" => Weekday::Mon,
        "tue" => Weekday::Tue,
        "wed" => Weekday::Wed,
        "thu" => Weekday::Thu,
        "fri" => Weekday::Fri,
        "sat" => Weekday::Sat,
        "sun" => Weekday::Sun,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn embedded_defaults_are_the_documented_ones() {
        let c = AccessConfig::embedded().expect("defaults");
        assert_eq!(c.bulk_read.max_members, 100);
        assert_eq!(c.bulk_read.window_minutes, 10);
        assert_eq!(c.denial_burst.min_denials, 5);
        assert_eq!(c.dormant_account.days, 90);
        assert_eq!(c.hours.offset.local_minus_utc(), 8 * 3600);
        assert_eq!(c.self_approval.severity, Severity::Error);
        assert_eq!(
            c.admin_member_read.roles,
            ["sysadmin", "security_admin", "auditor"]
        );
    }

    #[test]
    fn working_hours_boundaries_in_shanghai_time() {
        let c = AccessConfig::embedded().expect("defaults");
        let h = &c.hours;
        // 2026-11-02 is a Monday; 08:00 +08:00 is 00:00 UTC.
        assert!(!h.is_working(&utc("2026-11-02T07:59:59.999+08:00")));
        assert!(!h.is_working(&utc("2026-11-01T23:59:00Z")));
        assert!(h.is_working(&utc("2026-11-02T08:00:00+08:00")));
        assert!(h.is_working(&utc("2026-11-02T00:00:00Z")));
        assert!(h.is_working(&utc("2026-11-02T19:59:59+08:00")));
        assert!(!h.is_working(&utc("2026-11-02T20:00:00+08:00")));
        // Saturday 2026-11-07 at 10:00 local.
        assert!(!h.is_working(&utc("2026-11-07T10:00:00+08:00")));
        assert_eq!(
            h.local_date(&utc("2026-11-01T16:00:00Z")).to_string(),
            "2026-11-02"
        );
    }

    #[test]
    fn overlay_changes_only_what_it_names() {
        let text = r#"
[working_hours]
utc_offset = "+00:00"
holidays = ["2026-10-01"]
workdays = ["2026-10-10"]

[access.bulk_read]
max_members = 20
"#;
        let c = AccessConfig::load(Some(("mine.toml", text))).expect("overlay");
        assert_eq!(c.bulk_read.max_members, 20);
        assert_eq!(c.bulk_read.window_minutes, 10);
        assert_eq!(c.hours.offset.local_minus_utc(), 0);
        // 2026-10-01 is a Thursday holiday; 2026-10-10 a Saturday working day.
        assert!(!c.hours.is_working(&utc("2026-10-01T10:00:00Z")));
        assert!(c.hours.is_working(&utc("2026-10-10T10:00:00Z")));
    }

    #[test]
    fn one_file_serves_the_checks_and_the_access_audit() {
        // The embedded checks.toml holds both parts; each reads its own.
        assert!(EMBEDDED_TOML.contains("[access.bulk_read]"));
        assert!(EMBEDDED_TOML.contains("[member.id_checksum]"));
        let text =
            "[member.id_checksum]\nseverity = \"warning\"\n\n[access.bulk_read]\nmax_members = 7\n";
        let c = AccessConfig::load(Some(("both.toml", text))).expect("access part");
        assert_eq!(c.bulk_read.max_members, 7);
        let checks = crate::checks::CheckConfig::embedded()
            .with_overrides(text)
            .expect("checks part");
        assert_eq!(
            checks.rule("member.id_checksum").map(|r| r.severity),
            Some(Severity::Warning)
        );
        // A table that belongs to neither is still refused by both.
        let typo = "[acess.bulk_read]\nmax_members = 7\n";
        let err = AccessConfig::load(Some(("typo.toml", typo)))
            .err()
            .map(|e| e.to_string());
        assert!(err.unwrap_or_default().contains("unknown field `acess`"));
        assert!(crate::checks::CheckConfig::embedded()
            .with_overrides(typo)
            .is_err());
    }

    #[test]
    fn fail_unknown_keys_and_bad_values() {
        let cases = [
            (
                "[access.bulk_read]\nmax_member = 3\n",
                "unknown field `max_member`",
            ),
            (
                "[access.nothing]\nenabled = true\n",
                "unknown field `nothing`",
            ),
            (
                "[working_hours]\nutc_offset = \"8\"\n",
                "`working_hours.utc_offset`",
            ),
            (
                "[working_hours]\nstart = \"21:00\"\n",
                "is not after the start",
            ),
            ("[working_hours]\ndays = [\"monday\"]\n", "is not a day"),
            ("[access.bulk_read]\nwindow_minutes = 0\n", "out of range"),
            ("[access.denial_burst]\nmin_denials = 0\n", "at least 1"),
            ("[access.dormant_account]\nseverity = \"fatal\"\n", "fatal"),
            (
                "[access.admin_member_read]\nroles = [\"root\"]\n",
                "unknown role `root`",
            ),
            ("not toml", "`x.toml`"),
        ];
        for (text, want) in cases {
            let err = AccessConfig::load(Some(("x.toml", text)))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(want), "{text:?}: {err}");
            assert!(err.starts_with("`x.toml`"), "{err}");
        }
    }
}
