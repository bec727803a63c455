//! Benchmarks that anyone can rerun, each figure beside the ceiling of this machine measured in
//! the same run (a bare tonic unary call: `grpc.health.v1.Health/Check` on a server with nothing
//! else).
//!
//! ```sh
//! cargo run --release -p esim-e2e --bin esim-bench -- catalog --concurrency 50 --seconds 10
//! ```
//!
//! Servers run on their own 2-thread runtime and the load generator on another, so they share
//! the machine's cores the way separate processes would.

use std::{process::ExitCode, time::Duration};

use esim_e2e::{TestSuite, load};
use esim_proto::catalog::v1::{
    ListProductsRequest, SyncCatalogRequest, catalog_service_client::CatalogServiceClient,
    list_products_request::Country,
};
use esim_runtime::db::testing;
use tonic::transport::{Channel, Server};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

struct Args {
    scenario: String,
    concurrency: usize,
    seconds: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        scenario: "catalog".into(),
        concurrency: 50,
        seconds: 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--concurrency" => {
                args.concurrency = value("--concurrency")?.parse().map_err(|e| format!("{e}"))?
            }
            "--seconds" => args.seconds = value("--seconds")?.parse().map_err(|e| format!("{e}"))?,
            "catalog" => args.scenario = arg,
            other => return Err(format!("unknown argument {other:?} (scenarios: catalog)")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(err) => {
            eprintln!("esim-bench: {err}");
            return ExitCode::FAILURE;
        }
    };
    let servers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("server")
        .enable_all()
        .build()
        .expect("server runtime");
    let clients = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("load")
        .enable_all()
        .build()
        .expect("load runtime");
    match args.scenario.as_str() {
        "catalog" => clients.block_on(catalog(&args, servers.handle().clone())),
        _ => unreachable!("parse_args accepts only known scenarios"),
    }
}

async fn channel(addr: std::net::SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("url")
        .connect()
        .await
        .expect("connect")
}

/// The ceiling: a bare tonic server answering health checks, nothing else on the path.
async fn ceiling(args: &Args, servers: &tokio::runtime::Handle) -> load::LoadReport {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let std_listener = listener.into_std().expect("std listener");
    servers.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
        let (_reporter, health) = tonic_health::server::health_reporter();
        Server::builder()
            .add_service(health)
            .serve_with_incoming(
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            )
            .await
            .expect("bare server");
    });
    let client = HealthClient::new(channel(addr).await);
    run(args, "ceiling: bare tonic unary (Health/Check)", move || {
        let mut client = client.clone();
        async move { client.check(HealthCheckRequest::default()).await.map(|_| ()) }
    })
    .await
}

async fn run<F, Fut>(args: &Args, label: &str, call: F) -> load::LoadReport
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), tonic::Status>> + Send,
{
    let report = load::run(
        label,
        args.concurrency,
        Duration::from_secs(2),
        Duration::from_secs(args.seconds),
        call,
    )
    .await;
    println!("{report}");
    report
}

async fn catalog(args: &Args, servers: tokio::runtime::Handle) -> ExitCode {
    println!(
        "catalog read: {} concurrent callers, {} s each (after 2 s warm-up), {} cores",
        args.concurrency,
        args.seconds,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let ceiling = ceiling(args, &servers).await;

    let suite = servers
        .spawn(TestSuite::start(|| async { testing::fresh_sqlite() }, Vec::new()))
        .await
        .expect("suite task")
        .expect("suite starts");
    let gateway = suite.channel("gateway").await;
    let direct = suite.channel("catalog").await;
    CatalogServiceClient::new(gateway.clone())
        .sync_catalog(SyncCatalogRequest {
            request_id: "bench-sync".into(),
            providers: Vec::new(),
        })
        .await
        .expect("catalog synced");

    let request = ListProductsRequest {
        country: Some(Country::CountryCode("JP".into())),
        page_size: 20,
        ..Default::default()
    };
    let list = |channel: Channel| {
        let client = CatalogServiceClient::new(channel);
        let request = request.clone();
        move || {
            let mut client = client.clone();
            let request = request.clone();
            async move { client.list_products(request).await.map(|_| ()) }
        }
    };
    let direct_report = run(args, "ListProducts(JP) direct to catalog", list(direct)).await;
    let gateway_report = run(args, "ListProducts(JP) through the gateway", list(gateway)).await;

    println!();
    println!(
        "direct  / ceiling: {:>5.1} %",
        100.0 * direct_report.rps / ceiling.rps
    );
    println!(
        "gateway / ceiling: {:>5.1} %  (issue 4 target: >= 40 %, p99 < 5 ms)",
        100.0 * gateway_report.rps / ceiling.rps
    );
    println!(
        "gateway / direct:  {:>5.1} %",
        100.0 * gateway_report.rps / direct_report.rps
    );
    servers.spawn(suite.stop()).await.expect("suite stops");
    if [&ceiling, &direct_report, &gateway_report]
        .iter()
        .any(|r| r.errors > 0)
    {
        eprintln!("esim-bench: some calls failed");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
