//! Prometheus exporter for the XDP program's counters and backend health.
//!
//! Every scrape of `GET /metrics` reads the maps pinned for one interface
//! (so it works from any process, like `lb-user stats`) and renders them
//! through a fresh registry: counters summed over CPUs, labelled with the
//! VIP and backend addresses the maps hold. docs/metrics.md lists the
//! metrics. The HTTP side is the proxy's responder
//! ([`crate::metrics_endpoint::serve_with`]) on a thread of its own, so the
//! synchronous `lb-user attach` loop needs no async runtime.

use std::{
    net::{SocketAddr, TcpListener},
    sync::Arc,
    thread::JoinHandle,
};

use anyhow::{Context as _, Result};
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use tokio::sync::oneshot;

use crate::{metrics_endpoint, stats::Report};

/// A running exporter; dropping it stops the server and joins its thread.
pub struct ExporterHandle {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ExporterHandle {
    /// The address it listens on (the real port when spawned with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for ExporterHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Serves `GET /metrics` on `listen` (port 0 picks one; see
/// [`ExporterHandle::local_addr`]) for the program attached to `iface`,
/// on its own thread. Fails if the address cannot be bound. A scrape while
/// nothing is attached to `iface` is answered with a 500 and the reason.
pub fn spawn(listen: SocketAddr, iface: String) -> Result<ExporterHandle> {
    let listener = TcpListener::bind(listen).with_context(|| format!("binding the metrics endpoint {listen}"))?;
    listener.set_nonblocking(true).context("metrics endpoint: set_nonblocking")?;
    let addr = listener.local_addr().context("metrics endpoint: local_addr")?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the metrics endpoint's runtime")?;
    let (tx, rx) = oneshot::channel::<()>();
    let body: metrics_endpoint::MetricsBody = Arc::new(move || {
        Report::read_pinned(&iface).and_then(|r| render(&r)).map_err(|e| {
            log::warn!("metrics scrape failed: {e:#}");
            format!("{e:#}")
        })
    });
    let thread = std::thread::Builder::new()
        .name("xdplb-metrics".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        log::error!("metrics endpoint {addr}: {e}");
                        return;
                    }
                };
                tokio::select! {
                    _ = metrics_endpoint::serve_with(listener, body) => {}
                    _ = rx => {}
                }
            });
        })
        .context("starting the metrics endpoint's thread")?;
    log::info!("serving Prometheus metrics on http://{addr}/metrics");
    Ok(ExporterHandle { addr, shutdown: Some(tx), thread: Some(thread) })
}

/// `report` in the Prometheus text format. Per-VIP series exist for every
/// VIP in the VIPS map and per-backend series for every active backend
/// (zeros included); counters of removed VIPs and backends are left out.
pub fn render(report: &Report) -> Result<String> {
    let registry = Registry::new();
    let counter = |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec> {
        let c = IntCounterVec::new(Opts::new(name, help), labels)?;
        registry.register(Box::new(c.clone()))?;
        Ok(c)
    };

    let packets = counter("xdplb_packets_total", "Frames seen by the XDP program, per traffic class (L3 and L4 classes overlap).", &["class"])?;
    let bytes = counter("xdplb_bytes_total", "Bytes of the frames seen by the XDP program (Ethernet header included), per traffic class.", &["class"])?;
    for class in lb_common::TrafficClass::ALL {
        let c = report.traffic.get(class);
        packets.with_label_values(&[class.name()]).inc_by(c.packets);
        bytes.with_label_values(&[class.name()]).inc_by(c.bytes);
    }

    let actions = counter("xdplb_actions_total", "Frames forwarded, rewritten or passed to the kernel, per action.", &["action"])?;
    let action_bytes = counter("xdplb_action_bytes_total", "Bytes of the frames counted in xdplb_actions_total.", &["action"])?;
    let drops = counter("xdplb_drops_total", "Frames dropped, per reason.", &["reason"])?;
    let drop_bytes = counter("xdplb_drop_bytes_total", "Bytes of the frames counted in xdplb_drops_total.", &["reason"])?;
    for (stat, c) in &report.actions {
        let name = stat.name();
        let (p, b, label) = match name.strip_prefix("drop_") {
            Some(reason) => (&drops, &drop_bytes, reason),
            None => (&actions, &action_bytes, name),
        };
        p.with_label_values(&[label]).inc_by(c.packets);
        b.with_label_values(&[label]).inc_by(c.bytes);
    }

    let vip_packets = counter("xdplb_vip_packets_total", "Client-to-VIP packets balanced, per VIP.", &["vip"])?;
    let vip_bytes = counter("xdplb_vip_bytes_total", "Bytes of the client-to-VIP packets balanced, per VIP.", &["vip"])?;
    let vip_flows = counter("xdplb_vip_new_flows_total", "New flows (connections, UDP sessions) per VIP.", &["vip"])?;
    for (id, c) in &report.vips {
        let Some(vip) = report.vip_label(*id) else { continue };
        vip_packets.with_label_values(&[vip]).inc_by(c.packets);
        vip_bytes.with_label_values(&[vip]).inc_by(c.bytes);
        vip_flows.with_label_values(&[vip]).inc_by(c.new_flows);
    }

    // An info metric: the fingerprint is a label, so nodes whose tables
    // agree show the same series (`count by (vip, fingerprint)`); a changed
    // table replaces the series at the next scrape.
    let table_info = IntGaugeVec::new(
        Opts::new(
            "xdplb_maglev_table_info",
            "1 per Maglev VIP, labelled with the fingerprint of the table the data path reads (equal on nodes with equal tables).",
        ),
        &["vip", "fingerprint"],
    )?;
    registry.register(Box::new(table_info.clone()))?;
    for (id, fp) in &report.maglev {
        let Some(vip) = report.vip_label(*id) else { continue };
        table_info.with_label_values(&[vip, &fp.to_string()]).set(1);
    }

    let labels = ["vip", "backend"];
    let be_packets = counter("xdplb_backend_packets_total", "Client-to-VIP packets sent to a backend.", &labels)?;
    let be_bytes = counter("xdplb_backend_bytes_total", "Bytes of the client-to-VIP packets sent to a backend.", &labels)?;
    let be_flows = counter("xdplb_backend_new_flows_total", "New flows assigned to a backend.", &labels)?;
    let be_up = IntGaugeVec::new(Opts::new("xdplb_backend_up", "1 when the backend's last health verdict was up (it gets new flows), else 0."), &labels)?;
    registry.register(Box::new(be_up.clone()))?;
    for (id, c) in &report.backends {
        let Some(meta) = report.backend_meta.get(id).filter(|m| m.active) else { continue };
        let Some(vip) = report.vip_label(meta.vip_id) else { continue };
        let l = [vip, meta.label.as_str()];
        be_packets.with_label_values(&l).inc_by(c.packets);
        be_bytes.with_label_values(&l).inc_by(c.bytes);
        be_flows.with_label_values(&l).inc_by(c.new_flows);
        be_up.with_label_values(&l).set(i64::from(meta.up));
    }
    Ok(metrics_endpoint::render(&registry))
}

