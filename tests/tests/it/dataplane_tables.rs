//! lb-user's table writes land where the data path reads them: a VIP's
//! Maglev table and round-robin list go into the inactive half, byte for
//! byte, and the VIP entry flips to it; the other half is left alone.

use aya::maps::{Array, HashMap, MapData};
use lb_common::{
    lb::{self, VipInfo, VipKey, MAX_RR_BACKENDS},
    map_names,
};
use lb_user::{
    dataplane::{vip_key, Dataplane},
    program::{self, LoadOptions},
};
use xdplb_tests::require_root;

const SIZE: u32 = 65537;

/// A table with a different value in every slot (so a shifted or partial
/// write shows), offset by `salt`.
fn table(salt: u32) -> Vec<u32> {
    (0..SIZE).map(|s| (s.wrapping_mul(2654435761) ^ salt) % 1024).collect()
}

fn slots(ebpf: &aya::Ebpf, name: &str, first: u32, n: u32) -> Vec<u32> {
    let array = Array::<&MapData, u32>::try_from(ebpf.map(name).unwrap()).unwrap();
    (first..first + n).map(|i| array.get(&i, 0).unwrap()).collect()
}

fn active(ebpf: &aya::Ebpf, key: &VipKey) -> VipInfo {
    let vips = HashMap::<&MapData, VipKey, VipInfo>::try_from(ebpf.map(map_names::VIPS).unwrap()).unwrap();
    vips.get(key, 0).unwrap()
}

#[test]
fn maglev_and_round_robin_tables_are_written_whole_into_the_inactive_half() {
    require_root!();
    let (mut ebpf, _) = program::load_with(&LoadOptions { maglev_size: SIZE, ..Default::default() }, None).unwrap();
    let key = vip_key("198.18.100.1".parse().unwrap(), 80, 6);
    let vip_id = 3;
    let info = VipInfo { vip_id, algorithm: lb::ALG_MAGLEV, ..Default::default() };
    let (first, rr1) = (table(1), vec![5, 6, 7]);
    Dataplane::new(&mut ebpf).set_vip(&key, &info, &first, &rr1).unwrap();
    let half = |table: u8| vip_id * 2 + u32::from(table);
    let a = active(&ebpf, &key);
    assert_eq!((a.vip_id, a.rr_count), (vip_id, 3));
    assert_eq!(slots(&ebpf, map_names::MAGLEV, half(a.table) * SIZE, SIZE), first);
    assert_eq!(slots(&ebpf, map_names::RR_LIST, half(a.table) * MAX_RR_BACKENDS, 3), rr1);

    // A rebuild goes to the other half; the one the data path was reading is untouched.
    let (second, rr2) = (table(2), vec![9, 8]);
    Dataplane::new(&mut ebpf).set_vip(&key, &info, &second, &rr2).unwrap();
    let b = active(&ebpf, &key);
    assert_ne!(b.table, a.table);
    assert_eq!(b.rr_count, 2);
    assert_eq!(slots(&ebpf, map_names::MAGLEV, half(b.table) * SIZE, SIZE), second);
    assert_eq!(slots(&ebpf, map_names::RR_LIST, half(b.table) * MAX_RR_BACKENDS, 2), rr2);
    assert_eq!(slots(&ebpf, map_names::MAGLEV, half(a.table) * SIZE, SIZE), first);
    // Nothing spilled into the neighbouring VIPs' halves.
    assert_eq!(slots(&ebpf, map_names::MAGLEV, half(0) * SIZE - 1, 1), [0]);
    assert_eq!(slots(&ebpf, map_names::MAGLEV, half(1) * SIZE + SIZE, 1), [0]);

    // A table of the wrong size is refused before anything is written.
    let err = Dataplane::new(&mut ebpf).set_vip(&key, &info, &first[..100], &rr1).unwrap_err();
    assert!(format!("{err:#}").contains("Maglev table has 100 slots"), "{err:#}");
    assert_eq!(active(&ebpf, &key).table, b.table);
}
