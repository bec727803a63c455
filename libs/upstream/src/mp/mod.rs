//! LinksField Marketing Place (MP) wholesale API.
//!
//! Base path `/mp-api/api/esim/`, envelope `{code,msg,data,requestId}` with success code
//! 200, requests signed with APISIX hmac-auth ([`sign`]).

mod client;
pub mod sign;
pub mod types;
pub mod wire;

pub use client::MpClient;
pub use types::*;
