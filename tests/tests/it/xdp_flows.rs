//! Multi-step flows through BPF_PROG_TEST_RUN, where each packet depends on
//! the state the ones before it left: NAT forward and reverse NAT of one
//! flow across a table rebuild, round-robin cursors, ICMP errors about a
//! tracked flow, and conntrack / next-hop refresh rules. Single-packet cases
//! are tables in xdp_fixtures.rs; both share xdp_setup.rs.

use std::net::{IpAddr, SocketAddr};

use aya::maps::{MapData, PerCpuArray};
use lb_common::{lb, map_names, Stat};
use lb_user::dataplane::{datapath_now_ns, vip_key};
use xdplb_tests::{
    packet::{echo_request, mtu_error, Spec},
    require_root,
    testrun::{
        table::{run_table, Fixture, Output},
        Harness, XDP_DROP, XDP_PASS, XDP_REDIRECT,
    },
};

use crate::xdp_setup::*;

#[test]
fn nat_new_flow_established_flow_and_reply_over_ipv4_and_ipv6() {
    require_root!();
    with_program(|xdp, env| {
        for v6 in [false, true] {
            let (vip, ids) = if v6 { (vip6(), [11, 12]) } else { (vip4(), [1, 2]) };
            let c = client(v6, 40000);
            let b = predicted(&ids, c, vip, 6);
            let be = backend(b);
            let input = inbound(env, Spec::tcp(c, vip)).build();
            let want =
                Spec { eth_dst: env.be_mac[be_index(b)], eth_src: env.lbe_mac, dst: be.ip(), dport: be.port(), ttl: 63, ..inbound(env, Spec::tcp(c, vip)) }
                    .build();
            assert_frame(run(xdp, env.lc, &input), XDP_REDIRECT, &want);

            // The backend's SYN-ACK comes back on the backend side and leaves as the VIP.
            let reply = Spec { eth_dst: env.lbe_mac, eth_src: env.be_mac[be_index(b)], tcp_flags: 0x12, ..Spec::tcp(be, c) }.build();
            let want_reply = Spec { eth_dst: env.client_mac, eth_src: env.lc_mac, ttl: 63, tcp_flags: 0x12, ..Spec::tcp(vip, c) }.build();
            assert_frame(run(xdp, env.lbe, &reply), XDP_REDIRECT, &want_reply);

            // Rebuild the VIP's tables with only the other backend: the
            // established flow keeps its backend, a new flow takes the new table.
            let other = if b == ids[0] { ids[1] } else { ids[0] };
            {
                let mut dp = xdp.dataplane();
                set_vip(&mut dp, vip, 6, lb::ALG_MAGLEV, lb::MODE_NAT, u32::from(v6), &[other]);
            }
            let ack = inbound(env, Spec { tcp_flags: 0x10, ..Spec::tcp(c, vip) }).build();
            let want_ack = Spec {
                eth_dst: env.be_mac[be_index(b)],
                eth_src: env.lbe_mac,
                dst: be.ip(),
                dport: be.port(),
                ttl: 63,
                tcp_flags: 0x10,
                ..inbound(env, Spec::tcp(c, vip))
            }
            .build();
            assert_frame(run(xdp, env.lc, &ack), XDP_REDIRECT, &want_ack);
            let c2 = client(v6, 40001);
            let (_, out) = run(xdp, env.lc, &inbound(env, Spec::tcp(c2, vip)).build());
            let ob = backend(other);
            let want_new = Spec {
                eth_dst: env.be_mac[be_index(other)],
                eth_src: env.lbe_mac,
                dst: ob.ip(),
                dport: ob.port(),
                ttl: 63,
                ..inbound(env, Spec::tcp(c2, vip))
            }
            .build();
            assert_eq!(out, want_new, "new flow must use the rebuilt table");
        }
        assert_eq!(xdp.stat(Stat::ForwardNat).packets, 6);
        assert_eq!(xdp.stat(Stat::ReverseNat).packets, 2);
        assert_eq!(xdp.vip_counter(0).new_flows, 2);
        assert_eq!(xdp.vip_counter(0).packets, 3);
    });
}

