//! The Grafana dashboards of `docs/grafana/` against a real Prometheus
//! (Debian's `prometheus`; `cargo xtask setup` installs it and keeps its
//! system service off): `promtool check config` passes on the checked-in
//! scrape config and on the lab's copy of it (1 s scrape interval, the
//! lab's targets), Prometheus scrapes lb-user's XDP exporter and both albs
//! while HTTPS and HTTP traffic runs through the two-tier chain, and every
//! PromQL expression of both dashboards returns data through
//! `/api/v1/query`, with the template variables substituted as
//! `xdplb_tests::grafana` documents (`$vip`: the lab's two VIPs, `$pool`:
//! alb's `default` pool, `$__rate_interval`: 5 s).
//!
//! Prometheus runs in the lb namespace: lb-user's metrics listen on the
//! lb's own backend-side address there, and the albs' admin listeners are
//! bound to their backend-segment addresses (`alb_admin_on_lab_address`),
//! which the lb reaches over the bridge. The client namespace would reach
//! neither (it only routes to the VIPs). Its own port and a temporary
//! storage directory keep it apart from any system Prometheus.

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use xdplb_tests::{
    grafana::{self, Query},
    http,
    lab::{
        chain::{self, Chain, ChainSpec},
        config::Check,
        Host,
    },
    load::{Bounds, Load},
    netns, require_root,
};

/// Prometheus' HTTP API inside the lb namespace.
const PROMETHEUS: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 19090);
const CHECK: Check = Check { interval: Duration::from_millis(500), timeout: Duration::from_millis(400), rise: 2, fall: 3 };

fn promtool_check(path: &Path) {
    let out = Command::new("promtool").arg("check").arg("config").arg(path).output().expect("promtool runs (cargo xtask setup installs prometheus)");
    assert!(out.status.success(), "promtool check config {}: {}{}", path.display(), String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

#[test]
fn every_dashboard_query_returns_data_from_a_real_prometheus_scraping_the_lab() {
    require_root!();
    promtool_check(&grafana::dir().join("prometheus.yml"));
    let queries: Vec<Query> = grafana::DASHBOARDS.iter().flat_map(|d| grafana::queries(d).unwrap()).collect();

    let mut spec = ChainSpec::new("gp", 2, 2, CHECK);
    spec.alb_admin_on_lab_address = true;
    let mut c = Chain::up(&spec).unwrap();
    let albs: Vec<String> = c.tier.alb_ids().map(|i| format!("\"{}\"", c.tier.admin_addr(i))).collect();
    let scrape = grafana::render_scrape_config(&[
        ("scrape_interval: 15s", "scrape_interval: 1s"),
        ("evaluation_interval: 15s", "evaluation_interval: 1s"),
        ("targets: [\"127.0.0.1:9189\"]", &format!("targets: [\"{}\"]", chain::METRICS)),
        ("targets: [\"127.0.0.1:9091\"]", &format!("targets: [{}]", albs.join(", "))),
    ])
    .unwrap();
    let dir = tempfile::Builder::new().prefix("xdplb-prometheus-").tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, &scrape).unwrap();
    promtool_check(&config);
    let args: Vec<String> = vec![
        format!("--config.file={}", config.display()),
        format!("--storage.tsdb.path={}", dir.path().join("data").display()),
        format!("--web.listen-address={PROMETHEUS}"),
        "--log.level=warn".into(),
    ];
    let log = dir.path().join("prometheus.log");
    c.lab.spawn_logged(Host::Lb, "prometheus", Path::new("/usr/bin/prometheus"), &args, &log).unwrap();
    c.lab
        .wait_until(Host::Lb, "Prometheus answering /-/ready", Duration::from_secs(30), || {
            http::get(PROMETHEUS, "/-/ready", Duration::from_secs(1)).map(|r| r.status == 200)
        })
        .unwrap();

    let bounds = Bounds { max_requests: 20_000, max_time: Duration::from_secs(60), pause: Duration::from_millis(5) };
    let started = Instant::now();
    let tls = Load::start(&c.lab.ns(Host::Client), 2, bounds, c.tls_request(Duration::from_secs(5)));
    let l4 = Load::start(&c.lab.ns(Host::Client), 1, bounds, Chain::l4_request(Duration::from_secs(5)));
    tls.wait_successes(started, 20, Duration::from_secs(20)).unwrap();

    let vips = grafana::regex_of(&[format!("{}/tcp", chain::TLS_VIP), format!("{}/tcp", chain::L4_VIP)]);
    let vars = [("vip", vips.as_str()), ("pool", "default")];
    let exprs: Vec<(String, &Query)> = queries.iter().map(|q| (grafana::substitute(&q.expr, &vars).unwrap(), q)).collect();
    let mut missing: BTreeSet<usize> = (0..exprs.len()).collect();
    let deadline = Instant::now() + Duration::from_secs(45);
    let lb = c.lab.ns(Host::Lb);
    while !missing.is_empty() && Instant::now() < deadline {
        // Plain HTTP to the TLS VIP: alb counts a failed handshake
        // (bad_message), so the TLS-failure panel has a series.
        let _ = netns::run_in(&c.lab.ns(Host::Client), || http::get(chain::TLS_VIP, "/", Duration::from_secs(1)));
        let asked: Vec<(usize, String)> = missing.iter().map(|&i| (i, exprs[i].0.clone())).collect();
        let answered =
            netns::run_in(&lb, move || asked.into_iter().map(|(i, e)| grafana::query_len(PROMETHEUS, &e).map(|n| (i, n))).collect::<anyhow::Result<Vec<_>>>())
                .unwrap();
        for (i, n) in answered {
            if n > 0 {
                missing.remove(&i);
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let took = started.elapsed();
    let tls_outcomes = tls.stop().unwrap();
    let l4_outcomes = l4.stop().unwrap();
    let ok = |o: &[xdplb_tests::load::Outcome]| o.iter().filter(|x| x.result.is_ok()).count();
    eprintln!("{} queries, all answered after {took:?}; {} HTTPS and {} HTTP requests succeeded", exprs.len(), ok(&tls_outcomes), ok(&l4_outcomes));
    let empty: Vec<String> = missing.iter().map(|&i| format!("{} / {}: {}", exprs[i].1.dashboard, exprs[i].1.panel, exprs[i].0)).collect();
    assert!(
        empty.is_empty(),
        "queries without data after 45 s:\n  {}\nPrometheus log:\n{}",
        empty.join("\n  "),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(ok(&l4_outcomes) > 0, "no request through the L4 VIP succeeded");
    c.stop().unwrap();
}
