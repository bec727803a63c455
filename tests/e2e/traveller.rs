//! The traveller's steps through the one front door, one function per step, shared by the
//! journeys of every provider: each step makes its calls with generated clients and the
//! bootstrap API key, checks what every provider must answer, and returns what the next step
//! needs.

use std::time::Duration;

use esim_e2e::{Bearer, TestSuite};
use esim_proto::{
    catalog::v1::{
        Country, GetProductRequest, ListCountriesRequest, ListProductsRequest, Product, SyncCatalogRequest,
        SyncOutcome, catalog_service_client::CatalogServiceClient, list_products_request,
    },
    ordering::v1::{
        CreateOrderRequest, Order, OrderState, PaymentOutcome, ReportOrderPaymentRequest, TopUpOrderRequest,
        TopUpOrderResponse, WatchOrderRequest, ordering_service_client::OrderingServiceClient,
    },
    provisioning::v1::{
        DeliverEsimRequest, Esim, EsimInstallation, EsimState, GetEsimRequest, ResumeEsimRequest,
        SuspendEsimRequest, TerminateEsimRequest, provisioning_service_client::ProvisioningServiceClient,
    },
    r#type::v1::Provider,
    usage::v1::{GetUsageRequest, Usage, usage_service_client::UsageServiceClient},
};
use tonic::{Code, Status, service::interceptor::InterceptedService, transport::Channel};

/// How long an order may take to reach a state it is watched for.
const WATCH_LIMIT: Duration = Duration::from_secs(60);

/// A channel to the gateway presenting an API key.
type Gated = InterceptedService<Channel, Bearer>;

/// A traveller's shop: the four public APIs through the gateway, with the bootstrap key.
#[derive(Debug, Clone)]
pub struct Traveller {
    /// Catalog through the gateway.
    pub catalog: CatalogServiceClient<Gated>,
    /// Ordering through the gateway.
    pub ordering: OrderingServiceClient<Gated>,
    /// Provisioning through the gateway.
    pub provisioning: ProvisioningServiceClient<Gated>,
    /// Usage through the gateway.
    pub usage: UsageServiceClient<Gated>,
    /// Prefix of every idempotency key, so steps of one journey never collide.
    journey: String,
}

impl Traveller {
    /// Clients through `suite`'s gateway; `journey` prefixes every request id.
    pub async fn new(suite: &TestSuite, journey: &str) -> Self {
        let gateway = suite.channel("gateway").await;
        Self {
            catalog: CatalogServiceClient::with_interceptor(gateway.clone(), suite.bearer()),
            ordering: OrderingServiceClient::with_interceptor(gateway.clone(), suite.bearer()),
            provisioning: ProvisioningServiceClient::with_interceptor(gateway.clone(), suite.bearer()),
            usage: UsageServiceClient::with_interceptor(gateway, suite.bearer()),
            journey: journey.to_owned(),
        }
    }

    fn request_id(&self, step: &str) -> String {
        format!("{}-{step}", self.journey)
    }

    /// Syncs the catalogue (joining the start-up sync if it still runs), so it is complete.
    pub async fn sync_catalog(&mut self) {
        let run = self
            .catalog
            .sync_catalog(SyncCatalogRequest {
                request_id: self.request_id("sync"),
                providers: Vec::new(),
            })
            .await
            .expect("sync through the gateway")
            .into_inner();
        assert_eq!(run.outcome(), SyncOutcome::Succeeded, "{run:?}");
    }

    /// Lists the countries `provider` sells in; returns `preferred` if listed, otherwise the
    /// first one with products.
    pub async fn country(&mut self, provider: Provider, preferred: &str) -> Country {
        let countries = self
            .catalog
            .list_countries(ListCountriesRequest {
                provider: provider as i32,
                ..Default::default()
            })
            .await
            .expect("list countries")
            .into_inner()
            .countries;
        let selling: Vec<Country> = countries.into_iter().filter(|c| c.product_count > 0).collect();
        assert!(!selling.is_empty(), "{provider:?} sells in no country");
        selling
            .iter()
            .find(|c| c.country_code == preferred)
            .or_else(|| selling.first())
            .cloned()
            .expect("a country")
    }

