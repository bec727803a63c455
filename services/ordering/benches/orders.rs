//! Orders per second and the latency the suite adds on top of the upstream.
//!
//! `cargo bench -p esim-ordering --bench orders` (add `DATABASE_URL=postgres://...` for
//! PostgreSQL too; `ORDERS=2000 BUYERS=100 UPSTREAM_MS=50 RATE=500` are the defaults). The
//! sandbox answers every MP call after `UPSTREAM_MS`; each of `BUYERS` concurrent buyers creates an
//! MP order and follows it with `WatchOrder` until ACTIVE. Two phases of `ORDERS` orders each:
//! - throughput: buyers start their next order at once; reported as orders/s through to ACTIVE.
//! - added latency: orders offered at `RATE` per second in total; reported as p50/p99 of the
//!   end-to-end time to ACTIVE minus the one upstream call, as long as the sandbox held it
//!   (measured; the nominal `UPSTREAM_MS` is shown beside it) (what the suite adds: database writes,
//!   the saga's steps, the stream), beside `CreateOrder`'s own latency. Measured apart because in
//!   a closed loop at saturation the time per order is just `BUYERS / throughput` (queueing),
//!   whatever the suite adds to one order.
//!
//! Peers (provisioning, usage) answer from memory, so only ordering's own cost is measured; the
//! SQL statements per order are counted through sea-orm's metric callback (`SQL_STATEMENTS=1`
//! lists them one by one) plus the SQLite batches ([`esim_runtime::db::sqlite_batches`]).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::time::Duration;

use tokio::time::Instant;

use esim_ordering::{CredentialCipher, Parts, Peers, SagaConfig};
use esim_proto::catalog::v1 as catalog;
use esim_proto::google::r#type::Money;
use esim_proto::ordering::v1 as pb;
use esim_proto::ordering::v1::ordering_service_client::OrderingServiceClient;
use esim_proto::ordering::v1::ordering_service_server::OrderingServiceServer;
use esim_proto::provisioning::v1 as provisioning;
use esim_proto::r#type::v1 as tpb;
use esim_proto::usage::v1 as usage;
use esim_runtime::{GrpcServer, ShutdownPolicy};
use esim_sandbox::{Fault, Sandbox, SandboxConfig};
use esim_upstream::config::{FmsConfig, HttpSettings, MpConfig};
use esim_upstream::fms::FmsClient;
use esim_upstream::mp::MpClient;
use hdrhistogram::Histogram;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tonic::transport::Channel;

#[derive(Debug)]
struct InMemoryPeers {
    product: catalog::Product,
    /// eSIMs recorded, by order.
    esims: std::sync::Mutex<std::collections::HashMap<String, provisioning::Esim>>,
}

#[async_trait::async_trait]
impl Peers for InMemoryPeers {
    async fn get_product(&self, _name: &str, _request_id: &str) -> Result<catalog::Product, Status> {
        Ok(self.product.clone())
    }
    async fn create_esim(
        &self,
        request: provisioning::CreateEsimRequest,
    ) -> Result<provisioning::Esim, Status> {
        let esim = provisioning::Esim {
            name: format!("esims/{}", request.esim_id),
            ..request.esim.unwrap_or_default()
        };
        let mut esims = self.esims.lock().unwrap();
        Ok(esims.entry(esim.order.clone()).or_insert(esim).clone())
    }
    async fn esim_of_order(&self, order: &str) -> Result<Option<provisioning::Esim>, Status> {
        Ok(self.esims.lock().unwrap().get(order).cloned())
    }
    async fn provision_esim(
        &self,
        _r: provisioning::ProvisionEsimRequest,
    ) -> Result<provisioning::Esim, Status> {
        Err(Status::failed_precondition("not used in this benchmark"))
    }
    async fn create_addon(
        &self,
        _r: provisioning::CreateAddonRequest,
    ) -> Result<provisioning::Addon, Status> {
        Err(Status::failed_precondition("not used in this benchmark"))
    }
    async fn start_tracking(&self, _r: usage::StartUsageTrackingRequest) -> Result<(), Status> {
        Ok(())
    }
}

