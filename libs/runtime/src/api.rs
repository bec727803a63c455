//! Conversions and request checks every service's API needs the same way: timestamps, money,
//! page sizes and page tokens, resource names, request ids, free text. They report a bad field as a
//! [`FieldViolation`], which each service's error type wraps and maps to INVALID_ARGUMENT.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use esim_domain::{CurrencyCode, Money, TextRule};
use esim_proto::google::r#type::{Date, Money as PbMoney};
use esim_proto::r#type::v1::Provider;
use rust_decimal::Decimal;
use serde::{Serialize, de::DeserializeOwned};

/// A request field that is not acceptable, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldViolation {
    /// The request field path (`page_token`, `order.max_retail_price.units`, ...).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldViolation {
    /// `field` is invalid because of `message`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<FieldViolation> for tonic::Status {
    fn from(violation: FieldViolation) -> Self {
        crate::status::invalid_argument(&violation.field, violation.message)
    }
}

/// A `google.protobuf.Timestamp`.
pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// A request's timestamp, checked.
pub fn from_timestamp(t: &prost_types::Timestamp, field: &str) -> Result<DateTime<Utc>, FieldViolation> {
    u32::try_from(t.nanos)
        .ok()
        .and_then(|nanos| DateTime::from_timestamp(t.seconds, nanos))
        .ok_or_else(|| FieldViolation::new(field, "not a valid timestamp"))
}

/// A request's `google.type.Date` as a full calendar date.
pub fn from_date(d: Option<&Date>, field: &str) -> Result<NaiveDate, FieldViolation> {
    let d = d.ok_or_else(|| FieldViolation::new(field, "is required"))?;
    u32::try_from(d.month)
        .ok()
        .zip(u32::try_from(d.day).ok())
        .filter(|_| d.year >= 1)
        .and_then(|(month, day)| NaiveDate::from_ymd_opt(d.year, month, day))
        .ok_or_else(|| FieldViolation::new(field, "must be a full, valid date"))
}

/// A calendar date as `google.type.Date`.
pub fn date(d: NaiveDate) -> Date {
    Date {
        year: d.year(),
        month: i32::try_from(d.month()).unwrap_or(0),
        day: i32::try_from(d.day()).unwrap_or(0),
    }
}

/// How services store a provider: `MP`, `FMS`, `SFT` (`None` for UNSPECIFIED).
pub fn provider_code(provider: Provider) -> Option<&'static str> {
    match provider {
        Provider::Mp => Some("MP"),
        Provider::Fms => Some("FMS"),
        Provider::Sft => Some("SFT"),
        Provider::Unspecified => None,
    }
}

/// The provider of a stored code (UNSPECIFIED for anything else).
pub fn provider_from_code(code: &str) -> Provider {
    match code {
        "MP" => Provider::Mp,
        "FMS" => Provider::Fms,
        "SFT" => Provider::Sft,
        _ => Provider::Unspecified,
    }
}

/// A decimal amount as `google.type.Money` (nanos precision; finer digits are cut).
pub fn money(amount: Decimal, currency: &str) -> PbMoney {
    let amount = amount.round_dp_with_strategy(9, rust_decimal::RoundingStrategy::ToZero);
    let units = amount.trunc();
    let nanos = ((amount - units) * Decimal::from(1_000_000_000)).trunc();
    PbMoney {
        currency_code: currency.to_owned(),
        units: i64::try_from(units).unwrap_or(i64::MAX),
        nanos: i32::try_from(nanos).unwrap_or(0),
    }
}

/// A request's `google.type.Money`: a valid ISO 4217 currency, consistent signs, nanos in
/// range, not negative. `field` names it in the violation.
pub fn parse_money(m: &PbMoney, field: &str) -> Result<Money, FieldViolation> {
    let currency: CurrencyCode = m.currency_code.parse().map_err(|_| {
        FieldViolation::new(
            format!("{field}.currency_code"),
            format!("{:?} is not an ISO 4217 currency code", m.currency_code),
        )
    })?;
    if !(-999_999_999..=999_999_999).contains(&m.nanos) {
        return Err(FieldViolation::new(
            format!("{field}.nanos"),
            "must be between -999999999 and 999999999",
        ));
    }
    if (m.units > 0 && m.nanos < 0) || (m.units < 0 && m.nanos > 0) {
        return Err(FieldViolation::new(
            format!("{field}.nanos"),
            "units and nanos must have the same sign",
        ));
    }
    if m.units < 0 || m.nanos < 0 {
        return Err(FieldViolation::new(field, "must not be negative"));
    }
    let amount = (Decimal::from(m.units) + Decimal::new(i64::from(m.nanos), 9)).normalize();
    Ok(Money::new(amount, currency))
}

/// `page_size`: 0 → `default`, 1..=`max` as is, anything else a violation.
pub fn page_size(size: i32, default: u64, max: u64) -> Result<u64, FieldViolation> {
    match u64::try_from(size) {
        Ok(0) => Ok(default),
        Ok(size) if size <= max => Ok(size),
        _ => Err(FieldViolation::new(
            "page_size",
            format!("must be between 0 and {max} (0 means {default})"),
        )),
    }
}

/// The id of `collection/{id}`; `valid` checks the id.
pub fn resource_id<'a>(
    name: &'a str,
    collection: &str,
    field: &str,
    valid: impl Fn(&str) -> bool,
) -> Result<&'a str, FieldViolation> {
    if name.is_empty() {
        return Err(FieldViolation::new(field, "is required"));
    }
    name.strip_prefix(collection)
        .and_then(|rest| rest.strip_prefix('/'))
        .filter(|id| valid(id))
        .ok_or_else(|| FieldViolation::new(field, format!("must be {collection}/{{id}} with a valid id")))
}

