//! MP client ↔ sandbox: every call, decoded values, business branches and auth.

use std::time::Duration;

use axum::Router;
use axum::routing::post;
use esim_sandbox::catalog::COUNTRIES;
use esim_upstream::config::MpConfig;
use esim_upstream::error::ErrorKind;
use esim_upstream::mp::wire::SwitchButton;
use esim_upstream::mp::{CreateOrder, CreatedOrder, EsimRef, MpClient, OrderStatus, OrderStatusInfo};
use rust_decimal::Decimal;

use crate::sandbox_roundtrip::{MB, start};

/// Product 1 is the first country's "1GB/7days" (cycle counts "1"); product 3 its
/// "5GB/30days" (cycle counts "3,4").
const P_1GB_7D: i64 = 1;
const P_5GB_30D: i64 = 3;

async fn order(mp: &MpClient, product_id: i64) -> CreatedOrder {
    mp.activation_code(
        &CreateOrder {
            product_id,
            ..Default::default()
        },
        "rt-order",
    )
    .await
    .expect("activationCode")
}

async fn status(mp: &MpClient, code: &str) -> OrderStatusInfo {
    let mut rows = mp
        .query_order_status(code, "rt-status")
        .await
        .expect("queryOrderStatus")
        .expect("the order exists");
    assert_eq!(rows.len(), 1);
    rows.remove(0)
}

#[tokio::test]
async fn mp_product_list_round_trip() {
    let sb = start().await;
    let products = sb.mp().product_list("rt-products").await.unwrap();
    assert_eq!(products.len(), COUNTRIES.len() * 3, "three products per country");
    assert_eq!(sb.calls("mp.productList"), 1);
    let p = products.iter().find(|p| p.product_id == P_5GB_30D).unwrap();
    assert_eq!(p.allowed_cycle_counts, vec![3, 4], "orderQuantity \"3,4\"");
    assert_eq!(
        p.cover_mcc.map(|m| m.value()),
        Some(460),
        "coverCountry is an MCC"
    );
    assert_eq!(p.cover_country_name.as_deref(), Some("China"));
    assert_eq!(p.goods_id, 30);
    assert!(p.product_name.as_deref().unwrap().contains("5GB/30days"), "{p:?}");
    assert!(
        p.sim_group_code.as_deref().unwrap().starts_with("SIMGROUP"),
        "{p:?}"
    );
    // Every country of the catalogue is covered, each by its MCC.
    for c in COUNTRIES {
        assert!(
            products
                .iter()
                .any(|p| p.cover_mcc.map(|m| m.to_string()).as_deref() == Some(c.mcc)),
            "{} missing",
            c.mcc
        );
    }
}

#[tokio::test]
async fn mp_activation_code_creates_an_order_and_can_target_an_iccid() {
    let sb = start().await;
    let mp = sb.mp();
    let first = mp
        .activation_code(
            &CreateOrder {
                product_id: P_5GB_30D,
                goods_id: Some(30),
                cycles: Some(4),
                price: Some(Decimal::new(1299, 2)),
                activate: Some(false),
                iccid: None,
            },
            "rt-create",
        )
        .await
        .unwrap();
    assert!(first.order_code.starts_with("ORDER_"), "{}", first.order_code);
    assert!(
        first.iccid.as_str().starts_with("8985201"),
        "{}",
        first.iccid.as_str()
    );
    assert_eq!(first.activation_code.smdp_address(), "rsp-mp.sandbox.esim.test");
    assert!(!first.activation_code.matching_id().is_empty());
    assert_eq!(
        sb.sandbox.mp_order_status(&first.order_code).as_deref(),
        Some("0")
    );
    assert_eq!(sb.mp_orders(), 1);

    // A second order onto the same eSIM (`iccid`): same profile, new order.
    let again = mp
        .activation_code(
            &CreateOrder {
                product_id: P_1GB_7D,
                iccid: Some(first.iccid.clone()),
                ..Default::default()
            },
            "rt-create-iccid",
        )
        .await
        .unwrap();
    assert_eq!(again.iccid, first.iccid);
    assert_eq!(again.activation_code, first.activation_code);
    assert_ne!(again.order_code, first.order_code);
    assert_eq!(sb.mp_orders(), 2);
    assert_eq!(sb.calls("mp.activationCode"), 2);

    // `activateFlag` yes starts the order at once.
    let active = mp
        .activation_code(
            &CreateOrder {
                product_id: P_1GB_7D,
                activate: Some(true),
                ..Default::default()
            },
            "rt-create-active",
        )
        .await
        .unwrap();
    let s = status(&mp, &active.order_code).await;
    assert_eq!(s.status, OrderStatus::InUse);
    assert!(s.actual_start.is_some() && s.planned_end.is_some(), "{s:?}");
}

