//! Filters, sort orders and paging.

use std::collections::HashSet;

use esim_proto::catalog::v1 as pb;
use esim_proto::catalog::v1::list_products_request::Country;
use esim_proto::google::r#type::Money;
use esim_proto::r#type::v1::Provider;

use crate::common::{Harness, harnesses};

fn names(products: &[pb::Product]) -> Vec<String> {
    products.iter().map(|p| p.name.clone()).collect()
}

fn nanos(p: &pb::Product) -> i128 {
    let m = p.retail_price.as_ref().unwrap();
    i128::from(m.units) * 1_000_000_000 + i128::from(m.nanos)
}

fn data_key(p: &pb::Product) -> i64 {
    if p.unlimited { i64::MAX } else { p.data_bytes }
}

async fn everything(h: &mut Harness) -> Vec<pb::Product> {
    h.all_pages(pb::ListProductsRequest::default(), 500).await
}

#[tokio::test]
async fn every_order_pages_through_each_product_exactly_once() {
    for mut h in harnesses().await {
        h.sync().await;
        let all = everything(&mut h).await;
        assert!(all.len() > 70, "{}", all.len());
        let expected: HashSet<String> = names(&all).into_iter().collect();
        for order in [
            "",
            "retail_price",
            "retail_price desc",
            "data_bytes",
            " data_bytes   desc ",
        ] {
            let paged = h
                .all_pages(
                    pb::ListProductsRequest {
                        order_by: order.into(),
                        ..Default::default()
                    },
                    7,
                )
                .await;
            let got = names(&paged);
            let unique: HashSet<String> = got.iter().cloned().collect();
            assert_eq!(got.len(), unique.len(), "{order:?}: a product repeated");
            assert_eq!(unique, expected, "{order:?}");
            for pair in paged.windows(2) {
                let (a, b) = (&pair[0], &pair[1]);
                let (ka, kb) = if order.contains("data") {
                    (i128::from(data_key(a)), i128::from(data_key(b)))
                } else {
                    (nanos(a), nanos(b))
                };
                let desc = order.contains("desc");
                let in_order = if desc { ka > kb } else { ka < kb } || (ka == kb && a.name < b.name);
                assert!(in_order, "{order:?}: {} before {}", a.name, b.name);
            }
        }
        h.stop();
    }
}

#[tokio::test]
async fn paging_survives_a_sync_between_pages() {
    for mut h in harnesses().await {
        h.sync().await;
        let all = everything(&mut h).await;
        // Hide two products that sort late, then page: the first page comes before the sync.
        let late: Vec<String> = all[all.len() - 2..]
            .iter()
            .map(|p| p.name.trim_start_matches("products/").to_owned())
            .collect();
        let req = pb::ListProductsRequest {
            page_size: 10,
            ..Default::default()
        };
        let first = h.client.list_products(req.clone()).await.unwrap().into_inner();
        h.hidden.lock().unwrap().extend(late.iter().cloned());
        h.sync().await;
        let mut seen = names(&first.products);
        let mut token = first.next_page_token;
        while !token.is_empty() {
            let page = h
                .client
                .list_products(pb::ListProductsRequest {
                    page_token: token,
                    ..req.clone()
                })
                .await
                .unwrap()
                .into_inner();
            seen.extend(names(&page.products));
            token = page.next_page_token;
        }
        let unique: HashSet<&String> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "no product twice");
        // Every product listed on both sides of the sync was returned; the hidden ones not.
        for p in &all {
            let id = p.name.trim_start_matches("products/");
            assert_eq!(
                seen.contains(&p.name),
                !late.iter().any(|l| l == id),
                "{}",
                p.name
            );
        }
        h.stop();
    }
}

