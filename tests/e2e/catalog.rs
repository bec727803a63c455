//! The traveller's first question through the one front door: what can I buy for Japan? The
//! suite syncs the sandbox's catalogue and answers from its own tables.

use esim_e2e::TestSuite;
use esim_proto::catalog::v1::{
    GetProductRequest, ListCountriesRequest, ListProductsRequest, SyncCatalogRequest, SyncOutcome,
    catalog_service_client::CatalogServiceClient, list_products_request::Country,
};
use esim_runtime::db::testing;

#[tokio::test]
async fn products_for_a_country_through_the_gateway() {
    let suite = TestSuite::start(|| async { testing::fresh_sqlite() }, Vec::new())
        .await
        .unwrap();
    let mut catalog = CatalogServiceClient::with_interceptor(suite.channel("gateway").await, suite.bearer());

    // Joins the startup sync if it is still running, so the catalogue is there afterwards.
    let run = catalog
        .sync_catalog(SyncCatalogRequest {
            request_id: "e2e-sync-1".into(),
            providers: Vec::new(),
        })
        .await
        .expect("sync through the gateway")
        .into_inner();
    assert_eq!(run.outcome(), SyncOutcome::Succeeded, "{run:?}");

    let countries = catalog
        .list_countries(ListCountriesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .countries;
    let japan = countries
        .iter()
        .find(|c| c.name == "countries/JP")
        .expect("Japan is listed");
    assert!(japan.product_count > 0);

    let products = catalog
        .list_products(ListProductsRequest {
            country: Some(Country::CountryCode("JP".into())),
            page_size: 100,
            order_by: "retail_price".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .products;
    assert_eq!(products.len(), japan.product_count as usize);
    assert!(
        products
            .iter()
            .all(|p| p.coverage_country_codes.iter().any(|c| c == "JP"))
    );
    let prices: Vec<i64> = products
        .iter()
        .map(|p| {
            p.retail_price
                .as_ref()
                .map_or(0, |m| m.units * 1_000_000_000 + i64::from(m.nanos))
        })
        .collect();
    assert!(
        prices.windows(2).all(|w| w[0] <= w[1]),
        "sorted by price: {prices:?}"
    );

    let first = catalog
        .get_product(GetProductRequest {
            name: products[0].name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, products[0]);

    let status = catalog
        .list_products(ListProductsRequest {
            country: Some(Country::CountryCode("XX".into())),
            ..Default::default()
        })
        .await
        .expect_err("unknown country");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    suite.stop().await;
}
