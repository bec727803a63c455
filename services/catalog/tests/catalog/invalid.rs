//! Bad input gives INVALID_ARGUMENT naming the field, and changes nothing.

use esim_proto::catalog::v1 as pb;
use esim_proto::catalog::v1::list_products_request::Country;
use esim_proto::google::r#type::Money;

use crate::common::{harnesses, violated_field};

#[tokio::test]
async fn bad_input_names_the_field() {
    for mut h in harnesses().await {
        h.sync().await;
        let usd = |units, nanos| Money {
            currency_code: "USD".into(),
            units,
            nanos,
        };
        let cases: Vec<(pb::ListProductsRequest, &str)> = vec![
            (
                pb::ListProductsRequest {
                    country: Some(Country::CountryCode("XX".into())),
                    ..Default::default()
                },
                "country_code",
            ),
            (
                pb::ListProductsRequest {
                    country: Some(Country::CountryCode("JPN".into())),
                    ..Default::default()
                },
                "country_code",
            ),
            (
                pb::ListProductsRequest {
                    country: Some(Country::Mcc("999".into())),
                    ..Default::default()
                },
                "mcc",
            ),
            (
                pb::ListProductsRequest {
                    country: Some(Country::Mcc("44".into())),
                    ..Default::default()
                },
                "mcc",
            ),
            (
                pb::ListProductsRequest {
                    max_retail_price: Some(usd(-1, 0)),
                    ..Default::default()
                },
                "max_retail_price",
            ),
            (
                pb::ListProductsRequest {
                    max_retail_price: Some(usd(0, -5)),
                    ..Default::default()
                },
                "max_retail_price",
            ),
            (
                pb::ListProductsRequest {
                    max_retail_price: Some(Money {
                        currency_code: "dollars".into(),
                        units: 1,
                        nanos: 0,
                    }),
                    ..Default::default()
                },
                "max_retail_price.currency_code",
            ),
            (
                pb::ListProductsRequest {
                    page_size: 501,
                    ..Default::default()
                },
                "page_size",
            ),
            (
                pb::ListProductsRequest {
                    page_size: -1,
                    ..Default::default()
                },
                "page_size",
            ),
            (
                pb::ListProductsRequest {
                    min_data_bytes: -1,
                    ..Default::default()
                },
                "min_data_bytes",
            ),
            (
                pb::ListProductsRequest {
                    order_by: "name".into(),
                    ..Default::default()
                },
                "order_by",
            ),
            (
                pb::ListProductsRequest {
                    provider: 42,
                    ..Default::default()
                },
                "provider",
            ),
            (
                pb::ListProductsRequest {
                    page_token: "not-a-token".into(),
                    ..Default::default()
                },
                "page_token",
            ),
        ];
        for (req, field) in cases {
            let status = h.client.list_products(req.clone()).await.unwrap_err();
            assert_eq!(violated_field(&status), field, "{req:?}: {status:?}");
        }

        // A token from another query (other order, other filter) is foreign.
        let page = h
            .client
            .list_products(pb::ListProductsRequest {
                page_size: 3,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!page.next_page_token.is_empty());
        for other in [
            pb::ListProductsRequest {
                order_by: "data_bytes".into(),
                ..Default::default()
            },
            pb::ListProductsRequest {
                country: Some(Country::CountryCode("JP".into())),
                ..Default::default()
            },
        ] {
            let status = h
                .client
                .list_products(pb::ListProductsRequest {
                    page_token: page.next_page_token.clone(),
                    ..other
                })
                .await
                .unwrap_err();
            assert_eq!(violated_field(&status), "page_token");
            assert!(status.message().contains("foreign"), "{status:?}");
        }
        let status = h
            .client
            .list_countries(pb::ListCountriesRequest {
                page_token: page.next_page_token.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(violated_field(&status), "page_token");
        let status = h
            .client
            .list_countries(pb::ListCountriesRequest {
                page_size: 501,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(violated_field(&status), "page_size");

        // Malformed names, and a well-formed one that does not exist.
        for name in ["", "products/UPPER", "product/mp-1-1", "products/"] {
            let status = h
                .client
                .get_product(pb::GetProductRequest { name: name.into() })
                .await
                .unwrap_err();
            assert_eq!(violated_field(&status), "name", "{name:?}");
        }
        let status = h
            .client
            .get_product(pb::GetProductRequest {
                name: "products/mp-0-0".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound);
        let status = h
            .client
            .get_sync_run(pb::GetSyncRunRequest {
                name: "runs/x".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(violated_field(&status), "name");
        let status = h
            .client
            .sync_catalog(pb::SyncCatalogRequest {
                request_id: "has spaces".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(violated_field(&status), "request_id");
        let status = h
            .client
            .sync_catalog(pb::SyncCatalogRequest {
                providers: vec![0],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(violated_field(&status), "providers");

        // Bad rules and plans change nothing.
        let status = h
            .client
            .update_pricing_rule(pb::UpdatePricingRuleRequest {
                pricing_rule: Some(pb::PricingRule {
                    name: "pricingRules/mp".into(),
                    markup_basis_points: -1,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(violated_field(&status), "pricing_rule.markup_basis_points");
        let status = h
            .client
            .update_pricing_rule(pb::UpdatePricingRuleRequest {
                pricing_rule: Some(pb::PricingRule {
                    name: "pricingRules/xyz".into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(violated_field(&status), "pricing_rule.name");
        let rule = h
            .client
            .get_pricing_rule(pb::GetPricingRuleRequest {
                name: "pricingRules/mp".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(rule.markup_basis_points, 0);
        assert!(rule.update_time.is_none(), "still the default rule");
        h.stop();
    }
}
