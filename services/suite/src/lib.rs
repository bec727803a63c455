//! The whole suite in one process: the upstream sandbox, the four backend services and the
//! gateway, each on its own port exactly as in production, sharing one shutdown. Used by
//! `cargo run` (a laptop) and by the end-to-end tests (ephemeral ports, temporary databases).
//!
//! The sandbox starts unless real upstreams are configured (`MP_BASE_URL`, `FMS_BASE_URL` or
//! `SFT_BASE_URL` set) or `SUITE_SANDBOX=off`; `SUITE_SANDBOX=on` forces it. When it runs, the
//! services are pointed at it.

use std::{future::Future, net::SocketAddr, path::PathBuf, pin::Pin, process::ExitCode};

use esim_sandbox::{Sandbox, SandboxConfig};

use esim_runtime::{BoxError, Env, ServiceContext, ServiceSpec, internal::InternalCredential};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The demo operator config (MP prices, SFT plans) matching what the sandbox seeds.
const DEMO_CATALOG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/demo/catalog.json");

type RunFn = fn(ServiceContext) -> Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

/// The backends, in start order, then the gateway (which needs their addresses).
const BACKENDS: [(ServiceSpec, RunFn); 4] = [
    (esim_catalog::SERVICE, |c| Box::pin(esim_catalog::run(c))),
    (esim_ordering::SERVICE, |c| Box::pin(esim_ordering::run(c))),
    (esim_provisioning::SERVICE, |c| {
        Box::pin(esim_provisioning::run(c))
    }),
    (esim_usage::SERVICE, |c| Box::pin(esim_usage::run(c))),
];
const GATEWAY: (ServiceSpec, RunFn) = (esim_gateway::SERVICE, |c| Box::pin(esim_gateway::run(c)));

/// How to start the suite.
#[derive(Debug, Clone)]
pub struct SuiteOptions {
    /// The settings source; tests pass overrides (databases, ports) on top of the process env.
    pub env: Env,
    /// Listen on free ephemeral ports instead of the configured ones (tests).
    pub ephemeral_ports: bool,
}

impl Default for SuiteOptions {
    fn default() -> Self {
        Self {
            env: Env::new("SUITE"),
            ephemeral_ports: false,
        }
    }
}

