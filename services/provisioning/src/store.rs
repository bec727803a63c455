//! Database helpers. Reads use `.all()` (never `.one()`, which pins SQLite WAL snapshots) and
//! writes use `insert(..).exec*` / `update_many`, as DESIGN.md asks for hot paths.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder,
};

use crate::convert::AddonState;
use crate::entity::{addon, esim, idempotency, sim_claim};
use crate::error::Result;

/// Now, to the microsecond: what PostgreSQL keeps, so a row read back equals the row written.
pub fn now() -> DateTime<Utc> {
    use chrono::SubsecRound;
    Utc::now().trunc_subsecs(6)
}

/// Inserts `row` unless a unique constraint (any of them) already holds an equal key;
/// returns whether it was inserted.
pub async fn insert_esim<C: ConnectionTrait>(db: &C, row: esim::Model) -> Result<bool> {
    let n = esim::Entity::insert(row.into_active_model())
        .on_conflict(OnConflict::new().do_nothing().to_owned())
        .exec_without_returning(db)
        .await?;
    Ok(n == 1)
}

/// See [`insert_esim`].
pub async fn insert_addon<C: ConnectionTrait>(db: &C, row: addon::Model) -> Result<bool> {
    let n = addon::Entity::insert(row.into_active_model())
        .on_conflict(OnConflict::new().do_nothing().to_owned())
        .exec_without_returning(db)
        .await?;
    Ok(n == 1)
}

/// Claims a SIM: inserts its claim unless the endpoint is claimed already.
pub async fn insert_claim<C: ConnectionTrait>(db: &C, row: sim_claim::Model) -> Result<bool> {
    let n = sim_claim::Entity::insert(row.into_active_model())
        .on_conflict(OnConflict::new().do_nothing().to_owned())
        .exec_without_returning(db)
        .await?;
    Ok(n == 1)
}

/// The eSIM with id `id`.
pub async fn esim<C: ConnectionTrait>(db: &C, id: &str) -> Result<Option<esim::Model>> {
    Ok(esim::Entity::find()
        .filter(esim::Column::Id.eq(id))
        .all(db)
        .await?
        .into_iter()
        .next())
}

/// The eSIM created by request id `request_id`.
pub async fn esim_by_request<C: ConnectionTrait>(db: &C, request_id: &str) -> Result<Option<esim::Model>> {
    Ok(esim::Entity::find()
        .filter(esim::Column::RequestId.eq(request_id))
        .all(db)
        .await?
        .into_iter()
        .next())
}

/// The live (not failed) eSIM of an order.
pub async fn live_esim_of_order<C: ConnectionTrait>(db: &C, order: &str) -> Result<Option<esim::Model>> {
    Ok(esim::Entity::find()
        .filter(esim::Column::OrderName.eq(order))
        .filter(esim::Column::State.ne("failed"))
        .all(db)
        .await?
        .into_iter()
        .next())
}

/// The add-on `id` of eSIM `esim_id`.
pub async fn addon<C: ConnectionTrait>(db: &C, esim_id: &str, id: &str) -> Result<Option<addon::Model>> {
    Ok(addon::Entity::find()
        .filter(addon::Column::Id.eq(id))
        .filter(addon::Column::EsimId.eq(esim_id))
        .all(db)
        .await?
        .into_iter()
        .next())
}

/// The add-on created by request id `request_id`.
pub async fn addon_by_request<C: ConnectionTrait>(db: &C, request_id: &str) -> Result<Option<addon::Model>> {
    Ok(addon::Entity::find()
        .filter(addon::Column::RequestId.eq(request_id))
        .all(db)
        .await?
        .into_iter()
        .next())
}

/// Whether an add-on with SFT `uniqueId` is recorded.
pub async fn addon_unique_id_known<C: ConnectionTrait>(db: &C, unique_id: &str) -> Result<bool> {
    // `unique_id` is unique: no LIMIT needed (see `esim_runtime::db`).
    Ok(!addon::Entity::find()
        .filter(addon::Column::UniqueId.eq(unique_id))
        .all(db)
        .await?
        .is_empty())
}

