//! Reading import files (CSV or JSON Lines, UTF-8 or GB18030) into validated records.
//!
//! A [`RecordReader`] streams a file row by row: each good row becomes a [`ParsedRow`] (the
//! record, its line and the columns the file gave). Format errors — a bad date, an unknown
//! enum value, text in an amount, a row with the wrong number of cells, a repeated
//! org/member/user id, a missing required value, an unknown column — are collected for the
//! whole file; once one is seen no further rows are handed out, the rest of the file is
//! still read to report every problem, and the file fails as a whole ([`BadRows`], at most
//! [`MAX_LISTED`] problems listed plus a count of the rest). Values of sensitive fields in
//! problem reports are masked. Rule violations of well-formed values (an ID number's check
//! digit, the order of dates) are not format errors: they are for the checks.
//!
//! The reader hashes the raw bytes (SHA-256) and counts rows for the `import.batch` entry.
//! Encodings: with [`EncodingChoice::Auto`] a file that is valid UTF-8 is UTF-8, anything
//! else is GB18030 (a superset of GBK and GB2312); this needs one extra pass over the bytes
//! before parsing. Accepted spellings are documented in `docs/IMPORT.md`.
//!
//! This module reads; it never writes to the ledger or the projection, and it must not
//! hold a whole file in memory.

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::str::FromStr;

use chrono::NaiveDate;
use encoding_rs::{Decoder, DecoderResult, GB18030};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::mask::mask_text;
use super::model::{
    make_date, normalize_note, validate_note, validate_text, Changes, Fen, FieldSet, FieldType, Id,
    ModelError, Record, RecordKind, Slots, Typed, YearMonth, BOOL_SPELLINGS,
};

/// At most this many problems are listed in a [`BadRows`] report.
pub const MAX_LISTED: usize = 20;

/// Values longer than this many characters are cut in problem reports.
const MAX_SHOWN_CHARS: usize = 40;

const BUF_SIZE: usize = 64 * 1024;

// ---------------------------------------------------------------------------------------
// Options

/// Which text encoding to read a file in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EncodingChoice {
    /// Valid UTF-8 (with or without BOM) is UTF-8; anything else is GB18030.
    #[default]
    Auto,
    /// UTF-8; invalid bytes are an error.
    Utf8,
    /// GB18030 (also reads GBK and GB2312); invalid bytes are an error.
    Gb18030,
}

/// Accepts `auto`, `utf-8`/`utf8`, `gb18030`/`gbk`/`gb2312` (ASCII case ignored).
impl FromStr for EncodingChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<EncodingChoice, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(EncodingChoice::Auto),
            "utf-8" | "utf8" => Ok(EncodingChoice::Utf8),
            "gb18030" | "gbk" | "gb2312" => Ok(EncodingChoice::Gb18030),
            _ => Err(format!(
                "unknown encoding `{s}`: expected auto|utf-8|gb18030"
            )),
        }
    }
}

/// The encoding a file was read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextEncoding {
    Utf8,
    Gb18030,
}

impl TextEncoding {
    /// `UTF-8` or `GB18030`.
    pub fn name(self) -> &'static str {
        match self {
            TextEncoding::Utf8 => "UTF-8",
            TextEncoding::Gb18030 => "GB18030",
        }
    }
}

/// Which file format to read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FormatChoice {
    /// By extension (`.jsonl`, `.ndjson`, `.json` → JSON Lines; `.csv` → CSV), otherwise by
    /// content: JSON Lines if the first non-blank character is `{`, else CSV.
    #[default]
    Auto,
    Csv,
    JsonLines,
}

/// The format a file was read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Csv,
    JsonLines,
}

/// How to read an import file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportOptions {
    pub encoding: EncodingChoice,
    pub format: FormatChoice,
}

// ---------------------------------------------------------------------------------------
// Results and errors

/// One good row of an import file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedRow {
    /// The line the row starts on (1-based, the header is line 1 of a CSV file).
    pub line: u64,
    /// The validated record; dues, meetings and transfers have their occurrence set.
    pub record: Record,
    /// The fields the file speaks about for this row: the CSV header's columns, or the keys
    /// of the JSON object (a `null` value counts: it says "absent"); derived ids always.
    /// A field outside the set was not in the file, so its current value must be kept.
    pub columns: FieldSet,
}

impl ParsedRow {
    /// The changes that bring `current` (the projection's record with the same subject) to
    /// this row, limited to the fields the file gave.
    pub fn changes_from(&self, current: &Record) -> Result<Changes, ModelError> {
        let mut changes = current.diff(&self.record)?;
        self.columns.restrict(&mut changes);
        Ok(changes)
    }
}

/// What an import file was, for the `import.batch` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSummary {
    /// The file name as given.
    pub file: String,
    /// SHA-256 of the raw bytes of the file.
    pub sha256: [u8; 32],
    /// Size of the file in bytes.
    pub bytes: u64,
    /// Data rows (blank rows not counted, the header not counted).
    pub rows: u64,
    pub encoding: TextEncoding,
    pub format: FileFormat,
}

impl FileSummary {
    /// The SHA-256 as 64 lowercase hex digits.
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }
}

/// One format problem in an import file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The line of the row (or of the header).
    pub line: u64,
    /// The column as the file names it, if the problem is in one column.
    pub column: Option<String>,
    /// The offending value as displayed (masked if sensitive, escaped, cut to 40 characters).
    pub value: Option<String>,
    /// Why it is wrong.
    pub why: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.line)?;
        if let Some(column) = &self.column {
            write!(f, "column `{column}`: ")?;
        }
        if let Some(value) = &self.value {
            write!(f, "value `{value}`: ")?;
        }
        f.write_str(&self.why)
    }
}

/// The format problems of a rejected file. [`lines`](BadRows::lines) gives the full report,
/// one `file:line: column `c`: value `v`: why` per problem.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{rows} bad {} in `{file}`, nothing imported (first: {})", if *.rows == 1 { "row" } else { "rows" }, first_problem(.listed))]
pub struct BadRows {
    pub file: String,
    /// The first [`MAX_LISTED`] problems in file order.
    pub listed: Vec<Problem>,
    /// All problems, listed or not.
    pub problems: usize,
    /// Rows (or header lines) with at least one problem.
    pub rows: usize,
}

fn first_problem(listed: &[Problem]) -> String {
    listed
        .first()
        .map_or_else(String::new, |p| format!("line {p}"))
}

impl BadRows {
    /// The report: one line per listed problem, then `… and N more problems` if some were
    /// left out.
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .listed
            .iter()
            .map(|p| format!("{}:{p}", self.file))
            .collect();
        let more = self.problems.saturating_sub(self.listed.len());
        if more > 0 {
            out.push(format!("… and {more} more problems"));
        }
        out
    }
}

/// Why an import file could not be read.
#[derive(Debug, Error)]
pub enum ImportError {
    #[error("cannot read `{file}`")]
    Io {
        file: String,
        #[source]
        source: io::Error,
    },
    #[error("`{file}` line {line} is not valid {encoding} text")]
    Encoding {
        file: String,
        encoding: &'static str,
        line: u64,
    },
    #[error("`{file}` is empty: its first line must name the columns")]
    Empty { file: String },
    #[error("cannot read `{file}` as CSV: {why}")]
    Csv { file: String, why: String },
    #[error(transparent)]
    BadRows(#[from] BadRows),
    #[error("reading `{file}` already stopped at an error")]
    Stopped { file: String },
}

// ---------------------------------------------------------------------------------------
// Lenient value parsing (import spellings → canonical values)

const DATE_WHY: &str = "not a date (expected YYYY-MM-DD, YYYY/M/D, YYYY.MM.DD or YYYY年M月D日)";
const MONTH_WHY: &str = "not a month (expected YYYY-MM, YYYY/M, YYYY.MM or YYYY年M月)";

/// `s` as a number if it has `min..=max` ASCII digits and nothing else.
fn digits(s: &str, min: usize, max: usize) -> Option<u32> {
    ((min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// Splits `s` at the first of `-`, `/`, `.` it contains, expecting exactly `N` parts.
fn split_separated<const N: usize>(s: &str) -> Option<[&str; N]> {
    let sep = ['-', '/', '.'].into_iter().find(|c| s.contains(*c))?;
    let mut pieces = s.split(sep);
    let mut out = [""; N];
    for slot in &mut out {
        *slot = pieces.next()?;
    }
    pieces.next().is_none().then_some(out)
}

/// A date in any accepted spelling: `2021-07-01`, `2021/7/1`, `2021.07.01`, `2021年7月1日`
/// (four-digit year; one- or two-digit month and day; one separator kind throughout).
pub fn parse_date(s: &str) -> Result<NaiveDate, &'static str> {
    let (y, m, d) = if let Some(rest) = s.strip_suffix('日') {
        let (y, md) = rest.split_once('年').ok_or(DATE_WHY)?;
        let (m, d) = md.split_once('月').ok_or(DATE_WHY)?;
        (y, m, d)
    } else {
        let [y, m, d] = split_separated(s).ok_or(DATE_WHY)?;
        (y, m, d)
    };
    match (digits(y, 4, 4), digits(m, 1, 2), digits(d, 1, 2)) {
        (Some(y), Some(m), Some(d)) => make_date(y, m, d),
        _ => Err(DATE_WHY),
    }
}

/// A month in any accepted spelling: `2026-03`, `2026-3`, `2026/3`, `2026.03`, `2026年3月`.
pub fn parse_month(s: &str) -> Result<YearMonth, &'static str> {
    let (y, m) = if let Some(rest) = s.strip_suffix('月') {
        rest.split_once('年').ok_or(MONTH_WHY)?
    } else {
        let [y, m] = split_separated(s).ok_or(MONTH_WHY)?;
        (y, m)
    };
    match (digits(y, 4, 4), digits(m, 1, 2)) {
        (Some(y), Some(m)) if y >= 1000 => YearMonth::new(y as i32, m).ok_or("not a real month"),
        _ => Err(MONTH_WHY),
    }
}

/// An amount in yuan with at most two decimals (`4500`, `4500.5`, `4500.50`) as fen.
pub fn parse_yuan(s: &str) -> Result<Fen, &'static str> {
    const WHY: &str = "not an amount in yuan (expected digits with at most 2 decimals)";
    if s.starts_with('-') {
        return Err("a negative amount is not allowed");
    }
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    let int_digits = !int.is_empty() && int.bytes().all(|b| b.is_ascii_digit());
    if !int_digits {
        return Err(WHY);
    }
    if int.len() > 13 {
        return Err("the amount is too large");
    }
    let frac_fen: i64 = match frac {
        None => 0,
        Some(f) if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) => return Err(WHY),
        Some(f) if f.len() > 2 => return Err("an amount may have at most 2 decimals"),
        Some(f) => {
            let n: i64 = f.parse().map_err(|_| WHY)?;
            if f.len() == 1 {
                n * 10
            } else {
                n
            }
        }
    };
    let yuan: i64 = int.parse().map_err(|_| WHY)?;
    Fen::new(yuan * 100 + frac_fen).ok_or("the amount is too large")
}

