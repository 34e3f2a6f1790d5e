//! Single-packet fixtures for the balancer through BPF_PROG_TEST_RUN, as
//! tables (`xdplb_tests::testrun::table`): each row is an input frame, the
//! expected verdict, the expected output frame byte for byte, and the one
//! per-action counter it must land in. The program runs in a lab's lb
//! namespace (xdp_setup.rs) so `bpf_fib_lookup` sees real routes and
//! neighbours. Each test is one table over one configuration, so a failure
//! names every broken row at once.

use std::net::SocketAddr;

use lb_common::{lb, Stat, TrafficClass};
use lb_user::dataplane::vip_key;
use xdplb_tests::{
    packet::Spec,
    require_root,
    testrun::{
        lab::LabEnv,
        table::{run_table, Fixture, Output},
        XDP_DROP, XDP_PASS, XDP_REDIRECT,
    },
};

use crate::xdp_setup::*;

#[test]
fn udp_vip_is_translated_with_a_valid_checksum() {
    require_root!();
    with_program(|xdp, env| {
        let vip: SocketAddr = "198.18.100.1:53".parse().unwrap();
        set_vip(&mut xdp.dataplane(), vip, 17, lb::ALG_MAGLEV, lb::MODE_NAT, 3, &[1, 2]);
        let c = client(false, 5353);
        let b = predicted(&[1, 2], c, vip, 17);
        let want = forwarded_nat(env, b, inbound(env, Spec::udp(c, vip, b"query"))).build();
        // The UDP checksum field of an Ethernet/IPv4/UDP frame.
        const UDP_CHECK: std::ops::Range<usize> = 14 + 20 + 6..14 + 20 + 8;
        let no_checksum = |mut frame: Vec<u8>| {
            frame[UDP_CHECK].copy_from_slice(&[0, 0]);
            frame
        };
        // A two-byte payload whose translated datagram sums to a checksum
        // of zero, which must be sent as 0xffff (RFC 768): the expected
        // frame builder writes the zero, the program must not.
        let (zero_sum, mut want_ffff) = (0..=u16::MAX)
            .map(|v| v.to_be_bytes())
            .find_map(|payload| {
                let frame = forwarded_nat(env, b, inbound(env, Spec::udp(c, vip, &payload))).build();
                (frame[UDP_CHECK] == [0, 0]).then_some((payload, frame))
            })
            .expect("some payload makes the translated checksum zero");
        want_ffff[UDP_CHECK].copy_from_slice(&[0xff, 0xff]);
        let zero_input = inbound(env, Spec::udp(c, vip, &zero_sum)).build();
        assert_ne!(zero_input[UDP_CHECK], [0, 0], "the input itself carries a checksum");
        run_table(
            xdp,
            &[
                Fixture::new(
                    "UDP VIP: DNAT to the backend with a valid UDP checksum",
                    inbound(env, Spec::udp(c, vip, b"query")).build(),
                    XDP_REDIRECT,
                    Output::Frame(want.clone()),
                    Stat::ForwardNat,
                )
                .on(env.lc),
                Fixture::new(
                    "UDP/IPv4 VIP without a checksum (zero): DNAT keeps it zero",
                    no_checksum(inbound(env, Spec::udp(c, vip, b"query")).build()),
                    XDP_REDIRECT,
                    Output::Frame(no_checksum(want)),
                    Stat::ForwardNat,
                )
                .on(env.lc),
                Fixture::new("UDP VIP: a translated checksum of zero is sent as 0xffff", zero_input, XDP_REDIRECT, Output::Frame(want_ffff), Stat::ForwardNat)
                    .on(env.lc),
            ],
        );
    });
}

