//! RFC 8785 (JSON Canonicalization Scheme, JCS) canonical bytes of a JSON value.
//!
//! The canonical form is what the ledger hashes: object members sorted by the UTF-16 code
//! units of their names, no whitespace, strings escaped exactly as RFC 8785 §3.2.2.2 says
//! (only `\b \t \n \f \r \" \\` and `\u00xx` for the other control characters), numbers
//! written as ECMAScript `Number.prototype.toString` writes them.
//!
//! Numbers: JCS numbers are IEEE 754 doubles. Integers are accepted only within
//! ±(2^53 − 1), where a double holds every integer exactly; anything larger must be carried
//! as a string (money is integer fen, far inside the range). For the same reason a double
//! whose canonical text is an integer literal beyond that range (an integral value with
//! 2^53 <= |x| < 10^21) is rejected too, so that canonical bytes always parse back to an
//! accepted value. NaN and infinities have no JSON form and are rejected.
//!
//! This module is pure: no I/O, no hashing, no knowledge of what the value means. It is on
//! the hot path of bulk appends, so it writes straight into one growing buffer and sorts
//! object members only when they are not already in canonical order. Error messages name
//! where in the value the problem is (a JSON Pointer), never the offending value, which may
//! be a sensitive field.

use std::cmp::Ordering;

use serde_json::{Map, Number, Value};

/// The largest integer magnitude an IEEE 754 double holds exactly with all its neighbours:
/// 2^53 − 1 (ECMAScript `Number.MAX_SAFE_INTEGER`).
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Why a value has no RFC 8785 canonical form.
///
/// `path` is an RFC 6901 JSON Pointer to the offending number (`""` is the whole value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    /// A NaN or infinite number.
    #[error("number at {} is not finite: RFC 8785 JSON has no NaN or infinity", show_path(.path))]
    NonFinite {
        /// JSON Pointer to the number.
        path: String,
    },
    /// An integer outside ±(2^53 − 1).
    #[error(
        "integer at {} is outside ±(2^53-1), the range RFC 8785 numbers hold exactly; carry it as a string",
        show_path(.path)
    )]
    IntegerOutOfRange {
        /// JSON Pointer to the number.
        path: String,
    },
}

fn show_path(path: &str) -> String {
    if path.is_empty() {
        "the top level".to_owned()
    } else {
        format!("`{path}`")
    }
}

/// The canonical form of `v` as a string.
pub fn to_canonical_string(v: &Value) -> Result<String, CanonicalError> {
    let mut out = String::with_capacity(256);
    write_canonical(v, &mut out)?;
    Ok(out)
}

/// The canonical form of `v` as bytes (UTF-8), ready to hash.
pub fn to_canonical_vec(v: &Value) -> Result<Vec<u8>, CanonicalError> {
    to_canonical_string(v).map(String::into_bytes)
}

/// Appends the canonical form of `v` to `out`, so that a bulk writer can reuse one buffer
/// (`out.clear()` between values). On error `out` is left exactly as it was.
pub fn write_canonical(v: &Value, out: &mut String) -> Result<(), CanonicalError> {
    let start = out.len();
    match write_value(v, out) {
        Ok(()) => Ok(()),
        Err(fault) => {
            out.truncate(start);
            Err(fault.into_error())
        }
    }
}

/// Whether `bytes` are exactly the canonical form of the JSON value they encode: parses
/// them, re-encodes the value and compares. Invalid JSON, whitespace, unsorted or duplicate
/// member names, needless escapes and non-canonical numbers all give `false`.
pub fn is_canonical(bytes: &[u8]) -> bool {
    let Ok(value) = serde_json::from_slice::<Value>(bytes) else {
        return false;
    };
    let mut out = String::with_capacity(bytes.len());
    write_value(&value, &mut out).is_ok() && out.as_bytes() == bytes
}

// ---------------------------------------------------------------------------------------
// Errors are rare: the JSON Pointer is built only while an error unwinds.

enum FaultKind {
    NonFinite,
    IntegerOutOfRange,
}

enum Segment {
    Key(String),
    Index(usize),
}

struct Fault {
    kind: FaultKind,
    /// Innermost segment first.
    reversed_path: Vec<Segment>,
}

impl Fault {
    fn new(kind: FaultKind) -> Self {
        Fault {
            kind,
            reversed_path: Vec::new(),
        }
    }

    fn within(mut self, segment: Segment) -> Self {
        self.reversed_path.push(segment);
        self
    }

    fn into_error(self) -> CanonicalError {
        let mut path = String::new();
        for segment in self.reversed_path.iter().rev() {
            path.push('/');
            match segment {
                Segment::Key(key) => path.push_str(&key.replace('~', "~0").replace('/', "~1")),
                Segment::Index(i) => path.push_str(&i.to_string()),
            }
        }
        match self.kind {
            FaultKind::NonFinite => CanonicalError::NonFinite { path },
            FaultKind::IntegerOutOfRange => CanonicalError::IntegerOutOfRange { path },
        }
    }
}

