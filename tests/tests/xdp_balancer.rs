//! Packet fixtures for the balancer through BPF_PROG_TEST_RUN: input frame →
//! expected verdict and expected output frame, byte for byte. The program
//! runs inside a lab's lb namespace so `bpf_fib_lookup` sees real routes and
//! neighbours; expected frames are built independently (fresh checksums).

use std::net::{IpAddr, SocketAddr};

use aya::{
    maps::{MapData, PerCpuArray},
    programs::{TestRun, TestRunOptions},
    Ebpf,
};
use lb_common::{hash, lb, map_names, PacketCounter, Stat};
use lb_user::{
    dataplane::{backend_info, vip_key, Dataplane},
    program::{self, LoadOptions},
};
use xdplb_tests::{
    lab::{addr, Host, Lab},
    netns,
    packet::{self, Spec},
    require_root,
};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_REDIRECT: u32 = 4;
const SIZE: u32 = 251;
const SEED: u32 = 7;

/// Interfaces and MACs of the lab seen from the lb.
#[derive(Clone, Copy)]
struct Env {
    /// lb's client-side and backend-side ifindexes.
    lc: u32,
    lbe: u32,
    client_mac: [u8; 6],
    lc_mac: [u8; 6],
    lbe_mac: [u8; 6],
    be_mac: [[u8; 6]; 2],
}

fn vip4() -> SocketAddr {
    "198.18.100.1:80".parse().unwrap()
}
fn vip6() -> SocketAddr {
    "[fd00:198:18:100::1]:80".parse().unwrap()
}
fn client(v6: bool, port: u16) -> SocketAddr {
    let ip: IpAddr = if v6 { addr::CLIENT_V6.into() } else { addr::CLIENT_V4.into() };
    SocketAddr::new(ip, port)
}
/// Backend ids: 1, 2 for IPv4 be1, be2; 11, 12 for IPv6.
fn backend(id: u32) -> SocketAddr {
    let i = (id % 10) as u8;
    let ip: IpAddr = if id > 10 { addr::backend_v6(i).into() } else { addr::backend_v4(i).into() };
    SocketAddr::new(ip, 8080)
}

/// Runs `f` in a fresh lab's lb namespace with a loaded, configured program.
fn with_program(f: impl FnOnce(&mut Ebpf, Env) + Send + 'static) {
    let lab = Lab::up_unique("xt", 2).unwrap();
    let env = Env {
        lc: lab.ifindex(Host::Lb, &lab.lb_client_iface()).unwrap(),
        lbe: lab.ifindex(Host::Lb, &lab.lb_backend_iface()).unwrap(),
        client_mac: lab.mac(Host::Client, &lab.client_iface()).unwrap(),
        lc_mac: lab.mac(Host::Lb, &lab.lb_client_iface()).unwrap(),
        lbe_mac: lab.mac(Host::Lb, &lab.lb_backend_iface()).unwrap(),
        be_mac: [lab.mac(Host::Backend(1), &lab.backend_iface(1)).unwrap(), lab.mac(Host::Backend(2), &lab.backend_iface(2)).unwrap()],
    };
    netns::run_in(&lab.ns(Host::Lb), move || {
        // Pin to one CPU: per-CPU round-robin cursors must not hop.
        // SAFETY: plain sched_setaffinity on this thread with a valid set.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(0, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
        let (mut ebpf, _) = program::load_with(&LoadOptions { maglev_size: SIZE, ..Default::default() }, None)?;
        {
            let mut dp = Dataplane::new(&mut ebpf);
            dp.add_tx_port(env.lc)?;
            dp.add_tx_port(env.lbe)?;
            for id in [1, 2, 11, 12] {
                let b = backend(id);
                dp.set_backend(id, &backend_info(b.ip(), b.port()))?;
            }
            set_vip(&mut dp, vip4(), 6, lb::ALG_MAGLEV, lb::MODE_NAT, 0, &[1, 2]);
            set_vip(&mut dp, vip6(), 6, lb::ALG_MAGLEV, lb::MODE_NAT, 1, &[11, 12]);
        }
        f(&mut ebpf, env);
        Ok(())
    })
    .unwrap();
    drop(lab);
}

/// Alternating table over `ids`, the same on every call.
fn table(ids: &[u32]) -> Vec<u32> {
    (0..SIZE).map(|s| ids[s as usize % ids.len()]).collect()
}

fn set_vip(dp: &mut Dataplane, vip: SocketAddr, protocol: u8, algorithm: u8, mode: u8, vip_id: u32, ids: &[u32]) {
    let info = lb::VipInfo { vip_id, algorithm, mode, hash_seed: SEED, ..Default::default() };
    dp.set_vip(&vip_key(vip.ip(), vip.port(), protocol), &info, &table(ids), ids).unwrap();
}

