//! Database connection and migrations, for SQLite (embedded, the local default) and PostgreSQL
//! (production). Services own their tables; this module only connects and migrates.
//!
//! Hot statements carry no bound `LIMIT`: SQLite (3.51, bundled) lets a bound LIMIT shape the
//! plan, so it prepares such a statement again at every execution. They bound their rows by key
//! (a unique column, `MAX(id)`, a sequence range) instead.

use std::{
    path::Path,
    sync::{
        Arc, LazyLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{
    Alias, CommonTableExpression, Expr, ExprTrait, InsertStatement, Query, SelectStatement,
    SubQueryStatement, Values,
};
use sea_orm::{
    ActiveModelTrait, ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection,
    DatabaseTransaction, DbErr, EntityTrait, Iterable, QueryResult, RuntimeErr, SqlErr,
    SqliteTransactionMode, StatementBuilder, TransactionOptions, TransactionTrait,
    sqlx::{
        self,
        sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous},
    },
};
use sea_orm_migration::MigratorTrait;
use sea_query_sqlx::SqlxValues;

use crate::config::redact_url;

/// Caps the SQLite write-ahead log after checkpoints, so a long-lived process cannot grow it
/// without bound (64 MiB).
const SQLITE_JOURNAL_SIZE_LIMIT: &str = "67108864";

/// How long a pooled connection sits idle before it is pinged on its way out of the pool.
const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(1);

/// Connects to `url` (`sqlite://path?mode=rwc` or `postgres://...`).
///
/// SQLite gets WAL mode with `synchronous=NORMAL` (durable at checkpoints, fast commits), a busy
/// timeout so concurrent writers wait instead of failing, a journal size limit, and foreign
/// keys; the directory of the file is created if missing. A PostgreSQL pool gets a
/// [`ServerWatch`].
pub async fn connect(url: &str) -> Result<DatabaseConnection, DbErr> {
    if url.starts_with("sqlite:") {
        create_sqlite_parent_dir(url)?;
    }
    let watch = ServerWatch::default();
    let db = Database::connect(connect_options(url, &watch)).await?;
    if db.get_database_backend() == DatabaseBackend::Postgres {
        watch.spawn(db.get_postgres_connection_pool());
    }
    tracing::info!(database = %redact_url(url), backend = ?db.get_database_backend(), "database connected");
    Ok(db)
}

fn connect_options(url: &str, watch: &ServerWatch) -> ConnectOptions {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .sqlx_logging(false)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10))
        // No idle timeout and no lifetime, so sqlx starts no reaper task: in sqlx 0.9.0 its idle
        // count can wrap below zero under churn and the reaper then spins a core for good
        // (sqlx issue 3645, seen here once as a hung test run). Dead connections are still
        // caught by sqlx's pings.
        .idle_timeout(None::<Duration>)
        .max_lifetime(None::<Duration>)
        // sqlx pings a connection when it goes back to the pool and, by default, again when it
        // is taken out: a second round trip per statement. One just returned was alive; only
        // one that sat idle for a while is pinged again.
        .test_before_acquire_if_idle_for(PING_WHEN_IDLE_FOR);
    if url.starts_with("sqlite:") {
        options
            // SQLite serialises writers anyway; a small pool lets readers run beside one writer.
            .max_connections(4)
            .map_sqlx_sqlite_opts(|opts: SqliteConnectOptions| {
                opts.journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(5))
                    .foreign_keys(true)
                    .pragma("journal_size_limit", SQLITE_JOURNAL_SIZE_LIMIT)
            });
    } else {
        let watch = watch.clone();
        options
            .max_connections(8)
            .map_sqlx_postgres_before_acquire(move |_conn, meta| {
                let usable = watch.outlived_the_server(meta.age);
                Box::pin(async move { Ok(usable) })
            });
    }
    options
}

/// Tells which pooled PostgreSQL connections were opened before the server last went away.
///
/// Without a ping on every acquire, a restart (or failover) would fail the first statement on
/// each pooled connection, and a saga step failing on its write can leave work behind a lease.
/// Instead one extra connection per pool does nothing but wait: when the server ends it, the
/// moment is recorded, and every pooled connection opened before it is discarded on its way out
/// of the pool. A connection ended on its own (say `pg_terminate_backend`) is still only caught
/// by sqlx's ping after use or after idling.
#[derive(Clone, Debug, Default)]
pub struct ServerWatch {
    /// When the server was last seen going away, in nanoseconds after [`clock_origin`]; 0 if
    /// never.
    lost_at: Arc<AtomicU64>,
}

