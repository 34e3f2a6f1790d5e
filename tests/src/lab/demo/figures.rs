//! What the live view shows for one second: rates from two consecutive
//! [`Sample`]s (a counter that went down belongs to a restarted process
//! and counts from zero), health, drops by reason, alb statuses and
//! latency, and the client simulator's per-kind counters.

use std::{collections::BTreeMap, time::Duration};

use super::{
    sample::{matching, Sample},
    topology::Topology,
};
use crate::metrics::{self, Samples};

/// Everything of one second.
#[derive(Clone, Debug, Default)]
pub struct Frame {
    pub at: Duration,
    /// `None`: lb-user's metrics did not answer.
    pub xdp: Option<Xdp>,
    pub albs: Vec<AlbRow>,
    pub backends: Vec<SimRow>,
    pub client: Vec<KindRow>,
}

#[derive(Clone, Debug, Default)]
pub struct Xdp {
    /// VIP label → new flows/s.
    pub vip_flows: BTreeMap<String, f64>,
    /// (VIP label, backend name) → (new flows/s, up).
    pub backends: BTreeMap<(String, String), (f64, bool)>,
    /// Drop reason → frames this second.
    pub drops: BTreeMap<String, f64>,
    /// All frames dropped so far.
    pub drops_total: f64,
}

#[derive(Clone, Debug, Default)]
pub struct AlbRow {
    pub id: u8,
    /// Its metrics answered.
    pub up: bool,
    pub rps: f64,
    /// Status → responses this second.
    pub statuses: BTreeMap<String, f64>,
    /// Time to response headers this second, as histogram bucket bounds.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Backend name → (requests/s, healthy).
    pub backends: BTreeMap<String, (f64, bool)>,
}

#[derive(Clone, Debug, Default)]
pub struct SimRow {
    pub id: u8,
    /// Its control port answered.
    pub up: bool,
    pub http_rps: f64,
    pub echo_per_s: f64,
    pub conns_per_s: f64,
    pub refused_chaos_per_s: f64,
}

/// One client kind, as the client simulator reported it (totals so far).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KindRow {
    pub kind: String,
    pub started: u64,
    pub completed: u64,
    /// Reason → failures so far.
    pub failed: BTreeMap<String, u64>,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl KindRow {
    pub fn failed_total(&self) -> u64 {
        self.failed.values().sum()
    }
}

/// The frame of `cur`, with rates over the time since `prev`.
pub fn frame(prev: &Sample, cur: &Sample) -> Frame {
    let dt = (cur.at.saturating_sub(prev.at)).as_secs_f64().max(0.001);
    let rate = |now: f64, before: Option<f64>| {
        let before = before.unwrap_or(0.0);
        (if now >= before { now - before } else { now }) / dt
    };
    let xdp = cur.lb.as_ref().map(|lb| {
        let before = prev.lb.as_ref();
        let mut x = Xdp::default();
        for (series, v) in by_name(lb, "xdplb_vip_new_flows_total") {
            let vip = metrics::label(series, "vip").unwrap_or("?").to_owned();
            x.vip_flows.insert(vip, rate(v, before.and_then(|b| b.get(series).copied())));
        }
        for (series, v) in by_name(lb, "xdplb_backend_new_flows_total") {
            let (Some(vip), Some(be)) = (metrics::label(series, "vip"), metrics::label(series, "backend")) else { continue };
            let up = matching(lb, "xdplb_backend_up", &[("vip", vip), ("backend", be)]).next() == Some(1.0);
            x.backends.insert((vip.to_owned(), Topology::host_name(be)), (rate(v, before.and_then(|b| b.get(series).copied())), up));
        }
        for (series, v) in by_name(lb, "xdplb_drops_total") {
            let reason = metrics::label(series, "reason").unwrap_or("?").to_owned();
            let d = rate(v, before.and_then(|b| b.get(series).copied())) * dt;
            x.drops_total += v;
            if d > 0.0 {
                x.drops.insert(reason, d);
            }
        }
        x
    });
    let albs = cur.albs.iter().map(|(&id, s)| alb_row(id, s.as_ref(), prev.albs.get(&id).and_then(Option::as_ref), dt)).collect();
    let backends = cur
        .backends
        .keys()
        .map(|&id| {
            let (now, before) = (cur.backend_counts(id), prev.backend_counts(id));
            let Some(now) = now else { return SimRow { id, ..SimRow::default() } };
            let b = before.unwrap_or_default();
            let r = |n: u64, p: u64| rate(n as f64, Some(p as f64));
            SimRow {
                id,
                up: true,
                http_rps: r(now.requests, b.requests),
                echo_per_s: r(now.echo_lines, b.echo_lines),
                conns_per_s: r(now.accepted, b.accepted),
                refused_chaos_per_s: r(now.refused + now.chaos_closed, b.refused + b.chaos_closed),
            }
        })
        .collect();
    Frame { at: cur.at, xdp, albs, backends, client: cur.client.as_ref().map(kinds).unwrap_or_default() }
}

