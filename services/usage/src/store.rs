//! Database access. Reads use `.all()` (never `.one()`, which pins SQLite WAL snapshots) and
//! writes use `Entity::insert(..).exec*` / `update_many`, except [`insert_alerts`]: its
//! `INSERT .. SELECT .. FROM (VALUES ..)` is raw SQL, which sea-query does not build.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Func, InsertStatement, OnConflict, Query, WithClause};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseBackend,
    DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait, Statement,
    StatementBuilder, Value,
};

use crate::entity::{alert, daily, esim, mp_order, snapshot};
use crate::error::Result;

/// `t` at the precision both databases store (PostgreSQL keeps microseconds), so a value
/// returned from memory equals the same value read back.
pub fn stored_time(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

/// The tracked eSIM `id`, if any.
pub async fn find_esim<C: ConnectionTrait>(db: &C, id: &str) -> Result<Option<esim::Model>> {
    let rows = esim::Entity::find()
        .filter(esim::Column::Esim.eq(id))
        .all(db)
        .await?;
    Ok(rows.into_iter().next())
}

/// Starts tracking `row`, an eSIM not tracked before, with its MP order `codes`, all or
/// nothing. False (nothing written) when the eSIM is tracked already or a code is taken: the
/// caller then reads what is there. A new eSIM costs two writes and no read, made in one call:
/// one statement on PostgreSQL, one batch on SQLite.
pub async fn track_new(db: &DatabaseConnection, row: &esim::Model, codes: &[String]) -> Result<bool> {
    if db.get_database_backend() == DatabaseBackend::Postgres {
        return track_new_in_one_statement(db, row, codes).await;
    }
    // One call to SQLite's thread instead of four (BEGIN, two INSERTs, COMMIT): an eSIM tracked
    // already or a code taken fails the batch with a unique violation, and it writes nothing.
    let insert_esim = esim::Entity::insert(esim::ActiveModel::from(row.clone()).reset_all()).into_query();
    let insert_codes = (!codes.is_empty()).then(|| mp_codes_insert(&row.esim, codes, row.create_time));
    let mut statements: Vec<&dyn StatementBuilder> = vec![&insert_esim];
    statements.extend(insert_codes.as_ref().map(|s| s as &dyn StatementBuilder));
    match esim_runtime::db::sqlite_atomic(db, &statements).await {
        Ok(_) => Ok(true),
        Err(err) if esim_runtime::db::is_unique_violation(&err) => Ok(false),
        Err(err) => Err(err.into()),
    }
}

/// `INSERT` of `codes` as `esim`'s MP order codes.
fn mp_codes_insert(esim: &str, codes: &[String], now: DateTime<Utc>) -> InsertStatement {
    mp_order::Entity::insert_many(codes.iter().map(|code| mp_order::ActiveModel {
        order_code: Set(code.clone()),
        esim: Set(esim.to_owned()),
        create_time: Set(now),
    }))
    .into_query()
}

/// Records `codes` as `esim`'s MP order codes; a code recorded already is left as it is.
/// Returns how many were new.
pub async fn add_mp_codes<C: ConnectionTrait>(
    db: &C,
    esim: &str,
    codes: &[String],
    now: DateTime<Utc>,
) -> Result<u64> {
    if codes.is_empty() {
        return Ok(0);
    }
    let mut insert = mp_codes_insert(esim, codes, now);
    insert.on_conflict(
        OnConflict::column(mp_order::Column::OrderCode)
            .do_nothing()
            .to_owned(),
    );
    Ok(db.execute(&insert).await?.rows_affected())
}

/// [`track_new`] as one data-modifying `WITH`, atomic as a statement: one round trip instead of
/// four (BEGIN, two INSERTs, COMMIT).
async fn track_new_in_one_statement(
    db: &DatabaseConnection,
    row: &esim::Model,
    codes: &[String],
) -> Result<bool> {
    use esim_runtime::db::{RowsFrom, cte, insert_from};
    let (free, tracked) = (Alias::new("free"), Alias::new("tracked"));
    // One row when no code is taken yet; a code taken after this read (a race between two
    // eSIMs over one code) fails the codes' insert below, and with it the whole statement.
    let taken = Query::select()
        .expr(Expr::val(1))
        .from(mp_order::Entity)
        .and_where(mp_order::Column::OrderCode.is_in(codes.iter().map(String::as_str)))
        .to_owned();
    let no_code_taken = Query::select()
        .expr(Expr::val(1))
        .and_where(Expr::exists(taken).not())
        .to_owned();
    let mut insert_esim = insert_from(
        esim::ActiveModel::from(row.clone()).reset_all(),
        RowsFrom::Cte(free.clone()),
    )?;
    insert_esim
        .on_conflict(OnConflict::column(esim::Column::Esim).do_nothing().to_owned())
        .returning_col(esim::Column::Esim);
    let mut with = WithClause::new();
    with.cte(cte(no_code_taken, free))
        .cte(cte(insert_esim, tracked.clone()));
    for (i, code) in codes.iter().enumerate() {
        let insert_code = insert_from(
            mp_order::ActiveModel {
                order_code: Set(code.clone()),
                esim: Set(row.esim.clone()),
                create_time: Set(row.create_time),
            },
            RowsFrom::Cte(tracked.clone()),
        )?;
        with.cte(cte(insert_code, Alias::new(format!("code_{i}"))));
    }
    let statement = with.query(
        Query::select()
            .column(esim::Column::Esim)
            .from(tracked)
            .to_owned(),
    );
    match db.query_all(&statement).await {
        Ok(rows) => Ok(!rows.is_empty()),
        Err(err) if esim_runtime::db::is_unique_violation(&err) => Ok(false),
        Err(err) => Err(err.into()),
    }
}

/// The tracked eSIM with this ICCID, if any.
pub async fn find_esim_by_iccid<C: ConnectionTrait>(db: &C, iccid: &str) -> Result<Option<esim::Model>> {
    // No LIMIT (see `esim_runtime::db`): an ICCID is tracked under one eSIM, rarely more.
    let rows = esim::Entity::find()
        .filter(esim::Column::Iccid.eq(iccid))
        .all(db)
        .await?;
    Ok(rows.into_iter().next())
}

/// The MP order codes of an eSIM, oldest first.
pub async fn mp_codes<C: ConnectionTrait>(db: &C, esim_id: &str) -> Result<Vec<String>> {
    let rows = mp_order::Entity::find()
        .filter(mp_order::Column::Esim.eq(esim_id))
        .order_by_asc(mp_order::Column::CreateTime)
        .order_by_asc(mp_order::Column::OrderCode)
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|r| r.order_code).collect())
}