/// The watcher's connection is named so that an operator (and a test) can find it in
/// `pg_stat_activity`.
pub const SERVER_WATCH_APPLICATION_NAME: &str = "esim-server-watch";

/// How long the watcher waits before reconnecting after a failed attempt.
const SERVER_WATCH_RETRY: Duration = Duration::from_millis(250);

fn clock_origin() -> Instant {
    static ORIGIN: LazyLock<Instant> = LazyLock::new(Instant::now);
    *ORIGIN
}

fn since_origin(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(clock_origin()).as_nanos()).unwrap_or(u64::MAX)
}

impl ServerWatch {
    /// Whether a connection of age `age` was opened after the server was last lost.
    fn outlived_the_server(&self, age: Duration) -> bool {
        let lost_at = self.lost_at.load(Ordering::Acquire);
        let opened_at = Instant::now().checked_sub(age).map_or(0, since_origin);
        lost_at == 0 || opened_at > lost_at
    }

    fn server_lost(&self) {
        self.lost_at
            .store(Ord::max(since_origin(Instant::now()), 1), Ordering::Release);
    }

    /// Watches `pool`'s server until the pool is closed or dropped.
    fn spawn(&self, pool: &sqlx::PgPool) {
        clock_origin();
        let options = pool
            .connect_options()
            .as_ref()
            .clone()
            .application_name(SERVER_WATCH_APPLICATION_NAME);
        let closed = pool.close_event();
        let watch = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = closed => {}
                () = watch.run(options) => {}
            }
        });
    }

    async fn run(&self, options: sqlx::postgres::PgConnectOptions) {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_lazy_with(options);
        loop {
            let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
                Ok(listener) => listener,
                Err(err) => {
                    tracing::debug!(error = %err, "database server watch cannot connect yet");
                    tokio::time::sleep(SERVER_WATCH_RETRY).await;
                    continue;
                }
            };
            // Reconnect only after the loss is recorded, so a connection the watcher sees again
            // was opened after the mark.
            listener.eager_reconnect(false);
            if let Err(err) = listener.listen(SERVER_WATCH_APPLICATION_NAME).await {
                tracing::debug!(error = %err, "database server watch cannot listen yet");
                tokio::time::sleep(SERVER_WATCH_RETRY).await;
                continue;
            }
            loop {
                match listener.try_recv().await {
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        self.server_lost();
                        tracing::warn!(
                            "database server connection lost; pooled connections opened before now are discarded"
                        );
                    }
                    Err(err) => {
                        tracing::debug!(error = %err, "database server watch cannot reconnect yet");
                        tokio::time::sleep(SERVER_WATCH_RETRY).await;
                    }
                }
            }
        }
    }
}

/// Connects and, when `migrate` is set, applies the pending migrations of `M`.
pub async fn connect_and_migrate<M: MigratorTrait>(
    url: &str,
    migrate: bool,
) -> Result<DatabaseConnection, DbErr> {
    let db = connect(url).await?;
    if migrate {
        M::up(&db, None).await?;
        tracing::info!(applied = M::migrations().len(), "migrations up to date");
    }
    Ok(db)
}

/// Where the rows of an `INSERT … SELECT` come from.
#[derive(Debug, Clone)]
pub enum RowsFrom {
    /// The values alone: one row.
    Values,
    /// One per row of `name`, an earlier part of the same statement (PostgreSQL's
    /// data-modifying `WITH`): none when it produced none.
    Cte(Alias),
    /// One row if the statement just before, in the same SQLite batch ([`sqlite_atomic`]),
    /// changed exactly one row (SQLite's `changes()`); none otherwise.
    PreviousChangedOne,
}

impl RowsFrom {
    /// Applies the source to the `SELECT` of the row's values.
    pub fn apply(&self, row: &mut SelectStatement) {
        match self {
            Self::Values => {}
            Self::Cte(name) => {
                row.from(name.clone());
            }
            Self::PreviousChangedOne => {
                row.and_where(Expr::cust("changes() = 1"));
            }
        }
    }
}

