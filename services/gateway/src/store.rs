//! API keys in the database, shared by the gRPC service ([`crate::api`]) and the `esim-keys`
//! command ([`crate::cli`]): validation of a key's settings, create / get / list / update /
//! revoke, the AIP-155 request ids of the mutations, and the bootstrap key. Reads use `.all()`
//! (never `.one()`, which pins SQLite WAL snapshots); every write is one transaction.

use std::fmt;
use std::future::Future;

use chrono::{DateTime, SubsecRound, Utc};
use esim_proto::gateway::v1 as pb;
use esim_runtime::api::timestamp;
use prost::Message;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, IntoActiveModel,
    QueryFilter, QueryOrder, QuerySelect,
};
use sha2::{Digest, Sha256};

use crate::entity::{api_key, idempotency};
use crate::error::{GatewayError, Result};
use crate::keys::{self, KeyHash};
use crate::ratelimit::{Limit, MAX_LIMIT};
use crate::scopes::{Scope, ScopeSet};

/// The collection of `apiKeys/{api_key}`.
pub const COLLECTION: &str = "apiKeys";

/// The `state` of a key that authenticates calls.
pub const ACTIVE: &str = "ACTIVE";
/// The `state` of a revoked key.
pub const REVOKED: &str = "REVOKED";

/// How long a request id is remembered (AIP-155).
const IDEMPOTENCY_TTL: chrono::Duration = chrono::Duration::hours(24);

/// Longest display name, in characters.
const MAX_DISPLAY_NAME: usize = 100;

/// Display name of the key `GATEWAY_BOOTSTRAP_KEY` creates.
pub const BOOTSTRAP_NAME: &str = "bootstrap";

/// Now, to the microsecond: what PostgreSQL keeps, so a value read back equals the one
/// written (a retried call's stored answer equals a fresh read).
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Whether `id` is an `{api_key}` this gateway assigns: a UUID in simple form.
pub fn is_key_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `apiKeys/{id}`.
pub fn resource_name(id: &str) -> String {
    format!("{COLLECTION}/{id}")
}

// ----- what a key may do ---------------------------------------------------------------------

/// A key's display name: 1-100 characters, not blank, no control characters.
pub fn display_name(name: &str, field: &str) -> Result<String> {
    esim_runtime::api::text(name, field, esim_domain::TextRule::required(MAX_DISPLAY_NAME))?;
    Ok(name.to_owned())
}

/// A key's scopes: at least one, none twice, none UNSPECIFIED.
pub fn scopes(values: &[i32], field: &str) -> Result<ScopeSet> {
    if values.is_empty() {
        return Err(GatewayError::invalid(field, "at least one scope is required"));
    }
    let mut set = ScopeSet::default();
    for (i, value) in values.iter().enumerate() {
        let scope = Scope::from_proto(*value).ok_or_else(|| {
            GatewayError::invalid(
                format!("{field}[{i}]"),
                format!("{value} is not a scope (READ, ORDER or ADMIN)"),
            )
        })?;
        if !set.insert(scope) {
            return Err(GatewayError::invalid(
                format!("{field}[{i}]"),
                format!("{} is listed twice", scope.to_proto().as_str_name()),
            ));
        }
    }
    Ok(set)
}

/// A key's own rate limit; `None` (unset) means the per-scope defaults.
pub fn rate_limit(limit: Option<&pb::RateLimit>, field: &str) -> Result<Option<Limit>> {
    let Some(limit) = limit else {
        return Ok(None);
    };
    let in_range = |v: i32| u32::try_from(v).ok().filter(|v| (1..=MAX_LIMIT).contains(v));
    let rps = in_range(limit.requests_per_second).ok_or_else(|| {
        GatewayError::invalid(
            format!("{field}.requests_per_second"),
            format!("must be 1-{MAX_LIMIT}"),
        )
    })?;
    let burst = in_range(limit.burst)
        .filter(|burst| *burst >= rps)
        .ok_or_else(|| {
            GatewayError::invalid(
                format!("{field}.burst"),
                format!("must be 1-{MAX_LIMIT} and at least requests_per_second"),
            )
        })?;
    Limit::new(rps, burst)
        .map(Some)
        .ok_or_else(|| GatewayError::invalid(field, "invalid rate limit"))
}