/// The backend id the kernel must pick for a new flow, computed with the
/// shared hash and the table the test wrote.
fn predicted(ids: &[u32], src: SocketAddr, dst: SocketAddr, protocol: u8) -> u32 {
    let h = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => hash::flow_hash_v4(s.octets(), d.octets(), src.port(), dst.port(), protocol, SEED),
        (IpAddr::V6(s), IpAddr::V6(d)) => hash::flow_hash_v6(&s.octets(), &d.octets(), src.port(), dst.port(), protocol, SEED),
        _ => unreachable!(),
    };
    table(ids)[(h % SIZE) as usize]
}

/// Runs one frame as if received on `ifindex`.
fn run(ebpf: &mut Ebpf, ifindex: u32, frame: &[u8]) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; frame.len() + 256];
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex.
    let ctx: Vec<u8> = [0u32, frame.len() as u32, 0, ifindex, 0, 0].iter().flat_map(|v| v.to_ne_bytes()).collect();
    let prog = program::xdp_program(ebpf).unwrap();
    let mut opts = TestRunOptions::new();
    opts.data_in = Some(frame);
    opts.data_out = Some(&mut out);
    opts.ctx_in = Some(&ctx);
    let result = prog.test_run(opts).expect("BPF_PROG_TEST_RUN");
    out.truncate(result.data_size_out as usize);
    (result.return_value, out)
}

fn stat(ebpf: &Ebpf, s: Stat) -> PacketCounter {
    let array = PerCpuArray::<&MapData, PacketCounter>::try_from(ebpf.map(map_names::STATS).unwrap()).unwrap();
    let mut total = PacketCounter::default();
    for v in array.get(&s.index(), 0).unwrap().iter() {
        total.add(v);
    }
    total
}

fn flow_counter(ebpf: &Ebpf, map: &str, index: u32) -> lb::FlowCounter {
    let array = PerCpuArray::<&MapData, lb::FlowCounter>::try_from(ebpf.map(map).unwrap()).unwrap();
    array.get(&index, 0).unwrap().iter().fold(lb::FlowCounter::default(), |mut acc, v| {
        acc.packets += v.packets;
        acc.bytes += v.bytes;
        acc.new_flows += v.new_flows;
        acc
    })
}

fn be_index(id: u32) -> usize {
    (id % 10 - 1) as usize
}

/// Client → VIP frame as it arrives on the lb's client side.
fn inbound<'a>(env: &Env, spec: Spec<'a>) -> Spec<'a> {
    Spec { eth_dst: env.lc_mac, eth_src: env.client_mac, ..spec }
}

fn assert_frame(verdict: (u32, Vec<u8>), want_action: u32, want: &[u8]) {
    assert_eq!(verdict.0, want_action, "verdict");
    packet::verify_checksums(&verdict.1).unwrap();
    assert_eq!(verdict.1, want, "output frame differs from the expected frame");
}

#[test]
fn nat_new_flow_established_flow_and_reply_over_ipv4_and_ipv6() {
    require_root!();
    with_program(|ebpf, env| {
        for v6 in [false, true] {
            let (vip, ids) = if v6 { (vip6(), [11, 12]) } else { (vip4(), [1, 2]) };
            let c = client(v6, 40000);
            let b = predicted(&ids, c, vip, 6);
            let be = backend(b);
            let input = inbound(&env, Spec::tcp(c, vip)).build();
            let want = Spec { eth_dst: env.be_mac[be_index(b)], eth_src: env.lbe_mac, dst: be.ip(), dport: be.port(), ttl: 63, ..inbound(&env, Spec::tcp(c, vip)) }.build();
            assert_frame(run(ebpf, env.lc, &input), XDP_REDIRECT, &want);

            // The backend's SYN-ACK comes back on the backend side and leaves as the VIP.
            let reply = Spec { eth_dst: env.lbe_mac, eth_src: env.be_mac[be_index(b)], tcp_flags: 0x12, ..Spec::tcp(be, c) }.build();
            let want_reply = Spec { eth_dst: env.client_mac, eth_src: env.lc_mac, ttl: 63, tcp_flags: 0x12, ..Spec::tcp(vip, c) }.build();
            assert_frame(run(ebpf, env.lbe, &reply), XDP_REDIRECT, &want_reply);

            // Rebuild the VIP's tables with only the other backend: the
            // established flow keeps its backend, a new flow takes the new table.
            let other = if b == ids[0] { ids[1] } else { ids[0] };
            {
                let mut dp = Dataplane::new(ebpf);
                set_vip(&mut dp, vip, 6, lb::ALG_MAGLEV, lb::MODE_NAT, u32::from(v6), &[other]);
            }
            let ack = inbound(&env, Spec { tcp_flags: 0x10, ..Spec::tcp(c, vip) }).build();
            let want_ack = Spec { eth_dst: env.be_mac[be_index(b)], eth_src: env.lbe_mac, dst: be.ip(), dport: be.port(), ttl: 63, tcp_flags: 0x10, ..inbound(&env, Spec::tcp(c, vip)) }.build();
            assert_frame(run(ebpf, env.lc, &ack), XDP_REDIRECT, &want_ack);
            let c2 = client(v6, 40001);
            let (_, out) = run(ebpf, env.lc, &inbound(&env, Spec::tcp(c2, vip)).build());
            let ob = backend(other);
            let want_new = Spec { eth_dst: env.be_mac[be_index(other)], eth_src: env.lbe_mac, dst: ob.ip(), dport: ob.port(), ttl: 63, ..inbound(&env, Spec::tcp(c2, vip)) }.build();
            assert_eq!(out, want_new, "new flow must use the rebuilt table");
        }
        assert_eq!(stat(ebpf, Stat::ForwardNat).packets, 6);
        assert_eq!(stat(ebpf, Stat::ReverseNat).packets, 2);
        assert_eq!(flow_counter(ebpf, map_names::VIP_STATS, 0).new_flows, 2);
        assert_eq!(flow_counter(ebpf, map_names::VIP_STATS, 0).packets, 3);
    });
}

