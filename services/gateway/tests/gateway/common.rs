//! The test harness.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use esim_gateway::api::GatewayApi;
use esim_gateway::auth::Authorized;
use esim_gateway::cache::KeyCache;
use esim_gateway::forward::{self, Forward};
use esim_gateway::keys;
use esim_gateway::ratelimit::{Limit, ScopeLimits};
use esim_gateway::settings::AuthSettings;
use esim_proto::gateway::v1 as pb;
use esim_proto::gateway::v1::gateway_service_client::GatewayServiceClient;
use esim_proto::usage::v1 as usage;
use esim_proto::usage::v1::usage_service_client::UsageServiceClient;
use esim_proto::usage::v1::usage_service_server::{UsageService, UsageServiceServer};
use esim_runtime::db::testing::TestDatabase;
use esim_runtime::peer::PeerChannel;
use esim_runtime::{GrpcServer, ShutdownPolicy};
use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;
use tonic::codegen::tokio_stream;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// How often the harness's gateway re-reads its keys.
pub const KEY_REFRESH: Duration = Duration::from_millis(200);

/// What reached the fake backend.
#[derive(Debug, Clone)]
pub struct BackendCall {
    /// The method, e.g. `GetUsage`.
    pub method: &'static str,
    /// Every header name the backend saw.
    pub headers: Vec<String>,
    /// The `x-test` header, if any (to show ordinary metadata passes).
    pub x_test: Option<String>,
}

/// A usage backend that answers empty messages and records every call.
#[derive(Debug, Clone, Default)]
pub struct FakeUsage {
    calls: Arc<Mutex<Vec<BackendCall>>>,
}

impl FakeUsage {
    fn record<T>(&self, method: &'static str, request: &Request<T>) {
        let headers = request.metadata().clone().into_headers();
        self.calls.lock().unwrap().push(BackendCall {
            method,
            headers: headers.keys().map(|k| k.as_str().to_owned()).collect(),
            x_test: headers
                .get("x-test")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        });
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<BackendCall> {
        self.calls.lock().unwrap().clone()
    }
}

#[tonic::async_trait]
impl UsageService for FakeUsage {
    async fn start_usage_tracking(
        &self,
        request: Request<usage::StartUsageTrackingRequest>,
    ) -> Result<Response<usage::Usage>, Status> {
        self.record("StartUsageTracking", &request);
        Ok(Response::new(usage::Usage::default()))
    }

    async fn get_usage(
        &self,
        request: Request<usage::GetUsageRequest>,
    ) -> Result<Response<usage::Usage>, Status> {
        self.record("GetUsage", &request);
        Ok(Response::new(usage::Usage::default()))
    }

    async fn list_daily_usage(
        &self,
        request: Request<usage::ListDailyUsageRequest>,
    ) -> Result<Response<usage::ListDailyUsageResponse>, Status> {
        self.record("ListDailyUsage", &request);
        Ok(Response::new(usage::ListDailyUsageResponse::default()))
    }

    async fn list_alerts(
        &self,
        request: Request<usage::ListAlertsRequest>,
    ) -> Result<Response<usage::ListAlertsResponse>, Status> {
        self.record("ListAlerts", &request);
        Ok(Response::new(usage::ListAlertsResponse::default()))
    }

    type WatchAlertsStream = tokio_stream::Empty<Result<usage::WatchAlertsResponse, Status>>;

    async fn watch_alerts(
        &self,
        request: Request<usage::WatchAlertsRequest>,
    ) -> Result<Response<Self::WatchAlertsStream>, Status> {
        self.record("WatchAlerts", &request);
        Ok(Response::new(tokio_stream::empty()))
    }

    async fn register_mp_alarm_callback(
        &self,
        request: Request<usage::RegisterMpAlarmCallbackRequest>,
    ) -> Result<Response<usage::MpAlarmCallbackRegistration>, Status> {
        self.record("RegisterMpAlarmCallback", &request);
        Ok(Response::new(usage::MpAlarmCallbackRegistration::default()))
    }
}

/// A gateway (keys, authorization, forwarding to the fake usage backend) on its own database.
pub struct Harness {
    /// `sqlite` or `postgres`.
    pub label: String,
    /// The gateway's database (the CLI and "another replica" write here directly).
    pub db: DatabaseConnection,
    /// The gateway's key cache.
    pub keys: Arc<KeyCache>,
    /// The bootstrap key: every scope.
    pub admin_key: String,
    /// What reached the backend.
    pub backend: FakeUsage,
    /// Where the gateway listens.
    pub addr: SocketAddr,
    channel: Channel,
    shutdown: CancellationToken,
    _database: TestDatabase,
}

async fn serve(server: GrpcServer, shutdown: &CancellationToken) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        server
            .serve(
                listener,
                async move { stop.cancelled().await },
                ShutdownPolicy::default(),
            )
            .await
            .unwrap();
    });
    addr
}

