//! The two userspace balancers run one core: given the same backends and the
//! same flow, `lb-user proxy` and alb choose the same backend for every
//! algorithm both offer, and both accept and refuse the same duration and
//! network strings. No privileges needed.

use std::net::SocketAddr;

use lb_common::userspace::select::Flow;

const BACKENDS: [&str; 4] = ["198.18.1.11:8080", "198.18.1.12:8080", "198.18.1.13:8080", "198.18.1.14:8080"];

fn lb_user_config(algorithm: &str, extra: &str) -> String {
    let backends: Vec<String> = BACKENDS
        .iter()
        .map(|b| {
            let a: SocketAddr = b.parse().unwrap();
            format!("{{ address: \"{}\", port: {} }}", a.ip(), a.port())
        })
        .collect();
    format!(
        "interfaces: [{{ name: lo }}]\nvips:\n  - name: web\n    address: 198.18.100.1\n    port: 443\n    algorithm: {algorithm}\n    \
         backends: [{}]\n{extra}",
        backends.join(", ")
    )
}

fn alb_config(algorithm: &str, extra: &str) -> String {
    let urls: Vec<String> = BACKENDS.iter().map(|b| format!("\"http://{b}\"")).collect();
    format!("protocol: http\nport: 443\nalgorithm: {algorithm}\nbackend_servers: [{}]\n{extra}", urls.join(", "))
}

fn flows() -> Vec<Flow> {
    let mut v = Vec::new();
    for client in 0..40u8 {
        for port in [1024u16, 40000, 61000] {
            v.push(Flow::tcp(SocketAddr::from(([198, 18, 0, 2 + client], port)), "198.18.100.1:443".parse().unwrap()));
        }
    }
    v
}

#[test]
fn lb_user_proxy_and_alb_pick_the_same_backend_for_every_shared_algorithm() {
    // lb-user offers these three (the ones the kernel can run); alb offers
    // them and five more.
    for algorithm in ["maglev", "maglev_src", "round_robin"] {
        let lb = lb_user::config::Config::parse(&lb_user_config(algorithm, ""), "lb.yaml").unwrap();
        let proxy = lb_user::proxy::balancer::Balancer::new(&lb.vips[0], lb.maglev).unwrap();
        let alb_cfg = alb::config::Config::parse(&alb_config(algorithm, "")).unwrap();
        let pool = alb::pool::Pool::from_config(&alb_cfg.all_pools()[0], None).unwrap();
        let mut seen = std::collections::HashSet::new();
        for flow in flows() {
            let by_proxy = BACKENDS[proxy.pick(&flow).unwrap() as usize];
            let by_alb = pool.pick(&flow, &[]).unwrap().authority.clone();
            assert_eq!(by_proxy, by_alb, "{algorithm}: {flow:?}");
            seen.insert(by_alb);
        }
        assert_eq!(seen.len(), BACKENDS.len(), "{algorithm}: the flows reach every backend");
    }
}

#[test]
fn lb_user_and_alb_accept_and_refuse_the_same_duration_strings() {
    let lb_user = |d: &str| {
        let check = format!("    health_check: {{ type: tcp, interval: \"{d}\", timeout: 100ms }}\n");
        lb_user::config::Config::parse(&lb_user_config("maglev", &check), "lb.yaml").map(|c| c.vips[0].health_check.as_ref().unwrap().interval)
    };
    let alb = |d: &str| {
        alb::config::Config::parse(&alb_config("round_robin", &format!("health: {{ interval: \"{d}\", timeout: 100ms }}\n"))).map(|c| c.health.interval.0)
    };
    for good in ["2s", "500ms", "1m30s", "1h", "1m 5s", "90s"] {
        let (a, b) = (lb_user(good), alb(good));
        assert!(a.is_ok() && b.is_ok(), "{good}: lb-user {a:?}, alb {b:?}");
        assert_eq!(a.unwrap(), b.unwrap(), "{good}");
    }
    for bad in ["", "s", "2x", "1.5s", "-1s", "2 s", "1h30", "ten seconds"] {
        assert!(lb_user(bad).is_err() && alb(bad).is_err(), "{bad:?}: lb-user {:?}, alb {:?}", lb_user(bad), alb(bad));
    }
    // The one documented difference: alb's file also takes bare seconds.
    assert!(lb_user("5").is_err());
    assert_eq!(alb("5").unwrap(), std::time::Duration::from_secs(5));
}

#[test]
fn lb_user_and_alb_accept_and_refuse_the_same_networks() {
    let lb_user = |net: &str| {
        lb_user::config::Config::parse(&lb_user_config("maglev", &format!("allowlist: {{ cidrs: [\"{net}\"] }}\n")), "lb.yaml")
            .map(|c| c.allowlist.unwrap().rules.sources)
    };
    let alb = |net: &str| {
        alb::config::Config::parse(&alb_config("round_robin", &format!("waf: {{ allowedIPs: [\"{net}\"] }}\n")))
            .and_then(|c| alb::allowlist::from_waf(&c.waf))
            .map(|a| a.sources)
    };
    for good in ["198.18.0.0/24", "198.18.0.7", "fd00:198:18::/64", "fd00:198:18::7", "0.0.0.0/0", "::/0"] {
        let (a, b) = (lb_user(good), alb(good));
        assert!(a.is_ok() && b.is_ok(), "{good}: lb-user {a:?}, alb {:?}", b.as_ref().err().map(|e| e.to_string()));
        assert_eq!(a.unwrap(), b.unwrap(), "{good}");
    }
    for bad in ["198.18.0.1/24", "fd00:198:18::1/64", "198.18.0.0/33", "198.18.0", "example.com", ""] {
        let (a, b) = (lb_user(bad), alb(bad));
        assert!(a.is_err() && b.is_err(), "{bad:?}: lb-user {a:?}, alb {:?}", b.map(|_| ()));
    }
    let e = alb("198.18.0.1/24").unwrap_err().to_string();
    assert!(e.contains("198.18.0.0/24"), "the suggestion reaches alb's error: {e}");
}
