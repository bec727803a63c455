//! Benchmark of the MP alarm callback endpoint: callbacks accepted per second (each committed
//! to the alert log and deduplicated before the 200), with p50/p99 latency, on SQLite and —
//! when `DATABASE_URL` names a PostgreSQL server — PostgreSQL.
//!
//! `cargo bench -p esim-usage --bench alarm_callbacks`; `BENCH_REQUESTS` (default 20000) and
//! `BENCH_CONCURRENCY` (default 50) tune the load. The callbacks are for 1,000 tracked MP
//! orders at rising percentages, as MP sends them; one in ten repeats an earlier one, as MP's
//! retries would, and must store nothing. At the end the stored alerts must be exactly the
//! distinct callbacks, each once, or the run fails.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use esim_runtime::db::testing;
use esim_upstream::config::{MpConfig, SftConfig};
use esim_upstream::mp::MpClient;
use esim_upstream::sft::SftClient;
use esim_usage::{Core, UsageConfig};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "bench-callback-token";

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let requests = env_or("BENCH_REQUESTS", 20_000);
    let concurrency = env_or("BENCH_CONCURRENCY", 50).max(1);
    for database in testing::fresh_databases().await.expect("databases") {
        let label = if database.url.starts_with("sqlite") {
            "sqlite"
        } else {
            "postgres"
        };
        let db =
            esim_runtime::db::connect_and_migrate::<esim_usage::migration::Migrator>(&database.url, true)
                .await
                .expect("database");
        let shutdown = CancellationToken::new();
        // No upstream is called: callbacks only write the alert log.
        let core = Core::new(
            db,
            Arc::new(MpClient::new(MpConfig::default()).expect("MP client")),
            Arc::new(SftClient::new(SftConfig::default()).expect("SFT client")),
            UsageConfig {
                callback_token: Some(esim_domain::Secret::new(TOKEN)),
                ..UsageConfig::default()
            },
            shutdown.clone(),
        );
        track_orders(&core).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!(
            "http://{}/callbacks/mp/alarm?token={TOKEN}",
            listener.local_addr().expect("addr")
        );
        let router = esim_usage::callback::router(core.clone());
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
        });

        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(concurrency)
            .build()
            .expect("client");
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let started = Instant::now();
        let mut workers = Vec::new();
        for _ in 0..concurrency {
            let (client, url, next) = (client.clone(), url.clone(), next.clone());
            workers.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut failures = 0usize;
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= requests {
                        return (latencies, failures);
                    }
                    let (order, percent) = callback(i);
                    let body = format!(
                        r#"{{"eid":"89049032123451234512345678901235","packageCode":"LP1","orderCode":"ORDER_{order}","packageUsedRate":"{percent}%","requestId":"b{i}"}}"#
                    );
                    let t = Instant::now();
                    let ok = client
                        .post(&url)
                        .header("Content-Type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success());
                    latencies.push(t.elapsed());
                    if !ok {
                        failures += 1;
                    }
                }
            }));
        }
        let mut latencies: Vec<Duration> = Vec::with_capacity(requests);
        let mut failures = 0;
        for worker in workers {
            let (l, f) = worker.await.expect("worker");
            latencies.extend(l);
            failures += f;
        }
        let elapsed = started.elapsed();
        latencies.sort_unstable();
        let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
        println!(
            "{label}: {requests} callbacks, {concurrency} concurrent: {:.0} accepted/s, p50 {:.2} ms, p99 {:.2} ms, {failures} failed",
            requests as f64 / elapsed.as_secs_f64(),
            pct(0.50).as_secs_f64() * 1000.0,
            pct(0.99).as_secs_f64() * 1000.0,
        );
        // The rate only counts if every distinct callback was stored, exactly once.
        assert_eq!(failures, 0, "{label}: callbacks not accepted");
        let stored = stored_keys(&core).await;
        let expected: Vec<String> = (0..requests)
            .map(callback)
            .map(|(order, percent)| format!("mp:ORDER_{order}:u{percent}"))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(
            stored, expected,
            "{label}: stored alerts differ from the distinct callbacks"
        );
        println!("{label}: {} distinct alerts stored, each once", stored.len());
        shutdown.cancel();
    }
}

/// The (order, percent) of callback `i`: every tenth repeats the previous one, as MP's retries
/// would.
fn callback(i: usize) -> (usize, usize) {
    let n = if i % 10 == 9 { i - 1 } else { i };
    (n % ORDERS, 1 + (n / ORDERS) % 100)
}

/// MP orders the callbacks are for.
const ORDERS: usize = 1_000;

/// Tracks `ORDERS` MP eSIMs, as ordering does when an order becomes active.
async fn track_orders(core: &Arc<Core>) {
    use esim_proto::usage::v1::{StartUsageTrackingRequest, usage_service_server::UsageService};
    let api = esim_usage::api::UsageApi::new(core.clone());
    for n in 0..ORDERS {
        let request = StartUsageTrackingRequest {
            esim: format!("esims/bench-{n}"),
            order: format!("orders/bench-{n}"),
            provider: esim_proto::r#type::v1::Provider::Mp as i32,
            mp_order_codes: vec![format!("ORDER_{n}")],
            plan_data_bytes: 1 << 30,
            ..Default::default()
        };
        api.start_usage_tracking(tonic::Request::new(request))
            .await
            .expect("tracked");
    }
}

/// The dedup keys of all stored alerts, sorted (a key stored twice would appear twice).
async fn stored_keys(core: &Core) -> Vec<String> {
    let mut keys = Vec::new();
    let mut after = 0;
    loop {
        let rows = esim_usage::store::alerts_after(&core.db, after, 10_000)
            .await
            .expect("read alerts");
        match rows.last() {
            None => break,
            Some(last) => after = last.id,
        }
        keys.extend(rows.into_iter().map(|r| r.dedup_key));
    }
    // Sorted as the expected set is, so the two compare as lists.
    keys.sort_unstable();
    keys
}