#[cfg(test)]
mod tests {
    use lb_common::lb::FlowCounter;

    use super::*;

    fn sample() -> Report {
        let mut r = crate::stats::tests::sample();
        r.vips.push((9, FlowCounter { packets: 1, bytes: 1, new_flows: 1 }));
        r
    }

    #[test]
    fn renders_every_family_with_address_labels() {
        let text = render(&sample()).unwrap();
        for line in [
            "xdplb_packets_total{class=\"tcp\"} 100",
            "xdplb_bytes_total{class=\"tcp\"} 6400",
            "xdplb_packets_total{class=\"udp\"} 0",
            "xdplb_actions_total{action=\"forward_nat\"} 60",
            "xdplb_action_bytes_total{action=\"forward_nat\"} 4000",
            "xdplb_actions_total{action=\"pass_not_vip\"} 0",
            "xdplb_drops_total{reason=\"no_backend\"} 3",
            "xdplb_drop_bytes_total{reason=\"no_backend\"} 180",
            "xdplb_drops_total{reason=\"allowlist_cidr\"} 0",
            "xdplb_vip_packets_total{vip=\"198.18.100.1:80/tcp\"} 60",
            "xdplb_vip_bytes_total{vip=\"198.18.100.1:80/tcp\"} 4000",
            "xdplb_vip_new_flows_total{vip=\"198.18.100.1:80/tcp\"} 7",
            "xdplb_vip_new_flows_total{vip=\"[fd00::1]:53/udp\"} 0",
            "xdplb_backend_packets_total{backend=\"198.18.1.11:8080\",vip=\"198.18.100.1:80/tcp\"} 40",
            "xdplb_backend_bytes_total{backend=\"198.18.1.11:8080\",vip=\"198.18.100.1:80/tcp\"} 3000",
            "xdplb_backend_new_flows_total{backend=\"198.18.1.11:8080\",vip=\"198.18.100.1:80/tcp\"} 5",
            "xdplb_backend_new_flows_total{backend=\"198.18.1.12:8080\",vip=\"198.18.100.1:80/tcp\"} 0",
            "xdplb_backend_up{backend=\"198.18.1.11:8080\",vip=\"198.18.100.1:80/tcp\"} 1",
            "xdplb_backend_up{backend=\"198.18.1.12:8080\",vip=\"198.18.100.1:80/tcp\"} 0",
            "xdplb_backend_up{backend=\"[fd00::11]:53\",vip=\"[fd00::1]:53/udp\"} 1",
            "# TYPE xdplb_vip_new_flows_total counter",
            "# TYPE xdplb_backend_up gauge",
            "xdplb_maglev_table_info{fingerprint=\"39b5be73\",vip=\"198.18.100.1:80/tcp\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains("reason=\"drop_"), "drop reasons lose their prefix");
        assert!(!text.contains("198.18.1.13"), "removed backends have no series:\n{text}");
        assert_eq!(text.lines().filter(|l| l.starts_with("xdplb_vip_packets_total")).count(), 2, "unlabelled VIP 9 left out");
        assert_eq!(text.lines().filter(|l| l.starts_with("xdplb_maglev_table_info")).count(), 1, "only Maglev VIPs have a fingerprint");
    }

    fn get(addr: SocketAddr, path: &str) -> String {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_on_port_zero_answers_404_elsewhere_and_stops_on_drop() {
        let handle = spawn("127.0.0.1:0".parse().unwrap(), "xdplb-no-such-iface".into()).unwrap();
        let addr = handle.local_addr();
        assert_ne!(addr.port(), 0);
        assert!(get(addr, "/").starts_with("HTTP/1.1 404"));
        // Nothing attached (or no privileges): a 500 with the reason.
        let resp = get(addr, "/metrics");
        assert!(resp.starts_with("HTTP/1.1 500"), "{resp}");
        drop(handle);
        assert!(std::net::TcpStream::connect(addr).is_err(), "still listening after drop");
    }
}
