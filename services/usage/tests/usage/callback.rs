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

#[tokio::test]
async fn concurrent_callbacks_are_each_stored_once_with_gapless_cursors() {
    for db in databases().await {
        let h = Harness::start(db).await;
        let code = h.mp_order().await;
        h.track_mp("cb-burst", &code).await;

        // Every threshold twice at once: the writer batches them, repeats in one batch included.
        let bodies: Vec<String> = (1..=40)
            .chain(1..=40)
            .map(|p| alarm(&code, &format!("{p}%")))
            .collect();
        let statuses =
            futures::future::join_all(bodies.into_iter().map(|b| h.post_callback(Some(TOKEN), b))).await;
        assert!(
            statuses.iter().all(|s| *s == StatusCode::OK),
            "{}: {statuses:?}",
            h.label
        );

        let alerts = h.all_alerts().await;
        let mut percents: Vec<i32> = alerts.iter().map(|a| a.threshold_percent).collect();
        percents.sort_unstable();
        assert_eq!(percents, (1..=40).collect::<Vec<_>>(), "{}", h.label);
        // Repeats draw no cursor values, so watchers never wait on a gap they caused.
        let cursors: Vec<i64> = alerts.iter().map(|a| a.cursor.parse().unwrap()).collect();
        assert!(
            cursors.windows(2).all(|w| w[1] == w[0] + 1),
            "{}: {cursors:?}",
            h.label
        );
    }
}

#[tokio::test]
async fn a_batch_stores_new_alerts_and_reports_repeats() {
    for db in databases().await {
        let h = Harness::start(db).await;
        let alert = |key: &str| esim_usage::store::NewAlert {
            dedup_key: key.to_owned(),
            esim: String::new(),
            order_name: String::new(),
            provider: "MP".into(),
            kind: pb::AlertKind::UsageThreshold as i32,
            source: pb::AlertSource::MpCallback as i32,
            threshold_percent: 50,
            expire_time: None,
            mp_order_code: "ORDER_X".into(),
            mp_package_code: String::new(),
            eid: String::new(),
        };
        let now = chrono::Utc::now();
        let first = esim_usage::store::insert_alerts(&h.core.db, &[alert("a")], now)
            .await
            .unwrap();
        let Some(a) = first[0] else {
            panic!("{}: first insert stored nothing", h.label)
        };
        let ids = esim_usage::store::insert_alerts(
            &h.core.db,
            &[alert("b"), alert("a"), alert("b"), alert("c")],
            now,
        )
        .await
        .unwrap();
        assert_eq!((ids[1], ids[2]), (None, None), "{}: {ids:?}", h.label);
        let mut new = [ids[0], ids[3]];
        new.sort_unstable();
        assert_eq!(new, [Some(a + 1), Some(a + 2)], "{}: {ids:?}", h.label);
        assert_eq!(h.all_alerts().await.len(), 3, "{}", h.label);
    }
}
