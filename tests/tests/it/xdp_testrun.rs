//! The XDP program on hand-built frames through BPF_PROG_TEST_RUN with no
//! VIPs configured: classification (traffic-class counters), verdict and
//! untouched output, as fixture tables (`xdplb_tests::testrun::table`).

use std::net::{Ipv4Addr, Ipv6Addr};

use lb_common::{PacketCounter, Stat, TrafficClass};
use lb_user::stats::TrafficCounters;
use xdplb_tests::{
    packet, require_root,
    testrun::{
        table::{run_table, Fixture, Output},
        Harness, XDP_PASS,
    },
};

fn load() -> Harness {
    Harness::load().expect("load the XDP program")
}

fn expect(counters: &TrafficCounters, class: TrafficClass, packets: u64, bytes: u64) {
    assert_eq!(counters.get(class), PacketCounter { packets, bytes }, "class {}", class.name());
}

/// A frame the program must pass untouched, counted in `classes`.
fn passed(description: &str, frame: Vec<u8>, stat: Stat, classes: &[TrafficClass]) -> Fixture {
    Fixture::new(description, frame, XDP_PASS, Output::Unchanged, stat).traffic(classes)
}

const C4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const B4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 11);

#[test]
fn ipv4_tcp_is_counted_and_passed_unchanged() {
    require_root!();
    let mut xdp = load();
    let frame = packet::ipv4_tcp(C4, B4, 40000, 8080, b"GET / HTTP/1.1\r\n\r\n");
    run_table(
        &mut xdp,
        &[passed("IPv4 TCP, not a VIP: counted IPv4 and TCP, passed unchanged", frame.clone(), Stat::PassNotVip, &[TrafficClass::Ipv4, TrafficClass::Tcp])],
    );
    let c = xdp.traffic();
    let len = frame.len() as u64;
    expect(&c, TrafficClass::Ipv4, 1, len);
    expect(&c, TrafficClass::Tcp, 1, len);
    for other in [TrafficClass::Ipv6, TrafficClass::OtherL3, TrafficClass::Udp, TrafficClass::OtherL4, TrafficClass::Malformed] {
        expect(&c, other, 0, 0);
    }
}

#[test]
fn ipv6_udp_is_counted_and_passed() {
    require_root!();
    let mut xdp = load();
    let src: Ipv6Addr = "fd00:198:18::2".parse().unwrap();
    let dst: Ipv6Addr = "fd00:198:18:1::11".parse().unwrap();
    let frame = packet::ipv6_udp(src, dst, 5353, 8080, b"ping");
    let rows: Vec<Fixture> = (1..=3)
        .map(|i| {
            passed(
                &format!("IPv6 UDP, run {i} of 3: counted IPv6 and UDP, passed unchanged"),
                frame.clone(),
                Stat::PassNotVip,
                &[TrafficClass::Ipv6, TrafficClass::Udp],
            )
        })
        .collect();
    run_table(&mut xdp, &rows);
    let c = xdp.traffic();
    let len = frame.len() as u64;
    expect(&c, TrafficClass::Ipv6, 3, 3 * len);
    expect(&c, TrafficClass::Udp, 3, 3 * len);
    expect(&c, TrafficClass::Ipv4, 0, 0);
    expect(&c, TrafficClass::Tcp, 0, 0);
}

#[test]
fn truncated_and_malformed_frames_are_counted_malformed_and_passed() {
    require_root!();
    let mut xdp = load();
    let full = packet::ipv4_tcp(C4, B4, 40000, 8080, b"");
    // Cut inside the IPv4 header (Ethernet complete, 10 of 20 IP bytes).
    // BPF_PROG_TEST_RUN needs at least an Ethernet header's worth of data.
    let cut_ip = full[..24].to_vec();
    // IHL of 4 words (16 bytes) is below the minimum.
    let mut bad_ihl = full.clone();
    bad_ihl[14] = 0x44;
    // Ethertype says IPv6 but the version nibble says 4.
    let mut bad_version = packet::ipv6_udp("fd00:198:18::2".parse().unwrap(), "fd00:198:18:1::11".parse().unwrap(), 1, 2, b"");
    bad_version[14] = 0x40;
    let total = (cut_ip.len() + bad_ihl.len() + bad_version.len()) as u64;
    let malformed = [TrafficClass::Malformed];
    run_table(
        &mut xdp,
        &[
            passed("cut inside the IPv4 header: malformed, passed", cut_ip, Stat::PassMalformed, &malformed),
            passed("IPv4 IHL below 5: malformed, passed", bad_ihl, Stat::PassMalformed, &malformed),
            passed("IPv6 ethertype with version 4: malformed, passed", bad_version, Stat::PassMalformed, &malformed),
        ],
    );
    let c = xdp.traffic();
    expect(&c, TrafficClass::Malformed, 3, total);
    for class in [TrafficClass::Ipv4, TrafficClass::Ipv6, TrafficClass::Tcp, TrafficClass::Udp, TrafficClass::OtherL4] {
        expect(&c, class, 0, 0);
    }
}

#[test]
fn vlan_tagged_and_non_ip_frames_are_classified() {
    require_root!();
    let mut xdp = load();
    let inner = packet::ipv4_tcp(C4, B4, 1, 2, b"");
    let mut tagged = packet::ethernet_vlan(42, packet::ETH_P_IPV4);
    tagged.extend_from_slice(&inner[14..]);
    let mut arp = packet::ethernet(packet::ETH_P_ARP);
    arp.extend_from_slice(&[0u8; 28]);
    let mut icmp = packet::ethernet(packet::ETH_P_IPV4);
    icmp.extend(packet::ipv4(C4, B4, packet::IPPROTO_ICMP, 8));
    icmp.extend_from_slice(&[8, 0, 0, 0, 0, 0, 0, 0]);
    let (tagged_len, arp_len, icmp_len) = (tagged.len() as u64, arp.len() as u64, icmp.len() as u64);
    run_table(
        &mut xdp,
        &[
            passed("802.1Q-tagged IPv4 TCP: counted IPv4 and TCP", tagged, Stat::PassNotVip, &[TrafficClass::Ipv4, TrafficClass::Tcp]),
            passed("ARP: counted other L3", arp, Stat::PassNotVip, &[TrafficClass::OtherL3]),
            passed("ICMP echo request: counted IPv4 and other L4", icmp, Stat::PassNotVip, &[TrafficClass::Ipv4, TrafficClass::OtherL4]),
        ],
    );
    let c = xdp.traffic();
    expect(&c, TrafficClass::Ipv4, 2, tagged_len + icmp_len);
    expect(&c, TrafficClass::Tcp, 1, tagged_len);
    expect(&c, TrafficClass::OtherL4, 1, icmp_len);
    expect(&c, TrafficClass::OtherL3, 1, arp_len);
    expect(&c, TrafficClass::Malformed, 0, 0);
}
