//! The lab's config builder (`xdplb_tests::lab::config`): its YAML is what
//! lb-user accepts and means what a hand-written file would. No root needed.

use lb_user::config::{Config, Forwarding, HealthCheckKind, Protocol};
use xdplb_tests::lab::config::{LbConfig, Vip};

fn parse(yaml: &str) -> Config {
    Config::parse(yaml, "test.yaml").unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

fn lab_config() -> LbConfig {
    LbConfig::with_interfaces("xt00-lc", "xt00-lb")
}

#[test]
fn a_minimal_config_reads_as_written() {
    let yaml = lab_config().maglev(251, None).vip(Vip::new("web", "198.18.100.1", 80).backends(1..=2, 8080, false)).yaml();
    assert_eq!(
        yaml,
        "interfaces:\n  - { name: xt00-lc, role: client }\n  - { name: xt00-lb, role: backend }\nmaglev: { size: 251 }\nvips:\n  - name: web\n    address: \"198.18.100.1\"\n    port: 80\n    backends:\n      - { address: \"198.18.1.11\", port: 8080 }\n      - { address: \"198.18.1.12\", port: 8080 }\n"
    );
    let config = parse(&yaml);
    assert_eq!(config.maglev.size, 251);
    assert_eq!(config.interfaces.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), ["xt00-lc", "xt00-lb"]);
}

#[test]
fn every_option_means_what_the_hand_written_file_means() {
    let built = lab_config()
        .maglev(251, Some(7))
        .allowlist(&["198.18.0.128/25", "fd00:198:18::/64"], &[80, 53])
        .metrics("198.18.1.1:9189".parse().unwrap())
        .extra("conntrack: { max_flows: 4096 }")
        .vip(
            Vip::new("web", "198.18.100.1", 80)
                .algorithm("round_robin")
                .backends(1..=3, 8080, false)
                .health_check("{ type: http, path: /health, expect_status: 200, interval: 400ms, timeout: 200ms, rise: 2, fall: 2 }"),
        )
        .vip(Vip::new("dns6", "fd00:198:18:100::2".parse::<std::net::IpAddr>().unwrap(), 53).protocol("udp").forwarding("dsr").backends([2], 53, true))
        .vip(Vip::new("one", "198.18.100.3", 443).backend("198.18.1.13:8443".parse().unwrap()).extra("algorithm: maglev_src"));
    let by_hand = "\
interfaces:
  - { name: xt00-lc, role: client }
  - { name: xt00-lb, role: backend }
maglev: { size: 251, seed: 7 }
allowlist:
  cidrs: [\"198.18.0.128/25\", \"fd00:198:18::/64\"]
  ports: [80, 53]
metrics: { listen: \"198.18.1.1:9189\" }
conntrack: { max_flows: 4096 }
vips:
  - name: web
    address: 198.18.100.1
    port: 80
    algorithm: round_robin
    backends:
      - { address: 198.18.1.11, port: 8080 }
      - { address: 198.18.1.12, port: 8080 }
      - { address: 198.18.1.13, port: 8080 }
    health_check: { type: http, path: /health, expect_status: 200, interval: 400ms, timeout: 200ms, rise: 2, fall: 2 }
  - name: dns6
    address: \"fd00:198:18:100::2\"
    port: 53
    protocol: udp
    forwarding: dsr
    backends:
      - { address: \"fd00:198:18:1::12\", port: 53 }
  - name: one
    address: 198.18.100.3
    port: 443
    algorithm: maglev_src
    backends:
      - { address: 198.18.1.13, port: 8443 }
";
    let config = parse(&built.yaml());
    assert_eq!(config, parse(by_hand), "{}", built.yaml());
    // A few of the values, to be sure the comparison compared something.
    assert_eq!((config.maglev.size, config.maglev.seed), (251, 7));
    assert_eq!(config.vips.len(), 3);
    assert_eq!((config.vips[1].protocol, config.vips[1].forwarding), (Protocol::Udp, Forwarding::Dsr));
    assert_eq!(config.vips[1].backends[0].socket_addr().to_string(), "[fd00:198:18:1::12]:53");
    assert!(matches!(&config.vips[0].health_check.as_ref().unwrap().kind, HealthCheckKind::Http { path, .. } if path == "/health"));
    assert_eq!(config.metrics.unwrap().listen.to_string(), "198.18.1.1:9189");
}

#[test]
fn the_written_file_is_replaced_atomically_and_removed_on_drop() {
    let one = lab_config().vip(Vip::new("web", "198.18.100.1", 80).backends([1], 8080, false));
    let two = lab_config().vip(Vip::new("web", "198.18.100.1", 80).backends([1, 2], 8080, false));
    let file = one.write().unwrap();
    let other = one.write().unwrap();
    assert_ne!(file.path(), other.path(), "every write gets its own file");
    let path = file.path().to_owned();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), one.yaml());
    file.replace(&two.yaml()).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), two.yaml());
    assert_eq!(parse(&std::fs::read_to_string(&path).unwrap()).vips[0].backends.len(), 2);
    drop(file);
    assert!(!path.exists(), "{} is still there", path.display());
    assert!(other.path().exists());
}
