use esim_upstream::fms::{self, wire as fw};
use esim_upstream::mp::{self, wire as mw};
use rust_decimal::Decimal;

use crate::server::fixture;

fn mp_env<T: serde::de::DeserializeOwned>(name: &str) -> mw::Envelope<T> {
    let e: mw::Envelope<T> = serde_json::from_str(&fixture(&format!("mp/{name}.json"))).unwrap();
    assert_eq!(e.code, 200);
    e
}

#[test]
fn mp_product_list() {
    let e: mw::Envelope<Vec<mw::Product>> = mp_env("product_list");
    let rows: Vec<mp::Product> = e
        .data
        .unwrap()
        .into_iter()
        .map(|r| mp::Product::try_from(r).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].goods_id, 35);
    assert_eq!(rows[0].product_id, 5);
    assert_eq!(rows[0].cover_mcc.unwrap().as_str(), "460");
    assert_eq!(rows[0].cover_country_name.as_deref(), Some("China"));
    assert_eq!(rows[1].allowed_cycle_counts, vec![3, 4]);
    assert_eq!(
        rows[1].sim_group_code.as_deref(),
        Some("SIMGROUP1706570409388478464")
    );
    assert_eq!(rows[2].allowed_cycle_counts, vec![2]);
}

#[test]
fn mp_activation_code() {
    let e: mw::Envelope<mw::ActivationCodeData> = mp_env("activation_code");
    assert_eq!(e.msg, None);
    let o = mp::CreatedOrder::try_from(e.data.unwrap()).unwrap();
    assert_eq!(o.iccid.as_str(), "8943108169999589689");
    assert_eq!(o.order_code, "ORDER_1726522312360550400");
    assert_eq!(o.activation_code.smdp_address(), "rsp-0001.linksfield.net");
    assert_eq!(o.activation_code.matching_id(), "FJW99-WC5AS-CBYC9-WFTOZ");
    let dbg = format!("{o:?}");
    assert!(!dbg.contains("FJW99"), "{dbg}");
}

#[test]
fn mp_top_up() {
    let e: mw::Envelope<mw::TopUpData> = mp_env("top_up");
    let t = mp::TopUp::try_from(e.data.unwrap()).unwrap();
    assert_eq!(t.renew_period, 1);
    assert_eq!(t.order_code, "ORDER_1859115952416571392");
}

#[test]
fn mp_order_status_normal_and_null() {
    let e: mw::Envelope<Vec<mw::OrderStatusRow>> = mp_env("order_status_normal");
    let row = e.data.unwrap().remove(0);
    assert!(!mp::is_null_status_row(&row));
    let s = mp::OrderStatusInfo::try_from(row).unwrap();
    assert_eq!(s.status, mp::OrderStatus::NotEnabled);
    assert_eq!(s.package_code.as_deref(), Some("LP14230831004073"));
    // The seed's "eid" is a 20-digit ICCID (Luhn-valid), not a 32-digit EID.
    assert!(matches!(s.eid, Some(mp::EsimRef::Iccid(ref i)) if i.as_str() == "89491202308310000235"));
    assert_eq!(s.actual_start, None);

    let e: mw::Envelope<Vec<mw::OrderStatusRow>> = mp_env("order_status_null");
    let rows = e.data.unwrap();
    assert_eq!(rows.len(), 1);
    assert!(mp::is_null_status_row(&rows[0]), "Null data means not found");
}

#[test]
fn mp_traffic_normal_and_null() {
    let e: mw::Envelope<Vec<mw::TrafficRow>> = mp_env("traffic_normal");
    let row = e.data.unwrap().remove(0);
    assert!(!mp::is_null_traffic_row(&row));
    let t = mp::Traffic::try_from(row).unwrap();
    assert_eq!(t.cycle_months, Some(1));
    assert_eq!(t.total_bytes, None);
    assert_eq!(t.package_code.as_deref(), Some("LP14230831004073"));

    let e: mw::Envelope<Vec<mw::TrafficRow>> = mp_env("traffic_null");
    assert!(mp::is_null_traffic_row(&e.data.unwrap()[0]));
}

#[test]
fn mp_daily_traffic_normal_and_null() {
    let e: mw::Envelope<mw::DailyTrafficData> = mp_env("daily_traffic_normal");
    let d = mp::DailyTraffic::from_wire(e.data.unwrap()).unwrap().unwrap();
    assert_eq!(d.days.len(), 1);
    assert_eq!(d.days[0].used_bytes, 120_000);
    assert_eq!(d.days[0].date.to_string(), "2025-03-07");
    assert_eq!(d.actual_start.unwrap().to_string(), "2025-03-07 17:11:21");
    assert_eq!(d.planned_end.unwrap().to_string(), "2025-03-13 23:59:59");

    let e: mw::Envelope<mw::DailyTrafficData> = mp_env("daily_traffic_null");
    assert_eq!(mp::DailyTraffic::from_wire(e.data.unwrap()).unwrap(), None);
}