/// Add-ons of an endpoint that count against SFT's limit: active and not past their end.
pub async fn active_addons_of_endpoint<C: ConnectionTrait>(
    db: &C,
    endpoint: &str,
    now: DateTime<Utc>,
) -> Result<usize> {
    let rows = addon::Entity::find()
        .filter(addon::Column::SftEndpointId.eq(endpoint))
        .filter(addon::Column::State.is_in([AddonState::Active.as_str(), AddonState::Pending.as_str()]))
        .all(db)
        .await?;
    Ok(rows
        .iter()
        .filter(|a| a.validity_end_time.is_none_or(|end| end > now))
        .count())
}

/// Which of `endpoints` are claimed (in any claim status).
pub async fn claimed_among<C: ConnectionTrait>(db: &C, endpoints: &[String]) -> Result<Vec<String>> {
    if endpoints.is_empty() {
        return Ok(Vec::new());
    }
    Ok(sim_claim::Entity::find()
        .filter(sim_claim::Column::SftEndpointId.is_in(endpoints.iter().cloned()))
        .all(db)
        .await?
        .into_iter()
        .map(|c| c.sft_endpoint_id)
        .collect())
}

/// The claim held by eSIM `esim_id`, if any.
pub async fn claim_of<C: ConnectionTrait>(db: &C, esim_id: &str) -> Result<Option<sim_claim::Model>> {
    Ok(sim_claim::Entity::find()
        .filter(sim_claim::Column::EsimId.eq(esim_id))
        .order_by_desc(sim_claim::Column::CreateTime)
        .all(db)
        .await?
        .into_iter()
        .next())
}

/// Sets the status (and reason) of eSIM `esim_id`'s claim on `endpoint`.
pub async fn set_claim_status<C: ConnectionTrait>(
    db: &C,
    endpoint: &str,
    esim_id: &str,
    status: &str,
    reason: &str,
) -> Result<()> {
    sim_claim::Entity::update_many()
        .col_expr(sim_claim::Column::Status, Expr::value(status))
        .col_expr(sim_claim::Column::Reason, Expr::value(reason))
        .col_expr(sim_claim::Column::UpdateTime, Expr::value(now()))
        .filter(sim_claim::Column::SftEndpointId.eq(endpoint))
        .filter(sim_claim::Column::EsimId.eq(esim_id))
        .exec(db)
        .await?;
    Ok(())
}

/// Releases eSIM `esim_id`'s claim on `endpoint`: the SIM can be claimed again.
pub async fn release_claim<C: ConnectionTrait>(db: &C, endpoint: &str, esim_id: &str) -> Result<()> {
    sim_claim::Entity::delete_many()
        .filter(sim_claim::Column::SftEndpointId.eq(endpoint))
        .filter(sim_claim::Column::EsimId.eq(esim_id))
        .exec(db)
        .await?;
    Ok(())
}

/// The SIM claims, most recently changed first; only those in `status` if given.
pub async fn claims<C: ConnectionTrait>(db: &C, status: Option<&str>) -> Result<Vec<sim_claim::Model>> {
    let mut query = sim_claim::Entity::find()
        .order_by_desc(sim_claim::Column::UpdateTime)
        .order_by_asc(sim_claim::Column::SftEndpointId);
    if let Some(status) = status {
        query = query.filter(sim_claim::Column::Status.eq(status));
    }
    Ok(query.all(db).await?)
}

