//! MP: envelope and field names as the seed spells them, auth, order lifecycle, callbacks.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

#[tokio::test]
async fn product_list_has_the_seed_fields() {
    let s = start().await;
    let v = s.mp_get("v2/productList", &[("requestId", "req-42")]).await;
    assert_eq!(keys(&v), sorted(&["code", "msg", "data", "requestId"]));
    assert_eq!(v["code"], 200);
    assert_eq!(v["msg"], "Success");
    assert_eq!(v["requestId"], "req-42");
    let rows = v["data"].as_array().unwrap();
    assert!(rows.len() >= 30);
    for r in rows {
        assert_eq!(
            keys(r),
            sorted(&[
                "goodsId",
                "goodsName",
                "productId",
                "orderQuantity",
                "productName",
                "simGroupCode",
                "simGroupName",
                "coverCountry",
                "coverCountryName"
            ])
        );
        assert!(r["goodsId"].is_u64() && r["productId"].is_u64());
        assert!(r["orderQuantity"].is_string());
        assert!(r["coverCountry"].as_str().unwrap().len() == 3);
    }
    let mccs: std::collections::BTreeSet<&str> =
        rows.iter().map(|r| r["coverCountry"].as_str().unwrap()).collect();
    for mcc in [
        "460", "440", "310", "234", "208", "262", "214", "222", "520", "502", "525", "454",
    ] {
        assert!(mccs.contains(mcc), "{mcc}");
    }
    assert!(rows.iter().any(|r| r["orderQuantity"] == "3,4"));
    // No requestId sent: null echoed.
    let v = s.mp_get("v2/productList", &[]).await;
    assert_eq!(v["requestId"], Value::Null);
}

