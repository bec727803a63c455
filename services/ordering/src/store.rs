//! Database access: orders with version-guarded writes that append their state changes as
//! events in the same transaction, leases for the saga, idempotency keys, FMS accounts and
//! top-ups. Reads use `.all()` and inserts `exec_without_returning` (no `.one()` on hot paths:
//! see DESIGN.md on SQLite WAL snapshot pinning).
//!
//! On PostgreSQL a new order with its key and event, and an order's change with its event, are
//! each one statement (a data-modifying `WITH`): one round trip, and the row lock is held for
//! that statement only. SQLite has no such `WITH` and runs them as a transaction, sent as one
//! batch ([`esim_runtime::db::sqlite_atomic`]): one call to sqlx's SQLite thread.
//!
//! On SQLite every write takes an in-process gate first: SQLite has one writer, and a writer
//! waiting in `BEGIN IMMEDIATE` sleeps in the busy handler (1, 2, 5, 10... ms) while holding one
//! of the pool's few connections, which readers then lack.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use backon::{ExponentialBuilder, Retryable};
use chrono::{DateTime, Duration, Utc};
use esim_runtime::db::{RowsFrom, cte, insert_from, sqlite_atomic};
use sea_orm::sea_query::{Alias, CaseStatement, Expr, Func, OnConflict, Query, WithClause};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, DatabaseConnection,
    DatabaseTransaction, EntityTrait, IdenStatic, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
    TryInsertResult,
};
use tokio::sync::{Mutex, MutexGuard, broadcast};

use crate::entity::{fms_account, idempotency_key, order, order_event, top_up};
use crate::error::{OrderingError, Result};
use crate::model::{State, step};

/// How long a database call is tried again through an outage (a restart, a failover). Each
/// attempt can itself wait for a connection (the pool's acquire timeout), so the bound is on
/// the time since the first attempt, not on the count.
const OUTAGE_WAIT: StdDuration = StdDuration::from_secs(30);

/// Runs the database call `call`, again while it fails with a transient error and less than
/// [`OUTAGE_WAIT`] has passed; `what` names it in the log.
pub(crate) async fn through_outage<T, F, Fut>(what: &str, call: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    retry_transient_for(OUTAGE_WAIT, what, call).await
}

async fn retry_transient_for<T, F, Fut>(wait: StdDuration, what: &str, call: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let started = tokio::time::Instant::now();
    let backoff = ExponentialBuilder::default()
        .with_min_delay(StdDuration::from_millis(200))
        .with_max_delay(StdDuration::from_secs(2))
        .without_max_times()
        .with_jitter();
    call.retry(backoff)
        .when(|err: &OrderingError| err.is_transient() && started.elapsed() < wait)
        .notify(|err, delay| tracing::warn!(error = %err, ?delay, "{what}: the database is unavailable; retrying"))
        .await
}

/// The database plus the in-process wake-up of watchers (other replicas poll).
#[derive(Debug, Clone)]
pub struct Store {
    /// The connection pool.
    pub db: DatabaseConnection,
    watchers: Arc<Watchers>,
    /// SQLite only: held by the one writer of this process.
    write_gate: Option<Arc<Mutex<()>>>,
}

/// An event committed by this process, with the order row as that write stored it.
#[derive(Debug)]
pub struct Committed {
    /// The event.
    pub event: order_event::Model,
    /// The order right after it.
    pub row: order::Model,
}

/// The watched orders' channels: an event goes to its order's watchers only, and they need not
/// read back what was just written.
#[derive(Debug, Default)]
struct Watchers {
    by_order: std::sync::Mutex<HashMap<String, broadcast::Sender<Arc<Committed>>>>,
}

