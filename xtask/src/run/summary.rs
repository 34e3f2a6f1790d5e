//! The end of a run: totals per tier, the client simulator's final
//! figures and the timeline of what each tier saw.

use std::fmt::Write as _;

use xdplb_tests::lab::demo::{figures, sample::matching, Report, Topology};

pub fn render(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "\n══ summary: scenario {}, load ran {:.1} s ══", r.spec.scenario, r.ran.as_secs_f64());
    if let Some(lb) = &r.last.lb {
        o.push_str("XDP tier (lb-user metrics, totals):\n");
        for (series, v) in lb.iter().filter(|(k, _)| k.starts_with("xdplb_vip_new_flows_total{")) {
            let _ = writeln!(o, "  {}: {v:.0} connections", xdplb_tests::metrics::label(series, "vip").unwrap_or("?"));
        }
        let drops: f64 = matching(lb, "xdplb_drops_total", &[]).sum();
        let _ = writeln!(o, "  frames dropped: {drops:.0}");
    }
    o.push_str("alb tier (requests by backend and status, totals):\n");
    for (i, s) in &r.last.albs {
        let Some(s) = s else {
            let _ = writeln!(o, "  alb{i}: not answering at the end");
            continue;
        };
        let mut by: Vec<String> = Vec::new();
        for (series, v) in s.iter().filter(|(k, _)| k.starts_with("alb_requests_total{")) {
            let be = Topology::host_name(xdplb_tests::metrics::label(series, "backend").unwrap_or("?"));
            by.push(format!("{be} {}:{v:.0}", xdplb_tests::metrics::label(series, "status").unwrap_or("?")));
        }
        let _ = writeln!(o, "  alb{i}: {}", by.join(", "));
    }
    o.push_str("backend simulators (since their last start):\n");
    for id in Topology::backend_ids() {
        match r.last.backend_counts(id) {
            Some(c) => {
                let ids: Vec<String> = c.identities.iter().map(|(k, n)| format!("{k} {n}")).collect();
                let _ = writeln!(o, "  be{id}: {} http requests ({}), {} echo lines, {} connections", c.requests, ids.join(", "), c.echo_lines, c.accepted);
            }
            None => {
                let _ = writeln!(o, "  be{id}: not answering");
            }
        }
    }
    o.push_str("client simulator (final):\n");
    for k in figures::kinds(&r.client) {
        let reasons: Vec<String> = k.failed.iter().filter(|(_, n)| **n > 0).map(|(r, n)| format!("{r} {n}")).collect();
        let _ = writeln!(
            o,
            "  {:<16} {:>6} started {:>6} completed {:>4} failed{} p50 {:.1} ms p99 {:.1} ms",
            k.kind,
            k.started,
            k.completed,
            k.failed_total(),
            if reasons.is_empty() { String::new() } else { format!(" ({})", reasons.join(", ")) },
            k.p50_ms,
            k.p99_ms
        );
    }
    if let Some(https) = r.client["kinds"]["https"].as_object() {
        let _ = writeln!(
            o,
            "  https backends {}  identities {}  (alb passes on {})",
            https.get("backends").map(|v| v.to_string()).unwrap_or_default(),
            https.get("identities").map(|v| v.to_string()).unwrap_or_default(),
            r.identity
        );
    }
    o.push_str("timeline:\n");
    for e in r.timeline() {
        let _ = writeln!(o, "  {e}");
    }
    o
}
