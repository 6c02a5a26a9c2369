//! Emergency and toll-free short numbers: calls that always pass, before every other rule
//! (a locked account included), are never counted and never reported.
//!
//! The numbers come from libphonenumber's short-number metadata (`ShortNumberMetadata.xml`,
//! release [`LIBPHONENUMBER`]), which the `phonenumber` crate ships but does not compile:
//! `scripts/gen-emergency.py` turns each region's `emergency` pattern (police, fire,
//! ambulance, 112, 911, …) and `tollFree` pattern (short numbers free for the caller, such
//! as CH 147 or the EU's 116xxx: never a toll-fraud route) into `emergency_table.rs`,
//! with the region's calling code from `PhoneNumberMetadata.xml`. Each region's patterns
//! are compiled once, on first use.
//!
//! What is dialled is read as (after dropping spaces, `-`, `.`, `(` and `)`):
//!
//! - national digits, matched against the home region's patterns; 112 and 911 pass in
//!   every country;
//! - `+CC rest` or `00CC rest`, `rest` matched against every region with calling code
//!   `CC` (`+41 112`, `0041 144`, `+1 911`).
//!
//! Never more than [`MAX_SHORT_DIGITS`] digits (after the calling code), so the check stays
//! cheap and bounded, and never anything but digits and one leading `+`.

use phonenumber::country::Id;
use regex::Regex;
use std::sync::OnceLock;

#[rustfmt::skip]
#[path = "emergency_table.rs"]
mod table;

pub use table::LIBPHONENUMBER;

/// The longest short number looked at (national digits, after the calling code).
pub const MAX_SHORT_DIGITS: usize = 8;

/// Numbers that pass everywhere, whatever the home country's table says.
const EVERYWHERE: [&str; 2] = ["112", "911"];

/// One region of the generated table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// ISO region id (`CH`).
    pub id: &'static str,
    /// Its calling code.
    pub code: u16,
    /// libphonenumber's pattern of its emergency numbers (national digits), if any.
    pub emergency: Option<&'static str>,
    /// libphonenumber's pattern of its toll-free short numbers, if any.
    pub toll_free: Option<&'static str>,
    /// Possible lengths of both (national digits).
    pub lengths: &'static [u8],
}

/// Every region of the table, sorted by id.
pub fn regions() -> &'static [Region] {
    table::REGIONS
}

/// What kind of always-passing short number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShortNumber {
    /// Police, fire, ambulance, 112, 911 …
    Emergency,
    /// A short number free for the caller (help lines, 116xxx, …).
    TollFree,
}

impl ShortNumber {
    /// What it is, for people.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Emergency => "an emergency number",
            Self::TollFree => "a toll-free service number",
        }
    }
}

/// A region's patterns, anchored and compiled.
struct Compiled {
    emergency: Option<Regex>,
    toll_free: Option<Regex>,
}

fn anchored(pattern: Option<&str>) -> Option<Regex> {
    // The table is generated and every pattern is compiled by the tests.
    pattern.map(|p| Regex::new(&format!("^(?:{p})$")).expect("generated short-number pattern"))
}

static COMPILED: [OnceLock<Compiled>; table::REGIONS.len()] = [const { OnceLock::new() }; table::REGIONS.len()];

/// Matches national digits against region `i`'s patterns.
fn match_region(i: usize, digits: &str) -> Option<ShortNumber> {
    let r = &table::REGIONS[i];
    if !r.lengths.contains(&(digits.len() as u8)) {
        return None;
    }
    let c = COMPILED[i].get_or_init(|| Compiled {
        emergency: anchored(r.emergency),
        toll_free: anchored(r.toll_free),
    });
    if c.emergency.as_ref().is_some_and(|rx| rx.is_match(digits)) {
        Some(ShortNumber::Emergency)
    } else if c.toll_free.as_ref().is_some_and(|rx| rx.is_match(digits)) {
        Some(ShortNumber::TollFree)
    } else {
        None
    }
}

/// Whether `dialled` is an emergency or toll-free short number for a caller in `home`.
pub fn is_emergency(dialled: &str, home: Id) -> bool {
    classify(dialled, home).is_some()
}

