//! Faults injected by the sandbox (`set_fault`): every one gives a typed error, reads retry
//! and recover, creates are sent exactly once (the sandbox's call counts prove it), and the
//! breaker stops calling a failing upstream.

use std::time::Duration;

use esim_domain::Mcc;
use esim_sandbox::Fault;
use esim_upstream::config::{HttpSettings, MpConfig};
use esim_upstream::error::ErrorKind;
use esim_upstream::fms::FmsCredentials;
use esim_upstream::mp::{CreateOrder, MpClient};
use esim_upstream::sft::SimQuery;

use crate::sandbox_roundtrip::{Sb, start_for_faults as start};

fn product_1() -> CreateOrder {
    CreateOrder {
        product_id: 1,
        ..Default::default()
    }
}

/// An MP order made without faults; returns its code.
async fn mp_order(sb: &Sb) -> String {
    sb.mp()
        .activation_code(&product_1(), "rt")
        .await
        .unwrap()
        .order_code
}

#[tokio::test]
async fn read_5xx_is_retried_then_typed() {
    let sb = start().await;
    let code = mp_order(&sb).await;
    sb.sandbox.set_fault("mp.queryOrderStatus", Fault::error_500());
    let e = sb.mp().query_order_status(&code, "rt").await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::HttpStatus { status: 500, .. }), "{e}");
    assert!(e.is_retryable());
    assert!(!e.outcome_unknown(), "a read has no outcome to lose");
    assert!(e.to_string().starts_with("MP queryOrderStatus failed"), "{e}");
    assert_eq!(sb.calls("mp.queryOrderStatus"), 3, "retry_attempts = 3");

    // FMS and SFT the same way.
    let fms = sb.fms();
    let creds = FmsCredentials::from_plain("x@example.com", "pw");
    fms.email_register(&creds, "rt").await.unwrap();
    sb.sandbox.set_fault("fms.countryPackageList", Fault::status(503));
    let e = fms.country_package_list(&creds, None, "rt").await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::HttpStatus { status: 503, .. }), "{e}");
    sb.sandbox.set_fault("sft.fetchSIM", Fault::status(502));
    let e = sb
        .sft()
        .fetch_sim(&SimQuery::available(1), "rt")
        .await
        .unwrap_err();
    assert!(matches!(e.kind, ErrorKind::HttpStatus { status: 502, .. }), "{e}");
}

#[tokio::test]
async fn read_retries_and_recovers() {
    let sb = start().await;
    let code = mp_order(&sb).await;
    sb.sandbox
        .set_fault("mp.queryOrderStatus", Fault::error_500().times(1));
    let rows = sb.mp().query_order_status(&code, "rt").await.unwrap().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(sb.calls("mp.queryOrderStatus"), 2, "one failure, one retry");

    // A timed-out read is retried too.
    sb.sandbox.set_fault("mp.queryTraffic", Fault::timeout().times(1));
    assert!(sb.mp().query_traffic(&code, "rt").await.unwrap().is_some());
    assert_eq!(sb.calls("mp.queryTraffic"), 2);

    // FMS and SFT reads as well.
    let fms = sb.fms();
    let creds = FmsCredentials::from_plain("y@example.com", "pw");
    fms.email_register(&creds, "rt").await.unwrap();
    sb.sandbox
        .set_fault("fms.packageList", Fault::status(503).times(2));
    let mcc: Mcc = "440".parse().unwrap();
    assert!(
        !fms.package_list(&creds, mcc, None, "rt")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(sb.calls("fms.packageList"), 3);
    sb.sandbox.set_fault("sft.fetchSIM", Fault::malformed().times(1));
    // A malformed body is not an availability failure: not retried.
    let e = sb
        .sft()
        .fetch_sim(&SimQuery::available(1), "rt")
        .await
        .unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Decode(_)), "{e}");
    assert_eq!(
        sb.sft()
            .fetch_sim(&SimQuery::available(1), "rt")
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn read_timeout_and_slow_response_are_typed_timeouts() {
    let sb = start().await;
    let code = mp_order(&sb).await;
    sb.sandbox.set_fault("mp.queryTraffic", Fault::timeout());
    let e = sb.mp().query_traffic(&code, "rt").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout(sb.http.request_timeout), "{e}");
    assert!(e.is_retryable() && !e.outcome_unknown());
    assert_eq!(sb.calls("mp.queryTraffic"), 3);

    // Latency above the 500 ms client timeout.
    sb.sandbox.set_fault("sft.fetchSIM", Fault::latency(1_000));
    let e = sb
        .sft()
        .fetch_sim(&SimQuery::available(1), "rt")
        .await
        .unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Timeout(_)), "{e}");
    // Latency below it is only slow.
    sb.sandbox.set_fault("sft.fetchSIM", Fault::latency(50));
    assert_eq!(
        sb.sft()
            .fetch_sim(&SimQuery::available(1), "rt")
            .await
            .unwrap()
            .len(),
        1
    );

    let fms = sb.fms();
    let creds = FmsCredentials::from_plain("z@example.com", "pw");
    fms.email_register(&creds, "rt").await.unwrap();
    sb.sandbox.set_fault("fms.detail", Fault::latency(1_000));
    let e = fms.detail(&creds, 1_000_000, 1, "rt").await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Timeout(_)), "{e}");
}