impl Watchers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, broadcast::Sender<Arc<Committed>>>> {
        self.by_order.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A watcher's registration for one order's events (dropped: unregistered).
#[derive(Debug)]
pub struct EventWatch {
    watchers: Arc<Watchers>,
    order_id: String,
    events: broadcast::Receiver<Arc<Committed>>,
}

impl EventWatch {
    /// The next event of the order committed in this process; `None` when some were missed (a
    /// slow watcher: read them from the database).
    pub async fn next(&mut self) -> Option<Arc<Committed>> {
        self.events.recv().await.ok()
    }
}

impl Drop for EventWatch {
    fn drop(&mut self) {
        let mut by_order = self.watchers.lock();
        // Still counted: ours is the last receiver of this order.
        if by_order
            .get(&self.order_id)
            .is_some_and(|tx| tx.receiver_count() <= 1)
        {
            by_order.remove(&self.order_id);
        }
    }
}

impl Store {
    /// Begins a write transaction that has inserted the idempotency `key`; `None` (and nothing
    /// written) when the key exists already. SQLite: the caller holds the write gate.
    async fn begin_claimed(&self, key: idempotency_key::ActiveModel) -> Result<Option<DatabaseTransaction>> {
        let tx = esim_runtime::db::begin_write(&self.db).await?;
        let claimed = idempotency_key::Entity::insert(key)
            .on_conflict_do_nothing()
            .exec_without_returning(&tx)
            .await?;
        if matches!(claimed, TryInsertResult::Inserted(n) if n > 0) {
            Ok(Some(tx))
        } else {
            tx.rollback().await?;
            Ok(None)
        }
    }

    /// A store over `db`.
    pub fn new(db: DatabaseConnection) -> Self {
        let write_gate =
            (db.get_database_backend() == DatabaseBackend::Sqlite).then(|| Arc::new(Mutex::new(())));
        Self {
            db,
            watchers: Arc::default(),
            write_gate,
        }
    }

    /// Registers for `order_id`'s events committed in this process from now on; register before
    /// reading the stored ones, so none falls in between.
    pub fn watch(&self, order_id: &str) -> EventWatch {
        let events = self
            .watchers
            .lock()
            .entry(order_id.to_owned())
            .or_insert_with(|| broadcast::channel(16).0)
            .subscribe();
        EventWatch {
            watchers: self.watchers.clone(),
            order_id: order_id.to_owned(),
            events,
        }
    }

    fn publish(&self, event: order_event::Model, row: &order::Model) {
        if let Some(tx) = self.watchers.lock().get(&event.order_id) {
            let _ = tx.send(Arc::new(Committed {
                event,
                row: row.clone(),
            }));
        }
    }

    /// Waits for this process's turn to write (SQLite; nothing to wait for on PostgreSQL).
    async fn gate(&self) -> Option<MutexGuard<'_, ()>> {
        match &self.write_gate {
            Some(gate) => Some(gate.lock().await),
            None => None,
        }
    }

    /// One order.
    pub async fn order(&self, id: &str) -> Result<Option<order::Model>> {
        Ok(order::Entity::find()
            .filter(order::Column::Id.eq(id))
            .all(&self.db)
            .await?
            .into_iter()
            .next())
    }

    /// An order's top-ups, oldest first.
    pub async fn top_ups(&self, order_id: &str) -> Result<Vec<top_up::Model>> {
        Ok(top_up::Entity::find()
            .filter(top_up::Column::OrderId.eq(order_id))
            .order_by_asc(top_up::Column::CreateTime)
            .order_by_asc(top_up::Column::Id)
            .all(&self.db)
            .await?)
    }

    /// One top-up.
    pub async fn top_up(&self, id: &str) -> Result<Option<top_up::Model>> {
        Ok(top_up::Entity::find()
            .filter(top_up::Column::Id.eq(id))
            .all(&self.db)
            .await?
            .into_iter()
            .next())
    }

    /// The idempotency key `(scope, request_id)`.
    pub async fn key(&self, scope: &str, request_id: &str) -> Result<Option<idempotency_key::Model>> {
        Ok(idempotency_key::Entity::find()
            .filter(idempotency_key::Column::Scope.eq(scope))
            .filter(idempotency_key::Column::RequestId.eq(request_id))
            .all(&self.db)
            .await?
            .into_iter()
            .next())
    }

