//! Prometheus metrics, one registry per running alb (so tests running
//! several instances in one process do not share counters).

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

pub struct Metrics {
    pub registry: Registry,
    /// By pool, backend, method and status (`status` is the code sent to
    /// the client; backend `none` when no backend was reached).
    pub requests: IntCounterVec,
    /// Time to the backend's response headers, seconds.
    pub latency: HistogramVec,
    pub active_connections: IntGauge,
    pub tls_failures: IntCounterVec,
    pub denied: IntCounterVec,
    pub backend_healthy: IntGaugeVec,
    pub ejections: IntCounterVec,
    pub retries: IntCounterVec,
    pub rate_limited: IntCounter,
    pub reloads: IntCounterVec,
    /// Access log lines dropped because the writer fell behind.
    pub access_log_dropped: IntCounter,
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let cv = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("metric");
            r.register(Box::new(c.clone())).expect("register");
            c
        };
        let requests = cv("alb_requests_total", "Requests by pool, backend, method and status", &["pool", "backend", "method", "status"]);
        let tls_failures = cv("alb_tls_handshake_failures_total", "Failed TLS handshakes by reason", &["reason"]);
        let denied = cv("alb_allowlist_denied_total", "Connections closed by the allowlist before TLS", &["reason"]);
        let ejections = cv("alb_backend_ejections_total", "Passive ejections", &["pool", "backend"]);
        let retries = cv("alb_retries_total", "Requests retried on another backend", &["pool"]);
        let reloads = cv("alb_reloads_total", "Configuration reloads by result", &["result"]);
        let latency = HistogramVec::new(
            HistogramOpts::new("alb_request_duration_seconds", "Time to backend response headers")
                .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["pool", "backend"],
        )
        .expect("metric");
        r.register(Box::new(latency.clone())).expect("register");
        let active_connections = IntGauge::new("alb_active_connections", "Open client connections").expect("metric");
        r.register(Box::new(active_connections.clone())).expect("register");
        let backend_healthy =
            IntGaugeVec::new(Opts::new("alb_backend_healthy", "1 if the backend is available (healthy, not ejected, not draining)"), &["pool", "backend"])
                .expect("metric");
        r.register(Box::new(backend_healthy.clone())).expect("register");
        let rate_limited = IntCounter::new("alb_rate_limited_total", "Requests refused with 429").expect("metric");
        r.register(Box::new(rate_limited.clone())).expect("register");
        let access_log_dropped = IntCounter::new("alb_access_log_dropped_total", "Access log lines dropped because the writer fell behind").expect("metric");
        r.register(Box::new(access_log_dropped.clone())).expect("register");
        Metrics {
            registry: r,
            requests,
            latency,
            active_connections,
            tls_failures,
            denied,
            backend_healthy,
            ejections,
            retries,
            rate_limited,
            reloads,
            access_log_dropped,
        }
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf).expect("encode");
        String::from_utf8(buf).expect("utf8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
