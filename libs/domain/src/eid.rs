use std::fmt;
use std::str::FromStr;

use crate::error::excerpt;
use crate::{DomainError, serialize_display, string_conversions};

/// An eUICC identifier (GSMA SGP.02/SGP.22): 32 decimal digits whose value mod 97 is 1
/// (the last two digits are ISO 7064 MOD 97-10 check digits). Parsing trims white space.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Eid(String);

impl Eid {
    /// The 32 digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The two check digits that make `first30` (30 digits) a valid EID, or `None` when
    /// `first30` is not 30 digits. Useful to generate EIDs (e.g. in a simulator).
    pub fn check_digits(first30: &str) -> Option<String> {
        if first30.len() != 30 || !first30.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let rem = mod97(first30.bytes().chain(*b"00"));
        Some(format!("{:02}", 98 - rem))
    }
}

/// The value of a digit string mod 97, computed digit by digit.
fn mod97(digits: impl Iterator<Item = u8>) -> u32 {
    digits.fold(0u32, |acc, b| (acc * 10 + u32::from(b - b'0')) % 97)
}

impl FromStr for Eid {
    type Err = DomainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DomainError::Eid(format!(
                "{} contains a character that is not a digit",
                excerpt(s)
            )));
        }
        if t.len() != 32 {
            return Err(DomainError::Eid(format!(
                "{} has {} digits, expected 32",
                excerpt(s),
                t.len()
            )));
        }
        if mod97(t.bytes()) != 1 {
            return Err(DomainError::Eid(format!(
                "{} fails the mod-97 check digits",
                excerpt(s)
            )));
        }
        Ok(Self(t.to_owned()))
    }
}

impl fmt::Display for Eid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Eid {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

string_conversions!(Eid);
serialize_display!(Eid);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn gsma_examples_are_valid() {
        for s in [
            "89049032123451234512345678901235",
            "89001012012341234012345678901224",
        ] {
            let e: Eid = s.parse().unwrap();
            assert_eq!(e.as_str(), s);
        }
        assert_eq!(
            Eid::check_digits("890490321234512345123456789012").as_deref(),
            Some("35")
        );
    }

    #[test]
    fn rejects() {
        assert!(
            "89049032123451234512345678901234"
                .parse::<Eid>()
                .unwrap_err()
                .to_string()
                .contains("mod-97")
        );
        assert!(
            "89491202308310000235"
                .parse::<Eid>()
                .unwrap_err()
                .to_string()
                .contains("32")
        );
        assert!("8904903212345123451234567890123x".parse::<Eid>().is_err());
        assert!("".parse::<Eid>().is_err());
        assert_eq!(Eid::check_digits("12"), None);
    }

    #[test]
    fn serde_as_string() {
        let e: Eid = serde_json::from_str("\" 89049032123451234512345678901235\"").unwrap();
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            "\"89049032123451234512345678901235\""
        );
    }

    proptest! {
        #[test]
        fn never_panics(s in ".*") {
            let _ = s.parse::<Eid>();
        }

        #[test]
        fn never_panics_digits(s in "[0-9]{0,40}") {
            let _ = s.parse::<Eid>();
        }

        #[test]
        fn valid_round_trip(first30 in "[0-9]{30}") {
            let eid = format!("{first30}{}", Eid::check_digits(&first30).unwrap());
            let parsed: Eid = eid.parse().unwrap();
            prop_assert_eq!(parsed.as_str(), eid.as_str());
            prop_assert_eq!(parsed.to_string().parse::<Eid>().unwrap(), parsed);
        }
    }
}
