//! The gRPC server every service runs: its domain services plus `grpc.health.v1.Health`,
//! server reflection (v1 and v1alpha, so grpcurl works with no proto files), the request-id
//! layer, and graceful shutdown.
//!
//! Health is readiness: every registered service and the overall `""` entry start NOT_SERVING,
//! turn SERVING once the listener accepts calls (and, with a [readiness gate], while the gate
//! is open), and turn NOT_SERVING again as soon as shutdown begins, before in-flight calls are
//! drained (within a bounded grace period). The `liveness` entry is SERVING from the start of
//! serving to the end of the process, whatever the gate says: a gateway whose backends are all
//! down is not ready, but restarting it would not help.
//!
//! [readiness gate]: GrpcServer::readiness_gate

use std::{convert::Infallible, future::Future, time::Duration};

use http::{Request, Response};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, watch};
use tonic::{
    body::Body,
    server::NamedService,
    service::{Routes, RoutesBuilder},
    transport::{Server, server::TcpIncoming},
};
use tonic_health::{ServingStatus, server::HealthReporter};
use tower::Service;

use crate::{
    call_context::CallContextLayer,
    internal::{InternalAuthLayer, InternalCredential},
};

/// The health entry that reports liveness only.
pub const LIVENESS: &str = "liveness";

/// Why a server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The transport failed (e.g. the listener broke).
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The reflection descriptors could not be loaded.
    #[error("reflection setup failed: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// How a server stops.
#[derive(Debug, Clone, Copy)]
pub struct ShutdownPolicy {
    /// After health turns NOT_SERVING, keep accepting calls this long so load balancers and
    /// Kubernetes endpoints stop routing here first.
    pub drain_delay: Duration,
    /// Then wait at most this long for in-flight calls to finish; what is left is dropped.
    pub grace: Duration,
}

