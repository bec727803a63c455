//! Fault injection, call counts, the admin routes, and configuration from the environment.

use std::time::{Duration, Instant};

use esim_sandbox::{Fault, FaultPhase, SandboxConfig};
use serde_json::{Value, json};

use crate::common::*;

#[tokio::test]
async fn error_status_malformed_and_times() {
    let s = start().await;
    s.sandbox.set_fault("mp.productList", Fault::error_500());
    let r = s
        .mp_request("GET", "v2/productList", &[], None, MP_SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    s.sandbox.set_fault("mp.productList", Fault::status(503));
    let r = s
        .mp_request("GET", "v2/productList", &[], None, MP_SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    s.sandbox.set_fault("mp.productList", Fault::malformed());
    let r = s
        .mp_request("GET", "v2/productList", &[], None, MP_SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(serde_json::from_str::<Value>(&r.text().await.unwrap()).is_err());
    // Only the next call fails, then it recovers.
    s.sandbox.set_fault("mp.productList", Fault::error_500().times(1));
    let r = s
        .mp_request("GET", "v2/productList", &[], None, MP_SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    let v = s.mp_get("v2/productList", &[]).await;
    assert_eq!(v["code"], 200);
    assert_eq!(s.sandbox.call_count("mp.productList"), 5);
    // Provider-wide fault.
    s.sandbox.set_fault("fms.*", Fault::status(502));
    let r = s
        .http
        .post(s.url("/fms/package/detail"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    s.sandbox.clear_faults();
    assert!(s.sandbox.faults().is_empty());
}

#[tokio::test]
async fn error_rate_is_seeded_and_repeatable() {
    async fn pattern() -> Vec<u16> {
        let s = start().await;
        s.sandbox.set_fault("mp.productList", Fault::error_rate(0.5));
        let mut out = Vec::new();
        for _ in 0..20 {
            let r = s
                .mp_request("GET", "v2/productList", &[], None, MP_SECRET)
                .send()
                .await
                .unwrap();
            out.push(r.status().as_u16());
        }
        out
    }
    let a = pattern().await;
    let b = pattern().await;
    assert_eq!(a, b);
    assert!(a.contains(&500) && a.contains(&200), "{a:?}");
}

#[tokio::test]
async fn latency_and_timeout() {
    let s = start().await;
    s.sandbox.set_fault("sft.login", Fault::latency(300));
    let t0 = Instant::now();
    let r = s
        .http
        .post(s.url("/sft/api/login"))
        .json(&json!({"username": "sandbox", "password": "sandbox-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(t0.elapsed() >= Duration::from_millis(300));
    // The held time is the upstream's real share of the call: the latency and a little more.
    let held = s.sandbox.held("sft.login");
    assert_eq!(held.calls, 1);
    let mean = held.mean().unwrap();
    assert!(
        mean >= Duration::from_millis(300) && mean <= t0.elapsed(),
        "{mean:?}"
    );
    let listed: serde_json::Value = s.admin_get("/_sandbox/held").await;
    assert_eq!(listed["sft.login"]["calls"], 1, "{listed}");
    assert_eq!(listed["sft.login"]["total_us"], held.total_us);

    s.sandbox.set_fault(
        "mp.queryOrderStatus",
        Fault {
            timeout_ms: Some(3_000),
            ..Fault::timeout()
        },
    );
    let r = s
        .mp_request("GET", "queryOrderStatus", &[("orderCode", "X")], None, MP_SECRET)
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(r.unwrap_err().is_timeout());
    assert_eq!(s.sandbox.call_count("mp.queryOrderStatus"), 1);
}

#[tokio::test]
async fn timeout_after_commit_creates_the_order_but_the_caller_never_hears() {
    let s = start().await;
    s.sandbox.set_fault(
        "mp.activationCode",
        Fault {
            timeout_ms: Some(3_000),
            ..Fault::timeout().after_commit()
        },
    );
    let r = s
        .mp_request(
            "POST",
            "v2/activationCode",
            &[],
            Some(json!({"productId": 1})),
            MP_SECRET,
        )
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(r.unwrap_err().is_timeout());
    assert_eq!(s.sandbox.call_count("mp.activationCode"), 1);
    assert_eq!(s.sandbox.state_summary()["mp"]["orders"], 1);

    // The same with 500 after commit, and "before": no order.
    s.sandbox
        .set_fault("mp.activationCode", Fault::error_500().after_commit());
    let r = s
        .mp_request(
            "POST",
            "v2/activationCode",
            &[],
            Some(json!({"productId": 1})),
            MP_SECRET,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(s.sandbox.state_summary()["mp"]["orders"], 2);
    s.sandbox.set_fault("mp.activationCode", Fault::error_500());
    let r = s
        .mp_request(
            "POST",
            "v2/activationCode",
            &[],
            Some(json!({"productId": 1})),
            MP_SECRET,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(s.sandbox.state_summary()["mp"]["orders"], 2);
    assert_eq!(s.sandbox.call_count("mp.activationCode"), 3);
}

#[tokio::test]
async fn admin_routes() {
    let s = start().await;
    let put = s
        .http
        .put(s.url("/_sandbox/faults/fms.preOrderPackage"))
        .json(&json!({"status": 503, "phase": "after"}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let f = s.sandbox.faults();
    assert_eq!(f["fms.preOrderPackage"].status, Some(503));
    assert_eq!(f["fms.preOrderPackage"].phase, FaultPhase::After);
    let all: Value = s.admin_get("/_sandbox/faults").await;
    assert_eq!(all["fms.preOrderPackage"]["status"], 503);
    let bad = s
        .http
        .put(s.url("/_sandbox/faults/x"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    s.http.delete(s.url("/_sandbox/faults")).send().await.unwrap();
    assert!(s.sandbox.faults().is_empty());

    s.mp_get("v2/productList", &[]).await;
    s.mp_get("v2/productList", &[]).await;
    let calls: Value = s.admin_get("/_sandbox/calls").await;
    assert_eq!(calls["mp.productList"], 2);
    let one: Value = s.admin_get("/_sandbox/calls/mp.productList").await;
    assert_eq!(one, json!({"endpoint": "mp.productList", "count": 2}));
    s.http.delete(s.url("/_sandbox/calls")).send().await.unwrap();
    assert_eq!(s.sandbox.call_count("mp.productList"), 0);

    let before = s.sandbox.now();
    let c: Value = s
        .http
        .post(s.url("/_sandbox/clock/advance"))
        .json(&json!({"minutes": 11}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(c["offset_secs"].as_f64().unwrap() >= 660.0);
    assert!(s.sandbox.now() - before >= chrono::TimeDelta::seconds(660));

    let st: Value = s.admin_get("/_sandbox/state").await;
    assert_eq!(st["sft"]["available"], 200);
    assert_eq!(st["mp"]["orders"], 0);
    let h = s.http.get(s.url("/_sandbox/health")).send().await.unwrap();
    assert_eq!(h.status(), 200);
    let nf = s.http.get(s.url("/nope")).send().await.unwrap();
    assert_eq!(nf.status(), 404);
}

#[tokio::test]
async fn config_faults_at_start_and_from_json() {
    let faults: std::collections::BTreeMap<String, Fault> = serde_json::from_str(
        r#"{"sft.fetchSIM": {"status": 500}, "mp.*": {"latency_ms": 5, "phase": "after"}}"#,
    )
    .unwrap();
    let s = start_with(SandboxConfig {
        faults,
        sft_pool_size: 3,
        ..Default::default()
    })
    .await;
    let t = s.sft_token().await;
    let (st, _) = s.sft("GET", "/api/fetchSIM", &t, None).await;
    assert_eq!(st, 500);
    assert_eq!(s.sandbox.sft_available_sims(), 3);
    let v = s.mp_get("v2/productList", &[]).await;
    assert_eq!(v["code"], 200);
}