// ---------------------------------------------------------------------------------------
// Writer.

fn write_value(v: &Value, out: &mut String) -> Result<(), Fault> {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(n, out)?,
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out).map_err(|f| f.within(Segment::Index(i)))?;
            }
            out.push(']');
        }
        Value::Object(map) => write_object(map, out)?,
    }
    Ok(())
}

fn write_object(map: &Map<String, Value>, out: &mut String) -> Result<(), Fault> {
    out.push('{');
    // Most objects the ledger writes are already in canonical order: then no sort and no
    // allocation is needed.
    let sorted = map
        .keys()
        .is_sorted_by(|a, b| cmp_utf16(a, b) == Ordering::Less);
    if sorted {
        for (i, (key, value)) in map.iter().enumerate() {
            write_member(i, key, value, out)?;
        }
    } else {
        let mut members: Vec<(&String, &Value)> = map.iter().collect();
        members.sort_unstable_by(|a, b| cmp_utf16(a.0, b.0));
        for (i, (key, value)) in members.into_iter().enumerate() {
            write_member(i, key, value, out)?;
        }
    }
    out.push('}');
    Ok(())
}

fn write_member(i: usize, key: &str, value: &Value, out: &mut String) -> Result<(), Fault> {
    if i > 0 {
        out.push(',');
    }
    write_string(key, out);
    out.push(':');
    write_value(value, out).map_err(|f| f.within(Segment::Key(key.to_owned())))
}

/// Orders two strings by their UTF-16 code units (RFC 8785 §3.2.3), without allocating.
///
/// UTF-8 byte order equals code point order, which differs from UTF-16 order only between
/// a supplementary character (a surrogate pair, D800–DBFF first) and a BMP character in
/// E000–FFFF. So the strings are compared at their first differing character.
fn cmp_utf16(a: &str, b: &str) -> Ordering {
    let common = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    let mut start = common;
    while !a.is_char_boundary(start) {
        start -= 1;
    }
    // `a` and `b` share their first `common` bytes, so `start` is a character boundary of
    // both; the characters there are the first ones that differ (or one string has ended).
    let first_a = a.get(start..).and_then(|s| s.chars().next());
    let first_b = b.get(start..).and_then(|s| s.chars().next());
    match (first_a, first_b) {
        (Some(x), Some(y)) => utf16_units(x).cmp(&utf16_units(y)),
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
    }
}

/// The UTF-16 code units of `c`, padded with 0 for a BMP character (two different
/// characters never share a first unit when one of them is a BMP character, as BMP
/// characters are never surrogates).
fn utf16_units(c: char) -> (u16, u16) {
    let mut buf = [0u16; 2];
    let units = c.encode_utf16(&mut buf);
    match units {
        [one] => (*one, 0),
        [high, low] => (*high, *low),
        _ => (0, 0),
    }
}

/// What a byte becomes inside a JSON string: 0 = itself, `u` = `\u00xx`, otherwise the
/// letter after a backslash.
const ESCAPES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Appends one JSON string in RFC 8785 form (quotes included).
pub fn write_string(s: &str, out: &mut String) {
    out.reserve(s.len() + 2);
    out.push('"');
    let mut start = 0;
    for (i, byte) in s.bytes().enumerate() {
        let escape = ESCAPES[usize::from(byte)];
        if escape == 0 {
            continue;
        }
        // INVARIANT: only ASCII bytes are escaped, so `start` and `i` are character
        // boundaries of `s` and `start <= i`.
        out.push_str(&s[start..i]);
        out.push('\\');
        if escape == b'u' {
            out.push_str("u00");
            out.push(char::from(HEX_DIGITS[usize::from(byte >> 4)]));
            out.push(char::from(HEX_DIGITS[usize::from(byte & 0x0f)]));
        } else {
            out.push(char::from(escape));
        }
        start = i + 1;
    }
    // INVARIANT: `start` is 0 or one past an ASCII byte, so a character boundary.
    out.push_str(&s[start..]);
    out.push('"');
}

fn write_number(n: &Number, out: &mut String) -> Result<(), Fault> {
    if let Some(u) = n.as_u64() {
        if u > MAX_SAFE_INTEGER {
            return Err(Fault::new(FaultKind::IntegerOutOfRange));
        }
        write_u64(u, out);
    } else if let Some(i) = n.as_i64() {
        // `as_u64` failed, so `i` is negative.
        if i.unsigned_abs() > MAX_SAFE_INTEGER {
            return Err(Fault::new(FaultKind::IntegerOutOfRange));
        }
        out.push('-');
        write_u64(i.unsigned_abs(), out);
    } else {
        // Without `arbitrary_precision`, a number that is not an integer is always a double.
        let f = n.as_f64().ok_or_else(|| Fault::new(FaultKind::NonFinite))?;
        write_f64(f, out)?;
    }
    Ok(())
}

