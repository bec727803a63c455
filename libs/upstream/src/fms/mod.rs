//! LinksField eSIM QR Mall (FMS): per-customer accounts and tokens, envelope
//! `{code,data,message}` with success code 0, `Accept-Language` on every call.

mod client;
pub mod types;
pub mod wire;

pub use client::{FmsClient, FmsCredentials};
pub use types::*;
