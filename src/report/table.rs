//! The tables both renderings of a report show, built once: which columns, in which order,
//! with which labels, and what each cell holds. A cell says what it is ([`Cell`]); how it
//! is escaped and marked up is the business of the format that draws it
//! ([`super::html`], [`super::markdown`]). This module never escapes anything.

use super::html::delta;
use super::model::{Arrear, Count, Finding, Lang, OrgCount, OrgTrend, RuleTrend};

/// One cell of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    /// Text from the report's data, escaped by each format.
    Text(String),
    /// An optional text from the data: a dash when absent.
    Opt(Option<String>),
    /// A label of our own (no markup in it), written as it is.
    Label(&'static str),
    /// An identifier shown as code: a rule id, an entry kind.
    Code(String),
    /// A count, right-aligned.
    Num(u64),
    /// A number of our own making as text (a change such as `+3`), right-aligned.
    NumText(String),
    /// A severity (`error`, `warning`, `info`), shown translated and coloured.
    Severity(String),
    /// A finding's values, in a small monospace font.
    Values(String),
    /// A label of our own that flags a row for attention (shown in the error colour).
    Flag(&'static str),
}

/// A table: the header labels (with `true` for right-aligned numeric columns) and the rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub head: Vec<(&'static str, bool)>,
    pub rows: Vec<Vec<Cell>>,
}

impl Table {
    /// A table with the header `head` — (Chinese, English, numeric) per column — in `lang`,
    /// and one row per item of `items`, made by `row`.
    fn new<T>(
        lang: Lang,
        head: &[(&'static str, &'static str, bool)],
        items: &[T],
        row: impl FnMut(&T) -> Vec<Cell>,
    ) -> Table {
        Table {
            head: head
                .iter()
                .map(|&(zh, en, num)| (lang.t(zh, en), num))
                .collect(),
            rows: items.iter().map(row).collect(),
        }
    }
}

/// Findings: severity, rule, subject, message, values.
pub fn findings(lang: Lang, findings: &[Finding]) -> Table {
    Table::new(
        lang,
        &[
            ("级别", "Severity", false),
            ("规则", "Rule", false),
            ("对象", "Subject", false),
            ("说明", "Message", false),
            ("数值", "Values", false),
        ],
        findings,
        |f| {
            vec![
                Cell::Severity(f.severity.clone()),
                Cell::Code(f.rule.clone()),
                Cell::Text(f.subject.clone()),
                Cell::Text(f.message.clone()),
                Cell::Values(super::html::values_text(&f.values)),
            ]
        },
    )
}

/// Changes by kind: the kind's label, the entry kind, the count.
pub fn changes_by_kind(lang: Lang, counts: &[Count]) -> Table {
    Table::new(
        lang,
        &[
            ("类型", "Kind", false),
            ("条目类型", "Entry kind", false),
            ("数量", "Count", true),
        ],
        counts,
        |k| {
            vec![
                Cell::Text(super::html::kind_label(lang, &k.key)),
                Cell::Code(k.key.clone()),
                Cell::Num(k.count),
            ]
        },
    )
}

/// Changes by organisation: org id (or "unknown"), name, count.
pub fn changes_by_org(lang: Lang, counts: &[OrgCount]) -> Table {
    Table::new(
        lang,
        &[
            ("组织编号", "Org id", false),
            ("名称", "Name", false),
            ("数量", "Count", true),
        ],
        counts,
        |g| {
            vec![
                org_id(lang, &g.org_id),
                Cell::Opt(g.name.clone()),
                Cell::Num(g.count),
            ]
        },
    )
}

/// An org id, or "unknown" for a record whose org is not known.
fn org_id(lang: Lang, id: &Option<String>) -> Cell {
    match id {
        Some(id) => Cell::Text(id.clone()),
        None => Cell::Label(lang.t("（未知）", "(unknown)")),
    }
}

/// Data findings per rule, now and in the previous period.
pub fn findings_by_rule(lang: Lang, trends: &[RuleTrend]) -> Table {
    Table::new(
        lang,
        &[
            ("规则", "Rule", false),
            ("说明", "Description", false),
            ("级别", "Severity", false),
            ("本期", "Now", true),
            ("上一期", "Previous", true),
            ("变化", "Change", true),
        ],
        trends,
        |r| {
            let description = match lang {
                Lang::Zh => &r.description_zh,
                Lang::En => &r.description_en,
            };
            vec![
                Cell::Code(r.rule.clone()),
                Cell::Text(description.clone()),
                Cell::Severity(r.severity.clone()),
                Cell::Num(r.count),
                Cell::Num(r.previous),
                Cell::NumText(delta(r.count, r.previous)),
            ]
        },
    )
}

/// Data findings per organisation, now and in the previous period.
pub fn findings_by_org(lang: Lang, trends: &[OrgTrend]) -> Table {
    Table::new(
        lang,
        &[
            ("组织编号", "Org id", false),
            ("名称", "Name", false),
            ("本期", "Now", true),
            ("上一期", "Previous", true),
            ("变化", "Change", true),
        ],
        trends,
        |g| {
            vec![
                org_id(lang, &g.org_id),
                Cell::Opt(g.name.clone()),
                Cell::Num(g.count),
                Cell::Num(g.previous),
                Cell::NumText(delta(g.count, g.previous)),
            ]
        },
    )
}

/// Counts under keys: the key (labelled `key` in Chinese and English) and its count
/// (labelled `count`).
pub fn counts(
    lang: Lang,
    key: (&'static str, &'static str),
    count: (&'static str, &'static str),
    counts: &[Count],
) -> Table {
    Table::new(
        lang,
        &[(key.0, key.1, false), (count.0, count.1, true)],
        counts,
        |c| vec![Cell::Text(c.key.clone()), Cell::Num(c.count)],
    )
}

/// Members with unpaid months: id, name, branch, the months, how many, six in a row.
pub fn arrears(lang: Lang, arrears: &[Arrear]) -> Table {
    Table::new(
        lang,
        &[
            ("党员编号", "Member id", false),
            ("姓名", "Name", false),
            ("支部", "Branch", false),
            ("未交月份", "Unpaid months", false),
            ("月数", "Months", true),
            ("连续六个月", "Six in a row", false),
        ],
        arrears,
        |a| {
            vec![
                Cell::Text(a.member_id.clone()),
                Cell::Opt(a.name.clone()),
                Cell::Opt(a.org_name.clone().or_else(|| a.org_id.clone())),
                Cell::Text(a.months.join(", ")),
                Cell::Num(a.months.len() as u64),
                if a.six_months {
                    Cell::Flag(lang.t("是", "yes"))
                } else {
                    Cell::Label("")
                },
            ]
        },
    )
}