#[test]
fn dsr_rewrites_only_the_macs() {
    require_root!();
    with_program(|ebpf, env| {
        let vip: SocketAddr = "198.18.100.2:8080".parse().unwrap();
        set_vip(&mut Dataplane::new(ebpf), vip, 6, lb::ALG_MAGLEV, lb::MODE_DSR, 2, &[1, 2]);
        let c = client(false, 41000);
        let b = predicted(&[1, 2], c, vip, 6);
        let input = inbound(&env, Spec::tcp(c, vip)).build();
        let want = Spec { eth_dst: env.be_mac[be_index(b)], eth_src: env.lbe_mac, ttl: 63, ..inbound(&env, Spec::tcp(c, vip)) }.build();
        assert_frame(run(ebpf, env.lc, &input), XDP_REDIRECT, &want);
        assert_eq!(stat(ebpf, Stat::ForwardDsr).packets, 1);
        assert_eq!(flow_counter(ebpf, map_names::BACKEND_STATS, b).new_flows, 1);
    });
}

#[test]
fn udp_vip_is_translated_with_a_valid_checksum() {
    require_root!();
    with_program(|ebpf, env| {
        let vip: SocketAddr = "198.18.100.1:53".parse().unwrap();
        set_vip(&mut Dataplane::new(ebpf), vip, 17, lb::ALG_MAGLEV, lb::MODE_NAT, 3, &[1, 2]);
        let c = client(false, 5353);
        let b = predicted(&[1, 2], c, vip, 17);
        let be = backend(b);
        let input = inbound(&env, Spec::udp(c, vip, b"query")).build();
        let want = Spec { eth_dst: env.be_mac[be_index(b)], eth_src: env.lbe_mac, dst: be.ip(), dport: be.port(), ttl: 63, ..inbound(&env, Spec::udp(c, vip, b"query")) }.build();
        assert_frame(run(ebpf, env.lc, &input), XDP_REDIRECT, &want);
    });
}

#[test]
fn round_robin_cycles_through_healthy_backends() {
    require_root!();
    with_program(|ebpf, env| {
        let vip: SocketAddr = "198.18.100.3:80".parse().unwrap();
        set_vip(&mut Dataplane::new(ebpf), vip, 6, lb::ALG_ROUND_ROBIN, lb::MODE_NAT, 4, &[1, 2]);
        let mut seen = Vec::new();
        for port in 42000..42004 {
            let (verdict, out) = run(ebpf, env.lc, &inbound(&env, Spec::tcp(client(false, port), vip)).build());
            assert_eq!(verdict, XDP_REDIRECT);
            seen.push(out[30..34].to_vec());
        }
        assert_eq!(seen[0], seen[2]);
        assert_eq!(seen[1], seen[3]);
        assert_ne!(seen[0], seen[1], "round robin must alternate");
    });
}

