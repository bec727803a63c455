//! Gateway authentication tests: the real gateway server (API keys, `Authorized`, forwarding)
//! on 127.0.0.1:0 in front of a fake usage backend that records what reaches it, with real
//! tonic clients, on SQLite and, when `DATABASE_URL` names a PostgreSQL server, PostgreSQL too.

mod access;
mod cli;
mod common;
mod keys;
