//! Rule settings: severity, enabled flag and dated parameter sets for every rule, read from
//! `policies/checks.toml` (embedded) and optionally overridden by a `--rules FILE`.
//!
//! Parsing is strict: an unknown family, rule, key or parameter, a missing parameter or a
//! value out of range is a clear one-line error. Once parsed, a [`CheckConfig`] is valid
//! and the rules never re-check it. This module reads no data.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use chrono::NaiveDate;
use serde::Serialize;

use super::{all_defs, Family, ParamKind, RuleDef, Severity};

/// The embedded default rule settings.
pub const EMBEDDED_TOML: &str = include_str!("../../policies/checks.toml");

/// Top-level tables of `checks.toml` that hold the access audit's settings
/// (`crate::audit::AccessConfig`), not the consistency checks': skipped here, read there.
pub const ACCESS_SECTIONS: [&str; 2] = ["working_hours", "access"];

/// An error in a checks config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read checks config `{path}`: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("in `{path}`: {source}")]
    InFile {
        path: String,
        #[source]
        source: Box<ConfigError>,
    },
    #[error("invalid checks config at line {line}: {message}")]
    Syntax { line: usize, message: String },
    #[error("unknown rule family `{0}` in checks config")]
    UnknownFamily(String),
    #[error("unknown rule `{0}` in checks config")]
    UnknownRule(String),
    #[error("rule `{0}` is missing from the checks config")]
    MissingRule(String),
    #[error("unknown key `{key}` for rule `{rule}` in checks config")]
    UnknownKey { rule: String, key: String },
    #[error("rule `{rule}` lacks `{key}` in checks config")]
    MissingKey { rule: String, key: String },
    #[error("unknown parameter `{param}` for rule `{rule}` in checks config")]
    UnknownParam { rule: String, param: String },
    #[error("parameter set of rule `{rule}` from {from} lacks parameter `{param}`")]
    MissingParam {
        rule: String,
        from: NaiveDate,
        param: String,
    },
    #[error("invalid `{key}` for rule `{rule}` in checks config: {reason}")]
    Invalid {
        rule: String,
        key: String,
        reason: String,
    },
}

/// Settings of one rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleConfig {
    pub severity: Severity,
    pub enabled: bool,
    /// Parameter sets in ascending `from` order; empty for a rule without parameters.
    pub params: Vec<ParamSet>,
}

/// Parameters in force from a date until the next set's date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParamSet {
    #[serde(serialize_with = "super::serde_date::serialize")]
    pub from: NaiveDate,
    pub values: BTreeMap<&'static str, ParamValue>,
}

/// A parameter value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ParamValue {
    Int(i64),
    Brackets(Vec<Bracket>),
}

/// One step of a dues rate table: bases up to `up_to_fen` (inclusive) pay `permille` ‰ of
/// the base; the last step has no upper bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Bracket {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub up_to_fen: Option<i64>,
    pub permille: i64,
}

impl ParamSet {
    /// Integer parameter `name`, if the set has it.
    pub fn int(&self, name: &str) -> Option<i64> {
        match self.values.get(name) {
            Some(ParamValue::Int(v)) => Some(*v),
            _ => None,
        }
    }

    /// Rate table parameter `name`, if the set has it.
    pub fn brackets(&self, name: &str) -> Option<&[Bracket]> {
        match self.values.get(name) {
            Some(ParamValue::Brackets(v)) => Some(v),
            _ => None,
        }
    }
}

/// Validated settings for every rule of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckConfig {
    rules: BTreeMap<&'static str, RuleConfig>,
}

static EMBEDDED: OnceLock<Result<CheckConfig, String>> = OnceLock::new();

impl CheckConfig {
    /// The embedded `policies/checks.toml`.
    pub fn embedded() -> CheckConfig {
        let parsed = EMBEDDED
            .get_or_init(|| CheckConfig::from_toml(EMBEDDED_TOML).map_err(|e| e.to_string()));
        match parsed {
            Ok(cfg) => cfg.clone(),
            // INVARIANT: the embedded file is part of the binary and the test
            // `embedded_config_is_complete` parses it; this branch cannot be reached.
            Err(e) => panic!("embedded policies/checks.toml is invalid: {e}"),
        }
    }