#[test]
fn allowlist_drops_by_source_prefix_and_by_port() {
    require_root!();
    with_program(|ebpf, env| {
        Dataplane::new(ebpf).set_allowlist(&["198.18.0.0/24".parse().unwrap()], Some(&[80]), false).unwrap();
        let outsider: SocketAddr = "198.18.7.7:40000".parse().unwrap();
        assert_eq!(run(ebpf, env.lc, &inbound(&env, Spec::tcp(outsider, vip4())).build()).0, XDP_DROP);
        let other_port: SocketAddr = "198.18.100.1:81".parse().unwrap();
        assert_eq!(run(ebpf, env.lc, &inbound(&env, Spec::tcp(client(false, 40000), other_port)).build()).0, XDP_DROP);
        // Allowed client, allowed port: forwarded. Non-VIP traffic is out of scope: passed.
        assert_eq!(run(ebpf, env.lc, &inbound(&env, Spec::tcp(client(false, 40000), vip4())).build()).0, XDP_REDIRECT);
        assert_eq!(run(ebpf, env.lc, &inbound(&env, Spec::tcp(outsider, backend(1))).build()).0, XDP_PASS);
        // IPv6 has no allowed prefix at all: dropped.
        assert_eq!(run(ebpf, env.lc, &inbound(&env, Spec::tcp(client(true, 40000), vip6())).build()).0, XDP_DROP);
        assert_eq!(stat(ebpf, Stat::DropAllowlistCidr).packets, 2);
        assert_eq!(stat(ebpf, Stat::DropAllowlistPort).packets, 1);
        // Scope "all": non-VIP traffic from outside the prefixes is dropped too.
        Dataplane::new(ebpf).set_allowlist(&["198.18.0.0/24".parse().unwrap()], None, true).unwrap();
        assert_eq!(run(ebpf, env.lc, &inbound(&env, Spec::tcp(outsider, backend(1))).build()).0, XDP_DROP);
        assert_eq!(run(ebpf, env.lc, &inbound(&env, Spec::tcp(client(false, 40000), backend(1))).build()).0, XDP_PASS);
        // ... and with any port allowed, the VIP on port 81 is no longer refused by port.
        assert_eq!(run(ebpf, env.lc, &inbound(&env, Spec::tcp(client(false, 40001), other_port)).build()).0, XDP_PASS);
        assert_eq!(stat(ebpf, Stat::DropAllowlistCidr).packets, 3);
        assert_eq!(stat(ebpf, Stat::DropAllowlistPort).packets, 1);
    });
}

#[test]
fn non_vip_traffic_passes_untouched_and_bad_vip_traffic_is_dropped() {
    require_root!();
    with_program(|ebpf, env| {
        let direct = inbound(&env, Spec::tcp(client(false, 40000), backend(1))).build();
        let (verdict, out) = run(ebpf, env.lc, &direct);
        assert_eq!((verdict, out), (XDP_PASS, direct));

        // Cut inside the TCP header of VIP traffic: dropped, not guessed.
        let full = inbound(&env, Spec::tcp(client(false, 40000), vip4())).build();
        let mut cut = full[..14 + 20 + 10].to_vec();
        cut[16..18].copy_from_slice(&30u16.to_be_bytes()); // IP total length matches the cut
        assert_eq!(run(ebpf, env.lc, &cut).0, XDP_DROP);
        assert_eq!(stat(ebpf, Stat::DropMalformedVip).packets, 1);

        // A fragment (MF set) to the VIP: no ports to balance on, dropped.
        let mut frag = full.clone();
        frag[20] |= 0x20;
        let sum = packet::checksum(&{ let mut h = frag[14..34].to_vec(); h[10] = 0; h[11] = 0; h });
        frag[24..26].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(run(ebpf, env.lc, &frag).0, XDP_DROP);
        assert_eq!(stat(ebpf, Stat::DropFragmentVip).packets, 1);

        // A VIP address on a port that is not balanced: the kernel's business.
        let other: SocketAddr = "198.18.100.1:22".parse().unwrap();
        assert_eq!(run(ebpf, env.lc, &inbound(&env, Spec::tcp(client(false, 40000), other)).build()).0, XDP_PASS);
    });
}

#[test]
fn a_vip_without_backends_drops_new_flows() {
    require_root!();
    with_program(|ebpf, env| {
        let vip: SocketAddr = "198.18.100.9:80".parse().unwrap();
        {
            let mut dp = Dataplane::new(ebpf);
            let info = lb::VipInfo { vip_id: 9, hash_seed: SEED, ..Default::default() };
            dp.set_vip(&vip_key(vip.ip(), vip.port(), 6), &info, &vec![lb::NO_BACKEND; SIZE as usize], &[]).unwrap();
        }
        assert_eq!(run(ebpf, env.lc, &inbound(&env, Spec::tcp(client(false, 40000), vip)).build()).0, XDP_DROP);
        assert_eq!(stat(ebpf, Stat::DropNoBackend).packets, 1);
    });
}

/// Inserts an 802.1Q tag (VLAN 42) after the MAC addresses.
fn tag_vlan(frame: &[u8]) -> Vec<u8> {
    let mut out = frame[..12].to_vec();
    out.extend_from_slice(&[0x81, 0x00, 0x00, 42]);
    out.extend_from_slice(&frame[12..]);
    out
}

/// Adds 4 bytes of NOP options to an IPv4 header (IHL 6), fixing length and checksum.
fn with_ipv4_options(frame: &[u8]) -> Vec<u8> {
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
fn with_ipv6_dstopts(frame: &[u8]) -> Vec<u8> {
    let next = frame[20];
    let mut out = frame[..54].to_vec();
    out.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]); // PadN of 4 bytes
    out.extend_from_slice(&frame[54..]);
    out[20] = 60;
    let len = u16::from_be_bytes([out[18], out[19]]) + 8;
    out[18..20].copy_from_slice(&len.to_be_bytes());
    out
}

