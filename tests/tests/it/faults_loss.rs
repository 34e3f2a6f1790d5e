//! 2 % random loss on the backend segment (nftables in the segment's
//! bridge, both directions, every path: lb → backends, lb → albs, alb →
//! backends): neither tier's health checks flap beyond what rise/fall allow
//! at that loss, and every request through XDP (L4 VIP) and through XDP →
//! alb (HTTPS VIP) completes, with no retries but TCP's own.
//!
//! The bound. A check fails when one of the frames it cannot do without
//! is lost: a lost SYN or SYN-ACK is resent after 1 s, a lost request or
//! response head after at least 200 ms (the minimum RTO), both past the
//! 150 ms timeout. That is 2 frames for lb-user's TCP-connect check of an
//! alb (SYN, SYN-ACK) and 4 for an HTTP check (also the request and the
//! response head; the checks use a fresh connection each). So a check fails
//! with probability q = 1 − (1 − p)^frames (7.8 % for HTTP at p = 2 %), and
//! a backend goes down only after `fall` = 3 failures in a row: fewer than
//! N·q³ windows of 3 consecutive failures among a target's N checks on
//! average. Summed over the independent targets, the number of down
//! transitions is close to Poisson with that mean; the test allows its
//! 1 − 10⁻⁴ quantile, so an honest run exceeds it by chance less than
//! once in 10,000. Every up transition follows a down one. A tracker that
//! went down after 1 failure would see about N·q downs per target
//! (≈ 40 for lb-user here) and fail.

use std::time::{Duration, Instant};

use xdplb_tests::{
    lab::{
        alb_tier::{self, AlbTier},
        chain::Chain,
        faults::Loss,
        Host,
    },
    load::{self, Bounds, Load},
    require_root,
    watch::{Seen, Watch},
};

use super::faults_setup::{chain, check_log_counts, CHECK};

const LOSS_PERCENT: u8 = 2;
/// How long the loss lasts (and the requests run).
const LOSS_TIME: Duration = Duration::from_secs(20);
/// Frames a check needs (see the module docs).
const TCP_CHECK_FRAMES: i32 = 2;
const HTTP_CHECK_FRAMES: i32 = 4;
/// Chance an honest run fails the flap bound.
const TAIL: f64 = 1e-4;
/// State sampling period: far below the shortest state a rise/fall
/// tracker can hold (min(rise, fall) × interval = 400 ms), so every
/// transition is seen.
const SAMPLE: Duration = Duration::from_millis(50);

/// Failure probability of a check that needs `frames` frames at loss `p`.
fn check_failure(p: f64, frames: i32) -> f64 {
    1.0 - (1.0 - p).powi(frames)
}

/// The smallest k with P(Poisson(mu) > k) <= tail.
fn poisson_quantile(mu: f64, tail: f64) -> usize {
    let (mut k, mut term) = (0usize, (-mu).exp());
    let mut cdf = term;
    while 1.0 - cdf > tail {
        k += 1;
        term *= mu / k as f64;
        cdf += term;
    }
    k
}

/// Waits until the latest sample of `watch` shows every key up.
fn wait_all_up(watch: &Watch, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let s = watch.seen();
        if !s.last.is_empty() && s.last.values().all(|&up| up) {
            return;
        }
        assert!(Instant::now() < deadline, "not all up within {limit:?}: {:?} (last error {:?})", s.last, s.last_error);
        std::thread::sleep(SAMPLE);
    }
}

/// (downs, ups) among the changes of `seen`.
fn transitions(seen: &Seen) -> (usize, usize) {
    let downs = seen.changes.iter().filter(|c| !c.up).count();
    (downs, seen.changes.len() - downs)
}

