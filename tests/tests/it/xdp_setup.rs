//! What the balancer fixtures (xdp_fixtures.rs) and flows (xdp_flows.rs,
//! xdp_closing.rs, xdp_vip_slots.rs) share: a lab with two backends, the program loaded in its
//! lb namespace with two NAT VIPs, the predicted backend of a flow, map
//! accessors and frame builders.
//! Expected frames are built independently of the program (fresh checksums).

use std::net::{IpAddr, SocketAddr};

use aya::maps::MapData;
use lb_common::{hash, lb, map_names};
use lb_user::{
    dataplane::{backend_info, vip_key, Dataplane},
    program::LoadOptions,
};
use xdplb_tests::{
    lab::{addr, Lab},
    packet::{self, Spec},
    testrun::{lab::LabEnv, Harness},
};

pub const SIZE: u32 = 251;
pub const SEED: u32 = 7;

pub fn vip4() -> SocketAddr {
    "198.18.100.1:80".parse().unwrap()
}
pub fn vip6() -> SocketAddr {
    "[fd00:198:18:100::1]:80".parse().unwrap()
}
pub fn client(v6: bool, port: u16) -> SocketAddr {
    let ip: IpAddr = if v6 { addr::CLIENT_V6.into() } else { addr::CLIENT_V4.into() };
    SocketAddr::new(ip, port)
}
/// Backend ids: 1, 2 for IPv4 be1, be2; 11, 12 for IPv6.
pub fn backend(id: u32) -> SocketAddr {
    let i = (id % 10) as u8;
    let ip: IpAddr = if id > 10 { addr::backend_v6(i).into() } else { addr::backend_v4(i).into() };
    SocketAddr::new(ip, 8080)
}
pub fn be_index(id: u32) -> usize {
    (id % 10 - 1) as usize
}

/// Runs `f` in a fresh lab's lb namespace with a loaded program: backends
/// 1, 2, 11, 12 and NAT VIPs vip4() (id 0, backends 1, 2) and vip6() (id 1,
/// backends 11, 12).
pub fn with_program(f: impl FnOnce(&mut Harness, &LabEnv) + Send + 'static) {
    let lab = Lab::up_unique("xt", 2).unwrap();
    let env = LabEnv::of(&lab).unwrap();
    env.run(LoadOptions { maglev_size: SIZE, ..Default::default() }, move |xdp, env| {
        {
            let mut dp = xdp.dataplane();
            for id in [1, 2, 11, 12] {
                let b = backend(id);
                dp.set_backend(id, &backend_info(b.ip(), b.port()))?;
            }
            set_vip(&mut dp, vip4(), 6, lb::ALG_MAGLEV, lb::MODE_NAT, 0, &[1, 2]);
            set_vip(&mut dp, vip6(), 6, lb::ALG_MAGLEV, lb::MODE_NAT, 1, &[11, 12]);
        }
        f(xdp, env);
        Ok(())
    })
    .unwrap();
    drop(lab);
}

/// Alternating table over `ids`, the same on every call.
pub fn table(ids: &[u32]) -> Vec<u32> {
    (0..SIZE).map(|s| ids[s as usize % ids.len()]).collect()
}

pub fn set_vip(dp: &mut Dataplane, vip: SocketAddr, protocol: u8, algorithm: u8, mode: u8, vip_id: u32, ids: &[u32]) {
    let info = lb::VipInfo { vip_id, algorithm, mode, hash_seed: SEED, ..Default::default() };
    dp.set_vip(&vip_key(vip.ip(), vip.port(), protocol), &info, &table(ids), ids).unwrap();
}

/// The backend id the kernel must pick for a new flow, computed with the
/// shared hash and the table the test wrote.
pub fn predicted(ids: &[u32], src: SocketAddr, dst: SocketAddr, protocol: u8) -> u32 {
    let h = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => hash::flow_hash_v4(s.octets(), d.octets(), src.port(), dst.port(), protocol, SEED),
        (IpAddr::V6(s), IpAddr::V6(d)) => hash::flow_hash_v6(&s.octets(), &d.octets(), src.port(), dst.port(), protocol, SEED),
        _ => unreachable!(),
    };
    table(ids)[(h % SIZE) as usize]
}

