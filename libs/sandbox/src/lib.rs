//! A faithful, stateful simulator of the MP, FMS and SFT upstream platforms, served by one axum
//! HTTP server on one port (default `127.0.0.1:8080`).
//!
//! # Routes
//!
//! | upstream | base URL for a client | routes |
//! |---|---|---|
//! | MP | `http://HOST:PORT/mp-api/api/esim` | `GET v2/productList`, `POST v2/activationCode`, `POST v2/topUp`, `GET queryOrderStatus`, `GET queryTraffic`, `GET v2/queryHistoryDailyTraffic`, `POST switchOrder`, `POST saveAlarmCallbackInterface` |
//! | FMS | `http://HOST:PORT/fms` | `POST /user/emailRegister`, `/user/login`, `/user/emailLogin`, `/user/passwordReset`, `/package/countryPackageList`, `/package/packageList`, `/package/detail`, `/v1.2/package/preOrderPackage` (also `/package/preOrderPackage`), `/payment/webhook` (also `/v1.1/payment/webhook`), `/package/queryOrdStatusAndEmail`, `/order/myEsimDetail` |
//! | SFT | `http://HOST:PORT/sft` | `POST /api/login`, `POST /api/refreshToken` (also `/api/refresh`), `GET /api/fetchSIM`, `POST /api/EndPointLifeCycleChange`, `POST /api/SubscribeAddon`, `GET /api/GetEndPointAddonDetails?endPointId=` (also `getEndPointAddonDetails`, `POST` with the request envelope, and `GET /api/endpoint/{id}/addons`) |
//! | admin | `http://HOST:PORT/_sandbox` | see below |
//!
//! # Auth
//!
//! * MP: APISIX `hmac-auth` (old header style) exactly as `UPSTREAMS.md` says; any failure
//!   answers HTTP 401 `{"message":"client request can't be validated"}`. The `Date` header is
//!   compared with the *real* wall clock (clients sign with real time), within
//!   `mp_clock_skew_secs`.
//! * FMS: header `x-access-token` from emailRegister / login; unknown or expired (3 days of
//!   sandbox clock) answers HTTP 200 `{"code":7,...}`. Public calls: emailRegister, login,
//!   emailLogin, passwordReset (checks the old password or a valid token).
//! * SFT: `X-Authorization: Bearer <jwt>` (HS256, `exp` in sandbox-clock seconds); missing,
//!   bad or expired → HTTP 401.
//!
//! # Admin routes (ours), all JSON
//!
//! * `GET /_sandbox/health` → `{"ok":true}`
//! * `GET /_sandbox/faults` → `{"<endpoint>": Fault, ...}`; `PUT /_sandbox/faults` (body: the
//!   whole map) replaces all; `DELETE /_sandbox/faults` clears all;
//!   `PUT /_sandbox/faults/{endpoint}` (body: a [`Fault`]) sets one;
//!   `DELETE /_sandbox/faults/{endpoint}` removes one.
//! * `GET /_sandbox/calls` → `{"<endpoint>": count, ...}`; `GET /_sandbox/calls/{endpoint}` →
//!   `{"endpoint":..,"count":n}`; `DELETE /_sandbox/calls` (or `POST /_sandbox/calls/reset`)
//!   resets all counts (and held times).
//! * `GET /_sandbox/held` → `{"<endpoint>": {"calls": n, "total_us": n}, ...}`: how long the
//!   sandbox held each endpoint's calls in all, injected latency included, from the parsed
//!   request to the answer (benchmarks subtract the upstream's real time, not a nominal one).
//! * `GET /_sandbox/clock` → `{"now":"<rfc3339>","offset_secs":n}`;
//!   `POST /_sandbox/clock/advance` with `{"secs": n}` (or `{"seconds": n}`, `{"minutes": n}`,
//!   `{"hours": n}`, `{"days": n}`) → the new clock.
//! * `GET /_sandbox/state` → summaries: MP orders by status, callback URL, stock; FMS users,
//!   pre-orders by status; SFT pool counts by status, add-ons.
//! * `GET /_sandbox/mp/orders/{orderCode}` → the order's internals;
//!   `PUT /_sandbox/mp/orders/{orderCode}/usage` with `{"used_mb": f, "used_bytes": n,
//!   "rate_bytes_per_sec": f, "status": "1"}` (all optional) sets usage / growth rate / status.
//! * `GET /_sandbox/mp/callbacks` → every alarm callback sent (`url`, `body`, `ok`).
//!
//! # Endpoint keys (faults and call counts)
//!
//! `mp.productList`, `mp.activationCode`, `mp.topUp`, `mp.queryOrderStatus`, `mp.queryTraffic`,
//! `mp.queryHistoryDailyTraffic`, `mp.switchOrder`, `mp.saveAlarmCallbackInterface`,
//! `mp.alarmCallback` (outbound; counts callbacks sent);
//! `fms.emailRegister`, `fms.login`, `fms.passwordReset`, `fms.countryPackageList`,
//! `fms.packageList`, `fms.detail`, `fms.preOrderPackage`, `fms.paymentWebhook`,
//! `fms.queryOrdStatusAndEmail`, `fms.myEsimDetail`;
//! `sft.login`, `sft.refresh`, `sft.fetchSIM`, `sft.EndPointLifeCycleChange`,
//! `sft.SubscribeAddon`, `sft.addonDetails`.
//! A fault may also be set for `mp.*`, `fms.*`, `sft.*` or `*`; the most specific key wins.
//! Every call is counted, including faulted and unauthenticated ones.
//!
//! # Clock
//!
//! The sandbox's "now" is the real time plus a manual offset ([`Sandbox::advance_clock`]).
//! It drives MP order activation, validity and usage, FMS pre-order expiry, payment processing
//! and token expiry, SFT JWT expiry and add-on counters. A background task (started by
//! [`Sandbox::serve`]) ticks every `tick_interval_ms`; advancing the clock ticks at once.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::response::Response;
use chrono::{DateTime, Utc};

