//! FMS: accounts and tokens, catalogue, pre-order → payment → status, expiry and error codes.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

const PARTNER: &str = "1000000005";

async fn first_package(s: &Running, token: &str) -> Value {
    let list = s
        .fms(
            "/package/packageList",
            Some(token),
            json!({"countryCode": 440, "partnerCode": PARTNER, "type": 1}),
        )
        .await;
    assert_eq!(list["code"], 0, "{list}");
    let id = list["data"][0]["id"].clone();
    let d = s
        .fms("/package/detail", Some(token), json!({"id": id, "orderNum": 1}))
        .await;
    assert_eq!(d["code"], 0, "{d}");
    d["data"].clone()
}

async fn pre_order(s: &Running, token: &str, detail: &Value) -> Value {
    let ci = &detail["currencyInfo"][0];
    s.fms(
        "/v1.2/package/preOrderPackage",
        Some(token),
        json!({"currency": ci["currencyAbbr"], "currencyId": ci["currencyId"],
               "deviceType": "10", "discountFlag": 0, "id": detail["id"],
               "money": ci["price"], "packageCode": detail["packageCode"], "packageNum": 1,
               "partnerCode": PARTNER, "periodNum": detail["period"],
               "receive_qr_email": "t@example.com"}),
    )
    .await
}

fn webhook(order_id: &Value, amount: &Value, kind: &str) -> Value {
    json!({"dateTime": 1_700_000_000, "orderId": order_id.to_string(), "partnerCode": PARTNER,
           "payAmount": amount, "payCurrency": "USD", "paypalId": "pi_123", "type": kind})
}

#[tokio::test]
async fn register_login_and_tokens() {
    let s = start().await;
    let reg = s
        .fms(
            "/user/emailRegister",
            None,
            json!({"appId": 12, "email": "a@example.com", "partnerCode": PARTNER,
                    "passwd": "6e99d95b538ad2db523f17c68fe961c5", "userType": 4,
                    "verifyCode": 3206}),
        )
        .await;
    assert_eq!(keys(&reg), sorted(&["code", "data", "message"]));
    assert_eq!(reg["code"], 0);
    let t1 = reg["data"]["token"].as_str().unwrap().to_owned();
    // Duplicate e-mail.
    let dup = s
        .fms(
            "/user/emailRegister",
            None,
            json!({"appId": 12, "email": "A@example.com", "partnerCode": PARTNER,
                    "passwd": "6e99d95b538ad2db523f17c68fe961c5", "userType": 4}),
        )
        .await;
    assert_ne!(dup["code"], 0);
    // Bad parameters.
    let bad = s
        .fms(
            "/user/emailRegister",
            None,
            json!({"appId": 12, "email": "b@example.com"}),
        )
        .await;
    assert_eq!(bad["code"], 2);
    // Login: a new token each time, also in the response header.
    let r = s
        .http
        .post(s.url("/fms/user/login"))
        .json(
            &json!({"appId": 12, "email": "a@example.com", "partnerCode": PARTNER,
                      "passwd": "6e99d95b538ad2db523f17c68fe961c5", "userType": 4}),
        )
        .send()
        .await
        .unwrap();
    let header = r.headers()["x-access-token"].to_str().unwrap().to_owned();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], 0);
    let t2 = v["data"]["token"].as_str().unwrap().to_owned();
    assert_eq!(header, t2);
    assert_ne!(t1, t2);
    let wrong = s
        .fms(
            "/user/emailLogin",
            None,
            json!({"email": "a@example.com", "passwd": "00000000000000000000000000000000",
                    "partnerCode": PARTNER}),
        )
        .await;
    assert_ne!(wrong["code"], 0);

    // Unknown token → 7.
    let v = s
        .fms(
            "/package/countryPackageList",
            Some("nope"),
            json!({"partnerCode": PARTNER}),
        )
        .await;
    assert_eq!(v["code"], 7);
    assert_eq!(v["data"], Value::Null);
    // Valid token works; after 3 days it has expired.
    let v = s
        .fms(
            "/package/countryPackageList",
            Some(&t2),
            json!({"partnerCode": PARTNER, "type": 1}),
        )
        .await;
    assert_eq!(v["code"], 0);
    s.sandbox.advance_clock(Duration::from_secs(3 * 86_400 + 60));
    let v = s
        .fms(
            "/package/countryPackageList",
            Some(&t2),
            json!({"partnerCode": PARTNER}),
        )
        .await;
    assert_eq!(v["code"], 7);

    // Password reset (partner-level sync), then only the new password logs in.
    let v = s
        .fms(
            "/user/passwordReset",
            None,
            json!({"email": "a@example.com", "partnerCode": PARTNER,
                    "passwd": "11111111111111111111111111111111"}),
        )
        .await;
    assert_eq!(v["code"], 0, "{v}");
    let old = s
        .fms(
            "/user/login",
            None,
            json!({"email": "a@example.com", "partnerCode": PARTNER, "appId": 12, "userType": 4,
                    "passwd": "6e99d95b538ad2db523f17c68fe961c5"}),
        )
        .await;
    assert_ne!(old["code"], 0);
    let new = s
        .fms(
            "/user/login",
            None,
            json!({"email": "a@example.com", "partnerCode": PARTNER, "appId": 12, "userType": 4,
                    "passwd": "11111111111111111111111111111111"}),
        )
        .await;
    assert_eq!(new["code"], 0);
}