#[test]
fn allowlist_drops_by_source_prefix_and_by_port() {
    require_root!();
    with_program(|xdp, env| {
        let outsider: SocketAddr = "198.18.7.7:40000".parse().unwrap();
        let other_port: SocketAddr = "198.18.100.1:81".parse().unwrap();
        let allowed = client(false, 40000);
        let b = predicted(&[1, 2], allowed, vip4(), 6);
        let frame = |src: SocketAddr, dst: SocketAddr| inbound(env, Spec::tcp(src, dst)).build();
        let row = |d: &str, src: SocketAddr, dst: SocketAddr, verdict: u32, output: Output, stat: Stat| {
            Fixture::new(d, frame(src, dst), verdict, output, stat).on(env.lc)
        };

        xdp.dataplane().set_allowlist(&["198.18.0.0/24".parse().unwrap()], Some(&[80]), false).unwrap();
        run_table(
            xdp,
            &[
                row("scope VIPs: source outside the prefixes, dropped", outsider, vip4(), XDP_DROP, Output::Unchanged, Stat::DropAllowlistCidr),
                row("scope VIPs: port not allowed, dropped", allowed, other_port, XDP_DROP, Output::Unchanged, Stat::DropAllowlistPort),
                row(
                    "scope VIPs: allowed client and port, forwarded",
                    allowed,
                    vip4(),
                    XDP_REDIRECT,
                    Output::Frame(forwarded_nat(env, b, inbound(env, Spec::tcp(allowed, vip4()))).build()),
                    Stat::ForwardNat,
                ),
                row("scope VIPs: non-VIP traffic from outside is out of scope, passed", outsider, backend(1), XDP_PASS, Output::Unchanged, Stat::PassNotVip),
                row(
                    "scope VIPs: IPv6 has no allowed prefix at all, dropped",
                    client(true, 40000),
                    vip6(),
                    XDP_DROP,
                    Output::Unchanged,
                    Stat::DropAllowlistCidr,
                ),
            ],
        );
        assert_eq!(xdp.stat(Stat::DropAllowlistCidr).packets, 2);
        assert_eq!(xdp.stat(Stat::DropAllowlistPort).packets, 1);

        xdp.dataplane().set_allowlist(&["198.18.0.0/24".parse().unwrap()], None, true).unwrap();
        run_table(
            xdp,
            &[
                row(
                    "scope all: non-VIP traffic from outside the prefixes, dropped",
                    outsider,
                    backend(1),
                    XDP_DROP,
                    Output::Unchanged,
                    Stat::DropAllowlistCidr,
                ),
                row("scope all: non-VIP traffic from an allowed source, passed", allowed, backend(1), XDP_PASS, Output::Unchanged, Stat::PassNotVip),
                row(
                    "scope all, any port: VIP address on port 81 is not refused by port (not a VIP port: passed)",
                    client(false, 40001),
                    other_port,
                    XDP_PASS,
                    Output::Unchanged,
                    Stat::PassNotVip,
                ),
            ],
        );
        assert_eq!(xdp.stat(Stat::DropAllowlistCidr).packets, 3);
        assert_eq!(xdp.stat(Stat::DropAllowlistPort).packets, 1);
    });
}

#[test]
fn non_vip_traffic_passes_untouched_and_bad_vip_traffic_is_dropped() {
    require_root!();
    with_program(|xdp, env| {
        let direct = inbound(env, Spec::tcp(client(false, 40000), backend(1))).build();
        let full = inbound(env, Spec::tcp(client(false, 40000), vip4())).build();
        let mut cut = full[..14 + 20 + 10].to_vec();
        cut[16..18].copy_from_slice(&30u16.to_be_bytes()); // IP total length matches the cut
        let mut frag = full.clone();
        frag[20] |= 0x20;
        fix_ipv4_checksum(&mut frag);
        let other: SocketAddr = "198.18.100.1:22".parse().unwrap();
        let other_port = inbound(env, Spec::tcp(client(false, 40000), other)).build();
        run_table(
            xdp,
            &[
                Fixture::new("non-VIP traffic: passed untouched", direct, XDP_PASS, Output::Unchanged, Stat::PassNotVip).on(env.lc),
                Fixture::new("VIP traffic cut inside the TCP header: dropped, not guessed", cut, XDP_DROP, Output::Unchanged, Stat::DropMalformedVip)
                    .on(env.lc),
                Fixture::new("first fragment (MF set) to the VIP: no ports to balance on, dropped", frag, XDP_DROP, Output::Unchanged, Stat::DropFragmentVip)
                    .on(env.lc),
                Fixture::new("VIP address on a port that is not balanced: the kernel's business", other_port, XDP_PASS, Output::Unchanged, Stat::PassNotVip)
                    .on(env.lc),
            ],
        );
        assert_eq!(xdp.stat(Stat::DropMalformedVip).packets, 1);
        assert_eq!(xdp.stat(Stat::DropFragmentVip).packets, 1);
    });
}

