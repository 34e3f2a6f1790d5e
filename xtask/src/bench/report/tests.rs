use super::{
    json, markdown,
    model::{CaseResult, Rep, Summary},
    stats::{median, spread_pct},
    svg,
};
use crate::bench::{
    cases::{self, Lb},
    load::{LoadResult, Tool},
};

fn summary() -> Summary {
    let cases = cases::all(Tool::Wrk)
        .into_iter()
        .enumerate()
        .map(|(i, case)| CaseResult {
            case,
            reps: (0..3)
                .map(|r| Rep {
                    load: LoadResult { requests: 1000, seconds: 1.0, rps: 1000.0 + (i * 10 + r) as f64, p50_ms: 1.0, p99_ms: 2.0, errors: 0 },
                    machine_us: 10.0 + i as f64,
                    lb_us: Some(3.0),
                    lb_user_mode_us: Some(1.0),
                    tool_us: 2.0,
                    foreign_pct: 0.0,
                    flagged: r == 2,
                    xdp_actions: None,
                    failure: None,
                })
                .collect(),
        })
        .collect();
    Summary { started: "now".into(), duration_s: 1, conns: 8, repetitions: 3, cpus: 2, cases, ..Default::default() }
}

#[test]
fn medians_and_spread() {
    assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
    assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    assert_eq!(spread_pct(&[90.0, 100.0, 110.0]), 20.0);
}

#[test]
fn flagged_repetitions_are_left_out() {
    let s = summary();
    let st = s.cases[0].stats();
    assert_eq!((st.used, st.flagged), (2, 1));
    assert_eq!(st.rps, 1000.5);
}

#[test]
fn outputs_mention_every_case() {
    let s = summary();
    let md = markdown(&s);
    let js = json(&s);
    let svg = svg(&s);
    for c in &s.cases {
        assert!(md.contains(&format!("| {} |", c.case.id())), "{}", c.case.id());
        assert!(svg.contains(&c.case.id()));
    }
    assert_eq!(js["cases"].as_array().unwrap().len(), s.cases.len());
    assert!(md.contains("## Targets"));
    // XDP's LB cost is its machine CPU above direct.
    let nat = s.find(Lb::XdpNat, false, false).unwrap();
    assert_eq!(s.lb_cost(nat), Some(2.0));
    // A process balancer's LB column shows its user-mode part too (XDP's
    // has none: it is machine CPU).
    let alb = s.find(Lb::Alb, false, false).unwrap();
    assert!(
        md.contains(&format!("| {} | wrk |", alb.case.id()))
            && md.lines().any(|l| l.starts_with(&format!("| {} |", alb.case.id())) && l.contains("| 3.0 (1.0) |")),
        "{md}"
    );
    assert!(md.lines().any(|l| l.starts_with(&format!("| {} |", nat.case.id())) && l.contains("| 2.0 |")), "{md}");
    let alb_json = js["cases"].as_array().unwrap().iter().find(|c| c["id"] == alb.case.id()).unwrap();
    assert_eq!(alb_json["median"]["lb_user_mode_cpu_us_per_req"], 1.0);
}

/// Sets one case's LB CPU per repetition.
fn set_lb_us(s: &mut Summary, lb: Lb, new_conn: bool, us: &[f64]) {
    let c = s.cases.iter_mut().find(|c| c.case.lb == lb && !c.case.mtls && c.case.new_conn == new_conn).unwrap();
    for (r, v) in c.reps.iter_mut().zip(us) {
        r.lb_us = Some(*v);
        r.flagged = false;
    }
}

fn target<'a>(t: &'a [super::targets::Target], starts: &str) -> &'a super::targets::Target {
    t.iter().find(|(w, _, _)| w.starts_with(starts)).unwrap_or_else(|| panic!("no target {starts}"))
}

#[test]
fn a_target_is_met_only_when_every_repetition_clears_it() {
    let mut s = summary();
    // Median 0.8 ≤ 0.85, but repetition 3 is at 0.9: not met.
    set_lb_us(&mut s, Lb::Proxy, false, &[8.0, 8.0, 9.0]);
    set_lb_us(&mut s, Lb::HaproxyTcp, false, &[10.0, 10.0, 10.0]);
    // Every repetition at most 0.8: met.
    set_lb_us(&mut s, Lb::Proxy, true, &[70.0, 80.0, 75.0]);
    set_lb_us(&mut s, Lb::HaproxyTcp, true, &[100.0, 100.0, 100.0]);
    let t = s.targets();
    let ka = target(&t, "lb-user proxy LB CPU per keep-alive");
    assert_eq!(ka.1, Some(false), "{ka:?}");
    assert!(ka.2.starts_with("0.80× (0.80–0.90, 3 repetitions)"), "{ka:?}");
    assert_eq!(target(&t, "lb-user proxy LB CPU per new connection").1, Some(true));
}