fn write_u64(mut n: u64, out: &mut String) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        // INVARIANT: a u64 has at most 20 decimal digits, so `at` stays in 0..20.
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[at..] {
        out.push(char::from(d));
    }
}

/// A double, checked against this profile and written as ECMAScript does.
///
/// Doubles whose ECMAScript text is an integer literal beyond ±(2^53 − 1) — integral
/// values with 2^53 <= |f| < 10^21 — are rejected like such integers: their text would
/// read back as an unsafe integer, so the canonical form of every accepted value is itself
/// accepted. From 10^21 on, ECMAScript writes an exponent (`1e+21`), which reads back as a
/// double.
fn write_f64(f: f64, out: &mut String) -> Result<(), Fault> {
    if !f.is_finite() {
        return Err(Fault::new(FaultKind::NonFinite));
    }
    let magnitude = f.abs();
    if magnitude > MAX_SAFE_INTEGER as f64 && magnitude < 1e21 {
        return Err(Fault::new(FaultKind::IntegerOutOfRange));
    }
    write_ecmascript(f, out);
    Ok(())
}

/// ECMAScript `Number.prototype.toString` of a finite double (RFC 8785 §3.2.2.3).
fn write_ecmascript(f: f64, out: &mut String) {
    if f == 0.0 {
        // Both +0 and -0 are written "0".
        out.push('0');
    } else {
        out.push_str(ryu_js::Buffer::new().format_finite(f));
    }
}

// ---------------------------------------------------------------------------------------
// Checker: whether bytes are canonical, in one pass and without building a value. The
// verify path runs it over every entry; [`is_canonical`] stays the reference it is tested
// against.

/// Nesting deeper than this is refused (serde_json's own limit when parsing).
const MAX_DEPTH: usize = 128;

/// Whether `bytes` are exactly one JSON value in canonical form, checked in one pass without
/// building the value. Agrees with [`is_canonical`] (up to the nesting limit of 128) and is
/// several times faster.
pub fn check_canonical(bytes: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return false;
    };
    let mut c = Checker::new(text);
    c.value(0) && c.at == bytes.len()
}

/// Checks that `text` is a canonical JSON object and calls `member` with the raw text of
/// each member name (between the quotes, escapes as written) and of its value, in order.
/// `false` when the text is not canonical or not an object, or when `member` returns
/// `false`.
pub fn check_canonical_object<'a>(
    text: &'a str,
    mut member: impl FnMut(&'a str, &'a str) -> bool,
) -> bool {
    let mut c = Checker::new(text);
    c.object(0, &mut member) && c.at == text.len()
}

struct Checker<'a> {
    /// The text (UTF-8 by type, so only structure is checked here) and its bytes.
    s: &'a str,
    b: &'a [u8],
    at: usize,
}

impl<'a> Checker<'a> {
    fn new(s: &'a str) -> Self {
        let b = s.as_bytes();
        // Canonical text has no whitespace and escapes every control character, so no byte
        // below 0x20 appears anywhere. Checked in one pass that the compiler vectorises;
        // `string` then only looks for quotes and backslashes. A failing text is given no
        // bytes to check, so it fails at once.
        let clean = b.iter().fold(true, |ok, &c| ok & (c >= 0x20));
        Checker {
            s,
            b: if clean { b } else { &[] },
            at: 0,
        }
    }