/// What kind of always-passing short number `dialled` is for a caller in `home`, if any.
pub fn classify(dialled: &str, home: Id) -> Option<ShortNumber> {
    let (plus, digits) = strip(dialled)?;
    if plus {
        return international(&digits);
    }
    if let Some(rest) = digits.strip_prefix("00") {
        if let Some(kind) = international(rest) {
            return Some(kind);
        }
    }
    national(&digits, home)
}

/// `dialled` without separators: whether it had a leading `+`, and its digits (at most
/// 3 + [`MAX_SHORT_DIGITS`] + 2 of them, else `None`).
fn strip(dialled: &str) -> Option<(bool, String)> {
    let mut digits = String::new();
    let mut plus = false;
    for c in dialled.trim().chars() {
        match c {
            '0'..='9' if digits.len() < 2 + 3 + MAX_SHORT_DIGITS => digits.push(c),
            '0'..='9' => return None,
            '+' if !plus && digits.is_empty() => plus = true,
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return None,
        }
    }
    (!digits.is_empty()).then_some((plus, digits))
}

fn national(digits: &str, home: Id) -> Option<ShortNumber> {
    if digits.len() > MAX_SHORT_DIGITS {
        return None;
    }
    if EVERYWHERE.contains(&digits) {
        return Some(ShortNumber::Emergency);
    }
    let i = table::REGIONS.binary_search_by(|r| r.id.cmp(home.as_ref())).ok()?;
    match_region(i, digits)
}

/// `CC rest`: `rest` matched against every region with calling code `CC`.
fn international(digits: &str) -> Option<ShortNumber> {
    if digits.starts_with('0') {
        return None; // no calling code starts with 0
    }
    for cc_len in 1..=3.min(digits.len()) {
        let Ok(code) = digits[..cc_len].parse::<u16>() else {
            continue;
        };
        let mut regions = table::REGIONS
            .iter()
            .enumerate()
            .filter(|(_, r)| r.code == code)
            .peekable();
        if regions.peek().is_none() {
            continue;
        }
        // Calling codes are prefix-free: this is the one.
        let rest = &digits[cc_len..];
        if rest.is_empty() || rest.len() > MAX_SHORT_DIGITS {
            return None;
        }
        return regions.find_map(|(i, _)| match_region(i, rest));
    }
    None
}

