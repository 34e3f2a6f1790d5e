//! The proxy's Prometheus metrics and a minimal `GET /metrics` responder.

use std::{sync::Arc, time::Duration};

use anyhow::Result;
use prometheus::{Encoder as _, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

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
        let backend_up = IntGaugeVec::new(Opts::new("xdplb_backend_up", "1 when the health checks consider the backend up."), &["vip", "backend"])?;
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

/// The registry in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut out = Vec::new();
    // Encoding gathered families into a Vec cannot fail.
    let _ = TextEncoder::new().encode(&registry.gather(), &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// Serves `GET /metrics` (HTTP/1.x, one request per connection) until the
/// task is aborted.
pub async fn serve(listener: TcpListener, registry: Registry) {
    serve_with(listener, Arc::new(move || Ok(render(&registry)))).await
}

/// Produces the `/metrics` body on each request; `Err` is answered with a
/// 500 and the message (e.g. the XDP program is not attached).
pub type MetricsBody = Arc<dyn Fn() -> Result<String, String> + Send + Sync>;

/// [`serve`] with a body computed per request (shared with
/// `crate::exporter`, which reads the pinned BPF maps on every scrape).
pub async fn serve_with(listener: TcpListener, body: MetricsBody) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let body = body.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(10), respond(stream, &body)).await;
                });
            }
            Err(e) => {
                log::warn!("metrics endpoint: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn respond(mut stream: TcpStream, source: &MetricsBody) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if buf.len() > 16 * 1024 {
            return Ok(());
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = buf.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, target) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    let (status, ctype, body) = match (method, path) {
        (b"GET", b"/metrics") => match source() {
            Ok(text) => ("200 OK", prometheus::TEXT_FORMAT, text),
            Err(e) => ("500 Internal Server Error", "text/plain", format!("{e}\n")),
        },
        (b"GET", _) => ("404 Not Found", "text/plain", "not found; try /metrics\n".to_owned()),
        _ => ("405 Method Not Allowed", "text/plain", "only GET\n".to_owned()),
    };
    let head = format!("HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