/// What a new key may do, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    /// Human-readable name.
    pub display_name: String,
    /// Granted scopes.
    pub scopes: ScopeSet,
    /// Its own rate limit, or the defaults.
    pub rate_limit: Option<Limit>,
}

impl KeySpec {
    /// The settings of `key` (`field` names it in violations, e.g. `api_key`); output-only
    /// fields are ignored (AIP-203).
    pub fn from_proto(key: &pb::ApiKey, field: &str) -> Result<Self> {
        Ok(Self {
            display_name: display_name(&key.display_name, &format!("{field}.display_name"))?,
            scopes: scopes(&key.scopes, &format!("{field}.scopes"))?,
            rate_limit: rate_limit(key.rate_limit.as_ref(), &format!("{field}.rate_limit"))?,
        })
    }
}

/// Changes to a key; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyUpdate {
    /// A new display name.
    pub display_name: Option<String>,
    /// New scopes.
    pub scopes: Option<ScopeSet>,
    /// A new own rate limit (`Some(None)`: back to the defaults).
    pub rate_limit: Option<Option<Limit>>,
}

// ----- rows and their API form ---------------------------------------------------------------

/// The API form of a stored key.
pub fn to_proto(row: &api_key::Model) -> Result<pb::ApiKey> {
    let scopes = ScopeSet::from_text(&row.scopes).map_err(GatewayError::Internal)?;
    let state = match row.state.as_str() {
        ACTIVE => pb::ApiKeyState::Active,
        REVOKED => pb::ApiKeyState::Revoked,
        other => return Err(GatewayError::Internal(format!("stored key state {other:?}"))),
    };
    Ok(pb::ApiKey {
        name: resource_name(&row.id),
        display_name: row.display_name.clone(),
        scopes: scopes.iter().map(|s| s.to_proto() as i32).collect(),
        key_prefix: row.key_prefix.clone(),
        rate_limit: match (row.rate_limit_rps, row.rate_limit_burst) {
            (Some(requests_per_second), Some(burst)) => Some(pb::RateLimit {
                requests_per_second,
                burst,
            }),
            _ => None,
        },
        state: state as i32,
        create_time: Some(timestamp(row.create_time)),
        update_time: Some(timestamp(row.update_time)),
        revoke_time: row.revoke_time.map(timestamp),
    })
}

/// The rate limit a stored row carries (`None`: the defaults; a row with an invalid one also
/// falls back to the defaults rather than locking the key out).
pub fn stored_limit(row: &api_key::Model) -> Option<Limit> {
    let rps = u32::try_from(row.rate_limit_rps?).ok()?;
    let burst = u32::try_from(row.rate_limit_burst?).ok()?;
    Limit::new(rps, burst)
}

fn limit_columns(limit: Option<Limit>) -> (Option<i32>, Option<i32>) {
    let column = |v: std::num::NonZeroU32| i32::try_from(v.get()).ok();
    match limit {
        Some(limit) => (column(limit.requests_per_second), column(limit.burst)),
        None => (None, None),
    }
}

// ----- request ids (AIP-155) -----------------------------------------------------------------

/// A mutation's request id, with a fingerprint of the request it came with.
#[derive(Debug, Clone)]
pub struct RequestKey {
    key: String,
    request_id: String,
    hash: String,
}

impl RequestKey {
    /// The request id of `request` for `method`; `None` when the caller sent none. `request`
    /// must be the request with its request id cleared, so retries fingerprint the same.
    pub fn new<M: Message>(method: &str, request_id: &str, request: &M) -> Result<Option<Self>> {
        esim_runtime::api::request_id(request_id, "request_id", false)?;
        if request_id.is_empty() {
            return Ok(None);
        }
        let hash = Sha256::digest(request.encode_to_vec());
        Ok(Some(Self {
            key: format!("{method}:{request_id}"),
            request_id: request_id.to_owned(),
            hash: keys::hex(&hash),
        }))
    }
}

