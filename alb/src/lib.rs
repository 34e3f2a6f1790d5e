//! alb: xdplb's TLS/mTLS-terminating HTTP load balancer.
//!
//! Pipeline per connection: allowlist → rustls handshake (SNI
//! certificates, client verification) → hyper HTTP/1.1 or HTTP/2 (ALPN) →
//! pool routing and balancing → pooled HTTP/1.1 to the backend. See
//! `docs/alb.md` for the configuration and operations.

pub mod access_log;
pub mod admin;
pub mod allowlist;
pub mod config;
pub mod dashboard;
pub mod health;
pub mod limits;
pub mod metrics;
pub mod pool;
pub mod proxy;
pub mod server;
pub mod state;
pub mod stats;
pub mod tls;
pub mod trace;
pub mod upstream;

pub use config::Config;
pub use server::{run_until_signal, start, start_on, Running};