/// `INSERT INTO <model's table> (<its set columns>) SELECT <their values> …`, the rows taken
/// as `from` says: for statements that insert only what an earlier one produced.
pub fn insert_from<A: ActiveModelTrait>(model: A, from: RowsFrom) -> Result<InsertStatement, DbErr> {
    let mut columns = Vec::new();
    let mut row = Query::select();
    for column in <A::Entity as EntityTrait>::Column::iter() {
        if let Some(value) = model.get(column).into_value() {
            columns.push(column);
            row.expr(Expr::val(value));
        }
    }
    from.apply(&mut row);
    Ok(Query::insert()
        .into_table(A::Entity::default())
        .columns(columns)
        .select_from(row)
        .map_err(|e| DbErr::Custom(e.to_string()))?
        .to_owned())
}

static SQLITE_BATCHES: AtomicU64 = AtomicU64::new(0);
static SQLITE_BATCHED_STATEMENTS: AtomicU64 = AtomicU64::new(0);

/// How many [`sqlite_atomic`] batches this process has run, and how many statements they held
/// (BEGIN and COMMIT not counted). sea-orm's metric callback does not see them: they go to
/// sqlx directly.
pub fn sqlite_batches() -> (u64, u64) {
    (
        SQLITE_BATCHES.load(Ordering::Relaxed),
        SQLITE_BATCHED_STATEMENTS.load(Ordering::Relaxed),
    )
}

/// SQLite: runs `statements` as one write transaction (`BEGIN IMMEDIATE; …; COMMIT`) in a single
/// call to the connection's worker thread, returning the rows they returned (`RETURNING`), in
/// order. sqlx runs each SQLite connection on a thread of its own, so every call is a round trip
/// between threads; a transaction of two statements made with [`begin_write`] takes four.
///
/// This relies on sqlx running every statement of a multi-statement SQLite query, binding the
/// `?` arguments in turn (sqlx 0.9; its issue 3108 may drop that in a later version, which the
/// SQLite tests of the callers would show).
///
/// A statement that fails leaves the transaction open on its connection, so it is rolled back
/// there before the connection goes back to the pool, or the connection is closed if that fails
/// too. This runs as a task of its own: a caller that stops waiting cannot skip the rollback.
/// Panics if `db` is not SQLite.
pub async fn sqlite_atomic(
    db: &DatabaseConnection,
    statements: &[&dyn StatementBuilder],
) -> Result<Vec<QueryResult>, DbErr> {
    SQLITE_BATCHES.fetch_add(1, Ordering::Relaxed);
    SQLITE_BATCHED_STATEMENTS.fetch_add(statements.len() as u64, Ordering::Relaxed);
    let mut sql = String::from("BEGIN IMMEDIATE;\n");
    let mut values = Vec::new();
    for statement in statements {
        let built = statement.build(&DatabaseBackend::Sqlite);
        sql.push_str(&built.sql);
        sql.push_str(";\n");
        values.extend(built.values.map(|v| v.0).unwrap_or_default());
    }
    sql.push_str("COMMIT");
    let pool = db.get_sqlite_connection_pool().clone();
    tokio::spawn(async move {
        let mut conn = pool.acquire().await.map_err(exec_err)?;
        let rows = sqlx::query_with(sqlx::AssertSqlSafe(sql), SqlxValues(Values(values)))
            .fetch_all(&mut *conn)
            .await;
        if rows.is_err() && sqlx::query("ROLLBACK").execute(&mut *conn).await.is_err() {
            // No transaction to roll back (SQLite ended it itself, or BEGIN failed) or a broken
            // connection: either way it is not to be reused as it is.
            let _ = conn.close().await;
        }
        rows.map(|rows| rows.into_iter().map(QueryResult::from).collect())
            .map_err(exec_err)
    })
    .await
    .map_err(|err| DbErr::Custom(format!("SQLite batch task: {err}")))?
}