#[tokio::test]
async fn malformed_bodies_are_decode_errors() {
    let sb = start().await;
    sb.sandbox.set_fault("mp.productList", Fault::malformed());
    let e = sb.mp().product_list("rt").await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Decode(_)), "{e}");
    assert_eq!(sb.calls("mp.productList"), 1, "a decode error is not retried");

    sb.sandbox.set_fault("fms.emailRegister", Fault::malformed());
    let e = sb
        .fms()
        .email_register(&FmsCredentials::from_plain("m@example.com", "pw"), "rt")
        .await
        .unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Decode(_)), "{e}");

    sb.sandbox.set_fault("sft.login", Fault::malformed());
    let e = sb.sft().login("rt").await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Decode(_)), "{e}");

    // A malformed answer to a create: the upstream may have acted.
    sb.sandbox
        .set_fault("mp.activationCode", Fault::malformed().after_commit());
    let e = sb.mp().activation_code(&product_1(), "rt").await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Decode(_)), "{e}");
    assert!(e.outcome_unknown());
    assert_eq!(sb.mp_orders(), 1);
}

#[tokio::test]
async fn create_on_5xx_is_sent_exactly_once_with_unknown_outcome() {
    let sb = start().await;
    sb.sandbox.set_fault("mp.activationCode", Fault::error_500());
    let e = sb.mp().activation_code(&product_1(), "rt").await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::HttpStatus { status: 500, .. }), "{e}");
    assert!(e.outcome_unknown(), "a 5xx to a create may hide a created order");
    assert_eq!(sb.calls("mp.activationCode"), 1, "a create is never retried");
    assert_eq!(sb.mp_orders(), 0, "the fault hit before the sandbox acted");

    // The same for MP top-ups and the FMS pre-order and SFT add-on creates.
    sb.sandbox.clear_faults();
    let code = mp_order(&sb).await;
    sb.sandbox.set_fault("mp.topUp", Fault::status(503));
    let e = sb.mp().top_up(&code, "rt").await.unwrap_err();
    assert!(e.outcome_unknown(), "{e}");
    assert_eq!(sb.calls("mp.topUp"), 1);

    sb.sandbox.set_fault("sft.SubscribeAddon", Fault::error_500());
    let sft = sb.sft();
    let sim = sft
        .fetch_sim(&SimQuery::available(1), "rt")
        .await
        .unwrap()
        .remove(0);
    sft.change_life_cycle(
        &sim.end_point_id,
        esim_upstream::sft::LifeCycle::Active,
        "1",
        "rt",
    )
    .await
    .unwrap();
    let e = sft
        .subscribe_addon(&sim.end_point_id, "PLAN-TRAVEL-1GB-7D", "rt")
        .await
        .unwrap_err();
    assert!(e.outcome_unknown(), "{e}");
    assert_eq!(sb.calls("sft.SubscribeAddon"), 1);
}