/// Free text `value` of `field` (a name, a reference, a reason) under `rule`.
pub fn text(value: &str, field: &str, rule: TextRule) -> Result<(), FieldViolation> {
    rule.check(value)
        .map_err(|err| FieldViolation::new(field, err.to_string()))
}

/// An AIP-155 request id: 1 to 64 characters of `[A-Za-z0-9._~:-]`; empty is a violation only
/// where the id is `required`.
pub fn request_id(id: &str, field: &str, required: bool) -> Result<(), FieldViolation> {
    if id.is_empty() {
        return if required {
            Err(FieldViolation::new(
                field,
                "is required (an idempotency key, e.g. a UUID)",
            ))
        } else {
            Ok(())
        };
    }
    let valid = id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b':' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(FieldViolation::new(
            field,
            "must be 1-64 characters of A-Z a-z 0-9 . _ ~ : -",
        ))
    }
}

/// Opaque page tokens: the position after the last item returned, bound to the query that
/// produced it (a fingerprint of its filters and order), so a token replayed with other filters
/// is refused instead of silently skipping or repeating items.
pub mod page_token {
    use super::*;

    #[derive(Serialize)]
    struct TokenOut<'a, C> {
        /// Fingerprint of the query.
        q: &'a str,
        /// Where the next page starts.
        c: &'a C,
    }

    #[derive(serde::Deserialize)]
    struct TokenIn<C> {
        q: String,
        c: C,
    }

    /// A short, stable fingerprint of a query's canonical text.
    pub fn fingerprint(query: &str) -> String {
        // FNV-1a: stable across releases and processes, unlike std's hasher.
        let hash = query.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        format!("{hash:016x}")
    }

    /// The token for `position` in the query with `fingerprint`.
    pub fn encode<C: Serialize>(fingerprint: &str, position: &C) -> String {
        let token = TokenOut {
            q: fingerprint,
            c: position,
        };
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).unwrap_or_default())
    }

    /// The position in `token` (empty: the first page, `None`); a malformed token or one of
    /// another query is a violation on `page_token`.
    pub fn decode<C: DeserializeOwned>(token: &str, fingerprint: &str) -> Result<Option<C>, FieldViolation> {
        if token.is_empty() {
            return Ok(None);
        }
        let token: TokenIn<C> = URL_SAFE_NO_PAD
            .decode(token)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or_else(|| FieldViolation::new("page_token", "malformed page token"))?;
        if token.q != fingerprint {
            return Err(FieldViolation::new(
                "page_token",
                "foreign page token: it belongs to a query with other filters or order",
            ));
        }
        Ok(Some(token.c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_round_trips_and_refuses_bad_amounts() {
        let pb = money("4.99".parse().unwrap(), "USD");
        assert_eq!((pb.units, pb.nanos), (4, 990_000_000));
        assert_eq!(parse_money(&pb, "price").unwrap().to_string(), "4.99 USD");
        let negative = PbMoney {
            currency_code: "USD".into(),
            units: -1,
            nanos: 0,
        };
        assert_eq!(parse_money(&negative, "price").unwrap_err().field, "price");
        let mixed = PbMoney {
            currency_code: "USD".into(),
            units: 1,
            nanos: -5,
        };
        assert_eq!(parse_money(&mixed, "price").unwrap_err().field, "price.nanos");
        let currency = PbMoney {
            currency_code: "usd!".into(),
            units: 1,
            nanos: 0,
        };
        assert_eq!(
            parse_money(&currency, "price").unwrap_err().field,
            "price.currency_code"
        );
    }

    #[test]
    fn page_tokens_are_bound_to_their_query() {
        let a = page_token::fingerprint("country=JP");
        let token = page_token::encode(&a, &("x".to_owned(), 7));
        assert_eq!(
            page_token::decode::<(String, i32)>(&token, &a).unwrap(),
            Some(("x".into(), 7))
        );
        assert_eq!(page_token::decode::<(String, i32)>("", &a).unwrap(), None);
        let b = page_token::fingerprint("country=FR");
        assert!(
            page_token::decode::<(String, i32)>(&token, &b)
                .unwrap_err()
                .message
                .contains("foreign")
        );
        assert!(page_token::decode::<(String, i32)>("!!", &a).is_err());
    }

    #[test]
    fn page_sizes_names_and_request_ids() {
        assert_eq!(page_size(0, 50, 500).unwrap(), 50);
        assert_eq!(page_size(500, 50, 500).unwrap(), 500);
        assert!(page_size(501, 50, 500).is_err() && page_size(-1, 50, 500).is_err());
        assert_eq!(
            resource_id("orders/abc", "orders", "name", |id| !id.is_empty()).unwrap(),
            "abc"
        );
        assert!(resource_id("esims/abc", "orders", "name", |_| true).is_err());
        assert!(request_id("", "request_id", true).is_err());
        assert!(request_id("", "request_id", false).is_ok());
        assert!(request_id("0b7e-uuid:1", "request_id", true).is_ok());
        assert!(request_id("has space", "request_id", true).is_err());
        let t = Utc::now();
        assert_eq!(from_timestamp(&timestamp(t), "t").unwrap(), t);
        let day = NaiveDate::from_ymd_opt(2025, 3, 7).unwrap();
        assert_eq!(from_date(Some(&date(day)), "start_date").unwrap(), day);
        let bad = Date {
            year: 2025,
            month: 2,
            day: 30,
        };
        assert_eq!(
            from_date(Some(&bad), "start_date").unwrap_err().field,
            "start_date"
        );
        for provider in [Provider::Mp, Provider::Fms, Provider::Sft] {
            assert_eq!(provider_from_code(provider_code(provider).unwrap()), provider);
        }
    }
}
