//! The HTML rendering of a report: one self-contained file (inline CSS and SVG, no script
//! but the signed JSON data block, no external font or image), printable on A4 and readable
//! on a phone.
//!
//! Every value from the document is HTML-escaped ([`esc`]): names, topics and org names are
//! data, and data may contain `<script>`. The output depends only on the document, so that
//! `report verify` can render it again and compare byte for byte.

use std::fmt::Write as _;

use super::model::{Changes, Dues, Finding, Lang, Report, Severities, MEETING_KINDS};
use super::sign::{embedded_json, HTML_CLOSE, HTML_OPEN};
use super::svg::{self, Series};
use super::table::{self, Cell, Table};
use super::ReportError;

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = r#"
:root{--fg:#1b1b1b;--muted:#5f6368;--line:#d9d9d9;--head:#f3f3f3;--accent:#b3261e;--ok:#1e7a34;--warn:#b26a00;--err:#b3261e;--info:#1a5fb4}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;color:var(--fg);background:#fff;font-family:system-ui,-apple-system,"Segoe UI","PingFang SC","Hiragino Sans GB","Noto Sans CJK SC","Source Han Sans SC","Microsoft YaHei",sans-serif;line-height:1.55;font-size:15px}
.page{max-width:1080px;margin:0 auto;padding:0 16px 32px}
header.cover{border-top:6px solid var(--accent);padding:20px 0 4px}
h1{font-size:1.6rem;margin:.2em 0 .1em}
.sub{color:var(--muted);margin:0 0 12px}
h2{font-size:1.25rem;border-bottom:2px solid var(--accent);padding-bottom:3px;margin:2.2em 0 .6em}
h3{font-size:1.05rem;margin:1.4em 0 .4em}
p{margin:.4em 0;overflow-wrap:anywhere}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:8px 0;font-size:.92rem}
dl.meta dt{color:var(--muted)}
dl.meta dd{margin:0;word-break:break-all}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:10px;margin:14px 0}
.card{border:1px solid var(--line);border-radius:6px;padding:8px 10px}
.card .n{font-size:1.45rem;font-weight:600;line-height:1.2}
.card .l{color:var(--muted);font-size:.82rem}
nav.toc ol{margin:6px 0;padding-left:1.4em;columns:2;column-gap:24px}
.tbl{overflow-x:auto;-webkit-overflow-scrolling:touch;margin:8px 0 12px}
table{border-collapse:collapse;width:100%;font-size:.88rem}
th,td{border:1px solid var(--line);padding:4px 6px;text-align:left;vertical-align:top}
thead th{background:var(--head)}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.gap{background:#fde7e5;color:var(--err);font-weight:600}
td.v{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.78rem;word-break:break-all;max-width:360px}
td.sev,td code{white-space:nowrap}
.sev-error{color:var(--err);font-weight:600}.sev-warning{color:var(--warn);font-weight:600}.sev-info{color:var(--info)}
.ok{color:var(--ok);font-weight:600}.bad{color:var(--err);font-weight:600}
.muted{color:var(--muted);fill:#5f6368;font-size:13px}
.note{color:var(--muted);font-size:.88rem}
svg.chart{display:block;width:100%;height:auto;max-width:900px;margin:6px 0 10px}
svg .lbl{font-size:11px;fill:#3c4043}
svg .val{font-size:10px;fill:#1b1b1b}
svg .grid{stroke:#e3e3e3;stroke-width:1}
pre{white-space:pre-wrap;word-break:break-all;background:#f6f6f6;border:1px solid var(--line);padding:8px;font-size:.78rem}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.85em;word-break:break-all}
footer{margin-top:28px;color:var(--muted);font-size:.82rem;border-top:1px solid var(--line);padding-top:8px}
@media (max-width:640px){body{font-size:14px}h1{font-size:1.3rem}nav.toc ol{columns:1}th,td{padding:3px 4px}.card .n{font-size:1.2rem}dl.meta{grid-template-columns:1fr}}
@page{size:A4;margin:14mm 12mm}
@media print{body{font-size:10pt}.page{max-width:none;padding:0}section{break-before:page}section.first{break-before:auto}h2,h3{break-after:avoid}tr,.card,svg.chart,pre{break-inside:avoid}.tbl{overflow:visible}thead{display:table-header-group}nav.toc{break-after:page}a{color:inherit;text-decoration:none}}
"#;

/// A value or a dash.
fn opt(v: Option<&str>) -> String {
    v.map_or_else(|| "—".to_owned(), esc)
}

/// `+3`, `−2` or `0`.
pub fn delta(now: u64, before: u64) -> String {
    match now.cmp(&before) {
        std::cmp::Ordering::Greater => format!("+{}", now - before),
        std::cmp::Ordering::Less => format!("\u{2212}{}", before - now),
        std::cmp::Ordering::Equal => "0".to_owned(),
    }
}

/// The label of a severity.
pub fn severity(lang: Lang, s: &str) -> &'static str {
    match s {
        "error" => lang.t("错误", "error"),
        "warning" => lang.t("警告", "warning"),
        "info" => lang.t("提示", "info"),
        _ => lang.t("未知", "unknown"),
    }
}

/// The label of an entry kind such as `member.update`.
pub fn kind_label(lang: Lang, kind: &str) -> String {
    let (family, action) = kind.split_once('.').unwrap_or((kind, ""));
    let f = match family {
        "org" => lang.t("党组织", "Organisation"),
        "member" => lang.t("党员", "Member"),
        "dues" => lang.t("党费", "Dues"),
        "meeting" => lang.t("组织生活", "Meeting"),
        "transfer" => lang.t("组织关系转接", "Transfer"),
        "user" => lang.t("系统用户", "User"),
        _ => return kind.to_owned(),
    };
    let a = match action {
        "create" => lang.t("新增", "created"),
        "record" => lang.t("登记", "recorded"),
        "update" => lang.t("修改", "updated"),
        "remove" => lang.t("删除", "removed"),
        _ => return kind.to_owned(),
    };
    match lang {
        Lang::Zh => format!("{f}{a}"),
        Lang::En => format!("{f} {a}"),
    }
}

/// The description of a check rule in the report's language, else its id.
pub fn rule_text(r: &Report, rule: &str) -> String {
    r.quality
        .by_rule
        .iter()
        .find(|t| t.rule == rule)
        .map(|t| match r.lang {
            Lang::Zh => t.description_zh.clone(),
            Lang::En => t.description_en.clone(),
        })
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| rule.to_owned())
}

/// Compact JSON text of finding values.
pub fn values_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::Object(m) if m.is_empty() => String::new(),
        v => serde_json::to_string(v).unwrap_or_default(),
    }
}

/// The title of the report.
pub fn title(r: &Report) -> String {
    let t = r.lang.t("党建信息系统合规报告", "Compliance report");
    format!("{t} · {}", r.period.label)
}

/// Scope: the org's name (and id) or all organisations.
pub fn scope(r: &Report) -> String {
    match &r.org {
        Some(o) => match &o.name {
            Some(n) => format!("{n} ({})", o.id),
            None => o.id.clone(),
        },
        None => r.lang.t("全部组织", "All organisations").to_owned(),
    }
}

/// The section headings, in order: (anchor, Chinese, English).
pub const SECTIONS: [(&str, &str, &str); 8] = [
    ("integrity", "一、台账完整性", "1. Ledger integrity"),
    ("changes", "二、记录变更", "2. Record changes"),
    ("access", "三、访问审计", "3. Access audit"),
    ("quality", "四、数据质量", "4. Data quality"),
    (
        "org-life",
        "五、组织生活（三会一课）",
        "5. Organisational life",
    ),
    ("dues", "六、党费收缴", "6. Party dues"),
    (
        "appendix",
        "附录：问题记录清单",
        "Appendix: records with findings",
    ),
    ("signature", "签名与验证", "Signature and verification"),
];

fn heading(lang: Lang, i: usize) -> &'static str {
    SECTIONS.get(i).map_or("", |(_, zh, en)| lang.t(zh, en))
}

struct Out {
    s: String,
    lang: Lang,
}

impl Out {
    fn push(&mut self, text: &str) {
        self.s.push_str(text);
    }

    fn t(&self, zh: &'static str, en: &'static str) -> &'static str {
        self.lang.t(zh, en)
    }

    fn section(&mut self, i: usize) {
        let (id, _, _) = SECTIONS.get(i).copied().unwrap_or(("", "", ""));
        let class = if i == 0 { " class=\"first\"" } else { "" };
        let _ = write!(
            self.s,
            "<section id=\"{id}\"{class}>\n<h2>{}</h2>\n",
            esc(heading(self.lang, i))
        );
    }

    fn end_section(&mut self) {
        self.push("</section>\n");
    }

    /// A table: header cells (with `n` for numeric columns) and rows of raw cell HTML.
    fn table(&mut self, head: &[(&str, bool)], rows: &[Vec<(String, &str)>]) {
        self.push("<div class=\"tbl\"><table>\n<thead><tr>");
        for (h, num) in head {
            let _ = write!(
                self.s,
                "<th{}>{}</th>",
                if *num { " class=\"n\"" } else { "" },
                esc(h)
            );
        }
        self.push("</tr></thead>\n<tbody>\n");
        for row in rows {
            self.push("<tr>");
            for (cell, class) in row {
                if class.is_empty() {
                    let _ = write!(self.s, "<td>{cell}</td>");
                } else {
                    let _ = write!(self.s, "<td class=\"{class}\">{cell}</td>");
                }
            }
            self.push("</tr>\n");
        }
        self.push("</tbody></table></div>\n");
    }

    /// A table of the shared model ([`table::Table`]), its cells marked up for HTML.
    fn draw(&mut self, t: &Table) {
        let lang = self.lang;
        let rows: Vec<Vec<(String, &str)>> = t
            .rows
            .iter()
            .map(|row| {
                row.iter()
                    .map(|c| match c {
                        Cell::Text(s) => cell(s),
                        Cell::Opt(v) => (opt(v.as_deref()), ""),
                        Cell::Label(s) => cell(s),
                        Cell::Code(s) => (format!("<code>{}</code>", esc(s)), ""),
                        Cell::Num(n) => num(*n),
                        Cell::NumText(s) => (esc(s), "n"),
                        Cell::Severity(s) => sev_cell(lang, s),
                        Cell::Values(s) => (esc(s), "v"),
                        Cell::Flag(s) => (esc(s), "sev-error"),
                    })
                    .collect()
            })
            .collect();
        self.table(&t.head, &rows);
    }

    fn para(&mut self, text: &str) {
        let _ = writeln!(self.s, "<p>{}</p>", esc(text));
    }

    fn note(&mut self, text: &str) {
        let _ = writeln!(self.s, "<p class=\"note\">{}</p>", esc(text));
    }

    fn cards(&mut self, cards: &[(String, &str, &str)]) {
        self.push("<div class=\"cards\">\n");
        for (n, label, class) in cards {
            let cls = if class.is_empty() {
                String::new()
            } else {
                format!(" {class}")
            };
            let _ = writeln!(
                self.s,
                "<div class=\"card\"><div class=\"n{cls}\">{}</div><div class=\"l\">{}</div></div>",
                esc(n),
                esc(label)
            );
        }
        self.push("</div>\n");
    }
}