impl Default for ShutdownPolicy {
    fn default() -> Self {
        Self {
            drain_delay: Duration::ZERO,
            grace: crate::config::DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

/// What readiness depends on.
#[derive(Debug, Clone, Copy)]
struct ReadinessState {
    /// Accepting calls and not shutting down.
    serving: bool,
    /// The service's own condition (e.g. the gateway: a backend is reachable).
    gate: bool,
}

/// Reports readiness on the health service; one writer at a time, so a late gate update cannot
/// undo the NOT_SERVING of shutdown.
#[derive(Debug, Clone)]
struct Readiness {
    reporter: HealthReporter,
    names: Vec<String>,
    state: std::sync::Arc<Mutex<ReadinessState>>,
}

impl Readiness {
    async fn update(&self, change: impl FnOnce(&mut ReadinessState)) {
        let mut state = self.state.lock().await;
        change(&mut state);
        let status = if state.serving && state.gate {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        for name in &self.names {
            self.reporter.set_service_status(name.as_str(), status).await;
        }
    }
}

/// Builder of one service's gRPC server.
#[derive(Debug)]
pub struct GrpcServer {
    routes: RoutesBuilder,
    health_names: Vec<String>,
    reflected: Vec<String>,
    reflection: bool,
    internal: Option<InternalCredential>,
    gate: Option<watch::Receiver<bool>>,
}

impl Default for GrpcServer {
    fn default() -> Self {
        Self::new()
    }
}

impl GrpcServer {
    /// An empty server: health and reflection only.
    pub fn new() -> Self {
        Self {
            routes: Routes::builder(),
            health_names: vec![String::new()],
            reflected: Vec::new(),
            reflection: true,
            internal: None,
            gate: None,
        }
    }

    /// Serves `service`, reports its health, and lists it in reflection.
    pub fn add_service<S>(mut self, service: S) -> Self
    where
        S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.routes.add_service(service);
        self.health_names.push(S::NAME.to_owned());
        self.reflected.push(S::NAME.to_owned());
        self
    }

    /// Lists `service_name` in reflection without serving it here, so callers can discover its
    /// schema (a service whose methods arrive in a later release answers UNIMPLEMENTED).
    pub fn describe(mut self, service_name: &str) -> Self {
        self.reflected.push(service_name.to_owned());
        self
    }

    /// Serves reflection (the default) or not.
    pub fn reflection(mut self, enabled: bool) -> Self {
        self.reflection = enabled;
        self
    }

    /// Refuses every call but health and reflection that does not carry `credential` (see
    /// [`crate::internal`]); `None` trusts every caller.
    pub fn require_internal(mut self, credential: Option<InternalCredential>) -> Self {
        self.internal = credential;
        self
    }

    /// Reports SERVING only while `gate` holds `true` (besides serving at all).
    pub fn readiness_gate(mut self, gate: watch::Receiver<bool>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Serves on `listener` until `shutdown` completes, then drains per `policy`.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
        policy: ShutdownPolicy,
    ) -> Result<(), ServeError> {
        let (reporter, health_service) = tonic_health::server::health_reporter();
        reporter
            .set_service_status(LIVENESS, ServingStatus::NotServing)
            .await;
        let readiness = Readiness {
            reporter: reporter.clone(),
            names: self.health_names,
            state: std::sync::Arc::new(Mutex::new(ReadinessState {
                serving: false,
                gate: self.gate.as_ref().is_none_or(|gate| *gate.borrow()),
            })),
        };
        readiness.update(|_| {}).await;
        let gate_task = self.gate.map(|mut gate| {
            let readiness = readiness.clone();
            tokio::spawn(async move {
                while gate.changed().await.is_ok() {
                    let open = *gate.borrow_and_update();
                    readiness.update(|state| state.gate = open).await;
                }
            })
        });

        let mut reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(esim_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name("grpc.health.v1.Health");
        let mut reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(esim_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name("grpc.health.v1.Health");
        for name in &self.reflected {
            reflection_v1 = reflection_v1.with_service_name(name.as_str());
            reflection_v1alpha = reflection_v1alpha.with_service_name(name.as_str());
        }
        let mut routes = self.routes;
        routes.add_service(health_service);
        if self.reflection {
            routes
                .add_service(reflection_v1.build_v1()?)
                .add_service(reflection_v1alpha.build_v1alpha()?);
        }

        let local_addr = listener.local_addr().ok();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .layer(CallContextLayer)
            .layer(InternalAuthLayer::new(self.internal))
            .add_routes(routes.routes())
            // Nagle's algorithm on accepted sockets stalls small request/response exchanges
            // behind delayed ACKs (tens of ms per hop through the gateway).
            .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), async {
                // A dropped sender also means stop.
                let _ = stop_rx.await;
            });
        tokio::pin!(server);

        readiness.update(|state| state.serving = true).await;
        reporter
            .set_service_status(LIVENESS, ServingStatus::Serving)
            .await;
        tracing::info!(addr = ?local_addr, "serving gRPC");

        tokio::select! {
            result = &mut server => return result.map_err(Into::into),
            () = shutdown => {}
        }

        tracing::info!(drain_delay = ?policy.drain_delay, grace = ?policy.grace, "shutting down: NOT_SERVING");
        readiness.update(|state| state.serving = false).await;
        if let Some(task) = gate_task {
            task.abort();
        }
        let drain = tokio::time::sleep(policy.drain_delay);
        tokio::pin!(drain);
        tokio::select! {
            result = &mut server => return result.map_err(Into::into),
            () = &mut drain => {}
        }
        let _ = stop_tx.send(());
        match tokio::time::timeout(policy.grace, server).await {
            Ok(result) => {
                tracing::info!("stopped");
                result.map_err(Into::into)
            }
            Err(_) => {
                tracing::warn!(grace = ?policy.grace, "grace period over; calls still in flight end with the process");
                Ok(())
            }
        }
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM (Kubernetes stopping the pod).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(%err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("received Ctrl-C"),
        () = terminate => tracing::info!("received SIGTERM"),
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