#[test]
fn round_robin_cycles_through_healthy_backends() {
    require_root!();
    with_program(|xdp, env| {
        let vip: SocketAddr = "198.18.100.3:80".parse().unwrap();
        set_vip(&mut xdp.dataplane(), vip, 6, lb::ALG_ROUND_ROBIN, lb::MODE_NAT, 4, &[1, 2]);
        let mut seen = Vec::new();
        for port in 42000..42004 {
            let (verdict, out) = run(xdp, env.lc, &inbound(env, Spec::tcp(client(false, port), vip)).build());
            assert_eq!(verdict, XDP_REDIRECT);
            seen.push(out[30..34].to_vec());
        }
        assert_eq!(seen[0], seen[2]);
        assert_eq!(seen[1], seen[3]);
        assert_ne!(seen[0], seen[1], "round robin must alternate");
    });
}

#[test]
fn icmp_mtu_errors_about_a_tracked_flow_reach_its_backend_translated() {
    require_root!();
    with_program(|xdp, env| {
        for v6 in [false, true] {
            let (vip, ids) = if v6 { (vip6(), [11, 12]) } else { (vip4(), [1, 2]) };
            let c = client(v6, 46000);
            let b = predicted(&ids, c, vip, 6);
            let be = backend(b);
            // Establish the flow.
            assert_eq!(run(xdp, env.lc, &inbound(env, Spec::tcp(c, vip)).build()).0, XDP_REDIRECT);
            let router: IpAddr = if v6 { "fd00:198:18::fe".parse().unwrap() } else { "198.18.0.254".parse().unwrap() };
            let input = mtu_error((&env.lc_mac, &env.client_mac), router, vip.ip(), 64, vip, c);
            let want = mtu_error((&env.be_mac[be_index(b)], &env.lbe_mac), router, be.ip(), 63, be, c);
            let (verdict, out) = run(xdp, env.lc, &input);
            assert_eq!(verdict, XDP_REDIRECT, "v6={v6}");
            assert_eq!(out, want, "translated ICMP error (v6={v6})");
            // An MTU error about an unknown flow is left to the kernel.
            let stranger = client(v6, 47000);
            let unknown = mtu_error((&env.lc_mac, &env.client_mac), router, vip.ip(), 64, vip, stranger);
            assert_eq!(run(xdp, env.lc, &unknown).0, XDP_PASS);
        }
        assert_eq!(xdp.stat(Stat::IcmpToBackend).packets, 2);
    });
}

