//! Between stored rows and API messages: products, runs, plans, rules, money, timestamps, and
//! the opaque page tokens.

use esim_proto::catalog::v1 as pb;
use esim_proto::r#type::v1 as tpb;
use serde::{Deserialize, Serialize};

use crate::entity::{pricing_rule, product, sft_plan, sync_run};
use crate::error::{CatalogError, Result};
use crate::source::{Provider, fnv1a64};
use crate::store::parse_decimal;
use crate::sync::{ProviderResult, outcome};

pub use esim_runtime::api::{money, parse_money, timestamp};

/// Splits a stored comma list.
fn list(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').filter(|x| !x.is_empty())
}

/// A stored product as the API's `Product`.
pub fn product(row: &product::Model) -> Result<pb::Product> {
    let provider = Provider::parse(&row.provider)
        .ok_or_else(|| CatalogError::Internal(format!("stored provider {:?}", row.provider)))?;
    let reference = match provider {
        Provider::Mp => pb::product::ProviderReference::Mp(tpb::MpProductReference {
            goods_id: row.mp_goods_id.unwrap_or_default(),
            product_id: row.mp_product_id.unwrap_or_default(),
            sim_group_code: row.mp_sim_group_code.clone().unwrap_or_default(),
        }),
        Provider::Fms => pb::product::ProviderReference::Fms(tpb::FmsPackageReference {
            package_code: row.fms_package_code.clone().unwrap_or_default(),
            package_id: row.fms_package_id.unwrap_or_default(),
            currency_id: row.fms_currency_id.unwrap_or_default(),
            period_num: row.fms_period_num.unwrap_or_default(),
        }),
        Provider::Sft => pb::product::ProviderReference::Sft(tpb::SftPlanReference {
            plan_id: row.sft_plan_id.clone().unwrap_or_default(),
        }),
    };
    Ok(pb::Product {
        name: format!("products/{}", row.id),
        provider: provider.to_proto() as i32,
        provider_reference: Some(reference),
        display_name: row.display_name.clone(),
        upstream_name: row.upstream_name.clone(),
        data_bytes: row.data_bytes,
        unlimited: row.unlimited,
        validity_days: row.validity_days,
        coverage_country_codes: list(&row.coverage).map(str::to_owned).collect(),
        allowed_cycle_counts: list(&row.cycle_counts).filter_map(|c| c.parse().ok()).collect(),
        wholesale_price: Some(money(parse_decimal(&row.wholesale_amount)?, &row.currency)),
        retail_price: Some(money(parse_decimal(&row.retail_amount)?, &row.currency)),
        available: row.available,
        create_time: Some(timestamp(row.create_time)),
        update_time: Some(timestamp(row.update_time)),
    })
}

fn outcome_of(s: &str) -> pb::SyncOutcome {
    match s {
        outcome::RUNNING => pb::SyncOutcome::Running,
        outcome::SUCCEEDED => pb::SyncOutcome::Succeeded,
        outcome::PARTIALLY_SUCCEEDED => pb::SyncOutcome::PartiallySucceeded,
        outcome::FAILED => pb::SyncOutcome::Failed,
        _ => pb::SyncOutcome::Unspecified,
    }
}

/// A stored run as the API's `SyncRun`.
pub fn sync_run(row: &sync_run::Model) -> pb::SyncRun {
    let trigger = match row.trigger.as_str() {
        "STARTUP" => pb::SyncTrigger::Startup,
        "SCHEDULE" => pb::SyncTrigger::Schedule,
        "MANUAL" => pb::SyncTrigger::Manual,
        _ => pb::SyncTrigger::Unspecified,
    };
    let results: Vec<ProviderResult> = serde_json::from_str(&row.provider_results).unwrap_or_default();
    let count = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
    pb::SyncRun {
        name: format!("syncRuns/{}", row.id),
        trigger: trigger as i32,
        outcome: outcome_of(&row.outcome) as i32,
        provider_results: results
            .iter()
            .map(|r| pb::ProviderSyncResult {
                provider: Provider::parse(&r.provider).map_or(0, |p| p.to_proto() as i32),
                outcome: outcome_of(&r.outcome) as i32,
                added_count: count(r.added),
                updated_count: count(r.updated),
                unchanged_count: count(r.unchanged),
                unavailable_count: count(r.unavailable),
                skipped_count: count(r.skipped),
                error_message: r.error_message.clone(),
            })
            .collect(),
        start_time: Some(timestamp(row.start_time)),
        end_time: row.end_time.map(timestamp),
    }
}

/// A plan's etag: changes with every write.
pub fn etag(row: &sft_plan::Model) -> String {
    let text = format!(
        "{}|{}|{}",
        row.plan_id,
        row.revision,
        row.update_time.to_rfc3339()
    );
    format!("\"{:016x}\"", fnv1a64(text.as_bytes()))
}

/// A stored plan as the API's `SftPlan`.
pub fn sft_plan(row: &sft_plan::Model) -> Result<pb::SftPlan> {
    Ok(pb::SftPlan {
        name: format!("sftPlans/{}", row.plan_id),
        plan_id: row.plan_id.clone(),
        display_name: row.display_name.clone(),
        data_bytes: row.data_bytes,
        unlimited: row.unlimited,
        validity_days: row.validity_days,
        coverage_country_codes: list(&row.coverage).map(str::to_owned).collect(),
        wholesale_price: Some(money(parse_decimal(&row.wholesale_amount)?, &row.currency)),
        create_time: Some(timestamp(row.create_time)),
        update_time: Some(timestamp(row.update_time)),
        etag: etag(row),
    })
}

/// A provider's rule as the API's `PricingRule` (`row` None: the default rule).
pub fn pricing_rule(provider: Provider, row: Option<&pricing_rule::Model>) -> Result<pb::PricingRule> {
    let mut rule = pb::PricingRule {
        name: format!("pricingRules/{}", provider.lower()),
        provider: provider.to_proto() as i32,
        ..Default::default()
    };
    if let Some(row) = row {
        rule.markup_basis_points = row.markup_basis_points;
        rule.fixed_markup = match (&row.fixed_amount, &row.fixed_currency) {
            (Some(amount), Some(currency)) => Some(money(parse_decimal(amount)?, currency)),
            _ => None,
        };
        rule.price_ending_cents = row.price_ending_cents;
        rule.update_time = Some(timestamp(row.update_time));
    }
    Ok(rule)
}

/// Where the last page ended (the page token binds it to its query).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Sort key of the last item, when the order has one besides the id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<i64>,
    /// Id (resource id) of the last item.
    pub id: String,
}

/// `[a-z0-9-]{1,63}`: product and run ids.
pub fn is_lower_id(id: &str) -> bool {
    (1..=63).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// `[A-Za-z0-9_-]{1,63}`: SFT plan ids.
pub fn is_plan_id(id: &str) -> bool {
    (1..=63).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use esim_runtime::api::resource_id;

    use super::*;

    #[test]
    fn ids_follow_their_patterns() {
        assert_eq!(
            resource_id("products/mp-1-2", "products", "name", is_lower_id).unwrap(),
            "mp-1-2"
        );
        assert!(resource_id("products/MP", "products", "name", is_lower_id).is_err());
        assert!(resource_id("products/", "products", "name", is_lower_id).is_err());
        assert!(is_plan_id("PLAN-TRAVEL-1GB_7D") && !is_plan_id("plan/1"));
    }
}
