//! The test harness.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use esim_catalog::Catalog;
use esim_catalog::source::fms::FmsSource;
use esim_catalog::source::mp::{MpSource, MpTerms};
use esim_catalog::source::sft::SftSource;
use esim_catalog::source::{CatalogSource, Provider, SourceBatch, SourceError, Sources};
use esim_proto::catalog::v1 as pb;
use esim_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use esim_runtime::db::testing::TestDatabase;
use esim_runtime::{GrpcServer, ShutdownPolicy};
use esim_sandbox::{Sandbox, SandboxConfig};
use esim_upstream::config::{FmsConfig, HttpSettings, MpConfig};
use esim_upstream::fms::{FmsClient, FmsCredentials};
use esim_upstream::mp::MpClient;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// The MP product the tests leave without terms (so it is skipped).
pub const MP_WITHOUT_TERMS: usize = 0;

/// A source that hides the products whose ids are in `hidden` (a product vanishing upstream).
#[derive(Debug)]
pub struct Hiding {
    inner: Arc<dyn CatalogSource>,
    hidden: Arc<Mutex<HashSet<String>>>,
}

#[async_trait::async_trait]
impl CatalogSource for Hiding {
    fn provider(&self) -> Provider {
        self.inner.provider()
    }

    async fn fetch(&self, request_id: &str) -> Result<SourceBatch, SourceError> {
        let mut batch = self.inner.fetch(request_id).await?;
        let hidden = self.hidden.lock().unwrap().clone();
        batch
            .products
            .retain(|p| !hidden.contains(&p.reference.product_id()));
        Ok(batch)
    }
}

/// A running catalog over a running sandbox.
pub struct Harness {
    pub client: CatalogServiceClient<Channel>,
    pub sandbox: Sandbox,
    pub catalog: Catalog,
    pub hidden: Arc<Mutex<HashSet<String>>>,
    /// Every MP product the sandbox lists, with the price the tests configured (None: none).
    pub mp_terms: Vec<(esim_upstream::mp::Product, Option<MpTerms>)>,
    pub label: String,
    shutdown: CancellationToken,
    _database: TestDatabase,
}

fn http() -> HttpSettings {
    HttpSettings {
        retry_attempts: 1,
        request_timeout: Duration::from_secs(10),
        ..HttpSettings::default()
    }
}

/// The test price of an MP product: deterministic, with cents.
pub fn mp_price(product_id: i64) -> String {
    format!("{}.{:02}", 2 + product_id % 7, (product_id * 37) % 100)
}

impl Harness {
    /// Starts the sandbox, the catalog on `database`, and connects a client.
    pub async fn start(database: TestDatabase) -> Self {
        let label = if database.url.starts_with("sqlite") {
            "sqlite"
        } else {
            "postgres"
        }
        .to_owned();
        let shutdown = CancellationToken::new();
        let sandbox = Sandbox::new(SandboxConfig::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sandbox_addr = listener.local_addr().unwrap();
        {
            let sandbox = sandbox.clone();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                let _ = sandbox
                    .serve(listener, async move { stop.cancelled().await })
                    .await;
            });
        }
        let mp = Arc::new(
            MpClient::new(MpConfig {
                base_url: format!("http://{sandbox_addr}"),
                http: http(),
                ..MpConfig::default()
            })
            .unwrap(),
        );
        let fms = Arc::new(
            FmsClient::new(FmsConfig {
                base_url: format!("http://{sandbox_addr}/fms"),
                http: http(),
                ..FmsConfig::default()
            })
            .unwrap(),
        );
        // The reseller's terms for every MP product but one.
        let listed = mp.product_list("test-setup").await.unwrap();
        let mp_terms: Vec<_> = listed
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                let terms = (i != MP_WITHOUT_TERMS).then(|| MpTerms {
                    product_id: p.product_id,
                    wholesale_price: mp_price(p.product_id),
                    currency: "USD".into(),
                    data_mb: None,
                    unlimited: None,
                    validity_days: None,
                });
                (p, terms)
            })
            .collect();
        sandbox.reset_call_counts();

        let db =
            esim_runtime::db::connect_and_migrate::<esim_catalog::migration::Migrator>(&database.url, true)
                .await
                .unwrap();
        let hidden = Arc::new(Mutex::new(HashSet::new()));
        let hide = |inner: Arc<dyn CatalogSource>| -> Arc<dyn CatalogSource> {
            Arc::new(Hiding {
                inner,
                hidden: hidden.clone(),
            })
        };
        let sources: Sources = vec![
            hide(Arc::new(MpSource::new(
                mp,
                mp_terms.iter().filter_map(|(_, t)| t.clone()).collect(),
            ))),
            hide(Arc::new(FmsSource::new(
                fms,
                FmsCredentials::from_plain("catalog@test.invalid", "catalog-test"),
            ))),
            hide(Arc::new(SftSource::new(db.clone()))),
        ];
        let catalog = Catalog::new(db, sources);
        catalog.spawn_background(
            esim_catalog::Schedule {
                sync_on_start: false,
                sync_interval: None,
                cache_refresh: Duration::from_millis(100),
            },
            shutdown.clone(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = GrpcServer::new().add_service(catalog.service());
        {
            let stop = shutdown.clone();
            tokio::spawn(async move {
                server
                    .serve(
                        listener,
                        async move { stop.cancelled().await },
                        ShutdownPolicy::default(),
                    )
                    .await
                    .unwrap();
            });
        }
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        Self {
            client: CatalogServiceClient::new(channel),
            sandbox,
            catalog,
            hidden,
            mp_terms,
            label,
            shutdown,
            _database: database,
        }
    }

    /// Runs a sync now and returns the run.
    pub async fn sync(&mut self) -> pb::SyncRun {
        self.client
            .sync_catalog(pb::SyncCatalogRequest::default())
            .await
            .unwrap()
            .into_inner()
    }

    /// Every product of a query, following page tokens with `page_size`.
    pub async fn all_pages(&mut self, mut req: pb::ListProductsRequest, page_size: i32) -> Vec<pb::Product> {
        req.page_size = page_size;
        let mut out = Vec::new();
        loop {
            let page = self.client.list_products(req.clone()).await.unwrap().into_inner();
            assert!(page.products.len() <= page_size as usize);
            out.extend(page.products);
            if page.next_page_token.is_empty() {
                return out;
            }
            req.page_token = page.next_page_token;
        }
    }

    /// Stops the catalog and the sandbox.
    pub fn stop(self) {
        self.shutdown.cancel();
    }
}

/// The result of one provider in a run.
pub fn result_of(run: &pb::SyncRun, provider: esim_proto::r#type::v1::Provider) -> pb::ProviderSyncResult {
    run.provider_results
        .iter()
        .find(|r| r.provider == provider as i32)
        .cloned()
        .unwrap_or_else(|| panic!("no result for {provider:?} in {run:?}"))
}

/// A harness per configured database engine.
pub async fn harnesses() -> Vec<Harness> {
    let mut out = Vec::new();
    for database in esim_runtime::db::testing::fresh_databases().await.unwrap() {
        out.push(Harness::start(database).await);
    }
    out
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

/// `units + nanos` as text with cents.
pub fn amount(m: &esim_proto::google::r#type::Money) -> String {
    let d = rust_decimal::Decimal::from(m.units) + rust_decimal::Decimal::new(i64::from(m.nanos), 9);
    let mut d = d.normalize();
    if d.scale() < 2 {
        d.rescale(2);
    }
    d.to_string()
}