/// The eSIM an MP order code belongs to.
pub async fn esim_of_mp_order<C: ConnectionTrait>(db: &C, code: &str) -> Result<Option<esim::Model>> {
    let rows = mp_order::Entity::find()
        .filter(mp_order::Column::OrderCode.eq(code))
        .all(db)
        .await?;
    match rows.into_iter().next() {
        Some(row) => find_esim(db, &row.esim).await,
        None => Ok(None),
    }
}

/// The eSIM's newest snapshot.
pub async fn latest_snapshot<C: ConnectionTrait>(db: &C, esim_id: &str) -> Result<Option<snapshot::Model>> {
    // The newest by `MAX(id)`, not ORDER BY … LIMIT 1 (see `esim_runtime::db`).
    let newest = Query::select()
        .expr(Func::max(Expr::col(snapshot::Column::Id)))
        .from(snapshot::Entity)
        .and_where(Expr::col(snapshot::Column::Esim).eq(esim_id))
        .to_owned();
    let rows = snapshot::Entity::find()
        .filter(Expr::col(snapshot::Column::Id).in_subquery(newest))
        .all(db)
        .await?;
    Ok(rows.into_iter().next())
}

/// What a new snapshot holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSnapshot {
    pub total_bytes: i64,
    pub used_bytes: i64,
    pub unlimited: bool,
    pub validity_start: Option<DateTime<Utc>>,
    pub validity_end: Option<DateTime<Utc>>,
    pub source: &'static str,
}

/// Stores a snapshot taken `at`; returns it as stored.
pub async fn insert_snapshot<C: ConnectionTrait>(
    db: &C,
    esim_id: &str,
    at: DateTime<Utc>,
    snap: &NewSnapshot,
) -> Result<snapshot::Model> {
    let at = stored_time(at);
    let snap = &NewSnapshot {
        validity_start: snap.validity_start.map(stored_time),
        validity_end: snap.validity_end.map(stored_time),
        ..snap.clone()
    };
    let result = snapshot::Entity::insert(snapshot::ActiveModel {
        esim: Set(esim_id.to_owned()),
        taken_at: Set(at),
        total_bytes: Set(snap.total_bytes),
        used_bytes: Set(snap.used_bytes),
        unlimited: Set(snap.unlimited),
        validity_start: Set(snap.validity_start),
        validity_end: Set(snap.validity_end),
        source: Set(snap.source.to_owned()),
        ..Default::default()
    })
    .exec(db)
    .await?;
    Ok(snapshot::Model {
        id: result.last_insert_id,
        esim: esim_id.to_owned(),
        taken_at: at,
        total_bytes: snap.total_bytes,
        used_bytes: snap.used_bytes,
        unlimited: snap.unlimited,
        validity_start: snap.validity_start,
        validity_end: snap.validity_end,
        source: snap.source.to_owned(),
    })
}