/// Whether `err` is a unique-constraint violation: the key exists already.
pub fn is_unique_violation(err: &DbErr) -> bool {
    matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

/// Whether `err` says the database could not take the statement right now — the connection
/// failed, the server is shutting down or restarting, the pool found no connection in time, a
/// serialization failure or deadlock, SQLite busy — rather than that the statement is wrong.
/// The same statement may succeed if sent again.
pub fn is_transient(err: &DbErr) -> bool {
    let sqlx_err = match err {
        DbErr::ConnectionAcquire(_) => return true,
        DbErr::Conn(RuntimeErr::SqlxError(e))
        | DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e)) => e.as_ref(),
        _ => return false,
    };
    match sqlx_err {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let Some(code) = db.code() else {
                return false;
            };
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // Busy and locked, with their extended codes.
                code.parse::<u32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6))
            } else {
                // PostgreSQL: connection exceptions (08), operator intervention such as a
                // shutdown (57P), serialization failure, deadlock.
                code.starts_with("08") || code.starts_with("57P") || code == "40001" || code == "40P01"
            }
        }
        _ => false,
    }
}

fn exec_err(err: sqlx::Error) -> DbErr {
    DbErr::Exec(RuntimeErr::SqlxError(Arc::new(err)))
}

/// `name AS (statement)`, for a data-modifying `WITH` (PostgreSQL).
pub fn cte(statement: impl Into<SubQueryStatement>, name: Alias) -> CommonTableExpression {
    CommonTableExpression::new()
        .query(statement)
        .table_name(name)
        .to_owned()
}

/// Begins a transaction that will write. On SQLite it takes the write lock at `BEGIN`
/// (`BEGIN IMMEDIATE`): a deferred transaction that reads first and writes later fails with
/// SQLITE_BUSY_SNAPSHOT ("database is locked") if another writer committed in between, and the
/// busy timeout cannot help it. PostgreSQL ignores the mode.
pub async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..TransactionOptions::default()
    })
    .await
}

/// Folds the SQLite write-ahead log back into the database file and truncates it. Long-running
/// services call this periodically: a reader that never lets go of its snapshot otherwise lets
/// the WAL grow without bound. A no-op on PostgreSQL.
pub async fn checkpoint(db: &DatabaseConnection) -> Result<(), DbErr> {
    if db.get_database_backend() == DatabaseBackend::Sqlite {
        db.execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)").await?;
    }
    Ok(())
}

/// Deletes the rows of `table` whose `create_time` is before `cutoff`; returns how many.
pub async fn delete_created_before(
    db: &DatabaseConnection,
    table: &'static str,
    cutoff: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let delete = Query::delete()
        .from_table(Alias::new(table))
        .and_where(Expr::col(Alias::new("create_time")).lt(cutoff))
        .to_owned();
    let result = db.execute(&delete).await?;
    Ok(result.rows_affected())
}

fn create_sqlite_parent_dir(url: &str) -> Result<(), DbErr> {
    let path = url
        .trim_start_matches("sqlite:")
        .trim_start_matches("//")
        .split('?')
        .next()
        .unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    match Path::new(path).parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir)
            .map_err(|err| DbErr::Custom(format!("cannot create directory {}: {err}", dir.display()))),
        _ => Ok(()),
    }
}

/// Test support: fresh, empty databases, so tests never share state, on every engine the run is
/// configured for: always SQLite, and PostgreSQL too when `DATABASE_URL` points at a server
/// (`postgres://user@host:port/db`; a new database `esim_test_<uuid>` is created there). A
/// database test loops over [`testing::fresh_databases`], so one `cargo test` covers both.
pub mod testing {
    use sea_orm::{ConnectionTrait, DbErr};

    /// A database for one test. Holds the SQLite temp dir alive as long as it lives.
    #[derive(Debug)]
    pub struct TestDatabase {
        /// The URL to connect to.
        pub url: String,
        _dir: Option<tempfile::TempDir>,
    }

    /// The PostgreSQL server tests also run against, if `DATABASE_URL` names one.
    pub fn postgres_url() -> Option<String> {
        std::env::var("DATABASE_URL")
            .ok()
            .filter(|url| url.starts_with("postgres://") || url.starts_with("postgresql://"))
    }

    /// One fresh database per configured engine: SQLite, then PostgreSQL if configured.
    pub async fn fresh_databases() -> Result<Vec<TestDatabase>, DbErr> {
        let mut databases = vec![fresh_sqlite()?];
        if let Some(admin_url) = postgres_url() {
            databases.push(fresh_postgres(&admin_url).await?);
        }
        Ok(databases)
    }