/// A flag: `true`/`false`, `yes`/`no`, `y`/`n`, `1`/`0` (ASCII case ignored), `是`/`否`,
/// `有`/`无`.
pub fn parse_bool(s: &str) -> Result<bool, &'static str> {
    let lower = s.to_ascii_lowercase();
    BOOL_SPELLINGS
        .iter()
        .find(|(_, spellings)| spellings.contains(&lower.as_str()))
        .map(|(b, _)| *b)
        .ok_or("not a yes/no value (expected true|false, 是|否)")
}

/// A non-negative whole number.
pub fn parse_count(s: &str) -> Result<u32, &'static str> {
    if s.starts_with('-') {
        return Err("a negative number is not allowed");
    }
    digits(s, 1, 9).ok_or("not a whole number")
}

/// Ids separated by `;` (also `；`, `,`, `，`, `、`), spaces around them ignored, in order.
pub fn parse_ids(s: &str) -> Result<Vec<Id>, &'static str> {
    let ids = s
        .split(Id::FORBIDDEN)
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(Id::new)
        .collect::<Result<Vec<Id>, _>>()?;
    if ids.is_empty() {
        return Err("no ids in the list");
    }
    Ok(ids)
}

/// Parses one trimmed, non-empty cell of a column of type `ty`.
pub(crate) fn parse_cell(ty: FieldType, s: &str) -> Result<Typed, String> {
    let owned = |why: &str| why.to_owned();
    match ty {
        FieldType::Id => Id::new(s).map(Typed::Id).map_err(owned),
        FieldType::Key => Err("a derived id cannot be imported".to_owned()),
        FieldType::Text => validate_text(s)
            .map(|()| Typed::Text(s.to_owned()))
            .map_err(owned),
        FieldType::Note => {
            let note = normalize_note(s);
            validate_note(&note)
                .map(|()| Typed::Text(note))
                .map_err(owned)
        }
        FieldType::Date => parse_date(s).map(Typed::Date).map_err(owned),
        FieldType::Month => parse_month(s).map(Typed::Month).map_err(owned),
        FieldType::Fen => parse_yuan(s).map(Typed::Fen).map_err(owned),
        FieldType::Count => parse_count(s).map(Typed::Count).map_err(owned),
        FieldType::Bool => parse_bool(s).map(Typed::Bool).map_err(owned),
        FieldType::Enum(spec) => spec
            .canonical(s)
            .map(Typed::Enum)
            .ok_or_else(|| format!("unknown {} (expected {})", spec.what, spec.names())),
        FieldType::Ids => parse_ids(s).map(Typed::Ids).map_err(owned),
    }
}

/// A value as shown in a problem report: masked if the field is sensitive, control
/// characters escaped, cut to [`MAX_SHOWN_CHARS`] characters.
fn shown(field: &str, raw: &str) -> String {
    shown_text(&mask_text(field, raw))
}

/// Text that is not known to be a header or a value of a known field — an unknown header,
/// a value under a column without a name — as it may be displayed: with every digit
/// masked, since it may be anything (a file without its header row has a member's ID
/// number or phone where its header should be).
fn shown_unknown(raw: &str) -> String {
    let masked: String = raw
        .chars()
        .map(|c| if c.is_ascii_digit() { '*' } else { c })
        .collect();
    shown_text(&masked)
}

/// Escaped and cut to [`MAX_SHOWN_CHARS`].
fn shown_text(masked: &str) -> String {
    let mut out = String::new();
    for (i, c) in masked.chars().enumerate() {
        if i == MAX_SHOWN_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() || c == '`' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Row validation

/// One cell given to the row builder.
struct Cell<'a> {
    field: usize,
    column: &'a str,
    raw: Cow<'a, str>,
}

/// Numbers repeated keys of dues, meetings and transfers in file order.
#[derive(Default)]
struct Repeats {
    /// id prefix → sorted keys seen with it.
    seen: HashMap<Box<str>, Vec<u32>>,
    /// (id prefix, key) → rows seen so far, only for keys seen more than once.
    counts: HashMap<(Box<str>, u32), u32>,
}

impl Repeats {
    /// 1 the first time (prefix, key) is seen, 2 the second time, …
    fn next(&mut self, prefix: &str, key: u32) -> u32 {
        let Some(keys) = self.seen.get_mut(prefix) else {
            self.seen.insert(prefix.into(), vec![key]);
            return 1;
        };
        match keys.binary_search(&key) {
            Err(pos) => {
                keys.insert(pos, key);
                1
            }
            Ok(_) => {
                let n = self.counts.entry((prefix.into(), key)).or_insert(1);
                *n = n.saturating_add(1);
                *n
            }
        }
    }
}

/// Validation state of one file: builds records, numbers repeats, finds repeated ids and
/// collects problems.
struct Rows {
    file: String,
    kind: RecordKind,
    /// For orgs, members, users: id → line it first appeared on.
    ids: HashMap<Box<str>, u64>,
    repeats: Repeats,
    listed: Vec<Problem>,
    problems: usize,
    bad_rows: usize,
    last_bad_line: Option<u64>,
    /// Data rows read (good or bad, blank rows excluded).
    rows: u64,
}

impl Rows {
    fn new(file: String, kind: RecordKind) -> Rows {
        Rows {
            file,
            kind,
            ids: HashMap::new(),
            repeats: Repeats::default(),
            listed: Vec::new(),
            problems: 0,
            bad_rows: 0,
            last_bad_line: None,
            rows: 0,
        }
    }

    fn clean(&self) -> bool {
        self.problems == 0
    }

    fn problem(&mut self, line: u64, column: Option<&str>, value: Option<String>, why: String) {
        self.problems += 1;
        if self.last_bad_line != Some(line) {
            self.bad_rows += 1;
            self.last_bad_line = Some(line);
        }
        if self.listed.len() < MAX_LISTED {
            let column = column.map(shown_unknown);
            self.listed.push(Problem {
                line,
                column,
                value,
                why,
            });
        }
    }

    fn bad_rows(&mut self) -> BadRows {
        BadRows {
            file: self.file.clone(),
            listed: std::mem::take(&mut self.listed),
            problems: self.problems,
            rows: self.bad_rows,
        }
    }

    /// Validates one row; `None` if it has problems (they are recorded).
    fn build(&mut self, line: u64, cells: &[Cell<'_>], columns: FieldSet) -> Option<ParsedRow> {
        let fields = self.kind.fields();
        let mut slots = Slots::new(self.kind);
        let mut failed = FieldSet::empty(self.kind);
        let mut ok = true;
        for cell in cells {
            let raw = cell.raw.trim();
            if raw.is_empty() {
                continue;
            }
            let Some(spec) = fields.get(cell.field) else {
                continue;
            };
            match parse_cell(spec.ty, raw) {
                Ok(typed) => slots.set(cell.field, typed),
                Err(why) => {
                    self.problem(line, Some(cell.column), Some(shown(spec.name, raw)), why);
                    failed.insert_index(cell.field);
                    ok = false;
                }
            }
        }
        for (index, spec) in fields.iter().enumerate() {
            if spec.required
                && !spec.derived
                && !slots.is_set(index)
                && !failed.contains_index(index)
            {
                let column = cells
                    .iter()
                    .find(|c| c.field == index)
                    .map_or(spec.name, |c| c.column);
                self.problem(
                    line,
                    Some(column),
                    Some(String::new()),
                    "a value is required".into(),
                );
                ok = false;
            }
        }
        if !ok {
            return None;
        }
        let mut record = match Record::from_slots(self.kind, slots) {
            Ok(r) => r,
            Err(e) => {
                self.problem(line, None, None, e.to_string());
                return None;
            }
        };
        let occurrence = record
            .repeat_key()
            .map(|(prefix, key)| self.repeats.next(prefix, key));
        match occurrence {
            Some(n) => record.set_occurrence(n),
            None => {
                let id = record.id();
                match self.ids.entry(id.into_boxed_str()) {
                    Entry::Occupied(first) => {
                        let id_field = self.kind.id_field();
                        let column = cells
                            .iter()
                            .find(|c| c.field == 0)
                            .map_or(id_field, |c| c.column);
                        let (value, first) = (shown(id_field, first.key()), *first.get());
                        self.problem(
                            line,
                            Some(column),
                            Some(value),
                            format!("repeats the {id_field} of line {first}"),
                        );
                        return None;
                    }
                    Entry::Vacant(v) => {
                        v.insert(line);
                    }
                }
            }
        }
        Some(ParsedRow {
            line,
            record,
            columns,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Byte sources: hashing and decoding

/// Hashes and counts every byte read through it.
struct Hashing<R> {
    inner: R,
    sha: Sha256,
    bytes: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        // `Read` promises n <= buf.len(); a reader breaking that is hashed as far as it can be.
        if let Some(read) = buf.get(..n) {
            self.sha.update(read);
        }
        self.bytes += n as u64;
        Ok(n)
    }
}

/// The error a [`GbReader`] reports for bytes that are not GB18030.
#[derive(Debug)]
struct NotGb18030 {
    line: u64,
}

impl fmt::Display for NotGb18030 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {} is not valid GB18030 text", self.line)
    }
}

impl std::error::Error for NotGb18030 {}

/// Decodes GB18030 into UTF-8, failing on malformed bytes.
struct GbReader<R> {
    inner: R,
    decoder: Decoder,
    input: Box<[u8]>,
    in_start: usize,
    in_end: usize,
    eof: bool,
    done: bool,
    output: Box<[u8]>,
    out_start: usize,
    out_end: usize,
    /// Newlines in the output produced so far.
    lines: u64,
}

impl<R: Read> GbReader<R> {
    fn new(inner: R) -> GbReader<R> {
        GbReader {
            inner,
            decoder: GB18030.new_decoder_without_bom_handling(),
            input: vec![0; BUF_SIZE].into_boxed_slice(),
            in_start: 0,
            in_end: 0,
            eof: false,
            done: false,
            output: vec![0; BUF_SIZE].into_boxed_slice(),
            out_start: 0,
            out_end: 0,
            lines: 0,
        }
    }

    fn refill(&mut self) -> io::Result<()> {
        if self.in_start >= self.in_end && !self.eof {
            let n = loop {
                match self.inner.read(&mut self.input) {
                    Ok(n) => break n.min(self.input.len()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
            self.in_start = 0;
            self.in_end = n;
            self.eof = n == 0;
        }
        let input = self
            .input
            .get(self.in_start..self.in_end)
            .unwrap_or_default();
        let (result, read, written) =
            self.decoder
                .decode_to_utf8_without_replacement(input, &mut self.output, self.eof);
        self.in_start += read;
        let newlines = count_newlines(self.output.get(..written).unwrap_or_default());
        match result {
            DecoderResult::Malformed(..) => {
                let line = self.lines + newlines + 1;
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    NotGb18030 { line },
                ));
            }
            DecoderResult::InputEmpty if self.eof => self.done = true,
            DecoderResult::InputEmpty | DecoderResult::OutputFull => {}
        }
        self.lines += newlines;
        self.out_start = 0;
        self.out_end = written;
        Ok(())
    }
}

impl<R: Read> Read for GbReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.out_start >= self.out_end {
            if self.done {
                return Ok(0);
            }
            self.refill()?;
        }
        let available = self
            .output
            .get(self.out_start..self.out_end)
            .unwrap_or_default();
        let n = available.len().min(buf.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), available.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.out_start += n;
        Ok(n)
    }
}

fn count_newlines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|b| **b == b'\n').count() as u64
}

