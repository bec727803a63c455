//! The store's reads directly.

use esim_ordering::store::Store;
use esim_proto::ordering::v1 as pb;
use esim_sandbox::SandboxConfig;

use crate::common::*;

#[tokio::test]
async fn an_order_is_read_with_its_events_in_one_statement() {
    for h in harnesses(SandboxConfig::default()).await {
        let svc = h.start_api_only().await;
        let mut client = svc.client.clone();
        let created = client
            .create_order(create("read-1", &h.mp_product().name, "r"))
            .await
            .unwrap()
            .into_inner();
        client
            .cancel_order(pb::CancelOrderRequest {
                name: created.name.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        let id = created.name.trim_start_matches("orders/").to_owned();
        let store = Store::new(esim_runtime::db::connect(&h.database.url).await.unwrap());
        let sequences = |events: &[esim_ordering::entity::order_event::Model]| {
            events.iter().map(|e| e.sequence).collect::<Vec<_>>()
        };

        let (row, events) = store.order_with_events(&id, None, 10).await.unwrap().unwrap();
        assert_eq!(row.id, id, "{}", h.label);
        assert_eq!(row.state, "CANCELLED", "{}", h.label);
        assert_eq!(sequences(&events), [2], "the latest only; {}", h.label);
        assert_eq!(events[0].state, "CANCELLED", "{}", h.label);

        let (_, events) = store.order_with_events(&id, Some(0), 10).await.unwrap().unwrap();
        assert_eq!(sequences(&events), [1, 2], "{}", h.label);
        let (_, events) = store.order_with_events(&id, Some(0), 1).await.unwrap().unwrap();
        assert_eq!(sequences(&events), [1], "{}", h.label);
        // None left to send: the order still comes back.
        let (row, events) = store.order_with_events(&id, Some(2), 10).await.unwrap().unwrap();
        assert_eq!((row.id.as_str(), events.len()), (id.as_str(), 0), "{}", h.label);

        assert!(
            store
                .order_with_events("no-such-order", None, 10)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .order_with_events("no-such-order", Some(0), 10)
                .await
                .unwrap()
                .is_none()
        );
        svc.stop().await;
    }
}