/// An alert to append to the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAlert {
    pub dedup_key: String,
    pub esim: String,
    pub order_name: String,
    pub provider: String,
    pub kind: i32,
    pub source: i32,
    pub threshold_percent: i32,
    pub expire_time: Option<DateTime<Utc>>,
    pub mp_order_code: String,
    pub mp_package_code: String,
    pub eid: String,
}

/// The columns [`insert_alerts`] writes, in the order of its `VALUES` rows; `dedup_key` first,
/// as `column1` of the `VALUES` list (the name both databases give it).
const ALERT_COLUMNS: &str = "dedup_key, esim, order_name, provider, kind, source, threshold_percent, \
     expire_time, mp_order_code, mp_package_code, eid, create_time";
const ALERT_COLUMN_COUNT: usize = 12;

/// Appends each of `alerts` whose dedup key is not stored yet, in one statement (so one commit
/// when run outside a transaction). Returns, per alert, its new cursor id or `None` for a
/// duplicate (of a stored alert or of an earlier one in `alerts`).
///
/// The `NOT EXISTS` keeps duplicates from drawing PostgreSQL sequence values, whose gaps make
/// watchers wait (see `GAP_GRACE` in `api`); `ON CONFLICT DO NOTHING` settles races with other
/// writers on the UNIQUE `dedup_key` (the only other key, `id`, cannot conflict). It names no
/// conflict target because SQLite matches a target against the schema it cached when preparing,
/// and a pooled connection that cached it mid-migration, before the index existed, fails with
/// "ON CONFLICT clause does not match any PRIMARY KEY or UNIQUE constraint".
pub async fn insert_alerts<C: ConnectionTrait>(
    db: &C,
    alerts: &[NewAlert],
    now: DateTime<Utc>,
) -> Result<Vec<Option<i64>>> {
    let now = stored_time(now);
    let backend = db.get_database_backend();
    let mut ids = vec![None; alerts.len()];
    let mut first_of_key: HashMap<&str, usize> = HashMap::with_capacity(alerts.len());
    let mut rows = Vec::with_capacity(alerts.len());
    let mut values: Vec<Value> = Vec::with_capacity(alerts.len() * ALERT_COLUMN_COUNT);
    for (i, alert) in alerts.iter().enumerate() {
        match first_of_key.entry(alert.dedup_key.as_str()) {
            Entry::Occupied(_) => continue,
            Entry::Vacant(slot) => slot.insert(i),
        };
        let row: Vec<String> = (values.len() + 1..=values.len() + ALERT_COLUMN_COUNT)
            .map(|n| match backend {
                DatabaseBackend::Postgres => format!("${n}"),
                _ => "?".to_owned(),
            })
            .collect();
        rows.push(format!("({})", row.join(", ")));
        values.extend([
            alert.dedup_key.clone().into(),
            alert.esim.clone().into(),
            alert.order_name.clone().into(),
            alert.provider.clone().into(),
            alert.kind.into(),
            alert.source.into(),
            alert.threshold_percent.into(),
            alert.expire_time.map(stored_time).into(),
            alert.mp_order_code.clone().into(),
            alert.mp_package_code.clone().into(),
            alert.eid.clone().into(),
            now.into(),
        ]);
    }
    if rows.is_empty() {
        return Ok(ids);
    }
    let sql = format!(
        "INSERT INTO usage_alerts ({ALERT_COLUMNS}) SELECT * FROM (VALUES {}) AS v \
         WHERE NOT EXISTS (SELECT 1 FROM usage_alerts a WHERE a.dedup_key = v.column1) \
         ON CONFLICT DO NOTHING RETURNING id, dedup_key",
        rows.join(", ")
    );
    for row in db
        .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?
    {
        let key: String = row.try_get("", "dedup_key")?;
        if let Some(&i) = first_of_key.get(key.as_str()) {
            ids[i] = Some(row.try_get("", "id")?);
        }
    }
    Ok(ids)
}

/// Alerts after cursor `after`, in cursor order, at most `limit`.
pub async fn alerts_after<C: ConnectionTrait>(db: &C, after: i64, limit: u64) -> Result<Vec<alert::Model>> {
    Ok(alert::Entity::find()
        .filter(alert::Column::Id.gt(after))
        .order_by_asc(alert::Column::Id)
        .limit(limit)
        .all(db)
        .await?)
}

/// Filters of `ListAlerts`.
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    pub esim: Option<String>,
    pub kinds: Vec<i32>,
    pub create_time_start: Option<DateTime<Utc>>,
}

