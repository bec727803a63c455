//! The peer services the saga calls (catalog, provisioning, usage), behind one small trait so
//! the saga can be tested without them. Production: [`GrpcPeers`], over
//! [`PeerChannel`]s: lazily connected (ordering starts before its peers), carrying the internal
//! credential and the current call's context.

use std::time::Duration;

use esim_proto::catalog::v1 as catalog;
use esim_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use esim_proto::provisioning::v1 as provisioning;
use esim_proto::provisioning::v1::provisioning_service_client::ProvisioningServiceClient;
use esim_proto::usage::v1 as usage;
use esim_proto::usage::v1::usage_service_client::UsageServiceClient;
use esim_runtime::{config::ConfigError, internal::InternalCredential, peer::PeerChannel};
use tonic::Status;

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
    /// Provisioning `ListEsims` by order: the eSIM recorded for `order` (`orders/{id}`), if any.
    async fn esim_of_order(&self, order: &str) -> Result<Option<provisioning::Esim>, Status>;
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
    catalog: CatalogServiceClient<PeerChannel>,
    provisioning: ProvisioningServiceClient<PeerChannel>,
    usage: UsageServiceClient<PeerChannel>,
}

/// How long a saga step waits for a peer when no caller's deadline applies.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

impl GrpcPeers {
    /// Lazily connected clients of the three peers, at `ORDERING_{CATALOG,PROVISIONING,USAGE}_URL`
    /// of `env`.
    pub fn connect(
        env: &esim_runtime::Env,
        credential: Option<InternalCredential>,
    ) -> Result<Self, ConfigError> {
        let peer = |name: &str, default: &str| {
            PeerChannel::connect_lazy(
                &env.key(name),
                &env.string_or(name, default),
                credential.clone(),
                1,
            )
            .map(|channel| channel.with_default_timeout(STEP_TIMEOUT))
        };
        Ok(Self {
            catalog: CatalogServiceClient::new(peer("CATALOG_URL", "http://127.0.0.1:50052")?),
            provisioning: ProvisioningServiceClient::new(peer("PROVISIONING_URL", "http://127.0.0.1:50054")?),
            usage: UsageServiceClient::new(peer("USAGE_URL", "http://127.0.0.1:50055")?),
        })
    }
}

/// The request carrying `request_id` as its `x-request-id` when no caller's context supplies
/// one (a saga step resumed in the background).
fn with_id<T>(message: T, request_id: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = request_id.parse() {
        request
            .metadata_mut()
            .insert(esim_context::REQUEST_ID_HEADER, value);
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

    async fn esim_of_order(&self, order: &str) -> Result<Option<provisioning::Esim>, Status> {
        let request = provisioning::ListEsimsRequest {
            order: order.to_owned(),
            // One eSIM per order: a second would be a bug provisioning refuses to create.
            page_size: 1,
            ..Default::default()
        };
        let esims = self
            .provisioning
            .clone()
            .list_esims(request)
            .await?
            .into_inner()
            .esims;
        Ok(esims.into_iter().next())
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