    /// Records a new order under its idempotency key, with its creating event, atomically.
    /// Returns false (and writes nothing) when the key exists already.
    pub async fn create_order(
        &self,
        key: idempotency_key::Model,
        row: order::Model,
        reason: &str,
    ) -> Result<bool> {
        let event = order_event::Model {
            order_id: row.id.clone(),
            sequence: 1,
            previous_state: String::new(),
            state: row.state.clone(),
            reason: reason.to_owned(),
            create_time: row.create_time,
        };
        let key = idempotency_key::ActiveModel::from(key).reset_all();
        let order_row = order::ActiveModel::from(row.clone()).reset_all();
        let event_row = order_event::ActiveModel::from(event.clone()).reset_all();
        if self.db.get_database_backend() == DatabaseBackend::Postgres {
            // One statement instead of five round trips: the key's insert claims the request id,
            // and the order and its event are inserted only from the row it claimed.
            use idempotency_key::Column as K;
            let (claimed, ordered) = (Alias::new("claimed"), Alias::new("ordered"));
            let mut claim = insert_from(key, RowsFrom::Values)?;
            claim
                .on_conflict(
                    OnConflict::columns([K::Scope, K::RequestId])
                        .do_nothing()
                        .to_owned(),
                )
                .returning_col(K::RequestId);
            let mut insert_order = insert_from(order_row, RowsFrom::Cte(claimed.clone()))?;
            insert_order.returning_col(order::Column::Id);
            let mut insert_event = insert_from(event_row, RowsFrom::Cte(ordered.clone()))?;
            insert_event.returning_col(order_event::Column::Sequence);
            let statement = WithClause::new()
                .cte(cte(claim, claimed))
                .cte(cte(insert_order, ordered))
                .to_owned()
                .query(insert_event);
            if self.db.query_all(&statement).await?.is_empty() {
                return Ok(false);
            }
        } else {
            // One call to SQLite's thread instead of five: a key that exists already fails the
            // batch with a unique violation, and it writes nothing.
            let (key, order, event) = (
                insert_from(key, RowsFrom::Values)?,
                insert_from(order_row, RowsFrom::Values)?,
                insert_from(event_row, RowsFrom::Values)?,
            );
            let _gate = self.gate().await;
            match sqlite_atomic(&self.db, &[&key, &order, &event]).await {
                Ok(_) => {}
                Err(err) if esim_runtime::db::is_unique_violation(&err) => {
                    return Ok(false);
                }
                Err(err) => return Err(err.into()),
            }
        }
        self.publish(event, &row);
        Ok(true)
    }

    /// Writes `new` over `old` if nobody changed the order since `old` was read (its
    /// `version`), and appends an event when the state changed (`reason`: the event's reason,
    /// defaulting to the new state reason). Returns the stored row, or `None` when `old` was
    /// stale (nothing written: reload and decide again).
    pub async fn write(&self, old: &order::Model, new: order::Model) -> Result<Option<order::Model>> {
        self.write_as(old, new, None).await
    }

    /// Whether the saga stops driving an order after writing `row`: its saga is done, or its
    /// next step is due later. A step due now was stamped a moment before the write's
    /// `update_time`, a deferred one (a retry, a poll) at least a retry delay after it: the
    /// margin keeps a clock step or a time cut to microseconds from reading one as the other.
    pub fn parks(row: &order::Model) -> bool {
        const MARGIN: chrono::TimeDelta = chrono::TimeDelta::milliseconds(1);
        row.saga_step == step::DONE || row.next_attempt_at > row.update_time + MARGIN
    }

    /// As [`Store::write`], by the saga holding the order's lease as `owner`: a write that parks
    /// the order ([`Store::parks`]) gives the lease back in the same statement (if it is still
    /// `owner`'s), saving the separate release.
    pub async fn write_as(
        &self,
        old: &order::Model,
        new: order::Model,
        owner: Option<&str>,
    ) -> Result<Option<order::Model>> {
        self.write_events(old, None, new, owner).await
    }

    /// As [`Store::write_as`], the order passing through `via` (a state and the reason it was
    /// entered) on its way to `new`'s state: two events in the one write, as if it had been
    /// two writes.
    pub async fn write_via(
        &self,
        old: &order::Model,
        via: (State, &str),
        new: order::Model,
        owner: Option<&str>,
    ) -> Result<Option<order::Model>> {
        self.write_events(old, Some(via), new, owner).await
    }