#[test]
fn a_vip_without_backends_drops_new_flows() {
    require_root!();
    with_program(|xdp, env| {
        let vip: SocketAddr = "198.18.100.9:80".parse().unwrap();
        let info = lb::VipInfo { vip_id: 9, hash_seed: SEED, ..Default::default() };
        xdp.dataplane().set_vip(&vip_key(vip.ip(), vip.port(), 6), &info, &vec![lb::NO_BACKEND; SIZE as usize], &[]).unwrap();
        let input = inbound(env, Spec::tcp(client(false, 40000), vip)).build();
        run_table(xdp, &[Fixture::new("VIP with an empty table: new flow dropped", input, XDP_DROP, Output::Unchanged, Stat::DropNoBackend).on(env.lc)]);
        assert_eq!(xdp.stat(Stat::DropNoBackend).packets, 1);
    });
}

#[test]
fn vlan_tags_ipv4_options_and_ipv6_extension_headers_are_parsed_and_kept() {
    require_root!();
    with_program(|xdp, env| {
        let mut rows = Vec::new();
        for v6 in [false, true] {
            let (vip, ids) = if v6 { (vip6(), [11, 12]) } else { (vip4(), [1, 2]) };
            let c = client(v6, 43000);
            let b = predicted(&ids, c, vip, 6);
            let input = inbound(env, Spec::tcp(c, vip)).build();
            let want = forwarded_nat(env, b, inbound(env, Spec::tcp(c, vip))).build();
            // The tag stays on the frame; the rest is translated as usual.
            rows.push(
                Fixture::new(
                    format!("VLAN-tagged frame (v6={v6}): translated, tag kept"),
                    tag_vlan(&input),
                    XDP_REDIRECT,
                    Output::Frame(tag_vlan(&want)),
                    Stat::ForwardNat,
                )
                .on(env.lc),
            );
            let (extended, want_ext) =
                if v6 { (with_ipv6_dstopts(&input), with_ipv6_dstopts(&want)) } else { (with_ipv4_options(&input), with_ipv4_options(&want)) };
            let what = if v6 { "IPv6 destination options" } else { "IPv4 options" };
            rows.push(
                Fixture::new(format!("{what}: parsed past, translated, kept"), extended, XDP_REDIRECT, Output::Frame(want_ext), Stat::ForwardNat).on(env.lc),
            );
        }
        run_table(xdp, &rows);
    });
}

#[test]
fn truncation_at_every_byte_never_forwards_and_follows_the_documented_rule() {
    require_root!();
    with_program(|xdp, env| {
        let full = inbound(env, Spec::tcp(client(false, 44000), vip4())).build();
        let mut rows = Vec::new();
        for len in 14..full.len() {
            let mut cut = full[..len].to_vec();
            // IP header cut, or IP total length past the frame: malformed, passed.
            rows.push(
                Fixture::new(
                    format!("cut at {len} bytes with the original IP length: malformed, passed"),
                    cut.clone(),
                    XDP_PASS,
                    Output::Unchanged,
                    Stat::PassMalformed,
                )
                .on(env.lc),
            );
            if len >= 34 {
                // Consistent IP length but the TCP header cut short: VIP traffic dropped.
                let total = (len - 14) as u16;
                cut[16..18].copy_from_slice(&total.to_be_bytes());
                fix_ipv4_checksum(&mut cut);
                rows.push(
                    Fixture::new(
                        format!("TCP header cut at {len} bytes, consistent IP length: dropped"),
                        cut,
                        XDP_DROP,
                        Output::Unchanged,
                        Stat::DropMalformedVip,
                    )
                    .on(env.lc),
                );
            }
        }
        // IPv4 total length shorter than the header, and IHL below 5: malformed.
        let mut short = full.clone();
        short[16..18].copy_from_slice(&16u16.to_be_bytes());
        let mut low_ihl = full.clone();
        low_ihl[14] = 0x44;
        rows.push(
            Fixture::new("IPv4 total length shorter than the header: malformed, passed", short, XDP_PASS, Output::Unchanged, Stat::PassMalformed).on(env.lc),
        );
        rows.push(Fixture::new("IPv4 IHL below 5: malformed, passed", low_ihl, XDP_PASS, Output::Unchanged, Stat::PassMalformed).on(env.lc));
        run_table(xdp, &rows);
        assert_eq!(xdp.stat(Stat::PassMalformed).packets, (full.len() - 14) as u64 + 2);
        assert_eq!(xdp.stat(Stat::DropMalformedVip).packets, (full.len() - 34) as u64);
    });
}

