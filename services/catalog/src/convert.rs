//! Between stored rows and API messages: products, runs, plans, rules, money, timestamps, and
//! the opaque page tokens.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use esim_domain::{CurrencyCode, Money};
use esim_proto::catalog::v1 as pb;
use esim_proto::google::r#type::Money as PbMoney;
use esim_proto::r#type::v1 as tpb;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::entity::{pricing_rule, product, sft_plan, sync_run};
use crate::error::{CatalogError, Result};
use crate::source::{Provider, fnv1a64};
use crate::store::parse_decimal;
use crate::sync::{ProviderResult, outcome};

/// A timestamp message.
pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// A decimal amount as `google.type.Money` (nanos precision; finer digits are cut).
pub fn money(amount: Decimal, currency: &str) -> PbMoney {
    let amount = amount.round_dp_with_strategy(9, rust_decimal::RoundingStrategy::ToZero);
    let units = amount.trunc();
    let nanos = ((amount - units) * Decimal::from(1_000_000_000)).trunc();
    PbMoney {
        currency_code: currency.to_owned(),
        units: i64::try_from(units).unwrap_or(i64::MAX),
        nanos: i32::try_from(nanos).unwrap_or(0),
    }
}

/// Reads a request's `google.type.Money`: a valid currency, consistent signs, nanos in range,
/// not negative. `field` names it in errors.
pub fn parse_money(m: &PbMoney, field: &str) -> Result<Money> {
    let currency: CurrencyCode = m.currency_code.parse().map_err(|_| {
        CatalogError::invalid(
            format!("{field}.currency_code"),
            format!("{:?} is not an ISO 4217 currency code", m.currency_code),
        )
    })?;
    if !(-999_999_999..=999_999_999).contains(&m.nanos) {
        return Err(CatalogError::invalid(
            format!("{field}.nanos"),
            "must be between -999999999 and 999999999",
        ));
    }
    if (m.units > 0 && m.nanos < 0) || (m.units < 0 && m.nanos > 0) {
        return Err(CatalogError::invalid(
            format!("{field}.nanos"),
            "units and nanos must have the same sign",
        ));
    }
    if m.units < 0 || m.nanos < 0 {
        return Err(CatalogError::invalid(field, "must not be negative"));
    }
    let amount = (Decimal::from(m.units) + Decimal::new(i64::from(m.nanos), 9)).normalize();
    Ok(Money::new(amount, currency))
}

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

/// The content of a page token: which query it belongs to and where the last page ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Fingerprint of the query (filters and order; not the page size).
    pub q: String,
    /// Sort key of the last item, when the order has one besides the id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<i64>,
    /// Id (resource id) of the last item.
    pub id: String,
}

/// The fingerprint of a query's canonical text.
pub fn fingerprint(query: &str) -> String {
    format!("{:016x}", fnv1a64(query.as_bytes()))
}

/// Encodes a cursor as an opaque token.
pub fn encode_token(cursor: &Cursor) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(cursor).unwrap_or_default())
}

/// Decodes `token` for the query with `fingerprint`: empty → `None`; garbage or another
/// query's token → INVALID_ARGUMENT on `page_token`.
pub fn decode_token(token: &str, fingerprint: &str) -> Result<Option<Cursor>> {
    if token.is_empty() {
        return Ok(None);
    }
    let cursor: Cursor = URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| CatalogError::invalid("page_token", "malformed page token"))?;
    if cursor.q != fingerprint {
        return Err(CatalogError::invalid(
            "page_token",
            "foreign page token: it belongs to a query with other filters or order",
        ));
    }
    Ok(Some(cursor))
}

/// `page_size`: 0 → `default`, 1..=`max` as is, anything else INVALID_ARGUMENT.
pub fn page_size(size: i32, default: u64, max: u64) -> Result<u64> {
    match size {
        0 => Ok(default),
        s if s > 0 && (s as u64) <= max => Ok(s as u64),
        _ => Err(CatalogError::invalid(
            "page_size",
            format!("must be between 0 and {max} (0 means {default})"),
        )),
    }
}

/// The id of `prefix/{id}`, or INVALID_ARGUMENT on `field`. `valid` checks the id.
pub fn resource_id<'a>(
    name: &'a str,
    prefix: &str,
    field: &str,
    valid: impl Fn(&str) -> bool,
) -> Result<&'a str> {
    if name.is_empty() {
        return Err(CatalogError::invalid(field, "is required"));
    }
    name.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('/'))
        .filter(|id| valid(id))
        .ok_or_else(|| CatalogError::invalid(field, format!("must be {prefix}/{{id}} with a valid id")))
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
    use super::*;

    #[test]
    fn money_round_trips() {
        let m = money("4.99".parse().unwrap(), "USD");
        assert_eq!((m.units, m.nanos), (4, 990_000_000));
        let back = parse_money(&m, "x").unwrap();
        assert_eq!(back.amount().to_string(), "4.99");
        let neg = PbMoney {
            currency_code: "USD".into(),
            units: -1,
            nanos: 0,
        };
        assert!(
            matches!(parse_money(&neg, "max_retail_price"), Err(CatalogError::InvalidArgument { field, .. }) if field == "max_retail_price")
        );
        let bad = PbMoney {
            currency_code: "usd".into(),
            units: 1,
            nanos: 0,
        };
        assert!(parse_money(&bad, "m").is_err());
    }

    #[test]
    fn tokens() {
        let c = Cursor {
            q: fingerprint("a"),
            k: Some(5),
            id: "mp-1-2".into(),
        };
        let t = encode_token(&c);
        assert_eq!(decode_token(&t, &fingerprint("a")).unwrap(), Some(c));
        assert!(decode_token(&t, &fingerprint("b")).is_err());
        assert!(decode_token("!!", &fingerprint("a")).is_err());
        assert_eq!(decode_token("", "x").unwrap(), None);
    }

    #[test]
    fn sizes_and_names() {
        assert_eq!(page_size(0, 50, 500).unwrap(), 50);
        assert_eq!(page_size(500, 50, 500).unwrap(), 500);
        assert!(page_size(501, 50, 500).is_err());
        assert!(page_size(-1, 50, 500).is_err());
        assert_eq!(
            resource_id("products/mp-1-2", "products", "name", is_lower_id).unwrap(),
            "mp-1-2"
        );
        assert!(resource_id("products/MP", "products", "name", is_lower_id).is_err());
        assert!(resource_id("product/mp", "products", "name", is_lower_id).is_err());
        assert!(resource_id("products/", "products", "name", is_lower_id).is_err());
    }
}
