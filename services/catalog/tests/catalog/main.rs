//! Catalog service tests: an in-process catalog (real gRPC on 127.0.0.1:0, real tonic client)
//! syncing from an in-process upstream sandbox, on SQLite and, when `DATABASE_URL` names a
//! PostgreSQL server, on PostgreSQL too.

mod admin;
mod common;
mod invalid;
mod listing;
mod service;
mod sync;
