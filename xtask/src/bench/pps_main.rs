//! `bench-pps`: the packet-rate bench's measurements, run by `cargo xtask
//! bench pps` (an example of xtask for the same reason as bench-xdp-cost:
//! xtask itself must build without the eBPF toolchain). Prints one JSON
//! object of raw per-repetition figures; xtask's `bench::pps` summarises.
//!
//! Usage: `bench-pps [--quick]`. Brings up its own one-backend lab and,
//! for IPv4 and then IPv6 in every repetition:
//!
//! - attaches the pktgen object's `sink` (XDP_DROP, counting) natively on
//!   the switch's port facing the lb: the far end of every forward;
//! - per case, puts the forwarder on the lb's client interface: the
//!   balancer (NAT or DSR VIP, native XDP), or the `sink` program in
//!   XDP_PASS mode (it counts arrivals and gives veth the NAPI instance that
//!   XDP transmission into it needs) followed by plain kernel forwarding or
//!   nftables DNAT, or `sink` in XDP_DROP mode (the baseline: generator and
//!   one veth hop only);
//! - runs the `pktgen` program in the client namespace on CPU 0 through
//!   BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES: every repetition is
//!   one frame of another flow, sent with XDP_TX towards the lb. The receive
//!   processing of each 64-frame batch runs in softirq on the same CPU when
//!   the batch ends, so one core carries generator, forwarder and sink, and
//!   the kernel's timer (which stops while the thread is rescheduled) gives
//!   ns per packet of the whole chain;
//! - counts where the frames went: generated (pktgen's per-CPU counter),
//!   at the lb (XDP stats, or the pass sink), the nftables rule counter, and
//!   delivered to the expected destination at the far sink.
//!
//! Then the program cost (`cost`): the generator's header rewrite as a
//! prologue that tail-calls the balancer (or the trivial `pass` program)
//! in the lb namespace, plain (not live) test runs with `repeat`, so every
//! repetition times one genuine established-flow packet; the prologue alone
//! and the trivial program alone (no prologue) are measured too. The
//! target's ratio is prologue → balancer over prologue → XDP_PASS: both
//! chains pay the kernel's per-repetition overhead and the frame restore.

#[path = "pktgen_run.rs"]
mod pktgen_run;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use anyhow::{bail, Context as _, Result};
use aya::{
    maps::{Array, MapData, PerCpuArray, ProgramArray},
    programs::XdpMode,
    Ebpf,
};
use lb_common::{
    lb,
    pktgen::{self, SinkConfig, SinkCounts},
    Stat,
};
use lb_user::{
    dataplane::{backend_info, vip_key},
    program::{self, LoadOptions},
};
use xdplb_tests::{
    lab::{addr, Host, Lab},
    netns,
    testrun::{Harness, XDP_DROP, XDP_PASS, XDP_REDIRECT, XDP_TX},
};

use self::pktgen_run::{gen_config, generate, generated, load_xdp, pktgen_object, set_gen, test_run};

const MAGLEV: u32 = 251;
const NFT_TABLE: &str = "xdplb_pps";

/// Sizes of one run.
struct Plan {
    reps: u32,
    /// Frames per established-flow measurement.
    packets: u32,
    /// Established flows cycled through.
    flows: u64,
    /// SYNs (each a new flow) per measurement.
    syns: u32,
    /// Repetitions per program-cost timing.
    cost_repeat: u32,
}

#[derive(Clone, Copy, PartialEq)]
enum Case {
    Baseline,
    Kernel,
    Nft,
    XdpNat,
    XdpDsr,
}

const CASES: [Case; 5] = [Case::Baseline, Case::Kernel, Case::Nft, Case::XdpNat, Case::XdpDsr];

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::Baseline => "baseline",
            Case::Kernel => "kernel-forward",
            Case::Nft => "nftables-dnat",
            Case::XdpNat => "xdp-nat",
            Case::XdpDsr => "xdp-dsr",
        }
    }

    /// Where the generator sends, and where the far sink expects the
    /// frames, in IPv4 or (`v6`) IPv6.
    fn addresses(self, v6: bool) -> (SocketAddr, SocketAddr) {
        let be = |port| SocketAddr::new(backend(v6), port);
        let vip = |last: u8, port| {
            let ip: IpAddr =
                if v6 { Ipv6Addr::new(0xfd00, 0x198, 0x18, 0x100, 0, 0, 0, u16::from(last)).into() } else { Ipv4Addr::new(198, 18, 100, last).into() };
            SocketAddr::new(ip, port)
        };
        match self {
            Case::Baseline | Case::Kernel => (be(8081), be(8081)),
            Case::Nft => (vip(4, 80), be(8085)),
            Case::XdpNat => (vip(1, 80), be(8082)),
            // DSR keeps the destination: the backend holds the VIP.
            Case::XdpDsr => (vip(2, 8083), vip(2, 8083)),
        }
    }
}

