//! Database connection and migrations, for SQLite (embedded, the local default) and PostgreSQL
//! (production). Services own their tables; this module only connects and migrates.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
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

/// How long a pooled SQLite connection sits idle before it is pinged on its way out of the
/// pool.
const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(1);

/// Connects to `url` (`sqlite://path?mode=rwc` or `postgres://...`).
///
/// SQLite gets WAL mode with `synchronous=NORMAL` (durable at checkpoints, fast commits), a busy
/// timeout so concurrent writers wait instead of failing, a journal size limit, and foreign
/// keys; the directory of the file is created if missing.
pub async fn connect(url: &str) -> Result<DatabaseConnection, DbErr> {
    if url.starts_with("sqlite:") {
        create_sqlite_parent_dir(url)?;
    }
    let db = Database::connect(connect_options(url)).await?;
    tracing::info!(database = %redact_url(url), backend = ?db.get_database_backend(), "database connected");
    Ok(db)
}

fn connect_options(url: &str) -> ConnectOptions {
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
        .max_lifetime(None::<Duration>);
    if url.starts_with("sqlite:") {
        // sqlx pings a connection when it goes back to the pool and, by default, again when it
        // is taken out: a second round trip to the connection's thread per statement. An
        // embedded database has no server to restart, so one just returned is alive. (On
        // PostgreSQL the second ping stays: without it, the first statement on each pooled
        // connection after a server restart fails, see BENCHMARKS.md.)
        options
            .test_before_acquire_if_idle_for(PING_WHEN_IDLE_FOR)
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
        options.max_connections(8);
    }
    options
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
    fn pools_start_no_reaper_and_ping_on_acquire_where_a_server_can_restart() {
        for (url, ping_on_acquire) in [
            ("sqlite://data/x.db?mode=rwc", false),
            ("postgres://postgres@127.0.0.1/x", true),
        ] {
            let options = connect_options(url);
            assert_eq!(options.get_idle_timeout(), Some(None), "{url}");
            assert_eq!(options.get_max_lifetime(), Some(None), "{url}");
            assert_eq!(options.get_test_before_acquire(), ping_on_acquire, "{url}");
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
        let database = testing::fresh_sqlite().unwrap();
        let db = connect_and_migrate::<Migrator>(&database.url, true)
            .await
            .unwrap();
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
        let database = testing::fresh_sqlite().unwrap();
        let db = connect_and_migrate::<Migrator>(&database.url, true)
            .await
            .unwrap();
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
