//! The provisioning service: eSIMs, SIM claiming, lifecycle and QR delivery.
//!
//! * [`service`]: `esim.provisioning.v1.ProvisioningService` — record MP/FMS eSIMs, provision
//!   SFT eSIMs ([`provision`]), lifecycle through MP `switchOrder` and SFT lifecycle changes,
//!   the hand-over with QR codes ([`qr`]), SFT add-ons.
//! * Activation codes are encrypted at rest ([`crypto`]) and appear only in `DeliverEsim`.
//!
//! Settings (`PROVISIONING_*` besides the common ones, and the upstream `SFT_*` / `MP_*`):
//! `ACTIVATION_CODE_KEY` (base64 32 bytes; or `_FILE`), `ACTIVATION_CODE_KEYS` (retired keys,
//! comma-separated), and the tunables of [`config::Settings`].

pub mod cli;
pub mod config;
mod convert;
pub mod crypto;
pub mod entity;
pub mod error;
mod ids;
pub mod migration;
mod provision;
pub mod qr;
pub mod service;
mod store;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use esim_proto::provisioning::v1::provisioning_service_server::ProvisioningServiceServer;
use esim_runtime::{BoxError, GrpcServer, ServiceContext, ServiceSpec};
use esim_upstream::mp::MpClient;
use esim_upstream::sft::SftClient;

pub use service::Provisioning;

/// The provisioning service's identity: `PROVISIONING_*` settings, default `127.0.0.1:50054`.
pub const SERVICE: ServiceSpec = ServiceSpec {
    name: "provisioning",
    env_prefix: "PROVISIONING",
    default_addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 50054),
};

/// Runs the provisioning service until shutdown: keys and upstream clients set up first (a
/// PostgreSQL deployment without an activation-code key refuses to start), database
/// connected and migrated, then served.
pub async fn run(context: ServiceContext) -> Result<(), BoxError> {
    let cipher = config::cipher_from_env(&context.env, &context.settings.database_url)?;
    let settings = config::Settings::from_env(&context.env)?;
    let sft = SftClient::new(esim_upstream::config::SftConfig::from_env(&context.env)?)?;
    let mp = MpClient::new(esim_upstream::config::MpConfig::from_env(&context.env)?)?;
    let db = context.database::<migration::Migrator>().await?;
    context.expire_idempotency_keys(&db, entity::idempotency::Entity);
    // Keeps the SQLite write-ahead log small in a long-running process (no-op on PostgreSQL).
    let checkpoints = {
        let db = db.clone();
        let stop = context.shutdown.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = every.tick() => {
                        if let Err(err) = esim_runtime::db::checkpoint(&db).await {
                            tracing::warn!(error = %err, "WAL checkpoint failed");
                        }
                    }
                }
            }
        })
    };
    let service = Provisioning::new(db, cipher, sft, mp, settings);
    let server = GrpcServer::new().add_service(ProvisioningServiceServer::new(service));
    let served = context.serve(server).await;
    checkpoints.abort();
    served?;
    Ok(())
}