    async fn write_events(
        &self,
        old: &order::Model,
        via: Option<(State, &str)>,
        mut new: order::Model,
        owner: Option<&str>,
    ) -> Result<Option<order::Model>> {
        let now = Utc::now();
        new.version = old.version + 1;
        new.update_time = now;
        let state_changed = new.state != old.state;
        if state_changed {
            let terminal = State::parse(&new.state).is_some_and(|s| s.is_terminal());
            if terminal && new.end_time.is_none() {
                new.end_time = Some(now);
            }
            if new.state == State::Active.as_str() && new.activate_time.is_none() {
                new.activate_time = Some(now);
            }
        }
        let mut update = order::Entity::update_many().set(Self::changes(old, &new));
        let release = owner.filter(|_| Self::parks(&new));
        if let Some(owner) = release {
            // Both read the row as it was before the UPDATE (SQL semantics).
            let ours = || order::Column::LeaseOwner.eq(owner);
            update = update
                .col_expr(
                    order::Column::LeaseOwner,
                    CaseStatement::new()
                        .case(ours(), Expr::value(Option::<String>::None))
                        .finally(Expr::col(order::Column::LeaseOwner))
                        .into(),
                )
                .col_expr(
                    order::Column::LeaseUntil,
                    CaseStatement::new()
                        .case(ours(), Expr::value(Option::<DateTime<Utc>>::None))
                        .finally(Expr::col(order::Column::LeaseUntil))
                        .into(),
                );
        }
        let update = update
            .filter(order::Column::Id.eq(old.id.as_str()))
            .filter(order::Column::Version.eq(old.version));
        let _gate = self.gate().await;
        if !state_changed {
            // One statement: atomic without a transaction of its own.
            let updated = update.exec(&self.db).await?;
            return Ok((updated.rows_affected == 1).then_some(new));
        }
        let event = |previous_state: &str, state: &str, reason: &str| order_event::Model {
            order_id: old.id.clone(),
            sequence: 0,
            previous_state: previous_state.to_owned(),
            state: state.to_owned(),
            reason: reason.to_owned(),
            create_time: now,
        };
        let events = match via {
            Some((via, reason)) => vec![
                event(&old.state, via.as_str(), reason),
                event(via.as_str(), &new.state, &new.state_reason),
            ],
            None => vec![event(&old.state, &new.state, &new.state_reason)],
        };
        let appended = if self.db.get_database_backend() == DatabaseBackend::Postgres {
            // One statement, so one round trip instead of four (BEGIN, UPDATE, INSERT, COMMIT):
            // the UPDATE runs as a CTE and the event is inserted from the row it updated, so a
            // stale `version` writes neither. Atomic as a statement.
            let mut update = update.into_query();
            update.returning_col(order::Column::Id);
            let updated = Alias::new("updated");
            let insert = Self::event_insert(&events, RowsFrom::Cte(updated.clone()))?;
            let statement = WithClause::new()
                .cte(cte(update, updated))
                .to_owned()
                .query(insert);
            Self::sequences_of(&self.db.query_all(&statement).await?)?
        } else {
            // One call to SQLite's thread instead of four (BEGIN, UPDATE, INSERT, COMMIT): the
            // event is inserted only if the UPDATE changed the row, so a stale `version` writes
            // neither.
            let insert = Self::event_insert(&events, RowsFrom::PreviousChangedOne)?;
            Self::sequences_of(&sqlite_atomic(&self.db, &[&update.into_query(), &insert]).await?)?
        };
        if appended.is_empty() {
            return Ok(None);
        }
        for (mut event, sequence) in events.into_iter().zip(appended) {
            event.sequence = sequence;
            self.publish(event, &new);
        }
        Ok(Some(new))
    }

    /// The columns `new` changes from `old`. The `version` guard makes writing only these the
    /// same as writing the whole row, and a row of some sixty columns is what every step would
    /// otherwise bind, send and execute. The lease is not ours to change here: it belongs to
    /// `claim` / `release`.
    fn changes(old: &order::Model, new: &order::Model) -> order::ActiveModel {
        use sea_orm::{Iterable, ModelTrait};
        let mut changes = <order::ActiveModel as ActiveModelTrait>::default();
        for column in order::Column::iter() {
            if matches!(
                column,
                order::Column::Id | order::Column::LeaseOwner | order::Column::LeaseUntil
            ) {
                continue;
            }
            let value = new.get(column);
            if value != old.get(column) {
                changes.set(column, value);
            }
        }
        changes
    }