#[test]
fn ratios_pair_repetitions_and_take_the_cheaper_peer() {
    let mut s = summary();
    set_lb_us(&mut s, Lb::Alb, false, &[20.0, 20.0, 20.0]);
    set_lb_us(&mut s, Lb::HaproxyTls, false, &[25.0, 40.0, 25.0]);
    set_lb_us(&mut s, Lb::NginxTls, false, &[40.0, 25.0, 50.0]);
    // A flagged repetition is left out of the pairs.
    s.cases.iter_mut().find(|c| c.case.lb == Lb::Alb && !c.case.mtls && !c.case.new_conn).unwrap().reps[2].flagged = true;
    let r = s.lb_cpu_ratio(Lb::Alb, &[Lb::HaproxyTls, Lb::NginxTls], false, false);
    assert_eq!(r.0, vec![0.8, 0.8]);
    assert_eq!(r.at_most(0.85), Some(true));
    assert_eq!(r.at_most(0.75), Some(false));
}

#[test]
fn paced_and_packet_rate_targets_read_their_repetitions() {
    let mut s = summary();
    let rep = |rps: f64, p99: f64| Rep {
        load: LoadResult { requests: 1, seconds: 1.0, rps, p50_ms: 1.0, p99_ms: p99, errors: 0 },
        machine_us: 9000.0,
        ..Default::default()
    };
    for (i, (alb, hap)) in [((99.0, 5.0), (100.0, 6.0)), ((97.0, 4.0), (100.0, 5.0))].into_iter().enumerate() {
        for (lb, (rps, p99)) in [("alb", alb), ("haproxy-tls", hap)] {
            s.paced.push(super::Paced { lb: lb.into(), repetition: i as u32, target_rps: 100.0, conns: 10, pace_ms: 20, rep: rep(rps, p99) });
        }
    }
    s.pps = Some(serde_json::json!({
        "ratios": {
            "ipv4": {"established": {"xdp_nat_vs_nftables": {"values": [4.2, 4.5]}, "xdp_nat_vs_kernel": {"values": [1.9, 2.5]}}},
            "ipv6": {"established": {"xdp_nat_vs_nftables": {"values": [3.9, 4.5]}}},
        },
        "cost": {"ipv4": {"nat_vs_pass_with_prologue": {"values": [2.0, 2.4]}}},
    }));
    // 9 ms of machine CPU per request at 99 req/s on 2 CPUs: 44.55% busy.
    let md = markdown::markdown(&s);
    assert!(md.contains("| alb | 1 | 100 | 10 | 99 | 1.00 | 5.00 | 0 | — | 45% | no |"), "{md}");
    assert!((json::json(&s)["paced"][0]["machine_busy_pct"].as_f64().unwrap() - 44.55).abs() < 1e-9);
    let t = s.targets();
    assert_eq!(target(&t, "alb at the paced load: achieved").1, Some(false), "97% in repetition 2");
    assert_eq!(target(&t, "alb at the paced load: p99").1, Some(true));
    assert_eq!(target(&t, "XDP NAT ≥ 4× nftables DNAT packets/s per core (established flows, IPv4").1, Some(true));
    assert_eq!(target(&t, "XDP NAT ≥ 2× plain kernel forwarding packets/s per core (established flows, IPv4").1, Some(false));
    assert_eq!(target(&t, "XDP NAT ≥ 4× nftables DNAT packets/s per core (SYNs of new flows, IPv4").1, None, "not measured");
    assert_eq!(target(&t, "XDP NAT ≥ 4× nftables DNAT packets/s per core (established flows, IPv6").1, Some(false), "3.9 in one repetition");
    assert_eq!(target(&t, "XDP program cost, established NAT forward ≤ 2.5× a trivial XDP_PASS program (IPv4").1, Some(true));
    assert_eq!(target(&t, "XDP program cost, established NAT forward ≤ 2.5× a trivial XDP_PASS program (IPv6").1, None, "not measured");
}
