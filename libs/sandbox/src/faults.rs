//! Fault injection: what a fault is, and how it turns a response into a failure.

use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// When a fault takes effect relative to the endpoint's own work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultPhase {
    /// Before the endpoint does anything: no state changes (default).
    #[default]
    Before,
    /// After the endpoint committed its state change (e.g. the order exists) but before the
    /// caller hears of it: "unknown outcome" scenarios.
    After,
}

/// A fault injected into one endpoint. JSON form (every field optional):
///
/// ```json
/// {"latency_ms": 200, "error_rate": 0.5, "status": 503, "timeout": false,
///  "timeout_ms": 600000, "malformed": false, "duplicate_callbacks": false,
///  "phase": "before", "times": 3}
/// ```
///
/// Effects, in this order, at the chosen `phase`:
/// 1. `latency_ms`: the answer is delayed that long;
/// 2. `timeout`: the request is held `timeout_ms` (default the config's `timeout_hold_ms`,
///    10 minutes) and then answered with HTTP 504;
/// 3. error: with probability `error_rate` (seeded RNG), or always when `status` is set and
///    `error_rate` is 0, the answer is HTTP `status` (default 500) with a small JSON body;
/// 4. `malformed`: HTTP 200 with `Content-Type: application/json` and a truncated JSON body.
///
/// `duplicate_callbacks` (on `mp.alarmCallback`) sends every alarm callback twice.
/// `times`: the fault applies to the next N calls only, then it is removed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Fault {
    /// Added latency in milliseconds.
    pub latency_ms: u64,
    /// Probability (0..=1) that a call answers with an HTTP error.
    pub error_rate: f64,
    /// The HTTP status of an injected error (default 500). Alone, it makes every call fail.
    pub status: Option<u16>,
    /// Hold the request far longer than any client timeout, then answer 504.
    pub timeout: bool,
    /// How long `timeout` holds, in ms (default: config `timeout_hold_ms`).
    pub timeout_ms: Option<u64>,
    /// Answer 200 with a malformed (truncated) JSON body.
    pub malformed: bool,
    /// Send MP alarm callbacks twice (key `mp.alarmCallback`).
    pub duplicate_callbacks: bool,
    /// Before or after the endpoint's state change.
    pub phase: FaultPhase,
    /// Apply to the next N calls only (None: until cleared).
    pub times: Option<u64>,
}

impl Fault {
    /// A fault answering HTTP 500 on every call.
    pub fn error_500() -> Self {
        Self {
            status: Some(500),
            ..Self::default()
        }
    }

    /// A fault answering the given HTTP status on every call.
    pub fn status(status: u16) -> Self {
        Self {
            status: Some(status),
            ..Self::default()
        }
    }

    /// A fault answering HTTP 500 with probability `rate`.
    pub fn error_rate(rate: f64) -> Self {
        Self {
            error_rate: rate,
            ..Self::default()
        }
    }

    /// A fault adding `ms` milliseconds of latency.
    pub fn latency(ms: u64) -> Self {
        Self {
            latency_ms: ms,
            ..Self::default()
        }
    }

    /// A fault holding every request (far longer than a client's timeout).
    pub fn timeout() -> Self {
        Self {
            timeout: true,
            ..Self::default()
        }
    }

    /// A fault answering a malformed JSON body.
    pub fn malformed() -> Self {
        Self {
            malformed: true,
            ..Self::default()
        }
    }

    /// A fault sending MP alarm callbacks twice.
    pub fn duplicate_callbacks() -> Self {
        Self {
            duplicate_callbacks: true,
            ..Self::default()
        }
    }

    /// The same fault, taking effect after the state change.
    pub fn after_commit(mut self) -> Self {
        self.phase = FaultPhase::After;
        self
    }

    /// The same fault, for the next `n` calls only.
    pub fn times(mut self, n: u64) -> Self {
        self.times = Some(n);
        self
    }

    /// Whether this fault changes HTTP answers at all.
    pub(crate) fn affects_responses(&self) -> bool {
        self.latency_ms > 0
            || self.error_rate > 0.0
            || self.status.is_some()
            || self.timeout
            || self.malformed
    }
}

/// Applies `fault` (already chosen for this phase). `roll` is a uniform number in [0, 1).
/// Returns `Some(response)` when the fault replaces the endpoint's answer.
pub(crate) async fn apply(fault: &Fault, roll: f64, hold_default_ms: u64) -> Option<Response> {
    if fault.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(fault.latency_ms)).await;
    }
    if fault.timeout {
        let hold = fault.timeout_ms.unwrap_or(hold_default_ms);
        tokio::time::sleep(Duration::from_millis(hold)).await;
        return Some(
            (
                StatusCode::GATEWAY_TIMEOUT,
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"message":"sandbox injected timeout"}"#,
            )
                .into_response(),
        );
    }
    let errs = if fault.error_rate > 0.0 {
        roll < fault.error_rate
    } else {
        fault.status.is_some()
    };
    if errs {
        let status = fault
            .status
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Some(
            (
                status,
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"message":"sandbox injected fault"}"#,
            )
                .into_response(),
        );
    }
    if fault.malformed {
        return Some(
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"code":200,"msg":"Succ"#,
            )
                .into_response(),
        );
    }
    None
}