/// The opening line of the changes section (no markup: the same in every format).
pub fn changes_text(lang: Lang, c: &Changes) -> String {
    match lang {
        Lang::Zh => format!(
            "报告期内台账记录了 {} 项党建记录变更（导入文件 {} 个）。按台账时间（北京时间）统计。",
            c.total, c.imports
        ),
        Lang::En => format!(
            "The ledger recorded {} changes to party records in the period ({} files imported), by ledger time (Asia/Shanghai).",
            c.total, c.imports
        ),
    }
}

/// The opening line of the dues section (no markup: the same in every format).
pub fn dues_text(lang: Lang, d: &Dues) -> String {
    match lang {
        Lang::Zh => format!(
            "{} 名党员共欠缴 {} 个月党费；其中 {} 名连续六个月及以上未交纳（按党章第九条提请审查，不自动改变党籍）。",
            d.members, d.missing_months, d.six_months_unpaid
        ),
        Lang::En => format!(
            "{} members have {} unpaid months; {} of them six or more consecutive months (flagged for review under Art. 9 of the Party Constitution, no automatic status change).",
            d.members, d.missing_months, d.six_months_unpaid
        ),
    }
}

fn num(n: u64) -> (String, &'static str) {
    (n.to_string(), "n")
}

fn cell(s: &str) -> (String, &'static str) {
    (esc(s), "")
}