#[tokio::test]
async fn bad_or_missing_signature_gets_the_gateway_401() {
    let s = start().await;
    let r = s
        .mp_request("GET", "v2/productList", &[], None, "wrong-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v, json!({"message": "client request can't be validated"}));

    let r = s
        .http
        .get(s.url("/mp-api/api/esim/v2/productList"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // A valid signature over another query is rejected too (requestId is signed).
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let sig = mp_signature(
        MP_SECRET,
        "GET",
        "/mp-api/api/esim/queryOrderStatus",
        &[("orderCode", "A")],
        &date,
    );
    let r = s
        .http
        .get(s.url("/mp-api/api/esim/queryOrderStatus?orderCode=B"))
        .header("X-HMAC-ACCESS-KEY", MP_KEY)
        .header("X-HMAC-ALGORITHM", "hmac-sha256")
        .header("Date", &date)
        .header("X-HMAC-SIGNED-HEADERS", "Accept-Language;Content-Type")
        .header("Accept-Language", "en-US")
        .header("Content-Type", "application/json")
        .header("X-HMAC-SIGNATURE", sig)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // A stale Date is refused.
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    let date = httpdate::fmt_http_date(old);
    let sig = mp_signature(MP_SECRET, "GET", "/mp-api/api/esim/v2/productList", &[], &date);
    let r = s
        .http
        .get(s.url("/mp-api/api/esim/v2/productList"))
        .header("X-HMAC-ACCESS-KEY", MP_KEY)
        .header("X-HMAC-ALGORITHM", "hmac-sha256")
        .header("Date", &date)
        .header("X-HMAC-SIGNED-HEADERS", "Accept-Language;Content-Type")
        .header("Accept-Language", "en-US")
        .header("Content-Type", "application/json")
        .header("X-HMAC-SIGNATURE", sig)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Unauthenticated calls are counted too.
    assert_eq!(s.sandbox.call_count("mp.productList"), 3);
}

#[tokio::test]
async fn body_digest_is_checked_when_required() {
    let s = start_with(esim_sandbox::SandboxConfig {
        mp_require_body_digest: true,
        ..Default::default()
    })
    .await;
    let body = json!({"productId": 1});
    let r = s
        .mp_request("POST", "v2/activationCode", &[], Some(body.clone()), MP_SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    use base64::Engine as _;
    use sha2::Digest as _;
    let digest =
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(body.to_string().as_bytes()));
    let r = s
        .mp_request("POST", "v2/activationCode", &[], Some(body), MP_SECRET)
        .header("X-HMAC-DIGEST", digest)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn activation_code_creates_an_order_with_valid_identifiers() {
    let s = start().await;
    let v = s
        .mp_post(
            "v2/activationCode",
            json!({"productId": 3, "goodsId": 30, "orderQuantity": 4,
                                             "price": 12.5, "requestId": "r1"}),
        )
        .await;
    assert_eq!(keys(&v), sorted(&["code", "msg", "data", "requestId"]));
    assert_eq!(v["code"], 200);
    assert_eq!(v["requestId"], "r1");
    assert_eq!(keys(&v["data"]), sorted(&["iccid", "qrCode", "orderCode"]));
    let iccid = v["data"]["iccid"].as_str().unwrap();
    assert!(iccid_ok(iccid), "{iccid}");
    assert!(activation_code_ok(v["data"]["qrCode"].as_str().unwrap()));
    let code = v["data"]["orderCode"].as_str().unwrap();
    assert!(code.starts_with("ORDER_"));

    let st = s.mp_get("queryOrderStatus", &[("orderCode", code)]).await;
    let row = &st["data"][0];
    assert_eq!(
        keys(row),
        sorted(&[
            "eid",
            "packageCode",
            "status",
            "actualStartTime",
            "plannedEndTime"
        ])
    );
    assert_eq!(row["status"], "0");
    assert!(eid_ok(row["eid"].as_str().unwrap()));
    assert_eq!(s.sandbox.call_count("mp.activationCode"), 1);

    // Ordering onto the same ICCID works; an unknown one is "No ICCID found".
    let again = s.mp_order(json!({"iccid": iccid})).await;
    assert_eq!(again["iccid"], iccid);
    let v = s
        .mp_post(
            "v2/activationCode",
            json!({"productId": 1, "iccid": "8985201000000000001"}),
        )
        .await;
    assert_ne!(v["code"], 200);
    assert_eq!(v["msg"], "No ICCID found");
}

#[tokio::test]
async fn invalid_cycle_count_is_no_iccid_found() {
    let s = start().await;
    // Product 3 allows "3,4".
    let v = s
        .mp_post("v2/activationCode", json!({"productId": 3, "orderQuantity": 2}))
        .await;
    assert_ne!(v["code"], 200);
    assert_eq!(v["msg"], "No ICCID found");
    assert_eq!(v["data"], Value::Null);
}

#[tokio::test]
async fn unknown_order_codes_answer_all_null_rows() {
    let s = start().await;
    let q = [("orderCode", "ORDER_DOES_NOT_EXIST")];
    let v = s.mp_get("queryOrderStatus", &q).await;
    assert_eq!(v["code"], 200);
    assert_eq!(
        v["data"],
        json!([{"eid": null, "packageCode": null, "status": null, "actualStartTime": null,
                "plannedEndTime": null}])
    );
    let v = s.mp_get("queryTraffic", &q).await;
    assert_eq!(
        v["data"],
        json!([{"eid": null, "packageCode": null, "packageFlow": null, "packageUsedFlow": null,
                "actualStartTime": null, "plannedEndTime": null, "cycle": null}])
    );
    let v = s.mp_get("v2/queryHistoryDailyTraffic", &q).await;
    assert_eq!(
        v["data"],
        json!({"packageCode": null, "actualStartTime": null, "plannedEndTime": null,
               "dailyTraffic": [{"flowUseTime": null, "useFlow": null}]})
    );
}

#[tokio::test]
async fn order_lifecycle_usage_and_daily_traffic_follow_the_clock() {
    let s = start().await;
    let order = s.mp_order(json!({"productId": 1})).await; // 1GB / 7 days
    let code = order["orderCode"].as_str().unwrap().to_owned();
    let q = [("orderCode", code.as_str())];
    s.sandbox.advance_clock(Duration::from_secs(2 * 3600));
    let st = s.mp_get("queryOrderStatus", &q).await;
    assert_eq!(st["data"][0]["status"], "1");
    assert!(st["data"][0]["actualStartTime"].is_string());
    let t = s.mp_get("queryTraffic", &q).await;
    let row = &t["data"][0];
    assert_eq!(
        keys(row),
        sorted(&[
            "eid",
            "packageCode",
            "packageFlow",
            "packageUsedFlow",
            "actualStartTime",
            "plannedEndTime",
            "cycle"
        ])
    );
    assert_eq!(row["packageFlow"], 1024);
    assert_eq!(row["cycle"], "1");
    let used1 = row["packageUsedFlow"].as_f64().unwrap();
    assert!(used1 > 0.0);
    s.sandbox.advance_clock(Duration::from_secs(86_400));
    let t = s.mp_get("queryTraffic", &q).await;
    let used2 = t["data"][0]["packageUsedFlow"].as_f64().unwrap();
    assert!(used2 > used1, "{used1} -> {used2}");
    let d = s.mp_get("v2/queryHistoryDailyTraffic", &q).await;
    assert_eq!(
        keys(&d["data"]),
        sorted(&["packageCode", "actualStartTime", "plannedEndTime", "dailyTraffic"])
    );
    let days = d["data"]["dailyTraffic"].as_array().unwrap();
    assert!(!days.is_empty());
    let mut total_bytes = 0u64;
    for day in days {
        assert_eq!(keys(day), sorted(&["flowUseTime", "useFlow"]));
        let b: u64 = day["useFlow"].as_str().unwrap().parse().unwrap();
        total_bytes += b;
        assert_eq!(day["flowUseTime"].as_str().unwrap().len(), 10);
    }
    assert!((total_bytes as f64 / 1048576.0 - used2).abs() < 1.0);
    // After the validity the order is finished.
    s.sandbox.advance_clock(Duration::from_secs(30 * 86_400));
    let st = s.mp_get("queryOrderStatus", &q).await;
    assert_eq!(st["data"][0]["status"], "3");
}

#[tokio::test]
async fn top_up_extends_and_is_refused_on_finished_orders() {
    let s = start().await;
    let order = s.mp_order(json!({"productId": 2, "orderQuantity": 2})).await;
    let code = order["orderCode"].as_str().unwrap().to_owned();
    let v = s.mp_post("v2/topUp", json!({"orderCode": code})).await;
    assert_eq!(v["code"], 200);
    assert_eq!(keys(&v["data"]), sorted(&["renewPeriod", "orderCode"]));
    assert_eq!(v["data"]["renewPeriod"], 2);
    let new_code = v["data"]["orderCode"].as_str().unwrap().to_owned();
    assert_ne!(new_code, code);
    let t = s.mp_get("queryTraffic", &[("orderCode", &new_code)]).await;
    assert_eq!(t["data"][0]["packageFlow"], 3072 * 4);

    let v = s
        .mp_post("switchOrder", json!({"orderCode": code, "switchButton": "OFF"}))
        .await;
    assert_eq!(
        v,
        json!({"code": 200, "msg": "Success", "data": null, "requestId": null})
    );
    assert_eq!(s.sandbox.mp_order_status(&code).as_deref(), Some("3"));
    let v = s.mp_post("v2/topUp", json!({"orderCode": code})).await;
    assert_ne!(v["code"], 200);
    assert!(v["msg"].is_string());
    let v = s.mp_post("v2/topUp", json!({"orderCode": "ORDER_NOPE"})).await;
    assert_ne!(v["code"], 200);
}

#[tokio::test]
async fn switch_order_moves_status() {
    let s = start().await;
    let code = s.mp_order(json!({})).await["orderCode"]
        .as_str()
        .unwrap()
        .to_owned();
    let sw = |b: &'static str| json!({"orderCode": code, "switchButton": b, "requestId": "x"});
    assert_eq!(s.mp_post("switchOrder", sw("ON")).await["code"], 200);
    assert_eq!(s.sandbox.mp_order_status(&code).as_deref(), Some("1"));
    let v = s.mp_post("switchOrder", sw("SUSPEND")).await;
    assert_eq!(v["requestId"], "x");
    assert_eq!(s.sandbox.mp_order_status(&code).as_deref(), Some("2"));
    assert_eq!(s.mp_post("switchOrder", sw("ON")).await["code"], 500);
    assert_eq!(s.mp_post("switchOrder", sw("RESTART")).await["code"], 200);
    assert_eq!(s.sandbox.mp_order_status(&code).as_deref(), Some("1"));
    assert_eq!(s.mp_post("switchOrder", sw("OFF")).await["code"], 200);
    assert_eq!(s.sandbox.mp_order_status(&code).as_deref(), Some("3"));
    assert_ne!(s.mp_post("switchOrder", sw("RESTART")).await["code"], 200);
    assert_ne!(s.mp_post("switchOrder", sw("BOGUS")).await["code"], 200);
}

#[tokio::test]
async fn activate_flag_yes_starts_at_once() {
    let s = start().await;
    let code = s.mp_order(json!({"activateFlag": "yes"})).await["orderCode"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(s.sandbox.mp_order_status(&code).as_deref(), Some("1"));
}

/// A tiny HTTP server that records JSON POST bodies.
async fn callback_server() -> (String, tokio::sync::mpsc::UnboundedReceiver<Value>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/alarm",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(v);
                "ok"
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/alarm", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, rx)
}

async fn next(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Value>) -> Value {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("callback in time")
        .unwrap()
}

#[tokio::test]
async fn alarm_callback_is_posted_when_usage_crosses_a_threshold() {
    let s = start().await;
    let (url, mut rx) = callback_server().await;
    let v = s
        .mp_post(
            "saveAlarmCallbackInterface",
            json!({"resellerCode": MP_KEY, "httpMethod": "POST", "httpUrl": url}),
        )
        .await;
    assert_eq!(v["code"], 200);
    assert_eq!(v["data"], url.as_str());
    let bad = s
        .mp_post(
            "saveAlarmCallbackInterface",
            json!({"resellerCode": "SG99999999", "httpMethod": "POST", "httpUrl": url}),
        )
        .await;
    assert_ne!(bad["code"], 200);

    let order = s.mp_order(json!({"activateFlag": "yes"})).await; // 1024 MB
    let code = order["orderCode"].as_str().unwrap().to_owned();
    s.sandbox.set_mp_usage_rate(&code, 0.0);
    assert!(s.sandbox.set_mp_usage_mb(&code, 543.0)); // 53 %
    let cb = next(&mut rx).await;
    assert_eq!(
        keys(&cb),
        sorted(&["eid", "packageCode", "orderCode", "packageUsedRate", "requestId"])
    );
    assert_eq!(cb["orderCode"], code.as_str());
    assert_eq!(cb["packageUsedRate"], "53%");
    assert!(eid_ok(cb["eid"].as_str().unwrap()));

    // Through the admin route: 85 % crosses 80.
    let r = s
        .http
        .put(s.url(&format!("/_sandbox/mp/orders/{code}/usage")))
        .json(&json!({"used_mb": 880.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cb = next(&mut rx).await;
    assert_eq!(cb["packageUsedRate"], "85%");

    // Duplicate-callback fault: 100 % is sent twice.
    s.sandbox
        .set_fault("mp.alarmCallback", esim_sandbox::Fault::duplicate_callbacks());
    s.sandbox.set_mp_usage_mb(&code, 1024.0);
    let a = next(&mut rx).await;
    let b = next(&mut rx).await;
    assert_eq!(a["packageUsedRate"], "100%");
    assert_eq!(a, b);
    assert_eq!(s.sandbox.call_count("mp.alarmCallback"), 4);
    assert_eq!(s.sandbox.mp_order_status(&code).as_deref(), Some("3"));
}

#[tokio::test]
async fn usage_growth_alone_triggers_callbacks() {
    let s = start().await;
    let (url, mut rx) = callback_server().await;
    s.mp_post(
        "saveAlarmCallbackInterface",
        json!({"resellerCode": MP_KEY, "httpMethod": "POST", "httpUrl": url}),
    )
    .await;
    let code = s.mp_order(json!({"activateFlag": "yes", "productId": 1})).await["orderCode"]
        .as_str()
        .unwrap()
        .to_owned();
    // 1 GB over 7 days at 0.6–1.4 × validity: 50 % is crossed within 5 days.
    for _ in 0..5 {
        s.sandbox.advance_clock(Duration::from_secs(86_400));
    }
    let cb = next(&mut rx).await;
    assert_eq!(cb["orderCode"], code.as_str());
    let rate: u64 = cb["packageUsedRate"]
        .as_str()
        .unwrap()
        .trim_end_matches('%')
        .parse()
        .unwrap();
    assert!(rate >= 50);
}
