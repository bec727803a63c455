use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::RawQuery;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::routing::{any, get, post};
use esim_upstream::config::{HttpSettings, MpConfig};
use esim_upstream::error::ErrorKind;
use esim_upstream::mp::{self, MpClient, sign};

use crate::server::{fixture, spawn};

fn fast() -> HttpSettings {
    HttpSettings {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_millis(400),
        retry_attempts: 3,
        retry_min_delay: Duration::from_millis(5),
        retry_max_delay: Duration::from_millis(20),
        breaker_failure_threshold: 100,
        breaker_cool_down: Duration::from_secs(30),
    }
}

fn client(base: &str) -> MpClient {
    MpClient::new(MpConfig {
        base_url: base.into(),
        http: fast(),
        ..MpConfig::default()
    })
    .unwrap()
}

/// Verifies the request the way the gateway does; 401 when wrong.
fn check_signature(method: &Method, uri: &Uri, q: Option<&str>, h: &HeaderMap) -> bool {
    let hv = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let url = reqwest::Url::parse(&format!("http://x/?{}", q.unwrap_or(""))).unwrap();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let pairs_ref: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let lang = hv("accept-language");
    let ct = hv("content-type");
    let date = hv("date");
    let ak = hv(sign::HEADER_ACCESS_KEY);
    assert_eq!(hv(sign::HEADER_SIGNED_HEADERS), "Accept-Language;Content-Type");
    assert_eq!(hv(sign::HEADER_ALGORITHM), "hmac-sha256");
    let input = sign::SigningInput {
        method: method.as_str(),
        path: uri.path(),
        query: &pairs_ref,
        access_key: &ak,
        date: &date,
        signed_headers: &[("Accept-Language", &lang), ("Content-Type", &ct)],
    };
    sign::verify("sandbox-mp-secret", &input, &hv(sign::HEADER_SIGNATURE))
}

#[tokio::test]
async fn signed_read_is_verified_and_decoded() {
    let seen_rid = Arc::new(std::sync::Mutex::new(String::new()));
    let seen = seen_rid.clone();
    let app = Router::new().route(
        mp::wire::PATH_QUERY_TRAFFIC,
        get(move |m: Method, u: Uri, RawQuery(q): RawQuery, h: HeaderMap| {
            let seen = seen.clone();
            async move {
                if !check_signature(&m, &u, q.as_deref(), &h) {
                    return (
                        StatusCode::UNAUTHORIZED,
                        "{\"message\":\"client request can't be validated\"}".to_owned(),
                    );
                }
                *seen.lock().unwrap() = q.unwrap_or_default();
                (StatusCode::OK, fixture("mp/traffic_normal.json"))
            }
        }),
    );
    let base = spawn(app).await;
    let c = client(&base);
    let rows = c.query_traffic("ORDER_1", "req 1/ü+x").await.unwrap().unwrap();
    assert_eq!(rows[0].cycle_months, Some(1));
    let q = seen_rid.lock().unwrap().clone();
    assert!(q.contains("requestId=req%201%2F%C3%BC%2Bx"), "{q}");

    // A wrong secret gets the gateway's 401 as a typed auth error.
    let bad = MpClient::new(MpConfig {
        base_url: base.clone(),
        secret_key: "wrong".into(),
        http: fast(),
        ..MpConfig::default()
    })
    .unwrap();
    let e = bad.query_traffic("ORDER_1", "r").await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Auth(_)), "{e}");
}

#[tokio::test]
async fn signed_post_with_digest_and_null_data() {
    let app = Router::new()
        .route(
            mp::wire::PATH_SWITCH_ORDER,
            post(
                |m: Method, u: Uri, h: HeaderMap, body: axum::body::Bytes| async move {
                    assert!(check_signature(&m, &u, None, &h));
                    assert_eq!(
                        h.get(sign::HEADER_DIGEST).unwrap().to_str().unwrap(),
                        sign::body_digest(&body)
                    );
                    let v: mp::wire::SwitchOrderRequest = serde_json::from_slice(&body).unwrap();
                    assert_eq!(v.switch_button, mp::wire::SwitchButton::Suspend);
                    assert_eq!(v.request_id.as_deref(), Some("rid-7"));
                    fixture("mp/switch_order.json")
                },
            ),
        )
        .route(
            mp::wire::PATH_QUERY_ORDER_STATUS,
            get(|| async { fixture("mp/order_status_null.json") }),
        );
    let base = spawn(app).await;
    let c = MpClient::new(MpConfig {
        base_url: base,
        sign_body_digest: true,
        http: fast(),
        ..MpConfig::default()
    })
    .unwrap();
    c.switch_order("O1", mp::wire::SwitchButton::Suspend, "rid-7")
        .await
        .unwrap();
    assert_eq!(
        c.query_order_status("O1", "r").await.unwrap(),
        None,
        "Null data = not found"
    );
}

