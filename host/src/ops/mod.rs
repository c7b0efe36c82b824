//! What operators see and tests use: metrics and probes over HTTP, logging, failpoints.

pub mod failpoint;
pub mod http;
pub mod logging;
pub mod metrics;
