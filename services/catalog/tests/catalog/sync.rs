//! Syncing from the sandbox: products, coverage, volumes, prices; idempotent re-sync;
//! vanished products; an upstream outage; concurrent syncs.

use esim_proto::catalog::v1 as pb;
use esim_proto::catalog::v1::product::ProviderReference;
use esim_proto::r#type::v1::Provider;
use esim_sandbox::Fault;

use crate::common::{Harness, MP_WITHOUT_TERMS, amount, harnesses, mp_price, result_of};

const GIB: i64 = 1024 * 1024 * 1024;
const MIB: i64 = 1024 * 1024;

async fn get(h: &mut Harness, name: &str) -> pb::Product {
    h.client
        .get_product(pb::GetProductRequest { name: name.into() })
        .await
        .unwrap()
        .into_inner()
}

async fn count_all(h: &mut Harness, show_unavailable: bool) -> usize {
    h.all_pages(
        pb::ListProductsRequest {
            show_unavailable,
            ..Default::default()
        },
        500,
    )
    .await
    .len()
}

#[tokio::test]
async fn sync_from_the_sandbox_normalises_every_provider() {
    for mut h in harnesses().await {
        let run = h.sync().await;
        assert_eq!(
            run.outcome,
            pb::SyncOutcome::Succeeded as i32,
            "{}: {run:?}",
            h.label
        );
        assert_eq!(run.trigger, pb::SyncTrigger::Manual as i32);
        assert!(run.end_time.is_some());

        let mp_total = h.mp_terms.len() as i32;
        let mp = result_of(&run, Provider::Mp);
        assert_eq!(mp.outcome, pb::SyncOutcome::Succeeded as i32);
        assert_eq!(mp.added_count, mp_total - 1, "{mp:?}");
        assert_eq!(mp.skipped_count, 1, "{mp:?}");
        let skipped_id = h.mp_terms[MP_WITHOUT_TERMS].0.product_id;
        assert!(mp.error_message.contains(&skipped_id.to_string()), "{mp:?}");
        // 12 countries × 4 packages + one regional package.
        let fms = result_of(&run, Provider::Fms);
        assert_eq!((fms.added_count, fms.skipped_count), (49, 0), "{fms:?}");
        let sft = result_of(&run, Provider::Sft);
        assert_eq!(sft.added_count, 0);

        // An MP product: coverage from its MCC, volume and validity from its name, the
        // configured price (retail = wholesale under the default rule).
        let (row, _) = h
            .mp_terms
            .iter()
            .find(|(p, t)| {
                t.is_some()
                    && p.product_name.as_deref().unwrap_or("").contains("5GB/30days")
                    && p.cover_mcc.map(|m| m.to_string()) == Some("440".into())
            })
            .cloned()
            .expect("a Japanese 5GB product in the sandbox");
        let name = format!("products/mp-{}-{}", row.goods_id, row.product_id);
        let product = get(&mut h, &name).await;
        assert_eq!(product.provider, Provider::Mp as i32);
        assert_eq!(product.coverage_country_codes, ["JP"]);
        assert_eq!(product.data_bytes, 5 * GIB);
        assert!(!product.unlimited);
        assert_eq!(product.validity_days, 30);
        assert_eq!(product.allowed_cycle_counts, [3, 4]);
        assert_eq!(product.display_name, "Japan 5 GB / 30 days");
        let wholesale = product.wholesale_price.clone().unwrap();
        assert_eq!(wholesale.currency_code, "USD");
        assert_eq!(amount(&wholesale), mp_price(row.product_id));
        assert_eq!(
            amount(&product.retail_price.clone().unwrap()),
            mp_price(row.product_id)
        );
        assert!(product.available);
        match product.provider_reference {
            Some(ProviderReference::Mp(r)) => {
                assert_eq!((r.goods_id, r.product_id), (row.goods_id, row.product_id));
                assert_eq!(Some(r.sim_group_code), row.sim_group_code);
            }
            other => panic!("{other:?}"),
        }

        // The FMS regional package covers the six countries it is listed under.
        let all = h
            .all_pages(
                pb::ListProductsRequest {
                    provider: Provider::Fms as i32,
                    ..Default::default()
                },
                100,
            )
            .await;
        assert_eq!(all.len(), 49);
        let asia = all
            .iter()
            .find(|p| p.upstream_name.starts_with("Asia 6 countries"))
            .expect("the regional package");
        assert_eq!(asia.coverage_country_codes, ["CN", "HK", "JP", "MY", "SG", "TH"]);
        assert_eq!(asia.data_bytes, 5120 * MIB);
        assert_eq!(asia.validity_days, 15);
        assert_eq!(amount(asia.wholesale_price.as_ref().unwrap()), "15.00");
        assert_eq!(asia.display_name, "6 countries 5 GB / 15 days");
        match &asia.provider_reference {
            Some(ProviderReference::Fms(r)) => {
                assert!(r.package_code.starts_with("LP"));
                assert_eq!((r.currency_id, r.period_num), (2, 1));
                assert_eq!(asia.name, format!("products/fms-{}", r.package_id));
            }
            other => panic!("{other:?}"),
        }
        let day_pass = all
            .iter()
            .find(|p| p.upstream_name == "Japan 500MB 1 Day")
            .unwrap();
        assert_eq!(day_pass.data_bytes, 500 * MIB);
        assert_eq!(day_pass.coverage_country_codes, ["JP"]);

        // A second identical sync changes nothing.
        let before = get(&mut h, &name).await;
        let again = h.sync().await;
        assert_eq!(again.outcome, pb::SyncOutcome::Succeeded as i32);
        for (provider, unchanged) in [(Provider::Mp, mp_total - 1), (Provider::Fms, 49)] {
            let r = result_of(&again, provider);
            assert_eq!(
                (
                    r.added_count,
                    r.updated_count,
                    r.unavailable_count,
                    r.unchanged_count
                ),
                (0, 0, 0, unchanged),
                "{}: {r:?}",
                h.label
            );
        }
        assert_eq!(get(&mut h, &name).await.update_time, before.update_time);

        // A product that disappears upstream becomes unavailable, never deleted.
        h.hidden
            .lock()
            .unwrap()
            .insert(name.trim_start_matches("products/").to_owned());
        let listed_before = count_all(&mut h, false).await;
        let third = h.sync().await;
        assert_eq!(result_of(&third, Provider::Mp).unavailable_count, 1);
        let gone = get(&mut h, &name).await;
        assert!(!gone.available);
        assert_eq!(gone.create_time, before.create_time);
        assert_eq!(count_all(&mut h, false).await, listed_before - 1);
        assert_eq!(count_all(&mut h, true).await, listed_before);
        // ... and comes back when it is listed again.
        h.hidden.lock().unwrap().clear();
        let fourth = h.sync().await;
        assert_eq!(result_of(&fourth, Provider::Mp).updated_count, 1);
        assert!(get(&mut h, &name).await.available);
        h.stop();
    }
}

