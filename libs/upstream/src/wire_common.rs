//! Serde helpers shared by the three `wire` modules.

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A credential on the wire (password hash, token, activation code, client secret).
/// (De)serializes as the plain string, but `Debug` prints `***`. Read it with
/// [`Sensitive::expose`].
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sensitive(String);

impl Sensitive {
    /// Wraps a value.
    pub fn new(v: impl Into<String>) -> Self {
        Self(v.into())
    }
    /// The plain value.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<&str> for Sensitive {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl From<String> for Sensitive {
    fn from(s: String) -> Self {
        Self(s)
    }
}

/// A value the upstream documents loosely: a JSON number or a string. Kept as given so a
/// response re-serializes to the same JSON; read it with [`NumOrStr::as_text`] or
/// [`NumOrStr::to_decimal`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NumOrStr {
    /// A JSON number.
    Num(serde_json::Number),
    /// A JSON string.
    Str(String),
}

impl NumOrStr {
    /// The text of the value (a number in its JSON form).
    pub fn as_text(&self) -> String {
        match self {
            Self::Num(n) => n.to_string(),
            Self::Str(s) => s.trim().to_owned(),
        }
    }

    /// The value as an exact decimal, if it is one.
    pub fn to_decimal(&self) -> Option<Decimal> {
        let t = self.as_text();
        t.parse::<Decimal>()
            .ok()
            .or_else(|| Decimal::from_scientific(&t).ok())
    }

    /// The value as a non-negative integer, if it is one (`"12"`, `12`, `12.0`).
    pub fn to_u64(&self) -> Option<u64> {
        let d = self.to_decimal()?;
        if d.is_sign_negative() || d.fract() != Decimal::ZERO {
            return None;
        }
        u64::try_from(d).ok()
    }

    /// The value as an integer, if it is one.
    pub fn to_i64(&self) -> Option<i64> {
        let d = self.to_decimal()?;
        if d.fract() != Decimal::ZERO {
            return None;
        }
        i64::try_from(d).ok()
    }
}

impl From<i64> for NumOrStr {
    fn from(v: i64) -> Self {
        Self::Num(v.into())
    }
}

impl From<&str> for NumOrStr {
    fn from(v: &str) -> Self {
        Self::Str(v.to_owned())
    }
}

/// Serde helpers writing a [`Decimal`] as a JSON **number** (the upstreams document
/// `price`, `money` and `payAmount` as numbers) and reading either a number or a string.
/// Integers are written without a fraction (`5`, not `5.0`); other values through `f64`,
/// which round-trips any amount of up to 15 significant digits exactly.
pub mod decimal_number {
    use super::*;

    /// Serializes a decimal as a JSON number.
    pub fn serialize<S: Serializer>(v: &Decimal, s: S) -> Result<S::Ok, S::Error> {
        if v.fract() == Decimal::ZERO
            && let Ok(i) = i64::try_from(*v)
        {
            return s.serialize_i64(i);
        }
        let f: f64 = v
            .to_string()
            .parse()
            .map_err(|_| serde::ser::Error::custom("decimal not representable"))?;
        s.serialize_f64(f)
    }

    /// Deserializes a decimal from a JSON number or string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        <Decimal as Deserialize>::deserialize(d)
    }

    /// The same for `Option<Decimal>` (use with `#[serde(default)]`).
    pub mod option {
        use super::*;

        /// Serializes `Some` as a JSON number and `None` as null.
        pub fn serialize<S: Serializer>(v: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
            match v {
                Some(v) => super::serialize(v, s),
                None => s.serialize_none(),
            }
        }

        /// Deserializes a number, string or null.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
            Option::<Decimal>::deserialize(d)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize)]
    struct P {
        #[serde(with = "decimal_number")]
        v: Decimal,
    }

    #[test]
    fn decimal_numbers() {
        let p: P = serde_json::from_str(r#"{"v": 5.10}"#).unwrap();
        assert_eq!(p.v.to_string(), "5.1");
        assert_eq!(serde_json::to_string(&p).unwrap(), r#"{"v":5.1}"#);
        let p: P = serde_json::from_str(r#"{"v": "5"}"#).unwrap();
        assert_eq!(serde_json::to_string(&p).unwrap(), r#"{"v":5}"#);
    }

    #[test]
    fn num_or_str() {
        let v: NumOrStr = serde_json::from_str("\"120000\"").unwrap();
        assert_eq!(v.to_u64(), Some(120000));
        let v: NumOrStr = serde_json::from_str("1024.5").unwrap();
        assert_eq!(v.to_u64(), None);
        assert_eq!(v.to_decimal().unwrap().to_string(), "1024.5");
        assert_eq!(serde_json::to_string(&v).unwrap(), "1024.5");
        assert!(format!("{:?}", Sensitive::new("tok")).eq("***"));
    }
}