#[test]
fn non_first_fragments_to_a_vip_are_dropped_over_ipv4_and_ipv6() {
    require_root!();
    with_program(|xdp, env| {
        // IPv4: fragment offset 185 (×8 bytes), no MF.
        let mut v4 = inbound(env, Spec::tcp(client(false, 45000), vip4())).build();
        v4[20..22].copy_from_slice(&185u16.to_be_bytes());
        fix_ipv4_checksum(&mut v4);
        // IPv6: a fragment header with offset 185.
        let base = inbound(env, Spec::tcp(client(true, 45000), vip6())).build();
        let mut v6 = base[..54].to_vec();
        v6.extend_from_slice(&[6, 0]);
        v6.extend_from_slice(&(185u16 << 3).to_be_bytes());
        v6.extend_from_slice(&[0, 0, 0, 1]);
        v6.extend_from_slice(&base[54..]);
        v6[20] = 44;
        let len = u16::from_be_bytes([v6[18], v6[19]]) + 8;
        v6[18..20].copy_from_slice(&len.to_be_bytes());
        // The same fragment to a non-VIP address is the kernel's to reassemble.
        let mut other = v4.clone();
        other[30..34].copy_from_slice(&[198, 18, 1, 11]);
        fix_ipv4_checksum(&mut other);
        run_table(
            xdp,
            &[
                Fixture::new("IPv4 non-first fragment to the VIP: dropped", v4, XDP_DROP, Output::Unchanged, Stat::DropFragmentVip).on(env.lc),
                Fixture::new("IPv6 non-first fragment to the VIP: dropped", v6, XDP_DROP, Output::Unchanged, Stat::DropFragmentVip).on(env.lc),
                Fixture::new("IPv4 non-first fragment to a non-VIP address: passed to the kernel", other, XDP_PASS, Output::Unchanged, Stat::PassNotVip)
                    .on(env.lc),
            ],
        );
        assert_eq!(xdp.stat(Stat::DropFragmentVip).packets, 2);
    });
}

/// `frame` (Ethernet/IPv4) with the IPv4 total length set to `total`, header checksum fixed.
fn with_ipv4_total(frame: &[u8], total: usize) -> Vec<u8> {
    let mut out = frame.to_vec();
    out[16..18].copy_from_slice(&(total as u16).to_be_bytes());
    fix_ipv4_checksum(&mut out);
    out
}

/// `frame` (Ethernet/IPv6) with the IPv6 payload length set to `len`.
fn with_ipv6_payload(frame: &[u8], len: usize) -> Vec<u8> {
    let mut out = frame.to_vec();
    out[18..20].copy_from_slice(&(len as u16).to_be_bytes());
    out
}

/// `frame` followed by `n` bytes of Ethernet padding (zeros) after the IP datagram.
fn padded(frame: &[u8], n: usize) -> Vec<u8> {
    let mut out = frame.to_vec();
    out.resize(frame.len() + n, 0);
    out
}