/// The answer the first call with `request` gave, if it was made in the last 24 hours; the same
/// request id with another request is ALREADY_EXISTS.
async fn recall<C: ConnectionTrait>(db: &C, request: &RequestKey) -> Result<Option<pb::ApiKey>> {
    let rows = idempotency::Entity::find()
        .filter(idempotency::Column::Key.eq(request.key.as_str()))
        .filter(idempotency::Column::CreateTime.gt(now() - IDEMPOTENCY_TTL))
        .all(db)
        .await?;
    match rows.into_iter().next() {
        None => Ok(None),
        Some(row) if row.request_hash == request.hash => pb::ApiKey::decode(row.response.as_slice())
            .map(Some)
            .map_err(|err| GatewayError::Internal(format!("stored answer: {err}"))),
        Some(_) => Err(GatewayError::AlreadyExists {
            message: format!(
                "request_id {:?} was already used for a different request",
                request.request_id
            ),
            resource: None,
        }),
    }
}

/// Records `answer` for `request` in the transaction that made it. A concurrent first call with
/// the same request id makes this insert fail (primary key), and that call's transaction wins.
async fn remember<C: ConnectionTrait>(db: &C, request: &RequestKey, answer: &pb::ApiKey) -> Result<()> {
    let now = now();
    // Expired ids go first, so an id can be used again after its 24 hours.
    idempotency::Entity::delete_many()
        .filter(idempotency::Column::CreateTime.lte(now - IDEMPOTENCY_TTL))
        .exec(db)
        .await?;
    let row = idempotency::Model {
        key: request.key.clone(),
        request_hash: request.hash.clone(),
        response: answer.encode_to_vec(),
        create_time: now,
    };
    idempotency::Entity::insert(row.into_active_model().reset_all())
        .exec_without_returning(db)
        .await?;
    Ok(())
}

fn is_unique_violation(err: &GatewayError) -> bool {
    matches!(err, GatewayError::Database(db) if esim_runtime::db::is_unique_violation(db))
}

/// Runs the mutation `op` once per request id: a retry gets `on_retry` of the first answer,
/// also when it raced the first call.
async fn once_per_request<T, Op, Fut>(
    db: &DatabaseConnection,
    request: Option<&RequestKey>,
    op: Op,
    on_retry: impl Fn(&RequestKey, pb::ApiKey) -> Result<T>,
) -> Result<T>
where
    Op: FnOnce() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let Some(request) = request else {
        return op().await;
    };
    if let Some(first) = recall(db, request).await? {
        return on_retry(request, first);
    }
    match op().await {
        Err(err) if is_unique_violation(&err) => match recall(db, request).await? {
            Some(first) => on_retry(request, first),
            None => Err(err),
        },
        other => other,
    }
}

// ----- operations ----------------------------------------------------------------------------

/// A key just created: the only time its plaintext exists.
pub struct Created {
    /// The stored key.
    pub api_key: pb::ApiKey,
    /// The key in plain text, to show once.
    pub key: String,
}

impl fmt::Debug for Created {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Created")
            .field("api_key", &self.api_key)
            .field("key", &"***")
            .finish()
    }
}

/// Creates a key with `spec`. A retry of `request` is ALREADY_EXISTS naming the key the first
/// call created (its plaintext is gone).
pub async fn create(
    db: &DatabaseConnection,
    spec: &KeySpec,
    request: Option<&RequestKey>,
) -> Result<Created> {
    once_per_request(
        db,
        request,
        || async {
            let new_key = keys::generate().map_err(|err| GatewayError::Internal(err.to_string()))?;
            let now = now();
            let (rate_limit_rps, rate_limit_burst) = limit_columns(spec.rate_limit);
            let row = api_key::Model {
                id: uuid::Uuid::now_v7().simple().to_string(),
                display_name: spec.display_name.clone(),
                scopes: spec.scopes.to_text(),
                key_prefix: new_key.prefix.clone(),
                key_hash: new_key.hash.to_hex(),
                rate_limit_rps,
                rate_limit_burst,
                state: ACTIVE.to_owned(),
                create_time: now,
                update_time: now,
                revoke_time: None,
            };
            let answer = to_proto(&row)?;
            let tx = esim_runtime::db::begin_write(db).await?;
            api_key::Entity::insert(row.into_active_model().reset_all())
                .exec_without_returning(&tx)
                .await?;
            if let Some(request) = request {
                remember(&tx, request, &answer).await?;
            }
            tx.commit().await?;
            Ok(Created {
                api_key: answer,
                key: new_key.key,
            })
        },
        |request, first| {
            Err(GatewayError::AlreadyExists {
                message: format!(
                    "request_id {:?} already created {}; its key cannot be shown again (revoke it and create another)",
                    request.request_id, first.name
                ),
                resource: Some(first.name),
            })
        },
    )
    .await
}

