//! `cargo xtask run --compare`: XDP against `lb-user proxy` under the same
//! load (`xdplb_tests::lab::demo::compare`); one line per leg and per round
//! while it runs, the table with medians, ranges and ratios at the end.

use std::{fmt::Write as _, time::Duration};

use anyhow::Result;
use xdplb_tests::lab::demo::{
    compare::{self, CompareObserver, CompareReport, CompareSpec, Leg, Path, Round},
    compare_figures::{ratio, summarize, Spread},
    traffic::Load,
};

use super::RunOptions;

pub fn compare(opts: RunOptions) -> Result<()> {
    let stop_rx = super::prepare()?;
    let mut spec = CompareSpec::new(Duration::from_secs(opts.duration));
    spec.rounds = opts.rounds;
    spec.attach_mode = (opts.mode != "auto").then(|| opts.mode.clone());
    let defaults = spec.load.clone();
    spec.load = Load { rate: opts.rate.unwrap_or(defaults.rate), mix: opts.mix.unwrap_or(defaults.mix), ..defaults };
    println!(
        "[compare] bringing up the demo system plus lb-user proxy on {}; {} rounds × (direct, xdp, proxy) × {:?}",
        compare::PROXY_ADDR,
        spec.rounds,
        spec.leg()
    );
    let report = compare::run(&spec, &stop_rx, &mut Lines)?;
    print!("{}", render(&report));
    println!("[compare] done: lab {} removed (namespaces, pins, processes)", report.lab);
    Ok(())
}

struct Lines;

impl CompareObserver for Lines {
    fn started(&mut self, lab: &str, spec: &CompareSpec) {
        println!(
            "[compare] lab {lab} is up; load {} clients/s ({}) to: direct be{}, XDP {}, proxy {}; Ctrl-C stops early",
            spec.load.rate,
            spec.load.mix,
            compare::DIRECT_BACKEND,
            xdplb_tests::lab::chain::ECHO_VIP,
            compare::PROXY_ADDR
        );
    }

    fn leg(&mut self, l: &Leg) {
        println!("{}", leg_line(l));
    }

    fn round(&mut self, r: &Round) {
        let (x, p) = (r.lb_cost(Path::Xdp), r.lb_cost(Path::Proxy));
        let times = |a: f64, b: f64| ratio(a, b).map_or("—".to_owned(), |v| format!("{v:.1}×"));
        println!(
            "  round {}: LB CPU  xdp {:.1} µs/conn {:.1} µs/req | proxy {:.1} µs/conn {:.1} µs/req | proxy/xdp {} per conn, {} per req",
            r.index,
            x.per_conn_us,
            x.per_req_us,
            p.per_conn_us,
            p.per_req_us,
            times(p.per_conn_us, x.per_conn_us),
            times(p.per_req_us, x.per_req_us)
        );
    }
}

fn leg_line(l: &Leg) -> String {
    let path = l.path.map_or("?".to_owned(), |p| p.to_string());
    let failed: Vec<String> = l.failed.iter().map(|(r, n)| format!("{r} {n}")).collect();
    format!(
        "[round {}] {path:<6} {:>6.0} conn/s {:>6} req  p50 {:>5.2} ms p99 {:>6.2} ms  err {}{}  machine {:>6.1} µs/conn {:>5.1} µs/req{}  foreign {:.1}%",
        l.round,
        l.conns_per_s(),
        l.requests,
        l.p50_ms,
        l.p99_ms,
        l.errors(),
        if failed.is_empty() { String::new() } else { format!(" ({})", failed.join(", ")) },
        l.machine_per_conn(),
        l.machine_per_req(),
        if l.path == Some(Path::Proxy) { format!("  proxy process {:.1} µs/conn", l.proxy_us / (l.conns.max(1) as f64)) } else { String::new() },
        l.foreign_pct
    )
}

