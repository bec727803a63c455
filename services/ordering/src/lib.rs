//! The ordering service: orders and the purchase saga for every provider.
//!
//! It serves health and reflection now; `esim.ordering.v1.OrderingService` is listed in reflection
//! and its methods are registered as their capability lands (until then they answer
//! UNIMPLEMENTED, never fake data).

pub mod migration;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use esim_proto::ordering::v1::ordering_service_server;
use esim_runtime::{BoxError, GrpcServer, ServiceContext, ServiceSpec};

/// The ordering service's identity: `ORDERING_*` settings, default `127.0.0.1:50053`.
pub const SERVICE: ServiceSpec = ServiceSpec {
    name: "ordering",
    env_prefix: "ORDERING",
    default_addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 50053),
};

/// Runs the ordering service until shutdown: database connected and migrated first, then served.
pub async fn run(context: ServiceContext) -> Result<(), BoxError> {
    let _db = context.database::<migration::Migrator>().await?;
    let server = GrpcServer::new().describe(ordering_service_server::SERVICE_NAME);
    context.serve(server).await?;
    Ok(())
}
