//! The test harness: a sandbox, in-test peers (a catalogue built from the sandbox's own
//! products, a provisioning and a usage that record what they are asked), and the ordering
//! service on a fresh database, restartable on the same database.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use esim_ordering::store::Store;
use esim_ordering::{CredentialCipher, Parts, Peers, SagaConfig};
use esim_proto::catalog::v1 as catalog;
use esim_proto::google::r#type::Money;
use esim_proto::ordering::v1 as pb;
use esim_proto::ordering::v1::ordering_service_client::OrderingServiceClient;
use esim_proto::ordering::v1::ordering_service_server::OrderingServiceServer;
use esim_proto::provisioning::v1 as provisioning;
use esim_proto::r#type::v1 as tpb;
use esim_proto::usage::v1 as usage;
use esim_runtime::db::testing::TestDatabase;
use esim_runtime::{GrpcServer, ShutdownPolicy};
use esim_sandbox::{Sandbox, SandboxConfig};
use esim_upstream::config::{FmsConfig, HttpSettings, MpConfig};
use esim_upstream::fms::FmsClient;
use esim_upstream::mp::MpClient;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tonic::transport::Channel;

/// The SFT plan product the tests sell.
pub const SFT_PRODUCT: &str = "products/sft-plan-1gb";

fn usd(units: i64, nanos: i32) -> Money {
    Money {
        currency_code: "USD".into(),
        units,
        nanos,
    }
}

/// Money from decimal text.
pub fn money(text: &str, currency: &str) -> Money {
    let d: rust_decimal::Decimal = text.parse().unwrap();
    let units = d.trunc();
    let nanos = ((d - units) * rust_decimal::Decimal::from(1_000_000_000)).trunc();
    Money {
        currency_code: currency.into(),
        units: units.try_into().unwrap(),
        nanos: nanos.try_into().unwrap(),
    }
}

/// Peers that answer from memory and record every call.
#[derive(Debug, Default)]
pub struct TestPeers {
    pub products: Mutex<HashMap<String, catalog::Product>>,
    pub get_product_calls: AtomicU64,
    /// CreateEsim requests by request id (the first of each).
    pub esims: Mutex<HashMap<String, provisioning::CreateEsimRequest>>,
    pub create_esim_calls: AtomicU64,
    /// Answer UNAVAILABLE to this many CreateEsim calls first.
    pub fail_create_esim: AtomicU32,
    /// Answer UNAVAILABLE to this many ListEsims-by-order calls first.
    pub fail_esim_of_order: AtomicU32,
    pub provisions: Mutex<HashMap<String, provisioning::Esim>>,
    pub addons: Mutex<HashMap<String, provisioning::Addon>>,
    pub tracked: Mutex<HashMap<String, usage::StartUsageTrackingRequest>>,
    /// Answer UNAVAILABLE to this many StartUsageTracking calls first.
    pub fail_start_tracking: AtomicU32,
}

/// The eSIM a recorded CreateEsim request stands for, named after its request id.
fn recorded_esim(stored: &provisioning::CreateEsimRequest) -> provisioning::Esim {
    provisioning::Esim {
        name: format!("esims/{}", stored.esim_id),
        ..stored.esim.clone().unwrap_or_default()
    }
}

/// Takes one from a failure budget; false once it is spent.
fn take_one(budget: &AtomicU32) -> bool {
    budget
        .fetch_update(AtomicOrdering::SeqCst, AtomicOrdering::SeqCst, |n| {
            n.checked_sub(1)
        })
        .is_ok()
}