    /// Parse a complete config: every rule of the catalogue must be present with
    /// `severity`, `enabled` and (when it has parameters) at least one parameter set.
    pub fn from_toml(text: &str) -> Result<CheckConfig, ConfigError> {
        let mut rules = BTreeMap::new();
        apply(&mut rules, text, true)?;
        if let Some(def) = all_defs().into_iter().find(|d| !rules.contains_key(d.id)) {
            return Err(ConfigError::MissingRule(def.id.to_string()));
        }
        Ok(CheckConfig { rules })
    }

    /// Overlay a partial config on this one: rules and keys not named keep their settings;
    /// a `params` list given for a rule replaces that rule's parameter sets.
    pub fn with_overrides(&self, text: &str) -> Result<CheckConfig, ConfigError> {
        let mut rules = self.rules.clone();
        apply(&mut rules, text, false)?;
        Ok(CheckConfig { rules })
    }

    /// [`CheckConfig::with_overrides`] with the text of a file; errors name the file.
    pub fn with_overrides_file(&self, path: &Path) -> Result<CheckConfig, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        self.with_overrides(&text).map_err(|e| ConfigError::InFile {
            path: shown,
            source: Box::new(e),
        })
    }

    /// Settings of rule `id`.
    pub fn rule(&self, id: &str) -> Option<&RuleConfig> {
        self.rules.get(id)
    }

    /// Settings of every rule, by rule id.
    pub fn rules(&self) -> impl Iterator<Item = (&'static str, &RuleConfig)> {
        self.rules.iter().map(|(k, v)| (*k, v))
    }
}

fn syntax_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let line = e
        .span()
        .and_then(|s| text.get(..s.start))
        .map_or(1, |before| before.matches('\n').count() + 1);
    ConfigError::Syntax {
        line,
        message: e.message().replace('\n', " ").trim().to_string(),
    }
}

fn apply(
    rules: &mut BTreeMap<&'static str, RuleConfig>,
    text: &str,
    complete: bool,
) -> Result<(), ConfigError> {
    let table: toml::Table = toml::from_str(text).map_err(|e| syntax_error(text, &e))?;
    let defs = all_defs();
    for (family_name, family_value) in &table {
        if ACCESS_SECTIONS.contains(&family_name.as_str()) {
            continue;
        }
        let family = Family::ALL
            .iter()
            .find(|f| f.as_str() == family_name)
            .ok_or_else(|| ConfigError::UnknownFamily(family_name.clone()))?;
        let toml::Value::Table(family_table) = family_value else {
            return Err(ConfigError::UnknownRule(family_name.clone()));
        };
        for (rule_name, rule_value) in family_table {
            let id = format!("{}.{rule_name}", family.as_str());
            let def = defs
                .iter()
                .find(|d| d.id == id)
                .ok_or_else(|| ConfigError::UnknownRule(id.clone()))?;
            let toml::Value::Table(rule_table) = rule_value else {
                return Err(ConfigError::Invalid {
                    rule: id,
                    key: rule_name.clone(),
                    reason: "expected a table".to_string(),
                });
            };
            let current = rules.get(def.id).cloned();
            let parsed = parse_rule(def, rule_table, if complete { None } else { current })?;
            rules.insert(def.id, parsed);
        }
    }
    Ok(())
}

