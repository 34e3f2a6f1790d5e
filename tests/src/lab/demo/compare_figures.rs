//! The figures of `cargo xtask run --compare`: one [`Leg`] per path per
//! round (what the backends and the client simulator counted, and the CPU
//! the machine and the proxy spent), the LB's cost per connection and per
//! request derived from a round's legs, and the spread over rounds.

use std::{collections::BTreeMap, fmt};

/// The ways the same load reaches the backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Path {
    /// Client → one backend simulator, the lb namespace only routes: the
    /// baseline the XDP path's machine CPU is measured above.
    Direct,
    /// Client → the XDP echo VIP (lb-user attach, NAT) → the backends.
    Xdp,
    /// Client → `lb-user proxy` in the lb namespace → the same backends.
    Proxy,
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Path::Direct => "direct",
            Path::Xdp => "xdp",
            Path::Proxy => "proxy",
        })
    }
}

/// One path's share of one round.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Leg {
    pub round: u32,
    pub path: Option<Path>,
    /// How long the client simulator ran (start to exit).
    pub secs: f64,
    /// Connections: the clients the client simulator started (one each).
    pub conns: u64,
    /// REQ/ACK and PING/PONG lines the backend simulators answered.
    pub requests: u64,
    /// Per backend simulator id: connections accepted (health checks
    /// included) and lines answered.
    pub by_backend: BTreeMap<u8, (u64, u64)>,
    /// Clients that failed, by reason (the client simulator's count).
    pub failed: BTreeMap<String, u64>,
    /// REQ → ACK latency of the `real` kind (ms).
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Machine busy CPU over the leg minus processes outside the lab (µs).
    pub machine_us: f64,
    /// CPU of processes outside the lab over the leg, % of all cores.
    pub foreign_pct: f64,
    /// `lb-user proxy`'s own process CPU over the leg (µs).
    pub proxy_us: f64,
}

impl Leg {
    pub fn errors(&self) -> u64 {
        self.failed.values().sum()
    }

    pub fn conns_per_s(&self) -> f64 {
        per(self.conns as f64, self.secs)
    }

    pub fn machine_per_conn(&self) -> f64 {
        per(self.machine_us, self.conns as f64)
    }

    pub fn machine_per_req(&self) -> f64 {
        per(self.machine_us, self.requests as f64)
    }
}

fn per(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

/// The LB's CPU in µs: the same CPU divided by connections and by requests
/// (the load mixes REQ/ACK loops and one-line connections).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Cost {
    pub per_conn_us: f64,
    pub per_req_us: f64,
}

/// The three legs of one round.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Round {
    pub index: u32,
    pub direct: Leg,
    pub xdp: Leg,
    pub proxy: Leg,
}

impl Round {
    pub fn leg(&self, path: Path) -> &Leg {
        match path {
            Path::Direct => &self.direct,
            Path::Xdp => &self.xdp,
            Path::Proxy => &self.proxy,
        }
    }

    /// The LB's CPU on `path`: for XDP (whose work is softirq, in no
    /// process) the machine's CPU per unit above the direct leg's, as
    /// `cargo xtask bench` reports it; for the proxy its process CPU.
    pub fn lb_cost(&self, path: Path) -> Cost {
        match path {
            Path::Direct => Cost::default(),
            Path::Xdp => Cost {
                per_conn_us: self.xdp.machine_per_conn() - self.direct.machine_per_conn(),
                per_req_us: self.xdp.machine_per_req() - self.direct.machine_per_req(),
            },
            Path::Proxy => {
                Cost { per_conn_us: per(self.proxy.proxy_us, self.proxy.conns as f64), per_req_us: per(self.proxy.proxy_us, self.proxy.requests as f64) }
            }
        }
    }

    /// The proxy's machine CPU above direct (the XDP path's yardstick
    /// applied to the proxy, to set the two measures side by side).
    pub fn proxy_machine_cost(&self) -> Cost {
        Cost {
            per_conn_us: self.proxy.machine_per_conn() - self.direct.machine_per_conn(),
            per_req_us: self.proxy.machine_per_req() - self.direct.machine_per_req(),
        }
    }
}

/// Median and range of one figure over rounds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: impl IntoIterator<Item = f64>) -> Spread {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Spread::default();
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
        Spread { median, min: v[0], max: v[n - 1] }
    }

    /// (max − min) / |median| in percent; 0 with no median.
    pub fn range_pct(&self) -> f64 {
        if self.median == 0.0 {
            0.0
        } else {
            (self.max - self.min) / self.median.abs() * 100.0
        }
    }
}

