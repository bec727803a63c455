//! Group commit of the alert log. One task per replica appends alerts: whatever was submitted
//! while the previous batch committed goes into the next one statement, so a burst of
//! callbacks costs one commit (one fsync) per batch instead of one each. A submitter learns its
//! outcome only after its batch committed, so a 200 never precedes the commit.
//!
//! One writer also keeps this replica's cursor ids committing in order, so watchers meet fewer
//! gaps (see `GAP_GRACE` in `api`).

use chrono::Utc;
use sea_orm::sqlx::sqlite::{SqlitePoolOptions, SqliteSynchronous};
use sea_orm::{DatabaseBackend, DatabaseConnection, DbErr, SqlxSqliteConnector};
use tokio::sync::{mpsc, oneshot};

use crate::error::{Result, UsageError};
use crate::store::{self, NewAlert};

/// Most alerts in one statement (12 bind values each; both databases allow far more).
const MAX_BATCH: usize = 512;
/// Submissions waiting for the writer before submitters wait too.
const QUEUE: usize = 4 * MAX_BATCH;

struct Job {
    alert: NewAlert,
    done: oneshot::Sender<Result<Option<i64>>>,
}

/// The submitting end of the writer task; the task ends when this is dropped.
#[derive(Debug, Clone)]
pub struct AlertWriter {
    jobs: mpsc::Sender<Job>,
}

impl AlertWriter {
    /// Starts the writer task over `db` (needs a Tokio runtime).
    pub fn spawn(db: DatabaseConnection) -> Self {
        let (jobs, queue) = mpsc::channel(QUEUE);
        tokio::spawn(run(db, queue));
        Self { jobs }
    }

    /// Appends `alert` unless its dedup key is stored; returns its cursor id, `None` for a
    /// duplicate, once committed.
    pub async fn append(&self, alert: NewAlert) -> Result<Option<i64>> {
        let (done, outcome) = oneshot::channel();
        let stopped = || UsageError::Unavailable("the alert writer stopped".into());
        self.jobs.send(Job { alert, done }).await.map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }
}

async fn run(db: DatabaseConnection, mut queue: mpsc::Receiver<Job>) {
    let mut durable: Option<DatabaseConnection> = None;
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let (alerts, done): (Vec<_>, Vec<_>) = jobs.drain(..).map(|j| (j.alert, j.done)).unzip();
        let result = match durable_connection(&db, &mut durable).await {
            Ok(conn) => store::insert_alerts(conn, &alerts, Utc::now()).await,
            Err(err) => Err(err),
        };
        match result {
            Ok(ids) => {
                for (done, id) in done.into_iter().zip(ids) {
                    // A submitter that went away (client disconnected) needs no answer.
                    let _ = done.send(Ok(id));
                }
            }
            Err(err) => {
                tracing::error!(error = %err, alerts = alerts.len(), "alert batch not stored");
                let message = err.to_string();
                for done in done {
                    let _ = done.send(Err(UsageError::Database(DbErr::Custom(message.clone()))));
                }
            }
        }
    }
}

/// The connection batches are written on, opened on first use (by the next batch again if
/// opening failed).
///
/// PostgreSQL: the shared pool (`synchronous_commit` is on, so a commit is flushed). SQLite: a
/// connection of its own with `synchronous=FULL`. The shared pool runs WAL with
/// `synchronous=NORMAL`, which survives a crash of the process but may roll back the last
/// commits on power loss or an OS crash; that is fine for snapshots (fetched again) and poller
/// alerts (their `alerted` mark rolls back with them), but an MP callback answered 200 is never
/// sent again, so its commit must reach the disk first. Grouped, that fsync is paid per batch.
async fn durable_connection<'a>(
    db: &'a DatabaseConnection,
    durable: &'a mut Option<DatabaseConnection>,
) -> Result<&'a DatabaseConnection> {
    if db.get_database_backend() != DatabaseBackend::Sqlite {
        return Ok(db);
    }
    if durable.is_none() {
        *durable = Some(open_durable_sqlite(db).await?);
    }
    durable
        .as_ref()
        .ok_or_else(|| UsageError::Internal("alert writer connection missing".into()))
}

async fn open_durable_sqlite(db: &DatabaseConnection) -> Result<DatabaseConnection> {
    let options = db
        .get_sqlite_connection_pool()
        .connect_options()
        .as_ref()
        .clone()
        .synchronous(SqliteSynchronous::Full);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .map_err(|err| DbErr::Custom(format!("cannot open the alert writer's connection: {err}")))?;
    Ok(SqlxSqliteConnector::from_sqlx_sqlite_pool(pool))
}
