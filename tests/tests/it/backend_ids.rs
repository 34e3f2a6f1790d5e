//! Backend ids are a budget of `MAX_BACKENDS` slots: a removed backend's id
//! is retired, never-used ids go first, and once they run out the retired
//! ones are reclaimed, after the conntrack entries still naming them are
//! deleted, so a reload may always bring the config to `MAX_BACKENDS`
//! backends however many came and went before, and no stale flow lands on
//! a newcomer.

use std::net::{IpAddr, Ipv4Addr};

use aya::maps::{HashMap, MapData};
use lb_common::{
    lb::{self, MAX_BACKENDS},
    map_names,
};
use lb_user::{
    config::Config,
    dataplane::{vip_key, Dataplane},
    desired::{self, Desired, IdBook, IdsExhausted},
    program,
};
use xdplb_tests::require_root;

const VIPS: u8 = 4;
const PER_VIP: u16 = 256;

/// `VIPS` × `PER_VIP` backends on ports `base + i`; the first VIP's
/// backend 0 left out when `drop_first`, and `extra` more backends in a
/// fifth VIP, on ports from 30,000.
fn config(base: u16, drop_first: bool, extra: u16) -> Config {
    let mut yaml = String::from("interfaces: [{ name: lo }]\nmaglev: { size: 65537 }\nvips:\n");
    for v in 1..=VIPS {
        yaml.push_str(&format!("  - name: v{v}\n    address: 198.18.100.{v}\n    port: 80\n    backends:\n"));
        for port in (0..PER_VIP).filter(|p| !(drop_first && v == 1 && *p == 0)).map(|p| base + p) {
            yaml.push_str(&format!("      - {{ address: 198.18.1.{v}, port: {port} }}\n"));
        }
    }
    if extra > 0 {
        yaml.push_str("  - name: extra\n    address: 198.18.100.99\n    port: 80\n    backends:\n");
        for port in (0..extra).map(|p| 30_000 + p) {
            yaml.push_str(&format!("      - {{ address: 198.18.1.99, port: {port} }}\n"));
        }
    }
    Config::parse(&yaml, "backend_ids test").unwrap()
}

fn flow_to(ebpf: &mut aya::Ebpf, sport: u16, backend_id: u32) -> lb::FlowKey {
    let src: IpAddr = Ipv4Addr::new(198, 18, 0, 10).into();
    let dst: IpAddr = Ipv4Addr::new(198, 18, 100, 1).into();
    let (s, d) = (vip_key(src, 0, 0), vip_key(dst, 0, 0));
    let key = lb::FlowKey { src: s.addr, dst: d.addr, sport, dport: 80, protocol: 6, family: s.family, _pad: [0; 2] };
    let mut ct = HashMap::<&mut MapData, lb::FlowKey, lb::FlowState>::try_from(ebpf.map_mut(map_names::CONNTRACK).unwrap()).unwrap();
    ct.insert(key, lb::FlowState { backend_id, vip_id: 0, last_seen_ns: 1, tcp_state: 0, _pad: [0; 7] }, 0).unwrap();
    key
}

fn tracked(ebpf: &aya::Ebpf, key: &lb::FlowKey) -> Option<u32> {
    let ct = HashMap::<&MapData, lb::FlowKey, lb::FlowState>::try_from(ebpf.map(map_names::CONNTRACK).unwrap()).unwrap();
    ct.get(key, 0).ok().map(|s| s.backend_id)
}

#[test]
fn retired_backend_ids_are_reclaimed_when_the_ids_run_out_and_their_stale_flows_go_first() {
    require_root!();
    let full = config(10_000, false, 0);
    assert_eq!(full.vips.iter().map(|v| v.backends.len()).sum::<usize>(), MAX_BACKENDS as usize);
    let (mut ebpf, _) = program::load_with(&desired::load_options(&full), None).unwrap();
    let up = |_: usize, _: usize| true;
    let mut ids = IdBook::default();
    let first = Desired::build_reclaiming(&full, &mut ids, &mut Dataplane::new(&mut ebpf), &up).unwrap();
    first.apply(None, &full, &mut Dataplane::new(&mut ebpf)).unwrap();
    let (gone_id, kept_id) = (first.vips[0].backend_ids[0], first.vips[0].backend_ids[1]);
    let stale = flow_to(&mut ebpf, 40_000, gone_id);
    let live = flow_to(&mut ebpf, 40_001, kept_id);

    // Remove one backend: its id is retired, its flow's entry still names it.
    let less = config(10_000, true, 0);
    let second = Desired::build_reclaiming(&less, &mut ids, &mut Dataplane::new(&mut ebpf), &up).unwrap();
    second.apply(Some(&first), &less, &mut Dataplane::new(&mut ebpf)).unwrap();
    assert_eq!(tracked(&ebpf, &stale), Some(gone_id), "removing a backend leaves its flows to the data path");

    // Add another: every id is in use or retired. Without reclaiming that is
    // an error naming the budget ...
    let more = config(10_000, true, 1);
    let err = Desired::build(&more, &mut ids.clone(), &up).unwrap_err();
    assert!(err.is::<IdsExhausted>(), "{err:#}");
    assert!(format!("{err:#}").contains(&format!("no free backend id: {} of {MAX_BACKENDS} in use, 1 retired", MAX_BACKENDS - 1)), "{err:#}");
    // ... with it, the retired id goes to the newcomer once no entry names it.
    let third = Desired::build_reclaiming(&more, &mut ids, &mut Dataplane::new(&mut ebpf), &up).unwrap();
    third.apply(Some(&second), &more, &mut Dataplane::new(&mut ebpf)).unwrap();
    let newcomer = third.vips[VIPS as usize].backend_ids[0];
    assert_eq!(newcomer, gone_id, "the newcomer gets the reclaimed id");
    assert_eq!(tracked(&ebpf, &stale), None, "the stale flow's entry is deleted before its id is reused");
    assert_eq!(tracked(&ebpf, &live), Some(kept_id), "flows of backends that stay are untouched");
    let info = third.backends.iter().find(|(id, _)| *id == newcomer).unwrap().1;
    assert_eq!((info.port, info.flags & lb::BACKEND_ACTIVE), (30_000, lb::BACKEND_ACTIVE));

    // Nothing retired left: replacing every backend at once needs 1,024 new
    // ids while the old ones still hold theirs, so it is refused, and the
    // id book stays as it was. (A config over the budget is refused earlier,
    // when it is read.)
    let before = format!("{ids:?}");
    let replaced = config(20_000, false, 0);
    let err = Desired::build_reclaiming(&replaced, &mut ids, &mut Dataplane::new(&mut ebpf), &up).unwrap_err();
    assert!(format!("{err:#}").contains(&format!("no free backend id: {MAX_BACKENDS} of {MAX_BACKENDS} in use, 0 retired")), "{err:#}");
    assert_eq!(format!("{ids:?}"), before, "a refused build leaves the id book as it was");
}
