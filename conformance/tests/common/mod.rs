//! Helpers shared by the conformance crate's integration tests.
#![allow(dead_code)]

pub mod certs;
