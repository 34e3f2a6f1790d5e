//! Single-packet fixtures for the balancer through BPF_PROG_TEST_RUN, as
//! tables (`xdplb_tests::testrun::table`): each row is an input frame, the
//! expected verdict, the expected output frame byte for byte, and the one
//! per-action counter it must land in. The program runs in a lab's lb
//! namespace (xdp_setup.rs) so `bpf_fib_lookup` sees real routes and
//! neighbours. Each test is one table over one configuration, so a failure
//! names every broken row at once.

use std::net::SocketAddr;

use lb_common::{lb, map_names, Stat};
use lb_user::dataplane::vip_key;
use xdplb_tests::{
    packet::Spec,
    require_root,
    testrun::{
        table::{run_table, Fixture, Output},
        XDP_DROP, XDP_PASS, XDP_REDIRECT,
    },
};

use crate::xdp_setup::*;

#[test]
fn dsr_rewrites_only_the_macs() {
    require_root!();
    with_program(|xdp, env| {
        let vip: SocketAddr = "198.18.100.2:8080".parse().unwrap();
        set_vip(&mut xdp.dataplane(), vip, 6, lb::ALG_MAGLEV, lb::MODE_DSR, 2, &[1, 2]);
        let c = client(false, 41000);
        let b = predicted(&[1, 2], c, vip, 6);
        let want = Spec { eth_dst: env.be_mac[be_index(b)], eth_src: env.lbe_mac, ttl: 63, ..inbound(env, Spec::tcp(c, vip)) }.build();
        run_table(
            xdp,
            &[Fixture::new(
                "DSR over IPv4: new flow to the backend's MAC, IP unchanged",
                inbound(env, Spec::tcp(c, vip)).build(),
                XDP_REDIRECT,
                Output::Frame(want),
                Stat::ForwardDsr,
            )
            .on(env.lc)],
        );
        assert_eq!(xdp.stat(Stat::ForwardDsr).packets, 1);
        assert_eq!(xdp.flow_counter(map_names::BACKEND_STATS, b).new_flows, 1);
    });
}

#[test]
fn dsr_over_ipv6_rewrites_only_the_macs() {
    require_root!();
    with_program(|xdp, env| {
        let vip: SocketAddr = "[fd00:198:18:100::2]:8080".parse().unwrap();
        set_vip(&mut xdp.dataplane(), vip, 6, lb::ALG_MAGLEV, lb::MODE_DSR, 5, &[11, 12]);
        let c = client(true, 41000);
        let b = predicted(&[11, 12], c, vip, 6);
        let want = Spec { eth_dst: env.be_mac[be_index(b)], eth_src: env.lbe_mac, ttl: 63, ..inbound(env, Spec::tcp(c, vip)) }.build();
        run_table(
            xdp,
            &[Fixture::new(
                "DSR over IPv6: new flow to the backend's MAC, IP unchanged",
                inbound(env, Spec::tcp(c, vip)).build(),
                XDP_REDIRECT,
                Output::Frame(want),
                Stat::ForwardDsr,
            )
            .on(env.lc)],
        );
    });
}

#[test]
fn udp_vip_is_translated_with_a_valid_checksum() {
    require_root!();
    with_program(|xdp, env| {
        let vip: SocketAddr = "198.18.100.1:53".parse().unwrap();
        set_vip(&mut xdp.dataplane(), vip, 17, lb::ALG_MAGLEV, lb::MODE_NAT, 3, &[1, 2]);
        let c = client(false, 5353);
        let b = predicted(&[1, 2], c, vip, 17);
        let want = forwarded_nat(env, b, inbound(env, Spec::udp(c, vip, b"query"))).build();
        run_table(
            xdp,
            &[Fixture::new(
                "UDP VIP: DNAT to the backend with a valid UDP checksum",
                inbound(env, Spec::udp(c, vip, b"query")).build(),
                XDP_REDIRECT,
                Output::Frame(want),
                Stat::ForwardNat,
            )
            .on(env.lc)],
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
