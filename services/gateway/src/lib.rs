//! The gateway: the one address callers need. It forwards every call of the catalog, ordering,
//! provisioning and usage APIs to the backend that serves it, by gRPC service name, without
//! decoding the messages (streams included), passing deadlines (`grpc-timeout`), metadata and
//! the request id on, and serves reflection for all five APIs.

pub mod forward;
pub mod migration;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use esim_proto::gateway::v1::gateway_service_server;
use esim_runtime::{BoxError, Env, GrpcServer, ServiceContext, ServiceSpec, config::ConfigError};
use tonic::transport::Endpoint;

use crate::forward::Forward;

/// The gateway's identity: `GATEWAY_*` settings, default `127.0.0.1:50051`.
pub const SERVICE: ServiceSpec = ServiceSpec {
    name: "gateway",
    env_prefix: "GATEWAY",
    default_addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 50051),
};

/// Where the backends listen (`GATEWAY_CATALOG_URL`, ...).
#[derive(Debug, Clone)]
pub struct BackendUrls {
    /// The catalog service.
    pub catalog: String,
    /// The ordering service.
    pub ordering: String,
    /// The provisioning service.
    pub provisioning: String,
    /// The usage service.
    pub usage: String,
}

impl BackendUrls {
    /// Reads the backend URLs, defaulting to the local suite's ports.
    pub fn from_env(env: &Env) -> Self {
        Self {
            catalog: env.string_or("CATALOG_URL", "http://127.0.0.1:50052"),
            ordering: env.string_or("ORDERING_URL", "http://127.0.0.1:50053"),
            provisioning: env.string_or("PROVISIONING_URL", "http://127.0.0.1:50054"),
            usage: env.string_or("USAGE_URL", "http://127.0.0.1:50055"),
        }
    }
}

/// Runs the gateway until shutdown.
pub async fn run(context: ServiceContext) -> Result<(), BoxError> {
    let _db = context.database::<migration::Migrator>().await?;
    let urls = BackendUrls::from_env(&context.env);
    tracing::info!(?urls, "forwarding to backends");
    let server = GrpcServer::new()
        .add_service(Forward::<forward::Catalog>::new(channel(&urls.catalog)?))
        .add_service(Forward::<forward::Ordering>::new(channel(&urls.ordering)?))
        .add_service(Forward::<forward::Provisioning>::new(channel(
            &urls.provisioning,
        )?))
        .add_service(Forward::<forward::Usage>::new(channel(&urls.usage)?))
        .describe(gateway_service_server::SERVICE_NAME);
    context.serve(server).await?;
    Ok(())
}

/// A lazily connecting channel: the gateway starts (and answers health) before its backends,
/// and reconnects by itself when one restarts.
fn channel(url: &str) -> Result<tonic::transport::Channel, ConfigError> {
    let endpoint = Endpoint::from_shared(url.to_owned()).map_err(|err| ConfigError::Invalid {
        key: "GATEWAY_*_URL".into(),
        value: url.to_owned(),
        reason: err.to_string(),
    })?;
    Ok(endpoint
        .connect_timeout(std::time::Duration::from_secs(2))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(std::time::Duration::from_secs(30))
        .keep_alive_while_idle(true)
        .connect_lazy())
}
