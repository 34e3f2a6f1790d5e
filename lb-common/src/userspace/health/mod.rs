//! Active health checking, once for every tier: a [`Probe`] (TCP connect, or
//! HTTP GET with an expected status, on hyper) says whether one check
//! passed; a [`Tracker`] turns check results into up/down with HAProxy's
//! rise/fall hysteresis; the [`Scheduler`] runs one task per target and
//! publishes the state of every target.
//!
//! The scheduler is keyed by a stable target key (lb-user: `vip/address:port`,
//! alb: `pool/backend`): [`Scheduler::sync`] with a new target list keeps the
//! state of every target that stays, so a reload never resets a down backend
//! to up (it would get new flows again for `fall × interval`).

mod probe;
mod scheduler;
mod tracker;

pub use probe::{HttpProbe, Probe, ProbeFuture, TcpProbe};
pub use scheduler::{HealthMap, Scheduler, Target};
pub use tracker::Tracker;
