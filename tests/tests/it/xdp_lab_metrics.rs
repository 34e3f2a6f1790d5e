//! Metrics of the XDP path with real traffic in the lab: the Prometheus
//! exporter (`lb_user::exporter`, in this process, reading the maps pinned
//! by `lb-user attach`) and `lb-user stats --watch --json`.

use std::{
    io::Read as _,
    net::SocketAddr,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use xdplb_tests::{
    http,
    lab::{
        config::{LbConfig, Vip},
        Host, Lab,
    },
    lbuser::LbUser,
    metrics, netns, require_root, workspace,
};

const REQUESTS: usize = 24;
const VIP_LABEL: &str = "198.18.100.1:80/tcp";
const BACKENDS: [&str; 3] = ["198.18.1.11:8080", "198.18.1.12:8080", "198.18.1.13:8080"];

/// The VIP of these tests: TCP on 198.18.100.1:80 with the three `BACKENDS`.
fn web() -> Vip {
    BACKENDS.iter().fold(Vip::new("web", "198.18.100.1", 80), |vip, b| vip.backend(b.parse().unwrap()))
}

/// The lab config with `vip`.
fn config(lab: &Lab, vip: Vip) -> LbConfig {
    LbConfig::new(lab).maglev(251, Some(7)).vip(vip)
}

/// `n` HTTP requests from the client to the VIP, each on a new connection.
fn requests(lab: &Lab, n: usize) {
    let vip: SocketAddr = "198.18.100.1:80".parse().unwrap();
    netns::run_in(&lab.ns(Host::Client), move || {
        for _ in 0..n {
            let r = http::get(vip, "/", Duration::from_secs(5))?;
            anyhow::ensure!(r.status == 200, "status {} from {vip}", r.status);
        }
        Ok(())
    })
    .unwrap();
}

/// A plain `GET /metrics`; returns the body, panicking on anything but 200.
fn scrape(addr: SocketAddr) -> String {
    let r = http::get(addr, "/metrics", Duration::from_secs(10)).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

/// Samples (metric name with labels → value) of a scrape.
fn samples(text: &str) -> metrics::Samples {
    metrics::parse(text).unwrap()
}

fn backend_series(name: &str, backend: &str) -> String {
    format!("{name}{{backend=\"{backend}\",vip=\"{VIP_LABEL}\"}}")
}

#[test]
fn exporter_and_stats_watch_report_flows_per_vip_and_backend() {
    require_root!();
    let mut lab = Lab::up_unique("xm", 3).unwrap();
    lab.start_backends().unwrap();
    let config = config(&lab, web()).write().unwrap();
    let iface = lab.lb_client_iface();
    let lb = LbUser::attach_config(&lab.ns(Host::Lb), &iface, config.path()).unwrap();

    // Series exist (at zero) before any traffic.
    let exporter = lb_user::exporter::spawn("127.0.0.1:0".parse().unwrap(), iface.clone()).unwrap();
    let before = samples(&scrape(exporter.local_addr()));
    assert_eq!(before.get(&format!("xdplb_vip_new_flows_total{{vip=\"{VIP_LABEL}\"}}")), Some(&0.0), "{before:#?}");
    for b in BACKENDS {
        assert_eq!(before.get(&backend_series("xdplb_backend_new_flows_total", b)), Some(&0.0), "{before:#?}");
        assert_eq!(before.get(&backend_series("xdplb_backend_up", b)), Some(&1.0), "{before:#?}");
    }

    requests(&lab, REQUESTS);
    let text = scrape(exporter.local_addr());
    assert!(text.lines().any(|l| l == format!("xdplb_vip_new_flows_total{{vip=\"{VIP_LABEL}\"}} {REQUESTS}")), "{text}");
    let after = samples(&text);
    let per_backend: Vec<f64> = BACKENDS.iter().map(|b| after[&backend_series("xdplb_backend_new_flows_total", b)]).collect();
    assert_eq!(per_backend.iter().sum::<f64>(), REQUESTS as f64, "{per_backend:?}");
    assert!(per_backend.iter().all(|n| *n > 0.0), "every backend got flows: {per_backend:?}");
    let backend_packets: f64 = BACKENDS.iter().map(|b| after[&backend_series("xdplb_backend_packets_total", b)]).sum();
    assert_eq!(backend_packets, after[&format!("xdplb_vip_packets_total{{vip=\"{VIP_LABEL}\"}}")]);
    assert!(after["xdplb_actions_total{action=\"forward_nat\"}"] + after["xdplb_actions_total{action=\"pass_kernel_forward\"}"] >= (REQUESTS * 3) as f64);
    assert!(after["xdplb_packets_total{class=\"tcp\"}"] >= (REQUESTS * 5) as f64, "{after:#?}");
    assert_eq!(after.get("xdplb_drops_total{reason=\"no_backend\"}"), Some(&0.0));

    // The table names VIPs and backends by address, with their health.
    let table = lb.cli(&["stats", "--iface", &iface]).unwrap();
    for b in BACKENDS {
        let row = table.lines().find(|l| l.starts_with(b)).unwrap_or_else(|| panic!("no row for {b}:\n{table}"));
        assert!(row.contains(VIP_LABEL) && row.contains(" up "), "{row}");
    }
    let json = lb.stats_json().unwrap();
    assert_eq!(json["vips"][0]["label"], VIP_LABEL, "{json:#}");
    assert_eq!(json["vips"][0]["new_flows"].as_u64(), Some(REQUESTS as u64));

    // The Maglev fingerprint of the live table (read back from the maps) is
    // the one computed from the config, in stats, --json and the metric.
    let parsed = lb_user::config::Config::from_file(config.path()).unwrap();
    let want = lb_user::desired::Desired::from_config(&parsed).unwrap().vips[0].fingerprint.unwrap().to_string();
    assert_eq!(json["vips"][0]["maglev_fingerprint"], want.as_str(), "{json:#}");
    let vip_row = table.lines().find(|l| l.starts_with(VIP_LABEL)).unwrap_or_else(|| panic!("no VIP row:\n{table}"));
    assert_eq!(vip_row.split_whitespace().nth(1), Some(want.as_str()), "{table}");
    assert_eq!(after.get(&format!("xdplb_maglev_table_info{{fingerprint=\"{want}\",vip=\"{VIP_LABEL}\"}}")), Some(&1.0), "{after:#?}");

    // stats --watch --json: one object per line, with rates, while more traffic flows.
    let mut watch = Command::new(workspace::binary("lb-user").unwrap())
        .args(["--netns", &lab.ns(Host::Lb), "stats", "--iface", &iface, "--watch", "--interval", "1", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    requests(&lab, REQUESTS);
    std::thread::sleep(Duration::from_millis(2500).saturating_sub(started.elapsed()));
    watch.kill().unwrap();
    let mut out = String::new();
    watch.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let _ = watch.wait();
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}"))).collect();
    assert!(!lines.is_empty(), "no NDJSON lines in 2.5 s: {out:?}");
    for line in &lines {
        let rates = &line["rates"];
        let interval = rates["interval_s"].as_f64().unwrap();
        assert!(interval > 0.5 && interval < 2.0, "{line}");
        for key in ["packets", "bytes", "new_flows"] {
            let v = rates["vips"][0][key].as_f64().unwrap_or_else(|| panic!("no rates.vips[0].{key}: {line}"));
            assert!(v >= 0.0, "{line}");
        }
        for class in ["tcp", "ipv4"] {
            assert!(rates["traffic"][class]["packets"].as_f64().unwrap() >= 0.0, "{line}");
        }
        assert_eq!(rates["vips"][0]["label"], VIP_LABEL);
        assert_eq!(line["totals"]["vips"][0]["label"], VIP_LABEL);
    }
    // Each rate is the step between consecutive totals over the interval.
    let flows = |l: &serde_json::Value| l["totals"]["vips"][0]["new_flows"].as_u64().unwrap() as f64;
    for pair in lines.windows(2) {
        let step = flows(&pair[1]) - flows(&pair[0]);
        let rate = pair[1]["rates"]["vips"][0]["new_flows"].as_f64().unwrap() * pair[1]["rates"]["interval_s"].as_f64().unwrap();
        assert!((step - rate).abs() < 1e-6, "step {step} vs rate×interval {rate}");
    }
    let last = lines.last().unwrap();
    assert!(flows(last) <= (2 * REQUESTS) as f64 && flows(last) >= REQUESTS as f64, "{last}");
    let seen: f64 = lines.iter().map(|l| l["rates"]["vips"][0]["new_flows"].as_f64().unwrap() * l["rates"]["interval_s"].as_f64().unwrap()).sum();
    assert!(seen > 0.0 || lines.len() < 2, "the second batch shows up in the rates: {out}");

    drop(exporter);
    assert!(lb.stop().unwrap().success());
}

#[test]
fn exporter_reports_a_failed_backend_down() {
    require_root!();
    let mut lab = Lab::up_unique("xm", 3).unwrap();
    lab.start_backends().unwrap();
    let config = config(&lab, web().health_check("{ type: tcp, interval: 200ms, timeout: 100ms, rise: 1, fall: 1 }")).write().unwrap();
    let iface = lab.lb_client_iface();
    let lb = LbUser::attach_config(&lab.ns(Host::Lb), &iface, config.path()).unwrap();
    let exporter = lb_user::exporter::spawn("127.0.0.1:0".parse().unwrap(), iface.clone()).unwrap();
    lab.stop_backend(3).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let up = |s: &metrics::Samples, b: &str| s.get(&backend_series("xdplb_backend_up", b)).copied();
    loop {
        let now = samples(&scrape(exporter.local_addr()));
        if up(&now, BACKENDS[2]) == Some(0.0) {
            assert_eq!((up(&now, BACKENDS[0]), up(&now, BACKENDS[1])), (Some(1.0), Some(1.0)), "{now:#?}");
            break;
        }
        assert!(Instant::now() < deadline, "backend 3 still up 10 s after it stopped: {now:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let json = lb.stats_json().unwrap();
    let down: Vec<&serde_json::Value> = json["backends"].as_array().unwrap().iter().filter(|b| b["up"] == false).collect();
    assert_eq!(down.len(), 1, "{json:#}");
    assert_eq!(down[0]["label"], BACKENDS[2]);
    assert_eq!(down[0]["vip"], VIP_LABEL);
    drop(exporter);
    assert!(lb.stop().unwrap().success());
}

#[test]
fn attach_serves_metrics_on_the_configured_address() {
    require_root!();
    let mut lab = Lab::up_unique("xt", 3).unwrap();
    lab.start_backends().unwrap();
    // The listener lives in the lb namespace, where lb-user runs.
    let listen: SocketAddr = "198.18.1.1:9189".parse().unwrap();
    let config = config(&lab, web()).metrics(listen).write().unwrap();
    let lb = LbUser::attach_config(&lab.ns(Host::Lb), &lab.lb_client_iface(), config.path()).unwrap();
    lb.wait_for_log("metrics on http://", 0, Duration::from_secs(10)).unwrap();
    requests(&lab, 6);
    let body = netns::run_in(&lab.ns(Host::Lb), move || Ok(scrape(listen))).unwrap();
    let s = samples(&body);
    assert_eq!(s.get(&format!("xdplb_vip_new_flows_total{{vip=\"{VIP_LABEL}\"}}")).copied(), Some(6.0), "{body}");
    assert!(body.contains("xdplb_backend_up{"), "{body}");
    assert!(lb.stop().unwrap().success());
}