/// Timestamps and next hops of established flows follow the documented
/// refresh rules (docs/xdp.md): `last_seen_ns` of the conntrack and
/// reverse-NAT entries is rewritten in place only once it is
/// LAST_SEEN_REFRESH_NS old; a remembered next hop (per backend and CPU for
/// client → backend, in the reverse-NAT entry for replies) is used until it is
/// NEXT_HOP_REFRESH_NS old, then looked up again; FIN marks both entries
/// closing in place.
#[test]
fn established_flows_refresh_timestamps_and_next_hops_once_a_second() {
    require_root!();
    with_program(|xdp, env| {
        const SECOND: u64 = 1_000_000_000;
        let (vip, ids) = (vip4(), [1, 2]);
        let c = client(false, 41000);
        let b = predicted(&ids, c, vip, 6);
        let be = backend(b);
        let (ct_key, rev_key) = (flow_key(c, vip, 6), flow_key(be, c, 6));
        let ack = inbound(env, Spec { tcp_flags: 0x10, ..Spec::tcp(c, vip) }).build();
        let reply = Spec { eth_dst: env.lbe_mac, eth_src: env.be_mac[be_index(b)], tcp_flags: 0x10, ..Spec::tcp(be, c) }.build();
        let want_ack = |dmac: [u8; 6]| {
            Spec { eth_dst: dmac, eth_src: env.lbe_mac, dst: be.ip(), dport: be.port(), ttl: 63, tcp_flags: 0x10, ..inbound(env, Spec::tcp(c, vip)) }.build()
        };
        let want_reply = |dmac: [u8; 6]| Spec { eth_dst: dmac, eth_src: env.lc_mac, ttl: 63, tcp_flags: 0x10, ..Spec::tcp(vip, c) }.build();

        let t0 = datapath_now_ns();
        assert_eq!(run(xdp, env.lc, &inbound(env, Spec::tcp(c, vip)).build()).0, XDP_REDIRECT);
        let t1 = datapath_now_ns();
        let ct = conntrack(xdp).get(&ct_key, 0).unwrap();
        let rev = reverse_nat(xdp).get(&rev_key, 0).unwrap();
        assert!((t0..=t1).contains(&ct.last_seen_ns) && (t0..=t1).contains(&rev.last_seen_ns), "{ct:?} {rev:?}");
        assert_eq!(rev.next_hop.ifindex, 0, "no reply yet, so no next hop towards the client");

        // Younger than a second: an established flow's packets leave the
        // timestamps alone (no map update per packet).
        let recent = datapath_now_ns() - SECOND / 2;
        conntrack(xdp).insert(ct_key, lb::FlowState { last_seen_ns: recent, ..ct }, 0).unwrap();
        reverse_nat(xdp).insert(rev_key, lb::ReverseNat { last_seen_ns: recent, ..rev }, 0).unwrap();
        assert_frame(run(xdp, env.lc, &ack), XDP_REDIRECT, &want_ack(env.be_mac[be_index(b)]));
        assert_eq!(conntrack(xdp).get(&ct_key, 0).unwrap().last_seen_ns, recent);
        assert_eq!(reverse_nat(xdp).get(&rev_key, 0).unwrap().last_seen_ns, recent);
        assert_frame(run(xdp, env.lbe, &reply), XDP_REDIRECT, &want_reply(env.client_mac));
        let rev = reverse_nat(xdp).get(&rev_key, 0).unwrap();
        assert_eq!(rev.last_seen_ns, recent, "a reply younger than a second leaves it alone too");
        assert_eq!(rev.next_hop.ifindex, env.lc, "the reply's next hop is remembered in the entry");
        assert_eq!((rev.next_hop.smac, rev.next_hop.dmac), (env.lc_mac, env.client_mac));

        // Two seconds old: the next packet refreshes them in place.
        let old = datapath_now_ns() - 2 * SECOND;
        conntrack(xdp).insert(ct_key, lb::FlowState { last_seen_ns: old, ..ct }, 0).unwrap();
        reverse_nat(xdp).insert(rev_key, lb::ReverseNat { last_seen_ns: old, ..rev }, 0).unwrap();
        let t2 = datapath_now_ns();
        assert_frame(run(xdp, env.lc, &ack), XDP_REDIRECT, &want_ack(env.be_mac[be_index(b)]));
        assert!(conntrack(xdp).get(&ct_key, 0).unwrap().last_seen_ns >= t2);
        assert!(reverse_nat(xdp).get(&rev_key, 0).unwrap().last_seen_ns >= t2);

        // A remembered next hop is used while it is fresh (a planted MAC shows
        // it) and looked up again once it is a second old.
        let planted = [0x02, 0, 0, 0, 0, 0x99];
        let rev = reverse_nat(xdp).get(&rev_key, 0).unwrap();
        let fresh_hop = lb::NextHop { looked_up_ns: datapath_now_ns(), dmac: planted, ..rev.next_hop };
        reverse_nat(xdp).insert(rev_key, lb::ReverseNat { next_hop: fresh_hop, ..rev }, 0).unwrap();
        assert_frame(run(xdp, env.lbe, &reply), XDP_REDIRECT, &want_reply(planted));
        let stale_hop = lb::NextHop { looked_up_ns: datapath_now_ns() - 2 * SECOND, ..fresh_hop };
        reverse_nat(xdp).insert(rev_key, lb::ReverseNat { next_hop: stale_hop, ..rev }, 0).unwrap();
        assert_frame(run(xdp, env.lbe, &reply), XDP_REDIRECT, &want_reply(env.client_mac));

        // The same for the per-CPU next hop towards the backend.
        let cpus = aya::util::nr_cpus().unwrap();
        let mut hops = PerCpuArray::<&mut MapData, lb::BackendHop>::try_from(xdp.map_mut(map_names::BACKEND_HOPS).unwrap()).unwrap();
        let slot = hops.get(&b, 0).unwrap()[0];
        assert_eq!((slot.addr, slot.ingress_ifindex, slot.hop.ifindex), (vip_key(be.ip(), 0, 0).addr, env.lc, env.lbe), "{slot:?}");
        assert_eq!(slot.hop.dmac, env.be_mac[be_index(b)]);
        let planted_slot = lb::BackendHop { hop: lb::NextHop { looked_up_ns: datapath_now_ns(), dmac: planted, ..slot.hop }, ..slot };
        hops.set(b, aya::maps::PerCpuValues::try_from(vec![planted_slot; cpus]).unwrap(), 0).unwrap();
        assert_frame(run(xdp, env.lc, &ack), XDP_REDIRECT, &want_ack(planted));
        let mut hops = PerCpuArray::<&mut MapData, lb::BackendHop>::try_from(xdp.map_mut(map_names::BACKEND_HOPS).unwrap()).unwrap();
        let stale_slot = lb::BackendHop { hop: lb::NextHop { looked_up_ns: datapath_now_ns() - 2 * SECOND, ..planted_slot.hop }, ..planted_slot };
        hops.set(b, aya::maps::PerCpuValues::try_from(vec![stale_slot; cpus]).unwrap(), 0).unwrap();
        assert_frame(run(xdp, env.lc, &ack), XDP_REDIRECT, &want_ack(env.be_mac[be_index(b)]));
        // A slot remembered for another address (a reused backend id) is not used.
        let mut hops = PerCpuArray::<&mut MapData, lb::BackendHop>::try_from(xdp.map_mut(map_names::BACKEND_HOPS).unwrap()).unwrap();
        let other_addr = lb::BackendHop { addr: vip_key(backend(3 - b).ip(), 0, 0).addr, ..planted_slot };
        hops.set(b, aya::maps::PerCpuValues::try_from(vec![other_addr; cpus]).unwrap(), 0).unwrap();
        assert_frame(run(xdp, env.lc, &ack), XDP_REDIRECT, &want_ack(env.be_mac[be_index(b)]));

        // FIN marks both entries closing, in place; conntrack also says
        // whose FIN it was (half-closed: the backend may still send).
        let fin = inbound(env, Spec { tcp_flags: 0x11, ..Spec::tcp(c, vip) }).build();
        assert_eq!(run(xdp, env.lc, &fin).0, XDP_REDIRECT);
        assert_eq!(conntrack(xdp).get(&ct_key, 0).unwrap().tcp_state, lb::TCP_CLOSING | lb::TCP_FIN_CLIENT);
        assert_eq!(reverse_nat(xdp).get(&rev_key, 0).unwrap().tcp_state, lb::TCP_CLOSING);
    });
}

