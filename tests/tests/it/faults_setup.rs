//! What the fault tests share: the two-tier chain on one health-check
//! schedule, and counting failed checks in the balancers' logs.

use std::time::Duration;

use xdplb_tests::lab::{
    chain::{Chain, ChainSpec},
    config::Check,
};

/// Both tiers check on this schedule (lb-user: TCP connect to the albs,
/// HTTP to the L4 VIP's backends; alb: HTTP to its backends).
pub const CHECK: Check = Check { interval: Duration::from_millis(200), timeout: Duration::from_millis(150), rise: 2, fall: 3 };

/// Logging that names every failed check (the shared scheduler logs them
/// at debug level) besides the up/down lines.
pub const CHECK_LOG: &str = "info,lb_common::userspace::health=debug";

/// The chain with `albs` albs and `backends` backends, logging every failed check.
pub fn chain(prefix: &str, albs: u8, backends: u8) -> Chain {
    let mut spec = ChainSpec::new(prefix, albs, backends, CHECK);
    spec.lb_env.push(("RUST_LOG".into(), CHECK_LOG.into()));
    spec.alb_env.push(format!("RUST_LOG={CHECK_LOG}"));
    Chain::up(&spec).unwrap()
}

/// Lines of a balancer's log that record a failed check, a backend going
/// down and one coming up (the shared scheduler's wording).
pub fn check_log_counts<'a>(lines: impl IntoIterator<Item = &'a str>) -> (usize, usize, usize) {
    let (mut failed, mut down, mut up) = (0, 0, 0);
    for l in lines {
        if l.contains("health check failed") {
            failed += 1;
        } else if l.contains("backend down ") {
            down += 1;
        } else if l.contains("backend up ") {
            up += 1;
        }
    }
    (failed, down, up)
}
