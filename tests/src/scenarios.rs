//! The traveller-facing calls the benchmarks, the soak and the drills drive through the gateway:
//! catalog reads, purchases per provider (FMS with its payment report), usage reads, and the
//! settings that make the suite a fair benchmark target.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use esim_proto::{
    catalog::v1::{
        ListProductsRequest, SyncCatalogRequest, catalog_service_client::CatalogServiceClient,
        list_products_request::Country,
    },
    ordering::v1::{
        CreateOrderRequest, Order, OrderState, PaymentOutcome, ReportOrderPaymentRequest, WatchOrderRequest,
        ordering_service_client::OrderingServiceClient,
    },
    r#type::v1::Provider,
    usage::v1::{GetUsageRequest, usage_service_client::UsageServiceClient},
};
use esim_runtime::db::testing::{self, TestDatabase};
use tonic::{service::interceptor::InterceptedService, transport::Channel};
use tonic_health::pb::health_check_response::ServingStatus;

use crate::{Bearer, TestSuite, load::Samples};

/// What the sandbox adds to every upstream call in the benchmarks (issue 6: "the sandbox set to
/// 50 ms per call").
pub const UPSTREAM_MS: u64 = 50;

/// The providers, in the order the benchmarks report them.
pub const PROVIDERS: [Provider; 3] = [Provider::Mp, Provider::Fms, Provider::Sft];

/// The database engine the suite runs on.
#[derive(Debug, Clone)]
pub enum Engine {
    /// A fresh SQLite file per service.
    Sqlite,
    /// A fresh database per service on the PostgreSQL server at this admin URL.
    Postgres(String),
}

impl Engine {
    /// `sqlite` or `postgres` (the server from `DATABASE_URL`, else the local default).
    pub fn from_name(name: &str) -> Result<Self, String> {
        match name {
            "sqlite" => Ok(Self::Sqlite),
            "postgres" => {
                Ok(Self::Postgres(testing::postgres_url().unwrap_or_else(|| {
                    "postgres://postgres@127.0.0.1:5432/postgres".into()
                })))
            }
            other => Err(format!("unknown database {other:?} (sqlite or postgres)")),
        }
    }

    /// `sqlite` or `postgres`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    /// A fresh, empty database on this engine.
    pub async fn fresh(&self) -> Result<TestDatabase, sea_orm::DbErr> {
        match self {
            Self::Sqlite => testing::fresh_sqlite(),
            Self::Postgres(admin) => testing::fresh_postgres(admin).await,
        }
    }

