//! The XDP program attached by `lb-user attach` to the lab lb's client-side
//! interface counts real TCP and UDP traffic over IPv4 and IPv6 exactly.

use std::{
    net::{SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use lb_common::TrafficClass;
use lb_user::stats::TrafficCounters;
use xdplb_tests::{
    counters::SentCounters,
    http,
    lab::{Host, Lab},
    lbuser::{pin_dir, LbUser},
    netns, require_root,
};

const UDP_DATAGRAMS: u64 = 25;
const UDP_PAYLOAD: usize = 100;
const HTTP_REQUESTS_PER_FAMILY: usize = 3;

/// Waits until the counters stop moving for a second (link-up MLD reports and
/// the like), at most 15 s, and returns the settled values.
fn settle(iface: &str) -> TrafficCounters {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = TrafficCounters::read_pinned(iface).unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = TrafficCounters::read_pinned(iface).unwrap();
        if now == last {
            return now;
        }
        assert!(Instant::now() < deadline, "traffic on {iface} did not settle within 15 s");
        last = now;
    }
}

fn send_udp(ns: &str, to: SocketAddr, count: u64) {
    netns::run_in(ns, move || {
        let bind: SocketAddr = if to.is_ipv4() { "0.0.0.0:0".parse()? } else { "[::]:0".parse()? };
        let socket = UdpSocket::bind(bind)?;
        socket.set_read_timeout(Some(Duration::from_secs(2)))?;
        let payload = [0x5a; UDP_PAYLOAD];
        let mut buf = [0u8; 512];
        for _ in 0..count {
            socket.send_to(&payload, to)?;
            // Wait for the echo so nothing queues and every datagram is on the wire.
            let (n, _) = socket.recv_from(&mut buf)?;
            assert!(buf[..n].starts_with(b"be"), "unexpected echo {:?}", &buf[..n]);
        }
        Ok(())
    })
    .unwrap();
}

#[test]
fn attached_program_counts_real_tcp_and_udp_over_ipv4_and_ipv6_exactly() {
    require_root!();
    let mut lab = Lab::up_unique("xt", 2).unwrap();
    lab.start_backends().unwrap();
    let (lb_ns, client_ns) = (lab.ns(Host::Lb), lab.ns(Host::Client));
    let iface = lab.lb_client_iface();
    let lb = LbUser::attach(&lb_ns, &iface, &["--mode", "native"]).unwrap();

    let xdp_before = settle(&iface);
    let sent_before = SentCounters::read(&client_ns, &lab.client_iface()).unwrap();

    for v6 in [false, true] {
        let target = lab.backend_addr(1, v6);
        send_udp(&client_ns, target, UDP_DATAGRAMS);
        for _ in 0..HTTP_REQUESTS_PER_FAMILY {
            let addr = lab.backend_addr(2, v6);
            let resp = netns::run_in(&client_ns, move || http::get(addr, "/", Duration::from_secs(5))).unwrap();
            assert_eq!((resp.status, resp.body.as_str()), (200, "be2\n"));
        }
    }
    // TCP closes (FIN/ACK) may trail the last response by a moment.
    let xdp = settle(&iface).delta(&xdp_before);
    let sent = SentCounters::read(&client_ns, &lab.client_iface()).unwrap().delta(&sent_before);

    // UDP: exactly what we sent, to the byte (Ethernet + IP + UDP + payload).
    let udp = xdp.get(TrafficClass::Udp);
    assert_eq!(udp.packets, 2 * UDP_DATAGRAMS);
    let per_v4 = (14 + 20 + 8 + UDP_PAYLOAD) as u64;
    let per_v6 = (14 + 40 + 8 + UDP_PAYLOAD) as u64;
    assert_eq!(udp.bytes, UDP_DATAGRAMS * (per_v4 + per_v6));
    assert_eq!(sent.udp4_out + sent.udp6_out, 2 * UDP_DATAGRAMS);

    // TCP: every segment the client's stack sent, no more, no less; each
    // HTTP exchange is at least SYN, ACK, request, FIN.
    let tcp = xdp.get(TrafficClass::Tcp);
    assert_eq!(tcp.packets, sent.tcp_out, "xdp tcp {tcp:?} vs client {sent:?}");
    assert!(tcp.packets >= (2 * HTTP_REQUESTS_PER_FAMILY * 4) as u64, "{tcp:?}");

    // L3 per family matches the client's IP MIBs; nothing else crossed the link.
    assert_eq!(xdp.get(TrafficClass::Ipv4).packets, sent.ipv4_out, "{xdp:?} vs {sent:?}");
    assert_eq!(xdp.get(TrafficClass::Ipv6).packets, sent.ipv6_out, "{xdp:?} vs {sent:?}");
    assert_eq!(xdp.get(TrafficClass::OtherL4).packets, 0, "{xdp:?}");
    assert_eq!(xdp.get(TrafficClass::OtherL3).packets, 0, "{xdp:?}");
    assert_eq!(xdp.get(TrafficClass::Malformed).packets, 0, "{xdp:?}");
    assert_eq!(tcp.packets + udp.packets, xdp.get(TrafficClass::Ipv4).packets + xdp.get(TrafficClass::Ipv6).packets);

    // Every frame and byte the client's interface transmitted was counted.
    // veth's tx_bytes leave out the 14-byte Ethernet header XDP sees.
    let l3_packets: u64 = [TrafficClass::Ipv4, TrafficClass::Ipv6].iter().map(|c| xdp.get(*c).packets).sum();
    let l3_bytes: u64 = [TrafficClass::Ipv4, TrafficClass::Ipv6].iter().map(|c| xdp.get(*c).bytes).sum();
    assert_eq!((l3_packets, l3_bytes), (sent.tx_packets, sent.tx_bytes + 14 * sent.tx_packets));

    // `lb-user stats --json` from another process reports the same totals.
    let json = lb.stats_json().unwrap();
    let now = TrafficCounters::read_pinned(&iface).unwrap();
    assert_eq!(json["traffic"]["udp"]["packets"].as_u64(), Some(now.get(TrafficClass::Udp).packets));
    assert_eq!(json["traffic"]["tcp"]["bytes"].as_u64(), Some(now.get(TrafficClass::Tcp).bytes));

    // Ctrl-C detaches cleanly and removes the pins.
    let status = lb.stop().unwrap();
    assert!(status.success(), "lb-user attach exited with {status}");
    assert!(!pin_dir(&iface).exists(), "pins left behind in {}", pin_dir(&iface).display());
    drop(lab);
}
