//! Benchmarks, the soak and the PostgreSQL drill that anyone can rerun, each figure beside the
//! ceiling of this machine measured in the same run: an "echo", a bare tonic server with one
//! unary method and nothing else (`grpc.health.v1.Health/Check`).
//!
//! ```sh
//! cargo run --release -p esim-e2e --bin esim-bench -- <scenario> \
//!     [--concurrency N] [--seconds S] [--database sqlite|postgres]
//! ```
//!
//! Scenarios: `catalog` (ListProducts direct and through the gateway), `hop` (what one
//! forwarding hop costs, apart from the services: an echo direct, through a bare tonic
//! pass-through and through the gateway's forwarding stack), `orders` (whole
//! purchases per provider through the gateway, upstream at 50 ms per call, and MP purchases
//! offered at `--rate N` per second, default 500, as an open load), `mixed` (the shop
//! mix), `soak` (the shop mix for `--seconds`, default 600, RSS sampled every second) and
//! `drill-postgres` (order load while PostgreSQL restarts; needs `pg_ctlcluster`) and
//! `drill-kill` (the services as child processes; ordering and provisioning `kill -9`ed and
//! restarted at random moments under order load; `--seed N` repeats a run). `soak --processes`
//! runs the soak on the child processes and reports each service's RSS. See BENCHMARKS.md.
//!
//! Servers run on their own 2-thread runtime and the load generator on another, so they share
//! the machine's cores the way separate processes would.

