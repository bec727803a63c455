//! The bad input drill (issue 9): every public RPC, through the gateway with a key of every
//! scope, gets random and hostile messages generated from the APIs' descriptors
//! ([`esim_e2e::fuzz`]); then the MP alarm-callback HTTP endpoint gets malformed, mistyped,
//! unauthenticated and oversized bodies. Checked: no panic anywhere in the process, no
//! INTERNAL / UNKNOWN / DATA_LOSS / UNIMPLEMENTED (INTERNAL only as gRPC's own answer to bytes
//! that are no protobuf message), UNAVAILABLE only naming an upstream (the backends all run),
//! every mutation refused, no 5xx from the callback endpoint, every service still SERVING, and
//! not one row of any database changed.
//!
//! CI runs 20 cases per method (`FUZZ_CASES`), a few seconds. A failure prints the seed; rerun
//! exactly it with `FUZZ_SEED=<seed>`, narrowed with `FUZZ_METHOD=<part of a method path>`,
//! `FUZZ_CONCURRENCY=1`, and `FUZZ_VERBOSE=1` to print every non-OK status. A long run (about a
//! minute per 1000 cases on SQLite):
//!
//! ```sh
//! FUZZ_CASES=2000 cargo test -p esim-e2e --test e2e fuzz -- --nocapture
//! ```
//!
//! With `DATABASE_URL=postgres://...` the PostgreSQL variants run too. Bugs the drill found
//! are kept as regression tests at the end of this file.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use esim_e2e::TestSuite;
use esim_e2e::fuzz::{self, Answer, DbSnapshot, Generator, Schema};
use esim_runtime::db::testing::{self, TestDatabase};
use futures::StreamExt;
use prost::bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// Cases per method unless `FUZZ_CASES` says otherwise.
const DEFAULT_CASES: usize = 20;
/// Calls in flight at once unless `FUZZ_CONCURRENCY` says otherwise.
const CONCURRENCY: usize = 16;
const SERVICES: [&str; 5] = ["catalog", "ordering", "provisioning", "usage", "gateway"];

/// Settings for a drill: rate limits out of the way (a limit answering RESOURCE_EXHAUSTED is
/// allowed, but would hide what the services do with the input) and no scheduled catalog sync
/// during a long run (the one at start is waited for).
fn overrides() -> Vec<(String, String)> {
    let mut vars = vec![("CATALOG_SYNC_INTERVAL_SECS".to_owned(), "0".to_owned())];
    for scope in ["READ", "ORDER", "ADMIN"] {
        vars.push((format!("GATEWAY_RATE_LIMIT_{scope}"), "100000/100000".to_owned()));
    }
    vars
}

fn labelled_urls(suite: &TestSuite) -> Vec<(String, String)> {
    suite
        .database_urls()
        .into_iter()
        .map(|(label, url)| (label.to_owned(), url))
        .collect()
}

/// Every database once the start-up writes are done: the catalog's first sync (products,
/// countries, its sync runs) and the gateway's bootstrap key. Nothing else writes on its own:
/// the usage poller, the ordering saga and provisioning only act on rows that exist, and there
/// are none.
async fn settled_snapshot(suite: &TestSuite) -> DbSnapshot {
    let urls = labelled_urls(suite);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut last = DbSnapshot::take(&urls).await.expect("databases readable");
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let next = DbSnapshot::take(&urls).await.expect("databases readable");
        let synced =
            next.rows("CATALOG", "catalog_sync_runs") > 0 && next.rows("CATALOG", "catalog_products") > 0;
        if synced && next == last {
            return next;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the databases did not settle after start: {:?}",
            last.diff(&next, &[])
        );
        last = next;
    }
}

/// Every service answers health with SERVING.
async fn all_serving(suite: &TestSuite) -> Vec<String> {
    let mut problems = Vec::new();
    for name in SERVICES {
        let answer = HealthClient::new(suite.channel(name).await)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await;
        match answer {
            Ok(response) if response.get_ref().status() == ServingStatus::Serving => {}
            other => problems.push(format!("{name} is not SERVING after the drill: {other:?}")),
        }
    }
    problems
}

