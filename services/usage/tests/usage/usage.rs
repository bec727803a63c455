//! Usage and daily history from the sandbox, snapshot freshness, stale reads, bad input.

use std::time::Duration;

use chrono::{Datelike, NaiveTime};
use esim_proto::google::r#type::Date;
use esim_proto::r#type::v1::Provider;
use esim_proto::usage::v1 as pb;
use esim_sandbox::Fault;

use crate::common::{Harness, MB, PLAN_1GB_7D, assert_invalid, config, databases};

fn date(d: chrono::NaiveDate) -> Option<Date> {
    Some(Date {
        year: d.year(),
        month: d.month() as i32,
        day: d.day() as i32,
    })
}

#[tokio::test]
async fn mp_usage_and_daily_history_in_bytes_with_dates() {
    for db in databases().await {
        let h = Harness::start(db).await;
        let code = h.mp_order().await;
        let tracked = h.track_mp("mp-1", &code).await;
        assert_eq!(tracked.name, "esims/mp-1/usage");
        assert!(
            tracked.snapshot_time.is_none(),
            "no snapshot before the first read"
        );

        assert!(h.sandbox.set_mp_usage_mb(&code, 300.0));
        let today = h.sandbox.now().date_naive();
        let usage = h.get_usage("mp-1").await.unwrap();
        assert_eq!(usage.provider, Provider::Mp as i32, "{}", h.label);
        assert_eq!(usage.order, "orders/o-mp-1");
        assert_eq!(
            usage.total_bytes,
            1024 * MB,
            "1 GB = 1024 MB of 1024 x 1024 bytes"
        );
        assert!(
            (300 * MB..301 * MB).contains(&usage.used_bytes),
            "{} used {}",
            h.label,
            usage.used_bytes
        );
        assert_eq!(usage.remaining_bytes, usage.total_bytes - usage.used_bytes);
        assert!(!usage.stale && usage.snapshot_time.is_some());
        // 7 days of validity from today, ending 23:59:59 of the last day.
        let end = usage.validity_end_time.expect("planned end");
        let end = chrono::DateTime::from_timestamp(end.seconds, 0).unwrap();
        assert_eq!(end.date_naive(), today + chrono::Days::new(6));
        assert_eq!(end.time(), NaiveTime::from_hms_opt(23, 59, 59).unwrap());
        let start = usage.validity_start_time.expect("actual start");
        assert_eq!(
            chrono::DateTime::from_timestamp(start.seconds, 0)
                .unwrap()
                .date_naive(),
            today
        );

        let mut client = h.client.clone();
        let tomorrow = today + chrono::Days::new(1);
        let request = |token: String| pb::ListDailyUsageRequest {
            parent: "esims/mp-1".into(),
            start_date: date(today - chrono::Days::new(1)),
            end_date: date(tomorrow),
            page_size: 1,
            page_token: token,
        };
        let only_today = client
            .list_daily_usage(request(String::new()))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(only_today.daily_usage.len(), 1, "{}", h.label);
        assert_eq!(only_today.daily_usage[0].date, date(today));
        assert!(
            (300 * MB..301 * MB).contains(&only_today.daily_usage[0].used_bytes),
            "{}: {:?}",
            h.label,
            only_today.daily_usage
        );
        assert!(only_today.next_page_token.is_empty());

        // A second day of usage, then the history over three days, one day per page.
        h.sandbox.advance_clock(Duration::from_secs(86_400));
        let first = client
            .list_daily_usage(request(String::new()))
            .await
            .unwrap()
            .into_inner();
        assert!(!first.stale);
        assert_eq!(first.daily_usage.len(), 1, "{}", h.label);
        assert_eq!(first.daily_usage[0].date, date(today));
        assert!(first.daily_usage[0].used_bytes >= 300 * MB);
        assert!(!first.next_page_token.is_empty());
        let second = client
            .list_daily_usage(request(first.next_page_token.clone()))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(second.daily_usage.len(), 1);
        assert_eq!(second.daily_usage[0].date, date(tomorrow));
        assert!(second.daily_usage[0].used_bytes > 0);
        assert!(second.next_page_token.is_empty());
        assert_eq!(
            h.sandbox.call_count("mp.queryHistoryDailyTraffic"),
            2,
            "later pages read the store"
        );

        // An outage: the stored history, marked stale.
        h.sandbox
            .set_fault("mp.queryHistoryDailyTraffic", Fault::error_500());
        let mut all = request(String::new());
        all.page_size = 0;
        let stale = client.list_daily_usage(all).await.unwrap().into_inner();
        assert!(stale.stale);
        assert_eq!(stale.daily_usage.len(), 2);
    }
}

