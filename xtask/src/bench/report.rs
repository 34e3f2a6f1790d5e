//! Results: per-repetition figures, medians and spread, the targets of
//! issue 7, and the three outputs: report.md, results.json, chart.svg.

use std::fmt::Write as _;

use serde_json::{json, Value};

use super::{
    cases::{Case, Lb},
    load::LoadResult,
};

/// One measured repetition of a case.
#[derive(Clone, Debug, Default)]
pub struct Rep {
    pub load: LoadResult,
    /// Machine busy CPU (all cores, /proc/stat) per request, µs.
    pub machine_us: f64,
    /// The LB process tree's CPU per request, µs (none for direct and XDP).
    pub lb_us: Option<f64>,
    /// The load generator's CPU per request, µs.
    pub tool_us: f64,
    /// CPU used by processes outside the benchmark, % of machine capacity.
    pub foreign_pct: f64,
    /// Foreign CPU above the threshold: do not trust this repetition.
    pub flagged: bool,
    /// XDP cases: packets per XDP action during the run (proof that the
    /// traffic went through the program, and how).
    pub xdp_actions: Option<std::collections::BTreeMap<String, u64>>,
    /// Why the load run failed (counted as one error, no figures).
    pub failure: Option<String>,
}

/// A case with its repetitions (flagged ones included, marked).
#[derive(Clone, Debug)]
pub struct CaseResult {
    pub case: Case,
    pub reps: Vec<Rep>,
}

/// BPF_PROG_TEST_RUN per-packet cost.
#[derive(Clone, Debug, Default)]
pub struct XdpCost {
    /// Single runs per packet (the medians are over these).
    pub runs: u64,
    pub nat_forward_ns: f64,
    pub reverse_nat_ns: f64,
    pub pass_ns: f64,
}

/// A paced (below saturation) latency run.
#[derive(Clone, Debug)]
pub struct Paced {
    pub lb: String,
    pub target_rps: f64,
    pub conns: u32,
    pub pace_ms: u32,
    pub rep: Rep,
}

/// Everything a run produced.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub started: String,
    pub quick: bool,
    pub duration_s: u64,
    pub conns: u32,
    pub repetitions: u32,
    pub cpus: usize,
    pub foreign_threshold_pct: f64,
    pub cases: Vec<CaseResult>,
    pub xdp_cost: Option<XdpCost>,
    pub xdp_cost_error: Option<String>,
    /// What each TLS listener negotiated (openssl s_client).
    pub tls: Vec<(String, String)>,
    /// alb and HAProxy TLS at the same offered load below saturation.
    pub paced: Vec<Paced>,
    pub wall_s: f64,
    /// `attach_mode` of the XDP cases (skb, native or auto).
    pub xdp_attach_mode: String,
}

/// Median of the values (0 for none).
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 }
}

/// (max - min) / median, in percent.
pub fn spread_pct(v: &[f64]) -> f64 {
    let m = median(v);
    if v.len() < 2 || m == 0.0 {
        return 0.0;
    }
    let (lo, hi) = v.iter().fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
    (hi - lo) / m * 100.0
}

/// Medians over a case's trusted repetitions (all of them if none is trusted).
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub rps: f64,
    pub rps_spread: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
    pub requests: u64,
    pub machine_us: f64,
    pub lb_us: Option<f64>,
    pub tool_us: f64,
    pub used: usize,
    pub flagged: usize,
}

