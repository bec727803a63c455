use std::fmt;
use std::str::FromStr;

use crate::error::excerpt;
use crate::{DomainError, serialize_display, string_conversions};

/// An ICCID (ITU-T E.118): `89` + 16..=18 more digits, 18 to 20 digits in all.
///
/// Parsing trims white space and strips one trailing `F`/`f` filler nibble (as some
/// systems pad 19-digit ICCIDs to 20 nibbles). The 19- and 20-digit forms end in a Luhn
/// check digit, which is verified; the legacy 18-digit form carries no check digit.
/// The normalized digits are kept exactly as the upstream gave them otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Iccid(String);

impl Iccid {
    /// The normalized digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the ICCID carries a Luhn check digit (19/20-digit forms).
    pub fn has_check_digit(&self) -> bool {
        self.0.len() >= 19
    }
}

impl FromStr for Iccid {
    type Err = DomainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let t = t.strip_suffix('F').or_else(|| t.strip_suffix('f')).unwrap_or(t);
        if !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DomainError::Iccid(format!(
                "{} contains a character that is not a digit",
                excerpt(s)
            )));
        }
        if !(18..=20).contains(&t.len()) {
            return Err(DomainError::Iccid(format!(
                "{} has {} digits, expected 18 to 20",
                excerpt(s),
                t.len()
            )));
        }
        if !t.starts_with("89") {
            return Err(DomainError::Iccid(format!(
                "{} does not start with the telecom prefix 89",
                excerpt(s)
            )));
        }
        if t.len() >= 19 && !luhn::valid(t) {
            return Err(DomainError::Iccid(format!(
                "{} fails the Luhn check digit",
                excerpt(s)
            )));
        }
        Ok(Self(t.to_owned()))
    }
}

impl fmt::Display for Iccid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Iccid {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

string_conversions!(Iccid);
serialize_display!(Iccid);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn seed_iccid_is_valid() {
        let i: Iccid = "8943108169999589689".parse().unwrap();
        assert_eq!(i.as_str(), "8943108169999589689");
        assert!(i.has_check_digit());
    }

    #[test]
    fn trims_and_strips_filler() {
        let i: Iccid = "  8943108169999589689F \n".parse().unwrap();
        assert_eq!(i.to_string(), "8943108169999589689");
        let i: Iccid = "8943108169999589689f".parse().unwrap();
        assert_eq!(i.as_str(), "8943108169999589689");
    }

    #[test]
    fn eighteen_digits_have_no_check_digit() {
        let i: Iccid = "894310816999958968".parse().unwrap();
        assert!(!i.has_check_digit());
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "89",
            "8943108169999589680",   // bad Luhn
            "9943108169999589689",   // bad prefix
            "89431081699995896",     // 17 digits
            "894310816999958968912", // 21 digits
            "89431081699995896x9",
            "8943108169999589689FF",
        ] {
            let e = bad.parse::<Iccid>().unwrap_err();
            assert!(matches!(e, DomainError::Iccid(_)), "{bad}: {e}");
        }
        let e = "8943108169999589680".parse::<Iccid>().unwrap_err();
        assert!(e.to_string().contains("Luhn"), "{e}");
    }

    #[test]
    fn serde_as_string() {
        let i: Iccid = serde_json::from_str("\"8943108169999589689F\"").unwrap();
        assert_eq!(serde_json::to_string(&i).unwrap(), "\"8943108169999589689\"");
        assert!(serde_json::from_str::<Iccid>("\"123\"").is_err());
    }

    /// Appends the Luhn check digit to `body`.
    fn with_check_digit(body: &str) -> String {
        let d = luhn::checksum(body.as_bytes()) as char;
        format!("{body}{d}")
    }

    proptest! {
        #[test]
        fn never_panics(s in ".*") {
            let _ = s.parse::<Iccid>();
        }

        #[test]
        fn valid_round_trip(body in "89[0-9]{16,17}", filler in proptest::bool::ANY) {
            let iccid = with_check_digit(&body);
            let input = if filler { format!("{iccid}F") } else { iccid.clone() };
            let parsed: Iccid = input.parse().unwrap();
            prop_assert_eq!(parsed.as_str(), iccid.as_str());
            let again: Iccid = parsed.to_string().parse().unwrap();
            prop_assert_eq!(again, parsed);
        }

        #[test]
        fn one_wrong_digit_is_caught(body in "89[0-9]{17}", pos in 2usize..19, delta in 1u8..10) {
            let good = with_check_digit(&body);
            let mut bytes = good.clone().into_bytes();
            bytes[pos] = b'0' + (bytes[pos] - b'0' + delta) % 10;
            let bad = String::from_utf8(bytes).unwrap();
            prop_assert!(bad.parse::<Iccid>().is_err());
        }
    }
}
