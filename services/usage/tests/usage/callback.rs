//! The MP alarm callback endpoint: authentication, validation, deduplication.

use esim_proto::r#type::v1::Provider;
use esim_proto::usage::v1 as pb;
use reqwest::StatusCode;
use serde_json::json;

use crate::common::{Harness, TOKEN, databases};

fn alarm(order_code: &str, rate: &str) -> String {
    json!({
        "eid": "89049032123451234512345678901235",
        "packageCode": "LP14230831004073",
        "orderCode": order_code,
        "packageUsedRate": rate,
        "requestId": "202309251611-1683713932415610880",
    })
    .to_string()
}

#[tokio::test]
async fn unauthenticated_or_malformed_callbacks_store_nothing_and_repeats_store_one_alert() {
    for db in databases().await {
        let h = Harness::start(db).await;
        let code = h.mp_order().await;
        h.track_mp("cb-1", &code).await;

        assert_eq!(
            h.post_callback(None, alarm(&code, "53%")).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            h.post_callback(Some("wrong-token"), alarm(&code, "53%")).await,
            StatusCode::UNAUTHORIZED
        );
        let almost = &TOKEN[..TOKEN.len() - 1];
        assert_eq!(
            h.post_callback(Some(almost), alarm(&code, "53%")).await,
            StatusCode::UNAUTHORIZED
        );
        for body in [
            "{not json".to_owned(),
            json!({"orderCode": code}).to_string(),
            alarm(&code, "lots"),
            alarm("", "53%"),
            "[]".to_owned(),
        ] {
            assert_eq!(
                h.post_callback(Some(TOKEN), body.clone()).await,
                StatusCode::BAD_REQUEST,
                "{}: {body}",
                h.label
            );
        }
        let huge = alarm(&code, &"9".repeat(20_000));
        assert_eq!(
            h.post_callback(Some(TOKEN), huge).await,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert!(h.all_alerts().await.is_empty(), "{}: nothing stored", h.label);

        // The same callback twice: one alert.
        assert_eq!(
            h.post_callback(Some(TOKEN), alarm(&code, "53%")).await,
            StatusCode::OK
        );
        assert_eq!(
            h.post_callback(Some(TOKEN), alarm(&code, "53%")).await,
            StatusCode::OK
        );
        let alerts = h.all_alerts().await;
        assert_eq!(alerts.len(), 1, "{}: {alerts:?}", h.label);
        let a = &alerts[0];
        assert_eq!(a.esim, "esims/cb-1");
        assert_eq!(a.order, "orders/o-cb-1");
        assert_eq!(a.provider, Provider::Mp as i32);
        assert_eq!(a.kind, pb::AlertKind::UsageThreshold as i32);
        assert_eq!(a.source, pb::AlertSource::MpCallback as i32);
        assert_eq!(a.threshold_percent, 53);
        assert_eq!(a.mp_order_code, code);
        assert_eq!(a.mp_package_code, "LP14230831004073");
        assert_eq!(a.eid, "89049032123451234512345678901235");
        assert_eq!(a.name, format!("alerts/{}", a.cursor));

        // Another threshold is another alert; an unknown order is kept, unmatched.
        assert_eq!(
            h.post_callback(Some(TOKEN), alarm(&code, "84%")).await,
            StatusCode::OK
        );
        assert_eq!(
            h.post_callback(Some(TOKEN), alarm("ORDER_UNKNOWN", "100%")).await,
            StatusCode::OK
        );
        let alerts = h.all_alerts().await;
        assert_eq!(alerts.len(), 3);
        assert!(alerts[0].cursor.parse::<i64>().unwrap() < alerts[1].cursor.parse::<i64>().unwrap());
        assert_eq!(alerts[2].esim, "");
        assert_eq!(alerts[2].threshold_percent, 100);

        // Paging and filters.
        let mut client = h.client.clone();
        let page = client
            .list_alerts(pb::ListAlertsRequest {
                page_size: 2,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.alerts.len(), 2);
        let rest = client
            .list_alerts(pb::ListAlertsRequest {
                page_size: 2,
                page_token: page.next_page_token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(rest.alerts.len(), 1);
        assert!(rest.next_page_token.is_empty());
        let mine = client
            .list_alerts(pb::ListAlertsRequest {
                esim: "esims/cb-1".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(mine.alerts.len(), 2);
        let expiring = client
            .list_alerts(pb::ListAlertsRequest {
                kinds: vec![pb::AlertKind::ExpiringSoon as i32],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(expiring.alerts.is_empty());
    }
}