impl CaseResult {
    pub fn stats(&self) -> Stats {
        let ran: Vec<&Rep> = self.reps.iter().filter(|r| r.failure.is_none()).collect();
        let trusted: Vec<&Rep> = ran.iter().copied().filter(|r| !r.flagged).collect();
        let reps: Vec<&Rep> = if trusted.is_empty() { ran } else { trusted };
        let col = |f: &dyn Fn(&Rep) -> f64| reps.iter().map(|r| f(r)).collect::<Vec<f64>>();
        let lb: Vec<f64> = reps.iter().filter_map(|r| r.lb_us).collect();
        Stats {
            rps: median(&col(&|r| r.load.rps)),
            rps_spread: spread_pct(&col(&|r| r.load.rps)),
            p50_ms: median(&col(&|r| r.load.p50_ms)),
            p99_ms: median(&col(&|r| r.load.p99_ms)),
            errors: self.reps.iter().map(|r| r.load.errors).sum(),
            requests: self.reps.iter().map(|r| r.load.requests).sum(),
            machine_us: median(&col(&|r| r.machine_us)),
            lb_us: (!lb.is_empty()).then(|| median(&lb)),
            tool_us: median(&col(&|r| r.tool_us)),
            used: reps.len(),
            flagged: self.reps.iter().filter(|r| r.flagged).count(),
        }
    }
}

impl Summary {
    pub fn find(&self, lb: Lb, mtls: bool, new_conn: bool) -> Option<&CaseResult> {
        self.cases.iter().find(|c| c.case.lb == lb && c.case.mtls == mtls && c.case.new_conn == new_conn)
    }

    /// Machine CPU per request above `direct` in the same connection mode
    /// (L4 cases): for XDP this is the balancer's whole cost.
    pub fn added_vs_direct(&self, c: &CaseResult) -> Option<f64> {
        if c.case.lb.is_tls() || c.case.lb == Lb::Direct {
            return None;
        }
        let d = self.find(Lb::Direct, false, c.case.new_conn)?;
        Some(c.stats().machine_us - d.stats().machine_us)
    }

    /// The LB's own cost per request: its process CPU, or for XDP the machine
    /// CPU above direct.
    pub fn lb_cost(&self, c: &CaseResult) -> Option<f64> {
        if c.case.lb.is_xdp() { self.added_vs_direct(c) } else { c.stats().lb_us }
    }

    /// The issue's targets: (description, met, figures).
    pub fn targets(&self) -> Vec<(String, Option<bool>, String)> {
        let mut out = Vec::new();
        let rps = |lb, mtls, new| self.find(lb, mtls, new).map(|c| c.stats().rps);
        let added = |lb, new| self.find(lb, false, new).and_then(|c| self.added_vs_direct(c));
        let lbcpu = |lb, mtls, new| self.find(lb, mtls, new).and_then(|c| c.stats().lb_us);
        let mut push = |what: &str, v: Option<(bool, String)>| match v {
            Some((ok, fig)) => out.push((what.to_owned(), Some(ok), fig)),
            None => out.push((what.to_owned(), None, "not measured".into())),
        };
        let ratio = |a: Option<f64>, b: Option<f64>, min: f64| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => Some((a / b >= min, format!("{:.0} / {:.0} = {:.2}×", a, b, a / b))),
            _ => None,
        };
        push("xdp-nat keep-alive req/s ≥ 0.95× direct", ratio(rps(Lb::XdpNat, false, false), rps(Lb::Direct, false, false), 0.95));
        push("xdp-nat keep-alive req/s ≥ 1.6× HAProxy tcp", ratio(rps(Lb::XdpNat, false, false), rps(Lb::HaproxyTcp, false, false), 1.6));
        let us = |a: f64| if a < 0.0 { format!("{a:.1} µs (below direct: within the noise)") } else { format!("{a:.1} µs") };
        push("xdp-nat added CPU vs direct ≤ 3 µs/request", added(Lb::XdpNat, false).map(|a| (a <= 3.0, us(a))));
        push("xdp-nat added CPU vs direct ≤ 10 µs/new connection", added(Lb::XdpNat, true).map(|a| (a <= 10.0, us(a))));
        let half = |new| match (added(Lb::XdpNat, new), added(Lb::Nft, new)) {
            (Some(x), Some(n)) => Some((x <= n / 2.0, format!("{x:.1} vs nftables {n:.1} µs"))),
            _ => None,
        };
        push("xdp-nat added CPU < half of nftables DNAT's (keep-alive)", half(false));
        push("xdp-nat added CPU < half of nftables DNAT's (new connection)", half(true));
        push("lb-user proxy req/s ≥ 1.0× HAProxy tcp (keep-alive)", ratio(rps(Lb::Proxy, false, false), rps(Lb::HaproxyTcp, false, false), 1.0));
        let not_more = |a: Option<f64>, b: Option<f64>, max: f64| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => Some((a <= b * max, format!("{a:.1} vs {b:.1} µs ({:.2}×)", a / b))),
            _ => None,
        };
        push("lb-user proxy LB CPU/request ≤ HAProxy tcp's (keep-alive)", not_more(lbcpu(Lb::Proxy, false, false), lbcpu(Lb::HaproxyTcp, false, false), 1.0));
        push("alb keep-alive HTTPS req/s ≥ 1.2× HAProxy", ratio(rps(Lb::Alb, false, false), rps(Lb::HaproxyTls, false, false), 1.2));
        push("alb LB CPU per full TLS handshake ≤ 0.7× nginx's", not_more(lbcpu(Lb::Alb, false, true), lbcpu(Lb::NginxTls, false, true), 0.7));
        push("alb LB CPU per mTLS handshake ≤ 0.5× nginx's", not_more(lbcpu(Lb::Alb, true, true), lbcpu(Lb::NginxTls, true, true), 0.5));
        let p99 = |lb: &str| self.paced.iter().find(|p| p.lb == lb).map(|p| (p.rep.load.p99_ms, p.rep.load.rps));
        push(
            "alb p99 at 70% of peak no worse than HAProxy's",
            match (p99("alb"), p99("haproxy-tls")) {
                (Some((a, ar)), Some((h, hr))) => Some((a <= h, format!("{a:.2} ms at {ar:.0} req/s vs {h:.2} ms at {hr:.0} req/s"))),
                _ => None,
            },
        );
        out
    }
}

