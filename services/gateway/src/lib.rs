//! The gateway: the one address callers need. It authenticates every call by API key
//! ([`auth`], [`keys`], [`cache`]), checks the method's scope ([`scopes`]) and the key's rate
//! limit ([`ratelimit`]) before any backend is called, then forwards the call to the backend
//! that serves it, by gRPC service name, without decoding the messages (streams included;
//! [`forward`], [`backends`]), with the internal credential, request id, trace context and
//! remaining deadline. It serves the API-key admin API ([`api`]; also the `esim-keys` CLI,
//! [`cli`]), reflection for all five APIs, and readiness that follows its backends.

pub mod api;
pub mod auth;
pub mod backends;
pub mod cache;
pub mod cli;
pub mod entity;
pub mod error;
pub mod forward;
pub mod keys;
pub mod migration;
pub mod ratelimit;
pub mod scopes;
pub mod settings;
pub mod store;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use esim_runtime::{BoxError, GrpcServer, ServiceContext, ServiceSpec};

use crate::{
    api::GatewayApi, auth::Authorized, backends::Backends, forward::Forward, settings::AuthSettings,
};

/// The gateway's identity: `GATEWAY_*` settings, default `127.0.0.1:50051`.
pub const SERVICE: ServiceSpec = ServiceSpec {
    name: "gateway",
    env_prefix: "GATEWAY",
    default_addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 50051),
};

/// Runs the gateway until shutdown.
pub async fn run(context: ServiceContext) -> Result<(), BoxError> {
    let db = context.database::<migration::Migrator>().await?;
    context.expire_idempotency_keys(&db, entity::idempotency::Entity);
    let keys = AuthSettings::from_env(&context.env)?
        .start(&db, context.shutdown.clone())
        .await?;
    let backends = Backends::from_env(&context.env, context.internal.credential.clone())?;
    let probe_interval = context
        .env
        .secs_or("BACKEND_PROBE_SECS", Duration::from_secs(2))?;
    let reachable = backends.watch_reachable(probe_interval, context.shutdown.clone());
    let server = GrpcServer::new()
        .add_service(Authorized::new(
            Forward::<forward::Catalog>::new(backends.catalog),
            keys.clone(),
        ))
        .add_service(Authorized::new(
            Forward::<forward::Ordering>::new(backends.ordering),
            keys.clone(),
        ))
        .add_service(Authorized::new(
            Forward::<forward::Provisioning>::new(backends.provisioning),
            keys.clone(),
        ))
        .add_service(Authorized::new(
            Forward::<forward::Usage>::new(backends.usage),
            keys.clone(),
        ))
        .add_service(Authorized::new(
            GatewayApi::new(db, keys.clone()).into_service(),
            keys,
        ))
        .readiness_gate(reachable);
    context.serve_public(server).await?;
    Ok(())
}
