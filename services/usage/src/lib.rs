//! The usage service: data usage, daily history and usage alerts.
//!
//! It serves health and reflection now; `esim.usage.v1.UsageService` is listed in reflection
//! and its methods are registered as their capability lands (until then they answer
//! UNIMPLEMENTED, never fake data).

pub mod migration;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use esim_proto::usage::v1::usage_service_server;
use esim_runtime::{BoxError, GrpcServer, ServiceContext, ServiceSpec};

/// The usage service's identity: `USAGE_*` settings, default `127.0.0.1:50055`.
pub const SERVICE: ServiceSpec = ServiceSpec {
    name: "usage",
    env_prefix: "USAGE",
    default_addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 50055),
};

/// Runs the usage service until shutdown: database connected and migrated first, then served.
pub async fn run(context: ServiceContext) -> Result<(), BoxError> {
    let _db = context.database::<migration::Migrator>().await?;
    let server = GrpcServer::new().describe(usage_service_server::SERVICE_NAME);
    context.serve(server).await?;
    Ok(())
}
