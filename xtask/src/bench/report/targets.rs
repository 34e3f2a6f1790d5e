//! The targets of issue 15, checked against a run's figures.
//!
//! Every target is a ratio of two figures measured side by side. The ratio
//! is taken per repetition (repetition i of one case against repetition i
//! of its peer, which ran minutes apart at most), and a target is met only
//! when the whole range of those ratios clears it: a median that clears
//! the line while one repetition does not is "not met", because the spread
//! says the run cannot tell.

use serde_json::Value;

use super::model::{Rep, Summary};
use super::stats::median;
use crate::bench::cases::Lb;

/// A target's verdict: what, met (None: not measured), and the figures.
pub type Target = (String, Option<bool>, String);

/// The packet-rate bench's families: its JSON key, and the name a target
/// line gives it.
const PPS_FAMILIES: [(&str, &str); 2] = [("ipv4", "IPv4"), ("ipv6", "IPv6")];

/// Per-repetition ratios of one target.
#[derive(Clone, Debug, PartialEq)]
pub struct Ratios(pub Vec<f64>);

impl Ratios {
    fn range(&self) -> Option<(f64, f64, f64)> {
        let v = &self.0;
        if v.is_empty() {
            return None;
        }
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some((median(v), lo, hi))
    }

    /// "0.93× (0.88–0.99, 3 repetitions)".
    pub fn describe(&self) -> String {
        match self.range() {
            Some((m, lo, hi)) => format!("{m:.2}× ({lo:.2}–{hi:.2}, {} repetition{})", self.0.len(), if self.0.len() == 1 { "" } else { "s" }),
            None => "not measured".into(),
        }
    }

    /// Met when every repetition's ratio is at least `min`.
    pub fn at_least(&self, min: f64) -> Option<bool> {
        self.range().map(|(_, lo, _)| lo >= min)
    }

    /// Met when every repetition's ratio is at most `max`.
    pub fn at_most(&self, max: f64) -> Option<bool> {
        self.range().map(|(_, _, hi)| hi <= max)
    }
}

/// A repetition that produced figures; `trusted` also excludes flagged ones.
fn usable(r: &Rep, trusted: bool) -> bool {
    r.failure.is_none() && (!trusted || !r.flagged)
}

impl Summary {
    fn reps(&self, lb: Lb, mtls: bool, new_conn: bool) -> &[Rep] {
        self.find(lb, mtls, new_conn).map_or(&[], |c| c.reps.as_slice())
    }

    /// `f(a_i) / f(b_i)` for each repetition i where both ran and were not
    /// flagged (all that ran when no pair is unflagged, as the medians do).
    fn paired(&self, a: &[Rep], b: &[&[Rep]], f: &dyn Fn(&Rep) -> Option<f64>) -> Ratios {
        let pick = |trusted: bool| -> Vec<f64> {
            (0..a.len())
                .filter_map(|i| {
                    let ai = a.get(i).filter(|r| usable(r, trusted))?;
                    // Against the cheapest peer of that repetition.
                    let peer = b.iter().map(|reps| reps.get(i).filter(|r| usable(r, trusted)).and_then(f)).collect::<Option<Vec<f64>>>()?;
                    let denom = peer.into_iter().fold(f64::INFINITY, f64::min);
                    let num = f(ai)?;
                    (denom > 0.0 && denom.is_finite()).then(|| num / denom)
                })
                .collect()
        };
        let trusted = pick(true);
        Ratios(if trusted.is_empty() { pick(false) } else { trusted })
    }

    /// LB CPU per request of `lb` over that of the cheapest of `peers`, per repetition.
    pub fn lb_cpu_ratio(&self, lb: Lb, peers: &[Lb], mtls: bool, new_conn: bool) -> Ratios {
        let b: Vec<&[Rep]> = peers.iter().map(|p| self.reps(*p, mtls, new_conn)).collect();
        self.paired(self.reps(lb, mtls, new_conn), &b, &|r| r.lb_us)
    }

