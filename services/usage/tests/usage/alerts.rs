//! Alerts end to end: the sandbox drives MP usage past its thresholds and calls us back;
//! watchers see the alerts in order and resume from their cursor; the poller synthesises
//! alerts for SFT.

use std::time::Duration;

use esim_proto::usage::v1 as pb;
use esim_sandbox::Fault;
use tonic::Streaming;

use crate::common::{Harness, PLAN_1GB_1D, TOKEN, config, databases};

async fn next_alert(stream: &mut Streaming<pb::WatchAlertsResponse>) -> pb::Alert {
    tokio::time::timeout(Duration::from_secs(15), stream.message())
        .await
        .expect("an alert within 15 s")
        .expect("stream ok")
        .expect("stream open")
        .alert
        .expect("alert set")
}

async fn watch(h: &Harness, after: &str) -> Streaming<pb::WatchAlertsResponse> {
    h.client
        .clone()
        .watch_alerts(pb::WatchAlertsRequest {
            after_cursor: after.to_owned(),
            esim: "esims/watch-1".into(),
            kinds: vec![],
        })
        .await
        .unwrap()
        .into_inner()
}

async fn wait_for_alerts(h: &Harness, n: usize) {
    for _ in 0..300 {
        if h.all_alerts().await.len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{}: {n} alerts never arrived", h.label);
}

#[tokio::test]
async fn sandbox_thresholds_reach_watchers_in_order_and_resumed_watchers_miss_none() {
    for db in databases().await {
        let h = Harness::start(db).await;
        let code = h.mp_order().await;
        h.track_mp("watch-1", &code).await;

        let registration = h
            .client
            .clone()
            .register_mp_alarm_callback(pb::RegisterMpAlarmCallbackRequest {
                request_id: "reg-1".into(),
                callback_url: h.callback_base(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            registration.callback_url,
            format!("{}?token=REDACTED", h.callback_base())
        );
        assert_eq!(registration.reseller_code, "SG00000010");
        assert!(registration.register_time.is_some());
        assert!(h.sandbox.mp_callback_url().unwrap().contains(TOKEN));
        // MP sending every callback twice changes nothing.
        h.sandbox.set_fault(
            "mp.alarmCallback",
            Fault {
                duplicate_callbacks: true,
                ..Fault::default()
            },
        );

        let mut first = watch(&h, "").await;
        assert!(h.sandbox.set_mp_usage_mb(&code, 543.0));
        let a53 = next_alert(&mut first).await;
        assert_eq!(a53.threshold_percent, 53, "{}", h.label);
        assert_eq!(a53.source, pb::AlertSource::MpCallback as i32);
        assert_eq!(a53.esim, "esims/watch-1");
        assert!(h.sandbox.set_mp_usage_mb(&code, 861.0));
        let a84 = next_alert(&mut first).await;
        assert_eq!(a84.threshold_percent, 84, "{}", h.label);
        // The first watcher goes away after 84 %; 100 % arrives while nobody watches.
        drop(first);
        assert!(h.sandbox.set_mp_usage_mb(&code, 1024.0));
        wait_for_alerts(&h, 3).await;
        // The sandbox sends each duplicate right after its original; the last may still be in
        // flight when the third alert is stored.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while h.sandbox.mp_callbacks_sent().len() < 6 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let sent = h.sandbox.mp_callbacks_sent();
        assert_eq!(sent.len(), 6, "three thresholds, each sent twice: {sent:?}");

        // Resuming after 53 %: 84 % and 100 %, nothing else.
        let mut resumed = watch(&h, &a53.cursor).await;
        let got: Vec<i32> = vec![
            next_alert(&mut resumed).await.threshold_percent,
            next_alert(&mut resumed).await.threshold_percent,
        ];
        assert_eq!(got, [84, 100], "{}", h.label);
        let more = tokio::time::timeout(Duration::from_millis(600), resumed.message()).await;
        assert!(more.is_err(), "{}: nothing twice: {more:?}", h.label);

        // Resuming after 84 %: only 100 %.
        let mut last = watch(&h, &a84.cursor).await;
        assert_eq!(next_alert(&mut last).await.threshold_percent, 100);

        // From the start: all three, in order, cursors increasing.
        let mut all = watch(&h, "").await;
        let mut cursors = Vec::new();
        let mut percents = Vec::new();
        for _ in 0..3 {
            let a = next_alert(&mut all).await;
            cursors.push(a.cursor.parse::<i64>().unwrap());
            percents.push(a.threshold_percent);
        }
        assert_eq!(percents, [53, 84, 100]);
        assert!(cursors.windows(2).all(|w| w[0] < w[1]), "{cursors:?}");
        assert_eq!(h.all_alerts().await.len(), 3, "{}: deduplicated", h.label);
    }
}

#[tokio::test]
async fn the_poller_synthesises_sft_alerts_once() {
    for db in databases().await {
        let h = Harness::start_with(
            db,
            esim_usage::UsageConfig {
                poll_interval: Duration::from_millis(100),
                snapshot_max_age: Duration::ZERO,
                ..config()
            },
        )
        .await;
        // A one-day add-on: expiring within 24 h from the start.
        let endpoint = h.sft_endpoint(PLAN_1GB_1D).await;
        // 20 of its 24 hours: at least 59 % used (the sandbox uses the data up in 0.6-1.4 days).
        h.sandbox.advance_clock(Duration::from_secs(20 * 3600));
        h.track_sft("poll-1", &endpoint).await;
        let mut watcher = h
            .client
            .clone()
            .watch_alerts(pb::WatchAlertsRequest {
                esim: "esims/poll-1".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let mut seen = Vec::new();
        while !(seen
            .iter()
            .any(|a: &pb::Alert| a.kind == pb::AlertKind::ExpiringSoon as i32)
            && seen.iter().any(|a| a.threshold_percent == 50))
        {
            seen.push(next_alert(&mut watcher).await);
        }
        // More rounds change nothing.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let stored = h.all_alerts().await;
        let keys: Vec<(i32, i32)> = stored.iter().map(|a| (a.kind, a.threshold_percent)).collect();
        let mut unique = keys.clone();
        unique.dedup();
        assert_eq!(keys, unique, "{}: {stored:?}", h.label);
        for a in &stored {
            assert_eq!(a.source, pb::AlertSource::Poller as i32);
            assert_eq!(a.esim, "esims/poll-1");
        }
        let expiring = stored
            .iter()
            .find(|a| a.kind == pb::AlertKind::ExpiringSoon as i32)
            .unwrap();
        let usage = h.get_usage("poll-1").await.unwrap();
        assert_eq!(expiring.expire_time, usage.validity_end_time);
        assert!(
            h.sandbox.call_count("sft.addonDetails") > 2,
            "the poller refreshes"
        );
    }
}

#[tokio::test]
async fn one_replica_at_a_time_holds_an_esim_lease() {
    for db in databases().await {
        let h = Harness::start(db).await;
        let endpoint = h.sft_endpoint(PLAN_1GB_1D).await;
        h.track_sft("lease-1", &endpoint).await;
        let now = chrono::Utc::now();
        let until = now + chrono::Duration::seconds(60);
        let db = &h.core.db;
        assert!(
            esim_usage::store::claim(db, "lease-1", "replica-a", now, until)
                .await
                .unwrap()
        );
        assert!(
            !esim_usage::store::claim(db, "lease-1", "replica-b", now, until)
                .await
                .unwrap()
        );
        // An expired lease can be taken over.
        let later = until + chrono::Duration::seconds(1);
        assert!(
            esim_usage::store::claim(
                db,
                "lease-1",
                "replica-b",
                later,
                later + chrono::Duration::seconds(60)
            )
            .await
            .unwrap()
        );
    }
}
