//! Database helpers shared by the sync and the API: money text, pricing rules, the catalogue
//! version, and product rows. Reads use `.all()` (never `.one()`, which pins SQLite WAL
//! snapshots) and writes use `insert(..).exec*` / `update_many` inside transactions.

use chrono::{DateTime, Utc};
use esim_domain::{CurrencyCode, Money};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter};

use crate::entity::{meta, pricing_rule, product};
use crate::error::{CatalogError, Result};
use crate::pricing::{self, Rule};
use crate::source::{Provider, Reference, SourceProduct, Volume};

/// Now, to the microsecond: what PostgreSQL keeps, so a value read back equals the one written
/// (etags and "unchanged" checks depend on it).
pub fn now() -> DateTime<Utc> {
    use chrono::SubsecRound;
    Utc::now().trunc_subsecs(6)
}

/// The `catalog_meta` row holding the catalogue version.
pub const VERSION_ROW: &str = "version";
/// The `catalog_meta` row holding the sync lease.
pub const LEASE_ROW: &str = "sync_lease";

/// Canonical decimal text: no trailing zeros beyond two decimals (`5` → `5.00`).
pub fn decimal_text(d: Decimal) -> String {
    let mut d = d.normalize();
    if d.scale() < 2 {
        d.rescale(2);
    }
    d.to_string()
}

/// Parses stored decimal text.
pub fn parse_decimal(s: &str) -> Result<Decimal> {
    s.parse()
        .map_err(|e| CatalogError::Internal(format!("stored amount {s:?}: {e}")))
}

/// An amount in nanos (sort and filter key), saturating.
pub fn nanos(d: Decimal) -> i64 {
    (d * Decimal::from(1_000_000_000))
        .trunc()
        .to_i64()
        .unwrap_or(if d.is_sign_negative() { i64::MIN } else { i64::MAX })
}

/// Bumps the catalogue version (every replica's cache drops what it holds) and returns the
/// new one. Inside the writing transaction the row is locked, so the read sees this bump.
pub async fn bump_version<C: ConnectionTrait>(db: &C) -> Result<i64> {
    meta::Entity::update_many()
        .col_expr(meta::Column::Version, Expr::col(meta::Column::Version).add(1))
        .filter(meta::Column::Name.eq(VERSION_ROW))
        .exec(db)
        .await?;
    version(db).await
}

/// The catalogue version.
pub async fn version<C: ConnectionTrait>(db: &C) -> Result<i64> {
    let rows = meta::Entity::find()
        .filter(meta::Column::Name.eq(VERSION_ROW))
        .all(db)
        .await?;
    Ok(rows.first().map_or(0, |r| r.version))
}

/// The stored rule of `provider`, and the rule itself (the default when none is stored).
pub async fn load_rule<C: ConnectionTrait>(
    db: &C,
    provider: Provider,
) -> Result<(Option<pricing_rule::Model>, Rule)> {
    let rows = pricing_rule::Entity::find()
        .filter(pricing_rule::Column::Provider.eq(provider.as_str()))
        .all(db)
        .await?;
    let Some(row) = rows.into_iter().next() else {
        return Ok((None, Rule::default()));
    };
    let rule = rule_of(&row)?;
    Ok((Some(row), rule))
}

/// The rule a stored row describes.
pub fn rule_of(row: &pricing_rule::Model) -> Result<Rule> {
    let fixed_markup = match (&row.fixed_amount, &row.fixed_currency) {
        (Some(amount), Some(currency)) => Some((
            parse_decimal(amount)?,
            currency
                .parse::<CurrencyCode>()
                .map_err(|e| CatalogError::Internal(e.to_string()))?,
        )),
        _ => None,
    };
    Ok(Rule {
        markup_basis_points: row.markup_basis_points,
        fixed_markup,
        price_ending_cents: row.price_ending_cents.and_then(|c| u8::try_from(c).ok()),
    })
}