/// The rows of one family, protocol and header layout: the declared IP
/// datagram ending before the IP header (or its options / extension headers)
/// ends, exactly at it, inside the TCP/UDP header, exactly at the TCP/UDP
/// header's end (Ethernet padding after it: forwarded), and past the frame.
/// `set_len(frame, l3_len)` writes the declared length counted from the
/// start of the IP header; `extend` adds the options / extension header to a
/// built frame. Every row has its own client port, so a row that wrongly
/// creates conntrack state shows up in the entry count.
struct BoundRows<'a> {
    env: &'a LabEnv,
    v6: bool,
    protocol: u8,
    vip: SocketAddr,
    ids: [u32; 2],
    /// IP header length including options / extension headers.
    ip_len: usize,
    set_len: fn(&[u8], usize) -> Vec<u8>,
    extend: fn(&[u8]) -> Vec<u8>,
    what: &'static str,
}

impl BoundRows<'_> {
    fn spec(&self, c: SocketAddr, dst: SocketAddr) -> Spec<'static> {
        inbound(self.env, if self.protocol == 6 { Spec::tcp(c, dst) } else { Spec::udp(c, dst, b"") })
    }

    fn rows(&self, port: &mut u16, forwarded: &mut usize) -> Vec<Fixture> {
        let (ip, l4) = (if self.v6 { TrafficClass::Ipv6 } else { TrafficClass::Ipv4 }, self.protocol_class());
        let malformed = [TrafficClass::Malformed];
        let l4_len = if self.protocol == 6 { 20 } else { 8 };
        let proto = if self.protocol == 6 { "TCP" } else { "UDP" };
        // Bytes of the IP header the declared length does not count (IPv6:
        // the fixed header; IPv4: none, total length includes the header).
        let fixed = if self.v6 { 40 } else { 0 };
        let mut next = || {
            *port += 1;
            client(self.v6, *port)
        };
        let mut rows = Vec::new();
        let cut = |len: usize, why: &str, rows: &mut Vec<Fixture>, c: SocketAddr| {
            let frame = (self.set_len)(&(self.extend)(&self.spec(c, self.vip).build()), len);
            rows.push(
                Fixture::new(
                    format!("{}: {proto} to the VIP, declared length {len} ({why}): TCP/UDP header outside the datagram, dropped", self.what),
                    frame,
                    XDP_DROP,
                    Output::Unchanged,
                    Stat::DropMalformedVip,
                )
                .on(self.env.lc)
                .traffic(&[ip, l4]),
            );
        };
        let hdr_end = self.ip_len - fixed;
        cut(hdr_end, "ends with the IP header", &mut rows, next());
        cut(hdr_end + 1, "ends 1 byte into the L4 header", &mut rows, next());
        cut(hdr_end + l4_len / 2, "ends halfway through the L4 header", &mut rows, next());
        cut(hdr_end + l4_len - 1, "ends 1 byte before the L4 header's end", &mut rows, next());
        // Shorter than the IP header itself (its options / extension headers): malformed.
        let short: &[usize] = if self.ip_len > 20 && !self.v6 {
            &[19, 20, 22]
        } else if self.v6 && self.ip_len > 40 {
            &[0, 4]
        } else if self.v6 {
            &[]
        } else {
            &[19]
        };
        for &len in short {
            let frame = (self.set_len)(&(self.extend)(&self.spec(next(), self.vip).build()), len);
            rows.push(
                Fixture::new(
                    format!("{}: {proto} to the VIP, declared length {len}, inside the IP header: malformed, passed", self.what),
                    frame,
                    XDP_PASS,
                    Output::Unchanged,
                    Stat::PassMalformed,
                )
                .on(self.env.lc)
                .traffic(&malformed),
            );
        }
        // Exactly the L4 header, then Ethernet padding: legal, forwarded.
        let c = next();
        let b = predicted(&self.ids, c, self.vip, self.protocol);
        let input = padded(&(self.extend)(&self.spec(c, self.vip).build()), 6);
        let want = padded(&(self.extend)(&forwarded_nat(self.env, b, self.spec(c, self.vip)).build()), 6);
        rows.push(
            Fixture::new(
                format!("{}: {proto} to the VIP, datagram ends exactly at the L4 header, 6 bytes of Ethernet padding: forwarded", self.what),
                input,
                XDP_REDIRECT,
                Output::Frame(want),
                Stat::ForwardNat,
            )
            .on(self.env.lc)
            .traffic(&[ip, l4]),
        );
        *forwarded += 1;
        // Declared past the frame end (by one byte, and by a lot): malformed.
        let full = (self.extend)(&self.spec(next(), self.vip).build());
        for len in [full.len() - 14 - fixed + 1, 0xffff] {
            rows.push(
                Fixture::new(
                    format!("{}: {proto} to the VIP, declared length {len}, past the {}-byte frame: malformed, passed", self.what, full.len()),
                    (self.set_len)(&full, len),
                    XDP_PASS,
                    Output::Unchanged,
                    Stat::PassMalformed,
                )
                .on(self.env.lc)
                .traffic(&malformed),
            );
        }
        // The same cut datagram to an address that is no VIP: the kernel's business.
        let direct = (self.set_len)(&(self.extend)(&self.spec(next(), backend(self.ids[0])).build()), hdr_end + 1);
        rows.push(
            Fixture::new(
                format!("{}: {proto} to a non-VIP address, datagram ends inside the L4 header: passed", self.what),
                direct,
                XDP_PASS,
                Output::Unchanged,
                Stat::PassNotVip,
            )
            .on(self.env.lc)
            .traffic(&[ip, l4]),
        );
        rows
    }

    fn protocol_class(&self) -> TrafficClass {
        if self.protocol == 6 {
            TrafficClass::Tcp
        } else {
            TrafficClass::Udp
        }
    }
}