fn fmt_rps(v: f64) -> String {
    if v >= 10_000.0 { format!("{:.1}k", v / 1000.0) } else { format!("{v:.0}") }
}

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
for XDP the Δ direct; *tool* = the load generator's CPU per request. With a new connection per request, per request = per connection (TLS: per handshake). \
A repetition where processes outside the benchmark used more than {:.0}% of the machine is flagged, rerun once, and left out of the medians if still flagged.\n",
        s.foreign_threshold_pct
    );
    let _ = writeln!(m, "| case | tool | req/s | spread | p50 ms | p99 ms | errors | machine µs/req | Δ direct µs/req | LB µs/req | tool µs/req | reps (flagged) |");
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
            opt(s.lb_cost(c)),
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
    if !s.paced.is_empty() {
        let _ = writeln!(
            m,
            "\n## Latency below saturation (keep-alive HTTPS)\n\nThe same offered load for both: {:.0}% of the lower of their two peaks above, \
wrk with a {} ms pause per connection between a response and the next request (closed loop, so the achieved rate is what counts).\n",
            super::PACED_SHARE_PCT,
            s.paced[0].pace_ms
        );
        let _ = writeln!(m, "| case | target req/s | connections | achieved req/s | p50 ms | p99 ms | errors | LB µs/req | flagged |\n|---|---|---|---|---|---|---|---|---|");
        for p in &s.paced {
            let _ = writeln!(
                m,
                "| {} | {:.0} | {} | {:.0} | {:.2} | {:.2} | {} | {} | {} |",
                p.lb, p.target_rps, p.conns, p.rep.load.rps, p.rep.load.p50_ms, p.rep.load.p99_ms, p.rep.load.errors, opt(p.rep.lb_us), if p.rep.flagged { "yes" } else { "no" }
            );
        }
    }
    if !s.tls.is_empty() {
        let _ = writeln!(m, "\n## TLS parameters (openssl s_client -tls1_3 from the client)\n\n| listener | negotiated |\n|---|---|");
        for (l, t) in &s.tls {
            let _ = writeln!(m, "| {l} | {t} |");
        }
    }
    let _ = writeln!(m, "\n## Targets (issue 7)\n\n| target | met | figures |\n|---|---|---|");
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

