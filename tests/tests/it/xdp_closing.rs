//! How a tracked NAT flow closes: a FIN or RST from either side marks its
//! conntrack and reverse-NAT entries closing (docs/xdp.md, steps 3 and 7),
//! and a SYN on its ports is balanced afresh; once it is closed both ways
//! (both FINs, or a RST) a drain counts the flow only until it has been
//! quiet for `CLOSING_GRACE_NS`. The client's side is in xdp_flows.rs
//! (`established_flows_refresh_…`); the backend's side is here.

use lb_common::lb;
use lb_user::dataplane::{datapath_now_ns, CLOSING_GRACE_NS};
use xdplb_tests::{
    packet::Spec,
    require_root,
    testrun::{Harness, XDP_REDIRECT},
};

use crate::xdp_setup::*;

const FIN_ACK: u8 = 0x11;
const RST_ACK: u8 = 0x14;

/// Conntrack entries a drain would still wait for, on backend `id`.
fn live(xdp: &mut Harness, id: u32) -> u64 {
    xdp.dataplane().live_flows(datapath_now_ns()).unwrap().get(&id).copied().unwrap_or(0)
}

/// Makes conntrack entry `key` look quiet for a second longer than the
/// closing grace; returns the entry as written.
fn make_quiet(xdp: &mut Harness, key: lb::FlowKey) -> lb::FlowState {
    let ct = conntrack(xdp).get(&key, 0).unwrap();
    let quiet = lb::FlowState { last_seen_ns: datapath_now_ns() - CLOSING_GRACE_NS - 1_000_000_000, ..ct };
    conntrack(xdp).insert(key, quiet, 0).unwrap();
    quiet
}

/// A backend that resets its connection (killed, or refusing mid-stream) or
/// closes it with a FIN: the reply is still translated, both entries are
/// marked closing, a drain stops counting the flow once it is closed both
/// ways (the reset alone, or the FIN and then the client's) and has been
/// quiet for `CLOSING_GRACE_NS` (not at the idle timeout), and the client's
/// next SYN on those ports takes the current table instead of the old backend.
#[test]
fn a_backend_reset_or_fin_closes_the_flow_for_drains_and_new_connections() {
    require_root!();
    with_program(|xdp, env| {
        for (i, (v6, flags)) in [(false, RST_ACK), (true, RST_ACK), (false, FIN_ACK), (true, FIN_ACK)].into_iter().enumerate() {
            let (vip, ids, vip_id) = if v6 { (vip6(), [11, 12], 1) } else { (vip4(), [1, 2], 0) };
            let c = client(v6, 50000 + i as u16);
            let b = predicted(&ids, c, vip, 6);
            let (be, other) = (backend(b), if b == ids[0] { ids[1] } else { ids[0] });
            let (syn, ct_key) = (inbound(env, Spec::tcp(c, vip)), flow_key(c, vip, 6));
            assert_frame(run(xdp, env.lc, &syn.clone().build()), XDP_REDIRECT, &forwarded_nat(env, b, syn.clone()).build());
            assert_eq!(live(xdp, b), 1, "case {i}: the new flow is live");

            let reply = Spec { eth_dst: env.lbe_mac, eth_src: env.be_mac[be_index(b)], tcp_flags: flags, ..Spec::tcp(be, c) }.build();
            let want = Spec { eth_dst: env.client_mac, eth_src: env.lc_mac, ttl: 63, tcp_flags: flags, ..Spec::tcp(vip, c) }.build();
            assert_frame(run(xdp, env.lbe, &reply), XDP_REDIRECT, &want);
            let reset = flags == RST_ACK;
            let bits = lb::TCP_CLOSING | if reset { lb::TCP_RESET } else { lb::TCP_FIN_BACKEND };
            assert_eq!(conntrack(xdp).get(&ct_key, 0).unwrap().tcp_state, bits, "case {i}: conntrack");
            assert_eq!(reverse_nat(xdp).get(&flow_key(be, c, 6), 0).unwrap().tcp_state, lb::TCP_CLOSING, "case {i}: reverse NAT");
            assert_eq!(live(xdp, b), 1, "case {i}: just closed, still within the grace");
            if !reset {
                // Half-closed by the backend's FIN: the client may still send,
                // after any pause, so a drain counts it until the idle timeout.
                make_quiet(xdp, ct_key);
                assert_eq!(live(xdp, b), 1, "case {i}: half-closed and quiet, still live");
                let fin = inbound(env, Spec { tcp_flags: FIN_ACK, ..Spec::tcp(c, vip) }).build();
                assert_eq!(run(xdp, env.lc, &fin).0, XDP_REDIRECT);
                assert_eq!(conntrack(xdp).get(&ct_key, 0).unwrap().tcp_state, bits | lb::TCP_FIN_CLIENT, "case {i}: both FINs");
            }
            // Closed both ways: not once it has been quiet for the grace.
            let quiet = make_quiet(xdp, ct_key);
            assert_eq!(live(xdp, b), 0, "case {i}: a drain must not wait out the idle timeout for a flow its backend closed");
            conntrack(xdp).insert(ct_key, lb::FlowState { tcp_state: lb::TCP_OPEN, ..quiet }, 0).unwrap();
            assert_eq!(live(xdp, b), 1, "case {i}: an open flow as quiet is still live (idle timeout)");
            conntrack(xdp).insert(ct_key, quiet, 0).unwrap();

            // The old backend is still healthy but out of the table: a SYN
            // on the same ports is a new connection and takes the table.
            set_vip(&mut xdp.dataplane(), vip, 6, lb::ALG_MAGLEV, lb::MODE_NAT, vip_id, &[other]);
            assert_frame(run(xdp, env.lc, &syn.clone().build()), XDP_REDIRECT, &forwarded_nat(env, other, syn.clone()).build());
            set_vip(&mut xdp.dataplane(), vip, 6, lb::ALG_MAGLEV, lb::MODE_NAT, vip_id, &ids);
        }
    });
}