#[tokio::test]
async fn mp_invalid_cycle_count_answers_no_iccid_found() {
    let sb = start().await;
    let mp = sb.mp();
    let e = mp
        .activation_code(
            &CreateOrder {
                product_id: P_5GB_30D,
                cycles: Some(2),
                ..Default::default()
            },
            "rt-bad-cycles",
        )
        .await
        .unwrap_err();
    match &e.kind {
        ErrorKind::Upstream { message, .. } => assert_eq!(message, "No ICCID found", "{e}"),
        other => panic!("expected an upstream error, got {other:?}"),
    }
    assert_ne!(e.upstream_code(), Some(200));
    assert!(!e.outcome_unknown(), "MP answered: definitely not created");
    assert!(!e.is_retryable());
    assert_eq!(sb.mp_orders(), 0);
    assert_eq!(sb.calls("mp.activationCode"), 1);
}

#[tokio::test]
async fn mp_switch_order_and_top_up_round_trip() {
    let sb = start().await;
    let mp = sb.mp();
    let o = order(&mp, P_1GB_7D).await;
    let s = status(&mp, &o.order_code).await;
    assert_eq!(s.status, OrderStatus::NotEnabled);
    assert_eq!(s.actual_start, None);
    assert!(matches!(s.eid, Some(EsimRef::Eid(_))), "{s:?}");
    assert!(s.package_code.as_deref().unwrap().starts_with("LP14"), "{s:?}");

    mp.switch_order(&o.order_code, SwitchButton::On, "rt-on")
        .await
        .unwrap();
    let s = status(&mp, &o.order_code).await;
    assert_eq!(s.status, OrderStatus::InUse);
    let start_at = s.actual_start.expect("started");
    let end = s.planned_end.expect("planned end");
    // 7 days of validity, ending at 23:59:59 of the last day.
    assert_eq!((end.date() - start_at.date()).num_days(), 6);
    assert_eq!(end.time().to_string(), "23:59:59");

    mp.switch_order(&o.order_code, SwitchButton::Suspend, "rt-suspend")
        .await
        .unwrap();
    assert_eq!(status(&mp, &o.order_code).await.status, OrderStatus::Suspended);
    assert_eq!(sb.sandbox.mp_order_status(&o.order_code).as_deref(), Some("2"));
    mp.switch_order(&o.order_code, SwitchButton::Restart, "rt-restart")
        .await
        .unwrap();
    assert_eq!(status(&mp, &o.order_code).await.status, OrderStatus::InUse);

    // Top-up: same period again, a new order code that answers for the same order.
    let t = mp.top_up(&o.order_code, "rt-topup").await.unwrap();
    assert_eq!(t.renew_period, 1);
    assert_ne!(t.order_code, o.order_code);
    let s2 = status(&mp, &t.order_code).await;
    assert_eq!(s2.status, OrderStatus::InUse);
    assert_eq!(s2.planned_end, Some(end + chrono::Duration::days(7)));
    let traffic = mp.query_traffic(&o.order_code, "rt").await.unwrap().unwrap();
    assert_eq!(
        traffic[0].total_bytes,
        Some(2 * 1024 * MB),
        "data doubled by the top-up"
    );

    // OFF finishes it; a finished order cannot be topped up.
    mp.switch_order(&o.order_code, SwitchButton::Off, "rt-off")
        .await
        .unwrap();
    assert_eq!(status(&mp, &o.order_code).await.status, OrderStatus::Finished);
    let e = mp.top_up(&o.order_code, "rt-topup-finished").await.unwrap_err();
    match &e.kind {
        ErrorKind::Upstream { message, .. } => assert!(message.contains("finished"), "{e}"),
        other => panic!("expected an upstream refusal, got {other:?}"),
    }
    assert!(!e.outcome_unknown());
    // And a finished order cannot be switched on again.
    let e = mp
        .switch_order(&o.order_code, SwitchButton::On, "rt-on-finished")
        .await
        .unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Upstream { .. }), "{e}");
}