    /// Inserts `events` as their order's next ones, in turn (their `sequence`s are ignored),
    /// returning the sequences they got; once per row of `from` when given (none: nothing
    /// inserted). The write that appends them holds its order's row, so the next sequence
    /// cannot be taken twice. Each row's sequence is counted from the events stored before the
    /// statement (both databases read the table for an `INSERT … SELECT` from itself before
    /// inserting), hence the offsets.
    fn event_insert(
        events: &[order_event::Model],
        from: RowsFrom,
    ) -> Result<sea_orm::sea_query::InsertStatement> {
        use order_event::Column as C;
        use sea_orm::sea_query::{ExprTrait, UnionType};
        let mut rows = events.iter().zip(1i64..).map(|(event, offset)| {
            let next_sequence = Query::select()
                .expr(
                    Expr::expr(Func::coalesce([
                        Expr::from(Func::max(Expr::col(C::Sequence))),
                        Expr::val(0i64),
                    ]))
                    .add(offset),
                )
                .from(order_event::Entity)
                .and_where(Expr::col(C::OrderId).eq(event.order_id.as_str()))
                .to_owned();
            let mut row = Query::select();
            row.expr(Expr::val(event.order_id.as_str()))
                .expr(Expr::SubQuery(None, Box::new(next_sequence.into())))
                .expr(Expr::val(event.previous_state.as_str()))
                .expr(Expr::val(event.state.as_str()))
                .expr(Expr::val(event.reason.as_str()))
                .expr(Expr::val(event.create_time));
            from.apply(&mut row);
            row
        });
        let mut select = rows
            .next()
            .ok_or_else(|| OrderingError::Internal("no event to insert".into()))?;
        for row in rows {
            select.union(UnionType::All, row);
        }
        Ok(Query::insert()
            .into_table(order_event::Entity)
            .columns([
                C::OrderId,
                C::Sequence,
                C::PreviousState,
                C::State,
                C::Reason,
                C::CreateTime,
            ])
            .select_from(select)
            .map_err(|e| OrderingError::Internal(e.to_string()))?
            .returning_col(C::Sequence)
            .to_owned())
    }

    /// The sequences an event insert returned, ascending (none: it inserted none).
    fn sequences_of(rows: &[sea_orm::QueryResult]) -> Result<Vec<i64>> {
        let mut sequences = rows
            .iter()
            .map(|row| row.try_get("", order_event::Column::Sequence.as_str()))
            .collect::<std::result::Result<Vec<i64>, _>>()?;
        sequences.sort_unstable();
        Ok(sequences)
    }

    /// Orders whose saga step is due and not leased, oldest due first.
    pub async fn due(&self, now: DateTime<Utc>, limit: u64) -> Result<Vec<order::Model>> {
        Ok(order::Entity::find()
            .filter(order::Column::SagaStep.ne(step::DONE))
            .filter(order::Column::NextAttemptAt.lte(now))
            .filter(
                Condition::any()
                    .add(order::Column::LeaseUntil.is_null())
                    .add(order::Column::LeaseUntil.lt(now)),
            )
            .order_by_asc(order::Column::NextAttemptAt)
            .limit(limit)
            .all(&self.db)
            .await?)
    }

    /// Takes (or extends) the lease of an order for `owner` until `now + lease`: a conditional
    /// UPDATE that succeeds only when the lease is free, expired or already `owner`'s, so one
    /// replica at a time runs an order's steps (SQLite and PostgreSQL alike).
    pub async fn claim(&self, id: &str, owner: &str, lease: Duration) -> Result<bool> {
        let now = Utc::now();
        let _gate = self.gate().await;
        let r = order::Entity::update_many()
            .col_expr(order::Column::LeaseOwner, Expr::value(owner))
            .col_expr(order::Column::LeaseUntil, Expr::value(now + lease))
            .filter(order::Column::Id.eq(id))
            .filter(
                Condition::any()
                    .add(order::Column::LeaseUntil.is_null())
                    .add(order::Column::LeaseUntil.lt(now))
                    .add(order::Column::LeaseOwner.eq(owner)),
            )
            .exec(&self.db)
            .await?;
        Ok(r.rows_affected == 1)
    }

