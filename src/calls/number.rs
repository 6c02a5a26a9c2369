//! Dialled numbers to E.164, with libphonenumber's metadata (the `phonenumber` crate): the
//! national forms of the home country (`044 668 18 00`, `0900 123 456`), the `00`/`+`
//! international forms, and what kind of number it is (premium rate, toll free, …); and
//! the exact form an operator's always-allowed numbers are kept and looked up in
//! ([`allow_key`]).

use phonenumber::country::{Id, Source};
use phonenumber::metadata::DATABASE;
use phonenumber::{Mode, PhoneNumber, Type};
use std::str::FromStr;
use thiserror::Error;

/// Longest dialled string looked at.
pub const MAX_DIALLED: usize = 64;

/// Why a dialled string is not a number to call.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum NumberError {
    /// Nothing dialled.
    #[error("no number dialled")]
    Empty,
    /// Longer than [`MAX_DIALLED`].
    #[error("the dialled string is longer than {MAX_DIALLED} characters")]
    TooLong,
    /// Characters that are not part of a phone number.
    #[error("{0:?} is not a phone number (only digits, '+', spaces, '-', '.', '(' and ')')")]
    NotANumber(String),
    /// A number libphonenumber does not know as valid.
    #[error("{0} is not a valid number")]
    Invalid(String),
    /// A number written in international form that the parser can only read as other
    /// digits (the digits dialled, then what they would be read as): refused rather than
    /// judged as a number the call does not go to.
    #[error("+{0} would be checked as {1}, another number: refused")]
    Misread(String, String),
}

/// What kind of number (libphonenumber's type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberKind {
    /// Fixed line, mobile or either.
    Ordinary,
    /// Premium rate (CH: 0900/0901/0906).
    PremiumRate,
    /// Toll free (CH: 0800).
    TollFree,
    /// Shared cost.
    SharedCost,
    /// Personal, VoIP, pager, UAN, voicemail or unknown.
    Other,
}

/// A dialled number, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Number {
    /// E.164 digits without the `+`.
    pub digits: String,
    /// The country calling code.
    pub country_code: u16,
    /// The ISO region, when the number belongs to one (not for +882, +883 …).
    pub region: Option<String>,
    /// What kind of number.
    pub kind: NumberKind,
}

impl Number {
    /// `+` and the digits.
    pub fn e164(&self) -> String {
        format!("+{}", self.digits)
    }
}

/// The home country for national numbers, from its ISO code (`CH`, `DE`, …).
pub fn region(code: &str) -> Option<Id> {
    Id::from_str(&code.to_ascii_uppercase()).ok()
}

/// The calling code of a region.
pub fn calling_code(region: Id) -> Option<u16> {
    DATABASE.by_id(region.as_ref()).map(|m| m.country_code())
}

/// Normalises what a user dialled, national numbers read as `home`'s.
pub fn normalise(dialled: &str, home: Id) -> Result<Number, NumberError> {
    let d = dialled.trim();
    if d.is_empty() {
        return Err(NumberError::Empty);
    }
    if d.len() > MAX_DIALLED {
        return Err(NumberError::TooLong);
    }
    let ok = |c: char| c.is_ascii_digit() || " +-.()".contains(c);
    if !d.chars().all(ok) || d.chars().skip(1).any(|c| c == '+') || !d.chars().any(|c| c.is_ascii_digit()) {
        return Err(NumberError::NotANumber(d.to_string()));
    }
    let n = phonenumber::parse(Some(home), d).map_err(|_| NumberError::NotANumber(d.to_string()))?;
    let n = as_dialled(d, n)?;
    let e164 = n.format().mode(Mode::E164).to_string();
    if !n.is_valid() {
        return Err(NumberError::Invalid(e164));
    }
    let kind = match n.number_type(&DATABASE) {
        Type::FixedLine | Type::Mobile | Type::FixedLineOrMobile => NumberKind::Ordinary,
        Type::PremiumRate => NumberKind::PremiumRate,
        Type::TollFree => NumberKind::TollFree,
        Type::SharedCost => NumberKind::SharedCost,
        _ => NumberKind::Other,
    };
    Ok(Number {
        digits: e164.trim_start_matches('+').to_string(),
        country_code: n.code().value(),
        region: n.country().id().map(|id| id.as_ref().to_string()),
        kind,
    })
}

/// `n` (parsed from `d`) as the digits dialled. phonenumber 0.3 strips a national prefix
/// from numbers written in international form too, the home region's or the number's own:
/// `+7 812 …` from RU reads as +7 12…, `+882 13 …` from US as +882 3… (found by
/// `fuzz/fuzz_targets/numbers.rs`). The call goes to the digits dialled, so those are
/// judged: read again without any prefix stripped (Italy's metadata has none), or kept
/// when what was stripped is the number's own trunk prefix written after the country
/// code (`+41 (0)44 …`); otherwise refused.
fn as_dialled(d: &str, n: PhoneNumber) -> Result<PhoneNumber, NumberError> {
    let digits: String = d.chars().filter(char::is_ascii_digit).collect();
    let e164 = |n: &PhoneNumber| n.format().mode(Mode::E164).to_string();
    let read = e164(&n);
    let read = read.trim_start_matches('+');
    match n.code().source() {
        Source::Number | Source::Default => return Ok(n),
        Source::Plus if digits == read => return Ok(n),
        Source::Idd if digits.ends_with(read) => return Ok(n),
        Source::Idd => {}
        Source::Plus => {
            if let Ok(m) = phonenumber::parse(Some(Id::IT), format!("+{digits}")) {
                if e164(&m).trim_start_matches('+') == digits && m.is_valid() {
                    return Ok(m);
                }
            }
            let cc = n.code().value().to_string();
            let own = n
                .country()
                .id()
                .and_then(|id| DATABASE.by_id(id.as_ref()))
                .and_then(|m| m.national_prefix());
            if let (Some(p), Some(rest)) = (own, read.strip_prefix(cc.as_str())) {
                if digits == format!("{cc}{p}{rest}") {
                    return Ok(n);
                }
            }
        }
    }
    Err(NumberError::Misread(digits, format!("+{read}")))
}

