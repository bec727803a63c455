//! Service tests of the provisioning service: the real `run` on 127.0.0.1:0 over a fresh
//! database (SQLite, and PostgreSQL when `DATABASE_URL` names one) and the upstream sandbox,
//! called through a real tonic client.

mod cli;
mod common;
mod concurrency;
mod delivery;
mod failures;
mod lifecycle;
