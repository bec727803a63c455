//! MP: the happy path, idempotency under concurrency, and unknown outcomes.

use std::time::Duration;

use esim_proto::ordering::v1 as pb;
use esim_sandbox::{Fault, SandboxConfig};

use crate::common::*;

#[tokio::test]
async fn mp_order_goes_to_active_with_the_esim_recorded() {
    for h in harnesses(SandboxConfig::default()).await {
        let svc = h.start(saga_config()).await;
        let mut client = svc.client.clone();
        let product = h.mp_product();
        let mut req = create("mp-happy-1", &product.name, "cust-1");
        req.order.as_mut().unwrap().activate_immediately = true;
        let created = client.create_order(req).await.unwrap().into_inner();
        assert!(created.name.starts_with("orders/"), "{}", h.label);
        assert_eq!(created.request_id, "mp-happy-1");
        let order = wait_state(&mut client, &created.name, pb::OrderState::Active, 20).await;
        let refs = order.upstream_references.clone().unwrap();
        assert!(!refs.mp_order_code.is_empty(), "{}", h.label);
        assert!(order.iccid.starts_with("89"), "{}", h.label);
        // The eSIM is named by ordering, so usage tracks it under the name provisioning gave.
        assert_eq!(
            order.esim,
            format!("esims/{}", created.name["orders/".len()..].to_lowercase()),
            "{}",
            h.label
        );
        let tracked = h
            .peers
            .tracked
            .lock()
            .unwrap()
            .values()
            .next()
            .unwrap()
            .esim
            .clone();
        assert_eq!(tracked, order.esim, "{}", h.label);
        assert!(order.activate_time.is_some());
        let snapshot = order.product_snapshot.clone().unwrap();
        assert_eq!(snapshot.product, product.name);
        assert_eq!(
            order.total_retail_price,
            product.retail_price.map(|mut m| {
                let c = order.cycle_count as i64;
                let nanos = i64::from(m.nanos) * c;
                m.units = m.units * c + nanos / 1_000_000_000;
                m.nanos = (nanos % 1_000_000_000) as i32;
                m
            })
        );
        // Provisioning got the activation code MP issued; usage tracks the MP order code.
        let esims = h.peers.esims.lock().unwrap().clone();
        let recorded = esims.values().next().unwrap();
        assert!(recorded.activation_code.starts_with("LPA:1$"), "{}", h.label);
        assert_eq!(
            recorded.esim.as_ref().unwrap().upstream_order_code,
            refs.mp_order_code
        );
        let tracked = h.peers.tracked.lock().unwrap().clone();
        assert_eq!(
            tracked.values().next().unwrap().mp_order_codes,
            vec![refs.mp_order_code.clone()]
        );
        assert_eq!(h.sandbox.call_count("mp.activationCode"), 1, "{}", h.label);
        assert_eq!(
            h.sandbox.mp_order_status(&refs.mp_order_code).as_deref(),
            Some("1")
        );
        let events = order_events(&mut client, &order.name).await;
        assert_eq!(states_of(&events), PURCHASED, "{}", h.label);
        assert_eq!(events[2].previous_state, pb::OrderState::Provisioning as i32);
        svc.stop().await;
    }
}

/// Tracking starts right after the eSIM is recorded, in the same step; when usage cannot be
/// reached the recorded eSIM is stored with the TRACK step, and only tracking is retried.
#[tokio::test]
async fn usage_down_after_the_esim_is_recorded_retries_tracking_only() {
    use std::sync::atomic::Ordering::SeqCst;
    for h in harnesses(SandboxConfig::default()).await {
        h.peers.fail_start_tracking.store(2, SeqCst);
        let svc = h.start(saga_config()).await;
        let mut client = svc.client.clone();
        let created = client
            .create_order(create("mp-usage-down-1", &h.mp_product().name, "cust-u"))
            .await
            .unwrap()
            .into_inner();
        let order = wait_state(&mut client, &created.name, pb::OrderState::Active, 20).await;
        assert!(order.esim.starts_with("esims/"), "{}", h.label);
        assert_eq!(h.peers.fail_start_tracking.load(SeqCst), 0, "{}", h.label);
        assert_eq!(h.peers.create_esim_calls.load(SeqCst), 1, "{}", h.label);
        assert_eq!(h.peers.tracked.lock().unwrap().len(), 1, "{}", h.label);
        assert_eq!(h.sandbox.call_count("mp.activationCode"), 1, "{}", h.label);
        svc.stop().await;
    }
}

