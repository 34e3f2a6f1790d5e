//! Unit tests of the stats module; `sample` also serves the exporter's tests.

use std::time::{Duration, SystemTime};

use super::*;

fn key(addr: &str, port: u16, protocol: u8) -> VipKey {
    let (addr, family) = lb_common::userspace::select::addr16(addr.parse().unwrap());
    VipKey { addr, port, protocol, family }
}

fn backend(addr: &str, port: u16, flags: u8, vip_id: u16) -> BackendInfo {
    let (addr, family) = lb_common::userspace::select::addr16(addr.parse().unwrap());
    BackendInfo { addr, port, family, flags, mac: [0; 6], vip_id }
}

/// A report as `read_pinned` builds it: VIP 0 (v4 TCP) with backends 0
/// (up) and 1 (down), VIP 1 (v6 UDP) with backend 2 (up), and backend 3
/// removed but with traffic.
pub(crate) fn sample() -> Report {
    let mut r = Report::default();
    r.traffic.0[TrafficClass::Tcp.index() as usize] = PacketCounter { packets: 100, bytes: 6400 };
    r.actions = Stat::ALL.iter().map(|s| (*s, PacketCounter::default())).collect();
    r.actions[Stat::ForwardNat.index() as usize].1 = PacketCounter { packets: 60, bytes: 4000 };
    r.actions[Stat::DropNoBackend.index() as usize].1 = PacketCounter { packets: 3, bytes: 180 };
    r.vip_labels.insert(0, vip_label(&key("198.18.100.1", 80, 6)));
    r.vip_labels.insert(1, vip_label(&key("fd00::1", 53, 17)));
    for (id, b) in [
        (0, backend("198.18.1.11", 8080, BACKEND_ACTIVE | BACKEND_HEALTHY, 0)),
        (1, backend("198.18.1.12", 8080, BACKEND_ACTIVE, 0)),
        (2, backend("fd00::11", 53, BACKEND_ACTIVE | BACKEND_HEALTHY, 1)),
        (3, backend("198.18.1.13", 8080, 0, 0)),
    ] {
        r.backend_meta.insert(id, backend_meta(&b));
    }
    r.maglev.insert(0, lb_common::userspace::select::TableFingerprint(0x39b5_be73));
    r.vips = vec![(0, FlowCounter { packets: 60, bytes: 4000, new_flows: 7 }), (1, FlowCounter::default())];
    r.backends = vec![
        (0, FlowCounter { packets: 40, bytes: 3000, new_flows: 5 }),
        (1, FlowCounter::default()),
        (2, FlowCounter::default()),
        (3, FlowCounter { packets: 20, bytes: 1000, new_flows: 2 }),
    ];
    r
}

#[test]
fn intervals_are_positive_seconds() {
    assert_eq!(parse_interval("1"), Ok(Duration::from_secs(1)));
    assert_eq!(parse_interval("0.5"), Ok(Duration::from_millis(500)));
    assert!(parse_interval("0").is_err());
    assert!(parse_interval("-1").is_err());
    assert!(parse_interval("soon").is_err());
    assert_eq!(parse_interval("250ms"), Ok(Duration::from_millis(250)));
    assert_eq!(parse_interval("1m30s"), Ok(Duration::from_secs(90)));
    assert!(parse_interval("50ms").is_err(), "below 100ms");
}

#[test]
fn labels_name_address_port_and_protocol() {
    assert_eq!(vip_label(&key("198.18.100.1", 80, 6)), "198.18.100.1:80/tcp");
    assert_eq!(vip_label(&key("fd00::1", 80, 17)), "[fd00::1]:80/udp");
    assert_eq!(vip_label(&key("10.0.0.1", 9, 132)), "10.0.0.1:9/132");
    assert_eq!(backend_label(&backend("198.18.1.11", 8080, 1, 0)), "198.18.1.11:8080");
    assert_eq!(backend_label(&backend("fd00:198:18:1::11", 8080, 1, 0)), "[fd00:198:18:1::11]:8080");
}

#[test]
fn backend_health_comes_from_the_flags() {
    let r = sample();
    let health: Vec<_> = r.backend_meta.values().map(|m| m.health()).collect();
    assert_eq!(health, ["up", "down", "up", "removed"]);
    assert_eq!(r.backend_vip_label(2), Some("[fd00::1]:53/udp"));
}

