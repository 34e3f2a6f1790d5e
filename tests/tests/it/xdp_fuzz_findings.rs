//! The XDP fuzzer's findings (tests/src/fuzz/, docs/reliability.md), each
//! minimized to a fixture table row: frames the program sent to a backend
//! although the reference parser calls them malformed, or ICMP it took for
//! an error about a tracked flow although it is none. Every row failed
//! before the fix in lb-ebpf and must keep passing; each table also has
//! controls (legal frames of the same shape, still forwarded).

use std::net::{IpAddr, SocketAddr};

use lb_common::{lb, Stat};
use xdplb_tests::{
    packet::{self, mtu_error, Spec},
    require_root,
    testrun::{
        table::{run_table, Fixture, Output},
        XDP_DROP, XDP_PASS, XDP_REDIRECT,
    },
};

use crate::xdp_setup::*;

/// `frame` (untagged Ethernet/IP/TCP) with the TCP data offset set to
/// `words` and the TCP checksum recomputed over the datagram.
fn with_tcp_data_offset(frame: &[u8], words: u8) -> Vec<u8> {
    let mut out = frame.to_vec();
    let (l4, end) = if out[12..14] == [0x86, 0xdd] {
        (54, 54 + usize::from(u16::from_be_bytes([out[18], out[19]])))
    } else {
        (34, 14 + usize::from(u16::from_be_bytes([out[16], out[17]])))
    };
    out[l4 + 12] = (out[l4 + 12] & 0x0f) | (words << 4);
    refresh_l4_checksum(&mut out, l4, end, 16);
    out
}

/// `frame` (untagged Ethernet/IP/UDP) with the UDP length set to `len`;
/// with `sum_len`, the UDP checksum is recomputed over that many bytes.
fn with_udp_length(frame: &[u8], len: u16, sum_len: Option<usize>) -> Vec<u8> {
    let mut out = frame.to_vec();
    let l4 = if out[12..14] == [0x86, 0xdd] { 54 } else { 34 };
    out[l4 + 4..l4 + 6].copy_from_slice(&len.to_be_bytes());
    if let Some(n) = sum_len {
        refresh_l4_checksum(&mut out, l4, l4 + n, 6);
    }
    out
}

fn refresh_l4_checksum(frame: &mut [u8], l4: usize, end: usize, field: usize) {
    let (src, dst, proto) = if frame[12..14] == [0x86, 0xdd] {
        (frame[22..38].to_vec(), frame[38..54].to_vec(), frame[20])
    } else {
        (frame[26..30].to_vec(), frame[30..34].to_vec(), frame[23])
    };
    frame[l4 + field..l4 + field + 2].copy_from_slice(&[0, 0]);
    let sum = packet::l4_checksum(&src, &dst, proto, &frame[l4..end]);
    frame[l4 + field..l4 + field + 2].copy_from_slice(&sum.to_be_bytes());
}

