//! The targets of issue 7, checked against a run's figures.

use super::model::Summary;
use crate::bench::cases::Lb;

impl Summary {
    /// The targets: (description, met, figures).
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
