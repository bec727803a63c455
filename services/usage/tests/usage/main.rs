//! Service tests of the usage service: an in-process gRPC server and callback endpoint on
//! 127.0.0.1:0 over the upstream sandbox, on SQLite and (when `DATABASE_URL` names one)
//! PostgreSQL.

mod alerts;
mod callback;
mod common;
mod usage;