#[tokio::test]
async fn create_is_sent_once_on_5xx_and_timeout() {
    let calls = Arc::new(AtomicUsize::new(0));
    let n = calls.clone();
    let app = Router::new().route(
        mp::wire::PATH_ACTIVATION_CODE,
        post(move || {
            let n = n.clone();
            async move {
                let i = n.fetch_add(1, Ordering::SeqCst);
                if i == 0 {
                    (StatusCode::BAD_GATEWAY, "upstream down".to_owned())
                } else {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    (StatusCode::OK, fixture("mp/activation_code.json"))
                }
            }
        }),
    );
    let base = spawn(app).await;
    let c = client(&base);
    let order = mp::CreateOrder {
        product_id: 5,
        ..Default::default()
    };
    let e = c.activation_code(&order, "r1").await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::HttpStatus { status: 502, .. }), "{e}");
    assert!(e.outcome_unknown());
    assert_eq!(calls.load(Ordering::SeqCst), 1, "a create is never retried");
    let e = c.activation_code(&order, "r2").await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Timeout(_)), "{e}");
    assert!(e.outcome_unknown(), "a timed-out create has an unknown outcome");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn read_retries_and_recovers() {
    let calls = Arc::new(AtomicUsize::new(0));
    let n = calls.clone();
    let app = Router::new().route(
        mp::wire::PATH_PRODUCT_LIST,
        get(move || {
            let n = n.clone();
            async move {
                if n.fetch_add(1, Ordering::SeqCst) < 2 {
                    (StatusCode::SERVICE_UNAVAILABLE, String::new())
                } else {
                    (StatusCode::OK, fixture("mp/product_list.json"))
                }
            }
        }),
    );
    let base = spawn(app).await;
    let products = client(&base).product_list("r").await.unwrap();
    assert_eq!(products.len(), 3);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn malformed_slow_and_business_errors_are_typed() {
    let app = Router::new()
        .route(
            mp::wire::PATH_PRODUCT_LIST,
            get(|| async { "{\"code\":200,\"data\":[{\"goodsId\":" }),
        )
        .route(
            mp::wire::PATH_QUERY_TRAFFIC,
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                "{}"
            }),
        )
        .route(
            mp::wire::PATH_TOP_UP,
            post(|| async { "{\"code\":500,\"msg\":\"Finished orders cannot be topped up\",\"data\":null}" }),
        )
        .route("/{*rest}", any(|| async { (StatusCode::NOT_FOUND, "nope") }));
    let base = spawn(app).await;
    let c = client(&base);
    let e = c.product_list("r").await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Decode(_)), "{e}");
    assert!(e.to_string().starts_with("MP productList failed"), "{e}");
    let e = c.query_traffic("O", "r").await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Timeout(_)), "{e}");
    let e = c.top_up("O", "r").await.unwrap_err();
    assert_eq!(e.upstream_code(), Some(500));
    assert!(!e.outcome_unknown());
    let e = c.query_history_daily_traffic("O", "r").await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::HttpStatus { status: 404, .. }), "{e}");
}

#[tokio::test]
async fn breaker_opens_after_consecutive_failures() {
    let calls = Arc::new(AtomicUsize::new(0));
    let n = calls.clone();
    let app = Router::new().route(
        mp::wire::PATH_TOP_UP,
        post(move || {
            let n = n.clone();
            async move {
                n.fetch_add(1, Ordering::SeqCst);
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }),
    );
    let base = spawn(app).await;
    let c = MpClient::new(MpConfig {
        base_url: base,
        http: HttpSettings {
            breaker_failure_threshold: 2,
            ..fast()
        },
        ..MpConfig::default()
    })
    .unwrap();
    for _ in 0..2 {
        assert!(c.top_up("O", "r").await.is_err());
    }
    let e = c.top_up("O", "r").await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::CircuitOpen), "{e}");
    assert!(!e.outcome_unknown());
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn connection_refused_is_transport_and_definitely_failed() {
    // Bind then drop to get a closed port.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    let c = client(&base);
    let e = c
        .activation_code(
            &mp::CreateOrder {
                product_id: 1,
                ..Default::default()
            },
            "r",
        )
        .await
        .unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Transport(_)), "{e}");
    assert!(!e.outcome_unknown(), "never connected: definitely not created");
}

#[test]
fn debug_never_shows_secrets() {
    let c = client("http://127.0.0.1:1");
    let d = format!("{c:?}");
    assert!(!d.contains("sandbox-mp-secret"), "{d}");
    let w: mp::wire::ActivationCodeData = serde_json::from_str(
        r#"{"iccid":"8943108169999589689","qrCode":"LPA:1$rsp.x.net$SECRETID","orderCode":"O"}"#,
    )
    .unwrap();
    assert!(!format!("{w:?}").contains("SECRETID"));
}

#[tokio::test]
async fn calls_carry_the_callers_context_and_respect_its_deadline() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::<HeaderMap>::new()));
    let record = seen.clone();
    let app = Router::new().route(
        mp::wire::PATH_PRODUCT_LIST,
        get(move |headers: HeaderMap| {
            let record = record.clone();
            async move {
                record.lock().unwrap().push(headers);
                (StatusCode::OK, fixture("mp/product_list.json"))
            }
        }),
    );
    let base = spawn(app).await;
    let c = client(&base);
    let trace =
        esim_context::TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
    let context = esim_context::CallContext {
        request_id: esim_context::RequestId::parse("req-7").unwrap(),
        trace,
        deadline: Some(std::time::Instant::now() + Duration::from_secs(5)),
    };
    esim_context::scope(context, c.product_list("r")).await.unwrap();
    let headers = seen.lock().unwrap()[0].clone();
    assert_eq!(headers.get("x-request-id").unwrap(), "req-7");
    let sent = headers.get("traceparent").unwrap().to_str().unwrap();
    assert!(sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "{sent}");

    let gave_up = esim_context::CallContext {
        deadline: Some(std::time::Instant::now()),
        ..esim_context::CallContext::background()
    };
    let e = esim_context::scope(gave_up, c.product_list("r"))
        .await
        .unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Timeout(_)), "{e}");
    assert!(!e.outcome_unknown(), "never sent");
    assert_eq!(seen.lock().unwrap().len(), 1, "no call once the caller gave up");
}