/// One service of a running suite.
#[derive(Debug, Clone)]
pub struct RunningService {
    /// Its name (`catalog`, ...).
    pub name: &'static str,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// A running suite.
#[derive(Debug)]
pub struct Suite {
    /// Every service and its address: the sandbox first (if it runs), the gateway last.
    pub services: Vec<RunningService>,
    /// The internal credential the suite gave every service that had none configured.
    pub internal: InternalCredential,
    /// The file holding the local API key, when the suite made one (see `dev_api_key`).
    pub api_key_file: Option<PathBuf>,
    shutdown: CancellationToken,
    /// Cancelled as soon as any service has stopped, on its own or not.
    stopped: CancellationToken,
    tasks: JoinSet<(&'static str, Result<(), BoxError>)>,
}

impl Suite {
    /// Binds every service, then starts them; returns once all listen.
    pub async fn start(options: SuiteOptions) -> Result<Self, BoxError> {
        let shutdown = CancellationToken::new();
        let mut env = options.env;
        let mut tasks = JoinSet::new();
        let stopped = CancellationToken::new();
        let mut services = Vec::new();

        if wants_sandbox(&env)? {
            let addr = start_sandbox(&env, options.ephemeral_ports, &shutdown, &mut tasks).await?;
            services.push(RunningService {
                name: "sandbox",
                addr,
            });
            env = env.with_overrides([
                ("MP_BASE_URL", format!("http://{addr}")),
                ("FMS_BASE_URL", format!("http://{addr}/fms")),
                ("SFT_BASE_URL", format!("http://{addr}/sft")),
            ]);
            if env.with_prefix("CATALOG").raw("CONFIG_FILE").is_none() {
                env = env.with_overrides([("CATALOG_CONFIG_FILE", DEMO_CATALOG.to_owned())]);
            }
            // Let the sandbox's MP alarm callbacks reach the usage service: a fresh secret per
            // run, registered with the sandbox by usage at start.
            let usage = env.with_prefix("USAGE");
            if !options.ephemeral_ports && usage.raw("CALLBACK_PUBLIC_URL").is_none() {
                let callback = usage.string_or("CALLBACK_LISTEN_ADDR", "127.0.0.1:8090");
                env = env.with_overrides([
                    (
                        "USAGE_CALLBACK_PUBLIC_URL",
                        format!("http://{callback}/callbacks/mp/alarm"),
                    ),
                    ("USAGE_CALLBACK_TOKEN", uuid::Uuid::new_v4().simple().to_string()),
                ]);
            }
        }

        // One internal credential for the run, so the services trust each other and nothing
        // else (unless one is configured, e.g. to reach a backend with grpcurl).
        let internal = InternalCredential::generate();
        for (spec, _) in BACKENDS.into_iter().chain([GATEWAY]) {
            let service = env.with_prefix(spec.env_prefix);
            if service.raw("INTERNAL_TOKEN").is_none() && service.raw("INTERNAL_TOKEN_FILE").is_none() {
                env = env.with_overrides([(service.key("INTERNAL_TOKEN"), internal.expose().to_owned())]);
            }
        }
        let gateway = env.with_prefix(GATEWAY.0.env_prefix);
        let mut api_key_file = None;
        if !options.ephemeral_ports
            && gateway.raw("BOOTSTRAP_KEY").is_none()
            && gateway.raw("BOOTSTRAP_KEY_FILE").is_none()
        {
            let path = dev_api_key(&env)?;
            env = env.with_overrides([(gateway.key("BOOTSTRAP_KEY_FILE"), path.display().to_string())]);
            api_key_file = Some(path);
        }

        // Bind every service first, then tell each where the others really listen (unless a
        // URL is configured explicitly), e.g. `GATEWAY_CATALOG_URL`, `ORDERING_USAGE_URL`.
        let mut bound = Vec::new();
        for (spec, run) in BACKENDS.into_iter().chain([GATEWAY]) {
            let service_env = service_env(spec, &env, options.ephemeral_ports);
            bound.push((spec, run, ServiceContext::listen(spec, &service_env).await?));
        }
        for (spec, _, listener) in &bound {
            let url = format!("http://{}", listener.local_addr()?);
            for (consumer, _) in BACKENDS.into_iter().chain([GATEWAY]) {
                let name = format!("{}_URL", spec.env_prefix);
                if consumer.env_prefix != spec.env_prefix
                    && env.with_prefix(consumer.env_prefix).raw(&name).is_none()
                {
                    env = env.with_overrides([(format!("{}_{name}", consumer.env_prefix), url.clone())]);
                }
            }
        }
        let mut contexts = Vec::new();
        for (spec, run, listener) in bound {
            let service_env = service_env(spec, &env, options.ephemeral_ports);
            contexts.push((
                ServiceContext::with_listener(spec, service_env, listener, shutdown.child_token())?,
                run,
            ));
        }

        for (context, run) in contexts {
            let name = context.spec.name;
            services.push(RunningService {
                name,
                addr: context.local_addr()?,
            });
            let stopped = stopped.clone();
            tasks.spawn(async move {
                let result = run(context).await;
                stopped.cancel();
                (name, result)
            });
        }
        Ok(Self {
            services,
            internal,
            api_key_file,
            shutdown,
            stopped,
            tasks,
        })
    }

    /// Completes once any service has stopped (the sandbox aside): on its own, it failed.
    pub async fn any_stopped(&self) {
        self.stopped.cancelled().await;
    }

    /// The address of service `name`.
    pub fn addr(&self, name: &str) -> Option<SocketAddr> {
        self.services.iter().find(|s| s.name == name).map(|s| s.addr)
    }

