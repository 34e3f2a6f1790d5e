//! `GET /api/stats` of the admin listener: the figures alb's dashboard
//! draws, read from the same Prometheus metrics `/metrics` exports (no
//! second set of counters): requests by status, TLS handshake failures by
//! reason, active connections, and latency percentiles from the
//! `alb_request_duration_seconds` histogram. Rates and the window's
//! percentiles are taken between this request's sample and an earlier one
//! kept by the shared rate window (`lb_common::userspace::rates`).

use std::{collections::BTreeMap, time::Instant};

use lb_common::userspace::rates::{per_second, SampleWindow};
use prometheus::core::Collector;
use serde_json::{json, Value};

use crate::metrics::Metrics;

/// One reading of the metrics the dashboard needs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    /// Requests by the status sent to the client, over pools and backends.
    pub requests: BTreeMap<String, u64>,
    pub tls_failures: BTreeMap<String, u64>,
    pub active_connections: i64,
    /// The latency histogram over pools and backends: (upper bound in
    /// seconds, cumulative count), ascending, without `+Inf`.
    pub buckets: Vec<(f64, u64)>,
    /// Every observation (the `+Inf` bucket).
    pub count: u64,
}

fn label<'a>(m: &'a prometheus::proto::Metric, name: &str) -> &'a str {
    m.get_label().iter().find(|l| l.name() == name).map_or("", |l| l.value())
}

impl Sample {
    pub fn read(m: &Metrics) -> Sample {
        let mut s = Sample { active_connections: m.active_connections.get(), ..Sample::default() };
        let sum_by = |families: Vec<prometheus::proto::MetricFamily>, by: &str, out: &mut BTreeMap<String, u64>| {
            for f in families {
                for x in f.get_metric() {
                    *out.entry(label(x, by).to_owned()).or_default() += x.get_counter().get_value() as u64;
                }
            }
        };
        sum_by(m.requests.collect(), "status", &mut s.requests);
        sum_by(m.tls_failures.collect(), "reason", &mut s.tls_failures);
        let mut buckets: BTreeMap<u64, (f64, u64)> = BTreeMap::new();
        for f in m.latency.collect() {
            for x in f.get_metric() {
                let h = x.get_histogram();
                s.count += h.get_sample_count();
                for b in h.get_bucket() {
                    // Keyed by the bound's bits: every series has the same bounds.
                    let e = buckets.entry(b.upper_bound().to_bits()).or_insert((b.upper_bound(), 0));
                    e.1 += b.cumulative_count();
                }
            }
        }
        s.buckets = buckets.into_values().collect();
        s.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        s
    }

    /// This sample minus `before` (a reset counter counts from zero, as in
    /// [`per_second`]): the histogram of the requests between the two.
    fn histogram_since(&self, before: &Sample) -> (Vec<(f64, u64)>, u64) {
        let sub = |now: u64, was: u64| if now >= was { now - was } else { now };
        let was = |bound: f64| before.buckets.iter().find(|(b, _)| *b == bound).map_or(0, |(_, c)| *c);
        (self.buckets.iter().map(|(b, c)| (*b, sub(*c, was(*b)))).collect(), sub(self.count, before.count))
    }
}

/// The `q`-quantile (0..1) of a histogram with cumulative `buckets` and
/// `count` observations, interpolated linearly inside its bucket as
/// Prometheus' `histogram_quantile` does; above the last bound it is the
/// last bound. `None` without observations.
pub fn quantile(q: f64, buckets: &[(f64, u64)], count: u64) -> Option<f64> {
    if count == 0 {
        return None;
    }
    let rank = q * count as f64;
    let (mut lower, mut below) = (0.0, 0u64);
    for &(bound, cumulative) in buckets {
        if cumulative as f64 >= rank {
            let inside = (cumulative - below) as f64;
            return Some(if inside == 0.0 { bound } else { lower + (bound - lower) * (rank - below as f64) / inside });
        }
        (lower, below) = (bound, cumulative);
    }
    buckets.last().map(|(b, _)| *b)
}

fn percentiles(buckets: &[(f64, u64)], count: u64, seconds: Option<f64>) -> Value {
    let p = |q| quantile(q, buckets, count);
    let mut v = json!({"count": count, "p50": p(0.5), "p95": p(0.95), "p99": p(0.99)});
    if let Some(s) = seconds {
        v["interval_s"] = s.into();
    }
    v
}

