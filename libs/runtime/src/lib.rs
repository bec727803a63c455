//! The runtime every eSIM suite service shares, so no service repeats bootstrap code:
//! configuration from the environment ([`config`]), logging ([`telemetry`]), database connect
//! and migrations ([`db`]), the gRPC server with health, reflection, the call context (request
//! id, trace context, deadline) and graceful shutdown ([`server`], [`call_context`]), trust
//! between the suite's services ([`internal`], [`peer`]), gRPC error helpers ([`status`]), and the binary
//! bootstrap ([`service`]), the conversions every API shares ([`api`]), and
//! secrets at rest ([`crypto`]).

/// Configuration from the environment (the `esim-config` crate, shared with the upstream
/// clients and the sandbox).
pub use esim_config as config;
pub mod api;
pub mod call_context;
pub mod crypto;
pub mod db;
pub mod internal;
pub mod peer;
pub mod schema;
pub mod server;
pub mod service;
pub mod status;
pub mod telemetry;

pub use config::{Env, ServiceSettings};

/// Every binary of the suite allocates per call (HTTP/2 frames, messages, headers) on several
/// threads at once; with glibc's malloc a gateway benchmark spent about 15 % of its CPU in
/// malloc/free, largely in frees contended across threads. mimalloc's thread-local heaps avoid
/// that. Declared here so each service binary, the suite and the benchmarks get it alike.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
pub use server::{GrpcServer, ShutdownPolicy};
pub use service::{BoxError, ServiceContext, ServiceSpec};
