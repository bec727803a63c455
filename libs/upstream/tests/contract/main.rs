//! Integration tests of esim-upstream, as modules of ONE test binary (link time).
//!
//! * `fixtures`: every JSON example of the seeds, kept verbatim under `tests/fixtures/`,
//!   decodes into the client types with the right values.
//! * `mp_http`, `fms_http`, `sft_http`: the clients against a tiny in-test axum server on
//!   127.0.0.1:0 — signing, token cache, faults, retries.
//! * `props`: arbitrary input into the decoders never panics.
//! * `sandbox_roundtrip` (harness) with `roundtrip_mp`, `roundtrip_fms`, `roundtrip_sft`,
//!   `roundtrip_faults`: the clients against the real `esim-sandbox` — every call, auth,
//!   business branches and injected faults.

mod fixtures;
mod fms_http;
mod mp_http;
mod props;
mod roundtrip_faults;
mod roundtrip_fms;
mod roundtrip_mp;
mod roundtrip_sft;
mod sandbox_roundtrip;
mod server;
mod sft_http;
