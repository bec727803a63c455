//! The traveller's MP journey through the one front door: products for a country, buy, watch
//! the order to ACTIVE, receive the eSIM with its QR code, see usage, top up, suspend, resume,
//! terminate — and a terminated eSIM cannot be resumed. The steps are shared with the FMS and
//! SFT journeys (`journeys.rs`, `traveller.rs`).

use esim_e2e::TestSuite;
use esim_proto::{
    ordering::v1::{OrderState, TopUpState},
    r#type::v1::Provider,
};
use esim_runtime::db::testing;

use crate::traveller::Traveller;

#[tokio::test]
async fn an_mp_traveller_buys_installs_tops_up_and_ends_an_esim() {
    let suite = TestSuite::start(|| async { testing::fresh_sqlite() }, Vec::new())
        .await
        .unwrap();
    let mut traveller = Traveller::new(&suite, "mp-journey").await;
    traveller.sync_catalog().await;
    let country = traveller.country(Provider::Mp, "JP").await;
    assert_eq!(country.country_code, "JP", "MP sells in Japan");
    let listed = traveller.cheapest_product(&country, Provider::Mp).await;
    let product = traveller.product(&listed).await;

    // Start the plan now: MP suspends only a plan in use.
    let order = traveller.create_order(&product, true).await;
    let active = traveller.watch_until(&order, OrderState::Active).await;
    let references = active.upstream_references.clone().unwrap_or_default();
    assert!(!references.mp_order_code.is_empty(), "{references:?}");
    traveller.deliver(&active).await;

    let usage = traveller.usage(&active).await;
    assert!(usage.total_bytes > 0, "{usage:?}");

    let topped = traveller.top_up(&active).await.expect("top up");
    let top_up = topped.top_up.expect("the top-up");
    assert_eq!(top_up.state(), TopUpState::Succeeded, "{top_up:?}");
    assert!(
        !top_up.mp_order_code.is_empty(),
        "MP's new order code: {top_up:?}"
    );

    traveller.suspend_resume_terminate(&active).await;
    suite.stop().await;
}

/// The lookup ordering makes when it finds an order stopped while MP answered
/// (`Peers::esim_of_order`, provisioning's `ListEsims` by order), over the real service and the
/// internal credential: the order's eSIM with MP's order code, and nothing for an unknown order.
#[tokio::test]
async fn ordering_finds_an_orders_esim_at_provisioning() {
    use esim_ordering::{GrpcPeers, Peers};
    let suite = TestSuite::start(|| async { testing::fresh_sqlite() }, Vec::new())
        .await
        .unwrap();
    let mut traveller = Traveller::new(&suite, "peer-lookup").await;
    let product = traveller.synced_cheapest_product(Provider::Mp, "JP").await;
    let order = traveller.create_order(&product, false).await;
    let active = traveller.watch_until(&order, OrderState::Active).await;

    let env = esim_runtime::Env::from_vars(
        "ORDERING",
        [(
            "ORDERING_PROVISIONING_URL",
            format!("http://{}", suite.addr("provisioning")),
        )],
    );
    let peers = GrpcPeers::connect(&env, Some(suite.suite.internal.clone())).unwrap();
    let esim = peers
        .esim_of_order(&active.name)
        .await
        .unwrap()
        .expect("the order's eSIM");
    assert_eq!(esim.name, active.esim);
    assert_eq!(
        esim.upstream_order_code,
        active.upstream_references.unwrap_or_default().mp_order_code
    );
    assert_eq!(esim.iccid, active.iccid);
    let unknown = peers.esim_of_order("orders/01M89EHM7HEJ4TVJME54VNZ4RZ").await;
    assert!(unknown.unwrap().is_none());
    suite.stop().await;
}
