//! Helpers for end-to-end tests and benchmarks: the whole suite in one process on free ports,
//! each service on a fresh database of the engine under test, and a load generator.

pub mod drills;
pub mod fuzz;
pub mod hop;
pub mod load;
pub mod opaque;
pub mod procs;
pub mod scenarios;

use std::net::SocketAddr;

use esim_runtime::{BoxError, Env, db::testing::TestDatabase, peer::PeerChannel};
use esim_suite::{Suite, SuiteOptions};
use tonic::{
    metadata::{Ascii, MetadataValue},
    service::Interceptor,
    transport::Channel,
};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// A running suite and the databases it uses (kept alive until dropped).
#[derive(Debug)]
pub struct TestSuite {
    /// The running suite.
    pub suite: Suite,
    /// The gateway's bootstrap API key: every scope.
    pub api_key: String,
    _databases: Vec<TestDatabase>,
}

/// Adds `authorization: Bearer <key>` to every call of a generated client
/// (`CatalogServiceClient::with_interceptor(channel, bearer)`).
#[derive(Debug, Clone)]
pub struct Bearer(MetadataValue<Ascii>);

impl Bearer {
    /// The interceptor for `key`.
    pub fn new(key: &str) -> Self {
        Self(format!("Bearer {key}").parse().expect("a key is ASCII"))
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        request.metadata_mut().insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// Waits until every gRPC service of `suite` reports its `liveness` entry SERVING (readiness
/// may wait for other services, which some tests keep down on purpose).
async fn all_live(suite: &Suite, within: std::time::Duration) -> Result<(), String> {
    tokio::select! {
        live = every_service_live(suite, within) => live,
        () = suite.any_stopped() => Err("a service stopped while starting".to_owned()),
    }
}

async fn every_service_live(suite: &Suite, within: std::time::Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + within;
    for service in suite.services.iter().filter(|service| service.name != "sandbox") {
        loop {
            let status = health_status(service.addr, esim_runtime::server::LIVENESS).await;
            if matches!(status, Ok(ServingStatus::Serving)) {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "{} is not serving after {within:?}: {status:?}",
                    service.name
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    Ok(())
}

/// The health status of `service` (`""`: the whole server) at `addr`, or why there is none
/// (connecting and answering take at most 2 s).
pub async fn health_status(addr: SocketAddr, service: &str) -> Result<ServingStatus, String> {
    let check = async {
        let channel = Channel::from_shared(format!("http://{addr}"))
            .map_err(|err| err.to_string())?
            .connect()
            .await
            .map_err(|err| err.to_string())?;
        HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .map(|answer| answer.into_inner().status())
            .map_err(|err| err.to_string())
    };
    tokio::time::timeout(std::time::Duration::from_secs(2), check)
        .await
        .unwrap_or_else(|_| Err("no health answer within 2 s".to_owned()))
}

/// The service prefixes with a database of their own.
const DATABASE_PREFIXES: [&str; 5] = ["CATALOG", "ORDERING", "PROVISIONING", "USAGE", "GATEWAY"];

impl TestSuite {
    /// Starts every service on a free port; `fresh` makes one empty database per service.
    pub async fn start<F, Fut>(mut fresh: F, overrides: Vec<(String, String)>) -> Result<Self, BoxError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<TestDatabase, sea_orm::DbErr>>,
    {
        let mut databases = Vec::new();
        // Services holding credentials refuse to start on PostgreSQL without real keys; tests
        // give them throw-away ones (32 bytes, base64).
        let key = "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=".to_owned();
        let api_key = esim_gateway::keys::generate()?.key;
        let mut vars = vec![
            ("PROVISIONING_ACTIVATION_CODE_KEY".to_owned(), key.clone()),
            ("ORDERING_CREDENTIAL_KEY".to_owned(), key),
            ("GATEWAY_BOOTSTRAP_KEY".to_owned(), api_key.clone()),
        ];
        vars.extend(overrides);
        for prefix in DATABASE_PREFIXES {
            let database = fresh().await?;
            vars.push((format!("{prefix}_DATABASE_URL"), database.url.clone()));
            databases.push(database);
        }
        let options = SuiteOptions {
            env: Env::new("SUITE").with_overrides(vars),
            ephemeral_ports: true,
        };
        let suite = Suite::start(options).await?;
        // Every service serving before a test calls it; one that failed while starting (it
        // would only be noticed at `stop`, or never when the test does not call it) fails the
        // start with its own error.
        if let Err(not_serving) = all_live(&suite, std::time::Duration::from_secs(60)).await {
            let stopped = suite.stop().await;
            return Err(format!("{not_serving}; the suite stopped with {stopped:?}").into());
        }
        Ok(Self {
            suite,
            api_key,
            _databases: databases,
        })
    }

    /// The address of service `name`.
    pub fn addr(&self, name: &str) -> SocketAddr {
        self.suite
            .addr(name)
            .unwrap_or_else(|| panic!("no service named {name}"))
    }

    /// A connected channel to service `name`.
    pub async fn channel(&self, name: &str) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr(name)))
            .expect("valid URL")
            .connect()
            .await
            .expect("service reachable")
    }

    /// The database URL of service `name` (`catalog`, `ordering`, `provisioning`, `usage`,
    /// `gateway`), for checks read straight from the tables.
    pub fn database_url(&self, name: &str) -> &str {
        let index = DATABASE_PREFIXES
            .iter()
            .position(|prefix| prefix.eq_ignore_ascii_case(name))
            .unwrap_or_else(|| panic!("no database for {name}"));
        &self._databases[index].url
    }

    /// Each service's database URL, by its settings prefix (`CATALOG`, `ORDERING`, ...), for
    /// tests that check what was (not) written.
    pub fn database_urls(&self) -> Vec<(&'static str, String)> {
        DATABASE_PREFIXES
            .into_iter()
            .zip(self._databases.iter().map(|database| database.url.clone()))
            .collect()
    }

    /// The interceptor presenting the bootstrap key.
    pub fn bearer(&self) -> Bearer {
        Bearer::new(&self.api_key)
    }

    /// A channel to backend `name` carrying the suite's internal credential, as the gateway
    /// and the services call each other.
    pub fn internal_channel(&self, name: &str) -> PeerChannel {
        PeerChannel::connect_lazy(
            "TEST",
            &format!("http://{}", self.addr(name)),
            Some(self.suite.internal.clone()),
            1,
        )
        .expect("valid URL")
    }

    /// Stops the suite and checks every service stopped cleanly.
    pub async fn stop(self) {
        self.suite.stop().await.expect("every service stops cleanly");
    }
}
