//! report.md: the results table, the TestRun cost, paced latency, TLS
//! parameters, the targets and what each case is.

use std::fmt::Write as _;

use super::{fmt_rps, model::Summary};

fn opt(v: Option<f64>) -> String {
    v.map_or("—".into(), |x| format!("{x:.1}"))
}

/// report.md
pub fn markdown(s: &Summary) -> String {
    let mut m = String::new();
    let _ = writeln!(m, "# xdplb benchmark\n");
    let _ = writeln!(
        m,
        "Started {}; {} s per case, {} connections, {} repetition(s) interleaved, {} CPUs; wall time {:.0} s{}.\n",
        s.started,
        s.duration_s,
        s.conns,
        s.repetitions,
        s.cpus,
        s.wall_s,
        if s.quick { " (**--quick**: smoke test, not for comparison)" } else { "" }
    );
    if !s.xdp_attach_mode.is_empty() {
        let how = match s.xdp_attach_mode.as_str() {
            "skb" => "generic XDP (`attach_mode: skb`), the cheaper mode on veth; the integration tests cover native mode",
            "native" => "native XDP in the veth driver (`attach_mode: native`)",
            _ => "`attach_mode: auto` (native on veth)",
        };
        let _ = writeln!(m, "XDP cases: {how}. `--xdp-mode skb|native|auto` chooses.\n");
    }
    let _ = writeln!(
        m,
        "Medians over the repetitions. *spread* = (max − min) / median of req/s. *machine* = all cores' busy CPU (/proc/stat) per request; \
*Δ direct* = machine CPU above `direct` in the same connection mode; *LB* = the balancer process tree's CPU (/proc/<pid>/stat) per request, \
for XDP the Δ direct, with its user-mode part in parentheses (the rest is kernel mode, which on veth includes delivering what the balancer sends into the receiver's stack and waking the receiver); *tool* = the load generator's CPU per request. With a new connection per request, per request = per connection (TLS: per handshake). \
A repetition where processes outside the benchmark used more than {:.0}% of the machine is flagged, rerun once, and left out of the medians if still flagged.\n",
        s.foreign_threshold_pct
    );
    let _ = writeln!(
        m,
        "| case | tool | req/s | spread | p50 ms | p99 ms | errors | machine µs/req | Δ direct µs/req | LB µs/req | tool µs/req | reps (flagged) |"
    );
    let _ = writeln!(m, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    for c in &s.cases {
        let st = c.stats();
        let _ = writeln!(
            m,
            "| {} | {} | {} | {:.0}% | {:.2} | {:.2} | {} | {:.1} | {} | {} | {:.1} | {} ({}) |",
            c.case.id(),
            c.case.tool.name(),
            fmt_rps(st.rps),
            st.rps_spread,
            st.p50_ms,
            st.p99_ms,
            st.errors,
            st.machine_us,
            opt(s.added_vs_direct(c)),
            match (s.lb_cost(c), st.lb_user_mode_us) {
                (Some(lb), Some(user)) if !c.case.lb.is_xdp() => format!("{lb:.1} ({user:.1})"),
                (lb, _) => opt(lb),
            },
            st.tool_us,
            c.reps.len(),
            st.flagged
        );
    }
    let _ = writeln!(m, "\n## XDP per-packet cost (BPF_PROG_TEST_RUN)\n");
    match (&s.xdp_cost, &s.xdp_cost_error) {
        (Some(x), _) => {
            let _ = writeln!(
                m,
                "Median over {} single BPF_PROG_TEST_RUN runs per frame (a fresh copy each time: with `repeat` the kernel would rerun the already rewritten frame), \
one CPU, program loaded in the lab's lb namespace. Each figure includes the kernel's two timer reads around the program, so compare the rows with each other: \
the NAT forward costs about {:.0} ns more than passing a packet to the kernel.\n",
                x.runs,
                x.nat_forward_ns - x.pass_ns
            );
            let _ = writeln!(m, "| packet | ns/packet |\n|---|---|");
            let _ = writeln!(m, "| NAT forward, established flow (client → VIP, XDP_REDIRECT) | {:.1} |", x.nat_forward_ns);
            let _ = writeln!(m, "| reverse NAT of the reply (backend → client, XDP_REDIRECT) | {:.1} |", x.reverse_nat_ns);
            let _ = writeln!(m, "| not a VIP (XDP_PASS to the kernel) | {:.1} |", x.pass_ns);
            let _ = writeln!(m, "\nSoftware only: in the lab the redirected frame then crosses a veth; on hardware the same program runs in the driver.");
        }
        (None, Some(e)) => {
            let _ = writeln!(m, "Not measured: {e}");
        }
        _ => {
            let _ = writeln!(m, "Not measured.");
        }
    }
    match (&s.pps, &s.pps_error) {
        (Some(v), _) => m.push_str(&crate::bench::pps::markdown(v)),
        (None, Some(e)) => {
            let _ = writeln!(m, "\n## Packet rate\n\nNot measured: {e}");
        }
        _ => {}
    }
    if !s.paced.is_empty() {
        let _ = writeln!(
            m,
            "\n## Latency below saturation (keep-alive HTTPS)\n\nThe same offered load for both: {:.0}% of the lower of their two peaks above, \
wrk with a {} ms pause per connection between a response and the next request (closed loop, so the achieved rate is what counts). \
\"machine busy\" is all CPUs' busy time over the run (the load generator's and the backend's included): near 100% the offered load saturated the machine, \
and the run is no longer below saturation whatever the balancer's share.\n",
            crate::bench::PACED_SHARE_PCT,
            s.paced[0].pace_ms
        );
        let _ = writeln!(
            m,
            "| case | rep | target req/s | connections | achieved req/s | p50 ms | p99 ms | errors | LB µs/req | machine busy | flagged |\n|---|---|---|---|---|---|---|---|---|---|---|"
        );
        for p in &s.paced {
            let _ = writeln!(
                m,
                "| {} | {} | {:.0} | {} | {:.0} | {:.2} | {:.2} | {} | {} | {:.0}% | {} |",
                p.lb,
                p.repetition + 1,
                p.target_rps,
                p.conns,
                p.rep.load.rps,
                p.rep.load.p50_ms,
                p.rep.load.p99_ms,
                p.rep.load.errors,
                opt(p.rep.lb_us),
                p.rep.machine_busy_pct(s.cpus),
                if p.rep.flagged { "yes" } else { "no" }
            );
        }
    }
    if !s.tls.is_empty() {
        let _ = writeln!(m, "\n## TLS parameters (openssl s_client -tls1_3 from the client)\n\n| listener | negotiated |\n|---|---|");
        for (l, t) in &s.tls {
            let _ = writeln!(m, "| {l} | {t} |");
        }
    }
    let _ = writeln!(m, "\n## Targets (issue 15)\n\nRatios per repetition, median (min–max); met only when every repetition clears the target.\n\n| target | met | ratio |\n|---|---|---|");
    for (what, met, fig) in s.targets() {
        let met = match met {
            Some(true) => "met",
            Some(false) => "**not met**",
            None => "—",
        };
        let _ = writeln!(m, "| {what} | {met} | {fig} |");
    }
    let _ = writeln!(m, "\n## Cases\n");
    let mut seen = Vec::new();
    for c in &s.cases {
        if !seen.contains(&c.case.lb) {
            seen.push(c.case.lb);
            let _ = writeln!(m, "- `{}`: {}", c.case.lb.name(), c.case.lb.describe());
        }
    }
    m
}