/// Frames the XDP fuzzer (docs/reliability.md) found forwarded although the
/// reference parser calls them malformed, minimized: TCP data offsets and
/// UDP lengths that do not fit the datagram, a hop-by-hop header after
/// another extension header, an IPv6 fragment followed by an atomic
/// fragment header. Each row has its own client port, so a row that wrongly
/// creates state shows in the conntrack count. Controls: options inside the
/// datagram and a UDP length shorter than the datagram are forwarded.
#[test]
fn fuzzer_findings_transport_lengths_and_extension_header_chains() {
    require_root!();
    with_program(|xdp, env| {
        let udp4: SocketAddr = "198.18.100.1:53".parse().unwrap();
        let udp6: SocketAddr = "[fd00:198:18:100::1]:53".parse().unwrap();
        set_vip(&mut xdp.dataplane(), udp4, 17, lb::ALG_MAGLEV, lb::MODE_NAT, 3, &[1, 2]);
        set_vip(&mut xdp.dataplane(), udp6, 17, lb::ALG_MAGLEV, lb::MODE_NAT, 4, &[11, 12]);
        let mut port = 52000u16;
        let mut next = |v6: bool| {
            port += 1;
            client(v6, port)
        };
        let dropped = |d: String, frame: Vec<u8>| Fixture::new(d, frame, XDP_DROP, Output::Unchanged, Stat::DropMalformedVip).on(env.lc);
        let mut rows = Vec::new();
        for v6 in [false, true] {
            let (vip, udp_vip) = if v6 { (vip6(), udp6) } else { (vip4(), udp4) };
            let syn = inbound(env, Spec::tcp(next(v6), vip)).build();
            rows.push(dropped(format!("v6={v6}: TCP data offset 4, below the fixed header: dropped"), with_tcp_data_offset(&syn, 4)));
            let syn = inbound(env, Spec::tcp(next(v6), vip)).build();
            rows.push(dropped(format!("v6={v6}: TCP data offset 15 in a 20-byte segment: dropped"), with_tcp_data_offset(&syn, 15)));
            let syn = inbound(env, Spec::tcp(next(v6), vip)).build();
            rows.push(dropped(format!("v6={v6}: TCP data offset 6 in a 20-byte segment: dropped"), with_tcp_data_offset(&syn, 6)));
            for (len, what) in [(0u16, "0"), (7, "7, below the header"), (14, "one past the datagram")] {
                let dgram = inbound(env, Spec::udp(next(v6), udp_vip, b"query")).build();
                rows.push(dropped(format!("v6={v6}: UDP length {what}: dropped"), with_udp_length(&dgram, len, None)));
            }
            // Controls: a 4-byte MSS option inside the datagram, and a UDP
            // length ending before the datagram (trailing bytes): forwarded.
            let (c, ids) = (next(v6), if v6 { [11, 12] } else { [1, 2] });
            let b = predicted(&ids, c, vip, 6);
            let mss = [2u8, 4, 5, 0xb4];
            let input = with_tcp_data_offset(&inbound(env, Spec { payload: &mss, ..Spec::tcp(c, vip) }).build(), 6);
            let want = with_tcp_data_offset(&forwarded_nat(env, b, inbound(env, Spec { payload: &mss, ..Spec::tcp(c, vip) })).build(), 6);
            rows.push(
                Fixture::new(format!("v6={v6}: TCP options inside the datagram: forwarded"), input, XDP_REDIRECT, Output::Frame(want), Stat::ForwardNat)
                    .on(env.lc),
            );
            let c = next(v6);
            let b = predicted(&ids, c, udp_vip, 17);
            let input = with_udp_length(&inbound(env, Spec::udp(c, udp_vip, b"query")).build(), 10, Some(10));
            let want = with_udp_length(&forwarded_nat(env, b, inbound(env, Spec::udp(c, udp_vip, b"query"))).build(), 10, Some(10));
            rows.push(
                Fixture::new(format!("v6={v6}: UDP length shorter than the datagram: forwarded"), input, XDP_REDIRECT, Output::Frame(want), Stat::ForwardNat)
                    .on(env.lc),
            );
        }
        // IPv6: hop-by-hop after a destination-options header (RFC 8200 puts
        // it first or nowhere): malformed.
        let syn = inbound(env, Spec::tcp(next(true), vip6())).build();
        let mut late_hbh = with_ipv6_dstopts(&with_ipv6_dstopts(&syn));
        late_hbh[54] = 0; // the first header's next header: hop-by-hop
        rows.push(
            Fixture::new("IPv6 hop-by-hop after destination options: malformed, passed", late_hbh, XDP_PASS, Output::Unchanged, Stat::PassMalformed).on(env.lc),
        );
        // A non-first fragment whose chain goes on with an atomic fragment header.
        let syn = inbound(env, Spec::tcp(next(true), vip6())).build();
        let mut two = syn[..54].to_vec();
        two.extend_from_slice(&[44, 0, 0x05, 0xc8, 0, 0, 0, 1]); // offset 185, next: another fragment header
        two.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 2]); // atomic
        two.extend_from_slice(&syn[54..]);
        two[20] = 44;
        two[18..20].copy_from_slice(&(20u16 + 16).to_be_bytes());
        rows.push(
            Fixture::new(
                "IPv6 fragment (offset 185) then an atomic fragment header: a fragment, dropped",
                two,
                XDP_DROP,
                Output::Unchanged,
                Stat::DropFragmentVip,
            )
            .on(env.lc),
        );
        run_table(xdp, &rows);
        assert_eq!(conntrack(xdp).keys().count(), 4, "only the four controls may create conntrack entries");
    });
}

/// ICMP the XDP fuzzer (docs/reliability.md) found forwarded to a tracked
/// flow's backend although it is no path-MTU error of the packet's family,
/// minimized: an error whose quote is no IP header of the outer family
/// (version nibble of the other), and the error's bytes carried with the
/// other family's ICMP protocol number (IPv4 protocol 58, IPv6 next header
/// 1). None names the flow: they go to the kernel like other ICMP.
#[test]
fn fuzzer_findings_icmp_quotes_and_protocols_of_the_wrong_family() {
    require_root!();
    with_program(|xdp, env| {
        let mut rows = Vec::new();
        for v6 in [false, true] {
            let vip = if v6 { vip6() } else { vip4() };
            let c = client(v6, 49500);
            assert_eq!(run(xdp, env.lc, &inbound(env, Spec::tcp(c, vip)).build()).0, XDP_REDIRECT, "v6={v6}: flow set up");
            let router: IpAddr = if v6 { "fd00:198:18::fe".parse().unwrap() } else { "198.18.0.254".parse().unwrap() };
            let error = mtu_error((&env.lc_mac, &env.client_mac), router, vip.ip(), 64, vip, c);
            let (quote, proto) = if v6 { (54 + 8, 20) } else { (34 + 8, 23) };
            let mut wrong_version = error.clone();
            wrong_version[quote] = if v6 { 0x45 } else { 0x65 };
            let mut wrong_protocol = error.clone();
            wrong_protocol[proto] = if v6 { 1 } else { 58 };
            if !v6 {
                fix_ipv4_checksum(&mut wrong_protocol);
            }
            let row =
                |d: &str, input: Vec<u8>| Fixture::new(format!("v6={v6}: {d}: the kernel's"), input, XDP_PASS, Output::Unchanged, Stat::PassNotVip).on(env.lc);
            rows.push(row("MTU error about a tracked flow whose quote has the other IP version", wrong_version));
            rows.push(row("an MTU error's bytes under the other family's ICMP protocol number", wrong_protocol));
        }
        run_table(xdp, &rows);
        assert_eq!(xdp.stat(Stat::IcmpToBackend).packets, 0);
    });
}