#[tokio::test]
async fn mp_traffic_in_mb_and_daily_bytes_round_trip() {
    let sb = start().await;
    let mp = sb.mp();
    let o = order(&mp, P_1GB_7D).await;
    // No background growth: usage is exactly what the test sets.
    assert!(sb.sandbox.set_mp_usage_rate(&o.order_code, 0.0));
    mp.switch_order(&o.order_code, SwitchButton::On, "rt-on")
        .await
        .unwrap();
    let day_before = sb.sandbox.now().date_naive();
    assert!(sb.sandbox.set_mp_usage_mb(&o.order_code, 256.0));
    let day_after = sb.sandbox.now().date_naive();

    let rows = mp
        .query_traffic(&o.order_code, "rt-traffic")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rows.len(), 1);
    let t = &rows[0];
    assert_eq!(t.total_bytes, Some(1024 * MB), "packageFlow 1024 MB");
    assert_eq!(t.used_bytes, Some(256 * MB), "packageUsedFlow 256 MB");
    assert_eq!(t.cycle_months, Some(1));
    assert!(t.actual_start.is_some() && t.planned_end.is_some(), "{t:?}");
    assert!(matches!(t.eid, Some(EsimRef::Eid(_))), "{t:?}");

    let d = mp
        .query_history_daily_traffic(&o.order_code, "rt-daily")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.package_code, t.package_code);
    assert_eq!(d.actual_start, t.actual_start);
    assert_eq!(d.days.len(), 1, "{d:?}");
    assert!(
        d.days[0].date == day_before || d.days[0].date == day_after,
        "{d:?}"
    );
    assert_eq!(d.days[0].used_bytes, 256 * MB, "useFlow is bytes as a string");

    // More usage the same day adds to that day.
    assert!(sb.sandbox.set_mp_usage_mb(&o.order_code, 300.0));
    let d = mp
        .query_history_daily_traffic(&o.order_code, "rt-daily")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.days.iter().map(|d| d.used_bytes).sum::<u64>(), 300 * MB);
}

#[tokio::test]
async fn mp_unknown_order_is_not_found() {
    let sb = start().await;
    let mp = sb.mp();
    assert_eq!(mp.query_order_status("ORDER_404", "rt").await.unwrap(), None);
    assert_eq!(mp.query_traffic("ORDER_404", "rt").await.unwrap(), None);
    assert_eq!(
        mp.query_history_daily_traffic("ORDER_404", "rt").await.unwrap(),
        None
    );
    let e = mp.top_up("ORDER_404", "rt").await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Upstream { .. }), "{e}");
    assert!(!e.outcome_unknown());
}

#[tokio::test]
async fn mp_alarm_callback_registration_and_delivery_round_trip() {
    let sb = start().await;
    let mp = sb.mp();
    // Our alarm receiver: forwards each body to the test.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let app = Router::new().route(
        "/alarm",
        post(move |body: axum::body::Bytes| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(body.to_vec());
                "ok"
            }
        }),
    );
    let url = format!("{}/alarm", crate::server::spawn(app).await);

    let saved = mp.save_alarm_callback_interface(&url, "rt-alarm").await.unwrap();
    assert_eq!(saved.as_deref(), Some(url.as_str()));
    assert_eq!(sb.sandbox.mp_callback_url().as_deref(), Some(url.as_str()));
    assert_eq!(sb.calls("mp.saveAlarmCallbackInterface"), 1);

    let o = order(&mp, P_1GB_7D).await;
    assert!(sb.sandbox.set_mp_usage_rate(&o.order_code, 0.0));
    mp.switch_order(&o.order_code, SwitchButton::On, "rt-on")
        .await
        .unwrap();
    assert!(
        sb.sandbox.set_mp_usage_mb(&o.order_code, 600.0),
        "58 % crosses 50 %"
    );
    let body = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("the alarm callback arrives")
        .expect("channel open");
    let alarm = MpClient::decode_alarm(&body).unwrap();
    assert_eq!(alarm.order_code, o.order_code);
    assert_eq!(alarm.used_percent, Decimal::from(58));
    assert!(matches!(alarm.eid, EsimRef::Eid(_)), "{alarm:?}");
    assert!(alarm.request_id.is_some());
}