    /// The text between two positions that sit next to ASCII structure.
    fn slice(&self, start: usize, end: usize) -> Option<&'a str> {
        self.s.get(start..end)
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        if self.b[self.at..].starts_with(word) {
            self.at += word.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> bool {
        match self.peek() {
            Some(b'{') => self.object(depth, &mut |_, _| true),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string().is_some(),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => false,
        }
    }

    fn array(&mut self, depth: usize) -> bool {
        if depth >= MAX_DEPTH || !self.eat(b'[') {
            return false;
        }
        if self.eat(b']') {
            return true;
        }
        loop {
            if !self.value(depth + 1) {
                return false;
            }
            if self.eat(b']') {
                return true;
            }
            if !self.eat(b',') {
                return false;
            }
        }
    }

    fn object(&mut self, depth: usize, member: &mut dyn FnMut(&'a str, &'a str) -> bool) -> bool {
        if depth >= MAX_DEPTH || !self.eat(b'{') {
            return false;
        }
        if self.eat(b'}') {
            return true;
        }
        let mut last: Option<(&'a str, bool)> = None;
        loop {
            let Some((key, escaped)) = self.string() else {
                return false;
            };
            // Names strictly increasing: sorted, and no name twice.
            if let Some((prev, prev_escaped)) = last {
                if !names_ascending(prev, prev_escaped, key, escaped) {
                    return false;
                }
            }
            last = Some((key, escaped));
            if !self.eat(b':') {
                return false;
            }
            let start = self.at;
            if !self.value(depth + 1) {
                return false;
            }
            match self.slice(start, self.at) {
                Some(value) if member(key, value) => {}
                _ => return false,
            }
            if self.eat(b'}') {
                return true;
            }
            if !self.eat(b',') {
                return false;
            }
        }
    }

    /// A canonical string: returns its raw contents and whether they hold an escape.
    fn string(&mut self) -> Option<(&'a str, bool)> {
        if !self.eat(b'"') {
            return None;
        }
        let start = self.at;
        let mut escaped = false;
        loop {
            // No control bytes are left (see `new`): the run ends at a quote or backslash.
            self.at += memchr::memchr2(b'"', b'\\', self.b.get(self.at..)?)?;
            let byte = *self.b.get(self.at)?;
            match byte {
                b'"' => {
                    let raw = self.slice(start, self.at)?;
                    self.at += 1;
                    return Some((raw, escaped));
                }
                b'\\' => {
                    escaped = true;
                    let letter = *self.b.get(self.at + 1)?;
                    if letter == b'u' {
                        // Only control characters without a short form are written \u00xx,
                        // with lowercase hex digits.
                        let hex = self.b.get(self.at + 2..self.at + 6)?;
                        let code = match hex {
                            [b'0', b'0', hi @ (b'0' | b'1'), lo] => {
                                (hi - b'0') * 16 + lower_hex_value(*lo)?
                            }
                            _ => return None,
                        };
                        if ESCAPES[usize::from(code)] != b'u' {
                            return None;
                        }
                        self.at += 6;
                    } else {
                        // A short escape is canonical only for the byte that takes it.
                        let wanted = match letter {
                            b'b' => 0x08,
                            b't' => 0x09,
                            b'n' => 0x0a,
                            b'f' => 0x0c,
                            b'r' => 0x0d,
                            b'"' => b'"',
                            b'\\' => b'\\',
                            _ => return None,
                        };
                        debug_assert_eq!(ESCAPES[usize::from(wanted)], letter);
                        self.at += 2;
                    }
                }
                // A control character, which must be escaped.
                _ => return None,
            }
        }
    }

    fn number(&mut self) -> bool {
        let start = self.at;
        let negative = self.eat(b'-');
        let digits_start = self.at;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
        let integral = &self.b[digits_start..self.at];
        if integral.is_empty() {
            return false;
        }
        if !matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            // An integer: no leading zero, no "-0", within ±(2^53 − 1) (16 digits at most).
            if (integral[0] == b'0' && (integral.len() > 1 || negative)) || integral.len() > 16 {
                return false;
            }
            let n = integral
                .iter()
                .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
            return n <= MAX_SAFE_INTEGER;
        }
        // A fraction or exponent (rare in the ledger): read it as serde_json would and
        // compare with how it is written.
        while matches!(
            self.peek(),
            Some(b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
        ) {
            self.at += 1;
        }
        let text = &self.b[start..self.at];
        let Ok(number) = serde_json::from_slice::<Number>(text) else {
            return false;
        };
        let mut out = String::with_capacity(text.len());
        write_number(&number, &mut out).is_ok() && out.as_bytes() == text
    }
}

fn lower_hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

/// Whether member name `a` sorts strictly before `b` (raw canonical string contents).
fn names_ascending(a: &str, a_escaped: bool, b: &str, b_escaped: bool) -> bool {
    if !a_escaped && !b_escaped {
        return cmp_utf16(a, b) == Ordering::Less;
    }
    let decode = |raw: &str| -> Option<String> { serde_json::from_str(&format!("\"{raw}\"")).ok() };
    match (decode(a), decode(b)) {
        (Some(a), Some(b)) => cmp_utf16(&a, &b) == Ordering::Less,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn canon(v: &Value) -> String {
        match to_canonical_string(v) {
            Ok(s) => s,
            Err(e) => panic!("no canonical form: {e}"),
        }
    }

    fn canon_text(json: &str) -> String {
        match serde_json::from_str::<Value>(json) {
            Ok(v) => canon(&v),
            Err(e) => panic!("bad test JSON: {e}"),
        }
    }

    fn canon_f64(f: f64) -> String {
        let mut out = String::new();
        match write_f64(f, &mut out) {
            Ok(()) => out,
            Err(_) => panic!("{f} rejected"),
        }
    }

    /// RFC 8785 §3.2.2: the sample input and its canonical output, as printed in the RFC.
    #[test]
    fn rfc8785_section_3_2_2_sample() {
        let input = r#"{
          "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
          "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
          "literals": [null, true, false]
        }"#;
        let expected = "{\"literals\":[null,true,false],\"numbers\":[333333333.3333333,1e+30,4.5,0.002,1e-27],\"string\":\"\u{20ac}$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}";
        assert_eq!(canon_text(input), expected);
        // RFC 8785 §3.2.4 gives the UTF-8 of that output; the euro sign is e2 82 ac.
        let bytes = to_canonical_vec(&serde_json::from_str(input).unwrap_or(Value::Null))
            .unwrap_or_default();
        assert_eq!(bytes.len(), 118);
        assert_eq!(bytes.get(92..95), Some(&[0xe2, 0x82, 0xac][..]));
        assert!(is_canonical(&bytes));
    }

    /// RFC 8785 §3.2.3: member names sorted by UTF-16 code units.
    #[test]
    fn rfc8785_section_3_2_3_sorting_sample() {
        let input = r#"{
          "\u20ac": "Euro Sign",
          "\r": "Carriage Return",
          "\ufb33": "Hebrew Letter Dalet With Dagesh",
          "1": "One",
          "\ud83d\ude00": "Emoji: Grinning Face",
          "\u0080": "Control",
          "\u00f6": "Latin Small Letter O With Diaeresis"
        }"#;
        let expected = "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\
            \"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\
            \"\u{1f600}\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}";
        assert_eq!(canon_text(input), expected);
    }

    /// RFC 8785 Appendix B: IEEE 754 bit patterns and their canonical text. The `false`
    /// rows are integers beyond ±(2^53 − 1), formatted as the RFC says but refused by this
    /// profile (their text would read back as an unsafe integer).
    #[test]
    fn rfc8785_appendix_b_numbers() {
        let table: &[(u64, &str, bool)] = &[
            (0x0000000000000000, "0", true),
            (0x8000000000000000, "0", true),
            (0x0000000000000001, "5e-324", true),
            (0x8000000000000001, "-5e-324", true),
            (0x7fefffffffffffff, "1.7976931348623157e+308", true),
            (0xffefffffffffffff, "-1.7976931348623157e+308", true),
            (0x4340000000000000, "9007199254740992", false),
            (0xc340000000000000, "-9007199254740992", false),
            (0x4430000000000000, "295147905179352830000", false),
            (0x44b52d02c7e14af5, "9.999999999999997e+22", true),
            (0x44b52d02c7e14af6, "1e+23", true),
            (0x44b52d02c7e14af7, "1.0000000000000001e+23", true),
            (0x444b1ae4d6e2ef4e, "999999999999999700000", false),
            (0x444b1ae4d6e2ef4f, "999999999999999900000", false),
            (0x444b1ae4d6e2ef50, "1e+21", true),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7", true),
            (0x3eb0c6f7a0b5ed8d, "0.000001", true),
            (0x41b3de4355555553, "333333333.3333332", true),
            (0x41b3de4355555554, "333333333.33333325", true),
            (0x41b3de4355555555, "333333333.3333333", true),
            (0x41b3de4355555556, "333333333.3333334", true),
            (0x41b3de4355555557, "333333333.33333343", true),
            (0xbecbf647612f3696, "-0.0000033333333333333333", true),
            (0x43143ff3c1cb0959, "1424953923781206.2", true),
        ];
        for &(bits, text, accepted) in table {
            let f = f64::from_bits(bits);
            let mut formatted = String::new();
            write_ecmascript(f, &mut formatted);
            assert_eq!(formatted, text, "bits {bits:016x}");
            // Through a serde_json value, and back through the parser.
            let through_value = to_canonical_string(&json!([f]));
            if accepted {
                assert_eq!(through_value, Ok(format!("[{text}]")), "bits {bits:016x}");
                assert!(is_canonical(text.as_bytes()), "{text}");
            } else {
                assert_eq!(
                    through_value,
                    Err(CanonicalError::IntegerOutOfRange {
                        path: "/0".to_owned()
                    }),
                    "bits {bits:016x}"
                );
                assert!(!is_canonical(text.as_bytes()), "{text}");
            }
        }
    }

    #[test]
    fn fail_integral_doubles_beyond_max_safe_integer() {
        assert_eq!(canon_f64(9007199254740991.0), "9007199254740991");
        assert_eq!(canon_f64(-9007199254740991.0), "-9007199254740991");
        for f in [9007199254740992.0, -1e16, 1e20, 999999999999999900000.0] {
            let mut out = String::new();
            assert!(write_f64(f, &mut out).is_err(), "{f}");
        }
        assert_eq!(canon_f64(1e21), "1e+21");
        assert_eq!(canon_f64(-1e21), "-1e+21");
        let parsed: Value = serde_json::from_str("1e16").unwrap_or(Value::Null);
        assert!(parsed.is_f64());
        assert!(to_canonical_string(&parsed).is_err());
    }

    #[test]
    fn fail_rfc8785_appendix_b_nan_and_infinity() {
        for bits in [
            0x7fffffffffffffff_u64,
            0x7ff0000000000000,
            0xfff0000000000000,
        ] {
            let mut out = String::new();
            assert!(write_f64(f64::from_bits(bits), &mut out).is_err());
            assert!(out.is_empty());
        }
        let err = Fault::new(FaultKind::NonFinite).into_error();
        assert!(err.to_string().contains("not finite"), "{err}");
    }

    #[test]
    fn numbers_follow_ecmascript_to_string() {
        assert_eq!(canon_f64(1e21), "1e+21");
        assert_eq!(canon_f64(0.000001), "0.000001");
        assert_eq!(canon_f64(1e-7), "1e-7");
        assert_eq!(canon_f64(1.0), "1");
        assert_eq!(canon_f64(-2.5), "-2.5");
        assert_eq!(canon_f64(100.0), "100");
        assert_eq!(canon_f64(0.1), "0.1");
        assert_eq!(
            canon_text("[1.0, 1e2, 12.50, -0.0, 0e10]"),
            "[1,100,12.5,0,0]"
        );
    }

    #[test]
    fn negative_zero_is_zero() {
        assert_eq!(canon_f64(-0.0), "0");
        assert_eq!(canon(&json!(-0.0)), "0");
        assert_eq!(canon_text("-0"), "0");
        assert_eq!(canon_text("-0.0"), "0");
        assert!(!is_canonical(b"-0"));
    }

    #[test]
    fn integers_print_as_integers() {
        assert_eq!(canon(&json!(0)), "0");
        assert_eq!(canon(&json!(7)), "7");
        assert_eq!(canon(&json!(-1)), "-1");
        assert_eq!(canon(&json!(1234567890)), "1234567890");
        assert_eq!(canon(&json!(MAX_SAFE_INTEGER)), "9007199254740991");
        assert_eq!(
            canon(&json!(-(MAX_SAFE_INTEGER as i64))),
            "-9007199254740991"
        );
        assert_eq!(canon(&json!(i64::from(i32::MIN))), "-2147483648");
    }

    #[test]
    fn fail_integers_beyond_max_safe_integer() {
        let too_big = [
            json!(MAX_SAFE_INTEGER + 1),
            json!(-(MAX_SAFE_INTEGER as i64) - 1),
            json!(u64::MAX),
            json!(i64::MIN),
        ];
        for v in too_big {
            let err = to_canonical_string(&v).err();
            assert_eq!(
                err,
                Some(CanonicalError::IntegerOutOfRange {
                    path: String::new()
                }),
                "{v}"
            );
        }
        // Parsed text as well: 2^53 + 1 is not a double.
        let parsed: Value = serde_json::from_str("9007199254740993").unwrap_or(Value::Null);
        assert!(to_canonical_string(&parsed).is_err());
        assert!(!is_canonical(b"9007199254740993"));
    }

    #[test]
    fn fail_error_names_the_place_not_the_value() {
        let v = json!({"data": {"a/b": [1, 2, 123456789012345678_u64]}, "z~": 1});
        let err = to_canonical_string(&v).err();
        let Some(err) = err else {
            panic!("accepted an unsafe integer")
        };
        assert_eq!(
            err,
            CanonicalError::IntegerOutOfRange {
                path: "/data/a~1b/2".to_owned()
            }
        );
        let message = err.to_string();
        assert!(message.contains("`/data/a~1b/2`"), "{message}");
        assert!(message.contains("2^53"), "{message}");
        assert!(!message.contains("123456789012345678"), "{message}");
        let top = to_canonical_string(&json!(u64::MAX))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            top.as_deref(),
            Some("integer at the top level is outside ±(2^53-1), the range RFC 8785 numbers hold exactly; carry it as a string")
        );
    }