fn parse_rule(
    def: &'static RuleDef,
    table: &toml::Table,
    base: Option<RuleConfig>,
) -> Result<RuleConfig, ConfigError> {
    let rule = || def.id.to_string();
    for key in table.keys() {
        let known = matches!(key.as_str(), "severity" | "enabled")
            || (key == "params" && !def.params.is_empty());
        if !known {
            return Err(ConfigError::UnknownKey {
                rule: rule(),
                key: key.clone(),
            });
        }
    }
    let severity = match table.get("severity") {
        Some(toml::Value::String(s)) => {
            s.parse::<Severity>().map_err(|()| ConfigError::Invalid {
                rule: rule(),
                key: "severity".into(),
                reason: format!("`{s}` is not one of error, warning, info"),
            })?
        }
        Some(_) => {
            return Err(ConfigError::Invalid {
                rule: rule(),
                key: "severity".into(),
                reason: "expected a string".into(),
            })
        }
        None => base
            .as_ref()
            .map(|b| b.severity)
            .ok_or_else(|| ConfigError::MissingKey {
                rule: rule(),
                key: "severity".into(),
            })?,
    };
    let enabled = match table.get("enabled") {
        Some(toml::Value::Boolean(b)) => *b,
        Some(_) => {
            return Err(ConfigError::Invalid {
                rule: rule(),
                key: "enabled".into(),
                reason: "expected true or false".into(),
            })
        }
        None => base
            .as_ref()
            .map(|b| b.enabled)
            .ok_or_else(|| ConfigError::MissingKey {
                rule: rule(),
                key: "enabled".into(),
            })?,
    };
    let params = match table.get("params") {
        Some(value) => parse_param_sets(def, value)?,
        None if def.params.is_empty() => Vec::new(),
        None => base
            .map(|b| b.params)
            .ok_or_else(|| ConfigError::MissingKey {
                rule: rule(),
                key: "params".into(),
            })?,
    };
    Ok(RuleConfig {
        severity,
        enabled,
        params,
    })
}

fn parse_param_sets(
    def: &'static RuleDef,
    value: &toml::Value,
) -> Result<Vec<ParamSet>, ConfigError> {
    let invalid = |reason: &str| ConfigError::Invalid {
        rule: def.id.to_string(),
        key: "params".into(),
        reason: reason.to_string(),
    };
    let toml::Value::Array(items) = value else {
        return Err(invalid(
            "expected an array of tables (`[[family.rule.params]]`)",
        ));
    };
    if items.is_empty() {
        return Err(invalid("at least one parameter set is needed"));
    }
    let mut sets = Vec::with_capacity(items.len());
    for item in items {
        let toml::Value::Table(t) = item else {
            return Err(invalid(
                "expected an array of tables (`[[family.rule.params]]`)",
            ));
        };
        sets.push(parse_param_set(def, t)?);
    }
    sets.sort_by_key(|s| s.from);
    if sets
        .windows(2)
        .any(|w| matches!(w, [a, b] if a.from == b.from))
    {
        return Err(invalid("two parameter sets have the same `from` date"));
    }
    Ok(sets)
}

fn parse_param_set(def: &'static RuleDef, table: &toml::Table) -> Result<ParamSet, ConfigError> {
    let from = match table.get("from") {
        Some(v) => toml_date(v).ok_or_else(|| ConfigError::Invalid {
            rule: def.id.to_string(),
            key: "from".into(),
            reason: "expected a date YYYY-MM-DD".into(),
        })?,
        None => {
            return Err(ConfigError::MissingKey {
                rule: def.id.to_string(),
                key: "from".into(),
            })
        }
    };
    let mut values = BTreeMap::new();
    for (key, value) in table {
        if key == "from" {
            continue;
        }
        let spec =
            def.params
                .iter()
                .find(|p| p.name == key)
                .ok_or_else(|| ConfigError::UnknownParam {
                    rule: def.id.to_string(),
                    param: key.clone(),
                })?;
        let invalid = |reason: String| ConfigError::Invalid {
            rule: def.id.to_string(),
            key: key.clone(),
            reason,
        };
        let parsed = match spec.kind {
            ParamKind::Int { min, max } => match value {
                toml::Value::Integer(i) if (min..=max).contains(i) => ParamValue::Int(*i),
                toml::Value::Integer(i) => {
                    return Err(invalid(format!("{i} is outside {min}..={max}")));
                }
                _ => return Err(invalid("expected an integer".into())),
            },
            ParamKind::Brackets => ParamValue::Brackets(parse_brackets(value).map_err(invalid)?),
        };
        values.insert(spec.name, parsed);
    }
    for spec in def.params {
        if !values.contains_key(spec.name) {
            return Err(ConfigError::MissingParam {
                rule: def.id.to_string(),
                from,
                param: spec.name.to_string(),
            });
        }
    }
    let set = ParamSet { from, values };
    for (low, high) in def.ordered {
        if let (Some(l), Some(h)) = (set.int(low), set.int(high)) {
            if l > h {
                return Err(ConfigError::Invalid {
                    rule: def.id.to_string(),
                    key: (*low).to_string(),
                    reason: format!("`{low}` ({l}) is greater than `{high}` ({h})"),
                });
            }
        }
    }
    Ok(set)
}

