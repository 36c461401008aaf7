//! The Markdown rendering of a report: the same content as the HTML (charts as tables), the
//! signed JSON in a final fenced block.
//!
//! Every value from the document is escaped ([`md`]): `|` cannot break a table and markup
//! characters (`*`, `_`, `` ` ``, `[`, `<`, …) show as themselves. The output depends only
//! on the document (`report verify` renders it again and compares).

use std::fmt::Write as _;

use super::html::{
    branches_with_gaps, changes_text, dues_text, rule_text, scope, sev_line, severity, values_text,
    SECTIONS,
};
use super::model::{Finding, Lang, Report, MEETING_KINDS};
use super::sign::{embedded_json, MD_CLOSE, MD_OPEN};
use super::table::{self, Cell, Table};
use super::ReportError;

/// Characters that can start or end Markdown markup (or an HTML tag or entity, or a table
/// cell): each gets a backslash.
const MARKUP: [char; 13] = [
    '\\', '`', '*', '_', '[', ']', '<', '>', '|', '#', '~', '&', '!',
];

/// Escapes a value for Markdown text and table cells: a backslash before every markup
/// character, a line break as a space, no other control character; a leading `-` or `+`
/// (a list item) escaped too.
pub fn md(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    if s.starts_with(['-', '+']) {
        out.push('\\');
    }
    for c in s.chars() {
        match c {
            c if MARKUP.contains(&c) => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Text for an indented code block line: literal, without control characters.
fn raw(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

/// `` `code` `` for ids: backticks cannot occur inside (ids are escaped if they do).
fn code(s: &str) -> String {
    if s.contains('`') || s.contains('|') || s.contains('\n') {
        md(s)
    } else {
        format!("`{s}`")
    }
}

fn opt(v: Option<&str>) -> String {
    v.map_or_else(|| "—".to_owned(), md)
}

struct Out {
    s: String,
    lang: Lang,
}

impl Out {
    fn t(&self, zh: &'static str, en: &'static str) -> &'static str {
        self.lang.t(zh, en)
    }

    fn h2(&mut self, i: usize) {
        let (_, zh, en) = SECTIONS.get(i).copied().unwrap_or(("", "", ""));
        let _ = write!(self.s, "\n## {}\n\n", self.lang.t(zh, en));
    }

    fn h3(&mut self, text: &str) {
        let _ = write!(self.s, "\n### {text}\n\n");
    }

    fn line(&mut self, text: &str) {
        self.s.push_str(text);
        self.s.push_str("\n\n");
    }

    /// A table; `num` marks right-aligned columns; cells are already escaped.
    fn table(&mut self, head: &[(&str, bool)], rows: &[Vec<String>]) {
        if rows.is_empty() {
            let none = self.t("（无）", "(none)");
            self.line(none);
            return;
        }
        let h: Vec<&str> = head.iter().map(|(h, _)| *h).collect();
        let _ = writeln!(self.s, "| {} |", h.join(" | "));
        let a: Vec<&str> = head
            .iter()
            .map(|(_, n)| if *n { "---:" } else { "---" })
            .collect();
        let _ = writeln!(self.s, "|{}|", a.join("|"));
        for r in rows {
            let _ = writeln!(self.s, "| {} |", r.join(" | "));
        }
        self.s.push('\n');
    }

    /// A table of the shared model ([`table::Table`]), its cells escaped for Markdown.
    fn draw(&mut self, t: &Table) {
        let lang = self.lang;
        let rows: Vec<Vec<String>> = t
            .rows
            .iter()
            .map(|row| {
                row.iter()
                    .map(|c| match c {
                        Cell::Text(s) | Cell::Values(s) => md(s),
                        Cell::Opt(v) => opt(v.as_deref()),
                        Cell::Label(s) | Cell::Flag(s) => (*s).to_owned(),
                        Cell::Code(s) => code(s),
                        Cell::Num(n) => n.to_string(),
                        Cell::NumText(s) => s.clone(),
                        Cell::Severity(s) => severity(lang, s).to_owned(),
                    })
                    .collect()
            })
            .collect();
        self.table(&t.head, &rows);
    }
}

/// Renders the report as Markdown.
pub fn render(r: &Report) -> Result<String, ReportError> {
    let lang = r.lang;
    let mut o = Out {
        s: String::with_capacity(32 * 1024),
        lang,
    };
    let _ = write!(
        o.s,
        "# {}\n\n{} · {}\n\n",
        o.t(
            "党建信息系统合规报告",
            "Party-building information system compliance report"
        ),
        md(&scope(r)),
        md(&r.period.label)
    );
    let meta = [
        (o.t("台账", "Ledger"), md(&r.origin)),
        (
            o.t("报告期", "Period"),
            format!("{} – {}", md(&r.period.from), md(&r.period.to)),
        ),
        (o.t("评判日期", "Judged as of"), md(&r.period.as_of)),
        (
            o.t("上一期", "Previous period"),
            format!(
                "{} ({} – {})",
                md(&r.period.previous.label),
                r.period.previous.from,
                r.period.previous.to
            ),
        ),
        (
            o.t("生成时间（UTC）", "Generated (UTC)"),
            r.generated_at.clone(),
        ),
        (o.t("签发人", "Issued by"), md(&r.issued_by)),
        (
            o.t("检查点", "Checkpoint"),
            format!(
                "{} {} · {}",
                o.t("树大小", "tree size"),
                r.integrity.size,
                code(&r.integrity.root)
            ),
        ),
        (o.t("签名密钥", "Signing key"), code(&r.signed_by)),
    ];
    for (k, v) in meta {
        let _ = writeln!(o.s, "- **{k}**: {v}");
    }
    o.s.push('\n');
    summary(&mut o, r);
    integrity(&mut o, r);
    changes(&mut o, r);
    access(&mut o, r);
    quality(&mut o, r);
    org_life(&mut o, r);
    dues(&mut o, r);
    appendix(&mut o, r);
    signature(&mut o, r);
    o.s.push_str(MD_OPEN);
    o.s.push_str(&embedded_json(r)?);
    o.s.push_str(MD_CLOSE);
    Ok(o.s)
}

fn summary(o: &mut Out, r: &Report) {
    let lang = o.lang;
    let q = &r.quality.totals;
    let consistent = match &r.integrity.previous {
        None => lang.t("首份报告", "first report"),
        Some(p) if p.consistent => lang.t("一致", "consistent"),
        Some(_) => lang.t("**不一致**", "**INCONSISTENT**"),
    };
    let rows = vec![
        vec![
            o.t("台账验证", "Ledger verification").to_owned(),
            if r.integrity.verify.ok {
                o.t("通过", "passed").to_owned()
            } else {
                o.t("**未通过**", "**FAILED**").to_owned()
            },
        ],
        vec![
            o.t("与上一份报告", "Since the previous report").to_owned(),
            consistent.to_owned(),
        ],
        vec![
            o.t("记录变更", "Record changes").to_owned(),
            r.changes.total.to_string(),
        ],
        vec![
            o.t("访问决定 / 拒绝", "Access decisions / denied")
                .to_owned(),
            format!("{} / {}", r.access.decisions, r.access.denied),
        ],
        vec![
            o.t("访问异常", "Access findings").to_owned(),
            r.access.findings.len().to_string(),
        ],
        vec![
            o.t(
                "数据问题（错误/警告/提示）",
                "Data findings (error/warning/info)",
            )
            .to_owned(),
            format!("{} / {} / {}", q.error, q.warning, q.info),
        ],
        vec![
            o.t("组织生活缺项支部", "Branches with meeting gaps")
                .to_owned(),
            format!("{} / {}", branches_with_gaps(r), r.org_life.branches.len()),
        ],
        vec![
            o.t("欠缴党费党员", "Members in dues arrears").to_owned(),
            r.dues.members.to_string(),
        ],
    ];
    o.table(&[(o.t("摘要", "Summary"), false), ("", true)], &rows);
}

fn integrity(o: &mut Out, r: &Report) {
    let lang = o.lang;
    let i = &r.integrity;
    o.h2(0);
    let text = match lang {
        Lang::Zh => format!(
            "本报告依据台账“{}”在树大小 {} 处的签名检查点计算（根哈希 {}）。",
            md(&r.origin),
            i.size,
            code(&i.root)
        ),
        Lang::En => format!(
            "This report was computed from ledger {} at its signed checkpoint of tree size {} (root {}).",
            code(&r.origin),
            i.size,
            code(&i.root)
        ),
    };
    o.line(&text);
    let v = &i.verify;
    let mut rows = vec![
        vec![
            o.t("验证结果", "Result").to_owned(),
            if v.ok {
                o.t("通过", "passed").to_owned()
            } else {
                o.t("**未通过**", "**FAILED**").to_owned()
            },
        ],
        vec![
            o.t("已验证条目", "Entries verified").to_owned(),
            v.size.to_string(),
        ],
        vec![
            o.t("已验证检查点", "Checkpoints verified").to_owned(),
            v.checkpoints_verified.to_string(),
        ],
        vec![
            o.t("报告期内条目", "Entries in the period").to_owned(),
            i.entries_in_period.to_string(),
        ],
    ];
    if let Some(f) = &v.failure {
        rows.push(vec![
            o.t("首个错误", "First failure").to_owned(),
            md(&format!("seq {} · {} · {}", f.seq, f.code, f.message)),
        ]);
    }
    o.table(
        &[(o.t("项目", "Item"), false), (o.t("结果", "Value"), false)],
        &rows,
    );
    o.h3(o.t(
        "与上一份报告的一致性",
        "Consistency with the previous report",
    ));
    match &i.previous {
        None => {
            let t = o.t(
                "这是本范围的第一份报告：没有上一份报告的检查点，故无一致性证明。",
                "This is the first report of this scope: there is no previous checkpoint to prove consistency from.",
            );
            o.line(t);
        }
        Some(p) => {
            let rows = vec![
                vec![
                    o.t("上一份报告条目", "Previous report entry").to_owned(),
                    p.seq.to_string(),
                ],
                vec![o.t("上一份报告期", "Its period").to_owned(), md(&p.period)],
                vec![o.t("签发时间", "Issued at").to_owned(), md(&p.issued_at)],
                vec![
                    o.t("其检查点树大小", "Its checkpoint size").to_owned(),
                    p.size.to_string(),
                ],
                vec![o.t("其根哈希", "Its root").to_owned(), code(&p.root)],
                vec![
                    o.t("一致性证明哈希数", "Consistency proof hashes")
                        .to_owned(),
                    p.proof.len().to_string(),
                ],
                vec![
                    o.t("结论", "Conclusion").to_owned(),
                    if p.consistent {
                        o.t(
                            "一致：上一份报告所见台账是本台账的前缀，未被改写",
                            "consistent: the ledger the previous report saw is a prefix of this one",
                        )
                        .to_owned()
                    } else {
                        o.t(
                            "**不一致：台账自上一份报告以来被改写或截断**",
                            "**INCONSISTENT: the ledger was rewritten or truncated since the previous report**",
                        )
                        .to_owned()
                    },
                ],
            ];
            o.table(
                &[(o.t("项目", "Item"), false), (o.t("结果", "Value"), false)],
                &rows,
            );
            for h in &p.proof {
                let _ = writeln!(o.s, "    {}", raw(h));
            }
            if !p.proof.is_empty() {
                o.s.push('\n');
            }
        }
    }
}

fn changes(o: &mut Out, r: &Report) {
    let lang = o.lang;
    let c = &r.changes;
    o.h2(1);
    o.line(&changes_text(lang, c));
    o.h3(o.t("每月变更", "Changes per month"));
    let rows: Vec<Vec<String>> = c
        .by_month
        .iter()
        .map(|m| vec![md(&m.key), m.count.to_string()])
        .collect();
    o.table(
        &[(o.t("月份", "Month"), false), (o.t("数量", "Count"), true)],
        &rows,
    );
    o.h3(o.t("按类型", "By kind"));
    o.draw(&table::changes_by_kind(lang, &c.by_kind));
    o.h3(o.t("按组织", "By organisation"));
    o.draw(&table::changes_by_org(lang, &c.by_org));
    o.h3(o.t("按操作人", "By actor"));
    o.draw(&table::counts(
        lang,
        ("操作人", "Actor"),
        ("数量", "Count"),
        &c.by_actor,
    ));
}

fn findings_table(o: &mut Out, findings: &[Finding]) {
    let lang = o.lang;
    o.draw(&table::findings(lang, findings));
}

fn access(o: &mut Out, r: &Report) {
    let lang = o.lang;
    let a = &r.access;
    o.h2(2);
    let rows = vec![
        vec![
            o.t("访问决定", "Decisions").to_owned(),
            a.decisions.to_string(),
        ],
        vec![o.t("允许", "Allowed").to_owned(), a.allowed.to_string()],
        vec![o.t("拒绝", "Denied").to_owned(), a.denied.to_string()],
        vec![o.t("用户", "Users").to_owned(), a.users.to_string()],
        vec![
            o.t("访问异常", "Findings").to_owned(),
            a.findings.len().to_string(),
        ],
    ];
    o.table(
        &[(o.t("项目", "Item"), false), (o.t("数量", "Count"), true)],
        &rows,
    );
    o.h3(o.t("每日访问决定", "Decisions per day"));
    let rows: Vec<Vec<String>> = a
        .by_day
        .iter()
        .map(|d| vec![md(&d.day), d.allowed.to_string(), d.denied.to_string()])
        .collect();
    o.table(
        &[
            (o.t("日期", "Day"), false),
            (o.t("允许", "Allowed"), true),
            (o.t("拒绝", "Denied"), true),
        ],
        &rows,
    );
    o.h3(o.t("访问异常", "Access findings"));
    if !a.audited {
        let t = o.t("未进行访问审计。", "The access audit did not run.");
        o.line(t);
    } else if a.findings.is_empty() {
        let t = o.t("访问审计未发现异常。", "The access audit found nothing.");
        o.line(t);
    } else {
        findings_table(o, &a.findings);
    }
    o.h3(o.t("按操作", "By action"));
    o.draw(&table::counts(
        lang,
        ("操作", "Action"),
        ("数量", "Count"),
        &a.by_action,
    ));
    o.h3(o.t("被拒绝的用户", "Users denied"));
    o.draw(&table::counts(
        lang,
        ("用户", "User"),
        ("拒绝次数", "Denials"),
        &a.denied_by_user,
    ));
}

fn quality(o: &mut Out, r: &Report) {
    let lang = o.lang;
    let q = &r.quality;
    o.h2(3);
    let sev = |s| sev_line(lang, s);
    let text = match lang {
        Lang::Zh => format!(
            "一致性检查于 {} 评判；上一期于 {} 评判，依据台账当时已有的 {} 个条目重建的记录。本期：{}；上一期：{}。新增 {} 项，已纠正 {} 项。",
            q.as_of,
            q.previous_as_of,
            q.previous_entries,
            sev(&q.totals),
            sev(&q.previous_totals),
            q.new,
            q.resolved
        ),
        Lang::En => format!(
            "Consistency checks judged as of {}; the previous period as of {}, on the records as the ledger held them then (rebuilt from {} entries). Now: {}; previous: {}. {} new, {} resolved.",
            q.as_of,
            q.previous_as_of,
            q.previous_entries,
            sev(&q.totals),
            sev(&q.previous_totals),
            q.new,
            q.resolved
        ),
    };
    o.line(&text);
    o.h3(o.t("各规则问题数", "Findings per rule"));
    o.draw(&table::findings_by_rule(lang, &q.by_rule));
    o.h3(o.t("各组织问题数", "Findings per organisation"));
    o.draw(&table::findings_by_org(lang, &q.by_org));
    let t = o.t(
        "每一项问题记录见附录。敏感字段（公民身份号码、电话、收入）一律脱敏。",
        "Every record with a finding is listed in the appendix. Sensitive fields (ID number, phone, income) are always masked.",
    );
    o.line(t);
}

fn org_life(o: &mut Out, r: &Report) {
    let lang = o.lang;
    let l = &r.org_life;
    o.h2(4);
    let t = o.t(
        "三会一课：党员大会每季度、支委会每月（设支委会的支部）、主题党日每月、党课每季度、组织生活会和民主评议党员每年。标 **0** 的为应开未开的月度会议；“问题”列为一致性检查发现的缺项。",
        "Member meeting each quarter, committee meeting each month (branches with a committee), theme party day each month, party lecture each quarter, organisational life meeting and member appraisal each year. A **0** marks a monthly meeting that was due and not held; the Issues column lists the meeting rules the checks found broken.",
    );
    o.line(t);
    let mut rows = vec![vec![
        o.t("支部", "Branches").to_owned(),
        l.branches.len().to_string(),
    ]];
    for (k, zh, en) in MEETING_KINDS {
        rows.push(vec![lang.t(zh, en).to_owned(), l.totals.get(k).to_string()]);
    }
    o.table(
        &[(o.t("项目", "Item"), false), (o.t("数量", "Count"), true)],
        &rows,
    );
    if l.branches.is_empty() || l.months.is_empty() {
        let t = o.t(
            "报告期内无可评判的支部或月份。",
            "No branch or month to judge in the period.",
        );
        o.line(t);
        return;
    }
    let mut head: Vec<(&str, bool)> = vec![
        (o.t("支部", "Branch"), false),
        (o.t("月份", "Month"), false),
    ];
    for (_, zh, en) in MEETING_KINDS {
        head.push((lang.t(zh, en), true));
    }
    head.push((o.t("问题", "Issues"), false));
    let mut rows = Vec::new();
    for b in &l.branches {
        for (i, m) in b.months.iter().enumerate() {
            let mut row = vec![
                if i == 0 {
                    format!(
                        "{} ({}){}",
                        md(&b.name),
                        md(&b.org_id),
                        if b.has_committee {
                            o.t(" · 设支委会", " · has committee")
                        } else {
                            ""
                        }
                    )
                } else {
                    String::new()
                },
                md(&m.month),
            ];
            for (k, _, _) in MEETING_KINDS {
                let n = m.get(k);
                let due = k == "theme_day" || (k == "committee_meeting" && b.has_committee);
                row.push(if due && n == 0 {
                    "**0**".to_owned()
                } else {
                    n.to_string()
                });
            }
            row.push(if i == 0 {
                if b.issues.is_empty() {
                    o.t("无", "none").to_owned()
                } else {
                    b.issues
                        .iter()
                        .map(|x| md(&rule_text(r, x)))
                        .collect::<Vec<_>>()
                        .join("; ")
                }
            } else {
                String::new()
            });
            rows.push(row);
        }
    }
    o.table(&head, &rows);
}

fn dues(o: &mut Out, r: &Report) {
    let lang = o.lang;
    let d = &r.dues;
    o.h2(5);
    o.line(&dues_text(lang, d));
    if d.arrears.is_empty() {
        return;
    }
    o.draw(&table::arrears(lang, &d.arrears));
}

fn appendix(o: &mut Out, r: &Report) {
    let lang = o.lang;
    o.h2(6);
    let recs = &r.quality.records;
    let text = match lang {
        Lang::Zh => format!("共 {} 条记录存在问题。", recs.len()),
        Lang::En => format!("{} records have findings.", recs.len()),
    };
    o.line(&text);
    if recs.is_empty() {
        return;
    }
    let mut rows = Vec::new();
    for rec in recs {
        for (i, f) in rec.findings.iter().enumerate() {
            let first = i == 0;
            rows.push(vec![
                if first {
                    md(&rec.subject)
                } else {
                    String::new()
                },
                if first {
                    opt(rec.name.as_deref())
                } else {
                    String::new()
                },
                if first {
                    opt(rec.org_name.as_deref().or(rec.org_id.as_deref()))
                } else {
                    String::new()
                },
                severity(lang, &f.severity).to_owned(),
                code(&f.rule),
                md(&f.message),
                md(&values_text(&f.values)),
            ]);
        }
    }
    o.table(
        &[
            (o.t("记录", "Record"), false),
            (o.t("名称", "Name"), false),
            (o.t("所在组织", "Organisation"), false),
            (o.t("级别", "Severity"), false),
            (o.t("规则", "Rule"), false),
            (o.t("说明", "Message"), false),
            (o.t("数值", "Values"), false),
        ],
        &rows,
    );
}

fn signature(o: &mut Out, r: &Report) {
    o.h2(7);
    let t = o.t(
        "本报告的全部内容来自文末嵌入的 JSON 文档；该文档（除 signature 字段外）按 RFC 8785 规范化后，由台账签名密钥以 Ed25519 签名。报告所依据的检查点：",
        "Everything in this report comes from the JSON document at the end; that document (without its signature member), in RFC 8785 canonical form, is signed with the ledger's Ed25519 key. The checkpoint the report was computed at:",
    );
    o.line(t);
    for l in r.checkpoint.lines() {
        let _ = writeln!(o.s, "    {}", raw(l));
    }
    o.s.push('\n');
    let _ = write!(
        o.s,
        "- {} {}\n- {} {}\n\n",
        o.t("签名密钥：", "Signing key:"),
        code(&r.signed_by),
        o.t("签名：", "Signature:"),
        code(r.signature.as_deref().unwrap_or(""))
    );
    let t = o.t(
        "验证（改动任何一个字符都会失败）：",
        "To verify (a change of any single character fails):",
    );
    o.line(t);
    let _ = writeln!(
        o.s,
        "    djaudit report verify {} --vkey '{}'",
        o.t("报告文件", "FILE"),
        raw(&r.signed_by)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_values_are_escaped() {
        let s = crate::report::sign::tests::signer("test.example/ledger");
        let r = crate::report::sign::tests::sample(&s, Lang::En);
        let text = render(&r).unwrap();
        assert!(!text.contains("<script>"));
        assert!(text.contains("\\<script\\>alert(1)\\</script\\> \\| \\*x\\* \\`y\\` \\&"));
        // Every table row keeps its column count: no value adds a `|` cell.
        for line in text.lines().filter(|l| l.starts_with("| ")) {
            let cells = line.replace("\\|", "").matches('|').count();
            assert!(cells >= 3, "{line}");
        }
        assert!(text.ends_with("```\n"));
        assert_eq!(text.matches("\n```json\n").count(), 1);
    }

    #[test]
    fn escapes_markdown() {
        assert_eq!(md("a|b"), "a\\|b");
        assert_eq!(
            md("<script>alert(1)</script>"),
            "\\<script\\>alert(1)\\</script\\>"
        );
        assert_eq!(
            md("*x* _y_ `z` [l](u)"),
            "\\*x\\* \\_y\\_ \\`z\\` \\[l\\](u)"
        );
        assert_eq!(md("line\nbreak"), "line break");
        assert_eq!(md("- item"), "\\- item");
        assert_eq!(md("2026-09-30"), "2026-09-30");
        assert_eq!(code("member.update"), "`member.update`");
        assert_eq!(code("a`b"), "a\\`b");
    }
}