    #[test]
    fn fail_write_canonical_leaves_buffer_untouched() {
        let mut out = String::from("prefix");
        let bad = json!({"a": "long string written before the failure", "b": u64::MAX});
        assert!(write_canonical(&bad, &mut out).is_err());
        assert_eq!(out, "prefix");
        assert!(write_canonical(&json!({"b": 1, "a": 2}), &mut out).is_ok());
        assert_eq!(out, "prefix{\"a\":2,\"b\":1}");
    }

    #[test]
    fn keys_sort_by_utf16_code_units() {
        // U+1F600 is D83D DE00 in UTF-16, which sorts before E000, although its code point
        // (and UTF-8) sorts after.
        let mut map = Map::new();
        map.insert("\u{E000}".to_owned(), json!(1));
        map.insert("\u{1F600}".to_owned(), json!(2));
        assert_eq!(
            canon(&Value::Object(map)),
            "{\"\u{1F600}\":2,\"\u{E000}\":1}"
        );
        assert_eq!(cmp_utf16("\u{1F600}", "\u{E000}"), Ordering::Less);
        assert_eq!(cmp_utf16("\u{FFFF}", "\u{10000}"), Ordering::Greater);
        assert_eq!(cmp_utf16("\u{D7FF}", "\u{10000}"), Ordering::Less);
        assert_eq!(cmp_utf16("a", "ab"), Ordering::Less);
        assert_eq!(cmp_utf16("ab", "a"), Ordering::Greater);
        assert_eq!(cmp_utf16("", ""), Ordering::Equal);
        assert_eq!(cmp_utf16("é\u{1F600}", "é\u{E000}"), Ordering::Less);
        // Upper case before lower case, shorter before longer.
        assert_eq!(
            canon(&json!({"b": 1, "B": 2, "a": 3, "aa": 4, "": 5})),
            "{\"\":5,\"B\":2,\"a\":3,\"aa\":4,\"b\":1}"
        );
    }