fn parse_brackets(value: &toml::Value) -> Result<Vec<Bracket>, String> {
    const SHAPE: &str =
        "expected an array of { up_to_fen = N, permille = N }, the last without up_to_fen";
    let toml::Value::Array(items) = value else {
        return Err(SHAPE.into());
    };
    let mut out: Vec<Bracket> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let toml::Value::Table(t) = item else {
            return Err(SHAPE.into());
        };
        if let Some(k) = t.keys().find(|k| *k != "up_to_fen" && *k != "permille") {
            return Err(format!("unknown key `{k}` in a rate step"));
        }
        let permille = match t.get("permille") {
            Some(toml::Value::Integer(p)) if (0..=1000).contains(p) => *p,
            _ => return Err("each rate step needs `permille` in 0..=1000".into()),
        };
        let up_to_fen = match t.get("up_to_fen") {
            Some(toml::Value::Integer(u)) if *u >= 0 => Some(*u),
            Some(_) => return Err("`up_to_fen` must be a non-negative integer".into()),
            None => None,
        };
        let last = i + 1 == items.len();
        match (up_to_fen, last) {
            (None, false) => return Err("only the last rate step may omit `up_to_fen`".into()),
            (Some(_), true) => {
                return Err(
                    "the last rate step must omit `up_to_fen` (it covers all higher bases)".into(),
                )
            }
            _ => {}
        }
        if let (Some(prev), Some(cur)) = (out.last().and_then(|b| b.up_to_fen), up_to_fen) {
            if cur <= prev {
                return Err("`up_to_fen` must increase from step to step".into());
            }
        }
        out.push(Bracket {
            up_to_fen,
            permille,
        });
    }
    if out.is_empty() {
        return Err(SHAPE.into());
    }
    Ok(out)
}

fn toml_date(value: &toml::Value) -> Option<NaiveDate> {
    match value {
        toml::Value::Datetime(dt) if dt.time.is_none() && dt.offset.is_none() => {
            let d = dt.date?;
            NaiveDate::from_ymd_opt(i32::from(d.year), u32::from(d.month), u32::from(d.day))
        }
        toml::Value::String(s) => super::period::parse_date(s),
        _ => None,
    }
}

/// Parameter sets of one rule, converted once to a typed value and picked by date.
#[derive(Debug, Clone)]
pub(crate) struct Dated<T> {
    sets: Vec<(NaiveDate, T)>,
}

impl<T> Dated<T> {
    /// The set in force on `date`: the one with the latest `from` on or before it.
    pub(crate) fn at(&self, date: NaiveDate) -> Option<&T> {
        self.sets
            .iter()
            .rev()
            .find(|(from, _)| *from <= date)
            .map(|(_, t)| t)
    }
}