    /// Per paced repetition: alb's achieved over offered rate.
    pub fn paced_achieved(&self, lb: &str) -> Ratios {
        Ratios(self.paced.iter().filter(|p| p.lb == lb && p.rep.failure.is_none() && p.target_rps > 0.0).map(|p| p.rep.load.rps / p.target_rps).collect())
    }

    /// Per paced repetition: alb's p99 over HAProxy's in the same repetition.
    pub fn paced_p99_ratio(&self) -> Ratios {
        let of = |lb: &str, i: u32| self.paced.iter().find(|p| p.lb == lb && p.repetition == i && p.rep.failure.is_none()).map(|p| p.rep.load.p99_ms);
        let reps = self.paced.iter().map(|p| p.repetition).max().map_or(0, |m| m + 1);
        Ratios((0..reps).filter_map(|i| Some((of("alb", i)?, of("haproxy-tls", i)?))).filter(|(_, h)| *h > 0.0).map(|(a, h)| a / h).collect())
    }

    /// A ratio family of the packet-rate bench (`pps.ratios.<ipv4|ipv6>.<phase>.<key>`
    /// or `pps.cost.<ipv4|ipv6>.<key>`), as per-repetition values.
    fn pps_ratio(&self, path: &[&str]) -> Ratios {
        let mut v: &Value = match &self.pps {
            Some(v) => v,
            None => return Ratios(Vec::new()),
        };
        for p in path {
            v = &v[*p];
        }
        Ratios(v["values"].as_array().map(|a| a.iter().filter_map(Value::as_f64).collect()).unwrap_or_default())
    }

    /// The targets, in its order.
    pub fn targets(&self) -> Vec<Target> {
        let mut out: Vec<Target> = Vec::new();
        let mut push = |what: &str, r: Ratios, met: Option<bool>| out.push((what.to_owned(), met, r.describe()));
        for (family, name) in PPS_FAMILIES {
            for (phase, label) in [("established", "established flows"), ("syn", "SYNs of new flows")] {
                let r = self.pps_ratio(&["ratios", family, phase, "xdp_nat_vs_nftables"]);
                push(&format!("XDP NAT ≥ 4× nftables DNAT packets/s per core ({label}, {name})"), r.clone(), r.at_least(4.0));
                let r = self.pps_ratio(&["ratios", family, phase, "xdp_nat_vs_kernel"]);
                push(&format!("XDP NAT ≥ 2× plain kernel forwarding packets/s per core ({label}, {name})"), r.clone(), r.at_least(2.0));
            }
        }
        for (family, name) in PPS_FAMILIES {
            let r = self.pps_ratio(&["cost", family, "nat_vs_pass_with_prologue"]);
            push(&format!("XDP program cost, established NAT forward ≤ 2.5× a trivial XDP_PASS program ({name})"), r.clone(), r.at_most(2.5));
        }
        let r = self.paced_achieved("alb");
        push("alb at the paced load: achieved ≥ 98% of the offered rate", r.clone(), r.at_least(0.98));
        let r = self.paced_p99_ratio();
        push("alb at the paced load: p99 ≤ HAProxy's p99 (alb / HAProxy)", r.clone(), r.at_most(1.0));
        let r = self.lb_cpu_ratio(Lb::Proxy, &[Lb::HaproxyTcp], false, false);
        push("lb-user proxy LB CPU per keep-alive request ≤ 0.85× HAProxy tcp's", r.clone(), r.at_most(0.85));
        let r = self.lb_cpu_ratio(Lb::Proxy, &[Lb::HaproxyTcp], false, true);
        push("lb-user proxy LB CPU per new connection ≤ 0.85× HAProxy tcp's", r.clone(), r.at_most(0.85));
        let r = self.lb_cpu_ratio(Lb::Alb, &[Lb::HaproxyTls, Lb::NginxTls], false, false);
        push("alb LB CPU per keep-alive HTTPS request ≤ 0.85× the cheaper of HAProxy and nginx", r.clone(), r.at_most(0.85));
        let r = self.lb_cpu_ratio(Lb::Alb, &[Lb::NginxTls], false, true);
        push("alb LB CPU per full TLS 1.3 handshake ≤ 0.7× nginx's", r.clone(), r.at_most(0.7));
        out
    }
}