#[tokio::test]
async fn filters_select_what_they_say() {
    for mut h in harnesses().await {
        h.sync().await;
        let all = everything(&mut h).await;

        let by_iso = h
            .all_pages(
                pb::ListProductsRequest {
                    country: Some(Country::CountryCode("jp".into())),
                    ..Default::default()
                },
                5,
            )
            .await;
        let by_mcc = h
            .all_pages(
                pb::ListProductsRequest {
                    country: Some(Country::Mcc("441".into())),
                    ..Default::default()
                },
                5,
            )
            .await;
        assert_eq!(names(&by_iso), names(&by_mcc));
        let expected: Vec<String> = names(
            &all.iter()
                .filter(|p| p.coverage_country_codes.iter().any(|c| c == "JP"))
                .cloned()
                .collect::<Vec<_>>(),
        );
        assert_eq!(names(&by_iso), expected);
        // 3 MP products (one may lack terms), 4 FMS packages and the regional one.
        assert!(by_iso.len() >= 7, "{}", by_iso.len());

        let fms = h
            .all_pages(
                pb::ListProductsRequest {
                    provider: Provider::Fms as i32,
                    ..Default::default()
                },
                50,
            )
            .await;
        assert!(fms.iter().all(|p| p.provider == Provider::Fms as i32));
        assert_eq!(
            fms.len(),
            all.iter().filter(|p| p.provider == Provider::Fms as i32).count()
        );

        let big = h
            .all_pages(
                pb::ListProductsRequest {
                    min_data_bytes: 3 * 1024 * 1024 * 1024,
                    ..Default::default()
                },
                50,
            )
            .await;
        assert!(!big.is_empty());
        assert!(
            big.iter()
                .all(|p| p.unlimited || p.data_bytes >= 3 * 1024 * 1024 * 1024)
        );
        assert_eq!(
            big.len(),
            all.iter()
                .filter(|p| p.unlimited || p.data_bytes >= 3 * 1024 * 1024 * 1024)
                .count()
        );

        let cheap = h
            .all_pages(
                pb::ListProductsRequest {
                    max_retail_price: Some(Money {
                        currency_code: "USD".into(),
                        units: 5,
                        nanos: 0,
                    }),
                    ..Default::default()
                },
                50,
            )
            .await;
        assert!(!cheap.is_empty());
        assert!(cheap.iter().all(|p| nanos(p) <= 5_000_000_000));
        assert_eq!(
            cheap.len(),
            all.iter().filter(|p| nanos(p) <= 5_000_000_000).count()
        );
        let other_currency = h
            .all_pages(
                pb::ListProductsRequest {
                    max_retail_price: Some(Money {
                        currency_code: "EUR".into(),
                        units: 1000,
                        nanos: 0,
                    }),
                    ..Default::default()
                },
                50,
            )
            .await;
        assert!(
            other_currency.is_empty(),
            "USD products are left out of a EUR maximum"
        );

        // Countries with counts, paged.
        let countries = h
            .client
            .list_countries(pb::ListCountriesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .countries;
        assert_eq!(countries.len(), 12);
        let jp = countries.iter().find(|c| c.country_code == "JP").unwrap();
        assert_eq!(jp.name, "countries/JP");
        assert_eq!(jp.display_name, "Japan");
        assert_eq!(jp.mccs, ["440", "441"]);
        assert_eq!(jp.product_count as usize, by_iso.len());
        let first = h
            .client
            .list_countries(pb::ListCountriesRequest {
                page_size: 5,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let second = h
            .client
            .list_countries(pb::ListCountriesRequest {
                page_size: 10,
                page_token: first.next_page_token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let paged: Vec<String> = first
            .countries
            .iter()
            .chain(&second.countries)
            .map(|c| c.country_code.clone())
            .collect();
        let listed: Vec<String> = countries.iter().map(|c| c.country_code.clone()).collect();
        assert_eq!(paged, listed);
        assert!(second.next_page_token.is_empty());

        // Reads were cached; a sync that changes the catalogue drops them.
        assert!(!h.catalog.cache().is_empty());
        let first_product = all[0].name.trim_start_matches("products/").to_owned();
        h.hidden.lock().unwrap().insert(first_product);
        h.sync().await;
        assert!(h.catalog.cache().is_empty());
        h.stop();
    }
}
