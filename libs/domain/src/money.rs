use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;

use crate::error::excerpt;
use crate::{DomainError, serialize_display, string_conversions};

/// An ISO 4217 alphabetic currency code: three upper-case ASCII letters (e.g. `USD`).
/// Parsing trims; lower case is rejected (upstreams send upper case; a lower-case code
/// is a bug worth seeing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CurrencyCode([u8; 3]);

impl CurrencyCode {
    /// The three letters.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl FromStr for CurrencyCode {
    type Err = DomainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.trim().as_bytes();
        if b.len() != 3 || !b.iter().all(u8::is_ascii_uppercase) {
            return Err(DomainError::Currency(format!(
                "{} is not three upper-case letters",
                excerpt(s)
            )));
        }
        Ok(Self([b[0], b[1], b[2]]))
    }
}

impl fmt::Display for CurrencyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

string_conversions!(CurrencyCode);
serialize_display!(CurrencyCode);

/// An exact amount of money: a [`Decimal`] (never `f64`) and its currency.
///
/// Text form (`Display`/`FromStr`/serde): `"<amount> <CUR>"`, e.g. `"5.00 USD"`.
/// Build it from upstream fields with [`Money::new`] / [`Money::parse_amount`]: a JSON
/// number is read by `rust_decimal` from its shortest decimal text, so `5.1` stays `5.1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    amount: Decimal,
    currency: CurrencyCode,
}

impl Money {
    /// An amount in a currency.
    pub fn new(amount: Decimal, currency: CurrencyCode) -> Self {
        Self { amount, currency }
    }

    /// Parses an amount given as decimal text (`"5"`, `"5.10"`, `"-0.5"`) and a currency
    /// code (`"USD"`). Exponents and thousands separators are rejected.
    pub fn parse_amount(amount: &str, currency: &str) -> Result<Self, DomainError> {
        let a = amount.trim();
        let ok_chars = !a.is_empty()
            && a.bytes()
                .enumerate()
                .all(|(i, b)| b.is_ascii_digit() || b == b'.' || (i == 0 && (b == b'-' || b == b'+')));
        if !ok_chars {
            return Err(DomainError::Amount(format!(
                "{} is not a decimal number",
                excerpt(amount)
            )));
        }
        let amount = Decimal::from_str_exact(a)
            .map_err(|e| DomainError::Amount(format!("{}: {e}", excerpt(amount))))?;
        Ok(Self::new(amount, currency.parse()?))
    }

    /// The exact amount.
    pub fn amount(&self) -> Decimal {
        self.amount
    }

    /// The currency.
    pub fn currency(&self) -> CurrencyCode {
        self.currency
    }
}

impl FromStr for Money {
    type Err = DomainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let (a, c) = t.rsplit_once(' ').ok_or_else(|| {
            DomainError::Amount(format!("{} is not of the form `<amount> <currency>`", excerpt(s)))
        })?;
        Self::parse_amount(a, c)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.currency)
    }
}

string_conversions!(Money);
serialize_display!(Money);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn exact_amounts() {
        let m = Money::parse_amount("5.10", "USD").unwrap();
        assert_eq!(m.amount().to_string(), "5.10");
        assert_eq!(m.to_string(), "5.10 USD");
        assert_eq!("5.10 USD".parse::<Money>().unwrap(), m);
        let json: Decimal = serde_json::from_str("0.1").unwrap();
        assert_eq!(json.to_string(), "0.1");
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"5.10 USD\"");
        let back: Money = serde_json::from_str("\"5.10 USD\"").unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn rejects() {
        assert!(Money::parse_amount("5", "usd").is_err());
        assert!(Money::parse_amount("5", "US").is_err());
        assert!(Money::parse_amount("1e3", "USD").is_err());
        assert!(Money::parse_amount("1,000", "USD").is_err());
        assert!(Money::parse_amount("", "USD").is_err());
        assert!("5USD".parse::<Money>().is_err());
    }

    proptest! {
        #[test]
        fn never_panics(s in ".*", c in ".*") {
            let _ = s.parse::<Money>();
            let _ = Money::parse_amount(&s, &c);
        }

        #[test]
        fn round_trip(units in -1_000_000_000i64..1_000_000_000, scale in 0u32..6) {
            let m = Money::new(Decimal::new(units, scale), "EUR".parse().unwrap());
            prop_assert_eq!(m.to_string().parse::<Money>().unwrap(), m);
        }
    }
}
