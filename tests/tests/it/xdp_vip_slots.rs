//! The established-flow fast path: a packet whose flow is in conntrack finds
//! its VIP in `VIP_SLOTS` under the entry's VIP id, not in `VIPS`
//! (docs/xdp.md, step 5), and lb-user keeps those slots in step with `VIPS`:
//! written with every VIP, emptied when the VIP goes (unless its id went to
//! another VIP first), rebuilt from `VIPS` for adopted pins.

use aya::maps::{Array, HashMap, MapData};
use lb_common::{
    lb::{self, VipInfo, VipKey, VipSlot},
    map_names, Stat,
};
use lb_user::{
    dataplane::{backend_info, vip_key, Dataplane},
    program::{self, LoadOptions},
};
use xdplb_tests::{
    packet::Spec,
    require_root,
    testrun::{Harness, XDP_PASS, XDP_REDIRECT},
};

use crate::xdp_setup::*;

const ACK: u8 = 0x10;

fn vips(xdp: &mut Harness) -> HashMap<&mut MapData, VipKey, VipInfo> {
    HashMap::try_from(xdp.map_mut(map_names::VIPS).unwrap()).unwrap()
}

fn slots(xdp: &mut Harness) -> Array<&mut MapData, VipSlot> {
    Array::try_from(xdp.map_mut(map_names::VIP_SLOTS).unwrap()).unwrap()
}

/// With the VIP's `VIPS` entry gone behind lb-user's back (its slot and
/// address marker left), a tracked flow is still forwarded to its backend,
/// which only the slot can tell it, while a new flow is not balanced. The
/// other way round, an emptied slot leaves the flow to the `VIPS` lookup.
#[test]
fn an_established_flow_finds_its_vip_in_its_slot() {
    require_root!();
    with_program(|xdp, env| {
        for v6 in [false, true] {
            let (vip, ids, vip_id) = if v6 { (vip6(), [11, 12], 1) } else { (vip4(), [1, 2], 0) };
            let c = client(v6, 53000);
            let b = predicted(&ids, c, vip, 6);
            let syn = inbound(env, Spec::tcp(c, vip));
            assert_frame(run(xdp, env.lc, &syn.clone().build()), XDP_REDIRECT, &forwarded_nat(env, b, syn.clone()).build());
            let ack = inbound(env, Spec { tcp_flags: ACK, ..Spec::tcp(c, vip) });
            let forwarded = forwarded_nat(env, b, ack.clone()).build();

            let key = vip_key(vip.ip(), vip.port(), 6);
            let info = vips(xdp).get(&key, 0).unwrap();
            assert_eq!(slots(xdp).get(&vip_id, 0).unwrap(), VipSlot { key, info }, "v6={v6}: set_vip writes the slot");
            vips(xdp).remove(&key).unwrap();
            assert_frame(run(xdp, env.lc, &ack.clone().build()), XDP_REDIRECT, &forwarded);
            let stranger = inbound(env, Spec::tcp(client(v6, 53001), vip)).build();
            assert_eq!(run(xdp, env.lc, &stranger).0, XDP_PASS, "v6={v6}: a new flow needs the VIPS entry");

            vips(xdp).insert(key, info, 0).unwrap();
            slots(xdp).set(vip_id, VipSlot::default(), 0).unwrap();
            assert_frame(run(xdp, env.lc, &ack.clone().build()), XDP_REDIRECT, &forwarded);
            xdp.dataplane().rebuild_vip_slots_from_vips().unwrap();
            assert_eq!(slots(xdp).get(&vip_id, 0).unwrap(), VipSlot { key, info }, "v6={v6}: filled from VIPS");
        }
        assert_eq!(xdp.stat(Stat::ForwardNat).packets, 6);
        assert_eq!(xdp.stat(Stat::PassNotVip).packets, 2);
    });
}

/// A slot holds the VIP's `VIPS` value after each flip (the active table
/// half, which a tracked flow that must choose again is balanced on); the
/// slot of an id another VIP takes names that VIP, so the old VIP's flows
/// fall back to `VIPS`, and removing the old VIP leaves the slot alone.
#[test]
fn a_slot_follows_table_flips_and_the_vip_under_its_id() {
    require_root!();
    with_program(|xdp, env| {
        let (vip, ids) = (vip4(), [1, 2]);
        let key = vip_key(vip.ip(), vip.port(), 6);
        let before = slots(xdp).get(&0, 0).unwrap().info.table;
        set_vip(&mut xdp.dataplane(), vip, 6, lb::ALG_MAGLEV, lb::MODE_NAT, 0, &ids);
        let after = slots(xdp).get(&0, 0).unwrap();
        assert_eq!(after.info.table, 1 - before, "the slot names the half just flipped to");
        assert_eq!(after.info, vips(xdp).get(&key, 0).unwrap());

        // Id 0 now serves another address; the old VIP's entry stays in VIPS
        // (as during an apply, which removes old VIPs last).
        let c = client(false, 54000);
        let b = predicted(&ids, c, vip, 6);
        assert_eq!(run(xdp, env.lc, &inbound(env, Spec::tcp(c, vip)).build()).0, XDP_REDIRECT);
        let moved: std::net::SocketAddr = "198.18.100.9:80".parse().unwrap();
        set_vip(&mut xdp.dataplane(), moved, 6, lb::ALG_MAGLEV, lb::MODE_NAT, 0, &ids);
        assert_eq!(slots(xdp).get(&0, 0).unwrap().key, vip_key(moved.ip(), moved.port(), 6));
        // The old VIP's flow: the slot does not match, VIPS still does.
        let ack = inbound(env, Spec { tcp_flags: ACK, ..Spec::tcp(c, vip) });
        assert_frame(run(xdp, env.lc, &ack.clone().build()), XDP_REDIRECT, &forwarded_nat(env, b, ack.clone()).build());
        // Removing the old VIP leaves the slot to the VIP that took its id.
        xdp.dataplane().remove_vip(&key, false).unwrap();
        assert_eq!(slots(xdp).get(&0, 0).unwrap().key, vip_key(moved.ip(), moved.port(), 6), "another VIP's slot was emptied");
        assert_eq!(run(xdp, env.lc, &ack.build()).0, XDP_PASS, "a removed VIP's flow must not be forwarded");
    });
}