#[test]
fn dsr_over_ipv6_rewrites_only_the_macs() {
    require_root!();
    with_program(|ebpf, env| {
        let vip: SocketAddr = "[fd00:198:18:100::2]:8080".parse().unwrap();
        set_vip(&mut Dataplane::new(ebpf), vip, 6, lb::ALG_MAGLEV, lb::MODE_DSR, 5, &[11, 12]);
        let c = client(true, 41000);
        let b = predicted(&[11, 12], c, vip, 6);
        let input = inbound(&env, Spec::tcp(c, vip)).build();
        let want = Spec { eth_dst: env.be_mac[be_index(b)], eth_src: env.lbe_mac, ttl: 63, ..inbound(&env, Spec::tcp(c, vip)) }.build();
        assert_frame(run(ebpf, env.lc, &input), XDP_REDIRECT, &want);
    });
}

#[test]
fn vlan_tags_ipv4_options_and_ipv6_extension_headers_are_parsed_and_kept() {
    require_root!();
    with_program(|ebpf, env| {
        for v6 in [false, true] {
            let (vip, ids) = if v6 { (vip6(), [11, 12]) } else { (vip4(), [1, 2]) };
            let c = client(v6, 43000);
            let b = predicted(&ids, c, vip, 6);
            let be = backend(b);
            let input = inbound(&env, Spec::tcp(c, vip)).build();
            let want = Spec { eth_dst: env.be_mac[be_index(b)], eth_src: env.lbe_mac, dst: be.ip(), dport: be.port(), ttl: 63, ..inbound(&env, Spec::tcp(c, vip)) }.build();
            // The tag stays on the frame; the rest is translated as usual.
            let (verdict, out) = run(ebpf, env.lc, &tag_vlan(&input));
            assert_eq!(verdict, XDP_REDIRECT);
            assert_eq!(out, tag_vlan(&want), "VLAN-tagged frame (v6={v6})");
            let extended = if v6 { with_ipv6_dstopts(&input) } else { with_ipv4_options(&input) };
            let want_ext = if v6 { with_ipv6_dstopts(&want) } else { with_ipv4_options(&want) };
            assert_frame(run(ebpf, env.lc, &extended), XDP_REDIRECT, &want_ext);
        }
    });
}

#[test]
fn truncation_at_every_byte_never_forwards_and_follows_the_documented_rule() {
    require_root!();
    with_program(|ebpf, env| {
        let full = inbound(&env, Spec::tcp(client(false, 44000), vip4())).build();
        for len in 14..full.len() {
            let mut cut = full[..len].to_vec();
            let (verdict, _) = run(ebpf, env.lc, &cut);
            // IP header cut, or IP total length past the frame: malformed, passed.
            assert_eq!(verdict, XDP_PASS, "cut at {len} bytes with the original IP length");
            if len >= 34 {
                // Consistent IP length but the TCP header cut short: VIP traffic dropped.
                let total = (len - 14) as u16;
                cut[16..18].copy_from_slice(&total.to_be_bytes());
                cut[24..26].copy_from_slice(&[0, 0]);
                let sum = packet::checksum(&cut[14..34]);
                cut[24..26].copy_from_slice(&sum.to_be_bytes());
                assert_eq!(run(ebpf, env.lc, &cut).0, XDP_DROP, "TCP header cut at {len} bytes");
            }
        }
        let malformed = stat(ebpf, Stat::PassMalformed).packets;
        assert_eq!(malformed, (full.len() - 14) as u64);
        assert_eq!(stat(ebpf, Stat::DropMalformedVip).packets, (full.len() - 34) as u64);

        // IPv4 total length shorter than the header, and IHL below 5: malformed.
        let mut short = full.clone();
        short[16..18].copy_from_slice(&16u16.to_be_bytes());
        let mut low_ihl = full.clone();
        low_ihl[14] = 0x44;
        for bad in [short, low_ihl] {
            assert_eq!(run(ebpf, env.lc, &bad).0, XDP_PASS);
        }
        assert_eq!(stat(ebpf, Stat::PassMalformed).packets, malformed + 2);
    });
}

