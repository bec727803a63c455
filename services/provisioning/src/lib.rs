//! The provisioning service: eSIMs, SIM claiming, lifecycle and QR delivery.
//!
//! It serves health and reflection now; `esim.provisioning.v1.ProvisioningService` is listed in reflection
//! and its methods are registered as their capability lands (until then they answer
//! UNIMPLEMENTED, never fake data).

pub mod migration;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use esim_proto::provisioning::v1::provisioning_service_server;
use esim_runtime::{BoxError, GrpcServer, ServiceContext, ServiceSpec};

/// The provisioning service's identity: `PROVISIONING_*` settings, default `127.0.0.1:50054`.
pub const SERVICE: ServiceSpec = ServiceSpec {
    name: "provisioning",
    env_prefix: "PROVISIONING",
    default_addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 50054),
};

/// Runs the provisioning service until shutdown: database connected and migrated first, then served.
pub async fn run(context: ServiceContext) -> Result<(), BoxError> {
    let _db = context.database::<migration::Migrator>().await?;
    let server = GrpcServer::new().describe(provisioning_service_server::SERVICE_NAME);
    context.serve(server).await?;
    Ok(())
}