/// The reverse entry names the VIP whose flow wrote it last; a conntrack
/// entry on the same client ports that belongs to another VIP (a NAT
/// collision between VIPs sharing a backend, docs/xdp.md) is not the one
/// the backend closed, and stays open.
#[test]
fn a_backend_reset_leaves_a_conntrack_entry_of_another_vip_open() {
    require_root!();
    with_program(|xdp, env| {
        let (vip, ids) = (vip4(), [1, 2]);
        let c = client(false, 51000);
        let b = predicted(&ids, c, vip, 6);
        let be = backend(b);
        assert_eq!(run(xdp, env.lc, &inbound(env, Spec::tcp(c, vip)).build()).0, XDP_REDIRECT);
        let ct_key = flow_key(c, vip, 6);
        let ct = conntrack(xdp).get(&ct_key, 0).unwrap();
        conntrack(xdp).insert(ct_key, lb::FlowState { vip_id: 7, ..ct }, 0).unwrap();

        let reply = Spec { eth_dst: env.lbe_mac, eth_src: env.be_mac[be_index(b)], tcp_flags: RST_ACK, ..Spec::tcp(be, c) }.build();
        assert_eq!(run(xdp, env.lbe, &reply).0, XDP_REDIRECT);
        assert_eq!(reverse_nat(xdp).get(&flow_key(be, c, 6), 0).unwrap().tcp_state, lb::TCP_CLOSING);
        assert_eq!(conntrack(xdp).get(&ct_key, 0).unwrap().tcp_state, lb::TCP_OPEN, "another VIP's flow");
    });
}

/// In DSR the backend's replies bypass the balancer, so its FIN is never
/// seen: the client's FIN closes the entry (the bare closing bit), and a
/// drain stops counting it once quiet for the grace, as before there were
/// FIN bits, instead of waiting out the idle timeout for a FIN it cannot see.
#[test]
fn a_dsr_clients_fin_closes_the_flow_for_drains() {
    require_root!();
    with_program(|xdp, env| {
        let vip: std::net::SocketAddr = "198.18.100.2:8080".parse().unwrap();
        set_vip(&mut xdp.dataplane(), vip, 6, lb::ALG_MAGLEV, lb::MODE_DSR, 2, &[1, 2]);
        let c = client(false, 52000);
        let b = predicted(&[1, 2], c, vip, 6);
        assert_eq!(run(xdp, env.lc, &inbound(env, Spec::tcp(c, vip)).build()).0, XDP_REDIRECT);
        let fin = inbound(env, Spec { tcp_flags: FIN_ACK, ..Spec::tcp(c, vip) }).build();
        assert_eq!(run(xdp, env.lc, &fin).0, XDP_REDIRECT);
        let ct_key = flow_key(c, vip, 6);
        assert_eq!(conntrack(xdp).get(&ct_key, 0).unwrap().tcp_state, lb::TCP_CLOSING);
        assert_eq!(live(xdp, b), 1, "just closed, within the grace");
        make_quiet(xdp, ct_key);
        assert_eq!(live(xdp, b), 0, "closed and quiet");
    });
}