fn sev_cell(lang: Lang, s: &str) -> (String, &'static str) {
    let class = match s {
        "error" => "sev sev-error",
        "warning" => "sev sev-warning",
        _ => "sev sev-info",
    };
    (esc(severity(lang, s)), class)
}

/// Renders the report as one HTML document.
pub fn render(r: &Report) -> Result<String, ReportError> {
    let lang = r.lang;
    let mut o = Out {
        s: String::with_capacity(64 * 1024),
        lang,
    };
    let _ = write!(
        o.s,
        "<!DOCTYPE html>\n<html lang=\"{}\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<meta name=\"generator\" content=\"djaudit\">\n<title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<div class=\"page\">\n",
        lang.t("zh-CN", "en"),
        esc(&title(r))
    );
    cover(&mut o, r);
    integrity(&mut o, r);
    changes(&mut o, r);
    access(&mut o, r);
    quality(&mut o, r);
    org_life(&mut o, r);
    dues(&mut o, r);
    appendix(&mut o, r);
    signature(&mut o, r);
    let _ = write!(
        o.s,
        "<footer>{} djaudit · {} {}</footer>\n</div>\n",
        esc(o.t("由", "Made by")),
        esc(o.t("格式", "format")),
        esc(&r.format)
    );
    o.push(HTML_OPEN);
    o.push(&embedded_json(r)?);
    o.push(HTML_CLOSE);
    o.push("\n</body>\n</html>\n");
    Ok(o.s)
}

