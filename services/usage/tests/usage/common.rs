//! The test harness.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use esim_proto::r#type::v1::Provider;
use esim_proto::usage::v1 as pb;
use esim_proto::usage::v1::usage_service_client::UsageServiceClient;
use esim_runtime::ShutdownPolicy;
use esim_runtime::db::testing::{self, TestDatabase};
use esim_sandbox::{Sandbox, SandboxConfig};
use esim_upstream::config::{HttpSettings, MpConfig, SftConfig};
use esim_upstream::mp::{CreateOrder, MpClient};
use esim_upstream::sft::{LifeCycle, SftClient, SimQuery};
use esim_usage::{Core, Listeners, UsageConfig};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// The callback token the tests configure.
pub const TOKEN: &str = "test-callback-token-0123456789";
/// Sandbox MP product 1: "1GB/7days".
pub const P_1GB_7D: i64 = 1;
pub const MB: i64 = 1024 * 1024;
/// SFT add-on plans (the sandbox reads volume and days from the id).
pub const PLAN_1GB_7D: &str = "PLAN-TRAVEL-1GB-7D";
pub const PLAN_1GB_1D: &str = "PLAN-TEST-1GB-1D";

/// Short back-offs, one attempt: an injected outage fails at once.
fn http() -> HttpSettings {
    HttpSettings {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        retry_attempts: 1,
        retry_min_delay: Duration::from_millis(5),
        retry_max_delay: Duration::from_millis(20),
        breaker_failure_threshold: 1000,
        breaker_cool_down: Duration::from_secs(30),
    }
}

/// A running usage service over a running sandbox.
pub struct Harness {
    pub client: UsageServiceClient<Channel>,
    pub sandbox: Sandbox,
    pub callback_addr: SocketAddr,
    pub core: Arc<Core>,
    pub mp: MpClient,
    pub sft: SftClient,
    pub label: &'static str,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
    _database: TestDatabase,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The default test configuration: thresholds 50/80/100, a poller that never runs by
/// itself (tests call it), quick watch polling.
pub fn config() -> UsageConfig {
    UsageConfig {
        callback_token: Some(esim_domain::Secret::new(TOKEN)),
        poll_interval: Duration::from_secs(3600),
        watch_poll: Duration::from_millis(50),
        ..UsageConfig::default()
    }
}

/// One fresh database per configured engine.
pub async fn databases() -> Vec<TestDatabase> {
    testing::fresh_databases().await.expect("test databases")
}

impl Harness {
    pub async fn start(database: TestDatabase) -> Self {
        Self::start_with(database, config()).await
    }

