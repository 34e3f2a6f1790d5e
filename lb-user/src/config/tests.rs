use super::*;
use lb_common::userspace::runtime::Scheduler;
use std::time::Duration;

const FILE: &str = "test.yaml";

/// A valid base config; tests append or replace pieces.
const BASE: &str = r#"
interfaces: [{ name: eth0 }]
vips:
  - name: web
    address: 198.18.100.1
    port: 80
    backends:
      - { address: 198.18.1.11, port: 8080 }
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, FILE)
}

/// Parses `text`, expects an error whose Display contains the file and every
/// one of `needles`, and returns the message.
#[track_caller]
fn err(text: &str, needles: &[&str]) -> String {
    let e = match parse(text) {
        Ok(c) => panic!("expected an error containing {needles:?}, got {c:#?}"),
        Err(e) => e.to_string(),
    };
    assert!(e.starts_with(&format!("{FILE}: ")), "no file name in: {e}");
    for n in needles {
        assert!(e.contains(n), "{n:?} not in: {e}");
    }
    e
}

/// BASE with one VIP whose body (after `- name: web`) is `vip`.
fn with_vip(vip: &str) -> String {
    format!("interfaces: [{{ name: eth0 }}]\nvips:\n  - name: web\n{vip}")
}

#[test]
fn example_file_parses() {
    let c = Config::parse(include_str!("../../../docs/xdplb.example.yaml"), "docs/xdplb.example.yaml").unwrap();
    assert_eq!(c.interfaces.len(), 2);
    assert_eq!(c.interfaces[1], Interface { name: "eth1".into(), role: InterfaceRole::Backend });
    assert_eq!(c.vips.len(), 4);
    let web = &c.vips[0];
    assert_eq!(web.address, "198.18.100.1".parse::<IpAddr>().unwrap());
    assert_eq!(web.total_weight(), 4);
    assert_eq!(web.health_check.as_ref().unwrap().kind, HealthCheckKind::Http { path: "/health".into(), expect_status: 200 });
    assert_eq!(c.vips[1].algorithm, Algorithm::MaglevSrc);
    assert!(c.vips[1].address.is_ipv6());
    assert_eq!(c.vips[1].health_check.as_ref().unwrap().timeout, Duration::from_millis(500));
    assert_eq!(c.vips[2].forwarding, Forwarding::Dsr);
    assert_eq!(c.vips[2].backends[0].mac, Some([2, 0, 0, 0, 0, 0x11]));
    assert_eq!(c.vips[2].backends[2].mac, None);
    assert_eq!(c.vips[3].protocol, Protocol::Udp);
    assert_eq!(c.vips[3].protocol.number(), 17);
    let allow = c.allowlist.as_ref().unwrap();
    assert_eq!(allow.rules.sources.len(), 2);
    assert_eq!(allow.rules.ports, AllowedPorts::Only(vec![80, 8080]));
    assert_eq!(c.metrics.unwrap().listen, "127.0.0.1:9100".parse().unwrap());
    assert_eq!(c.api, Some(ApiConfig { listen: limits::DEFAULT_API_LISTEN, allow_remote: false }));
    assert_eq!(c.backend_count(), 12);
}

