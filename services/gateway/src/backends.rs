//! The four backends behind the gateway: one [`PeerChannel`] each (internal credential, call
//! context and deadline on every forwarded call), and a prober that keeps the gateway's
//! readiness honest — NOT_SERVING while no backend answers its health check, so a gateway cut
//! off from everything leaves the load balancer's rotation.

use std::time::Duration;

use esim_runtime::{Env, config::ConfigError, internal::InternalCredential, peer::PeerChannel};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// HTTP/2 connections per backend by default: two spread the load over two connection tasks
/// (and two sockets) on a 2-core pod; more rarely helps.
const DEFAULT_CONNECTIONS: usize = 2;

/// How long one health check may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Channels to the backends.
#[derive(Debug, Clone)]
pub struct Backends {
    /// The catalog service (`GATEWAY_CATALOG_URL`).
    pub catalog: PeerChannel,
    /// The ordering service (`GATEWAY_ORDERING_URL`).
    pub ordering: PeerChannel,
    /// The provisioning service (`GATEWAY_PROVISIONING_URL`).
    pub provisioning: PeerChannel,
    /// The usage service (`GATEWAY_USAGE_URL`).
    pub usage: PeerChannel,
}

impl Backends {
    /// Lazily connected channels to the backends `env` names (defaults: the local suite's
    /// ports), `GATEWAY_BACKEND_CONNECTIONS` connections each.
    pub fn from_env(env: &Env, credential: Option<InternalCredential>) -> Result<Self, ConfigError> {
        let connections = env.parse_or("BACKEND_CONNECTIONS", DEFAULT_CONNECTIONS)?;
        let backend = |name: &str, default: &str| {
            let url = env.string_or(name, default);
            tracing::info!(backend = name, %url, connections, "forwarding");
            PeerChannel::connect_lazy(&env.key(name), &url, credential.clone(), connections)
        };
        Ok(Self {
            catalog: backend("CATALOG_URL", "http://127.0.0.1:50052")?,
            ordering: backend("ORDERING_URL", "http://127.0.0.1:50053")?,
            provisioning: backend("PROVISIONING_URL", "http://127.0.0.1:50054")?,
            usage: backend("USAGE_URL", "http://127.0.0.1:50055")?,
        })
    }

    /// Checks every backend's health each `interval` until `shutdown`; the receiver holds
    /// whether at least one answered SERVING at the last check (false before the first).
    pub fn watch_reachable(&self, interval: Duration, shutdown: CancellationToken) -> watch::Receiver<bool> {
        let (tx, rx) = watch::channel(false);
        let channels = [
            self.catalog.clone(),
            self.ordering.clone(),
            self.provisioning.clone(),
            self.usage.clone(),
        ];
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = ticks.tick() => {}
                }
                let checks = channels.iter().cloned().map(serving);
                let reachable = futures::future::join_all(checks).await.into_iter().any(|up| up);
                tx.send_if_modified(|last| {
                    let changed = *last != reachable;
                    if changed {
                        tracing::warn!(reachable, "backend reachability changed");
                    }
                    *last = reachable;
                    changed
                });
            }
        });
        rx
    }
}

async fn serving(channel: PeerChannel) -> bool {
    let mut client = HealthClient::new(channel);
    let check = client.check(HealthCheckRequest {
        service: String::new(),
    });
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, check).await,
        Ok(Ok(response)) if response.get_ref().status() == ServingStatus::Serving
    )
}
