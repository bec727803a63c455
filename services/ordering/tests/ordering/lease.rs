//! The row lease directly: one owner at a time, taken over only after expiry, and untouched by
//! the version-guarded writes of API calls.

use chrono::Duration;
use esim_ordering::store::Store;
use esim_proto::ordering::v1 as pb;
use esim_sandbox::SandboxConfig;

use crate::common::*;

#[tokio::test]
async fn a_lease_has_one_owner_until_it_expires() {
    for h in harnesses(SandboxConfig::default()).await {
        let svc = h.start_api_only().await;
        let mut client = svc.client.clone();
        let created = client
            .create_order(create("lease-1", &h.mp_product().name, "l"))
            .await
            .unwrap()
            .into_inner();
        let id = created.name.trim_start_matches("orders/").to_owned();
        let db = esim_runtime::db::connect(&h.database.url).await.unwrap();
        let store = Store::new(db);
        assert!(
            store.claim(&id, "a", Duration::milliseconds(800)).await.unwrap(),
            "{}",
            h.label
        );
        assert!(
            !store.claim(&id, "b", Duration::seconds(5)).await.unwrap(),
            "{}",
            h.label
        );
        assert!(store.claim(&id, "a", Duration::milliseconds(800)).await.unwrap());
        // An API write (cancel) while "a" holds the lease leaves the lease alone.
        client
            .cancel_order(pb::CancelOrderRequest {
                name: created.name.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        let row = store.order(&id).await.unwrap().unwrap();
        assert_eq!(row.lease_owner.as_deref(), Some("a"), "{}", h.label);
        assert!(!store.claim(&id, "b", Duration::seconds(5)).await.unwrap());
        tokio::time::sleep(std::time::Duration::from_millis(900)).await;
        assert!(
            store.claim(&id, "b", Duration::seconds(5)).await.unwrap(),
            "{}",
            h.label
        );
        store.release(&id, "a").await.unwrap();
        assert_eq!(
            store.order(&id).await.unwrap().unwrap().lease_owner.as_deref(),
            Some("b")
        );
        store.release(&id, "b").await.unwrap();
        assert!(store.order(&id).await.unwrap().unwrap().lease_owner.is_none());
        svc.stop().await;
    }
}
