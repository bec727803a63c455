use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::post;
use esim_upstream::config::{FmsConfig, HttpSettings};
use esim_upstream::error::FmsCode;
use esim_upstream::fms::{self, FmsClient, FmsCredentials};
use rust_decimal::Decimal;

use crate::server::{fixture, spawn};

#[derive(Default)]
struct State {
    logins: AtomicUsize,
    /// Tokens numbered below this are expired.
    valid_from: AtomicUsize,
    calls: AtomicUsize,
    webhooks: AtomicUsize,
}

fn app(state: Arc<State>) -> Router {
    let s1 = state.clone();
    let s2 = state.clone();
    let s3 = state;
    Router::new()
        .route(
            "/fms/user/login",
            post(move |body: axum::body::Bytes| {
                let s = s1.clone();
                async move {
                    let req: fms::wire::LoginRequest = serde_json::from_slice(&body).unwrap();
                    assert_eq!(req.passwd.expose(), "5f4dcc3b5aa765d61d8327deb882cf99");
                    assert_eq!(req.user_type, 4);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let n = s.logins.fetch_add(1, Ordering::SeqCst) + 1;
                    let tok = format!("tok-{n}");
                    (
                        [(fms::wire::HEADER_TOKEN, tok.clone())],
                        format!("{{\"code\":0,\"data\":{{\"token\":\"{tok}\"}},\"message\":\"SUCCESS\"}}"),
                    )
                }
            }),
        )
        .route(
            "/fms/package/queryOrdStatusAndEmail",
            post(move |h: HeaderMap| {
                let s = s2.clone();
                async move {
                    assert_eq!(h.get("accept-language").unwrap(), "en-US");
                    s.calls.fetch_add(1, Ordering::SeqCst);
                    let tok = h.get("x-access-token").and_then(|v| v.to_str().ok()).unwrap_or("");
                    let n: usize = tok.trim_start_matches("tok-").parse().unwrap_or(0);
                    if n < s.valid_from.load(Ordering::SeqCst) || n == 0 {
                        return "{\"code\":7,\"data\":null,\"message\":\"token expired\"}".to_owned();
                    }
                    "{\"code\":0,\"data\":{\"orderPayStatus\":1,\"qrCode\":\"LPA:1$rsp.x.net$ABC-1\"},\"message\":\"SUCCESS\"}".to_owned()
                }
            }),
        )
        .route(
            "/fms/payment/webhook",
            post(move |body: axum::body::Bytes| {
                let s = s3.clone();
                async move {
                    s.webhooks.fetch_add(1, Ordering::SeqCst);
                    let req: fms::wire::PaymentWebhookRequest = serde_json::from_slice(&body).unwrap();
                    assert_eq!(req.kind, fms::wire::PaymentResult::Succeeded);
                    fixture("fms/webhook_6006.json")
                }
            }),
        )
}

fn client(base: &str) -> Arc<FmsClient> {
    Arc::new(
        FmsClient::new(FmsConfig {
            base_url: format!("{base}/fms"),
            http: HttpSettings {
                request_timeout: Duration::from_secs(5),
                ..HttpSettings::default()
            },
            ..FmsConfig::default()
        })
        .unwrap(),
    )
}

#[tokio::test]
async fn concurrent_callers_share_one_login() {
    let state = Arc::new(State::default());
    let base = spawn(app(state.clone())).await;
    let c = client(&base);
    let creds = FmsCredentials::from_plain("a@example.com", "password");
    let mut tasks = Vec::new();
    for i in 0..8 {
        let c = c.clone();
        let creds = creds.clone();
        tasks.push(tokio::spawn(async move {
            c.query_ord_status_and_email(&creds, 1055293, &format!("r{i}"))
                .await
        }));
    }
    for t in tasks {
        let s = t.await.unwrap().unwrap();
        assert_eq!(s.status, fms::PayStatus::Paid);
        assert_eq!(s.activation_code.unwrap().matching_id(), "ABC-1");
    }
    assert_eq!(state.logins.load(Ordering::SeqCst), 1);
    assert!(!format!("{c:?}").contains("tok-1"));
}

#[tokio::test]
async fn expired_token_relogs_once_and_retries_once() {
    let state = Arc::new(State::default());
    let base = spawn(app(state.clone())).await;
    let c = client(&base);
    let creds = FmsCredentials::from_plain("b@example.com", "password");
    c.query_ord_status_and_email(&creds, 1, "r").await.unwrap();
    assert_eq!(state.logins.load(Ordering::SeqCst), 1);
    assert_eq!(state.calls.load(Ordering::SeqCst), 1);
    // tok-1 expires.
    state.valid_from.store(2, Ordering::SeqCst);
    c.query_ord_status_and_email(&creds, 1, "r").await.unwrap();
    assert_eq!(state.logins.load(Ordering::SeqCst), 2, "one re-login");
    assert_eq!(state.calls.load(Ordering::SeqCst), 3, "the call was retried once");

    // Several callers hit the expiry together: still one re-login.
    state.valid_from.store(3, Ordering::SeqCst);
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let c = c.clone();
        let creds = creds.clone();
        tasks.push(tokio::spawn(async move {
            c.query_ord_status_and_email(&creds, 1, "r").await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(state.logins.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn payment_notice_timeout_is_typed_and_sent_once() {
    let state = Arc::new(State::default());
    let base = spawn(app(state.clone())).await;
    let c = client(&base);
    let creds = FmsCredentials::from_plain("c@example.com", "password");
    let notice = fms::PaymentNotice {
        pre_order_id: 1055293,
        date_time: 1_700_000_000,
        paid: esim_domain::Money::new(Decimal::from(5), "USD".parse().unwrap()),
        payment_id: "pi_1".into(),
        result: fms::wire::PaymentResult::Succeeded,
    };
    let e = c.notify_payment(&creds, &notice, "r").await.unwrap_err();
    assert_eq!(e.fms_code(), Some(FmsCode::PreOrderTimeout));
    assert!(!e.is_retryable());
    assert_eq!(state.webhooks.load(Ordering::SeqCst), 1);
}
