//! FMS: account creation, pre-order, the payment report notified exactly once, polling to
//! ACTIVE, and the expiry paths.

use std::time::Duration;

use esim_proto::ordering::v1 as pb;
use esim_sandbox::SandboxConfig;

use crate::common::*;

fn report(name: &str, request_id: &str, order: &pb::Order) -> pb::ReportOrderPaymentRequest {
    pb::ReportOrderPaymentRequest {
        request_id: request_id.into(),
        name: name.into(),
        outcome: pb::PaymentOutcome::Succeeded as i32,
        amount: order.total_retail_price.clone(),
        payment_reference: "pi_test_123".into(),
        payment_time: None,
    }
}

#[tokio::test]
async fn fms_order_is_paid_once_and_goes_to_active() {
    for h in harnesses(SandboxConfig::default()).await {
        let svc = h.start(saga_config()).await;
        let mut client = svc.client.clone();
        let created = client
            .create_order(create("fms-happy", &h.fms_product().name, "fms-cust-1"))
            .await
            .unwrap()
            .into_inner();
        let pending = wait_state(&mut client, &created.name, pb::OrderState::PendingPayment, 20).await;
        assert!(pending.payment_deadline.is_some(), "{}", h.label);
        let refs = pending.upstream_references.clone().unwrap();
        assert!(!refs.fms_pre_order_id.is_empty() && refs.fms_order_no.starts_with("ESIM_"));
        assert_eq!(h.sandbox.call_count("fms.emailRegister"), 1);

        // Reported twice at once, then once more: one notification.
        let mut a = client.clone();
        let mut b = client.clone();
        let (ra, rb) = tokio::join!(
            a.report_order_payment(report(&created.name, "pay-1", &pending)),
            b.report_order_payment(report(&created.name, "pay-2", &pending)),
        );
        let ra = ra.unwrap().into_inner();
        rb.unwrap();
        assert!(ra.payment.is_some(), "{}", h.label);
        client
            .report_order_payment(report(&created.name, "pay-3", &pending))
            .await
            .unwrap();
        // A different outcome afterwards is refused.
        let mut failed = report(&created.name, "pay-4", &pending);
        failed.outcome = pb::PaymentOutcome::Failed as i32;
        let err = client.report_order_payment(failed).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);

        h.sandbox.advance_clock(Duration::from_secs(3));
        let order = wait_state(&mut client, &created.name, pb::OrderState::Active, 30).await;
        assert_eq!(h.sandbox.call_count("fms.paymentWebhook"), 1, "{}", h.label);
        assert!(order.payment.unwrap().notify_time.is_some());
        assert!(order.iccid.starts_with("89"), "{}", h.label);
        let esims = h.peers.esims.lock().unwrap().clone();
        let recorded = esims.values().next().unwrap();
        assert!(recorded.activation_code.starts_with("LPA:1$"));
        assert_eq!(recorded.esim.as_ref().unwrap().fms_order_no, refs.fms_order_no);

        // The customer's second FMS order reuses the account.
        let second = client
            .create_order(create("fms-happy-2", &h.fms_product().name, "fms-cust-1"))
            .await
            .unwrap()
            .into_inner();
        wait_state(&mut client, &second.name, pb::OrderState::PendingPayment, 20).await;
        assert_eq!(h.sandbox.call_count("fms.emailRegister"), 1, "{}", h.label);
        svc.stop().await;
    }
}

#[tokio::test]
async fn fms_payment_that_never_comes_expires() {
    for h in harnesses(SandboxConfig::default()).await {
        let svc = h
            .start(esim_ordering::SagaConfig {
                payment_window: Duration::from_secs(1),
                ..saga_config()
            })
            .await;
        let mut client = svc.client.clone();
        let created = client
            .create_order(create("fms-never", &h.fms_product().name, "fms-cust-2"))
            .await
            .unwrap()
            .into_inner();
        let order = wait_state(&mut client, &created.name, pb::OrderState::Expired, 20).await;
        assert!(
            order.state_reason.contains("no payment"),
            "{}",
            order.state_reason
        );
        assert!(!order.refund_required);
        // Reported afterwards: refund flagged, FMS not notified.
        let late = client
            .report_order_payment(report(&created.name, "late-pay", &order))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(late.state, pb::OrderState::Expired as i32);
        assert!(late.refund_required, "{}", h.label);
        assert_eq!(h.sandbox.call_count("fms.paymentWebhook"), 0);
        svc.stop().await;
    }
}

#[tokio::test]
async fn fms_payment_after_the_window_is_expired_with_refund() {
    for h in harnesses(SandboxConfig::default()).await {
        let svc = h.start(saga_config()).await;
        let mut client = svc.client.clone();
        let created = client
            .create_order(create("fms-late", &h.fms_product().name, "fms-cust-3"))
            .await
            .unwrap()
            .into_inner();
        let pending = wait_state(&mut client, &created.name, pb::OrderState::PendingPayment, 20).await;
        // FMS's clock passes the window (ours has not yet): FMS answers 6006.
        h.sandbox.advance_clock(Duration::from_secs(11 * 60));
        let reported = client
            .report_order_payment(report(&created.name, "pay-late", &pending))
            .await
            .unwrap()
            .into_inner();
        // The call notifies FMS itself unless the saga worker holds the order's lease at that
        // moment (a loaded machine); the worker then notifies a moment later.
        let order = if reported.state == pb::OrderState::PendingPayment as i32 {
            wait_state(&mut client, &created.name, pb::OrderState::Expired, 20).await
        } else {
            reported
        };
        assert_eq!(
            order.state,
            pb::OrderState::Expired as i32,
            "{}: {}",
            h.label,
            order.state_reason
        );
        assert!(order.state_reason.contains("6006"), "{}", order.state_reason);
        assert!(order.refund_required);
        assert_eq!(h.sandbox.call_count("fms.paymentWebhook"), 1);
        svc.stop().await;
    }
}

