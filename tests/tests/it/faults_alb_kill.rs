//! SIGKILL one of two albs under HTTPS load through the XDP VIP: lb-user's
//! TCP-connect check takes it out of the XDP tables within fall × interval
//! plus one timeout (a check already under way when it died may still
//! pass), new requests succeed through the other alb from then on, and
//! once the alb is started again it is back within rise × interval plus
//! one timeout and gets requests again.
//!
//! Removal is read from lb-user's `xdplb_backend_up` gauge, which the
//! exporter reads from the pinned maps: it turns 0 when the tables without
//! the backend are in place. It is sampled every 10 ms, so the measured
//! time is at most 10 ms late.

use std::time::{Duration, Instant};

use xdplb_tests::{
    lab::{chain::Chain, Host},
    load::{self, Bounds, Load},
    metrics, require_root,
    watch::Watch,
};

use super::faults_setup::{chain, CHECK};

const SAMPLE: Duration = Duration::from_millis(10);

/// Requests alb `i` has proxied so far.
fn served(c: &Chain, i: u8) -> f64 {
    metrics::sum(&c.tier.metrics(&c.lab, i).unwrap(), "alb_requests_total")
}

#[test]
fn a_killed_alb_leaves_the_xdp_tables_within_fall_times_interval_and_the_other_alb_serves() {
    require_root!();
    let mut c = chain("xk", 2, 2);
    let watch = Watch::start(&c.lab.ns(Host::Lb), SAMPLE, Duration::from_secs(60), Chain::lb_user_health);
    let (alb1, alb2) = (Chain::alb_key(1), Chain::alb_key(2));
    let start = Instant::now();
    let bounds = Bounds { max_requests: 50_000, max_time: Duration::from_secs(40), pause: Duration::from_millis(2) };
    let load = Load::start(&c.lab.ns(Host::Client), 2, bounds, c.tls_request(Duration::from_secs(10)));
    load.wait_successes(start, 100, Duration::from_secs(15)).unwrap();
    assert!(served(&c, 1) > 0.0 && served(&c, 2) > 0.0, "both albs serve before the kill");
    let up = watch.seen().last;
    assert_eq!((up.get(&alb1), up.get(&alb2)), (Some(&true), Some(&true)), "{up:?}");

    let killed = Instant::now();
    c.tier.kill9(&mut c.lab, 1).unwrap();
    let removed = watch.wait_for(&alb1, false, killed, Duration::from_secs(5)).unwrap();
    let took = removed - killed;
    let bound = CHECK.removal_bound();
    eprintln!("alb1 killed; out of the XDP tables after {took:?} (bound fall × interval + timeout = {bound:?})");
    assert!(took <= bound, "alb1 was removed after {took:?}, more than {bound:?}");
    assert!(took >= CHECK.interval * (CHECK.fall - 1), "removed after {took:?}: faster than {} failed checks allow", CHECK.fall);

    // From the removal on, every request succeeds, through alb2.
    let alb2_before = served(&c, 2);
    let counted_from = Instant::now();
    load.wait_successes(counted_from, 200, Duration::from_secs(20)).unwrap();
    // The client's view first: alb2 counted each of these before answering.
    let during = load.outcomes();
    let alb2_after = served(&c, 2);
    let after_removal: Vec<_> = during.iter().filter(|o| o.started >= removed).collect();
    let failed_after: Vec<_> = after_removal.iter().filter_map(|o| o.result.as_ref().err()).take(5).collect();
    assert!(failed_after.is_empty(), "requests failed after alb1 left the tables: {failed_after:?}");
    let through_alb2 = during.iter().filter(|o| o.started >= counted_from && o.result.is_ok()).count();
    assert!(alb2_after - alb2_before >= through_alb2 as f64, "alb2 counted {} requests, the client saw {through_alb2}", alb2_after - alb2_before);
    let window = load::summary(during.iter().filter(|o| o.started >= killed && o.started < removed));
    eprintln!("between the kill and the removal: {window}");

    // Back: in the tables within rise × interval + timeout of answering, and serving.
    let restarting = Instant::now();
    c.tier.restart(&mut c.lab, 1).unwrap();
    let ready = Instant::now();
    let back = watch.wait_for(&alb1, true, killed, Duration::from_secs(5)).unwrap();
    // It listened before our readiness probe saw it, so this is an upper bound.
    let back_after = back.saturating_duration_since(ready);
    eprintln!(
        "alb1 restarted: answered after {:?}, back in the tables after {:?} (bound: answering + rise × interval + timeout = {:?})",
        ready - restarting,
        back - restarting,
        ready - restarting + CHECK.return_bound()
    );
    assert!(back_after <= CHECK.return_bound(), "alb1 came back {back_after:?} after it answered, more than {:?}", CHECK.return_bound());
    let deadline = Instant::now() + Duration::from_secs(10);
    while served(&c, 1) < 20.0 {
        assert!(Instant::now() < deadline, "the restarted alb1 got no requests within 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    let outcomes = load.stop().unwrap();
    let since_removal = load::summary(outcomes.iter().filter(|o| o.started >= removed));
    eprintln!("from the removal to the end (restart included): {since_removal}");
    assert_eq!(since_removal.failed, 0, "requests failed after alb1 left the tables");
    let seen = watch.stop().unwrap();
    assert_eq!(seen.changes_of(&alb2), 0, "alb2 flapped: {:?}", seen.changes);
    assert_eq!(seen.changes_of(&alb1), 2, "alb1 should go down once and up once: {:?}", seen.changes);
    c.stop().unwrap();
}
