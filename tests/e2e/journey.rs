//! The traveller's MP journey through the one front door: products for a country, buy, watch
//! the order to ACTIVE, receive the eSIM with its QR code, see usage, top up, suspend, resume,
//! terminate — and a terminated eSIM cannot be resumed.

use esim_e2e::TestSuite;
use esim_proto::{
    catalog::v1::{
        ListProductsRequest, SyncCatalogRequest, catalog_service_client::CatalogServiceClient,
        list_products_request::Country,
    },
    ordering::v1::{
        CreateOrderRequest, Order, OrderState, TopUpOrderRequest, WatchOrderRequest,
        ordering_service_client::OrderingServiceClient,
    },
    provisioning::v1::{
        DeliverEsimRequest, EsimState, ResumeEsimRequest, SuspendEsimRequest, TerminateEsimRequest,
        provisioning_service_client::ProvisioningServiceClient,
    },
    r#type::v1::Provider,
    usage::v1::{GetUsageRequest, usage_service_client::UsageServiceClient},
};
use esim_runtime::db::testing;

#[tokio::test]
async fn an_mp_traveller_buys_installs_tops_up_and_ends_an_esim() {
    let suite = TestSuite::start(|| async { testing::fresh_sqlite() }, Vec::new())
        .await
        .unwrap();
    let gateway = suite.channel("gateway").await;
    let mut catalog = CatalogServiceClient::new(gateway.clone());
    let mut ordering = OrderingServiceClient::new(gateway.clone());
    let mut provisioning = ProvisioningServiceClient::new(gateway.clone());
    let mut usage = UsageServiceClient::new(gateway);

    catalog
        .sync_catalog(SyncCatalogRequest {
            request_id: "journey-sync".into(),
            providers: Vec::new(),
        })
        .await
        .unwrap();
    let product = catalog
        .list_products(ListProductsRequest {
            country: Some(Country::CountryCode("JP".into())),
            provider: Provider::Mp as i32,
            order_by: "retail_price".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .products
        .into_iter()
        .next()
        .expect("an MP product for Japan");

    let order = ordering
        .create_order(CreateOrderRequest {
            request_id: "journey-order-1".into(),
            order: Some(Order {
                product: product.name.clone(),
                cycle_count: 1,
                customer_reference: "traveller-1".into(),
                customer_email: "traveller@example.com".into(),
                // Start the plan now: MP suspends only a plan in use.
                activate_immediately: true,
                ..Default::default()
            }),
            expected_retail_price: None,
        })
        .await
        .unwrap()
        .into_inner();

    // The watch stream ends once the order is ACTIVE (or terminal).
    let mut events = ordering
        .watch_order(WatchOrderRequest {
            name: order.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut last = None;
    while let Some(update) = events.message().await.unwrap() {
        last = update.order;
    }
    let order = last.expect("at least one update");
    assert_eq!(order.state(), OrderState::Active, "{order:?}");

    let installation = provisioning
        .deliver_esim(DeliverEsimRequest {
            name: order.esim.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(installation.activation_code.starts_with("LPA:1$"));
    assert!(installation.qr_code_png.starts_with(b"\x89PNG"));
    assert!(
        installation
            .ios_install_url
            .starts_with("https://esimsetup.apple.com/")
    );

    let used = usage
        .get_usage(GetUsageRequest {
            name: format!("{}/usage", order.esim),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(used.total_bytes > 0, "{used:?}");

    let topped = ordering
        .top_up_order(TopUpOrderRequest {
            request_id: "journey-topup-1".into(),
            name: order.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(topped.top_up.is_some(), "{topped:?}");

    let esim = provisioning
        .suspend_esim(SuspendEsimRequest {
            request_id: "journey-suspend".into(),
            name: order.esim.clone(),
            reason: "traveller asked".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(esim.state(), EsimState::Suspended);
    let esim = provisioning
        .resume_esim(ResumeEsimRequest {
            request_id: "journey-resume".into(),
            name: order.esim.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(esim.state(), EsimState::Suspended);
    let esim = provisioning
        .terminate_esim(TerminateEsimRequest {
            request_id: "journey-terminate".into(),
            name: order.esim.clone(),
            reason: "trip over".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(esim.state(), EsimState::Terminated);
    let refused = provisioning
        .resume_esim(ResumeEsimRequest {
            request_id: "journey-resume-2".into(),
            name: order.esim.clone(),
        })
        .await
        .expect_err("a terminated eSIM cannot be resumed");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    suite.stop().await;
}