async fn find<C: ConnectionTrait>(db: &C, id: &str) -> Result<Option<api_key::Model>, DbErr> {
    Ok(api_key::Entity::find()
        .filter(api_key::Column::Id.eq(id))
        .all(db)
        .await?
        .into_iter()
        .next())
}

/// The key with `id`.
pub async fn get(db: &DatabaseConnection, id: &str) -> Result<api_key::Model> {
    find(db, id)
        .await?
        .ok_or_else(|| GatewayError::NotFound(resource_name(id)))
}

/// Up to `limit` keys, newest first, after (older than) the key `after`; revoked ones too with
/// `show_revoked`.
pub async fn list(
    db: &DatabaseConnection,
    show_revoked: bool,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<api_key::Model>> {
    let mut query = api_key::Entity::find();
    if !show_revoked {
        query = query.filter(api_key::Column::State.eq(ACTIVE));
    }
    if let Some(after) = after {
        query = query.filter(api_key::Column::Id.lt(after));
    }
    Ok(query
        .order_by_desc(api_key::Column::Id)
        .limit(limit)
        .all(db)
        .await?)
}

/// Every active key (the authentication cache).
pub async fn active(db: &DatabaseConnection) -> Result<Vec<api_key::Model>, DbErr> {
    api_key::Entity::find()
        .filter(api_key::Column::State.eq(ACTIVE))
        .all(db)
        .await
}

/// Applies `update` to the key `id`. A revoked key is FAILED_PRECONDITION; a retry of `request`
/// returns the first answer.
pub async fn update(
    db: &DatabaseConnection,
    id: &str,
    update: &KeyUpdate,
    request: Option<&RequestKey>,
) -> Result<pb::ApiKey> {
    once_per_request(
        db,
        request,
        || async {
            let tx = esim_runtime::db::begin_write(db).await?;
            let mut row = find(&tx, id)
                .await?
                .ok_or_else(|| GatewayError::NotFound(resource_name(id)))?;
            if row.state != ACTIVE {
                return Err(GatewayError::FailedPrecondition(format!(
                    "{} is revoked and cannot be changed",
                    resource_name(id)
                )));
            }
            if let Some(name) = &update.display_name {
                row.display_name = name.clone();
            }
            if let Some(scopes) = update.scopes {
                row.scopes = scopes.to_text();
            }
            if let Some(limit) = update.rate_limit {
                (row.rate_limit_rps, row.rate_limit_burst) = limit_columns(limit);
            }
            row.update_time = now();
            let answer = to_proto(&row)?;
            api_key::Entity::update_many()
                .set(row.into_active_model().reset_all())
                .filter(api_key::Column::Id.eq(id))
                .exec(&tx)
                .await?;
            if let Some(request) = request {
                remember(&tx, request, &answer).await?;
            }
            tx.commit().await?;
            Ok(answer)
        },
        |_, first| Ok(first),
    )
    .await
}

/// Revokes the key `id` for good; a revoked key is returned unchanged.
pub async fn revoke(db: &DatabaseConnection, id: &str, request: Option<&RequestKey>) -> Result<pb::ApiKey> {
    once_per_request(
        db,
        request,
        || async {
            let tx = esim_runtime::db::begin_write(db).await?;
            let mut row = find(&tx, id)
                .await?
                .ok_or_else(|| GatewayError::NotFound(resource_name(id)))?;
            if row.state == ACTIVE {
                let now = now();
                row.state = REVOKED.to_owned();
                row.revoke_time = Some(now);
                row.update_time = now;
                api_key::Entity::update_many()
                    .set(row.clone().into_active_model().reset_all())
                    .filter(api_key::Column::Id.eq(id))
                    .exec(&tx)
                    .await?;
            }
            let answer = to_proto(&row)?;
            if let Some(request) = request {
                remember(&tx, request, &answer).await?;
            }
            tx.commit().await?;
            Ok(answer)
        },
        |_, first| Ok(first),
    )
    .await
}

/// What [`ensure_bootstrap`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// The key was not known: it is now, as `bootstrap` with every scope.
    Created(String),
    /// A key with that hash exists (`apiKeys/...`, and whether it is still active); it is left
    /// as it is, so a revoked bootstrap key stays revoked.
    Present {
        /// Its resource name.
        name: String,
        /// Whether it still authenticates.
        active: bool,
    },
}