/// Deletes the claim on `endpoint` if it is quarantined; returns it, or `None` if there was no
/// quarantined claim on it.
pub async fn release_quarantined<C: ConnectionTrait>(
    db: &C,
    endpoint: &str,
) -> Result<Option<sim_claim::Model>> {
    let Some(claim) = sim_claim::Entity::find_by_id(endpoint.to_owned())
        .filter(sim_claim::Column::Status.eq("quarantined"))
        .all(db)
        .await?
        .into_iter()
        .next()
    else {
        return Ok(None);
    };
    let deleted = sim_claim::Entity::delete_many()
        .filter(sim_claim::Column::SftEndpointId.eq(endpoint))
        .filter(sim_claim::Column::Status.eq("quarantined"))
        .exec(db)
        .await?;
    Ok((deleted.rows_affected == 1).then_some(claim))
}

/// Overwrites every column of a stored eSIM with `row`.
pub async fn save_esim<C: ConnectionTrait>(db: &C, row: &esim::Model) -> Result<()> {
    esim::Entity::update_many()
        .set(row.clone().into_active_model().reset_all())
        .filter(esim::Column::Id.eq(row.id.clone()))
        .exec(db)
        .await?;
    Ok(())
}

/// Overwrites `row` only if the stored state is still `expected_state`; returns whether it did
/// (another call changed the eSIM in between otherwise).
pub async fn save_esim_if_state<C: ConnectionTrait>(
    db: &C,
    row: &esim::Model,
    expected_state: &str,
) -> Result<bool> {
    let result = esim::Entity::update_many()
        .set(row.clone().into_active_model().reset_all())
        .filter(esim::Column::Id.eq(row.id.clone()))
        .filter(esim::Column::State.eq(expected_state))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Overwrites every column of a stored add-on with `row`.
pub async fn save_addon<C: ConnectionTrait>(db: &C, row: &addon::Model) -> Result<()> {
    addon::Entity::update_many()
        .set(row.clone().into_active_model().reset_all())
        .filter(addon::Column::Id.eq(row.id.clone()))
        .exec(db)
        .await?;
    Ok(())
}

/// Takes the lease of an unfinished provision if nobody holds it; returns whether we got it.
pub async fn take_lease<C: ConnectionTrait>(db: &C, id: &str, until: DateTime<Utc>) -> Result<bool> {
    let now = now();
    let result = esim::Entity::update_many()
        .col_expr(esim::Column::LeaseUntil, Expr::value(until))
        .filter(esim::Column::Id.eq(id))
        .filter(esim::Column::Step.ne("done"))
        .filter(
            Condition::any()
                .add(esim::Column::LeaseUntil.is_null())
                .add(esim::Column::LeaseUntil.lt(now)),
        )
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Clears the lease `until` on eSIM `id`, unless another call has taken the lease since;
/// returns whether it was ours.
pub async fn release_lease<C: ConnectionTrait>(db: &C, id: &str, until: DateTime<Utc>) -> Result<bool> {
    let result = esim::Entity::update_many()
        .col_expr(esim::Column::LeaseUntil, Expr::value(None::<DateTime<Utc>>))
        .filter(esim::Column::Id.eq(id))
        .filter(esim::Column::LeaseUntil.eq(until))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// A stored idempotent answer: `(request hash, response)`.
pub async fn idempotent_answer<C: ConnectionTrait>(db: &C, key: &str) -> Result<Option<(String, Vec<u8>)>> {
    Ok(idempotency::Entity::find()
        .filter(idempotency::Column::Key.eq(key))
        .all(db)
        .await?
        .into_iter()
        .next()
        .map(|row| (row.request_hash, row.response)))
}

/// Stores an idempotent answer (the first one wins).
pub async fn store_answer<C: ConnectionTrait>(
    db: &C,
    key: &str,
    hash: &str,
    response: Vec<u8>,
) -> Result<()> {
    idempotency::Entity::insert(
        idempotency::Model {
            key: key.to_owned(),
            request_hash: hash.to_owned(),
            response,
            create_time: now(),
        }
        .into_active_model(),
    )
    .on_conflict(OnConflict::new().do_nothing().to_owned())
    .exec_without_returning(db)
    .await?;
    Ok(())
}