impl AlertFilter {
    /// Whether `row` passes (the watch stream filters in memory, so it sees every cursor).
    pub fn matches(&self, row: &alert::Model) -> bool {
        self.esim.as_ref().is_none_or(|e| *e == row.esim)
            && (self.kinds.is_empty() || self.kinds.contains(&row.kind))
            && self.create_time_start.is_none_or(|t| row.create_time >= t)
    }
}

/// A page of alerts after `after` passing `filter`.
pub async fn list_alerts<C: ConnectionTrait>(
    db: &C,
    filter: &AlertFilter,
    after: i64,
    limit: u64,
) -> Result<Vec<alert::Model>> {
    let mut cond = Condition::all().add(alert::Column::Id.gt(after));
    if let Some(esim) = &filter.esim {
        cond = cond.add(alert::Column::Esim.eq(esim.as_str()));
    }
    if !filter.kinds.is_empty() {
        cond = cond.add(alert::Column::Kind.is_in(filter.kinds.clone()));
    }
    if let Some(start) = filter.create_time_start {
        cond = cond.add(alert::Column::CreateTime.gte(start));
    }
    Ok(alert::Entity::find()
        .filter(cond)
        .order_by_asc(alert::Column::Id)
        .limit(limit)
        .all(db)
        .await?)
}

/// Stores the used bytes of each day (replacing what was stored for those days).
pub async fn upsert_daily<C: ConnectionTrait>(
    db: &C,
    esim_id: &str,
    days: &[(String, i64)],
    now: DateTime<Utc>,
) -> Result<()> {
    if days.is_empty() {
        return Ok(());
    }
    let rows = days.iter().map(|(day, bytes)| daily::ActiveModel {
        esim: Set(esim_id.to_owned()),
        day: Set(day.clone()),
        used_bytes: Set(*bytes),
        update_time: Set(now),
    });
    daily::Entity::insert_many(rows)
        .on_conflict(
            OnConflict::columns([daily::Column::Esim, daily::Column::Day])
                .update_columns([daily::Column::UsedBytes, daily::Column::UpdateTime])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Stored days of `esim_id` from `from` to `to` (inclusive, `YYYY-MM-DD`), at most `limit`.
pub async fn daily_range<C: ConnectionTrait>(
    db: &C,
    esim_id: &str,
    from: &str,
    to: &str,
    limit: u64,
) -> Result<Vec<daily::Model>> {
    Ok(daily::Entity::find()
        .filter(daily::Column::Esim.eq(esim_id))
        .filter(daily::Column::Day.gte(from))
        .filter(daily::Column::Day.lte(to))
        .order_by_asc(daily::Column::Day)
        .limit(limit)
        .all(db)
        .await?)
}

/// eSIMs of `providers` due for a poll and not leased, at most `limit`.
pub async fn due_for_poll<C: ConnectionTrait>(
    db: &C,
    providers: &[&str],
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<esim::Model>> {
    Ok(esim::Entity::find()
        .filter(esim::Column::Provider.is_in(providers.iter().copied()))
        .filter(esim::Column::NextPollTime.lte(now))
        .filter(
            Condition::any()
                .add(esim::Column::LeaseUntil.is_null())
                .add(esim::Column::LeaseUntil.lt(now)),
        )
        .order_by_asc(esim::Column::NextPollTime)
        .limit(limit)
        .all(db)
        .await?)
}

/// Claims the row of `esim_id` until `until` for `owner`: a conditional UPDATE, so of several
/// replicas exactly one succeeds.
pub async fn claim<C: ConnectionTrait>(
    db: &C,
    esim_id: &str,
    owner: &str,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<bool> {
    let result = esim::Entity::update_many()
        .col_expr(esim::Column::LeaseUntil, Expr::value(until))
        .col_expr(esim::Column::LeaseOwner, Expr::value(owner))
        .filter(esim::Column::Esim.eq(esim_id))
        .filter(esim::Column::NextPollTime.lte(now))
        .filter(
            Condition::any()
                .add(esim::Column::LeaseUntil.is_null())
                .add(esim::Column::LeaseUntil.lt(now)),
        )
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Ends `owner`'s lease of `esim_id`, recording what was alerted and the next poll.
pub async fn release<C: ConnectionTrait>(
    db: &C,
    esim_id: &str,
    owner: &str,
    alerted: &str,
    next_poll: DateTime<Utc>,
) -> Result<()> {
    esim::Entity::update_many()
        .col_expr(
            esim::Column::LeaseUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(esim::Column::LeaseOwner, Expr::value(Option::<String>::None))
        .col_expr(esim::Column::Alerted, Expr::value(alerted))
        .col_expr(esim::Column::NextPollTime, Expr::value(next_poll))
        .filter(esim::Column::Esim.eq(esim_id))
        .filter(esim::Column::LeaseOwner.eq(owner))
        .exec(db)
        .await?;
    Ok(())
}