/// An MTU error from `mtu_error` whose outer datagram (IP total length /
/// payload length) ends 2 bytes into the quoted ports; the frame still
/// holds them.
fn quote_cut_by_datagram(frame: &[u8], v6: bool) -> Vec<u8> {
    let mut out = frame.to_vec();
    if v6 {
        out[18..20].copy_from_slice(&(8u16 + 40 + 2).to_be_bytes());
    } else {
        out[16..18].copy_from_slice(&(20u16 + 8 + 20 + 2).to_be_bytes());
        fix_ipv4_checksum(&mut out);
    }
    out
}

/// The quote of an ICMP error is read inside the outer datagram only
/// (docs/xdp.md): an MTU error about a tracked flow whose declared length
/// ends inside the quoted ports is not taken as being about the flow, so it
/// is not forwarded to the backend (the kernel gets it).
#[test]
fn icmp_mtu_errors_whose_quote_ends_past_the_datagram_are_not_forwarded() {
    require_root!();
    with_program(|xdp, env| {
        for v6 in [false, true] {
            let vip = if v6 { vip6() } else { vip4() };
            let c = client(v6, 49000);
            assert_eq!(run(xdp, env.lc, &inbound(env, Spec::tcp(c, vip)).build()).0, XDP_REDIRECT, "v6={v6}: flow set up");
            let router: IpAddr = if v6 { "fd00:198:18::fe".parse().unwrap() } else { "198.18.0.254".parse().unwrap() };
            let cut = quote_cut_by_datagram(&mtu_error((&env.lc_mac, &env.client_mac), router, vip.ip(), 64, vip, c), v6);
            run_table(
                xdp,
                &[Fixture::new(
                    format!("v6={v6}: MTU error about a tracked flow, quoted ports past the declared datagram: the kernel's"),
                    cut,
                    XDP_PASS,
                    Output::Unchanged,
                    Stat::PassNotVip,
                )
                .on(env.lc)],
            );
        }
        assert_eq!(xdp.stat(Stat::IcmpToBackend).packets, 0);
    });
}