/// Every emergency number of the countries the issue names, with their calling codes
/// (libphonenumber 9.0.33): the tests' expectations, shared by the policy's tests.
#[cfg(test)]
pub(crate) const EMERGENCY: [(Id, u16, &[&str]); 8] = [
    (Id::CH, 41, &["112", "117", "118", "144"]),
    (Id::DE, 49, &["110", "112"]),
    (Id::AT, 43, &["112", "122", "133", "144"]),
    (Id::FR, 33, &["15", "17", "18", "112"]),
    (Id::IT, 39, &["112", "113", "115", "118"]),
    (Id::GB, 44, &["112", "999"]),
    (Id::US, 1, &["112", "911"]),
    (Id::CA, 1, &["112", "911"]),
];

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_pattern_compiles_and_the_table_is_whole() {
        assert_eq!(LIBPHONENUMBER, "9.0.33");
        assert!(regions().len() >= 240, "{}", regions().len());
        assert!(regions().windows(2).all(|w| w[0].id < w[1].id), "sorted by id");
        for (i, r) in regions().iter().enumerate() {
            assert!(r.code > 0 && r.code < 1000, "{r:?}");
            let c = COMPILED[i].get_or_init(|| Compiled {
                emergency: anchored(r.emergency),
                toll_free: anchored(r.toll_free),
            });
            assert_eq!(c.emergency.is_some(), r.emergency.is_some());
        }
        for (id, ..) in EMERGENCY {
            assert!(
                regions().iter().any(|r| r.id == id.as_ref() && r.emergency.is_some()),
                "{id:?}"
            );
        }
    }

    #[test]
    fn each_listed_countrys_emergency_numbers_in_national_and_international_forms() {
        for (home, cc, numbers) in EMERGENCY {
            for n in numbers {
                for form in [
                    n.to_string(),
                    format!("+{cc}{n}"),
                    format!("+{cc} {n}"),
                    format!("00{cc}{n}"),
                    format!("00 {cc} {n}"),
                    format!("(+{cc}) {n}"),
                ] {
                    assert_eq!(
                        classify(&form, home),
                        Some(ShortNumber::Emergency),
                        "{home:?}: {form:?}"
                    );
                }
                // The international forms pass from anywhere.
                assert!(is_emergency(&format!("+{cc}{n}"), Id::JP), "{home:?} {n} from JP");
                assert!(is_emergency(&format!("00{cc}{n}"), Id::CH), "{home:?} {n} from CH");
            }
        }
    }

    #[test]
    fn the_eus_112_and_911_pass_everywhere() {
        for home in [
            Id::CH,
            Id::DE,
            Id::AT,
            Id::FR,
            Id::IT,
            Id::GB,
            Id::US,
            Id::CA,
            Id::ES,
            Id::NL,
            Id::PL,
            Id::JP,
            Id::AU,
        ] {
            assert!(is_emergency("112", home), "112 in {home:?}");
            assert!(is_emergency("911", home), "911 in {home:?}");
        }
        for eu in [
            "BE", "BG", "CZ", "DK", "DE", "EE", "IE", "GR", "ES", "FR", "HR", "IT", "CY", "LV", "LT", "LU", "HU", "MT",
            "NL", "AT", "PL", "PT", "RO", "SI", "SK", "FI", "SE",
        ] {
            let r = regions().iter().find(|r| r.id == eu).expect(eu);
            assert!(
                is_emergency(&format!("+{}112", r.code), Id::US),
                "+{} 112 ({eu})",
                r.code
            );
        }
    }

    #[test]
    fn toll_free_short_numbers_pass_and_say_so() {
        assert_eq!(classify("147", Id::CH), Some(ShortNumber::TollFree));
        assert_eq!(classify("116 000", Id::CH), Some(ShortNumber::TollFree));
        assert_eq!(classify("+41 147", Id::DE), Some(ShortNumber::TollFree));
        assert_eq!(classify("116111", Id::DE), Some(ShortNumber::TollFree));
        assert_eq!(classify("988", Id::US), Some(ShortNumber::TollFree));
        assert_eq!(ShortNumber::TollFree.describe(), "a toll-free service number");
    }

    #[test]
    fn ordinary_premium_and_garbage_are_not_emergency() {
        for (s, home) in [
            ("0900 123 456", Id::CH),
            ("+41900123456", Id::CH),
            ("044 668 18 00", Id::CH),
            ("+41 44 668 18 00", Id::CH),
            ("1414", Id::CH),    // Rega: libphonenumber's expandedEmergency, not emergency
            ("1811", Id::CH),    // premium-rate directory
            ("117", Id::DE),     // CH's police, not DE's
            ("999", Id::DE),     // GB's
            ("+41 110", Id::DE), // DE's police, not CH's
            ("+41 999", Id::GB),
            ("1121", Id::CH),
            ("0112", Id::CH),
            ("+1 900 555 0100", Id::US),
            ("+881 112", Id::CH), // no region: satellite
            ("+999 112", Id::CH), // no such calling code
            ("+0 1 112", Id::CH), // nor with 0 ("01" is not +1)
            ("000 1 911", Id::CH),
            ("", Id::CH),
            ("+", Id::CH),
            ("00", Id::CH),
            ("*112", Id::CH),
            ("112#", Id::CH),
            ("sip:112@pbx", Id::CH),
            ("++41112", Id::CH),
            ("1+12", Id::CH),
            ("١١٢", Id::CH), // Arabic-Indic digits
            ("112 ext 1", Id::CH),
        ] {
            assert!(!is_emergency(s, home), "{s:?} in {home:?}");
        }
        // Bounded: nothing longer than MAX_SHORT_DIGITS after the calling code.
        assert!(!is_emergency("+41 116 000 000", Id::CH));
        assert!(!is_emergency(&format!("112{}", "0".repeat(100)), Id::CH));
        assert!(!is_emergency(&"1".repeat(10_000), Id::CH));
    }

    proptest! {
        #[test]
        fn never_panics_and_never_passes_long_numbers(s in "[+0-9 ().-]{0,40}", long in "[0-9]{9,20}") {
            let _ = is_emergency(&s, Id::CH);
            prop_assert!(!is_emergency(&long, Id::CH));
            let (plus, zeros) = (format!("+41{long}"), format!("0041{long}"));
            prop_assert!(!is_emergency(&plus, Id::CH));
            prop_assert!(!is_emergency(&zeros, Id::CH));
        }
    }
}
