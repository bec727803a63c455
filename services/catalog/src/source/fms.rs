//! FMS: `countryPackageList` (countries by MCC) → `packageList` per country → `detail` per
//! package. A package listed under several countries covers all of them. Calls are made as the
//! catalog's own FMS account (FMS has no anonymous catalogue), created on first use.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use esim_domain::{CountryCode, Money};
use esim_upstream::fms::{FmsClient, FmsCredentials, Package, PackageDetail};
use futures::{StreamExt, TryStreamExt};

use super::{
    CatalogSource, Provider, Reference, SourceBatch, SourceError, SourceProduct, Volume, display_name,
};

/// FMS "Incorrect email or password": the catalogue account does not exist yet.
const CODE_BAD_LOGIN: i64 = 10002;
/// Detail calls in flight at once.
const DETAIL_CONCURRENCY: usize = 4;

/// The FMS source.
#[derive(Debug)]
pub struct FmsSource {
    client: Arc<FmsClient>,
    account: FmsCredentials,
}

impl FmsSource {
    /// A source over `client`, signed in as `account`.
    pub fn new(client: Arc<FmsClient>, account: FmsCredentials) -> Self {
        Self { client, account }
    }

    async fn sign_in(&self, request_id: &str) -> Result<(), SourceError> {
        match self.client.login(&self.account, request_id).await {
            Ok(()) => Ok(()),
            Err(e) if e.upstream_code() == Some(CODE_BAD_LOGIN) => self
                .client
                .email_register(&self.account, request_id)
                .await
                .map_err(|e| SourceError(format!("cannot create the catalogue account: {e}"))),
            Err(e) => Err(SourceError(e.to_string())),
        }
    }
}

#[async_trait::async_trait]
impl CatalogSource for FmsSource {
    fn provider(&self) -> Provider {
        Provider::Fms
    }

    async fn fetch(&self, request_id: &str) -> Result<SourceBatch, SourceError> {
        let err = |e: esim_upstream::UpstreamError| SourceError(e.to_string());
        self.sign_in(request_id).await?;
        let countries = self
            .client
            .country_package_list(&self.account, None, request_id)
            .await
            .map_err(err)?;
        let mut skipped = Vec::new();
        // package id → (package, the MCCs it is listed under)
        let mut packages: BTreeMap<i64, (Package, BTreeSet<esim_domain::Mcc>)> = BTreeMap::new();
        for country in countries {
            let list = self
                .client
                .package_list(&self.account, country.mcc, None, request_id)
                .await
                .map_err(err)?;
            for package in list {
                packages
                    .entry(package.id)
                    .or_insert_with(|| (package, BTreeSet::new()))
                    .1
                    .insert(country.mcc);
            }
        }
        let details: Vec<(i64, Option<PackageDetail>)> = futures::stream::iter(packages.keys().copied())
            .map(|id| async move {
                self.client
                    .detail(&self.account, id, 1, request_id)
                    .await
                    .map(|d| (id, d))
            })
            .buffered(DETAIL_CONCURRENCY)
            .try_collect()
            .await
            .map_err(err)?;
        let mut products = Vec::new();
        for (id, detail) in details {
            let Some((package, mccs)) = packages.remove(&id) else {
                continue;
            };
            let Some(detail) = detail else {
                skipped.push(format!("package {id}: no detail"));
                continue;
            };
            match normalise(&package, &detail, &mccs) {
                Ok(p) => products.push(p),
                Err(why) => skipped.push(format!("package {id} ({}): {why}", package.package_code)),
            }
        }
        Ok(SourceBatch { products, skipped })
    }
}

/// A package, its detail and the MCCs it is listed under → a product, or why not.
pub fn normalise(
    package: &Package,
    detail: &PackageDetail,
    mccs: &BTreeSet<esim_domain::Mcc>,
) -> Result<SourceProduct, String> {
    let table = crate::mcc::table();
    let coverage: BTreeSet<CountryCode> = mccs
        .iter()
        .flat_map(|m| table.countries(*m).iter().copied())
        .collect();
    if coverage.is_empty() {
        return Err("its MCCs name no country".into());
    }
    // The detail is what a pre-order copies; the list row fills what it leaves out.
    let (wholesale, currency_id): (Money, i64) =
        detail.prices.first().copied().ok_or("the detail has no price")?;
    if wholesale.amount().is_sign_negative() {
        return Err("negative price".into());
    }
    let volume = match detail.volume_bytes.or(package.volume_bytes) {
        // FMS writes 0 MB for an uncapped package.
        Some(0) => Volume::Unlimited,
        Some(b) => Volume::Bytes(b),
        None => return Err("no data volume".into()),
    };
    let days = detail
        .days
        .or(package.days)
        .and_then(|d| u32::try_from(d).ok())
        .filter(|d| *d >= 1)
        .ok_or("no validity")?;
    let period_num = i32::try_from(detail.period)
        .ok()
        .filter(|p| *p >= 1)
        .ok_or("periodNum is not a positive count")?;
    let upstream_name = detail
        .name
        .clone()
        .or_else(|| package.name.clone())
        .unwrap_or_default();
    Ok(SourceProduct {
        reference: Reference::Fms {
            package_code: detail.package_code.clone(),
            package_id: detail.id,
            currency_id,
            period_num,
        },
        display_name: display_name(&coverage, volume, days),
        upstream_name,
        volume,
        validity_days: days,
        coverage,
        cycle_counts: vec![1],
        wholesale,
    })
}
