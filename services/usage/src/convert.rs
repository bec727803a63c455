//! Conversions between stored rows and API messages, and request-field validation.

use esim_proto::usage::v1 as pb;

use crate::entity::{alert, esim, snapshot};
use crate::error::{Result, UsageError};

pub use esim_runtime::api::{
    date, from_date, from_timestamp, provider_code as provider_text, provider_from_code as provider_of,
    timestamp,
};

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
    Ok(esim_runtime::api::resource_id(name, collection, field, valid_id)?)
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
    Ok(esim_runtime::api::request_id(id, "request_id", false)?)
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
    fn cursors() {
        assert_eq!(parse_cursor("c", "").unwrap(), 0);
        assert_eq!(parse_cursor("c", "42").unwrap(), 42);
        assert!(parse_cursor("c", "-1").is_err());
        assert!(parse_cursor("c", "+1").is_err());
        assert!(parse_cursor("c", "x").is_err());
    }
}