#[async_trait::async_trait]
impl Peers for TestPeers {
    async fn get_product(&self, name: &str, _request_id: &str) -> Result<catalog::Product, Status> {
        self.get_product_calls.fetch_add(1, AtomicOrdering::SeqCst);
        self.products
            .lock()
            .unwrap()
            .get(name)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("{name} not found")))
    }

    async fn create_esim(
        &self,
        request: provisioning::CreateEsimRequest,
    ) -> Result<provisioning::Esim, Status> {
        self.create_esim_calls.fetch_add(1, AtomicOrdering::SeqCst);
        if take_one(&self.fail_create_esim) {
            return Err(Status::unavailable("provisioning is restarting"));
        }
        let mut esims = self.esims.lock().unwrap();
        let stored = esims.entry(request.request_id.clone()).or_insert(request);
        Ok(recorded_esim(stored))
    }

    async fn esim_of_order(&self, order: &str) -> Result<Option<provisioning::Esim>, Status> {
        if take_one(&self.fail_esim_of_order) {
            return Err(Status::unavailable("provisioning is restarting"));
        }
        let esims = self.esims.lock().unwrap();
        Ok(esims
            .values()
            .find(|stored| stored.esim.as_ref().is_some_and(|esim| esim.order == order))
            .map(recorded_esim))
    }

    async fn provision_esim(
        &self,
        request: provisioning::ProvisionEsimRequest,
    ) -> Result<provisioning::Esim, Status> {
        if request.sft_plan_id == "NO-SUCH-PLAN" {
            return Err(Status::failed_precondition("SFT SubscribeAddon refused the plan"));
        }
        let mut provisions = self.provisions.lock().unwrap();
        let n = provisions.len();
        Ok(provisions
            .entry(request.request_id.clone())
            .or_insert_with(|| provisioning::Esim {
                name: format!("esims/sft-{n}"),
                order: request.order.clone(),
                provider: tpb::Provider::Sft as i32,
                iccid: "8932042000000000017".into(),
                sft_endpoint_id: format!("EP{n}"),
                ..Default::default()
            })
            .clone())
    }

    async fn create_addon(
        &self,
        request: provisioning::CreateAddonRequest,
    ) -> Result<provisioning::Addon, Status> {
        let mut addons = self.addons.lock().unwrap();
        let n = addons.len();
        let addon = request.addon.clone().unwrap_or_default();
        Ok(addons
            .entry(request.request_id.clone())
            .or_insert_with(|| provisioning::Addon {
                name: format!("{}/addons/a{n}", request.parent),
                ..addon
            })
            .clone())
    }

    async fn start_tracking(&self, request: usage::StartUsageTrackingRequest) -> Result<(), Status> {
        if take_one(&self.fail_start_tracking) {
            return Err(Status::unavailable("usage is restarting"));
        }
        self.tracked
            .lock()
            .unwrap()
            .entry(request.request_id.clone())
            .or_insert(request);
        Ok(())
    }
}

/// The catalogue: every sandbox MP product and FMS package, and one SFT plan.
fn products() -> HashMap<String, catalog::Product> {
    let mut rng = esim_sandbox::ids::Rng::new(SandboxConfig::default().seed);
    let cat = esim_sandbox::catalog::Catalog::generate(&mut rng);
    let mut out = HashMap::new();
    for p in &cat.mp {
        let name = format!("products/mp-{}", p.product_id);
        out.insert(
            name.clone(),
            catalog::Product {
                name,
                provider: tpb::Provider::Mp as i32,
                provider_reference: Some(catalog::product::ProviderReference::Mp(tpb::MpProductReference {
                    goods_id: p.goods_id as i64,
                    product_id: p.product_id as i64,
                    sim_group_code: p.sim_group_code.clone(),
                })),
                display_name: p.product_name.clone(),
                data_bytes: (p.data_mb * 1024 * 1024) as i64,
                validity_days: p.days as i32,
                coverage_country_codes: vec!["FR".into()],
                allowed_cycle_counts: p.allowed_cycles().into_iter().map(|c| c as i32).collect(),
                wholesale_price: Some(usd(3, 500_000_000)),
                retail_price: Some(usd(5, 990_000_000)),
                available: true,
                ..Default::default()
            },
        );
    }
    for p in &cat.fms {
        let name = format!("products/fms-{}", p.id);
        let wholesale = format!("{}.{:02}", p.price_cents / 100, p.price_cents % 100);
        let retail = format!(
            "{}.{:02}",
            (p.price_cents + 250) / 100,
            (p.price_cents + 250) % 100
        );
        out.insert(
            name.clone(),
            catalog::Product {
                name,
                provider: tpb::Provider::Fms as i32,
                provider_reference: Some(catalog::product::ProviderReference::Fms(
                    tpb::FmsPackageReference {
                        package_code: p.package_code.clone(),
                        package_id: p.id as i64,
                        currency_id: p.currency_id as i64,
                        period_num: p.period_num as i32,
                    },
                )),
                display_name: p.package_name.clone(),
                data_bytes: (p.flow_mb * 1024 * 1024) as i64,
                unlimited: p.flow_mb == 0,
                validity_days: p.days as i32,
                allowed_cycle_counts: vec![1],
                wholesale_price: Some(money(&wholesale, &p.currency)),
                retail_price: Some(money(&retail, &p.currency)),
                available: true,
                ..Default::default()
            },
        );
    }
    out.insert(
        SFT_PRODUCT.into(),
        catalog::Product {
            name: SFT_PRODUCT.into(),
            provider: tpb::Provider::Sft as i32,
            provider_reference: Some(catalog::product::ProviderReference::Sft(tpb::SftPlanReference {
                plan_id: "PLAN-TRAVEL-1GB-7D".into(),
            })),
            display_name: "Travel 1 GB".into(),
            data_bytes: 1 << 30,
            validity_days: 7,
            allowed_cycle_counts: vec![1],
            wholesale_price: Some(usd(2, 0)),
            retail_price: Some(usd(4, 0)),
            available: true,
            ..Default::default()
        },
    );
    out
}

