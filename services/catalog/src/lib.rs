//! The catalog service: the one normalised catalogue of every upstream's plans.
//!
//! It serves health and reflection now; `esim.catalog.v1.CatalogService` is listed in reflection
//! and its methods are registered as their capability lands (until then they answer
//! UNIMPLEMENTED, never fake data).

pub mod migration;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use esim_proto::catalog::v1::catalog_service_server;
use esim_runtime::{BoxError, GrpcServer, ServiceContext, ServiceSpec};

/// The catalog service's identity: `CATALOG_*` settings, default `127.0.0.1:50052`.
pub const SERVICE: ServiceSpec = ServiceSpec {
    name: "catalog",
    env_prefix: "CATALOG",
    default_addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 50052),
};

/// Runs the catalog service until shutdown: database connected and migrated first, then served.
pub async fn run(context: ServiceContext) -> Result<(), BoxError> {
    let _db = context.database::<migration::Migrator>().await?;
    let server = GrpcServer::new().describe(catalog_service_server::SERVICE_NAME);
    context.serve(server).await?;
    Ok(())
}