    /// A fresh SQLite database file in a temporary directory.
    pub fn fresh_sqlite() -> Result<TestDatabase, DbErr> {
        let dir = tempfile::tempdir().map_err(|err| DbErr::Custom(err.to_string()))?;
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
        Ok(TestDatabase { url, _dir: Some(dir) })
    }

    /// A fresh database on the PostgreSQL server at `admin_url`.
    pub async fn fresh_postgres(admin_url: &str) -> Result<TestDatabase, DbErr> {
        let name = format!("esim_test_{}", uuid::Uuid::new_v4().simple());
        let admin = sea_orm::Database::connect(admin_url).await?;
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await?;
        admin.close().await?;
        Ok(TestDatabase {
            url: replace_database(admin_url, &name),
            _dir: None,
        })
    }

    fn replace_database(url: &str, name: &str) -> String {
        let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
        let scheme_end = base.find("://").map_or(0, |i| i + 3);
        let base = match base[scheme_end..].find('/') {
            Some(slash) => &base[..scheme_end + slash],
            None => base,
        };
        match query {
            Some(query) => format!("{base}/{name}?{query}"),
            None => format!("{base}/{name}"),
        }
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn replaces_the_database_name() {
            assert_eq!(
                super::replace_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
                "postgres://postgres@127.0.0.1:5432/x"
            );
            assert_eq!(super::replace_database("postgres://h", "x"), "postgres://h/x");
            assert_eq!(
                super::replace_database("postgres://h/d?sslmode=disable", "x"),
                "postgres://h/x?sslmode=disable"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectionTrait, Statement};
    use sea_orm_migration::prelude::*;

    use super::*;

    #[derive(Debug)]
    struct Migrator;

    impl MigratorTrait for Migrator {
        fn migrations() -> Vec<Box<dyn MigrationTrait>> {
            vec![Box::new(CreateWidgets)]
        }
    }

    #[derive(Debug, DeriveMigrationName)]
    struct CreateWidgets;

    #[async_trait::async_trait]
    impl MigrationTrait for CreateWidgets {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .create_table(
                    Table::create()
                        .table("widgets")
                        .col(ColumnDef::new("id").big_integer().not_null().primary_key())
                        .to_owned(),
                )
                .await
        }

        async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .drop_table(Table::drop().table("widgets").to_owned())
                .await
        }
    }

    #[test]
    fn pools_start_no_reaper_and_ping_only_idle_connections_on_acquire() {
        for url in ["sqlite://data/x.db?mode=rwc", "postgres://postgres@127.0.0.1/x"] {
            let options = connect_options(url, &ServerWatch::default());
            assert_eq!(options.get_idle_timeout(), Some(None), "{url}");
            assert_eq!(options.get_max_lifetime(), Some(None), "{url}");
            assert!(!options.get_test_before_acquire(), "{url}");
            assert_eq!(
                options.get_test_before_acquire_if_idle_for(),
                Some(PING_WHEN_IDLE_FOR),
                "{url}"
            );
        }
    }

    #[test]
    fn transient_errors_are_told_from_wrong_statements() {
        let io = exec_err(sqlx::Error::Io(std::io::ErrorKind::ConnectionReset.into()));
        assert!(is_transient(&io));
        assert!(is_transient(&exec_err(sqlx::Error::PoolTimedOut)));
        assert!(is_transient(&DbErr::ConnectionAcquire(
            sea_orm::error::ConnAcquireErr::Timeout
        )));
        assert!(!is_transient(&exec_err(sqlx::Error::RowNotFound)));
        assert!(!is_transient(&DbErr::Custom("bad statement".into())));
    }

    /// A serialization failure raised by PostgreSQL is transient; a constraint violation is not.
    #[tokio::test]
    async fn postgres_error_codes_are_classified() {
        let Some(admin_url) = testing::postgres_url() else {
            return;
        };
        let db = connect(&admin_url).await.unwrap();
        let raise =
            |code: &str| format!("DO $$ BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = '{code}'; END $$");
        for (code, transient) in [
            ("40001", true),
            ("57P01", true),
            ("08006", true),
            ("23505", false),
            // A number that reads as SQLite's busy code (42501 & 0xff == 5): not SQLite here.
            ("42501", false),
            ("22P02", false),
        ] {
            let err = db.execute_unprepared(&raise(code)).await.unwrap_err();
            assert_eq!(is_transient(&err), transient, "{code}: {err}");
        }
    }

