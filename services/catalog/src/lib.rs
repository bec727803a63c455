//! The catalog service: the one normalised catalogue of every upstream's plans.
//!
//! Products are synced from MP (`v2/productList`), FMS (`countryPackageList` → `packageList`
//! → `detail`) and the operator's SFT add-on plans into the catalog's own tables ([`sync`]),
//! priced by per-provider rules ([`pricing`]), and served by `esim.catalog.v1.CatalogService`
//! ([`api`]) from an in-process cache that every write invalidates ([`cache`]). Reads never
//! wait for an upstream.
//!
//! Settings (`CATALOG_*`, besides the common ones): `SYNC_INTERVAL_SECS` (3600; 0 turns the
//! schedule off), `SYNC_ON_START` (true), `CACHE_REFRESH_SECS` (1: how soon another replica's
//! writes reach this cache), `PROVIDERS` (`mp,fms,sft`), `CONFIG_FILE` (JSON: `mp_products`, the
//! reseller's MP terms; `sft_plans`, plans created at start when missing), `FMS_EMAIL` and
//! `FMS_PASSWORD` (`_FILE`) for the catalogue's own FMS account. Upstream clients read the
//! shared `MP_*` / `FMS_*` variables of `esim-upstream`.

pub mod api;
pub mod cache;
pub mod convert;
pub mod entity;
pub mod error;
pub mod mcc;
pub mod migration;
pub mod pricing;
pub mod source;
pub mod store;
pub mod sync;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use esim_proto::catalog::v1::catalog_service_server::CatalogServiceServer;
use esim_runtime::{BoxError, Env, GrpcServer, ServiceContext, ServiceSpec};
use sea_orm::DatabaseConnection;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::api::CatalogApi;
use crate::cache::Cache;
use crate::source::{CatalogSource, Provider, Sources};
use crate::sync::{SyncSettings, Syncer, Trigger};

/// The catalog service's identity: `CATALOG_*` settings, default `127.0.0.1:50052`.
pub const SERVICE: ServiceSpec = ServiceSpec {
    name: "catalog",
    env_prefix: "CATALOG",
    default_addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 50052),
};

/// When the catalogue syncs and how fast caches follow other replicas.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Sync once at start.
    pub sync_on_start: bool,
    /// Period of the scheduled sync; `None`: no schedule.
    pub sync_interval: Option<Duration>,
    /// How often the catalogue version is read back from the database.
    pub cache_refresh: Duration,
}

impl Default for Schedule {
    fn default() -> Self {
        Self {
            sync_on_start: true,
            sync_interval: Some(Duration::from_secs(3600)),
            cache_refresh: Duration::from_secs(1),
        }
    }
}

/// The operator's config file (`CATALOG_CONFIG_FILE`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ConfigFile {
    /// The reseller's MP terms (MP lists no prices).
    #[serde(default)]
    pub mp_products: Vec<source::mp::MpTerms>,
    /// SFT plans created at start when missing.
    #[serde(default)]
    pub sft_plans: Vec<PlanConfig>,
}

/// An SFT plan in the config file.
#[derive(Debug, Clone, Deserialize)]
pub struct PlanConfig {
    /// SFT `planId`.
    pub plan_id: String,
    /// Name shown to travellers.
    pub display_name: String,
    /// Data per add-on in MB (1024 × 1024 bytes); absent or 0 with `unlimited`.
    #[serde(default)]
    pub data_mb: u64,
    /// No data cap.
    #[serde(default)]
    pub unlimited: bool,
    /// Validity in days.
    pub validity_days: i32,
    /// ISO alpha-2 codes.
    pub coverage_country_codes: Vec<String>,
    /// Wholesale price, decimal text.
    pub wholesale_price: String,
    /// ISO 4217 currency.
    pub currency: String,
}

impl PlanConfig {
    fn to_proto(&self) -> Result<esim_proto::catalog::v1::SftPlan, BoxError> {
        let price = esim_domain::Money::parse_amount(&self.wholesale_price, &self.currency)
            .map_err(|e| format!("sft plan {}: {e}", self.plan_id))?;
        Ok(esim_proto::catalog::v1::SftPlan {
            plan_id: self.plan_id.clone(),
            display_name: self.display_name.clone(),
            data_bytes: i64::try_from(self.data_mb.saturating_mul(source::BYTES_PER_MB)).unwrap_or(i64::MAX),
            unlimited: self.unlimited,
            validity_days: self.validity_days,
            coverage_country_codes: self.coverage_country_codes.clone(),
            wholesale_price: Some(convert::money(price.amount(), price.currency().as_str())),
            ..Default::default()
        })
    }
}

impl ConfigFile {
    /// Reads the file named by `CATALOG_CONFIG_FILE`, or the empty config.
    pub fn from_env(env: &Env) -> Result<Self, BoxError> {
        let Some(path) = env.raw("CONFIG_FILE") else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("{}: cannot read {path}: {e}", env.key("CONFIG_FILE")))?;
        serde_json::from_str(&text).map_err(|e| {
            format!(
                "{}: {path} is not a valid catalog config: {e}",
                env.key("CONFIG_FILE")
            )
            .into()
        })
    }
}

/// A running catalog: the API, the syncer and the cache, sharing one database.
#[derive(Debug, Clone)]
pub struct Catalog {
    db: DatabaseConnection,
    cache: Arc<Cache>,
    syncer: Arc<Syncer>,
}

