//! BICS SIM for Things (SFT): JWT login, `X-Authorization: Bearer`, request envelope
//! `{"Request":{...,"requestParam":{...}}}`, response
//! `{"Response":{"resultCode":0,"resultParam":{...},"responseParam":{"rows":[...]}}}`.

mod client;
pub mod wire;

pub use client::{AddonInfo, Counter, LifeCycle, SftClient, SimInfo, SimQuery, jwt_exp};