#[tokio::test]
async fn mp_wrong_secret_gets_the_gateways_401_as_auth_error() {
    let sb = start().await;
    let bad = MpClient::new(MpConfig {
        secret_key: "not-the-secret".into(),
        ..sb.mp_config()
    })
    .unwrap();
    let e = bad.product_list("rt").await.unwrap_err();
    match &e.kind {
        ErrorKind::Auth(m) => assert!(m.contains("401"), "{e}"),
        other => panic!("expected Auth, got {other:?}"),
    }
    assert!(!e.is_retryable());
    assert_eq!(sb.calls("mp.productList"), 1, "an auth failure is not retried");
    // A create with a bad signature is refused before it does anything.
    let e = bad
        .activation_code(
            &CreateOrder {
                product_id: P_1GB_7D,
                ..Default::default()
            },
            "rt",
        )
        .await
        .unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Auth(_)), "{e}");
    assert!(!e.outcome_unknown());
    assert_eq!(sb.mp_orders(), 0);

    let wrong_key = MpClient::new(MpConfig {
        access_key: "SG99999999".into(),
        ..sb.mp_config()
    })
    .unwrap();
    let e = wrong_key.query_order_status("O", "rt").await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Auth(_)), "{e}");
    // The right credentials work against the same sandbox.
    assert!(sb.mp().product_list("rt").await.is_ok());
}

#[tokio::test]
async fn mp_signature_survives_awkward_request_ids_and_body_digest() {
    // The request id goes into the signed GET query: characters that need escaping must be
    // canonicalised the same way by the client and the gateway (sandbox).
    let sb = crate::sandbox_roundtrip::start_with(|c| c.mp_require_body_digest = true).await;
    let plain = sb.mp();
    let e = plain.product_list("r").await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Auth(_)), "digest required: {e}");
    let mp = MpClient::new(MpConfig {
        sign_body_digest: true,
        ..sb.mp_config()
    })
    .unwrap();
    for rid in ["req 1/ü+x&y=z", "a~b-c_d.e", "100%;*'()!", "  ", "日本"] {
        let products = mp
            .product_list(rid)
            .await
            .unwrap_or_else(|e| panic!("requestId {rid:?}: {e}"));
        assert!(!products.is_empty());
        let created = mp
            .activation_code(
                &CreateOrder {
                    product_id: P_1GB_7D,
                    ..Default::default()
                },
                rid,
            )
            .await
            .unwrap_or_else(|e| panic!("requestId {rid:?}: {e}"));
        let s = mp
            .query_order_status(&created.order_code, rid)
            .await
            .unwrap_or_else(|e| panic!("requestId {rid:?}: {e}"));
        assert!(s.is_some());
    }
}

#[tokio::test]
async fn mp_create_order_request_fields_reach_the_upstream() {
    let sb = start().await;
    let created = sb
        .mp()
        .activation_code(
            &CreateOrder {
                product_id: P_5GB_30D,
                goods_id: Some(30),
                cycles: Some(4),
                price: Some(Decimal::new(1299, 2)),
                activate: Some(true),
                iccid: None,
            },
            "rt",
        )
        .await
        .unwrap();
    // The sandbox's view of the order (admin route).
    let url = format!("{}/_sandbox/mp/orders/{}", sb.addr, created.order_code);
    let o: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
    assert_eq!(o["cycles"], 4, "{o}");
    assert_eq!(o["price"], "12.99", "{o}");
    assert_eq!(o["status"], "1", "activateFlag yes: {o}");
    assert_eq!(o["iccid"], created.iccid.as_str(), "{o}");
    assert_eq!(o["totalBytes"], 4 * 5120 * MB, "{o}");
    // A goodsId that does not match the product is refused.
    let e = sb
        .mp()
        .activation_code(
            &CreateOrder {
                product_id: P_5GB_30D,
                goods_id: Some(31),
                ..Default::default()
            },
            "rt",
        )
        .await
        .unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Upstream { .. }), "{e}");
}