/// The form an always-allowed number is kept in, and a dialled number looked up in
/// (`CallRules::always_allow`): `+` and the E.164 digits when libphonenumber knows it as a
/// valid number, so `0800 123 456`, `0041800123456` and `+41 800 123 456` are one entry;
/// otherwise (short numbers such as `1414` or `143`) its national digits, also when dialled
/// as `+CC…` or `00CC…` with the home calling code. `None` for what is no number, a number
/// of another country libphonenumber does not know as valid, or national digits longer
/// than a short number ([`MAX_SHORT_DIGITS`](super::emergency::MAX_SHORT_DIGITS)).
pub fn allow_key(dialled: &str, home: Id) -> Option<String> {
    allow_key_of(dialled, home, &normalise(dialled, home))
}

/// [`allow_key`] with `dialled` already normalised.
pub(crate) fn allow_key_of(dialled: &str, home: Id, normalised: &Result<Number, NumberError>) -> Option<String> {
    if let Ok(n) = normalised {
        return Some(n.e164());
    }
    let d = dialled.trim();
    let ok = |c: char| c.is_ascii_digit() || " -.()".contains(c);
    let (plus, rest) = match d.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, d),
    };
    if d.len() > MAX_DIALLED || !rest.chars().all(ok) {
        return None;
    }
    let digits: String = rest.chars().filter(char::is_ascii_digit).collect();
    let cc = calling_code(home)?.to_string();
    let national = if plus {
        digits.strip_prefix(cc.as_str())?
    } else {
        digits
            .strip_prefix("00")
            .and_then(|x| x.strip_prefix(cc.as_str()))
            .unwrap_or(&digits)
    };
    (!national.is_empty() && national.len() <= super::emergency::MAX_SHORT_DIGITS).then(|| national.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(s: &str) -> Number {
        normalise(s, Id::CH).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn swiss_premium_numbers_in_every_form() {
        for s in [
            "0900 123 456",
            "0901123456",
            "0906-123-456",
            "0041900123456",
            "+41 900 123 456",
        ] {
            assert_eq!(ch(s).kind, NumberKind::PremiumRate, "{s}");
        }
        assert_eq!(ch("0041 900 123 456").digits, "41900123456");
        assert_eq!(ch("0800 123 456").kind, NumberKind::TollFree);
        let zurich = ch("044 668 18 00");
        assert_eq!(
            (
                zurich.e164(),
                zurich.kind,
                zurich.country_code,
                zurich.region.as_deref()
            ),
            ("+41446681800".to_string(), NumberKind::Ordinary, 41, Some("CH"))
        );
        let london = ch("0044 20 7946 0958");
        assert_eq!((london.country_code, london.region.as_deref()), (44, Some("GB")));
        let satellite = ch("+882 13 112345");
        assert_eq!((satellite.country_code, satellite.region), (882, None));
    }

    #[test]
    fn garbage_gets_a_reason() {
        assert_eq!(normalise("", Id::CH), Err(NumberError::Empty));
        assert_eq!(normalise("  ", Id::CH), Err(NumberError::Empty));
        assert!(matches!(normalise("*97", Id::CH), Err(NumberError::NotANumber(_))));
        assert!(matches!(normalise("sip:bob", Id::CH), Err(NumberError::NotANumber(_))));
        assert!(matches!(normalise("0+41", Id::CH), Err(NumberError::NotANumber(_))));
        assert!(matches!(normalise("1001", Id::CH), Err(NumberError::Invalid(_))));
        assert_eq!(normalise(&"1".repeat(65), Id::CH), Err(NumberError::TooLong));
        assert_eq!(region("ch"), Some(Id::CH));
        assert_eq!(region("XX"), None);
        assert_eq!(calling_code(Id::CH), Some(41));
    }

    #[test]
    fn allow_keys_are_one_per_number_in_any_form() {
        let key = |s: &str| allow_key(s, Id::CH);
        for s in ["0800 123 456", "0041800123456", "+41 800 123 456", "(0800) 123-456"] {
            assert_eq!(key(s).as_deref(), Some("+41800123456"), "{s}");
        }
        assert_eq!(key("+44 20 7946 0958").as_deref(), Some("+442079460958"));
        for s in ["1414", "+41 1414", "0041 1414", "14-14"] {
            assert_eq!(key(s).as_deref(), Some("1414"), "{s}");
        }
        assert_eq!(key("143").as_deref(), Some("143"));
        for s in ["", "+", "abc", "*97", "+44 1414", "123456789", "+41 123456789", "1+41"] {
            assert_eq!(key(s), None, "{s:?}");
        }
    }
}