/// results.json
pub fn json(s: &Summary) -> Value {
    let cases: Vec<Value> = s
        .cases
        .iter()
        .map(|c| {
            let st = c.stats();
            json!({
                "id": c.case.id(),
                "lb": c.case.lb.name(),
                "tls": c.case.lb.is_tls(),
                "mtls": c.case.mtls,
                "new_conn": c.case.new_conn,
                "tool": c.case.tool.name(),
                "url": c.case.url(),
                "median": {
                    "rps": st.rps, "rps_spread_pct": st.rps_spread, "p50_ms": st.p50_ms, "p99_ms": st.p99_ms,
                    "machine_cpu_us_per_req": st.machine_us, "added_vs_direct_us_per_req": s.added_vs_direct(c),
                    "lb_cpu_us_per_req": s.lb_cost(c), "tool_cpu_us_per_req": st.tool_us,
                },
                "errors": st.errors,
                "requests": st.requests,
                "repetitions_used": st.used,
                "repetitions": c.reps.iter().map(|r| json!({
                    "requests": r.load.requests, "seconds": r.load.seconds, "rps": r.load.rps,
                    "p50_ms": r.load.p50_ms, "p99_ms": r.load.p99_ms, "errors": r.load.errors,
                    "machine_cpu_us_per_req": r.machine_us, "lb_cpu_us_per_req": r.lb_us, "tool_cpu_us_per_req": r.tool_us,
                    "foreign_cpu_pct": r.foreign_pct, "flagged": r.flagged, "xdp_actions": r.xdp_actions, "failure": r.failure,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let targets: Vec<Value> = s.targets().into_iter().map(|(t, met, fig)| json!({"target": t, "met": met, "figures": fig})).collect();
    json!({
        "started": s.started, "quick": s.quick, "duration_s": s.duration_s, "conns": s.conns,
        "repetitions": s.repetitions, "cpus": s.cpus, "wall_s": s.wall_s, "xdp_attach_mode": s.xdp_attach_mode,
        "foreign_threshold_pct": s.foreign_threshold_pct,
        "cases": cases,
        "xdp_cost": s.xdp_cost.as_ref().map(|x| json!({
            "runs": x.runs, "nat_forward_ns": x.nat_forward_ns, "reverse_nat_ns": x.reverse_nat_ns, "pass_ns": x.pass_ns,
        })),
        "xdp_cost_error": s.xdp_cost_error,
        "paced": s.paced.iter().map(|p| json!({
            "lb": p.lb, "target_rps": p.target_rps, "conns": p.conns, "pace_ms": p.pace_ms,
            "rps": p.rep.load.rps, "p50_ms": p.rep.load.p50_ms, "p99_ms": p.rep.load.p99_ms, "errors": p.rep.load.errors,
            "lb_cpu_us_per_req": p.rep.lb_us, "machine_cpu_us_per_req": p.rep.machine_us, "flagged": p.rep.flagged,
        })).collect::<Vec<_>>(),
        "tls": s.tls.iter().map(|(l, t)| json!({"listener": l, "negotiated": t})).collect::<Vec<_>>(),
        "targets": targets,
    })
}

fn esc(t: &str) -> String {
    t.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Position on a log10 axis from `lo` to `hi`, 0..=1 (values below `lo` at 0).
fn log_pos(v: f64, lo: f64, hi: f64) -> f64 {
    if v <= lo {
        return 0.0;
    }
    ((v / lo).log10() / (hi / lo).log10()).clamp(0.0, 1.0)
}

/// chart.svg: two bar panels side by side on log scales (the cases span
/// three orders of magnitude): req/s, and machine CPU µs/request with the
/// LB's share darker, for every case.
pub fn svg(s: &Summary) -> String {
    let rows: Vec<(String, f64, f64, f64)> = s
        .cases
        .iter()
        .map(|c| {
            let st = c.stats();
            (c.case.id(), st.rps, st.machine_us, s.lb_cost(c).unwrap_or(0.0).max(0.0))
        })
        .collect();
    let (label_w, bar_w, row_h, top) = (230.0, 300.0, 18.0, 58.0);
    let width = label_w + 2.0 * (bar_w + 90.0);
    let height = top + rows.len() as f64 * row_h + 30.0;
    let decade_up = |v: f64| 10f64.powf(v.max(1.0).log10().ceil());
    let (rps_lo, rps_hi) = (100.0, decade_up(rows.iter().map(|r| r.1).fold(1000.0, f64::max)));
    let (cpu_lo, cpu_hi) = (1.0, decade_up(rows.iter().map(|r| r.2.max(r.3)).fold(10.0, f64::max)));
    let mut o = String::new();
    let _ = writeln!(o, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" font-family="sans-serif" font-size="11">"#);
    let _ = writeln!(o, r##"<rect width="100%" height="100%" fill="#fff"/>"##);
    let x1 = label_w;
    let x2 = label_w + bar_w + 90.0;
    let _ = writeln!(o, r#"<text x="{x1}" y="16" font-size="13" font-weight="bold">requests/s (median, log scale)</text>"#);
    let _ = writeln!(o, r#"<text x="{x2}" y="16" font-size="13" font-weight="bold">CPU µs/request (log): machine light, LB dark</text>"#);
    let _ = writeln!(o, r##"<text x="{x1}" y="30" fill="#555">{}</text>"##, esc(&format!("{} s × {} reps, {} conns{}", s.duration_s, s.repetitions, s.conns, if s.quick { ", quick: not for comparison" } else { "" })));
    // Decade grid lines with labels.
    let bottom = top + rows.len() as f64 * row_h;
    for (x0, lo, hi) in [(x1, rps_lo, rps_hi), (x2, cpu_lo, cpu_hi)] {
        let mut d = lo;
        while d <= hi * 1.0001 {
            let x = x0 + log_pos(d, lo, hi) * bar_w;
            let _ = writeln!(o, r##"<line x1="{x:.1}" y1="{:.0}" x2="{x:.1}" y2="{bottom:.0}" stroke="#ddd"/>"##, top - 4.0);
            let label = if d >= 1000.0 { format!("{}k", d / 1000.0) } else { format!("{d}") };
            let _ = writeln!(o, r##"<text x="{x:.1}" y="{:.0}" text-anchor="middle" fill="#777">{label}</text>"##, top - 8.0);
            d *= 10.0;
        }
    }
    for (i, (id, rps, cpu, lb)) in rows.iter().enumerate() {
        let y = top + i as f64 * row_h;
        let color = if id.starts_with("xdp") { "#2a7" } else if id.starts_with("direct") { "#888" } else if id.starts_with("alb") || id.starts_with("lb-user") { "#27a" } else { "#c73" };
        let _ = writeln!(o, r#"<text x="{:.0}" y="{:.0}" text-anchor="end">{}</text>"#, label_w - 6.0, y + 12.0, esc(id));
        let w = log_pos(*rps, rps_lo, rps_hi) * bar_w;
        let _ = writeln!(o, r#"<rect x="{x1}" y="{:.0}" width="{w:.1}" height="{:.0}" fill="{color}"/>"#, y + 2.0, row_h - 4.0);
        let _ = writeln!(o, r#"<text x="{:.1}" y="{:.0}">{}</text>"#, x1 + w + 4.0, y + 12.0, fmt_rps(*rps));
        let wc = log_pos(*cpu, cpu_lo, cpu_hi) * bar_w;
        let wl = log_pos(*lb, cpu_lo, cpu_hi) * bar_w;
        let _ = writeln!(o, r#"<rect x="{x2}" y="{:.0}" width="{wc:.1}" height="{:.0}" fill="{color}" fill-opacity="0.35"/>"#, y + 2.0, row_h - 4.0);
        let _ = writeln!(o, r#"<rect x="{x2}" y="{:.0}" width="{wl:.1}" height="{:.0}" fill="{color}"/>"#, y + 2.0, row_h - 4.0);
        let _ = writeln!(o, r#"<text x="{:.1}" y="{:.0}">{:.1} / {:.1}</text>"#, x2 + wc.max(wl) + 4.0, y + 12.0, cpu, lb);
    }
    let _ = writeln!(o, "</svg>");
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{cases, load::Tool};

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
}
