//! The ordering service: orders and the purchase saga for every provider.
//!
//! `CreateOrder` validates against the catalogue and records the order under its idempotency
//! key; the saga worker ([`saga`]) then takes it through its provider's steps, each persisted
//! before it is taken, under a row lease so replicas never run the same step. See the proto for
//! the API and [`saga`] for the crash-safety and unknown-outcome rules.
//!
//! Settings (besides the common `ORDERING_*` ones and the upstream clients' `MP_*` / `FMS_*`):
//! `ORDERING_CATALOG_URL`, `ORDERING_PROVISIONING_URL`, `ORDERING_USAGE_URL` (peers, connected
//! lazily), `ORDERING_CREDENTIAL_KEY` (or `_FILE`; base64 of 32 bytes: the AEAD key of FMS
//! passwords and activation codes at rest — required on PostgreSQL), `ORDERING_LEASE_SECS`
//! (default 60), `ORDERING_WORKER_CONCURRENCY` (default 16), `ORDERING_WORKER_ENABLED` (default
//! true; false for an API-only replica).

pub mod api;
pub mod convert;
pub mod crypto;
pub mod entity;
pub mod error;
pub mod migration;
pub mod model;
pub mod peers;
pub mod saga;
pub mod store;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use esim_proto::ordering::v1::ordering_service_server::OrderingServiceServer;
use esim_runtime::{BoxError, GrpcServer, ServiceContext, ServiceSpec};
use esim_upstream::config::{FmsConfig, MpConfig};
use esim_upstream::fms::FmsClient;
use esim_upstream::mp::MpClient;
use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;

pub use api::OrderingApi;
pub use crypto::CredentialCipher;
pub use peers::{GrpcPeers, Peers};
pub use saga::{Saga, SagaConfig};

/// The ordering service's identity: `ORDERING_*` settings, default `127.0.0.1:50053`.
pub const SERVICE: ServiceSpec = ServiceSpec {
    name: "ordering",
    env_prefix: "ORDERING",
    default_addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 50053),
};

/// Everything the service runs on.
#[derive(Debug)]
pub struct Parts {
    /// The migrated database.
    pub db: DatabaseConnection,
    /// Catalog, provisioning and usage.
    pub peers: Arc<dyn Peers>,
    /// The MP client.
    pub mp: Arc<MpClient>,
    /// The FMS client.
    pub fms: Arc<FmsClient>,
    /// The credential cipher.
    pub cipher: CredentialCipher,
    /// The worker's settings.
    pub saga: SagaConfig,
}

/// The saga and the API over `parts`, with the worker spawned until `shutdown`.
pub fn start(parts: Parts, shutdown: CancellationToken) -> (OrderingApi, tokio::task::JoinHandle<()>) {
    let saga = Arc::new(Saga::new(
        store::Store::new(parts.db),
        parts.peers,
        parts.mp,
        parts.fms,
        parts.cipher,
        parts.saga,
    ));
    let worker = tokio::spawn(saga.clone().run(shutdown));
    (OrderingApi::new(saga), worker)
}

/// Runs the ordering service until shutdown: database connected and migrated first, the saga
/// worker started (resuming unfinished orders), then served.
pub async fn run(context: ServiceContext) -> Result<(), BoxError> {
    let env = &context.env;
    let cipher = CredentialCipher::from_env(env, &context.settings.database_url)?;
    let db = context.database::<migration::Migrator>().await?;
    context.expire_idempotency_keys(&db, entity::idempotency_key::Entity);
    let peers = GrpcPeers::connect(env, context.internal.credential.clone())?;
    let mp = Arc::new(MpClient::new(MpConfig::from_env(env)?)?);
    let fms = Arc::new(FmsClient::new(FmsConfig::from_env(env)?)?);
    let defaults = SagaConfig::default();
    let saga = SagaConfig {
        lease: Duration::from_secs(env.parse_or("LEASE_SECS", 60u64)?),
        concurrency: env.parse_or("WORKER_CONCURRENCY", defaults.concurrency)?,
        worker_enabled: env.bool_or("WORKER_ENABLED", true)?,
        ..defaults
    };
    let shutdown = context.shutdown.clone();
    let (api, worker) = start(
        Parts {
            db,
            peers: Arc::new(peers),
            mp,
            fms,
            cipher,
            saga,
        },
        shutdown,
    );
    let server = GrpcServer::new().add_service(OrderingServiceServer::new(api));
    let served = context.serve(server).await;
    let _ = worker.await;
    served?;
    Ok(())
}
