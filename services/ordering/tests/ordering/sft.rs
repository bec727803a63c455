//! SFT: provisioning drives the SIM; ordering records it; top-ups are add-ons.

use esim_proto::ordering::v1 as pb;
use esim_sandbox::SandboxConfig;

use crate::common::*;

#[tokio::test]
async fn sft_order_is_provisioned_and_topped_up() {
    for h in harnesses(SandboxConfig::default()).await {
        let svc = h.start(saga_config()).await;
        let mut client = svc.client.clone();
        let created = client
            .create_order(create("sft-1", SFT_PRODUCT, "sft-cust"))
            .await
            .unwrap()
            .into_inner();
        let order = wait_state(&mut client, &created.name, pb::OrderState::Active, 20).await;
        assert!(order.esim.starts_with("esims/sft-"), "{}", h.label);
        assert!(!order.upstream_references.unwrap().sft_endpoint_id.is_empty());
        assert_eq!(h.peers.provisions.lock().unwrap().len(), 1);
        let top = client
            .top_up_order(pb::TopUpOrderRequest {
                request_id: "sft-top-1".into(),
                name: created.name.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .top_up
            .unwrap();
        assert_eq!(
            top.state,
            pb::TopUpState::Succeeded as i32,
            "{}",
            top.state_reason
        );
        assert!(top.sft_addon.starts_with(&order.esim));
        svc.stop().await;
    }
}

#[tokio::test]
async fn sft_refusal_fails_with_the_reason() {
    for h in harnesses(SandboxConfig::default()).await {
        {
            let mut products = h.peers.products.lock().unwrap();
            let mut p = products.get(SFT_PRODUCT).unwrap().clone();
            p.name = "products/sft-bad".into();
            p.provider_reference = Some(esim_proto::catalog::v1::product::ProviderReference::Sft(
                esim_proto::r#type::v1::SftPlanReference {
                    plan_id: "NO-SUCH-PLAN".into(),
                },
            ));
            products.insert(p.name.clone(), p);
        }
        let svc = h.start(saga_config()).await;
        let mut client = svc.client.clone();
        let created = client
            .create_order(create("sft-bad", "products/sft-bad", "sft-cust"))
            .await
            .unwrap()
            .into_inner();
        let order = wait_state(&mut client, &created.name, pb::OrderState::Failed, 20).await;
        assert!(
            order.state_reason.contains("refused the plan"),
            "{}",
            order.state_reason
        );
        svc.stop().await;
    }
}