#[test]
fn rates_are_deltas_over_elapsed_time() {
    assert_eq!(per_second(150, 50, 2.0), 50.0);
    assert_eq!(per_second(50, 50, 1.0), 0.0);
    assert_eq!(per_second(10, 50, 2.0), 5.0, "a reset counts from zero");
    assert_eq!(per_second(10, 0, 0.0), 0.0);
    let before = sample();
    let mut now = sample();
    now.traffic.0[TrafficClass::Tcp.index() as usize] = PacketCounter { packets: 300, bytes: 12800 };
    now.vips[0].1 = FlowCounter { packets: 160, bytes: 5000, new_flows: 17 };
    now.backends.push((4, FlowCounter { packets: 8, bytes: 800, new_flows: 4 }));
    let rates = Rates::between(&before, &now, Duration::from_millis(500));
    assert_eq!(rates.seconds, 0.5);
    let tcp = rates.traffic.iter().find(|(c, _)| *c == TrafficClass::Tcp).unwrap().1;
    assert_eq!((tcp.packets, tcp.bytes), (400.0, 12800.0));
    assert_eq!(rates.vips[0].1, Rate { packets: 200.0, bytes: 2000.0, new_flows: 20.0 });
    assert_eq!(rates.vips[1].1, Rate::default());
    assert_eq!(rates.backends.last().unwrap(), &(4, Rate { packets: 16.0, bytes: 1600.0, new_flows: 8.0 }), "new rows count from zero");
    let json = watch_json_line("lc", &now, &rates, SystemTime::UNIX_EPOCH + Duration::from_secs(5));
    assert_eq!(json["timestamp"], 5.0);
    assert_eq!(json["totals"]["traffic"]["tcp"]["packets"], 300);
    assert_eq!(json["rates"]["traffic"]["tcp"]["packets"], 400.0);
    assert_eq!(json["rates"]["vips"][0]["label"], "198.18.100.1:80/tcp");
    assert_eq!(json["rates"]["vips"][0]["new_flows"], 20.0);
    assert_eq!(json["rates"]["interval_s"], 0.5);
}

#[test]
fn json_keeps_the_old_keys_and_adds_labels_and_health() {
    let json = sample().to_json();
    assert_eq!(json["traffic"]["tcp"]["packets"], 100);
    assert_eq!(json["actions"]["forward_nat"]["bytes"], 4000);
    assert_eq!(
        json["vips"][0],
        serde_json::json!({"id": 0, "label": "198.18.100.1:80/tcp", "maglev_fingerprint": "39b5be73", "packets": 60, "bytes": 4000, "new_flows": 7})
    );
    assert_eq!(json["vips"][1]["maglev_fingerprint"], serde_json::Value::Null, "not a Maglev VIP");
    assert_eq!(
        json["backends"][1],
        serde_json::json!({"id": 1, "label": "198.18.1.12:8080", "vip_id": 0, "vip": "198.18.100.1:80/tcp", "up": false, "packets": 0, "bytes": 0, "new_flows": 0})
    );
    assert_eq!(json["backends"][0]["up"], true);
    assert_eq!(json["backends"][3]["up"], serde_json::Value::Null, "removed");
}

#[test]
fn tables_show_labels_health_and_rates() {
    let r = sample();
    let table = r.to_table();
    let line = |t: &str, needle: &str| t.lines().find(|l| l.starts_with(needle)).unwrap_or_else(|| panic!("no {needle} in\n{t}")).to_owned();
    let be = line(&table, "198.18.1.12:8080");
    assert!(be.contains("198.18.100.1:80/tcp") && be.contains(" down "), "{be}");
    assert!(line(&table, "198.18.1.13:8080").contains("removed"));
    assert!(!table.contains("/s"), "no rate columns without --watch:\n{table}");
    assert!(line(&table, "198.18.100.1:80/tcp").contains(" 39b5be73 "), "{table}");
    assert!(line(&table, "[fd00::1]:53/udp").split_whitespace().nth(1) == Some("-"), "{table}");
    let first = watch_table("lc", Duration::from_secs(1), &r, None);
    assert!(first.starts_with("xdplb on lc: 2 VIPs, 2/3 backends up"), "{first}");
    assert!(line(&first, "198.18.100.1:80/tcp").trim_end().ends_with('-'), "{first}");
    let mut now = sample();
    now.vips[0].1.new_flows += 3;
    let rates = Rates::between(&r, &now, Duration::from_secs(1));
    let frame = watch_table("lc", Duration::from_secs(1), &now, Some(&rates));
    assert!(frame.contains("flows/s"), "{frame}");
    assert!(line(&frame, "198.18.100.1:80/tcp").trim_end().ends_with("3.0"), "{frame}");
}

#[test]
fn rate_rows_have_the_labels_of_total_rows_without_health() {
    let before = sample();
    let mut now = sample();
    now.backends[1].1 = FlowCounter { packets: 4, bytes: 400, new_flows: 2 };
    let json = Rates::between(&before, &now, Duration::from_secs(2)).to_json(&now);
    assert_eq!(json["vips"][1], serde_json::json!({"id": 1, "label": "[fd00::1]:53/udp", "packets": 0.0, "bytes": 0.0, "new_flows": 0.0}));
    assert_eq!(
        json["backends"][1],
        serde_json::json!({"id": 1, "label": "198.18.1.12:8080", "vip": "198.18.100.1:80/tcp", "packets": 2.0, "bytes": 200.0, "new_flows": 1.0})
    );
    assert_eq!(json["actions"]["forward_nat"], serde_json::json!({"packets": 0.0, "bytes": 0.0}));
}