    /// The whole suite on fresh databases of this engine, once the gateway reports SERVING
    /// (the services migrate their databases after binding; a load must not race that).
    pub async fn start_suite(&self, overrides: Vec<(String, String)>) -> Result<TestSuite, String> {
        let suite = TestSuite::start(|| self.fresh(), overrides)
            .await
            .map_err(|err| format!("the suite did not start on {}: {err}", self.label()))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = crate::health_status(suite.addr("gateway"), "").await;
            if matches!(status, Ok(ServingStatus::Serving)) {
                return Ok(suite);
            }
            if Instant::now() >= deadline {
                let why = suite
                    .suite
                    .stop()
                    .await
                    .err()
                    .map_or(format!("{status:?}"), |e| e.to_string());
                return Err(format!("the suite on {} is not serving: {why}", self.label()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Settings for a benchmark: limits stay on but out of reach, every upstream call takes
/// [`UPSTREAM_MS`], and the pools are deep enough for minutes of orders.
pub fn bench_overrides() -> Vec<(String, String)> {
    [
        // Authentication and rate limiting stay on; the limits are set above what this machine
        // can reach, so the benchmarks measure their cost, not their refusals.
        ("GATEWAY_RATE_LIMIT_READ", "100000/100000".to_owned()),
        ("GATEWAY_RATE_LIMIT_ORDER", "100000/100000".to_owned()),
        // `*` is the sandbox's least specific fault key: every upstream endpoint.
        (
            "SANDBOX_FAULTS",
            format!(r#"{{"*":{{"latency_ms":{UPSTREAM_MS}}}}}"#),
        ),
        // The default (16 orders in flight) would cap orders/s at 16 / 50 ms whatever the
        // suite's own cost; the ordering bench uses 256 too.
        ("ORDERING_WORKER_CONCURRENCY", "256".to_owned()),
        // The default pool (200 SIMs) runs dry within seconds of SFT orders.
        ("SANDBOX_SFT_POOL_SIZE", "50000".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

type Intercepted = InterceptedService<Channel, Bearer>;

/// A shop front on a running suite: gateway clients with the every-scope key, one orderable
/// product per provider, and a counter for unique request ids.
#[derive(Debug, Clone)]
pub struct Shop {
    catalog: CatalogServiceClient<Intercepted>,
    ordering: OrderingServiceClient<Intercepted>,
    usage: UsageServiceClient<Intercepted>,
    products: BTreeMap<i32, String>,
    run: String,
    next: Arc<AtomicU64>,
    /// Longest a purchase may take before it counts as an error (a drill's faults can hold
    /// calls; the load must not hang on them).
    pub purchase_timeout: Duration,
}

impl Shop {
    /// Syncs the catalog through the gateway and picks the cheapest product of each provider.
    pub async fn open(suite: &TestSuite) -> Result<Self, String> {
        Self::connect(suite.channel("gateway").await, suite.bearer()).await
    }

    /// [`Shop::open`] on a gateway `channel`, presenting `bearer` (an every-scope API key).
    pub async fn connect(channel: Channel, bearer: Bearer) -> Result<Self, String> {
        let mut catalog = CatalogServiceClient::with_interceptor(channel.clone(), bearer.clone());
        sync_catalog(&catalog, &[])
            .await
            .map_err(|err| format!("catalog sync: {err}"))?;
        let mut products = BTreeMap::new();
        for provider in PROVIDERS {
            let product = catalog
                .list_products(ListProductsRequest {
                    provider: provider as i32,
                    page_size: 1,
                    ..Default::default()
                })
                .await
                .map_err(|err| format!("list {provider:?} products: {err}"))?
                .into_inner()
                .products
                .into_iter()
                .next()
                .ok_or_else(|| format!("no {provider:?} product in the catalog"))?;
            products.insert(provider as i32, product.name);
        }
        Ok(Self {
            catalog,
            ordering: OrderingServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            usage: UsageServiceClient::with_interceptor(channel, bearer),
            products,
            run: uuid_like(),
            next: Arc::new(AtomicU64::new(0)),
            purchase_timeout: Duration::from_secs(120),
        })
    }

    /// A catalog sync of `providers` (all when empty) through the gateway; it waits for the
    /// upstreams' product lists.
    pub async fn sync_catalog(&self, providers: &[Provider]) -> Result<(), tonic::Status> {
        sync_catalog(&self.catalog, providers).await
    }

    /// One catalog read: the first page of products for Japan (issue 4's benchmark call).
    pub async fn list_products(&self) -> Result<(), tonic::Status> {
        let request = ListProductsRequest {
            country: Some(Country::CountryCode("JP".into())),
            page_size: 20,
            ..Default::default()
        };
        self.catalog.clone().list_products(request).await.map(|_| ())
    }

    /// `CreateOrder` only (the saga carries on in the background).
    pub async fn create_order(&self, provider: Provider) -> Result<Order, tonic::Status> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        // A few dozen customers buying repeatedly, as a shop sees: FMS registers an account
        // per new customer, later orders reuse it.
        let customer = format!("buyer-{}", i % 64);
        let request = CreateOrderRequest {
            request_id: format!("{}-{i}", self.run),
            order: Some(Order {
                product: self.products[&(provider as i32)].clone(),
                customer_email: format!("{customer}@example.com"),
                customer_reference: customer,
                ..Default::default()
            }),
            expected_retail_price: None,
        };
        Ok(self.ordering.clone().create_order(request).await?.into_inner())
    }

    /// A whole purchase: `CreateOrder` (timed into `created` when given), then the order
    /// watched until it settles; an FMS order's payment is reported when it waits for one.
    /// Ok only when the order ends ACTIVE.
    pub async fn purchase(&self, provider: Provider, created: Option<Samples>) -> Result<Order, String> {
        self.purchase_checked(provider, created)
            .await
            .map_err(|err| err.to_string())
    }

    /// [`Shop::purchase`] with the failure kept apart by kind (the status of a failed call, the
    /// state the order ended in, a timeout), for drills that count them.
    pub async fn purchase_checked(
        &self,
        provider: Provider,
        created: Option<Samples>,
    ) -> Result<Order, PurchaseError> {
        match tokio::time::timeout(self.purchase_timeout, self.purchase_inner(provider, created)).await {
            Ok(result) => result,
            Err(_) => Err(PurchaseError::Timeout(self.purchase_timeout)),
        }
    }

    async fn purchase_inner(
        &self,
        provider: Provider,
        created: Option<Samples>,
    ) -> Result<Order, PurchaseError> {
        let call = |call: &'static str| move |status| PurchaseError::Call { call, status };
        let began = Instant::now();
        let order = self.create_order(provider).await.map_err(call("CreateOrder"))?;
        if let Some(samples) = created {
            samples.record_since(began);
        }
        let mut ordering = self.ordering.clone();
        let mut events = ordering
            .watch_order(WatchOrderRequest {
                name: order.name.clone(),
                ..Default::default()
            })
            .await
            .map_err(call("WatchOrder"))?
            .into_inner();
        let mut last = order;
        let mut reported = false;
        while let Some(update) = events.message().await.map_err(call("WatchOrder"))? {
            let Some(order) = update.order else { continue };
            match order.state() {
                OrderState::PendingPayment if !reported => {
                    reported = true;
                    ordering
                        .report_order_payment(ReportOrderPaymentRequest {
                            request_id: format!("pay-{}", order.name.replace('/', "-")),
                            name: order.name.clone(),
                            outcome: PaymentOutcome::Succeeded as i32,
                            amount: order.total_retail_price.clone(),
                            payment_reference: "pi_bench".into(),
                            payment_time: None,
                        })
                        .await
                        .map_err(call("ReportOrderPayment"))?;
                }
                // The stream goes on through UNKNOWN_OUTCOME (an operator may still resolve
                // it); for a buyer the purchase has not succeeded.
                OrderState::UnknownOutcome => {
                    return Err(PurchaseError::UnknownOutcome {
                        name: order.name,
                        reason: order.state_reason,
                    });
                }
                _ => {}
            }
            last = order;
        }
        if last.state() == OrderState::Active {
            Ok(last)
        } else {
            Err(PurchaseError::Ended {
                state: last.state(),
                name: last.name,
                reason: last.state_reason,
            })
        }
    }

    /// One usage read of `esim` (`esims/{id}`).
    pub async fn get_usage(&self, esim: &str) -> Result<(), tonic::Status> {
        let request = GetUsageRequest {
            name: format!("{esim}/usage"),
        };
        self.usage.clone().get_usage(request).await.map(|_| ())
    }

    /// Buys `n` MP eSIMs and returns their names, for usage reads.
    pub async fn esims(&self, n: usize) -> Result<Vec<String>, String> {
        let bought = futures::future::join_all((0..n).map(|_| self.purchase(Provider::Mp, None))).await;
        bought.into_iter().map(|order| order.map(|o| o.esim)).collect()
    }

    /// Whole purchases, one provider after another in equal shares: the drills' order load.
    pub fn purchases(&self) -> crate::load::Mix {
        PROVIDERS
            .into_iter()
            .fold(crate::load::Mix::new(), |mix, provider| {
                let shop = self.clone();
                mix.with(&format!("  purchase {provider:?}"), 1, move || {
                    let shop = shop.clone();
                    async move { shop.purchase(provider, None).await }
                })
            })
    }

    /// The "shop" mix of issue 9: 80 % catalog reads, 15 % orders (MP `CreateOrder`; the saga
    /// completes them in the background, as a shop's checkout does), 5 % usage reads of
    /// `esims` in turn.
    pub fn mix(&self, esims: Vec<String>) -> crate::load::Mix {
        let esims = Arc::new(esims);
        let turn = Arc::new(AtomicU64::new(0));
        let (reads, orders, usage) = (self.clone(), self.clone(), self.clone());
        crate::load::Mix::new()
            .with("  80 % ListProducts(JP)", 80, move || {
                let shop = reads.clone();
                async move { shop.list_products().await }
            })
            .with("  15 % CreateOrder(MP)", 15, move || {
                let shop = orders.clone();
                async move { shop.create_order(Provider::Mp).await }
            })
            .with("   5 % GetUsage", 5, move || {
                let shop = usage.clone();
                let i = turn.fetch_add(1, Ordering::Relaxed) as usize;
                let esim = esims[i % esims.len().max(1)].clone();
                async move { shop.get_usage(&esim).await }
            })
    }
}

/// Why a purchase did not end ACTIVE.
#[derive(Debug, Clone)]
pub enum PurchaseError {
    /// A call failed (`CreateOrder`, `WatchOrder`, `ReportOrderPayment`).
    Call {
        /// The call.
        call: &'static str,
        /// Its status.
        status: tonic::Status,
    },
    /// The order reached UNKNOWN_OUTCOME (the buyer's purchase has not succeeded).
    UnknownOutcome {
        /// `orders/{id}`.
        name: String,
        /// The order's state reason.
        reason: String,
    },
    /// The order's watch ended in another state than ACTIVE.
    Ended {
        /// `orders/{id}`.
        name: String,
        /// The last state seen.
        state: OrderState,
        /// The order's state reason.
        reason: String,
    },
    /// The purchase did not settle within the shop's `purchase_timeout`.
    Timeout(Duration),
}

impl PurchaseError {
    /// A short kind for tallies: `CreateOrder Unavailable`, `ended Failed`, `UNKNOWN_OUTCOME`,
    /// `timeout`.
    pub fn kind(&self) -> String {
        match self {
            Self::Call { call, status } => format!("{call} {:?}", status.code()),
            Self::UnknownOutcome { .. } => "UNKNOWN_OUTCOME".into(),
            Self::Ended { state, .. } => format!("ended {state:?}"),
            Self::Timeout(_) => "timeout".into(),
        }
    }
}

impl std::fmt::Display for PurchaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Call { call, status } => write!(f, "{call}: {status}"),
            Self::UnknownOutcome { name, reason } => write!(f, "{name} UNKNOWN_OUTCOME: {reason}"),
            Self::Ended { name, state, reason } => write!(f, "{name} ended {state:?}: {reason}"),
            Self::Timeout(timeout) => write!(f, "purchase not settled in {timeout:?}"),
        }
    }
}

impl std::error::Error for PurchaseError {}

async fn sync_catalog(
    catalog: &CatalogServiceClient<Intercepted>,
    providers: &[Provider],
) -> Result<(), tonic::Status> {
    let request = SyncCatalogRequest {
        request_id: format!("sync-{}", uuid_like()),
        providers: providers.iter().map(|p| *p as i32).collect(),
    };
    catalog.clone().sync_catalog(request).await.map(|_| ())
}

/// A short unique tag for request ids, so runs against the same databases never collide.
fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:x}", nanos & 0xffff_ffff_ffff)
}