/// Branches with at least one meeting rule broken.
pub fn branches_with_gaps(r: &Report) -> usize {
    r.org_life
        .branches
        .iter()
        .filter(|b| !b.issues.is_empty())
        .count()
}

fn cover(o: &mut Out, r: &Report) {
    let lang = o.lang;
    let _ = write!(
        o.s,
        "<header class=\"cover\">\n<h1>{}</h1>\n<p class=\"sub\">{} · {}</p>\n<dl class=\"meta\">\n",
        esc(o.t("党建信息系统合规报告", "Party-building information system compliance report")),
        esc(&scope(r)),
        esc(&r.period.label)
    );
    let meta: [(&str, String); 8] = [
        (o.t("台账", "Ledger"), r.origin.clone()),
        (
            o.t("报告期", "Period"),
            format!("{} – {}", r.period.from, r.period.to),
        ),
        (o.t("评判日期", "Judged as of"), r.period.as_of.clone()),
        (
            o.t("上一期", "Previous period"),
            format!(
                "{} ({} – {})",
                r.period.previous.label, r.period.previous.from, r.period.previous.to
            ),
        ),
        (
            o.t("生成时间（UTC）", "Generated (UTC)"),
            r.generated_at.clone(),
        ),
        (o.t("签发人", "Issued by"), r.issued_by.clone()),
        (
            o.t("检查点", "Checkpoint"),
            format!(
                "{} {} · {}",
                o.t("树大小", "tree size"),
                r.integrity.size,
                r.integrity.root
            ),
        ),
        (o.t("签名密钥", "Signing key"), r.signed_by.clone()),
    ];
    for (k, v) in &meta {
        let _ = writeln!(o.s, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(v));
    }
    o.push("</dl>\n");
    let verified = if r.integrity.verify.ok {
        (lang.t("通过", "passed"), "ok")
    } else {
        (lang.t("未通过", "FAILED"), "bad")
    };
    let consistent = match &r.integrity.previous {
        None => (lang.t("首份报告", "first report"), ""),
        Some(p) if p.consistent => (lang.t("一致", "consistent"), "ok"),
        Some(_) => (lang.t("不一致", "INCONSISTENT"), "bad"),
    };
    let q = &r.quality.totals;
    o.cards(&[
        (
            verified.0.to_owned(),
            lang.t("台账验证", "Ledger verification"),
            verified.1,
        ),
        (
            consistent.0.to_owned(),
            lang.t("与上一份报告", "Since the previous report"),
            consistent.1,
        ),
        (
            r.changes.total.to_string(),
            lang.t("记录变更", "Record changes"),
            "",
        ),
        (
            format!("{} / {}", r.access.decisions, r.access.denied),
            lang.t("访问决定 / 拒绝", "Access decisions / denied"),
            "",
        ),
        (
            r.access.findings.len().to_string(),
            lang.t("访问异常", "Access findings"),
            if r.access.findings.is_empty() {
                "ok"
            } else {
                "bad"
            },
        ),
        (
            format!("{} / {} / {}", q.error, q.warning, q.info),
            lang.t(
                "数据问题（错误/警告/提示）",
                "Data findings (error/warning/info)",
            ),
            if q.error > 0 { "bad" } else { "" },
        ),
        (
            format!("{} / {}", branches_with_gaps(r), r.org_life.branches.len()),
            lang.t("组织生活缺项支部", "Branches with meeting gaps"),
            "",
        ),
        (
            r.dues.members.to_string(),
            lang.t("欠缴党费党员", "Members in dues arrears"),
            "",
        ),
    ]);
    o.push("</header>\n<nav class=\"toc\"><ol>\n");
    for (id, zh, en) in SECTIONS {
        let _ = writeln!(
            o.s,
            "<li><a href=\"#{id}\">{}</a></li>",
            esc(lang.t(zh, en))
        );
    }
    o.push("</ol></nav>\n");
}

