//! The sandbox's answers decode into `esim-upstream`'s wire types (the client's view), and a
//! request signed by `esim_upstream::mp::sign` is accepted.

use std::time::Duration;

use esim_upstream::{fms::wire as fw, mp::wire as mw, sft::wire as sw};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::common::*;

fn decode<T: DeserializeOwned>(what: &str, v: &Value) -> T {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{what}: {e}\n{v}"))
}

#[tokio::test]
async fn upstream_signer_is_accepted() {
    use esim_upstream::mp::sign;
    let s = start().await;
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let path = "/mp-api/api/esim/queryOrderStatus";
    let query = [("orderCode", "ORDER_1 2"), ("requestId", "r/1")];
    let headers = [("Accept-Language", "en-US"), ("Content-Type", "application/json")];
    let input = sign::SigningInput {
        method: "GET",
        path,
        query: &query,
        access_key: MP_KEY,
        date: &date,
        signed_headers: &headers,
    };
    let sig = sign::signature(MP_SECRET, &input);
    // The hand computation in the tests agrees with the client's signer.
    assert_eq!(sig, mp_signature(MP_SECRET, "GET", path, &query, &date));
    let r = s
        .http
        .get(s.url(&format!("{path}?{}", sign::canonical_query(&query))))
        .header(sign::HEADER_ACCESS_KEY, MP_KEY)
        .header(sign::HEADER_ALGORITHM, sign::ALGORITHM)
        .header("Date", &date)
        .header(sign::HEADER_SIGNED_HEADERS, "Accept-Language;Content-Type")
        .header("Accept-Language", "en-US")
        .header("Content-Type", "application/json")
        .header(sign::HEADER_SIGNATURE, sig)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["requestId"], "r/1");
}

#[tokio::test]
async fn mp_answers_decode() {
    let s = start().await;
    let v = s.mp_get("v2/productList", &[]).await;
    let _: mw::Envelope<Vec<mw::Product>> = decode("productList", &v);
    let order = s.mp_order(json!({"activateFlag": "yes"})).await;
    let _: mw::ActivationCodeData = decode("activationCode", &order);
    let code = order["orderCode"].as_str().unwrap().to_owned();
    s.sandbox.advance_clock(Duration::from_secs(86_400));
    let q = [("orderCode", code.as_str())];
    for (path, known) in [("queryOrderStatus", true), ("queryTraffic", true)] {
        let v = s.mp_get(path, &q).await;
        assert!(known);
        if path == "queryOrderStatus" {
            let _: mw::Envelope<Vec<mw::OrderStatusRow>> = decode(path, &v);
        } else {
            let _: mw::Envelope<Vec<mw::TrafficRow>> = decode(path, &v);
        }
    }
    let v = s.mp_get("v2/queryHistoryDailyTraffic", &q).await;
    let _: mw::Envelope<mw::DailyTrafficData> = decode("daily", &v);
    let v = s
        .mp_get("v2/queryHistoryDailyTraffic", &[("orderCode", "NOPE")])
        .await;
    let _: mw::Envelope<mw::DailyTrafficData> = decode("daily null", &v);
    let v = s.mp_post("v2/topUp", json!({"orderCode": code})).await;
    let _: mw::Envelope<mw::TopUpData> = decode("topUp", &v);
    let v = s
        .mp_post(
            "switchOrder",
            json!({"orderCode": code, "switchButton": "SUSPEND"}),
        )
        .await;
    let _: mw::Envelope<Value> = decode("switchOrder", &v);
    let cb = json!({"eid": "1", "packageCode": "P", "orderCode": "O", "packageUsedRate": "53%",
                    "requestId": "x"});
    let _: mw::AlarmCallback = decode("callback", &cb);
}

