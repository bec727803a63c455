//! Against the real catalog service (in process, synced from the sandbox) over gRPC: the
//! production peers validate orders and the saga places them at MP.

use std::sync::Arc;
use std::time::Duration;

use esim_catalog::Catalog;
use esim_catalog::source::Sources;
use esim_catalog::source::mp::{MpSource, MpTerms};
use esim_ordering::GrpcPeers;
use esim_proto::catalog::v1 as cpb;
use esim_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use esim_proto::ordering::v1 as pb;
use esim_runtime::{GrpcServer, ShutdownPolicy};
use esim_sandbox::SandboxConfig;
use esim_upstream::config::{HttpSettings, MpConfig};
use esim_upstream::mp::MpClient;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::common::*;

/// A catalog over the harness's sandbox (MP only), synced once; returns its URL.
async fn start_catalog(h: &Harness, stop: CancellationToken) -> String {
    let mp = Arc::new(
        MpClient::new(MpConfig {
            base_url: h.mp_url.clone(),
            http: HttpSettings {
                retry_attempts: 1,
                ..HttpSettings::default()
            },
            ..MpConfig::default()
        })
        .unwrap(),
    );
    let terms: Vec<MpTerms> = mp
        .product_list("catalog-setup")
        .await
        .unwrap()
        .into_iter()
        .map(|p| MpTerms {
            product_id: p.product_id,
            wholesale_price: "3.50".into(),
            currency: "USD".into(),
            data_mb: None,
            unlimited: None,
            validity_days: None,
        })
        .collect();
    let database = esim_runtime::db::testing::fresh_sqlite().unwrap();
    let db = esim_runtime::db::connect_and_migrate::<esim_catalog::migration::Migrator>(&database.url, true)
        .await
        .unwrap();
    let sources: Sources = vec![Arc::new(MpSource::new(mp, terms))];
    let catalog = Catalog::new(db, sources);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = GrpcServer::new().add_service(catalog.service());
    tokio::spawn(async move {
        let _database = database;
        let _ = server
            .serve(
                listener,
                async move { stop.cancelled().await },
                ShutdownPolicy::default(),
            )
            .await;
    });
    let url = format!("http://{addr}");
    let channel = Channel::from_shared(url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = CatalogServiceClient::new(channel);
    client
        .sync_catalog(cpb::SyncCatalogRequest::default())
        .await
        .unwrap();
    url
}

#[tokio::test]
async fn orders_are_validated_by_the_real_catalog() {
    for h in harnesses(SandboxConfig::default()).await {
        let stop = CancellationToken::new();
        let catalog_url = start_catalog(&h, stop.clone()).await;
        let channel = Channel::from_shared(catalog_url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let products = CatalogServiceClient::new(channel)
            .list_products(cpb::ListProductsRequest {
                page_size: 50,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .products;
        let product = products.first().expect("the catalog lists MP products").clone();
        h.sandbox.reset_call_counts();
        // Provisioning and usage are not running: the order is placed and waits for them.
        let env = esim_runtime::Env::from_vars(
            "ORDERING",
            [
                ("ORDERING_CATALOG_URL", catalog_url.as_str()),
                ("ORDERING_PROVISIONING_URL", "http://127.0.0.1:9"),
                ("ORDERING_USAGE_URL", "http://127.0.0.1:9"),
            ],
        );
        let peers = GrpcPeers::connect(&env, None).unwrap();
        let svc = h.start_with(saga_config(), Arc::new(peers)).await;
        let mut client = svc.client.clone();

        let err = client
            .create_order(create("cat-unknown", "products/no-such-product", "c"))
            .await
            .unwrap_err();
        assert_eq!(violated_field(&err), "order.product", "{}", h.label);
        let mut bad = create("cat-cycles", &product.name, "c");
        bad.order.as_mut().unwrap().cycle_count = 97;
        let err = client.create_order(bad).await.unwrap_err();
        assert_eq!(violated_field(&err), "order.cycle_count", "{}", h.label);
        assert_eq!(h.sandbox.call_count("mp.activationCode"), 0);

        let created = client
            .create_order(pb::CreateOrderRequest {
                expected_retail_price: product.retail_price.clone(),
                ..create("cat-ok", &product.name, "c")
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(created.total_retail_price.as_ref().unwrap().currency_code, "USD");
        let order = wait_for(&mut client, &created.name, 20, |o| {
            o.state == pb::OrderState::Provisioning as i32
                && !o.upstream_references.as_ref().unwrap().mp_order_code.is_empty()
        })
        .await;
        assert_eq!(order.product_snapshot.unwrap().display_name, product.display_name);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(h.sandbox.call_count("mp.activationCode"), 1, "{}", h.label);
        svc.stop().await;
        stop.cancel();
    }
}