fn integrity(o: &mut Out, r: &Report) {
    let lang = o.lang;
    let i = &r.integrity;
    o.section(0);
    o.para(&match lang {
        Lang::Zh => format!(
            "本报告依据台账“{}”在树大小 {} 处的签名检查点计算（根哈希 {}）。",
            r.origin, i.size, i.root
        ),
        Lang::En => format!(
            "This report was computed from ledger `{}` at its signed checkpoint of tree size {} (root {}).",
            r.origin, i.size, i.root
        ),
    });
    let v = &i.verify;
    let mut rows = vec![
        vec![
            cell(o.t("验证结果", "Result")),
            if v.ok {
                (esc(o.t("通过", "passed")), "ok")
            } else {
                (esc(o.t("未通过", "FAILED")), "bad")
            },
        ],
        vec![cell(o.t("已验证条目", "Entries verified")), num(v.size)],
        vec![
            cell(o.t("已验证检查点", "Checkpoints verified")),
            num(v.checkpoints_verified),
        ],
        vec![
            cell(o.t("报告期内条目", "Entries in the period")),
            num(i.entries_in_period),
        ],
    ];
    if let Some(f) = &v.failure {
        rows.push(vec![
            cell(o.t("首个错误", "First failure")),
            (
                esc(&format!("seq {} · {} · {}", f.seq, f.code, f.message)),
                "bad",
            ),
        ]);
    }
    o.table(
        &[(o.t("项目", "Item"), false), (o.t("结果", "Value"), false)],
        &rows,
    );
    o.push(&format!(
        "<h3>{}</h3>\n",
        esc(o.t(
            "与上一份报告的一致性",
            "Consistency with the previous report"
        ))
    ));
    match &i.previous {
        None => o.para(o.t(
            "这是本范围的第一份报告：没有上一份报告的检查点，故无一致性证明。",
            "This is the first report of this scope: there is no previous checkpoint to prove consistency from.",
        )),
        Some(p) => {
            let rows = vec![
                vec![cell(o.t("上一份报告条目", "Previous report entry")), num(p.seq)],
                vec![cell(o.t("上一份报告期", "Its period")), cell(&p.period)],
                vec![cell(o.t("签发时间", "Issued at")), cell(&p.issued_at)],
                vec![cell(o.t("其检查点树大小", "Its checkpoint size")), num(p.size)],
                vec![cell(o.t("其根哈希", "Its root")), (esc(&p.root), "v")],
                vec![
                    cell(o.t("一致性证明哈希数", "Consistency proof hashes")),
                    num(p.proof.len() as u64),
                ],
                vec![
                    cell(o.t("结论", "Conclusion")),
                    if p.consistent {
                        (
                            esc(o.t(
                                "一致：上一份报告所见台账是本台账的前缀，未被改写",
                                "consistent: the ledger the previous report saw is a prefix of this one",
                            )),
                            "ok",
                        )
                    } else {
                        (
                            esc(o.t(
                                "不一致：台账自上一份报告以来被改写或截断",
                                "INCONSISTENT: the ledger was rewritten or truncated since the previous report",
                            )),
                            "bad",
                        )
                    },
                ],
            ];
            o.table(&[(o.t("项目", "Item"), false), (o.t("结果", "Value"), false)], &rows);
            if !p.proof.is_empty() {
                let _ = writeln!(
                    o.s,
                    "<pre>{}</pre>",
                    esc(&p.proof.join("\n"))
                );
            }
        }
    }
    o.end_section();
}

fn changes(o: &mut Out, r: &Report) {
    let lang = o.lang;
    let c = &r.changes;
    o.section(1);
    o.para(&changes_text(lang, c));
    let bars: Vec<(String, Vec<u64>)> = c
        .by_month
        .iter()
        .map(|m| (m.key.clone(), vec![m.count]))
        .collect();
    o.push(&format!(
        "<h3>{}</h3>\n",
        esc(o.t("每月变更", "Changes per month"))
    ));
    o.push(&svg::vbars(
        o.t("每月变更", "Changes per month"),
        &bars,
        &[Series {
            label: o.t("变更", "changes"),
            color: "#1a5fb4",
        }],
        o.t("报告期内无变更", "No changes in the period"),
    ));
    o.push("\n");
    o.push(&format!("<h3>{}</h3>\n", esc(o.t("按类型", "By kind"))));
    o.draw(&table::changes_by_kind(lang, &c.by_kind));
    o.push(&format!(
        "<h3>{}</h3>\n",
        esc(o.t("按组织", "By organisation"))
    ));
    o.draw(&table::changes_by_org(lang, &c.by_org));
    o.push(&format!("<h3>{}</h3>\n", esc(o.t("按操作人", "By actor"))));
    o.draw(&table::counts(
        lang,
        ("操作人", "Actor"),
        ("数量", "Count"),
        &c.by_actor,
    ));
    o.end_section();
}

