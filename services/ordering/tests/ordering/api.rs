//! Get, list, watch, events and cancel.

use std::time::Duration;

use esim_proto::ordering::v1 as pb;
use esim_sandbox::SandboxConfig;
use tokio_stream::StreamExt;

use crate::common::*;

#[tokio::test]
async fn watch_streams_every_change_until_active() {
    for h in harnesses(SandboxConfig::default()).await {
        // Provisioning is down for a while: the order waits in PROVISIONING, then completes.
        h.peers
            .fail_create_esim
            .store(3, std::sync::atomic::Ordering::SeqCst);
        let svc = h.start(saga_config()).await;
        let mut client = svc.client.clone();
        let created = client
            .create_order(create("watch-1", &h.mp_product().name, "w"))
            .await
            .unwrap()
            .into_inner();
        let mut stream = client
            .watch_order(pb::WatchOrderRequest {
                name: created.name.clone(),
                after_event: format!("{}/events/0", created.name),
                follow_lifecycle: false,
            })
            .await
            .unwrap()
            .into_inner();
        let mut seen = Vec::new();
        let collect = async {
            while let Some(item) = stream.next().await {
                let item = item.unwrap();
                seen.push(item.event.unwrap());
            }
        };
        tokio::time::timeout(Duration::from_secs(20), collect)
            .await
            .expect("the stream ends at ACTIVE");
        assert_eq!(states_of(&seen), PURCHASED, "{}", h.label);
        assert_eq!(seen[0].name, format!("{}/events/1", created.name));
        assert!(
            h.peers
                .create_esim_calls
                .load(std::sync::atomic::Ordering::SeqCst)
                >= 4
        );
        // Without a cursor: the latest event only, and the stream ends (already settled).
        let latest: Vec<_> = client
            .watch_order(pb::WatchOrderRequest {
                name: created.name.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .collect::<Vec<_>>()
            .await;
        assert_eq!(latest.len(), 1);
        let first = latest[0].as_ref().unwrap();
        assert_eq!(first.event.as_ref().unwrap().sequence, 3);
        assert_eq!(first.order.as_ref().unwrap().state, pb::OrderState::Active as i32);
        let missing = client
            .watch_order(pb::WatchOrderRequest {
                name: "orders/01ARZ3NDEKTSV4RRFFQ69G5FAV".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(missing.code(), tonic::Code::NotFound);
        svc.stop().await;
    }
}

#[tokio::test]
async fn list_filters_and_pages_newest_first() {
    for h in harnesses(SandboxConfig::default()).await {
        // The orders stay PENDING.
        let svc = h.start_api_only().await;
        let mut client = svc.client.clone();
        let product = h.mp_product().name;
        let mut names = Vec::new();
        for i in 0..7 {
            let customer = if i % 2 == 0 { "even" } else { "odd" };
            let o = client
                .create_order(create(&format!("list-{i}"), &product, customer))
                .await
                .unwrap()
                .into_inner();
            names.push(o.name);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let mut got = Vec::new();
        let mut token = String::new();
        loop {
            let page = client
                .list_orders(pb::ListOrdersRequest {
                    page_size: 3,
                    page_token: token.clone(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            assert!(page.orders.len() <= 3);
            got.extend(page.orders.into_iter().map(|o| o.name));
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        let mut newest_first = names.clone();
        newest_first.reverse();
        assert_eq!(got, newest_first, "{}", h.label);
        let even = client
            .list_orders(pb::ListOrdersRequest {
                customer_reference: "even".into(),
                states: vec![pb::OrderState::Pending as i32, pb::OrderState::Cancelled as i32],
                provider: esim_proto::r#type::v1::Provider::Mp as i32,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(even.orders.len(), 4);
        let none = client
            .list_orders(pb::ListOrdersRequest {
                states: vec![pb::OrderState::Active as i32],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(none.orders.is_empty());
        let bad = client
            .list_orders(pb::ListOrdersRequest {
                page_token: "garbage".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(violated_field(&bad), "page_token");

        // Cancel before placing; twice is fine; the history says why.
        let cancelled = client
            .cancel_order(pb::CancelOrderRequest {
                name: names[0].clone(),
                reason: "duplicate basket".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(cancelled.state, pb::OrderState::Cancelled as i32);
        assert!(cancelled.end_time.is_some());
        client
            .cancel_order(pb::CancelOrderRequest {
                name: names[0].clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        let events = client
            .list_order_events(pb::ListOrderEventsRequest {
                parent: names[0].clone(),
                page_size: 1,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(events.events.len(), 1);
        let rest = client
            .list_order_events(pb::ListOrderEventsRequest {
                parent: names[0].clone(),
                page_size: 10,
                page_token: events.next_page_token,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(rest.events.len(), 1);
        assert!(rest.events[0].reason.contains("duplicate basket"));
        svc.stop().await;
    }
}

#[tokio::test]
async fn an_active_order_cannot_be_cancelled() {
    for h in harnesses(SandboxConfig::default()).await {
        let svc = h.start(saga_config()).await;
        let mut client = svc.client.clone();
        let created = client
            .create_order(create("cancel-late", &h.mp_product().name, "x"))
            .await
            .unwrap()
            .into_inner();
        wait_state(&mut client, &created.name, pb::OrderState::Active, 20).await;
        let err = client
            .cancel_order(pb::CancelOrderRequest {
                name: created.name.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
        let err = client
            .get_order(pb::GetOrderRequest {
                name: "orders/nope".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(violated_field(&err), "name");
        svc.stop().await;
    }
}
