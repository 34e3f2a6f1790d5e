//! The two-tier demo (`cargo xtask run --scenario failover`), through the
//! same library call the command makes: client simulator → XDP → two albs
//! (mTLS) → three backend simulators, one simulator SIGKILLed a third in
//! and started again two thirds in. ~40 s.

use std::{sync::mpsc, time::Duration};

use xdplb_tests::{
    lab::{
        chain::ECHO_VIP,
        demo::{self, scenario::target_backend, Action, DemoSpec, Frame, Observer, Scenario},
    },
    require_root,
};

struct Quiet;

impl Observer for Quiet {
    fn started(&mut self, _: &str, _: &DemoSpec) {}
    fn frame(&mut self, _: &Frame, _: &[demo::Event]) {}
}

#[test]
fn failover_is_seen_by_every_tier_and_leaves_nothing() {
    require_root!();
    let (_tx, rx) = mpsc::channel();
    let mut spec = DemoSpec::new(Duration::from_secs(21), Scenario::Failover);
    spec.prefix = "xdm".into();
    let report = demo::run(&spec, &rx, &mut Quiet).expect("the demo runs");
    let be = target_backend();
    let be_name = format!("be{be}");
    let timeline: Vec<String> = report.timeline().iter().map(ToString::to_string).collect();
    let ctx = timeline.join("\n");

    // Every tier carried traffic.
    let lb = report.last.lb.as_ref().expect("lb-user's metrics at the end");
    let flows = |vip: &str, backend: Option<&str>| -> f64 {
        let name = if backend.is_some() { "xdplb_backend_new_flows_total" } else { "xdplb_vip_new_flows_total" };
        let mut labels = vec![("vip", vip)];
        if let Some(b) = backend {
            labels.push(("backend", b));
        }
        demo::sample::matching(lb, name, &labels).sum()
    };
    let (tls_vip, echo_vip) = ("198.18.100.2:443/tcp", format!("{ECHO_VIP}/tcp"));
    assert!(flows(tls_vip, None) > 0.0 && flows(&echo_vip, None) > 0.0, "VIP flows\n{ctx}");
    for i in demo::Topology::alb_ids() {
        assert!(flows(tls_vip, Some(&format!("198.18.1.1{i}:8443"))) > 0.0, "no XDP flows to alb{i}");
        let alb = report.last.albs[&i].as_ref().expect("alb metrics at the end");
        for id in demo::Topology::backend_ids() {
            let ok: f64 = alb
                .iter()
                .filter(|(k, _)| k.starts_with("alb_requests_total{") && k.contains(&format!("198.18.1.1{id}:8080")) && k.contains("status=\"200\""))
                .map(|(_, v)| v)
                .sum();
            assert!(ok > 0.0, "alb{i} sent no request to be{id}\n{ctx}");
        }
    }
    let mut without_identity = 0;
    for id in demo::Topology::backend_ids() {
        assert!(flows(&echo_vip, Some(&format!("198.18.1.1{id}:9000"))) > 0.0, "no XDP echo flows to be{id}");
        let c = report.last.backend_counts(id).unwrap_or_else(|| panic!("be{id} answers at the end"));
        assert!(c.requests > 0 && c.echo_lines > 0, "be{id} served {c:?}\n{ctx}");
        // Every HTTP request a backend saw carried the client's verified
        // identity, except the direct ones through the plain-HTTP L4 VIP
        // (the chain's readiness probe), counted below.
        let unknown: Vec<_> = c.identities.keys().filter(|k| **k != report.identity && k.as_str() != xdplb_tests::backend::stats::NO_IDENTITY).collect();
        assert!(unknown.is_empty() && c.identities.get(&report.identity).is_some_and(|n| *n > 0), "be{id} identities {:?}", c.identities);
        without_identity += c.identities.get(xdplb_tests::backend::stats::NO_IDENTITY).copied().unwrap_or(0);
    }
    assert!(without_identity as f64 <= flows("198.18.100.1:80/tcp", None), "{without_identity} requests without identity, more than the direct L4 ones");
    let kinds = demo::figures::kinds(&report.client);
    for kind in ["real", "https", "fire_and_forget", "stream", "idle", "slow"] {
        let k = kinds.iter().find(|k| k.kind == kind).unwrap_or_else(|| panic!("no {kind} in {}", report.client));
        assert!(k.completed > 0, "{kind}: {k:?}");
    }
    let https = &report.client["kinds"]["https"];
    let ok = https["status"]["200"].as_u64().unwrap_or(0);
    assert!(ok > 0 && https["identities"][&report.identity].as_u64() == Some(ok), "https: {https}");
    assert_eq!(https["identities"].as_object().map(|m| m.len()), Some(1), "https: {https}");

    // The killed backend left every balancer in time and came back.
    let kill = report.steps.iter().find(|(_, a)| *a == Action::KillBackend(be)).expect("the kill step").0;
    let back = report.steps.iter().find(|(_, a)| *a == Action::StartBackend(be)).expect("the restart step").0;
    let bound = report.check.interval * report.check.fall + report.check.timeout + report.check.interval;
    let mut ejected = Vec::new();
    for tier in ["xdp", "alb1", "alb2"] {
        let changes: Vec<_> =
            report.health.iter().filter(|c| c.tier == tier && c.backend == be_name && c.vip.as_deref().is_none_or(|v| v == echo_vip)).collect();
        let down = changes.iter().find(|c| !c.up && c.at >= kill).unwrap_or_else(|| panic!("{tier} never ejected {be_name}\n{ctx}"));
        assert!(down.at - kill <= bound, "{tier} ejected {be_name} {:?} after the kill (bound {bound:?})\n{ctx}", down.at - kill);
        assert!(changes.iter().any(|c| c.up && c.at >= back), "{tier} never took {be_name} back\n{ctx}");
        ejected.push((tier, down.at));
    }
    // Between ejection and restart, no balancer gave it anything new.
    let quiet = |f: &&Frame, tier: &str| {
        let down = ejected.iter().find(|(t, _)| *t == tier).unwrap().1;
        f.at > down + Duration::from_secs(1) && f.at < back
    };
    for f in report.frames.iter() {
        if quiet(&f, "xdp") {
            let x = f.xdp.as_ref().expect("xdp figures");
            assert_eq!(x.backends.get(&(echo_vip.clone(), be_name.clone())).map(|b| b.0), Some(0.0), "XDP flows to {be_name} at {:?}", f.at);
        }
        for a in &f.albs {
            if quiet(&f, &format!("alb{}", a.id)) {
                assert_eq!(a.backends.get(&be_name).map(|b| b.0).unwrap_or(0.0), 0.0, "alb{} requests to {be_name} at {:?}", a.id, f.at);
            }
        }
    }
    // No request failed once every tier had ejected it (2 s for the
    // client's per-second reports to catch up).
    let settled = ejected.iter().map(|e| e.1).max().unwrap() + Duration::from_secs(2);
    for pair in report.frames.windows(2) {
        if pair[0].at >= settled {
            for k in &pair[1].client {
                let before = pair[0].client.iter().find(|p| p.kind == k.kind).map(|p| p.failed_total()).unwrap_or(0);
                assert_eq!(k.failed_total(), before, "{} failed at {:?}, after every tier ejected {be_name}\n{ctx}", k.kind, pair[1].at);
            }
        }
        if pair[1].at < kill {
            assert!(pair[1].client.iter().all(|k| k.failed_total() == 0), "failures before the kill\n{ctx}");
        }
    }

    // Nothing left behind.
    let left = xdplb_tests::lab::Lab::leftovers(&report.lab).unwrap();
    assert!(left.is_empty(), "left behind by lab {}: {left:#?}", report.lab);
}