/// The lab's one backend.
fn backend(v6: bool) -> IpAddr {
    if v6 {
        addr::backend_v6(1).into()
    } else {
        addr::backend_v4(1).into()
    }
}

/// The families measured, with their report names.
const FAMILIES: [(bool, &str); 2] = [(false, "ipv4"), (true, "ipv6")];

/// What sits on the lb's client interface during a case.
enum Forwarder {
    Balancer(Harness),
    Sink(Ebpf),
}

fn main() -> Result<()> {
    let quick = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--quick") => true,
        Some(other) => bail!("unknown argument {other:?}; usage: bench-pps [--quick]"),
    };
    let plan = if quick {
        Plan { reps: 2, packets: 100_000, flows: 2_000, syns: 20_000, cost_repeat: 100_000 }
    } else {
        Plan { reps: 5, packets: 1_000_000, flows: 10_000, syns: 50_000, cost_repeat: 1_000_000 }
    };
    let lab = Lab::up_unique("xp", 1)?;
    let out = run(&lab, &plan)?;
    println!("{out}");
    Ok(())
}

/// Loads `sink` in `ns` with `cfg` and attaches it natively to `iface`.
fn attach_sink(ns: &str, iface: &str, cfg: SinkConfig) -> Result<Ebpf> {
    let mut ebpf = pktgen_object(ns)?;
    Array::<_, SinkConfig>::try_from(ebpf.map_mut(pktgen::SINK_CONFIG).context("sink config")?)?.set(0, cfg, 0)?;
    let iface = iface.to_owned();
    netns::run_in(ns, move || {
        load_xdp(&mut ebpf, pktgen::SINK)?.attach(&iface, XdpMode::Driver).with_context(|| format!("attaching the sink to {iface}"))?;
        Ok(ebpf)
    })
}

fn sink_config(to: SocketAddr, action: u32) -> SinkConfig {
    let mut daddr = [0u8; 16];
    let v6 = match to.ip() {
        IpAddr::V4(ip) => {
            daddr[..4].copy_from_slice(&ip.octets());
            0
        }
        IpAddr::V6(ip) => {
            daddr = ip.octets();
            1
        }
    };
    SinkConfig { daddr, dport: to.port().to_be_bytes(), v6, action, ..Default::default() }
}

fn sink_counts(ebpf: &Ebpf) -> Result<SinkCounts> {
    let a = PerCpuArray::<&MapData, SinkCounts>::try_from(ebpf.map(pktgen::SINK_COUNTS).context("sink counts")?)?;
    Ok(a.get(&0, 0)?.iter().fold(SinkCounts::default(), |acc, c| SinkCounts { frames: acc.frames + c.frames, matched: acc.matched + c.matched }))
}

/// Puts `case`'s forwarder on the lb's client interface.
fn forwarder(lab: &Lab, case: Case, v6: bool) -> Result<Forwarder> {
    let lb_ns = lab.ns(Host::Lb);
    let (lc, lbe) = (lab.lb_client_iface(), lab.lb_backend_iface());
    let (to, _) = case.addresses(v6);
    match case {
        Case::Baseline => Ok(Forwarder::Sink(attach_sink(&lb_ns, &lc, sink_config(to, XDP_DROP))?)),
        Case::Kernel | Case::Nft => Ok(Forwarder::Sink(attach_sink(&lb_ns, &lc, sink_config(to, XDP_PASS))?)),
        Case::XdpNat | Case::XdpDsr => {
            let (lc_index, lbe_index) = (lab.ifindex(Host::Lb, &lc)?, lab.ifindex(Host::Lb, &lbe)?);
            // NAT rewrites to the backend's own port; DSR cannot rewrite it.
            let be = SocketAddr::new(backend(v6), if case == Case::XdpNat { 8082 } else { to.port() });
            let mode = if case == Case::XdpNat { lb::MODE_NAT } else { lb::MODE_DSR };
            let xdp = netns::run_in(&lb_ns, move || {
                let mut xdp = Harness::load_with(&LoadOptions { maglev_size: MAGLEV, ..Default::default() })?;
                {
                    let mut dp = xdp.dataplane();
                    dp.add_tx_port(lc_index)?;
                    dp.add_tx_port(lbe_index)?;
                    dp.set_backend(1, &backend_info(be.ip(), be.port()))?;
                    let info = lb::VipInfo { vip_id: 0, algorithm: lb::ALG_MAGLEV, mode, hash_seed: 7, ..Default::default() };
                    dp.set_vip(&vip_key(to.ip(), to.port(), 6), &info, &vec![1u32; MAGLEV as usize], &[1])?;
                }
                program::xdp_program(&mut xdp)?.attach(&lc, XdpMode::Driver).context("attaching the balancer natively")?;
                Ok(xdp)
            })?;
            Ok(Forwarder::Balancer(xdp))
        }
    }
}

