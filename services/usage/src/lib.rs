//! The usage service: data usage, daily history and usage alerts that are never lost.
//!
//! * Usage is served from stored snapshots ([`refresh`]): a snapshot younger than
//!   `USAGE_SNAPSHOT_MAX_AGE_SECS` answers without an upstream call; otherwise one refresh per
//!   eSIM runs (concurrent readers wait for it); if the upstream fails, the last snapshot is
//!   served marked stale.
//! * MP alarm callbacks arrive over HTTP ([`callback`]) on `USAGE_CALLBACK_LISTEN_ADDR`; the
//!   poller ([`poller`]) synthesises the same alerts for SFT and FMS. Both append to one alert
//!   log whose id is the watch cursor ([`api`] streams it).
//!
//! Settings: see [`config::UsageConfig`]; upstream clients read the shared `MP_*` / `SFT_*`
//! variables of `esim-upstream`.

pub mod api;
pub mod callback;
pub mod config;
pub mod convert;
pub mod entity;
pub mod error;
pub mod migration;
pub mod poller;
pub mod refresh;
pub mod store;
pub mod writer;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use esim_proto::usage::v1::usage_service_server::UsageServiceServer;
use esim_runtime::{BoxError, GrpcServer, ServiceContext, ServiceSpec, ShutdownPolicy};
use esim_upstream::mp::MpClient;
use esim_upstream::sft::SftClient;
use sea_orm::DatabaseConnection;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use crate::config::UsageConfig;

/// The usage service's identity: `USAGE_*` settings, default `127.0.0.1:50055`.
pub const SERVICE: ServiceSpec = ServiceSpec {
    name: "usage",
    env_prefix: "USAGE",
    default_addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 50055),
};

/// State shared by the gRPC API, the callback endpoint and the poller.
#[derive(Debug)]
pub struct Core {
    pub db: DatabaseConnection,
    pub mp: Arc<MpClient>,
    pub sft: Arc<SftClient>,
    pub config: UsageConfig,
    /// Woken after every alert this replica stores; watchers also poll, so alerts stored by
    /// other replicas arrive too.
    pub alerts_added: Notify,
    /// One refresh at a time per eSIM (in this replica), so concurrent reads coalesce.
    refresh_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// MP order code → (eSIM id, order name) of tracked eSIMs, so a burst of alarm callbacks
    /// does not look the same mapping up again for each one; the mapping never changes once
    /// tracked, so the cache cannot go stale, only be cleared when it grows too large.
    mp_order_esims: Mutex<HashMap<String, (String, String)>>,
    /// Appends every alert this replica stores; started on first use, inside the runtime.
    alert_writer: OnceLock<writer::AlertWriter>,
    /// This replica's lease owner id.
    pub instance: String,
    pub shutdown: CancellationToken,
}

impl Core {
    /// Shared state over `db` and the upstream clients.
    pub fn new(
        db: DatabaseConnection,
        mp: Arc<MpClient>,
        sft: Arc<SftClient>,
        config: UsageConfig,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Self {
            db,
            mp,
            sft,
            config,
            alerts_added: Notify::new(),
            refresh_locks: Mutex::new(HashMap::new()),
            mp_order_esims: Mutex::new(HashMap::new()),
            alert_writer: OnceLock::new(),
            instance: uuid::Uuid::new_v4().to_string(),
            shutdown,
        })
    }
}

/// Most MP order codes kept in [`Core`]'s lookup cache before it is cleared.
const MP_ORDER_CACHE_LIMIT: usize = 100_000;

impl Core {
    /// The tracked eSIM id and order name of MP order `code`, if cached.
    pub fn cached_mp_order(&self, code: &str) -> Option<(String, String)> {
        self.mp_order_esims.lock().ok()?.get(code).cloned()
    }

    /// Remembers that MP order `code` belongs to `esim` of `order_name`.
    pub fn cache_mp_order(&self, code: &str, esim: &str, order_name: &str) {
        if let Ok(mut cache) = self.mp_order_esims.lock() {
            if cache.len() >= MP_ORDER_CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(code.to_owned(), (esim.to_owned(), order_name.to_owned()));
        }
    }
}