    /// Gives the lease back (only `owner`'s).
    pub async fn release(&self, id: &str, owner: &str) -> Result<()> {
        let _gate = self.gate().await;
        order::Entity::update_many()
            .col_expr(order::Column::LeaseOwner, Expr::value(Option::<String>::None))
            .col_expr(
                order::Column::LeaseUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .filter(order::Column::Id.eq(id))
            .filter(order::Column::LeaseOwner.eq(owner))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// An order's events after `after` (sequence), oldest first.
    pub async fn events_after(
        &self,
        order_id: &str,
        after: i64,
        limit: u64,
    ) -> Result<Vec<order_event::Model>> {
        Ok(order_event::Entity::find()
            .filter(order_event::Column::OrderId.eq(order_id))
            .filter(order_event::Column::Sequence.gt(after))
            .order_by_asc(order_event::Column::Sequence)
            .limit(limit)
            .all(&self.db)
            .await?)
    }

    /// The order with its events after `after` (the first `limit`, oldest first), or with only
    /// its latest event when `after` is `None`; `None` when there is no such order. One
    /// statement: the row comes from the same snapshot as the events.
    ///
    /// The events are bounded by their sequence, not by a LIMIT: an order's sequences run
    /// 1, 2, 3… (each is the previous plus one, written under the order's row), and SQLite 3.51
    /// prepares a statement with a bound LIMIT again at every execution, which for this
    /// statement of some seventy columns cost more than running it.
    pub async fn order_with_events(
        &self,
        order_id: &str,
        after: Option<i64>,
        limit: u64,
    ) -> Result<Option<(order::Model, Vec<order_event::Model>)>> {
        use order_event::Column as E;
        use sea_orm::{
            JoinType,
            sea_query::{ExprTrait, IntoCondition},
        };
        // An outer join, so an order with no events to send still comes back. The sequence bound
        // sits in the join's ON: in the WHERE it would drop that row.
        let events = order::Entity::belongs_to(order_event::Entity)
            .from(order::Column::Id)
            .to(E::OrderId)
            .on_condition(move |_, event| match after {
                Some(after) => {
                    let last = after.saturating_add(i64::try_from(limit).unwrap_or(i64::MAX));
                    Expr::col((event.clone(), E::Sequence))
                        .gt(after)
                        .and(Expr::col((event, E::Sequence)).lte(last))
                        .into_condition()
                }
                None => {
                    let latest = Query::select()
                        .expr(Func::max(Expr::col((order_event::Entity, E::Sequence))))
                        .from(order_event::Entity)
                        .and_where(
                            Expr::col((order_event::Entity, E::OrderId))
                                .equals((order::Entity, order::Column::Id)),
                        )
                        .to_owned();
                    Expr::col((event, E::Sequence))
                        .eq(Expr::SubQuery(None, Box::new(latest.into())))
                        .into_condition()
                }
            });
        let rows = order::Entity::find()
            .filter(order::Column::Id.eq(order_id))
            .join(JoinType::LeftJoin, events.into())
            .select_also(order_event::Entity)
            .order_by_asc(E::Sequence)
            .all(&self.db)
            .await?;
        let mut rows = rows.into_iter();
        let Some((row, first)) = rows.next() else {
            return Ok(None);
        };
        let events = first
            .into_iter()
            .chain(rows.filter_map(|(_, event)| event))
            .collect();
        Ok(Some((row, events)))
    }

    /// A customer's FMS account.
    pub async fn fms_account(&self, customer_reference: &str) -> Result<Option<fms_account::Model>> {
        Ok(fms_account::Entity::find()
            .filter(fms_account::Column::CustomerReference.eq(customer_reference))
            .all(&self.db)
            .await?
            .into_iter()
            .next())
    }

    /// Inserts an FMS account unless one exists; returns the stored one.
    pub async fn insert_fms_account(&self, row: fms_account::Model) -> Result<fms_account::Model> {
        let reference = row.customer_reference.clone();
        {
            let _gate = self.gate().await;
            fms_account::Entity::insert(fms_account::ActiveModel::from(row).reset_all())
                .on_conflict_do_nothing()
                .exec_without_returning(&self.db)
                .await?;
        }
        self.fms_account(&reference)
            .await?
            .ok_or_else(|| crate::error::OrderingError::Internal("FMS account vanished".into()))
    }

    /// Updates an FMS account's e-mail, password and status, if it is still as `old`.
    pub async fn update_fms_account(
        &self,
        old: &fms_account::Model,
        email: &str,
        passwd_enc: &str,
        status: &str,
    ) -> Result<bool> {
        let _gate = self.gate().await;
        let r = fms_account::Entity::update_many()
            .col_expr(fms_account::Column::Email, Expr::value(email))
            .col_expr(fms_account::Column::PasswdEnc, Expr::value(passwd_enc))
            .col_expr(fms_account::Column::Status, Expr::value(status))
            .col_expr(fms_account::Column::UpdateTime, Expr::value(Utc::now()))
            .filter(fms_account::Column::CustomerReference.eq(old.customer_reference.as_str()))
            .filter(fms_account::Column::PasswdEnc.eq(old.passwd_enc.as_str()))
            .filter(fms_account::Column::Status.eq(old.status.as_str()))
            .exec(&self.db)
            .await?;
        Ok(r.rows_affected == 1)
    }

    /// Records a new top-up under its idempotency key, atomically. False: the key exists.
    pub async fn create_top_up(&self, key: idempotency_key::Model, row: top_up::Model) -> Result<bool> {
        let _gate = self.gate().await;
        let Some(tx) = self
            .begin_claimed(idempotency_key::ActiveModel::from(key).reset_all())
            .await?
        else {
            return Ok(false);
        };
        top_up::Entity::insert(top_up::ActiveModel::from(row).reset_all())
            .exec_without_returning(&tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Moves a top-up from one of `from` states to `row`'s state and fields.
    pub async fn update_top_up(&self, row: &top_up::Model, from: &[&str]) -> Result<bool> {
        let mut new = row.clone();
        new.update_time = Utc::now();
        let _gate = self.gate().await;
        let r = top_up::Entity::update_many()
            .set(top_up::ActiveModel::from(new).reset_all())
            .filter(top_up::Column::Id.eq(row.id.as_str()))
            .filter(top_up::Column::State.is_in(from.iter().copied()))
            .exec(&self.db)
            .await?;
        Ok(r.rows_affected == 1)
    }
}

/// An idempotency key row.
pub fn key_row(
    scope: &str,
    request_id: &str,
    fingerprint: String,
    order_id: &str,
    resource_id: Option<String>,
) -> idempotency_key::Model {
    idempotency_key::Model {
        scope: scope.to_owned(),
        request_id: request_id.to_owned(),
        fingerprint,
        order_id: order_id.to_owned(),
        resource_id,
        create_time: Utc::now(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use sea_orm::DbErr;
    use sea_orm::error::ConnAcquireErr;

    use super::*;

    #[tokio::test]
    async fn a_transient_error_is_retried_until_the_wait_is_over_and_no_other_is() {
        let calls = AtomicU32::new(0);
        let wait = StdDuration::from_millis(300);
        let started = std::time::Instant::now();
        let down = retry_transient_for(wait, "test", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(OrderingError::Database(DbErr::ConnectionAcquire(
                ConnAcquireErr::Timeout,
            )))
        })
        .await;
        assert!(down.unwrap_err().is_transient());
        assert!(calls.load(Ordering::SeqCst) >= 2);
        assert!(started.elapsed() >= wait);

        let calls = AtomicU32::new(0);
        let wrong = retry_transient_for(wait, "test", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(OrderingError::Database(DbErr::Custom("no such column".into())))
        })
        .await;
        assert!(!wrong.unwrap_err().is_transient());
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let calls = AtomicU32::new(0);
        let back = retry_transient_for(wait, "test", || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 => Err(OrderingError::Database(DbErr::ConnectionAcquire(
                    ConnAcquireErr::Timeout,
                ))),
                n => Ok(n),
            }
        })
        .await;
        assert_eq!(back.unwrap(), 1);
    }
}