mod admin;
pub mod catalog;
mod config;
mod faults;
mod fms;
pub mod ids;
mod mp;
mod sft;
mod util;

pub use config::SandboxConfig;
pub use esim_config::ConfigError;
pub use faults::{Fault, FaultPhase};

/// Locks a mutex, recovering from poisoning (a panicked handler must not wedge the sandbox).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Shared state behind [`Sandbox`].
pub(crate) struct Inner {
    pub(crate) config: SandboxConfig,
    pub(crate) catalog: catalog::Catalog,
    offset_ms: AtomicI64,
    faults: Mutex<BTreeMap<String, Fault>>,
    counts: Mutex<BTreeMap<String, u64>>,
    held: Mutex<BTreeMap<String, Held>>,
    rng: Mutex<ids::Rng>,
    pub(crate) mp: Mutex<mp::MpState>,
    pub(crate) fms: Mutex<fms::FmsState>,
    pub(crate) sft: Mutex<sft::SftState>,
    pub(crate) http: reqwest::Client,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

pub(crate) type Shared = Arc<Inner>;

impl Inner {
    /// The sandbox clock.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::milliseconds(self.offset_ms.load(Ordering::SeqCst))
    }

    pub(crate) fn count(&self, endpoint: &str) {
        *lock(&self.counts).entry(endpoint.to_owned()).or_default() += 1;
    }