#[test]
fn non_first_fragments_to_a_vip_are_dropped_over_ipv4_and_ipv6() {
    require_root!();
    with_program(|ebpf, env| {
        // IPv4: fragment offset 185 (×8 bytes), no MF.
        let mut v4 = inbound(&env, Spec::tcp(client(false, 45000), vip4())).build();
        v4[20..22].copy_from_slice(&185u16.to_be_bytes());
        v4[24..26].copy_from_slice(&[0, 0]);
        let sum = packet::checksum(&v4[14..34]);
        v4[24..26].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(run(ebpf, env.lc, &v4).0, XDP_DROP);
        // IPv6: a fragment header with offset 185.
        let base = inbound(&env, Spec::tcp(client(true, 45000), vip6())).build();
        let mut v6 = base[..54].to_vec();
        v6.extend_from_slice(&[6, 0]);
        v6.extend_from_slice(&(185u16 << 3).to_be_bytes());
        v6.extend_from_slice(&[0, 0, 0, 1]);
        v6.extend_from_slice(&base[54..]);
        v6[20] = 44;
        let len = u16::from_be_bytes([v6[18], v6[19]]) + 8;
        v6[18..20].copy_from_slice(&len.to_be_bytes());
        assert_eq!(run(ebpf, env.lc, &v6).0, XDP_DROP);
        assert_eq!(stat(ebpf, Stat::DropFragmentVip).packets, 2);
        // The same fragment to a non-VIP address is the kernel's to reassemble.
        let mut other = v4.clone();
        other[30..34].copy_from_slice(&[198, 18, 1, 11]);
        other[24..26].copy_from_slice(&[0, 0]);
        let sum = packet::checksum(&other[14..34]);
        other[24..26].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(run(ebpf, env.lc, &other).0, XDP_PASS);
    });
}

/// An ICMP "fragmentation needed" (IPv4) or "packet too big" (IPv6) from
/// `router` to `to`, quoting a TCP packet `quoted_src` → `quoted_dst`; every
/// checksum computed from scratch.
fn mtu_error(eth: (&[u8; 6], &[u8; 6]), router: IpAddr, to: IpAddr, ttl: u8, quoted_src: SocketAddr, quoted_dst: SocketAddr) -> Vec<u8> {
    let tcp8 = {
        let mut t = quoted_src.port().to_be_bytes().to_vec();
        t.extend_from_slice(&quoted_dst.port().to_be_bytes());
        t.extend_from_slice(&1000u32.to_be_bytes());
        t
    };
    let mut f = eth.0.to_vec();
    f.extend_from_slice(eth.1);
    match (router, to, quoted_src.ip(), quoted_dst.ip()) {
        (IpAddr::V4(r), IpAddr::V4(t), IpAddr::V4(qs), IpAddr::V4(qd)) => {
            let mut icmp = vec![3, 4, 0, 0, 0, 0, 0x05, 0x78]; // MTU 1400
            icmp.extend(packet::ipv4(qs, qd, packet::IPPROTO_TCP, 20));
            icmp.extend_from_slice(&tcp8);
            let sum = packet::checksum(&icmp);
            icmp[2..4].copy_from_slice(&sum.to_be_bytes());
            f.extend_from_slice(&packet::ETH_P_IPV4.to_be_bytes());
            let mut ip = packet::ipv4(r, t, packet::IPPROTO_ICMP, icmp.len());
            ip[8] = ttl;
            ip[10..12].copy_from_slice(&[0, 0]);
            let sum = packet::checksum(&ip);
            ip[10..12].copy_from_slice(&sum.to_be_bytes());
            f.extend(ip);
            f.extend(icmp);
        }
        (IpAddr::V6(r), IpAddr::V6(t), IpAddr::V6(qs), IpAddr::V6(qd)) => {
            let mut icmp = vec![2, 0, 0, 0, 0, 0, 0x05, 0x78];
            icmp.extend(packet::ipv6(qs, qd, packet::IPPROTO_TCP, 20));
            icmp.extend_from_slice(&tcp8);
            let sum = packet::l4_checksum(&r.octets(), &t.octets(), 58, &icmp);
            icmp[2..4].copy_from_slice(&sum.to_be_bytes());
            f.extend_from_slice(&packet::ETH_P_IPV6.to_be_bytes());
            let mut ip = packet::ipv6(r, t, 58, icmp.len());
            ip[7] = ttl;
            f.extend(ip);
            f.extend(icmp);
        }
        _ => panic!("mixed families"),
    }
    f
}

#[test]
fn icmp_mtu_errors_about_a_tracked_flow_reach_its_backend_translated() {
    require_root!();
    with_program(|ebpf, env| {
        for v6 in [false, true] {
            let (vip, ids) = if v6 { (vip6(), [11, 12]) } else { (vip4(), [1, 2]) };
            let c = client(v6, 46000);
            let b = predicted(&ids, c, vip, 6);
            let be = backend(b);
            // Establish the flow.
            assert_eq!(run(ebpf, env.lc, &inbound(&env, Spec::tcp(c, vip)).build()).0, XDP_REDIRECT);
            let router: IpAddr = if v6 { "fd00:198:18::fe".parse().unwrap() } else { "198.18.0.254".parse().unwrap() };
            let input = mtu_error((&env.lc_mac, &env.client_mac), router, vip.ip(), 64, vip, c);
            let want = mtu_error((&env.be_mac[be_index(b)], &env.lbe_mac), router, be.ip(), 63, be, c);
            let (verdict, out) = run(ebpf, env.lc, &input);
            assert_eq!(verdict, XDP_REDIRECT, "v6={v6}");
            assert_eq!(out, want, "translated ICMP error (v6={v6})");
            // An MTU error about an unknown flow is left to the kernel.
            let stranger = client(v6, 47000);
            let unknown = mtu_error((&env.lc_mac, &env.client_mac), router, vip.ip(), 64, vip, stranger);
            assert_eq!(run(ebpf, env.lc, &unknown).0, XDP_PASS);
        }
        assert_eq!(stat(ebpf, Stat::IcmpToBackend).packets, 2);
    });
}