#[test]
fn two_percent_loss_on_the_backend_segment_neither_flaps_health_nor_fails_requests() {
    require_root!();
    let c = chain("xf", 2, 3);
    let (lb_ns, client_ns) = (c.lab.ns(Host::Lb), c.lab.ns(Host::Client));
    let watch_limit = LOSS_TIME + Duration::from_secs(30);
    let lb_watch = Watch::start(&lb_ns, SAMPLE, watch_limit, Chain::lb_user_health);
    let alb_watches: Vec<Watch> =
        c.tier.alb_ids().map(|i| Watch::start(&c.lab.ns(AlbTier::host(i)), SAMPLE, watch_limit, || alb_tier::backend_health(alb_tier::ADMIN))).collect();
    for w in std::iter::once(&lb_watch).chain(&alb_watches) {
        wait_all_up(w, Duration::from_secs(10));
    }
    let lb_log_before = c.lb.log_len();
    let alb_log_before: Vec<usize> = c.tier.alb_ids().map(|i| c.tier.log(i).unwrap().lines().count()).collect();

    let loss = Loss::on_backend_segment(&c.lab, LOSS_PERCENT).unwrap();
    let loss_start = Instant::now();
    // Two workers per VIP, each request a new connection; a client timeout
    // far above TCP's SYN retransmits (1 s, 3 s), and no retry of our own.
    let bounds = Bounds { max_requests: 20_000, max_time: LOSS_TIME, pause: Duration::from_millis(5) };
    let timeout = Duration::from_secs(15);
    let l4 = Load::start(&client_ns, 2, bounds, Chain::l4_request(timeout));
    let tls = Load::start(&client_ns, 2, bounds, c.tls_request(timeout));
    let l4 = l4.finish().unwrap();
    let tls = tls.finish().unwrap();
    let counts = loss.counts().unwrap();
    let loss_time = loss_start.elapsed();
    let table = loss.table().to_owned();
    drop(loss);
    let tables = xdplb_tests::sys::run_stdout("ip", &["netns", "exec", &c.lab.ns(Host::Switch), "nft", "list", "tables"]).unwrap();
    assert!(!tables.contains(&table), "the loss table outlived its guard: {tables}");
    let err = Loss::on_backend_segment(&c.lab, 0).unwrap_err().to_string();
    assert!(err.contains("1 to 100 percent, not 0"), "{err}");

    // After the loss every backend is (back) up in both tiers.
    for w in std::iter::once(&lb_watch).chain(&alb_watches) {
        wait_all_up(w, CHECK.return_bound() + Duration::from_secs(3));
    }
    let lb_seen = lb_watch.stop().unwrap();
    let alb_seen: Vec<Seen> = alb_watches.into_iter().map(|w| w.stop().unwrap()).collect();

    // The loss was real: close to 2 % of the frames crossing the segment.
    eprintln!("loss: {} of {} frames dropped ({:.2} %)", counts.dropped, counts.seen, counts.ratio() * 100.0);
    assert!(counts.seen > 10_000, "too little traffic crossed the segment: {counts:?}");
    assert!((0.015..0.025).contains(&counts.ratio()), "loss rule dropped {:.2} %, not about {LOSS_PERCENT} %", counts.ratio() * 100.0);

    // Every request completed.
    let (l4s, tlss) = (load::summary(&l4), load::summary(&tls));
    eprintln!("through XDP (L4 VIP): {l4s}\nthrough XDP and alb (HTTPS VIP): {tlss}");
    for (name, outcomes) in [("L4", &l4), ("HTTPS", &tls)] {
        let failed: Vec<_> = outcomes.iter().filter_map(|o| o.result.as_ref().err()).take(5).collect();
        assert!(failed.is_empty(), "{name} requests failed at {LOSS_PERCENT} % loss: {failed:?}");
        assert!(outcomes.len() >= 100, "only {} {name} requests in {LOSS_TIME:?}", outcomes.len());
    }

    // Flaps within the bound, per tier.
    let p = f64::from(LOSS_PERCENT) / 100.0;
    let checks = (loss_time.as_secs_f64() / CHECK.interval.as_secs_f64()).ceil() + 1.0;
    let per_target = |frames| checks * check_failure(p, frames).powi(CHECK.fall as i32);
    // lb-user: TCP checks of the albs, HTTP checks of the L4 VIP's backends.
    let (albs, backends) = (c.tier.alb_ids().count() as f64, c.tier.backend_ids().count() as f64);
    let lb_mu = albs * per_target(TCP_CHECK_FRAMES) + backends * per_target(HTTP_CHECK_FRAMES);
    // Each alb: HTTP checks of every backend.
    let alb_mu = albs * backends * per_target(HTTP_CHECK_FRAMES);
    let (lb_bound, alb_bound) = (poisson_quantile(lb_mu, TAIL), poisson_quantile(alb_mu, TAIL));
    let (lb_downs, lb_ups) = transitions(&lb_seen);
    let (alb_downs, alb_ups) = alb_seen.iter().map(transitions).fold((0, 0), |a, t| (a.0 + t.0, a.1 + t.1));
    // The logs name every failed check: the loss the checks really met.
    let lb_log = c.lb.log_lines();
    let (lb_failed, lb_log_downs, _) = check_log_counts(lb_log[lb_log_before..].iter().map(String::as_str));
    let mut alb_failed = 0;
    for (n, i) in c.tier.alb_ids().enumerate() {
        let log = c.tier.log(i).unwrap();
        alb_failed += check_log_counts(log.lines().skip(alb_log_before[n])).0;
    }
    let lb_checks = checks * (albs + backends);
    let alb_checks = checks * albs * backends;
    eprintln!(
        "lb-user: {lb_downs} down / {lb_ups} up transitions (bound {lb_bound} downs, mean {lb_mu:.3}); {lb_failed} of ~{lb_checks:.0} checks failed ({:.1} %)",
        100.0 * lb_failed as f64 / lb_checks
    );
    eprintln!(
        "albs: {alb_downs} down / {alb_ups} up transitions (bound {alb_bound} downs, mean {alb_mu:.3}); {alb_failed} of ~{alb_checks:.0} checks failed ({:.1} %)",
        100.0 * alb_failed as f64 / alb_checks
    );
    assert!(lb_downs <= lb_bound && lb_ups <= lb_downs, "lb-user flapped: {:?}", lb_seen.changes);
    assert!(alb_downs <= alb_bound && alb_ups <= alb_downs, "alb flapped: {:?}", alb_seen.iter().map(|s| &s.changes).collect::<Vec<_>>());
    // The sampled gauges saw what the checker logged.
    assert_eq!(lb_downs, lb_log_downs, "lb-user logged {lb_log_downs} down transitions, its metrics showed {lb_downs}");
    // The checks did meet the loss (else the bound proves nothing).
    assert!(lb_failed > 0 && alb_failed > 0, "no check failed at {LOSS_PERCENT} % loss: is the loss on their path?");
    c.stop().unwrap();
}

#[test]
fn the_flap_bound_is_the_poisson_quantile_of_fall_failures_in_a_row() {
    // No root needed: the arithmetic behind the bound.
    assert!((check_failure(0.02, 4) - 0.0776).abs() < 1e-4);
    assert_eq!(poisson_quantile(0.0, TAIL), 0);
    // P(X > 5) = 5.9e-4 and P(X > 6) = 8.3e-5 for mean 1.
    assert_eq!(poisson_quantile(1.0, TAIL), 6);
    assert_eq!(poisson_quantile(1.0, 1e-3), 5);
}