fn findings_table(o: &mut Out, findings: &[Finding]) {
    let lang = o.lang;
    o.draw(&table::findings(lang, findings));
}

fn access(o: &mut Out, r: &Report) {
    let lang = o.lang;
    let a = &r.access;
    o.section(2);
    o.cards(&[
        (a.decisions.to_string(), lang.t("访问决定", "Decisions"), ""),
        (a.allowed.to_string(), lang.t("允许", "Allowed"), ""),
        (
            a.denied.to_string(),
            lang.t("拒绝", "Denied"),
            if a.denied > 0 { "bad" } else { "" },
        ),
        (a.users.to_string(), lang.t("用户", "Users"), ""),
        (
            a.findings.len().to_string(),
            lang.t("访问异常", "Findings"),
            if a.findings.is_empty() { "ok" } else { "bad" },
        ),
    ]);
    o.push(&format!(
        "<h3>{}</h3>\n",
        esc(o.t("每日访问决定", "Decisions per day"))
    ));
    let bars: Vec<(String, Vec<u64>)> = a
        .by_day
        .iter()
        .map(|d| (d.day.clone(), vec![d.allowed, d.denied]))
        .collect();
    o.push(&svg::vbars(
        o.t("每日访问决定", "Decisions per day"),
        &bars,
        &[
            Series {
                label: o.t("允许", "allowed"),
                color: "#1a5fb4",
            },
            Series {
                label: o.t("拒绝", "denied"),
                color: "#b3261e",
            },
        ],
        o.t("报告期内无访问记录", "No access recorded in the period"),
    ));
    o.push("\n");
    o.push(&format!(
        "<h3>{}</h3>\n",
        esc(o.t("访问异常", "Access findings"))
    ));
    if !a.audited {
        o.note(o.t("未进行访问审计。", "The access audit did not run."));
    } else if a.findings.is_empty() {
        o.para(o.t("访问审计未发现异常。", "The access audit found nothing."));
    } else {
        findings_table(o, &a.findings);
    }
    o.push(&format!("<h3>{}</h3>\n", esc(o.t("按操作", "By action"))));
    o.draw(&table::counts(
        lang,
        ("操作", "Action"),
        ("数量", "Count"),
        &a.by_action,
    ));
    o.push(&format!(
        "<h3>{}</h3>\n",
        esc(o.t("被拒绝的用户", "Users denied"))
    ));
    if a.denied_by_user.is_empty() {
        o.para(o.t("无。", "None."));
    } else {
        o.draw(&table::counts(
            lang,
            ("用户", "User"),
            ("拒绝次数", "Denials"),
            &a.denied_by_user,
        ));
    }
    o.end_section();
}

/// Counts by severity in one line.
pub fn sev_line(lang: Lang, s: &Severities) -> String {
    format!(
        "{} {} · {} {} · {} {}",
        severity(lang, "error"),
        s.error,
        severity(lang, "warning"),
        s.warning,
        severity(lang, "info"),
        s.info
    )
}

fn quality(o: &mut Out, r: &Report) {
    let lang = o.lang;
    let q = &r.quality;
    o.section(3);
    o.para(&match lang {
        Lang::Zh => format!(
            "一致性检查于 {} 评判；上一期于 {} 评判，依据台账当时已有的 {} 个条目重建的记录。本期：{}；上一期：{}。新增 {} 项，已纠正 {} 项。",
            q.as_of,
            q.previous_as_of,
            q.previous_entries,
            sev_line(lang, &q.totals),
            sev_line(lang, &q.previous_totals),
            q.new,
            q.resolved
        ),
        Lang::En => format!(
            "Consistency checks judged as of {}; the previous period as of {}, on the records as the ledger held them then (rebuilt from {} entries). Now: {}; previous: {}. {} new, {} resolved.",
            q.as_of,
            q.previous_as_of,
            q.previous_entries,
            sev_line(lang, &q.totals),
            sev_line(lang, &q.previous_totals),
            q.new,
            q.resolved
        ),
    });
    o.push(&format!(
        "<h3>{}</h3>\n",
        esc(o.t("各规则问题数", "Findings per rule"))
    ));
    let items: Vec<(String, u64, u64)> = q
        .by_rule
        .iter()
        .map(|t| (t.rule.clone(), t.count, t.previous))
        .collect();
    o.push(&svg::hbars(
        o.t("各规则问题数", "Findings per rule"),
        &items,
        Series {
            label: o.t("本期", "now"),
            color: "#b3261e",
        },
        Series {
            label: o.t("上一期", "previous"),
            color: "#9aa0a6",
        },
        o.t("未发现问题", "No findings"),
    ));
    o.push("\n");
    o.draw(&table::findings_by_rule(lang, &q.by_rule));
    o.push(&format!(
        "<h3>{}</h3>\n",
        esc(o.t("各组织问题数", "Findings per organisation"))
    ));
    o.draw(&table::findings_by_org(lang, &q.by_org));
    o.note(o.t(
        "每一项问题记录见附录。敏感字段（公民身份号码、电话、收入）一律脱敏。",
        "Every record with a finding is listed in the appendix. Sensitive fields (ID number, phone, income) are always masked.",
    ));
    o.end_section();
}