    #[test]
    fn insertion_order_does_not_matter() {
        let mut forward = Map::new();
        let mut backward = Map::new();
        let keys = ["seq", "v", "ts", "kind", "actor", "prev", "data", "subject"];
        for (i, k) in keys.iter().enumerate() {
            forward.insert((*k).to_owned(), json!(i));
        }
        for (i, k) in keys.iter().enumerate().rev() {
            backward.insert((*k).to_owned(), json!(i));
        }
        let a = canon(&Value::Object(forward));
        assert_eq!(a, canon(&Value::Object(backward)));
        assert_eq!(
            a,
            "{\"actor\":4,\"data\":6,\"kind\":3,\"prev\":5,\"seq\":0,\"subject\":7,\"ts\":2,\"v\":1}"
        );
    }

    #[test]
    fn control_characters_are_escaped_exactly() {
        for byte in 0u8..0x20 {
            let s = char::from(byte).to_string();
            let expected = match byte {
                0x08 => "\"\\b\"".to_owned(),
                0x09 => "\"\\t\"".to_owned(),
                0x0a => "\"\\n\"".to_owned(),
                0x0c => "\"\\f\"".to_owned(),
                0x0d => "\"\\r\"".to_owned(),
                _ => format!("\"\\u{byte:04x}\""),
            };
            assert_eq!(canon(&json!(s)), expected, "byte {byte:#04x}");
        }
        assert_eq!(canon(&json!("\u{1f}")), "\"\\u001f\"");
        assert_eq!(canon(&json!("\u{0}")), "\"\\u0000\"");
        // Quote and backslash; DEL, '/', and non-ASCII pass through.
        assert_eq!(canon(&json!("a\"b\\c")), "\"a\\\"b\\\\c\"");
        assert_eq!(canon(&json!("\u{7f}/é党€😀")), "\"\u{7f}/é党€😀\"");
        assert_eq!(canon(&json!("")), "\"\"");
        assert_eq!(canon(&json!("x\ny")), "\"x\\ny\"");
    }