#[test]
fn mp_switch_and_alarm_registration() {
    let e: mw::Envelope<serde_json::Value> = mp_env("switch_order");
    assert!(e.data.is_none());
    let e: mw::Envelope<String> = mp_env("save_alarm_callback");
    assert_eq!(e.data.as_deref(), Some("httpUrl"));
}

#[test]
fn mp_alarm_callback() {
    let a = mp::MpClient::decode_alarm(fixture("mp/alarm_callback.json").as_bytes()).unwrap();
    assert_eq!(a.used_percent, Decimal::from(84));
    assert_eq!(a.order_code, "ORDER_1726522312360550400");
    assert!(matches!(a.eid, mp::EsimRef::Eid(_)));
}

#[test]
fn mp_wire_round_trips() {
    for name in [
        "product_list",
        "order_status_normal",
        "traffic_normal",
        "daily_traffic_normal",
    ] {
        let text = fixture(&format!("mp/{name}.json"));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let again = match name {
            "product_list" => {
                serde_json::to_value(serde_json::from_str::<mw::Envelope<Vec<mw::Product>>>(&text).unwrap())
            }
            "order_status_normal" => serde_json::to_value(
                serde_json::from_str::<mw::Envelope<Vec<mw::OrderStatusRow>>>(&text).unwrap(),
            ),
            "traffic_normal" => serde_json::to_value(
                serde_json::from_str::<mw::Envelope<Vec<mw::TrafficRow>>>(&text).unwrap(),
            ),
            _ => serde_json::to_value(
                serde_json::from_str::<mw::Envelope<mw::DailyTrafficData>>(&text).unwrap(),
            ),
        }
        .unwrap();
        assert_eq!(v, again, "{name} re-serializes to the same JSON");
    }
}

#[test]
fn fms_preorder_request_verbatim_is_not_json() {
    // The seed's example lacks a comma after `"periodNum": 1`.
    let text = fixture("fms/preorder_request_verbatim.json");
    assert!(text.contains("\"periodNum\": 1\n"));
    assert!(serde_json::from_str::<serde_json::Value>(&text).is_err());
    assert!(serde_json::from_str::<fw::PreOrderRequest>(&text).is_err());
}

#[test]
fn fms_preorder_request_fixed_parses() {
    let r: fw::PreOrderRequest = serde_json::from_str(&fixture("fms/preorder_request_fixed.json")).unwrap();
    assert_eq!(r.currency, "USD");
    assert_eq!(r.currency_id, 2);
    assert_eq!(r.device_type, "10");
    assert_eq!(r.id, 1_000_000);
    assert_eq!(r.money, Decimal::from(5));
    assert_eq!(r.period_num, 1);
    assert_eq!(r.receive_qr_email.as_deref(), Some("test@test.com"));
    let back = serde_json::to_value(&r).unwrap();
    assert_eq!(back["money"], serde_json::json!(5));
    assert_eq!(back["receive_qr_email"], "test@test.com");
}

#[test]
fn fms_preorder_response() {
    let e: fw::Envelope<fw::PreOrderData> =
        serde_json::from_str(&fixture("fms/preorder_response.json")).unwrap();
    assert_eq!(e.code, 0);
    let data = e.data.unwrap();
    assert!(!format!("{data:?}").contains("ASNnc_k89"), "clientId is redacted");
    let p = fms::PreOrder::try_from(data).unwrap();
    assert_eq!(p.id, 1_055_293);
    assert_eq!(p.order_no, "ESIM_L202212050000000");
    assert_eq!(p.amount.to_string(), "1 USD");
    assert_eq!(p.order_time.to_rfc3339(), "2022-12-05T03:14:50.958+00:00");
    assert_eq!(p.period_num, Some(1));
}

#[test]
fn fms_webhook_error_codes() {
    let e: fw::Envelope<serde_json::Value> = serde_json::from_str(&fixture("fms/webhook_6006.json")).unwrap();
    assert_eq!(e.code, 6006);
    assert_eq!(
        esim_upstream::error::FmsCode::from_code(e.code),
        esim_upstream::error::FmsCode::PreOrderTimeout
    );
    let e: fw::Envelope<serde_json::Value> =
        serde_json::from_str(&fixture("fms/webhook_10008.json")).unwrap();
    assert_eq!(
        esim_upstream::error::FmsCode::from_code(e.code),
        esim_upstream::error::FmsCode::NoSuchOrder
    );
}

#[test]
fn fms_order_status_accepts_both_field_names() {
    let a: fw::OrderStatusData = serde_json::from_str(r#"{"orderStatus":1,"qrCode":"LPA:1$a.b$C"}"#).unwrap();
    let b: fw::OrderStatusData =
        serde_json::from_str(r#"{"orderPayStatus":1,"qrCode":"LPA:1$a.b$C"}"#).unwrap();
    assert_eq!(a, b);
    let s = fms::OrderPayState::try_from(a).unwrap();
    assert_eq!(s.status, fms::PayStatus::Paid);
    assert!(!format!("{s:?}").contains("$C"));
}
