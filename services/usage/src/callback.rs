//! The MP alarm callback endpoint (HTTP) and the registration of its URL with MP.
//!
//! MP POSTs `{eid, packageCode, orderCode, packageUsedRate, requestId}` to the URL we saved
//! with `saveAlarmCallbackInterface`. That URL carries a secret token (`?token=`) only MP
//! knows; it is compared in constant time. A valid alarm is committed to the alert log before
//! the 200, so MP never gets a success for an alert we could lose; repeats insert nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::Utc;
use esim_proto::usage::v1::{AlertKind, AlertSource};
use esim_upstream::mp::{EsimRef, MpClient};
use rust_decimal::prelude::ToPrimitive;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::Core;
use crate::error::{Result, UsageError};
use crate::store::{self, NewAlert};

/// Path of the endpoint; the public URL may differ (an ingress in front).
pub const PATH: &str = "/callbacks/mp/alarm";
/// What replaces the token wherever a URL is shown.
pub const REDACTED: &str = "REDACTED";

/// The callback router (`POST /callbacks/mp/alarm?token=...`).
pub fn router(core: Arc<Core>) -> Router {
    let limit = core.config.callback_max_body;
    Router::new()
        .route(PATH, post(alarm))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(core)
}

/// Constant-time token check: both sides are hashed first so lengths leak nothing either.
fn token_ok(expected: Option<&str>, given: Option<&str>) -> bool {
    match (expected, given) {
        (Some(expected), Some(given)) if !expected.is_empty() => {
            let a = Sha256::digest(expected.as_bytes());
            let b = Sha256::digest(given.as_bytes());
            a.ct_eq(&b).into()
        }
        _ => false,
    }
}

fn answer(status: StatusCode, code: u16, msg: &str) -> Response {
    (status, axum::Json(serde_json::json!({"code": code, "msg": msg}))).into_response()
}

async fn alarm(
    State(core): State<Arc<Core>>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let expected = core.config.callback_token.as_ref().map(|t| t.expose());
    if !token_ok(expected, query.get("token").map(String::as_str)) {
        return answer(StatusCode::UNAUTHORIZED, 401, "unauthorized");
    }
    let alert = match alert_of(&core, &body).await {
        Ok(Some(alert)) => alert,
        Ok(None) => return answer(StatusCode::BAD_REQUEST, 400, "invalid alarm body"),
        Err(err) => {
            tracing::error!(error = %err, "MP alarm callback not stored");
            return answer(StatusCode::SERVICE_UNAVAILABLE, 503, "try again");
        }
    };
    let (order_code, percent) = (alert.mp_order_code.clone(), alert.threshold_percent);
    match core.store_alert(alert).await {
        Ok(inserted) => {
            if let Some(id) = inserted {
                tracing::info!(cursor = id, order_code = %order_code, percent, "MP alarm stored");
            }
            answer(StatusCode::OK, 200, "Success")
        }
        Err(err) => {
            // Not stored: a non-2xx makes MP (or its operators) send it again.
            tracing::error!(error = %err, "MP alarm callback not stored");
            answer(StatusCode::SERVICE_UNAVAILABLE, 503, "try again")
        }
    }
}

/// The alert of a callback body; `None` when the body is not a valid alarm.
async fn alert_of(core: &Core, body: &[u8]) -> Result<Option<NewAlert>> {
    let Ok(alarm) = MpClient::decode_alarm(body) else {
        return Ok(None);
    };
    let order_code = alarm.order_code.trim();
    if order_code.is_empty() || order_code.len() > 128 {
        return Ok(None);
    }
    // A rate above 100 % is still "all used": kept, capped, rather than refused and lost.
    let Some(percent) = alarm.used_percent.floor().to_i32().map(|p| p.clamp(0, 100)) else {
        return Ok(None);
    };
    let (esim, order_name) = match core.cached_mp_order(order_code) {
        Some(known) => known,
        None => {
            let mut tracked = store::esim_of_mp_order(&core.db, order_code).await?;
            if tracked.is_none()
                && let EsimRef::Iccid(iccid) = &alarm.eid
            {
                tracked = store::find_esim_by_iccid(&core.db, iccid.as_str()).await?;
            }
            match tracked {
                Some(t) => {
                    core.cache_mp_order(order_code, &t.esim, &t.order_name);
                    (t.esim, t.order_name)
                }
                // Not tracked (yet): stored without an eSIM, and looked up again next time.
                None => (String::new(), String::new()),
            }
        }
    };
    Ok(Some(NewAlert {
        dedup_key: format!("mp:{order_code}:u{percent}"),
        esim,
        order_name,
        provider: "MP".into(),
        kind: AlertKind::UsageThreshold as i32,
        source: AlertSource::MpCallback as i32,
        threshold_percent: percent,
        expire_time: None,
        mp_order_code: order_code.to_owned(),
        mp_package_code: alarm.package_code.trim().to_owned(),
        eid: match &alarm.eid {
            EsimRef::Eid(eid) => eid.as_str().to_owned(),
            _ => String::new(),
        },
    }))
}

