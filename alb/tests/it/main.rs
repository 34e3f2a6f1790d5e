//! alb's integration tests as one test binary (one link, one run), one
//! module per concern; `common` holds the fixtures they share.

mod access_log;
mod balancing;
mod cli_errors;
mod common;
mod limits_reload;
mod runtime;
mod shared_core;
mod tls_mtls;
