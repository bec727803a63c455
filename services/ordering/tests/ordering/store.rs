//! The store's reads directly.

use chrono::SubsecRound;
use esim_ordering::entity::order::Model;
use esim_proto::ordering::v1 as pb;
use esim_sandbox::SandboxConfig;

use crate::common::*;

#[tokio::test]
async fn an_order_is_read_with_its_events_in_one_statement() {
    for h in harnesses(SandboxConfig::default()).await {
        let svc = h.start_api_only().await;
        let id = h.create_mp_order(&svc, "read-1", "r").await;
        svc.client
            .clone()
            .cancel_order(pb::CancelOrderRequest {
                name: format!("orders/{id}"),
                ..Default::default()
            })
            .await
            .unwrap();
        let store = h.store().await;
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

/// A write sends only the columns it changes; the row read back is the row written, and a
/// write from a stale copy changes nothing.
#[tokio::test]
async fn a_write_stores_the_whole_new_row_and_a_stale_one_nothing() {
    for h in harnesses(SandboxConfig::default()).await {
        let svc = h.start_api_only().await;
        let id = h.create_mp_order(&svc, "write-1", "w").await;
        let store = h.store().await;
        let old = store.order(&id).await.unwrap().unwrap();

        let mut new = old.clone();
        new.state_reason = "a reason of its own".into();
        new.last_error = Some("an error".into());
        new.customer_email = "new@example.com".into();
        // One column from a value to NULL, one from NULL to a value.
        assert!(old.mp_product_id.is_some() && old.fms_package_code.is_none());
        new.mp_product_id = None;
        new.fms_package_code = Some("PKG".into());
        new.attempts = old.attempts + 3;
        let written = store.write_as(&old, new, None).await.unwrap().unwrap();
        assert_eq!(written.version, old.version + 1, "{}", h.label);
        let read = store.order(&id).await.unwrap().unwrap();
        // PostgreSQL keeps microseconds.
        let to_micros = |mut row: Model| {
            row.update_time = row.update_time.trunc_subsecs(6);
            row
        };
        assert_eq!(to_micros(read.clone()), to_micros(written), "{}", h.label);
        assert_eq!(read.customer_email, "new@example.com", "{}", h.label);
        assert_eq!(read.customer_reference, old.customer_reference, "{}", h.label);

        let mut stale = old.clone();
        stale.state_reason = "from a stale copy".into();
        assert!(
            store.write_as(&old, stale, None).await.unwrap().is_none(),
            "{}",
            h.label
        );
        assert_eq!(store.order(&id).await.unwrap().unwrap(), read, "{}", h.label);
        svc.stop().await;
    }
}

/// A write through a state appends two events in turn, as two writes would, and publishes both
/// to this process's watchers; a stale one appends neither.
#[tokio::test]
async fn a_write_via_a_state_appends_both_events_and_a_stale_one_neither() {
    for h in harnesses(SandboxConfig::default()).await {
        let svc = h.start_api_only().await;
        let id = h.create_mp_order(&svc, "via-1", "v").await;
        let store = h.store().await;
        let mut watch = store.watch(&id);
        let old = store.order(&id).await.unwrap().unwrap();
        assert_eq!(old.state, "PENDING");

        let mut active = old.clone();
        active.state = "ACTIVE".into();
        active.state_reason = "ready".into();
        let via = (esim_ordering::model::State::Provisioning, "on the way");
        let written = store
            .write_via(&old, via, active.clone(), None)
            .await
            .unwrap()
            .unwrap();
        assert!(
            store.write_via(&old, via, active, None).await.unwrap().is_none(),
            "{}",
            h.label
        );
        let (_, events) = store.order_with_events(&id, Some(0), 10).await.unwrap().unwrap();
        let trail = events
            .iter()
            .map(|e| {
                (
                    e.sequence,
                    e.previous_state.as_str(),
                    e.state.as_str(),
                    e.reason.as_str(),
                )
            })
            .collect::<Vec<_>>();
        assert_eq!(
            trail,
            [
                (1, "", "PENDING", trail[0].3),
                (2, "PENDING", "PROVISIONING", "on the way"),
                (3, "PROVISIONING", "ACTIVE", "ready"),
            ],
            "{}",
            h.label
        );
        for (sequence, state) in [(2, "PROVISIONING"), (3, "ACTIVE")] {
            let published = watch.next().await.unwrap();
            assert_eq!(
                (published.event.sequence, published.event.state.as_str()),
                (sequence, state),
                "{}",
                h.label
            );
            assert_eq!(published.row.version, written.version, "{}", h.label);
        }

        // The next event follows on.
        let mut finished = written.clone();
        finished.state = "FINISHED".into();
        store.write_as(&written, finished, None).await.unwrap().unwrap();
        let (_, events) = store.order_with_events(&id, Some(3), 10).await.unwrap().unwrap();
        assert_eq!(
            events.iter().map(|e| e.sequence).collect::<Vec<_>>(),
            [4],
            "{}",
            h.label
        );
        svc.stop().await;
    }
}

/// A step due now is driven on; a deferred one or a finished saga parks the order. A write's
/// time cut to microseconds (as PostgreSQL stores it) or a clock a little behind must not turn
/// a step due now into a parked one.
#[tokio::test]
async fn a_step_due_now_never_reads_as_deferred() {
    for h in harnesses(SandboxConfig::default()).await {
        let svc = h.start_api_only().await;
        let id = h.create_mp_order(&svc, "parks-1", "p").await;
        let mut row = h.store().await.order(&id).await.unwrap().unwrap();
        let stamped = chrono::Utc::now();
        row.next_attempt_at = stamped;
        let with_update_time = |row: &Model, t| Model {
            update_time: t,
            ..row.clone()
        };
        let parks = |row: &Model| esim_ordering::store::Store::parks(row);

        assert!(!parks(&with_update_time(
            &row,
            stamped + chrono::TimeDelta::microseconds(50)
        )));
        assert!(!parks(&with_update_time(&row, stamped.trunc_subsecs(6))));
        assert!(!parks(&with_update_time(
            &row,
            stamped - chrono::TimeDelta::microseconds(200)
        )));
        row.next_attempt_at = stamped + chrono::TimeDelta::milliseconds(100);
        assert!(parks(&with_update_time(&row, stamped)), "a retry later parks");
        row.next_attempt_at = stamped;
        row.saga_step = "DONE".into();
        assert!(parks(&with_update_time(&row, stamped)), "a finished saga parks");
        svc.stop().await;
    }
}