/// The JSON of `GET /api/stats` (docs/alb.md): `counters` since start,
/// `rates` per second and `latency` percentiles over the time since the
/// window's base sample (null on the first request), `latency_total` since
/// start.
pub fn render(m: &Metrics, window: &SampleWindow<Sample>) -> Value {
    let now = Sample::read(m);
    let rates = window.since_base(&now, Instant::now(), |before, elapsed| {
        let s = elapsed.as_secs_f64();
        let per = |now: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>| -> BTreeMap<String, f64> {
            now.iter().map(|(k, v)| (k.clone(), per_second(*v, before.get(k).copied().unwrap_or(0), s))).collect()
        };
        let requests = per(&now.requests, &before.requests);
        let (buckets, count) = now.histogram_since(before);
        let total: f64 = requests.values().sum();
        (
            json!({"interval_s": s, "requests": requests, "requests_total": total, "tls_handshake_failures": per(&now.tls_failures, &before.tls_failures)}),
            percentiles(&buckets, count, Some(s)),
        )
    });
    let (rates, latency) = rates.unwrap_or((Value::Null, Value::Null));
    json!({
        "active_connections": now.active_connections,
        "counters": {"requests": now.requests, "tls_handshake_failures": now.tls_failures},
        "rates": rates,
        "latency": latency,
        "latency_total": percentiles(&now.buckets, now.count, None),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        // 10 requests ≤ 10 ms, 10 more ≤ 20 ms.
        let b = [(0.01, 10), (0.02, 20), (0.05, 20)];
        assert_eq!(quantile(0.5, &b, 20), Some(0.01));
        assert!((quantile(0.75, &b, 20).unwrap() - 0.015).abs() < 1e-12);
        assert!((quantile(0.25, &b, 20).unwrap() - 0.005).abs() < 1e-12, "from 0 in the first bucket");
        assert_eq!(quantile(0.99, &b, 25), Some(0.05), "above the last bound: the last bound");
        assert_eq!(quantile(0.5, &b, 0), None);
    }

    #[test]
    fn stats_from_the_metrics_with_rates_and_window_percentiles() {
        let m = Metrics::new();
        let window = SampleWindow::default();
        m.requests.with_label_values(&["default", "b1", "GET", "200"]).inc_by(3);
        m.requests.with_label_values(&["default", "b2", "GET", "200"]).inc_by(2);
        m.requests.with_label_values(&["none", "none", "GET", "429"]).inc();
        m.tls_failures.with_label_values(&["no_client_cert"]).inc();
        m.active_connections.set(4);
        m.latency.with_label_values(&["default", "b1"]).observe(0.003);
        let first = render(&m, &window);
        assert_eq!(first["counters"]["requests"], json!({"200": 5, "429": 1}));
        assert_eq!(first["counters"]["tls_handshake_failures"], json!({"no_client_cert": 1}));
        assert_eq!(first["active_connections"], 4);
        assert_eq!((first["rates"].clone(), first["latency"].clone()), (Value::Null, Value::Null), "no earlier sample");
        assert_eq!(first["latency_total"]["count"], 1);
        // 0.003 lies in (0.0025, 0.005]: the median interpolates to the middle.
        assert!((first["latency_total"]["p50"].as_f64().unwrap() - 0.00375).abs() < 1e-9, "{first}");

        std::thread::sleep(lb_common::userspace::rates::MIN_WINDOW + Duration::from_millis(10));
        let _ = render(&m, &window);
        for _ in 0..10 {
            m.latency.with_label_values(&["default", "b2"]).observe(0.2);
        }
        m.requests.with_label_values(&["default", "b2", "GET", "200"]).inc_by(10);
        let next = render(&m, &window);
        let s = next["rates"]["interval_s"].as_f64().unwrap();
        assert!(s >= 0.5, "{next}");
        assert!((next["rates"]["requests"]["200"].as_f64().unwrap() - 10.0 / s).abs() < 1e-6, "{next}");
        assert_eq!(next["rates"]["requests"]["429"], 0.0);
        assert_eq!(next["latency"]["count"], 10, "only the window's requests: {next}");
        assert!(next["latency"]["p50"].as_f64().unwrap() > 0.1, "the window's requests were slow: {next}");
        assert_eq!(next["latency_total"]["count"], 11);
    }
}