impl CheckConfig {
    /// Convert the parameter sets of rule `id` with `convert`. A rule or parameter the config
    /// lacks is an internal error (parsing guarantees both).
    pub(crate) fn dated<T>(
        &self,
        id: &str,
        convert: impl Fn(&ParamSet) -> Option<T>,
    ) -> Result<Dated<T>, super::CheckError> {
        let rule = self
            .rules
            .get(id)
            .ok_or_else(|| super::CheckError::Internal(format!("rule `{id}` has no settings")))?;
        let sets = rule
            .params
            .iter()
            .map(|s| {
                convert(s).map(|t| (s.from, t)).ok_or_else(|| {
                    super::CheckError::Internal(format!("rule `{id}` lacks a parameter"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Dated { sets })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_config_is_complete() {
        let cfg = CheckConfig::from_toml(EMBEDDED_TOML).unwrap();
        for def in all_defs() {
            let rule = cfg.rule(def.id).unwrap();
            assert_eq!(rule.params.is_empty(), def.params.is_empty(), "{}", def.id);
        }
        assert_eq!(CheckConfig::embedded(), cfg);
    }

    #[test]
    fn embedded_dues_rates_from_2008() {
        let cfg = CheckConfig::embedded();
        let sets = &cfg.rule("dues.amount_mismatch").unwrap().params;
        assert_eq!(sets[0].from, NaiveDate::from_ymd_opt(2008, 4, 1).unwrap());
        assert_eq!(sets[0].int("tolerance_fen"), Some(1));
        let employed = sets[0].brackets("employed").unwrap();
        assert_eq!(
            employed,
            &[
                Bracket {
                    up_to_fen: Some(300_000),
                    permille: 5
                },
                Bracket {
                    up_to_fen: Some(500_000),
                    permille: 10
                },
                Bracket {
                    up_to_fen: Some(1_000_000),
                    permille: 15
                },
                Bracket {
                    up_to_fen: None,
                    permille: 20
                },
            ]
        );
    }

    #[test]
    fn overrides_change_only_what_they_name() {
        let base = CheckConfig::embedded();
        let cfg = base
            .with_overrides(
                "[meetings.lecture_quarterly]\nenabled = false\n\
                 [[dues.six_months_unpaid.params]]\nfrom = 2008-04-01\nmonths = 3\n",
            )
            .unwrap();
        assert!(!cfg.rule("meetings.lecture_quarterly").unwrap().enabled);
        assert_eq!(
            cfg.rule("meetings.lecture_quarterly").unwrap().severity,
            base.rule("meetings.lecture_quarterly").unwrap().severity
        );
        let six = &cfg.rule("dues.six_months_unpaid").unwrap().params;
        assert_eq!(six.len(), 1);
        assert_eq!(six[0].int("months"), Some(3));
        assert_eq!(
            cfg.rule("member.id_checksum"),
            base.rule("member.id_checksum")
        );
    }

    #[test]
    fn dated_picks_the_set_in_force() {
        let cfg = CheckConfig::embedded()
            .with_overrides(
                "[[dues.six_months_unpaid.params]]\nfrom = 2008-04-01\nmonths = 6\n\
                 [[dues.six_months_unpaid.params]]\nfrom = \"2020-01-01\"\nmonths = 4\n",
            )
            .unwrap();
        let d = cfg
            .dated("dues.six_months_unpaid", |s| s.int("months"))
            .unwrap();
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        assert_eq!(d.at(day(2008, 3, 31)), None);
        assert_eq!(d.at(day(2008, 4, 1)), Some(&6));
        assert_eq!(d.at(day(2019, 12, 31)), Some(&6));
        assert_eq!(d.at(day(2020, 1, 1)), Some(&4));
    }

    fn err(text: &str) -> String {
        CheckConfig::embedded()
            .with_overrides(text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn fail_unknown_rule_family_key_and_param() {
        assert_eq!(
            err("[dues.bogus]\nenabled = true\n"),
            "unknown rule `dues.bogus` in checks config"
        );
        assert_eq!(
            err("[bogus.x]\nenabled = true\n"),
            "unknown rule family `bogus` in checks config"
        );
        assert_eq!(
            err("[dues.missing_months]\ncolour = \"red\"\n"),
            "unknown key `colour` for rule `dues.missing_months` in checks config"
        );
        assert_eq!(
            err("[[dues.six_months_unpaid.params]]\nfrom = 2008-04-01\nmonths = 6\nweeks = 2\n"),
            "unknown parameter `weeks` for rule `dues.six_months_unpaid` in checks config"
        );
        // A rule without parameters accepts no `params`.
        assert_eq!(
            err("[[member.id_checksum.params]]\nfrom = 2008-04-01\n"),
            "unknown key `params` for rule `member.id_checksum` in checks config"
        );
    }

    #[test]
    fn fail_bad_values() {
        assert!(
            err("[member.id_checksum]\nseverity = \"fatal\"\n").contains("`fatal` is not one of")
        );
        assert!(err("[member.id_checksum]\nenabled = \"yes\"\n").contains("expected true or false"));
        assert_eq!(
            err("[[dues.six_months_unpaid.params]]\nfrom = 2008-04-01\n"),
            "parameter set of rule `dues.six_months_unpaid` from 2008-04-01 lacks parameter `months`"
        );
        assert!(err("[[dues.six_months_unpaid.params]]\nmonths = 6\n").contains("lacks `from`"));
        assert!(
            err("[[dues.six_months_unpaid.params]]\nfrom = 2008-04-01\nmonths = 0\n")
                .contains("outside")
        );
        assert!(err(
            "[[development.probation_extension.params]]\nfrom = 2014-06-11\nmin_months = 12\nmax_months = 6\n"
        )
        .contains("greater than"));
        assert!(err(
            "[[dues.six_months_unpaid.params]]\nfrom = 2008-04-01\nmonths = 6\n\
             [[dues.six_months_unpaid.params]]\nfrom = 2008-04-01\nmonths = 5\n"
        )
        .contains("same `from`"));
        let line = err("[member.id_checksum]\nenabled = true\nenabled = false\n");
        assert!(
            line.starts_with("invalid checks config at line 3:"),
            "{line}"
        );
        assert!(!line.contains('\n'));
    }

    #[test]
    fn fail_bad_rate_tables() {
        let rates = |employed: &str| {
            format!(
                "[[dues.amount_mismatch.params]]\nfrom = 2008-04-01\ntolerance_fen = 1\nflat_fen = 20\n\
                 farmer_min_fen = 20\nfarmer_max_fen = 100\nretired = [{{ permille = 5 }}]\nemployed = {employed}\n"
            )
        };
        assert!(
            err(&rates("[{ up_to_fen = 300000, permille = 5 }]")).contains("must omit `up_to_fen`")
        );
        assert!(err(&rates("[{ permille = 5 }, { permille = 10 }]")).contains("only the last"));
        assert!(err(&rates(
            "[{ up_to_fen = 5, permille = 5 }, { up_to_fen = 4, permille = 5 }, { permille = 1 }]"
        ))
        .contains("must increase"));
        assert!(err(&rates("[{ percent = 5 }]")).contains("unknown key `percent`"));
        assert!(CheckConfig::embedded()
            .with_overrides(&rates("[{ permille = 7 }]"))
            .is_ok());
    }

    #[test]
    fn fail_incomplete_config() {
        let e =
            CheckConfig::from_toml("[member.id_checksum]\nseverity = \"error\"\nenabled = true\n")
                .unwrap_err();
        assert!(matches!(e, ConfigError::MissingRule(_)), "{e}");
        let e = CheckConfig::from_toml("[member.id_checksum]\nseverity = \"error\"\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "rule `member.id_checksum` lacks `enabled` in checks config"
        );
    }

    #[test]
    fn fail_unreadable_override_file_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.toml");
        std::fs::write(&path, "[dues.bogus]\n").unwrap();
        let e = CheckConfig::embedded()
            .with_overrides_file(&path)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("rules.toml") && e.contains("unknown rule `dues.bogus`"),
            "{e}"
        );
        let e = CheckConfig::embedded()
            .with_overrides_file(&dir.path().join("absent.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("cannot read checks config"), "{e}");
    }
}