impl fmt::Display for Spread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.1} ({:.1}..{:.1})", self.median, self.min, self.max)
    }
}

/// One path's figures over every round.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PathSummary {
    pub conns_per_s: Spread,
    pub p50_ms: Spread,
    pub p99_ms: Spread,
    pub errors: u64,
    pub conns: u64,
    pub requests: u64,
    pub cost_per_conn_us: Spread,
    pub cost_per_req_us: Spread,
}

/// Sums and spreads of `path` over `rounds`.
pub fn summarize(rounds: &[Round], path: Path) -> PathSummary {
    let legs = || rounds.iter().map(move |r| r.leg(path));
    PathSummary {
        conns_per_s: Spread::of(legs().map(Leg::conns_per_s)),
        p50_ms: Spread::of(legs().map(|l| l.p50_ms)),
        p99_ms: Spread::of(legs().map(|l| l.p99_ms)),
        errors: legs().map(Leg::errors).sum(),
        conns: legs().map(|l| l.conns).sum(),
        requests: legs().map(|l| l.requests).sum(),
        cost_per_conn_us: Spread::of(rounds.iter().map(|r| r.lb_cost(path).per_conn_us)),
        cost_per_req_us: Spread::of(rounds.iter().map(|r| r.lb_cost(path).per_req_us)),
    }
}

/// proxy / XDP of two medians; `None` when XDP's is not positive (its cost
/// drowned in the machine's noise, so a ratio would mean nothing).
pub fn ratio(proxy: f64, xdp: f64) -> Option<f64> {
    (xdp > 0.0).then(|| proxy / xdp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leg(path: Path, conns: u64, requests: u64, machine_us: f64, proxy_us: f64) -> Leg {
        Leg { path: Some(path), secs: 2.0, conns, requests, machine_us, proxy_us, ..Leg::default() }
    }

    #[test]
    fn xdp_cost_is_machine_cpu_above_direct_and_proxy_cost_is_its_process() {
        let r = Round {
            index: 1,
            direct: leg(Path::Direct, 100, 400, 10_000.0, 0.0),
            xdp: leg(Path::Xdp, 100, 400, 12_000.0, 0.0),
            proxy: leg(Path::Proxy, 200, 800, 40_000.0, 8_000.0),
        };
        assert_eq!(r.lb_cost(Path::Xdp), Cost { per_conn_us: 20.0, per_req_us: 5.0 });
        assert_eq!(r.lb_cost(Path::Proxy), Cost { per_conn_us: 40.0, per_req_us: 10.0 });
        assert_eq!(r.proxy_machine_cost(), Cost { per_conn_us: 100.0, per_req_us: 25.0 });
        assert_eq!(r.xdp.conns_per_s(), 50.0);
        // No load: no division by zero.
        assert_eq!(leg(Path::Xdp, 0, 0, 5.0, 0.0).machine_per_req(), 0.0);
    }

    #[test]
    fn spread_is_median_and_range() {
        let s = Spread::of([3.0, 1.0, 2.0, f64::NAN]);
        assert_eq!(s, Spread { median: 2.0, min: 1.0, max: 3.0 });
        assert_eq!(s.range_pct(), 100.0);
        assert_eq!(Spread::of([1.0, 2.0]).median, 1.5);
        assert_eq!(Spread::of([]), Spread::default());
        assert_eq!(ratio(10.0, 2.0), Some(5.0));
        assert_eq!(ratio(10.0, -1.0), None);
    }

    #[test]
    fn summary_sums_errors_and_counts() {
        let mut a = leg(Path::Proxy, 10, 40, 0.0, 100.0);
        a.failed.insert("timeout".into(), 2);
        let b = leg(Path::Proxy, 30, 60, 0.0, 300.0);
        let rounds = [Round { proxy: a, ..Round::default() }, Round { proxy: b, ..Round::default() }];
        let s = summarize(&rounds, Path::Proxy);
        assert_eq!((s.errors, s.conns, s.requests), (2, 40, 100));
        assert_eq!(s.cost_per_conn_us, Spread { median: 10.0, min: 10.0, max: 10.0 });
        assert_eq!(s.conns_per_s, Spread { median: 10.0, min: 5.0, max: 15.0 });
    }
}
