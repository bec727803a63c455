use std::fmt;
use std::str::FromStr;

use crate::error::excerpt;
use crate::{DomainError, serialize_display, string_conversions};

/// An ISO 3166-1 alpha-2 country code, validated against the ISO list shipped by the
/// `celes` crate. Parsing trims and accepts any case; the canonical form is upper case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    /// The two upper-case letters.
    pub fn as_str(&self) -> &str {
        // Always two ASCII upper-case letters (checked in `from_str`).
        std::str::from_utf8(&self.0).unwrap_or("??")
    }

    /// The ISO short name of the country (e.g. "China" for CN), from `celes`.
    pub fn name(&self) -> &'static str {
        celes::Country::from_alpha2(self.as_str())
            .map(|c| c.long_name)
            .unwrap_or("")
    }

    /// The ISO 3166-1 alpha-3 code (e.g. "CHN").
    pub fn alpha3(&self) -> &'static str {
        celes::Country::from_alpha2(self.as_str())
            .map(|c| c.alpha3)
            .unwrap_or("")
    }
}

impl FromStr for CountryCode {
    type Err = DomainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let b = t.as_bytes();
        if b.len() != 2 || !b.iter().all(u8::is_ascii_alphabetic) {
            return Err(DomainError::CountryCode(format!(
                "{} is not two letters",
                excerpt(s)
            )));
        }
        let code = [b[0].to_ascii_uppercase(), b[1].to_ascii_uppercase()];
        let c = Self(code);
        if celes::Country::from_alpha2(c.as_str()).is_err() {
            return Err(DomainError::CountryCode(format!(
                "{} is not an ISO 3166-1 alpha-2 code",
                excerpt(s)
            )));
        }
        Ok(c)
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

string_conversions!(CountryCode);
serialize_display!(CountryCode);

/// A mobile country code (ITU-T E.212): exactly three digits, e.g. "460" for China.
/// Mapping an MCC to its countries is not this type's job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mcc([u8; 3]);

impl Mcc {
    /// The three digits.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("???")
    }

    /// The numeric value (e.g. 460).
    pub fn value(&self) -> u16 {
        self.0.iter().fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'))
    }
}

impl FromStr for Mcc {
    type Err = DomainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.trim().as_bytes();
        if b.len() != 3 || !b.iter().all(u8::is_ascii_digit) {
            return Err(DomainError::Mcc(format!("{} is not three digits", excerpt(s))));
        }
        Ok(Self([b[0], b[1], b[2]]))
    }
}

impl fmt::Display for Mcc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

string_conversions!(Mcc);
serialize_display!(Mcc);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn countries() {
        let c: CountryCode = " cn ".parse().unwrap();
        assert_eq!(c.as_str(), "CN");
        assert_eq!(c.alpha3(), "CHN");
        assert!(!c.name().is_empty());
        assert!(
            "XX".parse::<CountryCode>()
                .unwrap_err()
                .to_string()
                .contains("ISO")
        );
        assert!("USA".parse::<CountryCode>().is_err());
        assert!("1A".parse::<CountryCode>().is_err());
        assert_eq!(serde_json::to_string(&c).unwrap(), "\"CN\"");
        let back: CountryCode = serde_json::from_str("\"gb\"").unwrap();
        assert_eq!(back.to_string(), "GB");
    }

    #[test]
    fn mccs() {
        let m: Mcc = "460".parse().unwrap();
        assert_eq!(m.value(), 460);
        assert_eq!(m.to_string(), "460");
        assert!("46".parse::<Mcc>().is_err());
        assert!("4600".parse::<Mcc>().is_err());
        assert!("46a".parse::<Mcc>().is_err());
        let m: Mcc = serde_json::from_str("\"001\"").unwrap();
        assert_eq!(m.value(), 1);
    }

    proptest! {
        #[test]
        fn never_panics(s in ".*") {
            let _ = s.parse::<CountryCode>();
            let _ = s.parse::<Mcc>();
        }
    }
}