fn org_life(o: &mut Out, r: &Report) {
    let lang = o.lang;
    let l = &r.org_life;
    o.section(4);
    o.para(o.t(
        "三会一课：党员大会每季度、支委会每月（设支委会的支部）、主题党日每月、党课每季度、组织生活会和民主评议党员每年。红色格为应开未开的月度会议；“问题”列为一致性检查发现的缺项。",
        "Member meeting each quarter, committee meeting each month (branches with a committee), theme party day each month, party lecture each quarter, organisational life meeting and member appraisal each year. Red cells are monthly meetings that were due and not held; the Issues column lists the meeting rules the checks found broken.",
    ));
    let mut cards = vec![(l.branches.len().to_string(), lang.t("支部", "Branches"), "")];
    for (k, zh, en) in MEETING_KINDS {
        cards.push((l.totals.get(k).to_string(), lang.t(zh, en), ""));
    }
    o.cards(&cards);
    if l.branches.is_empty() || l.months.is_empty() {
        o.para(o.t(
            "报告期内无可评判的支部或月份。",
            "No branch or month to judge in the period.",
        ));
        o.end_section();
        return;
    }
    o.push("<div class=\"tbl\"><table>\n<thead><tr>");
    let _ = write!(
        o.s,
        "<th>{}</th><th>{}</th>",
        esc(o.t("支部", "Branch")),
        esc(o.t("月份", "Month"))
    );
    for (_, zh, en) in MEETING_KINDS {
        let _ = write!(o.s, "<th class=\"n\">{}</th>", esc(lang.t(zh, en)));
    }
    let _ = write!(
        o.s,
        "<th>{}</th></tr></thead>\n<tbody>\n",
        esc(o.t("问题", "Issues"))
    );
    for b in &l.branches {
        let span = b.months.len().max(1);
        for (i, m) in b.months.iter().enumerate() {
            o.push("<tr>");
            if i == 0 {
                let _ = write!(
                    o.s,
                    "<td rowspan=\"{span}\">{}<br><span class=\"note\">{}{}</span></td>",
                    esc(&b.name),
                    esc(&b.org_id),
                    if b.has_committee {
                        esc(o.t(" · 设支委会", " · has committee"))
                    } else {
                        String::new()
                    }
                );
            }
            let _ = write!(o.s, "<td>{}</td>", esc(&m.month));
            for (k, _, _) in MEETING_KINDS {
                let n = m.get(k);
                let due = k == "theme_day" || (k == "committee_meeting" && b.has_committee);
                let class = if due && n == 0 { "n gap" } else { "n" };
                let _ = write!(o.s, "<td class=\"{class}\">{n}</td>");
            }
            if i == 0 {
                let issues: Vec<String> = b.issues.iter().map(|x| esc(&rule_text(r, x))).collect();
                let _ = write!(
                    o.s,
                    "<td rowspan=\"{span}\" class=\"{}\">{}</td>",
                    if issues.is_empty() { "ok" } else { "sev-error" },
                    if issues.is_empty() {
                        esc(o.t("无", "none"))
                    } else {
                        issues.join("<br>")
                    }
                );
            }
            o.push("</tr>\n");
        }
    }
    o.push("</tbody></table></div>\n");
    o.end_section();
}

fn dues(o: &mut Out, r: &Report) {
    let lang = o.lang;
    let d = &r.dues;
    o.section(5);
    o.para(&dues_text(lang, d));
    if d.arrears.is_empty() {
        o.end_section();
        return;
    }
    o.draw(&table::arrears(lang, &d.arrears));
    o.end_section();
}