async fn rpc_drill(suite: TestSuite, label: &str) {
    fuzz::record_panics();
    let seed = fuzz::seed_from_env();
    let cases = fuzz::count_from_env("FUZZ_CASES", DEFAULT_CASES);
    let only = std::env::var("FUZZ_METHOD").ok();
    let concurrency = fuzz::count_from_env("FUZZ_CONCURRENCY", CONCURRENCY).max(1);
    eprintln!("bad input drill on {label}: FUZZ_SEED={seed} FUZZ_CASES={cases}");

    let schema = Schema::load();
    for service in fuzz::PUBLIC_SERVICES {
        assert!(
            schema.methods().iter().any(|m| m.service == service),
            "{service} has no methods in the descriptor set"
        );
    }
    let methods: Vec<&fuzz::Method> = schema
        .methods()
        .iter()
        .filter(|m| !m.client_streaming)
        .filter(|m| only.as_deref().is_none_or(|part| m.path().contains(part)))
        .collect();
    assert!(!methods.is_empty(), "FUZZ_METHOD={only:?} matches no method");

    let before = settled_snapshot(&suite).await;
    let panics_before = fuzz::recorded_panics().len();
    let channel = suite.channel("gateway").await;
    let authorization: tonic::metadata::MetadataValue<tonic::metadata::Ascii> =
        format!("Bearer {}", suite.api_key).parse().expect("ascii");

    let started = std::time::Instant::now();
    let schema = &schema;
    let jobs = methods.iter().flat_map(|method| {
        (0..cases)
            .map(move |index| Generator::case(schema, seed, method, index))
            .chain(schema.control_character_cases(method))
            .map(move |case| (*method, case))
    });
    let mut answers = futures::stream::iter(jobs)
        .map(|(method, mut case)| {
            let channel = channel.clone();
            let authorization = authorization.clone();
            async move {
                let bytes = Bytes::from(std::mem::take(&mut case.bytes));
                let answer = fuzz::call(channel, &authorization, method, bytes.clone()).await;
                case.bytes = bytes.into();
                (method, case, answer)
            }
        })
        .buffer_unordered(concurrency);

    let mut tally: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let mut violations = Vec::new();
    let mut calls = 0;
    while let Some((method, case, answer)) = answers.next().await {
        calls += 1;
        let code = answer.code().map_or("HUNG".to_owned(), |c| format!("{c:?}"));
        *tally.entry(method.path()).or_default().entry(code).or_default() += 1;
        if let Err(problem) = fuzz::check_status(method, &case, &answer) {
            violations.push(format!("{} {}: {problem}", method.path(), case.describe()));
        }
        if let Answer::Status(code, message) = &answer
            && std::env::var_os("FUZZ_VERBOSE").is_some()
        {
            eprintln!("{} {}: {code:?} {message}", method.path(), case.describe());
        }
    }
    drop(answers);
    let elapsed = started.elapsed();

    violations.extend(all_serving(&suite).await);
    let after = DbSnapshot::take(&labelled_urls(&suite))
        .await
        .expect("databases readable");
    // No exemptions: every mutating request was refused, and no read writes anything while
    // no order, eSIM or tracked usage exists.
    for change in before.diff(&after, &[]) {
        violations.push(format!("written by refused or read-only calls: {change}"));
    }
    let panics = fuzz::recorded_panics();
    for panic in panics.iter().skip(panics_before) {
        violations.push(panic.clone());
    }

    eprintln!(
        "bad input drill on {label}: {calls} calls to {} methods in {elapsed:.1?}",
        methods.len()
    );
    for (path, codes) in &tally {
        eprintln!("  {path}: {codes:?}");
    }
    assert!(
        violations.is_empty(),
        "bad input drill on {label} (FUZZ_SEED={seed} FUZZ_CASES={cases}): {} violations:\n{}",
        violations.len(),
        violations.join("\n")
    );
    suite.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fuzz_every_public_rpc_on_sqlite() {
    let suite = TestSuite::start(|| async { testing::fresh_sqlite() }, overrides())
        .await
        .unwrap();
    rpc_drill(suite, "SQLite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fuzz_every_public_rpc_on_postgres() {
    let Some(admin_url) = testing::postgres_url() else {
        eprintln!("DATABASE_URL is not a PostgreSQL URL: covered by the SQLite drill only");
        return;
    };
    let suite = TestSuite::start(|| testing::fresh_postgres(&admin_url), overrides())
        .await
        .unwrap();
    rpc_drill(suite, "PostgreSQL").await;
}

// ---------------------------------------------------------------------------------------------
// The MP alarm-callback endpoint (HTTP).

/// `USAGE_CALLBACK_MAX_BODY_BYTES`' default.
const MAX_BODY: usize = 16 * 1024;

/// What a callback must be answered with.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Exactly this status.
    Exactly(u16),
    /// Some 4xx (the HTTP layer may refuse it before the handler: 404, 405, 414, 431 ...).
    ClientError,
}

#[derive(Debug)]
struct Post {
    what: String,
    query: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    chunked: bool,
    expect: Expect,
}

/// JSON string literal of `s`.
fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A callback body from raw JSON values (`None` leaves the key out).
fn alarm_body(fields: &[(&str, Option<String>)]) -> Vec<u8> {
    let parts: Vec<String> = fields
        .iter()
        .filter_map(|(key, value)| value.as_ref().map(|v| format!("{}:{v}", json_str(key))))
        .collect();
    format!("{{{}}}", parts.join(",")).into_bytes()
}

/// The fields of a valid alarm, as JSON values.
fn valid_fields(order_code: &str) -> Vec<(&'static str, Option<String>)> {
    vec![
        ("eid", Some(json_str("89049032123451234512345678901235"))),
        ("packageCode", Some(json_str("LP14230831004073"))),
        ("orderCode", Some(json_str(order_code))),
        ("packageUsedRate", Some(json_str("53%"))),
        ("requestId", Some(json_str("202309251611-1683713932415610880"))),
    ]
}

/// A hostile but acceptable string for the fields whose content is not checked.
fn hostile_text(rng: &mut StdRng) -> String {
    match rng.random_range(0..6) {
        0 => String::new(),
        1 => "\u{202E}\u{200B}🙂\0".into(),
        2 => "x".repeat(rng.random_range(1..3000)),
        3 => "' OR 1=1 --".into(),
        4 => "日本語עברית".into(),
        _ => format!("{}", rng.random::<u64>()),
    }
}

/// Rates `parse_used_rate` refuses: not only ASCII digits and dots before an optional `%`.
const BAD_RATES: [&str; 14] = [
    "lots", "", "%", "-5%", "1e3%", "NaN%", "5 3%", "53%%", "1.2.3%", ".", "٥٣%", "53\u{0}%", "+53%", "0x35%",
];

/// One body of a definitely refused kind, picked by `kind`, with random hostile values in
/// the fields that do not decide.
fn bad_post(rng: &mut StdRng, kind: usize, token: &str) -> Post {
    let good_query = format!("token={token}");
    let order_code = format!("FUZZ{}", rng.random::<u32>());
    let mut fields = valid_fields(&order_code);
    if rng.random_bool(0.5) {
        fields[0].1 = Some(json_str(&hostile_text(rng)));
        fields[1].1 = Some(json_str(&hostile_text(rng)));
    }
    let post = |what: String, query: String, body: Vec<u8>, expect: Expect| Post {
        what,
        query,
        content_type: Some("application/json"),
        body,
        chunked: false,
        expect,
    };
    match kind % 8 {
        // Authentication: a valid body with a wrong, missing or mangled token.
        0 => {
            let query = match rng.random_range(0..9) {
                0 => String::new(),
                1 => "token=".into(),
                2 => "token=wrong".into(),
                3 => format!("token={}", &token[..token.len() - 1]),
                4 => format!("token={token}x"),
                5 => format!("TOKEN={token}"),
                6 => format!("token={token}%00"),
                7 => format!("token=%F0%9F%99%82{token}"),
                _ => format!("tok={token}&token=no"),
            };
            post(
                format!("token {query:?}"),
                query,
                alarm_body(&fields),
                Expect::Exactly(401),
            )
        }
        // Not JSON, or JSON of another shape.
        1 => {
            let body: Vec<u8> = match rng.random_range(0..11) {
                0 => Vec::new(),
                1 => b"{not json".to_vec(),
                2 => b"null".to_vec(),
                3 => b"[]".to_vec(),
                4 => b"\"alarm\"".to_vec(),
                5 => "[".repeat(MAX_BODY / 2).into_bytes(),
                6 => {
                    let mut body = b"\xEF\xBB\xBF".to_vec();
                    body.extend(alarm_body(&fields));
                    body
                }
                7 => {
                    let mut body = alarm_body(&fields);
                    body.truncate(rng.random_range(1..body.len()));
                    body
                }
                8 => {
                    let mut body = alarm_body(&fields);
                    body.extend_from_slice(b"}garbage");
                    body
                }
                9 => {
                    let len = rng.random_range(1..2000);
                    (0..len).map(|_| rng.random()).collect()
                }
                _ => {
                    // Invalid UTF-8 inside a string.
                    let mut body = b"{\"eid\":\"\xff\xfe\",".to_vec();
                    body.extend_from_slice(&alarm_body(&fields)[1..]);
                    body
                }
            };
            post(
                format!(
                    "malformed body {:?}",
                    String::from_utf8_lossy(&body[..body.len().min(40)])
                ),
                good_query,
                body,
                Expect::Exactly(400),
            )
        }
        // A required field of the wrong JSON type.
        2 => {
            // `requestId` is optional: null would be fine there.
            let which = rng.random_range(0..5);
            let values = ["53", "{}", "[\"53%\"]", "true", "-1e400", "null"];
            let value = values[rng.random_range(0..if which == 4 { 5 } else { 6 })];
            fields[which].1 = Some(value.to_owned());
            post(
                format!("{} = {value}", fields[which].0),
                good_query,
                alarm_body(&fields),
                Expect::Exactly(400),
            )
        }
        // A required field missing.
        3 => {
            let which = rng.random_range(0..4);
            let name = fields[which].0;
            fields[which].1 = None;
            post(
                format!("no {name}"),
                good_query,
                alarm_body(&fields),
                Expect::Exactly(400),
            )
        }
        // An order code that is empty, blank or longer than 128 bytes.
        4 => {
            let code = match rng.random_range(0..4) {
                0 => String::new(),
                1 => " \t ".into(),
                2 => "O".repeat(129),
                _ => "\u{200B}".repeat(50), // 150 bytes
            };
            fields[2].1 = Some(json_str(&code));
            post(
                format!("orderCode of {} bytes", code.len()),
                good_query,
                alarm_body(&fields),
                Expect::Exactly(400),
            )
        }
        // A rate that is no percentage.
        5 => {
            let rate = BAD_RATES[rng.random_range(0..BAD_RATES.len())];
            fields[3].1 = Some(json_str(rate));
            post(
                format!("packageUsedRate {rate:?}"),
                good_query,
                alarm_body(&fields),
                Expect::Exactly(400),
            )
        }
        // Over the body limit: a valid alarm padded, sent with a length or chunked.
        6 => {
            let size = [MAX_BODY + 1, 64 << 10, 1 << 20, 8 << 20][rng.random_range(0..4)];
            let mut body = alarm_body(&fields);
            let pad = size.saturating_sub(body.len());
            body.truncate(body.len() - 1);
            body.extend_from_slice(format!(",\"pad\":\"{}\"}}", "p".repeat(pad)).as_bytes());
            let chunked = rng.random_bool(0.3);
            Post {
                what: format!(
                    "{} byte body{}",
                    body.len(),
                    if chunked { ", chunked" } else { "" }
                ),
                query: good_query,
                content_type: Some("application/json"),
                body,
                chunked,
                expect: Expect::Exactly(413),
            }
        }
        // The HTTP layer: a bad query string, an overlong one, another path, no content type.
        _ => match rng.random_range(0..4) {
            0 => post(
                "malformed query".into(),
                format!("token=%ZZ{token}"),
                alarm_body(&fields),
                Expect::ClientError,
            ),
            1 => post(
                "overlong query".into(),
                format!("token={}", "t".repeat(100_000)),
                alarm_body(&fields),
                Expect::ClientError,
            ),
            2 => Post {
                what: "no content type, not JSON".into(),
                query: good_query,
                content_type: None,
                body: b"eid=1&orderCode=2".to_vec(),
                chunked: false,
                expect: Expect::Exactly(400),
            },
            _ => post(
                "wrong path".into(),
                format!("token={token}&path=../"),
                alarm_body(&fields),
                Expect::ClientError,
            ),
        },
    }
}

/// A free local port (bound, then released for the service to take).
fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

async fn callback_drill<F, Fut>(fresh: F, label: &str)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<TestDatabase, sea_orm::DbErr>>,
{
    fuzz::record_panics();
    let seed = fuzz::seed_from_env();
    let cases = fuzz::count_from_env("FUZZ_CASES", DEFAULT_CASES) * 4;
    eprintln!(
        "alarm callback drill on {label}: FUZZ_SEED={seed} FUZZ_CASES={}",
        cases / 4
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let token = format!("fuzz-{:016x}", rng.random::<u64>());
    // In a test suite the callback endpoint follows the gRPC port onto an ephemeral port it does
    // not publish; naming a port makes it reachable.
    let addr = free_port();
    let mut vars = overrides();
    vars.push(("USAGE_CALLBACK_LISTEN_ADDR".to_owned(), addr.to_string()));
    vars.push(("USAGE_CALLBACK_TOKEN".to_owned(), token.clone()));
    let suite = TestSuite::start(fresh, vars).await.unwrap();
    let before = settled_snapshot(&suite).await;
    let panics_before = fuzz::recorded_panics().len();
    let path = esim_usage::callback::PATH;

    let mut violations = Vec::new();
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    let started = std::time::Instant::now();
    for index in 0..cases {
        let post = bad_post(&mut rng, index, &token);
        let target = if post.what == "wrong path" {
            format!("{path}/x?{}", post.query)
        } else {
            format!("{path}?{}", post.query)
        };
        let answer = fuzz::http_post(addr, &target, post.content_type, post.body, post.chunked).await;
        let verdict = match (&answer, post.expect) {
            (Ok(code), _) if *code >= 500 => Err(format!("{code}")),
            (Ok(code), Expect::Exactly(expected)) if *code != expected => {
                Err(format!("{code}, expected {expected}"))
            }
            (Ok(code), Expect::ClientError) if !(400..500).contains(code) => {
                Err(format!("{code}, expected a 4xx"))
            }
            (Ok(_), _) => Ok(()),
            (Err(err), _) => Err(err.clone()),
        };
        *tally
            .entry(answer.clone().map_or_else(|e| e, |c| c.to_string()))
            .or_default() += 1;
        if let Err(problem) = verdict {
            violations.push(format!("callback case {index} ({}): {problem}", post.what));
        }
    }
    let elapsed = started.elapsed();
    violations.extend(all_serving(&suite).await);
    let after = DbSnapshot::take(&labelled_urls(&suite))
        .await
        .expect("databases readable");
    for change in before.diff(&after, &[]) {
        violations.push(format!("written by refused callbacks: {change}"));
    }
    let panics = fuzz::recorded_panics();
    for panic in panics.iter().skip(panics_before) {
        violations.push(panic.clone());
    }
    eprintln!("alarm callback drill on {label}: {cases} posts in {elapsed:.1?}: {tally:?}");
    assert!(
        violations.is_empty(),
        "alarm callback drill on {label} (FUZZ_SEED={seed}): {} violations:\n{}",
        violations.len(),
        violations.join("\n")
    );

    // The control: the endpoint and the token work, so the refusals above meant something.
    let valid = alarm_body(&valid_fields("FUZZCONTROL1"));
    let answer = fuzz::http_post(
        addr,
        &format!("{path}?token={token}"),
        Some("application/json"),
        valid,
        false,
    )
    .await;
    assert_eq!(answer, Ok(200), "a valid alarm is accepted");
    let stored = DbSnapshot::take(&labelled_urls(&suite))
        .await
        .expect("databases readable");
    assert_eq!(
        stored.rows("USAGE", "usage_alerts"),
        before.rows("USAGE", "usage_alerts") + 1,
        "the valid alarm is stored"
    );
    suite.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fuzz_alarm_callback_on_sqlite() {
    callback_drill(|| async { testing::fresh_sqlite() }, "SQLite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fuzz_alarm_callback_on_postgres() {
    let Some(admin_url) = testing::postgres_url() else {
        eprintln!("DATABASE_URL is not a PostgreSQL URL: covered by the SQLite drill only");
        return;
    };
    callback_drill(|| testing::fresh_postgres(&admin_url), "PostgreSQL").await;
}

// ---------------------------------------------------------------------------------------------
// Bugs the drill found, each kept as a regression test.

/// BUG-1 (found by this drill), in ordering. Ordering echoes the whole name it refuses into the status
/// (`services/ordering/src/convert.rs`, `order_id`: `format!("{name:?} is not an order name
/// (orders/{{order}})")`, used by GetOrder, WatchOrder, ListOrderEvents, CancelOrder,
/// ReportOrderPayment, TopUpOrder ...), and `esim_runtime::status::invalid_argument` carries it
/// twice (`grpc-message`, percent-encoded, and the BadRequest details). A name of a few kB makes
/// the response trailers larger than the 16 KiB header list hyper's HTTP/2 client accepts
/// (`DEFAULT_MAX_HEADER_LIST_SIZE`), so the call fails at the transport: through the gateway the
/// caller gets UNAVAILABLE "esim.ordering.v1.OrderingService is unavailable: transport error"
/// (now and then INTERNAL "h2 protocol error: http2 error") instead of INVALID_ARGUMENT, and
/// about half of the other calls in flight on the gateway's connections to ordering fail with
/// it (20 concurrent calls, one of them the long name: 10 failed). Called directly, ordering
/// answers INTERNAL "h2 protocol error". The threshold is a name of about 4-5 kB.
#[tokio::test]
async fn long_order_name_is_invalid_argument_not_unavailable() {
    use esim_proto::ordering::v1::{GetOrderRequest, ordering_service_client::OrderingServiceClient};
    let suite = TestSuite::start(|| async { testing::fresh_sqlite() }, overrides())
        .await
        .unwrap();
    let mut client = OrderingServiceClient::with_interceptor(suite.channel("gateway").await, suite.bearer());
    let status = client
        .get_order(GetOrderRequest {
            name: format!("orders/{}", "x".repeat(20_000)),
        })
        .await
        .expect_err("no such order");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    suite.stop().await;
}

/// BUG-1 (found by this drill), in catalog: `ListProducts` (and `CreateSftPlan` /
/// `UpdateSftPlan` for `coverage_country_codes`) echo the refused country code
/// (`services/catalog/src/api.rs`: `format!("{code:?} is not an ISO 3166-1 alpha-2 code")`);
/// from about 5 kB on, the gateway answers UNAVAILABLE "esim.catalog.v1.CatalogService is
/// unavailable: transport error" instead of INVALID_ARGUMENT, as for ordering above.
#[tokio::test]
async fn long_country_code_is_invalid_argument_not_unavailable() {
    use esim_proto::catalog::v1::{
        ListProductsRequest, catalog_service_client::CatalogServiceClient, list_products_request::Country,
    };
    let suite = TestSuite::start(|| async { testing::fresh_sqlite() }, overrides())
        .await
        .unwrap();
    let mut client = CatalogServiceClient::with_interceptor(suite.channel("gateway").await, suite.bearer());
    let status = client
        .list_products(ListProductsRequest {
            country: Some(Country::CountryCode("J".repeat(5_000))),
            ..Default::default()
        })
        .await
        .expect_err("not a country code");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    suite.stop().await;
}

/// BUG-2 (found by this drill on PostgreSQL, in CI): a NUL in `ListOrders.customer_reference`
/// reached the query, PostgreSQL refused the text, and ordering answered UNAVAILABLE "the
/// ordering database is unavailable" (a `CreateOrder` with it would have done the same). Free
/// text is now checked by `esim_domain::TextRule`; the drill's control-character sweep puts
/// such a value in every read's string fields on every run.
#[tokio::test]
async fn nul_in_a_customer_reference_is_invalid_argument_on_postgres() {
    use esim_proto::ordering::v1::{
        CreateOrderRequest, ListOrdersRequest, Order, ordering_service_client::OrderingServiceClient,
    };
    let Some(admin_url) = testing::postgres_url() else {
        eprintln!("DATABASE_URL is not a PostgreSQL URL: SQLite stores NUL, nothing to check");
        return;
    };
    let suite = TestSuite::start(|| testing::fresh_postgres(&admin_url), overrides())
        .await
        .unwrap();
    let mut client = OrderingServiceClient::with_interceptor(suite.channel("gateway").await, suite.bearer());
    let status = client
        .list_orders(ListOrdersRequest {
            customer_reference: "shop\0-1".into(),
            ..Default::default()
        })
        .await
        .expect_err("NUL is no customer reference");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("customer_reference"), "{status:?}");
    let status = client
        .create_order(CreateOrderRequest {
            request_id: "nul-customer-1".into(),
            order: Some(Order {
                product: "products/mp-jp-1gb".into(),
                customer_reference: "shop\0-1".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect_err("NUL is no customer reference");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("order.customer_reference"),
        "{status:?}"
    );
    suite.stop().await;
}
