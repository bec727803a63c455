//! Domain types of the eSIM suite: ICCID, EID, activation code, country, money, and the rule
//! for free text.
//!
//! Every type here is validated on construction (`FromStr` / `TryFrom<&str>`), prints its
//! canonical text with `Display` (except [`ActivationCode`] and [`Secret`], which are
//! credentials) and (de)serializes as a JSON string, so a value of one of these types is
//! always valid.

mod activation_code;
mod country;
mod eid;
mod error;
mod iccid;
mod money;
mod secret;
mod text;

pub use activation_code::ActivationCode;
pub use country::{CountryCode, Mcc};
pub use eid::Eid;
pub use error::DomainError;
pub use iccid::Iccid;
pub use money::{CurrencyCode, Money};
pub use secret::Secret;
pub use text::TextRule;

/// Implements `TryFrom<&str>`, `TryFrom<String>` and string serde for a type with `FromStr`.
macro_rules! string_conversions {
    ($ty:ty) => {
        impl TryFrom<&str> for $ty {
            type Error = $crate::DomainError;
            fn try_from(s: &str) -> Result<Self, Self::Error> {
                s.parse()
            }
        }
        impl TryFrom<String> for $ty {
            type Error = $crate::DomainError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.parse()
            }
        }
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use string_conversions;

/// Implements `Serialize` as the `Display` text.
macro_rules! serialize_display {
    ($ty:ty) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    };
}
pub(crate) use serialize_display;