fn var(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn run_on(url: &str, label: &str) {
    let orders = var("ORDERS", 2000);
    let rate = var("RATE", 500);
    let buyers = var("BUYERS", 100);
    let upstream_ms = var("UPSTREAM_MS", 50);
    let stop = CancellationToken::new();
    let sandbox = Sandbox::new(SandboxConfig::default());
    sandbox.set_fault("mp.*", Fault::latency(upstream_ms));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sandbox_addr = listener.local_addr().unwrap();
    {
        let sandbox = sandbox.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            sandbox
                .serve(listener, async move { stop.cancelled().await })
                .await
        });
    }
    let mut rng = esim_sandbox::ids::Rng::new(1);
    let p = esim_sandbox::catalog::Catalog::generate(&mut rng).mp[0].clone();
    let product = catalog::Product {
        name: "products/bench".into(),
        provider: tpb::Provider::Mp as i32,
        provider_reference: Some(catalog::product::ProviderReference::Mp(tpb::MpProductReference {
            goods_id: p.goods_id as i64,
            product_id: p.product_id as i64,
            sim_group_code: p.sim_group_code.clone(),
        })),
        allowed_cycle_counts: p.allowed_cycles().into_iter().map(|c| c as i32).collect(),
        wholesale_price: Some(Money {
            currency_code: "USD".into(),
            units: 3,
            nanos: 0,
        }),
        retail_price: Some(Money {
            currency_code: "USD".into(),
            units: 5,
            nanos: 0,
        }),
        available: true,
        ..Default::default()
    };
    let http = HttpSettings {
        retry_attempts: 1,
        breaker_failure_threshold: 1_000_000,
        ..HttpSettings::default()
    };
    let mut db = esim_runtime::db::connect_and_migrate::<esim_ordering::migration::Migrator>(url, true)
        .await
        .unwrap();
    let batches_before = esim_runtime::db::sqlite_batches();
    let statements = Arc::new(AtomicU64::new(0));
    let writes = Arc::new(AtomicU64::new(0));
    let by_sql = Arc::new(std::sync::Mutex::new(
        std::collections::BTreeMap::<String, u64>::new(),
    ));
    {
        let (statements, writes, by_sql) = (statements.clone(), writes.clone(), by_sql.clone());
        let per_statement = std::env::var_os("SQL_STATEMENTS").is_some();
        db.set_metric_callback(move |info| {
            statements.fetch_add(1, Relaxed);
            if !info.statement.sql.trim_start().starts_with("SELECT") {
                writes.fetch_add(1, Relaxed);
            }
            if per_statement {
                let sql: String = info.statement.sql.chars().take(90).collect();
                *by_sql.lock().unwrap().entry(sql).or_default() += 1;
            }
        });
    }
    let (api, _worker) = esim_ordering::start(
        Parts {
            db,
            peers: Arc::new(InMemoryPeers {
                product,
                esims: Default::default(),
            }),
            mp: Arc::new(
                MpClient::new(MpConfig {
                    base_url: format!("http://{sandbox_addr}"),
                    http: http.clone(),
                    ..MpConfig::default()
                })
                .unwrap(),
            ),
            fms: Arc::new(
                FmsClient::new(FmsConfig {
                    base_url: format!("http://{sandbox_addr}/fms"),
                    http,
                    ..FmsConfig::default()
                })
                .unwrap(),
            ),
            cipher: CredentialCipher::new([9; 32]),
            saga: SagaConfig {
                concurrency: 256,
                ..SagaConfig::default()
            },
        },
        stop.clone(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = GrpcServer::new().add_service(OrderingServiceServer::new(api));
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            server
                .serve(
                    listener,
                    async move { stop.cancelled().await },
                    ShutdownPolicy::default(),
                )
                .await
        });
    }
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let saturated = phase(&channel, "throughput", orders, buyers, None).await;
    let held_before = sandbox.held("mp.activationCode");
    let paced = phase(&channel, "paced", orders, buyers, Some(rate)).await;
    // The upstream's real time per call: the sandbox holds a call a little past its latency
    // (the timer rounds up, and its own work), which is not the suite's.
    let upstream = sandbox
        .held("mp.activationCode")
        .since(held_before)
        .mean()
        .map_or(upstream_ms as f64, |d| d.as_secs_f64() * 1000.0);
    let per_order = |n: u64| n as f64 / (2 * orders) as f64;
    // SQLite batches go to sqlx directly, past sea-orm's callback: each is one call to the
    // database holding several statements, all writes.
    let batches_after = esim_runtime::db::sqlite_batches();
    let (batches, batched) = (
        batches_after.0 - batches_before.0,
        batches_after.1 - batches_before.1,
    );
    let (one_by_one, writes) = (statements.load(Relaxed), writes.load(Relaxed));
    println!(
        "{label}: {:.0} orders/s to ACTIVE ({buyers} buyers back to back, upstream {upstream_ms} ms)\n\
         {label}: added by the suite at {rate} orders/s offered (achieved {:.0}/s): p50 {:.1} ms, p99 {:.1} ms \
         (end-to-end to ACTIVE minus the upstream call, which the sandbox held {upstream:.2} ms on average; \
         minus a nominal {upstream_ms} ms: p50 {:.1} ms, p99 {:.1} ms); CreateOrder p50 {:.1} ms, p99 {:.1} ms\n\
         {label}: per order {:.1} SQL statements ({:.1} writes) in {:.1} calls to the database; activationCode \
         calls {} for {} orders",
        saturated.per_second(),
        paced.per_second(),
        ms(&paced.end_to_end, 0.5, upstream),
        ms(&paced.end_to_end, 0.99, upstream),
        ms(&paced.end_to_end, 0.5, upstream_ms as f64),
        ms(&paced.end_to_end, 0.99, upstream_ms as f64),
        ms(&paced.create, 0.5, 0.0),
        ms(&paced.create, 0.99, 0.0),
        per_order(one_by_one + batched),
        per_order(writes + batched),
        per_order(one_by_one + batches),
        sandbox.call_count("mp.activationCode"),
        2 * orders,
    );
    for (sql, count) in by_sql.lock().unwrap().iter() {
        println!("{label}: {:5.2} per order  {sql}", per_order(*count));
    }
    stop.cancel();
}

