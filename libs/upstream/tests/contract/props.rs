use esim_upstream::fms::wire as fw;
use esim_upstream::mp::{self, wire as mw};
use esim_upstream::sft::wire as sw;
use proptest::prelude::*;

fn decode_all(bytes: &[u8]) {
    let _ = serde_json::from_slice::<mw::Envelope<Vec<mw::Product>>>(bytes);
    let _ = serde_json::from_slice::<mw::Envelope<Vec<mw::OrderStatusRow>>>(bytes).map(|e| {
        e.data
            .unwrap_or_default()
            .into_iter()
            .map(mp::OrderStatusInfo::try_from)
            .count()
    });
    let _ = serde_json::from_slice::<mw::Envelope<Vec<mw::TrafficRow>>>(bytes).map(|e| {
        e.data
            .unwrap_or_default()
            .into_iter()
            .map(mp::Traffic::try_from)
            .count()
    });
    let _ = serde_json::from_slice::<mw::Envelope<mw::DailyTrafficData>>(bytes)
        .map(|e| e.data.map(mp::DailyTraffic::from_wire));
    let _ = serde_json::from_slice::<mw::Envelope<mw::ActivationCodeData>>(bytes)
        .map(|e| e.data.map(mp::CreatedOrder::try_from));
    let _ = mp::MpClient::decode_alarm(bytes);
    let _ = serde_json::from_slice::<fw::Envelope<fw::PreOrderData>>(bytes)
        .map(|e| e.data.map(esim_upstream::fms::PreOrder::try_from));
    let _ = serde_json::from_slice::<fw::Envelope<fw::OrderStatusData>>(bytes)
        .map(|e| e.data.map(esim_upstream::fms::OrderPayState::try_from));
    let _ = serde_json::from_slice::<sw::ResponseEnvelope<sw::AddonRow>>(bytes).map(|e| {
        e.response.response_param.map(|p| {
            p.rows
                .into_iter()
                .map(esim_upstream::sft::AddonInfo::try_from)
                .count()
        })
    });
    let _ = serde_json::from_slice::<sw::ResponseEnvelope<sw::SimRow>>(bytes);
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        "[0-9:% .a-zA-Z$-]{0,24}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        let keys = prop_oneof![
            Just("code".to_owned()),
            Just("data".to_owned()),
            Just("msg".to_owned()),
            Just("status".to_owned()),
            Just("packageFlow".to_owned()),
            Just("useFlow".to_owned()),
            Just("flowUseTime".to_owned()),
            Just("dailyTraffic".to_owned()),
            Just("qrCode".to_owned()),
            Just("iccid".to_owned()),
            Just("orderCode".to_owned()),
            Just("cycle".to_owned()),
            Just("actualStartTime".to_owned()),
            Just("packageUsedRate".to_owned()),
            Just("eid".to_owned()),
            Just("packageCode".to_owned()),
            Just("Response".to_owned()),
            Just("resultCode".to_owned()),
            Just("responseParam".to_owned()),
            Just("rows".to_owned()),
            Just("uniqueId".to_owned()),
            Just("counters".to_owned()),
            Just("unit".to_owned()),
            Just("total".to_owned()),
            Just("amount".to_owned()),
            Just("orderTime".to_owned()),
            Just("currency".to_owned()),
            Just("id".to_owned()),
            Just("orderNo".to_owned()),
            Just("orderPayStatus".to_owned()),
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(keys, inner, 0..8)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        decode_all(&bytes);
    }

    #[test]
    fn arbitrary_json_never_panics(v in json_value()) {
        decode_all(&serde_json::to_vec(&v).unwrap());
    }
}