    #[test]
    fn nested_values() {
        let v = json!({
            "z": [1, [2, [3, {}]], {"y": null, "x": [true, false]}],
            "a": {"c": {"e": [], "d": "D"}, "b": -3},
        });
        assert_eq!(
            canon(&v),
            "{\"a\":{\"b\":-3,\"c\":{\"d\":\"D\",\"e\":[]}},\"z\":[1,[2,[3,{}]],{\"x\":[true,false],\"y\":null}]}"
        );
        assert_eq!(canon(&json!([])), "[]");
        assert_eq!(canon(&json!({})), "{}");
        assert_eq!(canon(&json!(null)), "null");
        assert_eq!(canon(&json!(true)), "true");
    }

    #[test]
    fn is_canonical_accepts_canonical_bytes() {
        for text in [
            "{}",
            "[]",
            "null",
            "0",
            "\"\"",
            "{\"a\":[1,2.5,\"x\"],\"b\":{\"c\":null}}",
            "{\"\u{1F600}\":1,\"\u{E000}\":2}",
            "\"\\u001f\\n\"",
        ] {
            assert!(is_canonical(text.as_bytes()), "{text}");
            assert!(check_canonical(text.as_bytes()), "{text}");
        }
    }

    #[test]
    fn fail_is_canonical_rejects_non_canonical_bytes() {
        for text in [
            "{\"b\":1,\"a\":2}",                // unsorted
            "{\"a\": 1}",                       // whitespace
            " {}",                              // leading whitespace
            "{}\n",                             // trailing newline
            "{\"a\":1,\"a\":1}",                // duplicate names
            "{\"\u{E000}\":2,\"\u{1F600}\":1}", // code point order, not UTF-16
            "\"\\/\"",                          // needless escape of '/'
            "\"\\u00e9\"",                      // escaped non-ASCII
            "\"\\u001F\"",                      // upper-case hex
            "\"\\u0008\"",                      // \b written long
            "1.0",                              // number form
            "1E3",                              // exponent form
            "1e21",                             // ECMAScript writes 1e+21
            "[1,]",                             // invalid JSON
            "",                                 // empty
            "{\"a\":9007199254740993}",         // unsafe integer
        ] {
            assert!(!is_canonical(text.as_bytes()), "{text}");
            assert!(!check_canonical(text.as_bytes()), "{text}");
        }
        assert!(!is_canonical(&[0x22, 0xff, 0x22])); // not UTF-8
        assert!(!check_canonical(&[0x22, 0xff, 0x22]));
    }