/// The file's bytes as UTF-8, hashed on the way in.
enum Decoded<R> {
    Utf8(Hashing<R>),
    Gb(GbReader<Hashing<R>>),
}

impl<R: Read> Read for Decoded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoded::Utf8(r) => r.read(buf),
            Decoded::Gb(r) => r.read(buf),
        }
    }
}

impl<R> Decoded<R> {
    fn hashing(&self) -> &Hashing<R> {
        match self {
            Decoded::Utf8(h) => h,
            Decoded::Gb(g) => &g.inner,
        }
    }
}

/// Whether everything `r` yields is valid UTF-8 (streaming, constant memory).
fn scan_utf8<R: Read>(r: &mut R) -> io::Result<bool> {
    let mut buf = vec![0u8; BUF_SIZE];
    let mut carry = 0usize;
    loop {
        let Some(space) = buf.get_mut(carry..) else {
            return Ok(false);
        };
        let n = match r.read(space) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(carry == 0);
        }
        let end = (carry + n).min(buf.len());
        let chunk = buf.get(..end).unwrap_or_default();
        match std::str::from_utf8(chunk) {
            Ok(_) => carry = 0,
            Err(e) if e.error_len().is_some() => return Ok(false),
            Err(e) => {
                // An incomplete character at the end of the chunk: keep it for the next read.
                let valid = e.valid_up_to();
                buf.copy_within(valid..end, 0);
                carry = end - valid;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The reader

/// A CSV column: the header as written, and the field it maps to (`None` for a column with
/// an empty header, which must stay empty).
struct Column {
    name: String,
    field: Option<usize>,
}

/// Remembers where the newlines are in the bytes handed to the CSV reader, so rows get
/// exact line numbers (the CSV reader's own positions are those of the end of the previous
/// record, which is off after blank lines and with CRLF line ends).
struct LineIndex<R> {
    inner: R,
    /// Bytes handed out so far.
    offset: u64,
    /// Offsets of newlines not yet forgotten, ascending.
    newlines: VecDeque<u64>,
    /// Newlines forgotten.
    dropped: u64,
}

impl<R: Read> Read for LineIndex<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let read = buf.get(..n).unwrap_or_default();
        for (i, b) in read.iter().enumerate() {
            if *b == b'\n' {
                self.newlines.push_back(self.offset + i as u64);
            }
        }
        self.offset += read.len() as u64;
        Ok(n)
    }
}

impl<R> LineIndex<R> {
    /// The 1-based line of the byte at offset `at`.
    fn line_of(&self, at: u64) -> u64 {
        1 + self.dropped + self.newlines.partition_point(|o| *o < at) as u64
    }

    /// Forgets newlines before offset `at` (no later question asks about them).
    fn forget_before(&mut self, at: u64) {
        while self.newlines.front().is_some_and(|o| *o < at) {
            self.newlines.pop_front();
            self.dropped += 1;
        }
    }
}

/// The line a CSV record just read starts on: the line of its last byte (its terminator,
/// or its last character at the end of the file) less the newlines inside quoted cells.
fn record_line<R: Read>(reader: &mut csv::Reader<LineIndex<R>>, record: &csv::ByteRecord) -> u64 {
    let end = reader.position().byte();
    let index = reader.get_mut();
    let last_line = index.line_of(end.saturating_sub(1));
    index.forget_before(end);
    let inside = count_newlines(record.as_slice());
    last_line.saturating_sub(inside).max(1)
}

enum Source<R> {
    Csv {
        reader: csv::Reader<LineIndex<BufReader<Decoded<R>>>>,
        record: csv::ByteRecord,
        columns: Vec<Column>,
        present: FieldSet,
    },
    Jsonl {
        reader: BufReader<Decoded<R>>,
        buf: Vec<u8>,
        line: u64,
        keys: HashMap<String, usize>,
    },
}

impl<R: Read> Source<R> {
    fn hashing(&self) -> &Hashing<R> {
        match self {
            Source::Csv { reader, .. } => reader.get_ref().inner.get_ref().hashing(),
            Source::Jsonl { reader, .. } => reader.get_ref().hashing(),
        }
    }
}

// Not boxed: a row moves once, a box would cost an allocation per row.
#[allow(clippy::large_enum_variant)]
enum Step {
    Row(ParsedRow),
    Skip,
    Eof,
}

/// Streams the rows of one import file. See the module documentation.
pub struct RecordReader<R> {
    rows: Rows,
    source: Source<R>,
    encoding: TextEncoding,
    format: FileFormat,
    summary: Option<FileSummary>,
    stopped: bool,
}

/// The accepted headers of a kind: canonical names (lower case) and Chinese headers.
fn header_map(kind: RecordKind) -> HashMap<String, usize> {
    let mut map = HashMap::new();
    for (index, spec) in kind.fields().iter().enumerate() {
        if spec.derived {
            continue;
        }
        map.insert(spec.name.to_owned(), index);
        for zh in spec.zh {
            map.insert((*zh).to_owned(), index);
        }
    }
    map
}

fn lookup_header(map: &HashMap<String, usize>, header: &str) -> Option<usize> {
    map.get(header)
        .or_else(|| map.get(&header.to_ascii_lowercase()))
        .copied()
}

/// The format an extension implies, if any.
fn format_from_extension(path: &Path) -> Option<FormatChoice> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "jsonl" | "ndjson" | "json" => Some(FormatChoice::JsonLines),
        "csv" => Some(FormatChoice::Csv),
        _ => None,
    }
}

fn io_error(file: &str, e: io::Error) -> ImportError {
    if let Some(NotGb18030 { line }) = e.get_ref().and_then(|inner| inner.downcast_ref()) {
        return ImportError::Encoding {
            file: file.to_owned(),
            encoding: "GB18030",
            line: *line,
        };
    }
    ImportError::Io {
        file: file.to_owned(),
        source: e,
    }
}

fn csv_error(file: &str, e: csv::Error) -> ImportError {
    if !e.is_io_error() {
        return ImportError::Csv {
            file: file.to_owned(),
            why: e.to_string(),
        };
    }
    match e.into_kind() {
        csv::ErrorKind::Io(io) => io_error(file, io),
        _ => ImportError::Csv {
            file: file.to_owned(),
            why: "input/output error".to_owned(),
        },
    }
}

impl RecordReader<File> {
    /// Opens an import file. With [`FormatChoice::Auto`] the extension decides first.
    pub fn open(
        path: &Path,
        kind: RecordKind,
        options: ImportOptions,
    ) -> Result<RecordReader<File>, ImportError> {
        let name = path.display().to_string();
        let mut options = options;
        if options.format == FormatChoice::Auto {
            options.format = format_from_extension(path).unwrap_or(FormatChoice::Auto);
        }
        let file = File::open(path).map_err(|source| ImportError::Io {
            file: name.clone(),
            source,
        })?;
        RecordReader::from_reader(name, file, kind, options)
    }
}

