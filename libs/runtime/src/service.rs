//! The bootstrap every service binary shares: read settings, set up logging, bind, connect and
//! migrate the database, serve, stop cleanly. A service's `main.rs` is one call to [`main`].

use std::{future::Future, net::SocketAddr, process::ExitCode, time::Duration};

use sea_orm::{DatabaseConnection, DbErr, EntityName};
use sea_orm_migration::MigratorTrait;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    config::{ConfigError, Env, ServiceSettings},
    internal::InternalAuth,
    server::{GrpcServer, ServeError, ShutdownPolicy},
};

/// Any error a service's startup or run can end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What identifies a service: its name, its environment prefix, its default address.
#[derive(Debug, Clone, Copy)]
pub struct ServiceSpec {
    /// Short name, also the default SQLite file name (`data/<name>.db`).
    pub name: &'static str,
    /// Prefix of its environment variables (`CATALOG` → `CATALOG_LISTEN_ADDR`).
    pub env_prefix: &'static str,
    /// Default gRPC listen address.
    pub default_addr: SocketAddr,
}

impl ServiceSpec {
    /// The environment of this service (its prefix) over the process environment.
    pub fn env(&self) -> Env {
        Env::new(self.env_prefix)
    }

    /// This service's settings from `env`.
    pub fn settings(&self, env: &Env) -> Result<ServiceSettings, ConfigError> {
        ServiceSettings::from_env(env, self.name, self.default_addr)
    }

    /// This service's database as its settings in the process environment name it, migrated
    /// as the service would: for the command-line tools that work on its tables.
    pub async fn database<M: MigratorTrait>(&self) -> Result<DatabaseConnection, BoxError> {
        let settings = self.settings(&self.env())?;
        Ok(crate::db::connect_and_migrate::<M>(&settings.database_url, settings.migrate).await?)
    }
}

/// Everything a running service gets from the bootstrap: settings, its bound listener, and a
/// token cancelled when the process (or the all-in-one suite) stops.
#[derive(Debug)]
pub struct ServiceContext {
    /// Which service this is.
    pub spec: ServiceSpec,
    /// Its environment, for service-specific settings.
    pub env: Env,
    /// Its common settings.
    pub settings: ServiceSettings,
    /// The internal credential it sends to, and requires from, the suite's services.
    pub internal: InternalAuth,
    /// The bound gRPC listener.
    pub listener: TcpListener,
    /// Cancelled when the service must stop.
    pub shutdown: CancellationToken,
}

impl ServiceContext {
    /// Binds the configured address and builds the context.
    pub async fn bind(spec: ServiceSpec, env: Env, shutdown: CancellationToken) -> Result<Self, BoxError> {
        let listener = Self::listen(spec, &env).await?;
        Self::with_listener(spec, env, listener, shutdown)
    }

    /// Binds the address `env` configures for `spec`.
    pub async fn listen(spec: ServiceSpec, env: &Env) -> Result<TcpListener, BoxError> {
        let addr = spec.settings(env)?.listen_addr;
        Ok(TcpListener::bind(addr)
            .await
            .map_err(|err| format!("{}: cannot listen on {addr}: {err}", spec.name))?)
    }

    /// Builds the context around an already bound listener (the all-in-one suite binds every
    /// service first, so each can be told where the others listen).
    pub fn with_listener(
        spec: ServiceSpec,
        env: Env,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Result<Self, BoxError> {
        let settings = spec.settings(&env)?;
        let internal = InternalAuth::from_env(&env)?;
        Ok(Self {
            spec,
            env,
            settings,
            internal,
            listener,
            shutdown,
        })
    }

    /// The address actually bound (differs from the setting when port 0 was asked for).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Connects the service's database and applies its migrations `M` (unless disabled).
    pub async fn database<M: MigratorTrait>(&self) -> Result<DatabaseConnection, DbErr> {
        crate::db::connect_and_migrate::<M>(&self.settings.database_url, self.settings.migrate).await
    }

    /// Forgets the idempotency keys of entity `keys` (a `create_time` column) once they are older
    /// than `<P>_IDEMPOTENCY_RETENTION_HOURS`: at start, then hourly, until shutdown. Without it
    /// the table grows with every mutation for as long as the service runs.
    pub fn expire_idempotency_keys(&self, db: &DatabaseConnection, keys: impl EntityName) {
        let Some(retention) = self.settings.idempotency_retention else {
            return;
        };
        let table = keys.table_name();
        let (db, shutdown) = (db.clone(), self.shutdown.clone());
        tokio::spawn(async move {
            let mut hourly = tokio::time::interval(Duration::from_secs(3600));
            hourly.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = hourly.tick() => {}
                }
                let cutoff = chrono::Utc::now() - retention;
                match crate::db::delete_created_before(&db, table, cutoff).await {
                    Ok(0) => {}
                    Ok(deleted) => tracing::info!(table, deleted, "expired idempotency keys"),
                    Err(err) => tracing::warn!(table, error = %err, "cannot expire idempotency keys"),
                }
            }
        });
    }

    /// Serves `server` on the bound listener, to the suite's own services only (see
    /// [`crate::internal`]), until shutdown, then drains.
    pub async fn serve(self, server: GrpcServer) -> Result<(), ServeError> {
        let required = self
            .internal
            .enforce
            .then(|| self.internal.credential.clone())
            .flatten();
        self.serve_to(server.require_internal(required)).await
    }

    /// Serves `server` to every caller: the front door, which authenticates callers itself.
    pub async fn serve_public(self, server: GrpcServer) -> Result<(), ServeError> {
        self.serve_to(server).await
    }

    async fn serve_to(self, server: GrpcServer) -> Result<(), ServeError> {
        let server = server.reflection(self.settings.reflection);
        let policy = ShutdownPolicy {
            drain_delay: self.settings.drain_delay,
            grace: self.settings.shutdown_grace,
        };
        let token = self.shutdown.clone();
        server
            .serve(self.listener, async move { token.cancelled().await }, policy)
            .await
    }
}

/// The whole `main` of an operator tool (`esim-keys`, `esim-sims`): runs `run` and turns its
/// error into a line on stderr, prefixed with the tool's `name`, and a failure exit code.
pub async fn tool_main(name: &str, run: impl Future<Output = Result<(), BoxError>>) -> ExitCode {
    match run.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{name}: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The whole `main` of a service binary: logging, settings from the environment, bind, run
/// until SIGINT/SIGTERM. Returns a failure exit code (after logging why) if anything fails.
pub async fn main<F, Fut>(spec: ServiceSpec, run: F) -> ExitCode
where
    F: FnOnce(ServiceContext) -> Fut,
    Fut: Future<Output = Result<(), BoxError>>,
{
    crate::telemetry::init();
    let shutdown = CancellationToken::new();
    let signal_token = shutdown.clone();
    tokio::spawn(async move {
        crate::server::shutdown_signal().await;
        signal_token.cancel();
    });
    let result = async {
        let context = ServiceContext::bind(spec, spec.env(), shutdown).await?;
        tracing::info!(service = spec.name, addr = %context.local_addr()?, settings = ?context.settings, "starting");
        run(context).await
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(service = spec.name, error = %err, "stopped with an error");
            ExitCode::FAILURE
        }
    }
}