    /// Lists `provider`'s products for `country`, cheapest first; returns the cheapest.
    pub async fn cheapest_product(&mut self, country: &Country, provider: Provider) -> Product {
        let products = self
            .catalog
            .list_products(ListProductsRequest {
                country: Some(list_products_request::Country::CountryCode(
                    country.country_code.clone(),
                )),
                provider: provider as i32,
                order_by: "retail_price".into(),
                ..Default::default()
            })
            .await
            .expect("list products")
            .into_inner()
            .products;
        assert!(
            !products.is_empty(),
            "no {provider:?} product for {}",
            country.country_code
        );
        for product in &products {
            assert_eq!(product.provider(), provider, "{product:?}");
            assert!(
                product.coverage_country_codes.contains(&country.country_code),
                "{} does not cover {}: {product:?}",
                product.name,
                country.country_code
            );
            assert!(product.available, "{product:?}");
        }
        products.into_iter().next().expect("not empty")
    }

    /// The cheapest of `provider`'s products for `preferred` (or the country it sells in),
    /// as got by name, after a catalogue sync.
    pub async fn synced_cheapest_product(&mut self, provider: Provider, preferred: &str) -> Product {
        self.sync_catalog().await;
        let country = self.country(provider, preferred).await;
        let listed = self.cheapest_product(&country, provider).await;
        self.product(&listed).await
    }

    /// Gets `listed` again by name: the same product.
    pub async fn product(&mut self, listed: &Product) -> Product {
        let product = self
            .catalog
            .get_product(GetProductRequest {
                name: listed.name.clone(),
            })
            .await
            .expect("get product")
            .into_inner();
        assert_eq!(&product, listed);
        product
    }

    /// Orders `product` (its smallest cycle count) for a customer; `activate_immediately` is
    /// MP only.
    pub async fn create_order(&mut self, product: &Product, activate_immediately: bool) -> Order {
        let order = self
            .ordering
            .create_order(CreateOrderRequest {
                request_id: self.request_id("order"),
                order: Some(Order {
                    product: product.name.clone(),
                    cycle_count: product.allowed_cycle_counts.iter().copied().min().unwrap_or(0),
                    customer_reference: format!("{}-traveller", self.journey),
                    customer_email: format!("{}@example.com", self.journey),
                    activate_immediately,
                    ..Default::default()
                }),
                expected_retail_price: product.retail_price.clone(),
            })
            .await
            .expect("create order")
            .into_inner();
        assert!(order.name.starts_with("orders/"), "{order:?}");
        assert_eq!(order.provider(), product.provider());
        assert_eq!(
            order
                .total_retail_price
                .as_ref()
                .map(|m| m.currency_code.as_str()),
            product.retail_price.as_ref().map(|m| m.currency_code.as_str())
        );
        order
    }

    /// Watches `order` until it reaches `state` and returns it then. Fails if the watch ends
    /// (the order settled) in another state, or takes more than a minute.
    pub async fn watch_until(&mut self, order: &Order, state: OrderState) -> Order {
        let watch = async {
            let mut events = self
                .ordering
                .watch_order(WatchOrderRequest {
                    name: order.name.clone(),
                    ..Default::default()
                })
                .await
                .expect("watch order")
                .into_inner();
            let mut last = None;
            while let Some(update) = events.message().await.expect("the watch stream") {
                let current = update.order.expect("every update carries the order");
                if current.state() == state {
                    return current;
                }
                last = Some(current);
            }
            panic!("the watch ended before {state:?}: {last:?}");
        };
        tokio::time::timeout(WATCH_LIMIT, watch)
            .await
            .unwrap_or_else(|_| panic!("{} did not reach {state:?} within {WATCH_LIMIT:?}", order.name))
    }

    /// FMS: reports that the customer paid the order's total retail price.
    pub async fn pay(&mut self, order: &Order) -> Order {
        let paid = self
            .ordering
            .report_order_payment(ReportOrderPaymentRequest {
                request_id: self.request_id("payment"),
                name: order.name.clone(),
                outcome: PaymentOutcome::Succeeded as i32,
                amount: order.total_retail_price.clone(),
                payment_reference: format!("pi_{}", self.journey),
                payment_time: None,
            })
            .await
            .expect("report the payment")
            .into_inner();
        let payment = paid.payment.as_ref().expect("the payment is recorded");
        assert_eq!(payment.outcome(), PaymentOutcome::Succeeded);
        assert_eq!(payment.amount, order.total_retail_price);
        paid
    }