use std::{
    collections::BTreeMap,
    process::ExitCode,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use esim_e2e::{
    Bearer, TestSuite,
    drills::{self, SandboxAdmin},
    load::{self, LoadReport, MixReport, Samples},
    opaque::OpaqueCall,
    procs::{PROCESSES, ProcSuite, SERVICES},
    scenarios::{self, Engine, PROVIDERS, PurchaseError, Shop, UPSTREAM_MS},
};
use esim_proto::catalog::v1::{
    ListProductsRequest, catalog_service_client::CatalogServiceClient, list_products_request::Country,
};
use rand::{Rng, SeedableRng, rngs::StdRng};
use tokio::runtime::Handle;
use tonic::{
    service::interceptor::InterceptedService,
    transport::{Channel, Server},
};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

const LIST_PRODUCTS: &str = "/esim.catalog.v1.CatalogService/ListProducts";
/// What the hop echo's answer holds beside its padding: the status field and the padding's tag
/// and length.
const ECHO_FRAMING: usize = 5;
const SCENARIOS: &str = "catalog, hop [--response-bytes N], orders [--rate N], mixed, soak [--processes], drill-postgres, drill-kill [--seed N]";
const WARMUP: Duration = Duration::from_secs(2);
/// One turn of an interleaved measurement.
const SLICE: Duration = Duration::from_secs(1);

struct Args {
    scenario: String,
    concurrency: Option<usize>,
    seconds: Option<u64>,
    engine: Engine,
    seed: Option<u64>,
    processes: bool,
    response_bytes: usize,
    rate: f64,
}

impl Args {
    fn concurrency(&self, default: usize) -> usize {
        self.concurrency.unwrap_or(default)
    }

    fn duration(&self, default: u64) -> Duration {
        Duration::from_secs(self.seconds.unwrap_or(default))
    }
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        scenario: String::new(),
        concurrency: None,
        seconds: None,
        engine: Engine::Sqlite,
        seed: None,
        processes: false,
        response_bytes: 0,
        rate: 500.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--concurrency" => {
                args.concurrency = Some(value("--concurrency")?.parse().map_err(|e| format!("{e}"))?)
            }
            "--seconds" => args.seconds = Some(value("--seconds")?.parse().map_err(|e| format!("{e}"))?),
            "--database" => args.engine = Engine::from_name(&value("--database")?)?,
            "--seed" => args.seed = Some(value("--seed")?.parse().map_err(|e| format!("{e}"))?),
            "--processes" => args.processes = true,
            "--rate" => args.rate = value("--rate")?.parse().map_err(|e| format!("{e}"))?,
            "--response-bytes" => {
                args.response_bytes = value("--response-bytes")?.parse().map_err(|e| format!("{e}"))?
            }
            "catalog" | "hop" | "orders" | "mixed" | "soak" | "drill-postgres" | "drill-kill"
                if args.scenario.is_empty() =>
            {
                args.scenario = arg
            }
            other => return Err(format!("unknown argument {other:?} (scenarios: {SCENARIOS})")),
        }
    }
    if args.scenario.is_empty() {
        return Err(format!("name a scenario: {SCENARIOS}"));
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
    let servers = servers.handle().clone();
    let result = clients.block_on(async {
        match args.scenario.as_str() {
            "catalog" => catalog(&args, servers).await,
            "hop" => hop(&args, servers).await,
            "orders" => orders(&args, servers).await,
            "mixed" => mixed(&args, servers).await,
            "soak" if args.processes => soak_processes(&args).await,
            "soak" => soak(&args, servers).await,
            "drill-kill" => drill_kill(&args).await,
            "drill-postgres" => drill_postgres(&args, servers).await,
            _ => unreachable!("parse_args accepts only known scenarios"),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("esim-bench: {err}");
            ExitCode::FAILURE
        }
    }
}

fn header(args: &Args, what: &str, concurrency: usize, duration: Duration) {
    println!(
        "{what} on {}: {concurrency} concurrent callers, {} s each (after {} s warm-up), {} cores",
        args.engine.label(),
        duration.as_secs(),
        WARMUP.as_secs(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
}

async fn channel(addr: std::net::SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("url")
        .connect()
        .await
        .expect("connect")
}

/// Prints `report` with its share of the ceiling.
fn show(report: &LoadReport, ceiling: &LoadReport) {
    println!("{report}  [{:.1} % of ceiling]", report.percent_of(ceiling));
}

fn show_mix(report: &MixReport, ceiling: &LoadReport) {
    show(&report.total, ceiling);
    for kind in &report.kinds {
        show(kind, ceiling);
    }
}

/// The echo of the ceiling: a bare tonic server on the server runtime with nothing but
/// `grpc.health.v1.Health`; a client to it.
async fn echo(servers: &Handle) -> HealthClient<Channel> {
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
    HealthClient::new(channel(addr).await)
}

const CEILING: &str = "ceiling: echo (bare tonic Health/Check)";

fn call_echo(client: &HealthClient<Channel>) -> impl Future<Output = Result<(), tonic::Status>> + use<> {
    let mut client = client.clone();
    async move { client.check(HealthCheckRequest::default()).await.map(drop) }
}

/// The ceiling: the echo server, nothing else on the path, at the scenario's concurrency.
async fn ceiling(concurrency: usize, duration: Duration, servers: &Handle) -> LoadReport {
    let client = echo(servers).await;
    let report = load::run(CEILING, concurrency, WARMUP, duration, move || call_echo(&client)).await;
    println!("{report}");
    report
}

/// Starts the suite on the server runtime (its tasks run there) on fresh databases.
async fn start_suite(
    args: &Args,
    servers: &Handle,
    overrides: Vec<(String, String)>,
) -> Result<TestSuite, String> {
    let engine = args.engine.clone();
    servers
        .spawn(async move { engine.start_suite(overrides).await })
        .await
        .map_err(|err| format!("suite task: {err}"))?
}

async fn stop_suite(suite: TestSuite, servers: &Handle) {
    servers.spawn(suite.stop()).await.expect("suite stops");
}

fn failed_calls(reports: &[&LoadReport]) -> Result<(), String> {
    let errors: u64 = reports.iter().map(|r| r.errors).sum();
    if errors > 0 {
        return Err(format!("{errors} calls failed"));
    }
    Ok(())
}

async fn catalog(args: &Args, servers: Handle) -> Result<(), String> {
    let (concurrency, duration) = (args.concurrency(50), args.duration(10));
    header(args, "catalog read", concurrency, duration);
    println!(
        "measured in turns of {} s, so the ratios come from the same stretch of time",
        SLICE.as_secs_f64()
    );
    let echo = echo(&servers).await;
    let suite = start_suite(args, &servers, scenarios::bench_overrides()).await?;
    let shop = Shop::open(&suite).await?;
    let direct = CatalogServiceClient::new(suite.internal_channel("catalog"));
    let request = ListProductsRequest {
        country: Some(Country::CountryCode("JP".into())),
        page_size: 20,
        ..Default::default()
    };
    let opaque_direct = OpaqueCall::new(suite.internal_channel("catalog"), LIST_PRODUCTS, &request);
    let opaque_gateway = OpaqueCall::new(
        InterceptedService::new(suite.channel("gateway").await, suite.bearer()),
        LIST_PRODUCTS,
        &request,
    );
    let answer_bytes = opaque_direct
        .call()
        .await
        .map_err(|status| format!("ListProducts: {status}"))?
        .len();
    println!("the catalog answers {answer_bytes} bytes; the floor's echo answers as many");
    // What the same bytes cost with no code of ours: an echo of that size, direct and through
    // hyper's bare HTTP/2 forwarding (`esim-bench hop`'s floor).
    let floor = servers
        .spawn(esim_e2e::hop::start(answer_bytes.saturating_sub(ECHO_FRAMING)))
        .await
        .map_err(|err| err.to_string())?
        .map_err(|err| format!("the floor's echo did not start: {err}"))?;
    let (floor_echo, floor_forwarded) = (channel(floor.echo).await, channel(floor.hyper_pass_through).await);
    // The same request both ways; `Shop::list_products` is the gateway side.
    let reports = load::Interleaved::new()
        .with(CEILING, move || call_echo(&echo))
        .with("ListProducts(JP) direct to catalog", move || {
            let mut client = direct.clone();
            let request = request.clone();
            async move { client.list_products(request).await }
        })
        .with(
            "ListProducts(JP) through the gateway (API key, rate limit)",
            move || {
                let shop = shop.clone();
                async move { shop.list_products().await }
            },
        )
        .with("  the same direct, answer not decoded", move || {
            let call = opaque_direct.clone();
            async move { call.call().await.map(drop) }
        })
        .with("  the same through the gateway, not decoded", move || {
            let call = opaque_gateway.clone();
            async move { call.call().await.map(drop) }
        })
        .with("floor: echo of the same size, direct", move || {
            esim_e2e::hop::call(floor_echo.clone())
        })
        .with("floor: the same through bare hyper", move || {
            esim_e2e::hop::call(floor_forwarded.clone())
        })
        .run(concurrency, WARMUP, duration, SLICE)
        .await;
    let [
        ceiling,
        direct,
        gateway,
        opaque_direct,
        opaque_gateway,
        echo_sized,
        echo_forwarded,
    ] = &reports[..]
    else {
        unreachable!("seven targets")
    };
    println!("{ceiling}");
    for report in &reports[1..] {
        show(report, ceiling);
    }
    println!();
    println!(
        "gateway / ceiling:  {:>5.1} %, answer not decoded {:>5.1} %  (issue 4 target: >= 40 %, p99 < 5 ms)",
        gateway.percent_of(ceiling),
        opaque_gateway.percent_of(ceiling),
    );
    println!(
        "gateway / direct:   {:>5.1} %, answer not decoded {:>5.1} %  (issue 8 target: >= 65 %)",
        gateway.percent_of(direct),
        opaque_gateway.percent_of(opaque_direct),
    );
    println!(
        "gateway p99 - direct p99: {:.2} ms  (issue 8 target: < 1 ms)",
        (gateway.p99_us as f64 - direct.p99_us as f64) / 1000.0
    );
    println!(
        "floor through bare hyper / ceiling: {:>5.1} %; the catalog through the gateway keeps {:.1} % of it \
         (direct: {:.1} % of the echo of the same size)",
        echo_forwarded.percent_of(ceiling),
        opaque_gateway.percent_of(echo_forwarded),
        opaque_direct.percent_of(echo_sized),
    );
    stop_suite(suite, &servers).await;
    failed_calls(&reports.iter().collect::<Vec<_>>())
}

async fn hop(args: &Args, servers: Handle) -> Result<(), String> {
    let (concurrency, duration) = (args.concurrency(50), args.duration(10));
    header(args, "one forwarding hop", concurrency, duration);
    println!(
        "the echo answers {} bytes of payload beyond its status",
        args.response_bytes
    );
    println!(
        "measured in turns of {} s, so the ratios come from the same stretch of time",
        SLICE.as_secs_f64()
    );
    let hops = servers
        .spawn(esim_e2e::hop::start(args.response_bytes))
        .await
        .map_err(|err| err.to_string())?
        .map_err(|err| format!("the echo and its forwarders did not start: {err}"))?;
    let mut targets = load::Interleaved::new();
    for (label, addr) in [
        ("echo direct", hops.echo),
        ("echo through a bare tonic pass-through", hops.pass_through),
        ("echo through a bare hyper pass-through", hops.hyper_pass_through),
        ("echo through the gateway's forwarding stack", hops.gateway_stack),
    ] {
        let channel = channel(addr).await;
        targets = targets.with(label, move || esim_e2e::hop::call(channel.clone()));
    }
    let reports = targets.run(concurrency, WARMUP, duration, SLICE).await;
    println!("{}", reports[0]);
    for report in &reports[1..] {
        show(report, &reports[0]);
    }
    println!();
    println!(
        "gateway stack / bare tonic pass-through: {:>5.1} %  (what the gateway's own code keeps of the hop)",
        reports[3].percent_of(&reports[1])
    );
    failed_calls(&reports.iter().collect::<Vec<_>>())
}

/// Purchases made one at a time before the load, for what one costs the suite alone.
const ALONE_RUNS: usize = 10;

async fn orders(args: &Args, servers: Handle) -> Result<(), String> {
    let (concurrency, duration) = (args.concurrency(100), args.duration(10));
    header(args, "order creation", concurrency, duration);
    let ceiling = ceiling(concurrency, duration, &servers).await;
    let suite = start_suite(args, &servers, scenarios::bench_overrides()).await?;
    let shop = Shop::open(&suite).await?;
    let sandbox = SandboxAdmin::of(&suite);
    let mut reports = Vec::new();
    for provider in PROVIDERS {
        // Purchases alone first: how many upstream calls one makes, and what it costs the suite
        // with nothing else running (the time the sandbox held its calls subtracted).
        let runs = if provider == esim_proto::r#type::v1::Provider::Fms {
            1
        } else {
            ALONE_RUNS
        };
        let (calls_before, held_before) = sandbox.held().await?;
        let mut alone = Vec::with_capacity(runs);
        for _ in 0..runs {
            let started = Instant::now();
            shop.purchase(provider, None).await?;
            alone.push(started.elapsed());
        }
        let (calls_after, held_after) = sandbox.held().await?;
        let upstream_calls = (calls_after - calls_before) / runs as u64;
        let alone_upstream = (held_after - held_before) / runs as u32;
        alone.sort_unstable();
        let alone = alone[runs / 2];

        let created = Samples::after(WARMUP);
        let report = {
            let (shop, created) = (shop.clone(), created.clone());
            load::run(
                &format!("{provider:?} purchase through the gateway, to ACTIVE"),
                concurrency,
                WARMUP,
                duration,
                move || {
                    let (shop, created) = (shop.clone(), created.clone());
                    async move { shop.purchase(provider, Some(created)).await }
                },
            )
            .await
        };
        show(&report, &ceiling);
        let create = created.report(
            &format!("  {provider:?} CreateOrder (within the purchase)"),
            duration,
        );
        show(&create, &ceiling);
        let (calls_loaded, held_loaded) = sandbox.held().await?;
        let per_call = (held_loaded - held_after).as_micros() as u64 / (calls_loaded - calls_after).max(1);
        let upstream_us = upstream_calls * per_call;
        let ms = |us: u64| us as f64 / 1000.0;
        println!(
            "  {provider:?}: {:.0} orders/s to ACTIVE; one purchase alone (median of {runs}): {:.1} ms with \
             {upstream_calls} upstream calls the sandbox held {:.1} ms ({} ms nominal), so the suite's \
             share is {:.1} ms; under load ≈ p50 {:.1} ms, p99 {:.1} ms (the purchase minus its upstream \
             calls at {:.2} ms each as held; includes the saga's polling and the queueing of {concurrency} buyers)",
            report.rps,
            alone.as_secs_f64() * 1000.0,
            alone_upstream.as_secs_f64() * 1000.0,
            upstream_calls * UPSTREAM_MS,
            alone.saturating_sub(alone_upstream).as_secs_f64() * 1000.0,
            ms(report.p50_us.saturating_sub(upstream_us)),
            ms(report.p99_us.saturating_sub(upstream_us)),
            ms(per_call),
        );
        reports.push(report);
        if provider == esim_proto::r#type::v1::Provider::Mp {
            let (report, per_call) = paced_purchases(args, &shop, &sandbox, concurrency, duration).await?;
            println!(
                "  {provider:?} offered at {:.0}/s (an open load: each purchase timed from when it was due): \
                 achieved {:.0}/s; the suite adds p50 {:.1} ms, p99 {:.1} ms (the purchase minus its \
                 {upstream_calls} upstream call(s) at {:.2} ms each as held)",
                args.rate,
                report.rps,
                ms(report.p50_us.saturating_sub(upstream_calls * per_call)),
                ms(report.p99_us.saturating_sub(upstream_calls * per_call)),
                ms(per_call),
            );
            reports.push(report);
        }
    }
    println!();
    println!("issue 6 targets: >= 500 orders/s; the suite adds < 5 ms at p50 and < 20 ms at p99");
    stop_suite(suite, &servers).await;
    failed_calls(&reports.iter().collect::<Vec<_>>())
}

/// MP purchases offered at `args.rate` per second by up to `concurrency` buyers at once; with
/// the mean time the sandbox held each upstream call during the run, in microseconds.
async fn paced_purchases(
    args: &Args,
    shop: &Shop,
    sandbox: &SandboxAdmin,
    concurrency: usize,
    duration: Duration,
) -> Result<(LoadReport, u64), String> {
    let provider = esim_proto::r#type::v1::Provider::Mp;
    let (calls_before, held_before) = sandbox.held().await?;
    let shop = shop.clone();
    let report = load::paced(
        &format!("{provider:?} purchase offered at {:.0}/s, to ACTIVE", args.rate),
        args.rate,
        concurrency,
        WARMUP,
        duration,
        move || {
            let shop = shop.clone();
            async move { shop.purchase(provider, None).await }
        },
    )
    .await;
    let (calls_after, held_after) = sandbox.held().await?;
    println!("{report}");
    let per_call = (held_after - held_before).as_micros() as u64 / (calls_after - calls_before).max(1);
    Ok((report, per_call))
}

/// Starts the suite and opens the shop with a few eSIMs to read usage of.
async fn shop_with_esims(args: &Args, servers: &Handle) -> Result<(TestSuite, Shop, Vec<String>), String> {
    let suite = start_suite(args, servers, scenarios::bench_overrides()).await?;
    let shop = Shop::open(&suite).await?;
    let esims = shop.esims(8).await?;
    Ok((suite, shop, esims))
}

async fn mixed(args: &Args, servers: Handle) -> Result<(), String> {
    let (concurrency, duration) = (args.concurrency(50), args.duration(10));
    header(args, "mixed shop load", concurrency, duration);
    let ceiling = ceiling(concurrency, duration, &servers).await;
    let (suite, shop, esims) = shop_with_esims(args, &servers).await?;
    let report = load::run_mix(
        "shop mix through the gateway",
        concurrency,
        WARMUP,
        duration,
        shop.mix(esims),
    )
    .await;
    show_mix(&report, &ceiling);
    stop_suite(suite, &servers).await;
    failed_calls(&[&ceiling, &report.total])
}

async fn soak(args: &Args, servers: Handle) -> Result<(), String> {
    let (concurrency, duration) = (args.concurrency(50), args.duration(600));
    header(args, "soak (shop mix)", concurrency, duration);
    // Everything runs in this one process (suite and load), so there is one RSS: this process's.
    let (suite, shop, esims) = shop_with_esims(args, &servers).await?;
    let processes = [("suite + load (this process)", "self".to_owned())];
    let outcome = soak_load(&shop, esims, &processes, |_| true, concurrency, duration).await;
    stop_suite(suite, &servers).await;
    outcome
}

/// The shop mix for `duration` while the RSS of each of `processes` (name, pid or `self`) is
/// sampled every second; fails on any failed call, or when a process that `judged` names grew
/// 10 % or more after warm-up (the first minute, half the run when shorter: pools, caches and
/// SQLite's page cache fill).
async fn soak_load(
    shop: &Shop,
    esims: Vec<String>,
    processes: &[(&'static str, String)],
    judged: impl Fn(&str) -> bool,
    concurrency: usize,
    duration: Duration,
) -> Result<(), String> {
    // (seconds since the start, RSS in KiB of each of `processes`)
    type RssSamples = Arc<Mutex<Vec<(u64, Vec<u64>)>>>;
    let samples: RssSamples = Arc::default();
    let sampler = {
        let (samples, processes) = (samples.clone(), processes.to_vec());
        tokio::spawn(async move {
            let started = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let secs = started.elapsed().as_secs();
                let kib: Vec<u64> = processes
                    .iter()
                    .map(|(_, pid)| drills::rss_kib(pid).unwrap_or(0))
                    .collect();
                if secs.is_multiple_of(30) {
                    let line: Vec<String> = processes
                        .iter()
                        .zip(&kib)
                        .map(|((name, _), kib)| format!("{name} {} MiB", kib / 1024))
                        .collect();
                    println!("  t={secs:>4} s  RSS {}", line.join(", "));
                }
                samples.lock().expect("samples").push((secs, kib));
            }
        })
    };
    let report = load::run_mix(
        "shop mix through the gateway",
        concurrency,
        WARMUP,
        duration,
        shop.mix(esims),
    )
    .await;
    sampler.abort();
    for kind in std::iter::once(&report.total).chain(&report.kinds) {
        println!("{kind}");
    }
    let samples = samples.lock().expect("samples").clone();
    let baseline_at = 60.min(duration.as_secs() / 2);
    let mut grown = Vec::new();
    println!(
        "RSS per process (MiB): after {baseline_at} s, peak after that, at the end, growth (target < 10 %)"
    );
    for (i, (name, _)) in processes.iter().enumerate() {
        let baseline = samples
            .iter()
            .find(|(secs, _)| *secs >= baseline_at)
            .map_or(0, |s| s.1[i]);
        let peak = samples
            .iter()
            .filter(|(secs, _)| *secs >= baseline_at)
            .map(|s| s.1[i])
            .max()
            .unwrap_or(0);
        let end = samples.last().map_or(0, |s| s.1[i]);
        let growth = 100.0 * (end as f64 - baseline as f64) / baseline.max(1) as f64;
        println!(
            "  {name:<28} {:>7.1} {:>7.1} {:>7.1}  {growth:>6.1} %",
            baseline as f64 / 1024.0,
            peak as f64 / 1024.0,
            end as f64 / 1024.0
        );
        if growth >= 10.0 && judged(name) {
            grown.push(format!("{name} +{growth:.1} %"));
        }
    }
    println!("errors {} (target 0)", report.total.errors);
    failed_calls(&[&report.total])?;
    if !grown.is_empty() {
        return Err(format!("RSS grew after warm-up: {}", grown.join(", ")));
    }
    Ok(())
}

/// Drill (3): PostgreSQL restarted under order load. The services must reconnect by
/// themselves; afterwards every order settles and the invariants hold.
async fn drill_postgres(args: &Args, servers: Handle) -> Result<(), String> {
    if !matches!(args.engine, Engine::Postgres(_)) {
        return Err("drill-postgres needs --database postgres".into());
    }
    let (concurrency, duration) = (args.concurrency(20), args.duration(30));
    header(
        args,
        "drill: PostgreSQL restart under order load",
        concurrency,
        duration,
    );
    let suite = start_suite(args, &servers, scenarios::bench_overrides()).await?;
    let mut shop = Shop::open(&suite).await?;
    shop.purchase_timeout = Duration::from_secs(60);
    let restart = tokio::spawn(async move {
        tokio::time::sleep(WARMUP + duration / 3).await;
        let cluster = std::fs::read_dir("/etc/postgresql")
            .ok()
            .and_then(|mut dir| dir.next())
            .and_then(|entry| entry.ok())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .ok_or("no cluster under /etc/postgresql")?;
        println!("  restarting PostgreSQL {cluster}/main");
        let status = tokio::task::spawn_blocking(move || {
            std::process::Command::new("pg_ctlcluster")
                .args(["--skip-systemctl-redirect", &cluster, "main", "restart"])
                .status()
        })
        .await
        .map_err(|err| format!("pg_ctlcluster task: {err}"))?
        .map_err(|err| format!("pg_ctlcluster: {err}"))?;
        println!("  PostgreSQL restarted ({status})");
        Ok::<_, String>(())
    });
    let report = load::run_mix("order load", concurrency, WARMUP, duration, shop.purchases()).await;
    restart.await.map_err(|err| format!("restart task: {err}"))??;
    for kind in std::iter::once(&report.total).chain(&report.kinds) {
        println!("{kind}");
    }
    // Reconnected by themselves: a new purchase of each kind succeeds.
    for provider in PROVIDERS {
        shop.purchase(provider, None)
            .await
            .map_err(|err| format!("after the restart, {provider:?}: {err}"))?;
    }
    let verdict = check_orders(&suite).await;
    stop_suite(suite, &servers).await;
    verdict
}

/// Waits for every order to settle, then checks the drill invariants.
async fn check_orders(suite: &TestSuite) -> Result<(), String> {
    check_orders_at(
        suite.database_url("ordering"),
        suite.database_url("provisioning"),
        &SandboxAdmin::of(suite),
        Duration::from_secs(180),
    )
    .await
}

/// [`check_orders`] for a suite given by its databases and sandbox, waiting at most `timeout`.
async fn check_orders_at(
    ordering_url: &str,
    provisioning_url: &str,
    sandbox: &SandboxAdmin,
    timeout: Duration,
) -> Result<(), String> {
    let audit = drills::settle_at(ordering_url, provisioning_url, timeout)
        .await
        .map_err(|err| format!("audit: {err}"))?;
    println!("{audit}");
    let state = sandbox.state().await?;
    println!(
        "upstream: MP orders {} (ours know {}), FMS pre-orders {} (ours know {}; {} FMS orders \
         FAILED with the pre-order possibly at FMS, unpaid, lapsing after 10 min)",
        state["mp"]["orders"],
        audit.mp_codes,
        state["fms"]["preOrders"],
        audit.fms_pre_orders,
        audit.fms_failed_maybe_at_upstream
    );
    let mut broken = audit.violations(&sandbox.calls().await?, &state);
    if audit.undefined() + audit.state_count("PENDING") > 0 {
        broken.push("orders in an undefined state or never taken up (PENDING)".into());
    }
    // As in the e2e drill: PROVISIONING left over is reported, and fails only in strict mode.
    if audit.unsettled() > 0 && std::env::var_os("DRILL_STRICT").is_some() {
        broken.push(format!("{} orders never settled", audit.unsettled()));
    }
    if broken.is_empty() {
        println!(
            "invariants hold: every order in a defined state, none sent twice, no SIM claimed twice \
             ({} still PROVISIONING)",
            audit.state_count("PROVISIONING")
        );
        Ok(())
    } else {
        Err(broken.join("; "))
    }
}

/// The settings of the process drills: the benchmarks', plus short leases so that work a
/// killed replica held is taken up again within seconds (the defaults, 60 s for an order step
/// and 600 s for a provision, would outlast the drill's recovery window).
fn kill_drill_overrides() -> Vec<(String, String)> {
    let mut overrides = scenarios::bench_overrides();
    overrides.extend([
        ("ORDERING_LEASE_SECS".to_owned(), "5".to_owned()),
        ("PROVISIONING_PROVISION_LEASE_SECS".to_owned(), "20".to_owned()),
    ]);
    overrides
}

type Tally = Arc<Mutex<BTreeMap<String, u64>>>;

/// Whole purchases of the three providers in equal shares, each outcome tallied by provider
/// and kind (`MP ACTIVE`, `SFT CreateOrder Unavailable`, `FMS ended Failed`, ...). After an
/// UNAVAILABLE the caller waits 100 ms before its next purchase, as a client backing off would.
fn counted_purchases(shop: &Shop, tally: &Tally) -> load::Mix {
    PROVIDERS.into_iter().fold(load::Mix::new(), |mix, provider| {
        let (shop, tally) = (shop.clone(), tally.clone());
        mix.with(&format!("  purchase {provider:?}"), 1, move || {
            let (shop, tally) = (shop.clone(), tally.clone());
            async move {
                let result = shop.purchase_checked(provider, None).await;
                let kind = result
                    .as_ref()
                    .map_or_else(PurchaseError::kind, |_| "ACTIVE".to_owned());
                let unavailable = kind.ends_with("Unavailable");
                *tally
                    .lock()
                    .expect("tally")
                    .entry(format!("{provider:?} {kind}"))
                    .or_default() += 1;
                if unavailable {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                result
            }
        })
    })
}

/// What the kill loop did.
#[derive(Default)]
struct Kills {
    kills: BTreeMap<&'static str, u32>,
    restarts: u32,
    longest_to_serving: Duration,
}

/// Until `run` has passed: after a random pause (1–6 s), `kill -9` ordering or provisioning
/// (chosen at random), leave it down 0.1–2 s, start it again with the same settings and wait
/// until it serves. Random choices come from `seed`.
async fn kill_at_random(procs: &mut ProcSuite, seed: u64, run: Duration) -> Result<Kills, String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let mut kills = Kills::default();
    loop {
        let pause = Duration::from_millis(rng.random_range(1_000..6_000));
        if started.elapsed() + pause >= run {
            return Ok(kills);
        }
        tokio::time::sleep(pause).await;
        procs.check_alive()?;
        let victim = if rng.random_bool(0.5) {
            "ordering"
        } else {
            "provisioning"
        };
        let at = started.elapsed();
        let pid = procs.kill(victim)?;
        *kills.kills.entry(victim).or_default() += 1;
        let down = Duration::from_millis(rng.random_range(100..2_000));
        tokio::time::sleep(down).await;
        let restarted = Instant::now();
        let new_pid = procs.restart(victim)?;
        kills.restarts += 1;
        procs
            .wait_serving(victim, Instant::now() + Duration::from_secs(30))
            .await?;
        let to_serving = restarted.elapsed();
        kills.longest_to_serving = kills.longest_to_serving.max(to_serving);
        println!(
            "  t={:>5.1} s  kill -9 {victim:<12} (pid {pid}), down {} ms, restarted (pid {new_pid}), \
             SERVING after {} ms",
            at.as_secs_f64(),
            down.as_millis(),
            to_serving.as_millis()
        );
    }
}

/// Drill (2): the services as child processes; under order load ordering and provisioning are
/// `kill -9`ed at random moments and restarted each time. Afterwards every order is terminal or
/// honestly pending, none lost, none doubled, no SIM claimed twice, and new purchases succeed.
async fn drill_kill(args: &Args) -> Result<(), String> {
    let (concurrency, duration) = (args.concurrency(20), args.duration(60));
    let seed = args.seed.unwrap_or_else(rand::random);
    header(
        args,
        "drill: kill -9 of ordering and provisioning under order load",
        concurrency,
        duration,
    );
    println!("  seed {seed} (same kill schedule: --seed {seed})");
    let mut procs = ProcSuite::start(&args.engine, kill_drill_overrides()).await?;
    println!(
        "  children started ({}); logs in {}",
        PROCESSES
            .iter()
            .map(|name| format!("{name} pid {}", procs.pid(name).unwrap_or(0)))
            .collect::<Vec<_>>()
            .join(", "),
        procs.log_dir.display()
    );
    let mut shop = Shop::connect(procs.gateway_channel().await?, Bearer::new(&procs.api_key)).await?;
    shop.purchase_timeout = Duration::from_secs(60);
    let tally = Tally::default();
    let load = tokio::spawn(load::run_mix(
        "order load",
        concurrency,
        WARMUP,
        duration,
        counted_purchases(&shop, &tally),
    ));
    let kills = match kill_at_random(&mut procs, seed, WARMUP + duration).await {
        Ok(kills) => kills,
        Err(err) => {
            load.abort();
            return Err(err);
        }
    };
    let report = load.await.map_err(|err| format!("load task: {err}"))?;
    procs.check_alive()?;
    for kind in std::iter::once(&report.total).chain(&report.kinds) {
        println!("{kind}");
    }
    let tally = tally.lock().expect("tally").clone();
    let count =
        |pred: &dyn Fn(&str) -> bool| tally.iter().filter(|(k, _)| pred(k)).map(|(_, n)| n).sum::<u64>();
    let unavailable = count(&|k| k.ends_with("Unavailable"));
    // Other failed calls and timeouts are not what a restart explains.
    let unexpected: Vec<String> = tally
        .iter()
        .filter(|(k, _)| {
            !k.ends_with("Unavailable")
                && !k.ends_with("ACTIVE")
                && !k.contains(" ended ")
                && !k.ends_with("UNKNOWN_OUTCOME")
        })
        .map(|(k, n)| format!("{k}: {n}"))
        .collect();
    println!("purchases by outcome (whole run, warm-up included):");
    for (kind, n) in &tally {
        println!("  {kind:<40} {n}");
    }
    println!("recovery: waiting until the orders stop changing (20 s unchanged, at most 120 s)");
    let sandbox = SandboxAdmin::at(procs.addr("sandbox"));
    let verdict = check_orders_at(
        procs.database_url("ordering"),
        procs.database_url("provisioning"),
        &sandbox,
        Duration::from_secs(120),
    )
    .await;
    let mut failures = Vec::new();
    for provider in PROVIDERS {
        match shop.purchase(provider, None).await {
            Ok(order) => println!(
                "  after the drill: a {provider:?} purchase succeeds ({})",
                order.name
            ),
            Err(err) => failures.push(format!("after the drill, a {provider:?} purchase failed: {err}")),
        }
    }
    procs.check_alive()?;
    println!(
        "summary: seed {seed}; kill -9 ordering {} times, provisioning {} times; {} restarts \
         (slowest back to SERVING {} ms); purchases {} ACTIVE, {unavailable} UNAVAILABLE (expected), \
         {} other outcomes, {} unexpected errors",
        kills.kills.get("ordering").copied().unwrap_or(0),
        kills.kills.get("provisioning").copied().unwrap_or(0),
        kills.restarts,
        kills.longest_to_serving.as_millis(),
        count(&|k| k.ends_with("ACTIVE")),
        count(&|k| k.contains(" ended ") || k.ends_with("UNKNOWN_OUTCOME")),
        unexpected.len(),
    );
    procs.stop().await;
    if !unexpected.is_empty() {
        failures.push(format!(
            "errors other than UNAVAILABLE: {}",
            unexpected.join(", ")
        ));
    }
    if let Err(err) = verdict {
        failures.insert(0, err);
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

/// The soak on the services as child processes: the shop mix for `--seconds`, the RSS of every
/// process sampled each second. Growth per service = RSS at the end vs after the first minute
/// (half the run when shorter).
async fn soak_processes(args: &Args) -> Result<(), String> {
    let (concurrency, duration) = (args.concurrency(50), args.duration(600));
    header(
        args,
        "soak (shop mix), services as processes",
        concurrency,
        duration,
    );
    let procs = ProcSuite::start(&args.engine, scenarios::bench_overrides()).await?;
    let shop = Shop::connect(procs.gateway_channel().await?, Bearer::new(&procs.api_key)).await?;
    let esims = shop.esims(8).await?;
    let pids: Vec<(&str, String)> = PROCESSES
        .iter()
        .filter_map(|name| procs.pid(name).map(|pid| (*name, pid.to_string())))
        .chain([("esim-bench (load)", "self".to_owned())])
        .collect();
    let outcome = soak_load(
        &shop,
        esims,
        &pids,
        // The sandbox (a stand-in for the upstreams, keeping every order) and the load
        // generator are shown, not judged.
        |name| SERVICES.iter().any(|(service, _)| *service == name),
        concurrency,
        duration,
    )
    .await;
    let mut procs = procs;
    procs.check_alive()?;
    procs.stop().await;
    outcome
}
