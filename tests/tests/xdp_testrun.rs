//! The XDP program on hand-built frames through BPF_PROG_TEST_RUN (aya's
//! `TestRun`): verdict, output bytes and exact counters.

use std::net::{Ipv4Addr, Ipv6Addr};

use aya::{
    maps::{MapData, PerCpuArray},
    programs::{TestRun, TestRunOptions},
    Ebpf,
};
use lb_common::{map_names, PacketCounter, TrafficClass};
use lb_user::stats::TrafficCounters;
use xdplb_tests::{packet, require_root};

const XDP_PASS: u32 = 2;

struct Fixture {
    ebpf: Ebpf,
}

impl Fixture {
    fn load() -> Fixture {
        Fixture { ebpf: lb_user::program::load().expect("load the XDP program") }
    }

    /// Runs one frame; returns the verdict and the frame as the program left it.
    fn run(&mut self, frame: &[u8]) -> (u32, Vec<u8>) {
        let mut out = vec![0u8; frame.len() + 256];
        let prog = lb_user::program::xdp_program(&mut self.ebpf).unwrap();
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        opts.data_out = Some(&mut out);
        let result = prog.test_run(opts).expect("BPF_PROG_TEST_RUN");
        out.truncate(result.data_size_out as usize);
        (result.return_value, out)
    }

    fn counters(&self) -> TrafficCounters {
        let map = self.ebpf.map(map_names::TRAFFIC).unwrap();
        let array = PerCpuArray::<&MapData, PacketCounter>::try_from(map).unwrap();
        TrafficCounters::read(&array).unwrap()
    }
}

fn expect(counters: &TrafficCounters, class: TrafficClass, packets: u64, bytes: u64) {
    assert_eq!(counters.get(class), PacketCounter { packets, bytes }, "class {}", class.name());
}

const C4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const B4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 11);

#[test]
fn ipv4_tcp_is_counted_and_passed_unchanged() {
    require_root!();
    let mut fx = Fixture::load();
    let frame = packet::ipv4_tcp(C4, B4, 40000, 8080, b"GET / HTTP/1.1\r\n\r\n");
    let (verdict, out) = fx.run(&frame);
    assert_eq!(verdict, XDP_PASS);
    assert_eq!(out, frame, "a passing program must not touch the frame");
    let c = fx.counters();
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
    let mut fx = Fixture::load();
    let src: Ipv6Addr = "fd00:198:18::2".parse().unwrap();
    let dst: Ipv6Addr = "fd00:198:18:1::11".parse().unwrap();
    let frame = packet::ipv6_udp(src, dst, 5353, 8080, b"ping");
    for _ in 0..3 {
        let (verdict, out) = fx.run(&frame);
        assert_eq!(verdict, XDP_PASS);
        assert_eq!(out, frame);
    }
    let c = fx.counters();
    let len = frame.len() as u64;
    expect(&c, TrafficClass::Ipv6, 3, 3 * len);
    expect(&c, TrafficClass::Udp, 3, 3 * len);
    expect(&c, TrafficClass::Ipv4, 0, 0);
    expect(&c, TrafficClass::Tcp, 0, 0);
}

#[test]
fn truncated_and_malformed_frames_are_counted_malformed_and_passed() {
    require_root!();
    let mut fx = Fixture::load();
    let full = packet::ipv4_tcp(C4, B4, 40000, 8080, b"");
    // Cut inside the IPv4 header (Ethernet complete, 10 of 20 IP bytes).
    let cut_ip = &full[..24];
    // IHL of 4 words (16 bytes) is below the minimum.
    let mut bad_ihl = full.clone();
    bad_ihl[14] = 0x44;
    // Ethertype says IPv6 but the version nibble says 4.
    let mut bad_version = packet::ipv6_udp("fd00:198:18::2".parse().unwrap(), "fd00:198:18:1::11".parse().unwrap(), 1, 2, b"");
    bad_version[14] = 0x40;
    let mut total = 0u64;
    for frame in [cut_ip, &bad_ihl[..], &bad_version[..]] {
        // BPF_PROG_TEST_RUN needs at least an Ethernet header's worth of data.
        let (verdict, out) = fx.run(frame);
        assert_eq!(verdict, XDP_PASS);
        assert_eq!(out, frame);
        total += frame.len() as u64;
    }
    let c = fx.counters();
    expect(&c, TrafficClass::Malformed, 3, total);
    for class in [TrafficClass::Ipv4, TrafficClass::Ipv6, TrafficClass::Tcp, TrafficClass::Udp, TrafficClass::OtherL4] {
        expect(&c, class, 0, 0);
    }
}

#[test]
fn vlan_tagged_and_non_ip_frames_are_classified() {
    require_root!();
    let mut fx = Fixture::load();
    let inner = packet::ipv4_tcp(C4, B4, 1, 2, b"");
    let mut tagged = packet::ethernet_vlan(42, packet::ETH_P_IPV4);
    tagged.extend_from_slice(&inner[14..]);
    let mut arp = packet::ethernet(packet::ETH_P_ARP);
    arp.extend_from_slice(&[0u8; 28]);
    let mut icmp = packet::ethernet(packet::ETH_P_IPV4);
    icmp.extend(packet::ipv4(C4, B4, packet::IPPROTO_ICMP, 8));
    icmp.extend_from_slice(&[8, 0, 0, 0, 0, 0, 0, 0]);
    for frame in [&tagged, &arp, &icmp] {
        assert_eq!(fx.run(frame).0, XDP_PASS);
    }
    let c = fx.counters();
    expect(&c, TrafficClass::Ipv4, 2, (tagged.len() + icmp.len()) as u64);
    expect(&c, TrafficClass::Tcp, 1, tagged.len() as u64);
    expect(&c, TrafficClass::OtherL4, 1, icmp.len() as u64);
    expect(&c, TrafficClass::OtherL3, 1, arp.len() as u64);
    expect(&c, TrafficClass::Malformed, 0, 0);
}