fn appendix(o: &mut Out, r: &Report) {
    let lang = o.lang;
    o.section(6);
    let recs = &r.quality.records;
    o.para(&match lang {
        Lang::Zh => format!("共 {} 条记录存在问题。", recs.len()),
        Lang::En => format!("{} records have findings.", recs.len()),
    });
    if recs.is_empty() {
        o.end_section();
        return;
    }
    o.push("<div class=\"tbl\"><table>\n<thead><tr>");
    for h in [
        o.t("记录", "Record"),
        o.t("名称", "Name"),
        o.t("所在组织", "Organisation"),
        o.t("级别", "Severity"),
        o.t("规则", "Rule"),
        o.t("说明", "Message"),
        o.t("数值", "Values"),
    ] {
        let _ = write!(o.s, "<th>{}</th>", esc(h));
    }
    o.push("</tr></thead>\n<tbody>\n");
    for rec in recs {
        let span = rec.findings.len().max(1);
        for (i, f) in rec.findings.iter().enumerate() {
            o.push("<tr>");
            if i == 0 {
                let _ = write!(
                    o.s,
                    "<td rowspan=\"{span}\">{}</td><td rowspan=\"{span}\">{}</td><td rowspan=\"{span}\">{}</td>",
                    esc(&rec.subject),
                    opt(rec.name.as_deref()),
                    opt(rec.org_name.as_deref().or(rec.org_id.as_deref()))
                );
            }
            let (sev, class) = sev_cell(lang, &f.severity);
            let _ = writeln!(
                o.s,
                "<td class=\"{class}\">{sev}</td><td><code>{}</code></td><td>{}</td><td class=\"v\">{}</td></tr>",
                esc(&f.rule),
                esc(&f.message),
                esc(&values_text(&f.values))
            );
        }
    }
    o.push("</tbody></table></div>\n");
    o.end_section();
}

fn signature(o: &mut Out, r: &Report) {
    o.section(7);
    o.para(o.t(
        "本报告的全部内容来自下方嵌入的 JSON 文档；该文档（除 signature 字段外）按 RFC 8785 规范化后，由台账签名密钥以 Ed25519 签名。报告所依据的检查点：",
        "Everything in this report comes from the JSON document embedded below; that document (without its signature member), in RFC 8785 canonical form, is signed with the ledger's Ed25519 key. The checkpoint the report was computed at:",
    ));
    let _ = writeln!(o.s, "<pre>{}</pre>", esc(&r.checkpoint));
    let _ = writeln!(
        o.s,
        "<p>{} <code>{}</code></p>\n<p>{} <code>{}</code></p>",
        esc(o.t("签名密钥：", "Signing key:")),
        esc(&r.signed_by),
        esc(o.t("签名：", "Signature:")),
        esc(r.signature.as_deref().unwrap_or(""))
    );
    o.para(o.t(
        "验证（改动任何一个字符都会失败）：",
        "To verify (a change of any single character fails):",
    ));
    let _ = writeln!(
        o.s,
        "<pre>djaudit report verify {} --vkey '{}'</pre>",
        esc(o.t("报告文件", "FILE")),
        esc(&r.signed_by)
    );
    o.end_section();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<script>alert('x&y')</script>\""),
            "&lt;script&gt;alert(&#39;x&amp;y&#39;)&lt;/script&gt;&quot;"
        );
        assert_eq!(esc("张三"), "张三");
    }

    #[test]
    fn record_values_are_text_never_markup() {
        let s = crate::report::sign::tests::signer("test.example/ledger");
        for lang in [Lang::Zh, Lang::En] {
            let r = crate::report::sign::tests::sample(&s, lang);
            let html = render(&r).unwrap();
            assert!(
                !html.contains("<script>alert"),
                "a raw tag from a record value"
            );
            assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
            assert_eq!(
                html.matches("<script").count(),
                1,
                "only the signed data block"
            );
            assert!(html.contains("<script type=\"application/json\" id=\"djaudit-report\">"));
            assert!(!html.contains("http://") || html.contains("http://www.w3.org/2000/svg"));
            assert!(!html.contains("<link") && !html.contains("@import") && !html.contains("url("));
            assert!(html.contains("<meta name=\"viewport\""));
            assert!(html.contains("@media print") && html.contains("size:A4"));
            assert_eq!(
                html.matches("<svg").count(),
                3,
                "changes per month, decisions per day, findings per rule"
            );
        }
    }

    #[test]
    fn deltas_and_labels() {
        assert_eq!(delta(5, 2), "+3");
        assert_eq!(delta(2, 5), "\u{2212}3");
        assert_eq!(delta(4, 4), "0");
        assert_eq!(kind_label(Lang::Zh, "member.update"), "党员修改");
        assert_eq!(kind_label(Lang::En, "dues.record"), "Dues recorded");
        assert_eq!(kind_label(Lang::En, "note.test"), "note.test");
        assert_eq!(severity(Lang::Zh, "warning"), "警告");
    }
}