/// The end: per path medians with the range over rounds, the ratios, what
/// each backend received.
pub fn render(r: &CompareReport) -> String {
    let mut o = String::new();
    let legs = r.rounds.len();
    let _ = writeln!(
        o,
        "\n══ compare: {legs} round(s) × (direct, xdp, proxy), {:?} each, {} clients/s ({}), {} CPUs ══",
        r.spec.leg(),
        r.spec.load.rate,
        r.spec.load.mix,
        r.cpus
    );
    if r.rounds.is_empty() {
        o.push_str("no round completed\n");
        return o;
    }
    o.push_str("median (min..max over rounds)\n");
    let _ = writeln!(o, "{:<7} {:<22} {:<18} {:<19} {:>6}  {:<22} {:<20}", "path", "conn/s", "p50 ms", "p99 ms", "errors", "LB CPU µs/conn", "LB CPU µs/req");
    let s = |p| summarize(&r.rounds, p);
    for path in [Path::Direct, Path::Xdp, Path::Proxy] {
        let x = s(path);
        let cost = |c: Spread| if path == Path::Direct { "(baseline)".to_owned() } else { c.to_string() };
        let _ = writeln!(
            o,
            "{:<7} {:<22} {:<18} {:<19} {:>6}  {:<22} {:<20}",
            path.to_string(),
            x.conns_per_s.to_string(),
            format!("{:.2} ({:.2}..{:.2})", x.p50_ms.median, x.p50_ms.min, x.p50_ms.max),
            format!("{:.2} ({:.2}..{:.2})", x.p99_ms.median, x.p99_ms.min, x.p99_ms.max),
            x.errors,
            cost(x.cost_per_conn_us),
            cost(x.cost_per_req_us)
        );
    }
    let (x, p) = (s(Path::Xdp), s(Path::Proxy));
    let times = |a: f64, b: f64| ratio(a, b).map_or("— (XDP's cost is not above the noise)".to_owned(), |v| format!("{v:.1}×"));
    let _ = writeln!(
        o,
        "proxy/XDP: LB CPU per connection {} , per request {} ; conn/s {:.2}×, p99 {:.2}×",
        times(p.cost_per_conn_us.median, x.cost_per_conn_us.median),
        times(p.cost_per_req_us.median, x.cost_per_req_us.median),
        ratio(p.conns_per_s.median, x.conns_per_s.median).unwrap_or(0.0),
        ratio(p.p99_ms.median, x.p99_ms.median).unwrap_or(0.0)
    );
    let _ = writeln!(
        o,
        "spread over rounds (max-min)/median: XDP cost {:.0}% per conn, proxy cost {:.0}% per conn",
        x.cost_per_conn_us.range_pct(),
        p.cost_per_conn_us.range_pct()
    );
    let pm = Spread::of(r.rounds.iter().map(|r| r.proxy_machine_cost().per_conn_us));
    let _ = writeln!(o, "proxy, measured as XDP is (machine CPU above direct): {pm} µs/conn");
    let foreign = Spread::of(r.rounds.iter().flat_map(|r| [r.direct.foreign_pct, r.xdp.foreign_pct, r.proxy.foreign_pct]));
    let _ = writeln!(o, "CPU of processes outside the lab (subtracted from machine CPU): {foreign} % of all cores");
    o.push_str("backends, connections/lines (all rounds):\n");
    for path in [Path::Direct, Path::Xdp, Path::Proxy] {
        let mut per: std::collections::BTreeMap<u8, (u64, u64)> = Default::default();
        for round in &r.rounds {
            for (id, (c, l)) in &round.leg(path).by_backend {
                let e = per.entry(*id).or_default();
                e.0 += c;
                e.1 += l;
            }
        }
        let list: Vec<String> = per.iter().map(|(id, (c, l))| format!("be{id} {c}/{l}")).collect();
        let _ = writeln!(o, "  {:<7} {}", path.to_string(), list.join(", "));
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leg(round: u32, path: Path, machine_us: f64, proxy_us: f64) -> Leg {
        Leg { round, path: Some(path), secs: 2.0, conns: 100, requests: 400, machine_us, proxy_us, ..Leg::default() }
    }

    #[test]
    fn summary_has_every_path_the_ratio_and_the_spread() {
        let rounds: Vec<Round> = (1..=2)
            .map(|i| Round {
                index: i,
                direct: leg(i, Path::Direct, 10_000.0, 0.0),
                xdp: leg(i, Path::Xdp, 10_000.0 + 1_000.0 * f64::from(i), 0.0),
                proxy: leg(i, Path::Proxy, 30_000.0, 6_000.0),
            })
            .collect();
        let report = CompareReport { lab: "xc1".into(), spec: CompareSpec::new(Duration::from_secs(8)), rounds, cpus: 2 };
        let text = render(&report);
        for row in ["direct ", "xdp ", "proxy "] {
            assert!(text.lines().any(|l| l.starts_with(row)), "no {row:?} row:\n{text}");
        }
        // XDP 10 and 20 µs/conn (median 15), proxy 60: 4×.
        assert!(text.contains("15.0 (10.0..20.0)"), "{text}");
        assert!(text.contains("per connection 4.0×"), "{text}");
        assert!(text.contains("XDP cost 67% per conn"), "{text}");
        assert!(leg_line(&report.rounds[0].proxy).contains("proxy process 60.0 µs/conn"));
    }
}