impl Harness {
    /// Starts the fake backend and a gateway in front of it on `database`.
    pub async fn start(database: TestDatabase) -> Self {
        let label = if database.url.starts_with("sqlite") {
            "sqlite"
        } else {
            "postgres"
        }
        .to_owned();
        let shutdown = CancellationToken::new();
        let backend = FakeUsage::default();
        let backend_addr = serve(
            GrpcServer::new().add_service(UsageServiceServer::new(backend.clone())),
            &shutdown,
        )
        .await;

        let db =
            esim_runtime::db::connect_and_migrate::<esim_gateway::migration::Migrator>(&database.url, true)
                .await
                .unwrap();
        let admin_key = keys::generate().unwrap().key;
        // Generous defaults: only the rate-limit tests' own key limits are meant to bite.
        let generous = Limit::new(10_000, 10_000).unwrap();
        let settings = AuthSettings {
            key_refresh: KEY_REFRESH,
            rate_limits: ScopeLimits {
                read: generous,
                order: generous,
                admin: generous,
            },
            bootstrap_key: Some(admin_key.clone()),
        };
        let keys = settings.start(&db, shutdown.clone()).await.unwrap();

        let peer =
            PeerChannel::connect_lazy("USAGE_URL", &format!("http://{backend_addr}"), None, 1).unwrap();
        let gateway = GrpcServer::new()
            .add_service(Authorized::new(
                Forward::<forward::Usage>::new(peer),
                keys.clone(),
            ))
            .add_service(Authorized::new(
                GatewayApi::new(db.clone(), keys.clone()).into_service(),
                keys.clone(),
            ));
        let addr = serve(gateway, &shutdown).await;
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        Self {
            label,
            db,
            keys,
            admin_key,
            backend,
            addr,
            channel,
            shutdown,
            _database: database,
        }
    }

    /// A client of the gateway's own API.
    pub fn gateway(&self) -> GatewayServiceClient<Channel> {
        GatewayServiceClient::new(self.channel.clone())
    }

    /// A client of the (forwarded) usage API.
    pub fn usage(&self) -> UsageServiceClient<Channel> {
        UsageServiceClient::new(self.channel.clone())
    }

    /// Creates a key with `scopes` (and its own `rate_limit`) through the API; returns the key
    /// and its resource.
    pub async fn create_key(
        &self,
        name: &str,
        scopes: &[pb::Scope],
        rate_limit: Option<(i32, i32)>,
    ) -> (String, pb::ApiKey) {
        let created = self
            .gateway()
            .create_api_key(authed(
                pb::CreateApiKeyRequest {
                    request_id: String::new(),
                    api_key: Some(pb::ApiKey {
                        display_name: name.into(),
                        scopes: scopes.iter().map(|s| *s as i32).collect(),
                        rate_limit: rate_limit.map(|(requests_per_second, burst)| pb::RateLimit {
                            requests_per_second,
                            burst,
                        }),
                        ..Default::default()
                    }),
                },
                &self.admin_key,
            ))
            .await
            .unwrap()
            .into_inner();
        (created.key, created.api_key.unwrap())
    }

    /// GetUsage through the gateway with `key` (none: no header).
    pub async fn get_usage(&self, key: Option<&str>) -> Result<usage::Usage, Status> {
        let mut request = Request::new(usage::GetUsageRequest {
            name: "esims/abc/usage".into(),
        });
        if let Some(key) = key {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {key}").parse().unwrap());
        }
        self.usage().get_usage(request).await.map(Response::into_inner)
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// `message` with `authorization: Bearer <key>`.
pub fn authed<T>(message: T, key: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    request
}

/// A harness per configured database engine.
pub async fn harnesses() -> Vec<Harness> {
    let mut out = Vec::new();
    for database in esim_runtime::db::testing::fresh_databases().await.unwrap() {
        out.push(Harness::start(database).await);
    }
    out
}

/// The field named by an INVALID_ARGUMENT's BadRequest details.
pub fn violated_field(status: &Status) -> String {
    use tonic_types::StatusExt;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    status
        .get_error_details()
        .bad_request()
        .and_then(|b| b.field_violations.first().map(|v| v.field.clone()))
        .unwrap_or_default()
}
