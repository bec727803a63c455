//! Integration tests of the sandbox over HTTP (one test binary; each module one area).

mod common;
mod contract;
mod faults;
mod fms;
mod mp;
mod sft;
