//! Bad input fails before any order row or upstream call.

use esim_proto::google::r#type::Money;
use esim_proto::ordering::v1 as pb;
use esim_sandbox::SandboxConfig;

use crate::common::*;

#[tokio::test]
async fn bad_input_writes_nothing_and_calls_no_upstream() {
    for h in harnesses(SandboxConfig::default()).await {
        let svc = h.start(saga_config()).await;
        let mut client = svc.client.clone();
        let product = h.mp_product();
        let allowed = product.allowed_cycle_counts.clone();
        let bad_cycles = (1..100).find(|c| !allowed.contains(c)).unwrap();

        let mut cases: Vec<(pb::CreateOrderRequest, &str)> = Vec::new();
        cases.push((create("bad-1", "products/does-not-exist", "c"), "order.product"));
        cases.push((create("bad-2", "nonsense", "c"), "order.product"));
        let mut r = create("bad-3", &product.name, "c");
        r.order.as_mut().unwrap().cycle_count = bad_cycles;
        cases.push((r, "order.cycle_count"));
        let mut r = create("bad-4", &product.name, "c");
        r.order.as_mut().unwrap().target_iccid = "89441234X".into();
        cases.push((r, "order.target_iccid"));
        let mut r = create("bad-5", &product.name, "c");
        r.expected_retail_price = Some(Money {
            currency_code: "USD".into(),
            units: -5,
            nanos: 0,
        });
        cases.push((r, "expected_retail_price"));
        let mut r = create("bad-6", &product.name, "");
        r.order.as_mut().unwrap().customer_reference = String::new();
        cases.push((r, "order.customer_reference"));
        cases.push((create("bad key", &product.name, "c"), "request_id"));
        let mut r = create("bad-7", &h.fms_product().name, "c");
        r.order.as_mut().unwrap().customer_email = String::new();
        cases.push((r, "order.customer_email"));
        let mut r = create("bad-8", SFT_PRODUCT, "c");
        r.order.as_mut().unwrap().target_iccid = "89852020000000000012".into();
        cases.push((r, "order.target_iccid"));

        for (req, field) in cases {
            let err = client.create_order(req).await.unwrap_err();
            assert_eq!(violated_field(&err), field, "{}: {err:?}", h.label);
        }
        // A price that changed since the customer saw it.
        let mut r = create("bad-9", &product.name, "c");
        r.expected_retail_price = Some(Money {
            currency_code: "USD".into(),
            units: 1,
            nanos: 0,
        });
        let err = client.create_order(r).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
        // Unavailable product.
        {
            let mut products = h.peers.products.lock().unwrap();
            let mut p = product.clone();
            p.name = "products/mp-gone".into();
            p.available = false;
            products.insert(p.name.clone(), p);
        }
        let err = client
            .create_order(create("bad-10", "products/mp-gone", "c"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
        assert!(err.message().contains("order.product"));

        assert!(all_orders(&mut client).await.is_empty(), "{}", h.label);
        assert!(
            h.sandbox.call_counts().is_empty(),
            "{:?}",
            h.sandbox.call_counts()
        );
        // Nothing was recorded under the keys either: a corrected retry succeeds.
        let ok = client
            .create_order(create("bad-3", &product.name, "c"))
            .await
            .unwrap();
        assert!(ok.into_inner().name.starts_with("orders/"));
        svc.stop().await;
    }
}