#[tokio::test]
async fn sft_usage_from_addon_details() {
    for db in databases().await {
        let h = Harness::start(db).await;
        let endpoint = h.sft_endpoint(PLAN_1GB_7D).await;
        h.track_sft("sft-1", &endpoint).await;
        h.sandbox.advance_clock(Duration::from_secs(86_400));
        let usage = h.get_usage("sft-1").await.unwrap();
        assert_eq!(usage.provider, Provider::Sft as i32);
        assert_eq!(usage.total_bytes, 1024 * MB, "{}", h.label);
        assert!(
            usage.used_bytes > 0 && usage.used_bytes < usage.total_bytes,
            "{usage:?}"
        );
        assert_eq!(usage.remaining_bytes, usage.total_bytes - usage.used_bytes);
        let start = usage.validity_start_time.unwrap();
        let end = usage.validity_end_time.unwrap();
        assert_eq!(end.seconds - start.seconds, 7 * 86_400);
        assert_eq!(h.sandbox.call_count("sft.addonDetails"), 1);

        // SFT has no daily history.
        let today = h.sandbox.now().date_naive();
        let daily = h
            .client
            .clone()
            .list_daily_usage(pb::ListDailyUsageRequest {
                parent: "esims/sft-1".into(),
                start_date: date(today),
                end_date: date(today),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(daily.daily_usage.is_empty() && !daily.stale);
    }
}

#[tokio::test]
async fn fresh_snapshots_serve_reads_and_outages_serve_stale_ones() {
    for db in databases().await {
        let h = Harness::start_with(
            db,
            esim_usage::UsageConfig {
                snapshot_max_age: Duration::from_secs(2),
                ..config()
            },
        )
        .await;
        let code = h.mp_order().await;
        h.track_mp("fresh-1", &code).await;
        h.sandbox.set_mp_usage_mb(&code, 100.0);

        let first = h.get_usage("fresh-1").await.unwrap();
        let second = h.get_usage("fresh-1").await.unwrap();
        assert_eq!(
            h.sandbox.call_count("mp.queryTraffic"),
            1,
            "{}: two reads, one call",
            h.label
        );
        assert_eq!(first.snapshot_time, second.snapshot_time);

        // The window passes; concurrent reads coalesce into one refresh.
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let reads = (0..8).map(|_| h.get_usage("fresh-1"));
        for usage in futures::future::join_all(reads).await {
            assert!(!usage.unwrap().stale);
        }
        assert_eq!(
            h.sandbox.call_count("mp.queryTraffic"),
            2,
            "{}: one refresh for 8 reads",
            h.label
        );

        // Upstream down: the last snapshot, marked stale, not an error.
        tokio::time::sleep(Duration::from_millis(2100)).await;
        h.sandbox.set_fault("mp.queryTraffic", Fault::error_500());
        let before = h.get_usage("fresh-1").await;
        let stale = before.unwrap();
        assert!(stale.stale, "{}", h.label);
        assert!(
            stale.stale_reason.contains("queryTraffic"),
            "{}",
            stale.stale_reason
        );
        assert!(!stale.stale_reason.contains("secret"));
        assert!((100 * MB..101 * MB).contains(&stale.used_bytes));
        assert!(stale.snapshot_time.is_some());

        // Nothing stored and the upstream down: UNAVAILABLE.
        let other = h.mp_order().await;
        h.track_mp("fresh-2", &other).await;
        let status = h.get_usage("fresh-2").await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");

        h.sandbox.clear_fault("mp.queryTraffic");
        assert!(!h.get_usage("fresh-1").await.unwrap().stale);
    }
}

#[tokio::test]
async fn bad_input_names_the_field_and_writes_nothing() {
    for db in databases().await {
        let h = Harness::start(db).await;
        let mut client = h.client.clone();
        let valid = pb::StartUsageTrackingRequest {
            esim: "esims/bad-1".into(),
            order: "orders/o1".into(),
            provider: Provider::Mp as i32,
            mp_order_codes: vec!["ORDER_1".into()],
            ..Default::default()
        };
        let cases: Vec<(pb::StartUsageTrackingRequest, &str)> = vec![
            (
                pb::StartUsageTrackingRequest {
                    esim: "sims/x".into(),
                    ..valid.clone()
                },
                "esim",
            ),
            (
                pb::StartUsageTrackingRequest {
                    order: String::new(),
                    ..valid.clone()
                },
                "order",
            ),
            (
                pb::StartUsageTrackingRequest {
                    provider: 0,
                    ..valid.clone()
                },
                "provider",
            ),
            (
                pb::StartUsageTrackingRequest {
                    mp_order_codes: vec![],
                    ..valid.clone()
                },
                "mp_order_codes",
            ),
            (
                pb::StartUsageTrackingRequest {
                    mp_order_codes: vec!["A B".into()],
                    ..valid.clone()
                },
                "mp_order_codes[0]",
            ),
            (
                pb::StartUsageTrackingRequest {
                    iccid: "123".into(),
                    ..valid.clone()
                },
                "iccid",
            ),
            (
                pb::StartUsageTrackingRequest {
                    plan_data_bytes: -1,
                    ..valid.clone()
                },
                "plan_data_bytes",
            ),
            (
                pb::StartUsageTrackingRequest {
                    request_id: "no spaces".into(),
                    ..valid.clone()
                },
                "request_id",
            ),
            (
                pb::StartUsageTrackingRequest {
                    provider: Provider::Sft as i32,
                    ..valid.clone()
                },
                "sft_endpoint_id",
            ),
        ];
        for (request, field) in cases {
            assert_invalid(client.start_usage_tracking(request).await, field);
        }
        let status = h.get_usage("bad-1").await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound, "nothing was written");
        assert_invalid(
            client
                .get_usage(pb::GetUsageRequest {
                    name: "esims/bad-1".into(),
                })
                .await,
            "name",
        );

        client.start_usage_tracking(valid.clone()).await.unwrap();
        // Idempotent; a different provider later is refused.
        client.start_usage_tracking(valid.clone()).await.unwrap();
        assert_invalid(
            client
                .start_usage_tracking(pb::StartUsageTrackingRequest {
                    provider: Provider::Sft as i32,
                    sft_endpoint_id: "1".into(),
                    ..valid.clone()
                })
                .await,
            "provider",
        );
        // A code another eSIM holds refuses the whole request: neither the eSIM nor its other
        // code is kept.
        let taken = client
            .start_usage_tracking(pb::StartUsageTrackingRequest {
                esim: "esims/bad-2".into(),
                mp_order_codes: vec!["ORDER_2".into(), "ORDER_1".into()],
                ..valid.clone()
            })
            .await
            .unwrap_err();
        assert_eq!(
            taken.code(),
            tonic::Code::FailedPrecondition,
            "{}: {taken:?}",
            h.label
        );
        assert_eq!(
            h.get_usage("bad-2").await.unwrap_err().code(),
            tonic::Code::NotFound
        );
        client
            .start_usage_tracking(pb::StartUsageTrackingRequest {
                esim: "esims/bad-3".into(),
                mp_order_codes: vec!["ORDER_2".into()],
                ..valid.clone()
            })
            .await
            .expect("ORDER_2 was left free");

        let day = |y, m, d| {
            Some(Date {
                year: y,
                month: m,
                day: d,
            })
        };
        let daily = pb::ListDailyUsageRequest {
            parent: "esims/bad-1".into(),
            start_date: day(2026, 3, 10),
            end_date: day(2026, 3, 12),
            ..Default::default()
        };
        let cases: Vec<(pb::ListDailyUsageRequest, &str)> = vec![
            (
                pb::ListDailyUsageRequest {
                    parent: "x".into(),
                    ..daily.clone()
                },
                "parent",
            ),
            (
                pb::ListDailyUsageRequest {
                    start_date: None,
                    ..daily.clone()
                },
                "start_date",
            ),
            (
                pb::ListDailyUsageRequest {
                    start_date: day(2026, 2, 30),
                    ..daily.clone()
                },
                "start_date",
            ),
            (
                pb::ListDailyUsageRequest {
                    end_date: day(2026, 3, 9),
                    ..daily.clone()
                },
                "end_date",
            ),
            (
                pb::ListDailyUsageRequest {
                    end_date: day(2027, 3, 12),
                    ..daily.clone()
                },
                "end_date",
            ),
            (
                pb::ListDailyUsageRequest {
                    page_size: 367,
                    ..daily.clone()
                },
                "page_size",
            ),
            (
                pb::ListDailyUsageRequest {
                    page_token: "2026-04-01".into(),
                    ..daily.clone()
                },
                "page_token",
            ),
        ];
        for (request, field) in cases {
            assert_invalid(client.list_daily_usage(request).await, field);
        }
        assert_invalid(
            client
                .list_alerts(pb::ListAlertsRequest {
                    page_size: 1001,
                    ..Default::default()
                })
                .await,
            "page_size",
        );
        assert_invalid(
            client
                .list_alerts(pb::ListAlertsRequest {
                    page_token: "abc".into(),
                    ..Default::default()
                })
                .await,
            "page_token",
        );
        assert_invalid(
            client
                .watch_alerts(pb::WatchAlertsRequest {
                    after_cursor: "x1".into(),
                    ..Default::default()
                })
                .await,
            "after_cursor",
        );
        assert_invalid(
            client
                .register_mp_alarm_callback(pb::RegisterMpAlarmCallbackRequest {
                    callback_url: "ftp://example.com/cb".into(),
                    ..Default::default()
                })
                .await,
            "callback_url",
        );
        assert_eq!(h.sandbox.call_count("mp.saveAlarmCallbackInterface"), 0);
    }
}