#[tokio::test]
async fn fms_answers_decode() {
    let s = start().await;
    let reg = s
        .fms(
            "/user/emailRegister",
            None,
            json!({"appId": 12, "email": "w@example.com", "partnerCode": "1000000005",
                    "passwd": "6e99d95b538ad2db523f17c68fe961c5", "userType": 4}),
        )
        .await;
    let login: fw::Envelope<fw::LoginData> = decode("register", &reg);
    let token = login.data.unwrap().token.unwrap().expose().to_owned();
    let t = Some(token.as_str());
    let v = s
        .fms(
            "/package/countryPackageList",
            t,
            json!({"partnerCode": "1000000005"}),
        )
        .await;
    let _: fw::Envelope<Vec<fw::CountryRow>> = decode("countries", &v);
    let v = s
        .fms(
            "/package/packageList",
            t,
            json!({"countryCode": 525, "partnerCode": "1000000005"}),
        )
        .await;
    let list: fw::Envelope<Vec<fw::PackageRow>> = decode("packages", &v);
    let id = list.data.unwrap()[0].id;
    let v = s
        .fms("/package/detail", t, json!({"id": id, "orderNum": 1}))
        .await;
    let detail: fw::Envelope<fw::PackageDetail> = decode("detail", &v);
    let d = detail.data.unwrap();
    let ci = &d.currency_info[0];
    let money: f64 = ci.price.as_ref().unwrap().as_text().parse().unwrap();
    let v = s
        .fms(
            "/v1.2/package/preOrderPackage",
            t,
            json!({"currency": ci.currency_abbr, "currencyId": ci.currency_id, "deviceType": "10",
                    "discountFlag": 0, "id": d.id, "money": money, "packageCode": d.package_code,
                    "packageNum": 1, "partnerCode": "1000000005", "periodNum": d.period}),
        )
        .await;
    let po: fw::Envelope<fw::PreOrderData> = decode("preOrder", &v);
    let po = po.data.unwrap();
    let v = s
        .fms(
            "/payment/webhook",
            None,
            json!({"dateTime": 1_700_000_000, "orderId": po.id.to_string(),
                    "partnerCode": "1000000005", "payAmount": money, "payCurrency": "USD",
                    "paypalId": "pi_1", "type": "payment_intent.succeeded"}),
        )
        .await;
    let ok: fw::Envelope<Value> = decode("webhook", &v);
    assert_eq!(ok.code, 0);
    s.sandbox.advance_clock(Duration::from_secs(5));
    let v = s
        .fms("/package/queryOrdStatusAndEmail", t, json!({"orderId": po.id}))
        .await;
    let st: fw::Envelope<fw::OrderStatusData> = decode("status", &v);
    assert_eq!(st.data.unwrap().order_pay_status, 1);
    let v = s
        .fms("/order/myEsimDetail", t, json!({"orderId": po.id.to_string()}))
        .await;
    let e: fw::Envelope<fw::EsimDetailData> = decode("myEsimDetail", &v);
    assert!(e.data.unwrap().iccid.is_some());
    let v = s.fms("/package/detail", Some("bad"), json!({"id": id})).await;
    let e: fw::Envelope<Value> = decode("code 7", &v);
    assert_eq!(e.code, fw::CODE_TOKEN_EXPIRED);
}

#[tokio::test]
async fn sft_answers_decode() {
    let s = start().await;
    let v: Value = s
        .http
        .post(s.url(&format!("/sft{}", sw::PATH_LOGIN)))
        .json(&json!({"username": "sandbox", "password": "sandbox-password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let login: sw::LoginResponse = decode("login", &v);
    let refresh = login.refresh_token.unwrap().expose().to_owned();
    let v: Value = s
        .http
        .post(s.url(&format!("/sft{}", sw::PATH_REFRESH)))
        .json(&json!({"refreshToken": refresh}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let _: sw::LoginResponse = decode("refresh", &v);
    let t = login.access_token.expose().to_owned();
    let (_, v) = s
        .sft(
            "GET",
            &format!(
                "{}?simStatusId=12&simAttachStatusId=1&page=1&perPage=2",
                sw::PATH_FETCH_SIM
            ),
            &t,
            None,
        )
        .await;
    let sims: sw::ResponseEnvelope<sw::SimRow> = decode("fetchSIM", &v);
    let rows = sims.response.response_param.unwrap().rows;
    let ep = rows[0].end_point_id.as_ref().unwrap().as_text();
    let lc = sw::RequestEnvelope {
        request: sw::RequestBody {
            end_point_id: Some(esim_upstream::wire_common::NumOrStr::Str(ep.clone())),
            request_param: sw::LifeCycleParam {
                life_cycle: "A".into(),
                reason: "1".into(),
            },
        },
    };
    let (_, v) = s
        .sft(
            "POST",
            sw::PATH_LIFECYCLE,
            &t,
            Some(serde_json::to_value(&lc).unwrap()),
        )
        .await;
    let r: sw::ResponseEnvelope<Value> = decode("lifecycle", &v);
    assert_eq!(r.response.result_code, 0);
    let sub = sw::RequestEnvelope {
        request: sw::RequestBody {
            end_point_id: None,
            request_param: sw::SubscribeAddonParam {
                end_point_id: esim_upstream::wire_common::NumOrStr::Str(ep.clone()),
                plan_id: esim_upstream::wire_common::NumOrStr::Str("PLAN-TRAVEL-3GB-15D".into()),
            },
        },
    };
    let (_, v) = s
        .sft(
            "POST",
            sw::PATH_SUBSCRIBE_ADDON,
            &t,
            Some(serde_json::to_value(&sub).unwrap()),
        )
        .await;
    let a: sw::ResponseEnvelope<sw::AddonRow> = decode("subscribe", &v);
    assert_eq!(a.response.result_code, 0);
    let (_, v) = s
        .sft(
            "GET",
            &format!("{}?endPointId={ep}", sw::PATH_ADDON_DETAILS),
            &t,
            None,
        )
        .await;
    let d: sw::ResponseEnvelope<sw::AddonRow> = decode("details", &v);
    let rows = d.response.response_param.unwrap().rows;
    assert_eq!(rows.len(), 1);
    assert!(!rows[0].counters.is_empty());
}
