//! Two provisions never take the same SIM.

use std::collections::HashSet;

use esim_proto::provisioning::v1 as pb;
use tonic::Code;

use crate::common::{Harness, databases, state};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_provisions_take_a_hundred_distinct_sims_and_the_next_is_exhausted() {
    for database in databases().await {
        let h = Harness::start(database, 100).await;
        let calls = (0..100).map(|i| {
            let h = &h;
            async move { h.provision(&format!("req-{i}"), &format!("orders/o-{i}")).await }
        });
        let results = futures::future::join_all(calls).await;
        let mut iccids = HashSet::new();
        let mut endpoints = HashSet::new();
        for (i, result) in results.into_iter().enumerate() {
            let esim = result.unwrap_or_else(|s| panic!("{}: provision {i} failed: {s:?}", h.label));
            assert_eq!(state(&esim), pb::EsimState::Activated, "{}", h.label);
            assert!(esim.installation_ready);
            assert!(
                iccids.insert(esim.iccid.clone()),
                "{}: ICCID {} twice",
                h.label,
                esim.iccid
            );
            assert!(endpoints.insert(esim.sft_endpoint_id.clone()), "{}", h.label);
        }
        assert_eq!(iccids.len(), 100);
        assert_eq!(h.sandbox.sft_available_sims(), 0, "{}", h.label);
        assert_eq!(
            h.sandbox.call_count("sft.EndPointLifeCycleChange"),
            100,
            "{}",
            h.label
        );
        assert_eq!(h.sandbox.call_count("sft.SubscribeAddon"), 100, "{}", h.label);
        let claims = h.claims().await;
        assert_eq!(claims.len(), 100);
        assert!(
            claims.iter().all(|(_, status)| status == "assigned"),
            "{}",
            h.label
        );

        let status = h.provision("req-100", "orders/o-100").await.unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted, "{}: {status:?}", h.label);
        // The order's eSIM is recorded as FAILED with the reason.
        let listed = h
            .client
            .clone()
            .list_esims(pb::ListEsimsRequest {
                order: "orders/o-100".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(listed.esims.len(), 1);
        assert_eq!(state(&listed.esims[0]), pb::EsimState::Failed);
        assert!(
            listed.esims[0].state_reason.contains("no Pre-Active"),
            "{:?}",
            listed.esims[0]
        );
        // The same request id answers the same, without looking again.
        let fetches = h.sandbox.call_count("sft.fetchSIM");
        let again = h.provision("req-100", "orders/o-100").await.unwrap_err();
        assert_eq!(again.code(), Code::ResourceExhausted);
        assert_eq!(h.sandbox.call_count("sft.fetchSIM"), fetches);

        // Paging through all 101 eSIMs, newest first, without repeats.
        let mut seen = HashSet::new();
        let mut token = String::new();
        let mut pages = 0;
        loop {
            let page = h
                .client
                .clone()
                .list_esims(pb::ListEsimsRequest {
                    page_size: 30,
                    page_token: token.clone(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            pages += 1;
            for esim in &page.esims {
                assert!(seen.insert(esim.name.clone()));
            }
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        assert_eq!((seen.len(), pages), (101, 4), "{}", h.label);
        h.stop().await;
    }
}

#[tokio::test]
async fn a_retried_provision_returns_the_same_esim_and_claims_no_second_sim() {
    for database in databases().await {
        let h = Harness::start(database, 5).await;
        let first = h.provision("same-key", "orders/retry").await.unwrap();
        let again = h.provision("same-key", "orders/retry").await.unwrap();
        assert_eq!(first, again, "{}", h.label);
        assert_eq!(h.sandbox.call_count("sft.SubscribeAddon"), 1);
        assert_eq!(h.sandbox.sft_available_sims(), 4);

        // Same key, other request: ALREADY_EXISTS; another key for the same order too.
        let other = h.provision("same-key", "orders/another").await.unwrap_err();
        assert_eq!(other.code(), Code::AlreadyExists, "{other:?}");
        let dup = h.provision("other-key", "orders/retry").await.unwrap_err();
        assert_eq!(dup.code(), Code::AlreadyExists, "{dup:?}");
        assert!(dup.message().contains(&first.name), "{dup:?}");
        assert_eq!(h.sandbox.sft_available_sims(), 4);
        h.stop().await;
    }
}
