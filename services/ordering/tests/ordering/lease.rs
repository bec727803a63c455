//! The row lease directly: one owner at a time, taken over only after expiry, and untouched by
//! the version-guarded writes of API calls.

use chrono::Duration;
use esim_proto::ordering::v1 as pb;
use esim_sandbox::SandboxConfig;

use crate::common::*;

#[tokio::test]
async fn a_lease_has_one_owner_until_it_expires() {
    for h in harnesses(SandboxConfig::default()).await {
        let svc = h.start_api_only().await;
        let mut client = svc.client.clone();
        let id = h.create_mp_order(&svc, "lease-1", "l").await;
        let store = h.store().await;
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
                name: format!("orders/{id}"),
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
