//! The clients against the real `esim-sandbox` (issue 3: "client ↔ sandbox round trip for
//! every call"). Each test starts its own sandbox on 127.0.0.1:0 and points the clients at
//! it: MP at `http://ADDR`, FMS at `http://ADDR/fms`, SFT at `http://ADDR/sft`. Time-driven
//! behaviour (token expiry, pre-order windows, payment processing, usage) is driven with the
//! sandbox clock, never with sleeps. The tests themselves are in `roundtrip_mp`,
//! `roundtrip_fms`, `roundtrip_sft` and `roundtrip_faults`.

use std::time::Duration;

use esim_sandbox::{Sandbox, SandboxConfig};
use esim_upstream::config::{FmsConfig, HttpSettings, MpConfig, SftConfig};
use esim_upstream::fms::FmsClient;
use esim_upstream::mp::MpClient;
use esim_upstream::sft::SftClient;

/// Bytes in one MB as MP, FMS and the sandbox count them.
pub const MB: u64 = 1024 * 1024;

/// A sandbox serving on a free loopback port until dropped.
pub struct Sb {
    pub sandbox: Sandbox,
    /// `http://127.0.0.1:PORT`.
    pub addr: String,
    /// The transport settings of the clients made by [`Sb::mp`], [`Sb::fms`], [`Sb::sft`].
    pub http: HttpSettings,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Short back-offs; a 2 s request timeout (generous for a loaded CI box, the sandbox
/// answers in milliseconds); a breaker that does not open unless a test asks for it.
pub fn fast_http() -> HttpSettings {
    HttpSettings {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(2),
        retry_attempts: 3,
        retry_min_delay: Duration::from_millis(5),
        retry_max_delay: Duration::from_millis(20),
        breaker_failure_threshold: 1000,
        breaker_cool_down: Duration::from_secs(30),
    }
}

/// Like [`fast_http`] with a 500 ms request timeout, so injected timeouts and latency fail
/// fast.
pub fn fault_http() -> HttpSettings {
    HttpSettings {
        request_timeout: Duration::from_millis(500),
        ..fast_http()
    }
}

/// A sandbox with the default configuration, except that an injected timeout holds a
/// request only 3 s (longer than any client timeout here, short enough not to linger).
pub async fn start() -> Sb {
    start_with(|_| {}).await
}

/// Like [`start`], with clients of 500 ms request timeout (for the fault tests).
pub async fn start_for_faults() -> Sb {
    Sb {
        http: fault_http(),
        ..start().await
    }
}

/// Like [`start`], with `tweak` applied to the configuration.
pub async fn start_with(tweak: impl FnOnce(&mut SandboxConfig)) -> Sb {
    let mut config = SandboxConfig {
        timeout_hold_ms: 3_000,
        ..SandboxConfig::default()
    };
    tweak(&mut config);
    let sandbox = Sandbox::new(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = format!("http://{}", listener.local_addr().expect("local addr"));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let s = sandbox.clone();
    tokio::spawn(async move {
        let _ = s
            .serve(listener, async {
                let _ = rx.await;
            })
            .await;
    });
    Sb {
        sandbox,
        addr,
        http: fast_http(),
        _stop: tx,
    }
}

impl Sb {
    pub fn mp_config(&self) -> MpConfig {
        MpConfig {
            base_url: self.addr.clone(),
            http: self.http.clone(),
            ..MpConfig::default()
        }
    }

    pub fn fms_config(&self) -> FmsConfig {
        FmsConfig {
            base_url: format!("{}/fms", self.addr),
            http: self.http.clone(),
            ..FmsConfig::default()
        }
    }

    pub fn sft_config(&self) -> SftConfig {
        SftConfig {
            base_url: format!("{}/sft", self.addr),
            lifecycle_timeout: Duration::from_secs(2),
            http: self.http.clone(),
            ..SftConfig::default()
        }
    }

    pub fn mp(&self) -> MpClient {
        MpClient::new(self.mp_config()).expect("MP client")
    }

    pub fn fms(&self) -> FmsClient {
        FmsClient::new(self.fms_config()).expect("FMS client")
    }

    pub fn sft(&self) -> SftClient {
        SftClient::new(self.sft_config()).expect("SFT client")
    }

    pub fn calls(&self, endpoint: &str) -> u64 {
        self.sandbox.call_count(endpoint)
    }

    /// The number of MP orders the sandbox holds (whether or not a client heard of them).
    pub fn mp_orders(&self) -> u64 {
        self.sandbox.state_summary()["mp"]["orders"]
            .as_u64()
            .expect("mp.orders in the state summary")
    }
}