/// A histogram's quantile in milliseconds, less `minus_ms`.
fn ms(h: &Histogram<u64>, q: f64, minus_ms: f64) -> f64 {
    (h.value_at_quantile(q) as f64 / 1000.0 - minus_ms).max(0.0)
}

/// What one phase measured (microseconds).
struct Measured {
    orders: u64,
    elapsed: Duration,
    create: Histogram<u64>,
    end_to_end: Histogram<u64>,
}

impl Measured {
    fn per_second(&self) -> f64 {
        self.orders as f64 / self.elapsed.as_secs_f64()
    }
}

/// `orders` orders by `buyers` concurrent buyers, each creating an MP order and following it with
/// `WatchOrder` until ACTIVE. Without `rate` every buyer starts its next order at once (the
/// throughput); with it, order `i` is due at `i / rate` seconds and its time counts from then,
/// late or not (an open load: latency not hidden by buyers waiting on slow answers).
async fn phase(channel: &Channel, name: &str, orders: u64, buyers: u64, rate: Option<u64>) -> Measured {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..buyers {
        let mut client = OrderingServiceClient::new(channel.clone());
        let next = next.clone();
        let name = name.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut create_h = Histogram::<u64>::new(3).unwrap();
            let mut total_h = Histogram::<u64>::new(3).unwrap();
            loop {
                let i = next.fetch_add(1, SeqCst);
                if i >= orders {
                    break;
                }
                let t0 = match rate {
                    Some(rate) => {
                        let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
                        tokio::time::sleep_until(due).await;
                        due
                    }
                    None => Instant::now(),
                };
                let order = client
                    .create_order(pb::CreateOrderRequest {
                        request_id: format!("bench-{name}-{i}"),
                        order: Some(pb::Order {
                            product: "products/bench".into(),
                            customer_reference: format!("buyer-{i}"),
                            ..Default::default()
                        }),
                        expected_retail_price: None,
                    })
                    .await
                    .unwrap()
                    .into_inner();
                create_h.record(t0.elapsed().as_micros() as u64).unwrap();
                let mut stream = client
                    .watch_order(pb::WatchOrderRequest {
                        name: order.name.clone(),
                        after_event: format!("{}/events/0", order.name),
                        follow_lifecycle: false,
                    })
                    .await
                    .unwrap()
                    .into_inner();
                let mut last = 0;
                while let Some(item) = stream.message().await.unwrap() {
                    last = item.event.map(|e| e.state).unwrap_or_default();
                }
                assert_eq!(last, pb::OrderState::Active as i32, "order did not become ACTIVE");
                total_h.record(t0.elapsed().as_micros() as u64).unwrap();
            }
            (create_h, total_h)
        }));
    }
    let mut create = Histogram::<u64>::new(3).unwrap();
    let mut end_to_end = Histogram::<u64>::new(3).unwrap();
    for t in tasks {
        let (c, e) = t.await.unwrap();
        create.add(c).unwrap();
        end_to_end.add(e).unwrap();
    }
    Measured {
        orders,
        elapsed: started.elapsed(),
        create,
        end_to_end,
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let sqlite = esim_runtime::db::testing::fresh_sqlite().unwrap();
        run_on(&sqlite.url, "sqlite").await;
        if let Some(admin) = esim_runtime::db::testing::postgres_url() {
            let pg = esim_runtime::db::testing::fresh_postgres(&admin).await.unwrap();
            run_on(&pg.url, "postgres").await;
        }
    });
}
