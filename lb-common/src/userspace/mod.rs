//! The userspace core shared by lb-user (map building, `lb-user attach`,
//! `lb-user proxy`) and alb. Each concern exists once here, so both tiers
//! choose backends, judge health, admit clients, read durations and notice
//! config changes by the same rules.

pub mod allowlist;
pub mod duration;
pub mod health;
pub mod select;
pub mod signals;
pub mod watch;
