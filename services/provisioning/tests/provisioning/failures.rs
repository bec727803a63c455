//! Each failure branch of a provision ends in its documented state, and no SIM stays claimed
//! by a failed order.

use esim_proto::provisioning::v1 as pb;
use esim_sandbox::Fault;
use sea_orm::{ConnectionTrait, Statement};
use tonic::Code;

use crate::common::{Harness, databases, state, with_an_activation_timed_out};

const LIFECYCLE: &str = "sft.EndPointLifeCycleChange";
const SUBSCRIBE: &str = "sft.SubscribeAddon";
const FETCH: &str = "sft.fetchSIM";

async fn esim_of(h: &Harness, order: &str) -> pb::Esim {
    let listed = h
        .client
        .clone()
        .list_esims(pb::ListEsimsRequest {
            order: order.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.esims.len(), 1, "{order}: {listed:?}");
    listed.esims.into_iter().next().unwrap()
}

/// No claim is left in flight.
async fn nothing_left_claimed(h: &Harness) {
    let claims = h.claims().await;
    assert!(
        claims.iter().all(|(_, status)| status != "claimed"),
        "{}: {claims:?}",
        h.label
    );
}

#[tokio::test]
async fn no_sim_fails_the_esim_with_resource_exhausted() {
    for database in databases().await {
        let h = Harness::start(database, 0).await;
        let status = h.provision("r1", "orders/empty").await.unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted, "{}: {status:?}", h.label);
        let esim = esim_of(&h, "orders/empty").await;
        assert_eq!(state(&esim), pb::EsimState::Failed);
        assert!(
            esim.state_reason.contains("no Pre-Active, Attached SFT SIM"),
            "{esim:?}"
        );
        assert!(status.message().contains(&esim.name), "{status:?}");
        assert!(!esim.installation_ready);
        assert!(h.claims().await.is_empty());
        assert_eq!(h.sandbox.call_count(LIFECYCLE), 0);
        h.stop().await;
    }
}

#[tokio::test]
async fn a_failed_activation_releases_the_sim_to_the_pool() {
    for database in databases().await {
        let h = Harness::start(database, 1).await;
        // SFT refuses (HTTP 400): nothing changed upstream.
        h.sandbox.set_fault(LIFECYCLE, Fault::status(400));
        let status = h.provision("r1", "orders/refused").await.unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition, "{}: {status:?}", h.label);
        let esim = esim_of(&h, "orders/refused").await;
        assert_eq!(state(&esim), pb::EsimState::Failed);
        assert!(esim.state_reason.contains("released to the pool"), "{esim:?}");
        assert!(h.claims().await.is_empty(), "{}", h.label);

        // An outage (HTTP 500) whose outcome the service checks: the SIM is still Pre-Active.
        h.sandbox.set_fault(LIFECYCLE, Fault::error_500());
        let status = h.provision("r2", "orders/outage").await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        let esim = esim_of(&h, "orders/outage").await;
        assert!(esim.state_reason.contains("released to the pool"), "{esim:?}");
        assert!(h.claims().await.is_empty());
        assert_eq!(h.sandbox.sft_available_sims(), 1);

        // The one SIM was not lost: the next provision gets it. A failed eSIM does not block
        // its order: a new request id provisions it.
        h.sandbox.clear_faults();
        let ok = h.provision("r3", "orders/outage").await.unwrap();
        assert_eq!(state(&ok), pb::EsimState::Activated);
        assert_eq!(ok.iccid, esim.iccid);
        assert_ne!(ok.name, esim.name);
        h.stop().await;
    }
}

#[tokio::test]
async fn a_provision_that_found_sft_unavailable_is_tried_afresh_on_retry() {
    for database in databases().await {
        // Two SIMs: one for each case.
        let h = Harness::start(database, 2).await;
        // fetchSIM fails, then the activation fails with the SIM still Pre-Active: each time
        // no SIM is held, and the retry with the same request id is a new attempt.
        for (endpoint, request_id) in [(FETCH, "fetch-outage"), (LIFECYCLE, "activation-outage")] {
            let outage = &format!("orders/{request_id}");
            let held_before = h.claims().await;
            h.sandbox.set_fault(endpoint, Fault::error_500());
            let status = h.provision(request_id, outage).await.unwrap_err();
            assert_eq!(status.code(), Code::Unavailable, "{}: {status:?}", h.label);
            let failed = esim_of(&h, outage).await;
            assert_eq!(state(&failed), pb::EsimState::Failed);
            assert_eq!(
                h.claims().await,
                held_before,
                "{} {endpoint}: no SIM held",
                h.label
            );

            // Still down: UNAVAILABLE again, still nothing held.
            let status = h.provision(request_id, outage).await.unwrap_err();
            assert_eq!(status.code(), Code::Unavailable, "{}: {status:?}", h.label);
            assert_eq!(
                h.claims().await,
                held_before,
                "{} {endpoint}: no SIM held",
                h.label
            );

            h.sandbox.clear_faults();
            let esim = h.provision(request_id, outage).await.unwrap();
            assert_eq!(esim.name, failed.name, "the same eSIM, provisioned");
            assert_eq!(state(&esim), pb::EsimState::Activated, "{esim:?}");
            // Provisioned: the retry's answer is kept like any other.
            let replay = h.provision(request_id, outage).await.unwrap();
            assert_eq!(replay.name, esim.name);
            assert_eq!(replay.sft_endpoint_id, esim.sft_endpoint_id);
        }
        h.stop().await;
    }
}