    /// Hands the eSIM of an ACTIVE `order` over: activation code and its QR code.
    pub async fn deliver(&mut self, order: &Order) -> EsimInstallation {
        assert!(order.esim.starts_with("esims/"), "{order:?}");
        let installation = self
            .provisioning
            .deliver_esim(DeliverEsimRequest {
                name: order.esim.clone(),
                ..Default::default()
            })
            .await
            .expect("deliver the eSIM")
            .into_inner();
        assert_eq!(installation.esim, order.esim);
        assert_eq!(installation.iccid, order.iccid);
        assert!(
            installation.activation_code.starts_with("LPA:1$"),
            "not an SGP.22 activation code"
        );
        assert!(!installation.smdp_address.is_empty());
        assert!(
            installation.qr_code_png.starts_with(b"\x89PNG\r\n\x1a\n"),
            "the QR code is not a PNG"
        );
        assert!(
            installation
                .ios_install_url
                .starts_with("https://esimsetup.apple.com/")
        );
        installation
    }

    /// The eSIM as provisioning has it now.
    pub async fn esim(&mut self, order: &Order) -> Esim {
        self.provisioning
            .get_esim(GetEsimRequest {
                name: order.esim.clone(),
            })
            .await
            .expect("get the eSIM")
            .into_inner()
    }

    /// The eSIM's current usage, as usage tracks it since the order became ACTIVE.
    pub async fn usage(&mut self, order: &Order) -> Usage {
        let usage = self
            .usage
            .get_usage(GetUsageRequest {
                name: format!("{}/usage", order.esim),
            })
            .await
            .expect("get usage")
            .into_inner();
        assert_eq!(usage.esim, order.esim);
        assert_eq!(usage.order, order.name);
        assert_eq!(usage.provider(), order.provider());
        usage
    }

    /// Tops `order` up with its own product.
    pub async fn top_up(&mut self, order: &Order) -> Result<TopUpOrderResponse, Status> {
        self.ordering
            .top_up_order(TopUpOrderRequest {
                request_id: self.request_id("top-up"),
                name: order.name.clone(),
                ..Default::default()
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// Suspends the eSIM of `order`.
    pub async fn suspend(&mut self, order: &Order) -> Result<Esim, Status> {
        self.provisioning
            .suspend_esim(SuspendEsimRequest {
                request_id: self.request_id("suspend"),
                name: order.esim.clone(),
                reason: "traveller asked".into(),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// Resumes the eSIM of `order`; `attempt` keeps retries' request ids apart.
    pub async fn resume(&mut self, order: &Order, attempt: u32) -> Result<Esim, Status> {
        self.provisioning
            .resume_esim(ResumeEsimRequest {
                request_id: self.request_id(&format!("resume-{attempt}")),
                name: order.esim.clone(),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// Terminates the eSIM of `order`.
    pub async fn terminate(&mut self, order: &Order) -> Result<Esim, Status> {
        self.provisioning
            .terminate_esim(TerminateEsimRequest {
                request_id: self.request_id("terminate"),
                name: order.esim.clone(),
                reason: "trip over".into(),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// Suspends, resumes and terminates the delivered eSIM of `order`, for providers with
    /// lifecycle calls; a terminated eSIM cannot be resumed.
    pub async fn suspend_resume_terminate(&mut self, order: &Order) {
        let suspended = self.suspend(order).await.expect("suspend");
        assert_eq!(suspended.state(), EsimState::Suspended, "{suspended:?}");
        let resumed = self.resume(order, 1).await.expect("resume");
        // Resumed after hand-over: back to DELIVERED.
        assert_eq!(resumed.state(), EsimState::Delivered, "{resumed:?}");
        let terminated = self.terminate(order).await.expect("terminate");
        assert_eq!(terminated.state(), EsimState::Terminated, "{terminated:?}");
        assert!(terminated.terminate_time.is_some());
        let refused = self
            .resume(order, 2)
            .await
            .expect_err("a terminated eSIM cannot be resumed");
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    }
}