/// The program's conntrack map.
pub fn conntrack(xdp: &mut Harness) -> aya::maps::HashMap<&mut MapData, lb::FlowKey, lb::FlowState> {
    aya::maps::HashMap::try_from(xdp.map_mut(map_names::CONNTRACK).unwrap()).unwrap()
}

/// The program's reverse-NAT map.
pub fn reverse_nat(xdp: &mut Harness) -> aya::maps::HashMap<&mut MapData, lb::FlowKey, lb::ReverseNat> {
    aya::maps::HashMap::try_from(xdp.map_mut(map_names::REVERSE_NAT).unwrap()).unwrap()
}

/// The conntrack / reverse-NAT key of a flow `src` → `dst`.
pub fn flow_key(src: SocketAddr, dst: SocketAddr, protocol: u8) -> lb::FlowKey {
    let (s, d) = (vip_key(src.ip(), 0, 0), vip_key(dst.ip(), 0, 0));
    lb::FlowKey { src: s.addr, dst: d.addr, sport: src.port(), dport: dst.port(), protocol, family: s.family, _pad: [0; 2] }
}

/// Runs one frame as if received on `ifindex`: (verdict, output frame).
pub fn run(xdp: &mut Harness, ifindex: u32, frame: &[u8]) -> (u32, Vec<u8>) {
    let out = xdp.run_on(ifindex, frame);
    (out.verdict, out.frame)
}

/// Client → VIP frame as it arrives on the lb's client side.
pub fn inbound<'a>(env: &LabEnv, spec: Spec<'a>) -> Spec<'a> {
    Spec { eth_dst: env.lc_mac, eth_src: env.client_mac, ..spec }
}

/// `spec` NAT-forwarded to backend `id`: its MACs, address and port, TTL 63.
pub fn forwarded_nat<'a>(env: &LabEnv, id: u32, spec: Spec<'a>) -> Spec<'a> {
    let be = backend(id);
    Spec { eth_dst: env.be_mac[be_index(id)], eth_src: env.lbe_mac, dst: be.ip(), dport: be.port(), ttl: 63, ..spec }
}

pub fn assert_frame(verdict: (u32, Vec<u8>), want_action: u32, want: &[u8]) {
    assert_eq!(verdict.0, want_action, "verdict");
    packet::verify_checksums(&verdict.1).unwrap();
    assert_eq!(verdict.1, want, "output frame differs from the expected frame");
}

/// Recomputes the IPv4 header checksum of an Ethernet/IPv4 frame (after a
/// test edited the header).
pub fn fix_ipv4_checksum(frame: &mut [u8]) {
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    frame[24..26].copy_from_slice(&[0, 0]);
    let sum = packet::checksum(&frame[14..14 + ihl]);
    frame[24..26].copy_from_slice(&sum.to_be_bytes());
}

/// Inserts an 802.1Q tag (VLAN 42) after the MAC addresses.
pub fn tag_vlan(frame: &[u8]) -> Vec<u8> {
    let mut out = frame[..12].to_vec();
    out.extend_from_slice(&[0x81, 0x00, 0x00, 42]);
    out.extend_from_slice(&frame[12..]);
    out
}

/// Adds 4 bytes of NOP options to an IPv4 header (IHL 6), fixing length and checksum.
pub fn with_ipv4_options(frame: &[u8]) -> Vec<u8> {
    let mut out = frame[..34].to_vec();
    out.extend_from_slice(&[1, 1, 1, 1]);
    out.extend_from_slice(&frame[34..]);
    out[14] = 0x46;
    let total = u16::from_be_bytes([out[16], out[17]]) + 4;
    out[16..18].copy_from_slice(&total.to_be_bytes());
    out[24..26].copy_from_slice(&[0, 0]);
    let sum = packet::checksum(&out[14..38]);
    out[24..26].copy_from_slice(&sum.to_be_bytes());
    out
}

/// Adds an 8-byte destination-options extension header to an IPv6 frame.
pub fn with_ipv6_dstopts(frame: &[u8]) -> Vec<u8> {
    let next = frame[20];
    let mut out = frame[..54].to_vec();
    out.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]); // PadN of 4 bytes
    out.extend_from_slice(&frame[54..]);
    out[20] = 60;
    let len = u16::from_be_bytes([out[18], out[19]]) + 8;
    out[18..20].copy_from_slice(&len.to_be_bytes());
    out
}
