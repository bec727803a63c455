//! End-to-end tests: the whole suite in one process, checked with real gRPC clients.

mod boot;
mod catalog;
mod journey;
mod migrations;