    /// A token that stops the whole suite when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until every service has stopped. The first one to stop (or fail) stops the rest,
    /// so a half-running suite never lingers. Returns the first error.
    pub async fn wait(mut self) -> Result<(), BoxError> {
        let mut first_error = None;
        while let Some(joined) = self.tasks.join_next().await {
            self.shutdown.cancel();
            let (name, result) = joined.map_err(|err| format!("a service task panicked: {err}"))?;
            match result {
                Ok(()) => tracing::info!(service = name, "stopped"),
                Err(err) => {
                    tracing::error!(service = name, error = %err, "failed");
                    first_error.get_or_insert_with(|| format!("{name}: {err}").into());
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Stops every service and waits for them.
    pub async fn stop(self) -> Result<(), BoxError> {
        self.shutdown.cancel();
        self.wait().await
    }
}

/// Whether to run the sandbox: `SUITE_SANDBOX` = `on`, `off`, or `auto` (the default: only when
/// no real upstream URL is configured).
fn wants_sandbox(env: &Env) -> Result<bool, BoxError> {
    let suite = env.with_prefix("SUITE");
    match suite.string_or("SANDBOX", "auto").to_ascii_lowercase().as_str() {
        "auto" => Ok(["MP", "FMS", "SFT"]
            .iter()
            .all(|upstream| env.with_prefix(upstream).raw("BASE_URL").is_none())),
        "on" | "true" | "1" => Ok(true),
        "off" | "false" | "0" => Ok(false),
        other => Err(format!("SUITE_SANDBOX: expected on, off or auto, not {other:?}").into()),
    }
}

/// The local API key file (`SUITE_DEV_API_KEY_FILE`, default `data/dev-api-key`): created
/// once with a new key (readable by its owner only), then kept, so scripts and grpcurl can use
/// `$(cat data/dev-api-key)` across restarts. The gateway loads it as its bootstrap key (every
/// scope); the key itself is never printed.
fn dev_api_key(env: &Env) -> Result<PathBuf, BoxError> {
    let path = PathBuf::from(
        env.with_prefix("SUITE")
            .string_or("DEV_API_KEY_FILE", "data/dev-api-key"),
    );
    if !path.exists() {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let key = esim_gateway::keys::generate()?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(&path)
            .map_err(|err| format!("{}: {err}", path.display()))?;
        std::io::Write::write_all(&mut file, format!("{}\n", key.key).as_bytes())?;
    }
    Ok(path)
}

/// Starts the upstream sandbox on `SANDBOX_LISTEN_ADDR` (default `127.0.0.1:8080`).
async fn start_sandbox(
    env: &Env,
    ephemeral: bool,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<(&'static str, Result<(), BoxError>)>,
) -> Result<SocketAddr, BoxError> {
    let config = SandboxConfig::from_env(env)?;
    let addr: SocketAddr = if ephemeral {
        SocketAddr::from(([127, 0, 0, 1], 0))
    } else {
        env.with_prefix("SANDBOX")
            .parse_or("LISTEN_ADDR", SocketAddr::from(([127, 0, 0, 1], 8080)))?
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|err| format!("sandbox: cannot listen on {addr}: {err}"))?;
    let local = listener.local_addr()?;
    let token = shutdown.child_token();
    tasks.spawn(async move {
        let result = Sandbox::new(config)
            .serve(listener, async move { token.cancelled().await })
            .await;
        ("sandbox", result.map_err(Into::into))
    });
    Ok(local)
}

/// The settings of one service: its prefix over the suite's environment, on a free port in tests.
fn service_env(spec: ServiceSpec, env: &Env, ephemeral: bool) -> Env {
    let service_env = env.with_prefix(spec.env_prefix);
    if ephemeral {
        service_env.with_overrides([(format!("{}_LISTEN_ADDR", spec.env_prefix), "127.0.0.1:0")])
    } else {
        service_env
    }
}

/// `main` of the all-in-one binary: start everything, print where it listens, stop on Ctrl-C.
pub async fn main() -> ExitCode {
    esim_runtime::telemetry::init();
    let suite = match Suite::start(SuiteOptions::default()).await {
        Ok(suite) => suite,
        Err(err) => {
            tracing::error!(error = %err, "the suite could not start");
            return ExitCode::FAILURE;
        }
    };
    println!("eSIM suite is running (Ctrl-C stops it):");
    for service in &suite.services {
        let scheme = if service.name == "sandbox" { "http" } else { "grpc" };
        println!("  {:<13} {scheme}://{}", service.name, service.addr);
    }
    if let Some(file) = &suite.api_key_file {
        println!(
            "An API key with every scope is in {}; call the gateway with",
            file.display()
        );
        println!("  -H \"authorization: Bearer $(cat {})\"", file.display());
    }
    let token = suite.shutdown_token();
    tokio::spawn(async move {
        esim_runtime::server::shutdown_signal().await;
        token.cancel();
    });
    match suite.wait().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}
