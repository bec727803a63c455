//! End-to-end tests: the whole suite in one process, checked with real gRPC clients.

mod boot;
mod catalog;
mod drills;
mod fuzz;
mod hop;
mod journey;
mod journeys;
mod migrations;
mod security;
mod traveller;