#[tokio::test]
async fn an_activation_with_unknown_outcome_quarantines_the_sim() {
    for database in databases().await {
        let h = with_an_activation_timed_out(database).await;
        let failed = esim_of(&h, "orders/timeout").await;
        assert_eq!(state(&failed), pb::EsimState::Failed);
        assert!(failed.state_reason.contains("quarantined"), "{failed:?}");
        let claims = h.claims().await;
        assert_eq!(
            claims,
            vec![(failed.sft_endpoint_id.clone(), "quarantined".to_owned())]
        );

        // Retrying cannot help now: the same request id is refused, not UNAVAILABLE again (a
        // caller retrying on UNAVAILABLE would never stop), and nothing changes.
        let again = h.provision("r1", "orders/timeout").await.unwrap_err();
        assert_eq!(again.code(), Code::FailedPrecondition, "{}: {again:?}", h.label);
        assert!(again.message().contains("quarantined"), "{again:?}");
        assert_eq!(h.claims().await.len(), 1);

        // The quarantined SIM is never claimed again by itself; the other one is used.
        let ok = h.provision("r2", "orders/next").await.unwrap();
        assert_ne!(ok.sft_endpoint_id, failed.sft_endpoint_id);
        let status = h.provision("r3", "orders/none-left").await.unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        nothing_left_claimed(&h).await;
        h.stop().await;
    }
}

#[tokio::test]
async fn an_activation_whose_answer_is_lost_but_applied_goes_on() {
    for database in databases().await {
        let h = Harness::start(database, 1).await;
        h.sandbox.set_fault(
            LIFECYCLE,
            Fault {
                times: Some(1),
                ..Fault::error_500().after_commit()
            },
        );
        let esim = h.provision("r1", "orders/lost-answer").await.unwrap();
        assert_eq!(state(&esim), pb::EsimState::Activated, "{}", h.label);
        assert_eq!(h.sandbox.call_count(LIFECYCLE), 1, "not sent twice");
        assert_eq!(
            h.claims().await,
            vec![(esim.sft_endpoint_id.clone(), "assigned".into())]
        );
        h.stop().await;
    }
}