#[tokio::test]
async fn a_failed_payment_fails_the_order_and_cancel_releases_a_pre_order() {
    for h in harnesses(SandboxConfig::default()).await {
        let svc = h.start(saga_config()).await;
        let mut client = svc.client.clone();
        let product = h.fms_product().name;
        let created = client
            .create_order(create("fms-fail", &product, "fms-cust-4"))
            .await
            .unwrap()
            .into_inner();
        wait_state(&mut client, &created.name, pb::OrderState::PendingPayment, 20).await;
        let order = client
            .report_order_payment(pb::ReportOrderPaymentRequest {
                request_id: "pay-failed".into(),
                name: created.name.clone(),
                outcome: pb::PaymentOutcome::Failed as i32,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            order.state,
            pb::OrderState::Failed as i32,
            "{}: {}",
            h.label,
            order.state_reason
        );
        assert!(!order.refund_required);

        let second = client
            .create_order(create("fms-cancel", &product, "fms-cust-4"))
            .await
            .unwrap()
            .into_inner();
        wait_state(&mut client, &second.name, pb::OrderState::PendingPayment, 20).await;
        let cancelled = client
            .cancel_order(pb::CancelOrderRequest {
                name: second.name.clone(),
                reason: "changed my mind".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(cancelled.state, pb::OrderState::Cancelled as i32);
        // The release notification goes out once (the failed payment's one plus this one).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while h.sandbox.call_count("fms.paymentWebhook") < 2 {
            assert!(tokio::time::Instant::now() < deadline, "no release sent");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(h.sandbox.call_count("fms.paymentWebhook"), 2, "{}", h.label);
        let err = client
            .report_order_payment(report(&second.name, "pay-after-cancel", &cancelled))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
        svc.stop().await;
    }
}

#[tokio::test]
async fn sync_customer_password_resets_and_logs_in() {
    for h in harnesses(SandboxConfig::default()).await {
        let svc = h.start(saga_config()).await;
        let mut client = svc.client.clone();
        // Before any FMS order: only kept.
        let kept = client
            .sync_customer_password(pb::SyncCustomerPasswordRequest {
                customer_reference: "fms-cust-5".into(),
                password: "first-password".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!kept.fms_account_updated);
        let created = client
            .create_order(create("fms-pw", &h.fms_product().name, "fms-cust-5"))
            .await
            .unwrap()
            .into_inner();
        wait_state(&mut client, &created.name, pb::OrderState::PendingPayment, 20).await;
        let synced = client
            .sync_customer_password(pb::SyncCustomerPasswordRequest {
                customer_reference: "fms-cust-5".into(),
                password: "second-password".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(synced.fms_account_updated, "{}", h.label);
        assert_eq!(h.sandbox.call_count("fms.passwordReset"), 1);
        // The next order logs in with the new password and pre-orders fine.
        let next = client
            .create_order(create("fms-pw-2", &h.fms_product().name, "fms-cust-5"))
            .await
            .unwrap()
            .into_inner();
        wait_state(&mut client, &next.name, pb::OrderState::PendingPayment, 20).await;
        let short = client
            .sync_customer_password(pb::SyncCustomerPasswordRequest {
                customer_reference: "fms-cust-5".into(),
                password: "short".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(violated_field(&short), "password");
        svc.stop().await;
    }
}

#[tokio::test]
async fn a_lost_payment_notification_is_resolved_by_query_not_resent() {
    let config = SandboxConfig {
        timeout_hold_ms: 3_000,
        ..SandboxConfig::default()
    };
    for h in harnesses(config.clone()).await {
        let svc = h.start(saga_config()).await;
        let mut client = svc.client.clone();
        let created = client
            .create_order(create("fms-lost", &h.fms_product().name, "fms-cust-6"))
            .await
            .unwrap()
            .into_inner();
        let pending = wait_state(&mut client, &created.name, pb::OrderState::PendingPayment, 20).await;
        // FMS takes the notification but the answer never arrives.
        h.sandbox.set_fault(
            "fms.paymentWebhook",
            esim_sandbox::Fault::timeout().after_commit().times(1),
        );
        let order = client
            .report_order_payment(report(&created.name, "pay-lost", &pending))
            .await
            .unwrap()
            .into_inner();
        // Resolved by status query (here possibly at once: FMS processed it meanwhile).
        assert!(
            [pb::OrderState::Provisioning as i32, pb::OrderState::Active as i32].contains(&order.state),
            "{}: {}",
            h.label,
            order.state_reason
        );
        h.sandbox.advance_clock(Duration::from_secs(3));
        let order = wait_state(&mut client, &created.name, pb::OrderState::Active, 30).await;
        assert!(order.payment.is_some());
        assert_eq!(h.sandbox.call_count("fms.paymentWebhook"), 1, "{}", h.label);
        svc.stop().await;
    }
}
