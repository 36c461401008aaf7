//! Output files of the generator: CSV writers (UTF-8, LF, canonical English headers of
//! docs/IMPORT.md) and the `expected_findings.json` writer. It formats values only; it
//! never decides what to write.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::NaiveDate;

use super::cal::push_date;
use super::SynthError;

pub(crate) const ORGS_HEADER: &str =
    "org_id,name,kind,parent_id,established_date,has_committee,secretary_id,dissolved_date";
pub(crate) const MEMBERS_HEADER: &str = "member_id,name,gender,ethnicity,birth_date,id_number,phone,education,org_id,category,status,status_date,application_date,activist_date,candidate_date,admission_date,full_date,probation_extension_months,introducers,employment,monthly_income";
pub(crate) const DUES_HEADER: &str = "member_id,month,base_income,amount,paid_date";
pub(crate) const MEETINGS_HEADER: &str = "org_id,kind,date,attendees,topic";
pub(crate) const TRANSFERS_HEADER: &str = "member_id,from_org,to_org,date";
pub(crate) const USERS_HEADER: &str = "user_id,name,role,org_id,member_id,disabled";

/// One CSV file being written row by row through a buffer.
pub(crate) struct Csv {
    path: PathBuf,
    w: BufWriter<File>,
    line: String,
    first: bool,
    rows: u64,
}

impl Csv {
    pub(crate) fn create(dir: &Path, name: &str, header: &str) -> Result<Csv, SynthError> {
        let path = dir.join(name);
        let file = File::create(&path).map_err(|e| SynthError::io(&path, e))?;
        let mut csv = Csv {
            path,
            w: BufWriter::with_capacity(1 << 20, file),
            line: String::with_capacity(512),
            first: true,
            rows: 0,
        };
        csv.line.push_str(header);
        csv.write_line()?;
        Ok(csv)
    }

    fn sep(&mut self) {
        if !self.first {
            self.line.push(',');
        }
        self.first = false;
    }

    /// A text field, quoted when it holds a comma, quote or line break.
    pub(crate) fn s(&mut self, v: &str) -> &mut Self {
        self.sep();
        if v.bytes().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r')) {
            self.line.push('"');
            self.line.push_str(&v.replace('"', "\"\""));
            self.line.push('"');
        } else {
            self.line.push_str(v);
        }
        self
    }

    pub(crate) fn opt(&mut self, v: Option<&str>) -> &mut Self {
        self.s(v.unwrap_or(""))
    }

    pub(crate) fn date(&mut self, d: NaiveDate) -> &mut Self {
        self.sep();
        push_date(&mut self.line, d);
        self
    }

    pub(crate) fn opt_date(&mut self, d: Option<NaiveDate>) -> &mut Self {
        match d {
            Some(d) => self.date(d),
            None => self.s(""),
        }
    }

    /// Money in fen written as yuan with two decimals (`4500.00`).
    pub(crate) fn money(&mut self, fen: i64) -> &mut Self {
        use std::fmt::Write as _;
        self.sep();
        let sign = if fen < 0 { "-" } else { "" };
        let a = fen.unsigned_abs();
        let _ = write!(self.line, "{sign}{}.{:02}", a / 100, a % 100);
        self
    }

    pub(crate) fn opt_money(&mut self, fen: Option<i64>) -> &mut Self {
        match fen {
            Some(f) => self.money(f),
            None => self.s(""),
        }
    }

    pub(crate) fn num(&mut self, n: u64) -> &mut Self {
        use std::fmt::Write as _;
        self.sep();
        let _ = write!(self.line, "{n}");
        self
    }

    pub(crate) fn boolean(&mut self, b: bool) -> &mut Self {
        self.s(if b { "true" } else { "false" })
    }

    /// Ends the row and hands it to the buffer.
    pub(crate) fn end(&mut self) -> Result<(), SynthError> {
        self.rows += 1;
        self.write_line()
    }

    fn write_line(&mut self) -> Result<(), SynthError> {
        self.line.push('\n');
        let r = self.w.write_all(self.line.as_bytes());
        self.line.clear();
        self.first = true;
        r.map_err(|e| SynthError::io(&self.path, e))
    }

    pub(crate) fn rows(&self) -> u64 {
        self.rows
    }

    pub(crate) fn finish(mut self) -> Result<u64, SynthError> {
        self.w.flush().map_err(|e| SynthError::io(&self.path, e))?;
        Ok(self.rows)
    }
}

/// Writes `expected_findings.json`: `as_of` and the findings sorted by (rule, subject), one
/// finding per line.
pub(crate) fn write_findings(
    dir: &Path,
    as_of: NaiveDate,
    findings: &[(String, String)],
) -> Result<(), SynthError> {
    let path = dir.join("expected_findings.json");
    let file = File::create(&path).map_err(|e| SynthError::io(&path, e))?;
    let mut w = BufWriter::new(file);
    let mut text = String::new();
    text.push_str("{\n  \"as_of\": \"");
    push_date(&mut text, as_of);
    text.push_str("\",\n  \"findings\": [");
    for (i, (rule, subject)) in findings.iter().enumerate() {
        let family = rule.split('.').next().unwrap_or(rule);
        text.push_str(if i == 0 { "\n    " } else { ",\n    " });
        // Built by hand to keep the documented key order; values escaped by serde_json.
        text.push_str("{\"rule\": ");
        text.push_str(&serde_json::Value::from(rule.as_str()).to_string());
        text.push_str(", \"family\": ");
        text.push_str(&serde_json::Value::from(family).to_string());
        text.push_str(", \"subject\": ");
        text.push_str(&serde_json::Value::from(subject.as_str()).to_string());
        text.push('}');
    }
    if findings.is_empty() {
        text.push_str("]\n}\n");
    } else {
        text.push_str("\n  ]\n}\n");
    }
    w.write_all(text.as_bytes())
        .map_err(|e| SynthError::io(&path, e))?;
    w.flush().map_err(|e| SynthError::io(&path, e))
}
