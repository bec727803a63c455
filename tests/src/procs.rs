//! The suite as separate processes: the sandbox and the five service binaries
//! (`target/release/esim-<name>` next to the running executable), each on its own free port and
//! its own database, started with the same settings the all-in-one suite gives them. Used by
//! the `kill -9` drill (a service is killed and restarted with the same settings) and by the
//! soak's per-service RSS. Every child is killed when the harness is dropped, so an error never
//! leaves processes behind.

use std::{
    collections::BTreeMap,
    fs::File,
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use esim_runtime::{db::testing::TestDatabase, internal::InternalCredential};
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::scenarios::Engine;

/// The demo operator config (MP prices, SFT plans) matching what the sandbox seeds, as the
/// all-in-one suite gives the catalog.
const DEMO_CATALOG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../services/suite/demo/catalog.json");

/// The gRPC services with their settings prefix, in start order (the gateway last).
pub const SERVICES: [(&str, &str); 5] = [
    ("catalog", "CATALOG"),
    ("ordering", "ORDERING"),
    ("provisioning", "PROVISIONING"),
    ("usage", "USAGE"),
    ("gateway", "GATEWAY"),
];

/// Every child process: the sandbox, then the services.
pub const PROCESSES: [&str; 6] = [
    "sandbox",
    "catalog",
    "ordering",
    "provisioning",
    "usage",
    "gateway",
];

/// One child process and how to start it again.
#[derive(Debug)]
struct Proc {
    binary: PathBuf,
    log: PathBuf,
    addr: SocketAddr,
    child: Option<Child>,
}

/// The suite as child processes. Dropping it kills every child (SIGKILL).
#[derive(Debug)]
pub struct ProcSuite {
    procs: BTreeMap<&'static str, Proc>,
    env: Vec<(String, String)>,
    /// The gateway's bootstrap API key: every scope.
    pub api_key: String,
    /// The internal credential every service shares.
    pub internal: InternalCredential,
    /// Where the children's logs are (one file per process, appended across restarts).
    pub log_dir: PathBuf,
    databases: BTreeMap<&'static str, TestDatabase>,
    _dir: tempfile::TempDir,
}

/// A free port on 127.0.0.1 (bound, then released for the child to take).
fn free_addr() -> Result<SocketAddr, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(|err| format!("no free port: {err}"))
}

/// The directory holding the service binaries: that of the running executable
/// (`target/release` for `esim-bench`).
pub fn bin_dir() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|err| format!("current_exe: {err}"))?;
    exe.parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| format!("{} has no directory", exe.display()))
}