/// Fast settings for tests.
pub fn saga_config() -> SagaConfig {
    SagaConfig {
        lease: Duration::from_secs(2),
        poll_interval: Duration::from_millis(100),
        retry_base: Duration::from_millis(100),
        retry_max: Duration::from_millis(500),
        fms_poll_min: Duration::from_millis(300),
        fms_poll_max: Duration::from_millis(600),
        ..SagaConfig::default()
    }
}

/// One running ordering service.
pub struct Running {
    pub client: OrderingServiceClient<Channel>,
    pub shutdown: CancellationToken,
    pub worker: tokio::task::JoinHandle<()>,
}

/// A sandbox, peers and a database; ordering services started on it on demand.
pub struct Harness {
    pub sandbox: Sandbox,
    pub peers: Arc<TestPeers>,
    pub label: String,
    pub database: TestDatabase,
    pub mp_url: String,
    pub fms_url: String,
    stop_sandbox: CancellationToken,
}

fn http() -> HttpSettings {
    HttpSettings {
        retry_attempts: 1,
        request_timeout: Duration::from_secs(2),
        breaker_failure_threshold: 1000,
        ..HttpSettings::default()
    }
}

impl Harness {
    /// A sandbox (with `config`) and peers over `database`.
    pub async fn new(database: TestDatabase, config: SandboxConfig) -> Self {
        let label = if database.url.starts_with("sqlite") {
            "sqlite"
        } else {
            "postgres"
        }
        .to_owned();
        let stop_sandbox = CancellationToken::new();
        let sandbox = Sandbox::new(config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        {
            let sandbox = sandbox.clone();
            let stop = stop_sandbox.clone();
            tokio::spawn(async move {
                let _ = sandbox
                    .serve(listener, async move { stop.cancelled().await })
                    .await;
            });
        }
        let peers = Arc::new(TestPeers::default());
        *peers.products.lock().unwrap() = products();
        Self {
            sandbox,
            peers,
            label,
            database,
            mp_url: format!("http://{addr}"),
            fms_url: format!("http://{addr}/fms"),
            stop_sandbox,
        }
    }

    /// Starts an ordering service on the harness's database.
    pub async fn start(&self, saga: SagaConfig) -> Running {
        self.start_with(saga, self.peers.clone()).await
    }

    /// An API-only replica: no saga worker, so orders stay where the API leaves them.
    pub async fn start_api_only(&self) -> Running {
        self.start(SagaConfig {
            worker_enabled: false,
            ..saga_config()
        })
        .await
    }

    /// Starts an ordering service with other peers.
    pub async fn start_with(&self, saga: SagaConfig, peers: Arc<dyn Peers>) -> Running {
        let db = esim_runtime::db::connect_and_migrate::<esim_ordering::migration::Migrator>(
            &self.database.url,
            true,
        )
        .await
        .unwrap();
        let mp = Arc::new(
            MpClient::new(MpConfig {
                base_url: self.mp_url.clone(),
                http: http(),
                ..MpConfig::default()
            })
            .unwrap(),
        );
        let fms = Arc::new(
            FmsClient::new(FmsConfig {
                base_url: self.fms_url.clone(),
                http: http(),
                ..FmsConfig::default()
            })
            .unwrap(),
        );
        let shutdown = CancellationToken::new();
        let (api, worker) = esim_ordering::start(
            Parts {
                db,
                peers,
                mp,
                fms,
                cipher: CredentialCipher::new([42; 32]),
                saga,
            },
            shutdown.clone(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = GrpcServer::new().add_service(OrderingServiceServer::new(api));
        {
            let stop = shutdown.clone();
            tokio::spawn(async move {
                let _ = server
                    .serve(
                        listener,
                        async move { stop.cancelled().await },
                        ShutdownPolicy::default(),
                    )
                    .await;
            });
        }
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        Running {
            client: OrderingServiceClient::new(channel),
            shutdown,
            worker,
        }
    }

    /// The first MP product (and its allowed cycle counts).
    pub fn mp_product(&self) -> catalog::Product {
        let products = self.peers.products.lock().unwrap();
        let mut mp: Vec<_> = products
            .values()
            .filter(|p| p.provider == tpb::Provider::Mp as i32)
            .cloned()
            .collect();
        mp.sort_by(|a, b| a.name.cmp(&b.name));
        mp.into_iter().next().unwrap()
    }

    /// Creates an order of the first MP product through `svc`; returns its id (no `orders/`).
    pub async fn create_mp_order(&self, svc: &Running, request_id: &str, customer: &str) -> String {
        let created = svc
            .client
            .clone()
            .create_order(create(request_id, &self.mp_product().name, customer))
            .await
            .unwrap()
            .into_inner();
        created.name.trim_start_matches("orders/").to_owned()
    }

    /// The store over this harness's database, for tests that read or write rows directly.
    pub async fn store(&self) -> Store {
        Store::new(esim_runtime::db::connect(&self.database.url).await.unwrap())
    }

    /// The first FMS product.
    pub fn fms_product(&self) -> catalog::Product {
        let products = self.peers.products.lock().unwrap();
        let mut fms: Vec<_> = products
            .values()
            .filter(|p| p.provider == tpb::Provider::Fms as i32)
            .cloned()
            .collect();
        fms.sort_by(|a, b| a.name.cmp(&b.name));
        fms.into_iter().next().unwrap()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop_sandbox.cancel();
    }
}

impl Running {
    /// Stops the service (server and worker).
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.worker).await;
    }
}

/// A harness per configured database engine.
pub async fn harnesses(config: SandboxConfig) -> Vec<Harness> {
    let mut out = Vec::new();
    for database in esim_runtime::db::testing::fresh_databases().await.unwrap() {
        out.push(Harness::new(database, config.clone()).await);
    }
    out
}

/// A create request for `product`.
pub fn create(request_id: &str, product: &str, customer: &str) -> pb::CreateOrderRequest {
    pb::CreateOrderRequest {
        request_id: request_id.into(),
        order: Some(pb::Order {
            product: product.into(),
            customer_reference: customer.into(),
            customer_email: format!("{customer}@example.com"),
            ..Default::default()
        }),
        expected_retail_price: None,
    }
}

/// Polls the order until `done` holds (or panics after `secs`).
pub async fn wait_for(
    client: &mut OrderingServiceClient<Channel>,
    name: &str,
    secs: u64,
    done: impl Fn(&pb::Order) -> bool,
) -> pb::Order {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let order = client
            .get_order(pb::GetOrderRequest { name: name.into() })
            .await
            .unwrap()
            .into_inner();
        if done(&order) {
            return order;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting; order is {:?} ({})",
            pb::OrderState::try_from(order.state),
            order.state_reason
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for the order to reach `state`.
pub async fn wait_state(
    client: &mut OrderingServiceClient<Channel>,
    name: &str,
    state: pb::OrderState,
    secs: u64,
) -> pb::Order {
    wait_for(client, name, secs, |o| o.state == state as i32).await
}

/// The history of a purchase that went through: PENDING → PROVISIONING → ACTIVE.
pub const PURCHASED: [pb::OrderState; 3] = [
    pb::OrderState::Pending,
    pb::OrderState::Provisioning,
    pb::OrderState::Active,
];

/// The states of `events`, oldest first.
pub fn states_of(events: &[pb::OrderEvent]) -> Vec<pb::OrderState> {
    events.iter().map(|e| e.state()).collect()
}

/// The order's events, oldest first (one page).
pub async fn order_events(client: &mut OrderingServiceClient<Channel>, name: &str) -> Vec<pb::OrderEvent> {
    client
        .list_order_events(pb::ListOrderEventsRequest {
            parent: name.to_owned(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events
}

/// The field named by an INVALID_ARGUMENT's BadRequest details.
pub fn violated_field(status: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    status
        .get_error_details()
        .bad_request()
        .and_then(|b| b.field_violations.first().map(|v| v.field.clone()))
        .unwrap_or_default()
}

/// Every order in the service.
pub async fn all_orders(client: &mut OrderingServiceClient<Channel>) -> Vec<pb::Order> {
    client
        .list_orders(pb::ListOrdersRequest {
            page_size: 500,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .orders
}