#[tokio::test]
async fn catalogue_shapes() {
    let s = start().await;
    let t = s.fms_user("c@example.com").await;
    let v = s
        .fms(
            "/package/countryPackageList",
            Some(&t),
            json!({"partnerCode": PARTNER, "type": 1}),
        )
        .await;
    let rows = v["data"].as_array().unwrap();
    assert_eq!(rows.len(), 12);
    for r in rows {
        assert!(keys(r).contains(&"countryCode".to_owned()));
        assert!(keys(r).contains(&"countryName".to_owned()));
    }
    let v = s
        .fms(
            "/package/packageList",
            Some(&t),
            json!({"countryCode": 460, "partnerCode": PARTNER, "type": 1}),
        )
        .await;
    let rows = v["data"].as_array().unwrap();
    assert!(rows.len() >= 4);
    for r in rows {
        for k in [
            "id",
            "packageCode",
            "packageName",
            "flow",
            "days",
            "price",
            "currency",
        ] {
            assert!(!r[k].is_null(), "{k} in {r}");
        }
    }
    // type 2: only single-country packages (the regional one disappears).
    let v2 = s
        .fms(
            "/package/packageList",
            Some(&t),
            json!({"countryCode": 460, "partnerCode": PARTNER, "type": 2}),
        )
        .await;
    assert_eq!(v2["data"].as_array().unwrap().len() + 1, rows.len());
    let d = first_package(&s, &t).await;
    for k in [
        "id",
        "packageCode",
        "packageName",
        "period",
        "flow",
        "days",
        "currencyInfo",
    ] {
        assert!(!d[k].is_null(), "{k} in {d}");
    }
    let ci = &d["currencyInfo"][0];
    assert_eq!(ci["currencyAbbr"], "USD");
    assert_eq!(ci["currencyId"], 2);
    assert!(ci["price"].is_number());
}

