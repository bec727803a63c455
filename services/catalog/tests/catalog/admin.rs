//! SFT plans become products at the next sync; pricing rules reprice at once.

use esim_proto::catalog::v1 as pb;
use esim_proto::google::r#type::Money;
use esim_proto::r#type::v1::Provider;
use prost_types::FieldMask;

use crate::common::{amount, harnesses, result_of, violated_field};

fn plan() -> pb::SftPlan {
    pb::SftPlan {
        display_name: "Europe 10 GB / 30 days".into(),
        data_bytes: 10 * 1024 * 1024 * 1024,
        validity_days: 30,
        coverage_country_codes: vec!["fr".into(), "DE".into(), "ES".into()],
        wholesale_price: Some(Money {
            currency_code: "EUR".into(),
            units: 12,
            nanos: 500_000_000,
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn sft_plans_follow_their_configuration() {
    for mut h in harnesses().await {
        let create = pb::CreateSftPlanRequest {
            request_id: "create-eu-10".into(),
            sft_plan_id: "EU_10GB".into(),
            sft_plan: Some(plan()),
        };
        let created = h
            .client
            .create_sft_plan(create.clone())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(created.name, "sftPlans/EU_10GB");
        assert_eq!(created.coverage_country_codes, ["DE", "ES", "FR"]);
        // A retry replays; a second create of the id is refused.
        assert_eq!(
            h.client.create_sft_plan(create).await.unwrap().into_inner(),
            created
        );
        let again = h
            .client
            .create_sft_plan(pb::CreateSftPlanRequest {
                sft_plan_id: "EU_10GB".into(),
                sft_plan: Some(plan()),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(again.code(), tonic::Code::AlreadyExists);
        let bad = h
            .client
            .create_sft_plan(pb::CreateSftPlanRequest {
                sft_plan_id: "X".into(),
                sft_plan: Some(pb::SftPlan {
                    coverage_country_codes: vec!["ZZ".into()],
                    ..plan()
                }),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(violated_field(&bad), "sft_plan.coverage_country_codes");

        let run = h.sync().await;
        assert_eq!(result_of(&run, Provider::Sft).added_count, 1);
        let listed = h
            .all_pages(
                pb::ListProductsRequest {
                    provider: Provider::Sft as i32,
                    ..Default::default()
                },
                10,
            )
            .await;
        assert_eq!(listed.len(), 1);
        let product = &listed[0];
        assert!(
            product.name.starts_with("products/sft-eu-10gb-"),
            "{}",
            product.name
        );
        assert_eq!(product.coverage_country_codes, ["DE", "ES", "FR"]);
        assert_eq!(amount(product.wholesale_price.as_ref().unwrap()), "12.50");
        assert_eq!(product.wholesale_price.as_ref().unwrap().currency_code, "EUR");

        // Update one field with the etag; a stale etag is refused.
        let updated = h
            .client
            .update_sft_plan(pb::UpdateSftPlanRequest {
                sft_plan: Some(pb::SftPlan {
                    name: created.name.clone(),
                    validity_days: 15,
                    etag: created.etag.clone(),
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["validity_days".into()],
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(updated.validity_days, 15);
        assert_eq!(updated.display_name, created.display_name);
        let stale = h
            .client
            .update_sft_plan(pb::UpdateSftPlanRequest {
                sft_plan: Some(pb::SftPlan {
                    name: created.name.clone(),
                    validity_days: 20,
                    etag: created.etag.clone(),
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["validity_days".into()],
                }),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(stale.code(), tonic::Code::Aborted);
        let run = h.sync().await;
        assert_eq!(result_of(&run, Provider::Sft).updated_count, 1);

        let plans = h
            .client
            .list_sft_plans(pb::ListSftPlansRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(plans.sft_plans.len(), 1);

        // Deleting the plan makes the product unavailable at the next sync.
        let deleted = h
            .client
            .delete_sft_plan(pb::DeleteSftPlanRequest {
                name: created.name.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(deleted.product, product.name);
        let run = h.sync().await;
        assert_eq!(result_of(&run, Provider::Sft).unavailable_count, 1);
        let gone = h
            .client
            .get_product(pb::GetProductRequest {
                name: product.name.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!gone.available);
        h.stop();
    }
}

#[tokio::test]
async fn a_pricing_rule_reprices_its_provider_at_once() {
    for mut h in harnesses().await {
        h.sync().await;
        let fms_before = h
            .all_pages(
                pb::ListProductsRequest {
                    provider: Provider::Fms as i32,
                    ..Default::default()
                },
                100,
            )
            .await;
        let mp_before = h
            .all_pages(
                pb::ListProductsRequest {
                    provider: Provider::Mp as i32,
                    ..Default::default()
                },
                100,
            )
            .await;
        let rule = h
            .client
            .update_pricing_rule(pb::UpdatePricingRuleRequest {
                pricing_rule: Some(pb::PricingRule {
                    name: "pricingRules/fms".into(),
                    markup_basis_points: 2000,
                    fixed_markup: Some(Money {
                        currency_code: "USD".into(),
                        units: 0,
                        nanos: 500_000_000,
                    }),
                    price_ending_cents: Some(99),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(rule.provider, Provider::Fms as i32);
        assert!(rule.update_time.is_some());

        let fms_after = h
            .all_pages(
                pb::ListProductsRequest {
                    provider: Provider::Fms as i32,
                    ..Default::default()
                },
                100,
            )
            .await;
        assert_eq!(fms_after.len(), fms_before.len());
        for p in &fms_after {
            let wholesale: rust_decimal::Decimal =
                amount(p.wholesale_price.as_ref().unwrap()).parse().unwrap();
            let retail: rust_decimal::Decimal = amount(p.retail_price.as_ref().unwrap()).parse().unwrap();
            let raw = wholesale * rust_decimal::Decimal::new(12, 1) + rust_decimal::Decimal::new(5, 1);
            assert!(
                retail >= raw && retail < raw + rust_decimal::Decimal::ONE,
                "{}: {wholesale} → {retail}",
                p.name
            );
            assert!(retail.to_string().ends_with(".99"), "{retail}");
        }
        // The Asia package: 15.00 × 1.2 + 0.50 = 18.50 → 18.99.
        let asia = fms_after
            .iter()
            .find(|p| p.upstream_name.starts_with("Asia"))
            .unwrap();
        assert_eq!(amount(asia.retail_price.as_ref().unwrap()), "18.99");
        // Other providers are untouched, and a sync keeps the new prices.
        let mp_after = h
            .all_pages(
                pb::ListProductsRequest {
                    provider: Provider::Mp as i32,
                    ..Default::default()
                },
                100,
            )
            .await;
        assert_eq!(mp_after, mp_before);
        let run = h.sync().await;
        assert_eq!(result_of(&run, Provider::Fms).updated_count, 0);
        let fetched = h
            .client
            .get_pricing_rule(pb::GetPricingRuleRequest {
                name: "pricingRules/fms".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(fetched, rule);
        h.stop();
    }
}
