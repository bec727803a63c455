//! Crash safety: the worker dies at each step boundary in turn (its lease still held, as after
//! a kill); a new instance on the same database resumes, and nothing is placed twice.

use std::time::Duration;

use esim_ordering::SagaConfig;
use esim_proto::ordering::v1 as pb;
use esim_sandbox::SandboxConfig;

use crate::common::*;

async fn crash_and_resume(h: &Harness, provider: &str, product: &str, boundary: &str, n: usize) {
    let crashing = h
        .start(SagaConfig {
            crash_after_step: Some(boundary.into()),
            // "CREATED": the process dies right after recording the order.
            worker_enabled: boundary != "CREATED",
            owner: format!("crashing-{n}"),
            ..saga_config()
        })
        .await;
    let mut client = crashing.client.clone();
    let created = client
        .create_order(create(
            &format!("crash-{provider}-{n}"),
            product,
            &format!("crash-cust-{n}"),
        ))
        .await
        .unwrap()
        .into_inner();
    // For FMS the boundary comes after the payment report.
    let before_payment = ["CREATED", "FMS_PREORDER", "FMS_AWAIT_PAYMENT"].contains(&boundary);
    if provider == "fms" && !before_payment {
        let pending = wait_state(&mut client, &created.name, pb::OrderState::PendingPayment, 20).await;
        client
            .report_order_payment(pb::ReportOrderPaymentRequest {
                request_id: format!("crash-pay-{n}"),
                name: created.name.clone(),
                outcome: pb::PaymentOutcome::Succeeded as i32,
                amount: pending.total_retail_price.clone(),
                payment_reference: "pi_crash".into(),
                payment_time: None,
            })
            .await
            .unwrap();
        h.sandbox.advance_clock(Duration::from_secs(3));
    }
    tokio::time::timeout(Duration::from_secs(30), crashing.worker)
        .await
        .unwrap_or_else(|_| panic!("{}: the worker never reached {boundary}", h.label))
        .unwrap();
    crashing.shutdown.cancel();

    let resumed = h
        .start(SagaConfig {
            owner: format!("resumed-{n}"),
            ..saga_config()
        })
        .await;
    let mut client = resumed.client.clone();
    if provider == "fms" && before_payment {
        let pending = wait_state(&mut client, &created.name, pb::OrderState::PendingPayment, 20).await;
        client
            .report_order_payment(pb::ReportOrderPaymentRequest {
                request_id: format!("crash-pay-{n}"),
                name: created.name.clone(),
                outcome: pb::PaymentOutcome::Succeeded as i32,
                amount: pending.total_retail_price.clone(),
                payment_reference: "pi_crash".into(),
                payment_time: None,
            })
            .await
            .unwrap();
        h.sandbox.advance_clock(Duration::from_secs(3));
    }
    let order = wait_state(&mut client, &created.name, pb::OrderState::Active, 30).await;
    assert!(order.esim.starts_with("esims/"), "{}: {boundary}", h.label);
    resumed.stop().await;
}

#[tokio::test]
async fn mp_orders_resume_after_a_crash_at_every_step_boundary() {
    for h in harnesses(SandboxConfig::default()).await {
        let product = h.mp_product().name;
        // RECORD_ESIM is stored to stay only when provisioning cannot be reached as MP answers,
        // TRACK only when usage cannot be reached right after the eSIM is recorded.
        let boundaries = ["CREATED", "RECORD_ESIM", "TRACK", "DONE"];
        for (n, boundary) in boundaries.iter().enumerate() {
            match *boundary {
                "RECORD_ESIM" => h
                    .peers
                    .fail_create_esim
                    .store(1, std::sync::atomic::Ordering::SeqCst),
                "TRACK" => h
                    .peers
                    .fail_start_tracking
                    .store(1, std::sync::atomic::Ordering::SeqCst),
                _ => {}
            }
            crash_and_resume(&h, "mp", &product, boundary, n).await;
        }
        assert_eq!(
            h.sandbox.call_count("mp.activationCode"),
            boundaries.len() as u64,
            "{}",
            h.label
        );
        // CreateEsim is asked again after a crash, under the same idempotency key: one eSIM each.
        assert_eq!(h.peers.esims.lock().unwrap().len(), boundaries.len());
    }
}

#[tokio::test]
async fn fms_orders_resume_after_a_crash_at_every_step_boundary() {
    for h in harnesses(SandboxConfig::default()).await {
        let product = h.fms_product().name;
        let boundaries = [
            "FMS_PREORDER",
            "FMS_AWAIT_PAYMENT",
            "FMS_POLL",
            "RECORD_ESIM",
            "TRACK",
        ];
        for (n, boundary) in boundaries.iter().enumerate() {
            if *boundary == "TRACK" {
                h.peers
                    .fail_start_tracking
                    .store(1, std::sync::atomic::Ordering::SeqCst);
            }
            crash_and_resume(&h, "fms", &product, boundary, n).await;
        }
        let count = boundaries.len() as u64;
        assert_eq!(h.sandbox.call_count("fms.preOrderPackage"), count, "{}", h.label);
        assert_eq!(h.sandbox.call_count("fms.paymentWebhook"), count, "{}", h.label);
    }
}

#[tokio::test]
async fn two_replicas_never_take_the_same_step() {
    for h in harnesses(SandboxConfig::default()).await {
        let a = h
            .start(SagaConfig {
                owner: "replica-a".into(),
                ..saga_config()
            })
            .await;
        let b = h
            .start(SagaConfig {
                owner: "replica-b".into(),
                ..saga_config()
            })
            .await;
        let product = h.mp_product().name;
        let mut names = Vec::new();
        for i in 0..20 {
            let mut client = if i % 2 == 0 {
                a.client.clone()
            } else {
                b.client.clone()
            };
            names.push(
                client
                    .create_order(create(&format!("replica-{i}"), &product, "r"))
                    .await
                    .unwrap()
                    .into_inner()
                    .name,
            );
        }
        let mut client = a.client.clone();
        for name in &names {
            wait_state(&mut client, name, pb::OrderState::Active, 30).await;
        }
        assert_eq!(h.sandbox.call_count("mp.activationCode"), 20, "{}", h.label);
        a.stop().await;
        b.stop().await;
    }
}
