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
}
