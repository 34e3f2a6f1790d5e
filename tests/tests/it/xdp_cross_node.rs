//! Consistency across LB nodes (docs/scale-out.md): two program instances
//! loaded side by side stand for two nodes with the same config but the
//! backends listed in another order (so other local ids), over IPv4 and IPv6. Their Maglev
//! tables have the same fingerprint, and a mid-flow TCP packet that reaches
//! the node with no conntrack entry for it goes to the backend the other
//! node's SYN went to, the one Maglev predicts. Also: lb-user's check of a
//! written table against its fingerprint refuses a mismatch before the flip.

use std::net::SocketAddr;

use aya::maps::{HashMap, MapData};
use lb_common::{
    lb::{self, VipInfo, VipKey},
    map_names,
    userspace::select::{fingerprint, flow_hash, Flow, TableFingerprint},
};
use lb_user::{
    config::Config,
    dataplane::{backend_info, vip_key, Dataplane},
    desired::{Desired, IdBook},
    program::{self, LoadOptions},
};
use xdplb_tests::{
    lab::{addr, Lab},
    packet::Spec,
    require_root,
    testrun::{Harness, XDP_REDIRECT},
};

use crate::xdp_setup::{client, conntrack, inbound, run, vip4, vip6};

const SIZE: u32 = 251;
const FLOWS: u16 = 48;

/// The node config: VIPs vip4() and vip6() with the lab's two backends of
/// their family in `order` (1-based), weights 1 and 2.
fn config(order: [u8; 2]) -> Config {
    let backends = |v6: bool| -> String {
        order
            .iter()
            .map(|&i| {
                let a: std::net::IpAddr = if v6 { addr::backend_v6(i).into() } else { addr::backend_v4(i).into() };
                format!("      - {{ address: \"{a}\", port: 8080, weight: {i} }}\n")
            })
            .collect()
    };
    let vip =
        |name: &str, v: SocketAddr, v6: bool| format!("  - name: {name}\n    address: \"{}\"\n    port: {}\n    backends:\n{}", v.ip(), v.port(), backends(v6));
    let text = format!("interfaces: [{{ name: lo }}]\nmaglev: {{ size: {SIZE}, seed: 7 }}\nvips:\n{}{}", vip("web4", vip4(), false), vip("web6", vip6(), true));
    Config::parse(&text, "node.yaml").unwrap()
}

/// The backend a NATed output frame (IPv4 or IPv6, no options) is addressed to.
fn destination(frame: &[u8]) -> SocketAddr {
    if frame[12..14] == [0x86, 0xdd] {
        let ip: [u8; 16] = frame[38..54].try_into().unwrap();
        return SocketAddr::new(std::net::Ipv6Addr::from(ip).into(), u16::from_be_bytes([frame[56], frame[57]]));
    }
    let ip = std::net::Ipv4Addr::new(frame[30], frame[31], frame[32], frame[33]);
    SocketAddr::new(ip.into(), u16::from_be_bytes([frame[36], frame[37]]))
}

