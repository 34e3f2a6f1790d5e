//! The userspace core shared by lb-user (map building, `lb-user attach`,
//! `lb-user proxy`) and alb. Each concern exists once here, so both tiers
//! choose backends, judge health, admit clients, read durations, notice
//! config changes, compute rates and serve their dashboards' shared page
//! code by the same rules.

pub mod allowlist;
pub mod dashboard;
pub mod duration;
pub mod health;
pub mod rates;
pub mod runtime;
pub mod select;
pub mod signals;
pub mod watch;
