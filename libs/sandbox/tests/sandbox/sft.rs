//! SFT: JWT auth, SIM pool, lifecycle, add-ons.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

fn rows(v: &Value) -> &Vec<Value> {
    v["Response"]["responseParam"]["rows"].as_array().unwrap()
}

#[tokio::test]
async fn login_refresh_and_bad_jwt() {
    let s = start().await;
    let r = s
        .http
        .post(s.url("/sft/api/login"))
        .json(&json!({"username": "sandbox", "password": "wrong"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = s
        .http
        .post(s.url("/sft/api/login"))
        .json(&json!({"username": "sandbox", "password": "sandbox-password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(keys(&v).contains(&"Response".to_owned()));
    assert_eq!(v["AccessToken"], v["Response"]["responseParam"]["AccessToken"]);
    assert_eq!(
        keys(&v["Response"]),
        sorted(&["resultCode", "resultParam", "responseParam"])
    );
    assert_eq!(v["Response"]["resultCode"], 0);
    let p = &v["Response"]["responseParam"];
    let access = p["AccessToken"].as_str().unwrap().to_owned();
    let refresh = p["RefreshToken"].as_str().unwrap().to_owned();
    assert_eq!(access.split('.').count(), 3);

    let (st, _) = s
        .sft("GET", "/api/fetchSIM?page=1&perPage=1", &access, None)
        .await;
    assert_eq!(st, 200);
    let (st, _) = s
        .sft("GET", "/api/fetchSIM?page=1&perPage=1", "not.a.jwt", None)
        .await;
    assert_eq!(st, 401);
    // Tampered signature.
    let mut forged = access.clone();
    forged.push('x');
    let (st, _) = s.sft("GET", "/api/fetchSIM", &forged, None).await;
    assert_eq!(st, 401);
    // A refresh token is not an access token.
    let (st, _) = s.sft("GET", "/api/fetchSIM", &refresh, None).await;
    assert_eq!(st, 401);
    // Expired after 15 minutes of sandbox clock; the refresh token gets a new one.
    s.sandbox.advance_clock(Duration::from_secs(16 * 60));
    let (st, _) = s.sft("GET", "/api/fetchSIM", &access, None).await;
    assert_eq!(st, 401);
    let v: Value = s
        .http
        .post(s.url("/sft/api/refreshToken"))
        .json(&json!({"refreshToken": refresh}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let fresh = v["Response"]["responseParam"]["AccessToken"].as_str().unwrap();
    let (st, _) = s.sft("GET", "/api/fetchSIM", fresh, None).await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn pool_identifiers_are_valid() {
    let s = start().await;
    let t = s.sft_token().await;
    let (st, v) = s
        .sft(
            "GET",
            "/api/fetchSIM?simStatusId=12&simAttachStatusId=1&page=1&perPage=100",
            &t,
            None,
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(v["Response"]["resultCode"], 0);
    assert_eq!(v["Response"]["responseParam"]["totalCount"], 200);
    let sims = rows(&v);
    assert_eq!(sims.len(), 100);
    let mut seen = std::collections::HashSet::new();
    for sim in sims {
        let iccid = sim["iccid"].as_str().unwrap();
        assert!(iccid_ok(iccid), "{iccid}");
        assert!(eid_ok(sim["eid"].as_str().unwrap()));
        assert!(activation_code_ok(
            sim["activationCode"]["textQrCode"].as_str().unwrap()
        ));
        assert!(sim["endPointId"].is_u64());
        assert_eq!(sim["simStatusId"], 12);
        assert_eq!(sim["simAttachStatusId"], 1);
        assert!(seen.insert(iccid.to_owned()));
    }
    // Page 2 is the other 100; by ICCID finds one.
    let (_, v2) = s
        .sft(
            "GET",
            "/api/fetchSIM?simStatusId=12&simAttachStatusId=1&page=2&perPage=100",
            &t,
            None,
        )
        .await;
    assert!(
        rows(&v2)
            .iter()
            .all(|r| !seen.contains(r["iccid"].as_str().unwrap()))
    );
    let iccid = sims[5]["iccid"].as_str().unwrap();
    let (_, v3) = s
        .sft("GET", &format!("/api/fetchSIM?iccid={iccid}"), &t, None)
        .await;
    assert_eq!(rows(&v3).len(), 1);
}

#[tokio::test]
async fn lifecycle_subscribe_and_details() {
    let s = start().await;
    let t = s.sft_token().await;
    let (_, v) = s
        .sft(
            "GET",
            "/api/fetchSIM?simStatusId=12&simAttachStatusId=1&page=1&perPage=1",
            &t,
            None,
        )
        .await;
    let ep = rows(&v)[0]["endPointId"].as_u64().unwrap();
    // fetchSIM reserves nothing: a second caller sees the same SIM.
    let (_, again) = s
        .sft(
            "GET",
            "/api/fetchSIM?simStatusId=12&simAttachStatusId=1&page=1&perPage=1",
            &t,
            None,
        )
        .await;
    assert_eq!(rows(&again)[0]["endPointId"], ep);
    // Not active yet: subscription refused.
    let sub = json!({"Request": {"requestParam": {"endPointId": ep, "planId": "PLAN-TRAVEL-1GB-7D"}}});
    let (_, v) = s.sft("POST", "/api/SubscribeAddon", &t, Some(sub.clone())).await;
    assert_ne!(v["Response"]["resultCode"], 0);
    // Activate (accepting the documented body shape), twice: the second is harmless.
    let lc = json!({"endPointId": ep, "requestParam": {"lifeCycle": "A", "reason": "1"}});
    let (st, v) = s
        .sft("POST", "/api/EndPointLifeCycleChange", &t, Some(lc.clone()))
        .await;
    assert_eq!(st, 200);
    assert_eq!(v["Response"]["resultCode"], 0);
    let (_, v) = s.sft("POST", "/api/EndPointLifeCycleChange", &t, Some(lc)).await;
    assert_eq!(v["Response"]["resultCode"], 0);
    assert_eq!(s.sandbox.sft_available_sims(), 199);
    // Unknown plan.
    let (_, v) = s
        .sft(
            "POST",
            "/api/SubscribeAddon",
            &t,
            Some(json!({"Request": {"requestParam": {"endpointId": ep, "planId": "NOPE"}}})),
        )
        .await;
    assert_ne!(v["Response"]["resultCode"], 0);
    // Subscribe.
    let (_, v) = s.sft("POST", "/api/SubscribeAddon", &t, Some(sub.clone())).await;
    assert_eq!(v["Response"]["resultCode"], 0, "{v}");
    let addon = &rows(&v)[0];
    let unique = addon["uniqueId"].as_str().unwrap().to_owned();
    assert!(!unique.is_empty());
    assert!(addon["benefit"].is_string());
    assert!(addon["counters"].is_array());
    // Details: counters grow with the clock.
    let (_, d1) = s
        .sft(
            "GET",
            &format!("/api/getEndPointAddonDetails?endPointId={ep}"),
            &t,
            None,
        )
        .await;
    assert_eq!(rows(&d1)[0]["uniqueId"], unique.as_str());
    let used1 = rows(&d1)[0]["counters"][0]["used"].as_u64().unwrap();
    s.sandbox.advance_clock(Duration::from_secs(600));
    let t = s.sft_token().await;
    let (_, d2) = s
        .sft("GET", &format!("/api/endpoint/{ep}/addons"), &t, None)
        .await;
    let row = &rows(&d2)[0];
    assert!(row["counters"][0]["used"].as_u64().unwrap() > used1);
    assert!(row["balance"].as_u64().unwrap() < 1024 * 1024 * 1024);
    assert!(row["startDate"].is_string() && row["endDate"].is_string());
    // At most 15 active add-ons.
    for _ in 1..15 {
        let (_, v) = s.sft("POST", "/api/SubscribeAddon", &t, Some(sub.clone())).await;
        assert_eq!(v["Response"]["resultCode"], 0);
    }
    let (_, v) = s.sft("POST", "/api/SubscribeAddon", &t, Some(sub.clone())).await;
    assert_ne!(v["Response"]["resultCode"], 0);
    assert!(v["Response"]["resultParam"]["resultDescription"].is_string());
    // Suspend.
    let (_, v) = s
        .sft(
            "POST",
            "/api/EndPointLifeCycleChange",
            &t,
            Some(json!({"Request": {"endPointId": ep, "requestParam": {"lifeCycle": "S", "reason": "1"}}})),
        )
        .await;
    assert_eq!(v["Response"]["resultCode"], 0);
    assert_eq!(rows(&v)[0]["simStatusId"], 2);
}
