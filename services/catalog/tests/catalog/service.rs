//! The service as its binary runs it: `run(context)` with settings from the environment, the
//! config file's SFT plans seeded, a startup sync, health and the API served.

use std::time::Duration;

use esim_proto::catalog::v1 as pb;
use esim_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use esim_runtime::{Env, ServiceContext};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

#[tokio::test]
async fn run_seeds_plans_syncs_at_start_and_serves() {
    for database in esim_runtime::db::testing::fresh_databases().await.unwrap() {
        let dir = tempfile_dir();
        let config = dir.join("catalog.json");
        std::fs::write(
            &config,
            r#"{"sft_plans": [{"plan_id": "travel-eu-5", "display_name": "Europe 5 GB / 15 days",
                "data_mb": 5120, "validity_days": 15, "coverage_country_codes": ["FR", "IT"],
                "wholesale_price": "6.40", "currency": "EUR"}]}"#,
        )
        .unwrap();
        let env = Env::from_vars(
            "CATALOG",
            [
                ("CATALOG_LISTEN_ADDR", "127.0.0.1:0".to_owned()),
                ("CATALOG_DATABASE_URL", database.url.clone()),
                ("CATALOG_PROVIDERS", "sft".to_owned()),
                ("CATALOG_CONFIG_FILE", config.display().to_string()),
                // One service alone, called by the test directly.
                ("CATALOG_INTERNAL_AUTH", "off".to_owned()),
            ],
        );
        let shutdown = CancellationToken::new();
        let context = ServiceContext::bind(esim_catalog::SERVICE, env, shutdown.clone())
            .await
            .unwrap();
        let addr = context.local_addr().unwrap();
        let server = tokio::spawn(esim_catalog::run(context));
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = CatalogServiceClient::new(channel);

        // The startup sync runs in the background; the product appears shortly.
        let mut product = None;
        for _ in 0..100 {
            let page = client
                .list_products(pb::ListProductsRequest::default())
                .await
                .unwrap()
                .into_inner();
            if let Some(p) = page.products.into_iter().next() {
                product = Some(p);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let product = product.expect("the startup sync created the SFT product");
        assert_eq!(product.name, "products/sft-travel-eu-5");
        assert_eq!(product.coverage_country_codes, ["FR", "IT"]);
        let runs = client
            .list_sync_runs(pb::ListSyncRunsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .sync_runs;
        assert_eq!(runs.last().unwrap().trigger, pb::SyncTrigger::Startup as i32);

        shutdown.cancel();
        server.await.unwrap().unwrap();
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("esim-catalog-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