#[test]
fn from_file_reads_and_names_missing_files() {
    let dir = std::env::temp_dir().join(format!("xdplb-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("lb.yaml");
    std::fs::write(&path, BASE).unwrap();
    assert_eq!(Config::from_file(&path).unwrap().vips[0].name, "web");
    let missing = dir.join("nope.yaml");
    let e = Config::from_file(&missing).unwrap_err().to_string();
    assert!(e.contains("nope.yaml") && e.contains("cannot read"), "{e}");
    std::fs::write(&path, "vips: [").unwrap();
    let e = Config::from_file(&path).unwrap_err().to_string();
    assert!(e.starts_with(&path.display().to_string()), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn yaml_errors_name_the_file_the_field_path_and_the_line() {
    let dir = std::env::temp_dir().join(format!("xdplb-config-yaml-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("lb.yaml");
    let file = path.display().to_string();
    let load = |text: &str| {
        std::fs::write(&path, text).unwrap();
        let e = Config::from_file(&path).unwrap_err().to_string();
        println!("{e}");
        e
    };
    // Block style, the bad key on line 8.
    let e = load("interfaces:\n  - name: eth0\nvips:\n  - name: web\n    address: 198.18.100.1\n    port: 80\n    backends:\n      - { address: 198.18.1.11, port: 8080, wieght: 2 }\n");
    assert!(e.starts_with(&format!("{file}: vips[0].backends[0]: unknown field `wieght`")), "{e}");
    assert!(e.ends_with(" at line 8 column 45"), "{e}");
    // A wrongly typed value on line 6.
    let e = load("interfaces:\n  - name: eth0\nvips:\n  - name: web\n    address: 198.18.100.1\n    port: http\n    backends: []\n");
    assert_eq!(e, format!("{file}: vips[0].port: invalid type: string \"http\", expected an integer at line 6 column 11"));
    // Not YAML at all: the line where the parser gave up.
    let e = load("interfaces: [{ name: eth0 }]\nvips: [\n");
    assert!(e.starts_with(&format!("{file}: ")) && e.contains("at line 3 column 1"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_example_config_loads_unchanged() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
    let mut loaded = 0;
    for entry in std::fs::read_dir(&docs).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            Config::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
            loaded += 1;
        }
    }
    assert!(loaded >= 1, "no example config in {}", docs.display());
}

#[test]
fn defaults_are_applied() {
    let c = parse(BASE).unwrap();
    assert_eq!(c.attach_mode, AttachMode::Auto);
    assert_eq!(c.interfaces[0].role, InterfaceRole::Client);
    assert_eq!(c.maglev, MaglevConfig { size: 65537, seed: 0 });
    assert_eq!(
        c.conntrack,
        ConntrackConfig { max_flows: 65536, tcp_timeout: Duration::from_secs(300), udp_timeout: Duration::from_secs(30), drain_timeout: Duration::ZERO }
    );
    assert_eq!(c.allowlist, None);
    assert_eq!(c.metrics, None);
    assert_eq!(
        c.proxy,
        ProxyConfig {
            max_conns_per_ip: 0,
            max_new_conns_per_minute: 0,
            drain_timeout: Duration::from_secs(10),
            copy: CopyMode::Buffered,
            runtime: RuntimeConfig::default()
        }
    );
    let v = &c.vips[0];
    assert_eq!((v.protocol, v.algorithm, v.forwarding), (Protocol::Tcp, Algorithm::Maglev, Forwarding::Nat));
    assert_eq!(v.backends[0].weight, 1);
    assert_eq!(v.health_check, None);

    // Partly given sections fill in the rest.
    let c = parse(&format!(
        "{BASE}maglev: {{ seed: 7 }}\nconntrack: {{ udp_timeout: 1m }}\nproxy: {{ max_conns_per_ip: 5 }}\nallowlist: {{ cidrs: [198.18.0.0/24] }}\n"
    ))
    .unwrap();
    assert_eq!(c.maglev, MaglevConfig { size: 65537, seed: 7 });
    assert_eq!(c.conntrack.udp_timeout, Duration::from_secs(60));
    assert_eq!(c.conntrack.tcp_timeout, Duration::from_secs(300));
    assert_eq!(c.proxy.max_conns_per_ip, 5);
    assert_eq!(c.proxy.drain_timeout, Duration::from_secs(10));
    let a = c.allowlist.unwrap();
    assert_eq!((a.rules.ports, a.scope), (AllowedPorts::Any, AllowlistScope::Vips));

    let hc =
        parse(&with_vip("    address: 198.18.100.1\n    port: 80\n    backends: [{ address: 198.18.1.11, port: 8080 }]\n    health_check: { type: http }\n"))
            .unwrap()
            .vips[0]
            .health_check
            .clone()
            .unwrap();
    assert_eq!(
        hc,
        HealthCheck {
            kind: HealthCheckKind::Http { path: "/".into(), expect_status: 200 },
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
        }
    );
}

#[test]
fn codes_match_lb_common() {
    use lb_common::lb::*;
    assert_eq!(Algorithm::Maglev.code(), ALG_MAGLEV);
    assert_eq!(Algorithm::MaglevSrc.code(), ALG_MAGLEV_SRC);
    assert_eq!(Algorithm::RoundRobin.code(), ALG_ROUND_ROBIN);
    assert_eq!(Forwarding::Nat.code(), MODE_NAT);
    assert_eq!(Forwarding::Dsr.code(), MODE_DSR);
    assert_eq!(AllowlistScope::All.code(), ALLOWLIST_SCOPE_ALL);
    assert_eq!(Protocol::Tcp.number(), 6);
}

#[test]
fn unknown_keys_are_rejected_by_name() {
    err(&format!("{BASE}colour: blue\n"), &["unknown field `colour`"]);
    err(&format!("{BASE}maglev: {{ sise: 65537 }}\n"), &["maglev", "unknown field `sise`", "expected `size` or `seed`"]);
    let e = err(
        &with_vip("    address: 198.18.100.1\n    port: 80\n    backends: [{ address: 198.18.1.11, port: 8080, wieght: 2 }]\n"),
        &["vips[0].backends[0]", "unknown field `wieght`"],
    );
    assert!(e.contains("line"), "{e}");
    err(
        &with_vip(
            "    address: 198.18.100.1\n    port: 80\n    backends: [{ address: 198.18.1.11, port: 8080 }]\n    health_check: { type: tcp, intervall: 2s }\n",
        ),
        &["vips[0].health_check", "unknown field `intervall`"],
    );
}

#[test]
fn bad_enum_values_name_the_field_and_the_choices() {
    err(&format!("{BASE}attach_mode: fast\n"), &["attach_mode", "fast", "auto", "native", "skb"]);
    err("interfaces: [{ name: eth0, role: server }]\nvips: []\n", &["interfaces[0].role", "server", "client", "backend"]);
    err(
        &with_vip("    address: 198.18.100.1\n    port: 80\n    protocol: sctp\n    backends: [{ address: 198.18.1.11, port: 8080 }]\n"),
        &["vips[0].protocol", "sctp", "tcp", "udp"],
    );
    err(
        &with_vip("    address: 198.18.100.1\n    port: 80\n    algorithm: random\n    backends: [{ address: 198.18.1.11, port: 8080 }]\n"),
        &["vips[0].algorithm", "random", "maglev_src", "round_robin"],
    );
    err(
        &with_vip("    address: 198.18.100.1\n    port: 80\n    forwarding: tunnel\n    backends: [{ address: 198.18.1.11, port: 8080 }]\n"),
        &["vips[0].forwarding", "tunnel", "nat", "dsr"],
    );
    err(&format!("{BASE}allowlist: {{ cidrs: [198.18.0.0/24], scope: some }}\n"), &["allowlist.scope", "some", "vips", "all"]);
}

#[test]
fn empty_or_broken_files() {
    err("", &["interfaces: needs at least one interface", "vips: needs at least one VIP"]);
    err("# only a comment\n", &["interfaces"]);
    err("vips: [\n", &["line"]);
    let e = err("- a\n- b\n", &["invalid type: sequence, expected a mapping of keys"]);
    assert!(!e.contains("Raw"), "{e}");
    err(
        &with_vip("    address: 198.18.100.1\n    port: 80.5\n    backends: [{ address: 198.18.1.11, port: 8080 }]\n"),
        &["vips[0].port", "80.5", "expected an integer"],
    );
    err(&with_vip("    address: 198.18.100.1\n    port: 80\n    backends: 198.18.1.11\n"), &["vips[0].backends", "expected a sequence"]);
}

#[test]
fn needs_an_interface_and_a_vip() {
    err("interfaces: []\nvips: []\n", &["interfaces: needs at least one interface", "vips: needs at least one VIP"]);
    err(&BASE.replace("interfaces: [{ name: eth0 }]", "interfaces: [{ name: eth0, role: backend }]"), &["interfaces", "role client"]);
}

#[test]
fn interface_names() {
    err(&BASE.replace("name: eth0", "name: a-very-long-interface-name"), &["interfaces[0].name", "\"a-very-long-interface-name\"", "1..=15"]);
    err(&BASE.replace("name: eth0", "name: \"eth/0\""), &["interfaces[0].name", "\"eth/0\""]);
    err(&BASE.replace("[{ name: eth0 }]", "[{ name: eth0 }, { name: eth0, role: backend }]"), &["interfaces[1].name", "\"eth0\"", "interfaces[0]"]);
    err(&BASE.replace("[{ name: eth0 }]", "[{ role: client }]"), &["interfaces[0].name", "missing"]);
}

#[test]
fn maglev_size_must_be_a_prime_in_range() {
    err(&format!("{BASE}maglev: {{ size: 65536 }}\n"), &["maglev.size", "65536", "not a prime", "251..=1000003"]);
    err(&format!("{BASE}maglev: {{ size: 241 }}\n"), &["maglev.size", "241", "251..=1000003"]);
    err(&format!("{BASE}maglev: {{ size: 1000033 }}\n"), &["maglev.size", "1000033", "251..=1000003"]);
    err(&format!("{BASE}maglev: {{ seed: -1 }}\n"), &["maglev.seed", "-1", "0..=4294967295"]);
    err(&format!("{BASE}maglev: {{ seed: 4294967296 }}\n"), &["maglev.seed", "4294967296"]);
    assert_eq!(parse(&format!("{BASE}maglev: {{ size: 251, seed: 4294967295 }}\n")).unwrap().maglev, MaglevConfig { size: 251, seed: u32::MAX });
}

#[test]
fn maglev_size_must_hold_each_vips_total_weight() {
    let backends: String = (1..=3).map(|i| format!("      - {{ address: 198.18.1.{i}, port: 8080, weight: 100 }}\n")).collect();
    let text = format!("maglev: {{ size: 251 }}\n{}", with_vip(&format!("    address: 198.18.100.1\n    port: 80\n    backends:\n{backends}")));
    err(&text, &["maglev.size", "251", "total backend weight 300", "vips[0] (web)"]);
    assert!(parse(&text.replace("size: 251", "size: 307")).is_ok());
}

#[test]
fn conntrack_ranges_and_timeouts() {
    err(&format!("{BASE}conntrack: {{ max_flows: 1000 }}\n"), &["conntrack.max_flows", "1000", "1024..=16777216"]);
    err(&format!("{BASE}conntrack: {{ max_flows: 16777217 }}\n"), &["conntrack.max_flows", "16777217"]);
    err(&format!("{BASE}conntrack: {{ tcp_timeout: 5x }}\n"), &["conntrack.tcp_timeout", "\"5x\"", "unit"]);
    err(&format!("{BASE}conntrack: {{ tcp_timeout: 300 }}\n"), &["conntrack.tcp_timeout", "300", "unit"]);
    err(&format!("{BASE}conntrack: {{ udp_timeout: 1500ms }}\n"), &["conntrack.udp_timeout", "\"1500ms\"", "whole number of seconds"]);
    err(&format!("{BASE}conntrack: {{ udp_timeout: 0s }}\n"), &["conntrack.udp_timeout", "\"0s\"", "1s..=604800s"]);
}

#[test]
fn allowlist_cidrs() {
    let e = err(&format!("{BASE}allowlist: {{ cidrs: [\"198.18.0.1/24\"] }}\n"), &["allowlist.cidrs[0]", "\"198.18.0.1/24\"", "host bits", "198.18.0.0/24"]);
    assert!(!e.contains("problems"), "{e}");
    err(
        &format!("{BASE}allowlist: {{ cidrs: [\"198.18.0.0/24\", \"fd00:198:18::1/64\"] }}\n"),
        &["allowlist.cidrs[1]", "\"fd00:198:18::1/64\"", "fd00:198:18::/64"],
    );
    err(&format!("{BASE}allowlist: {{ cidrs: [\"198.18.0\"] }}\n"), &["allowlist.cidrs[0]", "\"198.18.0\"", "not an address or network"]);
    err(&format!("{BASE}allowlist: {{ cidrs: [] }}\n"), &["allowlist.cidrs", "is empty", "0.0.0.0/0 and ::/0"]);
    err(&format!("{BASE}allowlist: {{ ports: [80] }}\n"), &["allowlist.cidrs", "at least one"]);
    let c = parse(&format!("{BASE}allowlist: {{ cidrs: [\"0.0.0.0/0\", \"::/0\"], scope: all }}\n")).unwrap();
    assert_eq!(c.allowlist.unwrap().scope, AllowlistScope::All);
    // A bare address means that one host, as in alb.
    let c = parse(&format!("{BASE}allowlist: {{ cidrs: [198.18.0.7, \"fd00:198:18::7\"] }}\n")).unwrap();
    let nets: Vec<String> = c.allowlist.unwrap().rules.sources.iter().map(|n| n.to_string()).collect();
    assert_eq!(nets, ["198.18.0.7/32", "fd00:198:18::7/128"]);
}

#[test]
fn allowlist_ports() {
    let ok = |ports: &str| parse(&format!("{BASE}allowlist: {{ cidrs: [198.18.0.0/24], ports: {ports} }}\n")).map(|c| c.allowlist.unwrap().rules.ports);
    assert_eq!(ok("[\"*\"]").unwrap(), AllowedPorts::Any);
    assert_eq!(ok("[443, 80, 443]").unwrap(), AllowedPorts::Only(vec![80, 443]));
    let bad = |ports: &str, needles: &[&str]| {
        err(&format!("{BASE}allowlist: {{ cidrs: [198.18.0.0/24], ports: {ports} }}\n"), needles);
    };
    assert_eq!(ok("[\"*\", 80]").unwrap(), AllowedPorts::Any, "\"*\" anywhere means any port");
    bad("[\"*\", 0]", &["allowlist.ports[1]", "0 is out of range"]);
    bad("[80, 0]", &["allowlist.ports[1]", "0 is out of range", "1..=65535"]);
    bad("[65536]", &["allowlist.ports[0]", "65536"]);
    bad("[http]", &["allowlist.ports[0]", "\"http\" is not a port"]);
    bad("[]", &["allowlist.ports", "[\"*\"]"]);
}

#[test]
fn vip_names() {
    let vip = |name: &str| {
        format!("interfaces: [{{ name: eth0 }}]\nvips:\n  - name: {name}\n    address: 198.18.100.1\n    port: 80\n    backends: [{{ address: 198.18.1.11, port: 8080 }}]\n")
    };
    err(&vip("Web"), &["vips[0].name", "\"Web\"", "a-z"]);
    err(&vip("\"\""), &["vips[0].name", "\"\""]);
    err(&vip(&"a".repeat(33)), &["vips[0].name", &"a".repeat(33), "1..=32"]);
    assert!(parse(&vip(&"a_b-9".repeat(6))).is_ok());
    let dup = format!("{BASE}  - name: web\n    address: 198.18.100.2\n    port: 80\n    backends: [{{ address: 198.18.1.11, port: 8080 }}]\n");
    err(&dup, &["vips[1].name", "\"web\"", "vips[0]", "unique"]);
}

#[test]
fn vip_address_port_protocol_unique() {
    let second =
        |extra: &str| format!("{BASE}  - name: web2\n    address: 198.18.100.1\n    port: 80\n{extra}    backends: [{{ address: 198.18.1.12, port: 8080 }}]\n");
    err(&second(""), &["vips[1]", "198.18.100.1:80/tcp", "vips[0] (web)", "unique"]);
    assert!(parse(&second("    protocol: udp\n")).is_ok());
}

#[test]
fn vip_fields() {
    let v = |addr: &str, port: &str| with_vip(&format!("    address: {addr}\n    port: {port}\n    backends: [{{ address: 198.18.1.11, port: 8080 }}]\n"));
    err(&v("198.18.100.300", "80"), &["vips[0].address", "\"198.18.100.300\"", "not an IP address"]);
    err(&v("0.0.0.0", "80"), &["vips[0].address", "\"0.0.0.0\"", "unicast"]);
    err(&v("198.18.100.1", "0"), &["vips[0].port", "0 is out of range", "1..=65535"]);
    err(&v("198.18.100.1", "70000"), &["vips[0].port", "70000"]);
    err(&with_vip("    address: 198.18.100.1\n    backends: [{ address: 198.18.1.11, port: 8080 }]\n"), &["vips[0].port", "missing"]);
}

#[test]
fn vip_needs_a_backend() {
    err(&with_vip("    address: 198.18.100.1\n    port: 80\n    backends: []\n"), &["vips[0].backends", "at least one backend"]);
    err(&with_vip("    address: 198.18.100.1\n    port: 80\n"), &["vips[0].backends", "at least one backend"]);
}

#[test]
fn backend_family_must_match_the_vip() {
    let e = err(
        &with_vip("    address: 198.18.100.1\n    port: 80\n    backends:\n      - { address: 198.18.1.11, port: 8080 }\n      - { address: \"fd00:198:18:1::11\", port: 8080 }\n"),
        &["vips[0].backends[1].address", "fd00:198:18:1::11 is IPv6", "198.18.100.1 is IPv4"],
    );
    assert!(!e.contains("backends[0]"), "{e}");
    err(
        &with_vip("    address: fd00:198:18:100::1\n    port: 80\n    backends: [{ address: 198.18.1.11, port: 8080 }]\n"),
        &["vips[0].backends[0].address", "198.18.1.11 is IPv4", "fd00:198:18:100::1 is IPv6"],
    );
}

#[test]
fn duplicate_backends_in_a_vip() {
    err(
        &with_vip("    address: 198.18.100.1\n    port: 80\n    backends:\n      - { address: 198.18.1.11, port: 8080 }\n      - { address: 198.18.1.12, port: 8080 }\n      - { address: 198.18.1.11, port: 8080, weight: 3 }\n"),
        &["vips[0].backends[2]", "198.18.1.11:8080", "backends[0]"],
    );
    // Same address on another port is a different backend.
    assert!(parse(&with_vip(
        "    address: 198.18.100.1\n    port: 80\n    backends:\n      - { address: 198.18.1.11, port: 8080 }\n      - { address: 198.18.1.11, port: 8081 }\n"
    ))
    .is_ok());
}

#[test]
fn backend_fields() {
    let b = |backend: &str| with_vip(&format!("    address: 198.18.100.1\n    port: 80\n    backends:\n      - {backend}\n"));
    err(&b("{ address: 198.18.1.11, port: 8080, weight: 0 }"), &["vips[0].backends[0].weight", "0 is out of range", "1..=100"]);
    err(&b("{ address: 198.18.1.11, port: 8080, weight: 101 }"), &["vips[0].backends[0].weight", "101", "1..=100"]);
    err(&b("{ address: 198.18.1.11, port: 8080, weight: -2 }"), &["vips[0].backends[0].weight", "-2"]);
    err(&b("{ address: 198.18.1.11, port: 0 }"), &["vips[0].backends[0].port", "0 is out of range"]);
    err(&b("{ address: backend1, port: 8080 }"), &["vips[0].backends[0].address", "\"backend1\""]);
    err(&b("{ address: 198.18.1.11, port: 8080, mac: \"02:00:00:00:11\" }"), &["vips[0].backends[0].mac", "\"02:00:00:00:11\"", "six hex bytes"]);
    err(&b("{ address: 198.18.1.11, port: 8080, mac: \"ff:ff:ff:ff:ff:ff\" }"), &["vips[0].backends[0].mac", "\"ff:ff:ff:ff:ff:ff\"", "unicast"]);
    err(&b("{ address: 198.18.1.11, port: 8080, mac: \"02:AB:00:00:00:11\" }"), &["vips[0].backends[0].mac", "only with forwarding: dsr"]);
    let dsr = |backend: &str| with_vip(&format!("    address: 198.18.100.1\n    port: 8080\n    forwarding: dsr\n    backends:\n      - {backend}\n"));
    let c = parse(&dsr("{ address: 198.18.1.11, port: 8080, weight: 100, mac: \"02:AB:00:00:00:11\" }")).unwrap();
    assert_eq!((c.vips[0].backends[0].weight, c.vips[0].backends[0].mac), (100, Some([2, 0xab, 0, 0, 0, 0x11])));
    assert_eq!(c.vips[0].backends[0].key(), "198.18.1.11:8080");
}

#[test]
fn round_robin_rejects_weights() {
    err(
        &with_vip("    address: 198.18.100.1\n    port: 80\n    algorithm: round_robin\n    backends: [{ address: 198.18.1.11, port: 8080, weight: 3 }]\n"),
        &["vips[0].backends[0].weight", "3", "round_robin"],
    );
}

#[test]
fn dsr_keeps_the_port() {
    err(
        &with_vip("    address: 198.18.100.1\n    port: 80\n    forwarding: dsr\n    backends: [{ address: 198.18.1.11, port: 8080 }]\n"),
        &["vips[0].backends[0].port", "8080", "VIP's port 80", "dsr", "cannot rewrite ports"],
    );
    assert!(parse(&with_vip("    address: 198.18.100.1\n    port: 80\n    forwarding: dsr\n    backends: [{ address: 198.18.1.11, port: 80 }]\n")).is_ok());
}

#[test]
fn too_many_vips_and_backends() {
    let mut text = String::from("interfaces: [{ name: eth0 }]\nvips:\n");
    for i in 0..65 {
        text.push_str(&format!("  - {{ name: v{i}, address: 198.18.100.{}, port: 80, backends: [{{ address: 198.18.1.11, port: 8080 }}] }}\n", i + 1));
    }
    err(&text, &["vips", "65 VIPs", "at most 64"]);

    let backends = |n: usize, port: usize| -> String {
        (0..n).map(|j| format!("{{ address: 198.18.{}.{}, port: {port} }}", 2 + j / 250, 1 + j % 250)).collect::<Vec<_>>().join(", ")
    };
    err(
        &with_vip(&format!("    address: 198.18.100.1\n    port: 80\n    backends: [{}]\n", backends(257, 8080))),
        &["vips[0].backends", "257 backends", "at most 256 per VIP"],
    );
    let mut text = String::from("interfaces: [{ name: eth0 }]\nvips:\n");
    for i in 0..5 {
        text.push_str(&format!("  - {{ name: v{i}, address: 198.18.100.1, port: {}, backends: [{}] }}\n", 80 + i, backends(205, 8080)));
    }
    err(&text, &["vips", "1025 backends over all VIPs", "at most 1024"]);
}

#[test]
fn health_checks() {
    let hc = |body: &str| {
        with_vip(&format!("    address: 198.18.100.1\n    port: 80\n    backends: [{{ address: 198.18.1.11, port: 8080 }}]\n    health_check: {{ {body} }}\n"))
    };
    err(&hc("type: http, path: health"), &["vips[0].health_check.path", "\"health\"", "start with '/'"]);
    err(&hc("type: http, expect_status: 600"), &["vips[0].health_check.expect_status", "600", "100..=599"]);
    err(&hc("type: tcp, path: /health"), &["vips[0].health_check.path", "type: http"]);
    err(&hc("type: tcp, expect_status: 200"), &["vips[0].health_check.expect_status", "type: http"]);
    err(&hc("interval: 1s, timeout: 1s"), &["vips[0].health_check.timeout", "\"1s\"", "less than the interval (1s)"]);
    err(&hc("interval: 2s, timeout: 3s"), &["vips[0].health_check.timeout", "\"3s\"", "less than the interval (2s)"]);
    err(&hc("interval: 500ms"), &["vips[0].health_check.timeout", "\"1s\"", "less than the interval (500ms)"]);
    err(&hc("interval: 10ms, timeout: 5ms"), &["vips[0].health_check.interval", "\"10ms\"", "100ms..=3600s"]);
    err(&hc("timeout: 0s"), &["vips[0].health_check.timeout", "\"0s\"", "greater than zero"]);
    err(&hc("rise: 0"), &["vips[0].health_check.rise", "0 is out of range", "1..=100"]);
    err(&hc("fall: 1000"), &["vips[0].health_check.fall", "1000"]);
    let c = parse(&hc("type: tcp, interval: 1m, timeout: 5s, rise: 1, fall: 10")).unwrap();
    let h = c.vips[0].health_check.as_ref().unwrap();
    assert_eq!((h.kind.clone(), h.interval, h.timeout, h.rise, h.fall), (HealthCheckKind::Tcp, Duration::from_secs(60), Duration::from_secs(5), 1, 10));
}

#[test]
fn metrics_and_proxy() {
    err(&format!("{BASE}metrics: {{ listen: \"localhost:9100\" }}\n"), &["metrics.listen", "\"localhost:9100\"", "address:port"]);
    err(&format!("{BASE}metrics: {{}}\n"), &["metrics.listen", "missing"]);
    assert_eq!(parse(&format!("{BASE}metrics: {{ listen: \"[::1]:9100\" }}\n")).unwrap().metrics.unwrap().listen, "[::1]:9100".parse().unwrap());
    err(&format!("{BASE}proxy: {{ max_conns_per_ip: -1 }}\n"), &["proxy.max_conns_per_ip", "-1"]);
    err(&format!("{BASE}proxy: {{ max_new_conns_per_minute: 5000000000 }}\n"), &["proxy.max_new_conns_per_minute", "5000000000"]);
    err(&format!("{BASE}proxy: {{ drain_timeout: 2h }}\n"), &["proxy.drain_timeout", "\"2h\"", "0s..=3600s"]);
    assert_eq!(parse(&format!("{BASE}proxy: {{ drain_timeout: 0s }}\n")).unwrap().proxy.drain_timeout, Duration::ZERO);
    assert_eq!(parse(&format!("{BASE}proxy: {{ copy: splice }}\n")).unwrap().proxy.copy, CopyMode::Splice);
    assert_eq!(parse(&format!("{BASE}proxy: {{ copy: buffered }}\n")).unwrap().proxy.copy, CopyMode::Buffered);
    err(&format!("{BASE}proxy: {{ copy: zerocopy }}\n"), &["proxy", "zerocopy", "splice", "buffered"]);
    let rt = parse(&format!("{BASE}proxy: {{ runtime: {{ workers: 3, scheduler: per_core }} }}\n")).unwrap().proxy.runtime;
    assert_eq!((rt.workers, rt.scheduler), (3, Scheduler::PerCore));
    assert_eq!(parse(&format!("{BASE}proxy: {{ runtime: {{ workers: 2 }} }}\n")).unwrap().proxy.runtime.scheduler, Scheduler::Shared);
    err(&format!("{BASE}proxy: {{ runtime: {{ workers: 0 }} }}\n"), &["proxy", "workers: 0"]);
    err(&format!("{BASE}proxy: {{ runtime: {{ scheduler: fast }} }}\n"), &["proxy", "fast", "per_core", "shared"]);
    err(&format!("{BASE}proxy: {{ runtime: {{ threads: 2 }} }}\n"), &["proxy", "threads"]);
}

#[test]
fn several_problems_are_all_reported() {
    let text =
        with_vip("    address: 198.18.100.1\n    port: 0\n    backends: [{ address: 198.18.1.11, port: 8080, weight: 0 }]\n") + "maglev: { size: 1000 }\n";
    let e = parse(&text).unwrap_err();
    let paths: Vec<&str> = e.field_errors().iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["maglev.size", "vips[0].port", "vips[0].backends[0].weight"]);
    let msg = e.to_string();
    assert!(msg.starts_with("test.yaml: 3 problems:\n  maglev.size: 1000"), "{msg}");
}

/// Found by the lb-user-config fuzz target: a file that is a list, a plain
/// word or an unknown alias at its very start got an error without a
/// position (the YAML parser leaves out "line 1 column 1").
#[test]
fn errors_at_the_start_of_the_file_say_where() {
    for (text, what) in [("- 1\n", "invalid type: sequence, expected a mapping of keys"), ("x", "invalid type: string \"x\""), ("*x\n", "unknown anchor")] {
        let e = err(text, &[what, "at line 1 column 1"]);
        assert!(!e.contains("struct") && !e.contains("Raw"), "{e}");
    }
}
