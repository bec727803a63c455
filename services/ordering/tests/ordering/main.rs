//! Integration tests of the ordering service (one binary; every test runs on SQLite, and on
//! PostgreSQL too when `DATABASE_URL` is set).

mod api;
mod catalog;
mod common;
mod crash;
mod fms;
mod invalid;
mod lease;
mod mp;
mod sft;
mod store;
