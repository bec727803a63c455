//! The peer services the saga calls (catalog, provisioning, usage), behind one small trait so
//! the saga can be tested without them. Production: [`GrpcPeers`], lazily connected channels,
//! so ordering starts before its peers.

use std::time::Duration;

use esim_proto::catalog::v1 as catalog;
use esim_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use esim_proto::provisioning::v1 as provisioning;
use esim_proto::provisioning::v1::provisioning_service_client::ProvisioningServiceClient;
use esim_proto::usage::v1 as usage;
use esim_proto::usage::v1::usage_service_client::UsageServiceClient;
use tonic::Status;
use tonic::transport::{Channel, Endpoint};

/// The calls the ordering service makes to its peers. Every mutating call carries an
/// idempotency key derived from the order, so a retry after a crash is safe.
#[async_trait::async_trait]
pub trait Peers: Send + Sync + std::fmt::Debug {
    /// Catalog `GetProduct`.
    async fn get_product(&self, name: &str, request_id: &str) -> Result<catalog::Product, Status>;
    /// Provisioning `CreateEsim` (MP, FMS).
    async fn create_esim(
        &self,
        request: provisioning::CreateEsimRequest,
    ) -> Result<provisioning::Esim, Status>;
    /// Provisioning `ProvisionEsim` (SFT).
    async fn provision_esim(
        &self,
        request: provisioning::ProvisionEsimRequest,
    ) -> Result<provisioning::Esim, Status>;
    /// Provisioning `CreateAddon` (SFT top-ups).
    async fn create_addon(
        &self,
        request: provisioning::CreateAddonRequest,
    ) -> Result<provisioning::Addon, Status>;
    /// Usage `StartUsageTracking`.
    async fn start_tracking(&self, request: usage::StartUsageTrackingRequest) -> Result<(), Status>;
}

/// The peers over gRPC.
#[derive(Debug, Clone)]
pub struct GrpcPeers {
    catalog: CatalogServiceClient<Channel>,
    provisioning: ProvisioningServiceClient<Channel>,
    usage: UsageServiceClient<Channel>,
}

fn lazy(url: &str) -> Result<Channel, String> {
    Ok(Endpoint::from_shared(url.to_owned())
        .map_err(|e| format!("{url}: {e}"))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(60))
        .connect_lazy())
}

impl GrpcPeers {
    /// Lazily connected clients of the three peers.
    pub fn connect(catalog_url: &str, provisioning_url: &str, usage_url: &str) -> Result<Self, String> {
        Ok(Self {
            catalog: CatalogServiceClient::new(lazy(catalog_url)?),
            provisioning: ProvisioningServiceClient::new(lazy(provisioning_url)?),
            usage: UsageServiceClient::new(lazy(usage_url)?),
        })
    }
}

fn with_id<T>(message: T, request_id: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = request_id.parse() {
        request
            .metadata_mut()
            .insert(esim_runtime::request_id::HEADER, value);
    }
    request
}

#[async_trait::async_trait]
impl Peers for GrpcPeers {
    async fn get_product(&self, name: &str, request_id: &str) -> Result<catalog::Product, Status> {
        let request = with_id(
            catalog::GetProductRequest {
                name: name.to_owned(),
            },
            request_id,
        );
        Ok(self.catalog.clone().get_product(request).await?.into_inner())
    }

    async fn create_esim(
        &self,
        request: provisioning::CreateEsimRequest,
    ) -> Result<provisioning::Esim, Status> {
        let id = request.request_id.clone();
        Ok(self
            .provisioning
            .clone()
            .create_esim(with_id(request, &id))
            .await?
            .into_inner())
    }

    async fn provision_esim(
        &self,
        request: provisioning::ProvisionEsimRequest,
    ) -> Result<provisioning::Esim, Status> {
        let id = request.request_id.clone();
        Ok(self
            .provisioning
            .clone()
            .provision_esim(with_id(request, &id))
            .await?
            .into_inner())
    }

    async fn create_addon(
        &self,
        request: provisioning::CreateAddonRequest,
    ) -> Result<provisioning::Addon, Status> {
        let id = request.request_id.clone();
        Ok(self
            .provisioning
            .clone()
            .create_addon(with_id(request, &id))
            .await?
            .into_inner())
    }

    async fn start_tracking(&self, request: usage::StartUsageTrackingRequest) -> Result<(), Status> {
        let id = request.request_id.clone();
        self.usage
            .clone()
            .start_usage_tracking(with_id(request, &id))
            .await?;
        Ok(())
    }
}