/// The counter at the lb that proves the frames reached the forwarder.
fn at_lb(f: &Forwarder, case: Case) -> Result<u64> {
    match (f, case) {
        (Forwarder::Balancer(x), Case::XdpNat) => Ok(x.stat(Stat::ForwardNat).packets),
        (Forwarder::Balancer(x), _) => Ok(x.stat(Stat::ForwardDsr).packets),
        (Forwarder::Sink(s), _) => Ok(sink_counts(s)?.matched),
    }
}

/// nftables' name of the address family (a table's and a match's).
fn nft_family(v6: bool) -> &'static str {
    if v6 {
        "ip6"
    } else {
        "ip"
    }
}

fn nft_packets(lb_ns: &str, v6: bool) -> Result<u64> {
    let family = nft_family(v6);
    let text = xdplb_tests::sys::run_stdout("ip", &["netns", "exec", lb_ns, "nft", "-j", "list", "table", family, NFT_TABLE])?;
    let v: serde_json::Value = serde_json::from_str(&text).context("nft -j output")?;
    let rules = v["nftables"].as_array().context("nft -j: no nftables array")?;
    let counter = rules.iter().find_map(|r| r["rule"]["expr"].as_array()?.iter().find_map(|e| e["counter"]["packets"].as_u64()));
    counter.context("nft: no rule counter in the bench table")
}

/// The DNAT rule of the nftables case, one table per family, on an empty
/// connection table. Only for that case: a NAT chain turns on the kernel's
/// connection tracking in the namespace for every packet, and the tracked
/// entries (each SYN phase leaves 50k) slow the lookups of later cases.
fn nft_up(lb_ns: &str) -> Result<()> {
    conntrack_flush(lb_ns)?;
    let mut rules = String::new();
    for (v6, _) in FAMILIES {
        let (vip, be) = Case::Nft.addresses(v6);
        let family = nft_family(v6);
        rules += &format!(
            "table {family} {NFT_TABLE} {{\n chain pre {{\n  type nat hook prerouting priority dstnat; policy accept;\n  {family} daddr {} tcp dport {} counter dnat to {be}\n }}\n}}\n",
            vip.ip(),
            vip.port()
        );
    }
    let path = std::env::temp_dir().join(format!("xdplb-pps-{}.nft", std::process::id()));
    std::fs::write(&path, rules)?;
    let r = xdplb_tests::sys::run("ip", &["netns", "exec", lb_ns, "nft", "-f", &path.display().to_string()]);
    let _ = std::fs::remove_file(&path);
    r?;
    // SYN_SENT entries of the SYN phase expire in seconds, not minutes: the
    // conntrack table's limit is shared with every namespace.
    netns::run_in(lb_ns, || {
        let p = "/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_syn_sent";
        std::fs::write(p, "5").with_context(|| format!("writing {p}"))
    })
}

/// Removes the nftables case's tables and the entries it left, so the
/// kernel-forwarding case that follows is plain routing.
fn nft_down(lb_ns: &str) -> Result<()> {
    for (v6, _) in FAMILIES {
        xdplb_tests::sys::run("ip", &["netns", "exec", lb_ns, "nft", "delete", "table", nft_family(v6), NFT_TABLE])?;
    }
    conntrack_flush(lb_ns)
}

/// Empties the namespace's connection-tracking table (`conntrack -F`,
/// Debian's conntrack, installed by setup).
fn conntrack_flush(lb_ns: &str) -> Result<()> {
    xdplb_tests::sys::run("ip", &["netns", "exec", lb_ns, "conntrack", "-F"]).context("conntrack -F (run `cargo xtask setup`)").map(drop)
}

/// Connections the kernel tracks in the namespace: 0 while no NAT chain
/// exists (the file is absent until nf_conntrack is loaded at all).
fn conntrack_count(lb_ns: &str) -> Result<u64> {
    netns::run_in(lb_ns, || {
        let p = "/proc/sys/net/netfilter/nf_conntrack_count";
        match std::fs::read_to_string(p) {
            Ok(text) => text.trim().parse().with_context(|| format!("{p}: {text:?}")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e).with_context(|| format!("reading {p}")),
        }
    })
}