fn alb_row(id: u8, now: Option<&Samples>, before: Option<&Samples>, dt: f64) -> AlbRow {
    let Some(now) = now else { return AlbRow { id, ..AlbRow::default() } };
    let delta = |series: &str, v: f64| {
        let b = before.and_then(|b| b.get(series).copied()).unwrap_or(0.0);
        if v >= b {
            v - b
        } else {
            v
        }
    };
    let mut row = AlbRow { id, up: true, ..AlbRow::default() };
    for (series, v) in by_name(now, "alb_requests_total") {
        let d = delta(series, v);
        let status = metrics::label(series, "status").unwrap_or("?").to_owned();
        let backend = Topology::host_name(metrics::label(series, "backend").unwrap_or("none"));
        row.rps += d / dt;
        *row.statuses.entry(status).or_default() += d;
        row.backends.entry(backend).or_default().0 += d / dt;
    }
    for (series, v) in by_name(now, "alb_backend_healthy") {
        let backend = Topology::host_name(metrics::label(series, "backend").unwrap_or("?"));
        row.backends.entry(backend).or_default().1 = v == 1.0;
    }
    row.statuses.retain(|_, n| *n > 0.0);
    // The histogram over every backend: cumulative counts per bound.
    let mut buckets: BTreeMap<u64, f64> = BTreeMap::new();
    for (series, v) in by_name(now, "alb_request_duration_seconds_bucket") {
        let Some(le) = metrics::label(series, "le").and_then(|l| l.parse::<f64>().ok()) else { continue };
        *buckets.entry((le * 1e6) as u64).or_default() += delta(series, v);
    }
    let total = buckets.values().last().copied().unwrap_or(0.0).max(buckets.values().copied().fold(0.0, f64::max));
    let quantile = |q: f64| (total > 0.0).then(|| buckets.iter().find(|(_, n)| **n >= q * total).map(|(le, _)| *le as f64 / 1000.0)).flatten();
    (row.p50_ms, row.p99_ms) = (quantile(0.5), quantile(0.99));
    row
}

/// `(series, value)` of metric `name` (any labels).
fn by_name<'a>(samples: &'a Samples, name: &'a str) -> impl Iterator<Item = (&'a str, f64)> + 'a {
    samples.iter().filter(move |(k, _)| k.strip_prefix(name).is_some_and(|rest| rest.starts_with('{'))).map(|(k, v)| (k.as_str(), *v))
}

/// The per-kind rows of a client simulator report
/// (`{"kinds": {kind: {started, completed, failed: {reason: n}, p50_ms, p99_ms}}}`).
pub fn kinds(report: &serde_json::Value) -> Vec<KindRow> {
    let Some(kinds) = report["kinds"].as_object() else { return Vec::new() };
    kinds
        .iter()
        .map(|(kind, k)| KindRow {
            kind: kind.clone(),
            started: k["started"].as_u64().unwrap_or(0),
            completed: k["completed"].as_u64().unwrap_or(0),
            failed: k["failed"].as_object().map(|m| m.iter().filter_map(|(r, n)| Some((r.clone(), n.as_u64()?))).collect()).unwrap_or_default(),
            p50_ms: k["p50_ms"].as_f64().unwrap_or(0.0),
            p99_ms: k["p99_ms"].as_f64().unwrap_or(0.0),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alb_rates_statuses_and_latency_come_from_deltas() {
        let before = metrics::parse(
            "alb_requests_total{backend=\"198.18.1.13:8080\",method=\"GET\",pool=\"default\",status=\"200\"} 10\n\
             alb_request_duration_seconds_bucket{backend=\"b\",le=\"0.001\",pool=\"default\"} 5\n\
             alb_request_duration_seconds_bucket{backend=\"b\",le=\"0.01\",pool=\"default\"} 10\n\
             alb_request_duration_seconds_bucket{backend=\"b\",le=\"+Inf\",pool=\"default\"} 10\n",
        )
        .unwrap();
        let now = metrics::parse(
            "alb_requests_total{backend=\"198.18.1.13:8080\",method=\"GET\",pool=\"default\",status=\"200\"} 30\n\
             alb_requests_total{backend=\"none\",method=\"GET\",pool=\"default\",status=\"503\"} 2\n\
             alb_backend_healthy{backend=\"198.18.1.13:8080\",pool=\"default\"} 1\n\
             alb_request_duration_seconds_bucket{backend=\"b\",le=\"0.001\",pool=\"default\"} 6\n\
             alb_request_duration_seconds_bucket{backend=\"b\",le=\"0.01\",pool=\"default\"} 30\n\
             alb_request_duration_seconds_bucket{backend=\"b\",le=\"+Inf\",pool=\"default\"} 30\n",
        )
        .unwrap();
        let row = alb_row(1, Some(&now), Some(&before), 2.0);
        assert_eq!(row.rps, 11.0);
        assert_eq!(row.statuses, BTreeMap::from([("200".to_owned(), 20.0), ("503".to_owned(), 2.0)]));
        assert_eq!(row.backends["be3"], (10.0, true));
        assert_eq!((row.p50_ms, row.p99_ms), (Some(10.0), Some(10.0)));
        assert!(!alb_row(2, None, Some(&before), 1.0).up);
    }

    #[test]
    fn client_kinds_are_read_from_the_contract_shape() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{"t_s": 3.0, "kinds": {"real": {"started": 9, "completed": 7, "failed": {"refused_reset": 2}, "p50_ms": 1.5, "p99_ms": 4.0}}}"#,
        )
        .unwrap();
        let rows = kinds(&v);
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].kind.as_str(), rows[0].started, rows[0].completed, rows[0].failed_total(), rows[0].p99_ms), ("real", 9, 7, 2, 4.0));
    }
}