    #[test]
    fn fail_check_canonical_rejects_what_the_reference_rejects() {
        for text in [
            "-0",
            "01",
            "-",
            "1.",
            ".5",
            "1e",
            "+1",
            "0.50",
            "1.5e0",
            "-0.0",
            "[1 ]",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "[",
            "]",
            "tru",
            "nul",
            "\"abc",
            "\"\\x\"",
            "\"\\u00\"",
            "\"\u{1}\"",
            "\"\\u0061\"",
            "\"\\u000A\"",
            "\"\\u000a\"",
            "{\"b\":1,\"a\\u001f\":1}",
            "12345678901234567",
            "9007199254740992",
            "1e+400",
        ] {
            assert_eq!(
                check_canonical(text.as_bytes()),
                is_canonical(text.as_bytes()),
                "{text}"
            );
            assert!(!check_canonical(text.as_bytes()), "{text}");
        }
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(!check_canonical(deep.as_bytes()));
        assert!(check_canonical(
            b"{\"a\\u001f\":1,\"b\":[0.5,-1.5e-7,1e+21,-9007199254740991]}"
        ));
    }

    #[test]
    fn check_canonical_object_reports_members_in_order() {
        let mut seen = Vec::new();
        assert!(check_canonical_object(
            "{\"a\":[1,{\"x\":2}],\"b\\n\":\"s\"}",
            |k, v| {
                seen.push((k, v));
                true
            }
        ));
        assert_eq!(seen, vec![("a", "[1,{\"x\":2}]"), ("b\\n", "\"s\"")]);
        assert!(!check_canonical_object("[1]", |_, _| true));
        assert!(!check_canonical_object("{\"a\":1}", |_, _| false));
        assert!(!check_canonical_object("{\"b\":1,\"a\":1}", |_, _| true));
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-(MAX_SAFE_INTEGER as i64)..=MAX_SAFE_INTEGER as i64).prop_map(|i| json!(i)),
            any::<f64>()
                .prop_filter("in profile", |f| f.is_finite()
                    && !(f.abs() > MAX_SAFE_INTEGER as f64 && f.abs() < 1e21))
                .prop_map(|f| json!(f)),
            ".*".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::btree_map(".*", inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Canonical bytes parse back to a value with the same canonical bytes.
        #[test]
        fn canonical_form_is_a_fixed_point(v in arb_json()) {
            let text = canon(&v);
            prop_assert!(is_canonical(text.as_bytes()), "{}", text);
            prop_assert!(check_canonical(text.as_bytes()), "{}", text);
            let back: Value = serde_json::from_str(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(canon(&back), text);
        }

        /// The one-pass checker agrees with the reference on canonical bytes changed at
        /// one place: a byte replaced, inserted or removed.
        #[test]
        fn check_canonical_agrees_with_reference(v in arb_json(), at in any::<prop::sample::Index>(), byte in prop_oneof![Just(b' '), Just(b'"'), Just(b'\\'), Just(b','), Just(b'0'), Just(b'.'), Just(b'e'), Just(b'-'), Just(b'{'), Just(b']'), any::<u8>()], op in 0u8..3) {
            let mut bytes = canon(&v).into_bytes();
            let i = at.index(bytes.len() + 1);
            match op {
                0 if i < bytes.len() => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ if i < bytes.len() => { bytes.remove(i); }
                _ => {}
            }
            prop_assert_eq!(check_canonical(&bytes), is_canonical(&bytes), "{}", String::from_utf8_lossy(&bytes));
        }

        /// The allocation-free comparison equals comparing the UTF-16 encodings.
        #[test]
        fn cmp_utf16_matches_encode_utf16(a in "\\PC*", b in "\\PC*") {
            prop_assert_eq!(cmp_utf16(&a, &b), a.encode_utf16().cmp(b.encode_utf16()));
            let shared = format!("{a}{b}");
            prop_assert_eq!(cmp_utf16(&shared, &a), shared.encode_utf16().cmp(a.encode_utf16()));
        }

        /// Finite doubles are written as the shortest text that reads back as the same double.
        #[test]
        fn doubles_round_trip(f in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
            let mut text = String::new();
            write_ecmascript(f, &mut text);
            let back: f64 = text.parse().map_err(|_| TestCaseError::fail(text.clone()))?;
            prop_assert!(back == f, "{} -> {}", f, text);
        }
    }
}
