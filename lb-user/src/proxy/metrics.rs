//! The proxy's Prometheus metrics (served by `crate::metrics_endpoint`).

use anyhow::Result;
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use super::limits::Reject;
use crate::config::Config;

/// Every metric of the proxy, registered in `registry`.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub connections: IntCounterVec,
    pub active: IntGaugeVec,
    pub bytes: IntCounterVec,
    pub rejected: IntCounterVec,
    pub backend_up: IntGaugeVec,
    pub connect_errors: IntCounterVec,
    /// `xdplb_proxy_reloads_total{result="applied"}`.
    pub reloads_applied: IntCounter,
    /// `xdplb_proxy_reloads_total{result="refused"}`.
    pub reloads_refused: IntCounter,
}

/// One backend's metric children, resolved once.
#[derive(Clone)]
pub struct BackendMetrics {
    pub connections: IntCounter,
    pub bytes_to_backend: IntCounter,
    pub bytes_to_client: IntCounter,
    pub connect_errors: IntCounter,
    pub up: IntGauge,
}

/// One VIP's metric children, resolved once.
#[derive(Clone)]
pub struct VipMetrics {
    pub active: IntGauge,
    /// Indexed by [`Reject::index`].
    pub rejected: Vec<IntCounter>,
    /// Indexed by backend.
    pub backends: Vec<BackendMetrics>,
}

impl Metrics {
    pub fn new() -> Result<Metrics> {
        let registry = Registry::new();
        let connections = IntCounterVec::new(
            Opts::new("xdplb_proxy_connections_total", "Connections forwarded to a backend (backend connect succeeded)."),
            &["vip", "backend"],
        )?;
        let active = IntGaugeVec::new(Opts::new("xdplb_proxy_active_connections", "Client connections currently open (admitted, not yet closed)."), &["vip"])?;
        let bytes = IntCounterVec::new(
            Opts::new("xdplb_proxy_bytes_total", "Payload bytes forwarded; direction is to_backend or to_client."),
            &["vip", "backend", "direction"],
        )?;
        let rejected = IntCounterVec::new(
            Opts::new(
                "xdplb_proxy_rejected_total",
                "Connections closed without forwarding: allowlist, limit_concurrent, limit_rate, no_backend, connect_failed.",
            ),
            &["vip", "reason"],
        )?;
        let backend_up = IntGaugeVec::new(Opts::new("xdplb_proxy_backend_up", "1 when the health checks consider the backend up."), &["vip", "backend"])?;
        let connect_errors = IntCounterVec::new(
            Opts::new("xdplb_proxy_backend_connect_errors_total", "Failed connection attempts to a backend (each attempt)."),
            &["vip", "backend"],
        )?;
        let reloads = IntCounterVec::new(
            Opts::new("xdplb_proxy_reloads_total", "Config reloads (SIGHUP, file change, API) by result: applied or refused."),
            &["result"],
        )?;
        for c in [&connections, &bytes, &rejected, &connect_errors, &reloads] {
            registry.register(Box::new((*c).clone()))?;
        }
        for g in [&active, &backend_up] {
            registry.register(Box::new((*g).clone()))?;
        }
        let (reloads_applied, reloads_refused) = (reloads.with_label_values(&["applied"]), reloads.with_label_values(&["refused"]));
        Ok(Metrics { registry, connections, active, bytes, rejected, backend_up, connect_errors, reloads_applied, reloads_refused })
    }

    /// Resolves (and so exports at 0) every label set of `config`'s TCP VIPs.
    pub fn vip(&self, config: &Config, vip: usize) -> VipMetrics {
        let v = &config.vips[vip];
        let name = v.name.as_str();
        let backends = v
            .backends
            .iter()
            .map(|b| {
                let key = b.key();
                let up = self.backend_up.with_label_values(&[name, key.as_str()]);
                up.set(1);
                BackendMetrics {
                    connections: self.connections.with_label_values(&[name, key.as_str()]),
                    bytes_to_backend: self.bytes.with_label_values(&[name, key.as_str(), "to_backend"]),
                    bytes_to_client: self.bytes.with_label_values(&[name, key.as_str(), "to_client"]),
                    connect_errors: self.connect_errors.with_label_values(&[name, key.as_str()]),
                    up,
                }
            })
            .collect();
        VipMetrics {
            active: self.active.with_label_values(&[name]),
            rejected: Reject::ALL.iter().map(|r| self.rejected.with_label_values(&[name, r.label()])).collect(),
            backends,
        }
    }
}

impl Metrics {
    /// Stops exporting the label sets of `old` that `new` does not have
    /// (removed VIPs and backends). Connections still open to them keep
    /// counting into the detached children.
    pub fn forget(&self, old: &Config, new: &Config) {
        for v in &old.vips {
            let name = v.name.as_str();
            let kept = new.vips.iter().find(|n| n.name == v.name);
            if kept.is_none() {
                let _ = self.active.remove_label_values(&[name]);
                for r in Reject::ALL {
                    let _ = self.rejected.remove_label_values(&[name, r.label()]);
                }
            }
            for b in &v.backends {
                let key = b.key();
                if kept.is_some_and(|n| n.backends.iter().any(|x| x.key() == key)) {
                    continue;
                }
                let key = key.as_str();
                let _ = self.connections.remove_label_values(&[name, key]);
                let _ = self.connect_errors.remove_label_values(&[name, key]);
                let _ = self.backend_up.remove_label_values(&[name, key]);
                for d in ["to_backend", "to_client"] {
                    let _ = self.bytes.remove_label_values(&[name, key, d]);
                }
            }
        }
    }
}