impl ProcSuite {
    /// Starts the sandbox and the five services as child processes on fresh databases of
    /// `engine`, with `overrides` on top of the suite's settings, and waits until every service
    /// (the gateway last) reports SERVING.
    pub async fn start(engine: &Engine, overrides: Vec<(String, String)>) -> Result<Self, String> {
        let bin_dir = bin_dir()?;
        let mut missing = Vec::new();
        for name in PROCESSES {
            let binary = bin_dir.join(format!("esim-{name}"));
            if !binary.is_file() {
                missing.push(binary.display().to_string());
            }
        }
        if !missing.is_empty() {
            return Err(format!(
                "missing service binaries: {} — build them first with \
                 `cargo build --release --workspace` (same CARGO_TARGET_DIR as esim-bench)",
                missing.join(", ")
            ));
        }
        let dir = tempfile::Builder::new()
            .prefix("esim-procs-")
            .tempdir()
            .map_err(|err| format!("temp dir: {err}"))?;
        let log_dir = dir.path().to_path_buf();
        let internal = InternalCredential::generate();
        let api_key = esim_gateway::keys::generate()
            .map_err(|err| format!("bootstrap key: {err}"))?
            .key;
        let mut addrs = BTreeMap::new();
        for name in PROCESSES {
            addrs.insert(name, free_addr()?);
        }
        let sandbox = addrs["sandbox"];
        // Services holding credentials refuse to start on PostgreSQL without real keys; the
        // drill gives them throw-away ones (32 bytes, base64), as the in-process suite does.
        let key = "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=";
        let mut env: Vec<(String, String)> = vec![
            ("SANDBOX_LISTEN_ADDR".into(), sandbox.to_string()),
            ("MP_BASE_URL".into(), format!("http://{sandbox}")),
            ("FMS_BASE_URL".into(), format!("http://{sandbox}/fms")),
            ("SFT_BASE_URL".into(), format!("http://{sandbox}/sft")),
            ("CATALOG_CONFIG_FILE".into(), DEMO_CATALOG.into()),
            ("PROVISIONING_ACTIVATION_CODE_KEY".into(), key.into()),
            ("ORDERING_CREDENTIAL_KEY".into(), key.into()),
            ("GATEWAY_BOOTSTRAP_KEY".into(), api_key.clone()),
            ("USAGE_CALLBACK_LISTEN_ADDR".into(), free_addr()?.to_string()),
            (
                "RUST_LOG".into(),
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            ),
        ];
        let mut databases = BTreeMap::new();
        for (name, prefix) in SERVICES {
            env.push((format!("{prefix}_LISTEN_ADDR"), addrs[name].to_string()));
            env.push((format!("{prefix}_INTERNAL_TOKEN"), internal.expose().to_owned()));
            let database = engine
                .fresh()
                .await
                .map_err(|err| format!("fresh {} database for {name}: {err}", engine.label()))?;
            env.push((format!("{prefix}_DATABASE_URL"), database.url.clone()));
            databases.insert(name, database);
            // Where every peer listens, e.g. `GATEWAY_CATALOG_URL`, `ORDERING_USAGE_URL`.
            for (peer, peer_prefix) in SERVICES {
                if peer != name {
                    env.push((
                        format!("{prefix}_{peer_prefix}_URL"),
                        format!("http://{}", addrs[peer]),
                    ));
                }
            }
        }
        env.extend(overrides);
        let mut suite = Self {
            procs: PROCESSES
                .into_iter()
                .map(|name| {
                    let proc = Proc {
                        binary: bin_dir.join(format!("esim-{name}")),
                        log: log_dir.join(format!("{name}.log")),
                        addr: addrs[name],
                        child: None,
                    };
                    (name, proc)
                })
                .collect(),
            env,
            api_key,
            internal,
            log_dir,
            databases,
            _dir: dir,
        };
        for name in PROCESSES {
            suite.spawn(name)?;
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        for (name, _) in SERVICES {
            suite.wait_serving(name, deadline).await?;
        }
        Ok(suite)
    }

    fn proc(&mut self, name: &str) -> Result<&mut Proc, String> {
        self.procs
            .get_mut(name)
            .ok_or_else(|| format!("no process named {name}"))
    }

    /// Starts process `name` (again) with the suite's settings; its output is appended to its
    /// log file.
    fn spawn(&mut self, name: &str) -> Result<(), String> {
        let env = self.env.clone();
        let proc = self.proc(name)?;
        let log = File::options()
            .create(true)
            .append(true)
            .open(&proc.log)
            .map_err(|err| format!("{}: {err}", proc.log.display()))?;
        let err_log = log
            .try_clone()
            .map_err(|err| format!("{}: {err}", proc.log.display()))?;
        let mut command = Command::new(&proc.binary);
        command.env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            command.env("PATH", path);
        }
        let child = command
            .envs(env)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log)
            .spawn()
            .map_err(|err| format!("start {}: {err}", proc.binary.display()))?;
        proc.child = Some(child);
        Ok(())
    }

    /// The address process `name` listens on.
    pub fn addr(&self, name: &str) -> SocketAddr {
        self.procs
            .get(name)
            .unwrap_or_else(|| panic!("no process named {name}"))
            .addr
    }

    /// The pid of process `name`, while it runs.
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.procs.get(name)?.child.as_ref().map(Child::id)
    }

    /// The database URL of service `name`.
    pub fn database_url(&self, name: &str) -> &str {
        &self
            .databases
            .get(name)
            .unwrap_or_else(|| panic!("no database for {name}"))
            .url
    }

    /// A channel to the gateway (its API is public: callers present an API key).
    pub async fn gateway_channel(&self) -> Result<Channel, String> {
        Channel::from_shared(format!("http://{}", self.addr("gateway")))
            .map_err(|err| err.to_string())?
            .connect()
            .await
            .map_err(|err| format!("gateway: {err}"))
    }

    /// `kill -9` of process `name` (SIGKILL), reaped at once; returns the pid it had.
    pub fn kill(&mut self, name: &str) -> Result<u32, String> {
        let proc = self.proc(name)?;
        let mut child = proc
            .child
            .take()
            .ok_or_else(|| format!("{name} is not running"))?;
        let pid = child.id();
        child
            .kill()
            .map_err(|err| format!("kill -9 {name} ({pid}): {err}"))?;
        child
            .wait()
            .map_err(|err| format!("wait for {name} ({pid}): {err}"))?;
        Ok(pid)
    }

    /// Starts process `name` again with the same settings (same port, same database).
    pub fn restart(&mut self, name: &str) -> Result<u32, String> {
        self.spawn(name)?;
        self.pid(name).ok_or_else(|| format!("{name} did not start"))
    }

    /// Waits until service `name` answers its health check with SERVING, by `deadline`. Fails
    /// at once when the process has exited.
    pub async fn wait_serving(&mut self, name: &str, deadline: Instant) -> Result<(), String> {
        let addr = self.addr(name);
        loop {
            let status = crate::health_status(addr, "").await;
            if matches!(status, Ok(ServingStatus::Serving)) {
                return Ok(());
            }
            self.check_alive()?;
            if Instant::now() >= deadline {
                return Err(format!(
                    "{name} is not serving ({status:?}); its log: {}",
                    self.procs[name].log.display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Fails if a process exited without being killed by the harness (its log says why).
    pub fn check_alive(&mut self) -> Result<(), String> {
        let mut dead = Vec::new();
        for (name, proc) in &mut self.procs {
            if let Some(child) = proc.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                proc.child = None;
                dead.push(format!(
                    "{name} exited by itself ({status}); see {}",
                    proc.log.display()
                ));
            }
        }
        if dead.is_empty() {
            Ok(())
        } else {
            Err(dead.join("; "))
        }
    }

    /// Stops every child: SIGTERM (a clean stop), then SIGKILL for any still running after
    /// 10 s.
    pub async fn stop(mut self) {
        for proc in self.procs.values() {
            if let Some(child) = &proc.child {
                // `Child` sends only SIGKILL; the `kill` command sends SIGTERM.
                let _ = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .stderr(Stdio::null())
                    .status();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for proc in self.procs.values_mut() {
            while let Some(child) = proc.child.as_mut() {
                if !matches!(child.try_wait(), Ok(None)) || Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        // Drop kills and reaps whatever is left.
    }
}

impl Drop for ProcSuite {
    fn drop(&mut self) {
        for proc in self.procs.values_mut() {
            if let Some(mut child) = proc.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