    #[test]
    fn a_lost_server_discards_only_connections_opened_before_it() {
        let watch = ServerWatch::default();
        assert!(watch.outlived_the_server(Duration::from_secs(3600)));
        watch.server_lost();
        std::thread::sleep(Duration::from_millis(2));
        assert!(!watch.outlived_the_server(Duration::from_millis(100)));
        assert!(watch.outlived_the_server(Duration::ZERO));
    }

    /// Every backend of the pool's database ended at once, as a server restart does: the next
    /// statements run on fresh connections instead of failing on the dead ones.
    #[tokio::test]
    async fn postgres_pools_replace_connections_the_server_ended() {
        let Some(admin_url) = testing::postgres_url() else {
            return;
        };
        let database = testing::fresh_postgres(&admin_url).await.unwrap();
        let db = connect(&database.url).await.unwrap();
        let name = database.url.rsplit('/').next().unwrap().to_owned();
        let admin = sea_orm::Database::connect(&admin_url).await.unwrap();
        let count_watchers = || {
            let statement = sea_orm::Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1 AND application_name = $2",
                [name.clone().into(), SERVER_WATCH_APPLICATION_NAME.into()],
            );
            let admin = &admin;
            async move {
                let row = admin.query_one_raw(statement).await.unwrap().unwrap();
                row.try_get::<i64>("", "n").unwrap()
            }
        };
        let wait_for_watcher = async || {
            for _ in 0..200 {
                if count_watchers().await == 1 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            panic!("the server watch never connected");
        };
        wait_for_watcher().await;
        // Fill the pool with idle connections.
        let busy = (0..4).map(|_| db.execute_unprepared("SELECT pg_sleep(0.05)"));
        for result in futures::future::join_all(busy).await {
            result.unwrap();
        }
        admin
            .execute_raw(sea_orm::Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                [name.clone().into()],
            ))
            .await
            .unwrap();
        // The watcher reconnects only after recording the loss.
        tokio::time::sleep(Duration::from_millis(50)).await;
        wait_for_watcher().await;
        for _ in 0..8 {
            db.execute_unprepared("SELECT 1").await.unwrap();
        }
    }

    #[tokio::test]
    async fn migrations_apply_once_and_are_idempotent() {
        for database in testing::fresh_databases().await.unwrap() {
            migrate_twice(&database.url).await;
        }
    }

    async fn migrate_twice(url: &str) {
        let db = connect_and_migrate::<Migrator>(url, true).await.unwrap();
        db.execute_unprepared("INSERT INTO widgets (id) VALUES (1)")
            .await
            .unwrap();
        db.close().await.unwrap();

        // A restart runs the migrator again: nothing is re-applied, the data stays.
        let db = connect_and_migrate::<Migrator>(url, true).await.unwrap();
        let backend = db.get_database_backend();
        let rows = db
            .query_all_raw(Statement::from_string(backend, "SELECT id FROM widgets"))
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(Migrator::get_applied_migrations(&db).await.unwrap().len(), 1);
    }

    /// A fresh SQLite database with the widgets table; keep the first alive while using it.
    async fn widgets_db() -> (testing::TestDatabase, DatabaseConnection) {
        let database = testing::fresh_sqlite().unwrap();
        let db = connect_and_migrate::<Migrator>(&database.url, true)
            .await
            .unwrap();
        (database, db)
    }

    async fn widgets(db: &DatabaseConnection) -> Vec<i64> {
        let rows = db
            .query_all_raw(Statement::from_string(
                DatabaseBackend::Sqlite,
                "SELECT id FROM widgets ORDER BY id",
            ))
            .await
            .unwrap();
        rows.iter()
            .map(|row| row.try_get::<i64>("", "id").unwrap())
            .collect()
    }

    fn insert_widget(id: i64, from: RowsFrom) -> InsertStatement {
        let mut row = Query::select();
        row.expr(Expr::val(id));
        from.apply(&mut row);
        Query::insert()
            .into_table(Alias::new("widgets"))
            .columns([Alias::new("id")])
            .select_from(row)
            .unwrap()
            .returning_col(Alias::new("id"))
            .to_owned()
    }

    #[tokio::test]
    async fn a_sqlite_batch_commits_all_or_nothing_and_leaves_no_transaction_open() {
        let (_database, db) = widgets_db().await;
        let (one, two) = (
            insert_widget(1, RowsFrom::Values),
            insert_widget(2, RowsFrom::Values),
        );

        let returned = sqlite_atomic(&db, &[&one, &two]).await.unwrap();
        let ids: Vec<i64> = returned.iter().map(|r| r.try_get("", "id").unwrap()).collect();
        assert_eq!(ids, [1, 2]);

        // 3 is inserted, then 1 violates the key: the batch fails and 3 is rolled back.
        let three = insert_widget(3, RowsFrom::Values);
        let err = sqlite_atomic(&db, &[&three, &one]).await.unwrap_err();
        assert!(is_unique_violation(&err), "{err:?}");
        assert_eq!(widgets(&db).await, [1, 2]);

        // Every pooled connection still takes a transaction: none was left inside one.
        for id in 10..20 {
            let insert = insert_widget(id, RowsFrom::Values);
            sqlite_atomic(&db, &[&insert]).await.unwrap();
        }
        begin_write(&db).await.unwrap().commit().await.unwrap();
        assert_eq!(widgets(&db).await.len(), 12);
    }

    #[tokio::test]
    async fn a_guarded_insert_follows_only_a_statement_that_changed_one_row() {
        let (_database, db) = widgets_db().await;
        let seed = insert_widget(1, RowsFrom::Values);
        sqlite_atomic(&db, &[&seed]).await.unwrap();
        let bump = |from: i64| {
            Query::update()
                .table(Alias::new("widgets"))
                .value(Alias::new("id"), from + 1)
                .and_where(Expr::col(Alias::new("id")).eq(from))
                .to_owned()
        };

        let (missed, guarded) = (bump(5), insert_widget(100, RowsFrom::PreviousChangedOne));
        assert!(sqlite_atomic(&db, &[&missed, &guarded]).await.unwrap().is_empty());
        assert_eq!(widgets(&db).await, [1]);

        let hit = bump(1);
        assert_eq!(sqlite_atomic(&db, &[&hit, &guarded]).await.unwrap().len(), 1);
        assert_eq!(widgets(&db).await, [2, 100]);
    }

    /// Idempotency keys as every service stores them: written through an entity, so the test
    /// compares the cutoff with times in the encoding the services really store.
    mod key {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "keys")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub key: String,
            pub create_time: DateTimeUtc,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    #[tokio::test]
    async fn rows_created_before_the_cutoff_are_deleted_and_no_others() {
        use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, QueryOrder};
        for database in testing::fresh_databases().await.unwrap() {
            let db = connect(&database.url).await.unwrap();
            db.execute(
                &Table::create()
                    .table("keys")
                    .col(crate::schema::text_pk("key"))
                    .col(crate::schema::time("create_time"))
                    .to_owned(),
            )
            .await
            .unwrap();
            let now = Utc::now();
            let cutoff = now - chrono::Duration::days(7);
            for (name, age) in [
                (
                    "a-week-and-a-second",
                    chrono::Duration::days(7) + chrono::Duration::seconds(1),
                ),
                ("a-month", chrono::Duration::days(30)),
                ("six-days", chrono::Duration::days(6)),
                ("new", chrono::Duration::zero()),
            ] {
                key::Model {
                    key: name.into(),
                    create_time: now - age,
                }
                .into_active_model()
                .insert(&db)
                .await
                .unwrap();
            }
            assert_eq!(delete_created_before(&db, "keys", cutoff).await.unwrap(), 2);
            let left: Vec<String> = key::Entity::find()
                .order_by_asc(key::Column::Key)
                .all(&db)
                .await
                .unwrap()
                .into_iter()
                .map(|row| row.key)
                .collect();
            assert_eq!(left, ["new", "six-days"], "{}", database.url);
            assert_eq!(delete_created_before(&db, "keys", cutoff).await.unwrap(), 0);
        }
    }

    #[tokio::test]
    async fn sqlite_runs_in_wal_mode() {
        let database = testing::fresh_sqlite().unwrap();
        let db = connect(&database.url).await.unwrap();
        let row = db
            .query_one_raw(Statement::from_string(
                DatabaseBackend::Sqlite,
                "PRAGMA journal_mode",
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.try_get_by_index::<String>(0).unwrap(), "wal");
        checkpoint(&db).await.unwrap();
    }
}
