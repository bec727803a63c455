//! Shared transport: one `reqwest::Client` per upstream, timeouts, retries of idempotent
//! reads (jittered exponential back-off with `backon`), a circuit breaker per upstream,
//! and a `tracing` span per call.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, StatusCode};
use tracing::Instrument;

use crate::config::HttpSettings;
use crate::error::{ErrorKind, Upstream, UpstreamError, excerpt};

/// Whether a call may be repeated safely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotency {
    /// A read: retried on transport errors, timeouts, 5xx and 429.
    Read,
    /// A create or mutation: sent exactly once; a lost answer is "outcome unknown".
    Mutation,
}

/// A raw HTTP answer with a 2xx status.
#[derive(Debug)]
pub struct RawResponse {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Vec<u8>,
}

/// The state of a [`CircuitBreaker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls are refused until the cool-down ends.
    Open,
    /// One probe call is in flight; its outcome closes or re-opens the breaker.
    HalfOpen,
}

#[derive(Debug)]
struct BreakerInner {
    consecutive_failures: u32,
    opened_at: Option<Instant>,
    probe_in_flight: bool,
}

/// A small consecutive-failure circuit breaker: `threshold` failures in a row open it
/// for `cool_down`; then one probe is let through (half-open): success closes it,
/// failure opens it again. Only upstream *availability* failures count (transport,
/// timeout, 5xx, 429) — a business error code means the upstream is up.
#[derive(Debug)]
pub struct CircuitBreaker {
    threshold: u32,
    cool_down: Duration,
    inner: Mutex<BreakerInner>,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(threshold: u32, cool_down: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cool_down,
            inner: Mutex::new(BreakerInner {
                consecutive_failures: 0,
                opened_at: None,
                probe_in_flight: false,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        let g = self.lock();
        match g.opened_at {
            None => BreakerState::Closed,
            Some(t) if g.probe_in_flight || t.elapsed() >= self.cool_down => BreakerState::HalfOpen,
            Some(_) => BreakerState::Open,
        }
    }

    /// Asks to send a call; `false` means refuse it (open, or a probe already running).
    pub fn try_acquire(&self) -> bool {
        let mut g = self.lock();
        match g.opened_at {
            None => true,
            Some(t) if t.elapsed() >= self.cool_down && !g.probe_in_flight => {
                g.probe_in_flight = true;
                true
            }
            Some(_) => false,
        }
    }

    /// Records a call that reached a healthy upstream.
    pub fn on_success(&self) {
        let mut g = self.lock();
        g.consecutive_failures = 0;
        g.opened_at = None;
        g.probe_in_flight = false;
    }

    /// Records an availability failure.
    pub fn on_failure(&self) {
        let mut g = self.lock();
        g.consecutive_failures = g.consecutive_failures.saturating_add(1);
        if g.probe_in_flight || g.consecutive_failures >= self.threshold {
            g.opened_at = Some(Instant::now());
        }
        g.probe_in_flight = false;
    }
}

/// The transport of one upstream: a shared `reqwest::Client`, its settings and breaker.
#[derive(Debug)]
pub struct HttpClient {
    upstream: Upstream,
    client: reqwest::Client,
    settings: HttpSettings,
    breaker: CircuitBreaker,
}

impl HttpClient {
    /// Builds the client (rustls, connect + request timeouts).
    pub fn new(upstream: Upstream, settings: HttpSettings) -> Result<Self, UpstreamError> {
        let client = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .user_agent(concat!("esim-upstream/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| UpstreamError::new(upstream, "client", ErrorKind::Invalid(e.to_string())))?;
        Ok(Self {
            upstream,
            breaker: CircuitBreaker::new(settings.breaker_failure_threshold, settings.breaker_cool_down),
            client,
            settings,
        })
    }

    /// The shared `reqwest::Client`.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The breaker.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// The settings.
    pub fn settings(&self) -> &HttpSettings {
        &self.settings
    }

    /// The upstream.
    pub fn upstream(&self) -> Upstream {
        self.upstream
    }

    /// Sends a request built by `build` (called again for each attempt, so a signed
    /// request gets a fresh `Date`), through the breaker, with retries for reads. Returns
    /// the answer when the status is 2xx; 401/403 become [`ErrorKind::Auth`].
    pub async fn send<F>(
        &self,
        call: &'static str,
        request_id: &str,
        idem: Idempotency,
        build: F,
    ) -> Result<RawResponse, UpstreamError>
    where
        F: Fn(&reqwest::Client) -> Result<RequestBuilder, UpstreamError>,
    {
        let span = tracing::info_span!(
            "upstream_call",
            upstream = self.upstream.name(),
            call,
            request_id,
            duration_ms = tracing::field::Empty,
            outcome = tracing::field::Empty,
            attempts = tracing::field::Empty,
        );
        let started = Instant::now();
        let attempts = std::sync::atomic::AtomicUsize::new(0);
        let once = || async {
            attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.attempt(call, idem, &build).await
        };
        let result = async {
            match idem {
                Idempotency::Mutation => once().await,
                Idempotency::Read => {
                    let backoff = ExponentialBuilder::default()
                        .with_min_delay(self.settings.retry_min_delay)
                        .with_max_delay(self.settings.retry_max_delay)
                        .with_max_times(self.settings.retry_attempts.saturating_sub(1))
                        .with_jitter();
                    once.retry(backoff)
                        .when(|e: &UpstreamError| {
                            e.is_retryable() && !matches!(e.kind, ErrorKind::CircuitOpen)
                        })
                        .notify(|e, d| {
                            tracing::warn!(error = %e, retry_in_ms = d.as_millis() as u64, "retrying read");
                        })
                        .await
                }
            }
        }
        .instrument(span.clone())
        .await;
        span.record("duration_ms", started.elapsed().as_millis() as u64);
        span.record(
            "attempts",
            attempts.load(std::sync::atomic::Ordering::Relaxed) as u64,
        );
        match &result {
            Ok(r) => {
                span.record("outcome", "ok");
                tracing::debug!(parent: &span, status = r.status.as_u16(), "upstream call done");
            }
            Err(e) => {
                span.record("outcome", "error");
                tracing::warn!(parent: &span, error = %e, "upstream call failed");
            }
        }
        result
    }

    async fn attempt<F>(
        &self,
        call: &'static str,
        idem: Idempotency,
        build: &F,
    ) -> Result<RawResponse, UpstreamError>
    where
        F: Fn(&reqwest::Client) -> Result<RequestBuilder, UpstreamError>,
    {
        let mutating = idem == Idempotency::Mutation;
        let err = |kind| UpstreamError::new(self.upstream, call, kind).mutating(mutating);
        if !self.breaker.try_acquire() {
            return Err(err(ErrorKind::CircuitOpen).mutating(false));
        }
        let context = esim_context::current();
        if context.as_ref().is_some_and(|context| context.expired()) {
            // The caller gave up: not sending is the one outcome that is certain.
            self.breaker.on_success();
            return Err(err(ErrorKind::Timeout(Duration::ZERO)).mutating(false));
        }
        let mut req = match build(&self.client) {
            Ok(r) => r,
            Err(e) => {
                // Nothing was sent: release a half-open probe slot as a non-event.
                self.breaker.on_success();
                return Err(e);
            }
        };
        let asked = req
            .try_clone()
            .and_then(|r| r.build().ok())
            .and_then(|r| r.timeout().copied())
            .unwrap_or(self.settings.request_timeout);
        // The upstream sees the caller's request id and trace, and is waited for no longer
        // than the caller still waits.
        let timeout = esim_context::cap_timeout(asked);
        if let Some(context) = &context {
            for (name, value) in context.outgoing_headers() {
                req = req.header(name, value);
            }
        }
        let req = req.timeout(timeout);
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                self.breaker.on_failure();
                // A refused connection never reached the upstream: definitely not done.
                let sent = !e.is_connect();
                return Err(err(transport_kind(&e, timeout)).mutating(mutating && sent));
            }
        };
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = match resp.bytes().await {
            Ok(b) => b.to_vec(),
            Err(e) => {
                self.breaker.on_failure();
                return Err(err(transport_kind(&e, timeout)));
            }
        };
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            self.breaker.on_failure();
        } else {
            self.breaker.on_success();
        }
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(err(ErrorKind::Auth(format!(
                "HTTP {}: {}",
                status.as_u16(),
                excerpt(&body, 200)
            )))
            .mutating(false));
        }
        if !status.is_success() {
            return Err(err(ErrorKind::HttpStatus {
                status: status.as_u16(),
                body: excerpt(&body, 200),
            }));
        }
        Ok(RawResponse {
            status,
            headers,
            body,
        })
    }
}

fn transport_kind(e: &reqwest::Error, timeout: Duration) -> ErrorKind {
    if e.is_timeout() {
        ErrorKind::Timeout(timeout)
    } else {
        ErrorKind::Transport(full_chain(e))
    }
}

fn full_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// Decodes a JSON body, or says which call's body was not the documented JSON.
pub fn decode_json<T: serde::de::DeserializeOwned>(
    upstream: Upstream,
    call: &'static str,
    mutating: bool,
    body: &[u8],
) -> Result<T, UpstreamError> {
    serde_json::from_slice(body).map_err(|e| {
        UpstreamError::new(
            upstream,
            call,
            ErrorKind::Decode(format!("{e} (body: {})", excerpt(body, 120))),
        )
        .mutating(mutating)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_half_opens_and_closes() {
        let b = CircuitBreaker::new(2, Duration::from_millis(30));
        assert!(b.try_acquire());
        b.on_failure();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.try_acquire());
        b.on_failure();
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.try_acquire());
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.try_acquire(), "one probe");
        assert!(!b.try_acquire(), "only one probe");
        b.on_failure();
        assert_eq!(b.state(), BreakerState::Open);
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.try_acquire());
        b.on_success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.try_acquire());
    }
}