#[test]
fn nodes_with_reordered_backends_agree_and_mid_flow_packets_follow_maglev() {
    require_root!();
    let lab = Lab::up_unique("xn", 2).unwrap();
    let env = xdplb_tests::testrun::lab::LabEnv::of(&lab).unwrap();
    env.run(LoadOptions { maglev_size: SIZE, ..Default::default() }, move |a, env| {
        // The second node: its own program instance in the same namespace.
        let mut b = Harness::load_with(&LoadOptions { maglev_size: SIZE, ..Default::default() })?;
        b.dataplane().add_tx_port(env.lc)?;
        b.dataplane().add_tx_port(env.lbe)?;
        let (ca, cb) = (config([1, 2]), config([2, 1]));
        let da = Desired::build(&ca, &mut IdBook::default(), &|_, _| true)?;
        let db = Desired::build(&cb, &mut IdBook::default(), &|_, _| true)?;
        // apply checks each written table against its fingerprint.
        da.apply(None, &ca, &mut a.dataplane())?;
        db.apply(None, &cb, &mut b.dataplane())?;
        for (vi, v6) in [(0, false), (1, true)] {
            let (va, vb, vip) = (&da.vips[vi], &db.vips[vi], if v6 { vip6() } else { vip4() });
            // backend_ids follow config order: the same backend has another id on each node.
            let be1 = |d: &Desired, v: &lb_user::desired::DesiredVip| {
                let first = d.backends.iter().find(|(id, _)| *id == v.backend_ids[0]).unwrap().1;
                (lb_user::stats::map_addr(&first.addr, first.family), v.backend_ids[0])
            };
            let ((addr_a, id_a), (addr_b, id_b)) = (be1(&da, va), be1(&db, vb));
            assert_ne!(addr_a, addr_b, "id {id_a} names another backend on each node");
            assert_eq!(id_a, id_b);
            assert_ne!(va.maglev, vb.maglev, "so their raw tables differ");
            assert_eq!(va.fingerprint, vb.fingerprint, "but the fingerprints agree");

            let mut seen = std::collections::BTreeSet::new();
            for port in 0..FLOWS {
                let c = client(v6, 43000 + port);
                // Maglev's choice, from node A's table and the shared hash.
                let h = flow_hash(&Flow::tcp(c, vip), 7, false).unwrap();
                let id = va.maglev[(h % SIZE) as usize];
                let info = da.backends.iter().find(|(i, _)| *i == id).unwrap().1;
                let want = SocketAddr::new(lb_user::stats::map_addr(&info.addr, info.family), info.port);

                let syn = inbound(env, Spec::tcp(c, vip)).build();
                let (verdict, out) = run(a, env.lc, &syn);
                assert_eq!((verdict, destination(&out)), (XDP_REDIRECT, want), "SYN of {c} on node A");
                // The next packet of the flow reaches node B, which never saw the SYN.
                let ack = inbound(env, Spec { tcp_flags: 0x10, ..Spec::tcp(c, vip) }).build();
                let (verdict, out) = run(&mut b, env.lc, &ack);
                assert_eq!((verdict, destination(&out)), (XDP_REDIRECT, want), "mid-flow ACK of {c} on node B");
                seen.insert(want);
            }
            assert_eq!(seen.len(), 2, "the flows reached both backends (v6={v6})");
        }
        // Node B now tracks the flows it picked up mid-flow.
        assert_eq!(conntrack(&mut b).keys().count(), 2 * usize::from(FLOWS));
        Ok(())
    })
    .unwrap();
    drop(lab);
}

#[test]
fn a_table_that_reads_back_with_another_fingerprint_is_not_flipped_live() {
    require_root!();
    let (mut ebpf, _) = program::load_with(&LoadOptions { maglev_size: SIZE, ..Default::default() }, None).unwrap();
    let key = vip_key(vip4().ip(), vip4().port(), 6);
    let info = VipInfo { vip_id: 2, algorithm: lb::ALG_MAGLEV, ..Default::default() };
    let mut dp = Dataplane::new(&mut ebpf);
    let keys = ["198.18.1.11:8080", "198.18.1.12:8080"];
    for (id, k) in keys.iter().enumerate() {
        let b: SocketAddr = k.parse().unwrap();
        dp.set_backend(id as u32, &backend_info(b.ip(), b.port())).unwrap();
    }
    let table: Vec<u32> = (0..SIZE).map(|s| s % 2).collect();
    let right = fingerprint(&table, |id| keys.get(id as usize)).unwrap();
    dp.set_vip_checked(&key, &info, &table, &[0, 1], right).unwrap();
    let live = |ebpf: &aya::Ebpf| HashMap::<&MapData, VipKey, VipInfo>::try_from(ebpf.map(map_names::VIPS).unwrap()).unwrap().get(&key, 0).unwrap();
    let before = live(&ebpf);

    // The config computed one table, the map holds another: refused.
    let other: Vec<u32> = (0..SIZE).map(|s| (s + 1) % 2).collect();
    let err = Dataplane::new(&mut ebpf).set_vip_checked(&key, &info, &other, &[0, 1], right).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("Maglev table check failed") && msg.contains(&right.to_string()) && msg.contains("keeps its previous table"), "{msg}");
    assert_eq!(live(&ebpf).table, before.table, "not flipped");
    // A slot naming a backend id BACKENDS does not hold is an error too.
    let stray: Vec<u32> = (0..SIZE).map(|s| if s == 5 { 9 } else { s % 2 }).collect();
    let err = Dataplane::new(&mut ebpf).set_vip_checked(&key, &info, &stray, &[0, 1], TableFingerprint(0)).unwrap_err();
    assert!(format!("{err:#}").contains("slot 5 of the Maglev table holds backend id 9"), "{err:#}");
    assert_eq!(live(&ebpf).table, before.table);
}
