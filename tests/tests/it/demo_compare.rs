//! `cargo xtask run --compare`, through the same library call the command
//! makes: the same client-simulator load through a direct path, the XDP
//! echo VIP and `lb-user proxy`, two short rounds. Asserts both balancers
//! carried the load through every backend simulator, the direct leg
//! reached only its one backend, errors are (nearly) none and accounted by
//! reason, every figure is there, and nothing is left behind. ~30 s.

use std::{sync::mpsc, time::Duration};

use xdplb_tests::{
    lab::demo::{
        compare::{self, CompareObserver, CompareSpec, Leg, Path, Round},
        compare_figures::summarize,
        Topology,
    },
    require_root,
};

#[derive(Default)]
struct Seen {
    legs: usize,
    rounds: usize,
}

impl CompareObserver for Seen {
    fn started(&mut self, _: &str, _: &CompareSpec) {}
    fn leg(&mut self, _: &Leg) {
        self.legs += 1;
    }
    fn round(&mut self, _: &Round) {
        self.rounds += 1;
    }
}

#[test]
fn xdp_and_proxy_carry_the_same_load_and_show_their_cost() {
    require_root!();
    let (_tx, rx) = mpsc::channel();
    let mut spec = CompareSpec::new(Duration::from_secs(8));
    spec.rounds = 2;
    spec.prefix = "xdc".into();
    let mut seen = Seen::default();
    let report = compare::run(&spec, &rx, &mut seen).expect("the comparison runs");
    assert_eq!((report.rounds.len(), seen.rounds, seen.legs), (2, 2, 6), "every round and leg reported live");
    let ctx = format!("{:#?}", report.rounds);

    for round in &report.rounds {
        for path in [Path::Direct, Path::Xdp, Path::Proxy] {
            let leg = round.leg(path);
            assert_eq!(leg.path, Some(path), "{ctx}");
            assert!(leg.conns > 0 && leg.requests >= leg.conns, "{path} round {}: no load\n{ctx}", round.index);
            assert!(leg.conns_per_s() > 0.0 && leg.p50_ms > 0.0 && leg.p99_ms >= leg.p50_ms, "{path}: figures\n{ctx}");
            assert!(leg.machine_us > 0.0, "{path}: no machine CPU\n{ctx}");
            // Errors are counted by reason; a loaded machine may time out a
            // client or two, not more.
            assert!(leg.errors() * 100 <= leg.conns, "{path}: {:?}\n{ctx}", leg.failed);
        }
        // The direct leg talked to its one backend only (the others answered no line).
        for (id, (_, lines)) in &round.direct.by_backend {
            assert_eq!(*lines > 0, *id == compare::DIRECT_BACKEND, "direct leg reached be{id}\n{ctx}");
        }
        // The proxy's CPU is its process's; XDP's has no process.
        assert!(round.proxy.proxy_us > 0.0 && round.xdp.proxy_us < round.proxy.proxy_us, "{ctx}");
        assert!(round.lb_cost(Path::Proxy).per_req_us > 0.0, "{ctx}");
        assert!(round.lb_cost(Path::Xdp).per_conn_us.is_finite(), "{ctx}");
    }
    // Both balancers spread the load over every backend simulator.
    for path in [Path::Xdp, Path::Proxy] {
        for id in Topology::backend_ids() {
            let lines: u64 = report.rounds.iter().map(|r| r.leg(path).by_backend.get(&id).map_or(0, |b| b.1)).sum();
            assert!(lines > 0, "{path}: be{id} answered no line\n{ctx}");
        }
        let s = summarize(&report.rounds, path);
        assert!(s.conns_per_s.median > 0.0 && s.cost_per_req_us.median.is_finite(), "{path}: {s:?}");
    }

    // Nothing left behind.
    let left = xdplb_tests::lab::Lab::leftovers(&report.lab).unwrap();
    assert!(left.is_empty(), "left behind by lab {}: {left:#?}", report.lab);
}
