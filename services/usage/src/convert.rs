//! Conversions between stored rows and API messages, and request-field validation.

use chrono::{DateTime, NaiveDate, Utc};
use esim_proto::google::r#type::Date;
use esim_proto::r#type::v1::Provider;
use esim_proto::usage::v1 as pb;
use prost_types::Timestamp;

use crate::entity::{alert, esim, snapshot};
use crate::error::{Result, UsageError};

/// Stored provider text.
pub fn provider_text(p: Provider) -> Option<&'static str> {
    match p {
        Provider::Mp => Some("MP"),
        Provider::Fms => Some("FMS"),
        Provider::Sft => Some("SFT"),
        Provider::Unspecified => None,
    }
}

/// The API provider of stored text.
pub fn provider_of(text: &str) -> Provider {
    match text {
        "MP" => Provider::Mp,
        "FMS" => Provider::Fms,
        "SFT" => Provider::Sft,
        _ => Provider::Unspecified,
    }
}

/// A protobuf timestamp.
pub fn timestamp(t: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// A protobuf timestamp as UTC time; `field` names it in the error.
pub fn from_timestamp(field: &str, t: &Timestamp) -> Result<DateTime<Utc>> {
    u32::try_from(t.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)
        .and_then(|n| DateTime::from_timestamp(t.seconds, n))
        .ok_or_else(|| UsageError::invalid(field, "not a valid timestamp"))
}

/// A `google.type.Date` as a full calendar date.
pub fn from_date(field: &str, d: Option<&Date>) -> Result<NaiveDate> {
    let d = d.ok_or_else(|| UsageError::invalid(field, "is required"))?;
    u32::try_from(d.month)
        .ok()
        .zip(u32::try_from(d.day).ok())
        .and_then(|(m, day)| NaiveDate::from_ymd_opt(d.year, m, day))
        .filter(|_| d.year >= 1)
        .ok_or_else(|| UsageError::invalid(field, "must be a full, valid date"))
}

/// A calendar date as `google.type.Date`.
pub fn date(d: NaiveDate) -> Date {
    use chrono::Datelike;
    Date {
        year: d.year(),
        month: i32::try_from(d.month()).unwrap_or(0),
        day: i32::try_from(d.day()).unwrap_or(0),
    }
}

/// Resource ids: 1-128 characters of `[A-Za-z0-9._~-]`.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._~-".contains(&b))
}

/// `{collection}/{id}` → id.
pub fn parse_name<'a>(field: &str, collection: &str, name: &'a str) -> Result<&'a str> {
    if name.is_empty() {
        return Err(UsageError::invalid(field, "is required"));
    }
    name.strip_prefix(collection)
        .and_then(|rest| rest.strip_prefix('/'))
        .filter(|id| valid_id(id))
        .ok_or_else(|| UsageError::invalid(field, format!("must be {collection}/{{id}}")))
}

/// `esims/{esim}/usage` → the eSIM id.
pub fn parse_usage_name(name: &str) -> Result<&str> {
    if name.is_empty() {
        return Err(UsageError::invalid("name", "is required"));
    }
    name.strip_suffix("/usage")
        .and_then(|rest| parse_name("name", "esims", rest).ok())
        .ok_or_else(|| UsageError::invalid("name", "must be esims/{esim}/usage"))
}

/// AIP-155 request ids: empty, or 1-64 characters of `[A-Za-z0-9._~:-]`.
pub fn check_request_id(id: &str) -> Result<()> {
    if id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._~:-".contains(&b))
    {
        Ok(())
    } else {
        Err(UsageError::invalid(
            "request_id",
            "must be 1-64 characters of [A-Za-z0-9._~:-]",
        ))
    }
}

/// The usage of `row` from `snap` (none: counters 0, no snapshot time).
pub fn usage(row: &esim::Model, snap: Option<&snapshot::Model>, stale_reason: Option<String>) -> pb::Usage {
    let mut out = pb::Usage {
        name: format!("esims/{}/usage", row.esim),
        esim: format!("esims/{}", row.esim),
        order: format!("orders/{}", row.order_name),
        provider: provider_of(&row.provider) as i32,
        ..Default::default()
    };
    if let Some(s) = snap {
        out.unlimited = s.unlimited;
        out.total_bytes = if s.unlimited { 0 } else { s.total_bytes };
        out.used_bytes = s.used_bytes;
        out.remaining_bytes = if s.unlimited {
            0
        } else {
            (s.total_bytes - s.used_bytes).max(0)
        };
        out.validity_start_time = s.validity_start.map(timestamp);
        out.validity_end_time = s.validity_end.map(timestamp);
        out.snapshot_time = Some(timestamp(s.taken_at));
    }
    if let Some(reason) = stale_reason {
        out.stale = true;
        out.stale_reason = reason;
    }
    out
}

/// The API alert of a stored row.
pub fn alert(row: &alert::Model) -> pb::Alert {
    pb::Alert {
        name: format!("alerts/{}", row.id),
        cursor: row.id.to_string(),
        esim: if row.esim.is_empty() {
            String::new()
        } else {
            format!("esims/{}", row.esim)
        },
        order: if row.order_name.is_empty() {
            String::new()
        } else {
            format!("orders/{}", row.order_name)
        },
        provider: provider_of(&row.provider) as i32,
        kind: row.kind,
        source: row.source,
        threshold_percent: row.threshold_percent,
        expire_time: row.expire_time.map(timestamp),
        mp_order_code: row.mp_order_code.clone(),
        mp_package_code: row.mp_package_code.clone(),
        eid: row.eid.clone(),
        create_time: Some(timestamp(row.create_time)),
    }
}

/// A cursor (or page token): the decimal alert id; empty is the start.
pub fn parse_cursor(field: &str, s: &str) -> Result<i64> {
    if s.is_empty() {
        return Ok(0);
    }
    s.parse::<i64>()
        .ok()
        .filter(|v| *v >= 0 && s.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| UsageError::invalid(field, "is not a cursor this service issued"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids() {
        assert_eq!(parse_name("esim", "esims", "esims/abc-1").unwrap(), "abc-1");
        assert!(parse_name("esim", "esims", "esim/abc").is_err());
        assert!(parse_name("esim", "esims", "esims/").is_err());
        assert!(parse_name("esim", "esims", "esims/a/b").is_err());
        assert_eq!(parse_usage_name("esims/x/usage").unwrap(), "x");
        assert!(parse_usage_name("esims/x").is_err());
        assert!(check_request_id("").is_ok());
        assert!(check_request_id("a:b-c.d_e~f").is_ok());
        assert!(check_request_id("a b").is_err());
        assert!(check_request_id(&"a".repeat(65)).is_err());
    }

    #[test]
    fn cursors_and_dates() {
        assert_eq!(parse_cursor("c", "").unwrap(), 0);
        assert_eq!(parse_cursor("c", "42").unwrap(), 42);
        assert!(parse_cursor("c", "-1").is_err());
        assert!(parse_cursor("c", "+1").is_err());
        assert!(parse_cursor("c", "x").is_err());
        let d = Date {
            year: 2025,
            month: 2,
            day: 29,
        };
        assert!(from_date("start_date", Some(&d)).is_err());
        let d = Date {
            year: 2024,
            month: 2,
            day: 29,
        };
        assert_eq!(date(from_date("start_date", Some(&d)).unwrap()), d);
        assert!(from_date("start_date", None).is_err());
    }
}
