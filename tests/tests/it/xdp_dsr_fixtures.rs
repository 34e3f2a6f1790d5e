//! DSR fixtures through BPF_PROG_TEST_RUN (the table format of
//! xdp_fixtures.rs): only the MACs and TTL change; a backend's configured
//! `mac` is used without any lookup, out of the ingress interface.

use std::net::SocketAddr;

use lb_common::{lb, Stat};
use lb_user::dataplane::backend_info;
use xdplb_tests::{
    packet::Spec,
    require_root,
    testrun::table::{run_table, Fixture, Output},
    testrun::{XDP_REDIRECT, XDP_TX},
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
        assert_eq!(xdp.backend_counter(b).new_flows, 1);
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
fn dsr_to_a_configured_mac_goes_back_out_without_a_lookup() {
    require_root!();
    with_program(|xdp, env| {
        // MACs nobody on the lab holds: the output can only come from the
        // config, never from a route or neighbour lookup.
        let macs = [[2, 0, 0, 0, 0xd5, 1], [2, 0, 0, 0, 0xd5, 2]];
        let vip4: SocketAddr = "198.18.100.3:8080".parse().unwrap();
        let vip6: SocketAddr = "[fd00:198:18:100::3]:8080".parse().unwrap();
        {
            let mut dp = xdp.dataplane();
            for (id, mac) in [(1, macs[0]), (2, macs[1]), (11, macs[0]), (12, macs[1])] {
                let b = backend(id);
                dp.set_backend(id, &lb::BackendInfo { mac, ..backend_info(b.ip(), b.port()) }).unwrap();
            }
        }
        set_vip(&mut xdp.dataplane(), vip4, 6, lb::ALG_MAGLEV, lb::MODE_DSR, 7, &[1, 2]);
        set_vip(&mut xdp.dataplane(), vip6, 6, lb::ALG_MAGLEV, lb::MODE_DSR, 8, &[11, 12]);
        let rows = [(false, vip4, [1, 2]), (true, vip6, [11, 12])].map(|(v6, vip, ids)| {
            let c = client(v6, 41000);
            let b = predicted(&ids, c, vip, 6);
            // Out of the interface it came in on: the backend's MAC as
            // destination, the interface's own (the old destination) as source.
            let want = Spec { eth_dst: macs[be_index(b)], eth_src: env.lc_mac, ttl: 63, ..inbound(env, Spec::tcp(c, vip)) }.build();
            Fixture::new(
                format!("DSR over IPv{} to a configured MAC: XDP_TX, IP unchanged", if v6 { 6 } else { 4 }),
                inbound(env, Spec::tcp(c, vip)).build(),
                XDP_TX,
                Output::Frame(want),
                Stat::ForwardDsr,
            )
            .on(env.lc)
        });
        run_table(xdp, &rows);
    });
}