/// The conntrack / reverse-NAT key of a flow `src` → `dst`.
fn flow_key(src: SocketAddr, dst: SocketAddr, protocol: u8) -> lb::FlowKey {
    let (s, d) = (vip_key(src.ip(), 0, 0), vip_key(dst.ip(), 0, 0));
    lb::FlowKey { src: s.addr, dst: d.addr, sport: src.port(), dport: dst.port(), protocol, family: s.family, _pad: [0; 2] }
}

/// CLOCK_MONOTONIC in ns: the clock of bpf_ktime_get_ns.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid clock id and out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn conntrack(ebpf: &mut Ebpf) -> aya::maps::HashMap<&mut MapData, lb::FlowKey, lb::FlowState> {
    aya::maps::HashMap::try_from(ebpf.map_mut(map_names::CONNTRACK).unwrap()).unwrap()
}

fn reverse_nat(ebpf: &mut Ebpf) -> aya::maps::HashMap<&mut MapData, lb::FlowKey, lb::ReverseNat> {
    aya::maps::HashMap::try_from(ebpf.map_mut(map_names::REVERSE_NAT).unwrap()).unwrap()
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
    with_program(|ebpf, env| {
        const SECOND: u64 = 1_000_000_000;
        let (vip, ids) = (vip4(), [1, 2]);
        let c = client(false, 41000);
        let b = predicted(&ids, c, vip, 6);
        let be = backend(b);
        let (ct_key, rev_key) = (flow_key(c, vip, 6), flow_key(be, c, 6));
        let ack = inbound(&env, Spec { tcp_flags: 0x10, ..Spec::tcp(c, vip) }).build();
        let reply = Spec { eth_dst: env.lbe_mac, eth_src: env.be_mac[be_index(b)], tcp_flags: 0x10, ..Spec::tcp(be, c) }.build();
        let want_ack = |dmac: [u8; 6]| {
            Spec { eth_dst: dmac, eth_src: env.lbe_mac, dst: be.ip(), dport: be.port(), ttl: 63, tcp_flags: 0x10, ..inbound(&env, Spec::tcp(c, vip)) }.build()
        };
        let want_reply = |dmac: [u8; 6]| Spec { eth_dst: dmac, eth_src: env.lc_mac, ttl: 63, tcp_flags: 0x10, ..Spec::tcp(vip, c) }.build();

        let t0 = monotonic_ns();
        assert_eq!(run(ebpf, env.lc, &inbound(&env, Spec::tcp(c, vip)).build()).0, XDP_REDIRECT);
        let t1 = monotonic_ns();
        let ct = conntrack(ebpf).get(&ct_key, 0).unwrap();
        let rev = reverse_nat(ebpf).get(&rev_key, 0).unwrap();
        assert!((t0..=t1).contains(&ct.last_seen_ns) && (t0..=t1).contains(&rev.last_seen_ns), "{ct:?} {rev:?}");
        assert_eq!(rev.next_hop.ifindex, 0, "no reply yet, so no next hop towards the client");

        // Younger than a second: an established flow's packets leave the
        // timestamps alone (no map update per packet).
        let recent = monotonic_ns() - SECOND / 2;
        conntrack(ebpf).insert(ct_key, lb::FlowState { last_seen_ns: recent, ..ct }, 0).unwrap();
        reverse_nat(ebpf).insert(rev_key, lb::ReverseNat { last_seen_ns: recent, ..rev }, 0).unwrap();
        assert_frame(run(ebpf, env.lc, &ack), XDP_REDIRECT, &want_ack(env.be_mac[be_index(b)]));
        assert_eq!(conntrack(ebpf).get(&ct_key, 0).unwrap().last_seen_ns, recent);
        assert_eq!(reverse_nat(ebpf).get(&rev_key, 0).unwrap().last_seen_ns, recent);
        assert_frame(run(ebpf, env.lbe, &reply), XDP_REDIRECT, &want_reply(env.client_mac));
        let rev = reverse_nat(ebpf).get(&rev_key, 0).unwrap();
        assert_eq!(rev.last_seen_ns, recent, "a reply younger than a second leaves it alone too");
        assert_eq!(rev.next_hop.ifindex, env.lc, "the reply's next hop is remembered in the entry");
        assert_eq!((rev.next_hop.smac, rev.next_hop.dmac), (env.lc_mac, env.client_mac));

        // Two seconds old: the next packet refreshes them in place.
        let old = monotonic_ns() - 2 * SECOND;
        conntrack(ebpf).insert(ct_key, lb::FlowState { last_seen_ns: old, ..ct }, 0).unwrap();
        reverse_nat(ebpf).insert(rev_key, lb::ReverseNat { last_seen_ns: old, ..rev }, 0).unwrap();
        let t2 = monotonic_ns();
        assert_frame(run(ebpf, env.lc, &ack), XDP_REDIRECT, &want_ack(env.be_mac[be_index(b)]));
        assert!(conntrack(ebpf).get(&ct_key, 0).unwrap().last_seen_ns >= t2);
        assert!(reverse_nat(ebpf).get(&rev_key, 0).unwrap().last_seen_ns >= t2);

        // A remembered next hop is used while it is fresh (a planted MAC shows
        // it) and looked up again once it is a second old.
        let planted = [0x02, 0, 0, 0, 0, 0x99];
        let rev = reverse_nat(ebpf).get(&rev_key, 0).unwrap();
        let fresh_hop = lb::NextHop { looked_up_ns: monotonic_ns(), dmac: planted, ..rev.next_hop };
        reverse_nat(ebpf).insert(rev_key, lb::ReverseNat { next_hop: fresh_hop, ..rev }, 0).unwrap();
        assert_frame(run(ebpf, env.lbe, &reply), XDP_REDIRECT, &want_reply(planted));
        let stale_hop = lb::NextHop { looked_up_ns: monotonic_ns() - 2 * SECOND, ..fresh_hop };
        reverse_nat(ebpf).insert(rev_key, lb::ReverseNat { next_hop: stale_hop, ..rev }, 0).unwrap();
        assert_frame(run(ebpf, env.lbe, &reply), XDP_REDIRECT, &want_reply(env.client_mac));

        // The same for the per-CPU next hop towards the backend.
        let cpus = aya::util::nr_cpus().unwrap();
        let mut hops = PerCpuArray::<&mut MapData, lb::BackendHop>::try_from(ebpf.map_mut(map_names::BACKEND_HOPS).unwrap()).unwrap();
        let slot = hops.get(&b, 0).unwrap()[0];
        assert_eq!((slot.addr, slot.ingress_ifindex, slot.hop.ifindex), (vip_key(be.ip(), 0, 0).addr, env.lc, env.lbe), "{slot:?}");
        assert_eq!(slot.hop.dmac, env.be_mac[be_index(b)]);
        let planted_slot = lb::BackendHop { hop: lb::NextHop { looked_up_ns: monotonic_ns(), dmac: planted, ..slot.hop }, ..slot };
        hops.set(b, aya::maps::PerCpuValues::try_from(vec![planted_slot; cpus]).unwrap(), 0).unwrap();
        assert_frame(run(ebpf, env.lc, &ack), XDP_REDIRECT, &want_ack(planted));
        let mut hops = PerCpuArray::<&mut MapData, lb::BackendHop>::try_from(ebpf.map_mut(map_names::BACKEND_HOPS).unwrap()).unwrap();
        let stale_slot = lb::BackendHop { hop: lb::NextHop { looked_up_ns: monotonic_ns() - 2 * SECOND, ..planted_slot.hop }, ..planted_slot };
        hops.set(b, aya::maps::PerCpuValues::try_from(vec![stale_slot; cpus]).unwrap(), 0).unwrap();
        assert_frame(run(ebpf, env.lc, &ack), XDP_REDIRECT, &want_ack(env.be_mac[be_index(b)]));
        // A slot remembered for another address (a reused backend id) is not used.
        let mut hops = PerCpuArray::<&mut MapData, lb::BackendHop>::try_from(ebpf.map_mut(map_names::BACKEND_HOPS).unwrap()).unwrap();
        let other_addr = lb::BackendHop { addr: vip_key(backend(3 - b).ip(), 0, 0).addr, ..planted_slot };
        hops.set(b, aya::maps::PerCpuValues::try_from(vec![other_addr; cpus]).unwrap(), 0).unwrap();
        assert_frame(run(ebpf, env.lc, &ack), XDP_REDIRECT, &want_ack(env.be_mac[be_index(b)]));

        // FIN marks both entries closing, in place.
        let fin = inbound(&env, Spec { tcp_flags: 0x11, ..Spec::tcp(c, vip) }).build();
        assert_eq!(run(ebpf, env.lc, &fin).0, XDP_REDIRECT);
        assert_eq!(conntrack(ebpf).get(&ct_key, 0).unwrap().tcp_state, lb::TCP_CLOSING);
        assert_eq!(reverse_nat(ebpf).get(&rev_key, 0).unwrap().tcp_state, lb::TCP_CLOSING);
    });
}