/// The product row for a source product under `rule`, first seen `now`. The second value is
/// true when the rule's fixed markup could not apply (another currency).
pub fn product_row(sp: &SourceProduct, rule: &Rule, now: DateTime<Utc>) -> (product::Model, bool) {
    let retail = pricing::retail(rule, sp.wholesale.amount(), sp.wholesale.currency());
    let (data_bytes, unlimited) = match sp.volume {
        Volume::Bytes(b) => (i64::try_from(b).unwrap_or(i64::MAX), false),
        Volume::Unlimited => (0, true),
    };
    let mut row = product::Model {
        id: sp.reference.product_id(),
        provider: sp.reference.provider().as_str().to_owned(),
        mp_goods_id: None,
        mp_product_id: None,
        mp_sim_group_code: None,
        fms_package_code: None,
        fms_package_id: None,
        fms_currency_id: None,
        fms_period_num: None,
        sft_plan_id: None,
        display_name: sp.display_name.clone(),
        upstream_name: sp.upstream_name.clone(),
        data_bytes,
        unlimited,
        data_sort: if unlimited { i64::MAX } else { data_bytes },
        validity_days: i32::try_from(sp.validity_days).unwrap_or(i32::MAX),
        coverage: sp
            .coverage
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join(","),
        cycle_counts: sp
            .cycle_counts
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(","),
        currency: sp.wholesale.currency().to_string(),
        wholesale_amount: decimal_text(sp.wholesale.amount()),
        retail_amount: decimal_text(retail.amount),
        retail_nanos: nanos(retail.amount),
        available: true,
        create_time: now,
        update_time: now,
        last_seen_time: now,
    };
    match &sp.reference {
        Reference::Mp {
            goods_id,
            product_id,
            sim_group_code,
        } => {
            row.mp_goods_id = Some(*goods_id);
            row.mp_product_id = Some(*product_id);
            row.mp_sim_group_code = Some(sim_group_code.clone());
        }
        Reference::Fms {
            package_code,
            package_id,
            currency_id,
            period_num,
        } => {
            row.fms_package_code = Some(package_code.clone());
            row.fms_package_id = Some(*package_id);
            row.fms_currency_id = Some(*currency_id);
            row.fms_period_num = Some(*period_num);
        }
        Reference::Sft { plan_id } => row.sft_plan_id = Some(plan_id.clone()),
    }
    (row, !retail.fixed_applied)
}

/// Whether two rows hold the same product (times aside).
pub fn same_content(old: &product::Model, new: &product::Model) -> bool {
    let mut new = new.clone();
    new.create_time = old.create_time;
    new.update_time = old.update_time;
    new.last_seen_time = old.last_seen_time;
    new == *old
}

/// Writes every column of `row` over the stored product with its id.
pub async fn overwrite_product<C: ConnectionTrait>(db: &C, row: product::Model) -> Result<()> {
    let id = row.id.clone();
    product::Entity::update_many()
        .set(row.into_active_model().reset_all())
        .filter(product::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// Recomputes the retail prices of `provider`'s products under `rule`; returns how many
/// changed.
pub async fn reprice<C: ConnectionTrait>(
    db: &C,
    provider: Provider,
    rule: &Rule,
    now: DateTime<Utc>,
) -> Result<usize> {
    let rows = product::Entity::find()
        .filter(product::Column::Provider.eq(provider.as_str()))
        .all(db)
        .await?;
    let mut changed = 0;
    for mut row in rows {
        let wholesale = Money::new(
            parse_decimal(&row.wholesale_amount)?,
            row.currency
                .parse()
                .map_err(|e: esim_domain::DomainError| CatalogError::Internal(e.to_string()))?,
        );
        let retail = pricing::retail(rule, wholesale.amount(), wholesale.currency());
        let text = decimal_text(retail.amount);
        if text != row.retail_amount {
            row.retail_amount = text;
            row.retail_nanos = nanos(retail.amount);
            row.update_time = now;
            overwrite_product(db, row).await?;
            changed += 1;
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_text_and_nanos() {
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        assert_eq!(decimal_text(d("5")), "5.00");
        assert_eq!(decimal_text(d("5.100")), "5.10");
        assert_eq!(decimal_text(d("1.2345")), "1.2345");
        assert_eq!(nanos(d("4.99")), 4_990_000_000);
        assert_eq!(nanos(d("0.000000001")), 1);
    }
}