impl<R: Read + Seek> RecordReader<R> {
    /// Reads an import file from `input` (from its current position); `file` names it in
    /// messages. With [`EncodingChoice::Auto`] the input is scanned once and rewound.
    /// CSV headers are read and checked here.
    pub fn from_reader(
        file: impl Into<String>,
        mut input: R,
        kind: RecordKind,
        options: ImportOptions,
    ) -> Result<RecordReader<R>, ImportError> {
        let file = file.into();
        let encoding = match options.encoding {
            EncodingChoice::Utf8 => TextEncoding::Utf8,
            EncodingChoice::Gb18030 => TextEncoding::Gb18030,
            EncodingChoice::Auto => {
                let start = input.stream_position().map_err(|e| io_error(&file, e))?;
                let utf8 = scan_utf8(&mut input).map_err(|e| io_error(&file, e))?;
                input
                    .seek(SeekFrom::Start(start))
                    .map_err(|e| io_error(&file, e))?;
                if utf8 {
                    TextEncoding::Utf8
                } else {
                    TextEncoding::Gb18030
                }
            }
        };
        RecordReader::with_encoding(file, input, kind, encoding, options.format)
    }
}

impl<R: Read> RecordReader<R> {
    /// Reads an import file in a known encoding from a stream that cannot be rewound (a
    /// pipe, a request body); `file` names it in messages. CSV headers are read and checked
    /// here.
    pub fn with_encoding(
        file: impl Into<String>,
        input: R,
        kind: RecordKind,
        encoding: TextEncoding,
        format: FormatChoice,
    ) -> Result<RecordReader<R>, ImportError> {
        let file = file.into();
        let hashing = Hashing {
            inner: input,
            sha: Sha256::new(),
            bytes: 0,
        };
        let decoded = match encoding {
            TextEncoding::Utf8 => Decoded::Utf8(hashing),
            TextEncoding::Gb18030 => Decoded::Gb(GbReader::new(hashing)),
        };
        let mut buffered = BufReader::with_capacity(BUF_SIZE, decoded);
        let format = match format {
            FormatChoice::Csv => FileFormat::Csv,
            FormatChoice::JsonLines => FileFormat::JsonLines,
            FormatChoice::Auto => {
                let head = buffered.fill_buf().map_err(|e| io_error(&file, e))?;
                let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
                match head.iter().find(|b| !b.is_ascii_whitespace()) {
                    Some(b'{') => FileFormat::JsonLines,
                    _ => FileFormat::Csv,
                }
            }
        };
        let mut rows = Rows::new(file, kind);
        let source = match format {
            FileFormat::JsonLines => Source::Jsonl {
                reader: buffered,
                buf: Vec::new(),
                line: 0,
                keys: header_map(kind),
            },
            FileFormat::Csv => {
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(false)
                    .flexible(true)
                    .from_reader(LineIndex {
                        inner: buffered,
                        offset: 0,
                        newlines: VecDeque::new(),
                        dropped: 0,
                    });
                let (columns, present) = read_header(&mut reader, &mut rows, encoding)?;
                Source::Csv {
                    reader,
                    record: csv::ByteRecord::new(),
                    columns,
                    present,
                }
            }
        };
        Ok(RecordReader {
            rows,
            source,
            encoding,
            format,
            summary: None,
            stopped: false,
        })
    }
}

/// Reads and checks the CSV header row.
fn read_header<R: Read>(
    reader: &mut csv::Reader<LineIndex<R>>,
    rows: &mut Rows,
    encoding: TextEncoding,
) -> Result<(Vec<Column>, FieldSet), ImportError> {
    let kind = rows.kind;
    let mut header = csv::ByteRecord::new();
    // Leading blank lines are skipped by the CSV reader; so is a row of empty cells here.
    loop {
        if !reader
            .read_byte_record(&mut header)
            .map_err(|e| csv_error(&rows.file, e))?
        {
            return Err(ImportError::Empty {
                file: rows.file.clone(),
            });
        }
        if !header.iter().all(|c| c.trim_ascii().is_empty()) {
            break;
        }
    }
    let line = record_line(reader, &header);
    let map = header_map(kind);
    let fields = kind.fields();
    let mut present = FieldSet::empty(kind);
    let mut columns = Vec::with_capacity(header.len());
    for cell in &header {
        let text = std::str::from_utf8(cell).map_err(|_| ImportError::Encoding {
            file: rows.file.clone(),
            encoding: encoding.name(),
            line,
        })?;
        let name = text.trim_start_matches('\u{feff}').trim();
        let field = if name.is_empty() {
            None
        } else {
            match lookup_header(&map, name) {
                None => {
                    let mut why = format!("unknown column for {} files", kind.plural());
                    if name.chars().any(|c| c.is_ascii_digit()) {
                        why.push_str(" (digits in a header: is the header row missing?)");
                    }
                    rows.problem(line, Some(name), None, why);
                    None
                }
                Some(index) if present.contains_index(index) => {
                    let canonical = fields.get(index).map_or("", |f| f.name);
                    let why = format!("repeats column `{canonical}`");
                    rows.problem(line, Some(name), None, why);
                    None
                }
                Some(index) => {
                    present.insert_index(index);
                    Some(index)
                }
            }
        };
        columns.push(Column {
            name: name.to_owned(),
            field,
        });
    }
    for (index, spec) in fields.iter().enumerate() {
        if spec.derived {
            present.insert_index(index);
        } else if spec.required && !present.contains_index(index) {
            let zh = spec.zh.first().copied().unwrap_or("");
            let why = format!("missing required column `{}` ({zh})", spec.name);
            rows.problem(line, None, None, why);
        }
    }
    if !rows.clean() {
        return Err(rows.bad_rows().into());
    }
    Ok((columns, present))
}

impl<R: Read> RecordReader<R> {
    /// The encoding the file is read in.
    pub fn encoding(&self) -> TextEncoding {
        self.encoding
    }

    /// The format the file is read in.
    pub fn format(&self) -> FileFormat {
        self.format
    }

    /// The next good row, `Ok(None)` at the end of a good file. When the file has a format
    /// problem, no further rows are returned: the rest of the file is read and every
    /// problem is returned as [`ImportError::BadRows`]; rows returned before it must then
    /// be discarded. After an error the reader returns `Ok(None)`.
    pub fn next_row(&mut self) -> Result<Option<ParsedRow>, ImportError> {
        if self.summary.is_some() || self.stopped {
            return Ok(None);
        }
        loop {
            match self.step() {
                Err(e) => {
                    self.stopped = true;
                    return Err(e);
                }
                Ok(Step::Eof) => break,
                Ok(Step::Skip) => {}
                Ok(Step::Row(row)) => {
                    if self.rows.clean() {
                        return Ok(Some(row));
                    }
                }
            }
        }
        if !self.rows.clean() {
            self.stopped = true;
            return Err(self.rows.bad_rows().into());
        }
        let hashing = self.source.hashing();
        self.summary = Some(FileSummary {
            file: self.rows.file.clone(),
            sha256: hashing.sha.clone().finalize().into(),
            bytes: hashing.bytes,
            rows: self.rows.rows,
            encoding: self.encoding,
            format: self.format,
        });
        Ok(None)
    }

    /// The summary, once [`next_row`](RecordReader::next_row) has returned `Ok(None)` on a
    /// good file.
    pub fn summary(&self) -> Option<&FileSummary> {
        self.summary.as_ref()
    }

    /// Reads (and checks) any remaining rows and returns the summary.
    pub fn finish(mut self) -> Result<FileSummary, ImportError> {
        if self.stopped {
            return Err(ImportError::Stopped {
                file: self.rows.file.clone(),
            });
        }
        while self.next_row()?.is_some() {}
        self.summary.ok_or(ImportError::Stopped {
            file: self.rows.file,
        })
    }

    fn step(&mut self) -> Result<Step, ImportError> {
        let RecordReader {
            rows,
            source,
            encoding,
            ..
        } = self;
        match source {
            Source::Csv {
                reader,
                record,
                columns,
                present,
            } => {
                if !reader
                    .read_byte_record(record)
                    .map_err(|e| csv_error(&rows.file, e))?
                {
                    return Ok(Step::Eof);
                }
                let line = record_line(reader, record);
                if record.iter().all(|c| c.trim_ascii().is_empty()) {
                    return Ok(Step::Skip);
                }
                rows.rows += 1;
                if record.len() != columns.len() {
                    let why = format!(
                        "the row has {} cells but the header has {}",
                        record.len(),
                        columns.len()
                    );
                    rows.problem(line, None, None, why);
                    return Ok(Step::Skip);
                }
                let mut cells = Vec::with_capacity(columns.len());
                for (column, bytes) in columns.iter().zip(record.iter()) {
                    let raw = std::str::from_utf8(bytes).map_err(|_| ImportError::Encoding {
                        file: rows.file.clone(),
                        encoding: encoding.name(),
                        line,
                    })?;
                    match column.field {
                        Some(field) => cells.push(Cell {
                            field,
                            column: &column.name,
                            raw: Cow::Borrowed(raw),
                        }),
                        None if raw.trim().is_empty() => {}
                        None => {
                            let why = "a value in a column without a name".to_owned();
                            rows.problem(line, Some(&column.name), Some(shown_unknown(raw)), why);
                        }
                    }
                }
                Ok(rows
                    .build(line, &cells, *present)
                    .map_or(Step::Skip, Step::Row))
            }
            Source::Jsonl {
                reader,
                buf,
                line,
                keys,
            } => {
                buf.clear();
                let n = reader
                    .read_until(b'\n', buf)
                    .map_err(|e| io_error(&rows.file, e))?;
                if n == 0 {
                    return Ok(Step::Eof);
                }
                *line += 1;
                let text = std::str::from_utf8(buf).map_err(|_| ImportError::Encoding {
                    file: rows.file.clone(),
                    encoding: encoding.name(),
                    line: *line,
                })?;
                let text = text.trim_start_matches('\u{feff}').trim();
                if text.is_empty() {
                    return Ok(Step::Skip);
                }
                rows.rows += 1;
                Ok(jsonl_row(rows, keys, *line, text).map_or(Step::Skip, Step::Row))
            }
        }
    }
}