    /// The fault for `endpoint` (most specific key wins), consuming one of its `times`.
    pub(crate) fn take_fault(&self, endpoint: &str) -> Option<Fault> {
        let mut faults = lock(&self.faults);
        let provider = endpoint.split('.').next().unwrap_or_default();
        let keys = [endpoint.to_owned(), format!("{provider}.*"), "*".to_owned()];
        let key = keys.into_iter().find(|k| faults.contains_key(k))?;
        let fault = faults.get_mut(&key)?;
        let out = fault.clone();
        if let Some(n) = fault.times.as_mut() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                faults.remove(&key);
            }
        }
        Some(out)
    }

    /// The fault for `endpoint` without consuming it.
    pub(crate) fn peek_fault(&self, endpoint: &str) -> Option<Fault> {
        let faults = lock(&self.faults);
        let provider = endpoint.split('.').next().unwrap_or_default();
        [endpoint.to_owned(), format!("{provider}.*"), "*".to_owned()]
            .iter()
            .find_map(|k| faults.get(k).cloned())
    }

    fn roll(&self) -> f64 {
        lock(&self.rng).next_f64()
    }

    /// Runs one endpoint call: counts it, applies its fault before and/or after `handler`, and
    /// adds the time it took to the endpoint's [`Held`].
    pub(crate) async fn guarded(&self, endpoint: &str, handler: impl FnOnce() -> Response) -> Response {
        self.count(endpoint);
        let start = std::time::Instant::now();
        let response = self.faulted(endpoint, handler).await;
        lock(&self.held)
            .entry(endpoint.to_owned())
            .or_default()
            .add(start.elapsed());
        response
    }

    async fn faulted(&self, endpoint: &str, handler: impl FnOnce() -> Response) -> Response {
        let fault = self.take_fault(endpoint).filter(Fault::affects_responses);
        let hold = self.config.timeout_hold_ms;
        if let Some(f) = fault.as_ref().filter(|f| f.phase == FaultPhase::Before) {
            let roll = self.roll();
            if let Some(r) = faults::apply(f, roll, hold).await {
                tracing::info!(endpoint, "sandbox fault injected before the call");
                return r;
            }
        }
        let response = handler();
        if let Some(f) = fault.as_ref().filter(|f| f.phase == FaultPhase::After) {
            let roll = self.roll();
            if let Some(r) = faults::apply(f, roll, hold).await {
                tracing::info!(endpoint, "sandbox fault injected after the call");
                return r;
            }
        }
        response
    }

    /// Advances every time-driven state to the sandbox clock's now.
    pub(crate) fn tick(self: &Arc<Self>) {
        let now = self.now();
        mp::tick(self, now);
        fms::tick(self, now);
    }
}

/// Calls to one endpoint and the time the sandbox held them in all: the upstream's real share of
/// a call (a 50 ms latency fault holds a call a little longer, as the timer rounds up).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Held {
    /// Calls answered.
    pub calls: u64,
    /// Their time in all, in microseconds.
    pub total_us: u64,
}

impl Held {
    fn add(&mut self, took: Duration) {
        self.calls += 1;
        self.total_us += u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
    }

    /// The calls since `earlier` (a reading of the same endpoint).
    pub fn since(self, earlier: Held) -> Held {
        Held {
            calls: self.calls.saturating_sub(earlier.calls),
            total_us: self.total_us.saturating_sub(earlier.total_us),
        }
    }

    /// The mean time per call, if there was one.
    pub fn mean(self) -> Option<Duration> {
        (self.calls > 0).then(|| Duration::from_micros(self.total_us / self.calls))
    }
}

/// The sandbox: a cheap, cloneable handle on its state. See the crate docs for routes.
#[derive(Debug, Clone)]
pub struct Sandbox {
    inner: Shared,
}

impl Sandbox {
    /// A sandbox with fresh state generated from `config.seed`.
    pub fn new(config: SandboxConfig) -> Self {
        let mut rng = ids::Rng::new(config.seed);
        let catalog = catalog::Catalog::generate(&mut rng);
        let mp = mp::MpState::new(&config, ids::Rng::new(rng.next_u64()));
        let fms = fms::FmsState::new(ids::Rng::new(rng.next_u64()));
        let sft = sft::SftState::new(&config, ids::Rng::new(rng.next_u64()));
        let fault_rng = ids::Rng::new(rng.next_u64());
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Self {
            inner: Arc::new(Inner {
                faults: Mutex::new(config.faults.clone()),
                config,
                catalog,
                offset_ms: AtomicI64::new(0),
                counts: Mutex::new(BTreeMap::new()),
                held: Mutex::new(BTreeMap::new()),
                rng: Mutex::new(fault_rng),
                mp: Mutex::new(mp),
                fms: Mutex::new(fms),
                sft: Mutex::new(sft),
                http,
            }),
        }
    }

    /// The configuration the sandbox runs with.
    pub fn config(&self) -> &SandboxConfig {
        &self.inner.config
    }

    /// All routes (MP, FMS, SFT, admin) on one router.
    pub fn router(&self) -> Router {
        Router::new()
            .merge(mp::routes())
            .merge(fms::routes())
            .merge(sft::routes())
            .merge(admin::routes())
            .fallback(util::not_found)
            .with_state(self.inner.clone())
    }