/// The allowlist and ICMP errors (docs/xdp.md): a "fragmentation needed" /
/// "packet too big" quoting a tracked flow skips the source check, since the
/// flow was admitted already and the router sending it is usually outside
/// the client prefixes (path-MTU discovery must keep working); errors about
/// untracked flows and all other ICMP still go through the allowlist. So does
/// an error whose quoted header lies outside the datagram the outer IP header
/// declares (it is not recognised as being about the flow).
#[test]
fn icmp_mtu_errors_about_tracked_flows_skip_the_allowlist_others_do_not() {
    require_root!();
    with_program(|xdp, env| {
        // Only the lab client is an allowed source; the routers are outside.
        xdp.dataplane().set_allowlist(&["198.18.0.2/32".parse().unwrap(), "fd00:198:18::2/128".parse().unwrap()], None, false).unwrap();
        // Both families' rows in one table, so a failure shows every broken row.
        let mut rows = Vec::new();
        for v6 in [false, true] {
            let (vip, ids) = if v6 { (vip6(), [11, 12]) } else { (vip4(), [1, 2]) };
            let c = client(v6, 48000);
            let b = predicted(&ids, c, vip, 6);
            let be = backend(b);
            // The allowed client establishes the flow.
            assert_eq!(run(xdp, env.lc, &inbound(env, Spec::tcp(c, vip)).build()).0, XDP_REDIRECT, "v6={v6}: flow set up");
            let router: IpAddr = if v6 { "fd00:198:18::fe".parse().unwrap() } else { "198.18.0.254".parse().unwrap() };
            let from_client = (&env.lc_mac, &env.client_mac);
            let tracked = mtu_error(from_client, router, vip.ip(), 64, vip, c);
            let want = mtu_error((&env.be_mac[be_index(b)], &env.lbe_mac), router, be.ip(), 63, be, c);
            let untracked = mtu_error(from_client, router, vip.ip(), 64, vip, client(v6, 48001));
            let untracked_from_client = mtu_error(from_client, c.ip(), vip.ip(), 64, vip, client(v6, 48002));
            let cut_quote = quote_cut_by_datagram(&tracked, v6);
            let echo = echo_request(from_client, router, vip.ip());
            let row = |d: &str, input: Vec<u8>, verdict: u32, output: Output, stat: Stat| {
                Fixture::new(format!("v6={v6}: {d}"), input, verdict, output, stat).on(env.lc)
            };
            rows.extend([
                row(
                    "MTU error from a router outside the allowlist about a tracked flow: to the flow's backend",
                    tracked,
                    XDP_REDIRECT,
                    Output::Frame(want),
                    Stat::IcmpToBackend,
                ),
                row(
                    "MTU error from a router outside the allowlist about an untracked flow: dropped",
                    untracked,
                    XDP_DROP,
                    Output::Unchanged,
                    Stat::DropAllowlistCidr,
                ),
                row("echo request from outside the allowlist: dropped", echo, XDP_DROP, Output::Unchanged, Stat::DropAllowlistCidr),
                row(
                    "MTU error from outside about a tracked flow, quote outside the declared datagram: not about the flow, dropped",
                    cut_quote,
                    XDP_DROP,
                    Output::Unchanged,
                    Stat::DropAllowlistCidr,
                ),
                row(
                    "MTU error from an allowed source about an untracked flow: the kernel's",
                    untracked_from_client,
                    XDP_PASS,
                    Output::Unchanged,
                    Stat::PassNotVip,
                ),
            ]);
        }
        run_table(xdp, &rows);
        assert_eq!(xdp.stat(Stat::IcmpToBackend).packets, 2);
        assert_eq!(xdp.stat(Stat::DropAllowlistCidr).packets, 6);
    });
}