fn unchanged(frame: &[u8]) -> Vec<u8> {
    frame.to_vec()
}

#[test]
fn ipv4_total_length_bounds_the_transport_header() {
    require_root!();
    with_program(|xdp, env| {
        let udp_vip: SocketAddr = "198.18.100.1:53".parse().unwrap();
        set_vip(&mut xdp.dataplane(), udp_vip, 17, lb::ALG_MAGLEV, lb::MODE_NAT, 3, &[1, 2]);
        let (mut port, mut forwarded, mut rows) = (50000u16, 0, Vec::new());
        for (protocol, vip) in [(6u8, vip4()), (17, udp_vip)] {
            for options in [false, true] {
                let set = BoundRows {
                    env,
                    v6: false,
                    protocol,
                    vip,
                    ids: [1, 2],
                    ip_len: if options { 24 } else { 20 },
                    set_len: with_ipv4_total,
                    extend: if options { with_ipv4_options } else { unchanged },
                    what: if options { "IPv4 with options" } else { "IPv4" },
                };
                rows.extend(set.rows(&mut port, &mut forwarded));
            }
        }
        run_table(xdp, &rows);
        assert_eq!(conntrack(xdp).keys().count(), forwarded, "only the forwarded rows may create conntrack entries");
    });
}

#[test]
fn ipv6_payload_length_bounds_extension_and_transport_headers() {
    require_root!();
    with_program(|xdp, env| {
        let udp_vip: SocketAddr = "[fd00:198:18:100::1]:53".parse().unwrap();
        set_vip(&mut xdp.dataplane(), udp_vip, 17, lb::ALG_MAGLEV, lb::MODE_NAT, 4, &[11, 12]);
        let (mut port, mut forwarded, mut rows) = (51000u16, 0, Vec::new());
        for (protocol, vip) in [(6u8, vip6()), (17, udp_vip)] {
            for ext in [false, true] {
                let set = BoundRows {
                    env,
                    v6: true,
                    protocol,
                    vip,
                    ids: [11, 12],
                    ip_len: if ext { 48 } else { 40 },
                    set_len: with_ipv6_payload,
                    extend: if ext { with_ipv6_dstopts } else { unchanged },
                    what: if ext { "IPv6 with destination options" } else { "IPv6" },
                };
                rows.extend(set.rows(&mut port, &mut forwarded));
            }
        }
        run_table(xdp, &rows);
        assert_eq!(conntrack(xdp).keys().count(), forwarded, "only the forwarded rows may create conntrack entries");
    });
}