#[tokio::test]
async fn pre_order_payment_and_status() {
    let s = start().await;
    let t = s.fms_user("p@example.com").await;
    let d = first_package(&s, &t).await;
    let po = pre_order(&s, &t, &d).await;
    assert_eq!(po["code"], 0, "{po}");
    assert_eq!(po["message"], "SUCCESS");
    assert_eq!(
        keys(&po["data"]),
        sorted(&[
            "amount",
            "id",
            "orderNo",
            "packageName",
            "orderTime",
            "periodNum",
            "currency",
            "clientId"
        ])
    );
    let id = po["data"]["id"].clone();
    let amount = po["data"]["amount"].clone();
    let st = s
        .fms(
            "/package/queryOrdStatusAndEmail",
            Some(&t),
            json!({"orderId": id}),
        )
        .await;
    assert_eq!(st["data"]["orderPayStatus"], 0);
    assert_eq!(st["data"]["qrCode"], Value::Null);
    // Price mismatch, unknown order, bad params.
    let v = s
        .fms(
            "/payment/webhook",
            None,
            webhook(&id, &json!(0.01), "payment_intent.succeeded"),
        )
        .await;
    assert_eq!(v["code"], 10009);
    let v = s
        .fms(
            "/payment/webhook",
            None,
            webhook(&json!(42), &amount, "payment_intent.succeeded"),
        )
        .await;
    assert_eq!(v["code"], 10008);
    let v = s
        .fms("/payment/webhook", None, json!({"orderId": id.to_string()}))
        .await;
    assert_eq!(v["code"], 2);
    // Paid.
    let v = s
        .fms(
            "/v1.1/payment/webhook",
            None,
            webhook(&id, &amount, "payment_intent.succeeded"),
        )
        .await;
    assert_eq!(v["code"], 0, "{v}");
    let st = s
        .fms(
            "/package/queryOrdStatusAndEmail",
            Some(&t),
            json!({"orderId": id}),
        )
        .await;
    assert_eq!(st["data"]["orderPayStatus"], 0, "still processing");
    s.sandbox.advance_clock(Duration::from_secs(3));
    let st = s
        .fms(
            "/package/queryOrdStatusAndEmail",
            Some(&t),
            json!({"orderId": id}),
        )
        .await;
    assert_eq!(st["data"]["orderPayStatus"], 1);
    let qr = st["data"]["qrCode"].as_str().unwrap().to_owned();
    assert!(activation_code_ok(&qr));
    // Notified once only.
    let v = s
        .fms(
            "/payment/webhook",
            None,
            webhook(&id, &amount, "payment_intent.succeeded"),
        )
        .await;
    assert_ne!(v["code"], 0);
    let e = s
        .fms("/order/myEsimDetail", Some(&t), json!({"orderId": id}))
        .await;
    assert_eq!(e["code"], 0);
    assert!(iccid_ok(e["data"]["iccid"].as_str().unwrap()));
    assert_eq!(e["data"]["qrCode"], qr.as_str());
    // Another user cannot see the order.
    let other = s.fms_user("o@example.com").await;
    let v = s
        .fms(
            "/package/queryOrdStatusAndEmail",
            Some(&other),
            json!({"orderId": id}),
        )
        .await;
    assert_eq!(v["code"], 10008);
}

#[tokio::test]
async fn failed_payment_is_status_2() {
    let s = start().await;
    let t = s.fms_user("f@example.com").await;
    let d = first_package(&s, &t).await;
    let po = pre_order(&s, &t, &d).await;
    let id = po["data"]["id"].clone();
    let v = s
        .fms(
            "/payment/webhook",
            None,
            webhook(&id, &po["data"]["amount"], "payment_intent.payment_failed"),
        )
        .await;
    assert_eq!(v["code"], 0);
    let st = s
        .fms(
            "/package/queryOrdStatusAndEmail",
            Some(&t),
            json!({"orderId": id}),
        )
        .await;
    assert_eq!(st["data"]["orderPayStatus"], 2);
}

#[tokio::test]
async fn pre_order_expires_after_ten_minutes() {
    let s = start().await;
    let t = s.fms_user("x@example.com").await;
    let d = first_package(&s, &t).await;
    let po = pre_order(&s, &t, &d).await;
    let id = po["data"]["id"].clone();
    s.sandbox.advance_clock(Duration::from_secs(10 * 60 + 5));
    let v = s
        .fms(
            "/payment/webhook",
            None,
            webhook(&id, &po["data"]["amount"], "payment_intent.succeeded"),
        )
        .await;
    assert_eq!(
        v,
        json!({"code": 6006, "data": null, "message": "PreOrder Timeout"})
    );
    let st = s
        .fms(
            "/package/queryOrdStatusAndEmail",
            Some(&t),
            json!({"orderId": id}),
        )
        .await;
    assert_eq!(st["data"]["orderPayStatus"], 3);
    // A pre-order with the wrong money is a price mismatch.
    let mut bad = d.clone();
    bad["currencyInfo"][0]["price"] = json!(0.5);
    let v = pre_order(&s, &t, &bad).await;
    assert_eq!(v["code"], 10009);
}
