//! Typed HTTP clients for the MP, FMS and SFT upstream eSIM platforms.
//!
//! * [`mp`] — LinksField Marketing Place wholesale API (HMAC-signed, envelope code 200).
//! * [`fms`] — LinksField eSIM QR Mall (per-customer tokens, envelope code 0).
//! * [`sft`] — BICS SIM for Things (JWT bearer, `resultCode` 0).
//!
//! Each upstream module has a `wire` submodule of `pub` serde types that are exactly the
//! upstream JSON (the sandbox reuses them), and a `Client` that turns them into typed
//! results built on `esim-domain` types. All calls fail with one [`UpstreamError`].
//!
//! Every call takes our request id (`&str`), sent upstream as `requestId` where the
//! upstream has one, and recorded on the call's `tracing` span.

pub mod config;
pub mod error;
pub mod fms;
pub mod http;
pub mod mp;
pub mod sft;
pub mod wire_common;

pub use error::{ErrorKind, Upstream, UpstreamError};