    /// Serves the sandbox on `listener` until `shutdown` completes. Also runs the background
    /// tick (usage growth, alarm callbacks, payment processing).
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let ticker = {
            let inner = self.inner.clone();
            let every = Duration::from_millis(self.inner.config.tick_interval_ms.max(10));
            tokio::spawn(async move {
                let mut interval = tokio::time::interval(every);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    interval.tick().await;
                    inner.tick();
                }
            })
        };
        let result = axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await;
        ticker.abort();
        result
    }

    /// How many calls `endpoint` (e.g. `mp.activationCode`) has received, faulted ones included.
    pub fn call_count(&self, endpoint: &str) -> u64 {
        lock(&self.inner.counts).get(endpoint).copied().unwrap_or(0)
    }

    /// Every endpoint's call count.
    pub fn call_counts(&self) -> BTreeMap<String, u64> {
        lock(&self.inner.counts).clone()
    }

    /// Resets every call count (and held time) to zero.
    pub fn reset_call_counts(&self) {
        lock(&self.inner.counts).clear();
        lock(&self.inner.held).clear();
    }

    /// How long the sandbox has held `endpoint`'s calls, injected latency included.
    pub fn held(&self, endpoint: &str) -> Held {
        lock(&self.inner.held).get(endpoint).copied().unwrap_or_default()
    }

    /// Sets (replaces) the fault of `endpoint` (an endpoint key, `mp.*`, or `*`).
    pub fn set_fault(&self, endpoint: &str, fault: Fault) {
        lock(&self.inner.faults).insert(endpoint.to_owned(), fault);
    }

    /// Removes the fault of `endpoint`.
    pub fn clear_fault(&self, endpoint: &str) {
        lock(&self.inner.faults).remove(endpoint);
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        lock(&self.inner.faults).clear();
    }

    /// The faults in force.
    pub fn faults(&self) -> BTreeMap<String, Fault> {
        lock(&self.inner.faults).clone()
    }

    /// Moves the sandbox clock forward by `by` and advances all time-driven state at once
    /// (alarm callbacks are sent from a spawned task when a Tokio runtime is present).
    pub fn advance_clock(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.inner.offset_ms.fetch_add(ms, Ordering::SeqCst);
        self.inner.tick();
    }

    /// The sandbox clock's now.
    pub fn now(&self) -> DateTime<Utc> {
        self.inner.now()
    }

    /// Sets an MP order's used data (MB). Returns false when the order does not exist.
    /// Crossing an alarm threshold sends the callback (from a spawned task).
    pub fn set_mp_usage_mb(&self, order_code: &str, used_mb: f64) -> bool {
        let ok = mp::set_usage(
            &self.inner,
            order_code,
            mp::UsageUpdate {
                used_bytes: Some((used_mb * mp::MB as f64) as u64),
                ..Default::default()
            },
        );
        if ok {
            self.inner.tick();
        }
        ok
    }

    /// Sets an MP order's usage growth rate in bytes per sandbox second.
    pub fn set_mp_usage_rate(&self, order_code: &str, bytes_per_sec: f64) -> bool {
        mp::set_usage(
            &self.inner,
            order_code,
            mp::UsageUpdate {
                rate_bytes_per_sec: Some(bytes_per_sec),
                ..Default::default()
            },
        )
    }

    /// The status ("0".."3") of an MP order (or one of its top-up codes).
    pub fn mp_order_status(&self, order_code: &str) -> Option<String> {
        self.inner.tick();
        mp::order_status(&self.inner, order_code)
    }

    /// The registered MP alarm callback URL.
    pub fn mp_callback_url(&self) -> Option<String> {
        lock(&self.inner.mp).callback_url.clone()
    }

    /// Alarm callbacks sent so far (url, JSON body, whether the POST succeeded).
    pub fn mp_callbacks_sent(&self) -> Vec<serde_json::Value> {
        lock(&self.inner.mp).callbacks_sent.clone()
    }

    /// JSON summaries of the state (the body of `GET /_sandbox/state`).
    pub fn state_summary(&self) -> serde_json::Value {
        admin::summary(&self.inner)
    }

    /// Number of SFT SIMs still Pre-Active (12) and Attached (1).
    pub fn sft_available_sims(&self) -> usize {
        sft::available(&self.inner)
    }
}
