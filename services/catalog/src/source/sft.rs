//! SFT has no product API: its add-on plans are what the operator configured
//! (`CreateSftPlan` or the config file), read from the catalog's own table.

use std::collections::BTreeSet;

use esim_domain::{CountryCode, Money};
use sea_orm::{DatabaseConnection, EntityTrait, QueryOrder};

use super::{CatalogSource, Provider, Reference, SourceBatch, SourceError, SourceProduct, Volume};
use crate::entity::sft_plan;

/// The SFT source.
#[derive(Debug)]
pub struct SftSource {
    db: DatabaseConnection,
}

impl SftSource {
    /// Plans from `db`.
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

#[async_trait::async_trait]
impl CatalogSource for SftSource {
    fn provider(&self) -> Provider {
        Provider::Sft
    }

    async fn fetch(&self, _request_id: &str) -> Result<SourceBatch, SourceError> {
        let plans = sft_plan::Entity::find()
            .order_by_asc(sft_plan::Column::PlanId)
            .all(&self.db)
            .await
            .map_err(|e| SourceError(format!("cannot read the SFT plans: {e}")))?;
        let mut batch = SourceBatch::default();
        for plan in plans {
            match normalise(&plan) {
                Ok(p) => batch.products.push(p),
                Err(why) => batch.skipped.push(format!("plan {}: {why}", plan.plan_id)),
            }
        }
        Ok(batch)
    }
}

/// A stored plan → a product (plans are validated on write; this re-checks what was stored).
pub fn normalise(plan: &sft_plan::Model) -> Result<SourceProduct, String> {
    let coverage: BTreeSet<CountryCode> = plan
        .coverage
        .split(',')
        .filter(|c| !c.is_empty())
        .map(|c| c.parse::<CountryCode>().map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    if coverage.is_empty() {
        return Err("no coverage".into());
    }
    let wholesale = Money::parse_amount(&plan.wholesale_amount, &plan.currency).map_err(|e| e.to_string())?;
    let volume = if plan.unlimited {
        Volume::Unlimited
    } else {
        Volume::Bytes(u64::try_from(plan.data_bytes).map_err(|_| "negative data volume")?)
    };
    let validity_days = u32::try_from(plan.validity_days)
        .ok()
        .filter(|d| *d >= 1)
        .ok_or("validity below one day")?;
    Ok(SourceProduct {
        reference: Reference::Sft {
            plan_id: plan.plan_id.clone(),
        },
        upstream_name: plan.display_name.clone(),
        display_name: plan.display_name.clone(),
        volume,
        validity_days,
        coverage,
        cycle_counts: vec![1],
        wholesale,
    })
}