#[tokio::test]
async fn an_upstream_outage_keeps_the_last_good_catalogue() {
    for mut h in harnesses().await {
        h.sync().await;
        let listed = count_all(&mut h, false).await;
        h.sandbox.set_fault("mp.productList", Fault::error_500());
        let run = h.sync().await;
        assert_eq!(run.outcome, pb::SyncOutcome::PartiallySucceeded as i32, "{run:?}");
        let mp = result_of(&run, Provider::Mp);
        assert_eq!(mp.outcome, pb::SyncOutcome::Failed as i32);
        assert!(mp.error_message.contains("productList"), "{mp:?}");
        assert!(mp.error_message.contains("500"), "{mp:?}");
        assert_eq!(mp.unavailable_count, 0);
        assert_eq!(
            result_of(&run, Provider::Fms).outcome,
            pb::SyncOutcome::Succeeded as i32
        );
        // Still served, every MP product still available.
        assert_eq!(count_all(&mut h, false).await, listed);

        // Every upstream down (SFT needs none): FAILED, still served.
        h.sandbox.set_fault("*", Fault::error_500());
        let run = h
            .client
            .sync_catalog(pb::SyncCatalogRequest {
                providers: vec![Provider::Mp as i32, Provider::Fms as i32],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(run.outcome, pb::SyncOutcome::Failed as i32, "{run:?}");
        assert_eq!(count_all(&mut h, false).await, listed);
        h.sandbox.clear_faults();

        // The runs are recorded, newest first.
        let runs = h
            .client
            .list_sync_runs(pb::ListSyncRunsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .sync_runs;
        assert_eq!(runs.len(), 3);
        assert_eq!(runs[0].name, run.name);
        assert_eq!(runs[2].outcome, pb::SyncOutcome::Succeeded as i32);
        let fetched = h
            .client
            .get_sync_run(pb::GetSyncRunRequest {
                name: run.name.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(fetched, run);
        // Paging through the runs.
        let first = h
            .client
            .list_sync_runs(pb::ListSyncRunsRequest {
                page_size: 2,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(first.sync_runs.len(), 2);
        let second = h
            .client
            .list_sync_runs(pb::ListSyncRunsRequest {
                page_size: 2,
                page_token: first.next_page_token,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(second.sync_runs.len(), 1);
        assert!(second.next_page_token.is_empty());
        h.stop();
    }
}

#[tokio::test]
async fn concurrent_syncs_join_one_run_and_request_ids_replay() {
    for mut h in harnesses().await {
        // Slow the upstream so the two calls overlap.
        h.sandbox.set_fault("mp.productList", Fault::latency(300));
        let (mut a, mut b) = (h.client.clone(), h.client.clone());
        let (ra, rb) = tokio::join!(
            a.sync_catalog(pb::SyncCatalogRequest::default()),
            b.sync_catalog(pb::SyncCatalogRequest::default())
        );
        let (ra, rb) = (ra.unwrap().into_inner(), rb.unwrap().into_inner());
        assert_eq!(ra.name, rb.name, "{}", h.label);
        assert_eq!(h.sandbox.call_count("mp.productList"), 1);
        h.sandbox.clear_faults();

        let req = pb::SyncCatalogRequest {
            request_id: "0b7a0a5e-sync".into(),
            providers: vec![Provider::Sft as i32],
        };
        let first = h.client.sync_catalog(req.clone()).await.unwrap().into_inner();
        assert_eq!(first.provider_results.len(), 1);
        let replay = h.client.sync_catalog(req.clone()).await.unwrap().into_inner();
        assert_eq!(replay.name, first.name);
        let reused = h
            .client
            .sync_catalog(pb::SyncCatalogRequest {
                providers: vec![Provider::Mp as i32],
                ..req
            })
            .await
            .unwrap_err();
        assert_eq!(reused.code(), tonic::Code::AlreadyExists);
        h.stop();
    }
}