/// Makes sure the key `key` (from `GATEWAY_BOOTSTRAP_KEY`, already checked to be well formed)
/// exists, creating it with every scope if no key has its hash.
pub async fn ensure_bootstrap(db: &DatabaseConnection, key: &str) -> Result<Bootstrap> {
    let hash = KeyHash::of(key).to_hex();
    let existing = || async {
        let rows = api_key::Entity::find()
            .filter(api_key::Column::KeyHash.eq(hash.as_str()))
            .all(db)
            .await?;
        Ok::<_, GatewayError>(rows.into_iter().next().map(|row| Bootstrap::Present {
            name: resource_name(&row.id),
            active: row.state == ACTIVE,
        }))
    };
    if let Some(present) = existing().await? {
        return Ok(present);
    }
    let now = now();
    let row = api_key::Model {
        id: uuid::Uuid::now_v7().simple().to_string(),
        display_name: BOOTSTRAP_NAME.to_owned(),
        scopes: ScopeSet::all().to_text(),
        key_prefix: keys::shown_prefix(key).to_owned(),
        key_hash: hash.clone(),
        rate_limit_rps: None,
        rate_limit_burst: None,
        state: ACTIVE.to_owned(),
        create_time: now,
        update_time: now,
        revoke_time: None,
    };
    let name = resource_name(&row.id);
    match api_key::Entity::insert(row.into_active_model().reset_all())
        .exec_without_returning(db)
        .await
    {
        Ok(_) => Ok(Bootstrap::Created(name)),
        // Another replica starting at the same moment inserted it first.
        Err(err) if esim_runtime::db::is_unique_violation(&err) => {
            existing().await?.ok_or(GatewayError::Database(err))
        }
        Err(err) => Err(err.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(err: GatewayError) -> String {
        match err {
            GatewayError::InvalidArgument { field, .. } => field,
            other => panic!("not a field violation: {other:?}"),
        }
    }

    #[test]
    fn settings_are_validated_field_by_field() {
        let mut key = pb::ApiKey {
            display_name: "web shop".into(),
            scopes: vec![pb::Scope::Read as i32, pb::Scope::Order as i32],
            rate_limit: Some(pb::RateLimit {
                requests_per_second: 5,
                burst: 10,
            }),
            ..Default::default()
        };
        let spec = KeySpec::from_proto(&key, "api_key").unwrap();
        assert_eq!(spec.scopes.to_text(), "read,order");
        assert_eq!(spec.rate_limit, Limit::new(5, 10));

        type Breaks = fn(&mut pb::ApiKey);
        let cases: [(Breaks, &str); 10] = [
            (|k| k.display_name = String::new(), "api_key.display_name"),
            (|k| k.display_name = "  ".into(), "api_key.display_name"),
            (|k| k.display_name = "x".repeat(101), "api_key.display_name"),
            (|k| k.scopes.clear(), "api_key.scopes"),
            (|k| k.scopes.push(pb::Scope::Read as i32), "api_key.scopes[2]"),
            (|k| k.scopes[0] = 0, "api_key.scopes[0]"),
            (|k| k.scopes[1] = 9, "api_key.scopes[1]"),
            (
                |k| k.rate_limit.as_mut().unwrap().requests_per_second = 0,
                "api_key.rate_limit.requests_per_second",
            ),
            (
                |k| k.rate_limit.as_mut().unwrap().burst = 4,
                "api_key.rate_limit.burst",
            ),
            (
                |k| k.rate_limit.as_mut().unwrap().burst = 100_001,
                "api_key.rate_limit.burst",
            ),
        ];
        for (break_it, expected) in cases {
            let mut broken = key.clone();
            break_it(&mut broken);
            assert_eq!(
                field(KeySpec::from_proto(&broken, "api_key").unwrap_err()),
                expected
            );
        }
        key.display_name = "é".repeat(100);
        assert!(
            KeySpec::from_proto(&key, "api_key").is_ok(),
            "100 characters, 200 bytes"
        );
    }

    #[test]
    fn key_ids_are_simple_uuids() {
        assert!(is_key_id(&uuid::Uuid::now_v7().simple().to_string()));
        assert!(!is_key_id("0198c0de-0000-7000-8000-000000000000"));
        assert!(!is_key_id(""));
    }
}