/// The reverse-NAT entry of an established flow is looked up and updated
/// only when its conntrack entry is written (new flow, the once-a-second
/// timestamp refresh, FIN/RST), not per packet (docs/xdp.md, "Per-packet
/// cost"): a deleted entry stays missing while conntrack is younger than a
/// second and comes back with the refresh. Nothing of the backend is carried
/// in conntrack, so a removed backend still takes effect on the next packet:
/// the flow moves to a backend of the current table, with a reverse entry
/// for it at once.
#[test]
fn reverse_entries_follow_conntrack_writes_and_a_removed_backend_moves_the_flow_at_once() {
    require_root!();
    with_program(|xdp, env| {
        const SECOND: u64 = 1_000_000_000;
        let (vip, ids) = (vip4(), [1, 2]);
        let c = client(false, 42000);
        let b = predicted(&ids, c, vip, 6);
        let (be, ct_key) = (backend(b), flow_key(c, vip, 6));
        let rev_key = flow_key(be, c, 6);
        let ack = inbound(env, Spec { tcp_flags: 0x10, ..Spec::tcp(c, vip) }).build();
        assert_eq!(run(xdp, env.lc, &inbound(env, Spec::tcp(c, vip)).build()).0, XDP_REDIRECT);
        assert!(reverse_nat(xdp).get(&rev_key, 0).is_ok(), "a new flow inserts its reverse entry");

        let ct = conntrack(xdp).get(&ct_key, 0).unwrap();
        conntrack(xdp).insert(ct_key, lb::FlowState { last_seen_ns: datapath_now_ns() - SECOND / 2, ..ct }, 0).unwrap();
        reverse_nat(xdp).remove(&rev_key).unwrap();
        assert_frame(run(xdp, env.lc, &ack), XDP_REDIRECT, &forwarded_nat(env, b, Spec { tcp_flags: 0x10, ..inbound(env, Spec::tcp(c, vip)) }).build());
        assert!(reverse_nat(xdp).get(&rev_key, 0).is_err(), "an established packet between refreshes must not touch REVERSE_NAT");

        conntrack(xdp).insert(ct_key, lb::FlowState { last_seen_ns: datapath_now_ns() - 2 * SECOND, ..ct }, 0).unwrap();
        assert_eq!(run(xdp, env.lc, &ack).0, XDP_REDIRECT);
        let rev = reverse_nat(xdp).get(&rev_key, 0).expect("the conntrack refresh re-inserts the reverse entry");
        assert_eq!((rev.vip_port, rev.vip_id), (vip.port(), 0));

        // Remove the flow's backend (as a reload does) while conntrack is fresh.
        let other = if b == ids[0] { ids[1] } else { ids[0] };
        {
            let mut dp = xdp.dataplane();
            dp.set_backend(b, &lb::BackendInfo { flags: 0, ..lb_user::dataplane::backend_info(be.ip(), be.port()) }).unwrap();
            set_vip(&mut dp, vip, 6, lb::ALG_MAGLEV, lb::MODE_NAT, 0, &[other]);
        }
        let ct = conntrack(xdp).get(&ct_key, 0).unwrap();
        conntrack(xdp).insert(ct_key, lb::FlowState { last_seen_ns: datapath_now_ns() - SECOND / 2, ..ct }, 0).unwrap();
        assert_frame(run(xdp, env.lc, &ack), XDP_REDIRECT, &forwarded_nat(env, other, Spec { tcp_flags: 0x10, ..inbound(env, Spec::tcp(c, vip)) }).build());
        assert_eq!(conntrack(xdp).get(&ct_key, 0).unwrap().backend_id, other);
        assert!(reverse_nat(xdp).get(&flow_key(backend(other), c, 6), 0).is_ok(), "the moved flow's replies must be translated at once");
    });
}