/// Validates one JSON Lines row.
fn jsonl_row(
    rows: &mut Rows,
    keys: &HashMap<String, usize>,
    line: u64,
    text: &str,
) -> Option<ParsedRow> {
    let kind = rows.kind;
    let object = match serde_json::from_str::<Json>(text) {
        Ok(Json::Object(object)) => object,
        Ok(_) => {
            rows.problem(line, None, None, "expected a JSON object".into());
            return None;
        }
        Err(e) => {
            rows.problem(line, None, None, format!("not valid JSON: {e}"));
            return None;
        }
    };
    let fields = kind.fields();
    let mut present = FieldSet::empty(kind);
    for (index, spec) in fields.iter().enumerate() {
        if spec.derived {
            present.insert_index(index);
        }
    }
    let mut cells = Vec::with_capacity(object.len());
    let mut ok = true;
    for (key, value) in &object {
        let Some((index, spec)) =
            lookup_header(keys, key.trim()).and_then(|i| fields.get(i).map(|s| (i, s)))
        else {
            let why = format!("unknown column for {} files", kind.plural());
            rows.problem(line, Some(key), None, why);
            ok = false;
            continue;
        };
        if present.contains_index(index) {
            rows.problem(
                line,
                Some(key),
                None,
                format!("repeats column `{}`", spec.name),
            );
            ok = false;
            continue;
        }
        present.insert_index(index);
        let raw: Cow<'_, str> = match value {
            Json::Null => continue,
            Json::String(s) => Cow::Borrowed(s.as_str()),
            Json::Number(n) if !matches!(spec.ty, FieldType::Bool) => Cow::Owned(n.to_string()),
            Json::Bool(b) if matches!(spec.ty, FieldType::Bool) => {
                Cow::Borrowed(if *b { "true" } else { "false" })
            }
            Json::Array(items) if matches!(spec.ty, FieldType::Ids) => {
                let parts: Option<Vec<&str>> = items.iter().map(Json::as_str).collect();
                match parts {
                    Some(parts) => Cow::Owned(parts.join(";")),
                    None => {
                        let why = "expected a list of id strings".to_owned();
                        rows.problem(line, Some(key), None, why);
                        ok = false;
                        continue;
                    }
                }
            }
            _ => {
                let why = format!("expected {} as a JSON string", spec.ty.expected());
                rows.problem(line, Some(key), None, why);
                ok = false;
                continue;
            }
        };
        cells.push(Cell {
            field: index,
            column: key,
            raw,
        });
    }
    if !ok {
        return None;
    }
    rows.build(line, &cells, present)
}

/// Reads a whole import file into memory (tests, small files). Prefer [`RecordReader`].
pub fn read_all(
    path: &Path,
    kind: RecordKind,
    options: ImportOptions,
) -> Result<(Vec<ParsedRow>, FileSummary), ImportError> {
    collect(RecordReader::open(path, kind, options)?)
}

/// Reads a whole import file from `input` into memory (tests, small inputs).
pub fn read_all_from<R: Read + Seek>(
    file: &str,
    input: R,
    kind: RecordKind,
    options: ImportOptions,
) -> Result<(Vec<ParsedRow>, FileSummary), ImportError> {
    collect(RecordReader::from_reader(file, input, kind, options)?)
}

