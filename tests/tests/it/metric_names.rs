//! No root: the metric families of lb-user's XDP exporter, `lb-user proxy`
//! and alb, each rendered with every family populated, follow the
//! Prometheus naming rules (counters end in `_total`, nothing else does;
//! durations in `_seconds`, byte counts in `_bytes`) and no name is used
//! by two of them, so one Prometheus can scrape all three (docs/metrics.md).

use std::collections::BTreeMap;

use lb_common::lb::FlowCounter;
use lb_user::stats::{BackendMeta, Report};

/// `# TYPE name kind` lines: name → kind.
fn families(text: &str) -> BTreeMap<String, String> {
    text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split_once(' ')).map(|(n, k)| (n.to_owned(), k.to_owned())).collect()
}

fn xdp() -> BTreeMap<String, String> {
    let mut r = Report::default();
    r.vip_labels.insert(0, "198.18.100.1:80/tcp".into());
    r.vips.push((0, FlowCounter { packets: 1, bytes: 1, new_flows: 1 }));
    r.backend_meta.insert(0, BackendMeta { label: "198.18.1.11:8080".into(), vip_id: 0, active: true, up: true });
    r.backends.push((0, FlowCounter { packets: 1, bytes: 1, new_flows: 1 }));
    families(&lb_user::exporter::render(&r).unwrap())
}

fn proxy() -> BTreeMap<String, String> {
    let yaml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/xdplb.example.yaml")).unwrap();
    let config = lb_user::config::Config::parse(&yaml, "xdplb.example.yaml").unwrap();
    let m = lb_user::proxy::metrics::Metrics::new().unwrap();
    let vip = config.vips.iter().position(|v| !v.backends.is_empty()).expect("a VIP with backends in the example");
    let _resolved = m.vip(&config, vip);
    families(&lb_user::metrics_endpoint::render(&m.registry))
}

fn alb() -> BTreeMap<String, String> {
    let m = alb::metrics::Metrics::new();
    // Every labelled family gets one child, so it is rendered.
    m.requests.with_label_values(&["p", "b", "GET", "200"]).inc();
    m.latency.with_label_values(&["p", "b"]).observe(0.01);
    m.tls_failures.with_label_values(&["no_cert"]).inc();
    m.denied.with_label_values(&["source_ip"]).inc();
    m.backend_healthy.with_label_values(&["p", "b"]).set(1);
    m.ejections.with_label_values(&["p", "b"]).inc();
    m.retries.with_label_values(&["p"]).inc();
    m.reloads.with_label_values(&["ok"]).inc();
    families(&m.render())
}

#[test]
fn metric_names_follow_prometheus_conventions_and_do_not_collide() {
    let sets = [("lb-user XDP exporter", xdp()), ("lb-user proxy", proxy()), ("alb", alb())];
    let mut owner: BTreeMap<&str, &str> = BTreeMap::new();
    for (who, fams) in &sets {
        assert!(fams.len() >= 7, "{who}: only {fams:?}");
        for (name, kind) in fams {
            let prefix_ok = match *who {
                "lb-user XDP exporter" => name.starts_with("xdplb_") && !name.starts_with("xdplb_proxy_"),
                "lb-user proxy" => name.starts_with("xdplb_proxy_"),
                _ => name.starts_with("alb_"),
            };
            assert!(prefix_ok, "{who}: {name} has another component's prefix");
            assert_eq!(kind == "counter", name.ends_with("_total"), "{who}: {name} is a {kind}: counters and only counters end in _total");
            if name.contains("duration") || name.contains("latency") {
                assert!(name.ends_with("_seconds"), "{who}: {name}: durations are in seconds, named so");
            }
            if name.contains("bytes") {
                assert!(name.ends_with("_bytes") || name.ends_with("_bytes_total"), "{who}: {name}: byte counts end in _bytes");
            }
            if let Some(other) = owner.insert(name, who) {
                panic!("{name} is exported by both {other} and {who}");
            }
        }
    }
}