/// A SYN whose 5-tuple conntrack still ties to a backend that takes no new
/// flows (down: in no table, `BACKEND_HEALTHY` clear) is a new connection
/// reusing the ports of one the dead backend reset; it is balanced afresh.
/// The flow's other packets still reach their backend while it exists, and a
/// retransmitted SYN to a backend that takes new flows keeps it, whatever
/// the table now says.
#[test]
fn a_syn_on_ports_tied_to_a_down_backend_is_balanced_afresh_a_retransmit_to_a_healthy_one_is_not() {
    require_root!();
    with_program(|xdp, env| {
        let (vip, ids) = (vip4(), [1, 2]);
        let c = client(false, 43000);
        let b = predicted(&ids, c, vip, 6);
        let (be, other) = (backend(b), if b == ids[0] { ids[1] } else { ids[0] });
        let (syn, ack) = (inbound(env, Spec::tcp(c, vip)), inbound(env, Spec { tcp_flags: 0x10, ..Spec::tcp(c, vip) }));
        assert_frame(run(xdp, env.lc, &syn.clone().build()), XDP_REDIRECT, &forwarded_nat(env, b, syn.clone()).build());

        // Only the other backend in the table, the flow's still healthy: a
        // retransmitted SYN follows conntrack.
        set_vip(&mut xdp.dataplane(), vip, 6, lb::ALG_MAGLEV, lb::MODE_NAT, 0, &[other]);
        assert_frame(run(xdp, env.lc, &syn.clone().build()), XDP_REDIRECT, &forwarded_nat(env, b, syn.clone()).build());
        assert_eq!(xdp.vip_counter(0).new_flows, 1, "a retransmit is not a new flow");

        // The backend goes down.
        xdp.dataplane().set_backend(b, &lb::BackendInfo { flags: lb::BACKEND_ACTIVE, ..lb_user::dataplane::backend_info(be.ip(), be.port()) }).unwrap();
        assert_frame(run(xdp, env.lc, &ack.clone().build()), XDP_REDIRECT, &forwarded_nat(env, b, ack.clone()).build());
        assert_frame(run(xdp, env.lc, &syn.clone().build()), XDP_REDIRECT, &forwarded_nat(env, other, syn.clone()).build());
        assert_eq!(conntrack(xdp).get(&flow_key(c, vip, 6), 0).unwrap().backend_id, other, "the new connection is tracked to its new backend");
        assert_eq!(xdp.vip_counter(0).new_flows, 2);
        assert!(reverse_nat(xdp).get(&flow_key(backend(other), c, 6), 0).is_ok(), "its replies are translated");
        assert_frame(run(xdp, env.lc, &ack.clone().build()), XDP_REDIRECT, &forwarded_nat(env, other, ack).build());
    });
}