impl Catalog {
    /// A catalog over a migrated `db`, syncing from `sources`.
    pub fn new(db: DatabaseConnection, sources: Sources) -> Self {
        let cache = Arc::new(Cache::default());
        let syncer = Arc::new(Syncer::new(
            db.clone(),
            sources,
            cache.clone(),
            SyncSettings::default(),
        ));
        Self { db, cache, syncer }
    }

    /// The gRPC service.
    pub fn service(&self) -> CatalogServiceServer<CatalogApi> {
        CatalogServiceServer::new(CatalogApi::new(
            self.db.clone(),
            self.cache.clone(),
            self.syncer.clone(),
        ))
    }

    /// The syncer (tests and the schedule).
    pub fn syncer(&self) -> &Arc<Syncer> {
        &self.syncer
    }

    /// The read cache.
    pub fn cache(&self) -> &Arc<Cache> {
        &self.cache
    }

    /// Starts the background work — the startup and scheduled syncs, and following the
    /// catalogue version — until `shutdown`.
    pub fn spawn_background(&self, schedule: Schedule, shutdown: CancellationToken) {
        let syncer = self.syncer.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let work = async {
                if schedule.sync_on_start {
                    log_sync(syncer.sync(Trigger::Startup, &[]).await);
                }
                let Some(every) = schedule.sync_interval.filter(|d| !d.is_zero()) else {
                    return;
                };
                let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticker.tick().await;
                    log_sync(syncer.sync(Trigger::Schedule, &[]).await);
                }
            };
            tokio::select! {
                () = work => {}
                () = stop.cancelled() => {}
            }
        });
        let db = self.db.clone();
        let cache = self.cache.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(schedule.cache_refresh.max(Duration::from_millis(10)));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    () = shutdown.cancelled() => return,
                }
                let generation = cache.generation();
                match store::version(&db).await {
                    Ok(version) => cache.refreshed(version, generation),
                    Err(err) => tracing::warn!(error = %err, "cannot read the catalogue version"),
                }
            }
        });
    }
}

fn log_sync(result: error::Result<entity::sync_run::Model>) {
    match result {
        Ok(run) => tracing::info!(run = %run.id, outcome = %run.outcome, "catalog sync finished"),
        // Another replica's run, or a database outage: the next tick tries again.
        Err(err) => tracing::warn!(error = %err, "catalog sync not run"),
    }
}

/// The schedule from `CATALOG_*` settings.
pub fn schedule_from_env(env: &Env) -> Result<Schedule, BoxError> {
    let interval = env.secs_or("SYNC_INTERVAL_SECS", Duration::from_secs(3600))?;
    Ok(Schedule {
        sync_on_start: env.bool_or("SYNC_ON_START", true)?,
        sync_interval: (!interval.is_zero()).then_some(interval),
        cache_refresh: env.secs_or("CACHE_REFRESH_SECS", Duration::from_secs(1))?,
    })
}

/// The enabled providers' sources, with upstream clients from the environment.
pub fn sources_from_env(
    env: &Env,
    db: &DatabaseConnection,
    config: &ConfigFile,
) -> Result<Sources, BoxError> {
    let enabled = env.string_or("PROVIDERS", "mp,fms,sft");
    let mut sources: Sources = Vec::new();
    for name in enabled.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let provider = Provider::ALL
            .into_iter()
            .find(|p| p.lower().eq_ignore_ascii_case(name))
            .ok_or_else(|| format!("{}: unknown provider {name:?}", env.key("PROVIDERS")))?;
        let source: Arc<dyn CatalogSource> = match provider {
            Provider::Mp => {
                let client =
                    esim_upstream::mp::MpClient::new(esim_upstream::config::MpConfig::from_env(env)?)?;
                Arc::new(source::mp::MpSource::new(
                    Arc::new(client),
                    config.mp_products.clone(),
                ))
            }
            Provider::Fms => {
                let client =
                    esim_upstream::fms::FmsClient::new(esim_upstream::config::FmsConfig::from_env(env)?)?;
                let email = env.string_or("FMS_EMAIL", "catalog@esim-suite.invalid");
                // The sandbox default, like esim-upstream's own defaults; set it in production.
                let password = env
                    .secret("FMS_PASSWORD")?
                    .unwrap_or_else(|| "catalog-sandbox".into());
                let account = esim_upstream::fms::FmsCredentials::from_plain(email, &password);
                Arc::new(source::fms::FmsSource::new(Arc::new(client), account))
            }
            Provider::Sft => Arc::new(source::sft::SftSource::new(db.clone())),
        };
        sources.push(source);
    }
    Ok(sources)
}

/// Runs the catalog service until shutdown: database connected and migrated first, configured
/// SFT plans seeded, background sync started, then served.
pub async fn run(context: ServiceContext) -> Result<(), BoxError> {
    let db = context.database::<migration::Migrator>().await?;
    context.expire_idempotency_keys(&db, entity::idempotency::Entity);
    let config = ConfigFile::from_env(&context.env)?;
    let plans = config
        .sft_plans
        .iter()
        .map(PlanConfig::to_proto)
        .collect::<Result<Vec<_>, _>>()?;
    let seeded = api::seed_plans(&db, &plans).await?;
    if seeded > 0 {
        tracing::info!(seeded, "SFT plans created from the config file");
    }
    let sources = sources_from_env(&context.env, &db, &config)?;
    let schedule = schedule_from_env(&context.env)?;
    let catalog = Catalog::new(db, sources);
    catalog.spawn_background(schedule, context.shutdown.clone());
    let server = GrpcServer::new().add_service(catalog.service());
    context.serve(server).await?;
    Ok(())
}
