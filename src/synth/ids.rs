//! Citizen ID numbers (GB 11643-1999, legacy GB 11643-1989) and phone numbers for generated
//! members. Builds numbers only; it never validates input from outside.

use chrono::{Datelike, NaiveDate};

/// ISO 7064 MOD 11-2 weights of the first 17 digits (GB 11643-1999).
const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
/// Check character for remainders 0..=10.
const CHECK: &[u8; 11] = b"10X98765432";

/// The 17-digit body (area, birth date, sequence) as one number: unique key of a person.
pub(crate) fn body(area: u32, birth: NaiveDate, seq: u32) -> u64 {
    let ymd = birth.year() as u64 * 10_000 + birth.month() as u64 * 100 + birth.day() as u64;
    area as u64 * 100_000_000_000 + ymd * 1_000 + seq as u64 % 1_000
}

/// The check character of a 17-digit body.
pub(crate) fn check_char(body: u64) -> char {
    let mut digits = [0u32; 17];
    let mut b = body;
    for slot in digits.iter_mut().rev() {
        *slot = (b % 10) as u32;
        b /= 10;
    }
    let s: u32 = digits.iter().zip(WEIGHTS.iter()).map(|(d, w)| d * w).sum();
    // INVARIANT: s % 11 is in 0..=10, CHECK has 11 entries.
    CHECK[(s % 11) as usize] as char
}

/// A valid 18-character ID number.
pub(crate) fn id18(area: u32, birth: NaiveDate, seq: u32) -> String {
    let b = body(area, birth, seq);
    format!("{b:017}{}", check_char(b))
}

/// An 18-character ID number whose check character is wrong (a different valid character).
pub(crate) fn id18_bad_check(area: u32, birth: NaiveDate, seq: u32, pick: usize) -> String {
    let b = body(area, birth, seq);
    let good = check_char(b);
    let others: Vec<char> = "0123456789X".chars().filter(|c| *c != good).collect();
    let c = others
        .get(pick % others.len().max(1))
        .copied()
        .unwrap_or('0');
    format!("{b:017}{c}")
}

/// A legacy 15-digit ID number (area, `YYMMDD`, sequence); only for births in 1900..=1999.
pub(crate) fn id15(area: u32, birth: NaiveDate, seq: u32) -> String {
    format!(
        "{area:06}{:02}{:02}{:02}{:03}",
        birth.year().rem_euclid(100),
        birth.month(),
        birth.day(),
        seq % 1_000
    )
}

/// A mobile number `1[3-9]\d{9}` from a real prefix.
pub(crate) fn mobile(prefix: &str, rest: u32) -> String {
    format!("{prefix}{:08}", rest % 100_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    /// Known answers: the valid examples quoted in REGULATIONS.md (GB 11643-1999 section).
    #[test]
    fn check_character_known_answers() {
        assert_eq!(id18(110105, d("1949-12-31"), 2), "11010519491231002X");
        assert_eq!(id18(440524, d("1880-01-01"), 1), "440524188001010014");
        assert_eq!(id18(340524, d("1980-01-01"), 1), "34052419800101001X");
    }

    #[test]
    fn fail_bad_check_is_never_the_right_one() {
        for pick in 0..20 {
            let bad = id18_bad_check(110105, d("1949-12-31"), 2, pick);
            assert_ne!(bad, "11010519491231002X");
            assert_eq!(&bad[..17], "11010519491231002");
        }
    }

    #[test]
    fn legacy_number_has_fifteen_digits() {
        assert_eq!(id15(110105, d("1949-12-31"), 2), "110105491231002");
    }
}