impl Core {
    /// Appends `alert` to the log unless its dedup key is stored, waking watchers; returns its
    /// cursor id (`None` for a duplicate) once committed.
    pub async fn store_alert(&self, alert: store::NewAlert) -> error::Result<Option<i64>> {
        let id = self
            .alert_writer
            .get_or_init(|| writer::AlertWriter::spawn(self.db.clone()))
            .append(alert)
            .await?;
        if id.is_some() {
            self.alerts_added.notify_waiters();
        }
        Ok(id)
    }
}

/// Where the service listens.
#[derive(Debug)]
pub struct Listeners {
    /// gRPC.
    pub grpc: TcpListener,
    /// The MP alarm callback endpoint (HTTP).
    pub callback: TcpListener,
}

/// Serves the gRPC API and the callback endpoint and runs the poller until `core.shutdown`.
pub async fn serve(core: Arc<Core>, listeners: Listeners, policy: ShutdownPolicy) -> Result<(), BoxError> {
    let shutdown = core.shutdown.clone();
    let callback = {
        let router = callback::router(core.clone());
        let token = shutdown.clone();
        tokio::spawn(async move {
            axum::serve(listeners.callback, router)
                .with_graceful_shutdown(async move { token.cancelled().await })
                .await
        })
    };
    let poller = tokio::spawn(poller::run(core.clone()));
    let maintenance = tokio::spawn(checkpoint_loop(core.clone()));
    if core.config.callback_public_url.is_some() {
        tokio::spawn(callback::register_at_start(core.clone()));
    }

    let server = GrpcServer::new().add_service(UsageServiceServer::new(api::UsageApi::new(core.clone())));
    let token = shutdown.clone();
    let result = server
        .serve(listeners.grpc, async move { token.cancelled().await }, policy)
        .await;
    // However gRPC ended, the rest stops with it.
    shutdown.cancel();
    let callback_result = callback.await;
    let _ = poller.await;
    let _ = maintenance.await;
    result?;
    callback_result.map_err(|err| format!("callback server task: {err}"))??;
    Ok(())
}

/// Runs the usage service until shutdown: database connected and migrated first, then served.
pub async fn run(context: ServiceContext) -> Result<(), BoxError> {
    let mut config = UsageConfig::from_env(&context.env)?;
    // Tests and the all-in-one suite ask for an ephemeral gRPC port; a fixed callback port
    // would then clash between suites running side by side, so it follows unless set.
    if context.env.raw("CALLBACK_LISTEN_ADDR").is_none() && context.settings.listen_addr.port() == 0 {
        config.callback_listen_addr.set_port(0);
    }
    let db = context.database::<migration::Migrator>().await?;
    let mp = Arc::new(MpClient::new(esim_upstream::config::MpConfig::from_env(
        &context.env,
    )?)?);
    let sft = Arc::new(SftClient::new(esim_upstream::config::SftConfig::from_env(
        &context.env,
    )?)?);
    let callback = TcpListener::bind(config.callback_listen_addr)
        .await
        .map_err(|err| format!("usage: cannot listen on {}: {err}", config.callback_listen_addr))?;
    let callback_addr = callback.local_addr()?;
    tracing::info!(addr = %callback_addr, config = ?config, "usage callback endpoint");
    let policy = ShutdownPolicy {
        drain_delay: context.settings.drain_delay,
        grace: context.settings.shutdown_grace,
    };
    let core = Core::new(db, mp, sft, config, context.shutdown.clone());
    serve(
        core,
        Listeners {
            grpc: context.listener,
            callback,
        },
        policy,
    )
    .await
}

/// Folds the SQLite WAL back periodically (a no-op on PostgreSQL), so it stays small.
async fn checkpoint_loop(core: Arc<Core>) {
    let mut interval = tokio::time::interval(Duration::from_secs(60));
    interval.tick().await;
    loop {
        tokio::select! {
            () = core.shutdown.cancelled() => return,
            _ = interval.tick() => {
                if let Err(err) = esim_runtime::db::checkpoint(&core.db).await {
                    tracing::warn!(error = %err, "WAL checkpoint failed");
                }
            }
        }
    }
}