/// `remove_vip` empties the slot first: the removed VIP's tracked flows stop
/// being forwarded on their next packet, as they did when every packet
/// looked its VIP up in `VIPS`.
#[test]
fn a_removed_vips_flows_are_not_forwarded() {
    require_root!();
    with_program(|xdp, env| {
        let vip = vip6();
        let c = client(true, 55000);
        assert_eq!(run(xdp, env.lc, &inbound(env, Spec::tcp(c, vip)).build()).0, XDP_REDIRECT);
        xdp.dataplane().remove_vip(&vip_key(vip.ip(), vip.port(), 6), true).unwrap();
        assert_eq!(slots(xdp).get(&1, 0).unwrap(), VipSlot::default());
        let ack = inbound(env, Spec { tcp_flags: ACK, ..Spec::tcp(c, vip) }).build();
        assert_eq!(run(xdp, env.lc, &ack).0, XDP_PASS);
        assert_eq!(xdp.stat(Stat::PassNotVip).packets, 1);
    });
}

/// A pin directory of its own under bpffs, removed with everything in it
/// however the test ends.
struct PinDir(std::path::PathBuf);

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Adopted pins get `VIP_SLOTS` rebuilt from `VIPS`, markers skipped: pins
/// from an lb-user before it (the pin removed here) get a new one, and a
/// slot an older lb-user left behind for a VIP it removed (planted here) is
/// emptied, so an `attach` without a config (which writes no VIP) neither
/// loses the fast path nor forwards a removed VIP's flows.
#[test]
fn adopted_pins_get_vip_slots_rebuilt_from_vips() {
    require_root!();
    let dir = PinDir(std::path::PathBuf::from(format!("/sys/fs/bpf/xdplb-it-vip-slots-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let opts = LoadOptions { maglev_size: SIZE, ..Default::default() };
    {
        let (mut ebpf, adopted) = program::load_with(&opts, Some(&dir.0)).unwrap();
        assert!(!adopted);
        let mut dp = Dataplane::new(&mut ebpf);
        for id in [1, 11] {
            let b = backend(id);
            dp.set_backend(id, &backend_info(b.ip(), b.port())).unwrap();
        }
        set_vip(&mut dp, vip4(), 6, lb::ALG_MAGLEV, lb::MODE_NAT, 0, &[1]);
        set_vip(&mut dp, vip6(), 6, lb::ALG_MAGLEV, lb::MODE_DSR, 1, &[11]);
    }
    std::fs::remove_file(dir.0.join(map_names::VIP_SLOTS)).unwrap();
    let stale = VipSlot { key: vip_key("198.18.100.7".parse().unwrap(), 443, 6), info: VipInfo { vip_id: 5, ..Default::default() } };
    for round in ["no VIP_SLOTS pin", "a stale slot"] {
        let (mut ebpf, adopted) = program::load_with(&opts, Some(&dir.0)).unwrap();
        assert!(adopted);
        assert!(dir.0.join(map_names::VIP_SLOTS).exists(), "{round}: the adopting load pins VIP_SLOTS");
        let dp = Dataplane::new(&mut ebpf);
        let in_vips: std::collections::BTreeMap<VipKey, VipInfo> = dp.vips().unwrap().into_iter().collect();
        for (id, vip) in [(0, vip4()), (1, vip6())] {
            let key = vip_key(vip.ip(), vip.port(), 6);
            assert_eq!(dp.vip_slot(id).unwrap(), VipSlot { key, info: in_vips[&key] }, "{round}: VIP id {id}");
        }
        assert_eq!(dp.vip_slot(5).unwrap(), VipSlot::default(), "{round}: no VIP has id 5");
        Array::<&mut MapData, VipSlot>::try_from(ebpf.map_mut(map_names::VIP_SLOTS).unwrap()).unwrap().set(5, stale, 0).unwrap();
    }
}
