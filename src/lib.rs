//! accord keeps the organizations, permits and enrollments of an
//! access-control database exactly as declared, and shows — with a diff —
//! whenever someone changes them behind its back.
#![forbid(unsafe_code)]

pub mod access;
pub mod cli;
pub mod config;
pub mod controller;
pub mod metrics;
pub mod model;
pub mod plan;
pub mod policy;
pub mod redact;
pub mod server;
pub mod source;
pub mod store;
pub mod sync;