#[tokio::test]
async fn a_failing_subscription_is_retried_then_fails_with_the_endpoint_state() {
    for database in databases().await {
        let h = Harness::start(database, 3).await;
        // Two failures, then it works: retried with backoff.
        h.sandbox.set_fault(
            SUBSCRIBE,
            Fault {
                times: Some(2),
                ..Fault::error_500()
            },
        );
        let ok = h.provision("r1", "orders/flaky").await.unwrap();
        assert_eq!(state(&ok), pb::EsimState::Activated, "{}", h.label);
        assert_eq!(h.sandbox.call_count(SUBSCRIBE), 3);

        // An answer lost after SFT created the add-on: the retry finds it instead of
        // subscribing twice.
        h.sandbox.reset_call_counts();
        h.sandbox.set_fault(
            SUBSCRIBE,
            Fault {
                times: Some(1),
                ..Fault::error_500().after_commit()
            },
        );
        let adopted = h.provision("r2", "orders/lost-addon").await.unwrap();
        assert_eq!(state(&adopted), pb::EsimState::Activated);
        assert_eq!(h.sandbox.call_count(SUBSCRIBE), 1, "subscribed once");
        let addons = h
            .client
            .clone()
            .list_addons(pb::ListAddonsRequest {
                parent: adopted.name.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .addons;
        assert_eq!(addons.len(), 1);
        assert!(!addons[0].unique_id.is_empty());
        assert_eq!(addons[0].state, pb::AddonState::Active as i32);

        // Always failing: 4 attempts, then FAILED with the endpoint's real state.
        h.sandbox.reset_call_counts();
        h.sandbox.set_fault(SUBSCRIBE, Fault::error_500());
        let status = h.provision("r3", "orders/no-addon").await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert_eq!(h.sandbox.call_count(SUBSCRIBE), 4);
        let failed = esim_of(&h, "orders/no-addon").await;
        assert_eq!(state(&failed), pb::EsimState::Failed);
        assert!(
            failed.state_reason.contains("is Active (1)") && failed.state_reason.contains("after 4 attempt"),
            "{failed:?}"
        );
        let addons = h
            .client
            .clone()
            .list_addons(pb::ListAddonsRequest {
                parent: failed.name.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .addons;
        assert_eq!(addons.len(), 1);
        assert_eq!(addons[0].state, pb::AddonState::Failed as i32);
        let claims = h.claims().await;
        assert!(
            claims.contains(&(failed.sft_endpoint_id.clone(), "quarantined".into())),
            "{claims:?}"
        );
        nothing_left_claimed(&h).await;
        h.stop().await;
    }
}

#[tokio::test]
async fn a_provision_cut_off_midway_resumes_with_its_request_id() {
    for database in databases().await {
        let h = Harness::start_with(database, 2, &[("PROVISIONING_PROVISION_LEASE_SECS", "1")]).await;
        // The caller gives up while SubscribeAddon hangs: the call stops after the activation.
        h.sandbox.set_fault(
            SUBSCRIBE,
            Fault {
                times: Some(1),
                ..Fault::latency(3000)
            },
        );
        let cut = tokio::time::timeout(
            std::time::Duration::from_millis(700),
            h.provision("cut", "orders/cut"),
        )
        .await;
        assert!(cut.is_err(), "{}: the call was cut off", h.label);
        let midway = esim_of(&h, "orders/cut").await;
        assert_eq!(state(&midway), pb::EsimState::Selected, "{midway:?}");
        assert!(!midway.installation_ready);

        // While the lease of the cut-off call lasts, a retry does not run the same steps.
        let busy = h.provision("cut", "orders/cut").await.unwrap_err();
        assert_eq!(busy.code(), Code::Aborted, "{busy:?}");

        tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
        let done = h.provision("cut", "orders/cut").await.unwrap();
        assert_eq!(done.name, midway.name);
        assert_eq!(done.sft_endpoint_id, midway.sft_endpoint_id, "no second SIM");
        assert_eq!(state(&done), pb::EsimState::Activated);
        assert_eq!(h.sandbox.call_count(LIFECYCLE), 1);
        assert_eq!(h.sandbox.sft_available_sims(), 1);
        assert_eq!(
            h.claims().await,
            vec![(done.sft_endpoint_id.clone(), "assigned".into())]
        );
        h.stop().await;
    }
}

/// Makes the database refuse to record that an eSIM reached `step`, as a database outage
/// between two steps would.
async fn refuse_recording_step(h: &Harness, step: &str) {
    let sql = if h.label == "sqlite" {
        vec![format!(
            "CREATE TRIGGER refuse_step BEFORE UPDATE ON provisioning_esims WHEN NEW.step = '{step}' \
             BEGIN SELECT RAISE(ABORT, 'injected outage'); END"
        )]
    } else {
        vec![
            format!(
                "CREATE FUNCTION refuse_step() RETURNS trigger AS $$ BEGIN IF NEW.step = '{step}' THEN \
                 RAISE EXCEPTION 'injected outage'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
            ),
            "CREATE TRIGGER refuse_step BEFORE UPDATE ON provisioning_esims FOR EACH ROW \
             EXECUTE FUNCTION refuse_step()"
                .to_owned(),
        ]
    };
    for statement in sql {
        h.db.execute_unprepared(&statement).await.unwrap();
    }
}

async fn lease_until(h: &Harness, order: &str) -> Option<String> {
    let row =
        h.db.query_one_raw(Statement::from_sql_and_values(
            h.db.get_database_backend(),
            if h.label == "sqlite" {
                "SELECT CAST(lease_until AS TEXT) FROM provisioning_esims WHERE order_name = ?"
            } else {
                "SELECT CAST(lease_until AS TEXT) FROM provisioning_esims WHERE order_name = $1"
            },
            [order.into()],
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<Option<String>>(0).unwrap()
}

#[tokio::test]
async fn a_step_that_cannot_be_recorded_gives_its_lease_back_and_a_retry_resumes() {
    for database in databases().await {
        let h = Harness::start(database, 2).await;
        refuse_recording_step(&h, "subscribing").await;
        let failed = h.provision("outage", "orders/outage").await.unwrap_err();
        assert_eq!(failed.code(), Code::Unavailable, "{}: {failed:?}", h.label);
        let drop_trigger = if h.label == "sqlite" {
            "DROP TRIGGER refuse_step"
        } else {
            "DROP TRIGGER refuse_step ON provisioning_esims"
        };
        h.db.execute_unprepared(drop_trigger).await.unwrap();

        // The default lease is 10 minutes: only a lease given back lets the retry run now.
        let mut released = false;
        for _ in 0..100 {
            if lease_until(&h, "orders/outage").await.is_none() {
                released = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(released, "{}: the lease was kept", h.label);
        let done = h.provision("outage", "orders/outage").await.unwrap();
        assert_eq!(state(&done), pb::EsimState::Activated, "{}: {done:?}", h.label);
        assert_eq!(h.sandbox.sft_available_sims(), 1, "{}: no second SIM", h.label);
        assert_eq!(
            h.claims().await,
            vec![(done.sft_endpoint_id.clone(), "assigned".into())]
        );
        h.stop().await;
    }
}