fn run(lab: &Lab, plan: &Plan) -> Result<serde_json::Value> {
    let (client_ns, lb_ns, sw_ns) = (lab.ns(Host::Client), lab.ns(Host::Lb), lab.ns(Host::Switch));
    let client_if = lab.client_iface();
    let client_index = lab.ifindex(Host::Client, &client_if)?;
    let (client_mac, lc_mac) = (lab.mac(Host::Client, &client_if)?, lab.mac(Host::Lb, &lab.lb_client_iface())?);
    let mut far = attach_sink(&sw_ns, &lab.switch_lb_iface(), sink_config(Case::Kernel.addresses(false).1, XDP_DROP))?;
    let mut gen = pktgen_object(&client_ns)?;
    let mut rows = Vec::new();
    for rep in 0..plan.reps {
        for (v6, family) in FAMILIES {
            for case in CASES {
                let (to, expect) = case.addresses(v6);
                Array::<_, SinkConfig>::try_from(far.map_mut(pktgen::SINK_CONFIG).context("far sink config")?)?.set(0, sink_config(expect, XDP_DROP), 0)?;
                if case == Case::Nft {
                    nft_up(&lb_ns)?;
                }
                let fwd = forwarder(lab, case, v6)?;
                for (phase, syn) in [("established", false), ("syn", true)] {
                    let flows = if syn { 0 } else { plan.flows };
                    set_gen(&mut gen, gen_config(lc_mac, client_mac, to, syn, flows, XDP_TX)?)?;
                    if !syn {
                        // Every flow once first: the measured packets are established.
                        gen = generate(&client_ns, gen, client_index, plan.flows as u32, true)?.0;
                    }
                    let packets = if syn { plan.syns } else { plan.packets };
                    let (g0, lb0, far0) = (generated(&gen)?, at_lb(&fwd, case)?, sink_counts(&far)?);
                    let nft0 = if case == Case::Nft { Some(nft_packets(&lb_ns, v6)?) } else { None };
                    let t0 = std::time::Instant::now();
                    let (g, ns_per, _) = generate(&client_ns, gen, client_index, packets, true)?;
                    let wall = t0.elapsed().as_secs_f64();
                    gen = g;
                    let sent = generated(&gen)? - g0;
                    let lb = at_lb(&fwd, case)? - lb0;
                    let far1 = sink_counts(&far)?;
                    let nft = match nft0 {
                        Some(n0) => Some(nft_packets(&lb_ns, v6)? - n0),
                        None => None,
                    };
                    let delivered = if case == Case::Baseline { lb } else { far1.matched - far0.matched };
                    eprintln!(
                        "[pps] rep {} {family} {:<15} {:<11} {ns_per:>7.0} ns/packet  sent {sent}  at lb {lb}  delivered {delivered}{}",
                        rep + 1,
                        case.name(),
                        phase,
                        nft.map_or(String::new(), |n| format!("  nft rule {n}"))
                    );
                    rows.push(serde_json::json!({
                        "rep": rep, "family": family, "case": case.name(), "phase": phase, "ns_per_packet": ns_per, "wall_s": wall,
                        "sent": sent, "at_lb": lb, "delivered": delivered, "far_frames": far1.frames - far0.frames, "nft_rule": nft,
                    }));
                }
                drop(fwd);
                match case {
                    Case::Nft => nft_down(&lb_ns)?,
                    Case::Kernel => {
                        let tracked = conntrack_count(&lb_ns)?;
                        if tracked != 0 {
                            bail!("kernel forwarding went through connection tracking ({tracked} entries): it must be plain routing");
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    let (cost, program) = program_cost(lab, plan)?;
    Ok(serde_json::json!({
        "packets": plan.packets, "syns": plan.syns, "flows": plan.flows, "reps": plan.reps, "rows": rows, "cost": cost, "program": program,
    }))
}

/// The balancer's cost per established NAT packet, IPv4 and IPv6, against a trivial
/// XDP_PASS, with the generator as a frame-restoring prologue (module doc),
/// and the balancer's size as the kernel holds it (what `bpftool prog show`
/// reports as xlated and jited bytes; 8 bytes per xlated instruction).
fn program_cost(lab: &Lab, plan: &Plan) -> Result<(Vec<serde_json::Value>, serde_json::Value)> {
    let lb_ns = lab.ns(Host::Lb);
    let lc = lab.lb_client_iface();
    let lc_index = lab.ifindex(Host::Lb, &lc)?;
    let lbe_index = lab.ifindex(Host::Lb, &lab.lb_backend_iface())?;
    let (client_mac, lc_mac) = (lab.mac(Host::Client, &lab.client_iface())?, lab.mac(Host::Lb, &lc)?);
    // One NAT VIP per family (ids 0 and 1), each with its own backend (1, 2).
    let vips: Vec<(SocketAddr, SocketAddr)> = FAMILIES.iter().map(|(v6, _)| Case::XdpNat.addresses(*v6)).collect();
    let table = vips.clone();
    let mut xdp = netns::run_in(&lb_ns, move || {
        let mut xdp = Harness::load_with(&LoadOptions { maglev_size: MAGLEV, ..Default::default() })?;
        {
            let mut dp = xdp.dataplane();
            dp.add_tx_port(lc_index)?;
            dp.add_tx_port(lbe_index)?;
            for (i, (vip, be)) in table.iter().enumerate() {
                let id = i as u32 + 1;
                dp.set_backend(id, &backend_info(be.ip(), be.port()))?;
                let info = lb::VipInfo { vip_id: i as u32, algorithm: lb::ALG_MAGLEV, mode: lb::MODE_NAT, hash_seed: 7, ..Default::default() };
                dp.set_vip(&vip_key(vip.ip(), vip.port(), 6), &info, &vec![id; MAGLEV as usize], &[id])?;
            }
        }
        Ok(xdp)
    })?;
    let lb_prog = program::xdp_program(&mut xdp)?;
    let info = lb_prog.info()?;
    let size = serde_json::json!({
        "xlated_bytes": info.size_translated(), "xlated_insns": info.size_translated().map(|b| b / 8),
        "jited_bytes": info.size_jitted(), "verified_insns": info.verified_instruction_count(),
    });
    let lb_fd = lb_prog.fd()?.try_clone()?;
    let mut gen = pktgen_object(&lb_ns)?;
    let pass_fd = load_xdp(&mut gen, pktgen::PASS)?.fd()?.try_clone()?;
    let mut out = Vec::new();
    for rep in 0..plan.reps {
        for (i, (_, family)) in FAMILIES.iter().enumerate() {
            // One flow: the established-flow path the fixtures check (flows: 1).
            set_gen(&mut gen, gen_config(lc_mac, client_mac, vips[i].0, false, 1, XDP_PASS)?)?;
            let mut figures = serde_json::Map::new();
            for (name, next) in [("prologue", None), ("nat_forward", Some(&lb_fd)), ("pass", Some(&pass_fd))] {
                {
                    let mut slots = ProgramArray::try_from(gen.map_mut(pktgen::GEN_NEXT).context("GEN_NEXT")?)?;
                    match next {
                        Some(fd) => slots.set(0, fd, 0)?,
                        None => {
                            let _ = slots.clear_index(&0);
                        }
                    }
                }
                // The first run creates the flow; the timed ones are established.
                gen = generate(&lb_ns, gen, lc_index, 1, false)?.0;
                let before = xdp.stat(Stat::ForwardNat).packets;
                let (g, ns_per, verdict) = generate(&lb_ns, gen, lc_index, plan.cost_repeat, false)?;
                gen = g;
                let forwarded = xdp.stat(Stat::ForwardNat).packets - before;
                let want = match name {
                    "nat_forward" => XDP_REDIRECT,
                    _ => XDP_PASS,
                };
                if verdict != want {
                    bail!("program cost {name}: verdict {verdict}, expected {want}");
                }
                if name == "nat_forward" && forwarded != u64::from(plan.cost_repeat) {
                    bail!("program cost: {forwarded} NAT forwards counted for {} repetitions", plan.cost_repeat);
                }
                figures.insert(format!("{name}_ns"), serde_json::json!(ns_per));
            }
            // The trivial program on its own, for reference: with no prologue
            // its frame needs no restoring, and the figure is the kernel's
            // per-repetition run overhead plus an empty program.
            let (g, ns_per, verdict) = test_run(&lb_ns, gen, pktgen::PASS, lc_index, plan.cost_repeat, false)?;
            gen = g;
            if verdict != XDP_PASS {
                bail!("program cost pass_standalone: verdict {verdict}, expected {XDP_PASS}");
            }
            figures.insert("pass_standalone_ns".into(), serde_json::json!(ns_per));
            figures.insert("rep".into(), serde_json::json!(rep));
            figures.insert("family".into(), serde_json::json!(family));
            figures.insert("repeat".into(), serde_json::json!(plan.cost_repeat));
            out.push(serde_json::Value::Object(figures));
        }
    }
    Ok((out, size))
}