    pub async fn start_with(database: TestDatabase, config: UsageConfig) -> Self {
        let label = if database.url.starts_with("sqlite") {
            "sqlite"
        } else {
            "postgres"
        };
        let shutdown = CancellationToken::new();
        let sandbox = Sandbox::new(SandboxConfig {
            timeout_hold_ms: 3_000,
            tick_interval_ms: 100,
            sft_plan_ids: vec![PLAN_1GB_7D.into(), PLAN_1GB_1D.into()],
            ..SandboxConfig::default()
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sandbox_addr = listener.local_addr().unwrap();
        {
            let sandbox = sandbox.clone();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                let _ = sandbox
                    .serve(listener, async move { stop.cancelled().await })
                    .await;
            });
        }
        let mp_config = MpConfig {
            base_url: format!("http://{sandbox_addr}"),
            http: http(),
            ..MpConfig::default()
        };
        let sft_config = SftConfig {
            base_url: format!("http://{sandbox_addr}/sft"),
            lifecycle_timeout: Duration::from_secs(5),
            http: http(),
            ..SftConfig::default()
        };
        let db =
            esim_runtime::db::connect_and_migrate::<esim_usage::migration::Migrator>(&database.url, true)
                .await
                .expect("database");
        let core = Core::new(
            db,
            Arc::new(MpClient::new(mp_config.clone()).unwrap()),
            Arc::new(SftClient::new(sft_config.clone()).unwrap()),
            config,
            shutdown.clone(),
        );
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc_addr = grpc.local_addr().unwrap();
        let callback = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let callback_addr = callback.local_addr().unwrap();
        {
            let core = core.clone();
            tokio::spawn(async move {
                let policy = ShutdownPolicy {
                    drain_delay: Duration::ZERO,
                    grace: Duration::from_secs(1),
                };
                if let Err(err) = esim_usage::serve(core, Listeners { grpc, callback }, policy).await {
                    panic!("usage service failed: {err}");
                }
            });
        }
        let mut client = None;
        for _ in 0..100 {
            match Channel::from_shared(format!("http://{grpc_addr}"))
                .unwrap()
                .connect()
                .await
            {
                Ok(channel) => {
                    client = Some(UsageServiceClient::new(channel));
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        Self {
            client: client.expect("connect to the usage service"),
            sandbox,
            callback_addr,
            core,
            mp: MpClient::new(mp_config).unwrap(),
            sft: SftClient::new(sft_config).unwrap(),
            label,
            http: reqwest::Client::new(),
            shutdown,
            _database: database,
        }
    }

    /// The callback URL without the token.
    pub fn callback_base(&self) -> String {
        format!("http://{}/callbacks/mp/alarm", self.callback_addr)
    }

    /// Creates an MP order in the sandbox (1 GB) and returns its order code.
    pub async fn mp_order(&self) -> String {
        self.mp
            .activation_code(
                &CreateOrder {
                    product_id: P_1GB_7D,
                    ..Default::default()
                },
                "test-order",
            )
            .await
            .expect("activationCode")
            .order_code
    }

    /// Tracks `esim` as an MP eSIM with `code`.
    pub async fn track_mp(&self, esim: &str, code: &str) -> pb::Usage {
        self.client
            .clone()
            .start_usage_tracking(pb::StartUsageTrackingRequest {
                esim: format!("esims/{esim}"),
                order: format!("orders/o-{esim}"),
                provider: Provider::Mp as i32,
                mp_order_codes: vec![code.to_owned()],
                ..Default::default()
            })
            .await
            .expect("StartUsageTracking")
            .into_inner()
    }

    /// Provisions an SFT SIM with the add-on `plan`; returns its endpoint id.
    pub async fn sft_endpoint(&self, plan: &str) -> String {
        let sim = self
            .sft
            .fetch_sim(&SimQuery::available(1), "test")
            .await
            .unwrap()
            .into_iter()
            .next()
            .expect("an available SFT SIM");
        self.sft
            .change_life_cycle(&sim.end_point_id, LifeCycle::Active, "1", "test")
            .await
            .unwrap();
        self.sft
            .subscribe_addon(&sim.end_point_id, plan, "test")
            .await
            .unwrap();
        sim.end_point_id
    }

    pub async fn track_sft(&self, esim: &str, endpoint: &str) -> pb::Usage {
        self.client
            .clone()
            .start_usage_tracking(pb::StartUsageTrackingRequest {
                esim: format!("esims/{esim}"),
                order: format!("orders/o-{esim}"),
                provider: Provider::Sft as i32,
                sft_endpoint_id: endpoint.to_owned(),
                ..Default::default()
            })
            .await
            .expect("StartUsageTracking")
            .into_inner()
    }

    pub async fn get_usage(&self, esim: &str) -> Result<pb::Usage, tonic::Status> {
        self.client
            .clone()
            .get_usage(pb::GetUsageRequest {
                name: format!("esims/{esim}/usage"),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// Every stored alert, oldest first.
    pub async fn all_alerts(&self) -> Vec<pb::Alert> {
        self.client
            .clone()
            .list_alerts(pb::ListAlertsRequest {
                page_size: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .alerts
    }

    /// POSTs `body` to the callback endpoint with `token` (None: no token).
    pub async fn post_callback(
        &self,
        token: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::StatusCode {
        let url = match token {
            Some(t) => format!("{}?token={t}", self.callback_base()),
            None => self.callback_base(),
        };
        self.http
            .post(url)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .expect("callback POST")
            .status()
    }
}

/// Asserts an INVALID_ARGUMENT naming `field`.
pub fn assert_invalid(result: Result<impl std::fmt::Debug, tonic::Status>, field: &str) {
    use tonic_types::StatusExt;
    let status = result.expect_err("INVALID_ARGUMENT expected");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    let details = status.get_error_details();
    let violations = details
        .bad_request()
        .expect("field violations")
        .field_violations
        .clone();
    assert_eq!(violations[0].field, field, "{status:?}");
}
