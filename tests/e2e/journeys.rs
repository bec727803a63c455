//! The traveller's FMS and SFT journeys through the one front door, step by step as in the MP
//! journey (`journey.rs`): countries → products for a country → product → order (FMS: the
//! payment reported) → ACTIVE → the eSIM with its QR code → usage → top-up → suspend → resume →
//! terminate. Where an upstream has no such call, the documented refusal is checked instead.

use esim_e2e::TestSuite;
use esim_proto::{
    ordering::v1::{OrderState, TopUpState},
    provisioning::v1::EsimState,
    r#type::v1::Provider,
};
use esim_runtime::db::testing;
use tonic::Code;

use crate::traveller::Traveller;

#[tokio::test]
async fn an_fms_traveller_pays_installs_and_is_refused_what_fms_cannot_do() {
    let suite = TestSuite::start(|| async { testing::fresh_sqlite() }, Vec::new())
        .await
        .unwrap();
    let mut traveller = Traveller::new(&suite, "fms-journey").await;
    let product = traveller.synced_cheapest_product(Provider::Fms, "JP").await;

    // FMS pre-orders the profile, then waits for the reseller's payment report.
    let order = traveller.create_order(&product, false).await;
    let pending = traveller.watch_until(&order, OrderState::PendingPayment).await;
    assert!(pending.payment_deadline.is_some(), "{pending:?}");
    let references = pending.upstream_references.clone().unwrap_or_default();
    assert!(!references.fms_pre_order_id.is_empty(), "{references:?}");
    assert!(references.fms_order_no.starts_with("ESIM_"), "{references:?}");
    traveller.pay(&pending).await;

    let active = traveller.watch_until(&order, OrderState::Active).await;
    assert!(
        active
            .payment
            .as_ref()
            .and_then(|p| p.notify_time.as_ref())
            .is_some(),
        "FMS was notified of the payment: {active:?}"
    );
    assert!(active.iccid.starts_with("89"), "{active:?}");
    traveller.deliver(&active).await;

    // FMS has no usage query (UPSTREAMS.md lists none; DESIGN.md: usage wraps MP and SFT):
    // the eSIM is tracked, but no snapshot exists, so every counter is 0 and it is not stale.
    let usage = traveller.usage(&active).await;
    assert!(usage.snapshot_time.is_none(), "{usage:?}");
    assert_eq!((usage.total_bytes, usage.used_bytes), (0, 0), "{usage:?}");
    assert!(!usage.stale, "{usage:?}");

    // FMS sells no top-ups: `TopUpOrder` documents FAILED_PRECONDITION for FMS orders.
    let refused = traveller
        .top_up(&active)
        .await
        .expect_err("FMS orders cannot be topped up");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().contains("FMS orders cannot be topped up"),
        "{refused:?}"
    );

    // FMS has no lifecycle calls (UPSTREAMS.md: user, package and order modules only), so
    // provisioning refuses suspend and terminate before any upstream call; resume is refused
    // because the eSIM was never suspended.
    let refused = traveller.suspend(&active).await.expect_err("FMS cannot suspend");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().contains("FMS offers no lifecycle calls"),
        "{refused:?}"
    );
    let refused = traveller
        .resume(&active, 1)
        .await
        .expect_err("a delivered eSIM is not suspended");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    let refused = traveller
        .terminate(&active)
        .await
        .expect_err("FMS cannot terminate");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().contains("FMS offers no lifecycle calls"),
        "{refused:?}"
    );
    let esim = traveller.esim(&active).await;
    assert_eq!(esim.state(), EsimState::Delivered, "nothing changed: {esim:?}");
    suite.stop().await;
}

#[tokio::test]
async fn an_sft_traveller_buys_installs_tops_up_and_ends_an_esim() {
    let suite = TestSuite::start(|| async { testing::fresh_sqlite() }, Vec::new())
        .await
        .unwrap();
    let mut traveller = Traveller::new(&suite, "sft-journey").await;
    traveller.sync_catalog().await;
    let country = traveller.country(Provider::Sft, "FR").await;
    let listed = traveller.cheapest_product(&country, Provider::Sft).await;
    let product = traveller.product(&listed).await;

    // Provisioning claims a SIM from the pool, activates its endpoint and subscribes the plan.
    let order = traveller.create_order(&product, false).await;
    let active = traveller.watch_until(&order, OrderState::Active).await;
    let references = active.upstream_references.clone().unwrap_or_default();
    assert!(!references.sft_endpoint_id.is_empty(), "{references:?}");
    traveller.deliver(&active).await;

    // SFT usage comes from the add-on's counters: the plan's data is there.
    let usage = traveller.usage(&active).await;
    assert!(usage.total_bytes > 0, "{usage:?}");
    assert!(!usage.stale, "{usage:?}");

    // An SFT top-up is another add-on on the same endpoint.
    let topped = traveller.top_up(&active).await.expect("top up");
    let top_up = topped.top_up.expect("the top-up");
    assert_eq!(top_up.state(), TopUpState::Succeeded, "{top_up:?}");
    assert!(top_up.sft_addon.starts_with(&active.esim), "{top_up:?}");

    traveller.suspend_resume_terminate(&active).await;
    suite.stop().await;
}
