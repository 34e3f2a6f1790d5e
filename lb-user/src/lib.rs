//! lb-user: loads and attaches the xdplb XDP program, pins its maps and reads
//! its counters. The binary (`src/main.rs`) is a thin CLI over this library so
//! the integration tests drive exactly the same code.

pub mod announce;
pub mod api;
pub mod attach;
pub mod bpffs;
pub mod cli;
pub mod config;
pub mod dataplane;
pub mod desired;
pub mod drain;
pub mod exporter;
pub mod health;
pub mod metrics_endpoint;
pub mod neighbours;
pub mod netns;
pub mod overrides;
pub mod privileges;
pub mod program;
pub mod proxy;
pub mod rtnl;
pub mod stats;
pub mod supervisor;

pub use attach::{AttachMode, Attachment};