#[tokio::test]
async fn create_on_timeout_is_sent_exactly_once_with_unknown_outcome() {
    let sb = start().await;
    sb.sandbox.set_fault("mp.activationCode", Fault::timeout());
    let e = sb.mp().activation_code(&product_1(), "rt").await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Timeout(_)), "{e}");
    assert!(e.outcome_unknown());
    assert_eq!(sb.calls("mp.activationCode"), 1);

    let fms = sb.fms();
    let creds = FmsCredentials::from_plain("t@example.com", "pw");
    fms.email_register(&creds, "rt").await.unwrap();
    sb.sandbox.set_fault("fms.paymentWebhook", Fault::timeout());
    let e = fms
        .notify_payment(
            &creds,
            &esim_upstream::fms::PaymentNotice {
                pre_order_id: 1,
                date_time: 0,
                paid: esim_domain::Money::parse_amount("1", "USD").unwrap(),
                payment_id: "pi".into(),
                result: esim_upstream::fms::wire::PaymentResult::Succeeded,
            },
            "rt",
        )
        .await
        .unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Timeout(_)), "{e}");
    assert!(e.outcome_unknown());
    assert_eq!(sb.calls("fms.paymentWebhook"), 1, "the payment is notified once");
}

#[tokio::test]
async fn create_timeout_after_commit_leaves_the_order_upstream() {
    let sb = start().await;
    let stock_before = sb.sandbox.state_summary()["mp"]["stock"].as_u64().unwrap();
    sb.sandbox
        .set_fault("mp.activationCode", Fault::timeout().after_commit());
    let e = sb.mp().activation_code(&product_1(), "rt").await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Timeout(_)), "{e}");
    assert!(e.outcome_unknown(), "we never heard back, but…");
    assert_eq!(sb.mp_orders(), 1, "…the order exists upstream");
    assert_eq!(
        sb.sandbox.state_summary()["mp"]["stock"].as_u64().unwrap(),
        stock_before - 1,
        "and took an eSIM"
    );
    assert_eq!(sb.calls("mp.activationCode"), 1, "and was not created twice");
}

#[tokio::test]
async fn breaker_opens_and_stops_calling_the_upstream() {
    let sb = start().await;
    let mp = MpClient::new(MpConfig {
        http: HttpSettings {
            retry_attempts: 1,
            breaker_failure_threshold: 3,
            breaker_cool_down: Duration::from_secs(30),
            ..sb.http.clone()
        },
        ..sb.mp_config()
    })
    .unwrap();
    sb.sandbox.set_fault("mp.*", Fault::error_500());
    for _ in 0..3 {
        let e = mp.product_list("rt").await.unwrap_err();
        assert!(matches!(e.kind, ErrorKind::HttpStatus { status: 500, .. }), "{e}");
    }
    assert_eq!(sb.calls("mp.productList"), 3);
    for _ in 0..3 {
        let e = mp.product_list("rt").await.unwrap_err();
        assert!(matches!(e.kind, ErrorKind::CircuitOpen), "{e}");
    }
    assert_eq!(sb.calls("mp.productList"), 3, "open: the sandbox is not called");
    // Open for every call of the upstream, creates included (definitely not sent).
    let e = mp.activation_code(&product_1(), "rt").await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::CircuitOpen), "{e}");
    assert!(!e.outcome_unknown());
    assert_eq!(sb.calls("mp.activationCode"), 0);
    // Still open after the upstream recovers, until the cool-down ends.
    sb.sandbox.clear_faults();
    assert!(matches!(
        mp.product_list("rt").await.unwrap_err().kind,
        ErrorKind::CircuitOpen
    ));
    assert_eq!(sb.calls("mp.productList"), 3);
    // Another client (its own breaker) gets through.
    assert!(sb.mp().product_list("rt").await.is_ok());
}