/// Escapes all but RFC 3986 unreserved characters.
fn escape(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `base` with `token` appended as the `token` query parameter.
pub fn with_token(base: &str, token: &str) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}token={}", escape(token))
}

/// Checks a public callback URL.
pub fn check_url(field: &str, url: &str) -> Result<()> {
    let ok = (url.starts_with("https://") || url.starts_with("http://"))
        && url.len() <= 2000
        && !url.contains('#')
        && !url.contains("token=")
        && url.split("://").nth(1).is_some_and(|rest| !rest.is_empty())
        && !url.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(UsageError::invalid(
            field,
            "must be an absolute http(s) URL without a fragment or token parameter",
        ))
    }
}

/// A registration MP confirmed.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The URL with the token shown as [`REDACTED`].
    pub redacted_url: String,
    pub reseller_code: String,
    pub time: chrono::DateTime<Utc>,
}

/// Registers `base` (plus our token) with MP.
pub async fn register(core: &Core, base: &str, request_id: &str) -> Result<Registration> {
    let token = core
        .config
        .callback_token
        .as_ref()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            UsageError::FailedPrecondition(
                "no callback token is configured (USAGE_CALLBACK_TOKEN): MP callbacks could not be authenticated".into(),
            )
        })?;
    let url = with_token(base, token.expose());
    let redacted_url = with_token(base, REDACTED);
    match core.mp.save_alarm_callback_interface(&url, request_id).await {
        Ok(_) => {
            tracing::info!(url = %redacted_url, "MP alarm callback registered");
            Ok(Registration {
                redacted_url,
                reseller_code: core.mp.config().reseller_code.clone(),
                time: Utc::now(),
            })
        }
        Err(err) => {
            // The upstream may echo the URL back: never let the token out.
            let message = err
                .to_string()
                .replace(token.expose(), REDACTED)
                .replace(&escape(token.expose()), REDACTED);
            tracing::warn!(error = %message, "MP alarm callback registration failed");
            Err(UsageError::Unavailable(message))
        }
    }
}

/// At start: registers `USAGE_CALLBACK_PUBLIC_URL`, retrying with back-off a few times.
pub async fn register_at_start(core: Arc<Core>) {
    let Some(base) = core.config.callback_public_url.clone() else {
        return;
    };
    if let Err(err) = check_url("USAGE_CALLBACK_PUBLIC_URL", &base) {
        tracing::error!(error = %err, "MP alarm callback not registered");
        return;
    }
    let mut delay = Duration::from_secs(1);
    for attempt in 1..=6 {
        match register(&core, &base, "usage-start").await {
            Ok(_) => return,
            Err(UsageError::FailedPrecondition(msg)) => {
                tracing::error!(error = %msg, "MP alarm callback not registered");
                return;
            }
            Err(err) => {
                tracing::warn!(attempt, error = %err, "MP alarm callback registration will be retried")
            }
        }
        tokio::select! {
            () = core.shutdown.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(60));
    }
    tracing::error!("MP alarm callback registration gave up; call RegisterMpAlarmCallback");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_exactly() {
        assert!(token_ok(Some("abc"), Some("abc")));
        assert!(!token_ok(Some("abc"), Some("abd")));
        assert!(!token_ok(Some("abc"), Some("ab")));
        assert!(!token_ok(Some("abc"), None));
        assert!(!token_ok(None, Some("abc")));
        assert!(!token_ok(Some(""), Some("")));
    }

    #[test]
    fn urls() {
        assert_eq!(with_token("http://h/cb", "a b"), "http://h/cb?token=a%20b");
        assert_eq!(with_token("http://h/cb?x=1", "t"), "http://h/cb?x=1&token=t");
        assert!(check_url("u", "https://usage.example.com/callbacks/mp/alarm").is_ok());
        assert!(check_url("u", "ftp://x").is_err());
        assert!(check_url("u", "http://").is_err());
        assert!(check_url("u", "http://h/cb?token=x").is_err());
        assert!(check_url("u", "http://h/c b").is_err());
    }
}
