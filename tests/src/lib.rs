//! Helpers for end-to-end tests and benchmarks: the whole suite in one process on free ports,
//! each service on a fresh database of the engine under test, and a load generator.

pub mod load;

use std::net::SocketAddr;

use esim_runtime::{BoxError, Env, db::testing::TestDatabase};
use esim_suite::{Suite, SuiteOptions};
use tonic::transport::Channel;

/// A running suite and the databases it uses (kept alive until dropped).
#[derive(Debug)]
pub struct TestSuite {
    /// The running suite.
    pub suite: Suite,
    _databases: Vec<TestDatabase>,
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
        let mut vars = vec![
            ("PROVISIONING_ACTIVATION_CODE_KEY".to_owned(), key.clone()),
            ("ORDERING_CREDENTIAL_KEY".to_owned(), key),
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
        Ok(Self {
            suite: Suite::start(options).await?,
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

    /// Stops the suite and checks every service stopped cleanly.
    pub async fn stop(self) {
        self.suite.stop().await.expect("every service stops cleanly");
    }
}
