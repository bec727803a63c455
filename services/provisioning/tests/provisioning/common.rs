//! The test harness.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use esim_proto::provisioning::v1 as pb;
use esim_proto::provisioning::v1::provisioning_service_client::ProvisioningServiceClient;
use esim_runtime::db::testing::TestDatabase;
use esim_runtime::{Env, ServiceContext};
use esim_sandbox::{Sandbox, SandboxConfig};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// The activation-code key the tests configure (base64 of 32 bytes of 0x2a).
pub const TEST_KEY: &str = "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=";

/// A plan the sandbox accepts.
pub const PLAN: &str = "PLAN-TRAVEL-3GB-15D";

/// A running provisioning service over a running sandbox.
pub struct Harness {
    pub client: ProvisioningServiceClient<Channel>,
    pub sandbox: Sandbox,
    pub sandbox_addr: std::net::SocketAddr,
    pub db: DatabaseConnection,
    pub label: &'static str,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<()>,
    _database: TestDatabase,
}

impl Harness {
    /// Starts a sandbox with `pool` SFT SIMs and the service on `database`.
    pub async fn start(database: TestDatabase, pool: usize) -> Self {
        Self::start_with(database, pool, &[]).await
    }

    /// Same, with extra `PROVISIONING_*` / upstream settings.
    pub async fn start_with(database: TestDatabase, pool: usize, extra: &[(&str, &str)]) -> Self {
        let label = if database.url.starts_with("sqlite") {
            "sqlite"
        } else {
            "postgres"
        };
        let shutdown = CancellationToken::new();
        let sandbox = Sandbox::new(SandboxConfig {
            sft_pool_size: pool,
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
        let mut vars: Vec<(String, String)> = vec![
            ("PROVISIONING_LISTEN_ADDR".into(), "127.0.0.1:0".into()),
            ("PROVISIONING_DATABASE_URL".into(), database.url.clone()),
            ("PROVISIONING_ACTIVATION_CODE_KEY".into(), TEST_KEY.into()),
            ("PROVISIONING_SUBSCRIBE_RETRY_MIN_DELAY_MS".into(), "10".into()),
            ("PROVISIONING_SUBSCRIBE_RETRY_MAX_DELAY_MS".into(), "40".into()),
            ("PROVISIONING_SHUTDOWN_GRACE_SECS".into(), "1".into()),
            // One service alone, called by the tests directly.
            ("PROVISIONING_INTERNAL_AUTH".into(), "off".into()),
            ("SFT_BASE_URL".into(), format!("http://{sandbox_addr}/sft")),
            ("MP_BASE_URL".into(), format!("http://{sandbox_addr}")),
            // Faults are injected on purpose: keep the breakers out of the way.
            ("SFT_BREAKER_THRESHOLD".into(), "100000".into()),
            ("MP_BREAKER_THRESHOLD".into(), "100000".into()),
            ("SFT_RETRY_ATTEMPTS".into(), "1".into()),
        ];
        for (k, v) in extra {
            vars.retain(|(key, _)| key != k);
            vars.push(((*k).to_owned(), (*v).to_owned()));
        }
        let env = Env::from_vars("PROVISIONING", vars);
        let context = ServiceContext::bind(esim_provisioning::SERVICE, env, shutdown.child_token())
            .await
            .unwrap();
        let addr = context.local_addr().unwrap();
        let server = tokio::spawn(async move {
            if let Err(err) = esim_provisioning::run(context).await {
                panic!("the provisioning service failed: {err}");
            }
        });
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let client = ProvisioningServiceClient::new(channel);
        // Served once migrations ran: wait for the first answer.
        let mut probe = client.clone();
        for _ in 0..200 {
            let status = probe
                .get_esim(pb::GetEsimRequest {
                    name: "esims/00000000000000000000000000".into(),
                })
                .await
                .unwrap_err();
            if status.code() == tonic::Code::NotFound {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let db = esim_runtime::db::connect(&database.url).await.unwrap();
        Self {
            client,
            sandbox,
            sandbox_addr,
            db,
            label,
            shutdown,
            server,
            _database: database,
        }
    }

    /// Provisions an SFT eSIM for `order`.
    pub async fn provision(&self, request_id: &str, order: &str) -> Result<pb::Esim, tonic::Status> {
        self.client
            .clone()
            .provision_esim(pb::ProvisionEsimRequest {
                request_id: request_id.into(),
                order: order.into(),
                sft_plan_id: PLAN.into(),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// Claim rows `(endpoint, status)` as stored.
    pub async fn claims(&self) -> Vec<(String, String)> {
        let backend = self.db.get_database_backend();
        self.db
            .query_all_raw(Statement::from_string(
                backend,
                "SELECT sft_endpoint_id, status FROM provisioning_sim_claims ORDER BY sft_endpoint_id",
            ))
            .await
            .unwrap()
            .into_iter()
            .map(|r| {
                (
                    r.try_get_by_index::<String>(0).unwrap(),
                    r.try_get_by_index::<String>(1).unwrap(),
                )
            })
            .collect()
    }

    /// Stops the service and the sandbox.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.server).await;
        let _ = self.db.close().await;
    }
}

/// Every test runs once per configured database.
pub async fn databases() -> Vec<TestDatabase> {
    esim_runtime::db::testing::fresh_databases().await.unwrap()
}

/// A log sink for `tracing_subscriber::fmt().with_writer(..)`.
#[derive(Clone, Default)]
pub struct LogBuffer(pub Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// The buffer of the process-wide log subscriber (installed on first use, at DEBUG).
pub fn global_log() -> LogBuffer {
    static BUFFER: std::sync::OnceLock<LogBuffer> = std::sync::OnceLock::new();
    BUFFER
        .get_or_init(|| {
            let buffer = LogBuffer::default();
            let subscriber = tracing_subscriber::fmt()
                .with_writer(buffer.clone())
                .with_env_filter(tracing_subscriber::EnvFilter::new("debug,esim_sandbox=off"))
                .with_ansi(false)
                .finish();
            tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber");
            buffer
        })
        .clone()
}

/// The state of an eSIM as an enum.
pub fn state(esim: &pb::Esim) -> pb::EsimState {
    pb::EsimState::try_from(esim.state).unwrap()
}

/// A harness (SFT pool of 2) whose first provision, `r1` for `orders/timeout`, failed
/// UNAVAILABLE because SFT's lifecycle change answered after 1.5 s, past the 300 ms the
/// harness waits: the activation's outcome is unknown, so its SIM is quarantined.
pub async fn with_an_activation_timed_out(database: TestDatabase) -> Harness {
    let h = Harness::start_with(database, 2, &[("SFT_LIFECYCLE_TIMEOUT_MS", "300")]).await;
    h.sandbox.set_fault(
        "sft.EndPointLifeCycleChange",
        esim_sandbox::Fault {
            timeout: true,
            timeout_ms: Some(1500),
            times: Some(1),
            ..esim_sandbox::Fault::default()
        },
    );
    let status = h.provision("r1", "orders/timeout").await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{}: {status:?}", h.label);
    h
}
