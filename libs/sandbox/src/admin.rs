//! Admin routes under `/_sandbox/` (ours, not an upstream's). See the crate docs.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post, put};
use serde_json::{Value, json};

use crate::faults::Fault;
use crate::util;
use crate::{Inner, Shared, fms, lock, mp, sft};

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/_sandbox/health",
            get(|| async { util::ok(json!({"ok": true})) }),
        )
        .route(
            "/_sandbox/faults",
            get(get_faults).put(put_faults).delete(clear_faults),
        )
        .route(
            "/_sandbox/faults/{endpoint}",
            get(get_fault).put(put_fault).delete(delete_fault),
        )
        .route("/_sandbox/calls", get(get_calls).delete(reset_calls))
        .route("/_sandbox/calls/reset", post(reset_calls))
        .route("/_sandbox/calls/{endpoint}", get(get_call))
        .route("/_sandbox/held", get(get_held))
        .route("/_sandbox/clock", get(get_clock))
        .route("/_sandbox/clock/advance", post(advance_clock))
        .route("/_sandbox/state", get(get_state))
        .route("/_sandbox/mp/orders/{code}", get(get_mp_order))
        .route("/_sandbox/mp/orders/{code}/usage", put(put_mp_usage))
        .route("/_sandbox/mp/callbacks", get(get_mp_callbacks))
}

fn bad_request(msg: String) -> Response {
    util::json(StatusCode::BAD_REQUEST, json!({"error": msg}))
}

fn not_found(msg: &str) -> Response {
    util::json(StatusCode::NOT_FOUND, json!({"error": msg}))
}

async fn get_faults(State(inner): State<Shared>) -> Response {
    util::ok(json!(lock(&inner.faults).clone()))
}

async fn put_faults(State(inner): State<Shared>, body: axum::body::Bytes) -> Response {
    match serde_json::from_slice::<BTreeMap<String, Fault>>(&body) {
        Ok(map) => {
            *lock(&inner.faults) = map.clone();
            util::ok(json!(map))
        }
        Err(e) => bad_request(e.to_string()),
    }
}

async fn clear_faults(State(inner): State<Shared>) -> Response {
    lock(&inner.faults).clear();
    util::ok(json!({}))
}

async fn get_fault(State(inner): State<Shared>, Path(endpoint): Path<String>) -> Response {
    match lock(&inner.faults).get(&endpoint) {
        Some(f) => util::ok(json!(f)),
        None => not_found("no fault for this endpoint"),
    }
}

async fn put_fault(
    State(inner): State<Shared>,
    Path(endpoint): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    match serde_json::from_slice::<Fault>(&body) {
        Ok(f) => {
            lock(&inner.faults).insert(endpoint, f.clone());
            util::ok(json!(f))
        }
        Err(e) => bad_request(e.to_string()),
    }
}

async fn delete_fault(State(inner): State<Shared>, Path(endpoint): Path<String>) -> Response {
    lock(&inner.faults).remove(&endpoint);
    util::ok(json!({}))
}

async fn get_calls(State(inner): State<Shared>) -> Response {
    util::ok(json!(lock(&inner.counts).clone()))
}

async fn get_call(State(inner): State<Shared>, Path(endpoint): Path<String>) -> Response {
    let count = lock(&inner.counts).get(&endpoint).copied().unwrap_or(0);
    util::ok(json!({"endpoint": endpoint, "count": count}))
}

async fn get_held(State(inner): State<Shared>) -> Response {
    util::ok(json!(lock(&inner.held).clone()))
}

async fn reset_calls(State(inner): State<Shared>) -> Response {
    lock(&inner.counts).clear();
    lock(&inner.held).clear();
    util::ok(json!({}))
}

fn clock_json(inner: &Inner) -> Value {
    json!({
        "now": inner.now().to_rfc3339(),
        "offset_secs": inner.offset_ms.load(Ordering::SeqCst) as f64 / 1000.0,
    })
}

async fn get_clock(State(inner): State<Shared>) -> Response {
    util::ok(clock_json(&inner))
}

async fn advance_clock(State(inner): State<Shared>, body: axum::body::Bytes) -> Response {
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad_request(e.to_string()),
    };
    let units = [
        ("ms", 0.001),
        ("secs", 1.0),
        ("seconds", 1.0),
        ("minutes", 60.0),
        ("hours", 3600.0),
        ("days", 86_400.0),
    ];
    let secs: f64 = units
        .iter()
        .filter_map(|(k, mult)| util::f64_field(&v, k).map(|n| n * mult))
        .sum();
    if !(secs.is_finite() && secs >= 0.0) {
        return bad_request("the clock only moves forward".into());
    }
    inner
        .offset_ms
        .fetch_add((secs * 1000.0) as i64, Ordering::SeqCst);
    inner.tick();
    util::ok(clock_json(&inner))
}

pub(crate) fn summary(inner: &Inner) -> Value {
    json!({
        "now": inner.now().to_rfc3339(),
        "mp": mp::summary(inner),
        "fms": fms::summary(inner),
        "sft": sft::summary(inner),
    })
}

async fn get_state(State(inner): State<Shared>) -> Response {
    inner.tick();
    util::ok(summary(&inner))
}

async fn get_mp_order(State(inner): State<Shared>, Path(code): Path<String>) -> Response {
    inner.tick();
    match mp::order_json(&inner, &code) {
        Some(v) => util::ok(v),
        None => not_found("no such order"),
    }
}

async fn put_mp_usage(
    State(inner): State<Shared>,
    Path(code): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let update: mp::UsageUpdate = match serde_json::from_slice(&body) {
        Ok(u) => u,
        Err(e) => return bad_request(e.to_string()),
    };
    if !mp::set_usage(&inner, &code, update) {
        return not_found("no such order");
    }
    inner.tick();
    match mp::order_json(&inner, &code) {
        Some(v) => util::ok(v),
        None => not_found("no such order"),
    }
}

async fn get_mp_callbacks(State(inner): State<Shared>) -> Response {
    util::ok(json!(lock(&inner.mp).callbacks_sent.clone()))
}