fn collect<R: Read>(
    mut reader: RecordReader<R>,
) -> Result<(Vec<ParsedRow>, FileSummary), ImportError> {
    let mut rows = Vec::new();
    while let Some(row) = reader.next_row()? {
        rows.push(row);
    }
    let summary = reader.finish()?;
    Ok((rows, summary))
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;
    use crate::records::model::{
        Category, Dues, Employment, FieldValue, Gender, Meeting, MeetingKind, Member, Org, OrgKind,
        Role, Status, Transfer, User, CATEGORY, EMPLOYMENT, GENDER, MEETING_KIND, ORG_KIND, ROLE,
        STATUS,
    };

    fn date(s: &str) -> NaiveDate {
        crate::records::model::parse_canonical_date(s).unwrap()
    }

    fn id(s: &str) -> Id {
        Id::new(s).unwrap()
    }

    fn read_bytes(
        kind: RecordKind,
        bytes: &[u8],
        options: ImportOptions,
    ) -> Result<(Vec<ParsedRow>, FileSummary), ImportError> {
        read_all_from("t.csv", Cursor::new(bytes.to_vec()), kind, options)
    }

    fn read(kind: RecordKind, text: &str) -> Vec<Record> {
        let (rows, _) = read_bytes(kind, text.as_bytes(), ImportOptions::default())
            .unwrap_or_else(|e| panic!("{e}: {:?}", bad_lines(&e)));
        rows.into_iter().map(|r| r.record).collect()
    }

    fn bad_lines(e: &ImportError) -> Vec<String> {
        match e {
            ImportError::BadRows(b) => b.lines(),
            _ => Vec::new(),
        }
    }

    fn bad(kind: RecordKind, text: &str) -> BadRows {
        match read_bytes(kind, text.as_bytes(), ImportOptions::default()) {
            Err(ImportError::BadRows(b)) => b,
            other => panic!("expected bad rows, got {other:?}"),
        }
    }

    const MEMBERS_EN: &str = "member_id,name,gender,ethnicity,birth_date,id_number,phone,\
education,org_id,category,status,status_date,application_date,activist_date,candidate_date,\
admission_date,full_date,probation_extension_months,introducers,employment,monthly_income
M000123,张三,male,汉族,1990-01-01,230102199001011234,13900000001,本科,B001,full,active,,\
2012-03-01,2012-06-01,2013-07-01,2014-07-01,2015-07-01,0,M000001;M000002,employed,4500.50
M000124,李四,female,,,,,,B001,probationary,lost_contact,2025-06-30,,,,2025-01-02,,6,,retired,
";

    const MEMBERS_ZH: &str = "党员编号,姓名,性别,民族,出生日期,公民身份号码,联系电话,学历,\
所在党支部,人员类别,党籍状态,状态变更日期,申请入党日期,确定入党积极分子日期,确定发展对象日期,\
入党日期,转正日期,延长预备期月数,入党介绍人,工作状态,月收入
M000123,张三,男,汉族,1990年1月1日,230102199001011234,13900000001,本科,B001,正式党员,正常,,\
2012/3/1,2012.06.01,2013年7月1日,2014-7-1,2015/07/01,0,M000001；M000002,在职,4500.5
M000124,李四,女,,,,,,B001,预备党员,失联,2025.6.30,,,,2025年1月2日,,6,,离退休,
";

    fn expected_members() -> Vec<Record> {
        let first = Member {
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
        };
        let second = Member {
            member_id: id("M000124"),
            name: Some("李四".into()),
            gender: Some(Gender::Female),
            ethnicity: None,
            birth_date: None,
            id_number: None,
            phone: None,
            education: None,
            org_id: Some(id("B001")),
            category: Some(Category::Probationary),
            status: Some(Status::LostContact),
            status_date: Some(date("2025-06-30")),
            application_date: None,
            activist_date: None,
            candidate_date: None,
            admission_date: Some(date("2025-01-02")),
            full_date: None,
            probation_extension_months: Some(6),
            introducers: Vec::new(),
            employment: Some(Employment::Retired),
            monthly_income: None,
        };
        vec![Record::Member(first), Record::Member(second)]
    }

    #[test]
    fn english_and_chinese_headers_give_the_same_records() {
        assert_eq!(read(RecordKind::Member, MEMBERS_EN), expected_members());
        assert_eq!(read(RecordKind::Member, MEMBERS_ZH), expected_members());
    }

    #[test]
    fn gbk_file_parses_like_its_utf8_twin() {
        let (gbk, _, unmappable) = encoding_rs::GBK.encode(MEMBERS_ZH);
        assert!(!unmappable);
        assert!(
            std::str::from_utf8(&gbk).is_err(),
            "the sample must not be valid UTF-8"
        );
        let (rows, summary) =
            read_bytes(RecordKind::Member, &gbk, ImportOptions::default()).unwrap();
        assert_eq!(summary.encoding, TextEncoding::Gb18030);
        let records: Vec<Record> = rows.into_iter().map(|r| r.record).collect();
        assert_eq!(records, expected_members());
        // The hash is of the raw bytes, not of the decoded text.
        assert_eq!(summary.sha256, <[u8; 32]>::from(Sha256::digest(&gbk)));
        assert_eq!(summary.bytes, gbk.len() as u64);
        assert_eq!(summary.rows, 2);
        // An explicit override reads the same.
        let opts = ImportOptions {
            encoding: EncodingChoice::Gb18030,
            ..Default::default()
        };
        let (rows, _) = read_bytes(RecordKind::Member, &gbk, opts).unwrap();
        assert_eq!(rows.len(), 2);
    }

    #[test]
    fn bom_and_crlf_are_accepted() {
        let crlf = MEMBERS_ZH.replace('\n', "\r\n");
        let mut bytes = b"\xEF\xBB\xBF".to_vec();
        bytes.extend_from_slice(crlf.as_bytes());
        let (rows, summary) =
            read_bytes(RecordKind::Member, &bytes, ImportOptions::default()).unwrap();
        assert_eq!(summary.encoding, TextEncoding::Utf8);
        assert_eq!(rows.iter().map(|r| r.line).collect::<Vec<_>>(), [2, 3]);
        let records: Vec<Record> = rows.into_iter().map(|r| r.record).collect();
        assert_eq!(records, expected_members());
        // GBK with CRLF too.
        let (gbk, _, _) = encoding_rs::GBK.encode(&crlf);
        let (rows, _) = read_bytes(RecordKind::Member, &gbk, ImportOptions::default()).unwrap();
        assert_eq!(
            rows.into_iter().map(|r| r.record).collect::<Vec<_>>(),
            expected_members()
        );
    }

    #[test]
    fn summary_hash_and_row_count() {
        let text = "member_id,name\n\nM1,a\n,\nM2,b\n";
        let (rows, summary) = read_bytes(
            RecordKind::Member,
            text.as_bytes(),
            ImportOptions::default(),
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].line, 5);
        assert_eq!(summary.rows, 2, "blank and all-empty rows are not rows");
        assert_eq!(
            summary.sha256_hex(),
            hex::encode(Sha256::digest(text.as_bytes()))
        );
        assert_eq!(summary.format, FileFormat::Csv);
    }

    #[test]
    fn every_alias_of_every_enum_parses() {
        for spec in [
            &ORG_KIND,
            &GENDER,
            &CATEGORY,
            &STATUS,
            &EMPLOYMENT,
            &MEETING_KIND,
            &ROLE,
        ] {
            for (canon, aliases) in spec.variants {
                let upper = canon.to_ascii_uppercase();
                for s in aliases.iter().copied().chain([*canon, upper.as_str()]) {
                    assert_eq!(
                        parse_cell(FieldType::Enum(spec), s),
                        Ok(Typed::Enum(canon)),
                        "{s}"
                    );
                }
            }
        }
        for (value, spellings) in BOOL_SPELLINGS {
            for s in spellings {
                assert_eq!(parse_bool(s), Ok(value), "{s}");
                assert_eq!(parse_bool(&s.to_ascii_uppercase()), Ok(value), "{s}");
            }
        }
    }

    #[test]
    fn alias_families_in_files() {
        let orgs = read(
            RecordKind::Org,
            "组织编号,名称,类别,上级组织,成立日期,是否设支委会,书记,撤销日期\n\
             C1,机关党委,党委,,2001-07-01,是,,\n\
             G1,第一党总支,党总支,C1,,否,,\n\
             B1,第一党支部,党支部,G1,,有,M1,2025年12月31日\n",
        );
        let kinds: Vec<OrgKind> = orgs
            .iter()
            .map(|r| match r {
                Record::Org(o) => o.kind,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(
            kinds,
            [OrgKind::Committee, OrgKind::GeneralBranch, OrgKind::Branch]
        );
        assert_eq!(
            orgs[2],
            Record::Org(Org {
                org_id: id("B1"),
                name: "第一党支部".into(),
                kind: OrgKind::Branch,
                parent_id: Some(id("G1")),
                established_date: None,
                has_committee: Some(true),
                secretary_id: Some(id("M1")),
                dissolved_date: Some(date("2025-12-31")),
            })
        );
        let statuses = read(
            RecordKind::Member,
            "党员编号,党籍状态,工作状态\nM1,正常,在职\nM2,转出,离退休\nM3,死亡,学生\n\
             M4,出党,无固定收入\nM5,失联,农民\n",
        );
        let got: Vec<(Status, Employment)> = statuses
            .iter()
            .map(|r| match r {
                Record::Member(m) => (m.status.unwrap(), m.employment.unwrap()),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(
            got,
            [
                (Status::Active, Employment::Employed),
                (Status::TransferredOut, Employment::Retired),
                (Status::Deceased, Employment::Student),
                (Status::Removed, Employment::Unemployed),
                (Status::LostContact, Employment::Farmer),
            ]
        );
        let meetings = read(
            RecordKind::Meeting,
            "组织编号,类别,日期,参会人数,主题\nB1,党员大会,2026-01-05,10,\nB1,支委会,2026-01-05,,\n\
             B1,党小组会,2026-01-05,,\nB1,党课,2026-01-05,,\nB1,主题党日,2026-01-05,,\n\
             B1,组织生活会,2026-01-05,,\nB1,民主评议党员,2026-01-05,,\n",
        );
        let kinds: Vec<MeetingKind> = meetings
            .iter()
            .map(|r| match r {
                Record::Meeting(m) => m.kind,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(kinds, MeetingKind::ALL);
        let users = read(
            RecordKind::User,
            "用户编号,姓名,角色,所属组织,党员编号,是否停用\nu1,张,组织部门,C1,,否\nu2,,党员,,M1,是\nu3,,安全审计员,,,\n",
        );
        assert_eq!(
            users,
            [
                Record::User(User {
                    user_id: id("u1"),
                    name: Some("张".into()),
                    role: Role::OrgDept,
                    org_id: Some(id("C1")),
                    member_id: None,
                    disabled: false,
                }),
                Record::User(User {
                    user_id: id("u2"),
                    name: None,
                    role: Role::Member,
                    org_id: None,
                    member_id: Some(id("M1")),
                    disabled: true,
                }),
                Record::User(User {
                    user_id: id("u3"),
                    name: None,
                    role: Role::Auditor,
                    org_id: None,
                    member_id: None,
                    disabled: false,
                }),
            ]
        );
    }

    #[test]
    fn every_date_form() {
        let want = date("2021-07-01");
        for s in [
            "2021-07-01",
            "2021-7-1",
            "2021/7/1",
            "2021/07/01",
            "2021.07.01",
            "2021.7.1",
            "2021年7月1日",
            "2021年07月01日",
        ] {
            assert_eq!(parse_date(s), Ok(want), "{s}");
        }
        assert_eq!(parse_date("2024-02-29"), Ok(date("2024-02-29")));
        for s in [
            "2021-13-01",
            "2023-02-29",
            "21-07-01",
            "2021-07/01",
            "2021年7月1",
            "20210701",
            "2021-07-01 00:00",
            "2021-007-01",
            "0999-01-01",
            "2021--07",
            "七月一日",
        ] {
            assert!(parse_date(s).is_err(), "{s}");
        }
    }

    #[test]
    fn every_month_form() {
        let want = YearMonth::new(2026, 3).unwrap();
        for s in [
            "2026-03",
            "2026-3",
            "2026/3",
            "2026/03",
            "2026.03",
            "2026年3月",
            "2026年03月",
        ] {
            assert_eq!(parse_month(s), Ok(want), "{s}");
        }
        for s in [
            "2026-13",
            "2026-03-01",
            "202603",
            "26-03",
            "2026年3",
            "2026-0",
        ] {
            assert!(parse_month(s).is_err(), "{s}");
        }
    }

    #[test]
    fn money_in_yuan_becomes_fen() {
        for (s, fen) in [
            ("4500", 450_000),
            ("4500.5", 450_050),
            ("4500.50", 450_050),
            ("0.2", 20),
            ("0", 0),
            ("0.05", 5),
        ] {
            assert_eq!(parse_yuan(s).map(Fen::get), Ok(fen), "{s}");
        }
        assert_eq!(
            parse_yuan("45.005"),
            Err("an amount may have at most 2 decimals")
        );
        assert_eq!(parse_yuan("-45"), Err("a negative amount is not allowed"));
        for s in [
            "十元",
            "45元",
            "4,500",
            "4500.",
            ".5",
            "1e3",
            "+5",
            "99999999999999",
        ] {
            assert!(parse_yuan(s).is_err(), "{s}");
        }
    }

    #[test]
    fn repeated_keys_get_numbered_ids() {
        let dues = read(
            RecordKind::Dues,
            "member_id,month,base_income,amount,paid_date\nM1,2026-03,4500,22.50,2026-03-10\n\
             M1,2026-03,,22.5,\nM1,2026-04,,22.5,\nM2,2026-03,,0.2,\nM1,2026年3月,,1,\n",
        );
        let ids: Vec<String> = dues.iter().map(Record::id).collect();
        assert_eq!(
            ids,
            [
                "M1/2026-03",
                "M1/2026-03#2",
                "M1/2026-04",
                "M2/2026-03",
                "M1/2026-03#3"
            ]
        );
        assert_eq!(
            dues[0],
            Record::Dues(Dues {
                member_id: id("M1"),
                month: YearMonth::new(2026, 3).unwrap(),
                base_income: Some(Fen::new(450_000).unwrap()),
                amount: Fen::new(2_250).unwrap(),
                paid_date: Some(date("2026-03-10")),
                occurrence: 1,
            })
        );
        let meetings = read(
            RecordKind::Meeting,
            "org_id,kind,date,attendees,topic\nB1,theme_day,2026-03-05,9,a\nB1,lecture,2026-03-05,,\n\
             B1,主题党日,2026/3/5,,b\n",
        );
        let subjects: Vec<String> = meetings.iter().map(Record::subject).collect();
        assert_eq!(
            subjects,
            [
                "meeting/B1/2026-03-05/theme_day",
                "meeting/B1/2026-03-05/lecture",
                "meeting/B1/2026-03-05/theme_day#2"
            ]
        );
        assert_eq!(
            meetings[0],
            Record::Meeting(Meeting {
                org_id: id("B1"),
                kind: MeetingKind::ThemeDay,
                date: date("2026-03-05"),
                attendees: Some(9),
                topic: Some("a".into()),
                occurrence: 1,
            })
        );
        let transfers = read(
            RecordKind::Transfer,
            "党员编号,转出组织,转入组织,日期\nM1,B1,B2,2026-01-01\nM1,B2,,2026-01-01\n",
        );
        assert_eq!(transfers[1].subject(), "transfer/M1/2026-01-01#2");
        assert_eq!(
            transfers[1],
            Record::Transfer(Transfer {
                member_id: id("M1"),
                from_org: Some(id("B2")),
                to_org: None,
                date: date("2026-01-01"),
                occurrence: 2,
            })
        );
    }

    #[test]
    fn json_lines_parse_like_csv() {
        let jsonl = "{\"member_id\":\"M000123\",\"name\":\"张三\",\"gender\":\"男\",\"ethnicity\":\"汉族\",\
\"birth_date\":\"1990-01-01\",\"id_number\":\"230102199001011234\",\"phone\":13900000001,\
\"education\":\"本科\",\"org_id\":\"B001\",\"category\":\"full\",\"status\":\"active\",\"status_date\":null,\
\"application_date\":\"2012-03-01\",\"activist_date\":\"2012/6/1\",\"candidate_date\":\"2013-07-01\",\
\"admission_date\":\"2014-07-01\",\"full_date\":\"2015-07-01\",\"probation_extension_months\":0,\
\"introducers\":[\"M000001\",\"M000002\"],\"employment\":\"employed\",\"monthly_income\":4500.5}\r\n\
\n\
{\"党员编号\":\"M000124\",\"姓名\":\"李四\",\"性别\":\"女\",\"所在党支部\":\"B001\",\"人员类别\":\"预备党员\",\
\"党籍状态\":\"失联\",\"状态变更日期\":\"2025-06-30\",\"入党日期\":\"2025-01-02\",\"延长预备期月数\":\"6\",\
\"工作状态\":\"离退休\"}\n";
        let (rows, summary) = read_bytes(
            RecordKind::Member,
            jsonl.as_bytes(),
            ImportOptions::default(),
        )
        .unwrap();
        assert_eq!(summary.format, FileFormat::JsonLines);
        assert_eq!(rows.iter().map(|r| r.line).collect::<Vec<_>>(), [1, 3]);
        assert!(
            rows[0].columns.contains("status_date"),
            "a null key is spoken about"
        );
        assert!(!rows[1].columns.contains("phone"));
        let records: Vec<Record> = rows.into_iter().map(|r| r.record).collect();
        assert_eq!(records, expected_members());
    }

    #[test]
    fn format_by_extension_and_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orgs.jsonl");
        std::fs::write(
            &path,
            "{\"org_id\":\"B1\",\"name\":\"一支部\",\"kind\":\"branch\"}\n",
        )
        .unwrap();
        let (rows, summary) = read_all(&path, RecordKind::Org, ImportOptions::default()).unwrap();
        assert_eq!((rows.len(), summary.format), (1, FileFormat::JsonLines));
        assert_eq!(summary.file, path.display().to_string());
        let path = dir.path().join("orgs.txt");
        std::fs::write(
            &path,
            "  \n{\"org_id\":\"B1\",\"name\":\"一支部\",\"kind\":\"branch\"}\n",
        )
        .unwrap();
        let (_, summary) = read_all(&path, RecordKind::Org, ImportOptions::default()).unwrap();
        assert_eq!(summary.format, FileFormat::JsonLines);
        let path = dir.path().join("orgs.json");
        std::fs::write(&path, "org_id,name,kind\nB1,x,branch\n").unwrap();
        let opts = ImportOptions {
            format: FormatChoice::Csv,
            ..Default::default()
        };
        let (_, summary) = read_all(&path, RecordKind::Org, opts).unwrap();
        assert_eq!(
            summary.format,
            FileFormat::Csv,
            "an explicit format wins over the extension"
        );
        let err = read_all(&dir.path().join("none.csv"), RecordKind::Org, opts).unwrap_err();
        assert!(matches!(err, ImportError::Io { .. }));
    }

    #[test]
    fn columns_limit_the_changes() {
        let (rows, _) = read_bytes(
            RecordKind::Member,
            "member_id,phone,name\nM000123,13900000002,\n".as_bytes(),
            ImportOptions::default(),
        )
        .unwrap();
        let row = &rows[0];
        assert!(row.columns.contains("phone") && row.columns.contains("name"));
        assert!(!row.columns.contains("gender"));
        let current = &expected_members()[0];
        let changes = row.changes_from(current).unwrap();
        assert_eq!(
            changes.keys().copied().collect::<Vec<_>>(),
            ["name", "phone"]
        );
        assert_eq!(changes["name"].new, None);
        assert_eq!(
            changes["phone"].new,
            Some(FieldValue::Text("13900000002".into()))
        );
        let after = current.apply(&changes).unwrap();
        let Record::Member(m) = after else {
            unreachable!()
        };
        assert_eq!(
            m.gender,
            Some(Gender::Male),
            "fields not in the file are kept"
        );
    }

    #[test]
    fn unnamed_empty_column_is_tolerated() {
        let records = read(RecordKind::Org, "org_id,name,kind,\nB1,x,branch,\n");
        assert_eq!(records.len(), 1);
        let b = bad(
            RecordKind::Org,
            "org_id,name,kind,\nB1,x,branch,\nB2,y,branch,oops\n",
        );
        assert_eq!(
            b.lines(),
            ["t.csv:3: column ``: value `oops`: a value in a column without a name"]
        );
    }

    #[test]
    fn multi_line_cells_keep_line_numbers_exact() {
        let text = "org_id,kind,date,attendees,topic\r\nB1,lecture,2026-03-05,,\"第一行\r\n第二行\"\r\n\r\n\
                    B1,lecture,2026-03-06,,one\r\nB1,lecture,2026-03-07,x,\r\n";
        let b = bad(RecordKind::Meeting, text);
        assert_eq!(
            b.lines(),
            ["t.csv:6: column `attendees`: value `x`: not a whole number"]
        );
        let text = text.replace(",x,", ",3,");
        let (rows, _) = read_bytes(
            RecordKind::Meeting,
            text.as_bytes(),
            ImportOptions::default(),
        )
        .unwrap();
        assert_eq!(rows.iter().map(|r| r.line).collect::<Vec<_>>(), [2, 5, 6]);
        let Record::Meeting(m) = &rows[0].record else {
            unreachable!()
        };
        assert_eq!(
            m.topic.as_deref(),
            Some("第一行\n第二行"),
            "line ends become LF"
        );
        // A name must stay on one line.
        let b = bad(
            RecordKind::Member,
            "member_id,name\nM1,\"a\nb\"\nM2,\"c\"\"d\n\n\"\n",
        );
        assert_eq!(b.listed.iter().map(|p| p.line).collect::<Vec<_>>(), [2]);
        assert_eq!(
            b.listed[0].value.as_deref(),
            Some("a\\nb"),
            "control characters are escaped"
        );
    }

    #[test]
    fn streaming_stops_handing_out_rows_at_the_first_problem() {
        let text = "member_id,gender\nM1,male\nM2,x\nM3,female\nM4,y\n";
        let mut reader = RecordReader::from_reader(
            "t.csv",
            Cursor::new(text.as_bytes().to_vec()),
            RecordKind::Member,
            ImportOptions::default(),
        )
        .unwrap();
        assert_eq!(reader.next_row().unwrap().unwrap().line, 2);
        let err = reader.next_row().unwrap_err();
        let ImportError::BadRows(b) = err else {
            panic!("{err}")
        };
        assert_eq!((b.rows, b.problems), (2, 2));
        assert_eq!(b.listed.iter().map(|p| p.line).collect::<Vec<_>>(), [3, 5]);
        assert!(reader.next_row().unwrap().is_none());
        assert!(matches!(reader.finish(), Err(ImportError::Stopped { .. })));
    }

    // ----- format errors: each reported with its exact line

    #[test]
    fn fail_bad_date() {
        let b = bad(
            RecordKind::Member,
            "member_id,birth_date\nM1,1990-01-01\nM2,1990-13-01\n",
        );
        assert_eq!(
            b.lines(),
            ["t.csv:3: column `birth_date`: value `1990-13-01`: not a real calendar date"]
        );
        let b = bad(RecordKind::Member, "党员编号,出生日期\nM1,1990年1月\n");
        assert_eq!(b.listed[0].line, 2);
        assert_eq!(b.listed[0].column.as_deref(), Some("出生日期"));
    }

    #[test]
    fn fail_unknown_enum_value() {
        let b = bad(RecordKind::Member, "党员编号,性别\nM1,男\nM2,男士\n");
        assert_eq!(
            b.lines(),
            ["t.csv:3: column `性别`: value `男士`: unknown gender (expected male|female)"]
        );
        let b = bad(
            RecordKind::Org,
            "org_id,name,kind,has_committee\nB1,x,branch,maybe\n",
        );
        assert_eq!(b.listed[0].column.as_deref(), Some("has_committee"));
        assert_eq!(b.listed[0].line, 2);
    }

    #[test]
    fn fail_text_in_amount() {
        let b = bad(
            RecordKind::Dues,
            "member_id,month,amount\nM1,2026-03,22.5\nM1,2026-04,十元\n",
        );
        assert_eq!(b.listed[0].line, 3);
        assert_eq!(b.listed[0].value.as_deref(), Some("十元"));
        assert!(
            b.listed[0].why.starts_with("not an amount in yuan"),
            "{}",
            b.listed[0].why
        );
    }

    #[test]
    fn fail_three_decimals_and_negative_amounts() {
        let b = bad(
            RecordKind::Dues,
            "member_id,month,amount\nM1,2026-03,22.505\nM1,2026-04,-1\n",
        );
        assert_eq!(
            b.lines(),
            [
                "t.csv:2: column `amount`: value `22.505`: an amount may have at most 2 decimals",
                "t.csv:3: column `amount`: value `-1`: a negative amount is not allowed",
            ]
        );
    }

    #[test]
    fn fail_bad_month() {
        let b = bad(RecordKind::Dues, "member_id,month,amount\nM1,2026-13,1\n");
        assert_eq!(
            b.lines(),
            ["t.csv:2: column `month`: value `2026-13`: not a real month"]
        );
    }

    #[test]
    fn fail_wrong_number_of_cells() {
        let b = bad(
            RecordKind::Org,
            "org_id,name,kind\nB1,x,branch\nB2,y,branch,extra\n\nB3,z\n",
        );
        assert_eq!(
            b.lines(),
            [
                "t.csv:3: the row has 4 cells but the header has 3",
                "t.csv:5: the row has 2 cells but the header has 3",
            ]
        );
    }

    #[test]
    fn fail_duplicate_ids_in_one_file() {
        let b = bad(RecordKind::Member, "member_id,name\nM1,a\nM2,b\nM1,c\n");
        assert_eq!(
            b.lines(),
            ["t.csv:4: column `member_id`: value `M1`: repeats the member_id of line 2"]
        );
        let b = bad(
            RecordKind::Org,
            "组织编号,名称,类别\nB1,a,党支部\nB1,b,党支部\n",
        );
        assert_eq!(b.listed[0].column.as_deref(), Some("组织编号"));
        let b = bad(RecordKind::User, "user_id,role\nu1,auditor\nu1,sysadmin\n");
        assert_eq!(b.listed[0].line, 3);
    }

    #[test]
    fn fail_missing_id_and_required_values() {
        let b = bad(RecordKind::Member, "member_id,name\nM1,a\n,b\n");
        assert_eq!(
            b.lines(),
            ["t.csv:3: column `member_id`: value ``: a value is required"]
        );
        let b = bad(RecordKind::Dues, "member_id,month,amount\nM1,2026-03,\n");
        assert_eq!(
            b.lines(),
            ["t.csv:2: column `amount`: value ``: a value is required"]
        );
        let b = bad(RecordKind::Transfer, "{\"member_id\":\"M1\"}\n");
        assert_eq!(
            b.lines(),
            ["t.csv:1: column `date`: value ``: a value is required"]
        );
    }

    #[test]
    fn fail_bad_ids() {
        let b = bad(
            RecordKind::Member,
            "member_id,introducers\nM/1,\nM2,M1;M 3\n",
        );
        assert_eq!(b.listed.iter().map(|p| p.line).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(b.listed[1].column.as_deref(), Some("introducers"));
    }

    #[test]
    fn fail_headerless_file_never_shows_the_values_read_as_its_header() {
        // A file exported without its header row: its first row is read as the header.
        let id = "110101199003070017";
        let phone = "13800138000";
        let text = format!("M1,张三,{id},{phone}\nM2,李四,110101199003071012,13900139000\n");
        let b = bad(RecordKind::Member, &text);
        let shown = format!("{b}\n{}", b.lines().join("\n"));
        for secret in [id, phone, "1101011990", "138001"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("is the header row missing?"), "{shown}");
        // A value under a column without a name is shown with its digits masked too.
        let b = bad(
            RecordKind::Member,
            &format!("member_id,,name\nM1,{id},张三\n"),
        );
        let shown = b.lines().join("\n");
        assert!(!shown.contains(id) && shown.contains("******"), "{shown}");
    }

    #[test]
    fn fail_header_problems() {
        let b = bad(
            RecordKind::Member,
            "member_id,name,address,姓名\nM1,a,b,c\n",
        );
        assert_eq!(
            b.lines(),
            [
                "t.csv:1: column `address`: unknown column for members files",
                "t.csv:1: column `姓名`: repeats column `name`",
            ]
        );
        let b = bad(RecordKind::Dues, "member_id,month\nM1,2026-03\n");
        assert_eq!(
            b.lines(),
            ["t.csv:1: missing required column `amount` (金额)"]
        );
        // The header of one kind is not accepted for another.
        let b = bad(RecordKind::Org, "member_id,name,kind\n");
        assert_eq!(b.listed[0].column.as_deref(), Some("member_id"));
    }

    #[test]
    fn fail_empty_file() {
        for text in ["", "\n\n", ",,\n"] {
            let err =
                read_bytes(RecordKind::Org, text.as_bytes(), ImportOptions::default()).unwrap_err();
            assert!(matches!(err, ImportError::Empty { .. }), "{text:?}: {err}");
        }
    }

    #[test]
    fn fail_sensitive_values_are_masked_in_reports() {
        let text = "member_id,monthly_income,id_number,phone\n\
                    M1,abc,\"2301021990\u{1}01011234\",\"1390000\u{7}0001\"\n";
        let b = bad(RecordKind::Member, text);
        let lines = b.lines();
        assert_eq!(
            lines,
            [
                "t.csv:2: column `monthly_income`: value `***`: not an amount in yuan (expected digits with at most 2 decimals)",
                "t.csv:2: column `id_number`: value `2301***********1234`: text must not contain line breaks or control characters",
                "t.csv:2: column `phone`: value `139*****0001`: text must not contain line breaks or control characters",
            ]
        );
        let all = lines.join("\n");
        assert!(!all.contains("abc") && !all.contains("1990") && !all.contains("0000"));
        let b = bad(
            RecordKind::Dues,
            "member_id,month,base_income,amount\nM1,2026-03,4500.123,1\n",
        );
        assert_eq!(b.listed[0].value.as_deref(), Some("***"));
        assert!(!b.to_string().contains("4500"));
    }

    #[test]
    fn fail_reports_all_bad_rows_but_lists_twenty() {
        let mut text = String::from("member_id,gender\n");
        for i in 0..30 {
            let gender = if i % 6 == 0 { "male" } else { "x" };
            text.push_str(&format!("M{i},{gender}\n"));
        }
        let b = bad(RecordKind::Member, &text);
        assert_eq!((b.problems, b.rows, b.listed.len()), (25, 25, MAX_LISTED));
        assert_eq!(b.listed[0].line, 3);
        let lines = b.lines();
        assert_eq!(lines.len(), 21);
        assert_eq!(lines[20], "… and 5 more problems");
        assert_eq!(
            b.to_string(),
            "25 bad rows in `t.csv`, nothing imported (first: line 3: column `gender`: value `x`: \
             unknown gender (expected male|female))"
        );
    }

    #[test]
    fn fail_json_lines_problems() {
        let text = "{\"member_id\":\"M1\"}\n[1]\n{\"member_id\":\n{\"member_id\":\"M4\",\"x\":1}\n\
                    {\"member_id\":\"M5\",\"name\":true}\n{\"member_id\":\"M6\",\"党员编号\":\"M6\"}\n";
        let b = bad(RecordKind::Member, text);
        let lines: Vec<(u64, Option<&str>)> = b
            .listed
            .iter()
            .map(|p| (p.line, p.column.as_deref()))
            .collect();
        assert_eq!(
            lines,
            [
                (2, None),
                (3, None),
                (4, Some("x")),
                (5, Some("name")),
                (6, Some("党员编号"))
            ]
        );
        assert_eq!(b.listed[0].why, "expected a JSON object");
        assert!(b.listed[1].why.starts_with("not valid JSON"));
    }

    #[test]
    fn fail_bytes_that_are_neither_utf8_nor_gb18030() {
        let mut bytes = b"org_id,name,kind\nB1,x,branch\nB2,".to_vec();
        bytes.extend_from_slice(b"\xff\xff,branch\n");
        let err = read_bytes(RecordKind::Org, &bytes, ImportOptions::default()).unwrap_err();
        assert!(
            matches!(
                err,
                ImportError::Encoding {
                    encoding: "GB18030",
                    line: 3,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(err.to_string(), "`t.csv` line 3 is not valid GB18030 text");
    }

    #[test]
    fn fail_explicit_utf8_on_a_gbk_file() {
        let (gbk, _, _) =
            encoding_rs::GBK.encode("org_id,name,kind\nB1,x,branch\nB2,第二,branch\n");
        let opts = ImportOptions {
            encoding: EncodingChoice::Utf8,
            ..Default::default()
        };
        let err = read_bytes(RecordKind::Org, &gbk, opts).unwrap_err();
        assert!(
            matches!(
                err,
                ImportError::Encoding {
                    encoding: "UTF-8",
                    line: 3,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn streams_without_seek_in_a_known_encoding() {
        struct Pipe<'a>(&'a [u8]);
        impl Read for Pipe<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                // One byte at a time: the worst case for buffering and decoding.
                let Some((first, rest)) = self.0.split_first() else {
                    return Ok(0);
                };
                match buf.first_mut() {
                    Some(b) => *b = *first,
                    None => return Ok(0),
                }
                self.0 = rest;
                Ok(1)
            }
        }
        let (gbk, _, _) = encoding_rs::GBK.encode(MEMBERS_ZH);
        let reader = RecordReader::with_encoding(
            "-",
            Pipe(&gbk),
            RecordKind::Member,
            TextEncoding::Gb18030,
            FormatChoice::Auto,
        )
        .unwrap();
        let (rows, summary) = collect(reader).unwrap();
        assert_eq!(
            rows.into_iter().map(|r| r.record).collect::<Vec<_>>(),
            expected_members()
        );
        assert_eq!(summary.sha256, <[u8; 32]>::from(Sha256::digest(&gbk)));
        let b = bad(RecordKind::Member, "member_id,gender\nM1,x\n");
        assert!(b.to_string().starts_with("1 bad row in `t.csv`"), "{b}");
    }

    #[test]
    fn encoding_and_kind_names_parse() {
        assert_eq!("GBK".parse::<EncodingChoice>(), Ok(EncodingChoice::Gb18030));
        assert_eq!("utf-8".parse::<EncodingChoice>(), Ok(EncodingChoice::Utf8));
        assert!("latin1".parse::<EncodingChoice>().is_err());
    }

    /// docs/IMPORT.md lists every accepted header and value spelling.
    #[test]
    fn import_doc_lists_every_spelling() {
        let doc = include_str!("../../docs/IMPORT.md");
        let mut missing = Vec::new();
        for kind in RecordKind::ALL {
            for spec in kind.fields().iter().filter(|f| !f.derived) {
                for name in spec.zh.iter().chain([&spec.name]) {
                    if !doc.contains(&format!("`{name}`")) {
                        missing.push(name.to_string());
                    }
                }
            }
        }
        for spec in [
            &ORG_KIND,
            &GENDER,
            &CATEGORY,
            &STATUS,
            &EMPLOYMENT,
            &MEETING_KIND,
            &ROLE,
        ] {
            for (canon, aliases) in spec.variants {
                for name in aliases.iter().chain([canon]) {
                    if !doc.contains(&format!("`{name}`")) {
                        missing.push(name.to_string());
                    }
                }
            }
        }
        for (_, spellings) in BOOL_SPELLINGS {
            for s in spellings {
                if !doc.contains(&format!("`{s}`")) {
                    missing.push(s.to_string());
                }
            }
        }
        assert!(missing.is_empty(), "not in docs/IMPORT.md: {missing:?}");
    }
}