#[tokio::test]
async fn fifty_concurrent_duplicates_make_one_order_and_one_upstream_call() {
    for h in harnesses(SandboxConfig::default()).await {
        let svc = h.start(saga_config()).await;
        let product = h.mp_product();
        let mut calls = Vec::new();
        for _ in 0..50 {
            let mut client = svc.client.clone();
            let req = create("dup-key-1", &product.name, "cust-dup");
            calls.push(tokio::spawn(async move { client.create_order(req).await }));
        }
        let mut names = std::collections::HashSet::new();
        for call in calls {
            names.insert(call.await.unwrap().unwrap().into_inner().name);
        }
        assert_eq!(names.len(), 1, "{}", h.label);
        let name = names.into_iter().next().unwrap();
        let mut client = svc.client.clone();
        wait_state(&mut client, &name, pb::OrderState::Active, 20).await;
        // A later retry returns the same order; another request under the key is refused.
        let again = client
            .create_order(create("dup-key-1", &product.name, "cust-dup"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(again.name, name);
        let other = client
            .create_order(create("dup-key-1", &product.name, "someone-else"))
            .await
            .unwrap_err();
        assert_eq!(other.code(), tonic::Code::AlreadyExists, "{}", h.label);
        assert_eq!(all_orders(&mut client).await.len(), 1);
        assert_eq!(h.sandbox.call_count("mp.activationCode"), 1, "{}", h.label);
        svc.stop().await;
    }
}

#[tokio::test]
async fn a_5xx_on_activation_code_is_an_unknown_outcome_never_retried() {
    for h in harnesses(SandboxConfig::default()).await {
        h.sandbox
            .set_fault("mp.activationCode", Fault::error_500().after_commit());
        let svc = h.start(saga_config()).await;
        let mut client = svc.client.clone();
        let created = client
            .create_order(create("mp-5xx", &h.mp_product().name, "cust-5xx"))
            .await
            .unwrap()
            .into_inner();
        let order = wait_state(&mut client, &created.name, pb::OrderState::UnknownOutcome, 20).await;
        assert!(order.state_reason.contains("operator"), "{}", order.state_reason);
        assert!(order.state_reason.contains("HTTP 500"), "{}", order.state_reason);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(h.sandbox.call_count("mp.activationCode"), 1, "{}", h.label);
        assert!(h.peers.esims.lock().unwrap().is_empty());
        svc.stop().await;
    }
}

#[tokio::test]
async fn a_timeout_on_activation_code_is_an_unknown_outcome_never_retried() {
    let config = SandboxConfig {
        timeout_hold_ms: 4_000,
        ..SandboxConfig::default()
    };
    for h in harnesses(config.clone()).await {
        h.sandbox.set_fault("mp.activationCode", Fault::timeout());
        let svc = h.start(saga_config()).await;
        let mut client = svc.client.clone();
        let created = client
            .create_order(create("mp-timeout", &h.mp_product().name, "cust-t"))
            .await
            .unwrap()
            .into_inner();
        let order = wait_state(&mut client, &created.name, pb::OrderState::UnknownOutcome, 20).await;
        assert!(order.state_reason.contains("timed out"), "{}", order.state_reason);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(h.sandbox.call_count("mp.activationCode"), 1, "{}", h.label);
        svc.stop().await;
    }
}

#[tokio::test]
async fn a_malformed_answer_is_an_unknown_outcome_and_a_refusal_fails() {
    for h in harnesses(SandboxConfig::default()).await {
        h.sandbox
            .set_fault("mp.activationCode", Fault::malformed().times(1));
        let svc = h.start(saga_config()).await;
        let mut client = svc.client.clone();
        let product = h.mp_product();
        let first = client
            .create_order(create("mp-malformed", &product.name, "cust-m"))
            .await
            .unwrap()
            .into_inner();
        let order = wait_state(&mut client, &first.name, pb::OrderState::UnknownOutcome, 20).await;
        assert!(
            order.state_reason.contains("undecodable"),
            "{}",
            order.state_reason
        );
        // A 4xx answer is a definite refusal: FAILED, nothing charged.
        h.sandbox
            .set_fault("mp.activationCode", Fault::status(400).times(1));
        let second = client
            .create_order(create("mp-400", &product.name, "cust-m"))
            .await
            .unwrap()
            .into_inner();
        let order = wait_state(&mut client, &second.name, pb::OrderState::Failed, 20).await;
        assert!(
            order.state_reason.contains("MP refused"),
            "{}",
            order.state_reason
        );
        assert!(order.end_time.is_some());
        assert_eq!(h.sandbox.call_count("mp.activationCode"), 2, "{}", h.label);
        svc.stop().await;
    }
}

#[tokio::test]
async fn mp_top_up_links_the_new_order_code_and_is_idempotent() {
    for h in harnesses(SandboxConfig::default()).await {
        let svc = h.start(saga_config()).await;
        let mut client = svc.client.clone();
        let created = client
            .create_order(create("mp-topup", &h.mp_product().name, "cust-top"))
            .await
            .unwrap()
            .into_inner();
        wait_state(&mut client, &created.name, pb::OrderState::Active, 20).await;
        let req = pb::TopUpOrderRequest {
            request_id: "topup-1".into(),
            name: created.name.clone(),
            ..Default::default()
        };
        let first = client.top_up_order(req.clone()).await.unwrap().into_inner();
        let top = first.top_up.clone().unwrap();
        assert_eq!(
            top.state,
            pb::TopUpState::Succeeded as i32,
            "{}: {}",
            h.label,
            top.state_reason
        );
        assert!(!top.mp_order_code.is_empty());
        let again = client.top_up_order(req).await.unwrap().into_inner();
        assert_eq!(again.top_up.unwrap().top_up_id, top.top_up_id);
        assert_eq!(again.order.unwrap().top_ups.len(), 1);
        assert_eq!(h.sandbox.call_count("mp.topUp"), 1, "{}", h.label);
        // Once the plan is over at MP, a top-up is refused before MP is asked.
        h.sandbox.advance_clock(Duration::from_secs(3 * 365 * 86_400));
        let code = again_code(&mut client, &created.name).await;
        assert_eq!(
            h.sandbox.mp_order_status(&code).as_deref(),
            Some("3"),
            "{}",
            h.label
        );
        let err = client
            .top_up_order(pb::TopUpOrderRequest {
                request_id: "topup-2".into(),
                name: created.name.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            tonic::Code::FailedPrecondition,
            "{}: {err:?}",
            h.label
        );
        assert_eq!(h.sandbox.call_count("mp.topUp"), 1, "{}", h.label);
        svc.stop().await;
    }
}

async fn again_code(
    client: &mut esim_proto::ordering::v1::ordering_service_client::OrderingServiceClient<
        tonic::transport::Channel,
    >,
    name: &str,
) -> String {
    client
        .get_order(pb::GetOrderRequest { name: name.into() })
        .await
        .unwrap()
        .into_inner()
        .upstream_references
        .unwrap()
        .mp_order_code
}

/// The database refuses to store MP's answer for a while (as during a PostgreSQL restart) and
/// provisioning cannot take it either: the saga keeps the answer and stores it once the
/// database is back, so the order ends ACTIVE, not UNKNOWN_OUTCOME, with one order at MP.
/// PostgreSQL only: SQLite cannot raise a transient error from a trigger.
#[tokio::test]
async fn mp_answer_is_kept_until_the_database_takes_it() {
    use sea_orm::ConnectionTrait;
    for h in harnesses(SandboxConfig::default()).await {
        if h.label != "postgres" {
            continue;
        }
        // The order's row is then the only place MP's answer can be kept.
        h.peers
            .fail_create_esim
            .store(1, std::sync::atomic::Ordering::SeqCst);
        let svc = h.start(saga_config()).await;
        let db = esim_runtime::db::connect(&h.database.url).await.unwrap();
        for statement in [
            "CREATE TABLE test_outage (on_since timestamptz)",
            "INSERT INTO test_outage VALUES (now())",
            "CREATE FUNCTION test_refuse_placed() RETURNS trigger AS $$ BEGIN \
             IF NEW.saga_step = 'RECORD_ESIM' AND EXISTS (SELECT 1 FROM test_outage) THEN \
             RAISE EXCEPTION 'injected outage' USING ERRCODE = '57P03'; END IF; RETURN NEW; END $$ \
             LANGUAGE plpgsql",
            "CREATE TRIGGER test_refuse_placed BEFORE UPDATE ON ordering_orders FOR EACH ROW \
             EXECUTE FUNCTION test_refuse_placed()",
        ] {
            db.execute_unprepared(statement).await.unwrap();
        }
        let mut client = svc.client.clone();
        let created = client
            .create_order(create("mp-outage-1", &h.mp_product().name, "cust-outage"))
            .await
            .unwrap()
            .into_inner();
        // Long enough for several refused attempts.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(h.sandbox.call_count("mp.activationCode"), 1);
        db.execute_unprepared("DELETE FROM test_outage").await.unwrap();

        let order = wait_state(&mut client, &created.name, pb::OrderState::Active, 20).await;
        assert!(!order.upstream_references.unwrap().mp_order_code.is_empty());
        assert_eq!(h.sandbox.call_count("mp.activationCode"), 1);
        svc.stop().await;
    }
}

/// The database refuses the order's write of MP's answer (`MP_PLACING` straight to ACTIVE) for
/// good, but provisioning recorded the eSIM from the same answer first: the order, found on its
/// `MP_PLACING` marker, asks provisioning (unreachable once, so asked again) and ends ACTIVE
/// with MP's order code and ICCID, placed once, where it used to end UNKNOWN_OUTCOME for an
/// operator.
#[tokio::test]
async fn mp_answer_recorded_by_provisioning_alone_completes_the_order() {
    use sea_orm::ConnectionTrait;
    for h in harnesses(SandboxConfig::default()).await {
        // Started first: it creates the tables.
        let svc = h.start(saga_config()).await;
        let db = esim_runtime::db::connect(&h.database.url).await.unwrap();
        let refuse_answer: &[&str] = if h.label == "postgres" {
            &[
                "CREATE FUNCTION test_refuse_answer() RETURNS trigger AS $$ BEGIN \
                 IF OLD.saga_step = 'MP_PLACING' AND NEW.state = 'ACTIVE' THEN \
                 RAISE EXCEPTION 'injected refusal'; END IF; \
                 RETURN NEW; END $$ LANGUAGE plpgsql",
                "CREATE TRIGGER test_refuse_answer BEFORE UPDATE ON ordering_orders FOR EACH ROW \
                 EXECUTE FUNCTION test_refuse_answer()",
            ]
        } else {
            &[
                "CREATE TRIGGER test_refuse_answer BEFORE UPDATE ON ordering_orders \
               WHEN OLD.saga_step = 'MP_PLACING' AND NEW.state = 'ACTIVE' \
               BEGIN SELECT RAISE(ABORT, 'injected refusal'); END",
            ]
        };
        for statement in refuse_answer {
            db.execute_unprepared(statement).await.unwrap();
        }
        h.peers
            .fail_esim_of_order
            .store(1, std::sync::atomic::Ordering::SeqCst);
        let mut client = svc.client.clone();
        let created = client
            .create_order(create("mp-refused-answer", &h.mp_product().name, "cust-refused"))
            .await
            .unwrap()
            .into_inner();
        let order = wait_state(&mut client, &created.name, pb::OrderState::Active, 20).await;
        let recorded = {
            let esims = h.peers.esims.lock().unwrap();
            assert_eq!(esims.len(), 1, "{}", h.label);
            esims.values().next().unwrap().esim.clone().unwrap()
        };
        assert_eq!(
            order.upstream_references.unwrap().mp_order_code,
            recorded.upstream_order_code,
            "{}",
            h.label
        );
        assert_eq!(order.iccid, recorded.iccid, "{}", h.label);
        assert!(order.esim.starts_with("esims/"), "{}", h.label);
        assert_eq!(h.sandbox.call_count("mp.activationCode"), 1, "{}", h.label);
        // Provisioning was asked again after it could not be reached.
        assert_eq!(
            h.peers
                .fail_esim_of_order
                .load(std::sync::atomic::Ordering::SeqCst),
            0
        );
        let events = order_events(&mut client, &order.name).await;
        assert_eq!(states_of(&events), PURCHASED, "{}", h.label);
        svc.stop().await;
    }
}