fn reply_sources(xdp: &mut Harness) -> aya::maps::Array<&mut MapData, u64> {
    aya::maps::Array::try_from(xdp.map_mut(map_names::REPLY_SOURCES).unwrap()).unwrap()
}

/// `REVERSE_NAT` is consulted only for a packet whose source address:port
/// has its bit in `REPLY_SOURCES` (docs/xdp.md, "Per-packet cost"): an entry
/// for a source that is no backend is not used until that source is written
/// as a backend, and re-marking the backends (what an lb-user adopting pins
/// without the filter does) restores a cleared filter.
#[test]
fn reverse_nat_is_looked_up_only_for_sources_marked_as_backends() {
    require_root!();
    with_program(|xdp, env| {
        let vip = vip4();
        let c = client(false, 44000);
        let stranger: SocketAddr = SocketAddr::new(xdplb_tests::lab::addr::backend_v4(7).into(), 9090);
        let entry = lb::ReverseNat {
            vip_addr: vip_key(vip.ip(), 0, 0).addr,
            vip_port: vip.port(),
            family: lb::FAMILY_V4,
            last_seen_ns: datapath_now_ns(),
            ..Default::default()
        };
        reverse_nat(xdp).insert(flow_key(stranger, c, 6), entry, 0).unwrap();
        let reply = Spec { eth_dst: env.lbe_mac, eth_src: env.be_mac[0], tcp_flags: 0x10, ..Spec::tcp(stranger, c) }.build();
        let translated = Spec { eth_dst: env.client_mac, eth_src: env.lc_mac, ttl: 63, tcp_flags: 0x10, ..Spec::tcp(vip, c) }.build();
        let (verdict, out) = run(xdp, env.lbe, &reply);
        assert_eq!((verdict, out), (XDP_PASS, reply.clone()), "a source that is no backend is not reverse-NATed");
        assert_eq!(xdp.stat(Stat::ReverseNat).packets, 0);

        xdp.dataplane().set_backend(7, &lb_user::dataplane::backend_info(stranger.ip(), stranger.port())).unwrap();
        assert_frame(run(xdp, env.lbe, &reply), XDP_REDIRECT, &translated);

        // Every backend written has its bit; clear them all, and the reply is
        // the kernel's again until the backends are marked anew.
        let words = lb::REPLY_SOURCE_BITS / 64;
        let set: Vec<u32> = (0..words).filter(|w| reply_sources(xdp).get(w, 0).unwrap() != 0).collect();
        for id in [1, 2, 11, 12, 7] {
            let b = if id == 7 { stranger } else { backend(id) };
            let (addr, family) = lb::addr16(b.ip());
            let (word, mask) = lb::reply_source_bit(&addr, family, b.port());
            assert_ne!(reply_sources(xdp).get(&word, 0).unwrap() & mask, 0, "backend {id}'s bit");
        }
        for w in &set {
            reply_sources(xdp).set(*w, 0, 0).unwrap();
        }
        assert_eq!(run(xdp, env.lbe, &reply).0, XDP_PASS);
        xdp.dataplane().mark_reply_sources_of_backends().unwrap();
        assert_eq!((0..words).filter(|w| reply_sources(xdp).get(w, 0).unwrap() != 0).collect::<Vec<_>>(), set);
        assert_frame(run(xdp, env.lbe, &reply), XDP_REDIRECT, &translated);
        assert_eq!(xdp.stat(Stat::ReverseNat).packets, 2);
    });
}
